"""The static world around the synthetic subject: DHP19-like cameras, background, light, clothing.

Everything here is fixed for a whole dataset except the clothing, which is drawn per subject.
World frame (shared with :mod:`hybridpose.synth.skeleton`): millimetres, ``z`` up, floor at
``z = 0``, the subject near the origin facing ``+y`` with its right towards ``+x``.

DHP19 filmed with four static DAVIS346 cameras (346x260) around the subject, two of them in
front. The synthetic rig mirrors that layout and DHP19's camera numbering: cameras 2 and 3 are
the front pair (DHP19's matrix files P3 and P2, the pair its 3D protocol triangulates) and
cameras 0 and 1 look from behind the subject's sides.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
from scipy.ndimage import gaussian_filter

from hybridpose.geometry import Camera
from hybridpose.io.recording import CameraCalibration
from hybridpose.synth.body import BodyPart

FloatArray = npt.NDArray[np.float64]

SENSOR_SIZE = (346, 260)
"""DAVIS346 resolution ``(width, height)``: the full-resolution synthetic sensor."""


@dataclass(frozen=True)
class RigConfig:
    """Placement of the four cameras (full-resolution intrinsics; scaled for smaller sensors).

    Attributes:
        azimuths_deg: per camera, the angle around the vertical axis from the subject's front
            (``+y``) towards its right (``+x``).
        distance_mm: horizontal distance of every camera from the origin.
        height_mm: camera height above the floor.
        target_mm: the point all cameras look at.
        focal_px: focal length in full-resolution pixels (DAVIS346: 18.5 um pixels).
    """

    azimuths_deg: tuple[float, float, float, float] = (-120.0, 120.0, 28.0, -28.0)
    distance_mm: float = 3000.0
    height_mm: float = 1800.0
    target_mm: tuple[float, float, float] = (0.0, 0.0, 950.0)
    focal_px: float = 280.0


def _look_at(position: FloatArray, target: FloatArray) -> FloatArray:
    """Rotation whose rows are the camera's image-right, image-down and viewing axes."""
    forward = target - position
    forward /= np.linalg.norm(forward)
    right = np.cross(forward, [0.0, 0.0, 1.0])
    right /= np.linalg.norm(right)
    down = np.cross(forward, right)
    return np.stack([right, down, forward])


def rig_cameras(
    sensor_size: tuple[int, int] = SENSOR_SIZE, config: RigConfig = RigConfig()
) -> list[Camera]:
    """The four static cameras for a sensor of ``sensor_size = (width, height)`` pixels.

    A smaller sensor sees the same field of view with larger pixels: intrinsics are scaled per
    axis by ``width / 346`` and ``height / 260`` about the image's outer corner, so that pixel
    centres stay at integer coordinates (docs/data-format.md).
    """
    width, height = sensor_size
    sx, sy = width / SENSOR_SIZE[0], height / SENSOR_SIZE[1]
    cx, cy = (SENSOR_SIZE[0] - 1) / 2, (SENSOR_SIZE[1] - 1) / 2
    K = np.array(
        [
            [config.focal_px * sx, 0.0, (cx + 0.5) * sx - 0.5],
            [0.0, config.focal_px * sy, (cy + 0.5) * sy - 0.5],
            [0.0, 0.0, 1.0],
        ]
    )
    target = np.asarray(config.target_mm, dtype=np.float64)
    cameras = []
    for azimuth in np.radians(config.azimuths_deg):
        position = np.array(
            [
                config.distance_mm * np.sin(azimuth),
                config.distance_mm * np.cos(azimuth),
                config.height_mm,
            ]
        )
        R = _look_at(position, target)
        cameras.append(Camera.from_KRt(K, R, -R @ position))
    return cameras


def rig_calibrations(
    sensor_size: tuple[int, int] = SENSOR_SIZE, config: RigConfig = RigConfig()
) -> list[CameraCalibration]:
    """:func:`rig_cameras` as the calibrations stored in recording files."""
    return [
        CameraCalibration(cam.P, cam.center, name=f"synthetic-cam{i}")
        for i, cam in enumerate(rig_cameras(sensor_size, config))
    ]


def background(
    sensor_size: tuple[int, int], rng: np.random.Generator, low: float = 0.12, high: float = 0.55
) -> npt.NDArray[np.float32]:
    """A static textured background (linear intensity in ``[low, high]``), shape ``(H, W)``.

    Band-limited noise at two scales (walls, furniture, floor texture) plus a vertical gradient;
    blurred in proportion to the sensor size so every resolution sees the same scene.
    """
    width, height = sensor_size
    scale = width / SENSOR_SIZE[0]
    coarse = gaussian_filter(rng.standard_normal((height, width)), 14.0 * scale, mode="wrap")
    fine = gaussian_filter(rng.standard_normal((height, width)), 2.5 * scale, mode="wrap")
    image = coarse / (coarse.std() + 1e-12) + 0.5 * fine / (fine.std() + 1e-12)
    image += np.linspace(0.6, -0.6, height)[:, None]
    lo, hi = np.percentile(image, [1, 99])
    image = np.clip((image - lo) / (hi - lo + 1e-12), 0.0, 1.0)
    out: npt.NDArray[np.float32] = (low + (high - low) * image).astype(np.float32)
    return out


@dataclass(frozen=True)
class Lighting:
    """One directional light plus ambient light (Lambertian shading).

    ``direction`` points from the scene towards the light; shading is
    ``albedo * (ambient + (1 - ambient) * max(0, n . direction))``.
    """

    direction: tuple[float, float, float] = (0.35, 0.55, 0.76)
    ambient: float = 0.35

    def unit_direction(self) -> FloatArray:
        d = np.asarray(self.direction, dtype=np.float64)
        return d / np.linalg.norm(d)


@dataclass(frozen=True, eq=False)
class Clothing:
    """Per-capsule surface appearance of one subject (arrays of shape ``(C,)``).

    The albedo at a surface point is
    ``albedo * (1 + stripe_amplitude * sin(2 pi y / stripe_period + stripe_phase))
    * (1 + tint_amplitude * (n . forward))``, with ``y`` the distance along the capsule axis
    (mm) and ``n . forward`` the surface normal against the body's facing direction: stripes
    that slide with the limb and a front/back tint that turns with the body.
    """

    albedo: FloatArray
    stripe_amplitude: FloatArray
    stripe_period: FloatArray
    stripe_phase: FloatArray
    tint_amplitude: FloatArray


_SKIN = (BodyPart.HEAD, BodyPart.NECK, BodyPart.HAND)
_TOP = (BodyPart.TORSO, BodyPart.UPPER_ARM)
_BOTTOM = (BodyPart.PELVIS, BodyPart.THIGH, BodyPart.SHIN)


def sample_clothing(parts: npt.ArrayLike, rng: np.random.Generator) -> Clothing:
    """Draw one subject's clothing for capsules of the given :class:`BodyPart` values.

    Skin, a top (torso and upper arms; forearms too when the sleeves are long), trousers and
    shoes each get an albedo; the top and the trousers get a stripe pattern and a tint.
    """
    parts = np.asarray(parts, dtype=np.int64)
    skin = rng.uniform(0.25, 0.75)
    top = rng.uniform(0.08, 0.9)
    bottom = rng.uniform(0.06, 0.6)
    shoes = rng.uniform(0.04, 0.4)
    long_sleeves = rng.random() < 0.5
    albedo = np.full(len(parts), skin)
    amplitude = np.zeros(len(parts))
    period = np.full(len(parts), 100.0)
    phase = rng.uniform(0.0, 2 * np.pi, len(parts))
    tint = np.zeros(len(parts))
    top_stripes = (rng.uniform(0.0, 0.35), rng.uniform(30.0, 160.0), rng.uniform(-0.25, 0.25))
    bottom_stripes = (rng.uniform(0.0, 0.2), rng.uniform(60.0, 250.0), rng.uniform(-0.15, 0.15))
    for i, part in enumerate(parts):
        if part in _TOP or (part == BodyPart.FOREARM and long_sleeves):
            albedo[i] = top
            amplitude[i], period[i], tint[i] = top_stripes
        elif part in _BOTTOM:
            albedo[i] = bottom
            amplitude[i], period[i], tint[i] = bottom_stripes
        elif part == BodyPart.FOOT:
            albedo[i] = shoes
    return Clothing(albedo, amplitude, period, phase, tint)
