"""Event time: 32-bit timestamps unwrapped, small disorder repaired, the Vicon interval found.

See step 4 of :mod:`hybridpose.io.dhp19`.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from hybridpose.io.dhp19.common import (
    MAX_END_GAP_FRACTION,
    MAX_END_GAP_US,
    MAX_REPAIRABLE_JUMP_US,
    VICON_PERIOD_US,
    Dhp19Error,
    I64Array,
    IntpArray,
)

WRAP_US = 1 << 32
_HALF_WRAP_US = 1 << 31


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


def check_end_gap(
    span: StartStop,
    last_event_us: int,
    *,
    max_gap_us: int = MAX_END_GAP_US,
    max_gap_fraction: float = MAX_END_GAP_FRACTION,
    name: str = "recording",
) -> int:
    """The end gap of a recording: how long before the stop its events end; reject a long one.

    A file cut on a record boundary reads as a whole number of records; what betrays it is that
    its events stop long before the labels do (its stop special is gone, so the stop is the
    start plus the Vicon length). See :data:`~hybridpose.io.dhp19.common.MAX_END_GAP_FRACTION`
    for why the limit is the smaller of ``max_gap_us`` and ``max_gap_fraction`` of the interval.

    Args:
        span: the interval found by :func:`find_start_stop`.
        last_event_us: the latest polarity event inside ``span`` (any camera, unwrapped).
        max_gap_us: the longest gap accepted, in us.
        max_gap_fraction: the longest gap accepted, as a fraction of ``stop - start``.
        name: the file, for the error message.

    Returns:
        The gap ``stop - last_event_us`` in us (0 when the last event is at the stop).

    Raises:
        Dhp19Error: the gap is longer than both limits allow; names the gap, the times and the
            rule that gave the stop.

    Example:
        >>> check_end_gap(StartStop(0, 1_000_000, "3 specials"), 950_000)
        50000
    """
    duration = span.stop_us - span.start_us
    gap = span.stop_us - int(last_event_us)
    limit = min(float(max_gap_us), max_gap_fraction * duration)
    if gap > limit:
        raise Dhp19Error(
            f"{name}: the events end {gap / 1e6:.3f} s before the stop (last polarity event at "
            f"{(last_event_us - span.start_us) / 1e6:.3f} s, stop at {duration / 1e6:.3f} s "
            f"after the start; {span.rule}); at most {limit / 1e6:.3f} s is accepted (the "
            f"smaller of {max_gap_us / 1e6:g} s and {max_gap_fraction * 100:g}% of the interval): "
            "the file looks truncated"
        )
    return gap
