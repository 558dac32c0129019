"""Heatmaps to joint coordinates.

:func:`decode_heatmaps` takes the integer argmax of each joint's map and refines it to
sub-pixel precision with a parabola through the peak and its two neighbours, separately along
x and y (integer argmax decoding, the paper's, costs accuracy; sub-pixel decoding is allowed). For a
sampled Gaussian ``exp(-d^2 / (2 sigma^2))`` the parabola through the *log* of three samples is
exact, so the log of the (clamped) maps is fitted: a Gaussian target centred anywhere between
pixel centres decodes to its centre.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt
import torch
from torch import Tensor

from hybridpose._jit import jit

_FLOOR = 1e-6
"""Values are clamped to this before the log (network outputs can be 0 or negative)."""


FloatArray = npt.NDArray[np.float32]


@jit
def parabola_offset(left: float, mid: float, right: float) -> float:
    """Vertex of the parabola through ``(-1, left), (0, mid), (1, right)``, in ``[-0.5, 0.5]``;
    0 where the values do not curve downwards (or one is NaN)."""
    curvature = left - 2.0 * mid + right
    if not curvature < 0:  # not a maximum (also NaN)
        return 0.0
    return min(0.5, max(-0.5, 0.5 * (left - right) / curvature))


@jit
def log_clamped(value: np.float32) -> float:
    """The log of a heatmap value clamped to :data:`_FLOOR`."""
    return float(np.log(max(value, np.float32(_FLOOR))))


@jit
def _log_at(flat: FloatArray, h: int, w: int, r: int, c: int) -> float:
    """The log of the clamped value at ``(r, c)``; NaN outside the map."""
    if r < 0 or r >= h or c < 0 or c >= w:
        return np.nan
    return log_clamped(flat[r * w + c])


@jit
def _refine(maps: FloatArray, peaks: npt.NDArray[np.intp], h: int, w: int, out: FloatArray) -> None:
    """For each map (a row of ``maps``, (N, H * W)) and its argmax: the parabola through the
    logs of the peak and its neighbours, along x and along y."""
    for i in range(maps.shape[0]):
        flat = maps[i]
        r, c = peaks[i] // w, peaks[i] % w
        mid = _log_at(flat, h, w, r, c)
        dx = parabola_offset(_log_at(flat, h, w, r, c - 1), mid, _log_at(flat, h, w, r, c + 1))
        dy = parabola_offset(_log_at(flat, h, w, r - 1, c), mid, _log_at(flat, h, w, r + 1, c))
        out[i, 0] = c + dx
        out[i, 1] = r + dy


def decode_array(heatmaps: npt.NDArray[np.floating]) -> FloatArray:
    """:func:`decode_heatmaps` on a numpy array.

    numpy's argmax, then one compiled loop over the maps: a stream decodes 13 or 26 maps every
    millisecond, where numpy's or torch's per-operation overhead would cost more than the
    refinement's arithmetic.

    Shape:
        (..., J, H, W) -> (..., J, 2) float32
    """
    arr = np.asarray(heatmaps, dtype=np.float32)
    if arr.ndim < 3 or arr.shape[-1] == 0 or arr.shape[-2] == 0:
        raise ValueError(f"heatmaps must be (..., J, H, W) with H, W >= 1, got {arr.shape}")
    h, w = arr.shape[-2:]
    maps = np.ascontiguousarray(arr.reshape(-1, h * w))
    out = np.empty((len(maps), 2), dtype=np.float32)
    # numpy's argmax is vectorised (the first maximum; the first NaN if any)
    _refine(maps, maps.argmax(axis=1), h, w, out)
    return out.reshape(*arr.shape[:-2], 2)


def decode_heatmaps(heatmaps: Tensor) -> Tensor:
    """Joint coordinates ``(u, v)`` (column, row) in heatmap pixels, sub-pixel.

    The refinement along an axis is skipped (offset 0) where the peak lies on the border of
    the map or the log-values do not curve downwards. Computed on the CPU by
    :func:`decode_array`; the result is on the input's device.

    Shape:
        (..., J, H, W) -> (..., J, 2) float32

    >>> import math
    >>> y, x = torch.meshgrid(torch.arange(8.0), torch.arange(8.0), indexing="ij")
    >>> hm = torch.exp(-((x - 3.3) ** 2 + (y - 4.6) ** 2) / 8.0)[None]
    >>> [round(c, 4) for c in decode_heatmaps(hm)[0].tolist()]
    [3.3, 4.6]
    """
    arr = heatmaps.detach().to("cpu", torch.float32).numpy()
    return torch.from_numpy(decode_array(arr)).to(heatmaps.device)


def argmax_heatmaps(heatmaps: Tensor) -> Tensor:
    """Joint coordinates ``(u, v)`` (column, row) in heatmap pixels: the integer argmax of each
    map (the first maximum in row-major order), as the paper's evaluation decodes them.

    Shape:
        (..., J, H, W) -> (..., J, 2) float32

    >>> hm = torch.zeros(1, 3, 4)
    >>> hm[0, 2, 1] = 1.0
    >>> argmax_heatmaps(hm)[0].tolist()
    [1.0, 2.0]
    """
    if heatmaps.dim() < 3 or heatmaps.shape[-1] == 0 or heatmaps.shape[-2] == 0:
        raise ValueError(f"heatmaps must be (..., J, H, W) with H, W >= 1, got {heatmaps.shape}")
    w = heatmaps.shape[-1]
    flat = heatmaps.detach().flatten(-2).argmax(dim=-1)
    return torch.stack([flat % w, flat // w], dim=-1).to(torch.float32)


__all__ = [
    "argmax_heatmaps",
    "decode_array",
    "decode_heatmaps",
    "log_clamped",
    "parabola_offset",
]
