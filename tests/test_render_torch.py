"""The torch renderer (hybridpose.synth.render_torch) against the numba kernel it mirrors."""

from __future__ import annotations

import numpy as np
import pytest

from hybridpose.geometry import Camera
from hybridpose.synth.body import BodyPart, Capsules, body_capsules
from hybridpose.synth.generate import (
    SimulationConfig,
    make_performance,
    make_subject,
    make_views,
)
from hybridpose.synth.render import View, make_view, render, render_tiles
from hybridpose.synth.render_kernels import MAX_LAYERS
from hybridpose.synth.render_torch import device_view, render_on_device
from hybridpose.synth.scene import Clothing, Lighting
from hybridpose.synth.skeleton import SynthError


def _whole(size: tuple[int, int], k: int) -> np.ndarray:
    return np.tile(np.array([0, 0], np.int64), (k, 1))


@pytest.mark.parametrize("appearance", ["plain", "clothed"])
def test_every_camera_renders_what_the_numba_kernel_renders(appearance: str) -> None:
    config = SimulationConfig(sensor_size=(87, 65), appearance=appearance)  # type: ignore[arg-type]
    subject = make_subject(config, 13)
    performance = make_performance(config, subject, 16)
    instants = np.linspace(0.5, 3.5, 6)
    frames = performance.frames(instants)
    capsules = body_capsules(subject.body, frames)
    for view in make_views(config):
        box = (0, 87, 0, 65)
        expected = render(view, capsules, frames.forward, subject.clothing, config.lighting, box)
        got = render_on_device(
            device_view(view, "cpu"), capsules, frames.forward, subject.clothing,
            config.lighting, _whole((87, 65), 6), (65, 87),
        ).numpy()  # fmt: skip
        assert (expected != view.background).sum() > 1000  # the body is in the image
        assert np.abs(got - expected).max() <= 1e-6


def test_full_resolution_and_small_batches_render_the_same() -> None:
    config = SimulationConfig()  # 346x260, clothed
    subject = make_subject(config, 1)
    frames = make_performance(config, subject, 5).frames(np.array([1.2, 2.0]))
    capsules = body_capsules(subject.body, frames)
    view = make_views(config)[3]
    box = (100, 300, 20, 250)
    expected = render(view, capsules, frames.forward, subject.clothing, config.lighting, box)
    scene = device_view(view, "cpu")
    origins = np.tile(np.array([100, 20], np.int64), (2, 1))
    args = (scene, capsules, frames.forward, subject.clothing, config.lighting, origins, (230, 200))
    whole = render_on_device(*args).numpy()
    one_frame_per_batch = render_on_device(*args, max_elements=1).numpy()
    assert (expected != view.background[20:250, 100:300]).sum() > 5000  # the body is there
    assert np.abs(whole - expected).max() <= 1e-6
    np.testing.assert_array_equal(one_frame_per_batch, whole)


def test_tiles_past_the_edges_are_the_numba_tiles() -> None:
    config = SimulationConfig(sensor_size=(87, 65))
    subject = make_subject(config, 2)
    performance = make_performance(config, subject, 16)
    view = make_views(config)[1]
    rng = np.random.default_rng(3)
    n, size = 30, 8
    frames = performance.frames(rng.uniform(0.5, 3.0, n))
    capsules = body_capsules(subject.body, frames)
    origins = np.stack([rng.integers(20, 87, n), rng.integers(0, 65, n)], axis=1)
    origins[:3] = [[84, 10], [40, 62], [86, 64]]  # past the right, the bottom, both
    expected = render_tiles(
        view, capsules, frames.forward, subject.clothing, config.lighting, origins, size
    )
    got = render_on_device(
        device_view(view, "cpu"), capsules, frames.forward, subject.clothing, config.lighting,
        origins, (size, size),
    ).numpy()  # fmt: skip
    assert np.abs(got - expected).max() <= 1e-6
    assert (got[2, 1:] == 0).all() and (got[2, :, 1:] == 0).all()  # one pixel on the sensor


F = 200.0
W, H = 60, 40


def _view(bg: float) -> View:
    K = np.array([[F, 0, (W - 1) / 2], [0, F, (H - 1) / 2], [0, 0, 1.0]])
    R = np.array([[1.0, 0, 0], [0, 0, -1], [0, 1, 0]])  # looking along +y
    camera = Camera.from_KRt(K, R, -R @ np.array([0.0, -3000.0, 0.0]))
    return make_view(camera, np.full((H, W), bg, np.float32))


def _spheres(ys: list[float], radius: float) -> Capsules:
    c = len(ys)
    centres = np.array([[0.0, y, 0.0] for y in ys]).reshape(1, c, 3)
    return Capsules(
        centres, centres.copy(), np.full(c, radius), np.full(c, int(BodyPart.TORSO)),
        np.zeros(c, np.int64),
    )  # fmt: skip


def _plain(albedo: list[float]) -> Clothing:
    a = np.asarray(albedo)
    return Clothing(a, np.zeros_like(a), np.full_like(a, 100.0), np.zeros_like(a), np.zeros_like(a))


FLAT = Lighting(direction=(0.0, 0.0, 1.0), ambient=1.0)  # intensity = albedo everywhere


def test_a_flat_lit_sphere_shows_its_albedo_over_the_background() -> None:
    # known answer: under ambient light alone a fully covered pixel is the albedo, a pixel
    # the sphere does not reach the background; the image centre (pixel (19.5, 29.5) falls
    # between four pixels) is covered by a sphere of radius 150 mm at 3 m (10 px)
    view = _view(0.25)
    image = render_on_device(
        device_view(view, "cpu"), _spheres([0.0], 150.0), np.array([[0.0, 1.0, 0.0]]),
        _plain([0.6]), FLAT, np.array([[0, 0]]), (H, W),
    ).numpy()[0]  # fmt: skip
    assert image[20, 30] == pytest.approx(0.6, abs=1e-6)
    assert image[0, 0] == pytest.approx(0.25)
    assert image[20, 30 + 13] == pytest.approx(0.25)  # 13 px from the centre: outside


def test_more_surfaces_than_layers_keep_the_nearest() -> None:
    # MAX_LAYERS + 4 spheres on the optical axis: only the nearest layers count, as in numba
    c = MAX_LAYERS + 4
    capsules = _spheres([-40.0 * i for i in range(c)], 120.0)
    look = _plain(list(np.linspace(0.2, 0.9, c)))
    light = Lighting()
    view = _view(0.1)
    expected = render(view, capsules, np.array([[0.0, 1.0, 0.0]]), look, light, (0, W, 0, H))
    got = render_on_device(
        device_view(view, "cpu"), capsules, np.array([[0.0, 1.0, 0.0]]), look, light,
        np.array([[0, 0]]), (H, W),
    ).numpy()  # fmt: skip
    assert np.abs(got - expected).max() <= 1e-6
    assert np.abs(got - 0.1).max() > 0.1  # the spheres are drawn


def test_bad_origins_and_textures_are_refused() -> None:
    view = _view(0.1)
    scene = device_view(view, "cpu")
    forward = np.array([[0.0, 1.0, 0.0]])
    with pytest.raises(SynthError, match="render_on_device: need 1 origins inside the 60x40"):
        render_on_device(
            scene, _spheres([0.0], 50.0), forward, _plain([0.5]), FLAT, np.array([[60, 0]]), (4, 4)
        )
    config = SimulationConfig(sensor_size=(87, 65))
    clothed = make_subject(config, 1).clothing  # textured: needs the capsules' frames
    with pytest.raises(SynthError, match="capsule frames"):
        render_on_device(scene, _spheres([0.0], 50.0), forward, clothed, FLAT, [[0, 0]], (4, 4))
