"""Events: dtype, validation errors, the millisecond index and windowed slicing."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hybridpose.errors import HybridPoseError
from hybridpose.events import (
    EVENT_DTYPE,
    EventError,
    MillisecondIndex,
    build_ms_index,
    count_window_after,
    count_window_before,
    first_at_or_after,
    make_events,
    slice_count_before,
    slice_time,
    time_window,
    validate_events,
)


def test_make_events_maps_zero_polarity_to_off_and_keeps_columns() -> None:
    ev = make_events([1, 2], [3, 4], [10, 20], [0, 1])
    assert ev.dtype == EVENT_DTYPE
    assert ev["x"].tolist() == [1, 2]
    assert ev["y"].tolist() == [3, 4]
    assert ev["t"].tolist() == [10, 20]
    assert ev["p"].tolist() == [-1, 1]


def test_make_events_rejects_ragged_columns() -> None:
    with pytest.raises(EventError, match="differ in length"):
        make_events([1, 2], [3], [10, 20], [1, 1])


def test_event_error_is_a_user_error() -> None:
    assert issubclass(EventError, HybridPoseError)
    assert issubclass(EventError, ValueError)


@pytest.mark.parametrize(
    ("x", "y", "t", "p", "message"),
    [
        ([0, 0, 0], [0, 0, 0], [5, 3, 9], [1, 1, 1], "not sorted: event 1 at t=3 us"),
        ([0, 346], [0, 0], [1, 2], [1, -1], "x=346 at event 1 is outside the 346x260"),
        ([0, 0], [0, 260], [1, 2], [1, -1], "y=260 at event 1 is outside"),
    ],
)
def test_validate_events_names_the_first_problem(
    x: list[int], y: list[int], t: list[int], p: list[int], message: str
) -> None:
    ev = make_events(x, y, t, p)
    with pytest.raises(EventError, match=message):
        validate_events(ev, (346, 260), name="cam0")


def test_validate_events_bad_polarity_and_dtype() -> None:
    ev = make_events([0, 0], [0, 0], [1, 2], [1, 1])
    ev["p"][1] = 3
    with pytest.raises(EventError, match="bad polarity 3 at event 1"):
        validate_events(ev)
    with pytest.raises(EventError, match="expected dtype"):
        validate_events(np.zeros(3, dtype=np.float32))


def test_validate_accepts_valid_and_empty() -> None:
    validate_events(make_events([345], [259], [0], [-1]), (346, 260))
    validate_events(np.zeros(0, dtype=EVENT_DTYPE), (346, 260))


def test_ms_index_by_hand() -> None:
    # boundaries 1000, 2000, 3000, 4000, 5000 (origin = floor(1500 / 1000) * 1000 = 1000)
    idx = build_ms_index([1500, 1999, 2000, 2000, 4999])
    assert idx.origin_us == 1000
    # first event >= 1000: 0; >= 2000: 2; >= 3000: 4; >= 4000: 4; then the closing count 5
    assert idx.offsets.tolist() == [0, 2, 4, 4, 5]
    assert idx.num_events == 5


def test_ms_index_empty_and_validation() -> None:
    idx = build_ms_index(np.zeros(0, dtype=np.int64))
    assert idx.offsets.tolist() == [0]
    assert idx.block(12345) == (0, 0)
    with pytest.raises(EventError):
        MillisecondIndex(500, np.array([0]))
    with pytest.raises(EventError):
        MillisecondIndex(0, np.array([], dtype=np.int64))


def test_time_window_is_half_open() -> None:
    t = np.array([0, 999, 1000, 1000, 1999, 2000, 2500])
    idx = build_ms_index(t)
    assert time_window(t, idx, 1000, 2000) == (2, 5)  # 1000, 1000, 1999; not 2000
    assert time_window(t, idx, -50, 0) == (0, 0)
    assert time_window(t, idx, 2500, 2501) == (6, 7)
    assert time_window(t, idx, 3000, 9000) == (7, 7)
    with pytest.raises(EventError, match="ends"):
        time_window(t, idx, 10, 5)


def test_count_windows() -> None:
    t = np.arange(0, 10_000, 100)  # 100 events, one every 0.1 ms
    idx = build_ms_index(t)
    assert count_window_before(t, idx, 5000, 7) == (43, 50)
    assert count_window_before(t, idx, 250, 7) == (0, 3)  # fewer near the start
    assert count_window_after(t, idx, 9850, 7) == (99, 100)  # fewer at the end
    with pytest.raises(EventError):
        count_window_before(t, idx, 10, -1)


class _CountingArray:
    """Wraps an array and records which index ranges were read."""

    def __init__(self, data: np.ndarray) -> None:
        self.data = data
        self.read = 0

    def __getitem__(self, key: slice) -> np.ndarray:
        part = self.data[key]
        self.read += len(part)
        return part

    def __len__(self) -> int:
        return len(self.data)


def test_window_lookup_reads_at_most_two_millisecond_blocks() -> None:
    rng = np.random.default_rng(1)
    t = np.sort(rng.integers(0, 10_000_000, 1_000_000))  # ~100 events per ms
    idx = build_ms_index(t)
    counting = _CountingArray(t)
    lo, hi = time_window(counting, idx, 4_000_500, 4_100_500)
    assert (lo, hi) == (int(np.searchsorted(t, 4_000_500)), int(np.searchsorted(t, 4_100_500)))
    assert counting.read <= 2 * 250  # two ms blocks, never the 10^6 events


sorted_times = st.lists(st.integers(-5_000, 50_000), max_size=300).map(
    lambda v: np.sort(np.array(v, dtype=np.int64))
)


@settings(max_examples=200, deadline=None)
@given(sorted_times, st.integers(-7_000, 52_000), st.integers(0, 20_000))
def test_time_window_equals_brute_force(t: np.ndarray, start: int, length: int) -> None:
    idx = build_ms_index(t)
    lo, hi = time_window(t, idx, start, start + length)
    inside = np.flatnonzero((t >= start) & (t < start + length))
    if inside.size:
        assert (lo, hi) == (inside[0], inside[-1] + 1)
    else:
        assert lo == hi
    assert first_at_or_after(t, idx, start) == np.searchsorted(t, start, side="left")


@settings(max_examples=200, deadline=None)
@given(sorted_times, st.integers(-7_000, 52_000), st.integers(0, 50))
def test_count_windows_equal_brute_force(t: np.ndarray, at: int, count: int) -> None:
    idx = build_ms_index(t)
    before = np.flatnonzero(t < at)[-count:] if count else np.array([], dtype=np.int64)
    lo, hi = count_window_before(t, idx, at, count)
    assert list(range(lo, hi)) == before.tolist()
    after = np.flatnonzero(t >= at)[:count]
    lo, hi = count_window_after(t, idx, at, count)
    assert list(range(lo, hi)) == after.tolist()


def test_slicing_returns_views_and_never_mutates() -> None:
    ev = make_events([1, 2, 3, 4], [0, 0, 0, 0], [100, 1100, 2100, 3100], [1, -1, 1, -1])
    before = ev.copy()
    window = slice_time(ev, 1000, 3000)
    assert window["t"].tolist() == [1100, 2100]
    assert np.shares_memory(window, ev)
    assert slice_count_before(ev, 3100, 2)["t"].tolist() == [1100, 2100]
    np.testing.assert_array_equal(ev, before)
