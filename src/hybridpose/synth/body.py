"""The volumetric body: capsules (and spheres) hung on the skeleton, for rendering.

A capsule is the set of points within ``radius`` of the segment ``a -> b``; a sphere is a capsule
with ``a == b``. Every one of the 13 joints lies on some capsule's axis, so a joint's projection
falls on the rendered body wherever the joint is visible. The torso is a central spine capsule
plus a frame of thinner capsules through the shoulder and hip joints (hip -> shoulder on each
side, shoulder <-> shoulder, hip <-> hip): wider than deep, like a person.

Each capsule also carries a body-fixed frame (:func:`capsule_frames`) in which its surface
texture is drawn (:mod:`hybridpose.synth.texture`), so that the texture moves with the limb.
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
        frame: (K, C, 3, 3) each capsule's body-fixed frame, rows ``e1, e2, e3`` (``e3`` the
            axis, ``e1`` the zero of the angle around it; :func:`capsule_frames`), or None
            (a textured rendering needs it).
    """

    a: FloatArray
    b: FloatArray
    radius: FloatArray
    part: IntArray
    side: IntArray
    frame: FloatArray | None = None

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
        if self.frame is not None:
            frame = np.asarray(self.frame, dtype=np.float64)
            if frame.shape != (*a.shape[:2], 3, 3):
                raise SynthError(
                    f"Capsules.frame: expected shape {(*a.shape[:2], 3, 3)}, got {frame.shape}"
                )
            object.__setattr__(self, "frame", frame)

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
        frame=capsule_frames(frames),
    )


# --------------------------------------------------------------------------- texture frames
# A limb's roll about its own axis is not in the joint positions, so each limb's frame is
# carried from its parent's by the smallest rotation that takes a base direction to the limb's
# axis. At the hinges (elbow, knee, ankle) the base is the parent's axis and that rotation is
# the hinge's own. At the shoulders and hips it is a direction the limb never points away from
# (the carried frame flips where the cosine reaches -1; over all 33 movements it stays above
# 0.08 for the upper arms and 0.65 for the thighs): lateral-forward-down for an arm (in the
# trunk's frame, lateral towards its own side), forward-down for a thigh (the root's frame).
_ARM_BASE = (0.67, 0.64, -0.38)  # (lateral, forward, up)
_THIGH_BASE = (0.6, -0.8)  # (forward, up)


def _unit(v: FloatArray) -> FloatArray:
    return np.asarray(v / np.sqrt(_dot(v, v)), dtype=np.float64)


def _dot(u: FloatArray, v: FloatArray) -> FloatArray:
    """``u . v`` over the last axis (of 3), kept: ``np.sum``'s order of additions spelled out
    (a numpy reduction over an axis of 3 costs more than the three products)."""
    out = u[..., 0] * v[..., 0] + u[..., 1] * v[..., 1] + u[..., 2] * v[..., 2]
    return np.asarray(out[..., None], dtype=np.float64)


def _cross(u: FloatArray, v: FloatArray) -> FloatArray:
    """``u x v`` over the last axis: ``np.cross``'s arithmetic, term for term, without its
    axis shuffling (which cost a quarter of posing the body)."""
    out = np.empty(np.broadcast_shapes(u.shape, v.shape))
    out[..., 0] = u[..., 1] * v[..., 2] - u[..., 2] * v[..., 1]
    out[..., 1] = u[..., 2] * v[..., 0] - u[..., 0] * v[..., 2]
    out[..., 2] = u[..., 0] * v[..., 1] - u[..., 1] * v[..., 0]
    return out


def _carry(v: FloatArray, base: FloatArray, axis: FloatArray) -> FloatArray:
    """``v`` turned by the smallest rotation that takes unit ``base`` to unit ``axis``:
    ``c v + k x v + k (k . v) / (1 + c)`` with ``k = base x axis``, ``c = base . axis``."""
    k = _cross(base, axis)
    c = _dot(base, axis)
    return np.asarray(c * v + _cross(k, v) + k * _dot(k, v) / (1.0 + c), dtype=np.float64)


def capsule_frames(frames: SkeletonFrames) -> FloatArray:
    """Body-fixed frames of the 19 capsules: rows ``e1`` (the front at rest), ``e2``, ``e3``
    (the axis; for the head and hand spheres, their parent's).

    The head, neck and spine use the trunk's frame (up from the pelvis to the neck point, front
    from the shoulder line); the flanks and the shoulder bar their own axes with the trunk's
    front, the hip bar its axis with the root's front; the limbs are carried from their parents
    (see the comment above) and the hands take their forearm's frame. Every step commutes with
    rotations, so a rigidly moved skeleton moves every frame with it.

    Shape:
        frames (K, ...) -> (K, 19, 3, 3).
    """
    joint = {name: frames.joints[:, i] for name, i in _J.items()}
    up = _unit(frames.neck - frames.pelvis)
    right = _unit(joint["shoulderR"] - joint["shoulderL"])
    front = _cross(up, right)
    hip_right = _unit(joint["hipR"] - joint["hipL"])
    root_front = np.asarray(frames.forward, dtype=np.float64)
    root_up = _cross(hip_right, root_front)
    axis = {"head": up, "neck": up, "spine": up, "shoulders": -right, "hips": -hip_right}
    ref = {"head": front, "neck": front, "spine": front, "shoulders": front, "hips": root_front}
    for s, side in ((1.0, "R"), (-1.0, "L")):

        def segment(start: str, end: str, side: str = side) -> FloatArray:
            return _unit(joint[end + side] - joint[start + side])

        arm_base = _unit(s * _ARM_BASE[0] * right + _ARM_BASE[1] * front + _ARM_BASE[2] * up)
        thigh_base = _unit(_THIGH_BASE[0] * root_front + _THIGH_BASE[1] * root_up)
        upper, fore = segment("shoulder", "elbow"), segment("elbow", "hand")
        thigh, shin = segment("hip", "knee"), segment("knee", "foot")
        foot = _unit(frames.toes[:, 0 if side == "R" else 1] - joint["foot" + side])
        upper_ref = _carry(_carry(front, -up, arm_base), arm_base, upper)
        thigh_ref = _carry(_carry(root_front, -root_up, thigh_base), thigh_base, thigh)
        shin_ref = _carry(thigh_ref, thigh, shin)
        fore_ref = _carry(upper_ref, upper, fore)
        limbs = {
            "flank": (segment("hip", "shoulder"), front),
            "upper_arm": (upper, upper_ref),
            "forearm": (fore, fore_ref),
            "hand": (fore, fore_ref),
            "thigh": (thigh, thigh_ref),
            "shin": (shin, shin_ref),
            "foot": (foot, _carry(shin_ref, shin, foot)),
        }
        for name, (limb_axis, limb_ref) in limbs.items():
            axis[name + side], ref[name + side] = limb_axis, limb_ref
    e3 = np.stack([axis[name] for name in CAPSULE_NAMES], axis=1)  # (K, C, 3)
    e1 = np.stack([ref[name] for name in CAPSULE_NAMES], axis=1)
    e1 = _unit(e1 - _dot(e1, e3) * e3)
    return np.stack([e1, _cross(e3, e1), e3], axis=2)
