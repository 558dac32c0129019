"""Ray-cast rendering of the capsule body: exact self-occlusion, Lambertian shading, soft edges.

Each pixel casts one ray through its centre. A capsule (segment ``a -> b`` with radius ``r``) is
intersected exactly (the lateral surface of the finite cylinder and the two end balls); the
nearest surfaces along the ray are composited front to back, so limbs occlude each other and the
torso correctly wherever they pass.

Edges are anti-aliased analytically: a capsule covers a pixel by
``alpha = clip(0.5 + (r - d) / footprint, 0, 1)``, where ``d`` is the distance between the ray
and the capsule's axis segment and ``footprint`` the pixel's width at that depth. Intensity is
then a continuous function of time as the body moves, which is what lets the event simulator's
adaptive sampler bound every pixel's change between samples (a hard edge would jump by the full
contrast however finely time is sampled).

Surfaces are coloured either as the first generator did (a plain
:class:`~hybridpose.synth.scene.Clothing`: one albedo per capsule, stripes, a tint) or by a
body-fixed texture (an :class:`~hybridpose.synth.appearance.Appearance`, the model in
:mod:`hybridpose.synth.texture`) that sets the albedo before the Lambertian shading. A textured
surface that a fully covering one hides is not textured at all, so the texture costs about once
per visible pixel.

The per-pixel compositing loop is compiled with numba (:mod:`hybridpose.synth.render_kernels`):
it is a small sort over the few capsules that reach each pixel, which numpy could only express
with temporaries of size ``pixels x capsules``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from hybridpose._jit import jit
from hybridpose.geometry import Camera
from hybridpose.synth.appearance import Appearance
from hybridpose.synth.body import Capsules
from hybridpose.synth.render_kernels import render_kernel
from hybridpose.synth.scene import Clothing, Lighting
from hybridpose.synth.skeleton import SynthError

FloatArray = npt.NDArray[np.float64]


@dataclass(frozen=True, eq=False)
class View:
    """One camera ready for rendering: its rays and its static background.

    Attributes:
        camera: the pinhole camera.
        rays: (H, W, 3) unit world directions of the rays through the pixel centres.
        background: (H, W) linear intensity of the static scene behind the subject.
        pixel_angle: the angular width of one pixel (radians), for the anti-aliasing footprint.
    """

    camera: Camera
    rays: FloatArray
    background: npt.NDArray[np.float32]
    pixel_angle: float

    @property
    def sensor_size(self) -> tuple[int, int]:
        return self.background.shape[1], self.background.shape[0]


def make_view(camera: Camera, background: npt.ArrayLike) -> View:
    """Precompute the rays of ``camera`` for a sensor the size of ``background`` (H, W)."""
    bg = np.ascontiguousarray(background, dtype=np.float32)
    height, width = bg.shape
    v, u = np.mgrid[0:height, 0:width].astype(np.float64)
    pixels = np.stack([u, v, np.ones_like(u)], axis=-1)  # (H, W, 3) homogeneous
    # a ray direction is R^T K^-1 (u, v, 1): the sign of K (mirrored frames) is kept
    directions = pixels @ (camera.R.T @ np.linalg.inv(camera.K)).T
    directions /= np.linalg.norm(directions, axis=-1, keepdims=True)
    focal = float(np.sqrt(abs(camera.K[0, 0] * camera.K[1, 1])))
    return View(camera, np.ascontiguousarray(directions), bg, 1.0 / focal)


def capsule_boxes(view: View, capsules: Capsules, margin: int = 2) -> npt.NDArray[np.int64]:
    """Pixel boxes ``(x0, x1, y0, y1)`` (half-open) that contain each capsule's image.

    The capsule lies inside its axis-aligned 3D box, a convex set whose image is the hull of its
    8 projected corners; so the bounding box of those corners bounds the capsule's image exactly.
    ``margin`` pixels are added for the anti-aliased edge. Boxes are clipped to the sensor
    (possibly empty).

    Returns:
        (K, C, 4) int64.

    Raises:
        SynthError: a capsule reaches behind the camera (the rig cannot see the body whole).
    """
    k, c = capsules.a.shape[:2]
    out = np.empty((k, c, 4), dtype=np.int64)
    width, height = view.sensor_size
    behind = _boxes_kernel(
        np.ascontiguousarray(view.camera.P, dtype=np.float64),
        np.ascontiguousarray(capsules.a, dtype=np.float64),
        np.ascontiguousarray(capsules.b, dtype=np.float64),
        np.ascontiguousarray(capsules.radius, dtype=np.float64),
        width,
        height,
        margin,
        out,
    )
    if behind:
        raise SynthError("a body capsule reaches behind a camera; the rig cannot see it whole")
    return out


@jit
def _boxes_kernel(
    P: FloatArray,
    a: FloatArray,
    b: FloatArray,
    radius: FloatArray,
    width: int,
    height: int,
    margin: int,
    out: npt.NDArray[np.int64],
) -> bool:
    """Fill ``out`` with the projected 8-corner boxes; True if any corner is behind.

    A corner's coordinate on each axis is the box's low or high end, so the products
    ``P[row, axis] * coordinate`` are formed once per capsule (``terms[row, axis, end]``) and
    each corner sums its three in the order ``P @ corner`` would."""
    behind = False
    terms = np.empty((3, 3, 2))
    for k in range(a.shape[0]):
        for c in range(a.shape[1]):
            for axis in range(3):
                lo = min(a[k, c, axis], b[k, c, axis]) - radius[c]
                hi = max(a[k, c, axis], b[k, c, axis]) + radius[c]
                for row in range(3):
                    terms[row, axis, 0] = P[row, axis] * lo
                    terms[row, axis, 1] = P[row, axis] * hi
            u0 = v0 = np.inf
            u1 = v1 = -np.inf
            for i in range(8):
                e0, e1, e2 = i & 1, (i >> 1) & 1, (i >> 2) & 1
                w = terms[2, 0, e0] + terms[2, 1, e1] + terms[2, 2, e2] + P[2, 3]
                if w <= 0.0:
                    behind = True
                    w = 1e-9
                u = (terms[0, 0, e0] + terms[0, 1, e1] + terms[0, 2, e2] + P[0, 3]) / w
                v = (terms[1, 0, e0] + terms[1, 1, e1] + terms[1, 2, e2] + P[1, 3]) / w
                u0, u1 = min(u0, u), max(u1, u)
                v0, v1 = min(v0, v), max(v1, v)
            out[k, c, 0] = min(max(np.floor(u0 + 0.5) - margin, 0), width)
            out[k, c, 1] = min(max(np.floor(u1 + 0.5) + margin + 1, 0), width)
            out[k, c, 2] = min(max(np.floor(v0 + 0.5) - margin, 0), height)
            out[k, c, 3] = min(max(np.floor(v1 + 0.5) + margin + 1, 0), height)
    return behind


def union_box(boxes: npt.NDArray[np.int64]) -> tuple[int, int, int, int]:
    """The smallest box ``(x0, x1, y0, y1)`` holding every non-empty box of ``(..., 4)``."""
    flat = boxes.reshape(-1, 4)
    keep = (flat[:, 1] > flat[:, 0]) & (flat[:, 3] > flat[:, 2])
    if not keep.any():
        return (0, 0, 0, 0)
    flat = flat[keep]
    return (
        int(flat[:, 0].min()),
        int(flat[:, 1].max()),
        int(flat[:, 2].min()),
        int(flat[:, 3].max()),
    )


def render(
    view: View,
    capsules: Capsules,
    forward: npt.ArrayLike,
    clothing: Clothing | Appearance,
    lighting: Lighting,
    box: tuple[int, int, int, int],
    boxes: npt.NDArray[np.int64] | None = None,
) -> npt.NDArray[np.float32]:
    """Render the linear intensity of ``box = (x0, x1, y0, y1)`` for each of K body poses.

    Args:
        view: camera rays and background.
        capsules: the body at K instants (a, b: (K, C, 3)).
        forward: (K, 3) the body's facing direction (for the clothing tint).
        clothing: per-capsule appearance: plain :class:`Clothing`, or a textured
            :class:`Appearance` (which needs ``capsules.frame``).
        lighting: the light.
        box: the pixel rectangle to render (half-open); pixels outside are background.
        boxes: (K, C, 4) capsule boxes from :func:`capsule_boxes`, if already computed.

    Returns:
        (K, y1 - y0, x1 - x0) float32 intensities in (0, 1].

    Raises:
        SynthError: a textured appearance for capsules without frames, or of another count.
    """
    x0, x1, y0, y1 = box
    k = capsules.a.shape[0]
    out = np.empty((k, y1 - y0, x1 - x0), dtype=np.float32)
    origins = np.tile(np.array([x0, y0], dtype=np.int64), (k, 1))
    pose = np.arange(k)
    _render_into(view, capsules, forward, clothing, lighting, boxes, origins, pose, out, None)
    return out


def render_tiles(
    view: View,
    capsules: Capsules,
    forward: npt.ArrayLike,
    clothing: Clothing | Appearance,
    lighting: Lighting,
    origins: npt.ArrayLike,
    size: int,
    boxes: npt.NDArray[np.int64] | None = None,
    wanted: npt.NDArray[np.bool_] | None = None,
    poses: npt.ArrayLike | None = None,
) -> npt.NDArray[np.float32]:
    """Render one ``size`` x ``size`` tile per origin: tile ``k`` has its top-left pixel at
    ``origins[k] = (x, y)`` and shows the body at pose ``poses[k]`` of ``capsules`` (and of
    ``forward`` and ``boxes``; by default pose ``k``, so that many tiles can share a pose
    without copies of it). Each pixel's value is the one :func:`render` gives it (a pixel
    depends on its ray and the pose alone); pixels past the sensor's edge are 0, and so are
    those that ``wanted`` (K, size, size), when given, leaves out (they cost nearly nothing).
    The tiles of many instants and places render in one call.

    Returns:
        (K, size, size) float32.
    """
    n_poses = capsules.a.shape[0]
    pose = np.arange(n_poses) if poses is None else np.ascontiguousarray(poses, dtype=np.int64)
    if pose.ndim != 1 or (len(pose) and (pose.min() < 0 or pose.max() >= n_poses)):
        raise SynthError(f"render_tiles: poses must index the {n_poses} poses given")
    k = len(pose)
    corners = checked_origins(view, origins, k, "render_tiles: need {k} tile origins")
    out = np.empty((k, size, size), dtype=np.float32)
    if wanted is not None:
        wanted = np.ascontiguousarray(wanted, dtype=np.bool_)
        if wanted.shape != out.shape:
            raise SynthError(f"render_tiles: wanted has shape {wanted.shape}, expected {out.shape}")
    _render_into(view, capsules, forward, clothing, lighting, boxes, corners, pose, out, wanted)
    return out


def checked_origins(view: View, origins: npt.ArrayLike, k: int, what: str) -> npt.NDArray[np.int64]:
    """``origins`` as (k, 2) int64 pixel positions ``(x, y)`` on the sensor.

    Raises:
        SynthError: not ``k`` of them, or one off the sensor (``what``, formatted with ``k``,
            starts the message).
    """
    corners = np.ascontiguousarray(origins, dtype=np.int64).reshape(-1, 2)
    width, height = view.sensor_size
    if (
        len(corners) != k
        or (corners < 0).any()
        or (corners[:, 0] >= width).any()
        or (corners[:, 1] >= height).any()
    ):
        raise SynthError(f"{what.format(k=k)} inside the {width}x{height} sensor")
    return corners


def _render_into(
    view: View,
    capsules: Capsules,
    forward: npt.ArrayLike,
    clothing: Clothing | Appearance,
    lighting: Lighting,
    boxes: npt.NDArray[np.int64] | None,
    origins: npt.NDArray[np.int64],
    pose: npt.NDArray[np.int64],
    out: npt.NDArray[np.float32],
    wanted: npt.NDArray[np.bool_] | None,
) -> None:
    """Render into ``out`` (K, h, w), frame ``k``'s top-left pixel at ``origins[k]`` and its
    body at pose ``pose[k]`` of ``capsules`` (``boxes``: the capsules' boxes, computed when
    None; ``wanted``: the pixels to render, all when None)."""
    if out.size == 0:
        return
    if boxes is None:
        boxes = capsule_boxes(view, capsules)
    texture, frame = texture_arguments(capsules, clothing)
    if isinstance(clothing, Appearance):  # the plain arrays go unused
        clothing = Clothing(*(np.ones(capsules.count) for _ in range(5)))
    render_kernel(
        view.rays,
        view.camera.center.astype(np.float64),
        view.background,
        float(view.pixel_angle),
        np.ascontiguousarray(capsules.a, dtype=np.float64),
        np.ascontiguousarray(capsules.b, dtype=np.float64),
        np.ascontiguousarray(capsules.radius, dtype=np.float64),
        np.ascontiguousarray(boxes, dtype=np.int64),
        np.ascontiguousarray(forward, dtype=np.float64),
        np.ascontiguousarray(clothing.albedo, dtype=np.float64),
        np.ascontiguousarray(clothing.stripe_amplitude, dtype=np.float64),
        np.ascontiguousarray(clothing.stripe_period, dtype=np.float64),
        np.ascontiguousarray(clothing.stripe_phase, dtype=np.float64),
        np.ascontiguousarray(clothing.tint_amplitude, dtype=np.float64),
        texture,
        frame,
        lighting.unit_direction(),
        float(lighting.ambient),
        np.ascontiguousarray(origins[:, 0]),
        np.ascontiguousarray(origins[:, 1]),
        pose,
        out,
        wanted,
    )


def texture_arguments(
    capsules: Capsules, clothing: Clothing | Appearance
) -> tuple[FloatArray | None, FloatArray | None]:
    """The kernel's ``texture`` (C, COLUMNS) and ``frame`` (K, C, 3, 3), None for plain
    clothing."""
    if not isinstance(clothing, Appearance):
        return None, None
    if capsules.frame is None:
        raise SynthError("a textured appearance needs capsule frames (see body_capsules)")
    if clothing.table.shape[0] != capsules.count:
        raise SynthError(
            f"the appearance describes {clothing.table.shape[0]} capsules, the body has "
            f"{capsules.count}"
        )
    return (
        np.ascontiguousarray(clothing.table, dtype=np.float64),
        np.ascontiguousarray(capsules.frame, dtype=np.float64),
    )
