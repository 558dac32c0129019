"""Convert one DHP19 recording (an ``.aedat`` file and its Vicon labels) into a native file.

Steps 1-9 of :mod:`hybridpose.io.dhp19`, for one recording.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from hybridpose.events import Events, make_events
from hybridpose.io.aedat import read_aedat2
from hybridpose.io.dhp19.addresses import DecodedAddresses, decode_addresses
from hybridpose.io.dhp19.calibration import (
    CameraPositionCheck,
    PMatrices,
    check_camera_positions,
    dhp19_cameras,
    log_camera_position_warnings,
    read_p_matrices,
)
from hybridpose.io.dhp19.common import (
    BACKGROUND_SUPPORT_US,
    CAMERA_POSITION_TOLERANCE_MM,
    CAMERA_TO_MATRIX,
    DEFAULT_BACKGROUND_STAMPS,
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
    F64Array,
    I64Array,
    IntpArray,
    check_background_stamps,
    check_camera_position_tolerance,
    output_settings,
)
from hybridpose.io.dhp19.filters import background_activity_mask, hot_pixel_mask
from hybridpose.io.dhp19.labels import read_vicon_mat
from hybridpose.io.dhp19.timing import (
    StartStop,
    check_end_gap,
    find_start_stop,
    repair_timestamp_order,
    unwrap_timestamps,
)
from hybridpose.io.recording import CameraCalibration, RecordingMeta, RecordingWriter

_WRITE_CHUNK_EVENTS = 1 << 20


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
        end_gap_us: time from the latest polarity event inside the interval (any camera,
            before the filters) to the stop (see :func:`~hybridpose.io.dhp19.check_end_gap`).
        camera_position_distance_mm: per camera, the distance in mm from its row of
            ``camera_positions.npy`` to the centre of its ``P`` matrix (see
            :func:`~hybridpose.io.dhp19.check_camera_positions`).
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
    end_gap_us: int
    camera_position_distance_mm: tuple[float, ...]


@dataclass(frozen=True)
class _CameraEvents:
    events: Events
    in_window: int
    last_in_window_us: int | None  # latest timestamp inside [start, stop], before the filters
    dropped_outside: int
    dropped_before_start: int
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
    background_stamps: BackgroundStamps = DEFAULT_BACKGROUND_STAMPS,
    max_repairable_jump_us: int = MAX_REPAIRABLE_JUMP_US,
    max_stray_fraction: float = MAX_STRAY_FRACTION,
    max_end_gap_us: int = MAX_END_GAP_US,
    max_end_gap_fraction: float = MAX_END_GAP_FRACTION,
    camera_position_tolerance_mm: float = CAMERA_POSITION_TOLERANCE_MM,
    warn_camera_positions: bool = True,
) -> ConversionResult:
    """Convert one DHP19 recording into a native recording file (see :mod:`hybridpose.io.dhp19`).

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
        background_stamps: which pixels an event stamps in the background-activity filter:
            ``"neighbours"`` (the reference's current rule, default) or ``"neighbours-and-self"``
            (its June 2019 rule); see :data:`~hybridpose.io.dhp19.common.BackgroundStamps`.
        max_repairable_jump_us: the largest per-camera backward timestamp jump that is repaired.
        max_stray_fraction: the recording is rejected if more than this fraction of its
            polarity events are stray (in ``[0, 1]``).
        max_end_gap_us: the longest end gap accepted, in us (``>= 0``).
        max_end_gap_fraction: the longest end gap accepted, as a fraction of ``stop - start``
            (in ``[0, 1]``). The recording is rejected as truncated if its latest polarity event
            inside ``[start, stop]`` lies before the stop by more than the smaller of the two
            limits (see :data:`~hybridpose.io.dhp19.MAX_END_GAP_FRACTION`).
        camera_position_tolerance_mm: a camera whose row of ``camera_positions.npy`` lies
            farther than this (mm, ``>= 0``) from the centre of its ``P`` matrix is warned about
            (see :data:`~hybridpose.io.dhp19.CAMERA_POSITION_TOLERANCE_MM`); the distances are
            stored in ``extra["camera_positions"]`` whatever it is.
        warn_camera_positions: log those warnings
            (:func:`~hybridpose.io.dhp19.log_camera_position_warnings`);
            :func:`~hybridpose.io.dhp19.convert_dhp19` checks the calibration once per run and
            turns this off for each recording.

    Returns:
        The counts of what was kept, dropped, filtered and repaired.

    Raises:
        Dhp19Error: any problem with the input (see the readers and the package docstring) or a
            setting out of range; no file is left at ``out`` then (an existing one is left
            untouched).
        AedatError: the ``.aedat`` file is missing, unreadable or malformed (no file left).
        MatFileError: the Vicon file is not a readable MAT-file (no file left).
        RecordingError: the output cannot be written in the native format.
    """
    _check_settings(
        hot_pixel_threshold=hot_pixel_threshold,
        background_support_us=background_support_us,
        background_stamps=background_stamps,
        max_repairable_jump_us=max_repairable_jump_us,
        max_end_gap_us=max_end_gap_us,
        max_stray_fraction=max_stray_fraction,
        max_end_gap_fraction=max_end_gap_fraction,
        camera_position_tolerance_mm=camera_position_tolerance_mm,
    )
    aedat, out = Path(aedat), Path(out)
    name = str(aedat)
    calibration = read_p_matrices(p_dir)
    positions = check_camera_positions(calibration, p_dir, camera_position_tolerance_mm)
    if warn_camera_positions:
        log_camera_position_warnings(positions)
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
            background_stamps=background_stamps,
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
    last_event = max(c.last_in_window_us for c in per_camera if c.last_in_window_us is not None)
    end_gap = check_end_gap(
        span,
        last_event,
        max_gap_us=max_end_gap_us,
        max_gap_fraction=max_end_gap_fraction,
        name=name,
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
        end_gap,
        positions,
        output_settings(
            hot,
            background,
            max_stray_fraction,
            max_repairable_jump_us,
            max_end_gap_us,
            max_end_gap_fraction,
            background_stamps,
        ),
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
        end_gap_us=end_gap,
        camera_position_distance_mm=tuple(float(d) for d in positions.distances_mm),
    )


def _check_settings(
    *,
    hot_pixel_threshold: int,
    background_support_us: int,
    background_stamps: str,
    max_repairable_jump_us: int,
    max_end_gap_us: int,
    max_stray_fraction: float,
    max_end_gap_fraction: float,
    camera_position_tolerance_mm: float,
) -> None:
    """Reject a setting of :func:`convert_recording` out of range (Dhp19Error)."""
    if hot_pixel_threshold < 1:
        raise Dhp19Error(f"hot_pixel_threshold must be >= 1, got {hot_pixel_threshold}")
    check_background_stamps(background_stamps)
    check_camera_position_tolerance(camera_position_tolerance_mm)
    for arg, value in (
        ("background_support_us", background_support_us),
        ("max_repairable_jump_us", max_repairable_jump_us),
        ("max_end_gap_us", max_end_gap_us),
    ):
        if value < 0:
            raise Dhp19Error(f"{arg} must be >= 0, got {value}")
    for arg, fraction in (
        ("max_stray_fraction", max_stray_fraction),
        ("max_end_gap_fraction", max_end_gap_fraction),
    ):
        if not 0.0 <= fraction <= 1.0:
            raise Dhp19Error(f"{arg} must be in [0, 1], got {fraction}")


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
    background_stamps: BackgroundStamps,
    max_repairable_jump_us: int,
) -> _CameraEvents:
    """One camera's events: cropped, then order checked and repaired, flipped, filtered, rebased."""
    tc = t[records]
    inside = (tc >= span.start_us) & (tc <= span.stop_us)
    before = int(np.count_nonzero(tc < span.start_us))
    records = records[inside]
    last_in_window = int(t[records].max()) if len(records) else None
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
            x[kept], y[kept], tc[kept], support_us=background_support_us, stamps=background_stamps
        )
        keep[kept[~passed]] = False
        background = int(np.count_nonzero(~passed))
    events = make_events(x[keep], y[keep], tc[keep] - span.start_us, fields.p[records][keep])
    return _CameraEvents(
        events=events,
        in_window=len(records),
        last_in_window_us=last_in_window,
        dropped_outside=int(np.count_nonzero(~inside)),
        dropped_before_start=before,
        hot_pixel_filtered=hot,
        background_filtered=background,
        repaired=repaired,
        max_backward_jump_us=max_jump,
    )


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
    end_gap_us: int,
    positions: CameraPositionCheck,
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
        "end_gap_limit": settings["end_gap_limit"],
        "end_gap_us": end_gap_us,
        "repaired_out_of_order": [c.repaired for c in per_camera],
        "max_backward_jump_us": [c.max_backward_jump_us for c in per_camera],
        "dropped_outside": [c.dropped_outside for c in per_camera],
        "dropped_before_start": [c.dropped_before_start for c in per_camera],
        "dropped_after_stop": [c.dropped_outside - c.dropped_before_start for c in per_camera],
        "hot_pixel_filter": None
        if hot is None
        else {**hot, "removed": [c.hot_pixel_filtered for c in per_camera]},
        "background_filter": None
        if background is None
        else {**background, "removed": [c.background_filtered for c in per_camera]},
        "cameras": [_label_diagnostics(cam.P, joints) for cam in cameras],
        "camera_positions": positions.metadata(),
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
