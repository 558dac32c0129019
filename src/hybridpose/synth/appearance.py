"""How a synthetic subject looks: plain capsules, or people in everyday clothes in a lab.

``"plain"`` is the appearance of the first generator (:class:`~hybridpose.synth.scene.Clothing`:
one albedo per capsule, stripes along the limbs, a front/back tint). ``"clothed"`` dresses the
body like DHP19's subjects: every segment's girth varies on its own
(:func:`~hybridpose.synth.skeleton.sample_girths`), and each capsule gets a body-fixed texture
(:mod:`hybridpose.synth.texture`):

- **clothes**: a top (short or long sleeves; hem, cuff, armhole and side seams; stripes on some;
  a print on the chest of half of them), trousers or shorts (waistband, fly, side seams,
  hems), shoes with a sole line; the top and the trousers contrast for most subjects;
  every fabric has a fine grain and creases that gather at the elbows, knees and waist;
- **skin** (face, neck, hands, arms below short sleeves, legs below shorts) with a weak
  mottling, socks under shorts for some;
- **hair**: a darker cap over the top and back of the head, reaching down the neck for long
  hair; a face (eyes and a mouth) in front.

The draws come from the subject's generator in a fixed order, after those of
:func:`~hybridpose.synth.skeleton.sample_body`, so a subject looks the same in every recording.
:data:`RANGES`, :data:`SHARES` and :data:`PATTERN_SHARES` list the parameters.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Literal

import numpy as np
import numpy.typing as npt

from hybridpose.synth.body import CAPSULE_NAMES, CAPSULE_PARTS
from hybridpose.synth.scene import Clothing, sample_clothing
from hybridpose.synth.skeleton import BodyShape, SynthError, sample_body, sample_girths
from hybridpose.synth.texture import Blob, Line, Surface, Vector, Wave, pack_surfaces

FloatArray = npt.NDArray[np.float64]

AppearanceName = Literal["plain", "clothed"]
APPEARANCES: tuple[AppearanceName, ...] = ("plain", "clothed")
"""The appearances a subject can have (see the module docstring)."""

RANGES: dict[str, tuple[float, float]] = {
    # albedos (linear reflectance)
    "skin_albedo": (0.25, 0.75),
    "dark_hair_albedo": (0.03, 0.15),
    "fair_hair_albedo": (0.18, 0.4),
    "top_albedo": (0.08, 0.9),
    "trousers_albedo": (0.06, 0.6),
    "shoes_albedo": (0.04, 0.4),
    "white_socks_albedo": (0.6, 0.9),
    "dark_socks_albedo": (0.05, 0.2),
    "dark_print_albedo": (0.03, 0.15),  # on a top lighter than 0.35
    "light_print_albedo": (0.55, 0.9),  # on a darker one
    # relative albedo amplitudes (each the sum over the feature's waves)
    "skin_mottle": (0.02, 0.05),  # 2 waves
    "grain": (0.06, 0.12),  # 2 waves
    "top_pattern": (0.2, 0.4),  # per stripe wave; period below
    "trousers_pattern": (0.1, 0.25),
    "creases": (0.4, 0.7),  # 2 waves; the fabric's waves are scaled to sum <= MAX_MODULATION
    "fold_base": (0.5, 0.8),  # the creases' strength away from their joint
    "seam_depth": (0.3, 0.6),  # darkening at a seam's centre (shoes' sole: 0.2-0.45)
    "print_strength": (0.7, 1.0),
    "top_tint": (-0.25, 0.25),
    "trousers_tint": (-0.15, 0.15),
    # lengths (mm), angles (rad), fractions
    "mottle_wavelength_mm": (25.0, 70.0),
    "grain_wavelength_mm": (15.0, 40.0),
    "top_period_mm": (30.0, 160.0),
    "trousers_period_mm": (40.0, 120.0),
    "crease_wavelength_mm": (35.0, 90.0),
    "crease_tilt_rad": (0.44, 1.31),  # from the axis: 25-75 degrees
    "fold_width_mm": (50.0, 90.0),
    "print_radius_mm": (12.0, 40.0),
    "print_blobs": (3, 5),
    "print_angle_rad": (-0.45, 0.45),  # around the chest from the front
    "print_height": (0.5, 0.8),  # torso lengths above the pelvis
    "waist": (0.14, 0.24),  # torso lengths above the hip joints
    "sleeve_hem": (0.3, 0.6),  # short sleeves: upper-arm lengths from the shoulder
    "shorts_hem": (0.35, 0.65),  # shorts: thigh lengths from the hip
    "socks_height_mm": (60.0, 150.0),
    "short_hairline": (-0.2, 0.1),  # head radii (see _head); higher: less hair
    "long_hairline": (-0.45, -0.3),
    "neck_hairline": (-0.35, 0.0),  # long hair: neck radii
    "eye_height": (0.05, 0.2),  # head radii above the head's centre
}
"""The clothed appearance's parameters and their ranges (uniform draws)."""

SHARES: dict[str, float] = {
    "dark_hair": 0.8,
    "long_hair": 0.35,
    "long_sleeves": 0.5,
    "shorts": 0.25,
    "socks": 0.6,  # under shorts
    "white_socks": 0.5,
    "printed": 0.5,
    "contrast": 0.7,  # the trousers at least 1.6x lighter or darker than the top
}
"""The shares of subjects with each kind of garment or feature."""


def _draw(rng: np.random.Generator, name: str) -> float:
    return float(rng.uniform(*RANGES[name]))


def _chance(rng: np.random.Generator, name: str) -> bool:
    return bool(rng.random() < SHARES[name])


@dataclass(frozen=True)
class Fabric:
    """A material: its albedo and its pattern's waves (``(k, amplitude)``; the phases are drawn
    per capsule)."""

    albedo: float
    grain: tuple[tuple[Vector, float], ...] = ()  # fine noise (material B's amplitude too)
    pattern: tuple[tuple[Vector, float], ...] = ()  # stripes or checks
    creases: tuple[tuple[Vector, float], ...] = ()  # gathered around a joint
    seam_depth: float = 0.0
    tint: float = 0.0


@dataclass(frozen=True, eq=False)
class Appearance:
    """One subject's clothed look (see the module docstring).

    Attributes:
        surfaces: the texture of each capsule, in :data:`~hybridpose.synth.body.CAPSULE_NAMES`
            order (a body of other capsules may have as many surfaces as it has capsules).
        sleeves, legs, hair: the kinds drawn.
        printed: whether the top carries a print.
        top_pattern: the top's pattern (:data:`PATTERNS`).
        table: (C, COLUMNS) the surfaces packed for the renderer.
    """

    surfaces: tuple[Surface, ...]
    sleeves: Literal["long", "short"]
    legs: Literal["trousers", "shorts"]
    hair: Literal["short", "long"]
    printed: bool
    top_pattern: str
    table: FloatArray = field(init=False)

    def __post_init__(self) -> None:
        if not self.surfaces:
            raise SynthError("Appearance: no surfaces")
        table = pack_surfaces(self.surfaces)
        table.flags.writeable = False
        object.__setattr__(self, "table", table)


def sample_person(
    rng: np.random.Generator, appearance: AppearanceName = "clothed"
) -> tuple[BodyShape, Clothing | Appearance]:
    """A subject's body and look, drawn from its generator.

    ``"plain"`` draws exactly what the first generator drew (:func:`sample_body`, then
    :func:`sample_clothing`), so its recordings are reproduced; ``"clothed"`` draws the same
    body, then per-segment girths and :func:`sample_appearance`.

    Raises:
        SynthError: an unknown appearance.
    """
    if appearance not in APPEARANCES:
        raise SynthError(f"appearance must be one of {', '.join(APPEARANCES)}, got {appearance!r}")
    body = sample_body(rng)
    if appearance == "plain":
        return body, sample_clothing(CAPSULE_PARTS, rng)
    body = sample_girths(body, rng)
    return body, sample_appearance(body, rng)


# ------------------------------------------------------------------------ fabrics
def _waves(
    rng: np.random.Generator, count: int, total: float, wavelength: tuple[float, float]
) -> tuple[tuple[Vector, float], ...]:
    """``count`` waves in random 3D directions sharing the amplitude ``total``."""
    out = []
    for _ in range(count):
        direction = rng.normal(size=3)
        direction /= np.linalg.norm(direction)
        k = direction * (2.0 * math.pi / rng.uniform(*wavelength))
        out.append(((float(k[0]), float(k[1]), float(k[2])), total / count))
    return tuple(out)


def _creases(rng: np.random.Generator, total: float) -> tuple[tuple[Vector, float], ...]:
    """Two oblique creases (tilted from the axis by ``crease_tilt_rad``)."""
    out = []
    for _ in range(2):
        tilt, turn = _draw(rng, "crease_tilt_rad"), rng.uniform(0.0, 2.0 * math.pi)
        size = 2.0 * math.pi / _draw(rng, "crease_wavelength_mm")
        k = (
            size * math.sin(tilt) * math.cos(turn),
            size * math.sin(tilt) * math.sin(turn),
            size * math.cos(tilt),
        )
        out.append((k, total / 2))
    return tuple(out)


PATTERNS = ("plain", "rings", "lengthwise", "checks")
"""A fabric's pattern: none, stripes around the limbs (across the axis), stripes along them,
or both."""


def _pattern(
    rng: np.random.Generator, kind: str, amplitude: float, period: float
) -> tuple[tuple[Vector, float], ...]:
    """The waves of a pattern: rings ``k`` along the axis, lengthwise stripes ``k`` across it
    (a random direction around the axis, the same for every capsule of the fabric)."""
    size = 2.0 * math.pi / period
    turn = rng.uniform(0.0, 2.0 * math.pi)
    rings = ((0.0, 0.0, size), amplitude)
    lengthwise = ((size * math.cos(turn), size * math.sin(turn), 0.0), amplitude)
    return {"plain": (), "rings": (rings,), "lengthwise": (lengthwise,)}.get(
        kind, (rings, lengthwise)
    )


PATTERN_SHARES: dict[str, tuple[float, float, float, float]] = {
    "top": (0.35, 0.25, 0.2, 0.2),
    "trousers": (0.75, 0.1, 0.15, 0.0),
}
"""The shares of each pattern (:data:`PATTERNS` order) among tops and trousers."""

MAX_MODULATION = 0.9
"""Largest summed amplitude of a fabric's waves (grain, pattern, creases): the albedo stays
above 10% of its mean."""


def _cloth(rng: np.random.Generator, albedo: float, garment: str) -> tuple[Fabric, str]:
    """A fabric of a ``"top"`` or ``"trousers"`` (grain, a pattern, creases, seams and a
    tint) and its pattern's name."""
    grain = _waves(rng, 2, _draw(rng, "grain"), RANGES["grain_wavelength_mm"])
    kind = str(rng.choice(PATTERNS, p=PATTERN_SHARES[garment]))
    amplitude, period = _draw(rng, f"{garment}_pattern"), _draw(rng, f"{garment}_period_mm")
    pattern = _pattern(rng, kind, amplitude, period)
    creases = _creases(rng, _draw(rng, "creases"))
    total = sum(a for _, a in grain + pattern + creases)
    scale = min(1.0, MAX_MODULATION / total)
    fabric = Fabric(
        albedo,
        grain,
        tuple((k, a * scale) for k, a in pattern),
        tuple((k, a * scale) for k, a in creases),
        seam_depth=_draw(rng, "seam_depth"),
        tint=_draw(rng, f"{garment}_tint"),
    )
    return fabric, kind


def _contrasting(rng: np.random.Generator, top: float) -> float:
    """The trousers' albedo; for the ``contrast`` share of subjects at least 1.6x lighter or
    darker than the top's (redrawn until it is)."""
    bottom = _draw(rng, "trousers_albedo")
    if _chance(rng, "contrast"):
        for _ in range(100):
            if max(top, bottom) >= 1.6 * min(top, bottom):
                break
            bottom = _draw(rng, "trousers_albedo")
    return bottom


# ------------------------------------------------------------------------ capsule surfaces
@dataclass(frozen=True)
class _Split:
    """Material B on the far side of ``normal . p = offset`` (see texture.Surface)."""

    fabric: Fabric
    normal: Vector
    offset: float
    width: float = 3.0


def _surface(
    rng: np.random.Generator,
    fabric: Fabric,
    split: _Split | None = None,
    lines: tuple[Line, ...] = (),
    blobs: tuple[Blob, ...] = (),
    fold_at: float | None = None,
) -> Surface:
    """One capsule's texture: ``fabric``'s waves (phases drawn here), material B's grain on
    the same waves, creases gathered around ``fold_at`` (mm along the axis; None: none)."""
    other = split.fabric if split is not None else Fabric(0.0)
    grain_b = sum(a for _, a in other.grain) / max(len(fabric.grain), 1)
    waves = [Wave(k, 0.0, a, grain_b) for k, a in fabric.grain]
    waves += [Wave(k, 0.0, a) for k, a in fabric.pattern]
    if fold_at is not None:
        waves += [Wave(k, 0.0, a, folded=True) for k, a in fabric.creases]
    phases = rng.uniform(0.0, 2.0 * math.pi, len(waves))
    waves = [
        Wave(w.k, float(p), w.amplitude, w.amplitude_b, w.folded)
        for w, p in zip(waves, phases, strict=True)
    ]
    return Surface(
        albedo=fabric.albedo,
        albedo_b=other.albedo,
        boundary=split.normal if split is not None else (0.0, 0.0, 0.0),
        boundary_offset=split.offset if split is not None else 0.0,
        boundary_width=split.width if split is not None else 1.0,
        tint=fabric.tint,
        fold_centre=fold_at if fold_at is not None else 0.0,
        fold_width=_draw(rng, "fold_width_mm"),
        fold_base=_draw(rng, "fold_base"),
        waves=tuple(waves),
        lines=lines,
        blobs=blobs,
    )


AXIAL: Vector = (0.0, 0.0, 1.0)
FRONT: Vector = (1.0, 0.0, 0.0)


def _seam(normal: Vector, offset: float, fabric: Fabric, width: float = 2.5) -> Line:
    return Line(normal, offset, width, fabric.seam_depth)


def _unit(x: float, y: float, z: float) -> Vector:
    norm = math.sqrt(x * x + y * y + z * z)
    return (x / norm, y / norm, z / norm)


def _at(radius: float, direction: Vector) -> Vector:
    return (radius * direction[0], radius * direction[1], radius * direction[2])


def _head(
    rng: np.random.Generator, body: BodyShape, skin: Fabric, hair: Fabric, long_hair: bool
) -> tuple[Surface, Surface]:
    """The head (a hair cap over a face) and the neck (hair down its back when long).

    The head's frame is the trunk's: ``e1`` forwards, ``e3`` up; the cap is material B above
    the plane ``(-0.45, 0, 0.89) . p = hairline * r``, which runs low at the back.
    """
    r = body.head_radius
    hairline = _draw(rng, "long_hairline" if long_hair else "short_hairline")
    eye_height = _draw(rng, "eye_height")
    eyes = tuple(
        Blob(_at(r, _unit(0.93, side * 0.33, eye_height)), 0.1 * r, skin.albedo * 0.35, 0.8)
        for side in (1.0, -1.0)
    )
    mouth = Blob(_at(r, _unit(0.9, 0.0, -0.45)), 0.13 * r, skin.albedo * 0.6, 0.5)
    cap = _Split(hair, _unit(-0.5, 0.0, 1.0), hairline * r, 5.0)
    head = _surface(rng, skin, cap, blobs=(*eyes, mouth))
    rn = body.neck_radius
    neck_hair = _Split(hair, (-1.0, 0.0, 0.0), _draw(rng, "neck_hairline") * rn, 5.0)
    neck = _surface(rng, skin, neck_hair if long_hair else None)
    return head, neck


def _print(rng: np.random.Generator, body: BodyShape, top: float) -> tuple[Blob, ...]:
    """A few patches of one contrasting albedo on the chest (the spine capsule's front)."""
    colour = _draw(rng, "dark_print_albedo" if top > 0.35 else "light_print_albedo")
    r = body.torso_radius
    low, high = RANGES["print_blobs"]
    blobs = []
    for _ in range(int(rng.integers(int(low), int(high) + 1))):
        angle = _draw(rng, "print_angle_rad")
        height = body.torso_length * _draw(rng, "print_height")
        centre = (r * math.cos(angle), r * math.sin(angle), height)
        radius, strength = _draw(rng, "print_radius_mm"), _draw(rng, "print_strength")
        blobs.append(Blob(centre, radius, colour, strength))
    return tuple(blobs)


def _torso(
    rng: np.random.Generator,
    body: BodyShape,
    top: Fabric,
    bottom: Fabric,
    printed: tuple[Blob, ...],
) -> dict[str, Surface]:
    """Spine, flanks and shoulder bar: the top above the waistband, the trousers below."""
    waist = body.torso_length * _draw(rng, "waist")  # above the hip joints
    trousers = _Split(bottom, (0.0, 0.0, -1.0), -waist)
    waistband = (_seam(AXIAL, waist, top), _seam(AXIAL, waist - 35.0, bottom))
    collar = _seam(AXIAL, body.torso_length - 0.1 * body.torso_radius, top)
    side = _seam(FRONT, 0.0, top)
    return {
        "spine": _surface(rng, top, trousers, (*waistband, collar), printed, fold_at=waist),
        "flankR": _surface(rng, top, trousers, (*waistband, side), fold_at=waist),
        "flankL": _surface(rng, top, trousers, (*waistband, side), fold_at=waist),
        "shoulders": _surface(rng, top, lines=(side,)),
    }


def _arms(
    rng: np.random.Generator,
    body: BodyShape,
    top: Fabric,
    skin: Fabric,
    sleeve_hem: float | None,
) -> dict[str, Surface]:
    """Upper arms, forearms and hands; ``sleeve_hem`` (mm from the shoulder) for short
    sleeves, None for long ones (cuffed at the wrist)."""
    out = {}
    side = _seam(FRONT, 0.0, top)
    armhole = _seam(AXIAL, 25.0, top)
    wrist = body.forearm - 0.9 * body.hand_radius
    for s in ("R", "L"):
        if sleeve_hem is None:
            upper = _surface(rng, top, None, (armhole, side), fold_at=body.upper_arm)
            cuff = (_seam(AXIAL, wrist - 30.0, top), side)
            fore = _surface(rng, top, _Split(skin, AXIAL, wrist), cuff, fold_at=0.0)
        else:
            hem = (armhole, _seam(AXIAL, sleeve_hem - 10.0, top), side)
            upper = _surface(rng, top, _Split(skin, AXIAL, sleeve_hem), hem, fold_at=0.0)
            fore = _surface(rng, skin)
        out["upper_arm" + s], out["forearm" + s], out["hand" + s] = upper, fore, _surface(rng, skin)
    return out


def _legs(
    rng: np.random.Generator,
    body: BodyShape,
    fabrics: tuple[Fabric, Fabric, Fabric, Fabric | None],
    shorts_hem: float | None,
) -> dict[str, Surface]:
    """Hip bar, thighs, shins and feet; ``fabrics`` = (trousers, skin, shoes, socks or None);
    ``shorts_hem`` (mm from the hip) for shorts, None for trousers."""
    bottom, skin, shoes, socks = fabrics
    side = _seam(FRONT, 0.0, bottom)
    out = {"hips": _surface(rng, bottom, None, (_seam(AXIAL, body.hip_width / 2, bottom),))}
    sock_top = body.shin - _draw(rng, "socks_height_mm")
    for s in ("R", "L"):
        if shorts_hem is None:
            thigh = _surface(rng, bottom, None, (side,), fold_at=body.thigh)
            hem = (_seam(AXIAL, body.shin - 25.0, bottom), side)
            shin = _surface(rng, bottom, None, hem, fold_at=0.0)
        else:
            hem = (_seam(AXIAL, shorts_hem - 12.0, bottom), side)
            thigh = _surface(rng, bottom, _Split(skin, AXIAL, shorts_hem), hem, fold_at=0.0)
            sock = _Split(socks, AXIAL, sock_top) if socks is not None else None
            shin = _surface(rng, skin, sock)
        sole = _seam(FRONT, -0.55 * body.foot_radius, shoes, width=4.0)
        out["thigh" + s], out["shin" + s] = thigh, shin
        out["foot" + s] = _surface(rng, shoes, None, (sole,))
    return out


def sample_appearance(body: BodyShape, rng: np.random.Generator) -> Appearance:
    """Draw one subject's clothed look (:data:`RANGES`, :data:`SHARES`, :data:`PATTERN_SHARES`).

    Args:
        body: the subject's body (for the seams' and the print's positions).
        rng: the random generator (consumed, in a fixed order).

    Returns:
        The appearance.
    """
    mottle = _waves(rng, 2, _draw(rng, "skin_mottle"), RANGES["mottle_wavelength_mm"])
    skin = Fabric(_draw(rng, "skin_albedo"), mottle)
    dark_hair = _chance(rng, "dark_hair")
    hair_albedo = _draw(rng, "dark_hair_albedo" if dark_hair else "fair_hair_albedo")
    hair = Fabric(hair_albedo, _waves(rng, 2, 0.12, RANGES["grain_wavelength_mm"]))
    long_hair = _chance(rng, "long_hair")
    top_albedo = _draw(rng, "top_albedo")
    bottom_albedo = _contrasting(rng, top_albedo)
    long_sleeves = _chance(rng, "long_sleeves")
    shorts = _chance(rng, "shorts")
    sleeve_hem = None if long_sleeves else body.upper_arm * _draw(rng, "sleeve_hem")
    shorts_hem = body.thigh * _draw(rng, "shorts_hem") if shorts else None
    top, top_pattern = _cloth(rng, top_albedo, "top")
    bottom, _ = _cloth(rng, bottom_albedo, "trousers")
    shoe_grain = _waves(rng, 2, 0.04, RANGES["grain_wavelength_mm"])
    shoes = Fabric(_draw(rng, "shoes_albedo"), shoe_grain, seam_depth=rng.uniform(0.2, 0.45))
    socks = None
    if shorts and _chance(rng, "socks"):
        white = _chance(rng, "white_socks")
        colour = _draw(rng, "white_socks_albedo" if white else "dark_socks_albedo")
        socks = Fabric(colour, _waves(rng, 2, 0.05, RANGES["grain_wavelength_mm"]))
    printed = _print(rng, body, top_albedo) if _chance(rng, "printed") else ()
    surfaces = dict(zip(("head", "neck"), _head(rng, body, skin, hair, long_hair), strict=True))
    surfaces |= _torso(rng, body, top, bottom, printed)
    surfaces |= _arms(rng, body, top, skin, sleeve_hem)
    surfaces |= _legs(rng, body, (bottom, skin, shoes, socks), shorts_hem)
    return Appearance(
        surfaces=tuple(surfaces[name] for name in CAPSULE_NAMES),
        sleeves="long" if long_sleeves else "short",
        legs="shorts" if shorts else "trousers",
        hair="long" if long_hair else "short",
        printed=bool(printed),
        top_pattern=top_pattern,
    )
