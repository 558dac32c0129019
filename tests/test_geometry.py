"""Tests of hybridpose.geometry against cameras built by hand (P = K [R | t])."""

from __future__ import annotations

import warnings

import numpy as np
import numpy.typing as npt
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hybridpose.errors import HybridPoseError
from hybridpose.geometry import (
    PARALLEL_SIN_ANGLE,
    Camera,
    GeometryError,
    TwoViewTriangulator,
    backproject,
    camera_center,
    depth,
    project,
    triangulate_dlt,
    triangulate_two_views,
)

Array = npt.NDArray[np.float64]
WIDTH, HEIGHT = 346, 260
FLIP_V = np.array([[1.0, 0.0, 0.0], [0.0, -1.0, HEIGHT], [0.0, 0.0, 1.0]])  # v -> H - v
TURN = np.diag([-1.0, 1.0, -1.0])  # half turn about the camera y axis: x and z reversed


# --------------------------------------------------------------------------- hand-built rig
def look_at(center: Array, target: Array) -> Array:
    """World -> camera rotation of a camera at ``center`` looking at ``target``, image v down."""
    up = np.array([0.0, 0.0, 1.0])  # world Z is up
    z = target - center
    z = z / np.linalg.norm(z)
    y = -(up - (up @ z) * z)  # image rows grow downwards, against world up
    y = y / np.linalg.norm(y)
    x = np.cross(y, z)  # right-handed camera frame: x right, y down, z forward
    return np.stack([x, y, z])


def intrinsics(fx: float, fy: float, cx: float, cy: float, skew: float = 0.0) -> Array:
    return np.array([[fx, skew, cx], [0.0, fy, cy], [0.0, 0.0, 1.0]])


def make_P(K: Array, R: Array, center: Array) -> Array:
    return K @ np.column_stack([R, -R @ center])


def rig() -> list[tuple[Array, Array, Array]]:
    """Four DHP19-like cameras ~3.5 m from a body at the origin: (K, R, centre) each."""
    specs = [  # azimuth (deg), height (mm), fx, fy, cx, cy, skew
        (-40.0, 900.0, 330.0, 330.0, 172.0, 131.0, 0.0),
        (35.0, 1100.0, 360.0, 362.0, 175.5, 128.0, 0.0),
        (130.0, 700.0, 380.0, 378.0, 170.0, 132.5, 0.4),
        (-120.0, 1500.0, 400.0, 400.0, 173.0, 129.0, 0.0),
    ]
    cams = []
    for az, z, fx, fy, cx, cy, skew in specs:
        a = np.deg2rad(az)
        center = np.array([3400.0 * np.sin(a), -3400.0 * np.cos(a), z])
        R = look_at(center, np.zeros(3))
        cams.append((intrinsics(fx, fy, cx, cy, skew), R, center))
    return cams


RIG = rig()
RIG_P = np.stack([make_P(K, R, c) for K, R, c in RIG])


def body_points(n: int, seed: int = 0) -> Array:
    """Points in a 1 m x 1 m x 1.5 m box around the origin, where the body stands."""
    rng = np.random.default_rng(seed)
    return rng.uniform([-500.0, -500.0, -750.0], [500.0, 500.0, 750.0], size=(n, 3))


def rel_error(a: Array, b: Array) -> float:
    return float(np.max(np.linalg.norm(a - b, axis=-1) / np.linalg.norm(b, axis=-1)))


@pytest.fixture(autouse=True)
def _no_warnings() -> object:
    # NaN handling must be silent: any RuntimeWarning (0/0, NaN compare) is a defect.
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        yield


# --------------------------------------------------------------------------- the rig itself
def test_rig_sees_the_body_inside_the_sensor() -> None:
    # Guards the fixtures: a test camera that missed the body would make later tests vacuous.
    X = body_points(200)
    for P in RIG_P:
        uv = project(P, X)
        assert np.all(np.isfinite(uv))
        assert np.all((uv >= 0) & (uv <= [WIDTH - 1, HEIGHT - 1]))


def test_look_at_is_a_proper_rotation_looking_at_the_target() -> None:
    for _, R, c in RIG:
        np.testing.assert_allclose(R @ R.T, np.eye(3), atol=1e-12)
        assert np.linalg.det(R) == pytest.approx(1.0)
        # The target lies on the optical axis: camera coordinates (0, 0, distance).
        cam = R @ (np.zeros(3) - c)
        np.testing.assert_allclose(cam[:2], 0.0, atol=1e-9)
        assert cam[2] > 3000


# --------------------------------------------------------------------------- Camera.from_P
@pytest.mark.parametrize("scale", [1.0, 2.5e-3, 731.0])
@pytest.mark.parametrize("index", range(4))
def test_from_P_recovers_K_R_t_and_centre(index: int, scale: float) -> None:
    K, R, c = RIG[index]
    cam = Camera.from_P(scale * RIG_P[index])
    np.testing.assert_allclose(cam.K, K, rtol=1e-12, atol=1e-9)
    np.testing.assert_allclose(cam.R, R, atol=1e-12)
    np.testing.assert_allclose(cam.t, -R @ c, rtol=1e-10, atol=1e-8)
    np.testing.assert_allclose(cam.center, c, rtol=1e-10, atol=1e-8)
    np.testing.assert_allclose(cam.P, RIG_P[index], rtol=1e-12, atol=1e-8)
    assert not cam.mirrored
    np.testing.assert_allclose(camera_center(scale * RIG_P[index]), c, rtol=1e-10)


@pytest.mark.parametrize("scale", [-1.0, -731.0])
@pytest.mark.parametrize("index", range(4))
def test_from_P_of_a_negated_matrix_looks_the_other_way(index: int, scale: float) -> None:
    # Worked out by hand: -K R = K' R' with D = TURN = diag(-1, 1, -1) (D D = I, det D = +1):
    # -K R = (-K D)(D R), and -K D = K diag(1, -1, 1) has K'[0, 0] = fx > 0, K'[2, 2] = 1 > 0,
    # K'[1, 1] = -fy and skew -s; R' = D R is proper. (D = diag(1, -1, -1) would give
    # K'[0, 0] = -fx.) So the optical axis R'[2] = -R[2] points away from the body, the image
    # is mirrored, t' = D t and the centre -R'^T t' = -R^T t is the same point.
    K, R, c = RIG[index]
    P = scale * RIG_P[index]
    cam = Camera.from_P(P)
    fx, skew, cx, fy, cy = K[0, 0], K[0, 1], K[0, 2], K[1, 1], K[1, 2]
    np.testing.assert_allclose(
        cam.K, [[fx, -skew, cx], [0, -fy, cy], [0, 0, 1]], rtol=1e-12, atol=1e-9
    )
    np.testing.assert_allclose(cam.R, TURN @ R, atol=1e-12)
    assert np.linalg.det(cam.R) == pytest.approx(1.0)
    np.testing.assert_allclose(cam.t, TURN @ (-R @ c), rtol=1e-10, atol=1e-8)
    np.testing.assert_allclose(cam.center, c, rtol=1e-10, atol=1e-8)
    np.testing.assert_allclose(cam.P, -RIG_P[index], rtol=1e-12, atol=1e-8)  # sign kept
    assert cam.mirrored
    # The body is behind this camera.
    X = body_points(20, seed=index)
    assert np.all(np.isnan(project(P, X)))
    np.testing.assert_allclose(depth(P, X), -depth(RIG_P[index], X), rtol=1e-12)
    assert np.all(depth(P, X) < 0)
    assert np.all((X - cam.center) @ cam.R[2] < 0)


def test_from_P_of_a_v_flipped_matrix_is_mirrored_with_the_same_pose() -> None:
    # P' = A P with A: v -> H - v. Worked out by hand: A K = [[fx, s, cx], [0, -fy, H - cy],
    # [0, 0, 1]] is already upper triangular with K'[0, 0] > 0 and K'[2, 2] = 1 (row 1 of A K
    # is -row 1 of K + H * row 2 of K, so the skew in row 0 keeps its sign), so A K R is the
    # decomposition itself: K' = A K, R' = R, t' = t, the same centre; K'[1, 1] < 0.
    K, R, c = RIG[2]
    P_flip = FLIP_V @ RIG_P[2]
    assert np.linalg.det(P_flip[:, :3]) < 0
    cam = Camera.from_P(P_flip)
    fx, skew, cx, fy, cy = K[0, 0], K[0, 1], K[0, 2], K[1, 1], K[1, 2]
    assert skew != 0  # camera 2 has a skew, so its sign is checked
    np.testing.assert_allclose(
        cam.K, [[fx, skew, cx], [0, -fy, HEIGHT - cy], [0, 0, 1]], rtol=1e-12, atol=1e-9
    )
    np.testing.assert_allclose(cam.R, R, atol=1e-12)
    np.testing.assert_allclose(cam.t, -R @ c, rtol=1e-10, atol=1e-8)
    np.testing.assert_allclose(cam.center, c, rtol=1e-10)
    np.testing.assert_allclose(cam.P, P_flip, rtol=1e-12, atol=1e-8)
    assert cam.mirrored
    # A positive scale changes nothing; a negative one is looking away, and mirrored twice.
    np.testing.assert_allclose(Camera.from_P(0.01 * P_flip).K, cam.K, rtol=1e-12, atol=1e-9)
    assert not Camera.from_P(-P_flip).mirrored


@pytest.mark.parametrize("index", range(4))
def test_v_flipped_matrix_sees_the_body_in_a_mirrored_image(index: int) -> None:
    # DHP19 stores A @ P with A: v -> H - v. It is a legitimate camera: the body is in front,
    # pixels are the flipped ones, the depth is unchanged (A leaves w alone) and the rays of the
    # flipped pixels pass through the points, pointing into the scene.
    X = body_points(50, seed=index)
    P = RIG_P[index]
    P_flip = FLIP_V @ P
    uv = project(P, X)
    uv_flip = project(P_flip, X)
    np.testing.assert_allclose(uv_flip, np.stack([uv[:, 0], HEIGHT - uv[:, 1]], -1), atol=1e-9)
    assert np.all((uv_flip >= 0) & (uv_flip <= [WIDTH - 1, HEIGHT - 1]))
    np.testing.assert_allclose(depth(P_flip, X), depth(P, X), rtol=1e-12)
    assert np.all(depth(P_flip, X) > 2000)  # the body is ~3.5 m in front
    origin, direction = backproject(P_flip, uv_flip)
    to_point = X - origin
    s = np.sum(to_point * direction, axis=-1)
    assert np.all(s > 0)
    off_ray = np.linalg.norm(to_point - s[:, None] * direction, axis=-1)
    assert np.max(off_ray) < 1e-9 * np.max(s)
    # The same rays as the unflipped camera's for the unflipped pixels.
    np.testing.assert_allclose(direction, backproject(P, uv)[1], atol=1e-12)
    # Flipping twice is the identity.
    np.testing.assert_allclose(project(FLIP_V @ P_flip, X), uv, atol=1e-9)


def test_camera_center_is_the_null_vector_of_P() -> None:
    # Independent method: Cramer's rule, C_i = (-1)^i det(P without column i).
    P = -0.37 * RIG_P[1]
    minors = [np.linalg.det(np.delete(P, i, axis=1)) for i in range(4)]
    null = np.array([minors[0], -minors[1], minors[2], -minors[3]])
    np.testing.assert_allclose(P @ null, 0.0, atol=1e-6 * np.abs(null).max())
    np.testing.assert_allclose(camera_center(P), null[:3] / null[3], rtol=1e-10)


def test_from_KRt_matches_from_P() -> None:
    K, R, c = RIG[3]
    cam = Camera.from_KRt(3.0 * K, R, -R @ c)  # K[2, 2] = 3 is rescaled to 1
    np.testing.assert_allclose(cam.K, K, rtol=1e-12, atol=1e-9)
    np.testing.assert_allclose(cam.center, c, rtol=1e-10)


def test_camera_fields_are_read_only_copies() -> None:
    P = RIG_P[0].copy()
    cam = Camera.from_P(P)
    P[0, 0] = 0.0
    assert cam.P[0, 0] != 0.0
    with pytest.raises(ValueError):
        cam.K[0, 0] = 1.0


def test_camera_rejects_inconsistent_fields() -> None:
    cam = Camera.from_P(RIG_P[0])
    good = {"P": cam.P, "K": cam.K, "R": cam.R, "t": cam.t, "center": cam.center}
    Camera(**good)  # the consistent original is accepted
    bad_cases = {  # field: (bad value, expected message)
        "P": (cam.P * 1.01, r"Camera\.P: differs"),
        "K": (cam.K * np.array([[1, 1, 1], [1, 1, 1], [0, 0, 2.0]]), r"Camera\.K: must be"),
        "R": (cam.R @ np.diag([1.0, 1.0, -1.0]), r"Camera\.R: not a proper rotation"),
        "t": (cam.t + 1.0, r"Camera\.P: differs"),
        "center": (cam.center + 1.0, r"Camera\.center: differs"),
    }
    for name, (value, message) in bad_cases.items():
        with pytest.raises(GeometryError, match=message):
            Camera(**{**good, name: value})
    with pytest.raises(GeometryError, match="shape"):
        Camera(**{**good, "t": cam.t[:2]})


def test_camera_validates_the_signs_of_K() -> None:
    # A mirrored K (K[1, 1] < 0) is a legitimate camera; K[0, 0] <= 0 or K[1, 1] = 0 is not.
    mirrored = Camera.from_P(FLIP_V @ RIG_P[1])
    assert mirrored.K[1, 1] < 0
    fields = {"P": mirrored.P, "K": mirrored.K, "R": mirrored.R, "t": mirrored.t}
    assert Camera(**fields, center=mirrored.center).mirrored
    for row, col, value in [(0, 0, -mirrored.K[0, 0]), (1, 1, 0.0), (2, 2, -1.0)]:
        K = mirrored.K.copy()
        K[row, col] = value
        with pytest.raises(GeometryError, match=r"Camera\.K: must be"):
            Camera(**{**fields, "K": K}, center=mirrored.center)


@pytest.mark.parametrize(
    ("P", "match"),
    [
        (np.zeros((3, 3)), "3x4"),
        (np.full((3, 4), np.nan), "non-finite"),
        (np.column_stack([np.ones((3, 3)), np.ones(3)]), "singular"),
        (np.zeros((3, 4)), "singular"),
    ],
)
def test_bad_projection_matrices_raise(P: Array, match: str) -> None:
    for call in (Camera.from_P, camera_center, lambda p: project(p, np.zeros(3))):
        with pytest.raises(GeometryError, match=match) as info:
            call(P)
        assert isinstance(info.value, HybridPoseError)
        assert isinstance(info.value, ValueError)


# --------------------------------------------------------------------------- projection
def test_project_known_pixel() -> None:
    # Camera at the origin looking along +Z with K = [[400, 0, 173], [0, 400, 130]]: the point
    # (100, -50, 2000) lands at u = 173 + 400 * 100 / 2000 = 193, v = 130 - 400 * 50 / 2000 = 120.
    P = make_P(intrinsics(400, 400, 173, 130), np.eye(3), np.zeros(3))
    X = np.array([100.0, -50.0, 2000.0])
    np.testing.assert_allclose(project(P, X), [193.0, 120.0])
    np.testing.assert_allclose(project(3.0 * P, X), [193.0, 120.0])
    np.testing.assert_allclose(project(FLIP_V @ P, X), [193.0, HEIGHT - 120.0])
    np.testing.assert_allclose(project(FLIP_V @ FLIP_V @ P, X), [193.0, 120.0])
    assert np.all(np.isnan(project(-3.0 * P, X)))  # -P looks the other way
    assert depth(P, X) == pytest.approx(2000.0)
    assert depth(7.0 * P, X) == pytest.approx(2000.0)
    assert depth(FLIP_V @ P, X) == pytest.approx(2000.0)
    assert depth(-7.0 * P, X) == pytest.approx(-2000.0)


def test_project_marks_points_behind_on_and_nan_as_nan() -> None:
    P = make_P(intrinsics(400, 400, 173, 130), np.eye(3), np.zeros(3))
    X = np.array(
        [
            [10.0, 20.0, 1000.0],  # in front
            [10.0, 20.0, -1000.0],  # behind
            [10.0, 20.0, 0.0],  # on the principal plane, w = 0
            [np.nan, 20.0, 1000.0],  # missing
        ]
    )
    for scale in (1.0, 2.0):
        uv = project(scale * P, X)
        assert np.all(np.isfinite(uv[0]))
        assert np.all(np.isnan(uv[1:]))
    # -P looks the other way: what was behind is now in front, and vice versa.
    uv = project(-2.0 * P, X)
    assert np.all(np.isnan(uv[[0, 2, 3]]))
    np.testing.assert_allclose(uv[1], project(P, [-10.0, -20.0, 1000.0]))
    d = depth(P, X)
    np.testing.assert_allclose(d[:3], [1000.0, -1000.0, 0.0])
    assert np.isnan(d[3])
    np.testing.assert_allclose(depth(-2.0 * P, X)[:2], [-1000.0, 1000.0])


def test_project_keeps_leading_shape_and_does_not_touch_inputs() -> None:
    X = body_points(2 * 3 * 13).reshape(2, 3, 13, 3)
    X_copy, P_copy = X.copy(), RIG_P[0].copy()
    uv = project(RIG_P[0], X)
    assert uv.shape == (2, 3, 13, 2)
    np.testing.assert_array_equal(X, X_copy)
    np.testing.assert_array_equal(RIG_P[0], P_copy)
    assert project(RIG_P[0], np.zeros((0, 3))).shape == (0, 2)


def test_project_rejects_bad_points() -> None:
    with pytest.raises(GeometryError, match=r"X: expected shape \(\.\.\., 3\)"):
        project(RIG_P[0], np.zeros((5, 2)))
    with pytest.raises(GeometryError, match="infinite"):
        project(RIG_P[0], [np.inf, 0.0, 0.0])


# --------------------------------------------------------------------------- back-projection
@pytest.mark.parametrize("scale", [1.0, 0.01, -0.01])
def test_backprojected_ray_passes_through_the_point_in_front(scale: float) -> None:
    # For -P the same pixels give the same lines, pointing the other way (into -P's scene):
    # the body is then behind the camera, at s < 0.
    X = body_points(50)
    for P in RIG_P:
        origin, direction = backproject(scale * P, project(P, X))
        np.testing.assert_allclose(np.linalg.norm(direction, axis=-1), 1.0, rtol=1e-12)
        to_point = X - origin
        s = np.sum(to_point * direction, axis=-1)
        assert np.all(s * np.sign(scale) > 0)  # ahead along the ray iff P is not negated
        off_ray = np.linalg.norm(to_point - s[:, None] * direction, axis=-1)
        assert np.max(np.abs(off_ray)) < 1e-9 * np.max(np.abs(s))
        np.testing.assert_allclose(origin, np.broadcast_to(camera_center(P), X.shape))


def test_backproject_principal_point_is_the_optical_axis() -> None:
    K, R, c = RIG[1]
    origin, direction = backproject(make_P(K, R, c), K[:2, 2])
    np.testing.assert_allclose(direction, R[2], atol=1e-12)  # camera z axis in world
    np.testing.assert_allclose(origin, c, rtol=1e-10)


def test_backproject_nan_pixels() -> None:
    uv = np.array([[100.0, 100.0], [np.nan, 100.0], [100.0, np.nan]])
    origin, direction = backproject(RIG_P[0], uv)
    assert np.all(np.isfinite(direction[0]))
    assert np.all(np.isnan(direction[1:]))
    assert np.all(np.isfinite(origin))


# --------------------------------------------------------------------------- two views
def lines_least_squares(origins: Array, directions: Array) -> Array:
    """Independent method: minimise the sum of squared distances to lines (normal equations)."""
    A = np.zeros((3, 3))
    b = np.zeros(3)
    for o, d in zip(origins, directions, strict=True):
        proj = np.eye(3) - np.outer(d, d)
        A += proj
        b += proj @ o
    return np.asarray(np.linalg.solve(A, b), dtype=np.float64)


@pytest.mark.parametrize(("i", "j"), [(0, 1), (1, 2), (0, 3)])
def test_two_view_triangulation_recovers_projected_points(i: int, j: int) -> None:
    X = body_points(300, seed=i + 10 * j)
    # A negated matrix looks away from the body, but its rays are the same lines.
    P1, P2 = RIG_P[i], -4.0 * RIG_P[j]
    X_hat = triangulate_two_views(P1, P2, project(P1, X), project(-P2, X))
    assert rel_error(X_hat, X) < 1e-6
    assert np.max(np.abs(X_hat - X)) < 1e-6


def test_two_view_triangulation_with_a_v_flipped_camera() -> None:
    # Flipped pixels with the flipped matrix describe the same rays, so the same points.
    X = body_points(100, seed=3)
    uv2 = project(RIG_P[2], X)
    uv2_flipped = np.stack([uv2[:, 0], HEIGHT - uv2[:, 1]], axis=-1)
    X_hat = triangulate_two_views(RIG_P[1], FLIP_V @ RIG_P[2], project(RIG_P[1], X), uv2_flipped)
    assert rel_error(X_hat, X) < 1e-6


def test_unchecked_triangulation_equals_the_checked_one() -> None:
    # TwoViewTriangulator.into (a stream's every step) computes what __call__ does, bit for
    # bit, from float64 pixels and from float32 ones (cast to float64 first), NaN included
    rng = np.random.default_rng(6)
    X = body_points(13, seed=6)
    uv1 = (project(RIG_P[0], X) + rng.normal(0, 3, (13, 2))).astype(np.float32)
    uv2 = (project(RIG_P[1], X) + rng.normal(0, 3, (13, 2))).astype(np.float32)
    uv1[4] = np.nan
    triangulator = TwoViewTriangulator(RIG_P[0], RIG_P[1])
    want = triangulator(uv1.astype(np.float64), uv2.astype(np.float64))
    pairs: list[tuple[npt.NDArray[np.floating], npt.NDArray[np.floating]]] = [
        (uv1, uv2),
        (uv1.astype(np.float64), uv2.astype(np.float64)),
    ]
    for a, b in pairs:
        out = np.full((13, 3), -1.0)
        triangulator.into(a, b, out)
        np.testing.assert_array_equal(out, want)
    assert np.isnan(out[4]).all() and np.isfinite(np.delete(out, 4, axis=0)).all()


def test_two_view_midpoint_of_skew_rays_matches_least_squares() -> None:
    # Noisy pixels make the rays skew; the midpoint must still be the least-squares point.
    rng = np.random.default_rng(5)
    X = body_points(40, seed=5)
    uv1 = project(RIG_P[0], X) + rng.normal(0, 3, (40, 2))
    uv2 = project(RIG_P[1], X) + rng.normal(0, 3, (40, 2))
    X_hat = triangulate_two_views(RIG_P[0], RIG_P[1], uv1, uv2)
    o1, d1 = backproject(RIG_P[0], uv1)
    o2, d2 = backproject(RIG_P[1], uv2)
    for k in range(40):
        expected = lines_least_squares(np.stack([o1[k], o2[k]]), np.stack([d1[k], d2[k]]))
        np.testing.assert_allclose(X_hat[k], expected, rtol=1e-9, atol=1e-6)


def test_two_view_hand_computed_skew_lines() -> None:
    # Cameras at (0, -1000, 0) and (1000, 0, 50) whose principal rays run along +Y and -X: the
    # lines y-axis (z = 0) and x-axis at z = 50 have their common perpendicular from (0, 0, 0)
    # to (0, 0, 50); the midpoint is (0, 0, 25).
    K = intrinsics(400, 400, 173, 130)
    c1, c2 = np.array([0.0, -1000.0, 0.0]), np.array([1000.0, 0.0, 50.0])
    P1 = make_P(K, look_at(c1, c1 + np.array([0.0, 1.0, 0.0])), c1)
    P2 = make_P(K, look_at(c2, c2 + np.array([-1.0, 0.0, 0.0])), c2)
    X_hat = triangulate_two_views(P1, P2, K[:2, 2], K[:2, 2])
    np.testing.assert_allclose(X_hat, [0.0, 0.0, 25.0], atol=1e-9)


def test_two_view_nan_and_broadcasting() -> None:
    X = body_points(5).reshape(1, 5, 3)
    uv1 = np.repeat(project(RIG_P[0], X), 4, axis=0)  # (4, 5, 2)
    uv2 = project(RIG_P[1], X)  # (1, 5, 2), broadcasts over the first axis
    uv1[1, 2, 0] = np.nan
    uv2[0, 4, 1] = np.nan
    X_hat = triangulate_two_views(RIG_P[0], RIG_P[1], uv1, uv2)
    assert X_hat.shape == (4, 5, 3)
    nan = np.isnan(X_hat).any(axis=-1)
    expected_nan = np.zeros((4, 5), bool)
    expected_nan[1, 2] = True
    expected_nan[:, 4] = True
    np.testing.assert_array_equal(nan, expected_nan)
    assert np.all(np.isnan(X_hat[nan]))
    np.testing.assert_allclose(X_hat[~nan], np.broadcast_to(X, (4, 5, 3))[~nan], atol=1e-6)
    with pytest.raises(GeometryError, match="broadcast"):
        triangulate_two_views(RIG_P[0], RIG_P[1], np.zeros((3, 2)), np.zeros((4, 2)))
    with pytest.raises(GeometryError, match="uv2"):
        triangulate_two_views(RIG_P[0], RIG_P[1], np.zeros((3, 2)), np.zeros((3, 3)))


def test_two_view_parallel_rays_give_nan() -> None:
    K = intrinsics(400, 400, 173, 130)
    R = np.eye(3)
    P1 = make_P(K, R, np.zeros(3))
    P2 = make_P(K, R, np.array([500.0, 0.0, 0.0]))  # translated sideways, same orientation
    uv = np.array([[173.0, 130.0], [50.0, 200.0]])  # equal pixels: parallel rays
    assert np.all(np.isnan(triangulate_two_views(P1, P2, uv, uv)))
    # The same camera twice: identical rays.
    assert np.all(np.isnan(triangulate_two_views(P1, P1, uv, uv)))
    # Just above the threshold angle the rays are intersected again (far away, but finite).
    du = 400.0 * 10 * PARALLEL_SIN_ANGLE
    far = triangulate_two_views(P1, P2, uv[:1], uv[:1] - [du, 0.0])
    assert np.all(np.isfinite(far))
    np.testing.assert_allclose(far[0, 2], 500.0 / (10 * PARALLEL_SIN_ANGLE), rtol=1e-3)


# --------------------------------------------------------------------------- N views (DLT)
@pytest.mark.parametrize("views", [(0, 1), (1, 3), (0, 1, 2, 3)])
def test_dlt_recovers_projected_points(views: tuple[int, ...]) -> None:
    X = body_points(400, seed=len(views))
    scales = np.array([1.0, -2.0, 1e-3, -50.0])[: len(views), None, None]
    Ps = RIG_P[list(views)] * scales  # negated matrices: the same lines, so the same points
    uvs = np.stack([project(P, X) for P in RIG_P[list(views)]], axis=-2)  # (N, V, 2)
    X_hat = triangulate_dlt(Ps, uvs)
    assert X_hat.shape == X.shape
    assert rel_error(X_hat, X) < 1e-6
    assert np.max(np.abs(X_hat - X)) < 1e-6


def test_dlt_with_a_v_flipped_camera() -> None:
    # Mirrored cameras have K[1, 1] < 0; the normalisation must cope with that.
    X = body_points(100, seed=4)
    uvs = np.stack([project(P, X) for P in RIG_P], axis=-2)
    uvs[:, 3, 1] = HEIGHT - uvs[:, 3, 1]
    Ps = RIG_P.copy()
    Ps[3] = FLIP_V @ Ps[3]
    np.testing.assert_allclose(uvs[:, 3], project(Ps[3], X), atol=1e-9)
    assert rel_error(triangulate_dlt(Ps, uvs), X) < 1e-6
    # All four mirrored, and only two views.
    Ps_all = FLIP_V @ RIG_P
    uvs_all = np.stack([project(P, X) for P in Ps_all], axis=-2)
    assert rel_error(triangulate_dlt(Ps_all, uvs_all), X) < 1e-6
    assert rel_error(triangulate_dlt(Ps_all[[0, 2]], uvs_all[:, [0, 2]]), X) < 1e-6


def test_dlt_ignores_nan_views_and_needs_two() -> None:
    X = body_points(6, seed=7)
    uvs = np.stack([project(P, X) for P in RIG_P], axis=-2)  # (6, 4, 2)
    uvs[0, 0] = np.nan  # 3 views left
    uvs[1, [0, 2], :] = np.nan  # 2 views left
    uvs[2, [0, 1, 3], 0] = np.nan  # 1 view left (one NaN coordinate spoils a view)
    uvs[3] = np.nan  # none left
    uvs[4, 1:, :] = [1e4, -3e4]  # finite garbage in 3 views: not ignored, so X is wrong
    X_hat = triangulate_dlt(RIG_P, uvs)
    np.testing.assert_allclose(X_hat[[0, 1, 5]], X[[0, 1, 5]], atol=1e-6)
    assert np.all(np.isnan(X_hat[[2, 3]]))
    assert np.linalg.norm(X_hat[4] - X[4]) > 100.0


def test_dlt_is_batched_and_batch_independent() -> None:
    X = body_points(2 * 3 * 13, seed=8).reshape(2, 3, 13, 3)
    uvs = np.stack([project(P, X) for P in RIG_P], axis=-2)  # (2, 3, 13, 4, 2)
    uvs_copy = uvs.copy()
    X_hat = triangulate_dlt(RIG_P, uvs)
    assert X_hat.shape == (2, 3, 13, 3)
    np.testing.assert_array_equal(uvs, uvs_copy)
    single = triangulate_dlt(RIG_P, uvs[1, 2, 5])
    assert single.shape == (3,)
    np.testing.assert_allclose(single, X_hat[1, 2, 5], rtol=1e-12, atol=1e-9)
    assert triangulate_dlt(RIG_P, np.zeros((0, 4, 2))).shape == (0, 3)


def test_dlt_agrees_with_two_view_midpoint_without_noise() -> None:
    X = body_points(50, seed=9)
    uv1, uv2 = project(RIG_P[1], X), project(RIG_P[2], X)
    a = triangulate_two_views(RIG_P[1], RIG_P[2], uv1, uv2)
    b = triangulate_dlt(RIG_P[[1, 2]], np.stack([uv1, uv2], axis=-2))
    np.testing.assert_allclose(a, b, atol=1e-6)


def test_dlt_is_well_conditioned_far_from_the_origin() -> None:
    # World 1 km away from the origin and view scales 1e-3..1e3: the normalised DLT stays
    # exact to under a micrometre (measured ~2e-10 mm); the same DLT on raw pixels and
    # millimetres, without the normalisation, was measured at ~6 mm here.
    offset = np.array([1e6, -1e6, 3e5])
    shift = np.eye(4)
    shift[:3, 3] = -offset
    Ps = RIG_P @ shift * np.array([1.0, 1e-3, 1e3, -1.0])[:, None, None]
    X = body_points(300, seed=11) + offset
    uvs = np.stack([project(P, X) for P in RIG_P @ shift], axis=-2)
    assert np.max(np.abs(triangulate_dlt(Ps, uvs) - X)) < 1e-6
    assert np.max(np.abs(triangulate_two_views(Ps[0], Ps[1], uvs[:, 0], uvs[:, 1]) - X)) < 1e-6


def test_dlt_bad_arguments_raise() -> None:
    uvs = np.zeros((5, 2, 2))
    with pytest.raises(GeometryError, match=r"Ps: expected shape \(V, 3, 4\)"):
        triangulate_dlt(RIG_P[0], uvs)
    with pytest.raises(GeometryError, match="at least 2"):
        triangulate_dlt(RIG_P[:1], np.zeros((5, 1, 2)))
    with pytest.raises(GeometryError, match=r"uvs: expected shape \(\.\.\., 4, 2\)"):
        triangulate_dlt(RIG_P, uvs)
    with pytest.raises(GeometryError, match=r"Ps\[1\].*singular"):
        triangulate_dlt(np.stack([RIG_P[0], np.zeros((3, 4))]), uvs)
    with pytest.raises(GeometryError, match="share one centre"):
        triangulate_dlt(np.stack([RIG_P[0], 2.0 * RIG_P[0]]), uvs)


# --------------------------------------------------------------------------- noise
def mean_3d_error(sigma: float, method: str, seed: int) -> float:
    rng = np.random.default_rng(seed)
    X = body_points(3000, seed=seed)
    views = [0, 1] if method == "two_views" else [0, 1, 2, 3]
    uvs = np.stack([project(RIG_P[v], X) for v in views], axis=-2)
    uvs = uvs + rng.normal(0.0, sigma, uvs.shape)
    if method == "two_views":
        X_hat = triangulate_two_views(RIG_P[0], RIG_P[1], uvs[:, 0], uvs[:, 1])
    else:
        X_hat = triangulate_dlt(RIG_P[views], uvs)
    return float(np.mean(np.linalg.norm(X_hat - X, axis=-1)))


@pytest.mark.parametrize("method", ["two_views", "dlt"])
def test_3d_error_grows_in_proportion_to_pixel_noise(method: str) -> None:
    # Independent noise draws per sigma; in the linear regime the mean error doubles with
    # sigma (sampling error of a 3000-point mean is ~1-2 %, hence the 8 % tolerance).
    errors = {s: mean_3d_error(s, method, seed=int(10 * s)) for s in (0.5, 1.0, 2.0)}
    assert errors[1.0] / errors[0.5] == pytest.approx(2.0, rel=0.08)
    assert errors[2.0] / errors[1.0] == pytest.approx(2.0, rel=0.08)
    # Scale: at 3.4 m with f ~ 350 px one pixel spans ~10 mm; the error per pixel of noise
    # stays within a small multiple of that.
    assert 2.0 < errors[1.0] < 30.0
    if method == "dlt":  # four views average out more noise than two
        assert errors[1.0] < mean_3d_error(1.0, "two_views", seed=10)


# --------------------------------------------------------------------------- properties
def random_rotation(a: float, b: float, c: float) -> Array:
    ca, sa, cb, sb, cc, sc = np.cos(a), np.sin(a), np.cos(b), np.sin(b), np.cos(c), np.sin(c)
    rx = np.array([[1, 0, 0], [0, ca, -sa], [0, sa, ca]])
    ry = np.array([[cb, 0, sb], [0, 1, 0], [-sb, 0, cb]])
    rz = np.array([[cc, -sc, 0], [sc, cc, 0], [0, 0, 1]])
    return np.asarray(rz @ ry @ rx, dtype=np.float64)


angles = st.floats(-np.pi, np.pi)
positive_scales = st.floats(1e-3, 1e3)
scales = positive_scales | st.floats(-1e3, -1e-3)


@settings(max_examples=40, deadline=None)
@given(
    fx=st.floats(100, 2000),
    aspect=st.floats(0.8, 1.25),
    cx=st.floats(-100, 500),
    cy=st.floats(-100, 500),
    skew=st.floats(-5, 5),
    a=angles,
    b=angles,
    c=angles,
    tx=st.floats(-5000, 5000),
    ty=st.floats(-5000, 5000),
    tz=st.floats(-5000, 5000),
    scale=scales,
)
def test_property_from_P_round_trip(
    fx: float,
    aspect: float,
    cx: float,
    cy: float,
    skew: float,
    a: float,
    b: float,
    c: float,
    tx: float,
    ty: float,
    tz: float,
    scale: float,
) -> None:
    K = intrinsics(fx, fx * aspect, cx, cy, skew)
    R = random_rotation(a, b, c)
    t = np.array([tx, ty, tz])
    cam = Camera.from_P(scale * K @ np.column_stack([R, t]))
    if scale < 0:  # looking the other way: -K [R | t] = (K diag(1, -1, 1)) TURN [R | t]
        K, R, t = K @ np.diag([1.0, -1.0, 1.0]), TURN @ R, TURN @ t
    np.testing.assert_allclose(cam.K, K, rtol=1e-9, atol=1e-7)
    np.testing.assert_allclose(cam.R, R, atol=1e-9)
    np.testing.assert_allclose(cam.t, t, atol=1e-6)
    np.testing.assert_allclose(cam.center, -R.T @ t, atol=1e-6)
    assert cam.mirrored == (scale < 0)
    # The mirrored image frame keeps the pose and flips K's second row.
    flipped = Camera.from_P(FLIP_V @ cam.P)
    np.testing.assert_allclose(flipped.K, FLIP_V @ cam.K, rtol=1e-9, atol=1e-7)
    np.testing.assert_allclose(flipped.R, cam.R, atol=1e-9)
    assert flipped.mirrored != cam.mirrored


@settings(max_examples=40, deadline=None)
@given(
    az1=angles,
    az2=angles,
    el1=st.floats(-0.6, 0.6),
    el2=st.floats(-0.6, 0.6),
    dist1=st.floats(2000, 6000),
    dist2=st.floats(2000, 6000),
    roll=angles,
    s1=scales,
    s2=scales,
    seed=st.integers(0, 2**16),
)
def test_property_two_random_cameras_triangulate_exactly(
    az1: float,
    az2: float,
    el1: float,
    el2: float,
    dist1: float,
    dist2: float,
    roll: float,
    s1: float,
    s2: float,
    seed: int,
) -> None:
    def camera(az: float, el: float, dist: float, scale: float, roll: float) -> Array:
        center = dist * np.array([np.cos(el) * np.cos(az), np.cos(el) * np.sin(az), np.sin(el)])
        R = look_at(center, np.zeros(3))
        R = random_rotation(0.0, 0.0, roll) @ R  # roll about the optical axis
        return scale * make_P(intrinsics(400, 400, 173, 130), R, center)

    P1, P2 = camera(az1, el1, dist1, s1, 0.0), camera(az2, el2, dist2, s2, roll)
    c1, c2 = camera_center(P1), camera_center(P2)
    angle = np.arccos(np.clip(np.dot(c1, c2) / (dist1 * dist2), -1, 1))
    if angle < 0.05 or angle > np.pi - 0.05:
        return  # near-degenerate baselines are covered by the parallel-ray test
    X = np.random.default_rng(seed).uniform(-500, 500, (10, 3))
    # The pixels come from the cameras looking at the body (|scale|); triangulation is given
    # the signed matrices, whose rays are the same lines.
    uv1, uv2 = project(np.sign(s1) * P1, X), project(np.sign(s2) * P2, X)
    assert np.all(np.isfinite(uv1)) and np.all(np.isfinite(uv2))
    # Scale invariance: any positive multiple of P images the same pixels; a negative one
    # looks away from the body.
    np.testing.assert_allclose(project(2.5 * abs(s1) / s1 * P1, X), uv1, rtol=1e-12, atol=1e-9)
    assert np.all(np.isnan(project(-np.sign(s1) * P1, X)))
    X_mid = triangulate_two_views(P1, P2, uv1, uv2)
    X_dlt = triangulate_dlt(np.stack([P1, P2]), np.stack([uv1, uv2], axis=-2))
    np.testing.assert_allclose(X_mid, X, atol=1e-5)
    np.testing.assert_allclose(X_dlt, X, atol=1e-5)
