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
flip the argmax between near-equal pixels in 16 of 7800 streamed coordinates of a test; and
the shipped 1 kHz hybrid's last layer fires at ~23 % of the pixels every step, so the dense
pass (4096 pixels, in cache) costs no more than the bookkeeping it would save.

``r`` is stored pixel-major, (H * W, JP) with JP the joints padded to whole vectors: a
pixel's joints share a cache line and one spike's column is one vector addition. Joint-major,
the J values of one pixel lie ``H * W`` floats apart, all in one set of the L1 cache (4 kB
aliasing): the sparse updates cost 5 ns per value, five times more.

Decoding takes each joint's argmax, the first maximum in row-major order as numpy's (a NaN
is never a maximum here, unlike numpy's), then :mod:`hybridpose.heatmaps`' parabola through
the logs of the peak and its neighbours: the poses of
:func:`~hybridpose.heatmaps.decode_array` on the same heatmaps, which are never copied out.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

from hybridpose._jit import jit
from hybridpose.heatmaps import log_clamped, parabola_offset

F32 = npt.NDArray[np.float32]
I32 = npt.NDArray[np.int32]
I64 = npt.NDArray[np.int64]


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


__all__ = ["decode", "heatmaps", "set_readout", "update_readout"]
