"""Body-fixed surface textures for the ray-caster: clothing, skin and hair, band-limited per pixel.

A capsule's texture is a function of the surface point in the capsule's own frame (the rows
``e1, e2, e3`` of a body-fixed frame, :attr:`hybridpose.synth.body.Capsules.frame`: ``e3`` the
axis, ``e1`` the zero of the angle around it, the front of the body at rest)::

    p = ((x - a) . e1, (x - a) . e2, (x - a) . e3) = (r n1, r n2, y + r n3)    (mm)

with ``y`` the axial coordinate of the nearest axis point and ``n`` the unit normal. Because
``p`` moves with the capsule, so does the pattern: a limb that swings fires events inside its
silhouette wherever the pattern varies, not only on its edges. Every feature is a simple
function of ``p`` (a :class:`Surface`):

- two **materials** (cloth and skin at a sleeve's hem, top and trousers at the waist, skin and
  hair on the head) split by a plane ``g . p = offset`` with a soft edge;
- **waves** ``amplitude * sin(k . p + phase)``: stripes (``k`` along the axis: rings; across
  it: lengthwise; both: checks), creases (oblique ``k``, optionally under an envelope around a
  joint: folds at elbows and knees) and fabric grain or skin mottling (a few waves in random
  directions);
- **lines** (seams: hems, cuffs, the waistband, side seams): a narrow dark profile around a
  plane ``g . p = offset``;
- **blobs** (a print on the chest, the eyes and mouth of a face): round patches of another
  albedo around points on the surface.

Band-limiting. A pixel integrates the surface over its footprint; a feature finer than that
would otherwise alias into false events as it moves across pixel centres. Each feature is
attenuated as a Gaussian pixel response of :data:`PIXEL_BLUR` pixels would attenuate it, using
the footprint the renderer computes (``fp``, mm per pixel at the surface's depth) stretched by
the surface's slant (``1 / (-n . d)`` for the ray ``d``, capped at 1 / :data:`MIN_FACING`):
where the surface turns away from the camera, a millimetre of it spans less of the image. The
stretch is applied in every direction, which over-attenuates towards the silhouette but never
under-attenuates within the cap (a solid function of gradient ``k`` changes along the surface,
seen along ``d``, by at most ``fp |k| / (-n . d)`` per pixel). So with
``b = sigma fp / max(-n . d, MIN_FACING)`` (mm): a wave's amplitude is multiplied by
``(1 - a / 8)^8``, close to ``exp(-a)``, ``a = (b |k|)^2 / 2`` (within 0.04; zero from about
one cycle per pixel on); a line's or an edge's width ``w0`` grows to
``sqrt(w0^2 + b^2)`` and a line's depth shrinks by ``w0 / width`` (its integral is kept), a
blob's radius likewise, its strength by the square. The profiles are compact polynomials
close to a Gaussian and its integral.

The kernels read a capsule's :class:`Surface` packed into one float64 row
(:func:`pack_surfaces`; the column layout is defined beside the kernels, in
:mod:`hybridpose.synth.render_kernels`, which also evaluates the texture).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from hybridpose.synth.render_kernels import (
    ALBEDO_A,
    ALBEDO_B,
    BLOB_SIZE,
    BLOBS,
    BOUNDARY,
    BOUNDARY_OFFSET,
    BOUNDARY_WIDTH,
    COLUMNS,
    FOLD_BASE,
    FOLD_CENTRE,
    FOLD_WIDTH,
    LINE_SIZE,
    LINES,
    MAX_BLOBS,
    MAX_LINES,
    MAX_WAVES,
    MIN_FACING,
    N_BLOBS,
    N_LINES,
    N_WAVES,
    PIXEL_BLUR,
    TINT,
    WAVE_SIZE,
    WAVES,
)
from hybridpose.synth.skeleton import SynthError

FloatArray = npt.NDArray[np.float64]
Vector = tuple[float, float, float]


@dataclass(frozen=True)
class Wave:
    """``amplitude * sin(k . p + phase)``, relative to the albedo (``k`` in radians per mm).

    ``folded`` waves are multiplied by the surface's fold envelope (creases around a joint).
    """

    k: Vector
    phase: float
    amplitude: float
    amplitude_b: float = 0.0
    folded: bool = False


@dataclass(frozen=True)
class Line:
    """A seam: the albedo darkens by up to ``depth`` within about ``width`` mm of the plane
    ``normal . p = offset`` (``normal`` a unit vector)."""

    normal: Vector
    offset: float
    width: float
    depth: float


@dataclass(frozen=True)
class Blob:
    """A round patch of albedo ``albedo`` (weight ``strength`` at its centre, ``radius`` mm the
    standard deviation of its profile) around ``centre``, a point of the surface."""

    centre: Vector
    radius: float
    albedo: float
    strength: float


@dataclass(frozen=True)
class Surface:
    """The texture of one capsule (see the module docstring).

    Attributes:
        albedo: material A's albedo (where ``boundary . p <= boundary_offset``).
        albedo_b: material B's albedo (the other side).
        boundary: unit normal of the plane between the materials; zero: material A only.
        boundary_offset, boundary_width: the plane's offset and its edge's width (mm).
        tint: front/back tint amplitude (``n . forward``).
        fold_centre, fold_width, fold_base: the envelope of folded waves along the axis,
            ``base + (1 - base) * bump((p3 - centre) / width)``.
        waves, lines, blobs: the features.
    """

    albedo: float
    albedo_b: float = 0.0
    boundary: Vector = (0.0, 0.0, 0.0)
    boundary_offset: float = 0.0
    boundary_width: float = 1.0
    tint: float = 0.0
    fold_centre: float = 0.0
    fold_width: float = 1.0
    fold_base: float = 1.0
    waves: tuple[Wave, ...] = ()
    lines: tuple[Line, ...] = ()
    blobs: tuple[Blob, ...] = ()

    def __post_init__(self) -> None:
        counts = (len(self.waves), len(self.lines), len(self.blobs))
        if any(c > m for c, m in zip(counts, (MAX_WAVES, MAX_LINES, MAX_BLOBS), strict=True)):
            raise SynthError(
                f"Surface: at most {MAX_WAVES} waves, {MAX_LINES} lines and {MAX_BLOBS} blobs, "
                f"got {counts}"
            )
        widths = [self.boundary_width, self.fold_width]
        widths += [line.width for line in self.lines] + [b.radius for b in self.blobs]
        if min(widths) <= 0:
            raise SynthError("Surface: widths and radii must be positive")


def pack_surfaces(surfaces: Sequence[Surface]) -> FloatArray:
    """The kernels' table: a row of ``COLUMNS`` float64 per capsule, shape ``(C, COLUMNS)``."""
    table = np.zeros((len(surfaces), COLUMNS))
    for row, s in zip(table, surfaces, strict=True):
        row[ALBEDO_A], row[ALBEDO_B] = s.albedo, s.albedo_b
        row[BOUNDARY : BOUNDARY + 3] = s.boundary
        row[BOUNDARY_OFFSET], row[BOUNDARY_WIDTH], row[TINT] = (
            s.boundary_offset,
            s.boundary_width,
            s.tint,
        )
        row[FOLD_CENTRE], row[FOLD_WIDTH], row[FOLD_BASE] = s.fold_centre, s.fold_width, s.fold_base
        row[N_WAVES], row[N_LINES], row[N_BLOBS] = len(s.waves), len(s.lines), len(s.blobs)
        for i, w in enumerate(s.waves):
            at = WAVES + i * WAVE_SIZE
            size2 = w.k[0] ** 2 + w.k[1] ** 2 + w.k[2] ** 2
            row[at : at + WAVE_SIZE] = (*w.k, size2, w.phase, w.amplitude, w.amplitude_b, w.folded)
        for i, line in enumerate(s.lines):
            at = LINES + i * LINE_SIZE
            row[at : at + LINE_SIZE] = (*line.normal, line.offset, line.width, line.depth)
        for i, b in enumerate(s.blobs):
            at = BLOBS + i * BLOB_SIZE
            row[at : at + BLOB_SIZE] = (*b.centre, b.radius, b.albedo, b.strength)
    return table


__all__ = [
    "MIN_FACING",
    "PIXEL_BLUR",
    "Blob",
    "Line",
    "Surface",
    "Vector",
    "Wave",
    "pack_surfaces",
]
