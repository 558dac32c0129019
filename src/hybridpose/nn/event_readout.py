"""The event-driven engine's readout and heatmap decoding.

The SNN's readout is ``r_t = decay * r_{t-1} + delta_t`` (``r_t = delta_t`` without the delta
readout), where ``delta_t`` is the 1x1 head over the last layer's spikes: the head's bias
``b_j`` at every pixel plus a weight column at the pixels where a neuron spiked. Each step
runs one dense pass ``r = decay * r + b`` and then adds, at each pixel with spikes, the sum of
their columns, in the order of the dense reference's float32 arithmetic (so decoded poses
agree with it to 1e-4 px: tests/test_stream.py).

Why not in one pass: following each joint's maximum in the update's pass (the block of pixels
still in L1) measured 15.4 against 13.8 us for the two passes on a 64x64 readout of 16 lanes.

Why not lazily: kept as ``gain * R + offset`` (a few scalars per step, ``R`` written only
where spikes arrived), the bias summed in another order moved values by ~1e-5, enough to
flip the argmax between near-equal pixels in 16 of 7800 streamed coordinates of a test. Each
value brought up to date only when read, by the same additions one step at a time (exact),
cost as much: the pixels where spikes arrive have missed ~100 steps each, whose additions
run as a dependent chain where the dense pass vectorises them.

Why the maxima are followed and not scanned (decay 1, every shipped model): adding the same
bias to two floats and rounding keeps their order, so a pixel can overtake a joint's
maximum only where spikes arrived. After a full scan each joint gets a floor a quarter of
its map's range below its maximum; the pixels above some floor are the candidates, and a
pixel that spikes lift above a floor (which takes the bias like the pixels) joins them.
While a joint's best candidate lies above its floor it is the map's maximum, the first
among equals since the candidates are kept in pixel order; otherwise the decoding scans.
The shipped 1 kHz hybrid, two cameras: ~170 candidates per map and no scan between two
initialisations in 7,000 steps; the engine's step 0.156-0.157 against 0.172-0.175 ms with
the scan (steady state, as fast as possible, alternating runs).

``r`` is stored pixel-major, (H * W, JP) with JP the joints padded to whole vectors: a
pixel's joints share a cache line and one spike's column is one vector addition. Joint-major,
the J values of one pixel lie ``H * W`` floats apart, all in one set of the L1 cache (4 kB
aliasing): the sparse updates cost 5 ns per value, five times more.

Decoding takes each joint's argmax, the first maximum in row-major order as numpy's (a NaN
is never a maximum here, unlike numpy's), then :mod:`hybridpose.heatmaps`' parabola through
the logs of the peak and its neighbours: the poses of
:func:`~hybridpose.heatmaps.decode_array` on the same heatmaps, which are never copied out.

Editing: numba's disk cache checks only the file of the function it compiled, and the
engine's compiled step (:mod:`hybridpose.nn.event_driven`) holds these kernels; after a
change here, touch that file too (or its cached step keeps the old ones).
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

from hybridpose._jit import jit
from hybridpose.heatmaps import log_clamped, parabola_offset

F32 = npt.NDArray[np.float32]
I32 = npt.NDArray[np.int32]
I64 = npt.NDArray[np.int64]
B1 = npt.NDArray[np.bool_]


@jit
def set_readout(readout: F32, values: F32) -> None:
    """Set one sample's readout (H * W, JP) to ``values`` (J, H * W), the padding zero."""
    readout[...] = 0.0
    for p in range(readout.shape[0]):
        for j in range(values.shape[0]):
            readout[p, j] = values[j, p]


@jit
def heatmaps(readout: F32, out: F32) -> None:
    """``out`` (J, H * W) from one sample's readout (H * W, JP)."""
    for p in range(readout.shape[0]):
        for j in range(out.shape[0]):
            out[j, p] = readout[p, j]


@jit
def update_readout(
    readout: F32,
    weights: F32,
    head: I64,
    decay: float,
    sp: I32,
    sp_off: int,
    n: int,
    width: int,
    delta: F32,
) -> None:
    """One step of one sample's readout (H * W, JP): ``decay * r + bias`` everywhere (the
    bias alone at ``decay`` 0), then at each pixel the sum of the weight columns of its
    spikes, the ``n`` listed at ``sp[sp_off:]`` position by position.

    ``head`` is (weights' offset of the (C, JP) head weights, of the bias repeated over a
    block of pixels, JP, pixels per block); ``delta`` (JP) is scratch.
    """
    padded = head[2]
    flat = readout.reshape(-1)
    bias = np.uint64(head[1])
    lanes = padded * head[3]
    decay32 = np.float32(decay)
    # unsigned indices: no negative-index wraparound; a block of pixels per iteration: the
    # inner loops are long enough to vectorise
    for block in range(flat.shape[0] // lanes):
        a = np.uint64(block * lanes)
        if decay == 0.0:
            for j in range(lanes):
                q = np.uint64(j)
                flat[a + q] = weights[bias + q]
        else:
            for j in range(lanes):
                q = np.uint64(j)
                flat[a + q] = decay32 * flat[a + q] + weights[bias + q]
    i = 0
    while i < n:
        y, x = sp[sp_off + i, 0], sp[sp_off + i, 1]
        for j in range(padded):
            delta[j] = 0.0
        while i < n and sp[sp_off + i, 0] == y and sp[sp_off + i, 1] == x:
            column = np.uint64(head[0] + sp[sp_off + i, 2] * padded)
            for j in range(padded):
                q = np.uint64(j)
                delta[q] += weights[column + q]
            i += 1
        a = np.uint64((y * width + x) * padded)
        for j in range(padded):
            q = np.uint64(j)
            flat[a + q] += delta[q]


@jit
def decode(readout: F32, best: F32, best_pixel: I32, height: int, width: int, uv: F32) -> None:
    """Each joint's ``(u, v)`` in heatmap pixels (J, 2) from one sample's readout
    (H * W, JP): the argmax, then the parabola through the logs of the peak and its
    neighbours along x and along y. ``best`` and ``best_pixel`` (a block of pixels' lanes:
    one maximum per joint and pixel of the block, vectorised) are scratch."""
    padded = readout.shape[1]
    lanes = best.shape[0]
    block = lanes // padded
    flat = readout.reshape(-1)
    for j in range(lanes):
        best[j] = flat[j]
        best_pixel[j] = 0
    for i in range(1, flat.shape[0] // lanes):
        a = np.uint64(i * lanes)
        first = np.int32(i * block)  # the block's first pixel
        for j in range(lanes):
            q = np.uint64(j)
            value = flat[a + q]
            higher = value > best[q]
            best[q] = value if higher else best[q]
            best_pixel[q] = first if higher else best_pixel[q]
    for j in range(uv.shape[0]):
        # the blocks' maxima: the highest, the first pixel among equals
        peak, pixel = best[j], best_pixel[j]
        for k in range(1, block):
            value, other = best[k * padded + j], best_pixel[k * padded + j] + k
            if value > peak or (value == peak and other < pixel):
                peak, pixel = value, other
        _parabola(readout, j, height, width, pixel, uv)


CANDIDATES = 512
"""Most pixels a decoding by candidates follows between full scans (:func:`follow`)."""

N_CAND, VALID = range(2)
"""Entries of ``rstate``: the candidates listed, whether the list is complete."""


@jit
def follow(
    readout: F32,
    weights: F32,
    head: I64,
    sp: I32,
    sp_off: int,
    n: int,
    width: int,
    floor: F32,
    cand: I32,
    is_cand: B1,
    rstate: I64,
) -> None:
    """After :func:`update_readout` at decay 1: keep every pixel that is not a candidate
    (``cand[:rstate[N_CAND]]``, in pixel order) at or below each joint's ``floor``.

    The floor takes the step's bias as the pixels do, and adding the same float to two floats
    and rounding keeps their order, so only a pixel where spikes arrived can pass it: such a
    pixel becomes a candidate (past :data:`CANDIDATES`, the list is marked incomplete).
    """
    joints = floor.shape[0]  # the joints, without the padding lanes
    for j in range(joints):
        floor[j] = floor[j] + weights[head[1] + j]
    if not rstate[VALID]:
        return
    last = -1
    for i in range(n):
        p = sp[sp_off + i, 0] * width + sp[sp_off + i, 1]
        if p == last or is_cand[p]:  # the spikes come position by position
            continue
        last = p
        above = False
        for j in range(joints):
            above |= readout[p, j] > floor[j]
        if not above:
            continue
        k = rstate[N_CAND]
        if k == cand.shape[0]:
            rstate[VALID] = 0
            return
        while k > 0 and cand[k - 1] > p:
            cand[k] = cand[k - 1]
            k -= 1
        cand[k] = p
        is_cand[p] = True
        rstate[N_CAND] += 1


@jit
def decode_followed(
    readout: F32,
    best: F32,
    best_pixel: I32,
    height: int,
    width: int,
    uv: F32,
    floor: F32,
    cand: I32,
    is_cand: B1,
    rstate: I64,
) -> None:
    """:func:`decode`, to the bit, from the candidates (:func:`follow`) when each joint's
    maximum among them lies above its floor: no other pixel can reach it, and among equal
    values the first pixel keeps the lead (the candidates are in pixel order; numpy's
    argmax). Otherwise, or when the list is incomplete: :func:`decode` and new candidates
    (:func:`new_candidates`)."""
    joints, padded = uv.shape[0], readout.shape[1]
    scan = not rstate[VALID]
    if not scan:
        for j in range(padded):
            best[j] = floor[j] if j < joints else np.inf
            best_pixel[j] = -1
        for k in range(rstate[N_CAND]):
            p = cand[k]
            for j in range(padded):
                value = readout[p, j]
                higher = value > best[j]
                best[j] = value if higher else best[j]
                best_pixel[j] = p if higher else best_pixel[j]
        for j in range(joints):
            scan |= best_pixel[j] < 0
    if scan:
        decode(readout, best, best_pixel, height, width, uv)
        new_candidates(readout, floor, cand, is_cand, rstate)
        return
    for j in range(joints):
        _parabola(readout, j, height, width, best_pixel[j], uv)


@jit
def new_candidates(readout: F32, floor: F32, cand: I32, is_cand: B1, rstate: I64) -> None:
    """Per joint a floor a quarter of the map's range below its maximum, and the pixels
    above some joint's floor as the candidates, in pixel order; the floors are raised (the
    range divided by 4 each time) until the candidates fit, and the list is marked
    incomplete when they never do (a flat map: then every decoding scans)."""
    joints = floor.shape[0]
    for k in range(rstate[N_CAND]):
        is_cand[cand[k]] = False
    rstate[N_CAND] = 0
    rstate[VALID] = 0
    high = np.full(joints, -np.inf, dtype=np.float32)
    low = np.full(joints, np.inf, dtype=np.float32)
    for p in range(readout.shape[0]):
        for j in range(joints):
            value = readout[p, j]
            high[j] = max(high[j], value)
            low[j] = min(low[j], value)
    spread = np.float32(0.25)
    for _ in range(4):
        for j in range(joints):
            floor[j] = high[j] - spread * (high[j] - low[j])
            if not floor[j] < high[j]:  # no range (or not finite): just below the maximum
                floor[j] = np.nextafter(high[j], np.float32(-np.inf))
        n = _above_floor(readout, floor, cand)
        if n <= cand.shape[0]:
            for k in range(n):
                is_cand[cand[k]] = True
            rstate[N_CAND] = n
            rstate[VALID] = 1
            return
        spread /= np.float32(4.0)


@jit
def _above_floor(readout: F32, floor: F32, cand: I32) -> int:
    """List in ``cand`` the pixels above some joint's floor, in pixel order; their number,
    or one more than ``cand`` holds when they do not fit."""
    n = 0
    for p in range(readout.shape[0]):
        above = False
        for j in range(floor.shape[0]):
            above |= readout[p, j] > floor[j]
        if above:
            if n == cand.shape[0]:
                return n + 1
            cand[n] = p
            n += 1
    return n


@jit
def _parabola(readout: F32, j: int, height: int, width: int, pixel: int, uv: F32) -> None:
    """Joint ``j``'s ``uv``: its peak ``pixel`` and the parabola through the logs of the peak
    and its neighbours along x and along y."""
    r, c = pixel // width, pixel % width
    mid = _log_value(readout, j, height, width, r, c)
    left = _log_value(readout, j, height, width, r, c - 1)
    right = _log_value(readout, j, height, width, r, c + 1)
    up = _log_value(readout, j, height, width, r - 1, c)
    down = _log_value(readout, j, height, width, r + 1, c)
    uv[j, 0] = c + parabola_offset(left, mid, right)
    uv[j, 1] = r + parabola_offset(up, mid, down)


@jit
def _log_value(readout: F32, j: int, height: int, width: int, r: int, c: int) -> float:
    """The clamped log of joint ``j``'s value at ``(r, c)``; NaN outside the map."""
    if r < 0 or r >= height or c < 0 or c >= width:
        return np.nan
    return log_clamped(readout[r * width + c, j])


__all__ = [
    "CANDIDATES",
    "decode",
    "decode_followed",
    "follow",
    "heatmaps",
    "new_candidates",
    "set_readout",
    "update_readout",
]
