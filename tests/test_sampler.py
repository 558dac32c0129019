"""The per-tile adaptive sampler (hybridpose.synth.sampler) on analytic images: the bound per
pixel, refinement only where the image moves, and the whole-frame sampler's instants when the
box is one tile."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import numpy.typing as npt
import pytest

from hybridpose.synth import generate
from hybridpose.synth import sampler as sampler_module
from hybridpose.synth.sampler import needed_instants, sample_tiles, tile_origins, tile_sampling

BOUND, MIN_GAP = 0.05, 20.0
TILE = 16  # the tests' tile side (the sampler's default is smaller)
BOX = (3, 53, 2, 37)  # 50 x 35 pixels: 4 x 3 tiles, the last column and row partial


def edge_image(t_us: float, origin: tuple[int, int], size: int = TILE) -> npt.NDArray[np.float32]:
    """Log intensity of a soft vertical edge at x = 10 + 0.01 t (us) in rows 2-17 only (the
    rest of the image is still), seen through a ``size`` tile at ``origin``."""
    x0, y0 = origin
    y, x = np.mgrid[y0 : y0 + size, x0 : x0 + size].astype(np.float64)
    edge = 10.0 + 0.01 * t_us
    image = np.where(y < 18, 0.1 * np.clip(x - edge + 0.5, 0.0, 1.0), 0.2 + 0.01 * x)
    return np.asarray(image, dtype=np.float32)


def render(
    times: npt.NDArray[np.float64],
    origins: npt.NDArray[np.int64],
    wanted: npt.NDArray[np.bool_] | None = None,
) -> npt.NDArray[np.float32]:
    """The tiles' true images; where ``wanted`` leaves a pixel out, NaN (the sampler must
    not use it)."""
    images = np.stack(
        [edge_image(t, (int(x), int(y))) for t, (x, y) in zip(times, origins, strict=True)]
    )
    return images if wanted is None else np.where(wanted, images, np.float32(np.nan))


def assert_rendered_or_between(
    logs: npt.NDArray[np.float64],
    times: npt.NDArray[np.float64],
    used: npt.NDArray[np.bool_],
    truth: npt.NDArray[np.float32],
    first: npt.NDArray[np.float32],
) -> int:
    """Each pixel's ``used`` samples are its true values, the others lie on the straight line
    (in time) between its used samples before and after (``first`` at t = 0 counts as one);
    returns how many samples are used."""
    assert used.dtype == np.bool_ and used.shape == logs.shape
    np.testing.assert_array_equal(logs[used], truth[used])
    values = np.concatenate([first[None].astype(np.float64), logs])
    t = np.concatenate([[0.0], times])
    known_at = np.concatenate([np.ones((1, *first.shape), bool), used])
    assert used[-1].all()  # the last instant is rendered everywhere (a coarse one)
    for i, j in np.ndindex(first.shape):
        known = np.nonzero(known_at[:, i, j])[0]
        line = np.interp(t, t[known], values[known, i, j])
        np.testing.assert_allclose(values[:, i, j], line, rtol=0, atol=1e-12)
    return int(used.sum())


def box_image(t_us: float) -> npt.NDArray[np.float32]:
    x0, x1, y0, y1 = BOX
    return edge_image(t_us, (x0, y0), size=max(x1 - x0, y1 - y0))[: y1 - y0, : x1 - x0]


def test_tiles_cover_the_box() -> None:
    origins, sizes = tile_origins(BOX, TILE)
    assert len(origins) == 4 * 3
    assert origins[:5].tolist() == [[3, 2], [19, 2], [35, 2], [51, 2], [3, 18]]
    assert sizes[:4].tolist() == [[16, 16], [16, 16], [16, 16], [2, 16]]
    assert sizes[-1].tolist() == [2, 3]  # the bottom-right corner: 50 - 48, 35 - 32
    assert int((sizes[:, 0] * sizes[:, 1]).sum()) == 50 * 35


def test_every_pixel_keeps_the_bound_and_only_the_moving_tiles_are_refined() -> None:
    coarse = np.arange(1000.0, 4001.0, 1000.0)  # the edge crosses 30 px in 3 ms
    rounds = tile_sampling(box_image(0.0), 0.0, coarse, BOX, BOUND, MIN_GAP, TILE)
    samples = sample_tiles(render, rounds)
    origins, sizes = tile_origins(BOX, TILE)
    assert len(samples.regions) == len(origins)
    counts, rendered = [], 0
    for ((x, y), logs, times, used), (w, h) in zip(samples.regions, sizes, strict=True):
        assert logs.shape == (len(times), h, w) and times[-1] == coarse[-1]
        assert np.all(np.diff(times) > 0) and times[0] > 0.0
        # the samples are the images at their instants where rendered, the line between
        # rendered ones elsewhere; the bound holds between consecutive samples
        truth = np.stack([edge_image(t, (x, y))[:h, :w] for t in times])
        first = box_image(0.0)[y - BOX[2] : y - BOX[2] + h, x - BOX[0] : x - BOX[0] + w]
        rendered += assert_rendered_or_between(logs, times, used, truth, first)
        steps = np.abs(np.diff(np.concatenate([first[None], logs]), axis=0)).max(axis=(1, 2))
        assert (steps <= BOUND).all()
        counts.append(len(times))
    # rows 2-17 hold the edge, which passes x = 10..40: the tiles it crosses are refined,
    # the rest keep the four coarse instants
    assert counts[4:] == [4] * 8 and counts[3] == 4  # still rows; the column past x = 50
    assert min(counts[:3]) > 5 * len(coarse)
    assert samples.renders == sum(counts) and samples.unresolved == 0
    assert 0 < samples.largest_step <= BOUND
    # the refinement renders only the pixels near the edge: a small share of the samples
    assert rendered == samples.pixel_renders
    in_box = sum(len(times) * logs[0].size for _, logs, times, _ in samples.regions)
    assert samples.pixel_renders < 0.5 * in_box  # whole tiles: all of in_box


def test_one_tile_box_samples_the_instants_of_the_whole_frame_sampler() -> None:
    # the box is a single tile: both samplers halve the same intervals
    box = (14, 14 + TILE, 2, 2 + TILE)
    coarse = np.arange(500.0, 2501.0, 500.0)

    def log_frames(
        times: npt.NDArray[np.float64], b: tuple[int, int, int, int]
    ) -> npt.NDArray[np.float32]:
        return np.stack([edge_image(t, (b[0], b[2])) for t in times])

    renderer = SimpleNamespace(
        log_frames=log_frames, config=SimpleNamespace(min_step_us=MIN_GAP / 2)
    )
    previous = edge_image(0.0, (14, 2))
    logs, times, steps = generate._refine(renderer, previous, 0.0, coarse, box, BOUND)  # type: ignore[arg-type]
    samples = sample_tiles(render, tile_sampling(previous, 0.0, coarse, box, BOUND, MIN_GAP, TILE))
    ((origin, tile_logs, tile_times, used),) = samples.regions
    assert origin == (14, 2) and len(times) > 3 * len(coarse)
    np.testing.assert_array_equal(tile_times, times)
    assert_rendered_or_between(tile_logs, tile_times, used, logs, previous)
    assert samples.largest_step <= float(steps.max())


def test_a_tile_takes_an_instant_once_the_capsules_near_it_moved_a_pixel() -> None:
    # two tiles of 8 px at x = 0 and x = 8; one capsule whose box stays over the first tile,
    # moving 0.4 px per interval; a second, far away, moving 5 px per interval
    origins = np.array([[0, 0], [8, 0]], dtype=np.int64)
    near_first = [1, 6, 1, 6]
    far = [40, 50, 40, 50]
    boxes = np.array([[near_first, far]] * 6, dtype=np.int64)  # (K + 1 = 6, C = 2, 4)
    motion = np.array([[0.4, 5.0]] * 5)
    needed = needed_instants(boxes, motion, origins, tile=8, quiet_px=1.0)
    # the first tile: 0.4, 0.8, 1.2 -> sample at the third instant, then 0.4, 0.8 and the last
    assert needed.tolist() == [[False, False, True, False, True], [False] * 4 + [True]]
    # a capsule sweeping across the second tile within one interval (its box left of the tile
    # before, right of it after) is near it over that interval
    boxes[2, 1] = [0, 4, 1, 6]
    boxes[3, 1] = [20, 24, 1, 6]
    needed = needed_instants(boxes, motion, origins, tile=8, quiet_px=1.0)
    assert needed[1].tolist() == [False, True, True, False, True]


def test_a_round_marks_the_pixels_above_the_bound_and_their_neighbours_inside() -> None:
    # two intervals of a 4x4 tile whose last column lies outside the box; by hand: the first
    # steps 0.3 at (0, 0) and 0.2 at (2, 1) (bound 0.1) and is split, the second steps 0.05
    values = np.zeros((4, 4, 4))
    values[1, 0, 0], values[1, 2, 1] = 0.3, -0.2
    values[1, :, 3] = 5.0  # outside the box: not measured
    values[3] = 0.05
    inside = np.ones((1, 4, 4), bool)
    inside[0, :, 3] = False
    left, right = np.array([0, 2]), np.array([1, 3])
    step, split = np.empty(2), np.empty(2, bool)
    wanted, between = np.empty((2, 4, 4), bool), np.empty((2, 4, 4))
    n = sampler_module._measure_round(
        values, np.array([0.0, 100.0, 0.0, 100.0]), np.zeros(4, np.int64), inside, left, right,
        0.1, 20.0, step, split, wanted, between,
    )  # fmt: skip
    assert n == 1 and split.tolist() == [True, False]
    assert step.tolist() == [0.3, 0.05]
    expected = np.zeros((4, 4), bool)
    expected[0, 0] = expected[1, 0] = expected[0, 1] = True  # (0, 0) and its neighbours
    expected[2, 1] = expected[1, 1] = expected[3, 1] = expected[2, 0] = expected[2, 2] = True
    np.testing.assert_array_equal(wanted[0], expected)
    np.testing.assert_array_equal(between[0], 0.5 * (values[0] + values[1]))


@pytest.mark.parametrize("room", [sampler_module._PixelGaps.ROOM, 1])
def test_a_pixel_rendered_between_its_interpolated_samples_keeps_the_bound(
    room: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    # one 16 px tile, row 8: q (column 6) ramps by 1.0 over the millisecond, so every interval
    # is halved and its neighbour s (column 5) rendered at the midpoints; s rises and falls
    # within (600, 1000) us, unseen at 0, 500 and 1000, so its own neighbour p (column 4) is
    # rendered first near 625 us, between samples interpolated for it (0 at 500 us, where p
    # truly holds 0.1 of its rise and fall within (450, 650) us; every slope keeps the bound
    # over the finest step). The steps between the
    # samples p takes must still keep the bound: p is also rendered back towards its rise
    box = (0, TILE, 0, TILE)

    def image(t: float) -> npt.NDArray[np.float32]:
        out = np.zeros((TILE, TILE), np.float32)
        out[8, 6] = 0.001 * t
        out[8, 5] = 0.2 * np.clip(min((t - 600.0) / 100.0, (1000.0 - t) / 300.0), 0.0, 1.0)
        out[8, 4] = 0.2 * np.clip(1.0 - abs(t - 550.0) / 100.0, 0.0, 1.0)
        return out

    def tiles(
        times: npt.NDArray[np.float64],
        origins: npt.NDArray[np.int64],
        wanted: npt.NDArray[np.bool_] | None = None,
    ) -> npt.NDArray[np.float32]:
        images = np.stack([image(t) for t in times])
        return images if wanted is None else np.where(wanted, images, np.float32(np.nan))

    monkeypatch.setattr(sampler_module._PixelGaps, "ROOM", room)  # 1: every walk is walked again
    rounds = tile_sampling(image(0.0), 0.0, np.array([1000.0]), box, BOUND, MIN_GAP, TILE)
    samples = sample_tiles(tiles, rounds)
    ((_, logs, times, used),) = samples.regions
    truth = np.stack([image(t) for t in times])
    assert_rendered_or_between(logs, times, used, truth, image(0.0))
    assert samples.unresolved == 0 and samples.largest_step <= BOUND
    p_times = np.concatenate([[0.0], times[used[:, 8, 4]]])
    p_values = np.concatenate([[0.0], logs[used[:, 8, 4], 8, 4]])
    assert np.abs(np.diff(p_values)).max() <= BOUND
    # the rise from 450 us was found: p was rendered there, where no neighbour of it moves
    assert ((p_times > 450.0) & (p_times < 500.0)).sum() >= 3
