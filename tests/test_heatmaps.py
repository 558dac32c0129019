"""Tests of hybridpose.heatmaps.decode_heatmaps, by known answers.

A sampled Gaussian ``exp(-d^2 / (2 sigma^2))`` has an exactly parabolic logarithm, so the
sub-pixel decoder must return its centre (to float32 precision) wherever the centre lies
between pixel centres; integer centres, border peaks, flat and negative maps and the shape
contract are checked separately.
"""

from __future__ import annotations

import itertools

import pytest
import torch
from torch import Tensor

from hybridpose.heatmaps import decode_array, decode_heatmaps


def gaussian(u: float, v: float, sigma: float, height: int, width: int) -> Tensor:
    """``exp(-((x - u)^2 + (y - v)^2) / (2 sigma^2))`` sampled at pixel centres, (H, W) f64."""
    y, x = torch.meshgrid(
        torch.arange(height, dtype=torch.float64),
        torch.arange(width, dtype=torch.float64),
        indexing="ij",
    )
    return torch.exp(-((x - u) ** 2 + (y - v) ** 2) / (2.0 * sigma**2))


# sub-pixel offsets of both signs, up to just short of half a pixel (at exactly 0.5 the
# argmax is a tie, which is fine too but not what this test is about)
OFFSETS = (-0.49, -0.37, -0.2, -0.05, 0.03, 0.25, 0.41, 0.49)


@pytest.mark.parametrize("sigma", [1.0, 1.5, 2.0, 3.0])
def test_subpixel_gaussian_decodes_to_its_centre(sigma: float) -> None:
    height, width = 13, 17
    centres = [(8.0 + du, 6.0 + dv) for du, dv in itertools.product(OFFSETS, OFFSETS[::-1])]
    maps = torch.stack([gaussian(u, v, sigma, height, width) for u, v in centres])
    out = decode_heatmaps(maps)
    assert out.shape == (len(centres), 2)
    assert out.dtype == torch.float32
    expected = torch.tensor(centres, dtype=torch.float32)
    torch.testing.assert_close(out, expected, atol=1e-4, rtol=0.0)


def test_subpixel_gaussian_float32_input_and_far_from_origin() -> None:
    # float32 maps as a network gives them, a centre far from the origin
    hm = gaussian(40.27, 3.62, 2.0, 9, 48).float()[None]
    out = decode_heatmaps(hm)
    torch.testing.assert_close(out, torch.tensor([[40.27, 3.62]]), atol=1e-4, rtol=0.0)


@pytest.mark.parametrize("sigma", [1.0, 2.0, 3.0])
def test_integer_centres_decode_exactly(sigma: float) -> None:
    centres = [(0.0, 0.0), (3.0, 4.0), (10.0, 2.0), (5.0, 7.0), (11.0, 8.0)]
    maps = torch.stack([gaussian(u, v, sigma, 9, 12) for u, v in centres])
    out = decode_heatmaps(maps)
    assert out.tolist() == [list(c) for c in centres]


def test_single_hot_pixel_decodes_to_that_pixel() -> None:
    hm = torch.zeros(1, 5, 6)
    hm[0, 3, 2] = 0.7  # all neighbours at the floor: a symmetric peak
    assert decode_heatmaps(hm).tolist() == [[2.0, 3.0]]


def test_border_peak_is_not_refined_across_the_border() -> None:
    height, width = 8, 10
    # centres just outside each border: the argmax lies on the border row or column and the
    # offset across that border is 0, while the other axis is still refined sub-pixel
    cases = [
        ((-0.3, 4.6), (0.0, 4.6)),  # left column
        ((width - 1 + 0.35, 2.3), (width - 1.0, 2.3)),  # right column
        ((6.2, -0.4), (6.2, 0.0)),  # top row
        ((3.7, height - 1 + 0.2), (3.7, height - 1.0)),  # bottom row
        ((-0.2, -0.45), (0.0, 0.0)),  # corner: neither axis refined
    ]
    maps = torch.stack([gaussian(u, v, 1.5, height, width) for (u, v), _ in cases])
    out = decode_heatmaps(maps)
    expected = torch.tensor([e for _, e in cases], dtype=torch.float32)
    torch.testing.assert_close(out, expected, atol=1e-4, rtol=0.0)
    # the coordinate on the border is exactly the border pixel
    assert out[0, 0].item() == 0.0
    assert out[1, 0].item() == width - 1
    assert out[2, 1].item() == 0.0
    assert out[3, 1].item() == height - 1
    assert out[4].tolist() == [0.0, 0.0]


def test_border_peak_inside_is_still_refined_on_a_one_pixel_wide_map() -> None:
    # a single column: nothing to refine along x, y refined
    hm = gaussian(0.0, 3.3, 1.0, 7, 1)[None]
    out = decode_heatmaps(hm)
    torch.testing.assert_close(out, torch.tensor([[0.0, 3.3]]), atol=1e-4, rtol=0.0)


def _argmax_uv(maps: Tensor) -> Tensor:
    """The integer argmax (first maximum) of each (H, W) map as (column, row)."""
    w = maps.shape[-1]
    index = maps.flatten(-2).argmax(dim=-1)
    return torch.stack([index % w, index // w], dim=-1).float()


def test_flat_negative_and_plateau_maps_stay_finite_near_the_argmax() -> None:
    h, w = 6, 7
    maps = torch.zeros(7, h, w)
    maps[1] = -3.0  # constant negative
    maps[2] = torch.linspace(-5.0, -1.0, h * w).reshape(h, w)  # all negative, max at a corner
    maps[3, 2:5, 1:4] = 1.0  # a 3x3 plateau
    maps[4, 3, 2:6] = 0.5  # a horizontal ridge
    maps[5] = -torch.rand(h, w, generator=torch.Generator().manual_seed(0))  # negative noise
    maps[6] = 1e-9  # below the log floor everywhere
    maps[6, 1, 5] = 2e-9  # the maximum is below the floor too
    out = decode_heatmaps(maps)
    assert torch.isfinite(out).all()
    assert (out - _argmax_uv(maps)).abs().max().item() <= 0.5
    # flat (after the log floor) maps give the argmax itself: no curvature, no refinement
    for i in (0, 1, 2, 6):
        assert out[i].tolist() == _argmax_uv(maps[i]).tolist()
    # the whole plateau lies within the decoded pixel's half-pixel square and its neighbours
    assert 1.0 <= out[3, 0].item() <= 3.0 and 2.0 <= out[3, 1].item() <= 4.0


def test_batch_shapes_and_axis_order() -> None:
    # a non-square map: (u, v) = (column, row); swapped axes would give (2.6, 8.3)
    height, width, sigma = 7, 11, 1.2
    centres = torch.tensor(
        [
            [[8.3, 2.6], [1.2, 5.4], [5.0, 3.0]],
            [[8.6, 0.7], [4.45, 4.55], [1.6, 5.0]],
        ],
        dtype=torch.float64,
    )  # (B, J, 2)
    maps = torch.stack(
        [
            torch.stack([gaussian(float(u), float(v), sigma, height, width) for u, v in batch])
            for batch in centres
        ]
    )  # (B, J, H, W)
    assert maps.shape == (2, 3, height, width)
    out = decode_heatmaps(maps)
    assert out.shape == (2, 3, 2)
    torch.testing.assert_close(out, centres.float(), atol=1e-4, rtol=0.0)
    # more leading dimensions: (T, B, J, H, W) -> (T, B, J, 2), each slice decoded alone
    seq = torch.stack([maps, maps.flip(0), maps])
    out_seq = decode_heatmaps(seq)
    assert out_seq.shape == (3, 2, 3, 2)
    torch.testing.assert_close(out_seq[1], out.flip(0))
    torch.testing.assert_close(out_seq[2], out)
    # one joint without a batch dimension: (J, H, W) -> (J, 2)
    assert decode_heatmaps(maps[0, :1]).shape == (1, 2)
    # no joints: an empty result of the right shape
    assert decode_heatmaps(torch.zeros(4, 0, height, width)).shape == (4, 0, 2)


def test_input_is_not_modified_and_gradients_are_not_needed() -> None:
    hm = gaussian(3.4, 2.2, 1.0, 6, 6).float()[None].requires_grad_(True)
    before = hm.detach().clone()
    out = decode_heatmaps(hm)
    assert not out.requires_grad
    assert torch.equal(hm.detach(), before)


@pytest.mark.parametrize("shape", [(5,), (4, 5), ()])
def test_bad_shapes_raise_value_error(shape: tuple[int, ...]) -> None:
    with pytest.raises(ValueError, match=r"\(\.\.\., J, H, W\)"):
        decode_heatmaps(torch.zeros(shape))


@pytest.mark.parametrize("shape", [(3, 0, 5), (3, 5, 0)])
def test_empty_maps_raise_value_error(shape: tuple[int, ...]) -> None:
    with pytest.raises(ValueError):
        decode_heatmaps(torch.zeros(shape))


def test_a_nan_value_is_the_peak_unrefined_as_numpy_argmax_takes_it() -> None:
    hm = torch.rand(2, 5, 6)
    hm[0, 2, 3] = float("nan")
    hm[0, 4, 5] = float("nan")  # the first NaN in row-major order wins
    out = decode_heatmaps(hm)
    assert out[0].tolist() == [3.0, 2.0]
    assert torch.isfinite(out[1]).all()
    assert decode_array(hm.numpy()).tolist() == out.tolist()
