"""The capsule renderer and the camera rig, against closed-form answers."""

from __future__ import annotations

import numpy as np
import numpy.typing as npt
import pytest

from hybridpose.geometry import Camera, project
from hybridpose.synth.appearance import Appearance, sample_person
from hybridpose.synth.body import CAPSULE_NAMES, CAPSULE_PARTS, BodyPart, Capsules, body_capsules
from hybridpose.synth.generate import (
    SimulationConfig,
    SimulationError,
    make_performance,
    make_subject,
)
from hybridpose.synth.render import View, capsule_boxes, make_view, render, render_tiles, union_box
from hybridpose.synth.render_kernels import (
    PIXEL_BLUR,
    STRIPE_BLUR,
    fast_sin,
    lowpass,
    ray_capsule,
    surface_albedo,
)
from hybridpose.synth.scene import (
    SENSOR_SIZE,
    Clothing,
    Lighting,
    background,
    rig_cameras,
    sample_clothing,
)
from hybridpose.synth.skeleton import (
    SkeletonFrames,
    SynthError,
    forward_kinematics,
    rest_pose,
    sample_body,
)
from hybridpose.synth.texture import Line, Surface, Wave, pack_surfaces

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


def _capsules(
    a: npt.ArrayLike,
    b: npt.ArrayLike,
    radius: npt.ArrayLike,
    frame: npt.ArrayLike | None = None,
) -> Capsules:
    a = np.asarray(a, dtype=np.float64).reshape(1, -1, 3)
    b = np.asarray(b, dtype=np.float64).reshape(1, -1, 3)
    r = np.asarray(radius, dtype=np.float64).reshape(-1)
    c = len(r)
    if frame is not None:
        frame = np.broadcast_to(np.asarray(frame, dtype=np.float64), (1, c, 3, 3))
    return Capsules(a, b, r, np.full(c, int(BodyPart.TORSO)), np.zeros(c, np.int64), frame)


def _plain(albedo: npt.ArrayLike) -> Clothing:
    albedo = np.asarray(albedo, dtype=np.float64)
    zeros = np.zeros_like(albedo)
    return Clothing(albedo, zeros, np.full_like(albedo, 100.0), zeros, zeros)


def _full(
    view: View, caps: Capsules, clothing: Clothing | Appearance, light: Lighting = FLAT
) -> np.ndarray:
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
        s, dist, nx, ny, nz, _ = ray_capsule(o, d, a, b, r)
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


# ------------------------------------------------------------------------------ appearance
# a capsule along +x facing the camera (which looks along +y): e1 towards the camera, e3 the axis
ACROSS = np.array([[0.0, -1.0, 0.0], [0.0, 0.0, -1.0], [1.0, 0.0, 0.0]])


def _look(*surfaces: Surface) -> Appearance:
    return Appearance(surfaces, "long", "trousers", "short", False, "plain")


def test_plain_shading_is_the_first_generators_formula() -> None:
    # Every pixel that one striped, tinted capsule covers fully equals the plain formula,
    # evaluated here with numpy at the ray's exact surface point: albedo (1 + fade A sin(2 pi y
    # / P + phase)) (1 + tint n.f), then max(., 0.005) (ambient + (1 - ambient) max(0, n.l)).
    view = _view(bg=0.1)
    r = 80.0
    a, b = np.array([-300.0, 0, 0]), np.array([300.0, 0, 0])
    clothing = Clothing(
        np.array([0.6]), np.array([0.3]), np.array([90.0]), np.array([0.7]), np.array([0.2])
    )
    light = Lighting(direction=(0.3, -0.8, 0.5), ambient=0.35)
    forward = np.array([0.3, -0.9, 0.1]) / np.linalg.norm([0.3, -0.9, 0.1])
    image = render(view, _capsules(a, b, [r]), forward[None], clothing, light, (0, W, 0, H))[0]
    l_dir = light.unit_direction()
    checked = 0
    for v in range(H):
        for u in range(W):
            s, dist, nx, ny, nz, y = ray_capsule(view.camera.center, view.rays[v, u], a, b, r)
            footprint = s * view.pixel_angle
            if dist > r - 0.5 * footprint:  # not fully covered
                continue
            n = np.array([nx, ny, nz])
            fade = np.exp(-2.0 * (np.pi * STRIPE_BLUR * footprint / 90.0) ** 2)
            colour = 0.6 * (1.0 + fade * 0.3 * np.sin(2 * np.pi * y / 90.0 + 0.7))
            colour *= 1.0 + 0.2 * float(n @ forward)
            expected = max(float(colour), 0.005) * (0.35 + 0.65 * max(float(n @ l_dir), 0.0))
            assert image[v, u] == pytest.approx(expected, rel=1e-6)
            checked += 1
    assert checked > 400


@pytest.mark.parametrize("seed", range(5))
def test_clothed_albedo_varies_inside_a_limb_and_plain_does_not(seed: int) -> None:
    # a thigh of a drawn subject across the view under a flat light: inside its silhouette
    # the clothed texture varies, one plain albedo does not
    body, look = sample_person(np.random.default_rng(seed), "clothed")
    assert isinstance(look, Appearance)
    thigh = look.surfaces[CAPSULE_NAMES.index("thighR")]
    r, half = body.thigh_radius, body.thigh / 2
    caps = _capsules([-half, 0, 0], [half, 0, 0], [r], ACROSS)
    clothed = _full(_view(), caps, _look(thigh))[0]
    plain = _full(_view(), caps, _plain([thigh.albedo]))[0]
    scale = F / 3000.0  # pixels per mm at the limb's distance
    v, u = np.mgrid[0:H, 0:W]
    inside = (np.abs(v - (H - 1) / 2) < 0.5 * r * scale) & (np.abs(u - (W - 1) / 2) < half * scale)
    assert inside.sum() > 50
    assert plain[inside].std() < 1e-6
    assert clothed[inside].std() > 0.05 * clothed[inside].mean()


def _rotation(rng: np.random.Generator) -> npt.NDArray[np.float64]:
    q, _ = np.linalg.qr(rng.normal(size=(3, 3)))
    return np.asarray(q * np.sign(np.linalg.det(q)))


def test_texture_moves_with_the_capsule() -> None:
    # The albedo at a body-fixed surface point (local normal, axial position) is the same
    # however the capsule is turned: it depends on the point's coordinates in the capsule's
    # frame only.
    rng = np.random.default_rng(3)
    _, look = sample_person(np.random.default_rng(4), "clothed")
    assert isinstance(look, Appearance)
    for name in ("spine", "head", "upper_armR", "thighL"):
        row = look.table[CAPSULE_NAMES.index(name)]
        for _ in range(20):
            local_n = rng.normal(size=3)
            local_n /= np.linalg.norm(local_n)
            y, r, footprint = rng.uniform(0, 300), rng.uniform(40, 120), rng.uniform(1, 20)
            values = []
            for _ in range(3):
                frame = _rotation(rng)  # rows e1, e2, e3 in world coordinates
                n = frame.T @ local_n
                values.append(surface_albedo(row, frame, n[0], n[1], n[2], y, r, footprint, 0.7))
            assert values == pytest.approx([values[0]] * 3, abs=1e-12)


def _moved(
    frames: SkeletonFrames, q: npt.NDArray[np.float64], t: npt.NDArray[np.float64]
) -> SkeletonFrames:
    return SkeletonFrames(
        joints=frames.joints @ q.T + t,
        neck=frames.neck @ q.T + t,
        pelvis=frames.pelvis @ q.T + t,
        toes=frames.toes @ q.T + t,
        forward=frames.forward @ q.T,
    )


def test_a_rigidly_moved_scene_renders_the_same_image() -> None:
    # Turn and shift everything (body, camera, light) together: the image is unchanged, so the
    # texture is fixed to the body (capsule frames included), not to the world.
    body, look = sample_person(np.random.default_rng(5), "clothed")
    frames = forward_kinematics(body, rest_pose(body, 1))
    camera = rig_cameras((87, 65))[2]
    view = make_view(camera, np.full((65, 87), 0.3, np.float32))
    light = Lighting()
    q = _rotation(np.random.default_rng(6))
    t = np.array([500.0, -2000.0, 700.0])
    moved_camera = Camera.from_KRt(
        camera.K, camera.R @ q.T, -(camera.R @ q.T) @ (q @ camera.center + t)
    )
    moved_view = make_view(moved_camera, view.background)
    moved_light = Lighting(direction=tuple(q @ light.unit_direction()), ambient=light.ambient)
    box = (0, 87, 0, 65)
    before = render(view, body_capsules(body, frames), frames.forward, look, light, box)
    moved = _moved(frames, q, t)
    after = render(moved_view, body_capsules(body, moved), moved.forward, look, moved_light, box)
    assert (before != view.background).sum() > 100
    np.testing.assert_allclose(after, before, atol=2e-5)


@pytest.mark.parametrize("seed", range(3))
def test_clothed_texture_is_band_limited_at_87x65(seed: int) -> None:
    # At 87x65's pixel size (43 mm at 3 m), each surface of a drawn subject on a wide capsule
    # that faces the camera, moved by a pixel in steps of a fiftieth of a pixel: no fully
    # covered pixel changes by more than 0.01 in a step (0.002-0.007 measured). Unfiltered
    # (a pixel response of 0.001 px), features finer than a pixel (seams, hems, the hairline,
    # eyes) jump as they cross a pixel's centre: 0.03-0.1 in a step for the same subjects.
    pixel_mm = 43.0
    focal = 3000.0 / pixel_mm
    K = np.array([[focal, 0, (W - 1) / 2], [0, focal, (H - 1) / 2], [0, 0, 1.0]])
    camera = Camera.from_KRt(K, np.array([[1.0, 0, 0], [0, 0, -1], [0, 1, 0]]), [0.0, 0.0, 3000.0])
    view = make_view(camera, np.zeros((H, W), np.float32))
    r, half = 250.0, 600.0
    step = 0.02 * pixel_mm * np.array([1.0, 0.0, 1.0]) / np.sqrt(2)  # along and across the axis
    a = np.array([-half, 0.0, 0.0]) + np.arange(51)[:, None, None] * step
    b = a + np.array([2 * half, 0.0, 0.0])
    frames = np.broadcast_to(ACROSS, (51, 1, 3, 3))
    caps = Capsules(a, b, np.array([r]), np.array([2]), np.array([0]), frames)
    forward = np.tile([0.0, -1.0, 0.0], (51, 1))
    v, u = np.mgrid[0:H, 0:W]
    inside = (np.abs(v - (H - 1) / 2) < r / pixel_mm - 2) & (
        np.abs(u - (W - 1) / 2) < half / pixel_mm - 1
    )
    assert inside.sum() > 30
    _, look = sample_person(np.random.default_rng(seed), "clothed")
    assert isinstance(look, Appearance)
    largest = 0.0
    for surface in look.surfaces:
        images = render(view, caps, forward, _look(surface), FLAT, (0, W, 0, H))
        largest = max(largest, float(np.abs(np.diff(images, axis=0))[:, inside].max()))
    assert 0.001 < largest <= 0.01


def test_attenuation_follows_the_pixel_response() -> None:
    # one ring wave on a surface facing the camera: its amplitude is attenuated by
    # (1 - a / 8)^8 with a = (sigma fp |k|)^2 / 2, close to the Gaussian response exp(-a)
    k = 2 * np.pi / 60.0
    row = pack_surfaces([Surface(0.5, waves=(Wave((0.0, 0.0, k), 0.4, 0.3),))])[0]
    frame = np.eye(3)
    for footprint in (0.5, 5.0, 10.0, 20.0, 40.0):
        a = 0.5 * (PIXEL_BLUR * footprint * k) ** 2
        gain = max(1 - a / 8, 0.0) ** 8
        assert gain == pytest.approx(np.exp(-a), abs=0.04)
        for y in (0.0, 13.0, 41.0):
            expected = 0.5 * (1 + 0.3 * gain * np.sin(k * y + 0.4))
            value = surface_albedo(row, frame, 1.0, 0.0, 0.0, y, 50.0, footprint, 1.0)
            assert value == pytest.approx(expected, abs=1e-6)
    assert lowpass(8.0) == 0.0 and lowpass(100.0) == 0.0 and lowpass(0.0) == 1.0
    x = np.linspace(-40, 40, 100_001)
    assert max(abs(fast_sin(v) - np.sin(v)) for v in x[::97]) < 1e-6


def test_a_blurred_seam_keeps_its_darkness() -> None:
    # The darkening integrated across a seam (depth 0.5, width 2 mm) is the same whatever the
    # footprint that blurs it: 0.5 * 2 mm * 16 / 15 * 2.5 (the bump's integral).
    row = pack_surfaces([Surface(0.5, lines=(Line((0.0, 0.0, 1.0), 100.0, 2.0, 0.5),))])[0]
    ys = np.linspace(0.0, 200.0, 40_001)
    for footprint in (0.1, 3.0, 10.0, 40.0):
        albedo = np.array(
            [surface_albedo(row, np.eye(3), 1.0, 0.0, 0.0, y, 50.0, footprint, 1.0) for y in ys]
        )
        darkness = np.trapezoid(1.0 - albedo / 0.5, ys)
        assert darkness == pytest.approx(0.5 * 2.0 * 16 / 15 * 2.5, rel=2e-3)


def test_subjects_look_different_and_the_same_in_every_call() -> None:
    config = SimulationConfig(subjects=(1, 2), movements=(1,))
    assert config.appearance == "clothed"
    first, again, other = make_subject(config, 1), make_subject(config, 1), make_subject(config, 2)
    assert isinstance(first.clothing, Appearance) and isinstance(other.clothing, Appearance)
    assert isinstance(again.clothing, Appearance)
    assert first.body == again.body and np.array_equal(first.clothing.table, again.clothing.table)
    assert first.body != other.body
    assert not np.array_equal(first.clothing.table, other.clothing.table)
    looks = [make_subject(config, n).clothing for n in range(1, 18)]
    kinds = {(a.sleeves, a.legs, a.hair, a.printed) for a in looks if isinstance(a, Appearance)}
    assert len(kinds) >= 5


def test_plain_draws_what_the_first_generator_drew() -> None:
    # "plain": sample_body then sample_clothing from the same stream, nothing else
    body, clothing = sample_person(np.random.default_rng(9), "plain")
    rng = np.random.default_rng(9)
    assert body == sample_body(rng)
    expected = sample_clothing(CAPSULE_PARTS, rng)
    assert isinstance(clothing, Clothing)
    for name in ("albedo", "stripe_amplitude", "stripe_period", "stripe_phase", "tint_amplitude"):
        assert np.array_equal(getattr(clothing, name), getattr(expected, name))
    with pytest.raises(SynthError, match="appearance must be one of plain, clothed"):
        sample_person(rng, "shiny")  # type: ignore[arg-type]
    with pytest.raises(SimulationError, match="appearance must be plain or clothed, got 'shiny'"):
        SimulationConfig(appearance="shiny")  # type: ignore[arg-type]


def test_textured_rendering_needs_frames() -> None:
    _, look = sample_person(np.random.default_rng(1), "clothed")
    assert isinstance(look, Appearance)
    with pytest.raises(SynthError, match="capsule frames"):
        _full(_view(), _capsules([0, 0, 0], [0, 0, 0], [100.0]), _look(look.surfaces[0]))
    with pytest.raises(SynthError, match="describes 19 capsules"):
        _full(_view(), _capsules([0, 0, 0], [0, 0, 0], [100.0], ACROSS), look)


def test_tiles_render_the_pixels_of_the_whole_image() -> None:
    # tiles at many places and poses, edge tiles reaching past the sensor included, hold the
    # very values of the whole image of their pose (a pixel depends on its ray and the pose)
    config = SimulationConfig(sensor_size=(87, 65))
    subject = make_subject(config, 1)
    performance = make_performance(config, subject, 16)
    camera = rig_cameras((87, 65))[2]
    view = make_view(camera, np.linspace(0.2, 0.6, 87 * 65, dtype=np.float32).reshape(65, 87))
    instants = np.array([0.8, 1.3])  # s: two poses of the movement
    f = performance.frames(instants)
    look, light = subject.clothing, Lighting()
    whole = render(view, body_capsules(subject.body, f), f.forward, look, light, (0, 87, 0, 65))
    assert np.abs(whole[0] - whole[1]).max() > 0.1  # the body moved
    rng = np.random.default_rng(8)
    size, n = 16, 40
    which = rng.integers(0, 2, n)
    origins = np.stack([rng.integers(0, 87, n), rng.integers(0, 65, n)], axis=1)
    origins[:4] = [[80, 10], [10, 60], [85, 63], [0, 0]]  # past the right and bottom edges
    frames = performance.frames(instants[which])
    capsules = body_capsules(subject.body, frames)
    tiles = render_tiles(view, capsules, frames.forward, look, light, origins, size)
    assert tiles.shape == (n, size, size)
    covered = 0
    for k, (x, y) in enumerate(origins):
        inside = whole[which[k]][y : y + size, x : x + size]
        h, w = inside.shape
        np.testing.assert_array_equal(tiles[k, :h, :w], inside)
        assert (tiles[k, h:] == 0).all() and (tiles[k, :, w:] == 0).all()
        covered += int((inside != view.background[y : y + size, x : x + size]).sum())
    assert covered > 500  # the body is in many of the tiles
    # only the wanted pixels: their values, the others 0
    wanted = rng.random((n, size, size)) < 0.3
    some = render_tiles(view, capsules, frames.forward, look, light, origins, size, None, wanted)
    np.testing.assert_array_equal(some, np.where(wanted, tiles, 0.0))
    with pytest.raises(SynthError, match="render_tiles: need 40 tile origins inside the 87x65"):
        render_tiles(view, capsules, frames.forward, look, light, np.add(origins, [87, 0]), size)
    # the tiles sharing the two poses, given once and indexed, are the same tiles
    both = body_capsules(subject.body, f)
    shared = render_tiles(view, both, f.forward, look, light, origins, size, None, wanted, which)
    np.testing.assert_array_equal(shared, some)
    with pytest.raises(SynthError, match="render_tiles: poses must index the 2 poses given"):
        render_tiles(view, both, f.forward, look, light, origins, size, poses=which + 1)
