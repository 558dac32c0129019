"""The compiled per-pixel kernels of the renderer (:mod:`hybridpose.synth.render`).

Ray-capsule intersection, anti-aliased coverage, plain and textured shading, the per-pixel layer
lists and their soft-depth compositing, and the evaluation of body-fixed textures (the model:
:mod:`hybridpose.synth.texture`). They live in one file, with every constant they read, because
numba's on-disk cache (:func:`hybridpose._jit.jit`) only notices edits to the file of the
function it compiled: a kernel that called into another module would keep running the old code
of that module after an edit.
"""

from __future__ import annotations

import math

import numpy as np
import numpy.typing as npt

from hybridpose._jit import jit, jit_inline

FloatArray = npt.NDArray[np.float64]

MAX_LAYERS = 8
"""Surfaces composited per pixel (nearest first); deeper ones are hidden behind them anyway."""

DEPTH_SOFTNESS = 0.2
"""Width of the soft depth test, in pixel footprints at the surface's depth (see _composite)."""

STRIPE_BLUR = 0.6
"""Standard deviation, in pixels, of the pixel response that band-limits clothing stripes."""

PIXEL_BLUR = 0.6
"""Standard deviation, in pixels, of the pixel response that band-limits every feature."""

MIN_FACING = 0.2
"""Smallest ``-n . d`` used for the slant: the stretch is capped at 5 (near the silhouette a
surface feature is blurred as if seen at 78 degrees)."""

MAX_WAVES, MAX_LINES, MAX_BLOBS = 7, 3, 5
"""Features per capsule (:class:`hybridpose.synth.texture.Surface`)."""

# ---------------------------------------------------------------- a capsule's packed texture row
# (written by hybridpose.synth.texture.pack_surfaces)
ALBEDO_A, ALBEDO_B = 0, 1
BOUNDARY = 2  # g (3 columns): material B where g . p > offset; g = 0: material A only
BOUNDARY_OFFSET, BOUNDARY_WIDTH = 5, 6
TINT = 7  # front/back tint: albedo * (1 + tint * (n . forward))
FOLD_CENTRE, FOLD_WIDTH, FOLD_BASE = 8, 9, 10  # envelope of the folded waves along the axis
N_WAVES, N_LINES, N_BLOBS = 11, 12, 13
WAVES = 14
WAVE_SIZE = 8  # k (3), |k|^2, phase, amplitude on material A, on material B, folded (0/1)
LINES = WAVES + MAX_WAVES * WAVE_SIZE
LINE_SIZE = 6  # g (3), offset, width, depth
BLOBS = LINES + MAX_LINES * LINE_SIZE
BLOB_SIZE = 6  # centre (3), radius, albedo, strength
COLUMNS = BLOBS + MAX_BLOBS * BLOB_SIZE


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
def ray_capsule(
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
def render_kernel(
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
    texture: FloatArray | None,
    frame: FloatArray | None,
    light: FloatArray,
    ambient: float,
    x0: npt.NDArray[np.int64],
    y0: npt.NDArray[np.int64],
    pose: npt.NDArray[np.int64],
    out: npt.NDArray[np.float32],
    wanted: npt.NDArray[np.bool_] | None,
) -> None:
    """Render ``out`` (K, h, w): frame ``k`` is the rectangle whose top-left pixel is
    ``(x0[k], y0[k])`` (the same box for every frame, or a tile of its own per frame), with the
    capsules at their pose ``pose[k]`` (``a``, ``b``, ``boxes``, ``forward`` and ``frame`` are
    per pose: the frames of one instant share its pose). Pixels past the sensor's edge are set
    to 0, and so are those that ``wanted`` (K, h, w), when given, leaves out (their work is
    skipped).

    Per frame, every pixel of each capsule's box that the capsule covers gets a layer (depth,
    coverage, shade; :func:`_coverage`, and :func:`_shade` for plain clothing or, given a
    ``texture`` (C, COLUMNS) and the capsules' ``frame`` (K, C, 3, 3), :func:`_shade_textured`)
    in its depth-sorted list, and the layers are then composited over the background
    (:func:`_composite_frame`). numba compiles the plain (None) and the textured case apart.
    """
    n_frames, h, w = out.shape
    n_caps = radius.shape[0]
    depth = np.empty((h, w, MAX_LAYERS))
    alpha = np.empty((h, w, MAX_LAYERS))
    shade = np.empty((h, w, MAX_LAYERS))
    count = np.zeros((h, w), dtype=np.int64)
    for k in range(n_frames):
        count[:, :] = 0
        ox, oy, p = x0[k], y0[k], pose[k]
        for c in range(n_caps):
            # capsule boxes lie within the sensor, so these pixels do too
            bx0 = max(boxes[p, c, 0], ox) - ox
            bx1 = min(boxes[p, c, 1], ox + w) - ox
            by0 = max(boxes[p, c, 2], oy) - oy
            by1 = min(boxes[p, c, 3], oy + h) - oy
            if bx0 >= bx1 or by0 >= by1:
                continue  # the capsule's box misses the frame (most capsules of a tile)
            r = radius[c]
            # per-capsule constants of the closest-approach test (see _ray_capsule)
            mx, my, mz = origin[0] - a[p, c, 0], origin[1] - a[p, c, 1], origin[2] - a[p, c, 2]
            bax, bay, baz = (
                b[p, c, 0] - a[p, c, 0],
                b[p, c, 1] - a[p, c, 1],
                b[p, c, 2] - a[p, c, 2],
            )
            length2 = bax * bax + bay * bay + baz * baz
            bm = bax * mx + bay * my + baz * mz
            for i in range(by0, by1):
                for j in range(bx0, bx1):
                    if _unwanted(wanted, k, i, j):
                        continue
                    dx, dy, dz = (
                        rays[oy + i, ox + j, 0],
                        rays[oy + i, ox + j, 1],
                        rays[oy + i, ox + j, 2],
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
                    if texture is None or frame is None:
                        value = _shade(
                            nx, ny, nz, y, s, pixel_angle, light,
                            forward[p, 0], forward[p, 1], forward[p, 2],
                            albedo[c], stripe_amplitude[c], stripe_period[c], stripe_phase[c],
                            tint_amplitude[c], ambient,
                        )  # fmt: skip
                    else:
                        if _hidden(depth, alpha, count, i, j, s, pixel_angle):
                            continue  # contributes nothing: skip its texture
                        value = _shade_textured(
                            texture[c], frame[p, c], nx, ny, nz, y, r, s, pixel_angle,
                            dx, dy, dz, light, forward[p, 0], forward[p, 1], forward[p, 2],
                            ambient,
                        )  # fmt: skip
                    _insert(depth, alpha, shade, count, i, j, s, cover, value)
        _composite_frame(
            depth, alpha, shade, count, background, pixel_angle, ox, oy, wanted, k, out[k]
        )


@jit_inline
def _unwanted(wanted: npt.NDArray[np.bool_] | None, k: int, i: int, j: int) -> bool:
    """Whether ``wanted`` (None: every pixel) leaves pixel ``(i, j)`` of frame ``k`` out."""
    return wanted is not None and not wanted[k, i, j]


@jit_inline
def _insert(
    depth: FloatArray,
    alpha: FloatArray,
    shade: FloatArray,
    count: npt.NDArray[np.int64],
    i: int,
    j: int,
    s: float,
    cover: float,
    value: float,
) -> None:
    """Insert a surface into pixel ``(i, j)``'s depth-sorted layer list (nearest first); with
    :data:`MAX_LAYERS` layers already, the farthest one is dropped (or the new one, if it is)."""
    n = count[i, j]
    if n == MAX_LAYERS:
        if s >= depth[i, j, n - 1]:
            return
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


@jit_inline
def _hidden(
    depth: FloatArray,
    alpha: FloatArray,
    count: npt.NDArray[np.int64],
    i: int,
    j: int,
    s: float,
    pixel_angle: float,
) -> bool:
    """Whether a surface at depth ``s`` would contribute nothing to pixel ``(i, j)``: its
    nearest layer covers the pixel fully and lies in front by more than the 40 soft-depth
    widths beyond which :func:`_composite` treats it as opaque (the surface's weight is then
    exactly 0, and its effect on layers between them below exp(-20))."""
    if count[i, j] == 0 or alpha[i, j, 0] < 1.0:
        return False
    behind: bool = s - depth[i, j, 0] > 40.0 * DEPTH_SOFTNESS * s * pixel_angle
    return behind


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


@jit_inline
def _shade_textured(
    row: FloatArray,
    frame: FloatArray,
    nx: float,
    ny: float,
    nz: float,
    y: float,
    r: float,
    s: float,
    pixel_angle: float,
    dx: float,
    dy: float,
    dz: float,
    light: FloatArray,
    fx: float,
    fy: float,
    fz: float,
    ambient: float,
) -> float:
    """Intensity of a textured surface point: :func:`~hybridpose.synth.texture.surface_albedo`
    (band-limited for this pixel's footprint ``s * pixel_angle``), tinted by ``n . forward``,
    under the same Lambertian light as :func:`_shade`."""
    facing = -(nx * dx + ny * dy + nz * dz)
    colour = surface_albedo(row, frame, nx, ny, nz, y, r, s * pixel_angle, facing)
    lambert = max(nx * light[0] + ny * light[1] + nz * light[2], 0.0)
    colour *= 1.0 + row[TINT] * (nx * fx + ny * fy + nz * fz)
    value: float = max(colour, 0.005) * (ambient + (1.0 - ambient) * lambert)
    return value


@jit_inline
def _composite_frame(
    depth: FloatArray,
    alpha: FloatArray,
    shade: FloatArray,
    count: npt.NDArray[np.int64],
    background: npt.NDArray[np.float32],
    pixel_angle: float,
    x0: int,
    y0: int,
    wanted: npt.NDArray[np.bool_] | None,
    k: int,
    out: npt.NDArray[np.float32],
) -> None:
    """One frame ``out`` (h, w) from the layers: :func:`_composite`, or the background alone
    (0 past the sensor's edge, where no capsule box reaches, and where frame ``k`` of
    ``wanted`` leaves a pixel out)."""
    h, w = out.shape
    height, width = background.shape
    for i in range(h):
        for j in range(w):
            if y0 + i >= height or x0 + j >= width or _unwanted(wanted, k, i, j):
                out[i, j] = 0.0
            elif count[i, j] == 0:
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


@jit_inline
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


# ---------------------------------------------------------------- textures
_TWO_PI = 2.0 * math.pi
_INV_TWO_PI = 1.0 / _TWO_PI
_HALF_PI = 0.5 * math.pi
# cosine's Taylor coefficients of degree 2..10 (multiplied, not divided: no fast-math here)
_C2, _C4, _C6, _C8, _C10 = -1.0 / 2.0, 1.0 / 24.0, -1.0 / 720.0, 1.0 / 40320.0, -1.0 / 3628800.0


@jit
def fast_sin(x: float) -> float:
    """``sin(x)`` to 5e-7, without branches: reduced to ``[-pi, pi]``, then ``sin(x) =
    sign(x) cos(|x| - pi / 2)`` with cosine's Taylor polynomial of degree 10."""
    x -= _TWO_PI * math.floor(x * _INV_TWO_PI + 0.5)
    t = abs(x) - _HALF_PI
    t2 = t * t
    c = 1.0 + t2 * (_C2 + t2 * (_C4 + t2 * (_C6 + t2 * (_C8 + t2 * _C10))))
    return math.copysign(c, x)


@jit
def lowpass(a: float) -> float:
    """``(1 - a / 8)^8`` for ``0 <= a < 8``, else 0: close to ``exp(-a)`` (within 0.04), with no
    division and a cut-off (from about one cycle per pixel at :data:`PIXEL_BLUR`)."""
    q = max(1.0 - 0.125 * a, 0.0)
    q *= q
    q *= q
    return q * q


@jit
def bump(x: float) -> float:
    """A compact bell close to ``exp(-x^2 / 2)``: ``(1 - x^2 / 6.25)^2`` inside ``|x| < 2.5``."""
    q = 1.0 - x * x / 6.25
    return q * q if q > 0.0 else 0.0


@jit
def soft_step(x: float) -> float:
    """A smooth step close to the normal CDF: cubic from 0 at ``x = -2`` to 1 at ``x = 2``."""
    t = min(max(0.25 * x + 0.5, 0.0), 1.0)
    return t * t * (3.0 - 2.0 * t)


Geometry = tuple[float, float, float, float]
"""``(p1, p2, p3, b2)``: the surface point in the capsule's frame and the squared blur (mm)."""


@jit_inline
def surface_albedo(
    row: FloatArray,
    frame: FloatArray,
    nx: float,
    ny: float,
    nz: float,
    y: float,
    r: float,
    footprint: float,
    facing: float,
) -> float:
    """The albedo of a capsule's surface point, band-limited for a pixel of ``footprint`` mm.

    Args:
        row: the capsule's packed :class:`Surface` (``COLUMNS``,).
        frame: (3, 3) the capsule's body-fixed frame, rows ``e1, e2, e3``.
        nx, ny, nz: the unit world normal; ``y`` the axial coordinate (mm from ``a``).
        r: the capsule's radius.
        footprint: the pixel's width at the surface's depth (mm).
        facing: ``-n . d``, the cosine between the normal and the way back to the camera.
    """
    p1 = r * (nx * frame[0, 0] + ny * frame[0, 1] + nz * frame[0, 2])
    p2 = r * (nx * frame[1, 0] + ny * frame[1, 1] + nz * frame[1, 2])
    p3 = y + r * (nx * frame[2, 0] + ny * frame[2, 1] + nz * frame[2, 2])
    blur = PIXEL_BLUR * footprint / max(facing, MIN_FACING)
    geometry = (p1, p2, p3, blur * blur)
    wave_a, wave_b = _waves(row, geometry)
    colour = row[ALBEDO_A] * (1.0 + wave_a)
    g1, g2, g3 = row[BOUNDARY], row[BOUNDARY + 1], row[BOUNDARY + 2]
    if g1 != 0.0 or g2 != 0.0 or g3 != 0.0:
        level = g1 * p1 + g2 * p2 + g3 * p3 - row[BOUNDARY_OFFSET]
        width = math.sqrt(row[BOUNDARY_WIDTH] ** 2 + blur * blur)
        colour += soft_step(level / width) * (row[ALBEDO_B] * (1.0 + wave_b) - colour)
    colour = _blobs(row, geometry, colour)
    return colour * _seams(row, geometry)


@jit_inline
def _waves(row: FloatArray, geometry: Geometry) -> tuple[float, float]:
    """The summed waves on material A and on material B (relative albedo changes)."""
    p1, p2, p3, blur2 = geometry
    envelope = row[FOLD_BASE] + (1.0 - row[FOLD_BASE]) * bump(
        (p3 - row[FOLD_CENTRE]) / row[FOLD_WIDTH]
    )
    sum_a = 0.0
    sum_b = 0.0
    for i in range(int(row[N_WAVES])):
        at = WAVES + i * WAVE_SIZE
        attenuation = lowpass(0.5 * blur2 * row[at + 3])
        if attenuation == 0.0:
            continue
        attenuation *= 1.0 + row[at + 7] * (envelope - 1.0)  # folded: 1, else 0
        value = attenuation * fast_sin(
            row[at] * p1 + row[at + 1] * p2 + row[at + 2] * p3 + row[at + 4]
        )
        sum_a += row[at + 5] * value
        sum_b += row[at + 6] * value
    return sum_a, sum_b


@jit_inline
def _seams(row: FloatArray, geometry: Geometry) -> float:
    """The product of the lines' darkening factors, each ``1 - depth * (w0 / w) * bump(l / w)``."""
    p1, p2, p3, blur2 = geometry
    factor = 1.0
    for i in range(int(row[N_LINES])):
        at = LINES + i * LINE_SIZE
        level = row[at] * p1 + row[at + 1] * p2 + row[at + 2] * p3 - row[at + 3]
        w0 = row[at + 4]
        width2 = w0 * w0 + blur2
        if level * level < 6.25 * width2:
            width = math.sqrt(width2)
            factor *= 1.0 - row[at + 5] * (w0 / width) * bump(level / width)
    return factor


@jit_inline
def _blobs(row: FloatArray, geometry: Geometry, colour: float) -> float:
    """``colour`` blended towards each blob's albedo by its (blurred) weight."""
    p1, p2, p3, blur2 = geometry
    for i in range(int(row[N_BLOBS])):
        at = BLOBS + i * BLOB_SIZE
        e1, e2, e3 = p1 - row[at], p2 - row[at + 1], p3 - row[at + 2]
        radius2 = row[at + 3] ** 2
        width2 = radius2 + blur2
        dist2 = e1 * e1 + e2 * e2 + e3 * e3
        if dist2 < 6.25 * width2:
            weight = row[at + 5] * (radius2 / width2) * bump(math.sqrt(dist2 / width2))
            colour += weight * (row[at + 4] - colour)
    return colour
