"""Tests of the DHP19 converter against hand-computed answers and the fake DHP19.

The fake download (tests/dhp19_fixture.py) builds its cameras, events and labels with its own
arithmetic and writes them with hybridpose's raw-layout writers, which are checked on their own
against hand-computed bytes and independent readers (tests/test_dhp19_raw.py, test_aedat.py,
test_mat5.py).
"""

from __future__ import annotations

import argparse
import errno
import logging
import os
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from dhp19_fixture import (
    DIE_FOR_RECORDING,
    FLIP,
    JOINTS,
    MATRIX_OF_CAMERA,
    RAISE_FOR_RECORDING,
    START_RAW_US,
    FakeDhp19,
    FakeRecording,
    fake_cameras,
    make_fake_dhp19,
    make_fake_recording,
    mat5_bytes_by_hand,
    move_camera_position,
    project,
    skeleton,
    truncate_aedat2,
    worker_task_that_dies,
    write_vicon_mat,
)
from dhp19_fixture import main as fixture_main
from fuzzing import FUZZ, SPECIAL, VALID_AEDAT, flip_bits
from hypothesis import given, settings
from hypothesis import strategies as st

from hybridpose import cli
from hybridpose.errors import HybridPoseError
from hybridpose.events import validate_events
from hybridpose.io import dhp19
from hybridpose.io.aedat import AedatError, aedat2_bytes, write_aedat2
from hybridpose.io.dhp19 import (
    BackgroundStamps,
    ConversionResult,
    ConversionSummary,
    Dhp19Error,
    StartStop,
    background_activity_mask,
    check_end_gap,
    convert_dhp19,
    convert_recording,
    decode_addresses,
    encode_addresses,
    find_recordings,
    find_start_stop,
    hot_pixel_mask,
    read_p_matrices,
    read_vicon_mat,
    repair_timestamp_order,
    unwrap_timestamps,
    write_p_matrices,
)
from hybridpose.io.dhp19 import batch as dhp19_batch
from hybridpose.io.dhp19 import common as dhp19_common
from hybridpose.io.mat5 import MatFileError
from hybridpose.io.recording import CameraCalibration, Recording, RecordingMeta, RecordingWriter


# ------------------------------------------------------------------------------- helpers
@pytest.fixture(scope="module")
def p_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_p_matrices(tmp_path_factory.mktemp("calib") / "P_matrices", fake_cameras())


@pytest.fixture(scope="module")
def fake(tmp_path_factory: pytest.TempPathFactory) -> FakeDhp19:
    return make_fake_dhp19(tmp_path_factory.mktemp("dhp19"), events_per_camera=600)


@pytest.fixture(scope="module")
def fake_converted(fake: FakeDhp19, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("converted")
    summary = convert_dhp19(fake.root, out, progress=False)
    assert len(summary.converted) == 2
    return out


def ev(x: int, y: int, t: int, on: bool = True, cam: int = 0) -> tuple[int, int]:
    return int(encode_addresses(x, y, on, cam)), t


def sp(t: int) -> tuple[int, int]:
    return SPECIAL, t


def tiny(folder: Path, rows: list[tuple[int, int]], n_labels: int = 10) -> tuple[Path, Path]:
    """A hand-made recording: ``rows`` of (address, timestamp) and ``n_labels`` Vicon samples."""
    aedat = write_aedat2(folder / "mov1.aedat", [a for a, _ in rows], [t for _, t in rows])
    mat = write_vicon_mat(folder / "S1_1_1.mat", skeleton(n_labels, 1))
    return aedat, mat


def convert(aedat: Path, mat: Path, p_dir: Path, out: Path, **kw: object) -> ConversionResult:
    """:func:`convert_recording` of S1 session1 mov1, by default without the end-gap check.

    The hand-made recordings hold a few events at the start of a longer Vicon interval, which
    the end-gap check (tested on its own below) would take for a truncated file.
    """
    kw.setdefault("max_end_gap_fraction", 1.0)
    kw.setdefault("max_end_gap_us", 1 << 62)
    return convert_recording(
        aedat,
        mat,
        p_dir,
        out,
        subject=1,
        session=1,
        movement=1,
        **kw,  # type: ignore[arg-type]
    )


def all_events(path: Path, camera: int) -> np.ndarray:
    with Recording(path) as rec:
        return rec.events_slice(camera, 0, rec.cameras[camera].num_events)


def leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir()) if folder.exists() else []


# ---------------------------------------------------------------------------------- errors
def test_error_types() -> None:
    # the batch converter rejects a recording on any HybridPoseError, the readers' included
    for error in (Dhp19Error, AedatError, MatFileError):
        assert issubclass(error, HybridPoseError) and issubclass(error, ValueError)


def test_joint_order_is_the_shared_one_and_matches_the_fixture() -> None:
    from hybridpose.joints import JOINT_NAMES

    assert dhp19.JOINT_NAMES is JOINT_NAMES  # one list in hybridpose, not a copy
    assert JOINT_NAMES == JOINTS  # the fixture's independent statement of DHP19's order


def test_array_dataclasses_compare_by_identity(p_dir: Path) -> None:
    # generated __eq__ on array fields raises "truth value of an array is ambiguous"
    d = decode_addresses([1, 2])
    assert d == d and d != decode_addresses([1, 2])
    calib = read_p_matrices(p_dir)
    assert calib == calib and calib != read_p_matrices(p_dir)


# ------------------------------------------------------------------------------- addresses
def test_decode_hand_computed_addresses() -> None:
    # y=7 (7 << 22 = 0x01C00000), x=5 (5 << 12 = 0x5000), ON (0x800), camera 2
    d = decode_addresses(np.array([0x01C05802, 0x01C05002, 0x7FFFF00F], dtype=np.uint32))
    assert d.x.tolist() == [5, 5, 1023]
    assert d.y.tolist() == [7, 7, 511]
    assert d.p.tolist() == [1, -1, -1]
    assert d.camera.tolist() == [2, 2, 15]
    assert d.is_polarity.tolist() == [True, True, True]
    assert not d.is_special.any()


def test_decode_event_kinds() -> None:
    d = decode_addresses([0x00000400, 0x80000000, 0x80000400, 0x00000C03])
    assert d.is_special.tolist() == [True, False, False, True]
    assert d.is_polarity.tolist() == [False, False, False, False]
    assert d.camera.tolist()[3] == 3


@settings(max_examples=30, deadline=None)
@given(
    st.lists(
        st.tuples(st.integers(0, 1023), st.integers(0, 511), st.booleans(), st.integers(0, 15)),
        min_size=1,
        max_size=20,
    )
)
def test_decode_inverts_the_encoder(fields: list[tuple[int, int, bool, int]]) -> None:
    d = decode_addresses(encode_addresses(*zip(*fields, strict=True)))
    assert d.x.tolist() == [f[0] for f in fields]
    assert d.y.tolist() == [f[1] for f in fields]
    assert d.p.tolist() == [1 if f[2] else -1 for f in fields]
    assert d.camera.tolist() == [f[3] for f in fields]
    assert d.is_polarity.all()


# ------------------------------------------------------------------------------------ time
def test_unwrap_one_wrap() -> None:
    assert unwrap_timestamps([4294967290, 5, 20]).tolist() == [4294967290, 4294967301, 4294967316]


def test_unwrap_two_wraps_and_small_backward_steps() -> None:
    w = 1 << 32
    h = 1 << 31
    raw = [w - 10, 3, 2, h, w - 5, 7]
    assert unwrap_timestamps(raw).tolist() == [w - 10, w + 3, w + 2, w + h, 2 * w - 5, 2 * w + 7]


def test_unwrap_late_record_from_before_a_wrap() -> None:
    w = 1 << 32
    assert unwrap_timestamps([w - 10, 3, w - 5, 8]).tolist() == [w - 10, w + 3, w - 5, w + 8]


def test_unwrap_short_inputs() -> None:
    assert unwrap_timestamps([]).tolist() == []
    assert unwrap_timestamps([5]).tolist() == [5]
    assert unwrap_timestamps([100, 50]).tolist() == [100, 50]


def test_repair_sorts_small_disorder_and_counts_lagging_events() -> None:
    t = np.array([0, 100, 50, 60, 200], dtype=np.int64)  # lags 0, 0, 50, 40, 0
    order, moved, max_lag = repair_timestamp_order(t, tolerance_us=1000)
    assert order.tolist() == [0, 2, 3, 1, 4]
    assert moved == 2
    assert max_lag == 50


def test_repair_accepts_a_lag_of_exactly_the_tolerance() -> None:
    t = np.array([1000, 0], dtype=np.int64)
    order, moved, max_lag = repair_timestamp_order(t, tolerance_us=1000)
    assert order.tolist() == [1, 0] and moved == 1 and max_lag == 1000


def test_repair_rejects_a_large_jump_naming_event_and_jump() -> None:
    t = np.array([0, 5000, 2000], dtype=np.int64)
    with pytest.raises(Dhp19Error, match=r"cam X: .*back by 3000 us at event 42"):
        repair_timestamp_order(
            t, tolerance_us=1000, name="cam X", record_index=np.array([40, 41, 42])
        )


def test_repair_of_sorted_input_is_identity() -> None:
    order, moved, max_lag = repair_timestamp_order(np.array([1, 1, 2], dtype=np.int64))
    assert order.tolist() == [0, 1, 2] and moved == 0 and max_lag == 0
    order, moved, max_lag = repair_timestamp_order(np.zeros(0, dtype=np.int64))
    assert order.tolist() == [] and moved == 0 and max_lag == 0


# ----------------------------------------------------------------------------- start/stop
# event stream from 0 to 10_000_000 us, 50 Vicon samples = 500_000 us
@pytest.mark.parametrize(
    ("specials", "start", "stop"),
    [
        ([1_000_000], 1_000_000, 1_500_000),  # 1: near the start -> start
        ([9_000_000], 8_500_000, 9_000_000),  # 1: nearer the end -> stop
        ([1_000_000, 1_400_000], 1_000_000, 1_500_000),  # 2: second ignored
        ([6_000_000, 6_100_000], 5_500_000, 6_000_000),  # 2: first nearer the end -> stop
        ([5_000_000, 6_000_000], 5_000_000, 5_500_000),  # tie -> start
        ([1_000_000, 2_000_000, 3_000_000], 1_000_000, 3_000_000),  # 3: first and last
        ([1, 2, 3, 4], 1, 500_001),  # 4: like 1 and 2
        ([1, 2, 3, 4, 7_000_000], 1, 7_000_000),  # 5: first and last
        ([], 0, 10_000_000),  # 0: first and last polarity event (Generate_DHP19.m)
    ],
)
def test_start_stop_rules(specials: list[int], start: int, stop: int) -> None:
    span = find_start_stop(specials, 0, 10_000_000, 50, "f")
    assert (span.start_us, span.stop_us) == (start, stop)
    assert span.rule.startswith(f"{len(specials)} specials")


def test_no_special_event_uses_first_and_last_event() -> None:
    span = find_start_stop([], 123, 4567, 5, "f")
    assert (span.start_us, span.stop_us) == (123, 4567)
    assert span.rule == "0 specials: first and last event"
    single = find_start_stop([], 7, 7, 5, "f")  # one event: an interval of length 0
    assert (single.start_us, single.stop_us) == (7, 7)
    with pytest.raises(Dhp19Error, match=r"f: no special event and the last polarity event"):
        find_start_stop([], 10, 9, 5, "f")


def test_stream_ends_are_taken_as_given_not_sorted() -> None:
    # the caller passes the file-order ends; t_last may even lie before t_first (a file whose
    # last event is corrupt): the 1/2/4 rule compares distances to them as they are
    span = find_start_stop([900_000], 1_000_000, 0, 10, "f")  # |last - s| < |s - first|
    assert (span.start_us, span.stop_us) == (800_000, 900_000)
    assert span.rule == "1 specials: first = stop (nearer the end)"


def test_six_specials_are_corrupted() -> None:
    with pytest.raises(Dhp19Error, match=r"6 special events.*corrupted"):
        find_start_stop([1, 2, 3, 4, 5, 6], 0, 10, 5, "f")


def test_last_special_before_first_is_rejected() -> None:
    with pytest.raises(Dhp19Error, match="not after the first"):
        find_start_stop([30, 20, 10], 0, 100, 5, "f")


# -------------------------------------------------------------------------------- filters
def test_hot_pixel_mask_removes_pixels_with_threshold_events_or_more() -> None:
    # pixel (1, 0) has 4 events, (2, 0) has 3, (0, 3) has 1; the reference removes >= threshold
    x = np.array([1, 1, 1, 1, 2, 2, 2, 0])
    y = np.array([0, 0, 0, 0, 0, 0, 0, 3])
    keep = hot_pixel_mask(x, y, threshold=3, sensor_size=(4, 4))
    assert keep.tolist() == [False] * 7 + [True]
    keep = hot_pixel_mask(x, y, threshold=4, sensor_size=(4, 4))
    assert keep.tolist() == [False] * 4 + [True] * 4
    keep = hot_pixel_mask(x, y, threshold=5, sensor_size=(4, 4))
    assert keep.tolist() == [True] * 8


def test_hot_pixel_mask_rejects_pixels_outside_the_sensor() -> None:
    # x = 4 on a 4-wide sensor must not alias to pixel (0, 1)
    for x, y in (([4], [0]), ([0], [4]), ([-1], [0]), ([0], [-1])):
        with pytest.raises(Dhp19Error, match="hot-pixel filter: a pixel lies outside the 4x4"):
            hot_pixel_mask(x, y, threshold=1, sensor_size=(4, 4))
    with pytest.raises(Dhp19Error, match=r"x and y must be \(N,\) arrays"):
        hot_pixel_mask([1, 2], [1], sensor_size=(4, 4))
    # the corners are inside
    keep = hot_pixel_mask([0, 3, 3], [0, 3, 3], threshold=2, sensor_size=(4, 4))
    assert keep.tolist() == [True, False, False]


def test_hot_pixel_default_threshold_is_ten_thousand() -> None:
    x = np.concatenate([np.full(10_000, 7), np.full(9_999, 8)])
    keep = hot_pixel_mask(x, np.zeros_like(x))
    assert np.count_nonzero(~keep[:10_000]) == 10_000  # exactly 10^4 events: hot
    assert np.all(keep[10_000:])  # 9 999: not hot


def reference_background_filter(
    x: np.ndarray,
    y: np.ndarray,
    t: np.ndarray,
    dt: int,
    size: tuple[int, int],
    stamps: BackgroundStamps = "neighbours",
) -> list[bool]:
    """DHP19's BackgroundFilter.m rule as a plain loop, one event at a time, per camera.

    Pass if the pixel's last stamp is at most ``dt`` old; then, unless on the border, stamp the
    8 neighbours (``stamps="neighbours"``, the reference since commit 3395890, 2019-10-04) or
    the 8 neighbours and the own pixel (``"neighbours-and-self"``, June 2019); every event
    stamps, kept or not; the map starts as "never".
    """
    assert stamps in ("neighbours", "neighbours-and-self")
    width, height = size
    stamp: dict[tuple[int, int], int] = {}  # missing = never stamped
    keep = []
    for xi, yi, ti in zip(x.tolist(), y.tolist(), t.tolist(), strict=True):
        last = stamp.get((xi, yi))
        keep.append(last is not None and ti - last <= dt)
        if 0 < xi < width - 1 and 0 < yi < height - 1:
            for dx in (-1, 0, 1):
                for dy in (-1, 0, 1):
                    if dx == dy == 0 and stamps == "neighbours":
                        continue
                    stamp[(xi + dx, yi + dy)] = ti
    return keep


BOTH_RULES: tuple[BackgroundStamps, ...] = ("neighbours", "neighbours-and-self")
"""The two rules, spelt out here (not taken from the converter)."""


def test_background_filter_default_is_the_current_rule() -> None:
    assert dhp19.DEFAULT_BACKGROUND_STAMPS == "neighbours" == dhp19.BACKGROUND_STAMPS[0]
    assert set(dhp19.BACKGROUND_STAMPS) == set(BOTH_RULES)


def test_background_filter_a_lone_pixel_passes_only_under_the_june_rule() -> None:
    # one pixel fires twice, 10 ms apart, nothing around it: under the current rule nothing
    # ever stamps its own pixel, so the second event fails; under the June rule the first
    # event stamped it, so the second passes
    x, y, t = np.array([5, 5]), np.array([5, 5]), np.array([0, 10_000])
    assert background_activity_mask(x, y, t, sensor_size=(10, 10)).tolist() == [False, False]
    june = background_activity_mask(x, y, t, sensor_size=(10, 10), stamps="neighbours-and-self")
    assert june.tolist() == [False, True]
    # a neighbour's event supports it under both rules
    x, y, t = np.array([5, 6]), np.array([5, 5]), np.array([0, 10_000])
    for stamps in BOTH_RULES:
        keep = background_activity_mask(x, y, t, sensor_size=(10, 10), stamps=stamps)
        assert keep.tolist() == [False, True], stamps


def test_background_filter_hand_case() -> None:
    # e0 first event: never stamped -> fails, stamps around (10, 10) with 0 (June: (10, 10) too)
    # e1 on e0's own pixel exactly 70 000 us later -> current rule: (10, 10) was never stamped,
    # fails; June rule: reads e0's own stamp, passes (inclusive); stamps 70 000 around (10, 10)
    # e2 on a neighbour 70 001 us after e1's stamp -> fails, stamps 140 001 around (11, 11)
    # e3 on the border (x = 0), never stamped -> fails, stamps nothing
    # e4 next to e3 (x = 1): e3 stamped nothing -> fails; stamps around (1, 5), (0, 5) included
    # e5 on e3's border pixel -> passes on e4's stamp (border events can pass)
    # e6 on e0's pixel: its last stamp is e2's (140 001, (10, 10) is next to (11, 11)), exactly
    # 70 000 us old -> passes; e7 far from everything -> fails
    x = np.array([10, 10, 11, 0, 1, 0, 10, 30])
    y = np.array([10, 10, 11, 5, 5, 5, 10, 30])
    t = np.array([0, 70_000, 140_001, 140_002, 140_003, 140_004, 210_001, 210_002])
    cases: tuple[tuple[BackgroundStamps, bool], ...] = (
        ("neighbours", False),
        ("neighbours-and-self", True),
    )
    for stamps, e1 in cases:
        keep = background_activity_mask(
            x,
            y,
            t,
            support_us=70_000,
            sensor_size=(40, 40),
            stamps=stamps,
        )
        assert keep.tolist() == [False, e1, False, False, False, True, True, False], stamps
        assert keep.tolist() == reference_background_filter(x, y, t, 70_000, (40, 40), stamps)


def test_background_filter_border_events_stamp_nothing() -> None:
    # a stream on the right border (x = 7 of width 8) and the top row: nothing ever passes there,
    # however dense, because border events never stamp and nothing else is near
    x = np.array([7, 7, 7, 3, 3])
    y = np.array([4, 4, 4, 0, 0])
    for stamps in BOTH_RULES:
        keep = background_activity_mask(x, y, [0, 1, 2, 3, 4], sensor_size=(8, 8), stamps=stamps)
        assert keep.tolist() == [False] * 5
    # one pixel in from the border the same stream passes from its second event on under the
    # June rule (it stamps itself), never under the current one
    june = background_activity_mask(
        [6, 6, 6], [4, 4, 4], [0, 1, 2], sensor_size=(8, 8), stamps="neighbours-and-self"
    )
    assert june.tolist() == [False, True, True]
    now = background_activity_mask([6, 6, 6], [4, 4, 4], [0, 1, 2], sensor_size=(8, 8))
    assert now.tolist() == [False, False, False]
    # a border event passes on an inner neighbour's stamp under both rules
    for stamps in BOTH_RULES:
        keep = background_activity_mask([6, 7], [4, 4], [0, 1], sensor_size=(8, 8), stamps=stamps)
        assert keep.tolist() == [False, True]


def test_background_filter_ties_see_earlier_events_only() -> None:
    for stamps in BOTH_RULES:
        # equal timestamps: the second event sees the first's stamp, the first not the second's
        keep = background_activity_mask(
            [5, 6], [5, 6], [100, 100], sensor_size=(10, 10), stamps=stamps
        )
        assert keep.tolist() == [False, True]
        keep = background_activity_mask(
            [6, 5], [6, 5], [100, 100], sensor_size=(10, 10), stamps=stamps
        )
        assert keep.tolist() == [False, True]
    # an event never sees its own stamp: a lone event fails; repeated ones pass on the earlier
    # ones' stamps under the June rule, never under the current one
    june = background_activity_mask(
        [3, 3, 3], [3, 3, 3], [0, 0, 0], sensor_size=(8, 8), stamps="neighbours-and-self"
    )
    assert june.tolist() == [False, True, True]
    now = background_activity_mask([3, 3, 3], [3, 3, 3], [0, 0, 0], sensor_size=(8, 8))
    assert now.tolist() == [False, False, False]


@pytest.mark.parametrize("stamps", BOTH_RULES)
def test_background_filter_first_events_fail_and_support_is_inclusive(
    stamps: BackgroundStamps,
) -> None:
    # the first event fails whatever its timestamp (the map starts as "never", not 0)
    first = background_activity_mask([5], [5], [0], sensor_size=(10, 10), stamps=stamps)
    assert first.tolist() == [False]
    for gap, passes in ((69_999, True), (70_000, True), (70_001, False)):
        keep = background_activity_mask(
            [5, 6],
            [5, 5],
            [1000, 1000 + gap],
            sensor_size=(10, 10),
            stamps=stamps,
        )
        assert keep.tolist() == [False, passes], gap


def test_background_filter_stamps_are_refreshed_by_every_event() -> None:
    # e0 (5, 5) fails and stamps 0 around itself; e1 (6, 6) reads 0 -> passes, stamps 10 around
    # (6, 6), (5, 5) included; e2 (5, 5) at 70 005 reads 10 (not 0: it would fail) -> passes;
    # e3 (4, 4) reads e2's 70 005 -> passes, stamps (5, 5) with 70 006; e4 (5, 5) at 70 101
    # reads e3's 70 006 -> passes. e5 (5, 5) at 140 101: under the June rule e4 stamped its own
    # pixel with 70 101, exactly 70 000 us old -> passes; under the current rule (5, 5) still
    # holds e3's 70 006, 70 095 us old -> fails
    x = np.array([5, 6, 5, 4, 5, 5])
    y = np.array([5, 6, 5, 4, 5, 5])
    t = np.array([0, 10, 70_005, 70_006, 70_101, 140_101])
    cases: tuple[tuple[BackgroundStamps, bool], ...] = (
        ("neighbours", False),
        ("neighbours-and-self", True),
    )
    for stamps, e5 in cases:
        keep = background_activity_mask(x, y, t, sensor_size=(10, 10), stamps=stamps)
        assert keep.tolist() == [False, True, True, True, True, e5], stamps
        assert keep.tolist() == reference_background_filter(x, y, t, 70_000, (10, 10), stamps)


def test_background_filter_empty_and_bad_input() -> None:
    assert background_activity_mask([], [], []).tolist() == []
    with pytest.raises(Dhp19Error, match="outside the 8x8 sensor"):
        background_activity_mask([8], [0], [0], sensor_size=(8, 8))
    with pytest.raises(Dhp19Error, match=r"\(N,\) arrays"):
        background_activity_mask([1, 2], [1], [0, 1], sensor_size=(8, 8))
    with pytest.raises(
        Dhp19Error,
        match="background filter: stamps must be one of neighbours, neighbours-and-self, "
        "got 'self'",
    ):
        background_activity_mask([1], [1], [0], stamps="self")  # type: ignore[arg-type]


@settings(max_examples=60, deadline=None)
@given(
    st.lists(
        st.tuples(st.integers(0, 5), st.integers(0, 4), st.integers(0, 300)),
        min_size=0,
        max_size=60,
    ),
    st.integers(0, 150),
    st.booleans(),
    st.sampled_from(BOTH_RULES),
)
def test_background_filter_matches_the_reference_loop(
    rows: list[tuple[int, int, int]], support: int, sort: bool, stamps: BackgroundStamps
) -> None:
    # a 6x5 sensor: most pixels are on or next to the border; times 0-300 give many ties.
    # The converter passes time-sorted streams; unsorted ones must match the loop all the same
    if sort:
        rows = sorted(rows, key=lambda r: r[2])  # ties keep their list order
    x = np.array([r[0] for r in rows], dtype=np.int64)
    y = np.array([r[1] for r in rows], dtype=np.int64)
    t = np.array([r[2] for r in rows], dtype=np.int64)
    got = background_activity_mask(
        x,
        y,
        t,
        support_us=support,
        sensor_size=(6, 5),
        stamps=stamps,
    )
    assert got.tolist() == reference_background_filter(x, y, t, support, (6, 5), stamps)


# ---------------------------------------------------------------------------- Vicon, P
def test_vicon_fields_are_read_in_dhp19_order(tmp_path: Path) -> None:
    joints = np.arange(4 * 13 * 3, dtype=np.float64).reshape(4, 13, 3)
    joints[2, 5] = np.nan
    path = write_vicon_mat(tmp_path / "v.mat", joints, order=tuple(reversed(JOINTS)))
    got = read_vicon_mat(path)
    assert got.shape == (4, 13, 3)
    np.testing.assert_array_equal(got, joints)  # NaN compares equal here


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"order": JOINTS[:-1]}, "XYZPOS has no field 'footL'"),
        ({"replace": {"kneeR": np.zeros((5, 4))}}, r"XYZPOS\.kneeR must be a real \(N, 3\)"),
        ({"replace": {"head": "abc"}}, r"XYZPOS\.head must be a real"),
        ({"replace": {"head": np.zeros((4, 3))}}, "XYZPOS fields differ in length"),
        ({"replace": {"hipL": np.full((5, 3), np.inf)}}, r"XYZPOS\.hipL holds a coordinate beyond"),
    ],
)
def test_bad_vicon_struct_is_named(tmp_path: Path, kwargs: dict[str, Any], message: str) -> None:
    path = write_vicon_mat(tmp_path / "bad.mat", skeleton(5, 1), **kwargs)
    with pytest.raises(Dhp19Error, match=rf"bad\.mat: {message}"):
        read_vicon_mat(path)


def test_vicon_without_xyzpos_or_not_a_mat(tmp_path: Path) -> None:
    from scipy.io import savemat

    other = tmp_path / "other.mat"
    savemat(str(other), {"something": np.zeros(3)})
    with pytest.raises(MatFileError, match=r"other\.mat: no 1x1 struct 'XYZPOS'"):
        read_vicon_mat(other)
    text = tmp_path / "text.mat"
    text.write_text("hello, not matlab")
    with pytest.raises(MatFileError, match=r"text\.mat: not a readable MATLAB 5 file"):
        read_vicon_mat(text)
    with pytest.raises(Dhp19Error, match=r"missing\.mat: no such Vicon file"):
        read_vicon_mat(tmp_path / "missing.mat")


def test_vicon_reader_agrees_with_scipy_loadmat(tmp_path: Path) -> None:
    from scipy.io import loadmat

    joints = skeleton(7, 2)
    joints[3, 4] = np.nan
    for compress in (False, True):
        path = write_vicon_mat(tmp_path / f"v{compress}.mat", joints, compress=compress)
        xyzpos = loadmat(str(path))["XYZPOS"][0, 0]
        theirs = np.stack([xyzpos[name] for name in JOINTS], axis=1)
        np.testing.assert_array_equal(read_vicon_mat(path), theirs)
        np.testing.assert_array_equal(read_vicon_mat(path), joints)


def test_vicon_skips_other_variables(tmp_path: Path) -> None:
    joints = skeleton(3, 1)
    others = {"a": np.zeros((2, 2)), "s": {"x": 1.0}, "txt": "hello"}
    for compress in (False, True):
        path = write_vicon_mat(tmp_path / "v.mat", joints, others=others, compress=compress)
        np.testing.assert_array_equal(read_vicon_mat(path), joints)


@pytest.mark.parametrize(("big_endian", "data_type"), [(False, "i2"), (True, "i2"), (True, "f8")])
def test_vicon_written_by_hand(tmp_path: Path, big_endian: bool, data_type: str) -> None:
    joints = np.rint(skeleton(5, 1))
    fields = {name: joints[:, j] for j, name in enumerate(JOINTS)}
    path = tmp_path / "hand.mat"
    path.write_bytes(mat5_bytes_by_hand(fields, big_endian=big_endian, data_type=data_type))
    np.testing.assert_array_equal(read_vicon_mat(path), joints)


def test_vicon_with_no_samples(tmp_path: Path) -> None:
    path = write_vicon_mat(tmp_path / "empty.mat", np.zeros((0, 13, 3)))
    with pytest.raises(Dhp19Error, match=r"empty\.mat: XYZPOS has no samples"):
        read_vicon_mat(path)


def test_p_matrices_are_read_as_stored(p_dir: Path) -> None:
    calib = read_p_matrices(p_dir)
    for m in range(1, 5):
        np.testing.assert_array_equal(calib.P[m - 1], np.load(p_dir / f"P{m}.npy"))
    np.testing.assert_array_equal(calib.centers, np.load(p_dir / "camera_positions.npy"))


def test_fortran_ordered_p_matrix(tmp_path: Path, p_dir: Path) -> None:
    d = tmp_path / "P_matrices"
    d.mkdir()
    for f in p_dir.iterdir():
        (d / f.name).write_bytes(f.read_bytes())
    P = np.arange(12, dtype=np.float32).reshape(3, 4) + np.eye(3, 4, dtype=np.float32)
    np.save(d / "P2.npy", np.asfortranarray(P))
    np.testing.assert_array_equal(read_p_matrices(d).P[1], P)


@pytest.mark.parametrize(
    ("name", "content", "message"),
    [
        ("P3.npy", None, "P3.npy: no such file"),
        ("P3.npy", np.zeros((3, 3)), r"P3.npy: holds a float64 array of shape \(3, 3\)"),
        ("P1.npy", np.full((3, 4), np.nan), "P1.npy: holds non-finite values"),
        ("P4.npy", np.zeros((3, 4)), "P4.npy: singular or overflowing projection matrix"),
        ("P4.npy", np.full((3, 4), 1e300) + np.eye(3, 4), "P4.npy: singular or overflowing"),
        ("P2.npy", np.array([{"a": 1}], dtype=object), "P2.npy: holds a object array"),
        ("camera_positions.npy", np.zeros((3, 3)), "camera_positions.npy: holds"),
        ("P2.npy", b"not numpy at all", "P2.npy: not a readable .npy file"),
        ("P2.npy", "truncate", "P2.npy: truncated .npy file"),
    ],
)
def test_bad_p_matrices_are_named(
    tmp_path: Path, p_dir: Path, name: str, content: object, message: str
) -> None:
    d = tmp_path / "P_matrices"
    d.mkdir()
    for f in p_dir.iterdir():
        (d / f.name).write_bytes(f.read_bytes())
    target = d / name
    if content is None:
        target.unlink()
    elif isinstance(content, bytes):
        target.write_bytes(content)
    elif isinstance(content, str):
        target.write_bytes(target.read_bytes()[:-8])
    else:
        np.save(target, np.asarray(content))
    with pytest.raises(Dhp19Error, match=message):
        read_p_matrices(d)


def test_missing_p_folder(tmp_path: Path) -> None:
    with pytest.raises(Dhp19Error, match="nowhere: no P_matrices folder"):
        read_p_matrices(tmp_path / "nowhere")


# ------------------------------------------------------------------ camera positions vs P
def copy_p_dir(p_dir: Path, to: Path) -> Path:
    to.mkdir(parents=True)
    for f in p_dir.iterdir():
        (to / f.name).write_bytes(f.read_bytes())
    return to


def test_p_matrix_center_is_the_camera_centre(p_dir: Path) -> None:
    # the fixture builds P = K [R | -R c] by hand around the centre c; DHP19's P files hold
    # FLIP @ P (and the sign of P does not matter)
    for c, cam in enumerate(fake_cameras()):
        raw = np.load(p_dir / f"P{MATRIX_OF_CAMERA[c]}.npy")
        np.testing.assert_allclose(dhp19.p_matrix_center(raw), cam.center, atol=1e-9)
        np.testing.assert_allclose(dhp19.p_matrix_center(-3.0 * cam.P), cam.center, atol=1e-9)


def test_nearly_singular_p_whose_centre_overflows_is_rejected(tmp_path: Path, p_dir: Path) -> None:
    d = copy_p_dir(p_dir, tmp_path / "P_matrices")
    P = np.array([[1e-200, 0, 0, 1e200], [0, 1, 0, 0], [0, 0, 1, 0]])
    np.save(d / "P1.npy", P)
    with pytest.raises(Dhp19Error, match=r"P1\.npy: singular or overflowing"):
        read_p_matrices(d)


def test_camera_positions_that_agree_with_p(
    fake: FakeDhp19, p_dir: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    rec = fake.recordings[(1, 1, 1)]
    with caplog.at_level(logging.WARNING, logger="hybridpose.io.dhp19"):
        result = convert(rec.aedat, rec.vicon, p_dir, tmp_path / "o.h5")
    assert caplog.records == []
    assert result.camera_position_distance_mm == pytest.approx([0.0] * 4, abs=1e-6)
    with Recording(tmp_path / "o.h5") as r:
        stored = r.meta.extra["camera_positions"]
    assert stored["file"] == "camera_positions.npy"
    assert stored["distance_to_P_center_mm"] == [0.0, 0.0, 0.0, 0.0]  # to the micrometre
    assert stored["tolerance_mm"] == 10.0 == dhp19.CAMERA_POSITION_TOLERANCE_MM
    assert stored["cameras_over_tolerance"] == []
    centres = [cam.center for cam in fake_cameras()]  # event-camera order
    np.testing.assert_allclose(stored["P_center_mm"], centres, atol=1e-6)


def test_a_camera_position_off_by_a_known_distance(
    fake: FakeDhp19, p_dir: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    d = copy_p_dir(p_dir, tmp_path / "P_matrices")
    move_camera_position(d, 2, (30.0, -40.0, 0.0))  # 50 mm; camera 2 is P3.npy, row 2
    rec = fake.recordings[(1, 1, 1)]
    with caplog.at_level(logging.WARNING, logger="hybridpose.io.dhp19"):
        result = convert(rec.aedat, rec.vicon, d, tmp_path / "o.h5")
    assert result.camera_position_distance_mm == pytest.approx([0.0, 0.0, 50.0, 0.0], abs=1e-6)
    assert [r.levelno for r in caplog.records] == [logging.WARNING]
    assert caplog.records[0].getMessage() == (
        f"{d / 'camera_positions.npy'}: camera 2 (row 2, P3.npy): its position lies 50.0 mm "
        "from the centre of P3.npy (P's null vector), more than 10 mm: rays started at "
        "camera_positions.npy (as the reference's triangulation does) are not the rays of P"
    )
    with Recording(tmp_path / "o.h5") as r:
        stored = r.meta.extra["camera_positions"]
        assert r.cameras[2].calibration.center.tolist() == [1430.0, -3340.0, 1300.0]
    assert stored["distance_to_P_center_mm"] == [0.0, 0.0, 50.0, 0.0]
    assert stored["cameras_over_tolerance"] == [2]
    # a tolerance above the distance: no warning, the same distance stored; and the warning
    # can be turned off
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="hybridpose.io.dhp19"):
        convert(rec.aedat, rec.vicon, d, tmp_path / "p.h5", camera_position_tolerance_mm=60.0)
        convert(rec.aedat, rec.vicon, d, tmp_path / "q.h5", warn_camera_positions=False)
    assert caplog.records == []
    with Recording(tmp_path / "p.h5") as r:
        stored = r.meta.extra["camera_positions"]
    assert stored["distance_to_P_center_mm"][2] == 50.0 and stored["tolerance_mm"] == 60.0
    assert stored["cameras_over_tolerance"] == []


def test_a_root_warns_about_camera_positions_once_per_run(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    fake = make_fake_dhp19(tmp_path / "root", movements=(1, 2), events_per_camera=100)
    move_camera_position(fake.root / "P_matrices", 0, (0.0, 0.0, -12.5))  # camera 0: P4.npy
    out = tmp_path / "out"
    with caplog.at_level(logging.WARNING, logger="hybridpose.io.dhp19"):
        summary = convert_dhp19(fake.root, out, workers=2, progress=False)
    assert len(summary.converted) == 2
    messages = [r.getMessage() for r in caplog.records]
    assert len(messages) == 1  # not once per recording
    assert messages[0].startswith(
        f"{fake.root / 'P_matrices' / 'camera_positions.npy'}: camera 0 (row 3, P4.npy): its "
        "position lies 12.5 mm from the centre of P4.npy"
    )
    for path in summary.converted:
        with Recording(path) as r:
            stored = r.meta.extra["camera_positions"]
        assert stored["distance_to_P_center_mm"] == [12.5, 0.0, 0.0, 0.0]
    # the tolerance only decides the warning: outputs made with another one are skipped
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="hybridpose.io.dhp19"):
        again = convert_dhp19(fake.root, out, camera_position_tolerance_mm=20.0, progress=False)
    assert again.skipped == summary.converted and caplog.records == []


def test_camera_position_warning_from_the_command_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    fake = make_fake_dhp19(tmp_path / "root", movements=(1,), events_per_camera=100)
    move_camera_position(fake.root / "P_matrices", 3, (100.0, 0.0, 0.0))  # camera 3: P2.npy
    base = ["convert-dhp19", "--root", str(fake.root), "--quiet"]
    assert cli.main([*base, "--out", str(tmp_path / "a")]) == 0
    captured = capsys.readouterr()
    assert "1 converted" in captured.out and "warning" not in captured.out
    assert captured.err.splitlines() == [
        f"hybridpose convert-dhp19: warning: {fake.root / 'P_matrices' / 'camera_positions.npy'}"
        ": camera 3 (row 1, P2.npy): its position lies 100.0 mm from the centre of P2.npy (P's "
        "null vector), more than 10 mm: rays started at camera_positions.npy (as the "
        "reference's triangulation does) are not the rays of P"
    ]
    tolerant = [*base, "--out", str(tmp_path / "b"), "--camera-position-tolerance-mm", "100"]
    assert cli.main(tolerant) == 0
    assert capsys.readouterr().err == ""


# ------------------------------------------------------------------------ one recording
def expected_events(rec: FakeRecording, camera: int) -> dict[str, np.ndarray]:
    """What the converter should write for ``camera``, from the fixture's own columns."""
    keep = (
        (rec.kind == 0)
        & (rec.camera == camera)
        & (rec.t >= rec.start_raw_us)
        & (rec.t <= rec.stop_raw_us)
    )
    return {
        "x": 345 - rec.x_raw[keep],
        "y": 259 - rec.y_raw[keep],
        "t": rec.t[keep] - rec.start_raw_us,
        "p": np.where(rec.on[keep], 1, -1),
    }


def test_round_trip_of_the_fake_download(fake: FakeDhp19, fake_converted: Path) -> None:
    for (s, n, k), rec in fake.recordings.items():
        path = fake_converted / f"S{s}_session{n}_mov{k}.h5"
        with Recording(path) as r:
            assert r.sensor_size == (346, 260)
            assert (r.meta.source, r.meta.subject, r.meta.session, r.meta.movement) == (
                "dhp19",
                s,
                n,
                k,
            )
            assert r.meta.extra["start_us_raw"] == START_RAW_US
            assert r.meta.extra["start_stop_rule"].startswith("2 specials" if k == 1 else "3")
            labels = r.labels()
            np.testing.assert_array_equal(labels.t_us, np.arange(100) * 10_000)
            np.testing.assert_array_equal(labels.joints_mm, rec.joints.astype(np.float32))
        for c in range(4):
            got = all_events(path, c)
            want = expected_events(rec, c)
            assert len(got) > 100
            for field in ("x", "y", "t", "p"):
                np.testing.assert_array_equal(got[field], want[field], err_msg=field)


def test_convert_recording_counts(fake: FakeDhp19, p_dir: Path, tmp_path: Path) -> None:
    rec = fake.recordings[(1, 1, 1)]
    result = convert(rec.aedat, rec.vicon, p_dir, tmp_path / "out.h5")
    for c in range(4):
        cam = (rec.kind == 0) & (rec.camera == c)
        inside = cam & (rec.t >= rec.start_raw_us) & (rec.t <= rec.stop_raw_us)
        assert result.events_kept[c] == np.count_nonzero(inside)
        assert result.dropped_outside[c] == np.count_nonzero(cam & ~inside)
    assert result.dropped_outside[0] > 0  # the fixture puts events outside on purpose
    assert result.ignored_records == 3 and result.specials == 2
    assert result.repaired == result.max_backward_jump_us == (0, 0, 0, 0)
    assert result.stray_dropped == (0, 0, 0, 0) and result.stray_bad_camera == 0
    assert result.hot_pixel_filtered == result.background_filtered == (0, 0, 0, 0)
    assert (result.start_us, result.stop_us, result.num_labels) == (
        START_RAW_US,
        START_RAW_US + 1_000_000,
        100,
    )


def test_camera_mapping_to_p_files(fake: FakeDhp19, fake_converted: Path) -> None:
    p_files = fake.root / "P_matrices"
    positions = np.load(p_files / "camera_positions.npy")
    with Recording(fake_converted / "S1_session1_mov1.h5") as r:
        for c, m in MATRIX_OF_CAMERA.items():
            raw = np.load(p_files / f"P{m}.npy")
            cal = r.cameras[c].calibration
            np.testing.assert_allclose(cal.P, FLIP @ raw, rtol=0, atol=0)
            np.testing.assert_array_equal(cal.center, positions[m - 1])
            assert cal.name == f"dhp19-cam{c}-P{m}"
            np.testing.assert_array_equal(np.array(r.meta.extra["P_raw"][c]), raw)
            assert r.meta.extra["cameras"][c]["labels_in_image_fraction"] == 1.0


def test_projected_labels_land_on_the_events(fake_converted: Path) -> None:
    # the end-to-end check of the flip: events (flipped x and y) against labels projected with
    # the stored P (flipped v only); the fixture scatters events 1.5 px around the joints
    path = fake_converted / "S1_session1_mov2.h5"
    with Recording(path) as r:
        labels = r.labels()
        for c in range(4):
            events = all_events(path, c)
            k = np.clip(np.rint(events["t"] / 10_000).astype(int), 0, labels.count - 1)
            uv = project(r.cameras[c].calibration.P, labels.joints_mm[k].astype(np.float64))
            xy = np.stack([events["x"], events["y"]], axis=1).astype(np.float64)[:, None]
            nearest = np.nanmin(np.linalg.norm(uv - xy, axis=2), axis=1)
            assert np.median(nearest) < 3.0, f"camera {c}"


def read_raw_aedat(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """The records of an AEDAT 2.0 file, read here without hybridpose: '#' lines, then >u4 pairs."""
    data = path.read_bytes()
    pos = 0
    while data.startswith(b"#", pos):
        pos = data.index(b"\r\n", pos) + 2
    records = np.frombuffer(data[pos:], dtype=">u4").reshape(-1, 2).astype(np.int64)
    return records[:, 0], records[:, 1]


def test_pixel_convention_matches_the_dhp19_reference_pipeline(
    fake: FakeDhp19, fake_converted: Path
) -> None:
    # The DHP19 reference pipeline transcribed on the RAW files (its reader, its flip, its label
    # projection), independent of the converter and of the fixture's own flip formulas:
    #   X = 346 - x_raw, Y = 260 - y_raw (1-based MATLAB); event image index (row, col) =
    #   (Y - 1, X - 1), 0-based; label (u, v) = (u_P, 260 - v_P) with (u_P, v_P) the
    #   dehomogenised projection with the raw P{m}.npy. (The reference also tiles the 4 cameras
    #   side by side, col + 346 * camera; we keep one image per camera.)
    # Its time crop (extract_from_aedat) is an index range of the polarity events in FILE
    # order, from the first event after startTime to the last event before stopTime, both
    # strictly; ours is the inclusive mask [start, stop] on the times (documented difference,
    # see test_time_crop_differs_from_the_reference_only_as_documented).
    from scipy.io import loadmat

    rec = fake.recordings[(1, 1, 2)]
    address, t = read_raw_aedat(rec.aedat)
    is_special = (address >> 10) & 1 == 1
    is_polarity = ((address >> 31) & 1 == 0) & ~is_special
    special_t = t[is_special & ((address >> 31) & 1 == 0)]
    assert len(special_t) == 3  # 3 specials: first = start, last = stop
    start, stop = special_t[0], special_t[-1]
    polarity_index = np.flatnonzero(is_polarity)
    polarity_t = t[polarity_index]
    start_index = np.flatnonzero(polarity_t > start)[0]
    stop_index = np.flatnonzero(polarity_t < stop)[-1]
    in_range = np.zeros(len(t), dtype=bool)
    in_range[polarity_index[start_index : stop_index + 1]] = True
    # the documented difference: we also keep events exactly at start or stop
    at_bounds = is_polarity & ((t == start) | (t == stop))
    assert not np.any(in_range & at_bounds)
    xyzpos = loadmat(str(rec.vicon))["XYZPOS"][0, 0]
    joints = np.stack([xyzpos[name] for name in JOINTS], axis=1).astype(np.float64)
    points = np.concatenate([joints.reshape(-1, 3), np.ones((joints.size // 3, 1))], axis=1)
    path = fake_converted / "S1_session1_mov2.h5"
    with Recording(path) as r:
        for c in range(4):
            keep = (in_range | at_bounds) & ((address & 0xF) == c)
            x_raw, y_raw = (address[keep] >> 12) & 0x3FF, (address[keep] >> 22) & 0x1FF
            X, Y = 346 - x_raw, 260 - y_raw
            row, col = Y - 1, X - 1
            assert row.min() >= 0 and row.max() < 260 and col.min() >= 0 and col.max() < 346
            order = np.argsort(t[keep], kind="stable")
            events = all_events(path, c)
            np.testing.assert_array_equal(events["x"], col[order])
            np.testing.assert_array_equal(events["y"], row[order])

            m = {0: 4, 1: 1, 2: 3, 3: 2}[c]  # the camera -> P file mapping of the notebooks
            raw_P = np.load(fake.root / "P_matrices" / f"P{m}.npy")
            h = points @ raw_P.T
            u_ref, v_ref = h[:, 0] / h[:, 2], 260 - h[:, 1] / h[:, 2]
            ours = points @ r.cameras[c].calibration.P.T
            np.testing.assert_allclose(ours[:, 0] / ours[:, 2], u_ref, rtol=0, atol=1e-9)
            np.testing.assert_allclose(ours[:, 1] / ours[:, 2], v_ref, rtol=0, atol=1e-9)


def test_time_crop_differs_from_the_reference_only_as_documented(
    p_dir: Path, tmp_path: Path
) -> None:
    # 3 specials: start 10 000, stop 60 000. In file order: e0 before the start, e1 exactly at
    # the start, e2 inside, e3 after the stop but followed by e4 inside (700 us behind e3),
    # e5 exactly at the stop, e6 after it
    times = [5_000, 10_000, 30_000, 60_500, 59_800, 60_000, 70_000]
    rows = [sp(10_000), sp(20_000), *(ev(1 + i, 1 + i, t_) for i, t_ in enumerate(times))]
    rows.append(sp(60_000))
    aedat, mat = tiny(tmp_path, rows)
    # the reference: index range from the first event with t > start to the last with t < stop,
    # in file order, whatever the times in between (e3 is kept, e1 and e5 are not)
    t = np.array(times)
    first, last = np.flatnonzero(t > 10_000)[0], np.flatnonzero(t < 60_000)[-1]
    assert t[first : last + 1].tolist() == [30_000, 60_500, 59_800]
    # ours: the inclusive mask [start, stop] on the times (e1, e2, e4, e5; in order once e3 is
    # dropped, so nothing to repair)
    result = convert(aedat, mat, p_dir, tmp_path / "o.h5")
    got = all_events(tmp_path / "o.h5", 0)
    assert got["t"].tolist() == [0, 20_000, 49_800, 50_000]
    assert got["x"].tolist() == [345 - 2, 345 - 3, 345 - 5, 345 - 6]
    assert result.dropped_outside == (3, 0, 0, 0) and result.repaired == (0, 0, 0, 0)


@pytest.mark.parametrize("specials", [[900_000], [900_000, 900_001], [900_000] * 3 + [900_001]])
def test_a_corrupt_far_future_timestamp_does_not_move_start_stop(
    p_dir: Path, tmp_path: Path, specials: list[int]
) -> None:
    # events every 1 000 us from 0 to 1 000 000, the specials at 900 000 (nearer the end: the
    # stop), 10 labels = 100 ms. One event in mid-file carries a corrupt timestamp 1.5e9 us
    # ahead (not a wrap: < 2^31). The ends of the stream are the first and last event in file
    # order (0 and 1 000 000), so start/stop stay [800 000, 900 000]; with the earliest and
    # latest (0 and 1.5e9) the special would be nearer the start and [900 000, 1 000 000] taken
    events = [ev(i % 200, i % 200, i * 1000) for i in range(1001)]
    clean = sorted(events + [sp(t_) for t_ in specials], key=lambda r: r[1])
    glitched = list(clean)
    glitched.insert(500, ev(7, 7, 1_500_000_000))
    for rows, dropped in ((clean, 900), (glitched, 901)):
        aedat, mat = tiny(tmp_path, rows)
        result = convert(aedat, mat, p_dir, tmp_path / "o.h5")
        assert (result.start_us, result.stop_us) == (800_000, 900_000)
        assert result.events_kept == (101, 0, 0, 0)
        assert result.dropped_outside == (dropped, 0, 0, 0)
        assert all_events(tmp_path / "o.h5", 0)["t"].tolist() == list(range(0, 100_001, 1000))
    with Recording(tmp_path / "o.h5") as r:
        assert r.meta.extra["stream_ends_us_raw"] == {
            "first_in_file": 0,
            "last_in_file": 1_000_000,
            "earliest": 0,
            "latest": 1_500_000_000,
            "rule": "first and last good polarity event in file order, unwrapped",
        }
        assert r.meta.extra["start_stop_rule"] == f"{len(specials)} specials: first = stop " + (
            "(nearer the end)"
        )


def test_flip_and_polarity_of_single_events(p_dir: Path, tmp_path: Path) -> None:
    rows = [sp(1000), ev(0, 0, 1000, on=True), ev(345, 259, 1100, on=False), ev(3, 7, 1200)]
    aedat, mat = tiny(tmp_path, rows)
    out = tmp_path / "o.h5"
    convert(aedat, mat, p_dir, out)
    got = all_events(out, 0)
    assert got["x"].tolist() == [345, 0, 342]
    assert got["y"].tolist() == [259, 0, 252]
    assert got["p"].tolist() == [1, -1, 1]
    assert got["t"].tolist() == [0, 100, 200]


def spread(n: int, t0: int = 2000) -> list[tuple[int, int]]:
    """``n`` valid polarity events of the 4 cameras in turn, 1 us apart from ``t0``."""
    return [ev(10 + i % 50, 20 + i % 40, t0 + i, cam=i % 4) for i in range(n)]


def test_stray_events_are_dropped_and_counted(p_dir: Path, tmp_path: Path) -> None:
    # 297 good events + 3 stray = 300 polarity events: exactly 1 % stray, which is accepted
    strays = [ev(346, 0, 2100, cam=1), ev(0, 260, 2101, cam=2), ev(1000, 511, 2102, cam=9)]
    rows = [sp(1000), *spread(150), *strays, *spread(147, 3000)]
    aedat, mat = tiny(tmp_path, rows)
    result = convert(aedat, mat, p_dir, tmp_path / "o.h5")
    assert result.stray_dropped == (0, 1, 1, 0)
    assert result.stray_bad_camera == 1  # counted once, not also as off the sensor
    assert result.events_kept == (75, 75, 74, 73)  # 150 + 147 good events, cameras in turn
    for c in range(4):
        got = all_events(tmp_path / "o.h5", c)
        assert got["x"].min() >= 345 - 59 and got["y"].min() >= 259 - 59  # no stray pixel
    with Recording(tmp_path / "o.h5") as r:
        assert r.meta.extra["stray_events"] == {
            "dropped_off_sensor": [0, 1, 1, 0],
            "dropped_bad_camera_id": 1,
            "max_fraction": 0.01,
        }


def test_more_than_one_percent_stray_rejects_the_recording(p_dir: Path, tmp_path: Path) -> None:
    # 296 good + 4 stray = 300: 1.33 % stray
    strays = [ev(346, 0, 2100), ev(0, 260, 2101), ev(0, 0, 2102, cam=4), ev(400, 0, 2103)]
    rows = [sp(1000), *spread(150), *strays, *spread(146, 3000)]
    aedat, mat = tiny(tmp_path, rows)
    out = tmp_path / "out" / "o.h5"
    message = (
        r"mov1\.aedat: 4 of 300 polarity events are stray \(raw x > 345, y > 259 or camera id > "
        r"3; the first is event 151: raw x 346, y 0, camera id 0\); more than 1\.00% means"
    )
    with pytest.raises(Dhp19Error, match=message):
        convert(aedat, mat, p_dir, out)
    assert leftovers(out.parent) == []
    # the fraction is a setting: a looser one accepts the file
    result = convert(aedat, mat, p_dir, out, max_stray_fraction=0.02)
    assert result.stray_dropped == (3, 0, 0, 0) and result.stray_bad_camera == 1


def test_all_events_stray(p_dir: Path, tmp_path: Path) -> None:
    aedat, mat = tiny(tmp_path, [sp(1000), ev(346, 0, 1000), ev(0, 0, 1001, cam=7)])
    with pytest.raises(Dhp19Error, match="2 of 2 polarity events are stray"):
        convert(aedat, mat, p_dir, tmp_path / "o.h5")
    with pytest.raises(Dhp19Error, match="every polarity event is stray"):
        convert(aedat, mat, p_dir, tmp_path / "o.h5", max_stray_fraction=1.0)


def test_events_outside_start_stop_are_dropped_bounds_inclusive(
    p_dir: Path, tmp_path: Path
) -> None:
    # 10 labels -> 100 ms; 3 specials: start 10 000, stop 60 000 (first and last)
    rows = [ev(1, 1, 9_999), sp(10_000), ev(2, 2, 10_000), sp(20_000), ev(3, 3, 60_000)]
    rows += [sp(60_000), ev(4, 4, 60_001), ev(5, 5, 70_000, cam=1)]
    aedat, mat = tiny(tmp_path, rows)
    result = convert(aedat, mat, p_dir, tmp_path / "o.h5")
    assert all_events(tmp_path / "o.h5", 0)["t"].tolist() == [0, 50_000]
    assert result.events_kept == (2, 0, 0, 0)
    assert result.dropped_outside == (2, 1, 0, 0)


def test_start_derived_when_the_only_special_is_nearer_the_end(p_dir: Path, tmp_path: Path) -> None:
    # events from 0 to 1 000 000 us, one special at 900 000 -> it is the stop; 10 labels = 100 ms
    rows = [ev(1, 1, 0), ev(2, 2, 799_999), ev(3, 3, 800_000), sp(900_000), ev(4, 4, 1_000_000)]
    aedat, mat = tiny(tmp_path, rows)
    result = convert(aedat, mat, p_dir, tmp_path / "o.h5")
    assert (result.start_us, result.stop_us) == (800_000, 900_000)
    assert all_events(tmp_path / "o.h5", 0)["x"].tolist() == [342]


def test_six_specials_reject_the_recording(p_dir: Path, tmp_path: Path) -> None:
    rows = [sp(1000 + i) for i in range(6)] + [ev(1, 1, 2000)]
    aedat, mat = tiny(tmp_path, rows)
    with pytest.raises(Dhp19Error, match="6 special events"):
        convert(aedat, mat, p_dir, tmp_path / "out" / "o.h5")
    assert leftovers(tmp_path / "out") == []


def test_no_special_event_converts_between_first_and_last_event(
    p_dir: Path, tmp_path: Path
) -> None:
    # Generate_DHP19.m's rule for S14 session5 mov3; a stray event before the first good one
    # does not move the start
    rows = [ev(0, 0, 5, cam=4), ev(1, 1, 2000), ev(2, 2, 3000, cam=1), ev(3, 3, 5000)]
    aedat, mat = tiny(tmp_path, rows)
    result = convert(aedat, mat, p_dir, tmp_path / "o.h5", max_stray_fraction=0.5)
    assert (result.start_us, result.stop_us, result.specials) == (2000, 5000, 0)
    assert result.events_kept == (2, 1, 0, 0) and result.dropped_outside == (0, 0, 0, 0)
    assert all_events(tmp_path / "o.h5", 0)["t"].tolist() == [0, 3000]
    assert all_events(tmp_path / "o.h5", 1)["t"].tolist() == [1000]
    with Recording(tmp_path / "o.h5") as r:
        assert r.meta.extra["start_stop_rule"] == "0 specials: first and last event"
        assert r.meta.extra["special_events_us_raw"] == []


def test_timestamp_wrap_inside_a_recording(p_dir: Path, tmp_path: Path) -> None:
    w = 1 << 32
    rows = [sp(w - 30_000), ev(1, 1, w - 20_000), ev(2, 2, w - 1), ev(3, 3, w + 5), sp(w + 60_000)]
    rows += [sp(w + 70_000)]  # 3 specials: start w - 30 000, stop w + 70 000
    aedat, mat = tiny(tmp_path, rows)
    result = convert(aedat, mat, p_dir, tmp_path / "o.h5")
    assert (result.start_us, result.stop_us) == (w - 30_000, w + 70_000)
    assert all_events(tmp_path / "o.h5", 0)["t"].tolist() == [10_000, 29_999, 30_005]


def test_small_disorder_is_repaired(p_dir: Path, tmp_path: Path) -> None:
    rows = [sp(1000), ev(1, 1, 2000), ev(2, 2, 3000), ev(3, 3, 2500), ev(4, 4, 2600, cam=1)]
    aedat, mat = tiny(tmp_path, rows)
    result = convert(aedat, mat, p_dir, tmp_path / "o.h5")
    assert result.repaired == (1, 0, 0, 0)
    got = all_events(tmp_path / "o.h5", 0)
    assert got["t"].tolist() == [1000, 1500, 2000]
    assert got["x"].tolist() == [344, 342, 343]


def test_large_disorder_rejects_the_recording(p_dir: Path, tmp_path: Path) -> None:
    rows = [sp(1000), ev(1, 1, 2000), ev(2, 2, 9000, cam=2), ev(3, 3, 3000, cam=2)]
    aedat, mat = tiny(tmp_path, rows)
    out = tmp_path / "out" / "o.h5"
    with pytest.raises(Dhp19Error, match=r"camera 2: .*back by 6000 us at event 3"):
        convert(aedat, mat, p_dir, out)
    assert leftovers(out.parent) == []


def test_order_is_checked_after_the_crop(p_dir: Path, tmp_path: Path) -> None:
    # 3 specials: [10 000, 60 000]. Before the start, camera 0 jumps back 8 000 us and after the
    # stop an event lies 30 000 us ahead of a kept one: both are dropped anyway and must not
    # reject the recording. Inside, one event lags 500 us: repaired, and the largest jump kept
    rows = [ev(1, 1, 5_000), ev(2, 2, 9_000), ev(3, 3, 1_000), sp(10_000), ev(4, 4, 10_000)]
    rows += [sp(20_000), ev(5, 5, 30_000), ev(6, 6, 29_500), ev(7, 7, 70_000), ev(8, 8, 40_000)]
    rows += [sp(60_000), ev(9, 9, 30_000, cam=1)]
    aedat, mat = tiny(tmp_path, rows)
    result = convert(aedat, mat, p_dir, tmp_path / "o.h5")
    assert result.dropped_outside == (4, 0, 0, 0)
    assert result.repaired == (1, 0, 0, 0)
    assert result.max_backward_jump_us == (500, 0, 0, 0)
    got = all_events(tmp_path / "o.h5", 0)
    assert got["t"].tolist() == [0, 19_500, 20_000, 30_000]
    assert got["x"].tolist() == [341, 339, 340, 337]
    with Recording(tmp_path / "o.h5") as r:
        assert r.meta.extra["max_backward_jump_us"] == [500, 0, 0, 0]
        assert r.meta.extra["repaired_out_of_order"] == [1, 0, 0, 0]


def test_no_event_between_start_and_stop(p_dir: Path, tmp_path: Path) -> None:
    aedat, mat = tiny(tmp_path, [ev(1, 1, 0), sp(500_000), ev(1, 1, 10_000_000)])
    with pytest.raises(Dhp19Error, match="no polarity event between start"):
        convert(aedat, mat, p_dir, tmp_path / "o.h5")
    aedat, mat = tiny(tmp_path, [sp(500_000)])
    with pytest.raises(Dhp19Error, match="no polarity events"):
        convert(aedat, mat, p_dir, tmp_path / "o.h5")


def test_hot_pixel_filter_in_conversion(p_dir: Path, tmp_path: Path) -> None:
    # (5, 5) has 4 events, (6, 6) has 3: with threshold 4, exactly (5, 5) is hot (>=)
    rows = (
        [sp(1000)] + [ev(5, 5, 1000 + i) for i in range(4)] + [ev(6, 6, 1100 + i) for i in range(3)]
    )
    aedat, mat = tiny(tmp_path, rows)
    result = convert(
        aedat, mat, p_dir, tmp_path / "o.h5", hot_pixel_filter=True, hot_pixel_threshold=4
    )
    assert result.hot_pixel_filtered == (4, 0, 0, 0)
    assert all_events(tmp_path / "o.h5", 0)["x"].tolist() == [345 - 6] * 3
    with Recording(tmp_path / "o.h5") as r:
        assert r.meta.extra["hot_pixel_filter"] == {
            "threshold": 4,
            "rule": "pixels with >= threshold events removed",
            "removed": [4, 0, 0, 0],
        }
        assert r.meta.extra["background_filter"] is None
    # threshold 3: both pixels are hot and nothing is left, which rejects the recording
    with pytest.raises(Dhp19Error, match="the filters removed all 7 events between start"):
        convert(aedat, mat, p_dir, tmp_path / "p.h5", hot_pixel_filter=True, hot_pixel_threshold=3)
    assert not (tmp_path / "p.h5").exists()


@pytest.mark.parametrize(
    ("arg", "value", "message"),
    [
        ("hot_pixel_threshold", 0, "hot_pixel_threshold must be >= 1, got 0"),
        ("background_support_us", -1, "background_support_us must be >= 0, got -1"),
        ("max_repairable_jump_us", -1, "max_repairable_jump_us must be >= 0, got -1"),
        ("max_stray_fraction", -0.1, r"max_stray_fraction must be in \[0, 1\], got -0.1"),
        ("max_stray_fraction", 1.5, r"max_stray_fraction must be in \[0, 1\], got 1.5"),
        ("max_stray_fraction", float("nan"), r"max_stray_fraction must be in \[0, 1\], got nan"),
        ("max_end_gap_us", -1, "max_end_gap_us must be >= 0, got -1"),
        ("max_end_gap_fraction", 1.5, r"max_end_gap_fraction must be in \[0, 1\], got 1.5"),
        ("max_end_gap_fraction", float("nan"), r"max_end_gap_fraction must be in \[0, 1\]"),
        (
            "background_stamps",
            "self",
            "background_stamps must be one of neighbours, neighbours-and-self, got 'self'",
        ),
        (
            "camera_position_tolerance_mm",
            -1.0,
            "camera_position_tolerance_mm must be >= 0, got -1.0",
        ),
        (
            "camera_position_tolerance_mm",
            float("nan"),
            "camera_position_tolerance_mm must be >= 0, got nan",
        ),
    ],
)
def test_settings_out_of_range_are_rejected(
    p_dir: Path, tmp_path: Path, arg: str, value: float, message: str
) -> None:
    aedat, mat = tiny(tmp_path, [sp(1000), ev(1, 1, 1000)])
    with pytest.raises(Dhp19Error, match=message):
        convert(aedat, mat, p_dir, tmp_path / "o.h5", **{arg: value})


@pytest.mark.parametrize("stamps", BOTH_RULES)
def test_background_filter_in_conversion(
    fake: FakeDhp19, p_dir: Path, tmp_path: Path, stamps: BackgroundStamps
) -> None:
    rec = fake.recordings[(1, 1, 1)]
    out = tmp_path / "o.h5"
    kwargs: dict[str, object] = {} if stamps == "neighbours" else {"background_stamps": stamps}
    result = convert(rec.aedat, rec.vicon, p_dir, out, background_filter=True, **kwargs)
    for c in range(4):
        want = expected_events(rec, c)
        keep = reference_background_filter(
            want["x"], want["y"], want["t"], 70_000, (346, 260), stamps
        )
        # the rule is symmetric: the same in DHP19's raw (unflipped) pixel frame
        raw = reference_background_filter(
            345 - want["x"], 259 - want["y"], want["t"], 70_000, (346, 260), stamps
        )
        assert raw == keep
        got = all_events(out, c)
        assert result.background_filtered[c] == keep.count(False) > 0
        assert keep.count(True) > 0
        np.testing.assert_array_equal(got["t"], want["t"][np.array(keep, dtype=bool)])
        np.testing.assert_array_equal(got["x"], want["x"][np.array(keep, dtype=bool)])
    with Recording(out) as r:
        assert r.meta.extra["background_filter"] == {
            "support_us": 70_000,
            "rule": "DHP19 BackgroundFilter.m, per camera",
            "stamps": stamps,
            "removed": list(result.background_filtered),
        }


def test_the_two_background_rules_differ_in_conversion(p_dir: Path, tmp_path: Path) -> None:
    # camera 0: one pixel fires three times 10 ms apart, alone: the June rule keeps its 2nd and
    # 3rd events (its own stamps), the current rule none; a neighbouring pair passes under both
    rows = [sp(1000), ev(5, 5, 1000), ev(5, 5, 11_000), ev(5, 5, 21_000)]
    rows += [ev(40, 40, 30_000), ev(41, 40, 30_001)]
    aedat, mat = tiny(tmp_path, rows)
    now = convert(aedat, mat, p_dir, tmp_path / "now.h5", background_filter=True)
    june = convert(
        aedat,
        mat,
        p_dir,
        tmp_path / "june.h5",
        background_filter=True,
        background_stamps="neighbours-and-self",
    )
    assert now.background_filtered == (4, 0, 0, 0) and now.events_kept == (1, 0, 0, 0)
    assert june.background_filtered == (2, 0, 0, 0) and june.events_kept == (3, 0, 0, 0)
    assert all_events(tmp_path / "now.h5", 0)["t"].tolist() == [29_001]
    assert all_events(tmp_path / "june.h5", 0)["t"].tolist() == [10_000, 20_000, 29_001]


# ------------------------------------------------------------------------- a whole root
def test_convert_dhp19_summary_and_skip(fake: FakeDhp19, tmp_path: Path) -> None:
    out = tmp_path / "out"
    first = convert_dhp19(fake.root, out, progress=False)
    names = ["S1_session1_mov1.h5", "S1_session1_mov2.h5"]
    assert first.converted == [out / n for n in names]
    assert first.skipped == [] and first.rejected == []
    stamps = [(out / n).stat().st_mtime_ns for n in names]
    second = convert_dhp19(fake.root, out, progress=True)
    assert second.converted == [] and second.skipped == [out / n for n in names]
    assert [(out / n).stat().st_mtime_ns for n in names] == stamps
    assert "0 converted, 2 skipped" in second.format()


def test_existing_output_with_other_filter_settings_is_rejected(
    fake: FakeDhp19, tmp_path: Path
) -> None:
    out = tmp_path / "out"
    names = ["S1_session1_mov1.h5", "S1_session1_mov2.h5"]
    assert len(convert_dhp19(fake.root, out, progress=False).converted) == 2
    stamps = [(out / n).stat().st_mtime_ns for n in names]
    summary = convert_dhp19(fake.root, out, hot_pixel_filter=True, progress=False)
    assert summary.converted == [] and summary.skipped == []
    assert [name for name, _ in summary.rejected] == ["S1_session1_mov1", "S1_session1_mov2"]
    # only the settings that differ are named
    assert summary.rejected[0][1] == (
        f"{out / names[0]} exists with different settings (stored: hot-pixel filter off; "
        "requested: hot-pixel filter rule=pixels with >= threshold events removed, "
        "threshold=10000); delete it or use another --out"
    )
    assert [(out / n).stat().st_mtime_ns for n in names] == stamps  # not overwritten
    # the other way round: files made with the background filter, asked for without
    filtered = tmp_path / "filtered"
    convert_dhp19(fake.root, filtered, background_filter=True, progress=False)
    summary = convert_dhp19(fake.root, filtered, progress=False)
    assert len(summary.rejected) == 2 and summary.skipped == []
    assert summary.rejected[0][1] == (
        f"{filtered / names[0]} exists with different settings (stored: background filter "
        "rule=DHP19 BackgroundFilter.m, per camera, stamps=neighbours, support_us=70000; "
        "requested: background filter off); delete it or use another --out"
    )
    # the same settings again: skipped
    again = convert_dhp19(fake.root, filtered, background_filter=True, progress=False)
    assert again.rejected == [] and again.skipped == [filtered / n for n in names]
    # the other rule of the background filter is another setting: not skipped
    june = convert_dhp19(
        fake.root,
        filtered,
        background_filter=True,
        background_stamps="neighbours-and-self",
        progress=False,
    )
    assert june.skipped == [] and june.converted == [] and len(june.rejected) == 2
    assert (
        "(stored: background filter rule=DHP19 BackgroundFilter.m, per camera, "
        "stamps=neighbours, support_us=70000; requested: background filter rule=DHP19 "
        "BackgroundFilter.m, per camera, stamps=neighbours-and-self, support_us=70000)"
    ) in june.rejected[0][1]


def write_foreign_output(path: Path, extra: dict[str, object]) -> None:
    """A valid recording whose ``extra`` is given, as an older converter might have left."""
    camera = CameraCalibration(P=np.eye(3, 4), center=np.zeros(3))
    with RecordingWriter(path, (346, 260), [camera], RecordingMeta("dhp19", extra=extra)):
        pass


@pytest.mark.parametrize(
    ("extra", "stored"),
    [
        # the jAER-variant filter of older versions stored no rule
        (
            {"hot_pixel_filter": None, "background_filter": {"support_us": 70000, "removed": [1]}},
            "stored: hot-pixel filter off; background filter support_us=70000;",
        ),
        # hot pixels removed above (not at) the threshold by older versions
        (
            {"hot_pixel_filter": {"threshold": 10000, "removed": [0]}, "background_filter": None},
            "stored: hot-pixel filter threshold=10000; background filter off;",
        ),
        # version 3 filtered with the June rule and stored no "stamps"
        (
            {
                "hot_pixel_filter": {
                    "threshold": 10000,
                    "rule": "pixels with >= threshold events removed",
                    "removed": [0],
                },
                "background_filter": {
                    "support_us": 70000,
                    "rule": "DHP19 BackgroundFilter.m, per camera",
                    "removed": [1],
                },
                "max_stray_fraction": 0.01,
                "max_repairable_jump_us": 1000,
                "end_gap_limit": {"max_us": 1_000_000, "max_fraction": 0.1},
                "converter_version": 3,
            },
            "(stored: background filter rule=DHP19 BackgroundFilter.m, per camera, "
            "support_us=70000; converter version 3; requested: background filter rule=DHP19 "
            "BackgroundFilter.m, per camera, stamps=neighbours, support_us=70000; converter "
            "version 4)",
        ),
        (
            {},
            "stored: hot-pixel filter not recorded; background filter not recorded; max stray "
            "fraction not recorded; max repairable jump not recorded; max end gap not recorded; "
            "converter version not recorded; requested: ",
        ),
    ],
)
def test_outputs_of_older_versions_are_not_taken_for_current_ones(
    fake: FakeDhp19, tmp_path: Path, extra: dict[str, object], stored: str
) -> None:
    out = tmp_path / "out"
    for name in ("S1_session1_mov1.h5", "S1_session1_mov2.h5"):
        write_foreign_output(out / name, extra)
    summary = convert_dhp19(
        fake.root, out, hot_pixel_filter=True, background_filter=True, progress=False
    )
    assert len(summary.rejected) == 2 and summary.skipped == [] and summary.converted == []
    assert stored in summary.rejected[0][1]


def test_unreadable_existing_output_is_rejected_not_overwritten(tmp_path: Path) -> None:
    root = tmp_path / "root"
    make_fake_dhp19(root, movements=(1, 2, 3), events_per_camera=50)
    (root / "Vicon_data" / "S1_1_3.mat").unlink()
    out = tmp_path / "out"
    out.mkdir()
    (out / "S1_session1_mov2.h5").write_bytes(b"half a file")
    summary = convert_dhp19(root, out, progress=False)
    assert summary.converted == [out / "S1_session1_mov1.h5"]
    # in recording order, the existing file's rejection first
    assert [name for name, _ in summary.rejected] == ["S1_session1_mov2", "S1_session1_mov3"]
    reason = summary.rejected[0][1]
    assert reason.startswith(f"{out / 'S1_session1_mov2.h5'} exists but cannot be read (")
    assert "not a readable HDF5 file" in reason
    assert reason.endswith("); delete it or use another --out")
    assert (out / "S1_session1_mov2.h5").read_bytes() == b"half a file"


def test_os_and_memory_errors_reject_one_recording_only(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    root = tmp_path / "root"
    make_fake_dhp19(root, movements=(1, 2, 3), events_per_camera=50)
    original = RecordingWriter.append_events

    def failing(self: RecordingWriter, camera: int, events: np.ndarray) -> None:
        if "mov1" in self.path.name:
            raise OSError(errno.ENOSPC, "No space left on device", str(self.path))
        if "mov2" in self.path.name:
            raise MemoryError
        original(self, camera, events)

    monkeypatch.setattr(RecordingWriter, "append_events", failing)
    out = tmp_path / "out"
    summary = convert_dhp19(root, out, progress=False)
    assert summary.converted == [out / "S1_session1_mov3.h5"]
    assert summary.rejected == [
        (
            "S1_session1_mov1",
            f"system error ({out / 'S1_session1_mov1.h5'}: No space left on device)",
        ),
        ("S1_session1_mov2", "out of memory while converting (MemoryError); try fewer --workers"),
    ]
    assert leftovers(out) == ["S1_session1_mov3.h5"]  # no temporary file left behind


def test_output_path_that_is_not_a_directory(fake: FakeDhp19, tmp_path: Path) -> None:
    (tmp_path / "file").write_text("x")
    with pytest.raises(Dhp19Error, match=r"file: output path exists and is not a directory"):
        convert_dhp19(fake.root, tmp_path / "file", progress=False)
    with pytest.raises(Dhp19Error, match=r"file/sub: cannot create the output directory \("):
        convert_dhp19(fake.root, tmp_path / "file" / "sub", progress=False)


def test_stale_temporary_files_are_removed(fake: FakeDhp19, tmp_path: Path) -> None:
    out = tmp_path / "out"
    out.mkdir()
    # a writer still running (this process), and the same name with a pid above any pid_max
    camera = CameraCalibration(P=np.eye(3, 4), center=np.zeros(3))
    writer = RecordingWriter(out / "S1_session1_mov9.h5", (346, 260), [camera], RecordingMeta("x"))
    (live,) = out.glob(".S1_session1_mov9.h5.*.tmp")
    assert f"-{os.getpid()}." in live.name  # .NAME.HOST-PID.RANDOM.tmp
    dead = out / live.name.replace(f"-{os.getpid()}.", "-99999999.").replace("mov9", "mov1")
    other = out / ".notes.tmp"  # not a writer's temporary file
    for path in (dead, other):
        path.write_bytes(b"partial")
    try:
        summary = convert_dhp19(fake.root, out, progress=False)
        assert summary.stale_temp_removed == 1
        assert not dead.exists() and live.exists() and other.exists()
    finally:
        writer.abort()
    assert len(summary.converted) == 2
    assert "\n  removed 1 stale temporary file(s) of killed earlier runs" in summary.format()
    again = convert_dhp19(fake.root, out, progress=False)
    assert again.stale_temp_removed == 0 and "stale" not in again.format()


def test_rejections_do_not_stop_the_others(tmp_path: Path) -> None:
    root = tmp_path / "root"
    make_fake_dhp19(root, movements=(1, 2, 3, 4), events_per_camera=50)
    (root / "Vicon_data" / "S1_1_2.mat").unlink()
    bad = root / "DVS_movies" / "S1" / "session1" / "mov3.aedat"
    bad.write_bytes(bad.read_bytes()[:-1])
    out = tmp_path / "out"
    summary = convert_dhp19(root, out, progress=False)
    assert summary.converted == [out / "S1_session1_mov1.h5", out / "S1_session1_mov4.h5"]
    assert [name for name, _ in summary.rejected] == ["S1_session1_mov2", "S1_session1_mov3"]
    assert "no Vicon file" in summary.rejected[0][1]
    assert "truncated" in summary.rejected[1][1]
    assert leftovers(out) == ["S1_session1_mov1.h5", "S1_session1_mov4.h5"]
    text = summary.format()
    assert "2 converted, 0 skipped (already converted), 2 rejected" in text
    assert "rejected S1_session1_mov3: " in text


def test_a_file_cut_on_a_record_boundary_is_rejected(tmp_path: Path) -> None:
    # An interrupted download cut exactly between two 8-byte records is a whole number of
    # records, so the reader cannot tell. Cut mov1 (1 s of labels) about halfway: its stop
    # special is gone, the first special is still the start and the stop is derived from the
    # labels (start + 1 s), but the events end about 0.5 s after the start. mov2 stays intact.
    root = tmp_path / "root"
    fake = make_fake_dhp19(root, movements=(1, 2), events_per_camera=600)
    rec = fake.recordings[(1, 1, 1)]
    kept = truncate_aedat2(rec.aedat, len(rec.t) // 2)
    polarity = rec.kind[:kept] == 0
    last = int(rec.t[:kept][polarity].max())  # the fixture's records are in time order
    assert not np.any(rec.t[kept:][rec.kind[kept:] == 1] < rec.stop_raw_us)  # stop special cut
    gap_s = (rec.stop_raw_us - last) / 1e6
    assert 0.4 < gap_s < 0.6
    out = tmp_path / "out"
    summary = convert_dhp19(root, out, progress=False)
    assert summary.converted == [out / "S1_session1_mov2.h5"]
    assert [name for name, _ in summary.rejected] == ["S1_session1_mov1"]
    reason = summary.rejected[0][1]
    assert reason.startswith(f"{rec.aedat}: ")
    end_s = (last - rec.start_raw_us) / 1e6
    assert (
        f"the events end {gap_s:.3f} s before the stop (last polarity event at {end_s:.3f} s"
        in (reason)
    )
    assert "stop at 1.000 s after the start" in reason and "truncated" in reason
    assert leftovers(out) == ["S1_session1_mov2.h5"]
    assert "1 converted, 0 skipped (already converted), 1 rejected" in summary.format()


def test_end_gap_limit_is_the_smaller_of_time_and_fraction() -> None:
    one_second = StartStop(0, 1_000_000, "2 specials: first = start")
    # 10 % of 1 s = 100 ms < 1 s: a gap of exactly 100 ms is accepted, 1 us more is not
    assert check_end_gap(one_second, 900_000) == 100_000
    assert check_end_gap(one_second, 1_000_000) == 0
    with pytest.raises(Dhp19Error, match=r"^f\.aedat: the events end 0\.100 s before the stop"):
        check_end_gap(one_second, 899_999, name="f.aedat")
    # 10 % of 30 s = 3 s > 1 s: the 1 s limit applies
    long = StartStop(5_000_000, 35_000_000, "3 specials: first = start, last = stop")
    assert check_end_gap(long, 34_000_000) == 1_000_000
    message = (
        "r: the events end 1.000 s before the stop (last polarity event at 29.000 s, stop at "
        "30.000 s after the start; 3 specials: first = start, last = stop); at most 1.000 s is "
        "accepted (the smaller of 1 s and 10% of the interval): the file looks truncated"
    )
    with pytest.raises(Dhp19Error) as err:
        check_end_gap(long, 33_999_999, name="r")
    assert str(err.value) == message
    # both limits are settings; the interval of 0 specials ends at the last event: no gap
    assert check_end_gap(long, 30_000_000, max_gap_us=5_000_000, max_gap_fraction=0.2) == 5_000_000
    assert check_end_gap(StartStop(2000, 5000, "0 specials: first and last event"), 5000) == 0


def silence_the_end(rec: FakeRecording, silent_us: int) -> int:
    """Rewrite ``rec``'s file without the polarity events of its last ``silent_us`` and after.

    The special events stay. Returns the time of the last polarity event left.
    """
    keep = ~((rec.kind == 0) & (rec.t > rec.stop_raw_us - silent_us))
    addresses = [a for a, k in zip(rec.addresses(), keep, strict=True) if k]
    write_aedat2(rec.aedat, addresses, rec.t[keep].tolist())
    return int(rec.t[keep & (rec.kind == 0)].max())


@pytest.mark.parametrize("movement", [1, 2])  # 2 specials (stop derived), 3 (stop special)
def test_events_ending_shortly_before_the_stop_still_convert(
    p_dir: Path, tmp_path: Path, movement: int
) -> None:
    # the cameras fall silent 80 ms before the stop of a 1 s recording: below 10 % (100 ms);
    # 120 ms is above it. With 3 specials the stop special is still in the file.
    rec = make_fake_recording(
        tmp_path / "mov.aedat",
        tmp_path / "S1_1_1.mat",
        fake_cameras(),
        movement=movement,
        events_per_camera=600,
    )
    kwargs: dict[str, Any] = {"subject": 1, "session": 1, "movement": movement}
    last = silence_the_end(rec, 80_000)
    result = convert_recording(rec.aedat, rec.vicon, p_dir, tmp_path / "o.h5", **kwargs)
    assert (result.start_us, result.stop_us) == (rec.start_raw_us, rec.stop_raw_us)
    assert 80_000 <= result.end_gap_us == rec.stop_raw_us - last < 100_000
    with Recording(tmp_path / "o.h5") as r:
        assert r.meta.extra["end_gap_us"] == result.end_gap_us
        assert r.meta.extra["end_gap_limit"] == {"max_us": 1_000_000, "max_fraction": 0.1}
    last = silence_the_end(rec, 120_000)
    gap_s = (rec.stop_raw_us - last) / 1e6
    with pytest.raises(Dhp19Error, match=rf"mov\.aedat: the events end {gap_s:.3f} s before"):
        convert_recording(rec.aedat, rec.vicon, p_dir, tmp_path / "out" / "o.h5", **kwargs)
    assert leftovers(tmp_path / "out") == []


def test_an_intact_recording_has_a_short_end_gap(fake: FakeDhp19, fake_converted: Path) -> None:
    for (s, n, k), rec in fake.recordings.items():
        with Recording(fake_converted / f"S{s}_session{n}_mov{k}.h5") as r:
            extra = r.meta.extra
        inside = (rec.kind == 0) & (rec.t >= rec.start_raw_us) & (rec.t <= rec.stop_raw_us)
        assert extra["end_gap_us"] == rec.stop_raw_us - rec.t[inside].max() < 5_000


def test_end_gap_limit_is_a_setting(p_dir: Path, tmp_path: Path) -> None:
    # the file cut halfway is accepted with a looser limit, which is stored; a batch run with
    # the default limit does not take that output for its own
    root = tmp_path / "root"
    fake = make_fake_dhp19(root, movements=(1,), events_per_camera=600)
    rec = fake.recordings[(1, 1, 1)]
    truncate_aedat2(rec.aedat, len(rec.t) // 2)
    out = tmp_path / "out" / "S1_session1_mov1.h5"
    kwargs: dict[str, Any] = {"subject": 1, "session": 1, "movement": 1}
    with pytest.raises(Dhp19Error, match="the file looks truncated"):
        convert_recording(rec.aedat, rec.vicon, p_dir, out, **kwargs)
    with pytest.raises(Dhp19Error, match=r"the smaller of 0\.3 s and 60% of the interval"):
        convert_recording(
            rec.aedat,
            rec.vicon,
            p_dir,
            out,
            max_end_gap_fraction=0.6,
            max_end_gap_us=300_000,
            **kwargs,
        )
    result = convert_recording(rec.aedat, rec.vicon, p_dir, out, max_end_gap_fraction=0.6, **kwargs)
    assert 400_000 < result.end_gap_us < 600_000
    with Recording(out) as r:
        assert r.meta.extra["end_gap_limit"] == {"max_us": 1_000_000, "max_fraction": 0.6}
    summary = convert_dhp19(root, out.parent, progress=False)
    assert summary.skipped == [] and summary.converted == []
    assert summary.rejected[0][1] == (
        f"{out} exists with different settings (stored: max end gap max_fraction=0.6, "
        "max_us=1000000; requested: max end gap max_fraction=0.1, max_us=1000000); delete it or "
        "use another --out"
    )


def test_find_recordings_sorts_numerically_and_ignores_other_names(tmp_path: Path) -> None:
    for rel in ("S10/session1/mov1", "S2/session5/mov7", "S2/session1/mov10", "S2/session1/mov2"):
        write_aedat2(tmp_path / "DVS_movies" / f"{rel}.aedat", [], [])
    write_aedat2(tmp_path / "DVS_movies" / "S2" / "session1" / "mov2_old.aedat", [], [])
    found = find_recordings(tmp_path)
    assert [r.name for r in found] == [
        "S2_session1_mov2",
        "S2_session1_mov10",
        "S2_session5_mov7",
        "S10_session1_mov1",
    ]
    assert found[1].vicon_mat == tmp_path / "Vicon_data" / "S2_1_10.mat"


def test_fixture_runs_as_a_script(tmp_path: Path) -> None:
    assert fixture_main([]) == 2
    assert fixture_main([str(tmp_path)]) == 0
    assert [r.name for r in find_recordings(tmp_path)] == ["S1_session1_mov1", "S1_session1_mov2"]
    assert len(list((tmp_path / "P_matrices").glob("*.npy"))) == 5


def test_summary_format_by_hand() -> None:
    s = ConversionSummary(
        converted=[Path("a.h5")], skipped=[], rejected=[("S4_session3_mov4", "x")]
    )
    assert s.format() == (
        "DHP19 conversion: 1 converted, 0 skipped (already converted), 1 rejected\n"
        "  rejected S4_session3_mov4: x"
    )
    s = ConversionSummary(converted=[], skipped=[Path("b.h5")], rejected=[], stale_temp_removed=2)
    assert s.format() == (
        "DHP19 conversion: 0 converted, 1 skipped (already converted), 0 rejected\n"
        "  removed 2 stale temporary file(s) of killed earlier runs"
    )


def test_missing_root_parts_raise(fake: FakeDhp19, tmp_path: Path) -> None:
    with pytest.raises(Dhp19Error, match="nothing: DHP19 root does not exist"):
        convert_dhp19(tmp_path / "nothing", tmp_path / "out", progress=False)
    (tmp_path / "a_file").write_text("x")
    with pytest.raises(Dhp19Error, match="a_file: DHP19 root is not a directory"):
        convert_dhp19(tmp_path / "a_file", tmp_path / "out", progress=False)
    (tmp_path / "empty").mkdir()
    with pytest.raises(Dhp19Error, match="DVS_movies: no DVS_movies folder"):
        convert_dhp19(tmp_path / "empty", tmp_path / "out", progress=False)
    (tmp_path / "empty" / "DVS_movies").mkdir()
    with pytest.raises(Dhp19Error, match="DVS_movies: no recording found"):
        convert_dhp19(tmp_path / "empty", tmp_path / "out", progress=False)
    write_aedat2(tmp_path / "empty" / "DVS_movies" / "S1" / "session1" / "mov1.aedat", [], [])
    with pytest.raises(Dhp19Error, match="Vicon_data: no Vicon_data folder in the DHP19 root"):
        convert_dhp19(tmp_path / "empty", tmp_path / "out", progress=False)
    (tmp_path / "empty" / "Vicon_data").mkdir()
    with pytest.raises(Dhp19Error, match="P_matrices: no P_matrices folder"):
        convert_dhp19(tmp_path / "empty", tmp_path / "out", progress=False)
    with pytest.raises(Dhp19Error, match="workers must be at least 1"):
        convert_dhp19(fake.root, tmp_path / "out", workers=0, progress=False)
    assert not (tmp_path / "out").exists()  # every check comes before the output directory


def test_missing_vicon_folder_is_one_error_not_a_rejection_per_recording(
    fake: FakeDhp19, tmp_path: Path
) -> None:
    root = tmp_path / "root"
    make_fake_dhp19(root, movements=(1, 2), events_per_camera=50)
    for f in (root / "Vicon_data").iterdir():
        f.unlink()
    (root / "Vicon_data").rmdir()
    with pytest.raises(Dhp19Error, match=r"^\S*root/Vicon_data: no Vicon_data folder in the DHP19"):
        convert_dhp19(root, tmp_path / "out", progress=False)


def test_no_matching_recording_names_the_pattern_and_the_ignored_files(tmp_path: Path) -> None:
    movies = tmp_path / "DVS_movies"
    movies.mkdir()
    with pytest.raises(Dhp19Error) as info:
        find_recordings(tmp_path)
    assert str(info.value) == (
        f"{movies}: no recording found: no .aedat file matches S{{s}}/session{{n}}/mov{{k}}.aedat "
        "(there is no .aedat file at all)"
    )
    for rel in ("S1/session1/Mov1.aedat", "S1/session1/mov2.AEDAT", "s1/session1/mov3.aedat"):
        write_aedat2(movies / rel, [], [])
    (movies / "S1" / "session1" / "notes.txt").write_text("not a recording")
    with pytest.raises(Dhp19Error) as info:
        find_recordings(tmp_path)
    assert str(info.value) == (
        f"{movies}: no recording found: no .aedat file matches S{{s}}/session{{n}}/mov{{k}}.aedat "
        "(case-sensitive); ignored because of their names: S1/session1/Mov1.aedat, "
        "S1/session1/mov2.AEDAT, s1/session1/mov3.aedat"
    )
    for k in range(4, 7):
        write_aedat2(movies / "S1" / f"mov{k}.aedat", [], [])  # no session folder
    message = (
        r"names: S1/mov4\.aedat, S1/mov5\.aedat, S1/mov6\.aedat, S1/session1/Mov1\.aedat "
        r"and 2 more$"
    )
    with pytest.raises(Dhp19Error, match=message):
        find_recordings(tmp_path)


def test_unwritable_output_directory_is_one_error(
    fake: FakeDhp19, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    out = tmp_path / "out"

    def refuse(*args: object, dir: str | os.PathLike[str], **kwargs: object) -> object:
        name = Path(dir) / ".hybridpose-probe-abc123"
        raise PermissionError(errno.EACCES, "Permission denied", str(name))

    monkeypatch.setattr(tempfile, "NamedTemporaryFile", refuse)
    with pytest.raises(Dhp19Error) as info:
        convert_dhp19(fake.root, out, progress=False)
    assert str(info.value) == f"{out}: not writable (Permission denied)"  # no temp file named
    assert leftovers(out) == []


@pytest.mark.skipif(os.geteuid() == 0, reason="root may write into a read-only directory")
def test_read_only_output_directory_is_one_error(fake: FakeDhp19, tmp_path: Path) -> None:
    out = tmp_path / "out"
    out.mkdir()
    out.chmod(0o500)
    try:
        with pytest.raises(Dhp19Error, match=r"out: not writable \(Permission denied\)$"):
            convert_dhp19(fake.root, out, progress=False)
    finally:
        out.chmod(0o700)
    assert leftovers(out) == []


def test_empty_paths_are_errors_not_the_current_directory(
    fake: FakeDhp19, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    with pytest.raises(Dhp19Error, match=r"^the output directory is an empty path$"):
        convert_dhp19(fake.root, "", progress=False)
    with pytest.raises(Dhp19Error, match=r"^the DHP19 root is an empty path$"):
        convert_dhp19("", tmp_path / "out", progress=False)
    assert leftovers(tmp_path) == []


def test_two_workers_write_identical_files(
    fake: FakeDhp19, fake_converted: Path, tmp_path: Path
) -> None:
    summary = convert_dhp19(fake.root, tmp_path, workers=2, progress=False)
    assert [p.name for p in summary.converted] == ["S1_session1_mov1.h5", "S1_session1_mov2.h5"]
    for path in summary.converted:
        reference = fake_converted / path.name
        assert path.read_bytes() == reference.read_bytes()
        with Recording(path) as a, Recording(reference) as b:
            assert a.meta == b.meta
            for c in range(4):
                np.testing.assert_array_equal(all_events(path, c), all_events(reference, c))


# ------------------------------------------------------------------------ property tests
@FUZZ
@given(
    st.sampled_from(["P1.npy", "P4.npy", "camera_positions.npy"]),
    st.integers(0, 300),
    st.lists(st.integers(0, 8 * 300), max_size=3),
)
def test_read_p_matrices_on_damaged_files(
    p_dir: Path, name: str, cut: int, flips: list[int]
) -> None:
    with tempfile.TemporaryDirectory() as d:
        folder = Path(d)
        for f in p_dir.iterdir():
            (folder / f.name).write_bytes(f.read_bytes())
        data = (p_dir / name).read_bytes()
        (folder / name).write_bytes(flip_bits(data, flips)[:cut] if flips else data[:cut])
        try:
            calib = read_p_matrices(folder)
        except Dhp19Error as err:
            assert name in str(err)
        else:
            assert calib.P.shape == (4, 3, 4) and np.all(np.isfinite(calib.P))


AEDAT_HEADER_BYTES = len(aedat2_bytes([], []))


@settings(FUZZ, max_examples=50)
@given(
    st.sampled_from(["aedat", "aedat records", "mat", "P3.npy"]),
    st.one_of(st.none(), st.integers(0, 1 << 16)),
    st.lists(st.integers(0, 1 << 20), min_size=0, max_size=3),
)
def test_convert_recording_on_damaged_inputs(
    p_dir: Path, which: str, cut: int | None, flips: list[int]
) -> None:
    with tempfile.TemporaryDirectory() as d:
        folder = Path(d)
        calib = folder / "P_matrices"
        calib.mkdir()
        for f in p_dir.iterdir():
            (calib / f.name).write_bytes(f.read_bytes())
        aedat, mat = folder / "mov1.aedat", folder / "S1_1_1.mat"
        aedat.write_bytes(VALID_AEDAT)
        write_vicon_mat(mat, skeleton(3, 1))
        target = {"aedat": aedat, "aedat records": aedat, "mat": mat, "P3.npy": calib / "P3.npy"}
        data = target[which].read_bytes()
        if which == "aedat records":  # damage the events only, so that the header still parses
            body = flip_bits(data[AEDAT_HEADER_BYTES:], flips) if flips else b""
            data = data[:AEDAT_HEADER_BYTES] + body
        elif flips:
            data = flip_bits(data, flips)
        target[which].write_bytes(data if cut is None else data[: cut % (len(data) + 1)])
        out_dir = folder / "out"
        out = out_dir / "o.h5"
        try:
            result = convert(aedat, mat, calib, out)
        except HybridPoseError:
            assert leftovers(out_dir) == []
        else:
            assert leftovers(out_dir) == ["o.h5"]
            with Recording(out) as rec:
                for c in range(4):
                    events = all_events(out, c)
                    validate_events(events, (346, 260))
                    assert len(events) == result.events_kept[c]
                assert rec.num_labels == result.num_labels == 3


def test_stored_matrices_put_the_body_in_front_whatever_the_raw_sign(tmp_path: Path) -> None:
    # P is defined up to scale; DHP19's files may carry either sign. The stored matrix must not
    # depend on it: its sign is chosen so that the labelled body has w > 0 (our convention).
    fake = make_fake_dhp19(tmp_path / "root", movements=(1,), events_per_camera=200)
    p_files = fake.root / "P_matrices"
    for m in (1, 3):  # negate two of the four raw matrices
        np.save(p_files / f"P{m}.npy", -np.load(p_files / f"P{m}.npy"))
    out = tmp_path / "out"
    assert len(convert_dhp19(fake.root, out, progress=False).converted) == 1
    with Recording(out / "S1_session1_mov1.h5") as r:
        joints = r.labels().joints_mm.reshape(-1, 3).astype(np.float64)
        for c, m in enumerate(dhp19.CAMERA_TO_MATRIX):
            P = r.cameras[c].calibration.P
            raw = np.load(p_files / f"P{m}.npy")
            np.testing.assert_allclose(np.abs(P), np.abs(FLIP @ raw), rtol=0, atol=0)
            w = joints @ P[2, :3] + P[2, 3]
            assert np.all(w[np.isfinite(w)] > 0), f"camera {c}"
            assert r.meta.extra["cameras"][c]["labels_in_front_fraction"] == 1.0
            assert not np.isnan(project(P, joints)).all()


def test_converter_version_is_part_of_the_settings(
    fake: FakeDhp19, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    out = tmp_path / "out"
    names = ["S1_session1_mov1.h5", "S1_session1_mov2.h5"]
    assert len(convert_dhp19(fake.root, out, progress=False).converted) == 2
    with Recording(out / names[0]) as r:
        assert r.meta.extra["converter_version"] == 4 == dhp19.CONVERTER_VERSION
    # a later converter version does not take these files for its own
    monkeypatch.setattr(dhp19_common, "CONVERTER_VERSION", 5)
    summary = convert_dhp19(fake.root, out, progress=False)
    assert summary.skipped == [] and summary.converted == []
    assert summary.rejected[0][1] == (
        f"{out / names[0]} exists with different settings (stored: converter version 4; "
        "requested: converter version 5); delete it or use another --out"
    )
    monkeypatch.setattr(dhp19_common, "CONVERTER_VERSION", 4)
    # same settings as asked for, but written by version 2, or with no version at all
    settings: dict[str, object] = {
        "hot_pixel_filter": None,
        "background_filter": None,
        "max_stray_fraction": 0.01,
        "max_repairable_jump_us": 1000,
        "end_gap_limit": {"max_us": 1_000_000, "max_fraction": 0.1},
    }
    write_foreign_output(out / names[0], {**settings, "converter_version": 2})
    write_foreign_output(out / names[1], settings)
    summary = convert_dhp19(fake.root, out, progress=False)
    assert summary.skipped == [] and summary.converted == []
    assert [reason.split(" (", 1)[1] for _, reason in summary.rejected] == [
        "stored: converter version 2; requested: converter version 4); delete it or use "
        "another --out",
        "stored: converter version not recorded; requested: converter version 4); delete it or "
        "use another --out",
    ]
    # a version-2 file (no end-gap limit stored) names both differences
    del settings["end_gap_limit"]
    write_foreign_output(out / names[1], {**settings, "converter_version": 2})
    assert (
        convert_dhp19(fake.root, out, progress=False)
        .rejected[1][1]
        .endswith(
            "(stored: max end gap not recorded; converter version 2; requested: max end gap "
            "max_fraction=0.1, max_us=1000000; converter version 4); delete it or use another --out"
        )
    )
    # and with the current settings and version stored they are skipped
    settings["end_gap_limit"] = {"max_us": 1_000_000, "max_fraction": 0.1}
    write_foreign_output(out / names[0], {**settings, "converter_version": 4})
    assert convert_dhp19(fake.root, out, progress=False).skipped == [out / names[0]]


def thresholds_root(tmp_path: Path) -> Path:
    """A one-recording root whose mov1 has 2 % stray events and a 1 500 us backward jump."""
    root = tmp_path / "root"
    make_fake_dhp19(root, movements=(1,), events_per_camera=50)  # 100 Vicon samples: 1 s
    # 96 good events + 2 off the sensor (2 % of 100 polarity events), and camera 0 jumps back
    # from 5 000 to 3 500 us, all inside [1 000, 1 001 000]; the last event, 1 ms before the
    # stop, keeps the end gap short
    rows = [sp(1000), *spread(95), ev(346, 0, 2100), ev(346, 0, 2101)]
    rows += [ev(1, 1, 5000), ev(2, 2, 3500), ev(3, 3, 1_000_000, cam=1)]
    write_aedat2(
        root / "DVS_movies" / "S1" / "session1" / "mov1.aedat",
        [a for a, _ in rows],
        [t for _, t in rows],
    )
    return root


def test_rejection_thresholds_from_the_command_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    root = thresholds_root(tmp_path)
    out = tmp_path / "out"
    base = ["convert-dhp19", "--root", str(root), "--out", str(out), "--quiet"]
    assert cli.main(base) == 1  # the defaults: 1 % stray, 1 000 us
    assert "2 of 100 polarity events are stray" in capsys.readouterr().out
    assert cli.main([*base, "--max-stray-fraction", "0.05"]) == 1
    printed = capsys.readouterr().out
    assert "back by 1500 us at event 99 (t=3500 us after t=5000 us); at most 1000 us" in printed
    loose = [*base, "--max-stray-fraction", "0.05", "--max-repairable-jump-us", "1500"]
    assert cli.main(loose) == 0
    assert "1 converted" in capsys.readouterr().out
    with Recording(out / "S1_session1_mov1.h5") as r:
        extra = r.meta.extra
    assert extra["max_stray_fraction"] == 0.05 and extra["max_repairable_jump_us"] == 1500
    assert extra["stray_events"]["max_fraction"] == 0.05
    assert extra["max_backward_jump_us"] == [1500, 0, 0, 0]
    # the thresholds are settings: other ones do not skip the file, the same ones do
    assert cli.main(base) == 1
    printed = capsys.readouterr().out
    assert (
        "exists with different settings (stored: max stray fraction 0.05; max repairable jump "
        "1500 us; requested: max stray fraction 0.01; max repairable jump 1000 us); delete it or "
        "use another --out"
    ) in printed
    assert cli.main(loose) == 0
    assert "0 converted, 1 skipped" in capsys.readouterr().out


def test_rejection_thresholds_through_the_library(tmp_path: Path) -> None:
    root = thresholds_root(tmp_path)
    out = tmp_path / "out"
    summary = convert_dhp19(
        root, out, max_stray_fraction=0.02, max_repairable_jump_us=1499, progress=False
    )
    assert summary.converted == [] and "back by 1500 us" in summary.rejected[0][1]
    summary = convert_dhp19(
        root, out, max_stray_fraction=0.02, max_repairable_jump_us=1500, progress=False
    )
    assert summary.converted == [out / "S1_session1_mov1.h5"]
    for kwargs, message in (
        ({"max_stray_fraction": 1.01}, r"max_stray_fraction must be in \[0, 1\], got 1.01"),
        ({"max_stray_fraction": float("nan")}, r"max_stray_fraction must be in \[0, 1\]"),
        ({"max_repairable_jump_us": -1}, "max_repairable_jump_us must be >= 0, got -1"),
    ):
        with pytest.raises(Dhp19Error, match=message):
            convert_dhp19(root, tmp_path / "other", progress=False, **kwargs)
    assert not (tmp_path / "other").exists()


def test_cli_defaults_are_the_converter_defaults() -> None:
    args = cli.build_parser().parse_args(["convert-dhp19", "--root", "r", "--out", "o"])
    assert args.max_stray_fraction == dhp19.MAX_STRAY_FRACTION == 0.01
    assert args.max_repairable_jump_us == dhp19.MAX_REPAIRABLE_JUMP_US == 1000
    assert args.camera_position_tolerance_mm == dhp19.CAMERA_POSITION_TOLERANCE_MM == 10.0
    # the CLI spells the rules out (it does not import the converter to start): the same ones;
    # without --background-stamps the converter's default rule applies
    assert args.background_stamps is None and dhp19.DEFAULT_BACKGROUND_STAMPS == "neighbours"
    commands = next(
        a for a in cli.build_parser()._actions if isinstance(a, argparse._SubParsersAction)
    )
    options = {a.dest: a for a in commands.choices["convert-dhp19"]._actions}
    assert options["background_stamps"].choices == dhp19.BACKGROUND_STAMPS


@pytest.mark.parametrize(
    ("extra_args", "message"),
    [
        (["--out", ""], "argument --out: expected a path, got an empty string"),
        (["--root", ""], "argument --root: expected a path, got an empty string"),
        (["--max-stray-fraction", "1.5"], "expected a fraction in [0, 1], got 1.5"),
        (["--max-stray-fraction", "x"], "expected a number, got 'x'"),
        (["--max-repairable-jump-us", "-1"], "expected a number >= 0, got -1"),
        (["--max-repairable-jump-us", "1.5"], "expected a whole number, got '1.5'"),
        (["--background-stamps", "self"], "invalid choice: 'self'"),
        (["--camera-position-tolerance-mm", "-1"], "expected a number >= 0.0, got -1"),
    ],
)
def test_cli_bad_convert_arguments_are_one_line(
    fake: FakeDhp19,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    extra_args: list[str],
    message: str,
) -> None:
    monkeypatch.chdir(tmp_path)
    argv = ["convert-dhp19", "--root", str(fake.root), "--out", str(tmp_path / "o"), "--quiet"]
    with pytest.raises(SystemExit) as info:
        cli.main([*argv, *extra_args])  # the last --root/--out given wins
    assert info.value.code == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and message in err
    assert err.startswith("hybridpose convert-dhp19: error: ")
    assert leftovers(tmp_path) == []  # nothing converted into the current directory


def test_background_rule_from_the_command_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    root = make_fake_dhp19(tmp_path / "root", movements=(1,), events_per_camera=200).root
    base = ["convert-dhp19", "--root", str(root), "--quiet", "--background-filter"]
    stored = {}
    for rule, out in (("", "now"), ("neighbours-and-self", "june")):
        args = [*base, "--out", str(tmp_path / out)]
        assert cli.main([*args, "--background-stamps", rule] if rule else args) == 0
        with Recording(tmp_path / out / "S1_session1_mov1.h5") as r:
            stored[out] = r.meta.extra["background_filter"]
    assert stored["now"]["stamps"] == "neighbours"
    assert stored["june"]["stamps"] == "neighbours-and-self"
    # the June rule keeps more: each pixel's own events support it too
    assert sum(stored["june"]["removed"]) < sum(stored["now"]["removed"])
    capsys.readouterr()
    # the rule without the filter is a mistake, not silently ignored
    lonely = ["convert-dhp19", "--root", str(root), "--out", str(tmp_path / "x")]
    assert cli.main([*lonely, "--background-stamps", "neighbours"]) == 2
    err = capsys.readouterr().err
    assert err == (
        "hybridpose convert-dhp19: error: --background-stamps: only with --background-filter\n"
    )
    assert not (tmp_path / "x").exists()


@pytest.mark.parametrize(
    ("layout", "message"),
    [
        ("file", "root: DHP19 root is not a directory"),
        ("no_recordings", "DVS_movies: no recording found: no .aedat file matches"),
        ("no_vicon", "Vicon_data: no Vicon_data folder in the DHP19 root"),
    ],
)
def test_cli_root_problems_are_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], layout: str, message: str
) -> None:
    root = tmp_path / "root"
    if layout == "file":
        root.write_text("not a folder")
    else:
        make_fake_dhp19(root, movements=(1,), events_per_camera=50)
        gone = "DVS_movies/S1/session1/mov1.aedat" if layout == "no_recordings" else None
        if gone:
            (root / gone).rename(root / "DVS_movies" / "S1" / "session1" / "Mov1.aedat")
        else:
            (root / "Vicon_data" / "S1_1_1.mat").unlink()
            (root / "Vicon_data").rmdir()
    code = cli.main(["convert-dhp19", "--root", str(root), "--out", str(tmp_path / "o")])
    assert code == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and message in err
    if layout == "no_recordings":
        assert err.rstrip().endswith("ignored because of their names: S1/session1/Mov1.aedat")
    assert not (tmp_path / "o").exists()


def test_a_killed_worker_rejects_only_its_recording(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # a real SIGKILL: the worker of mov3 leaves a temporary file (as a writer killed mid-write
    # would) and kills its own process, which breaks the pool. What finished is kept, the
    # unfinished recordings are converted again alone, mov3 dies again and is rejected, and no
    # temporary file is left
    root = tmp_path / "root"
    make_fake_dhp19(root, movements=(1, 2, 3, 4), events_per_camera=50)
    monkeypatch.setenv(DIE_FOR_RECORDING, "S1_session1_mov3")
    monkeypatch.setattr(dhp19_batch, "_run_task", worker_task_that_dies)  # pickled by reference
    out = tmp_path / "out"
    summary = convert_dhp19(root, out, workers=2, progress=False)
    names = [f"S1_session1_mov{k}.h5" for k in (1, 2, 4)]
    assert summary.converted == [out / n for n in names]
    assert summary.rejected == [("S1_session1_mov3", "worker process was killed (out of memory?)")]
    assert leftovers(out) == names
    for n in names:
        with Recording(out / n) as r:
            assert r.meta.extra["converter_version"] == dhp19.CONVERTER_VERSION


def test_a_bug_in_a_worker_is_not_a_rejection(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    root = tmp_path / "root"
    make_fake_dhp19(root, movements=(1, 2), events_per_camera=50)
    monkeypatch.setenv(RAISE_FOR_RECORDING, "S1_session1_mov2")
    monkeypatch.setattr(dhp19_batch, "_run_task", worker_task_that_dies)
    with pytest.raises(ZeroDivisionError, match="a bug while converting S1_session1_mov2"):
        convert_dhp19(root, tmp_path / "out", workers=2, progress=False)


def test_end_gap_limit_from_the_command_line(tmp_path: Path) -> None:
    """``convert-dhp19 --max-end-gap-us`` reaches the converter and is stored with the output."""
    from hybridpose.cli import main

    root = tmp_path / "root"
    fake = make_fake_dhp19(root, movements=(1,), events_per_camera=600)
    rec = fake.recordings[(1, 1, 1)]
    truncate_aedat2(rec.aedat, len(rec.t) // 2)
    out = tmp_path / "out"
    assert main(["convert-dhp19", "--root", str(root), "--out", str(out), "--quiet"]) == 1
    assert not (out / "S1_session1_mov1.h5").exists()
    assert main(["convert-dhp19", "--root", str(root), "--out", str(out), "--quiet",
                 "--max-end-gap-us", "2000000", "--max-end-gap-fraction", "1"]) == 0  # fmt: skip
    with Recording(out / "S1_session1_mov1.h5") as converted:
        limit = converted.meta.extra["end_gap_limit"]
    assert limit == {"max_us": 2_000_000, "max_fraction": 1.0}
