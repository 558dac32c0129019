"""The renderer of :mod:`hybridpose.synth.render` in torch operations, for any torch device.

The model is the numba kernel's (:mod:`hybridpose.synth.render_kernels`), term for term: each
pixel's ray meets each capsule whose pixel box holds the pixel (closest approach, then the
exact surface), the covered surfaces are shaded (plain clothing or the body-fixed texture) and
composited front to back with the soft depth test. The arithmetic is the kernel's, in the same
order and in float64, so on the CPU a pixel differs from the kernel's at most by the rounding
of ``exp`` and ``sin`` (which torch and numba take from different libraries) and by one rule
of the kernel's that saves work rather than changing the image: the kernel skips a textured
surface lying far behind a pixel's fully covering nearest layer, whose weight in the
compositing is exactly 0; here every surface is shaded and the nearest
:data:`~hybridpose.synth.render_kernels.MAX_LAYERS` are composited. On the frames of
``tests/test_render_torch.py`` (every camera, plain and clothed, 87x65 and 346x260) the images
are equal to the bit; the tests allow 1e-6. On a GPU, ``exp``, ``sin`` and divisions by a
constant may round otherwise in the last bit.

Why torch: on a GPU the per-pixel work of thousands of frames runs at once. The work is laid
out for that, not for a CPU:

1. the (frame, pixel, capsule) triples whose capsule box holds the pixel are listed once
   (boxes are tight, so a few percent of all triples);
2. the closest approach culls them to the candidates the capsule may cover;
3. the candidates' surfaces, coverage and shade are computed as flat vectors;
4. each pixel's nearest layers are found by one sort over its capsules and composited.

Frames are taken in batches of at most ``max_elements`` (frame, pixel, capsule) triples, which
bounds memory; a batch costs three host-device synchronisations (the listings' sizes).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
import torch
from torch import Tensor

from hybridpose.synth.appearance import Appearance
from hybridpose.synth.body import Capsules
from hybridpose.synth.render import View, capsule_boxes, checked_origins, texture_arguments
from hybridpose.synth.render_kernels import (
    ALBEDO_A,
    ALBEDO_B,
    BLOB_SIZE,
    BLOBS,
    BOUNDARY,
    BOUNDARY_OFFSET,
    BOUNDARY_WIDTH,
    DEPTH_SOFTNESS,
    FOLD_BASE,
    FOLD_CENTRE,
    FOLD_WIDTH,
    LINE_SIZE,
    LINES,
    MAX_BLOBS,
    MAX_LAYERS,
    MAX_LINES,
    MAX_WAVES,
    MIN_FACING,
    N_BLOBS,
    N_LINES,
    N_WAVES,
    PIXEL_BLUR,
    STRIPE_BLUR,
    TINT,
    WAVE_SIZE,
    WAVES,
)
from hybridpose.synth.scene import Clothing, Lighting

F64 = torch.float64

MAX_ELEMENTS = 1 << 23
"""(frame, pixel, capsule) triples per batch by default: with the box test's byte per triple
and the listed triples' float64 vectors, a few hundred MB at most."""


@dataclass(frozen=True, eq=False)
class DeviceView:
    """A :class:`~hybridpose.synth.render.View` with its rays and background on a device.

    Attributes:
        view: the view on the CPU.
        rays: (H * W, 3) float64 unit ray directions, rows first.
        background: (H * W,) float32 linear intensities.
        centre: (3,) float64 camera centre.
    """

    view: View
    rays: Tensor
    background: Tensor
    centre: Tensor

    @property
    def device(self) -> torch.device:
        return self.rays.device


def device_view(view: View, device: str | torch.device) -> DeviceView:
    """Copy ``view``'s rays, background and centre to ``device`` (once per camera)."""
    dev = torch.device(device)
    return DeviceView(
        view,
        _to_device(view.rays.reshape(-1, 3).astype(np.float64), dev),
        _to_device(view.background.reshape(-1).astype(np.float32), dev),
        _to_device(np.asarray(view.camera.center, dtype=np.float64), dev),
    )


def _to_device(array: npt.NDArray[np.generic], device: torch.device) -> Tensor:
    """A copy of ``array`` on ``device`` (numpy arrays may be read-only; tensors may not)."""
    return torch.from_numpy(np.array(array, copy=True)).to(device)


def render_on_device(
    scene: DeviceView,
    capsules: Capsules,
    forward: npt.ArrayLike,
    clothing: Clothing | Appearance,
    lighting: Lighting,
    origins: npt.ArrayLike,
    size: tuple[int, int],
    boxes: npt.NDArray[np.int64] | None = None,
    max_elements: int = MAX_ELEMENTS,
) -> Tensor:
    """Render one ``size = (h, w)`` rectangle per body pose, on ``scene``'s device.

    Frame ``k`` is the rectangle whose top-left pixel is ``origins[k] = (x, y)``, at pose
    ``k`` (one box for every pose, as :func:`~hybridpose.synth.render.render` takes, or a tile
    per pose, as :func:`~hybridpose.synth.render.render_tiles`); pixels past the sensor's
    edge are 0. The arguments are those of the numba renderer.

    Returns:
        (K, h, w) float32 tensor on the device.

    Raises:
        SynthError: origins outside the sensor, or a textured appearance that does not fit
            the capsules.
    """
    k = capsules.a.shape[0]
    h, w = size
    corners = checked_origins(scene.view, origins, k, "render_on_device: need {k} origins")
    out = torch.empty((k, h, w), dtype=torch.float32, device=scene.device)
    if out.numel() == 0:
        return out
    if boxes is None:
        boxes = capsule_boxes(scene.view, capsules)
    texture, frame = texture_arguments(capsules, clothing)
    surfaces = _Surfaces.of(scene.device, capsules, forward, clothing, lighting, texture, frame)
    per_frame = max(1, max_elements // max(1, h * w * capsules.count))
    dev = scene.device
    for lo in range(0, k, per_frame):
        hi = min(k, lo + per_frame)
        out[lo:hi] = _render_batch(
            scene,
            surfaces.take(lo, hi),
            torch.as_tensor(corners[lo:hi], device=dev),
            torch.as_tensor(boxes[lo:hi], dtype=torch.int64, device=dev),
            (h, w),
        )
    return out


@dataclass(frozen=True)
class _Surfaces:
    """The capsules, their clothing and the light as device tensors (per frame: ``a``, ``b``,
    ``forward``, ``frame``)."""

    a: Tensor  # (K, C, 3)
    b: Tensor  # (K, C, 3)
    radius: Tensor  # (C,)
    forward: Tensor  # (K, 3)
    plain: Tensor | None  # (C, 5): albedo, stripe amplitude, period, phase, tint amplitude
    texture: Tensor | None  # (C, COLUMNS)
    frame: Tensor | None  # (K, C, 3, 3)
    light: tuple[float, float, float]
    ambient: float

    @staticmethod
    def of(
        device: torch.device,
        capsules: Capsules,
        forward: npt.ArrayLike,
        clothing: Clothing | Appearance,
        lighting: Lighting,
        texture: npt.NDArray[np.float64] | None,
        frame: npt.NDArray[np.float64] | None,
    ) -> _Surfaces:
        def put(array: npt.ArrayLike) -> Tensor:
            return _to_device(np.asarray(array, dtype=np.float64), device)

        plain = None
        if isinstance(clothing, Clothing):
            plain = put(
                np.stack(
                    [
                        clothing.albedo,
                        clothing.stripe_amplitude,
                        clothing.stripe_period,
                        clothing.stripe_phase,
                        clothing.tint_amplitude,
                    ],
                    axis=1,
                )
            )
        lx, ly, lz = (float(v) for v in lighting.unit_direction())
        return _Surfaces(
            put(capsules.a),
            put(capsules.b),
            put(capsules.radius),
            put(np.reshape(forward, (-1, 3))),
            plain,
            None if texture is None else put(texture),
            None if frame is None else put(frame),
            (lx, ly, lz),
            float(lighting.ambient),
        )

    def take(self, lo: int, hi: int) -> _Surfaces:
        """Frames ``lo:hi`` only."""
        return _Surfaces(
            self.a[lo:hi], self.b[lo:hi], self.radius, self.forward[lo:hi], self.plain,
            self.texture, None if self.frame is None else self.frame[lo:hi], self.light,
            self.ambient,
        )  # fmt: skip


def _render_batch(
    scene: DeviceView,
    surf: _Surfaces,
    corners: Tensor,
    boxes: Tensor,
    size: tuple[int, int],
) -> Tensor:
    """Frames of one batch: (Kb, h, w) float32."""
    h, w = size
    kb, n_caps = surf.a.shape[:2]
    dev = scene.device
    width, height = scene.view.sensor_size
    pixel_angle = float(scene.view.pixel_angle)
    rows = torch.arange(h, device=dev).repeat_interleave(w)
    cols = torch.arange(w, device=dev).repeat(h)
    xs = corners[:, 0, None] + cols  # (Kb, P)
    ys = corners[:, 1, None] + rows
    inside = (xs < width) & (ys < height)
    flat = torch.where(inside, ys * width + xs, 0)  # (Kb, P) sensor pixel index

    # 1. the (frame, pixel, capsule) triples whose capsule box holds the pixel
    bx = boxes[:, None]  # (Kb, 1, C, 4)
    in_box = (
        (xs[..., None] >= bx[..., 0]) & (xs[..., None] < bx[..., 1])
        & (ys[..., None] >= bx[..., 2]) & (ys[..., None] < bx[..., 3])
    )  # fmt: skip
    k, p, c = in_box.nonzero(as_tuple=True)
    ray = scene.rays[flat[k, p]]  # (N, 3)
    geometry = _Geometry.of(scene.centre, surf, k, c, ray)

    # 2. the closest approach culls the triples the capsule cannot cover
    s, u, dist2 = _closest_approach(geometry)
    reach = geometry.r + 0.5 * s * pixel_angle
    keep = ((s > 0.0) & (dist2 < reach * reach)).nonzero(as_tuple=True)[0]
    geometry = geometry.select(keep)
    k, p, c, s, u, dist2 = k[keep], p[keep], c[keep], s[keep], u[keep], dist2[keep]

    # 3. surfaces, coverage, shade
    cover, s, normal, axial = _coverage(geometry, s, u, dist2, pixel_angle)
    covered = (cover > 0.0).nonzero(as_tuple=True)[0]
    k, p, c = k[covered], p[covered], c[covered]
    geometry = geometry.select(covered)
    s, cover, axial = s[covered], cover[covered], axial[covered]
    normal = (normal[0][covered], normal[1][covered], normal[2][covered])
    if surf.texture is None:
        value = _shade_plain(surf, k, c, normal, axial, s, pixel_angle)
    else:
        value = _shade_textured(surf, k, c, normal, axial, geometry, s, pixel_angle)

    # 4. each pixel's nearest layers, composited over the background
    depth = torch.full((kb, h * w, n_caps), math.inf, dtype=F64, device=dev)
    alpha = torch.zeros_like(depth)
    shade = torch.zeros_like(depth)
    depth[k, p, c], alpha[k, p, c], shade[k, p, c] = s, cover, value
    layers = min(MAX_LAYERS, n_caps)
    depth, order = torch.sort(depth, dim=2, stable=True)
    depth, order = depth[..., :layers], order[..., :layers]
    alpha, shade = alpha.gather(2, order), shade.gather(2, order)
    background = scene.background[flat].to(F64)
    image = _composite(depth, alpha, shade, background, pixel_angle)
    image = torch.where(inside, image, 0.0)
    return image.to(torch.float32).reshape(kb, h, w)


@dataclass(frozen=True)
class _Geometry:
    """Per listed triple: the ray ``d``, ``m = o - a``, ``ba = b - a``, ``|ba|^2``,
    ``ba . m`` and the radius (each a flat float64 tensor)."""

    d: tuple[Tensor, Tensor, Tensor]
    m: tuple[Tensor, Tensor, Tensor]
    ba: tuple[Tensor, Tensor, Tensor]
    length2: Tensor
    bm: Tensor
    r: Tensor

    @staticmethod
    def of(centre: Tensor, surf: _Surfaces, k: Tensor, c: Tensor, ray: Tensor) -> _Geometry:
        # per (frame, capsule) first, as the kernel computes them, then spread to the triples
        m = centre - surf.a  # (Kb, C, 3)
        ba = surf.b - surf.a
        length2 = ba[..., 0] * ba[..., 0] + ba[..., 1] * ba[..., 1] + ba[..., 2] * ba[..., 2]
        bm = ba[..., 0] * m[..., 0] + ba[..., 1] * m[..., 1] + ba[..., 2] * m[..., 2]
        mt, bat = m[k, c], ba[k, c]
        return _Geometry(
            (ray[:, 0], ray[:, 1], ray[:, 2]),
            (mt[:, 0], mt[:, 1], mt[:, 2]),
            (bat[:, 0], bat[:, 1], bat[:, 2]),
            length2[k, c],
            bm[k, c],
            surf.radius[c],
        )

    def select(self, which: Tensor) -> _Geometry:
        def pick(t: tuple[Tensor, Tensor, Tensor]) -> tuple[Tensor, Tensor, Tensor]:
            return (t[0][which], t[1][which], t[2][which])

        return _Geometry(
            pick(self.d), pick(self.m), pick(self.ba), self.length2[which], self.bm[which],
            self.r[which],
        )  # fmt: skip


def _dot(x: tuple[Tensor, Tensor, Tensor], y: tuple[Tensor, Tensor, Tensor]) -> Tensor:
    return x[0] * y[0] + x[1] * y[1] + x[2] * y[2]


def _clip01(x: Tensor) -> Tensor:
    return torch.clamp(x, 0.0, 1.0)


def _closest_approach(g: _Geometry) -> tuple[Tensor, Tensor, Tensor]:
    """The kernel's ``_closest_approach``: ``(s, u, squared distance)`` per triple."""
    (dx, dy, dz), (mx, my, mz), (bax, bay, baz) = g.d, g.m, g.ba
    db = dx * bax + dy * bay + dz * baz
    dm = dx * mx + dy * my + dz * mz
    denom = g.length2 - db * db
    general = denom > 1e-9 * torch.clamp(g.length2, min=1.0)
    u = torch.where(
        general,
        _clip01((g.bm - db * dm) / denom),
        torch.where(g.length2 > 0.0, _clip01(g.bm / g.length2), 0.0),
    )
    s = u * db - dm
    px = mx + s * dx - u * bax
    py = my + s * dy - u * bay
    pz = mz + s * dz - u * baz
    return s, u, px * px + py * py + pz * pz


def _coverage(
    g: _Geometry, s: Tensor, u: Tensor, dist2: Tensor, pixel_angle: float
) -> tuple[Tensor, Tensor, tuple[Tensor, Tensor, Tensor], Tensor]:
    """The kernel's ``_coverage``: ``(cover, s, normal, axial coordinate)``."""
    dist = torch.sqrt(dist2)
    s, normal, axial = _surface(g, s, u, dist)
    cover = 0.5 + (g.r - dist) / (s * pixel_angle)
    cover = torch.where((s > 0.0) & (cover > 0.0), torch.clamp(cover, max=1.0), 0.0)
    return cover, s, normal, axial


def _surface(
    g: _Geometry, s: Tensor, u: Tensor, dist: Tensor
) -> tuple[Tensor, tuple[Tensor, Tensor, Tensor], Tensor]:
    """The kernel's ``_surface``: the nearest surface along the ray, or the silhouette where
    the ray misses (``dist > r``)."""
    (dx, dy, dz), (mx, my, mz), (bax, bay, baz) = g.d, g.m, g.ba
    r = g.r
    length = torch.sqrt(g.length2)
    has_axis = g.length2 > 0.0
    miss = dist > r
    # where the ray misses: the closest approach, its normal from the axis to the ray
    inv = 1.0 / dist
    miss_normal = (
        (mx + s * dx - u * bax) * inv,
        (my + s * dy - u * bay) * inv,
        (mz + s * dz - u * baz) * inv,
    )
    # where it hits: the lateral surface of the finite cylinder...
    best = torch.full_like(s, math.inf)
    ax, ay, az = bax / length, bay / length, baz / length
    dn = dx * ax + dy * ay + dz * az
    mn = mx * ax + my * ay + mz * az
    dvx, dvy, dvz = dx - dn * ax, dy - dn * ay, dz - dn * az
    mvx, mvy, mvz = mx - mn * ax, my - mn * ay, mz - mn * az
    qa = dvx * dvx + dvy * dvy + dvz * dvz
    qb = dvx * mvx + dvy * mvy + dvz * mvz
    qc = mvx * mvx + mvy * mvy + mvz * mvz - r * r
    disc = qb * qb - qa * qc
    t = (-qb - torch.sqrt(disc)) / qa
    y = mn + t * dn
    lateral = has_axis & (qa > 1e-12) & (disc >= 0.0) & (y >= 0.0) & (y <= length)
    best = torch.where(lateral, t, best)
    # ... and the end balls, at a (m = o - a) and at b (o - b = m - ba)
    for qx, qy, qz in ((mx, my, mz), (mx - bax, my - bay, mz - baz)):
        qb = qx * dx + qy * dy + qz * dz
        disc = qb * qb - (qx * qx + qy * qy + qz * qz - r * r)
        best = torch.where(disc >= 0.0, torch.minimum(best, -qb - torch.sqrt(disc)), best)
    best = torch.where(torch.isfinite(best), best, s)  # grazing
    hx, hy, hz = mx + best * dx, my + best * dy, mz + best * dz
    y = torch.where(
        has_axis,
        torch.minimum(torch.clamp((hx * bax + hy * bay + hz * baz) / length, min=0.0), length),
        0.0,
    )
    hx = torch.where(has_axis, hx - bax * y / length, hx)
    hy = torch.where(has_axis, hy - bay * y / length, hy)
    hz = torch.where(has_axis, hz - baz * y / length, hz)
    norm = torch.sqrt(hx * hx + hy * hy + hz * hz)
    positive = norm > 0.0
    hit_normal = (
        torch.where(positive, hx / norm, hx),
        torch.where(positive, hy / norm, hy),
        torch.where(positive, hz / norm, hz),
    )
    normal = (
        torch.where(miss, miss_normal[0], hit_normal[0]),
        torch.where(miss, miss_normal[1], hit_normal[1]),
        torch.where(miss, miss_normal[2], hit_normal[2]),
    )
    return torch.where(miss, s, best), normal, torch.where(miss, u * length, y)


def _lighting(
    surf: _Surfaces, k: Tensor, normal: tuple[Tensor, Tensor, Tensor]
) -> tuple[Tensor, Tensor]:
    """``max(n . light, 0)`` and ``n . forward``."""
    nx, ny, nz = normal
    lx, ly, lz = surf.light
    lambert = torch.clamp(nx * lx + ny * ly + nz * lz, min=0.0)
    f = surf.forward[k]
    return lambert, nx * f[:, 0] + ny * f[:, 1] + nz * f[:, 2]


def _shade_plain(
    surf: _Surfaces,
    k: Tensor,
    c: Tensor,
    normal: tuple[Tensor, Tensor, Tensor],
    axial: Tensor,
    s: Tensor,
    pixel_angle: float,
) -> Tensor:
    """The kernel's ``_shade``: striped, tinted clothing under Lambertian light."""
    assert surf.plain is not None
    albedo, amplitude, period, phase, tint_amplitude = surf.plain[c].unbind(1)
    lambert, tint = _lighting(surf, k, normal)
    cycles = s * pixel_angle / period
    fade = torch.exp(-2.0 * (math.pi * STRIPE_BLUR * cycles) ** 2)
    stripe = torch.sin(2.0 * math.pi * axial / period + phase)
    colour = albedo * (1.0 + fade * amplitude * stripe)
    colour = colour * (1.0 + tint_amplitude * tint)
    return torch.clamp(colour, min=0.005) * (surf.ambient + (1.0 - surf.ambient) * lambert)


def _shade_textured(
    surf: _Surfaces,
    k: Tensor,
    c: Tensor,
    normal: tuple[Tensor, Tensor, Tensor],
    axial: Tensor,
    g: _Geometry,
    s: Tensor,
    pixel_angle: float,
) -> Tensor:
    """The kernel's ``_shade_textured``: the body-fixed texture, tinted, under the light."""
    assert surf.texture is not None and surf.frame is not None
    row = surf.texture[c]  # (N, COLUMNS)
    frame = surf.frame[k, c]  # (N, 3, 3)
    nx, ny, nz = normal
    facing = -(nx * g.d[0] + ny * g.d[1] + nz * g.d[2])
    colour = _surface_albedo(row, frame, normal, axial, g.r, s * pixel_angle, facing)
    lambert, tint = _lighting(surf, k, normal)
    colour = colour * (1.0 + row[:, TINT] * tint)
    return torch.clamp(colour, min=0.005) * (surf.ambient + (1.0 - surf.ambient) * lambert)


# ---------------------------------------------------------------- textures
_TWO_PI = 2.0 * math.pi
_INV_TWO_PI = 1.0 / _TWO_PI
_HALF_PI = 0.5 * math.pi
_C2, _C4, _C6, _C8, _C10 = -1.0 / 2.0, 1.0 / 24.0, -1.0 / 720.0, 1.0 / 40320.0, -1.0 / 3628800.0


def _fast_sin(x: Tensor) -> Tensor:
    """The kernel's ``fast_sin`` (the same polynomial, so the same values)."""
    x = x - _TWO_PI * torch.floor(x * _INV_TWO_PI + 0.5)
    t = torch.abs(x) - _HALF_PI
    t2 = t * t
    c = 1.0 + t2 * (_C2 + t2 * (_C4 + t2 * (_C6 + t2 * (_C8 + t2 * _C10))))
    return torch.copysign(c, x)


def _lowpass(a: Tensor) -> Tensor:
    q = torch.clamp(1.0 - 0.125 * a, min=0.0)
    q = q * q
    q = q * q
    return q * q


def _bump(x: Tensor) -> Tensor:
    q = 1.0 - x * x / 6.25
    return torch.where(q > 0.0, q * q, 0.0)


def _soft_step(x: Tensor) -> Tensor:
    t = _clip01(0.25 * x + 0.5)
    return t * t * (3.0 - 2.0 * t)


def _surface_albedo(
    row: Tensor,
    frame: Tensor,
    normal: tuple[Tensor, Tensor, Tensor],
    axial: Tensor,
    r: Tensor,
    footprint: Tensor,
    facing: Tensor,
) -> Tensor:
    """The kernel's ``surface_albedo``, per listed triple (``row``: its capsule's packed
    texture, ``frame``: its capsule's frame)."""
    nx, ny, nz = normal
    p1 = r * (nx * frame[:, 0, 0] + ny * frame[:, 0, 1] + nz * frame[:, 0, 2])
    p2 = r * (nx * frame[:, 1, 0] + ny * frame[:, 1, 1] + nz * frame[:, 1, 2])
    p3 = axial + r * (nx * frame[:, 2, 0] + ny * frame[:, 2, 1] + nz * frame[:, 2, 2])
    blur = PIXEL_BLUR * footprint / torch.clamp(facing, min=MIN_FACING)
    blur2 = blur * blur
    point = (p1, p2, p3)
    wave_a, wave_b = _waves(row, point, blur2)
    colour = row[:, ALBEDO_A] * (1.0 + wave_a)
    g1, g2, g3 = row[:, BOUNDARY], row[:, BOUNDARY + 1], row[:, BOUNDARY + 2]
    level = g1 * p1 + g2 * p2 + g3 * p3 - row[:, BOUNDARY_OFFSET]
    width = torch.sqrt(row[:, BOUNDARY_WIDTH] ** 2 + blur * blur)
    two = colour + _soft_step(level / width) * (row[:, ALBEDO_B] * (1.0 + wave_b) - colour)
    colour = torch.where((g1 != 0.0) | (g2 != 0.0) | (g3 != 0.0), two, colour)
    colour = _blobs(row, point, blur2, colour)
    return colour * _seams(row, point, blur2)


def _waves(
    row: Tensor, point: tuple[Tensor, Tensor, Tensor], blur2: Tensor
) -> tuple[Tensor, Tensor]:
    """The summed waves on material A and on material B."""
    p1, p2, p3 = point
    base = row[:, FOLD_BASE]
    envelope = base + (1.0 - base) * _bump((p3 - row[:, FOLD_CENTRE]) / row[:, FOLD_WIDTH])
    sum_a = torch.zeros_like(p1)
    sum_b = torch.zeros_like(p1)
    count = row[:, N_WAVES]
    for i in range(MAX_WAVES):
        at = WAVES + i * WAVE_SIZE
        attenuation = _lowpass(0.5 * blur2 * row[:, at + 3])
        used = (i < count) & (attenuation != 0.0)
        attenuation = attenuation * (1.0 + row[:, at + 7] * (envelope - 1.0))
        value = attenuation * _fast_sin(
            row[:, at] * p1 + row[:, at + 1] * p2 + row[:, at + 2] * p3 + row[:, at + 4]
        )
        sum_a = torch.where(used, sum_a + row[:, at + 5] * value, sum_a)
        sum_b = torch.where(used, sum_b + row[:, at + 6] * value, sum_b)
    return sum_a, sum_b


def _seams(row: Tensor, point: tuple[Tensor, Tensor, Tensor], blur2: Tensor) -> Tensor:
    """The product of the lines' darkening factors."""
    p1, p2, p3 = point
    factor = torch.ones_like(p1)
    count = row[:, N_LINES]
    for i in range(MAX_LINES):
        at = LINES + i * LINE_SIZE
        level = row[:, at] * p1 + row[:, at + 1] * p2 + row[:, at + 2] * p3 - row[:, at + 3]
        w0 = row[:, at + 4]
        width2 = w0 * w0 + blur2
        used = (i < count) & (level * level < 6.25 * width2)
        width = torch.sqrt(width2)
        darker = factor * (1.0 - row[:, at + 5] * (w0 / width) * _bump(level / width))
        factor = torch.where(used, darker, factor)
    return factor


def _blobs(
    row: Tensor, point: tuple[Tensor, Tensor, Tensor], blur2: Tensor, colour: Tensor
) -> Tensor:
    """``colour`` blended towards each blob's albedo by its (blurred) weight."""
    p1, p2, p3 = point
    count = row[:, N_BLOBS]
    for i in range(MAX_BLOBS):
        at = BLOBS + i * BLOB_SIZE
        e1, e2, e3 = p1 - row[:, at], p2 - row[:, at + 1], p3 - row[:, at + 2]
        radius2 = row[:, at + 3] ** 2
        width2 = radius2 + blur2
        dist2 = e1 * e1 + e2 * e2 + e3 * e3
        used = (i < count) & (dist2 < 6.25 * width2)
        weight = row[:, at + 5] * (radius2 / width2) * _bump(torch.sqrt(dist2 / width2))
        colour = torch.where(used, colour + weight * (row[:, at + 4] - colour), colour)
    return colour


# ---------------------------------------------------------------- compositing
def _composite(
    depth: Tensor, alpha: Tensor, shade: Tensor, background: Tensor, pixel_angle: float
) -> Tensor:
    """The kernel's ``_composite`` over each pixel's layers (..., L), nearest first; a layer
    of infinite depth is empty (alpha 0) and changes nothing. Products and sums run over the
    layers in the kernel's order, so they round as it does."""
    layers = depth.shape[-1]
    empty = ~torch.isfinite(depth)
    z = torch.where(empty, 1.0, depth)  # any finite depth: an empty layer's alpha is 0
    transmit = torch.ones_like(background)
    weight = torch.zeros_like(background)
    value = torch.zeros_like(background)
    for m in range(layers):
        tau = DEPTH_SOFTNESS * z[..., m] * pixel_angle
        visible = torch.ones_like(background)
        for q in range(layers):
            if q == m:
                continue
            x = (z[..., m] - z[..., q]) / tau
            a_q = alpha[..., q]
            factor = torch.where(
                x > 40.0,
                1.0 - a_q,
                torch.where(x > -40.0, 1.0 - a_q / (1.0 + torch.exp(-x)), 1.0),
            )
            visible = torch.where(empty[..., q], visible, visible * factor)
        a_m = alpha[..., m]
        used = ~empty[..., m]
        weight = torch.where(used, weight + a_m * visible, weight)
        value = torch.where(used, value + a_m * visible * shade[..., m], value)
        transmit = torch.where(used, transmit * (1.0 - a_m), transmit)
    blended = (1.0 - transmit) * value / weight + transmit * background
    return torch.where(weight > 0.0, blended, background)


__all__ = ["MAX_ELEMENTS", "DeviceView", "device_view", "render_on_device"]
