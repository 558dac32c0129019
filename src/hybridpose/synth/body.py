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

import math
from dataclasses import dataclass
from enum import IntEnum

import numpy as np
import numpy.typing as npt

from hybridpose._jit import jit, jit_inline
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


Vec = tuple[float, float, float]


@jit_inline
def _sub(u: Vec, v: Vec) -> Vec:
    return u[0] - v[0], u[1] - v[1], u[2] - v[2]


@jit_inline
def _add(u: Vec, v: Vec) -> Vec:
    return u[0] + v[0], u[1] + v[1], u[2] + v[2]


@jit_inline
def _dot(u: Vec, v: Vec) -> float:
    d: float = u[0] * v[0] + u[1] * v[1] + u[2] * v[2]
    return d


@jit_inline
def _scaled(c: float, v: Vec) -> Vec:
    return c * v[0], c * v[1], c * v[2]


@jit_inline
def _unit(v: Vec) -> Vec:
    n = math.sqrt(_dot(v, v))
    return v[0] / n, v[1] / n, v[2] / n


@jit_inline
def _cross(u: Vec, v: Vec) -> Vec:
    return (
        u[1] * v[2] - u[2] * v[1],
        u[2] * v[0] - u[0] * v[2],
        u[0] * v[1] - u[1] * v[0],
    )


@jit_inline
def _carry(v: Vec, base: Vec, axis: Vec) -> Vec:
    """``v`` turned by the smallest rotation that takes unit ``base`` to unit ``axis``:
    ``c v + k x v + k (k . v) / (1 + c)`` with ``k = base x axis``, ``c = base . axis``."""
    k = _cross(base, axis)
    c = _dot(base, axis)
    kv = _cross(k, v)
    d = _dot(k, v)
    return (
        c * v[0] + kv[0] + k[0] * d / (1.0 + c),
        c * v[1] + kv[1] + k[1] * d / (1.0 + c),
        c * v[2] + kv[2] + k[2] * d / (1.0 + c),
    )


@jit_inline
def _point(array: FloatArray) -> Vec:
    return array[0], array[1], array[2]


@jit_inline
def _put(out: FloatArray, axis: Vec, ref: Vec) -> None:
    """Write one capsule's frame (3, 3): ``e1`` is ``ref`` made perpendicular to ``axis``."""
    e1 = _unit(_sub(ref, _scaled(_dot(ref, axis), axis)))
    e2 = _cross(axis, e1)
    for i in range(3):
        out[0, i] = e1[i]
        out[1, i] = e2[i]
        out[2, i] = axis[i]


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
    out = np.empty((len(frames.neck), len(CAPSULE_NAMES), 3, 3))
    _frames_kernel(
        frames.joints, frames.neck, frames.pelvis, frames.toes, frames.forward, _FRAME_JOINTS, out
    )
    return out


_FRAME_JOINTS = np.array(
    [
        _J[joint + side]
        for joint in ("shoulder", "hip", "elbow", "hand", "knee", "foot")
        for side in "RL"
    ]
)
"""The indices of the joints the frames are made from, in the order :func:`_frames_kernel`
takes them (right, left: shoulder, hip, elbow, hand, knee, foot)."""


@jit
def _frames_kernel(
    joints: FloatArray,
    neck: FloatArray,
    pelvis: FloatArray,
    toes: FloatArray,
    forward: FloatArray,
    joint: IntArray,
    out: FloatArray,
) -> None:
    """:func:`capsule_frames` per instant, its vector arithmetic term for term in numpy's
    order (the numpy version cost 1 ms for 333 instants: a hundred small operations).
    ``joint`` holds the indices of :data:`_FRAME_JOINTS`; ``out`` is (K, 19, 3, 3)."""
    for k in range(out.shape[0]):
        at = joints[k]
        up = _unit(_sub(_point(neck[k]), _point(pelvis[k])))
        right = _unit(_sub(_point(at[joint[0]]), _point(at[joint[1]])))
        front = _cross(up, right)
        hip_right = _unit(_sub(_point(at[joint[2]]), _point(at[joint[3]])))
        root_front = _point(forward[k])
        root_up = _cross(hip_right, root_front)
        for i in range(3):  # head, neck, spine
            _put(out[k, i], up, front)
        _put(out[k, 5], _scaled(-1.0, right), front)  # shoulders
        _put(out[k, 6], _scaled(-1.0, hip_right), root_front)  # hips
        down, root_down = _scaled(-1.0, up), _scaled(-1.0, root_up)
        for side in range(2):  # right, left
            s = 1.0 - 2.0 * side
            shoulder, hip = _point(at[joint[side]]), _point(at[joint[2 + side]])
            elbow, hand = _point(at[joint[4 + side]]), _point(at[joint[6 + side]])
            knee, ankle = _point(at[joint[8 + side]]), _point(at[joint[10 + side]])
            lateral = _scaled(s * _ARM_BASE[0], right)
            arm_base = _unit(
                _add(_add(lateral, _scaled(_ARM_BASE[1], front)), _scaled(_ARM_BASE[2], up))
            )
            thigh_base = _unit(
                _add(_scaled(_THIGH_BASE[0], root_front), _scaled(_THIGH_BASE[1], root_up))
            )
            upper, fore = _unit(_sub(elbow, shoulder)), _unit(_sub(hand, elbow))
            thigh, shin = _unit(_sub(knee, hip)), _unit(_sub(ankle, knee))
            foot = _unit(_sub(_point(toes[k, side]), ankle))
            upper_ref = _carry(_carry(front, down, arm_base), arm_base, upper)
            thigh_ref = _carry(_carry(root_front, root_down, thigh_base), thigh_base, thigh)
            shin_ref = _carry(thigh_ref, thigh, shin)
            fore_ref = _carry(upper_ref, upper, fore)
            _put(out[k, 3 + side], _unit(_sub(shoulder, hip)), front)  # flank
            _put(out[k, 7 + side], upper, upper_ref)
            _put(out[k, 9 + side], fore, fore_ref)
            _put(out[k, 11 + side], fore, fore_ref)  # hand
            _put(out[k, 13 + side], thigh, thigh_ref)
            _put(out[k, 15 + side], shin, shin_ref)
            _put(out[k, 17 + side], foot, _carry(shin_ref, shin, foot))
