"""What the modules of the DHP19 converter share: its settings, constants, types and error.

See :mod:`hybridpose.io.dhp19` for what the converter does.
"""

from __future__ import annotations

from typing import Any, Literal

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

BackgroundStamps = Literal["neighbours", "neighbours-and-self"]
"""Which pixels an event stamps in the background-activity filter (BackgroundFilter.m).

``"neighbours"``: its 8 neighbours only, not its own pixel: the reference's rule since
SensorsINI/DHP19 commit 3395890 (2019-10-04, "don't write to self"). An event then passes only
on a stamp written by an earlier event on a *neighbouring* pixel; a lone pixel firing again and
again never passes. ``"neighbours-and-self"``: its own pixel too, the rule of the first release
(June 2019), under which a pixel's second event within the support passes on the first's stamp.
"""
BACKGROUND_STAMPS: tuple[BackgroundStamps, ...] = ("neighbours", "neighbours-and-self")
"""The choices of :data:`BackgroundStamps`, the default (the reference's current rule) first."""
DEFAULT_BACKGROUND_STAMPS: BackgroundStamps = "neighbours"
"""The reference's current rule (commit 3395890, 2019-10-04)."""

CAMERA_POSITION_TOLERANCE_MM = 10.0
"""A camera whose row of ``camera_positions.npy`` lies farther than this (mm) from the centre
of its ``P`` matrix (P's null vector) is warned about.

The centre read from ``P`` is exact for ``P`` (every pixel's ray passes through it); the
reference notebook starts its triangulation rays at ``camera_positions.npy`` instead. A start
point off by ``d`` moves a ray by up to ``d`` at the subject, while one 18.5 um pixel of a
DAVIS346 covers about 8-16 mm at DHP19's 3.5-4 m (behind a lens of 4-8 mm focal length). Up to
10 mm the two therefore agree to about a pixel, what the 2D labels resolve (the reference
truncates them to whole pixels), and a 3D error of 10 mm is small against the reported 3D MPJPEs
(58-92 mm); beyond it, triangulating from the positions is not triangulating with ``P``.
A warning only: the distances are stored (``extra["camera_positions"]``) whatever the
tolerance, and the tolerance (``camera_position_tolerance_mm``) is not a setting that decides the
output."""
MAX_CAMERA_ID = 3
MAX_STRAY_FRACTION = 0.01
"""Stray polarity events (off the sensor or camera id above 3) are dropped; a recording with
more than this fraction of its polarity events stray is rejected as corrupt."""

MAX_END_GAP_US = 1_000_000
"""The longest end gap accepted, in us, whatever the length (see :data:`MAX_END_GAP_FRACTION`)."""
MAX_END_GAP_FRACTION = 0.1
"""A recording whose events end long before its stop is rejected as truncated.

The end gap is the time from the latest polarity event inside ``[start, stop]`` (any camera,
before the filters) to the stop. It may be at most the smaller of :data:`MAX_END_GAP_US`
(1 s) and :data:`MAX_END_GAP_FRACTION` (10 %) of ``stop - start``. A file cut on a record
boundary is a whole number of records, so nothing else shows the cut: its stop special is gone,
the stop is then derived from the Vicon length and the labels run on past the last event (a cut
halfway through a 1 s recording leaves a gap of about 0.5 s). In a genuine recording the gap is
tiny: four DAVIS346 cameras together fire thousands of events per second even on a still scene
(sensor noise alone), and the DHP19 subject moves throughout. Silence of all four cameras for a
tenth of the recording, or for a second, is therefore taken as a cut, not as a still subject;
10 % keeps short recordings checked (0.1 s of a 1 s one), 1 s keeps long ones checked (a
30 s recording is not allowed 3 s of labels without events). Both are settings
(``max_end_gap_us``, ``max_end_gap_fraction``), stored in ``extra["end_gap_limit"]``."""

CONVERTER_VERSION = 4
"""Version of what the converter writes; bumped on every change that alters an output file.
Stored in ``extra``; :func:`convert_dhp19` does not skip an output of another (or no) version.
Version 2: start/stop from the file-order ends of the event stream, thresholds stored.
Version 3: a recording whose events end long before its stop is rejected (a file cut on a
record boundary); the limit and the measured gap are stored.
Version 4: the background filter follows the reference's current rule by default (an event
stamps its 8 neighbours, not its own pixel; :data:`BackgroundStamps`), stored with its settings;
the distances between ``camera_positions.npy`` and the centres of the ``P`` matrices, and the
events dropped before the start and after the stop, are stored."""
STREAM_ENDS_RULE = "first and last good polarity event in file order, unwrapped"
"""How the ends of the event stream that :func:`find_start_stop` uses are found."""

HOT_PIXEL_RULE = "pixels with >= threshold events removed"
"""Stored with the hot-pixel settings; a file made with another rule has other settings."""
BACKGROUND_FILTER_RULE = "DHP19 BackgroundFilter.m, per camera"
"""Stored with the background-filter settings (files made with the older jAER variant lack it);
which pixels an event stamps is stored beside it (``stamps``, :data:`BackgroundStamps`)."""

I64Array = npt.NDArray[np.int64]
F64Array = npt.NDArray[np.float64]
BoolArray = npt.NDArray[np.bool_]
IntpArray = npt.NDArray[np.intp]


class Dhp19Error(HybridPoseError, ValueError):
    """A DHP19 file or folder is missing, malformed or inconsistent; the message says which."""


def check_background_stamps(stamps: str, name: str = "background_stamps") -> None:
    """Raise Dhp19Error, naming the argument ``name``, unless ``stamps`` is a rule of
    :data:`BACKGROUND_STAMPS`."""
    if stamps not in BACKGROUND_STAMPS:
        raise Dhp19Error(f"{name} must be one of {', '.join(BACKGROUND_STAMPS)}, got {stamps!r}")


def check_camera_position_tolerance(tolerance_mm: float) -> None:
    """Raise Dhp19Error unless ``tolerance_mm >= 0`` (NaN is not)."""
    if not tolerance_mm >= 0.0:
        raise Dhp19Error(f"camera_position_tolerance_mm must be >= 0, got {tolerance_mm}")


def output_settings(
    hot_pixel_threshold: int | None,
    background_support_us: int | None,
    max_stray_fraction: float,
    max_repairable_jump_us: int,
    max_end_gap_us: int = MAX_END_GAP_US,
    max_end_gap_fraction: float = MAX_END_GAP_FRACTION,
    background_stamps: BackgroundStamps = DEFAULT_BACKGROUND_STAMPS,
) -> dict[str, Any]:
    """Everything that decides the output, as stored in ``extra`` (filters without counts).

    :func:`convert_dhp19` skips an existing output only if these are equal. ``background_stamps``
    is stored only when the background filter is on (``background_support_us`` not None).
    """
    return {
        "hot_pixel_filter": None
        if hot_pixel_threshold is None
        else {"threshold": hot_pixel_threshold, "rule": HOT_PIXEL_RULE},
        "background_filter": None
        if background_support_us is None
        else {
            "support_us": background_support_us,
            "rule": BACKGROUND_FILTER_RULE,
            "stamps": background_stamps,
        },
        "max_stray_fraction": float(max_stray_fraction),
        "max_repairable_jump_us": int(max_repairable_jump_us),
        "end_gap_limit": {
            "max_us": int(max_end_gap_us),
            "max_fraction": float(max_end_gap_fraction),
        },
        "converter_version": CONVERTER_VERSION,
    }
