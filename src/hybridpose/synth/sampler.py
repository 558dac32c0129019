"""Per-tile adaptive sampling of a camera's images for the event simulator.

The simulator samples each pixel's log intensity often enough that no pixel steps by more
than the sensor's bound between two samples (:attr:`~hybridpose.synth.esim.EsimConfig.\
log_step_limit`); between samples the pixel model interpolates linearly. Sampling whole
frames, the fastest edge in the image (a hand) sets the instants of every pixel of the body's
box. Here the box is cut into ``TILE`` x ``TILE`` tiles and each tile is refined alone: a tile
starts from the coarse instants by which something near it has moved (:func:`needed_instants`),
and an interval in which some pixel of the tile steps more than the bound gets the midpoint,
for that tile only, until no interval does (or it is no wider than twice ``min_step_us``).
The bound holds per pixel, as with whole frames; only the instants where a pixel did not need
a sample are left out.

A refinement renders only the pixels of the tile that stepped more than the bound over the
interval, and their four neighbours; the tile's other pixels take, at the midpoint, the value
the pixel model would interpolate there (the middle of their two samples: their step, within
the bound, is halved and never split again). On star jumps at 346x260 (subject 13, movement
22) a split interval had 5.7 of its 64 pixels above the bound on average, and refinements
were 88% of the renders. The neighbours are rendered too because a pixel whose two samples
agree may still see a thin feature pass between them, which rendering whole tiles caught
where a neighbour forced a split: without them the recording's moving events fell by 2.9%
against whole tiles, with them by 0.43% (halving the bound instead raised whole tiles' count
by 0.36%, so whole tiles are within that of converged), in 8.8 s against 12.0 s.

An interpolated sample stands in for a pixel's value only until the pixel is rendered between
its samples: when a neighbour's refinement renders it there and finds a feature that passed
unseen, the interpolated samples on either side no longer lie on its line, and halving the
tile's intervals can never close the step from one of them. So once the rounds end, repair
rounds walk the samples each pixel takes (:class:`_PixelGaps`) and split, for that pixel
and its neighbours, every step above the bound wider than ``min_gap``; the other samples are
then set back on each pixel's line. Without them, on subject 13's movements 1, 16 and 22 at
346x260, hundreds of intervals per camera stayed above the bound (up to 2.3 log units with
1-second chunks); with them 0-16 do, at most 0.19, where an edge outruns ``min_gap``.

Why: on a full-resolution recording (subject 13, movement 16, 346x260), 16x16 tiles needed
4.9% of the tile-instants the whole frames rendered, for the same bound (measured by thinning
the frame sampler's own samples tile by tile). Taking every coarse instant in every tile, the
sampler rendered far more than that (74% of its renders were those instants, with 8x8 tiles)
and simulated the recording in 7.2 s against 29.2 s by whole frames with 16x16 tiles, in 5.8,
5.6 and 9.6 s with 4, 8 and 32 (one run each): tiles are 8 pixels wide. Leaving out the
coarse instants of tiles that nothing near has moved brought it to 3.9 s.

The tiles of all instants a round asks for are rendered in one call
(:func:`hybridpose.synth.render.render_tiles`; :func:`tile_sampling` yields each round's
request, so that a recording's four cameras are rendered with the body posed once per round),
and each tile's samples then run through the pixel model as one region
(:func:`hybridpose.synth.esim.esim_advance_regions`).
"""

from __future__ import annotations

from collections.abc import Callable, Generator
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from hybridpose._jit import jit

TILE = 8
"""Tile side in pixels (the fastest of 4, 8, 16 and 32 at 346x260; see above)."""

FloatArray = npt.NDArray[np.float64]
F32 = npt.NDArray[np.float32]
I64 = npt.NDArray[np.int64]
TileRequest = tuple[FloatArray, I64, "npt.NDArray[np.bool_] | None"]
"""``(instants (R,), tile origins (R, 2), wanted (R, TILE, TILE) or None)``: tiles to render."""
RenderTiles = Callable[[FloatArray, I64, "npt.NDArray[np.bool_] | None"], F32]
"""A :data:`TileRequest`'s ``-> (R, TILE, TILE)`` log intensities; the pixels that ``wanted``
leaves out may hold anything."""


@dataclass(frozen=True)
class TileSamples:
    """Each tile's samples: ``regions[i] = ((x0, y0), logs (K_i, h_i, w_i) float64 (the
    rendered float32 values, or interpolated ones), instants (K_i,), rendered (K_i, h_i, w_i)
    bool)`` (as :func:`~hybridpose.synth.esim.esim_advance_regions` takes them: a pixel's
    interpolated samples are left out)
    (the previous sample left out; every tile ends at the same instant), the number of tile
    samples (``renders``) and of pixels rendered inside the box, the steps between the samples
    a pixel takes left above the bound at the finest step, and the largest such step."""

    regions: list[tuple[tuple[int, int], FloatArray, FloatArray, npt.NDArray[np.bool_]]]
    renders: int
    pixel_renders: int
    unresolved: int
    largest_step: float


def tile_origins(box: tuple[int, int, int, int], tile: int = TILE) -> tuple[I64, I64]:
    """The tiles covering ``box = (x0, x1, y0, y1)``: origins (n, 2) as ``(x, y)`` and sizes
    (n, 2) as ``(w, h)`` (smaller at the box's right and bottom edges), rows first."""
    x0, x1, y0, y1 = box
    ys, xs = np.meshgrid(np.arange(y0, y1, tile), np.arange(x0, x1, tile), indexing="ij")
    origins = np.stack([xs.ravel(), ys.ravel()], axis=1).astype(np.int64)
    sizes = np.stack(
        [np.minimum(tile, x1 - origins[:, 0]), np.minimum(tile, y1 - origins[:, 1])], 1
    )
    return origins, sizes.astype(np.int64)


QUIET_PX = 1.0
"""A tile skips a coarse instant while the capsules near it have moved less than this many
pixels since its last sample (see :func:`needed_instants`)."""


def needed_instants(
    boxes: I64, motion: FloatArray, origins: I64, tile: int = TILE, quiet_px: float = QUIET_PX
) -> npt.NDArray[np.bool_]:
    """Which coarse instants each tile is rendered at first: (n_tiles, K).

    ``boxes`` (K + 1, C, 4) are the capsules' pixel boxes at the previous sample and at the K
    coarse instants, ``motion`` (K, C) how far each capsule's image moved over each interval
    (pixels; the most any of its tracked points moved). A capsule is near a tile over an
    interval when the box holding both of its boxes meets the tile. A tile takes an instant
    once the capsules near it have moved ``quiet_px`` in all since its last sample: where
    nothing near it moves, its image cannot change (and is not rendered); where something
    does, it takes every coarse instant, as without this rule. The refinement then halves the
    intervals that still step too far. Either way a thin part that crosses a whole tile
    between two coarse instants, leaving it as it was, would go unseen: at 346x260 a forearm
    (~7 px wide) past an 8-pixel tile in 5 ms, ~3,000 px/s, about 40 m/s at the subject.
    """
    x = origins[:, 0, None, None]
    y = origins[:, 1, None, None]
    lo_x = np.minimum(boxes[:-1, :, 0], boxes[1:, :, 0])[None]
    hi_x = np.maximum(boxes[:-1, :, 1], boxes[1:, :, 1])[None]
    lo_y = np.minimum(boxes[:-1, :, 2], boxes[1:, :, 2])[None]
    hi_y = np.maximum(boxes[:-1, :, 3], boxes[1:, :, 3])[None]
    near = (lo_x < x + tile) & (hi_x > x) & (lo_y < y + tile) & (hi_y > y)  # (n, K, C)
    moved = np.where(near, motion[None], 0.0).max(axis=2, initial=0.0)  # (n, K)
    needed = np.zeros(moved.shape, bool)
    total = np.zeros(len(origins))
    for k in range(moved.shape[1]):
        total += moved[:, k]
        needed[:, k] = total >= quiet_px
        total[needed[:, k]] = 0.0
    needed[:, -1] = True
    return needed


def sample_tiles(
    render: RenderTiles, rounds: Generator[TileRequest, F32, TileSamples]
) -> TileSamples:
    """Run a :func:`tile_sampling` to its end, answering each request with ``render``."""
    try:
        request = next(rounds)
        while True:
            request = rounds.send(render(*request))
    except StopIteration as done:
        samples: TileSamples = done.value
        return samples


def tile_sampling(
    previous: npt.ArrayLike,
    t_previous: float,
    instants: FloatArray,
    box: tuple[int, int, int, int],
    bound: float,
    min_gap: float,
    tile: int = TILE,
    needed: npt.NDArray[np.bool_] | None = None,
) -> Generator[TileRequest, F32, TileSamples]:
    """Sample every tile of ``box`` over ``(t_previous, instants[-1]]``: a generator that
    yields each round's :data:`TileRequest` and takes the rendered tiles back (``send``), so
    that a caller can render the rounds of several cameras together; it returns the
    :class:`TileSamples`.

    ``previous`` (h, w) is the box's log intensity at ``t_previous``; ``instants`` the coarse
    instants the tiles are rendered at first (increasing, after ``t_previous``): all of them,
    or where ``needed`` (n_tiles, K) says (every tile takes the last).
    """
    origins, sizes = tile_origins(box, tile)
    n = len(origins)
    first = np.asarray(instants, dtype=np.float64)
    want = np.ones((n, len(first)), bool) if needed is None else np.array(needed, bool)
    want[:, -1] = True
    # steps in float64, as the whole-frame sampler takes them (the previous sample is the
    # simulator's float64 state, the rendered ones float32)
    inside = np.zeros((n, tile, tile), bool)  # the tile's pixels inside the box
    prev = np.zeros((n, tile, tile), np.float64)
    box_prev = np.asarray(previous, dtype=np.float64)
    for i, ((x, y), (w, h)) in enumerate(zip(origins, sizes, strict=True)):
        r, c = y - box[2], x - box[0]
        inside[i, :h, :w] = True
        prev[i, :h, :w] = box_prev[r : r + h, c : c + w]
    ids, which = np.nonzero(want)
    # the refinements took 5x the first samples (median; up to 10x) on movements 1, 16 and 22
    # at 346x260: room for 12x, whose untouched rows take no memory, saves copies as it grows
    samples = _Samples(12 * (n + len(ids)), tile)
    everywhere = np.ones((1, tile, tile), bool)
    samples.add(np.arange(n), np.full(n, float(t_previous)), prev, everywhere)
    samples.add(ids, first[which], (yield first[which], origins[ids], None), everywhere)
    pixel_renders = int(inside[ids].sum())
    # the intervals between consecutive samples of a tile; each round measures only the new
    # ones and halves those that step too far
    order = np.lexsort((samples.t, samples.tile_id))
    same = samples.tile_id[order[1:]] == samples.tile_id[order[:-1]]
    left, right = order[:-1][same], order[1:][same]
    while len(left):
        step = np.empty(len(left))
        split = np.empty(len(left), bool)
        wanted = np.empty((len(left), tile, tile), bool)
        between = np.empty((len(left), tile, tile))
        n_split = _measure_round(
            samples.values, samples.t, samples.tile_id, inside, left, right, bound, min_gap,
            step, split, wanted, between,
        )  # fmt: skip
        if not n_split:
            break
        # only the pixels that stepped too far, and their neighbours, are rendered at the
        # midpoint; the others get the value the pixel model would interpolate there
        wanted, between = wanted[:n_split], between[:n_split]
        left, right = left[split], right[split]
        mid = 0.5 * (samples.t[left] + samples.t[right])
        where = samples.tile_id[right]
        pixel_renders += int(wanted.sum())
        rendered = yield mid, origins[where], wanted
        added = samples.add(where, mid, np.where(wanted, rendered, between), wanted)
        left, right = np.concatenate([left, added]), np.concatenate([added, right])
    # a pixel's interpolated samples stand in for its value only until it is rendered between
    # them; repair rounds split the steps between the samples each pixel takes
    gaps = _PixelGaps(n, inside, bound, min_gap)
    walk, repaired = np.arange(n), np.zeros(n, bool)  # the first walk takes every tile
    while True:
        order, starts = _tile_order(samples, n)
        repair = gaps.walk(samples, order, starts, walk)
        if repair is None:
            break
        where, mid, existing, wanted = _repair_request(samples, repair, inside, tile)
        pixel_renders += int(wanted.sum())
        rendered = yield mid, origins[where], wanted
        old = existing >= 0
        samples.update(existing[old], rendered[old], wanted[old])
        samples.add(where[~old], mid[~old], rendered[~old], wanted[~old])
        walk = np.unique(where)  # only these tiles' samples changed
        repaired[walk] = True
    # elsewhere the interpolated samples already lie on their pixel's line
    _interpolate_between(
        samples.values, samples.rendered, samples.t, order, starts, np.flatnonzero(repaired)
    )
    t, values = samples.t[order], samples.values[order]
    taken = samples.rendered[order]
    regions = []
    for i, ((x, y), (w, h)) in enumerate(zip(origins, sizes, strict=True)):
        lo, hi = starts[i] + 1, starts[i + 1]  # the previous sample first: left out
        regions.append(((int(x), int(y)), values[lo:hi, :h, :w], t[lo:hi], taken[lo:hi, :h, :w]))
    renders = samples.size - n  # every sample but the previous ones was rendered
    unresolved, largest = int(gaps.unresolved.sum()), float(gaps.largest.max(initial=0.0))
    return TileSamples(regions, renders, pixel_renders, unresolved, largest)


def _tile_order(samples: _Samples, n_tiles: int) -> tuple[I64, I64]:
    """The samples sorted by tile, then time, and where each tile's run starts (n_tiles + 1)."""
    order = np.lexsort((samples.t, samples.tile_id))
    return order, np.searchsorted(samples.tile_id[order], np.arange(n_tiles + 1))


Repair = tuple[I64, I64, I64, I64, I64]
"""Pixel gaps to split: ``(tile, first sample, next sample, existing sample at the midpoint or
-1, pixel row * TILE + column)`` (samples as indices into the :class:`_Samples`)."""


class _PixelGaps:
    """The steps between consecutive samples each pixel takes, walked tile by tile: the ones to
    split, and per tile how many are above the bound at the finest step and the largest."""

    def __init__(
        self, n_tiles: int, inside: npt.NDArray[np.bool_], bound: float, min_gap: float
    ) -> None:
        self.inside, self.bound, self.min_gap = inside, bound, min_gap
        self.unresolved = np.zeros(n_tiles, np.int64)
        self.largest = np.zeros(n_tiles)

    ROOM = 4096
    """Steps to split one walk writes; a walk that finds more is walked again."""

    def walk(self, samples: _Samples, order: I64, starts: I64, tiles: I64) -> Repair | None:
        """Walk ``tiles``: the steps above the bound wider than ``min_gap`` (None if none)."""
        args = (
            samples.values, samples.rendered, samples.t, order, starts, tiles, self.inside,
            self.bound, self.min_gap, self.unresolved, self.largest,
        )  # fmt: skip
        repair = tuple(np.empty(self.ROOM, np.int64) for _ in range(5))
        count = _gaps_kernel(*args, *repair)
        if count > self.ROOM:  # the walk sets the same statistics again
            repair = tuple(np.empty(count, np.int64) for _ in range(5))
            _gaps_kernel(*args, *repair)
        if not count:
            return None
        return tuple(column[:count] for column in repair)  # type: ignore[return-value]


def _repair_request(
    samples: _Samples, repair: Repair, inside: npt.NDArray[np.bool_], tile: int
) -> tuple[I64, FloatArray, I64, npt.NDArray[np.bool_]]:
    """One render per tile and midpoint: ``(tiles, instants, existing sample or -1, wanted)``;
    a pixel's four neighbours inside the box are rendered with it, as in the rounds."""
    tile_id, first, after, existing, pixel = repair
    mid = 0.5 * (samples.t[first] + samples.t[after])
    keys, request = np.unique(
        np.stack([tile_id, mid.view(np.int64)], 1), axis=0, return_inverse=True
    )
    wanted = np.zeros((len(keys), tile + 2, tile + 2), bool)  # a margin for the neighbours
    rows, columns = pixel // tile + 1, pixel % tile + 1
    for dr, dc in ((0, 0), (-1, 0), (1, 0), (0, -1), (0, 1)):
        wanted[request.ravel(), rows + dr, columns + dc] = True
    where = keys[:, 0]
    wanted = wanted[:, 1:-1, 1:-1] & inside[where]
    at = np.full(len(keys), -1, np.int64)
    at[request.ravel()] = existing
    return where, keys[:, 1].copy().view(np.float64), at, wanted


@jit
def _gaps_kernel(
    values: FloatArray,
    rendered: npt.NDArray[np.bool_],
    t: FloatArray,
    order: I64,
    starts: I64,
    tiles: I64,
    inside: npt.NDArray[np.bool_],
    bound: float,
    min_gap: float,
    unresolved: I64,
    largest: FloatArray,
    out_tile: I64,
    out_first: I64,
    out_after: I64,
    out_existing: I64,
    out_pixel: I64,
) -> int:
    """Walk each pixel's rendered samples in time order, in the ``tiles`` listed: each step
    above ``bound`` between two of them more than ``min_gap`` apart is written to ``out``
    (while it has room) as the tile, the two samples, the tile's sample at their midpoint if
    it has one (else -1) and the pixel; returns their number. Per tile walked, sets
    ``unresolved`` (the steps above the bound no wider than ``min_gap``) and ``largest``."""
    count = 0
    size = inside.shape[1]
    last = np.empty((size, size), np.int64)  # each pixel's last sample taken (its position)
    for i in tiles:
        lo, hi = starts[i], starts[i + 1]
        unresolved[i] = 0
        largest[i] = 0.0
        last[:, :] = lo  # the tile's previous sample: every pixel takes it
        for q in range(lo + 1, hi):  # samples outside, pixels inside: in memory order
            k = order[q]
            for r in range(size):
                for c in range(size):
                    if not (inside[i, r, c] and rendered[k, r, c]):
                        continue
                    a = order[last[r, c]]
                    step = abs(values[k, r, c] - values[a, r, c])
                    largest[i] = max(largest[i], step)
                    if step > bound and t[k] - t[a] > min_gap:
                        if count < len(out_tile):
                            mid = 0.5 * (t[a] + t[k])
                            out_tile[count] = i
                            out_first[count] = a
                            out_after[count] = k
                            out_existing[count] = _sample_at(t, order, last[r, c] + 1, q, mid)
                            out_pixel[count] = r * size + c
                        count += 1
                    elif step > bound:
                        unresolved[i] += 1
                    last[r, c] = q
    return count


@jit
def _sample_at(t: FloatArray, order: I64, lo: int, hi: int, instant: float) -> int:
    """The sample among ``order[lo:hi]`` at ``instant``, or -1."""
    for q in range(lo, hi):
        if t[order[q]] == instant:
            return int(order[q])
    return -1


@jit
def _interpolate_between(
    values: FloatArray,
    rendered: npt.NDArray[np.bool_],
    t: FloatArray,
    order: I64,
    starts: I64,
    tiles: I64,
) -> None:
    """In the ``tiles`` listed, set each pixel's samples that it does not take to the straight
    line (in time) between the samples it takes before and after them (every pixel takes each
    tile's first and last sample)."""
    size_r, size_c = values.shape[1], values.shape[2]
    for i in tiles:
        lo, hi = starts[i], starts[i + 1]
        for r in range(size_r):
            for c in range(size_c):
                last = lo
                for q in range(lo + 1, hi):
                    k = order[q]
                    if not rendered[k, r, c]:
                        continue
                    a = order[last]
                    for between in range(last + 1, q):
                        j = order[between]
                        w = (t[j] - t[a]) / (t[k] - t[a])
                        values[j, r, c] = values[a, r, c] + w * (values[k, r, c] - values[a, r, c])
                    last = q


@jit
def _measure_round(
    values: FloatArray,
    t: FloatArray,
    tile_id: I64,
    inside: npt.NDArray[np.bool_],
    left: I64,
    right: I64,
    bound: float,
    min_gap: float,
    step: FloatArray,
    split: npt.NDArray[np.bool_],
    wanted: npt.NDArray[np.bool_],
    between: FloatArray,
) -> int:
    """One refinement round's measure, in one pass without temporaries: each interval's
    largest step over its tile's pixels inside the box (``step``), whether it is split
    (``split``: above ``bound`` and wider than ``min_gap``), and for the split ones, in order,
    the pixels to render at the midpoint (``wanted``: above the bound, and their four
    neighbours, inside the box) and every pixel's midpoint value (``between``). Returns the
    number split. (numpy took five (intervals, tile, tile) temporaries a round.)
    """
    n_split = 0
    for j in range(len(left)):
        a, b = left[j], right[j]
        tile_inside = inside[tile_id[b]]
        step[j] = _largest_step(values[a], values[b], tile_inside)
        split[j] = step[j] > bound and t[b] - t[a] > min_gap
        if split[j]:
            _mark(values[a], values[b], tile_inside, bound, wanted[n_split], between[n_split])
            n_split += 1
    return n_split


@jit
def _largest_step(before: FloatArray, after: FloatArray, inside: npt.NDArray[np.bool_]) -> float:
    """The largest ``|after - before|`` over the pixels ``inside`` (0 if none)."""
    largest = 0.0
    for r in range(before.shape[0]):
        for c in range(before.shape[1]):
            if inside[r, c]:
                largest = max(largest, abs(after[r, c] - before[r, c]))
    return largest


@jit
def _mark(
    before: FloatArray,
    after: FloatArray,
    inside: npt.NDArray[np.bool_],
    bound: float,
    wanted: npt.NDArray[np.bool_],
    between: FloatArray,
) -> None:
    """``wanted``: the pixels inside whose step exceeds ``bound``, and their four neighbours
    inside; ``between``: every pixel's midpoint value."""
    size_r, size_c = before.shape
    wanted[:, :] = False
    for r in range(size_r):
        for c in range(size_c):
            between[r, c] = 0.5 * (before[r, c] + after[r, c])
            if inside[r, c] and abs(after[r, c] - before[r, c]) > bound:
                wanted[r, c] = True
                wanted[max(r - 1, 0), c] = True
                wanted[min(r + 1, size_r - 1), c] = True
                wanted[r, max(c - 1, 0)] = True
                wanted[r, min(c + 1, size_c - 1)] = True
    for r in range(size_r):
        for c in range(size_c):
            wanted[r, c] = wanted[r, c] and inside[r, c]


class _Samples:
    """The samples of every tile in arrival order: tile, instant, float64 log values and which
    pixels were rendered; grown fourfold, so that a round appends without copying every
    earlier sample."""

    def __init__(self, capacity: int, tile: int) -> None:
        self.size = 0
        self._tile_id = np.empty(capacity, np.int64)
        self._t = np.empty(capacity)
        self._values = np.empty((capacity, tile, tile))
        self._rendered = np.empty((capacity, tile, tile), bool)

    def add(
        self, tile_id: I64, t: FloatArray, values: npt.ArrayLike, rendered: npt.ArrayLike
    ) -> I64:
        """Append; returns the new samples' indices."""
        lo, hi = self.size, self.size + len(t)
        if hi > len(self._t):
            grow = max(hi, 4 * len(self._t))  # fewer copies; untouched rows cost no memory
            self._tile_id = _grown(self._tile_id, lo, grow)
            self._t = _grown(self._t, lo, grow)
            self._values = _grown(self._values, lo, grow)
            self._rendered = _grown(self._rendered, lo, grow)
        self._tile_id[lo:hi], self._t[lo:hi], self._values[lo:hi] = tile_id, t, values
        self._rendered[lo:hi] = rendered
        self.size = hi
        return np.arange(lo, hi)

    def update(self, index: I64, values: npt.ArrayLike, rendered: npt.NDArray[np.bool_]) -> None:
        """Take the ``rendered`` pixels of ``values`` into the samples at ``index``."""
        mine = self._values[index]
        self._values[index] = np.where(rendered, values, mine)
        self._rendered[index] |= rendered

    @property
    def tile_id(self) -> I64:
        return self._tile_id[: self.size]

    @property
    def t(self) -> FloatArray:
        return self._t[: self.size]

    @property
    def values(self) -> FloatArray:
        return self._values[: self.size]

    @property
    def rendered(self) -> npt.NDArray[np.bool_]:
        return self._rendered[: self.size]


def _grown(array: npt.NDArray[Any], used: int, rows: int) -> npt.NDArray[Any]:
    """A buffer of ``rows`` rows holding the first ``used`` of ``array``."""
    out = np.empty((rows, *array.shape[1:]), array.dtype)
    out[:used] = array[:used]
    return out
