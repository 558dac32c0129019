"""The volumetric body: capsules (and spheres) hung on the skeleton, for rendering.

A capsule is the set of points within ``radius`` of the segment ``a -> b``; a sphere is a capsule
with ``a == b``. Every one of the 13 joints lies on some capsule's axis, so a joint's projection
falls on the rendered body wherever the joint is visible. The torso is a central spine capsule
plus a frame of thinner capsules through the shoulder and hip joints (hip -> shoulder on each
side, shoulder <-> shoulder, hip <-> hip): wider than deep, like a person.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import IntEnum

import numpy as np
import numpy.typing as npt

from hybridpose.joints import JOINT_NAMES
from hybridpose.synth.skeleton import BodyShape, SkeletonFrames, SynthError

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]


class BodyPart(IntEnum):
    """What a capsule is part of (for clothing and skin colours)."""

    HEAD = 0
    NECK = 1
    TORSO = 2
    UPPER_ARM = 3
    FOREARM = 4
    HAND = 5
    PELVIS = 6
    THIGH = 7
    SHIN = 8
    FOOT = 9


# The spine capsule stops short of the neck point by this fraction of its radius, so that its
# rounded top reads as the trapezius below the neck rather than swallowing the neck.
_SPINE_TOP_INSET = 0.6

_J = {name: i for i, name in enumerate(JOINT_NAMES)}

# name, part, side (+1 right, -1 left, 0 centre), end a, end b, radius attribute of BodyShape.
# End points name a joint, "neck", "pelvis", "spine_top", "toeR"/"toeL".
_LAYOUT: tuple[tuple[str, BodyPart, int, str, str, str], ...] = (
    ("head", BodyPart.HEAD, 0, "head", "head", "head_radius"),
    ("neck", BodyPart.NECK, 0, "neck", "head", "neck_radius"),
    ("spine", BodyPart.TORSO, 0, "pelvis", "spine_top", "torso_radius"),
    ("flankR", BodyPart.TORSO, 1, "hipR", "shoulderR", "flank_radius"),
    ("flankL", BodyPart.TORSO, -1, "hipL", "shoulderL", "flank_radius"),
    ("shoulders", BodyPart.TORSO, 0, "shoulderR", "shoulderL", "flank_radius"),
    ("hips", BodyPart.PELVIS, 0, "hipR", "hipL", "pelvis_radius"),
    ("upper_armR", BodyPart.UPPER_ARM, 1, "shoulderR", "elbowR", "upper_arm_radius"),
    ("upper_armL", BodyPart.UPPER_ARM, -1, "shoulderL", "elbowL", "upper_arm_radius"),
    ("forearmR", BodyPart.FOREARM, 1, "elbowR", "handR", "forearm_radius"),
    ("forearmL", BodyPart.FOREARM, -1, "elbowL", "handL", "forearm_radius"),
    ("handR", BodyPart.HAND, 1, "handR", "handR", "hand_radius"),
    ("handL", BodyPart.HAND, -1, "handL", "handL", "hand_radius"),
    ("thighR", BodyPart.THIGH, 1, "hipR", "kneeR", "thigh_radius"),
    ("thighL", BodyPart.THIGH, -1, "hipL", "kneeL", "thigh_radius"),
    ("shinR", BodyPart.SHIN, 1, "kneeR", "footR", "shin_radius"),
    ("shinL", BodyPart.SHIN, -1, "kneeL", "footL", "shin_radius"),
    ("footR", BodyPart.FOOT, 1, "footR", "toeR", "foot_radius"),
    ("footL", BodyPart.FOOT, -1, "footL", "toeL", "foot_radius"),
)

CAPSULE_NAMES: tuple[str, ...] = tuple(row[0] for row in _LAYOUT)
CAPSULE_PARTS: tuple[BodyPart, ...] = tuple(row[1] for row in _LAYOUT)
"""The :class:`BodyPart` of each capsule, in :func:`body_capsules` order."""
"""The capsules in the order :func:`body_capsules` returns them (19)."""


@dataclass(frozen=True, eq=False)
class Capsules:
    """The body as C capsules at K instants.

    Attributes:
        a, b: (K, C, 3) end points of each capsule's axis, world mm (``a == b``: a sphere).
        radius: (C,) mm.
        part: (C,) int64 :class:`BodyPart` values.
        side: (C,) int64: -1 left, 0 centre, +1 right.
    """

    a: FloatArray
    b: FloatArray
    radius: FloatArray
    part: IntArray
    side: IntArray

    def __post_init__(self) -> None:
        a = np.asarray(self.a, dtype=np.float64)
        b = np.asarray(self.b, dtype=np.float64)
        radius = np.asarray(self.radius, dtype=np.float64)
        part = np.asarray(self.part, dtype=np.int64)
        side = np.asarray(self.side, dtype=np.int64)
        if a.ndim != 3 or a.shape[2] != 3 or b.shape != a.shape:
            raise SynthError(f"Capsules: a and b must be (K, C, 3), got {a.shape} and {b.shape}")
        count = a.shape[1]
        for name, arr in (("radius", radius), ("part", part), ("side", side)):
            if arr.shape != (count,):
                raise SynthError(f"Capsules.{name}: expected shape ({count},), got {arr.shape}")
        if not np.all(radius > 0):
            raise SynthError("Capsules.radius: radii must be positive")
        for name, arr in (("a", a), ("b", b), ("radius", radius), ("part", part), ("side", side)):
            object.__setattr__(self, name, arr)

    @property
    def count(self) -> int:
        """C, the number of capsules."""
        return int(self.radius.shape[0])


def body_capsules(body: BodyShape, frames: SkeletonFrames) -> Capsules:
    """The capsule body of ``body`` posed as ``frames``.

    Args:
        body: radii (and the segment lengths the frames were made with).
        frames: the skeleton at K instants.

    Returns:
        19 capsules (:data:`CAPSULE_NAMES`): head sphere, neck, torso (spine, two flanks,
        shoulder bar), pelvis bar, upper arms, forearms, hand spheres, thighs, shins, feet.

    Shape:
        frames (K, ...) -> a, b (K, 19, 3); radius, part, side (19,).
    """
    if not isinstance(body, BodyShape):
        raise SynthError(f"body_capsules: body must be a BodyShape, got {type(body)}")
    if not isinstance(frames, SkeletonFrames):
        raise SynthError(f"body_capsules: frames must be SkeletonFrames, got {type(frames)}")
    # the trunk's axis from the pelvis to the neck point (unit; the torso length is rigid)
    axis = (frames.neck - frames.pelvis) / body.torso_length
    points: dict[str, FloatArray] = {name: frames.joints[:, i] for name, i in _J.items()}
    points["neck"] = frames.neck
    points["pelvis"] = frames.pelvis
    points["spine_top"] = frames.neck - (_SPINE_TOP_INSET * body.torso_radius) * axis
    points["toeR"] = frames.toes[:, 0]
    points["toeL"] = frames.toes[:, 1]
    a = np.stack([points[row[3]] for row in _LAYOUT], axis=1)
    b = np.stack([points[row[4]] for row in _LAYOUT], axis=1)
    return Capsules(
        a=a,
        b=b,
        radius=np.array([getattr(body, row[5]) for row in _LAYOUT], dtype=np.float64),
        part=np.array(CAPSULE_PARTS, dtype=np.int64),
        side=np.array([row[2] for row in _LAYOUT], dtype=np.int64),
    )
