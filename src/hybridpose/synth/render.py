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

The per-pixel compositing loop is compiled with numba (:mod:`hybridpose._jit`): it is a small
sort over the few capsules that reach each pixel, which numpy could only express with
temporaries of size ``pixels x capsules``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from hybridpose._jit import jit
from hybridpose.geometry import Camera
from hybridpose.synth.body import Capsules
from hybridpose.synth.scene import Clothing, Lighting

FloatArray = npt.NDArray[np.float64]

MAX_LAYERS = 8
"""Surfaces composited per pixel (nearest first); deeper ones are hidden behind them anyway."""


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
    (possibly empty). Capsules must be in front of the camera.

    Returns:
        (K, C, 4) int64.
    """
    lo = np.minimum(capsules.a, capsules.b) - capsules.radius[:, None]  # (K, C, 3)
    hi = np.maximum(capsules.a, capsules.b) + capsules.radius[:, None]
    corners = np.stack(
        [
            np.stack([xs, ys, zs], axis=-1)
            for xs in (lo[..., 0], hi[..., 0])
            for ys in (lo[..., 1], hi[..., 1])
            for zs in (lo[..., 2], hi[..., 2])
        ],
        axis=-2,
    )  # (K, C, 8, 3)
    P = view.camera.P
    h = corners @ P[:, :3].T + P[:, 3]  # (K, C, 8, 3)
    if np.any(h[..., 2] <= 0):
        raise ValueError("a body capsule reaches behind a camera; the rig cannot see it whole")
    uv = h[..., :2] / h[..., 2:3]
    width, height = view.sensor_size
    x0 = np.clip(np.floor(uv[..., 0].min(-1) + 0.5) - margin, 0, width)
    x1 = np.clip(np.floor(uv[..., 0].max(-1) + 0.5) + margin + 1, 0, width)
    y0 = np.clip(np.floor(uv[..., 1].min(-1) + 0.5) - margin, 0, height)
    y1 = np.clip(np.floor(uv[..., 1].max(-1) + 0.5) + margin + 1, 0, height)
    return np.stack([x0, x1, y0, y1], axis=-1).astype(np.int64)


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
    clothing: Clothing,
    lighting: Lighting,
    box: tuple[int, int, int, int],
    boxes: npt.NDArray[np.int64] | None = None,
) -> npt.NDArray[np.float32]:
    """Render the linear intensity of ``box = (x0, x1, y0, y1)`` for each of K body poses.

    Args:
        view: camera rays and background.
        capsules: the body at K instants (a, b: (K, C, 3)).
        forward: (K, 3) the body's facing direction (for the clothing tint).
        clothing: per-capsule appearance.
        lighting: the light.
        box: the pixel rectangle to render (half-open); pixels outside are background.
        boxes: (K, C, 4) capsule boxes from :func:`capsule_boxes`, if already computed.

    Returns:
        (K, y1 - y0, x1 - x0) float32 intensities in (0, 1].
    """
    if boxes is None:
        boxes = capsule_boxes(view, capsules)
    x0, x1, y0, y1 = box
    k = capsules.a.shape[0]
    out = np.empty((k, y1 - y0, x1 - x0), dtype=np.float32)
    if out.size == 0:
        return out
    _render_kernel(
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
        lighting.unit_direction(),
        float(lighting.ambient),
        x0,
        y0,
        out,
    )
    return out


@jit
def _ray_capsule(
    o: FloatArray,
    d: FloatArray,
    a: FloatArray,
    b: FloatArray,
    r: float,
) -> tuple[float, float, float, float, float, float]:
    """Nearest surface of a capsule along a ray, or its silhouette where the ray misses.

    Returns ``(s, dist, nx, ny, nz, y)``: the ray parameter of the surface (or of the closest
    approach), the ray-axis distance, the outward normal there and the axial coordinate (mm
    from ``a``) of that point. ``s < 0`` when the capsule is behind the ray.
    """
    bax, bay, baz = b[0] - a[0], b[1] - a[1], b[2] - a[2]
    length2 = bax * bax + bay * bay + baz * baz
    length = np.sqrt(length2)
    mx, my, mz = o[0] - a[0], o[1] - a[1], o[2] - a[2]
    db = d[0] * bax + d[1] * bay + d[2] * baz
    dm = d[0] * mx + d[1] * my + d[2] * mz
    bm = bax * mx + bay * my + baz * mz
    # Closest approach of the ray's line to the axis segment. Minimising |m + s d - u ba|^2:
    # s = u db - dm and u = (bm - db dm) / (|ba|^2 - db^2). The distance left after minimising
    # over s is convex in u, so clamping the unconstrained u to the segment is exact.
    denom = length2 - db * db
    u = 0.0
    if denom > 1e-9 * max(length2, 1.0):
        u = min(max((bm - db * dm) / denom, 0.0), 1.0)
    elif length2 > 0.0:
        u = min(max(bm / length2, 0.0), 1.0)  # ray parallel to the axis: nearest end suffices
    s = u * db - dm
    px = o[0] + s * d[0] - (a[0] + u * bax)
    py = o[1] + s * d[1] - (a[1] + u * bay)
    pz = o[2] + s * d[2] - (a[2] + u * baz)
    dist = np.sqrt(px * px + py * py + pz * pz)
    if dist > r:
        # a miss: the silhouette's normal is the direction from the axis to the ray
        inv = 1.0 / dist
        return s, dist, px * inv, py * inv, pz * inv, u * length
    best = np.inf
    # lateral surface of the finite cylinder
    if length2 > 0.0:
        nx, ny, nz = bax / length, bay / length, baz / length
        dn = d[0] * nx + d[1] * ny + d[2] * nz
        mn = mx * nx + my * ny + mz * nz
        dvx, dvy, dvz = d[0] - dn * nx, d[1] - dn * ny, d[2] - dn * nz
        mvx, mvy, mvz = mx - mn * nx, my - mn * ny, mz - mn * nz
        qa = dvx * dvx + dvy * dvy + dvz * dvz
        qb = dvx * mvx + dvy * mvy + dvz * mvz
        qc = mvx * mvx + mvy * mvy + mvz * mvz - r * r
        disc = qb * qb - qa * qc
        if qa > 1e-12 and disc >= 0.0:
            t = (-qb - np.sqrt(disc)) / qa
            y = mn + t * dn
            if 0.0 <= y <= length:
                best = t
    # the two end balls
    for cx, cy, cz in ((a[0], a[1], a[2]), (b[0], b[1], b[2])):
        qx, qy, qz = o[0] - cx, o[1] - cy, o[2] - cz
        qb = qx * d[0] + qy * d[1] + qz * d[2]
        qc = qx * qx + qy * qy + qz * qz - r * r
        disc = qb * qb - qc
        if disc >= 0.0:
            t = -qb - np.sqrt(disc)
            best = min(best, t)
    if not np.isfinite(best):
        best = s  # grazing: rounding put the ray just outside every piece
    hx, hy, hz = o[0] + best * d[0], o[1] + best * d[1], o[2] + best * d[2]
    y = 0.0
    if length2 > 0.0:
        y = ((hx - a[0]) * bax + (hy - a[1]) * bay + (hz - a[2]) * baz) / length
        y = min(max(y, 0.0), length)
    ax = a[0] + bax * y / length if length2 > 0.0 else a[0]
    ay = a[1] + bay * y / length if length2 > 0.0 else a[1]
    az = a[2] + baz * y / length if length2 > 0.0 else a[2]
    nx, ny, nz = hx - ax, hy - ay, hz - az
    norm = np.sqrt(nx * nx + ny * ny + nz * nz)
    if norm > 0.0:
        nx, ny, nz = nx / norm, ny / norm, nz / norm
    return best, dist, nx, ny, nz, y


@jit
def _render_kernel(
    rays: FloatArray,
    origin: FloatArray,
    background: npt.NDArray[np.float32],
    pixel_angle: float,
    a: FloatArray,
    b: FloatArray,
    radius: FloatArray,
    boxes: npt.NDArray[np.int64],
    forward: FloatArray,
    albedo: FloatArray,
    stripe_amplitude: FloatArray,
    stripe_period: FloatArray,
    stripe_phase: FloatArray,
    tint_amplitude: FloatArray,
    light: FloatArray,
    ambient: float,
    x0: int,
    y0: int,
    out: npt.NDArray[np.float32],
) -> None:
    n_frames, h, w = out.shape
    n_caps = radius.shape[0]
    depth = np.empty((h, w, MAX_LAYERS))
    alpha = np.empty((h, w, MAX_LAYERS))
    shade = np.empty((h, w, MAX_LAYERS))
    count = np.zeros((h, w), dtype=np.int64)
    two_pi = 2.0 * np.pi
    for k in range(n_frames):
        count[:, :] = 0
        for c in range(n_caps):
            bx0 = max(boxes[k, c, 0], x0) - x0
            bx1 = min(boxes[k, c, 1], x0 + w) - x0
            by0 = max(boxes[k, c, 2], y0) - y0
            by1 = min(boxes[k, c, 3], y0 + h) - y0
            r = radius[c]
            for i in range(by0, by1):
                for j in range(bx0, bx1):
                    d = rays[y0 + i, x0 + j]
                    s, dist, nx, ny, nz, y = _ray_capsule(origin, d, a[k, c], b[k, c], r)
                    if s <= 0.0:
                        continue
                    cover = 0.5 + (r - dist) / (s * pixel_angle)
                    if cover <= 0.0:
                        continue
                    cover = min(cover, 1.0)
                    lambert = nx * light[0] + ny * light[1] + nz * light[2]
                    lambert = max(lambert, 0.0)
                    tint = nx * forward[k, 0] + ny * forward[k, 1] + nz * forward[k, 2]
                    stripe = np.sin(two_pi * y / stripe_period[c] + stripe_phase[c])
                    colour = albedo[c] * (1.0 + stripe_amplitude[c] * stripe)
                    colour *= 1.0 + tint_amplitude[c] * tint
                    value = max(colour, 0.005) * (ambient + (1.0 - ambient) * lambert)
                    # insert into the pixel's depth-sorted layer list (nearest first)
                    n = count[i, j]
                    if n == MAX_LAYERS:
                        if s >= depth[i, j, n - 1]:
                            continue
                        n -= 1
                    m = n
                    while m > 0 and depth[i, j, m - 1] > s:
                        depth[i, j, m] = depth[i, j, m - 1]
                        alpha[i, j, m] = alpha[i, j, m - 1]
                        shade[i, j, m] = shade[i, j, m - 1]
                        m -= 1
                    depth[i, j, m] = s
                    alpha[i, j, m] = cover
                    shade[i, j, m] = value
                    count[i, j] = n + 1
        for i in range(h):
            for j in range(w):
                transmit = 1.0
                value = 0.0
                for m in range(count[i, j]):
                    value += transmit * alpha[i, j, m] * shade[i, j, m]
                    transmit *= 1.0 - alpha[i, j, m]
                value += transmit * background[y0 + i, x0 + j]
                out[k, i, j] = value
