"""Heatmaps to joint coordinates.

:func:`decode_heatmaps` takes the integer argmax of each joint's map and refines it to
sub-pixel precision with a parabola through the peak and its two neighbours, separately along
x and y (PAPER.md: integer argmax decoding costs accuracy; sub-pixel decoding is allowed). For a
sampled Gaussian ``exp(-d^2 / (2 sigma^2))`` the parabola through the *log* of three samples is
exact, so the log of the (clamped) maps is fitted: a Gaussian target centred anywhere between
pixel centres decodes to its centre.
"""

from __future__ import annotations

import torch
from torch import Tensor

_FLOOR = 1e-6
"""Values are clamped to this before the log (network outputs can be 0 or negative)."""


def _offset(left: Tensor, mid: Tensor, right: Tensor) -> Tensor:
    """Vertex of the parabola through ``(-1, left), (0, mid), (1, right)``, in ``[-0.5, 0.5]``."""
    curvature = left - 2.0 * mid + right
    ok = curvature < 0  # a maximum
    safe = torch.where(ok, curvature, torch.ones_like(curvature))
    shift = torch.where(ok, 0.5 * (left - right) / safe, torch.zeros_like(curvature))
    return shift.clamp(-0.5, 0.5)


def decode_heatmaps(heatmaps: Tensor) -> Tensor:
    """Joint coordinates ``(u, v)`` (column, row) in heatmap pixels, sub-pixel.

    The refinement along an axis is skipped (offset 0) where the peak lies on the border of
    the map or the log-values do not curve downwards.

    Shape:
        (..., J, H, W) -> (..., J, 2) float32

    >>> import math
    >>> y, x = torch.meshgrid(torch.arange(8.0), torch.arange(8.0), indexing="ij")
    >>> hm = torch.exp(-((x - 3.3) ** 2 + (y - 4.6) ** 2) / 8.0)[None]
    >>> [round(c, 4) for c in decode_heatmaps(hm)[0].tolist()]
    [3.3, 4.6]
    """
    if heatmaps.dim() < 3 or heatmaps.shape[-1] == 0 or heatmaps.shape[-2] == 0:
        raise ValueError(
            f"heatmaps must be (..., J, H, W) with H, W >= 1, got {tuple(heatmaps.shape)}"
        )
    h, w = heatmaps.shape[-2:]
    flat = heatmaps.detach().float().flatten(-2)
    index = flat.argmax(dim=-1)
    row = torch.div(index, w, rounding_mode="floor")
    col = index - row * w
    logs = flat.clamp_min(_FLOOR).log()

    def at(r: Tensor, c: Tensor) -> Tensor:
        inside = (r >= 0) & (r < h) & (c >= 0) & (c < w)
        idx = (r.clamp(0, h - 1) * w + c.clamp(0, w - 1)).unsqueeze(-1)
        value = logs.gather(-1, idx).squeeze(-1)
        return torch.where(inside, value, torch.full_like(value, float("nan")))

    mid = at(row, col)
    dx = _offset(at(row, col - 1), mid, at(row, col + 1))
    dy = _offset(at(row - 1, col), mid, at(row + 1, col))
    dx = torch.nan_to_num(dx, nan=0.0)
    dy = torch.nan_to_num(dy, nan=0.0)
    return torch.stack([col.float() + dx, row.float() + dy], dim=-1)


__all__ = ["decode_heatmaps"]
