"""The capsule renderer and the camera rig, against closed-form answers."""

from __future__ import annotations

import numpy as np
import numpy.typing as npt
import pytest

from hybridpose.geometry import Camera, project
from hybridpose.synth.body import BodyPart, Capsules
from hybridpose.synth.render import (
    View,
    _ray_capsule,
    capsule_boxes,
    make_view,
    render,
    union_box,
)
from hybridpose.synth.scene import (
    SENSOR_SIZE,
    Clothing,
    Lighting,
    background,
    rig_cameras,
    sample_clothing,
)

FLAT = Lighting(direction=(0.0, 0.0, 1.0), ambient=1.0)  # intensity = albedo everywhere
F = 200.0
W, H = 120, 90


def _camera_on_y_axis(distance: float = 3000.0) -> Camera:
    """A camera at (0, -distance, 0) looking along +y, pixel centres at integers."""
    K = np.array([[F, 0, (W - 1) / 2], [0, F, (H - 1) / 2], [0, 0, 1.0]])
    R = np.array([[1.0, 0, 0], [0, 0, -1], [0, 1, 0]])  # image right = +x, down = -z
    centre = np.array([0.0, -distance, 0.0])
    return Camera.from_KRt(K, R, -R @ centre)


def _view(bg: float = 0.0) -> View:
    return make_view(_camera_on_y_axis(), np.full((H, W), bg, np.float32))


def _capsules(a: npt.ArrayLike, b: npt.ArrayLike, radius: npt.ArrayLike) -> Capsules:
    a = np.asarray(a, dtype=np.float64).reshape(1, -1, 3)
    b = np.asarray(b, dtype=np.float64).reshape(1, -1, 3)
    r = np.asarray(radius, dtype=np.float64).reshape(-1)
    c = len(r)
    return Capsules(a, b, r, np.full(c, int(BodyPart.TORSO)), np.zeros(c, np.int64))


def _plain(albedo: npt.ArrayLike) -> Clothing:
    albedo = np.asarray(albedo, dtype=np.float64)
    zeros = np.zeros_like(albedo)
    return Clothing(albedo, zeros, np.full_like(albedo, 100.0), zeros, zeros)


def _full(view: View, caps: Capsules, clothing: Clothing, light: Lighting = FLAT) -> np.ndarray:
    forward = np.tile([0.0, -1.0, 0.0], (caps.a.shape[0], 1))
    return render(view, caps, forward, clothing, light, (0, W, 0, H))


def test_sphere_coverage_equals_its_projected_disc() -> None:
    # on the optical axis, a sphere of radius r at distance D images as a disc of radius
    # f r / sqrt(D^2 - r^2); with albedo 1 on a black background the image is the coverage
    D, r = 3000.0, 300.0
    image = _full(_view(), _capsules([0, 0, 0], [0, 0, 0], [r]), _plain([1.0]))[0]
    R = F * r / np.sqrt(D * D - r * r)
    assert image.sum() == pytest.approx(np.pi * R * R, rel=0.01)
    centre = ((W - 1) / 2, (H - 1) / 2)
    v, u = np.mgrid[0:H, 0:W]
    dist = np.hypot(u - centre[0], v - centre[1])
    assert np.all(image[dist < R - 1] == pytest.approx(1.0))
    assert np.all(image[dist > R + 1] == 0.0)


def test_cylinder_width_and_length() -> None:
    # a horizontal capsule across the view: its image is a band 2 f r / D tall, and its
    # coverage summed over a column is that height
    D, r = 3000.0, 60.0
    caps = _capsules([-150, 0, 0], [150, 0, 0], [r])
    image = _full(_view(), caps, _plain([1.0]))[0]
    column = image[:, W // 2].sum()
    assert column == pytest.approx(2 * F * r / np.sqrt(D * D - r * r), rel=0.01)
    # the rounded ends reach f (150 + r) / D pixels from the centre on both sides
    row = image[round((H - 1) / 2)]
    half_length = F * (150 + r) / D
    assert row.sum() == pytest.approx(2 * half_length, abs=0.6)


def test_lambertian_shading_at_the_sphere_centre() -> None:
    # the light comes from the camera: the surface facing it gets the full diffuse term
    light = Lighting(direction=(0.0, -1.0, 0.0), ambient=0.3)
    image = _full(_view(), _capsules([0, 0, 0], [0, 0, 0], [300.0]), _plain([0.8]), light)[0]
    centre = image[H // 2 - 1 : H // 2 + 1, W // 2 - 1 : W // 2 + 1]
    # the four central pixels look 0.5 px off-axis: cos of a tiny angle, ~1
    assert centre == pytest.approx(0.8, rel=1e-3)
    # a light from behind leaves only the ambient part
    back = Lighting(direction=(0.0, 1.0, 0.0), ambient=0.3)
    image = _full(_view(), _capsules([0, 0, 0], [0, 0, 0], [300.0]), _plain([0.8]), back)[0]
    assert image[H // 2, W // 2] == pytest.approx(0.8 * 0.3, rel=1e-6)


def test_nearer_capsule_occludes_the_farther_whatever_their_order() -> None:
    for order in (1, -1):
        a = [[0, -500, 0], [0, 500, 0]][::order]  # near sphere (y=-500) and far one (y=+500)
        albedo = [0.9, 0.2][::order]
        image = _full(_view(), _capsules(a, a, [200.0, 200.0]), _plain(albedo))[0]
        assert image[H // 2, W // 2] == pytest.approx(0.9)


def test_soft_edges_composite_with_what_lies_behind() -> None:
    # a thin rod in front of a large bright sphere: at the rod's edge pixels, the colour is a
    # blend of the rod and the sphere, never of the rod and the background
    caps = _capsules([[-500, -500, 0], [0, 500, 0]], [[500, -500, 0], [0, 500, 0]], [20.0, 600])
    image = _full(_view(bg=0.0), caps, _plain([0.2, 1.0]))[0]
    column = image[30:60, W // 2]  # rows inside the sphere's disc; the rod is at row 44.5
    # the rod (radius 1.6 px at its depth) fully covers the two rows next to its axis
    assert column[14] == pytest.approx(0.2) and column[15] == pytest.approx(0.2)
    edge = column[(column > 0.2 + 1e-6) & (column < 1.0 - 1e-6)]
    assert len(edge) >= 2  # partly covered rows blend rod and sphere: a blend with the black
    assert column.min() == pytest.approx(0.2)  # background would fall below the rod's 0.2


def test_ray_capsule_matches_ray_marching() -> None:
    # the exact intersection against a brute-force march along the ray
    rng = np.random.default_rng(1)
    o = np.zeros(3)

    def segment_distance(p: np.ndarray, a: np.ndarray, b: np.ndarray) -> np.ndarray:
        ba = b - a
        u = np.clip(((p - a) @ ba) / max(ba @ ba, 1e-12), 0.0, 1.0)
        return np.asarray(np.linalg.norm(p - (a + u[:, None] * ba), axis=1))

    hits = 0
    for _ in range(200):
        a = np.array([0.0, 1000.0, 0.0]) + rng.normal(0, 100, 3)
        b = a + rng.normal(0, 150, 3) * (rng.random() < 0.9)
        r = rng.uniform(20, 120)
        d = np.array([0.0, 1.0, 0.0]) + rng.normal(0, 0.05, 3)
        d /= np.linalg.norm(d)
        s, dist, nx, ny, nz, _ = _ray_capsule(o, d, a, b, r)
        steps = np.linspace(0, 2000, 40_001)  # 0.05 mm apart
        inside = segment_distance(steps[:, None] * d, a, b) <= r
        if inside.any():
            hits += 1
            assert dist <= r + 1e-9
            assert s == pytest.approx(steps[np.argmax(inside)], abs=0.06)
            p = s * d
            n = np.array([nx, ny, nz])
            assert np.linalg.norm(n) == pytest.approx(1.0)
            # the normal points from the axis to the surface point, which is r away
            assert segment_distance(p[None], a, b)[0] == pytest.approx(r, abs=1e-6)
            assert segment_distance((p + 1.0 * n)[None], a, b)[0] == pytest.approx(r + 1, abs=1e-3)
        else:
            assert dist > r
            closest = segment_distance(steps[:, None] * d, a, b).min()
            assert dist == pytest.approx(closest, abs=1e-2)
    assert hits > 50


def test_capsule_boxes_contain_every_covered_pixel() -> None:
    rng = np.random.default_rng(2)
    view = _view()
    for _ in range(20):
        a = rng.normal(0, 300, 3)
        b = a + rng.normal(0, 300, 3)
        caps = _capsules(a, b, [rng.uniform(30, 150)])
        image = _full(view, caps, _plain([1.0]))[0]
        x0, x1, y0, y1 = capsule_boxes(view, caps, margin=1)[0, 0]
        covered = np.argwhere(image > 0)
        assert len(covered) > 0
        assert covered[:, 0].min() >= y0 and covered[:, 0].max() < y1
        assert covered[:, 1].min() >= x0 and covered[:, 1].max() < x1


def test_render_outside_the_box_is_background_and_box_union() -> None:
    view = _view(bg=0.25)
    caps = _capsules([0, 0, 0], [0, 0, 0], [300.0])
    boxes = capsule_boxes(view, caps)
    box = union_box(boxes)
    part = render(view, caps, np.array([[0.0, -1, 0]]), _plain([1.0]), FLAT, box, boxes)
    full = _full(view, caps, _plain([1.0]))
    assert np.array_equal(part[0], full[0, box[2] : box[3], box[0] : box[1]])
    outside = np.ones((H, W), bool)
    outside[box[2] : box[3], box[0] : box[1]] = False
    assert np.all(full[0][outside] == np.float32(0.25))
    assert union_box(np.zeros((2, 3, 4), np.int64)) == (0, 0, 0, 0)
    assert union_box(np.array([[1, 5, 2, 6], [3, 9, 0, 4]])) == (1, 9, 0, 6)


def test_intensity_changes_continuously_with_motion() -> None:
    # soft edges: moving a sphere by a tenth of a pixel changes no pixel by much more than a
    # tenth of the contrast (hard edges would jump by the whole contrast)
    view = _view()
    shift_mm = 0.1 * 3000.0 / F  # a tenth of a pixel at the sphere's distance
    a = np.array([[[x, 0.0, 0.0]] for x in (0.0, shift_mm)])
    caps = Capsules(a, a, np.array([300.0]), np.array([0]), np.array([0]))
    images = render(view, caps, np.tile([0.0, -1, 0], (2, 1)), _plain([1.0]), FLAT, (0, W, 0, H))
    assert np.abs(np.diff(images, axis=0)).max() <= 0.1 * 1.05


def test_rig_cameras_look_at_the_subject() -> None:
    cams = rig_cameras()
    for cam in cams:
        uv = project(cam.P, np.array([0.0, 0.0, 950.0]))
        assert uv == pytest.approx([(SENSOR_SIZE[0] - 1) / 2, (SENSOR_SIZE[1] - 1) / 2])
        assert not cam.mirrored
        # a 1.8 m tall standing person fits in the image
        head, feet = project(cam.P, np.array([[0.0, 0, 1800], [0.0, 0, 0]]))
        assert 0 < head[1] < feet[1] < SENSOR_SIZE[1]
    # cameras 2 and 3 are the front pair (the subject faces +y), 0 and 1 are behind the sides
    assert cams[2].center[1] > 0 and cams[3].center[1] > 0
    assert cams[0].center[1] < 0 and cams[1].center[1] < 0
    # the subject's right (+x) appears on the image's left in a front camera
    right, left = project(cams[2].P, np.array([[300.0, 0, 950], [-300.0, 0, 950]]))
    assert right[0] < left[0]


def test_rig_at_reduced_resolution_scales_about_pixel_corners() -> None:
    full = rig_cameras()
    small = rig_cameras((87, 65))
    X = np.random.default_rng(3).normal([0, 0, 900], [400, 400, 500], (50, 3))
    for a, b in zip(full, small, strict=True):
        uv, uv_small = project(a.P, X), project(b.P, X)
        assert uv_small[:, 0] == pytest.approx((uv[:, 0] + 0.5) * 87 / 346 - 0.5)
        assert uv_small[:, 1] == pytest.approx((uv[:, 1] + 0.5) * 65 / 260 - 0.5)


def test_background_and_clothing_are_deterministic_and_in_range() -> None:
    a = background((87, 65), np.random.default_rng(5))
    b = background((87, 65), np.random.default_rng(5))
    assert np.array_equal(a, b) and a.shape == (65, 87) and a.dtype == np.float32
    assert a.min() >= 0.12 - 1e-6 and a.max() <= 0.55 + 1e-6 and a.std() > 0.05
    parts = np.array([int(p) for p in BodyPart])
    c = sample_clothing(parts, np.random.default_rng(6))
    assert c.albedo.shape == (len(parts),) and np.all((c.albedo > 0) & (c.albedo < 1))
    # skin parts share one albedo; torso and pelvis carry the top's and the trousers' colours
    head, hand = parts == BodyPart.HEAD, parts == BodyPart.HAND
    assert c.albedo[head] == c.albedo[hand]
    assert np.all(c.stripe_amplitude[head] == 0)
