"""Event representations: stacked histogram (ANN frame), binned histograms (SNN input), voxel grid.

All three turn an event array of :data:`~hybridpose.events.EVENT_DTYPE` into a dense float32
tensor. They are pure functions: the events are never modified and the same input always gives
the same output.

Conventions shared by every function here:

* **Pixels.** Event ``(x, y)`` is column ``x`` and row ``y`` of the sensor, and lands in output
  element ``[..., y, x]`` (after the optional crop and downsampling below).
* **Polarity.** An event is ON if ``p > 0`` and OFF otherwise, so both the native -1/+1 and a
  0/1 encoding map correctly. Histogram channel 0 is OFF, channel 1 is ON.
* **Crop.** ``crop = (x0, y0, width, height)`` in sensor pixels keeps the events with
  ``x0 <= x < x0 + width`` and ``y0 <= y < y0 + height`` and shifts them to ``(x - x0, y - y0)``;
  the others are dropped. The crop must lie inside the sensor.
* **Downsampling.** An integer factor ``d`` maps (cropped) pixel ``(x, y)`` to ``(x // d, y // d)``
  and sums the counts. The output is ``ceil(width / d)`` by ``ceil(height / d)`` pixels, so no
  event is ever lost at the right or bottom edge: the total count is conserved.
  :func:`frame_size` gives the resulting size.
* **Order.** Events must be sorted by ``t`` (the :data:`EVENT_DTYPE` contract). This is not
  re-checked here because the check would cost as much as the histogram itself; call
  :func:`hybridpose.events.validate_events` on data from outside. Only the dtype, the shape and
  the coordinates of the events that are used are checked.

Speed: each event's flat output index is computed once (int32 where it fits), and the counts of
a block of time bins (about 2^18 output elements, so the counts stay in cache; sorted events make
each block one contiguous run) are accumulated in one pass: :func:`numpy.bincount` when the block
has many events, a float32 ``np.add.at`` (numpy's fast path for a matching dtype) when it has
few, where bincount's int64 temporary and its cast would cost more than the events. The output
may be passed as ``out=`` to reuse a buffer; it is always fully overwritten.
"""

from __future__ import annotations

import bisect
import itertools
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import numpy.typing as npt

from hybridpose._jit import jit
from hybridpose.errors import HybridPoseError
from hybridpose.events import EventError, Events, check_event_array

FloatArray = npt.NDArray[np.float32]
Crop = tuple[int, int, int, int]
"""``(x0, y0, width, height)`` in sensor pixels."""

IndexArray = npt.NDArray[np.signedinteger[Any]]

_CHUNK_ELEMENTS = 1 << 18
"""Output elements counted by one bincount: few enough for its int64 counts to stay in cache."""

_SPARSE_RATIO = 16
"""Chunks with fewer events than 1/16 of their elements are counted by ``add.at``, not bincount."""

_ONE = np.float32(1)

_BISECT_READS_PER_VALUE = 256
"""Above one value per this many events, one vectorised search beats per-value bisection."""

_INT32_SAFE = 1 << 30
"""Flat indices stay below this bound to be computed in int32 (half the memory traffic of int64)."""


class RepresentationError(HybridPoseError, ValueError):
    """An argument of a representation (size, crop, bins, time edges, ``out``) is invalid."""


@dataclass(frozen=True)
class _Geometry:
    """Where sensor pixels go: a crop inside the sensor, then integer downsampling."""

    sensor_width: int
    sensor_height: int
    x0: int
    y0: int
    crop_width: int
    crop_height: int
    downsample: int

    @property
    def is_cropped(self) -> bool:
        return (self.x0, self.y0, self.crop_width, self.crop_height) != (
            0,
            0,
            self.sensor_width,
            self.sensor_height,
        )

    @property
    def width(self) -> int:
        return -(-self.crop_width // self.downsample)

    @property
    def height(self) -> int:
        return -(-self.crop_height // self.downsample)


def _is_int(value: object) -> bool:
    return isinstance(value, int | np.integer) and not isinstance(value, bool | np.bool_)


def _geometry(sensor_size: tuple[int, int], crop: Crop | None, downsample: int) -> _Geometry:
    """Validate ``sensor_size``, ``crop`` and ``downsample``; raise naming the bad argument."""
    if (
        not isinstance(sensor_size, tuple | list)
        or len(sensor_size) != 2
        or not all(_is_int(v) and v > 0 for v in sensor_size)
    ):
        raise RepresentationError(
            f"sensor_size must be (width, height) with two positive integers, got {sensor_size!r}"
        )
    width, height = int(sensor_size[0]), int(sensor_size[1])
    if not _is_int(downsample) or downsample < 1:
        raise RepresentationError(f"downsample must be an integer >= 1, got {downsample!r}")
    if crop is None:
        return _Geometry(width, height, 0, 0, width, height, int(downsample))
    if not isinstance(crop, tuple | list) or len(crop) != 4 or not all(_is_int(v) for v in crop):
        raise RepresentationError(
            f"crop must be (x0, y0, width, height) with four integers, got {crop!r}"
        )
    x0, y0, cw, ch = (int(v) for v in crop)
    if x0 < 0 or y0 < 0 or cw < 1 or ch < 1 or x0 + cw > width or y0 + ch > height:
        raise RepresentationError(
            f"crop (x0={x0}, y0={y0}, width={cw}, height={ch}) is empty or reaches outside "
            f"the {width}x{height} sensor"
        )
    return _Geometry(width, height, x0, y0, cw, ch, int(downsample))


def frame_size(
    sensor_size: tuple[int, int], crop: Crop | None = None, downsample: int = 1
) -> tuple[int, int]:
    """Size ``(width, height)`` of the frames made with this crop and downsampling.

    Args:
        sensor_size: ``(width, height)`` of the sensor in pixels.
        crop: optional ``(x0, y0, width, height)`` inside the sensor.
        downsample: integer factor; partial blocks at the right and bottom edges are kept.

    Returns:
        ``(ceil(crop_width / downsample), ceil(crop_height / downsample))``.

    Example:
        >>> frame_size((346, 260), downsample=4)
        (87, 65)
    """
    geom = _geometry(sensor_size, crop, downsample)
    return geom.width, geom.height


def _check_coordinate(values: IndexArray, field: str, geom: _Geometry, offset: int = 0) -> None:
    """Raise if a coordinate is outside the sensor; only the error path looks for its index.

    ``offset`` is the position of ``values[0]`` in the caller's event array, so that the
    message names the event the caller passed in.
    """
    limit = geom.sensor_width if field == "x" else geom.sensor_height
    if len(values) and int(values.max()) >= limit:
        i = int(np.flatnonzero(values >= limit)[0])
        value = int(values[i])
        i += offset
        raise EventError(
            f"events: {field}={value} at event {i} is outside the "
            f"{geom.sensor_width}x{geom.sensor_height} sensor"
        )


def _output(out: FloatArray | None, shape: tuple[int, ...]) -> tuple[FloatArray, bool]:
    """A fresh zeroed float32 array of ``shape``, or ``out`` after checking that it fits exactly.

    Returns the array and whether it is already zero. A fresh array comes from ``np.zeros``,
    whose pages the OS hands over already zeroed: writing zeros into a fresh ``np.empty``
    instead cost two thirds of the time of a 7500-event frame at 346x260 (profiled).
    """
    if out is None:
        return np.zeros(shape, dtype=np.float32), True
    if (
        not isinstance(out, np.ndarray)
        or out.dtype != np.float32
        or out.shape != shape
        or not out.flags.c_contiguous
        or not out.flags.writeable
    ):
        got = (
            f"{out.dtype} array of shape {out.shape}"
            if isinstance(out, np.ndarray)
            else type(out).__name__
        )
        raise RepresentationError(
            f"out must be a writeable C-contiguous float32 array of shape {shape}, got {got}"
        )
    return out, False


def _flat_pixel_index(
    events: Events, geom: _Geometry, with_polarity: bool, offset: int = 0
) -> tuple[IndexArray, npt.NDArray[np.bool_] | None]:
    """Flat output index of each event and, when cropping, which events fall inside the crop.

    ``events`` may be a slice of the caller's array starting at position ``offset`` (used only
    to name the offending event in errors).

    Returns:
        ``index``: ``(channel * height + y) * width + x`` in the output frame, where ``channel``
        is the polarity channel (0 OFF, 1 ON) or 0 without polarity; meaningless where
        ``inside`` is False. ``inside``: None when nothing is cropped.

    Shape:
        both ``(N,)``.
    """
    channels = 2 if with_polarity else 1
    small = channels * geom.sensor_width * geom.sensor_height < _INT32_SAFE
    dtype: np.dtype[np.signedinteger[Any]] = np.dtype(np.int32 if small else np.int64)
    # Contiguous integer copies: the arithmetic below works on them in place, never on the input.
    xs: IndexArray = events["x"].astype(dtype)
    ys: IndexArray = events["y"].astype(dtype)
    _check_coordinate(xs, "x", geom, offset)
    _check_coordinate(ys, "y", geom, offset)
    inside: npt.NDArray[np.bool_] | None = None
    if geom.is_cropped:
        xs -= geom.x0
        ys -= geom.y0
        # Negative offsets read as huge unsigned numbers, so one comparison per axis suffices.
        unsigned: np.dtype[np.unsignedinteger[Any]] = np.dtype(np.uint32 if small else np.uint64)
        x_unsigned: npt.NDArray[np.unsignedinteger[Any]] = xs.view(unsigned)
        y_unsigned: npt.NDArray[np.unsignedinteger[Any]] = ys.view(unsigned)
        inside = x_unsigned < geom.crop_width
        inside &= y_unsigned < geom.crop_height
    if geom.downsample > 1:
        xs //= geom.downsample
        ys //= geom.downsample
    if with_polarity:
        index: IndexArray = (events["p"] > 0).astype(dtype)
        index *= geom.height
        index += ys
    else:
        index = ys
    index *= geom.width
    index += xs
    return index, inside


def _keep_inside(
    index: IndexArray, inside: npt.NDArray[np.bool_] | None, bounds: list[int]
) -> tuple[IndexArray, list[int]]:
    """Drop the events outside the crop and move the bin bounds to match."""
    if inside is None:
        return index, bounds
    kept = [0]
    for lo, hi in itertools.pairwise(bounds):
        kept.append(kept[-1] + int(np.count_nonzero(inside[lo:hi])))
    # np.compress is several times faster than boolean indexing on an unpredictable mask.
    return np.compress(inside, index), kept


def _accumulate_counts(
    index: IndexArray, bounds: list[int], out: FloatArray, zeroed: bool = False
) -> None:
    """Write into ``out[k]`` the counts of ``index[bounds[k]:bounds[k + 1]]``.

    Modifies ``index`` (a private temporary) and ``out`` in place; ``zeroed`` says that ``out``
    is all zeros already, so it need not be cleared.

    Shape:
        index ``(N,)`` with values in ``[0, C)``; bounds ``T + 1`` ints from 0 to N; out
        ``(T, ...)`` whose trailing dimensions hold ``C`` elements.
    """
    n_bins = out.shape[0]
    flat = out.reshape(n_bins, -1)
    per_bin = flat.shape[1]
    bins_per_chunk = max(1, _CHUNK_ELEMENTS // per_bin)
    for k0 in range(0, n_bins, bins_per_chunk):
        k1 = min(n_bins, k0 + bins_per_chunk)
        lo, hi = bounds[k0], bounds[k1]
        target = flat[k0:k1].reshape(-1)
        if lo == hi:
            if not zeroed:
                target.fill(0)
            continue
        chunk = index[lo:hi]
        # Later bins of the chunk are shifted into their own block of the one accumulation.
        for k in range(k0 + 1, k1):
            chunk[bounds[k] - lo : bounds[k + 1] - lo] += (k - k0) * per_bin
        if (hi - lo) * _SPARSE_RATIO < target.size:
            # Few events: bincount's int64 temporary and its cast would cost more than the
            # events; a float32 increment of matching dtype takes numpy's fast ufunc.at path.
            if not zeroed:
                target.fill(0)
            np.add.at(target, chunk, _ONE)
        else:
            np.copyto(target, np.bincount(chunk, minlength=target.size))


def _search_sorted(t: npt.NDArray[np.int64], values: Sequence[int]) -> list[int]:
    """Index of the first ``t >= v`` for each ``v`` of non-decreasing ``values``; t sorted.

    ``events["t"]`` is a strided view, which :func:`numpy.searchsorted` would first copy whole;
    for a few values on a long stream a bisection that reads ``O(log N)`` timestamps is cheaper.
    """
    if len(values) * _BISECT_READS_PER_VALUE > len(t):
        return [int(i) for i in np.searchsorted(t, np.asarray(values, np.int64), side="left")]
    found: list[int] = []
    lo = 0
    for value in values:
        lo = bisect.bisect_left(t, value, lo)
        found.append(lo)
    return found


def _time_split_bounds(t: npt.NDArray[np.int64], n_bins: int) -> list[int]:
    """Bin bounds for ``n_bins`` equal time bins from the first to the last event (see below)."""
    n = len(t)
    t_first, t_last = int(t[0]), int(t[-1])
    if t_last < t_first:
        raise EventError(
            f"events: last timestamp {t_last} us is before the first {t_first} us (not sorted)"
        )
    span = t_last - t_first
    k = np.arange(1, n_bins, dtype=np.int64)
    # Integer t is in bin >= k exactly when t >= t_first + ceil(k * span / n_bins).
    starts = t_first + (k * span + n_bins - 1) // n_bins
    return [0, *_search_sorted(t, starts.tolist()), n]


def _count_split_bounds(n: int, n_bins: int) -> list[int]:
    # Event i goes to bin ceil((i + 1) * n_bins / n) - 1: equal counts within one, last in last.
    return [k * n // n_bins for k in range(n_bins + 1)]


def stacked_histogram(
    events: Events,
    sensor_size: tuple[int, int],
    n_bins: int = 10,
    *,
    split: Literal["time", "count"] = "time",
    crop: Crop | None = None,
    downsample: int = 1,
    out: FloatArray | None = None,
) -> FloatArray:
    """The ANN frame: ``n_bins`` bins of the given events, two polarity count channels each.

    Typically ``events`` are the last N events before the ANN runs (a constant count). With
    ``split="time"`` the span from the first to the last event's timestamp, ``D = t_last -
    t_first``, is cut into ``n_bins`` equal parts: event ``t`` goes to bin
    ``min(floor((t - t_first) * n_bins / D), n_bins - 1)``, i.e. bins are half-open
    ``[t_first + k D / n_bins, t_first + (k + 1) D / n_bins)`` except the last, which is closed so
    that the last event lands in it. If ``D == 0`` every event is in the last bin. With
    ``split="count"`` event ``i`` of ``N`` goes to bin ``ceil((i + 1) * n_bins / N) - 1``:
    counts differ by at most one and the last event is again in the last bin. Bins are computed
    from all given events, before cropping.

    Args:
        events: sorted events of :data:`~hybridpose.events.EVENT_DTYPE`.
        sensor_size: ``(width, height)`` of the sensor.
        n_bins: number of time bins (>= 1).
        split: ``"time"`` (equal durations) or ``"count"`` (equal event counts).
        crop: optional ``(x0, y0, width, height)``; events outside are dropped.
        downsample: integer factor, counts of a ``d`` x ``d`` block are summed.
        out: optional float32 array of the output shape to write into (fully overwritten).

    Returns:
        Event counts, channel ``2 * k + c`` holding bin ``k`` and polarity ``c`` (0 OFF, 1 ON):
        bin-major order ``(bin0 OFF, bin0 ON, bin1 OFF, bin1 ON, ...)``.

    Shape:
        events ``(N,)`` -> ``(2 * n_bins, H, W)`` with ``(W, H) = frame_size(sensor_size, crop,
        downsample)``.

    Raises:
        EventError: wrong dtype or shape, a coordinate outside the sensor, last timestamp
            before the first.
        RepresentationError: a bad ``sensor_size``, ``n_bins``, ``split``, ``crop``,
            ``downsample`` or ``out``.
    """
    check_event_array(events)
    geom = _geometry(sensor_size, crop, downsample)
    if not _is_int(n_bins) or n_bins < 1:
        raise RepresentationError(f"n_bins must be an integer >= 1, got {n_bins!r}")
    if split not in ("time", "count"):
        raise RepresentationError(f"split must be 'time' or 'count', got {split!r}")
    n_bins = int(n_bins)
    result, zeroed = _output(out, (2 * n_bins, geom.height, geom.width))
    if len(events) == 0:
        if not zeroed:
            result.fill(0)
        return result
    if split == "time":
        bounds = _time_split_bounds(events["t"], n_bins)
    else:
        bounds = _count_split_bounds(len(events), n_bins)
    index, inside = _flat_pixel_index(events, geom, with_polarity=True)
    index, bounds = _keep_inside(index, inside, bounds)
    _accumulate_counts(index, bounds, result.reshape(n_bins, -1), zeroed)
    return result


def _as_edges(t_edges: npt.ArrayLike) -> npt.NDArray[np.int64]:
    """Integer microsecond edges equivalent to ``t_edges`` for integer timestamps."""
    edges = np.asarray(t_edges)
    if edges.ndim != 1 or len(edges) < 2:
        raise RepresentationError(
            f"t_edges must be a 1-D sequence of at least 2 times, got shape {edges.shape}"
        )
    if edges.dtype.kind in "iu":
        result = edges.astype(np.int64)
    elif edges.dtype.kind == "f":
        if not np.all(np.isfinite(edges)):
            raise RepresentationError("t_edges must be finite")
        if np.any(np.abs(edges) >= 2.0**62):
            raise RepresentationError("t_edges must be within +-2^62 microseconds")
        # For integer t, t >= e exactly when t >= ceil(e): the same bins without float compares.
        result = np.ceil(edges).astype(np.int64)
    else:
        raise RepresentationError(f"t_edges must be numbers, got dtype {edges.dtype}")
    backwards = np.flatnonzero(np.diff(result) < 0)
    if backwards.size:
        i = int(backwards[0]) + 1
        raise RepresentationError(
            f"t_edges must be non-decreasing: t_edges[{i}]={edges[i]} < "
            f"t_edges[{i - 1}]={edges[i - 1]}"
        )
    return result


def binned_histograms(
    events: Events,
    sensor_size: tuple[int, int],
    t_edges: npt.ArrayLike,
    *,
    crop: Crop | None = None,
    downsample: int = 1,
    out: FloatArray | None = None,
) -> FloatArray:
    """The SNN input: per time bin, the count of events per polarity per pixel.

    Bin ``k`` holds the events with ``t_edges[k] <= t < t_edges[k + 1]``; events before
    ``t_edges[0]`` or at or after ``t_edges[-1]`` are ignored. Every bin is half-open, so an event
    exactly at the end of one window belongs to the next window and counting consecutive windows
    counts every event once.

    Args:
        events: sorted events of :data:`~hybridpose.events.EVENT_DTYPE` (the whole stream or any
            part of it that covers the bins).
        sensor_size: ``(width, height)`` of the sensor.
        t_edges: ``T + 1`` non-decreasing bin edges in microseconds (a zero-width bin is empty).
        crop: optional ``(x0, y0, width, height)``; events outside are dropped.
        downsample: integer factor, counts of a ``d`` x ``d`` block are summed.
        out: optional float32 array of the output shape to write into (fully overwritten).

    Returns:
        Counts indexed ``[bin, polarity, y, x]`` with polarity 0 OFF and 1 ON.

    Shape:
        events ``(N,)``, t_edges ``(T + 1,)`` -> ``(T, 2, H, W)`` with ``(W, H) =
        frame_size(sensor_size, crop, downsample)``.

    Raises:
        EventError: wrong dtype or shape, or a used event outside the sensor.
        RepresentationError: bad ``sensor_size``, ``t_edges``, ``crop``, ``downsample`` or
            ``out``.
    """
    check_event_array(events)
    geom = _geometry(sensor_size, crop, downsample)
    edges = _as_edges(t_edges)
    n_bins = len(edges) - 1
    result, zeroed = _output(out, (n_bins, 2, geom.height, geom.width))
    if len(events) == 0:
        if not zeroed:
            result.fill(0)
        return result
    positions = _search_sorted(events["t"], edges.tolist())
    first = positions[0]
    used = events[first : positions[-1]]
    bounds = [i - first for i in positions]
    index, inside = _flat_pixel_index(used, geom, with_polarity=True, offset=first)
    index, bounds = _keep_inside(index, inside, bounds)
    _accumulate_counts(index, bounds, result, zeroed)
    return result


class EventCounter:
    """:func:`binned_histograms` of one bin, the geometry checked once: a stream adds the few
    events of each millisecond bin, where the per-call checks would cost more than the count.

    Args:
        sensor_size, crop, downsample: as for :func:`binned_histograms`.

    >>> from hybridpose.events import make_events
    >>> counter = EventCounter((4, 3))
    >>> out = np.zeros((2, 3, 4), np.float32)
    >>> counter.add(make_events([1, 1, 3], [0, 0, 2], [5, 6, 7], [1, 1, -1]), out)
    >>> int(out[1, 0, 1]), int(out[0, 2, 3]), int(out.sum())
    (2, 1, 3)
    """

    def __init__(
        self, sensor_size: tuple[int, int], crop: Crop | None = None, downsample: int = 1
    ) -> None:
        self._geom = _geometry(sensor_size, crop, downsample)
        self.shape = (2, self._geom.height, self._geom.width)

    def add(self, events: Events, out: FloatArray) -> None:
        """Add the counts of ``events`` (all of them, whatever their times) to ``out``.

        Shape:
            events ``(N,)``, out ``(2, H, W)`` float32 C-contiguous (added to, not cleared).
        """
        check_event_array(events)
        if out.shape != self.shape or out.dtype != np.float32 or not out.flags.c_contiguous:
            raise RepresentationError(f"out must be a C-contiguous float32 array of {self.shape}")
        if len(events) == 0:
            return
        g = self._geom
        outside = _count_one_bin(
            events["x"], events["y"], events["p"], g.sensor_width, g.sensor_height, g.x0, g.y0,
            g.crop_width, g.crop_height, g.downsample, g.width, out.reshape(-1),
        )  # fmt: skip
        if outside:  # nothing was counted: name the first offending event
            _check_coordinate(events["x"], "x", g)
            _check_coordinate(events["y"], "y", g)


@jit
def _count_one_bin(
    xs: npt.NDArray[np.uint16],
    ys: npt.NDArray[np.uint16],
    ps: npt.NDArray[np.int8],
    sensor_width: int,
    sensor_height: int,
    x0: int,
    y0: int,
    crop_width: int,
    crop_height: int,
    downsample: int,
    width: int,
    out: FloatArray,
) -> bool:
    """:meth:`EventCounter.add` in one compiled loop (a stream's bin holds a few events, where
    the dozen numpy calls of :func:`_flat_pixel_index` cost 20-30 us); returns True, having
    counted nothing, when an event lies outside the sensor."""
    for i in range(len(xs)):
        if xs[i] >= sensor_width or ys[i] >= sensor_height:
            return True
    height = out.shape[0] // (2 * width)
    for i in range(len(xs)):
        x, y = np.int64(xs[i]) - x0, np.int64(ys[i]) - y0
        if 0 <= x < crop_width and 0 <= y < crop_height:
            channel = 1 if ps[i] > 0 else 0
            out[(channel * height + y // downsample) * width + x // downsample] += 1.0
    return False


def voxel_grid(
    events: Events,
    sensor_size: tuple[int, int],
    n_bins: int,
    t_start: int | None = None,
    t_end: int | None = None,
    *,
    crop: Crop | None = None,
    downsample: int = 1,
    out: FloatArray | None = None,
) -> FloatArray:
    """The event voxel grid: polarity as sign, spread bilinearly over ``n_bins`` time samples.

    With ``t* = (n_bins - 1) * (t - t_start) / (t_end - t_start)``, an event adds ``s * max(0,
    1 - |k - t*|)`` to bin ``k`` at its pixel, where ``s`` is +1 for ON and -1 for OFF. Bin 0 is
    sampled at ``t_start`` and bin ``n_bins - 1`` at ``t_end``; each event's two weights sum to 1.

    ``t_start`` defaults to the first event's timestamp. If ``t_end`` is given, the events with
    ``t_start <= t < t_end`` are used (half-open, like every window here); if it is None, it is
    the last event's timestamp and the events from ``t_start`` through the last one are used.
    When all used events share one timestamp (``t_end == t_start``) they go to the last bin.

    Args:
        events: sorted events of :data:`~hybridpose.events.EVENT_DTYPE`.
        sensor_size: ``(width, height)`` of the sensor.
        n_bins: number of time samples (>= 1; with 1, every event goes fully to bin 0).
        t_start: start of the window in microseconds, or None.
        t_end: end of the window in microseconds, or None.
        crop: optional ``(x0, y0, width, height)``; events outside are dropped.
        downsample: integer factor, values of a ``d`` x ``d`` block are summed.
        out: optional float32 array of the output shape to write into (fully overwritten).

    Returns:
        The voxel grid, indexed ``[bin, y, x]``. Its sum is (#ON - #OFF) of the used events,
        and for events of one polarity the sum of absolute values is their number.

    Shape:
        events ``(N,)`` -> ``(n_bins, H, W)`` with ``(W, H) = frame_size(sensor_size, crop,
        downsample)``.

    Raises:
        EventError: wrong dtype or shape, or a used event outside the sensor.
        RepresentationError: bad ``sensor_size``, ``n_bins``, window, ``crop``, ``downsample``
            or ``out``.
    """
    check_event_array(events)
    geom = _geometry(sensor_size, crop, downsample)
    if not _is_int(n_bins) or n_bins < 1:
        raise RepresentationError(f"n_bins must be an integer >= 1, got {n_bins!r}")
    for name, value in (("t_start", t_start), ("t_end", t_end)):
        if value is not None and not _is_int(value):
            raise RepresentationError(f"{name} must be an integer (microseconds), got {value!r}")
    if t_start is not None and t_end is not None and t_end < t_start:
        raise RepresentationError(f"t_end ({t_end} us) is before t_start ({t_start} us)")
    n_bins = int(n_bins)
    result, zeroed = _output(out, (n_bins, geom.height, geom.width))
    if not zeroed:
        result.fill(0)
    if len(events) == 0:
        return result
    t_all = events["t"]
    start = int(t_all[0]) if t_start is None else int(t_start)
    if t_end is None:
        lo, hi = _search_sorted(t_all, [start])[0], len(events)
    else:
        lo, hi = _search_sorted(t_all, [start, int(t_end)])
    if hi <= lo:
        return result
    used = events[lo:hi]
    end = int(used["t"][-1]) if t_end is None else int(t_end)
    _accumulate_voxels(used, start, end, geom, result, offset=lo)
    return result


def _accumulate_voxels(
    events: Events, start: int, end: int, geom: _Geometry, out: FloatArray, offset: int = 0
) -> None:
    """Add the bilinear voxel weights of ``events`` (all with ``start <= t <= end``) to ``out``.

    Shape:
        events ``(N,)``; out ``(n_bins, H, W)``.
    """
    n_bins = out.shape[0]
    span = end - start
    t = events["t"]
    if span == 0 or n_bins == 1:
        # Every event sits on one sample: the last one (span 0) or the only one.
        bounds = [0] * n_bins + [len(events)]
    else:
        # The lower sample floor(t*) is k exactly when t >= start + ceil(k * span / (n_bins - 1));
        # events are sorted, so each lower sample owns one contiguous run of them.
        k = np.arange(1, n_bins, dtype=np.int64)
        firsts = start + (k * span + n_bins - 2) // (n_bins - 1)
        bounds = [0, *_search_sorted(t, firsts.tolist()), len(events)]
    pixel, inside = _flat_pixel_index(events, geom, with_polarity=False, offset=offset)
    # (t - start) * (n_bins - 1) in integers; minus k * span within run k it is the exact
    # remainder of the division, so the fraction below never depends on float rounding.
    numerator = t.astype(np.int64)
    numerator -= start
    numerator *= n_bins - 1
    sign = (events["p"] > 0).astype(np.float64)
    sign *= 2.0
    sign -= 1.0
    if inside is not None:
        numerator = np.compress(inside, numerator)
        sign = np.compress(inside, sign)
    pixel, bounds = _keep_inside(pixel, inside, bounds)
    for lower, (lo, hi) in enumerate(itertools.pairwise(bounds)):
        numerator[lo:hi] -= lower * span
    # An event's weights on its two samples: 1 - frac on the lower, frac on the upper.
    upper_weight = sign * numerator
    upper_weight /= max(span, 1)
    lower_weight = sign - upper_weight
    plane = out.shape[1] * out.shape[2]
    flat = out.reshape(n_bins, plane)
    carried: npt.NDArray[np.float64] | None = None  # upper weights of the previous run
    for lower, (lo, hi) in enumerate(itertools.pairwise(bounds)):
        here = carried
        if hi > lo:
            here = _weighted_counts(pixel[lo:hi], lower_weight[lo:hi], plane)
            if carried is not None:
                here += carried
        if here is not None:
            np.copyto(flat[lower], here, casting="same_kind")
        carried = None
        if hi > lo and lower + 1 < n_bins:
            carried = _weighted_counts(pixel[lo:hi], upper_weight[lo:hi], plane)


def _weighted_counts(
    index: IndexArray, weights: npt.NDArray[np.float64], size: int
) -> npt.NDArray[np.float64]:
    """Sum of ``weights`` per value of ``index`` in ``[0, size)``, as float64."""
    return np.bincount(index, weights=weights, minlength=size).astype(np.float64, copy=False)
