"""Pinhole cameras from 3x4 projection matrices: projection, back-projection, triangulation.

Conventions (the same everywhere in hybridpose, see docs/data-format.md):

- World points are in millimetres. Pixels are ``(u, v) = (column, row)``, 0-based, and the
  centre of pixel ``(x, y)`` is at ``(u, v) = (x, y)``: pixel ``x`` covers ``[x - 0.5, x + 0.5)``.
- A camera is a 3x4 matrix ``P`` with ``(u w, v w, w) = P (X, Y, Z, 1)``. ``P`` is defined up
  to a *positive* scale only: its overall sign is meaningful. A point is *in front of* the
  camera exactly when ``w > 0``; ``-P`` is the camera at the same centre looking the other way,
  which sees what ``P`` has behind it.
- :meth:`Camera.from_P` fixes the scale with a positive factor so that ``K[2, 2] = 1``, and
  factors ``P = K [R | t]`` with ``R`` a proper rotation (``det R = +1``), ``K[0, 0] > 0`` and
  ``K[1, 1]`` of either sign. ``R[2]`` is the optical axis pointing into the scene and ``w`` is
  the camera-frame ``z``, the depth in mm (positive in front).
- Mirrored image frames: composing a camera with a pixel flip such as ``v -> H - v`` (a 3x3
  ``A`` with ``det A < 0``, e.g. ``[[1, 0, 0], [0, -1, H], [0, 0, 1]]``) changes the sign of
  ``det(P[:, :3])`` but not of ``w``, so ``A @ P`` is a legitimate camera that sees the same
  scene, in a mirrored image: :meth:`Camera.from_P` gives it ``K[1, 1] < 0``
  (:attr:`Camera.mirrored`) and the same ``R`` and centre. DHP19 stores such matrices; nothing
  here needs them to be un-flipped. ``det(P[:, :3])`` carries no front/back information.

NaN marks a missing value: NaN in gives NaN out, and points that cannot be imaged (behind the
camera) or rays that cannot be intersected (parallel) give NaN rather than an exception. Bad
arguments (wrong shapes, a singular or non-finite ``P``, infinite coordinates) raise
:class:`GeometryError`.

Example::

    cam = Camera.from_P(P)
    uv = project(cam.P, joints_mm)                          # (..., 13, 3) -> (..., 13, 2)
    X = triangulate_two_views(P2, P3, uv_cam2, uv_cam3)     # DHP19's 3D protocol
    X = triangulate_dlt(np.stack([P1, P2, P3, P4]), uv_all)  # uv_all (..., 4, 2)
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
import scipy.linalg

from hybridpose._jit import jit
from hybridpose.errors import HybridPoseError

FloatArray = npt.NDArray[np.float64]

PARALLEL_SIN_ANGLE = 1e-6
"""Two rays closer than this angle (radians, ~0.2 arcsec) count as parallel and give NaN.

At that angle two rays from cameras a metre apart would meet 1000 km away, so nothing of use is
lost, while the closest point of nearly parallel rays is dominated by rounding errors.
"""

_SINGULAR_RATIO = 1e-12  # |det M| / (product of M's row norms) below this: M is singular
_CAMERA_RTOL = 1e-9  # tolerance of the consistency checks in Camera.__post_init__


class GeometryError(HybridPoseError, ValueError):
    """A camera matrix or a point array is malformed (shape, singular, non-finite)."""


# --------------------------------------------------------------------------- validation
def _as_P(P: npt.ArrayLike, name: str = "P") -> FloatArray:
    arr = np.array(P, dtype=np.float64)  # a copy: callers' arrays are never touched
    if arr.shape != (3, 4):
        raise GeometryError(f"{name}: expected a 3x4 projection matrix, got shape {arr.shape}")
    if not np.all(np.isfinite(arr)):
        raise GeometryError(f"{name}: projection matrix has non-finite entries")
    return arr


def _as_vectors(x: npt.ArrayLike, dim: int, name: str) -> FloatArray:
    arr = np.asarray(x, dtype=np.float64)
    if arr.ndim < 1 or arr.shape[-1] != dim:
        raise GeometryError(f"{name}: expected shape (..., {dim}), got {arr.shape}")
    if np.any(np.isinf(arr)):
        raise GeometryError(f"{name}: infinite coordinates (use NaN for missing values)")
    return arr


def _orientation(P: FloatArray, name: str) -> float:
    """The sign of ``det(P[:, :3])``: +1 or -1; raises if ``P[:, :3]`` is singular.

    Used only as the singularity check: the sign says whether the image frame is mirrored
    relative to ``P``'s orientation, not which side of the camera is the front.
    """
    M = P[:, :3]
    det = float(np.linalg.det(M))
    # Hadamard's inequality bounds |det M| by the product of the row norms, so this ratio is a
    # scale-free measure of how far M is from singular.
    scale = float(np.prod(np.linalg.norm(M, axis=1)))
    if scale == 0.0 or abs(det) <= _SINGULAR_RATIO * scale:
        raise GeometryError(
            f"{name}: P[:, :3] is singular (not a finite projective camera: its centre is at "
            "infinity)"
        )
    return 1.0 if det > 0 else -1.0


# --------------------------------------------------------------------------- cameras
def camera_center(P: npt.ArrayLike) -> FloatArray:
    """The optical centre ``C`` of a camera: the null vector ``(C, 1)`` of ``P``.

    Args:
        P: (3, 4) projection matrix, any non-zero scale (the sign does not move the centre).

    Returns:
        The centre in world units (mm).

    Shape:
        (3, 4) -> (3,)

    Raises:
        GeometryError: if ``P`` is malformed or ``P[:, :3]`` is singular.
    """
    arr = _as_P(P)
    _orientation(arr, "P")
    # P (C, 1) = M C + p4 = 0; solving the 3x3 system is more accurate than an SVD of P whose
    # last column is orders of magnitude larger than the others (pixels x millimetres).
    center = np.linalg.solve(arr[:, :3], -arr[:, 3]).astype(np.float64)
    return center


@dataclass(frozen=True, eq=False)
class Camera:
    """A finite projective camera ``P = K [R | t]`` (build it with :meth:`from_P`).

    Attributes:
        P: (3, 4) projection matrix, scaled by a positive factor so that ``K[2, 2] = 1``: the
            third homogeneous coordinate ``w`` of a projected point is then its depth in mm,
            positive in front of the camera.
        K: (3, 3) intrinsics, upper triangular, ``K[0, 0] > 0``, ``K[1, 1] != 0``,
            ``K[2, 2] = 1``; focal lengths and principal point in pixels. ``K[1, 1] < 0`` is a
            mirrored (``v``-flipped) image frame, see :attr:`mirrored`.
        R: (3, 3) rotation world -> camera, ``det(R) = +1``; ``R[2]`` is the optical axis,
            pointing into the scene (camera ``z > 0`` is in front).
        t: (3,) translation world -> camera in mm: a world point ``X`` is ``R X + t`` in camera
            coordinates.
        center: (3,) optical centre in world mm, ``-R^T t``.

    All arrays are float64 copies marked read-only. The constructor checks that the fields are
    consistent (within a relative 1e-9), so a hand-built Camera cannot disagree with itself.
    """

    P: FloatArray
    K: FloatArray
    R: FloatArray
    t: FloatArray
    center: FloatArray

    def __post_init__(self) -> None:
        shapes = {"P": (3, 4), "K": (3, 3), "R": (3, 3), "t": (3,), "center": (3,)}
        for field_name, shape in shapes.items():
            arr = np.array(getattr(self, field_name), dtype=np.float64)
            if arr.shape != shape or not np.all(np.isfinite(arr)):
                raise GeometryError(
                    f"Camera.{field_name}: expected a finite array of shape {shape}, got "
                    f"shape {arr.shape}"
                )
            arr.setflags(write=False)
            object.__setattr__(self, field_name, arr)
        K, R, P = self.K, self.R, self.P
        if np.any(np.tril(K, -1) != 0) or not K[0, 0] > 0 or K[1, 1] == 0 or K[2, 2] != 1.0:
            raise GeometryError(
                "Camera.K: must be upper triangular with K[0, 0] > 0, K[1, 1] != 0 and K[2, 2] = 1"
            )
        if not np.allclose(R @ R.T, np.eye(3), rtol=0, atol=_CAMERA_RTOL) or np.linalg.det(R) < 0:
            raise GeometryError("Camera.R: not a proper rotation (orthonormal, det +1)")
        KRt = K @ np.column_stack([R, self.t])
        if not np.allclose(P, KRt, rtol=0, atol=_CAMERA_RTOL * np.linalg.norm(P)):
            raise GeometryError("Camera.P: differs from K [R | t]")
        center = -R.T @ self.t
        scale = max(1.0, float(np.linalg.norm(center)))
        if not np.allclose(self.center, center, rtol=0, atol=_CAMERA_RTOL * scale):
            raise GeometryError("Camera.center: differs from -R^T t")

    @property
    def mirrored(self) -> bool:
        """Whether the image frame is mirrored (``K[1, 1] < 0``, e.g. ``v -> H - v`` applied).

        Equivalently ``det(P[:, :3]) < 0``. A mirrored camera is a legitimate camera: it images
        the scene in front of it, only with the image rows reversed relative to ``R``.
        """
        return bool(self.K[1, 1] < 0)

    @classmethod
    def from_P(cls, P: npt.ArrayLike) -> Camera:
        """Decompose a projection matrix into intrinsics and pose (RQ decomposition).

        Args:
            P: (3, 4) projection matrix. Its sign is kept (only a positive factor is applied),
                so ``-P`` gives the camera at the same centre looking the other way. A matrix
                composed with a pixel flip such as ``v -> H - v`` (``det(P[:, :3]) < 0``) gives
                a :attr:`Camera.mirrored` camera with ``K[1, 1] < 0``.

        Returns:
            The camera with ``P`` normalised as described in :class:`Camera`.

        Raises:
            GeometryError: if ``P`` is not a finite 3x4 matrix or ``P[:, :3]`` is singular.
        """
        return _decompose(P, "P")

    @classmethod
    def from_KRt(cls, K: npt.ArrayLike, R: npt.ArrayLike, t: npt.ArrayLike) -> Camera:
        """Build ``P = K [R | t]`` and decompose it (so ``K`` is rescaled to ``K[2, 2] = 1``).

        Args:
            K: (3, 3) intrinsics in pixels (upper triangular, ``K[2, 2] > 0`` for a camera
                looking along ``R[2]``; ``K[2, 2] < 0`` is the camera looking the other way).
            R: (3, 3) rotation world -> camera.
            t: (3,) translation world -> camera in mm.

        Raises:
            GeometryError: if the shapes are wrong or ``K R`` is singular.
        """
        K_arr = np.asarray(K, dtype=np.float64)
        R_arr = np.asarray(R, dtype=np.float64)
        t_arr = np.asarray(t, dtype=np.float64)
        if K_arr.shape != (3, 3) or R_arr.shape != (3, 3) or t_arr.shape != (3,):
            raise GeometryError(
                f"Camera.from_KRt: expected K (3, 3), R (3, 3), t (3,); got {K_arr.shape}, "
                f"{R_arr.shape}, {t_arr.shape}"
            )
        return cls.from_P(K_arr @ np.column_stack([R_arr, t_arr]))


def _decompose(P: npt.ArrayLike, name: str) -> Camera:
    arr = _as_P(P, name)
    _orientation(arr, name)  # singularity check only: the sign of det M is not used
    upper, rot = scipy.linalg.rq(arr[:, :3])
    # RQ is unique up to the signs of K's diagonal; D = diag(signs) satisfies D D = I, so U D
    # and D Q are again a factorisation of M. K[0, 0] and K[2, 2] are made positive, and the
    # remaining sign (K[1, 1]'s) is whatever makes det(D Q) = +1: negative for a mirrored
    # image frame. K[2, 2] > 0 keeps P's sign, so w = K[2, 2] * z_cam: w > 0 iff z_cam > 0.
    d0, d2 = np.sign(upper[0, 0]), np.sign(upper[2, 2])
    d1 = d0 * d2 * np.sign(np.linalg.det(rot))  # det(D Q) = d0 d1 d2 det(Q) = +1
    signs = np.array([d0, d1, d2])
    K = np.triu(upper * signs[None, :])
    R = rot * signs[:, None]
    scale = K[2, 2]  # > 0: P is rescaled, never negated
    K = K / scale
    K[2, 2] = 1.0  # exactly, not 1 +- rounding
    P_norm = arr / scale
    t = np.linalg.solve(K, P_norm[:, 3])
    return Camera(P=P_norm, K=K, R=R, t=t, center=-R.T @ t)


# --------------------------------------------------------------------------- projection
def project(P: npt.ArrayLike, X: npt.ArrayLike) -> FloatArray:
    """Project world points to pixels; points that the camera cannot see give NaN.

    A point is imaged only if it lies strictly in front of the camera (``w > 0``). Points
    behind the camera, on its principal plane (``w = 0``) or with a NaN coordinate give
    ``(NaN, NaN)``; use :func:`depth` to tell these cases apart. Points in front but outside the
    image are projected normally (off-image pixel values).

    Args:
        P: (3, 4) projection matrix, any positive scale (``-P`` looks the other way);
            mirrored image frames (``det(P[:, :3]) < 0``) are fine.
        X: world points in mm.

    Returns:
        Pixel coordinates ``(u, v)`` in the pixel convention of this module.

    Shape:
        X (..., 3) -> (..., 2)

    Raises:
        GeometryError: bad ``P`` (shape, non-finite, singular) or ``X`` (shape, infinite).
    """
    arr = _as_P(P)
    pts = _as_vectors(X, 3, "X")
    _orientation(arr, "P")
    h = pts @ arr[:, :3].T + arr[:, 3]  # (..., 3) homogeneous pixels
    in_front = h[..., 2] > 0  # False for NaN as well
    uv = np.full((*pts.shape[:-1], 2), np.nan)
    np.divide(h[..., :2], h[..., 2:3], out=uv, where=in_front[..., None])
    return uv


def depth(P: npt.ArrayLike, X: npt.ArrayLike) -> FloatArray:
    """Signed depth of world points along the principal axis (Hartley & Zisserman eq. 6.15).

    This is ``w / ||P[2, :3]||``: invariant under positive scales of ``P``, negated by ``-P``.

    Args:
        P: (3, 4) projection matrix, any positive scale; mirrored image frames are fine.
        X: world points in mm.

    Returns:
        Distance in mm from the camera's principal plane, positive in front of the camera
        (``w > 0``), negative behind it, NaN where ``X`` has a NaN.

    Shape:
        X (..., 3) -> (...)
    """
    arr = _as_P(P)
    pts = _as_vectors(X, 3, "X")
    _orientation(arr, "P")
    w = pts @ arr[2, :3] + arr[2, 3]
    result: FloatArray = w / np.linalg.norm(arr[2, :3])
    return result


def backproject(P: npt.ArrayLike, uv: npt.ArrayLike) -> tuple[FloatArray, FloatArray]:
    """The viewing rays of pixels: ``X(s) = origin + s * direction`` projects to ``uv``.

    Args:
        P: (3, 4) projection matrix, any positive scale (``-P`` reverses the directions);
            mirrored image frames are fine.
        uv: pixel coordinates.

    Returns:
        ``(origin, direction)``: origin is the camera centre (repeated for every pixel, also
        where ``uv`` is NaN); direction is a unit vector pointing into the scene, i.e. points
        ``origin + s * direction`` with ``s > 0`` are in front of the camera. Direction is NaN
        where ``uv`` has a NaN.

    Shape:
        uv (..., 2) -> origin (..., 3), direction (..., 3)

    Raises:
        GeometryError: bad ``P`` or ``uv``.
    """
    return _rays(P, uv, "P", "uv")


def _ray_basis(P: npt.ArrayLike, P_name: str) -> tuple[FloatArray, FloatArray]:
    """The camera centre and ``M^-1`` (``P = [M | p4]``): what every ray of ``P`` needs."""
    arr = _as_P(P, P_name)
    _orientation(arr, P_name)
    center = np.linalg.solve(arr[:, :3], -arr[:, 3]).astype(np.float64)
    m_inv = np.linalg.inv(arr[:, :3]).astype(np.float64)
    return center, m_inv


def _rays_from(
    basis: tuple[FloatArray, FloatArray], uv: npt.ArrayLike, uv_name: str
) -> tuple[FloatArray, FloatArray]:
    center, m_inv = basis
    pix = _as_vectors(uv, 2, uv_name)
    # P (C + s d, 1) = s M d, so d = M^-1 (u, v, 1) images (u, v) with w = s (M d)_3 = s:
    # s > 0 is "in front", whatever the sign of det M (mirrored frames included). Normalising
    # d by a positive factor keeps that.
    direction = pix @ m_inv[:, :2].T + m_inv[:, 2]  # (..., 3)
    direction = direction / np.linalg.norm(direction, axis=-1, keepdims=True)
    origin = np.broadcast_to(center, (*pix.shape[:-1], 3)).copy()
    return origin, direction


def _rays(
    P: npt.ArrayLike, uv: npt.ArrayLike, P_name: str, uv_name: str
) -> tuple[FloatArray, FloatArray]:
    return _rays_from(_ray_basis(P, P_name), uv, uv_name)


# --------------------------------------------------------------------------- triangulation
def triangulate_two_views(
    P1: npt.ArrayLike, P2: npt.ArrayLike, uv1: npt.ArrayLike, uv2: npt.ArrayLike
) -> FloatArray:
    """The point closest to two viewing rays: the midpoint of their common perpendicular.

    This is DHP19's 3D protocol (each 2D joint back-projected from its camera centre, the
    least-squares closest point of the two rays taken). The midpoint minimises the sum of
    squared distances to the two lines; it is not restricted to lie in front of the cameras.

    Args:
        P1, P2: (3, 4) projection matrices of the two cameras, any non-zero scale (rays are
            lines here, so the sign does not matter); mirrored image frames are fine.
        uv1, uv2: pixel coordinates in camera 1 and camera 2; the leading dimensions broadcast.

    Returns:
        World points in mm; NaN where either pixel has a NaN or the rays are parallel (angle
        below :data:`PARALLEL_SIN_ANGLE`).

    Shape:
        uv1 (..., 2), uv2 (..., 2) -> (..., 3)

    Raises:
        GeometryError: bad matrices or pixel arrays, or leading dimensions that do not
            broadcast.
    """
    return TwoViewTriangulator(P1, P2)(uv1, uv2)


class TwoViewTriangulator:
    """:func:`triangulate_two_views` for a fixed pair of cameras, their matrices decomposed
    once (a stream triangulates every few milliseconds with the same two cameras).

    Raises:
        GeometryError: bad matrices (at construction) or pixel arrays (at call).
    """

    def __init__(self, P1: npt.ArrayLike, P2: npt.ArrayLike) -> None:
        self._bases = (_ray_basis(P1, "P1"), _ray_basis(P2, "P2"))

    def __call__(self, uv1: npt.ArrayLike, uv2: npt.ArrayLike) -> FloatArray:
        """The midpoints for pixels ``uv1`` (camera 1) and ``uv2`` (camera 2), as
        :func:`triangulate_two_views`."""
        pix1 = _as_vectors(uv1, 2, "uv1")
        pix2 = _as_vectors(uv2, 2, "uv2")
        if pix1.shape == pix2.shape and pix1.flags.c_contiguous and pix2.flags.c_contiguous:
            # a stream's case (J, 2) and (J, 2): no broadcasting or copying to do
            lead, flat1, flat2 = pix1.shape[:-1], pix1.reshape(-1, 2), pix2.reshape(-1, 2)
        else:
            try:
                lead = np.broadcast_shapes(pix1.shape[:-1], pix2.shape[:-1])
            except ValueError:
                raise GeometryError(
                    f"uv1 {pix1.shape[:-1]} and uv2 {pix2.shape[:-1]}: leading dimensions do "
                    "not broadcast"
                ) from None
            flat1 = np.ascontiguousarray(np.broadcast_to(pix1, (*lead, 2)).reshape(-1, 2))
            flat2 = np.ascontiguousarray(np.broadcast_to(pix2, (*lead, 2)).reshape(-1, 2))
        out = np.empty((len(flat1), 3))
        self.into(flat1, flat2, out)
        result: FloatArray = out.reshape(*lead, 3)
        return result

    def into(
        self, uv1: npt.NDArray[np.floating], uv2: npt.NDArray[np.floating], out: FloatArray
    ) -> None:
        """:meth:`__call__` without its checks, into ``out``: for a caller that guarantees
        ``uv1`` and ``uv2`` are (N, 2) arrays (float32 or float64, no infinities) and ``out``
        an (N, 3) float64 array. A stream triangulates every step, where the checks and
        allocations of :meth:`__call__` cost several times the arithmetic."""
        (c1, m1), (c2, m2) = self._bases
        _midpoints(c1, m1, c2, m2, uv1, uv2, PARALLEL_SIN_ANGLE**2, out)


@jit
def _ray(m_inv: FloatArray, u: float, v: float, d: FloatArray) -> None:
    """``d = M^-1 (u, v, 1)``, normalised (see :func:`_rays_from`)."""
    for k in range(3):
        d[k] = m_inv[k, 0] * u + m_inv[k, 1] * v + m_inv[k, 2]
    norm = np.sqrt(d[0] * d[0] + d[1] * d[1] + d[2] * d[2])
    for k in range(3):
        d[k] /= norm


@jit
def _midpoints(
    c1: FloatArray,
    m1: FloatArray,
    c2: FloatArray,
    m2: FloatArray,
    uv1: npt.NDArray[np.floating],
    uv2: npt.NDArray[np.floating],
    min_sin2: float,
    out: FloatArray,
) -> None:
    """Closest points of the rays ``c1 + s1 d1`` and ``c2 + s2 d2`` (Cramer's rule on the 2x2
    normal equations), their midpoint per pixel pair; NaN for NaN pixels or parallel rays.

    One compiled loop: numpy's per-call overhead is most of the cost for the 13 joints of a
    streamed pose."""
    d1 = np.empty(3)
    d2 = np.empty(3)
    r = c2 - c1
    for i in range(len(uv1)):
        _ray(m1, uv1[i, 0], uv1[i, 1], d1)
        _ray(m2, uv2[i, 0], uv2[i, 1], d2)
        n0 = d1[1] * d2[2] - d1[2] * d2[1]
        n1 = d1[2] * d2[0] - d1[0] * d2[2]
        n2 = d1[0] * d2[1] - d1[1] * d2[0]
        sin2 = n0 * n0 + n1 * n1 + n2 * n2  # sin^2 of the angle between the unit directions
        if not sin2 > min_sin2:  # parallel, or NaN
            out[i, :] = np.nan
            continue
        # (r x d2) . n and (r x d1) . n
        a = (r[1] * d2[2] - r[2] * d2[1]) * n0 + (r[2] * d2[0] - r[0] * d2[2]) * n1
        a += (r[0] * d2[1] - r[1] * d2[0]) * n2
        b = (r[1] * d1[2] - r[2] * d1[1]) * n0 + (r[2] * d1[0] - r[0] * d1[2]) * n1
        b += (r[0] * d1[1] - r[1] * d1[0]) * n2
        s1 = a / sin2
        s2 = b / sin2
        for k in range(3):
            out[i, k] = 0.5 * (c1[k] + s1 * d1[k] + c2[k] + s2 * d2[k])


def triangulate_dlt(Ps: npt.ArrayLike, uvs: npt.ArrayLike) -> FloatArray:
    """Linear N-view triangulation (homogeneous DLT), vectorised over points.

    Each valid view contributes the two equations ``u p3 - p1 = 0`` and ``v p3 - p2 = 0`` on
    the homogeneous point; the solution is the right singular vector of the smallest singular
    value (one batched SVD for all points). For conditioning (Hartley & Zisserman, sec. 4.4)
    the problem is solved in normalised coordinates: world points relative to the centroid of
    the camera centres and in units of their mean distance from it, pixels relative to each
    camera's principal point and in units of its focal length. The normalisation depends only
    on the cameras, never on the other points in the batch, so a point's result does not
    depend on what it is batched with.

    Args:
        Ps: (V, 3, 4) projection matrices, V >= 2, any non-zero scale each (the equations are
            homogeneous, so the sign does not matter); mirrored image frames are fine.
        uvs: pixel coordinates of each point in each view; a view with a NaN coordinate is
            ignored for that point.

    Returns:
        World points in mm; NaN where fewer than two views are valid or the solution is at
        infinity.

    Shape:
        Ps (V, 3, 4), uvs (..., V, 2) -> (..., 3)

    Raises:
        GeometryError: bad matrices (shape, non-finite, singular), fewer than two cameras,
            cameras sharing one centre, or ``uvs`` of the wrong shape or infinite.
    """
    mats = np.asarray(Ps, dtype=np.float64)
    if mats.ndim != 3 or mats.shape[1:] != (3, 4):
        raise GeometryError(f"Ps: expected shape (V, 3, 4), got {mats.shape}")
    n_views = mats.shape[0]
    if n_views < 2:
        raise GeometryError(f"Ps: triangulation needs at least 2 cameras, got {n_views}")
    pix = _as_vectors(uvs, 2, "uvs")
    if pix.ndim < 2 or pix.shape[-2] != n_views:
        raise GeometryError(f"uvs: expected shape (..., {n_views}, 2), got {pix.shape}")

    cams = [_decompose(mats[i], f"Ps[{i}]") for i in range(n_views)]
    centers = np.stack([c.center for c in cams])
    origin = centers.mean(axis=0)
    unit = float(np.mean(np.linalg.norm(centers - origin, axis=1)))
    if not unit > 0:
        raise GeometryError("Ps: all cameras share one centre; nothing can be triangulated")
    # world X = unit * X' + origin
    denorm_world = np.zeros((4, 4))
    denorm_world[:3, :3] = unit * np.eye(3)
    denorm_world[:3, 3] = origin
    denorm_world[3, 3] = 1.0
    # |K[1, 1]|: a mirrored camera has K[1, 1] < 0; the normalisation only needs a length.
    focal = np.array([np.sqrt(abs(c.K[0, 0] * c.K[1, 1])) for c in cams])  # (V,)
    principal = np.stack([c.K[:2, 2] for c in cams])  # (V, 2)
    norm_pix = np.zeros((n_views, 3, 3))
    norm_pix[:, 0, 0] = norm_pix[:, 1, 1] = 1.0 / focal
    norm_pix[:, :2, 2] = -principal / focal[:, None]
    norm_pix[:, 2, 2] = 1.0
    mats_n = norm_pix @ np.stack([c.P for c in cams]) @ denorm_world  # (V, 3, 4)

    valid = np.all(np.isfinite(pix), axis=-1)  # (..., V)
    pix_n = np.where(valid[..., None], (pix - principal) / focal[:, None], 0.0)
    rows_u = pix_n[..., 0:1] * mats_n[:, 2] - mats_n[:, 0]  # (..., V, 4)
    rows_v = pix_n[..., 1:2] * mats_n[:, 2] - mats_n[:, 1]
    # An invalid view contributes zero rows, which leave the null space unchanged.
    A = np.stack([rows_u, rows_v], axis=-2) * valid[..., None, None]  # (..., V, 2, 4)
    A = A.reshape((*A.shape[:-3], 2 * n_views, 4))
    _, _, vh = np.linalg.svd(A, full_matrices=False)
    h = vh[..., -1, :]  # (..., 4), unit norm
    finite = (np.sum(valid, axis=-1) >= 2) & (np.abs(h[..., 3]) > _SINGULAR_RATIO)
    w = np.where(finite, h[..., 3], 1.0)
    X = unit * (h[..., :3] / w[..., None]) + origin
    result: FloatArray = np.where(finite[..., None], X, np.nan)
    return result
