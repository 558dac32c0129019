"""What the modules of the DHP19 converter share: its settings, constants, types and error.

See :mod:`hybridpose.io.dhp19` for what the converter does.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import numpy.typing as npt

from hybridpose.errors import HybridPoseError

SENSOR_SIZE = (346, 260)
"""DAVIS346 ``(width, height)`` in pixels."""

VICON_PERIOD_US = 10_000
"""Vicon labels are sampled at 100 Hz."""

CAMERA_TO_MATRIX = (4, 1, 3, 2)
"""``CAMERA_TO_MATRIX[c]`` is the number m of the file ``P{m}.npy`` of event camera ``c``."""

MAX_REPAIRABLE_JUMP_US = 1000
"""Per camera, timestamps that go back by at most this much are repaired by sorting."""
HOT_PIXEL_THRESHOLD = 10_000
"""A pixel with this many events or more in a recording is hot (reference: ``>= 1e4``)."""
BACKGROUND_SUPPORT_US = 70_000
"""Support window ``dt`` of the background-activity filter (reference: 70 ms)."""
MAX_CAMERA_ID = 3
MAX_STRAY_FRACTION = 0.01
"""Stray polarity events (off the sensor or camera id above 3) are dropped; a recording with
more than this fraction of its polarity events stray is rejected as corrupt."""

CONVERTER_VERSION = 2
"""Version of what the converter writes; bumped on every change that alters an output file.
Stored in ``extra``; :func:`convert_dhp19` does not skip an output of another (or no) version.
Version 2: start/stop from the file-order ends of the event stream, thresholds stored."""
STREAM_ENDS_RULE = "first and last good polarity event in file order, unwrapped"
"""How the ends of the event stream that :func:`find_start_stop` uses are found."""

HOT_PIXEL_RULE = "pixels with >= threshold events removed"
"""Stored with the hot-pixel settings; a file made with another rule has other settings."""
BACKGROUND_FILTER_RULE = "DHP19 BackgroundFilter.m, per camera"
"""Stored with the background-filter settings (files made with the older jAER variant lack it)."""

I64Array = npt.NDArray[np.int64]
F64Array = npt.NDArray[np.float64]
BoolArray = npt.NDArray[np.bool_]
IntpArray = npt.NDArray[np.intp]


class Dhp19Error(HybridPoseError, ValueError):
    """A DHP19 file or folder is missing, malformed or inconsistent; the message says which."""


def output_settings(
    hot_pixel_threshold: int | None,
    background_support_us: int | None,
    max_stray_fraction: float,
    max_repairable_jump_us: int,
) -> dict[str, Any]:
    """Everything that decides the output, as stored in ``extra`` (filters without counts).

    :func:`convert_dhp19` skips an existing output only if these are equal.
    """
    return {
        "hot_pixel_filter": None
        if hot_pixel_threshold is None
        else {"threshold": hot_pixel_threshold, "rule": HOT_PIXEL_RULE},
        "background_filter": None
        if background_support_us is None
        else {"support_us": background_support_us, "rule": BACKGROUND_FILTER_RULE},
        "max_stray_fraction": float(max_stray_fraction),
        "max_repairable_jump_us": int(max_repairable_jump_us),
        "converter_version": CONVERTER_VERSION,
    }
