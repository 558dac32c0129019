"""Event representations: hand-built cases, count conservation, a plain-loop cross-check."""

from __future__ import annotations

import math
from collections.abc import Sequence
from fractions import Fraction
from typing import Any, Literal

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hybridpose.errors import HybridPoseError
from hybridpose.events import EVENT_DTYPE, EventError, make_events
from hybridpose.representations import (
    EventCounter,
    RepresentationError,
    _search_sorted,
    binned_histograms,
    frame_size,
    stacked_histogram,
    voxel_grid,
)

FUZZ = settings(max_examples=60, deadline=None)
DHP19 = (346, 260)

# ---------------------------------------------------------------------------------------------
# Reference implementations: one event at a time, exact integer / rational arithmetic.


def _target(
    x: int, y: int, sensor: tuple[int, int], crop: tuple[int, int, int, int] | None, d: int
) -> tuple[int, int] | None:
    """Output (row, column) of sensor pixel (x, y), or None when the crop drops it."""
    x0, y0, cw, ch = crop if crop is not None else (0, 0, *sensor)
    if not (x0 <= x < x0 + cw and y0 <= y < y0 + ch):
        return None
    return (y - y0) // d, (x - x0) // d


def _out_hw(
    sensor: tuple[int, int], crop: tuple[int, int, int, int] | None, d: int
) -> tuple[int, int]:
    cw, ch = (crop[2], crop[3]) if crop is not None else sensor
    return math.ceil(ch / d), math.ceil(cw / d)


def ref_stacked(
    events: np.ndarray,
    sensor: tuple[int, int],
    n_bins: int,
    split: str = "time",
    crop: tuple[int, int, int, int] | None = None,
    d: int = 1,
) -> np.ndarray:
    out = np.zeros((2 * n_bins, *_out_hw(sensor, crop, d)))
    n = len(events)
    if n == 0:
        return out
    t_first, t_last = int(events["t"][0]), int(events["t"][-1])
    for i, ev in enumerate(events):
        if split == "time":
            span = t_last - t_first
            k = (
                n_bins - 1
                if span == 0
                else min((int(ev["t"]) - t_first) * n_bins // span, n_bins - 1)
            )
        else:
            k = math.ceil(Fraction((i + 1) * n_bins, n)) - 1
        where = _target(int(ev["x"]), int(ev["y"]), sensor, crop, d)
        if where is not None:
            out[(2 * k + (1 if ev["p"] > 0 else 0), *where)] += 1
    return out


def ref_binned(
    events: np.ndarray,
    sensor: tuple[int, int],
    edges: Sequence[float],
    crop: tuple[int, int, int, int] | None = None,
    d: int = 1,
) -> np.ndarray:
    out = np.zeros((len(edges) - 1, 2, *_out_hw(sensor, crop, d)))
    for ev in events:
        t = int(ev["t"])
        for k in range(len(edges) - 1):
            if edges[k] <= t < edges[k + 1]:
                where = _target(int(ev["x"]), int(ev["y"]), sensor, crop, d)
                if where is not None:
                    out[(k, 1 if ev["p"] > 0 else 0, *where)] += 1
                break
    return out


def ref_voxel(
    events: np.ndarray,
    sensor: tuple[int, int],
    n_bins: int,
    t_start: int | None = None,
    t_end: int | None = None,
    crop: tuple[int, int, int, int] | None = None,
    d: int = 1,
) -> np.ndarray:
    out = np.zeros((n_bins, *_out_hw(sensor, crop, d)))
    if len(events) == 0:
        return out
    start = int(events["t"][0]) if t_start is None else t_start
    end = int(events["t"][-1]) if t_end is None else t_end
    for ev in events:
        t = int(ev["t"])
        if t < start or (t_end is not None and t >= t_end):
            continue
        t_star = (
            Fraction(n_bins - 1)
            if end == start
            else Fraction((n_bins - 1) * (t - start), end - start)
        )
        where = _target(int(ev["x"]), int(ev["y"]), sensor, crop, d)
        if where is None:
            continue
        for k in range(n_bins):
            weight = max(Fraction(0), 1 - abs(k - t_star))
            out[(k, *where)] += float(weight) * (1.0 if ev["p"] > 0 else -1.0)
    return out


# ---------------------------------------------------------------------------------------------
# Strategies


@st.composite
def event_sets(draw: st.DrawFn, max_events: int = 60) -> tuple[np.ndarray, tuple[int, int]]:
    """Sorted events on a small sensor, with many equal timestamps (ties are the hard cases)."""
    width = draw(st.integers(1, 12))
    height = draw(st.integers(1, 10))
    n = draw(st.integers(0, max_events))
    xs = draw(st.lists(st.integers(0, width - 1), min_size=n, max_size=n))
    ys = draw(st.lists(st.integers(0, height - 1), min_size=n, max_size=n))
    ps = draw(st.lists(st.sampled_from([-1, 1]), min_size=n, max_size=n))
    t0 = draw(st.integers(-1000, 10**9))
    gaps = draw(st.lists(st.integers(0, draw(st.sampled_from([0, 3, 50]))), min_size=n, max_size=n))
    ts = (t0 + np.cumsum(np.asarray(gaps, dtype=np.int64))).tolist()
    return make_events(xs, ys, ts, ps), (width, height)


@st.composite
def crops(draw: st.DrawFn, sensor: tuple[int, int]) -> tuple[int, int, int, int] | None:
    if draw(st.booleans()):
        return None
    x0 = draw(st.integers(0, sensor[0] - 1))
    y0 = draw(st.integers(0, sensor[1] - 1))
    return x0, y0, draw(st.integers(1, sensor[0] - x0)), draw(st.integers(1, sensor[1] - y0))


def random_events(
    n: int, seed: int, sensor: tuple[int, int] = DHP19, span_us: int = 10**6
) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return make_events(
        rng.integers(0, sensor[0], n),
        rng.integers(0, sensor[1], n),
        np.sort(rng.integers(0, span_us, n)),
        rng.choice([-1, 1], n),
    )


# ---------------------------------------------------------------------------------------------
# Hand-built three-event example on a 4 x 3 sensor (x = column, y = row).
#   e0: (x=0, y=0) t=0  ON    e1: (x=3, y=2) t=1  OFF    e2: (x=1, y=2) t=10 ON

THREE = make_events([0, 3, 1], [0, 2, 2], [0, 1, 10], [1, -1, 1])
SMALL = (4, 3)


def test_stacked_histogram_by_time_hand_built() -> None:
    # D = 10, 2 bins: bin = min(floor(2 t / 10), 1) -> e0: 0, e1: 0, e2 (the last event): 1.
    expected = np.zeros((4, 3, 4), np.float32)
    expected[1, 0, 0] = 1  # bin 0 ON
    expected[0, 2, 3] = 1  # bin 0 OFF
    expected[3, 2, 1] = 1  # bin 1 ON
    got = stacked_histogram(THREE, SMALL, n_bins=2)
    assert got.dtype == np.float32
    np.testing.assert_array_equal(got, expected)


def test_stacked_histogram_by_count_hand_built() -> None:
    # N = 3, 2 bins: bin = ceil((i + 1) * 2 / 3) - 1 -> e0: 0, e1: 1, e2: 1.
    expected = np.zeros((4, 3, 4), np.float32)
    expected[1, 0, 0] = 1
    expected[2, 2, 3] = 1  # bin 1 OFF
    expected[3, 2, 1] = 1
    np.testing.assert_array_equal(stacked_histogram(THREE, SMALL, 2, split="count"), expected)


def test_binned_histograms_hand_built_and_the_event_at_the_end_goes_to_the_next_window() -> None:
    first = binned_histograms(THREE, SMALL, [0, 5, 10])
    expected = np.zeros((2, 2, 3, 4), np.float32)
    expected[0, 1, 0, 0] = 1  # e0 ON in bin 0
    expected[0, 0, 2, 3] = 1  # e1 OFF in bin 0; e2 at t=10 is not in [0, 10)
    np.testing.assert_array_equal(first, expected)
    second = binned_histograms(THREE, SMALL, [10, 15])
    expected_second = np.zeros((1, 2, 3, 4), np.float32)
    expected_second[0, 1, 2, 1] = 1
    np.testing.assert_array_equal(second, expected_second)


def test_voxel_grid_hand_built() -> None:
    # 3 samples at t = 0, 5, 10: t* = 2 t / 10 -> e0: 0, e1: 0.2, e2: 2.
    expected = np.zeros((3, 3, 4), np.float32)
    expected[0, 0, 0] = 1.0
    expected[0, 2, 3] = -0.8
    expected[1, 2, 3] = -0.2
    expected[2, 2, 1] = 1.0
    np.testing.assert_allclose(voxel_grid(THREE, SMALL, 3), expected, atol=1e-7)


def test_voxel_grid_half_open_window_hand_built() -> None:
    # Window [0, 10) with 2 samples at 0 and 10: e2 at t=10 is out; e1 at t*=0.1.
    expected = np.zeros((2, 3, 4), np.float32)
    expected[0, 0, 0] = 1.0
    expected[0, 2, 3] = -0.9
    expected[1, 2, 3] = -0.1
    np.testing.assert_allclose(voxel_grid(THREE, SMALL, 2, 0, 10), expected, atol=1e-7)


def test_downsample_hand_built_keeps_the_partial_edge_blocks() -> None:
    # 4 x 3 sensor, factor 2 -> ceil: 2 x 2. (0,0)->(0,0), (3,2)->(1,1), (1,2)->(0,1).
    assert frame_size(SMALL, downsample=2) == (2, 2)
    got = stacked_histogram(THREE, SMALL, 1, downsample=2)
    expected = np.zeros((2, 2, 2), np.float32)
    expected[1, 0, 0] = 1  # ON at row 0, column 0
    expected[0, 1, 1] = 1  # OFF at row 1, column 1
    expected[1, 1, 0] = 1  # ON at row 1, column 0
    np.testing.assert_array_equal(got, expected)


def test_crop_hand_built_drops_and_shifts() -> None:
    # Crop x in [1, 4), y in [1, 3): e0 dropped, e1 -> (x=2, y=1), e2 -> (x=0, y=1).
    crop = (1, 1, 3, 2)
    assert frame_size(SMALL, crop) == (3, 2)
    got = binned_histograms(THREE, SMALL, [0, 100], crop=crop)
    expected = np.zeros((1, 2, 2, 3), np.float32)
    expected[0, 0, 1, 2] = 1
    expected[0, 1, 1, 0] = 1
    np.testing.assert_array_equal(got, expected)


def test_frame_size_rounds_up() -> None:
    assert frame_size(DHP19) == (346, 260)
    assert frame_size(DHP19, downsample=4) == (87, 65)
    assert frame_size(DHP19, crop=(45, 2, 256, 256), downsample=3) == (86, 86)


# ---------------------------------------------------------------------------------------------
# Cross-checks against the plain loops


@FUZZ
@given(data=st.data(), case=event_sets())
def test_stacked_histogram_matches_the_plain_loop(data: st.DataObject, case: Any) -> None:
    events, sensor = case
    n_bins = data.draw(st.integers(1, 6))
    split: Literal["time", "count"] = data.draw(st.sampled_from(["time", "count"]))
    crop = data.draw(crops(sensor))
    d = data.draw(st.integers(1, 3))
    got = stacked_histogram(events, sensor, n_bins, split=split, crop=crop, downsample=d)
    np.testing.assert_array_equal(got, ref_stacked(events, sensor, n_bins, split, crop, d))


@FUZZ
@given(data=st.data(), case=event_sets())
def test_binned_histograms_match_the_plain_loop(data: st.DataObject, case: Any) -> None:
    events, sensor = case
    t = events["t"]
    lo = int(t[0]) - 5 if len(t) else 0
    hi = int(t[-1]) + 5 if len(t) else 10
    steps = data.draw(st.lists(st.integers(0, max(1, (hi - lo) // 3)), min_size=1, max_size=6))
    edges: list[float] = (lo + np.cumsum([0, *steps])).tolist()
    if data.draw(st.booleans()):  # fractional edges: t >= 3.5 means t >= 4
        edges = [e + 0.5 for e in edges]
    crop = data.draw(crops(sensor))
    d = data.draw(st.integers(1, 3))
    got = binned_histograms(events, sensor, edges, crop=crop, downsample=d)
    np.testing.assert_array_equal(got, ref_binned(events, sensor, edges, crop, d))


@FUZZ
@given(data=st.data(), case=event_sets())
def test_voxel_grid_matches_the_plain_loop(data: st.DataObject, case: Any) -> None:
    events, sensor = case
    n_bins = data.draw(st.integers(1, 5))
    t_start = t_end = None
    if len(events) and data.draw(st.booleans()):
        t_start = int(events["t"][0]) + data.draw(st.integers(-3, 3))
        t_end = t_start + data.draw(st.integers(0, 200))
    crop = data.draw(crops(sensor))
    d = data.draw(st.integers(1, 3))
    got = voxel_grid(events, sensor, n_bins, t_start, t_end, crop=crop, downsample=d)
    expected = ref_voxel(events, sensor, n_bins, t_start, t_end, crop, d)
    np.testing.assert_allclose(got, expected, atol=1e-5)


@pytest.mark.parametrize(
    ("sensor", "n", "d"),
    [
        (DHP19, 400, 1),  # full resolution: one bin per accumulation block, few events (sparse)
        ((4, 3), 3000, 1),  # many events per pixel: the dense bincount path
        ((64, 48), 30, 1),  # a few events on many pixels: the sparse path, bins sharing a block
        (DHP19, 5000, 4),  # downsampled: many bins per block, dense
    ],
)
def test_all_accumulation_regimes_match_the_plain_loop(
    sensor: tuple[int, int], n: int, d: int
) -> None:
    events = random_events(n, seed=n, sensor=sensor, span_us=50_000)
    np.testing.assert_array_equal(
        stacked_histogram(events, sensor, 10, downsample=d), ref_stacked(events, sensor, 10, d=d)
    )
    edges = list(range(0, 50_001, 5_000))
    np.testing.assert_array_equal(
        binned_histograms(events, sensor, edges, downsample=d),
        ref_binned(events, sensor, edges, d=d),
    )


def test_huge_sensor_uses_wide_indices_correctly() -> None:
    # 2 * 40000 * 30000 does not fit the int32 fast path; the crop keeps the output tiny.
    sensor = (40_000, 30_000)
    events = make_events(
        [39_995, 39_999, 5, 39_990], [29_999, 29_990, 5, 29_995], [0, 1, 2, 3], [1, -1, 1, 1]
    )
    crop = (39_990, 29_990, 10, 10)
    np.testing.assert_array_equal(
        stacked_histogram(events, sensor, 2, crop=crop), ref_stacked(events, sensor, 2, crop=crop)
    )


# ---------------------------------------------------------------------------------------------
# Conservation


def test_last_event_of_a_constant_count_frame_lands_in_the_last_bin() -> None:
    # Span 999 us is not a multiple of 10 bins: a floor(span / n) bin width would drop the last
    # events; here bins are exact fractions of the span and the last one is closed.
    events = random_events(7500, seed=1, span_us=1000)
    events["t"][-1] = events["t"][0] + 999
    events["x"][-1], events["y"][-1], events["p"][-1] = 7, 9, 1
    frame = stacked_histogram(events, DHP19, 10)
    assert frame.sum() == 7500
    assert frame[19, 9, 7] >= 1  # the last bin's ON channel has the last event
    counts = stacked_histogram(events, DHP19, 10, split="count").reshape(10, -1).sum(axis=1)
    assert counts.tolist() == [750] * 10


def test_all_events_at_one_time_go_to_the_last_bin() -> None:
    events = make_events([1, 2, 3], [0, 0, 0], [7, 7, 7], [1, 1, -1])
    frame = stacked_histogram(events, SMALL, 3)
    assert frame[:4].sum() == 0 and frame[4:].sum() == 3
    grid = voxel_grid(events, SMALL, 3)
    assert grid[:2].sum() == 0 and grid[2].sum() == 1


@FUZZ
@given(data=st.data(), case=event_sets())
def test_consecutive_windows_count_every_event_once(data: st.DataObject, case: Any) -> None:
    events, sensor = case
    if len(events) == 0:
        return
    t = events["t"]
    # Edges placed exactly on event timestamps: the events there belong to the later window.
    cuts = sorted(data.draw(st.lists(st.sampled_from(t.tolist()), min_size=1, max_size=4)))
    edges = [int(t[0]), *cuts, int(t[-1]) + 1]
    whole = binned_histograms(events, sensor, edges)
    parts = [binned_histograms(events, sensor, edges[i : i + 2]) for i in range(len(edges) - 1)]
    np.testing.assert_array_equal(np.concatenate(parts), whole)
    assert whole.sum() == len(events)
    for k, part in enumerate(parts):
        inside = (t >= edges[k]) & (t < edges[k + 1])
        assert part.sum() == np.count_nonzero(inside)
        assert part[0, 1].sum() == np.count_nonzero(inside & (events["p"] > 0))


@FUZZ
@given(data=st.data(), case=event_sets())
def test_crop_and_downsample_conserve_the_counts_inside_the_crop(
    data: st.DataObject, case: Any
) -> None:
    events, sensor = case
    crop = data.draw(crops(sensor))
    d = data.draw(st.integers(1, 4))
    x0, y0, cw, ch = crop if crop is not None else (0, 0, *sensor)
    inside = (
        (events["x"] >= x0)
        & (events["x"] < x0 + cw)
        & (events["y"] >= y0)
        & (events["y"] < y0 + ch)
    )
    on = inside & (events["p"] > 0)
    frame = stacked_histogram(events, sensor, 3, crop=crop, downsample=d)
    assert frame.shape == (6, *_out_hw(sensor, crop, d))
    assert frame.sum() == np.count_nonzero(inside)
    assert frame[1::2].sum() == np.count_nonzero(on)  # odd channels are ON
    grid = voxel_grid(events, sensor, 3, crop=crop, downsample=d)
    assert grid.sum() == pytest.approx(
        np.count_nonzero(on) - np.count_nonzero(inside & ~on), abs=1e-4
    )


def test_voxel_grid_weights_sum_to_one_per_event() -> None:
    events = random_events(3000, seed=5, sensor=(32, 24), span_us=10_007)
    on = events[events["p"] > 0]
    grid_on = voxel_grid(on, (32, 24), 7, 0, 10_007)
    assert np.abs(grid_on).sum() == pytest.approx(len(on), rel=1e-6)
    assert grid_on.min() >= 0
    # Linear in the events: the OFF grid is the difference, and it is never positive.
    grid_off = voxel_grid(events, (32, 24), 7, 0, 10_007) - grid_on
    assert grid_off.max() <= 1e-5
    assert grid_off.sum() == pytest.approx(-(len(events) - len(on)), rel=1e-5)


# ---------------------------------------------------------------------------------------------
# Purity, determinism, empty input, out=


def _all_three(
    events: np.ndarray, sensor: tuple[int, int], edges: Any = (0, 4, 8, 12)
) -> list[np.ndarray]:
    return [
        stacked_histogram(events, sensor, 4),
        stacked_histogram(events, sensor, 4, split="count", crop=(1, 1, 3, 2), downsample=2),
        binned_histograms(events, sensor, edges),
        voxel_grid(events, sensor, 4, downsample=3),
    ]


def test_inputs_are_never_mutated_and_results_are_deterministic() -> None:
    events = random_events(500, seed=3, sensor=SMALL, span_us=12)
    before = events.copy()
    events.flags.writeable = False  # any write into the input would raise
    edges = np.array([0.0, 4, 8.5, 12])
    first = _all_three(events, SMALL, edges)
    second = _all_three(events, SMALL, edges)
    assert events.tobytes() == before.tobytes()
    assert edges.tolist() == [0.0, 4.0, 8.5, 12.0]
    for a, b in zip(first, second, strict=True):
        np.testing.assert_array_equal(a, b)
    assert first[0].sum() == 500


def test_empty_input_gives_zeros_of_the_right_shape() -> None:
    empty = np.empty(0, EVENT_DTYPE)
    shapes = [(8, 3, 4), (8, 1, 2), (3, 2, 3, 4), (4, 1, 2)]
    for got, shape in zip(_all_three(empty, SMALL), shapes, strict=True):
        assert got.shape == shape and got.dtype == np.float32
        assert not got.any()


def test_out_is_fully_overwritten_and_returned() -> None:
    events = random_events(200, seed=4, sensor=SMALL, span_us=100)
    garbage = np.full((6, 3, 4), 7.0, np.float32)
    result = stacked_histogram(events, SMALL, 3, out=garbage)
    assert result is garbage
    np.testing.assert_array_equal(result, stacked_histogram(events, SMALL, 3))
    grid_out = np.full((2, 3, 4), 7.0, np.float32)
    np.testing.assert_array_equal(
        voxel_grid(events, SMALL, 2, out=grid_out), voxel_grid(events, SMALL, 2)
    )
    empty_out = np.full((1, 2, 3, 4), 7.0, np.float32)
    assert not binned_histograms(events[:0], SMALL, [0, 1], out=empty_out).any()


@settings(max_examples=60, deadline=None)
@given(
    t=st.lists(st.integers(-50, 50), max_size=1200).map(sorted),
    values=st.lists(st.integers(-60, 60), min_size=1, max_size=6).map(sorted),
)
def test_search_sorted_equals_numpy_on_strided_timestamps(t: list[int], values: list[int]) -> None:
    events = make_events([0] * len(t), [0] * len(t), t, [1] * len(t))
    expected = np.searchsorted(np.asarray(t, np.int64), values, side="left").tolist()
    assert _search_sorted(events["t"], values) == expected


# ---------------------------------------------------------------------------------------------
# Bad input


def test_errors_are_user_errors() -> None:
    for cls in (RepresentationError, EventError):
        assert issubclass(cls, HybridPoseError) and issubclass(cls, ValueError)


@pytest.mark.parametrize(
    ("call", "error", "message"),
    [
        (lambda: stacked_histogram(np.zeros(3), SMALL), EventError, "expected dtype"),  # type: ignore[arg-type]
        (lambda: stacked_histogram(THREE.reshape(3, 1), SMALL), EventError, "1-D"),
        (lambda: stacked_histogram(THREE, (3, 3)), EventError, "x=3 at event 1 is outside the 3x3"),
        (lambda: binned_histograms(THREE, (4, 2), [0, 20]), EventError, "y=2 at event 1"),
        (lambda: stacked_histogram(THREE, (4, 0)), RepresentationError, "sensor_size"),
        (lambda: stacked_histogram(THREE, SMALL, 0), RepresentationError, "n_bins must be"),
        (lambda: stacked_histogram(THREE, SMALL, split="bogus"), RepresentationError, "split"),  # type: ignore[arg-type]
        (lambda: stacked_histogram(THREE, SMALL, crop=(2, 0, 3, 3)), RepresentationError, "crop"),
        (lambda: stacked_histogram(THREE, SMALL, crop=(0, 0, 0, 1)), RepresentationError, "crop"),
        (lambda: stacked_histogram(THREE, SMALL, downsample=0), RepresentationError, "downsample"),
        (lambda: binned_histograms(THREE, SMALL, [5]), RepresentationError, "t_edges"),
        (lambda: binned_histograms(THREE, SMALL, [0, 5, 3]), RepresentationError, r"t_edges\[2\]"),
        (lambda: binned_histograms(THREE, SMALL, [0, np.nan]), RepresentationError, "finite"),
        (lambda: binned_histograms(THREE, SMALL, [0, 1e30]), RepresentationError, "t_edges"),
        (lambda: binned_histograms(THREE, SMALL, ["a", "b"]), RepresentationError, "numbers"),
        (lambda: voxel_grid(THREE, SMALL, 2, 10, 5), RepresentationError, "t_end"),
        (lambda: voxel_grid(THREE, SMALL, 0), RepresentationError, "n_bins"),
        (
            lambda: stacked_histogram(THREE, SMALL, 2, out=np.zeros((4, 3, 4))),  # type: ignore[arg-type]
            RepresentationError,
            "out must be",
        ),
        (
            lambda: stacked_histogram(THREE[::-1], SMALL, 2),
            EventError,
            "not sorted",
        ),
    ],
)
def test_bad_input_names_the_argument(call: Any, error: type[Exception], message: str) -> None:
    with pytest.raises(error, match=message):
        call()


def test_coordinate_errors_name_the_callers_event_index() -> None:
    # events 0..9 are fine; event 10 is outside a 20x20 sensor and lies in the used window
    x = np.array([1] * 10 + [50, 2])
    t = np.arange(12) * 10
    events = make_events(x, np.zeros(12), t, np.ones(12))
    with pytest.raises(EventError, match="x=50 at event 10 is outside"):
        binned_histograms(events, (20, 20), [95, 200])
    with pytest.raises(EventError, match="x=50 at event 10 is outside"):
        voxel_grid(events, (20, 20), 2, t_start=95, t_end=200)
    with pytest.raises(EventError, match="x=50 at event 10 is outside"):
        stacked_histogram(events, (20, 20), 2)


@pytest.mark.parametrize(
    ("crop", "downsample"), [(None, 1), ((11, 0, 64, 64), 1), ((3, 5, 30, 20), 3)]
)
def test_event_counter_adds_what_binned_histograms_counts(
    crop: tuple[int, int, int, int] | None, downsample: int
) -> None:
    rng = np.random.default_rng(3)
    n = 500
    events = make_events(rng.integers(0, 87, n), rng.integers(0, 65, n),
                         np.sort(rng.integers(0, 1000, n)), rng.choice([-1, 1], n))  # fmt: skip
    counter = EventCounter((87, 65), crop, downsample)
    out = np.ones(counter.shape, dtype=np.float32)  # added to, not cleared
    counter.add(events[:200], out)
    counter.add(events[200:], out)
    want = binned_histograms(events, (87, 65), [0, 1000], crop=crop, downsample=downsample)[0]
    np.testing.assert_array_equal(out, want + 1)
    with pytest.raises(RepresentationError, match="C-contiguous float32"):
        counter.add(events, np.zeros(counter.shape, dtype=np.float64))
    bad = events[:20].copy()
    bad["y"][13] = 65  # outside the sensor: named, and nothing is counted
    before = out.copy()
    with pytest.raises(EventError, match="y=65 at event 13 is outside the 87x65 sensor"):
        counter.add(bad, out)
    np.testing.assert_array_equal(out, before)
