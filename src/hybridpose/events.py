"""Event arrays: the one structured dtype, validation, and windowed slicing.

An event stream is a numpy structured array of :data:`EVENT_DTYPE` sorted by time::

    x  uint16   column, 0-based, 0 = leftmost  (see docs/data-format.md for the pixel convention)
    y  uint16   row, 0-based, 0 = top
    t  int64    timestamp in microseconds
    p  int8     polarity, -1 (OFF, darker) or +1 (ON, brighter)

Windows are found without scanning the stream through a :class:`MillisecondIndex`: entry ``k``
is the index of the first event at or after ``origin_us + k * 1000``. The index gives a block of
at most a millisecond of events on each side of a window; only those two blocks' timestamps are
read to find the exact bounds. This works on in-memory arrays and on HDF5 datasets alike (anything
that slices like a 1-D array), which is how :mod:`hybridpose.io.recording` reads a 100 ms window
of a recording with 10^8 events without touching the rest.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np
import numpy.typing as npt

from hybridpose.errors import HybridPoseError

EVENT_DTYPE = np.dtype([("x", np.uint16), ("y", np.uint16), ("t", np.int64), ("p", np.int8)])
"""The structured dtype of every event array in hybridpose."""

US_PER_MS = 1000

IntArray = npt.NDArray[np.int64]
Events = npt.NDArray[np.void]


class EventError(HybridPoseError, ValueError):
    """An event array breaks the contract of :data:`EVENT_DTYPE` (order, range, polarity)."""


class Sliceable(Protocol):
    """A 1-D sequence of timestamps that can be sliced: a numpy array or an ``h5py.Dataset``."""

    def __getitem__(self, key: slice, /) -> Any: ...

    def __len__(self) -> int: ...


def make_events(x: npt.ArrayLike, y: npt.ArrayLike, t: npt.ArrayLike, p: npt.ArrayLike) -> Events:
    """Build an event array from four equally long columns.

    Polarity may be given as -1/+1 or as 0/1 (0 is mapped to -1). Values are converted, not
    checked: call :func:`validate_events` on data from outside.

    Raises:
        EventError: if the columns differ in length or are not one-dimensional.
    """
    columns = [np.asarray(c) for c in (x, y, t, p)]
    if any(c.ndim != 1 for c in columns):
        raise EventError("event columns must be one-dimensional")
    n = len(columns[0])
    if any(len(c) != n for c in columns):
        lengths = ", ".join(f"{k}={len(c)}" for k, c in zip("xytp", columns, strict=True))
        raise EventError(f"event columns differ in length ({lengths})")
    events = np.empty(n, dtype=EVENT_DTYPE)
    events["x"] = columns[0]
    events["y"] = columns[1]
    events["t"] = columns[2]
    pol = columns[3].astype(np.int8)
    events["p"] = np.where(pol == 0, np.int8(-1), pol)
    return events


def check_event_array(events: object, name: str = "events") -> None:
    """Check only the type: a 1-D array of :data:`EVENT_DTYPE` (cheap, no scan of the data).

    Raises:
        EventError: naming ``name`` and what was found instead.
    """
    if not isinstance(events, np.ndarray) or events.dtype != EVENT_DTYPE:
        got = getattr(events, "dtype", type(events).__name__)
        raise EventError(f"{name}: expected dtype {EVENT_DTYPE}, got {got}")
    if events.ndim != 1:
        raise EventError(f"{name}: expected a 1-D array, got shape {events.shape}")


def validate_events(
    events: np.ndarray, sensor_size: tuple[int, int] | None = None, name: str = "events"
) -> None:
    """Check an event array against the contract; raise :class:`EventError` naming the problem.

    Args:
        events: the array to check.
        sensor_size: ``(width, height)``; when given, every x must be < width and y < height.
        name: how to call the array in error messages (e.g. a file name and camera).

    Raises:
        EventError: wrong dtype, timestamps not sorted, coordinates outside the sensor or a
            polarity other than -1/+1. The message gives the first offending index.
    """
    check_event_array(events, name)
    if len(events) == 0:
        return
    t = events["t"]
    backwards = np.flatnonzero(np.diff(t) < 0)
    if backwards.size:
        i = int(backwards[0]) + 1
        raise EventError(
            f"{name}: timestamps not sorted: event {i} at t={int(t[i])} us "
            f"comes after t={int(t[i - 1])} us"
        )
    bad_p = np.flatnonzero((events["p"] != 1) & (events["p"] != -1))
    if bad_p.size:
        i = int(bad_p[0])
        raise EventError(f"{name}: bad polarity {int(events['p'][i])} at event {i} (want -1 or +1)")
    if sensor_size is not None:
        width, height = sensor_size
        for field, limit in (("x", width), ("y", height)):
            outside = np.flatnonzero(events[field] >= limit)
            if outside.size:
                i = int(outside[0])
                raise EventError(
                    f"{name}: {field}={int(events[field][i])} at event {i} is outside the "
                    f"{width}x{height} sensor"
                )


@dataclass(frozen=True)
class MillisecondIndex:
    """Offsets of the first event at or after each millisecond boundary.

    ``offsets[k]`` is the index of the first event with ``t >= origin_us + k * 1000``; the last
    entry equals the number of events, so ``len(offsets) >= 1`` always. ``origin_us`` is a whole
    millisecond at or before the first event.
    """

    origin_us: int
    offsets: IntArray

    def __post_init__(self) -> None:
        if self.offsets.ndim != 1 or len(self.offsets) == 0:
            raise EventError("millisecond index: offsets must be a non-empty 1-D array")
        if self.origin_us % US_PER_MS:
            raise EventError(f"millisecond index: origin {self.origin_us} us is not a whole ms")

    @property
    def num_events(self) -> int:
        return int(self.offsets[-1])

    def block(self, t_us: int) -> tuple[int, int]:
        """Index range ``[lo, hi)`` that holds the first event at or after ``t_us``.

        The answer ``i`` (with ``t[i-1] < t_us <= t[i]``) satisfies ``lo <= i <= hi`` and the
        range spans at most the events of one millisecond.
        """
        k = (int(t_us) - self.origin_us) // US_PER_MS  # boundary at or before t_us
        last = len(self.offsets) - 1
        if k < 0:
            return 0, 0
        if k >= last:
            return self.num_events, self.num_events
        return int(self.offsets[k]), int(self.offsets[k + 1])


def build_ms_index(t: npt.ArrayLike) -> MillisecondIndex:
    """Build the millisecond index of sorted timestamps (see :class:`MillisecondIndex`).

    Example:
        >>> idx = build_ms_index([0, 500, 999, 1000, 2500])
        >>> idx.origin_us, idx.offsets.tolist()
        (0, [0, 3, 4, 5])
    """
    t_arr = np.asarray(t, dtype=np.int64)
    if len(t_arr) == 0:
        return MillisecondIndex(0, np.zeros(1, dtype=np.int64))
    origin = (int(t_arr[0]) // US_PER_MS) * US_PER_MS
    n_boundaries = (int(t_arr[-1]) - origin) // US_PER_MS + 1
    boundaries = origin + US_PER_MS * np.arange(n_boundaries, dtype=np.int64)
    offsets = np.searchsorted(t_arr, boundaries, side="left").astype(np.int64)
    return MillisecondIndex(origin, np.append(offsets, np.int64(len(t_arr))))


def first_at_or_after(t: Sliceable, index: MillisecondIndex, t_us: int) -> int:
    """Index of the first event with ``t >= t_us`` (``len(t)`` if none), reading one ms block."""
    lo, hi = index.block(t_us)
    if lo == hi:
        return lo
    block = np.asarray(t[lo:hi], dtype=np.int64)
    return lo + int(np.searchsorted(block, t_us, side="left"))


def time_window(t: Sliceable, index: MillisecondIndex, t_start: int, t_end: int) -> tuple[int, int]:
    """Index range ``[lo, hi)`` of the events with ``t_start <= t < t_end``.

    Raises:
        EventError: if ``t_end < t_start``.
    """
    if t_end < t_start:
        raise EventError(f"time window ends ({t_end} us) before it starts ({t_start} us)")
    lo = first_at_or_after(t, index, t_start)
    hi = first_at_or_after(t, index, t_end)
    return lo, hi


def count_window_before(
    t: Sliceable, index: MillisecondIndex, t_end: int, count: int
) -> tuple[int, int]:
    """Index range of the last ``count`` events with ``t < t_end`` (fewer if the stream is short).

    This is the ANN's constant-count frame: the most recent events before a window starts.
    """
    if count < 0:
        raise EventError(f"event count must be >= 0, got {count}")
    hi = first_at_or_after(t, index, t_end)
    return max(0, hi - count), hi


def count_window_after(
    t: Sliceable, index: MillisecondIndex, t_start: int, count: int
) -> tuple[int, int]:
    """Index range of the first ``count`` events with ``t >= t_start`` (fewer at the end)."""
    if count < 0:
        raise EventError(f"event count must be >= 0, got {count}")
    lo = first_at_or_after(t, index, t_start)
    return lo, min(index.num_events, lo + count)


def slice_time(
    events: Events, t_start: int, t_end: int, index: MillisecondIndex | None = None
) -> Events:
    """Events with ``t_start <= t < t_end`` (a view, never a copy).

    Pass a prebuilt ``index`` when slicing the same stream many times.
    """
    idx = build_ms_index(events["t"]) if index is None else index
    lo, hi = time_window(events["t"], idx, t_start, t_end)
    return events[lo:hi]


def slice_count_before(
    events: Events, t_end: int, count: int, index: MillisecondIndex | None = None
) -> Events:
    """The last ``count`` events with ``t < t_end`` (a view)."""
    idx = build_ms_index(events["t"]) if index is None else index
    lo, hi = count_window_before(events["t"], idx, t_end, count)
    return events[lo:hi]
