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
from hybridpose.synth.skeleton import SynthError

FloatArray = npt.NDArray[np.float64]

MAX_LAYERS = 8
"""Surfaces composited per pixel (nearest first); deeper ones are hidden behind them anyway."""

DEPTH_SOFTNESS = 0.2
"""Width of the soft depth test, in pixel footprints at the surface's depth (see _composite)."""

STRIPE_BLUR = 0.6
"""Standard deviation, in pixels, of the pixel response that band-limits clothing stripes."""


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
    """Fill ``out`` with the projected 8-corner boxes; True if any corner is behind."""
    behind = False
    corner = np.empty(3)
    for k in range(a.shape[0]):
        for c in range(a.shape[1]):
            u0 = v0 = np.inf
            u1 = v1 = -np.inf
            for i in range(8):
                for axis in range(3):
                    lo = min(a[k, c, axis], b[k, c, axis]) - radius[c]
                    hi = max(a[k, c, axis], b[k, c, axis]) + radius[c]
                    corner[axis] = hi if (i >> axis) & 1 else lo
                w = P[2, 0] * corner[0] + P[2, 1] * corner[1] + P[2, 2] * corner[2] + P[2, 3]
                if w <= 0.0:
                    behind = True
                    w = 1e-9
                u = (P[0, 0] * corner[0] + P[0, 1] * corner[1] + P[0, 2] * corner[2] + P[0, 3]) / w
                v = (P[1, 0] * corner[0] + P[1, 1] * corner[1] + P[1, 2] * corner[2] + P[1, 3]) / w
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
def _closest_approach(
    dx: float,
    dy: float,
    dz: float,
    mx: float,
    my: float,
    mz: float,
    bax: float,
    bay: float,
    baz: float,
    length2: float,
    bm: float,
) -> tuple[float, float, float]:
    """Closest approach of the ray ``o + s d`` to the axis segment ``a + u ba``.

    With ``m = o - a``, minimising ``|m + s d - u ba|^2`` gives ``s = u db - dm`` and
    ``u = (bm - db dm) / (|ba|^2 - db^2)``. The distance left after minimising over ``s`` is
    convex in ``u``, so clamping the unconstrained ``u`` to the segment is exact.

    Returns ``(s, u, squared distance)``.
    """
    db = dx * bax + dy * bay + dz * baz
    dm = dx * mx + dy * my + dz * mz
    denom = length2 - db * db
    u = 0.0
    if denom > 1e-9 * max(length2, 1.0):
        u = min(max((bm - db * dm) / denom, 0.0), 1.0)
    elif length2 > 0.0:
        u = min(max(bm / length2, 0.0), 1.0)  # ray parallel to the axis: any u is nearest
    s = u * db - dm
    px = mx + s * dx - u * bax
    py = my + s * dy - u * bay
    pz = mz + s * dz - u * baz
    return s, u, px * px + py * py + pz * pz


@jit
def _surface(
    dx: float,
    dy: float,
    dz: float,
    mx: float,
    my: float,
    mz: float,
    bax: float,
    bay: float,
    baz: float,
    length2: float,
    r: float,
    s: float,
    u: float,
    dist: float,
) -> tuple[float, float, float, float, float]:
    """The capsule's nearest surface along the ray, given the closest approach ``(s, u, dist)``.

    Where the ray misses (``dist > r``) the closest approach stands in for the surface: its
    normal points from the axis to the ray, as the silhouette's would. Where it hits, the
    first hit is the nearest of the finite cylinder's lateral surface and the two end balls
    (the cylinder's flat caps lie inside the balls).

    Returns ``(s, nx, ny, nz, y)``: ray parameter, unit outward normal, axial coordinate (mm
    from ``a``).
    """
    length = np.sqrt(length2)
    if dist > r:
        inv = 1.0 / dist
        nx = (mx + s * dx - u * bax) * inv
        ny = (my + s * dy - u * bay) * inv
        nz = (mz + s * dz - u * baz) * inv
        return s, nx, ny, nz, u * length
    best = np.inf
    if length2 > 0.0:
        ax, ay, az = bax / length, bay / length, baz / length
        dn = dx * ax + dy * ay + dz * az
        mn = mx * ax + my * ay + mz * az
        dvx, dvy, dvz = dx - dn * ax, dy - dn * ay, dz - dn * az
        mvx, mvy, mvz = mx - mn * ax, my - mn * ay, mz - mn * az
        qa = dvx * dvx + dvy * dvy + dvz * dvz
        qb = dvx * mvx + dvy * mvy + dvz * mvz
        qc = mvx * mvx + mvy * mvy + mvz * mvz - r * r
        disc = qb * qb - qa * qc
        if qa > 1e-12 and disc >= 0.0:
            t = (-qb - np.sqrt(disc)) / qa
            y = mn + t * dn
            if 0.0 <= y <= length:
                best = t
    # the end balls, at a (m = o - a) and at b (o - b = m - ba)
    for qx, qy, qz in ((mx, my, mz), (mx - bax, my - bay, mz - baz)):
        qb = qx * dx + qy * dy + qz * dz
        disc = qb * qb - (qx * qx + qy * qy + qz * qz - r * r)
        if disc >= 0.0:
            best = min(best, -qb - np.sqrt(disc))
    if not np.isfinite(best):
        best = s  # grazing: rounding put the ray just outside every piece
    hx, hy, hz = mx + best * dx, my + best * dy, mz + best * dz  # hit point minus a
    y = 0.0
    if length2 > 0.0:
        y = min(max((hx * bax + hy * bay + hz * baz) / length, 0.0), length)
        hx -= bax * y / length
        hy -= bay * y / length
        hz -= baz * y / length
    norm = np.sqrt(hx * hx + hy * hy + hz * hz)
    if norm > 0.0:
        hx, hy, hz = hx / norm, hy / norm, hz / norm
    return best, hx, hy, hz, y


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
    mx, my, mz = o[0] - a[0], o[1] - a[1], o[2] - a[2]
    bax, bay, baz = b[0] - a[0], b[1] - a[1], b[2] - a[2]
    length2 = bax * bax + bay * bay + baz * baz
    bm = bax * mx + bay * my + baz * mz
    s, u, dist2 = _closest_approach(d[0], d[1], d[2], mx, my, mz, bax, bay, baz, length2, bm)
    dist = np.sqrt(dist2)
    s, nx, ny, nz, y = _surface(d[0], d[1], d[2], mx, my, mz, bax, bay, baz, length2, r, s, u, dist)
    return s, dist, nx, ny, nz, y


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
    """Render ``out`` (K, h, w), the box at ``(x0, y0)``, for each of the K poses of the capsules.

    Per frame, every pixel of each capsule's box that the capsule covers gets a layer (depth,
    coverage, shade; :func:`_coverage`, :func:`_shade`) in its depth-sorted list, and the
    layers are then composited over the background (:func:`_composite_frame`).
    """
    n_frames, h, w = out.shape
    n_caps = radius.shape[0]
    depth = np.empty((h, w, MAX_LAYERS))
    alpha = np.empty((h, w, MAX_LAYERS))
    shade = np.empty((h, w, MAX_LAYERS))
    count = np.zeros((h, w), dtype=np.int64)
    for k in range(n_frames):
        count[:, :] = 0
        for c in range(n_caps):
            bx0 = max(boxes[k, c, 0], x0) - x0
            bx1 = min(boxes[k, c, 1], x0 + w) - x0
            by0 = max(boxes[k, c, 2], y0) - y0
            by1 = min(boxes[k, c, 3], y0 + h) - y0
            r = radius[c]
            # per-capsule constants of the closest-approach test (see _ray_capsule)
            mx, my, mz = origin[0] - a[k, c, 0], origin[1] - a[k, c, 1], origin[2] - a[k, c, 2]
            bax, bay, baz = (
                b[k, c, 0] - a[k, c, 0],
                b[k, c, 1] - a[k, c, 1],
                b[k, c, 2] - a[k, c, 2],
            )
            length2 = bax * bax + bay * bay + baz * baz
            bm = bax * mx + bay * my + baz * mz
            for i in range(by0, by1):
                for j in range(bx0, bx1):
                    dx, dy, dz = (
                        rays[y0 + i, x0 + j, 0],
                        rays[y0 + i, x0 + j, 1],
                        rays[y0 + i, x0 + j, 2],
                    )
                    # cheap rejection first: most pixels of a capsule's box miss it by more
                    # than half a pixel, which the ray-axis distance alone decides
                    s, u, dist2 = _closest_approach(
                        dx, dy, dz, mx, my, mz, bax, bay, baz, length2, bm
                    )
                    if s <= 0.0:
                        continue
                    reach = r + 0.5 * s * pixel_angle
                    if dist2 >= reach * reach:
                        continue
                    cover, s, nx, ny, nz, y = _coverage(
                        dx, dy, dz, mx, my, mz, bax, bay, baz, length2, r, s, u, dist2, pixel_angle
                    )
                    if cover <= 0.0:
                        continue
                    value = _shade(
                        nx, ny, nz, y, s, pixel_angle, light,
                        forward[k, 0], forward[k, 1], forward[k, 2],
                        albedo[c], stripe_amplitude[c], stripe_period[c], stripe_phase[c],
                        tint_amplitude[c], ambient,
                    )  # fmt: skip
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
        _composite_frame(depth, alpha, shade, count, background, pixel_angle, x0, y0, out[k])


@jit
def _coverage(
    dx: float,
    dy: float,
    dz: float,
    mx: float,
    my: float,
    mz: float,
    bax: float,
    bay: float,
    baz: float,
    length2: float,
    r: float,
    s: float,
    u: float,
    dist2: float,
    pixel_angle: float,
) -> tuple[float, float, float, float, float, float]:
    """How much of a pixel one capsule covers, and the surface seen there.

    ``(dx, dy, dz)`` is the pixel's ray, ``(s, u, dist2)`` its closest approach to the
    capsule's axis (:func:`_closest_approach`, with the capsule's constants). Returns
    ``(cover, s, nx, ny, nz, y)``: the anti-aliased coverage in ``(0, 1]`` and the surface of
    :func:`_surface`, or a coverage of 0 where the surface lies behind the camera or the
    capsule does not reach the pixel.
    """
    dist = np.sqrt(dist2)
    s, nx, ny, nz, y = _surface(dx, dy, dz, mx, my, mz, bax, bay, baz, length2, r, s, u, dist)
    if s <= 0.0:
        return 0.0, s, nx, ny, nz, y
    cover = 0.5 + (r - dist) / (s * pixel_angle)
    if cover <= 0.0:
        return 0.0, s, nx, ny, nz, y
    return min(cover, 1.0), s, nx, ny, nz, y


@jit
def _shade(
    nx: float,
    ny: float,
    nz: float,
    y: float,
    s: float,
    pixel_angle: float,
    light: FloatArray,
    fx: float,
    fy: float,
    fz: float,
    albedo: float,
    stripe_amplitude: float,
    stripe_period: float,
    stripe_phase: float,
    tint_amplitude: float,
    ambient: float,
) -> float:
    """Intensity of a capsule's surface point: striped, tinted clothing under Lambertian light.

    ``(nx, ny, nz)`` is the unit normal, ``y`` the axial coordinate (mm from ``a``), ``s`` the
    ray parameter (depth along the unit ray), ``(fx, fy, fz)`` the body's facing direction;
    the others are the capsule's clothing and the light.
    """
    two_pi = 2.0 * np.pi
    lambert = nx * light[0] + ny * light[1] + nz * light[2]
    lambert = max(lambert, 0.0)
    tint = nx * fx + ny * fy + nz * fz
    # The pixel integrates over its footprint: a stripe period spanning few pixels is
    # attenuated like a Gaussian pixel response (sigma STRIPE_BLUR px) would attenuate it,
    # instead of aliasing into false events.
    cycles = s * pixel_angle / stripe_period  # periods per pixel
    fade = np.exp(-2.0 * (np.pi * STRIPE_BLUR * cycles) ** 2)
    stripe = np.sin(two_pi * y / stripe_period + stripe_phase)
    colour = albedo * (1.0 + fade * stripe_amplitude * stripe)
    colour *= 1.0 + tint_amplitude * tint
    value: float = max(colour, 0.005) * (ambient + (1.0 - ambient) * lambert)
    return value


@jit
def _composite_frame(
    depth: FloatArray,
    alpha: FloatArray,
    shade: FloatArray,
    count: npt.NDArray[np.int64],
    background: npt.NDArray[np.float32],
    pixel_angle: float,
    x0: int,
    y0: int,
    out: npt.NDArray[np.float32],
) -> None:
    """One frame ``out`` (h, w) from the layers: :func:`_composite`, or the background alone."""
    h, w = out.shape
    for i in range(h):
        for j in range(w):
            if count[i, j] == 0:
                out[i, j] = background[y0 + i, x0 + j]
            else:
                out[i, j] = _composite(
                    depth,
                    alpha,
                    shade,
                    i,
                    j,
                    count[i, j],
                    background[y0 + i, x0 + j],
                    pixel_angle,
                )


@jit
def _composite(
    depth: FloatArray,
    alpha: FloatArray,
    shade: FloatArray,
    i: int,
    j: int,
    n: int,
    background: float,
    pixel_angle: float,
) -> float:
    """Pixel ``(i, j)``'s colour from its ``n`` surfaces (layers of the arrays), soft depth test.

    Surface ``m`` is seen through every other surface ``q`` in proportion to how surely ``q``
    lies in front: ``visibility_m = prod_q (1 - alpha_q * sigmoid((z_m - z_q) / tau))`` with
    ``tau`` a fraction of the pixel's footprint. Far apart in depth this is ordinary
    front-to-back compositing; where two surfaces interpenetrate (a limb entering the torso)
    the crease between them is blended over a fraction of a pixel, so a pixel's intensity stays
    continuous in time as the crease moves across it. The background shows through
    ``prod_q (1 - alpha_q)``.
    """
    transmit = 1.0
    weight = 0.0
    value = 0.0
    for m in range(n):
        tau = DEPTH_SOFTNESS * depth[i, j, m] * pixel_angle
        visible = 1.0
        for q in range(n):
            if q != m:
                x = (depth[i, j, m] - depth[i, j, q]) / tau  # > 0 where q lies in front of m
                if x > 40.0:
                    visible *= 1.0 - alpha[i, j, q]
                elif x > -40.0:
                    visible *= 1.0 - alpha[i, j, q] / (1.0 + np.exp(-x))
        weight += alpha[i, j, m] * visible
        value += alpha[i, j, m] * visible * shade[i, j, m]
        transmit *= 1.0 - alpha[i, j, m]
    if weight > 0.0:
        return (1.0 - transmit) * value / weight + transmit * background
    return background
