"""Convert a raw DHP19 download (AEDAT 2.0 events + Vicon labels) into native recordings.

A DHP19 root holds::

    DVS_movies/S{s}/session{n}/mov{k}.aedat    events of the 4 cameras, interleaved (AEDAT 2.0)
    Vicon_data/S{s}_{n}_{k}.mat                3D joints at 100 Hz (struct XYZPOS)
    P_matrices/P1.npy .. P4.npy                3x4 projection matrices (world mm -> pixels)
    P_matrices/camera_positions.npy            (4, 3) camera centres, row m-1 = centre of P{m}

Each ``mov{k}.aedat`` becomes ``S{s}_session{n}_mov{k}.h5`` (see docs/data-format.md) with the
four cameras in event-camera-id order, the Vicon labels and the calibration.

What the converter does to one recording, in order:

1. **AEDAT 2.0.** The raw records (uint32 address, uint32 timestamp in us) are read by
   :func:`hybridpose.io.aedat.read_aedat2` (the header rules are described there). A data block
   that is not a whole number of records rejects the recording: it means a truncated download.
2. **Addresses** (bits 0-based): bit 31 APS/IMU (ignored), y = bits 22-30, x = bits 12-21,
   polarity bit 11 (1 = ON = +1), special-event flag bit 10, camera id = bits 0-3 (DHP19's
   modified reader). Polarity events have bits 31 and 10 clear; special events have bit 10 set and
   bit 31 clear.
3. **Stray events.** A polarity event outside the 346x260 sensor (raw x > 345 or y > 259) or
   from a camera id above 3 is dropped, as the reference does ("remove events out of the
   boundaries"), and counted: per camera for pixels off the sensor, in total for bad camera
   ids (``ConversionResult.stray_dropped``/``stray_bad_camera``, ``extra["stray_events"]``).
   More than :data:`MAX_STRAY_FRACTION` (1 %, ``max_stray_fraction``) of the file's polarity
   events being stray rejects the recording: that is a corrupt file, not a few glitches.
4. **Time and start/stop.** 32-bit timestamps are unwrapped over the whole file (a jump of
   more than 2^31 us backwards is a wrap). The Vicon interval ``[start, stop]`` comes from the
   special events of all cameras and from the ends of the event stream, which are the first
   and the last good polarity event in *file order* (not the earliest and latest: one corrupt
   far-off timestamp must not move the interval); see :func:`find_start_stop`. Both the
   file-order ends and the earliest/latest timestamps are stored in
   ``extra["stream_ends_us_raw"]``, the rule used in ``extra["start_stop_rule"]``. Each
   camera's events are cropped to the interval first (an inclusive mask on the unwrapped
   timestamps); only then is the order of what is kept checked: an event more than
   :data:`MAX_REPAIRABLE_JUMP_US` (``max_repairable_jump_us``) behind the latest earlier kept
   event of its camera rejects the recording (naming the event index and the jump), smaller
   disorder is repaired with a stable sort and counted, and the largest backward jump is
   recorded (``max_backward_jump_us``). So a glitch in events that are dropped anyway costs
   nothing. Times are rebased so that ``start = 0`` and Vicon sample ``k`` is at
   ``k * 10 000 us``.
5. **Pixels.** Events are stored as ``x = 345 - x_raw``, ``y = 259 - y_raw`` and each camera's
   matrix as ``P = A @ P_raw`` with ``A = [[1, 0, 0], [0, -1, 260], [0, 0, 1]]``, so that
   projecting a label with the stored ``P`` gives the reference's flipped label (``v -> 260 - v``,
   ``u`` unchanged). The raw matrices are kept in ``extra["P_raw"]``. This flip follows the DHP19
   reference code (the reference's 0-based event image index is ``(row, col) = (Y - 1, X - 1)``
   with its 1-based ``X = 346 - x_raw``, ``Y = 260 - y_raw``, i.e. our ``(y, x)``; a test
   transcribes that pipeline on raw data); it could not be checked against real data here (we
   have none), so verify it by projecting labels onto event frames the first time a real
   download is converted. The per-camera ``labels_in_image_fraction`` and
   ``labels_in_front_fraction`` in ``extra["cameras"]`` are quick diagnostics for that check.
   ``A`` is a mirror (``det A = -1``), which the project's convention allows (a point is in
   front exactly when ``w > 0``, docs/data-format.md); the overall sign of each stored matrix is
   chosen so that the labelled body is in front of the camera (:func:`dhp19_cameras`).
6. **Filters** (off unless asked), per camera and after the crop: hot pixels (``10^4`` or more
   events in the recording, :func:`hot_pixel_mask`), then the background-activity filter of the
   DHP19 reference (:func:`background_activity_mask`) on what the hot-pixel filter kept. The
   filter settings, the two rejection thresholds and :data:`CONVERTER_VERSION` are stored in
   ``extra``; :func:`convert_dhp19` skips an existing output only if all of them are the ones
   of the current run.
7. **Vicon labels** (struct ``XYZPOS``, 13 fields of (N, 3) mm, NaN = missing) are read by the
   small bounds-checked MAT-file reader :func:`hybridpose.io.mat5.read_mat5_struct`, because
   ``scipy.io.loadmat`` crashes the process on some damaged files.
8. **Camera mapping** used by the DHP19 notebooks: event camera 0 -> P4, 1 -> P1, 2 -> P3,
   3 -> P2; the two front cameras are those of P2 and P3 (event cameras 3 and 2).

Every problem with the input raises an error naming the file and the problem:
:class:`Dhp19Error`, or, from the general file readers, :class:`~hybridpose.io.aedat.AedatError`
(``hybridpose.io.aedat``) and :class:`~hybridpose.io.mat5.MatFileError` (``hybridpose.io.mat5``).
All three are :class:`~hybridpose.errors.HybridPoseError`; the batch converter
:func:`convert_dhp19` records any of them, and an ``OSError`` (disk full, permission) or
``MemoryError`` while converting one recording, as a rejection and goes on with the others. No
output file appears for a rejected recording (the native writer is atomic).

Differences from the reference pipeline (Generate_DHP19.m, ExtractEventsToFramesAndMeanLabels.m
and extract_from_aedat.m of DHP19), all known ones:

- **IR-reflection masks are not applied.** The reference removes events in two small
  rectangles, given in its tiled image (the 4 cameras side by side, flipped,
  ``X = 346 - x_raw + 346 * camera``, ``Y = 260 - y_raw``, 1-based): mask 1 ``X`` 780-810,
  ``Y`` 115-145 (in camera 2's tile); mask 2 ``X`` 346*3+214 .. 346*3+221, ``Y`` 136-144 (in
  camera 3's tile). In our pixel frame (``x = X - 1 - 346 * camera``, ``y = Y - 1``) that is
  camera 2, x 87-117, y 114-144, and camera 3, x 213-220, y 135-143. Here every event is kept.
- **Time crop.** Ours is an inclusive mask ``start <= t <= stop`` on each camera's unwrapped
  timestamps, before sorting. The reference takes a file-order *index range* of the polarity
  events, from the first event with ``t > start`` to the last with ``t < stop``: it drops
  events exactly at start or stop, and keeps an out-of-window event that lies between two
  in-window ones in the file.
- **Start/stop stream ends.** The reference uses the first and last polarity event in file
  order for 0, 2 and 4 specials but ``min``/``max`` for 1 special, and over all polarity
  events (strays included); here the first and last *good* (non-stray) polarity event in file
  order, for every count. It special-cases a timestamp overflow with 2 or 4 specials (S14
  session1 mov1: stop = the latest event); here timestamps are unwrapped instead.
- **Background filter.** Here per camera, on time-sorted events, each camera with its own
  border. The reference filters one tiled image of the 4 cameras in file order, so an event on
  an inner tile edge stamps into the neighbouring camera's tile.
- **Stray events** are dropped like the reference does, but a file with more than
  ``max_stray_fraction`` of them is rejected: a threshold of our own (the reference has none).
- **Timestamp disorder.** The reference neither sorts nor checks the order; the repair of
  lags up to ``max_repairable_jump_us`` and the rejection beyond it are ours.
- **Output.** Raw events and the 100 Hz labels are stored; the reference's constant-count
  frames and per-frame mean labels are not made.

Memory: a recording is converted in memory, in each worker process when ``workers > 1``.
Measured with tracemalloc on a 1-million-event recording (numpy arrays; HDF5's own buffers
not counted): a peak of about 79 bytes per event without filters and 104 bytes per event with
both filters (the process's peak RSS grew by about 130 and 155 bytes per event, but that
includes the measuring script's own input arrays). So 5 million events need about 0.4-0.5 GB
of arrays; plan for about 0.75 GB per process.
"""

from __future__ import annotations

import re
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
from tqdm import tqdm

from hybridpose.errors import HybridPoseError, describe_error, first_line
from hybridpose.events import Events, make_events
from hybridpose.io.aedat import read_aedat2
from hybridpose.io.mat5 import read_mat5_struct
from hybridpose.io.recording import (
    CameraCalibration,
    Recording,
    RecordingMeta,
    RecordingWriter,
    remove_stale_temp_files,
)
from hybridpose.joints import JOINT_NAMES
from hybridpose.parallel import map_in_processes

SENSOR_SIZE = (346, 260)
"""DAVIS346 ``(width, height)`` in pixels."""

VICON_PERIOD_US = 10_000
"""Vicon labels are sampled at 100 Hz."""
MAX_COORDINATE_MM = 1e6
"""A Vicon coordinate farther than 1 km from the origin is corrupt, not a pose."""

CAMERA_TO_MATRIX = (4, 1, 3, 2)
"""``CAMERA_TO_MATRIX[c]`` is the number m of the file ``P{m}.npy`` of event camera ``c``."""

FLIP_A = np.array([[1.0, 0.0, 0.0], [0.0, -1.0, 260.0], [0.0, 0.0, 1.0]])
"""Pixel transform from DHP19's projection frame to ours: ``v -> 260 - v``, ``u`` unchanged."""

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

WRAP_US = 1 << 32
_HALF_WRAP_US = 1 << 31
_WRITE_CHUNK_EVENTS = 1 << 20

_NEIGHBOURHOOD = tuple((dx, dy) for dy in (-1, 0, 1) for dx in (-1, 0, 1))
_RECORDING_RE = re.compile(r"^S(\d+)/session(\d+)/mov(\d+)\.aedat$")

I64Array = npt.NDArray[np.int64]
F64Array = npt.NDArray[np.float64]
BoolArray = npt.NDArray[np.bool_]
IntpArray = npt.NDArray[np.intp]


class Dhp19Error(HybridPoseError, ValueError):
    """A DHP19 file or folder is missing, malformed or inconsistent; the message says which."""


# ------------------------------------------------------------------------------- addresses
@dataclass(frozen=True, eq=False)
class DecodedAddresses:
    """The fields of DAVIS addresses (raw sensor frame, before the DHP19 flip).

    Attributes:
        x: (N,) uint16 raw column (bits 12-21).
        y: (N,) uint16 raw row (bits 22-30).
        p: (N,) int8 polarity, +1 if bit 11 is set (ON), else -1.
        camera: (N,) uint8 camera id (bits 0-3).
        is_polarity: (N,) bool, bits 31 and 10 clear: a DVS polarity event.
        is_special: (N,) bool, bit 10 set and bit 31 clear: a start/stop special event.
    """

    x: npt.NDArray[np.uint16]
    y: npt.NDArray[np.uint16]
    p: npt.NDArray[np.int8]
    camera: npt.NDArray[np.uint8]
    is_polarity: BoolArray
    is_special: BoolArray


def decode_addresses(addresses: npt.ArrayLike) -> DecodedAddresses:
    """Split DAVIS/DHP19 32-bit addresses into their fields (vectorised).

    Args:
        addresses: (N,) unsigned 32-bit addresses as read by
            :func:`~hybridpose.io.aedat.read_aedat2`.

    Returns:
        The decoded fields; see :class:`DecodedAddresses`.

    Example:
        >>> d = decode_addresses([0x01C05802])  # y=7, x=5, ON, camera 2
        >>> int(d.x[0]), int(d.y[0]), int(d.p[0]), int(d.camera[0]), bool(d.is_polarity[0])
        (5, 7, 1, 2, True)
    """
    a = np.asarray(addresses).astype(np.uint32)
    if a.ndim != 1:
        raise Dhp19Error(f"addresses must be one-dimensional, got shape {a.shape}")
    aps = (a >> 31) & 1 == 1
    special = (a >> 10) & 1 == 1
    return DecodedAddresses(
        x=((a >> 12) & 0x3FF).astype(np.uint16),
        y=((a >> 22) & 0x1FF).astype(np.uint16),
        p=np.where((a >> 11) & 1 == 1, np.int8(1), np.int8(-1)).astype(np.int8),
        camera=(a & 0xF).astype(np.uint8),
        is_polarity=~aps & ~special,
        is_special=~aps & special,
    )


# ------------------------------------------------------------------------------------ time
def unwrap_timestamps(timestamps: npt.ArrayLike) -> I64Array:
    """Undo the 32-bit overflow of microsecond timestamps.

    A step of more than 2^31 us backwards between consecutive records is a wrap (add 2^32 from
    there on); a step of more than 2^31 us forwards undoes one (a late record from before a wrap).

    Args:
        timestamps: (N,) raw timestamps in file order.

    Returns:
        (N,) int64 timestamps; unchanged where nothing wraps.

    Example:
        >>> unwrap_timestamps([4294967290, 5, 20]).tolist()
        [4294967290, 4294967301, 4294967316]
    """
    t = np.asarray(timestamps).astype(np.int64)
    if t.ndim != 1:
        raise Dhp19Error(f"timestamps must be one-dimensional, got shape {t.shape}")
    if len(t) < 2:
        return t
    step = np.diff(t)
    wraps = (step < -_HALF_WRAP_US).astype(np.int64) - (step > _HALF_WRAP_US).astype(np.int64)
    offset = np.concatenate([np.zeros(1, np.int64), np.cumsum(wraps) * WRAP_US])
    unwrapped: I64Array = t + offset
    return unwrapped


def repair_timestamp_order(
    t: I64Array,
    *,
    tolerance_us: int = MAX_REPAIRABLE_JUMP_US,
    name: str = "events",
    record_index: IntpArray | None = None,
) -> tuple[IntpArray, int, int]:
    """Order that sorts one camera's timestamps, if their disorder is small enough to repair.

    The lag of an event is how far its timestamp lies behind the latest earlier timestamp. A lag
    of at most ``tolerance_us`` is jitter and is repaired by a stable sort; a larger one means
    corrupt timestamps.

    Args:
        t: (N,) timestamps in stream order.
        tolerance_us: the largest lag that is repaired.
        name: what to call the stream in the error (file and camera).
        record_index: (N,) position of each event in the file, for the error message
            (default: position in ``t``).

    Returns:
        ``(order, moved, max_lag)``: the stable sorting permutation of ``t``, the number of
        events that lagged (were out of order) and the largest lag in us (the largest backward
        jump; 0 for sorted input).

    Raises:
        Dhp19Error: an event lags by more than ``tolerance_us``; names its index and the jump.
    """
    if len(t) == 0:
        return np.zeros(0, np.intp), 0, 0
    lag = np.maximum.accumulate(t) - t
    too_far = np.flatnonzero(lag > tolerance_us)
    if too_far.size:
        i = int(too_far[0])
        where = int(record_index[i]) if record_index is not None else i
        raise Dhp19Error(
            f"{name}: timestamps jump back by {int(lag[i])} us at event {where} (t={int(t[i])} us "
            f"after t={int(t[i] + lag[i])} us); at most {tolerance_us} us is repaired"
        )
    moved = int(np.count_nonzero(lag > 0))
    order = np.argsort(t, kind="stable") if moved else np.arange(len(t), dtype=np.intp)
    return order.astype(np.intp), moved, int(lag.max())


@dataclass(frozen=True)
class StartStop:
    """The Vicon recording interval in (unwrapped) event time, and how it was found."""

    start_us: int
    stop_us: int
    rule: str


def find_start_stop(
    special_t: npt.ArrayLike,
    t_first: int,
    t_last: int,
    vicon_samples: int,
    name: str = "recording",
) -> StartStop:
    """Start and stop of the Vicon recording from the special events (DHP19's rule).

    - 0 specials: the first and the last polarity event are the start and the stop (as
      Generate_DHP19.m does, for S14 session5 mov3).
    - 1, 2 or 4 specials: the first is the start, or the stop if it lies nearer the end of the
      event stream than its start (ties: start); the other end is ``vicon_samples * 10 ms`` away.
    - 3 or 5 specials: the first is the start and the last the stop.
    - more than 5: the recording is rejected (corrupted).

    The ends of the event stream are the first and the last polarity event in *file order*
    (``events(1)`` and ``events(end)`` of Generate_DHP19.m), not the earliest and the latest:
    one corrupt far-off timestamp in the middle of a file then cannot move the interval. (The
    reference uses ``min``/``max`` in its 1-special case; here file order is used for all.)

    Args:
        special_t: (S,) timestamps of the special events, file order, unwrapped.
        t_first: timestamp of the first polarity event of the file in file order (any camera;
            the converter passes the first one that is not stray, unwrapped).
        t_last: timestamp of the last polarity event in file order.
        vicon_samples: number of Vicon samples (100 Hz).
        name: the file, for error messages.

    Returns:
        The interval ``[start_us, stop_us]`` and a short description of the rule used.

    Raises:
        Dhp19Error: more than 5 specials, a last special not after the first, or (0 specials)
            ``t_last`` before ``t_first``.

    Example:
        >>> span = find_start_stop([900_000], 0, 1_000_000, 10)  # nearer the end: the stop
        >>> span.start_us, span.stop_us
        (800000, 900000)
    """
    s = np.asarray(special_t, dtype=np.int64)
    count = len(s)
    duration = int(vicon_samples) * VICON_PERIOD_US
    if count == 0:
        if t_last < t_first:
            raise Dhp19Error(
                f"{name}: no special event and the last polarity event (t={t_last} us) is "
                f"before the first (t={t_first} us)"
            )
        return StartStop(int(t_first), int(t_last), "0 specials: first and last event")
    if count > 5:
        raise Dhp19Error(f"{name}: {count} special events (at most 5 expected): corrupted")
    if count in (3, 5):
        start, stop = int(s[0]), int(s[-1])
        if stop <= start:
            raise Dhp19Error(
                f"{name}: last special event (t={stop} us) is not after the first (t={start} us)"
            )
        return StartStop(start, stop, f"{count} specials: first = start, last = stop")
    first = int(s[0])
    if t_last - first < first - t_first:
        return StartStop(
            first - duration, first, f"{count} specials: first = stop (nearer the end)"
        )
    return StartStop(first, first + duration, f"{count} specials: first = start")


# --------------------------------------------------------------------------------- filters
def hot_pixel_mask(
    x: npt.ArrayLike,
    y: npt.ArrayLike,
    *,
    threshold: int = HOT_PIXEL_THRESHOLD,
    sensor_size: tuple[int, int] = SENSOR_SIZE,
) -> BoolArray:
    """Which events to keep: those of pixels with fewer than ``threshold`` events.

    As in the DHP19 reference (``hotpixelarray >= threventhotpixel``, threshold 1e4), a pixel
    with ``threshold`` events or more is hot and all its events go.

    Args:
        x: (N,) columns of one camera's events.
        y: (N,) rows.
        threshold: a pixel with this many events or more is hot.
        sensor_size: ``(width, height)``.

    Returns:
        (N,) bool, True = keep.

    Raises:
        Dhp19Error: ``x`` and ``y`` differ in shape or a pixel lies outside the sensor.

    Example:
        >>> hot_pixel_mask([0, 0, 1], [0, 0, 0], threshold=2, sensor_size=(2, 1)).tolist()
        [False, False, True]
    """
    xi = np.asarray(x, dtype=np.int64)
    yi = np.asarray(y, dtype=np.int64)
    if xi.ndim != 1 or xi.shape != yi.shape:
        raise Dhp19Error(f"x and y must be (N,) arrays, got {xi.shape}, {yi.shape}")
    width, height = sensor_size
    if np.any((xi < 0) | (xi >= width) | (yi < 0) | (yi >= height)):
        raise Dhp19Error(f"hot-pixel filter: a pixel lies outside the {width}x{height} sensor")
    pixel = yi * width + xi
    counts = np.bincount(pixel, minlength=width * height)
    keep: BoolArray = counts[pixel] < threshold
    return keep


def background_activity_mask(
    x: npt.ArrayLike,
    y: npt.ArrayLike,
    t: npt.ArrayLike,
    *,
    support_us: int = BACKGROUND_SUPPORT_US,
    sensor_size: tuple[int, int] = SENSOR_SIZE,
) -> BoolArray:
    """Which events the DHP19 reference background-activity filter keeps (BackgroundFilter.m).

    The rule, for one camera: a map of the last timestamp of each pixel starts as "never"; the
    events are taken one by one in stream order and each

    1. **passes** if its pixel holds a stamp and ``t - stamp <= support_us`` (inclusive);
    2. then, kept or not, **stamps** its time on its own pixel and its 8 neighbours, unless it
       lies on the sensor border (``x == 0``, ``x == W - 1``, ``y == 0`` or ``y == H - 1``):
       border events stamp nothing (but can pass).

    Ties: an event sees the stamps of every event before it in the stream, those with the same
    timestamp included, but not of those after it, even with the same timestamp; nor its own
    (it stamps after its test). So of two neighbouring events with equal timestamps, the second
    can pass on the first's stamp, not the other way round.

    Differences from the reference: it initialises the map to 0 instead of "never", but works
    on large absolute timestamps, so its first events fail as well (here they fail whatever
    the timestamps). It tiles the 4 cameras side by side in one image, so an event on the inner
    edge of a tile stamps into the neighbouring camera's tile and the tile edges are not all
    border; here each camera is filtered on its own, with its own border.

    Vectorised (no loop per event; the result is exactly that of the loop, for any stream
    order): the stamp an event reads is the one of the last earlier stamping event on one of
    the 9 pixels around it. Events are sorted by ``(pixel, stream index)``, and for each of the 9
    offsets one ``searchsorted`` finds the last earlier stamping event on that pixel.

    Args:
        x: (N,) columns of one camera's events.
        y: (N,) rows.
        t: (N,) timestamps in stream order (the converter passes them sorted ascending).
        support_us: the support window ``dt``.
        sensor_size: ``(width, height)``.

    Returns:
        (N,) bool, True = keep.

    Raises:
        Dhp19Error: the inputs differ in length or a pixel lies outside the sensor.

    Example:
        >>> background_activity_mask([5, 6, 6], [5, 5, 5], [0, 70_000, 140_001]).tolist()
        [False, True, False]
    """
    xi = np.asarray(x, dtype=np.int64)
    yi = np.asarray(y, dtype=np.int64)
    ti = np.asarray(t, dtype=np.int64)
    n = len(ti)
    if xi.shape != (n,) or yi.shape != (n,) or ti.ndim != 1:
        raise Dhp19Error(f"x, y and t must be (N,) arrays, got {xi.shape}, {yi.shape}, {ti.shape}")
    keep = np.zeros(n, dtype=bool)
    width, height = sensor_size
    if np.any((xi < 0) | (xi >= width) | (yi < 0) | (yi >= height)):
        raise Dhp19Error(f"background filter: a pixel lies outside the {width}x{height} sensor")
    pixel = yi * width + xi
    order = np.argsort(pixel, kind="stable")  # all events by (pixel, stream index)
    q_pixel, q_x, q_y = pixel[order], xi[order], yi[order]
    stamps = (q_x > 0) & (q_x < width - 1) & (q_y > 0) & (q_y < height - 1)
    s_pixel, s_index = q_pixel[stamps], order[stamps]
    if len(s_index) == 0:
        return keep
    keys = s_pixel * n + s_index  # ascending: (pixel, stream index) of the stamping events
    latest = np.full(n, -1, dtype=np.int64)  # per event in `order`: the stamp it reads, if any
    for dx, dy in _NEIGHBOURHOOD:
        sx, sy = q_x + dx, q_y + dy
        inside = (sx >= 0) & (sx < width) & (sy >= 0) & (sy < height)
        source = q_pixel + (dy * width + dx)
        # the key just before (source, i) is the last stamping event on the source pixel before
        # event i; the queries ascend like the keys, which keeps the binary searches cache-local
        pos = np.searchsorted(keys, source * n + order, side="left") - 1
        safe = np.maximum(pos, 0)
        hit = inside & (pos >= 0) & (s_pixel[safe] == source)
        np.maximum(latest, np.where(hit, s_index[safe], -1), out=latest)
    seen = latest >= 0
    keep[order] = seen & (ti[order] - ti[np.maximum(latest, 0)] <= support_us)
    return keep


# ------------------------------------------------------------------------------ Vicon, P
def read_vicon_mat(path: Path) -> F64Array:
    """Read the 3D joints of a DHP19 Vicon file (MATLAB 5 / v7 MAT-file, struct ``XYZPOS``).

    The file is parsed by :func:`~hybridpose.io.mat5.read_mat5_struct`, not ``scipy.io.loadmat``:
    scipy's reader crashes the whole process (segmentation fault) on some damaged files, and
    one damaged recording must not stop a batch conversion.

    Args:
        path: ``Vicon_data/S{s}_{n}_{k}.mat``.

    Returns:
        Joints in millimetres in DHP19 joint order (:data:`JOINT_NAMES`), NaN where missing.

    Shape:
        ``(N, 13, 3)``, N = number of samples at 100 Hz (at least 1).

    Raises:
        Dhp19Error: missing file, a missing joint field, a field that is not a real (N, 3)
            array, fields of different lengths, coordinates beyond :data:`MAX_COORDINATE_MM`
            (infinite or corrupt) or no samples.
        MatFileError: the file is unreadable, not a readable MATLAB 5 file, damaged, or has no
            1x1 struct ``XYZPOS`` (see :func:`~hybridpose.io.mat5.read_mat5_struct`).
    """
    path = Path(path)
    if not path.is_file():
        raise Dhp19Error(f"{path}: no such Vicon file")
    fields = read_mat5_struct(path, "XYZPOS")
    joints = []
    for joint in JOINT_NAMES:
        if joint not in fields:
            raise Dhp19Error(f"{path}: XYZPOS has no field {joint!r}")
        value = fields[joint]
        if isinstance(value, str) or value.ndim != 2 or value.shape[1] != 3:
            got = f"a {value} array" if isinstance(value, str) else f"shape {value.shape}"
            raise Dhp19Error(f"{path}: XYZPOS.{joint} must be a real (N, 3) array, got {got}")
        joints.append(value)
    lengths = {len(j) for j in joints}
    if len(lengths) != 1:
        raise Dhp19Error(f"{path}: XYZPOS fields differ in length ({sorted(lengths)})")
    out = np.stack(joints, axis=1)
    if len(out) == 0:
        raise Dhp19Error(f"{path}: XYZPOS has no samples")
    too_far = np.abs(out) > MAX_COORDINATE_MM  # NaN compares False: missing stays allowed
    if np.any(too_far):
        j = int(np.argwhere(too_far)[0][1])
        raise Dhp19Error(
            f"{path}: XYZPOS.{JOINT_NAMES[j]} holds a coordinate beyond {MAX_COORDINATE_MM:g} mm "
            "(infinite or corrupt)"
        )
    return out


@dataclass(frozen=True, eq=False)
class PMatrices:
    """The DHP19 calibration as shipped: raw matrices and camera centres.

    Attributes:
        P: (4, 3, 4) ``P[m - 1]`` is the content of ``P{m}.npy`` (DHP19's pixel frame).
        centers: (4, 3) ``centers[m - 1]`` is the centre of camera ``P{m}`` in world mm.
    """

    P: F64Array
    centers: F64Array


def _load_small_npy(path: Path, shape: tuple[int, ...]) -> F64Array:
    """Load a finite real array of exactly ``shape``, checking the header before reading."""
    if not path.is_file():
        raise Dhp19Error(f"{path}: no such file")
    try:
        with path.open("rb") as f:
            version = np.lib.format.read_magic(f)
            if version == (1, 0):
                found, fortran, dtype = np.lib.format.read_array_header_1_0(f)
            else:
                found, fortran, dtype = np.lib.format.read_array_header_2_0(f)
            if tuple(found) != shape or dtype.kind not in "iuf":
                raise Dhp19Error(
                    f"{path}: holds a {dtype} array of shape {tuple(found)}, expected a real "
                    f"array of shape {shape}"
                )
            count = int(np.prod(shape))
            data = np.fromfile(f, dtype=dtype, count=count)
    except Dhp19Error:
        raise
    except Exception as err:  # numpy's header parser raises several kinds on malformed input
        raise Dhp19Error(f"{path}: not a readable .npy file ({first_line(err)})") from None
    if len(data) != count:
        raise Dhp19Error(f"{path}: truncated .npy file ({len(data)} of {count} values)")
    array = data.reshape(shape, order="F" if fortran else "C").astype(np.float64)
    if not np.all(np.isfinite(array)):
        raise Dhp19Error(f"{path}: holds non-finite values")
    return array


def read_p_matrices(p_dir: Path) -> PMatrices:
    """Read ``P1.npy`` .. ``P4.npy`` and ``camera_positions.npy`` from DHP19's ``P_matrices``.

    Args:
        p_dir: the ``P_matrices`` folder.

    Returns:
        The raw calibration (see :class:`PMatrices`).

    Raises:
        Dhp19Error: the folder or a file is missing, not a .npy file, of the wrong shape, holds
            non-finite values, or a matrix is singular (``det(P[:, :3]) == 0``) or so large
            that it overflows.
    """
    p_dir = Path(p_dir)
    if not p_dir.is_dir():
        raise Dhp19Error(f"{p_dir}: no P_matrices folder")
    matrices = []
    for m in range(1, 5):
        path = p_dir / f"P{m}.npy"
        P = _load_small_npy(path, (3, 4))
        with np.errstate(all="ignore"):  # overflow is reported below, as bad input
            det = np.linalg.det(P[:, :3])
            flipped = FLIP_A @ P
        if det == 0.0 or not np.isfinite(det) or not np.all(np.isfinite(flipped)):
            raise Dhp19Error(
                f"{path}: singular or overflowing projection matrix (det of P[:, :3] is {det:g})"
            )
        matrices.append(P)
    centers = _load_small_npy(p_dir / "camera_positions.npy", (4, 3))
    return PMatrices(P=np.stack(matrices), centers=centers)


def dhp19_cameras(p: PMatrices, joints: F64Array | None = None) -> list[CameraCalibration]:
    """The calibration of the four output cameras, in event-camera-id order, in our pixel frame.

    Camera ``c`` uses ``P{m}.npy`` with ``m = CAMERA_TO_MATRIX[c]``; its stored matrix is
    ``s * FLIP_A @ P_raw`` (see the module docstring) and its centre row ``m - 1`` of the
    positions. The sign ``s`` makes the labelled body lie in front of the camera (``w > 0``, the
    project's convention): it is the sign of the median ``w`` of the valid label points. Without
    valid labels it falls back to ``sign(det(P_raw[:, :3]))``, which is right for a raw matrix
    whose own image frame is not mirrored (the usual output of a calibration).

    Args:
        p: the matrices and centres of ``P_matrices/``.
        joints: (N, 13, 3) Vicon labels in mm (NaN = missing), used only for the sign.
    """
    points = np.zeros((0, 3)) if joints is None else joints.reshape(-1, 3)
    points = points[np.all(np.isfinite(points), axis=1)]
    cameras = []
    for c, m in enumerate(CAMERA_TO_MATRIX):
        flipped = FLIP_A @ p.P[m - 1]
        w = points @ flipped[2, :3] + flipped[2, 3]
        median_w = float(np.median(w)) if len(w) else 0.0
        if median_w != 0.0:
            sign = 1.0 if median_w > 0 else -1.0
        else:
            sign = 1.0 if np.linalg.det(p.P[m - 1][:, :3]) > 0 else -1.0
        cameras.append(
            CameraCalibration(P=sign * flipped, center=p.centers[m - 1], name=f"dhp19-cam{c}-P{m}")
        )
    return cameras


# ------------------------------------------------------------------------------ one recording
@dataclass(frozen=True)
class ConversionResult:
    """What :func:`convert_recording` did; all per-camera tuples have 4 entries.

    Attributes:
        path: the written recording.
        events_kept: events written per camera.
        dropped_outside: polarity events per camera outside ``[start, stop]``.
        stray_dropped: stray polarity events per camera dropped for a pixel off the sensor
            (raw x > 345 or y > 259).
        stray_bad_camera: stray polarity events dropped for a camera id above 3 (in total).
        hot_pixel_filtered: events per camera removed by the hot-pixel filter.
        background_filtered: events per camera removed by the background-activity filter.
        repaired: events per camera that were out of order and were moved by the repair.
        max_backward_jump_us: per camera, the largest backward timestamp jump among the kept
            events (how far an event lay behind the latest earlier one; 0 = in order).
        ignored_records: APS/IMU records (bit 31) in the file, not converted.
        specials: number of special events.
        start_us: start of the Vicon interval in the file's (unwrapped) time.
        stop_us: its stop.
        num_labels: Vicon samples written.
    """

    path: Path
    events_kept: tuple[int, ...]
    dropped_outside: tuple[int, ...]
    stray_dropped: tuple[int, ...]
    stray_bad_camera: int
    hot_pixel_filtered: tuple[int, ...]
    background_filtered: tuple[int, ...]
    repaired: tuple[int, ...]
    max_backward_jump_us: tuple[int, ...]
    ignored_records: int
    specials: int
    start_us: int
    stop_us: int
    num_labels: int


@dataclass(frozen=True)
class _CameraEvents:
    events: Events
    in_window: int
    dropped_outside: int
    hot_pixel_filtered: int
    background_filtered: int
    repaired: int
    max_backward_jump_us: int


@dataclass(frozen=True)
class _StreamEnds:
    """Timestamps (unwrapped) of the good polarity events: file-order ends and extremes."""

    first: int
    last: int
    earliest: int
    latest: int


@dataclass(frozen=True)
class _Strays:
    good: IntpArray  # record indices of the polarity events kept
    off_sensor: tuple[int, ...]  # per camera
    bad_camera: int


def convert_recording(
    aedat: Path,
    vicon_mat: Path,
    p_dir: Path,
    out: Path,
    *,
    subject: int,
    session: int,
    movement: int,
    hot_pixel_filter: bool = False,
    background_filter: bool = False,
    hot_pixel_threshold: int = HOT_PIXEL_THRESHOLD,
    background_support_us: int = BACKGROUND_SUPPORT_US,
    max_repairable_jump_us: int = MAX_REPAIRABLE_JUMP_US,
    max_stray_fraction: float = MAX_STRAY_FRACTION,
) -> ConversionResult:
    """Convert one DHP19 recording into a native recording file (see the module docstring).

    Args:
        aedat: ``DVS_movies/S{s}/session{n}/mov{k}.aedat``.
        vicon_mat: ``Vicon_data/S{s}_{n}_{k}.mat``.
        p_dir: the ``P_matrices`` folder.
        out: the recording file to write (replaced if it exists).
        subject: DHP19 subject number, stored in the metadata.
        session: session number.
        movement: movement number within the session.
        hot_pixel_filter: remove hot pixels.
        background_filter: apply the background-activity filter.
        hot_pixel_threshold: a pixel with this many events or more in the recording is hot
            (at least 1).
        background_support_us: support window of the background-activity filter.
        max_repairable_jump_us: the largest per-camera backward timestamp jump that is repaired.
        max_stray_fraction: the recording is rejected if more than this fraction of its
            polarity events are stray (in ``[0, 1]``).

    Returns:
        The counts of what was kept, dropped, filtered and repaired.

    Raises:
        Dhp19Error: any problem with the input (see the readers and the module docstring) or a
            setting out of range; no file is left at ``out`` then (an existing one is left
            untouched).
        AedatError: the ``.aedat`` file is missing, unreadable or malformed (no file left).
        MatFileError: the Vicon file is not a readable MAT-file (no file left).
        RecordingError: the output cannot be written in the native format.
    """
    if hot_pixel_threshold < 1:
        raise Dhp19Error(f"hot_pixel_threshold must be >= 1, got {hot_pixel_threshold}")
    for arg, value in (
        ("background_support_us", background_support_us),
        ("max_repairable_jump_us", max_repairable_jump_us),
    ):
        if value < 0:
            raise Dhp19Error(f"{arg} must be >= 0, got {value}")
    if not 0.0 <= max_stray_fraction <= 1.0:
        raise Dhp19Error(f"max_stray_fraction must be in [0, 1], got {max_stray_fraction}")
    aedat, out = Path(aedat), Path(out)
    name = str(aedat)
    calibration = read_p_matrices(p_dir)
    joints = read_vicon_mat(vicon_mat)
    cameras = dhp19_cameras(calibration, joints)
    addresses, raw_t = read_aedat2(aedat)
    fields = decode_addresses(addresses)
    t = unwrap_timestamps(raw_t)

    polarity = np.flatnonzero(fields.is_polarity)
    if len(polarity) == 0:
        raise Dhp19Error(f"{name}: no polarity events")
    strays = _drop_strays(fields, polarity, max_stray_fraction, name)
    if len(strays.good) == 0:
        raise Dhp19Error(f"{name}: every polarity event is stray (off the sensor or camera > 3)")
    special_t = t[fields.is_special]
    good_t = t[strays.good]  # file order
    ends = _StreamEnds(
        first=int(good_t[0]),
        last=int(good_t[-1]),
        earliest=int(good_t.min()),
        latest=int(good_t.max()),
    )
    span = find_start_stop(special_t, ends.first, ends.last, len(joints), name)

    hot = hot_pixel_threshold if hot_pixel_filter else None
    background = background_support_us if background_filter else None
    per_camera = [
        _camera_events(
            fields,
            t,
            strays.good[fields.camera[strays.good] == c],
            span,
            name=f"{name} camera {c}",
            hot_pixel_threshold=hot,
            background_support_us=background,
            max_repairable_jump_us=max_repairable_jump_us,
        )
        for c in range(len(CAMERA_TO_MATRIX))
    ]
    in_window = sum(c.in_window for c in per_camera)
    if in_window == 0:
        raise Dhp19Error(
            f"{name}: no polarity event between start ({span.start_us} us) and stop "
            f"({span.stop_us} us)"
        )
    if sum(len(c.events) for c in per_camera) == 0:
        raise Dhp19Error(
            f"{name}: the filters removed all {in_window} events between start and stop"
        )

    labels_t = np.arange(len(joints), dtype=np.int64) * VICON_PERIOD_US
    extra = _metadata(
        aedat,
        Path(vicon_mat),
        calibration,
        cameras,
        joints,
        special_t,
        span,
        ends,
        per_camera,
        strays,
        _settings(hot, background, max_stray_fraction, max_repairable_jump_us),
    )
    meta = RecordingMeta(
        source="dhp19", subject=subject, session=session, movement=movement, extra=extra
    )
    with RecordingWriter(out, SENSOR_SIZE, cameras, meta) as writer:
        for c, cam in enumerate(per_camera):
            for lo in range(0, len(cam.events), _WRITE_CHUNK_EVENTS):
                writer.append_events(c, cam.events[lo : lo + _WRITE_CHUNK_EVENTS])
        writer.write_labels(labels_t, joints.astype(np.float32))
    return ConversionResult(
        path=out,
        events_kept=tuple(len(c.events) for c in per_camera),
        dropped_outside=tuple(c.dropped_outside for c in per_camera),
        stray_dropped=strays.off_sensor,
        stray_bad_camera=strays.bad_camera,
        hot_pixel_filtered=tuple(c.hot_pixel_filtered for c in per_camera),
        background_filtered=tuple(c.background_filtered for c in per_camera),
        repaired=tuple(c.repaired for c in per_camera),
        max_backward_jump_us=tuple(c.max_backward_jump_us for c in per_camera),
        ignored_records=int(np.count_nonzero(~fields.is_polarity & ~fields.is_special)),
        specials=len(special_t),
        start_us=span.start_us,
        stop_us=span.stop_us,
        num_labels=len(joints),
    )


def _drop_strays(
    fields: DecodedAddresses, polarity: IntpArray, max_fraction: float, name: str
) -> _Strays:
    """Drop polarity events off the sensor or of a camera id above 3; reject if too many."""
    width, height = SENSOR_SIZE
    camera = fields.camera[polarity]
    bad_camera = camera > MAX_CAMERA_ID
    off_sensor = ~bad_camera & ((fields.x[polarity] >= width) | (fields.y[polarity] >= height))
    stray = bad_camera | off_sensor
    count = int(np.count_nonzero(stray))
    if count > max_fraction * len(polarity):
        i = int(polarity[np.flatnonzero(stray)[0]])
        raise Dhp19Error(
            f"{name}: {count} of {len(polarity)} polarity events are stray (raw x > {width - 1}, "
            f"y > {height - 1} or camera id > {MAX_CAMERA_ID}; the first is event {i}: raw "
            f"x {int(fields.x[i])}, y {int(fields.y[i])}, camera id {int(fields.camera[i])}); "
            f"more than {max_fraction:.2%} means a corrupt file"
        )
    return _Strays(
        good=polarity[~stray],
        off_sensor=tuple(
            int(np.count_nonzero(off_sensor & (camera == c))) for c in range(MAX_CAMERA_ID + 1)
        ),
        bad_camera=int(np.count_nonzero(bad_camera)),
    )


def _camera_events(
    fields: DecodedAddresses,
    t: I64Array,
    records: IntpArray,
    span: StartStop,
    *,
    name: str,
    hot_pixel_threshold: int | None,
    background_support_us: int | None,
    max_repairable_jump_us: int,
) -> _CameraEvents:
    """One camera's events: cropped, then order checked and repaired, flipped, filtered, rebased."""
    tc = t[records]
    inside = (tc >= span.start_us) & (tc <= span.stop_us)
    records = records[inside]
    order, repaired, max_jump = repair_timestamp_order(
        t[records], tolerance_us=max_repairable_jump_us, name=name, record_index=records
    )
    records = records[order]
    tc = t[records]
    width, height = SENSOR_SIZE
    x = (width - 1) - fields.x[records].astype(np.int64)
    y = (height - 1) - fields.y[records].astype(np.int64)
    keep = np.ones(len(records), dtype=bool)
    hot = 0
    if hot_pixel_threshold is not None:
        keep = hot_pixel_mask(x, y, threshold=hot_pixel_threshold)
        hot = int(np.count_nonzero(~keep))
    background = 0
    if background_support_us is not None:
        kept = np.flatnonzero(keep)
        passed = background_activity_mask(
            x[kept], y[kept], tc[kept], support_us=background_support_us
        )
        keep[kept[~passed]] = False
        background = int(np.count_nonzero(~passed))
    events = make_events(x[keep], y[keep], tc[keep] - span.start_us, fields.p[records][keep])
    return _CameraEvents(
        events=events,
        in_window=len(records),
        dropped_outside=int(np.count_nonzero(~inside)),
        hot_pixel_filtered=hot,
        background_filtered=background,
        repaired=repaired,
        max_backward_jump_us=max_jump,
    )


def _settings(
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


def _metadata(
    aedat: Path,
    vicon: Path,
    calibration: PMatrices,
    cameras: list[CameraCalibration],
    joints: F64Array,
    special_t: I64Array,
    span: StartStop,
    ends: _StreamEnds,
    per_camera: list[_CameraEvents],
    strays: _Strays,
    settings: dict[str, Any],
) -> dict[str, Any]:
    """The JSON-serialisable facts kept in the recording's ``extra``."""
    hot, background = settings["hot_pixel_filter"], settings["background_filter"]
    return {
        "converter_version": settings["converter_version"],
        "aedat_file": aedat.name,
        "vicon_file": vicon.name,
        "start_us_raw": span.start_us,
        "stop_us_raw": span.stop_us,
        "start_stop_rule": span.rule,
        "stream_ends_us_raw": {
            "first_in_file": ends.first,
            "last_in_file": ends.last,
            "earliest": ends.earliest,
            "latest": ends.latest,
            "rule": STREAM_ENDS_RULE,
        },
        "special_events_us_raw": [int(v) for v in special_t],
        "label_rate_hz": 1_000_000 // VICON_PERIOD_US,
        "pixel_flip": "x = 345 - x_raw, y = 259 - y_raw; P = +-A @ P_raw, A = [[1,0,0],[0,-1,260],"
        "[0,0,1]] (DHP19 reference convention, unverified on real data)",
        "camera_to_matrix": {str(c): f"P{m}.npy" for c, m in enumerate(CAMERA_TO_MATRIX)},
        "P_raw": [calibration.P[m - 1].tolist() for m in CAMERA_TO_MATRIX],  # camera order
        "stray_events": {
            "dropped_off_sensor": list(strays.off_sensor),
            "dropped_bad_camera_id": strays.bad_camera,
            "max_fraction": settings["max_stray_fraction"],
        },
        "max_stray_fraction": settings["max_stray_fraction"],
        "max_repairable_jump_us": settings["max_repairable_jump_us"],
        "repaired_out_of_order": [c.repaired for c in per_camera],
        "max_backward_jump_us": [c.max_backward_jump_us for c in per_camera],
        "dropped_outside": [c.dropped_outside for c in per_camera],
        "hot_pixel_filter": None
        if hot is None
        else {**hot, "removed": [c.hot_pixel_filtered for c in per_camera]},
        "background_filter": None
        if background is None
        else {**background, "removed": [c.background_filtered for c in per_camera]},
        "cameras": [_label_diagnostics(cam.P, joints) for cam in cameras],
    }


def _label_diagnostics(P: F64Array, joints: F64Array) -> dict[str, float | None]:
    """Where the labels land in one camera: a quick check of calibration and flip."""
    points = joints.reshape(-1, 3)
    points = points[np.all(np.isfinite(points), axis=1)]
    if len(points) == 0:
        return {"labels_in_front_fraction": None, "labels_in_image_fraction": None}
    width, height = SENSOR_SIZE
    with np.errstate(all="ignore"):  # points on a camera's focal plane give w = 0: not inside
        homogeneous = np.concatenate([points, np.ones((len(points), 1))], axis=1) @ P.T
        w = homogeneous[:, 2]
        front = w > 0
        u, v = homogeneous[:, 0] / w, homogeneous[:, 1] / w
        inside = front & (u >= -0.5) & (u < width - 0.5) & (v >= -0.5) & (v < height - 0.5)
    return {
        "labels_in_front_fraction": float(np.mean(front)),
        "labels_in_image_fraction": float(np.mean(inside)),
    }


# ------------------------------------------------------------------------------ a whole root
@dataclass(frozen=True)
class Dhp19Recording:
    """One recording found in a DHP19 root."""

    subject: int
    session: int
    movement: int
    aedat: Path
    vicon_mat: Path

    @property
    def name(self) -> str:
        return f"S{self.subject}_session{self.session}_mov{self.movement}"


_RECORDING_PATTERN = "S{s}/session{n}/mov{k}.aedat"
_IGNORED_SHOWN = 4


def find_recordings(root: Path | str) -> list[Dhp19Recording]:
    """All ``DVS_movies/S{s}/session{n}/mov{k}.aedat`` under ``root``, sorted by (s, n, k).

    Args:
        root: the DHP19 root.

    Returns:
        One entry per ``.aedat`` file, with the Vicon file it needs (which may not exist).

    Raises:
        Dhp19Error: ``root`` is empty (``""``), missing or not a folder, ``root/DVS_movies`` is
            not a folder, or no file in it matches the pattern (the message lists a few
            ``.aedat`` files whose names do not match, such as ``Mov1.aedat``).
    """
    if isinstance(root, str) and root == "":
        raise Dhp19Error("the DHP19 root is an empty path")
    root = Path(root)
    if not root.exists():
        raise Dhp19Error(f"{root}: DHP19 root does not exist")
    if not root.is_dir():
        raise Dhp19Error(f"{root}: DHP19 root is not a directory")
    movies = root / "DVS_movies"
    if not movies.is_dir():
        raise Dhp19Error(f"{movies}: no DVS_movies folder in the DHP19 root")
    found = []
    for aedat in movies.glob("S*/session*/mov*.aedat"):
        match = _RECORDING_RE.match(aedat.relative_to(movies).as_posix())
        if match is None:
            continue
        s, n, k = (int(g) for g in match.groups())
        found.append(Dhp19Recording(s, n, k, aedat, root / "Vicon_data" / f"S{s}_{n}_{k}.mat"))
    if not found:
        raise Dhp19Error(f"{movies}: no recording found: {_ignored_aedat_files(movies)}")
    return sorted(found, key=lambda r: (r.subject, r.session, r.movement))


def _ignored_aedat_files(movies: Path) -> str:
    """Why nothing was found: the ``.aedat`` files (any case) whose names do not match."""
    names = sorted(
        p.relative_to(movies).as_posix()
        for p in movies.rglob("*")
        if p.suffix.lower() == ".aedat" and p.is_file()
    )
    if not names:
        return f"no .aedat file matches {_RECORDING_PATTERN} (there is no .aedat file at all)"
    shown = ", ".join(names[:_IGNORED_SHOWN])
    more = f" and {len(names) - _IGNORED_SHOWN} more" if len(names) > _IGNORED_SHOWN else ""
    return (
        f"no .aedat file matches {_RECORDING_PATTERN} (case-sensitive); ignored because of "
        f"their names: {shown}{more}"
    )


@dataclass(frozen=True)
class ConversionSummary:
    """What :func:`convert_dhp19` did.

    Attributes:
        converted: recordings written by this run.
        skipped: outputs that already existed, made with the same settings (filters,
            rejection thresholds) by the same :data:`CONVERTER_VERSION`, and were not redone.
        rejected: ``(recording name, reason)`` of each recording that could not be converted
            (or whose existing output was made with other settings or another converter
            version, or cannot be read), in (subject, session, movement) order.
        stale_temp_removed: temporary files of killed earlier runs removed from the output
            directory at the start.
    """

    converted: list[Path]
    skipped: list[Path]
    rejected: list[tuple[str, str]]
    stale_temp_removed: int = 0

    def format(self) -> str:
        """A short human summary, one line per rejection."""
        lines = [
            f"DHP19 conversion: {len(self.converted)} converted, {len(self.skipped)} skipped "
            f"(already converted), {len(self.rejected)} rejected"
        ]
        if self.stale_temp_removed:
            lines.append(
                f"  removed {self.stale_temp_removed} stale temporary file(s) of killed earlier "
                "runs"
            )
        lines += [f"  rejected {name}: {reason}" for name, reason in self.rejected]
        return "\n".join(lines)


@dataclass(frozen=True)
class _Task:
    recording: Dhp19Recording
    p_dir: Path
    out: Path
    hot_pixel_filter: bool
    background_filter: bool
    max_stray_fraction: float = MAX_STRAY_FRACTION
    max_repairable_jump_us: int = MAX_REPAIRABLE_JUMP_US


def _run_task(task: _Task) -> str | None:
    """Convert one recording; the reason of a rejection, or None. Runs in worker processes.

    Bad input (any :class:`~hybridpose.errors.HybridPoseError`), an ``OSError`` (disk full,
    permission) and a ``MemoryError`` become the recording's rejection reason; the atomic writer
    has left nothing behind then. Anything else is a bug and propagates.
    """
    rec = task.recording
    if not rec.vicon_mat.is_file():
        return f"no Vicon file {rec.vicon_mat}"
    try:
        convert_recording(
            rec.aedat,
            rec.vicon_mat,
            task.p_dir,
            task.out,
            subject=rec.subject,
            session=rec.session,
            movement=rec.movement,
            hot_pixel_filter=task.hot_pixel_filter,
            background_filter=task.background_filter,
            max_stray_fraction=task.max_stray_fraction,
            max_repairable_jump_us=task.max_repairable_jump_us,
        )
    except HybridPoseError as err:
        return str(err)
    except OSError as err:
        return f"system error ({describe_error(err)})"
    except MemoryError:
        return "out of memory while converting (MemoryError); try fewer --workers"
    return None


_MISSING = "not recorded"
_SETTING_LABELS = {
    "hot_pixel_filter": "hot-pixel filter",
    "background_filter": "background filter",
    "max_stray_fraction": "max stray fraction",
    "max_repairable_jump_us": "max repairable jump",
    "converter_version": "converter version",
}


def _stored_setting(extra: dict[str, Any], key: str) -> Any:
    """A setting as stored in ``extra`` (a filter's without its counts)."""
    if key not in extra:
        return _MISSING
    value = extra[key]
    if isinstance(value, dict):
        return {k: v for k, v in value.items() if k != "removed"}
    return value


def _describe_settings(settings: dict[str, Any]) -> str:
    parts = []
    for key, value in settings.items():
        label = _SETTING_LABELS[key]
        if value is None:
            parts.append(f"{label} off")
        elif isinstance(value, dict):
            parts.append(f"{label} " + ", ".join(f"{k}={v}" for k, v in sorted(value.items())))
        elif key == "max_repairable_jump_us" and value != _MISSING:
            parts.append(f"{label} {value} us")
        else:
            parts.append(f"{label} {value}")
    return "; ".join(parts)


def _existing_output_problem(out: Path, wanted: dict[str, Any]) -> str | None:
    """Why an existing output must not be skipped (other settings, unreadable), or None."""
    try:
        with Recording(out) as rec:
            extra = rec.meta.extra
    except (HybridPoseError, OSError) as err:
        return (
            f"{out} exists but cannot be read ({first_line(err)}); delete it or use another --out"
        )
    stored = {key: _stored_setting(extra, key) for key in wanted}
    differ = [key for key in wanted if stored[key] != wanted[key]]
    if differ:
        return (
            f"{out} exists with different settings (stored: "
            f"{_describe_settings({k: stored[k] for k in differ})}; requested: "
            f"{_describe_settings({k: wanted[k] for k in differ})}); delete it or use another "
            "--out"
        )
    return None


def _check_writable(out_dir: Path) -> None:
    """Create and delete one temporary file in ``out_dir``, or raise Dhp19Error."""
    try:
        with tempfile.NamedTemporaryFile(dir=out_dir, prefix=".hybridpose-probe-"):
            pass
    except OSError as err:
        reason = err.strerror or first_line(err)
        raise Dhp19Error(f"{out_dir}: not writable ({reason})") from None


def convert_dhp19(
    root: Path | str,
    out_dir: Path | str,
    *,
    workers: int = 1,
    hot_pixel_filter: bool = False,
    background_filter: bool = False,
    max_stray_fraction: float = MAX_STRAY_FRACTION,
    max_repairable_jump_us: int = MAX_REPAIRABLE_JUMP_US,
    progress: bool = True,
) -> ConversionSummary:
    """Convert every recording of a DHP19 root into ``out_dir/S{s}_session{n}_mov{k}.h5``.

    At the start, temporary files that killed earlier runs left in ``out_dir`` are removed
    (:func:`~hybridpose.io.recording.stale_temp_files`; the summary counts them). Outputs that
    exist already are skipped (delete them to redo) only if they were made with the settings
    asked for (filters and rejection thresholds) by the same :data:`CONVERTER_VERSION`; an
    existing output made with other settings, by another converter version (or one that
    stored none), or one that cannot be read, is rejected with the reason and left untouched.
    A recording that fails any check, or whose conversion meets an ``OSError`` or
    ``MemoryError``, is rejected with its reason and leaves no file; the others go on.

    With ``workers > 1``, a worker process killed from outside (typically by the kernel when
    memory runs out) breaks the process pool: the recordings already converted are kept, and
    each unfinished one is converted again alone, in a fresh one-worker pool; one whose worker
    is killed again is rejected ("worker process was killed (out of memory?)"). Temporary files
    that the killed workers left for this run's outputs are removed afterwards.

    Args:
        root: DHP19 root with ``DVS_movies/``, ``Vicon_data/`` and ``P_matrices/``.
        out_dir: where the recordings go (created if needed; must be writable).
        workers: processes converting in parallel, one recording each. They are spawned, so a
            script that calls this with ``workers > 1`` needs the usual
            ``if __name__ == "__main__":`` guard.
        hot_pixel_filter: remove hot pixels (10^4 or more events in a recording).
        background_filter: apply the 70 ms background-activity filter of the DHP19 reference.
        max_stray_fraction: reject a recording with more than this fraction of stray polarity
            events (in ``[0, 1]``; see :func:`convert_recording`).
        max_repairable_jump_us: the largest per-camera backward timestamp jump that is
            repaired; a larger one rejects the recording (``>= 0``).
        progress: show a progress bar over the recordings.

    Returns:
        The converted, skipped and rejected recordings, in (subject, session, movement) order.

    Raises:
        Dhp19Error: ``root`` or ``out_dir`` is an empty path; ``root``, ``DVS_movies``,
            ``Vicon_data`` or ``P_matrices`` is missing (or not a folder); no ``.aedat`` file
            matches ``S{s}/session{n}/mov{k}.aedat``; the calibration is malformed; ``out_dir``
            exists and is not a directory, cannot be created or is not writable; a setting is
            out of range.
    """
    if isinstance(out_dir, str) and out_dir == "":
        raise Dhp19Error("the output directory is an empty path")
    if workers < 1:
        raise Dhp19Error(f"workers must be at least 1, got {workers}")
    if not 0.0 <= max_stray_fraction <= 1.0:
        raise Dhp19Error(f"max_stray_fraction must be in [0, 1], got {max_stray_fraction}")
    if max_repairable_jump_us < 0:
        raise Dhp19Error(f"max_repairable_jump_us must be >= 0, got {max_repairable_jump_us}")
    recordings = find_recordings(root)
    root, out_dir = Path(root), Path(out_dir)
    vicon_dir = root / "Vicon_data"
    if not vicon_dir.is_dir():
        raise Dhp19Error(f"{vicon_dir}: no Vicon_data folder in the DHP19 root")
    p_dir = root / "P_matrices"
    read_p_matrices(p_dir)  # fail once here, not once per recording
    if out_dir.exists() and not out_dir.is_dir():
        raise Dhp19Error(f"{out_dir}: output path exists and is not a directory")
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise Dhp19Error(
            f"{out_dir}: cannot create the output directory ({describe_error(err)})"
        ) from None
    _check_writable(out_dir)
    stale_removed = remove_stale_temp_files(out_dir)

    wanted = _settings(
        HOT_PIXEL_THRESHOLD if hot_pixel_filter else None,
        BACKGROUND_SUPPORT_US if background_filter else None,
        max_stray_fraction,
        max_repairable_jump_us,
    )
    skipped: list[Path] = []
    reasons: dict[int, str] = {}  # position in `recordings` -> why it was rejected
    tasks: list[_Task] = []
    positions: list[int] = []  # of each task's recording
    for i, rec in enumerate(recordings):
        out = out_dir / f"{rec.name}.h5"
        if out.exists():
            problem = _existing_output_problem(out, wanted)
            if problem is None:
                skipped.append(out)
            else:
                reasons[i] = problem
        else:
            tasks.append(
                _Task(
                    rec,
                    p_dir,
                    out,
                    hot_pixel_filter,
                    background_filter,
                    max_stray_fraction,
                    max_repairable_jump_us,
                )
            )
            positions.append(i)

    with tqdm(total=len(tasks), disable=not progress, desc="DHP19", unit="rec") as bar:
        if workers == 1 or len(tasks) <= 1:
            outcomes = []
            for task in tasks:
                outcomes.append(_run_task(task))
                bar.update(1)
        else:
            outcomes = map_in_processes(
                _run_task, tasks, min(workers, len(tasks)), bar, KILLED_REASON
            )
            remove_stale_temp_files(out_dir, {task.out.name for task in tasks})

    converted = []
    for task, i, why in zip(tasks, positions, outcomes, strict=True):
        if why is None:
            converted.append(task.out)
        else:
            reasons[i] = why
    rejected = [(recordings[i].name, reasons[i]) for i in sorted(reasons)]
    return ConversionSummary(
        converted=converted, skipped=skipped, rejected=rejected, stale_temp_removed=stale_removed
    )


KILLED_REASON = "worker process was killed (out of memory?)"
"""The rejection of a recording whose worker process died even when converting it alone."""


__all__ = [
    "CAMERA_TO_MATRIX",
    "CONVERTER_VERSION",
    "FLIP_A",
    "JOINT_NAMES",
    "KILLED_REASON",
    "MAX_REPAIRABLE_JUMP_US",
    "MAX_STRAY_FRACTION",
    "SENSOR_SIZE",
    "ConversionResult",
    "ConversionSummary",
    "DecodedAddresses",
    "Dhp19Error",
    "Dhp19Recording",
    "PMatrices",
    "StartStop",
    "background_activity_mask",
    "convert_dhp19",
    "convert_recording",
    "decode_addresses",
    "dhp19_cameras",
    "find_recordings",
    "find_start_stop",
    "hot_pixel_mask",
    "read_p_matrices",
    "read_vicon_mat",
    "repair_timestamp_order",
    "unwrap_timestamps",
]
