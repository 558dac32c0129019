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
   timestamps; the dropped ones are counted per camera in ``extra["dropped_before_start"]``,
   ``extra["dropped_after_stop"]`` and their sum ``extra["dropped_outside"]``); only then is
   the order of what is kept checked: an event more than :data:`MAX_REPAIRABLE_JUMP_US`
   (``max_repairable_jump_us``) behind the latest earlier kept event of its camera rejects the
   recording (naming the event index and the jump), smaller disorder is repaired with a stable
   sort and counted, and the largest backward jump is recorded (``max_backward_jump_us``). So
   a glitch in events that are dropped anyway costs nothing. Times are rebased so that
   ``start = 0`` and Vicon sample ``k`` is at ``k * 10 000 us``.
   **Truncation at a record boundary.** A file cut between two records reads as a whole number
   of records; its stop special is gone, so the stop is derived from the Vicon length and the
   labels run on past the last event. The *end gap*, from the latest polarity event inside
   ``[start, stop]`` (any camera, before the filters) to the stop, is therefore checked
   (:func:`check_end_gap`): longer than the smaller of :data:`MAX_END_GAP_US` (1 s,
   ``max_end_gap_us``) and :data:`MAX_END_GAP_FRACTION` (10 % of ``stop - start``,
   ``max_end_gap_fraction``) rejects the recording, naming the gap and the times. Four cameras
   together fire thousands of events per second even on a still scene, so a genuine recording's
   gap is far below that. The gap is stored in ``extra["end_gap_us"]``, the limit in
   ``extra["end_gap_limit"]``.
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
   DHP19 reference (:func:`background_activity_mask`) on what the hot-pixel filter kept. By
   default that filter follows the reference's current BackgroundFilter.m (since commit
   3395890, 2019-10-04: an event stamps its 8 neighbours, not its own pixel); its June 2019 rule
   (its own pixel too) is the option ``background_stamps="neighbours-and-self"``
   (:data:`BackgroundStamps`). The filter settings (the rule included), the rejection
   thresholds and :data:`CONVERTER_VERSION` are stored in ``extra``; :func:`convert_dhp19` skips
   an existing output only if all of them are the ones of the current run.
7. **Vicon labels** (struct ``XYZPOS``, 13 fields of (N, 3) mm, NaN = missing) are read by the
   small bounds-checked MAT-file reader :func:`hybridpose.io.mat5.read_mat5_struct`, because
   ``scipy.io.loadmat`` crashes the process on some damaged files.
8. **Camera mapping** used by the DHP19 notebooks: event camera 0 -> P4, 1 -> P1, 2 -> P3,
   3 -> P2; the two front cameras are those of P2 and P3 (event cameras 3 and 2).
9. **Camera positions.** Each camera's row of ``camera_positions.npy`` (the reference
   notebook's ray origins for triangulation, stored as the output cameras' ``center``) is
   compared with the centre of its ``P`` matrix (P's null vector, :func:`p_matrix_center`);
   the distances are stored in ``extra["camera_positions"]``, and a camera farther than
   :data:`CAMERA_POSITION_TOLERANCE_MM` (10 mm, ``camera_position_tolerance_mm``) is warned
   about, naming the file and the camera (:func:`log_camera_position_warnings`).

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
  an inner tile edge stamps into the neighbouring camera's tile. (Which pixels an event stamps
  follows the reference: its current rule by default, its June 2019 rule as an option.)
- **Stray events** are dropped like the reference does, but a file with more than
  ``max_stray_fraction`` of them is rejected: a threshold of our own (the reference has none).
- **Timestamp disorder.** The reference neither sorts nor checks the order; the repair of
  lags up to ``max_repairable_jump_us`` and the rejection beyond it are ours.
- **End gap.** The reference converts a recording whose events end long before its stop; the
  rejection as truncated (``max_end_gap_us``, ``max_end_gap_fraction``) is ours.
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

from hybridpose.io.dhp19.addresses import DecodedAddresses, decode_addresses, encode_addresses
from hybridpose.io.dhp19.batch import (
    KILLED_REASON,
    ConversionSummary,
    Dhp19Recording,
    convert_dhp19,
    find_recordings,
)
from hybridpose.io.dhp19.calibration import (
    FLIP_A,
    CameraPositionCheck,
    PMatrices,
    check_camera_positions,
    dhp19_cameras,
    log_camera_position_warnings,
    p_matrix_center,
    read_p_matrices,
    write_p_matrices,
)
from hybridpose.io.dhp19.common import (
    BACKGROUND_FILTER_RULE,
    BACKGROUND_STAMPS,
    BACKGROUND_SUPPORT_US,
    CAMERA_POSITION_TOLERANCE_MM,
    CAMERA_TO_MATRIX,
    CONVERTER_VERSION,
    DEFAULT_BACKGROUND_STAMPS,
    HOT_PIXEL_RULE,
    HOT_PIXEL_THRESHOLD,
    MAX_CAMERA_ID,
    MAX_END_GAP_FRACTION,
    MAX_END_GAP_US,
    MAX_REPAIRABLE_JUMP_US,
    MAX_STRAY_FRACTION,
    SENSOR_SIZE,
    STREAM_ENDS_RULE,
    VICON_PERIOD_US,
    BackgroundStamps,
    Dhp19Error,
)
from hybridpose.io.dhp19.convert import ConversionResult, convert_recording
from hybridpose.io.dhp19.filters import background_activity_mask, hot_pixel_mask
from hybridpose.io.dhp19.labels import MAX_COORDINATE_MM, read_vicon_mat
from hybridpose.io.dhp19.timing import (
    WRAP_US,
    StartStop,
    check_end_gap,
    find_start_stop,
    repair_timestamp_order,
    unwrap_timestamps,
)
from hybridpose.joints import JOINT_NAMES

__all__ = [
    "BACKGROUND_FILTER_RULE",
    "BACKGROUND_STAMPS",
    "BACKGROUND_SUPPORT_US",
    "CAMERA_POSITION_TOLERANCE_MM",
    "CAMERA_TO_MATRIX",
    "CONVERTER_VERSION",
    "DEFAULT_BACKGROUND_STAMPS",
    "FLIP_A",
    "HOT_PIXEL_RULE",
    "HOT_PIXEL_THRESHOLD",
    "JOINT_NAMES",
    "KILLED_REASON",
    "MAX_CAMERA_ID",
    "MAX_COORDINATE_MM",
    "MAX_END_GAP_FRACTION",
    "MAX_END_GAP_US",
    "MAX_REPAIRABLE_JUMP_US",
    "MAX_STRAY_FRACTION",
    "SENSOR_SIZE",
    "STREAM_ENDS_RULE",
    "VICON_PERIOD_US",
    "WRAP_US",
    "BackgroundStamps",
    "CameraPositionCheck",
    "ConversionResult",
    "ConversionSummary",
    "DecodedAddresses",
    "Dhp19Error",
    "Dhp19Recording",
    "PMatrices",
    "StartStop",
    "background_activity_mask",
    "check_camera_positions",
    "check_end_gap",
    "convert_dhp19",
    "convert_recording",
    "decode_addresses",
    "dhp19_cameras",
    "encode_addresses",
    "find_recordings",
    "find_start_stop",
    "hot_pixel_mask",
    "log_camera_position_warnings",
    "p_matrix_center",
    "read_p_matrices",
    "read_vicon_mat",
    "repair_timestamp_order",
    "unwrap_timestamps",
    "write_p_matrices",
]
