"""The synthetic subject's skeleton: body proportions, a joint-angle pose, forward kinematics.

World frame (shared by every ``hybridpose.synth`` module): millimetres, ``z`` up, the floor at
``z = 0``. The subject stands near the origin and at rest faces ``+y`` with its right towards
``+x``. Joints are anatomical joint centres in DHP19's order
(:data:`hybridpose.joints.JOINT_NAMES`): ``head`` is the centre of the head sphere, ``hand`` the
centre of the hand, ``foot`` the ankle.

The pose (:class:`Pose`) is a set of joint angles over time, in radians:

- the **root** is the pelvis (the midpoint of the hips): its world position and its yaw
  (heading; 0 faces ``+y``, positive turns the body to its left, i.e. counter-clockwise seen
  from above). The hips hang off the root frame; legs are expressed in it.
- the **trunk** turns about the pelvis relative to the root frame: flexion (forward lean),
  side bend (towards the subject's right) and twist (positive brings the right shoulder
  forward). Neck, shoulders and head are rigidly attached to the trunk; arms are expressed in
  the trunk frame.
- each **limb** (index 0 right, 1 left) starts hanging straight down. Its proximal segment is
  abducted first (rotation about the forward axis, away from the midline) and then flexed
  (rotation about the lateral axis, forwards), so its direction is
  ``(s sin a, cos a sin f, -cos a cos f)`` in (right, forward, up) coordinates, ``s = +1`` for
  the right side and ``-1`` for the left. Negative flexion swings backwards, negative
  abduction across the midline.
- an **elbow** bends by ``elbow_flexion`` towards the direction set by ``arm_rotation``: 0 bends
  the forearm forwards (a biceps curl from the hanging arm), ``+pi/2`` bends it towards the
  lateral axis, which is *up* once the arm is abducted by 90 degrees (a waving arm); this is
  the upper arm's external rotation.
- a **knee** always bends backwards in the thigh's flexion plane; the **ankle** angle is the
  foot's dorsiflexion: 0 keeps the foot perpendicular to the shin, positive lifts the toes.

At rest (every angle 0) the arms hang, the legs are straight and vertical and the feet lie
flat on the floor: the ankle is ``foot_radius`` above the floor and the foot capsule
(ankle -> toe, radius ``foot_radius``) touches it along its length.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, fields

import numpy as np
import numpy.typing as npt

from hybridpose.errors import HybridPoseError
from hybridpose.joints import JOINT_NAMES, NUM_JOINTS

FloatArray = npt.NDArray[np.float64]

RIGHT = 0
"""Index of the right limb in the per-side pose arrays (the first column)."""
LEFT = 1
"""Index of the left limb in the per-side pose arrays (the second column)."""
SIDE_SIGNS: tuple[float, float] = (1.0, -1.0)
"""The sign ``s`` of each side index: the right limb lies towards ``+x`` of the body frame."""

_J = {name: i for i, name in enumerate(JOINT_NAMES)}


class SynthError(HybridPoseError, ValueError):
    """A bad argument to the synthetic-data code (body shape, pose, movement, settings)."""


# --------------------------------------------------------------------------- body shape
@dataclass(frozen=True)
class BodyShape:
    """One subject's proportions: rigid segment lengths and capsule radii, all in millimetres.

    The vertical chain adds up to the standing height: ``foot_radius`` (ankle height) +
    ``shin`` + ``thigh`` + ``torso_length`` + :attr:`neck_length` + ``head_radius`` =
    ``height``; the neck takes what the other segments leave.

    Attributes:
        height: standing height (floor to the top of the head).
        torso_length: pelvis (midpoint of the hips) to the neck point (midpoint of the
            shoulders).
        head_radius: radius of the head sphere, centred at the ``head`` joint.
        shoulder_width: distance between the shoulder joint centres.
        hip_width: distance between the hip joint centres.
        upper_arm: shoulder to elbow.
        forearm: elbow to the centre of the hand.
        hand_radius: radius of the hand sphere.
        thigh: hip to knee.
        shin: knee to ankle.
        foot_length: ankle to the toe end of the foot capsule's axis.
        foot_radius: radius of the foot capsule; also the ankle's height at rest.
        neck_radius: radius of the neck capsule.
        torso_radius: radius of the central spine capsule (half the torso's depth).
        flank_radius: radius of the torso's side capsules (hip -> shoulder) and of the capsule
            between the shoulders.
        pelvis_radius: radius of the capsule between the hips.
        upper_arm_radius, forearm_radius, thigh_radius, shin_radius: limb capsule radii.
    """

    height: float
    torso_length: float
    head_radius: float
    shoulder_width: float
    hip_width: float
    upper_arm: float
    forearm: float
    hand_radius: float
    thigh: float
    shin: float
    foot_length: float
    foot_radius: float
    neck_radius: float
    torso_radius: float
    flank_radius: float
    pelvis_radius: float
    upper_arm_radius: float
    forearm_radius: float
    thigh_radius: float
    shin_radius: float

    def __post_init__(self) -> None:
        for f in fields(self):
            value = getattr(self, f.name)
            if isinstance(value, bool) or not isinstance(value, int | float | np.floating):
                raise SynthError(f"BodyShape.{f.name}: expected a number, got {value!r}")
            if not math.isfinite(value) or value <= 0:
                raise SynthError(f"BodyShape.{f.name}: expected a positive length, got {value}")
            object.__setattr__(self, f.name, float(value))  # plain floats: JSON-able, hashable
        if not 1000.0 <= self.height <= 2500.0:
            raise SynthError(f"BodyShape.height: {self.height} mm is not a human height")
        if self.neck_length < self.head_radius:
            raise SynthError(
                f"BodyShape: the segments leave a neck of {self.neck_length:.1f} mm, shorter "
                f"than the head radius {self.head_radius:.1f} mm (height {self.height:.1f} mm)"
            )
        segment_radii = (
            ("upper_arm_radius", "upper_arm"),
            ("forearm_radius", "forearm"),
            ("hand_radius", "forearm"),
            ("thigh_radius", "thigh"),
            ("shin_radius", "shin"),
            ("foot_radius", "foot_length"),
            ("torso_radius", "torso_length"),
            ("neck_radius", "neck_length"),
        )
        for radius, length in segment_radii:
            if getattr(self, radius) >= getattr(self, length):
                raise SynthError(
                    f"BodyShape.{radius} ({getattr(self, radius):.1f} mm) must be shorter than "
                    f"{length} ({getattr(self, length):.1f} mm)"
                )

    @property
    def neck_length(self) -> float:
        """Neck point (between the shoulders) to the head centre: the rest of the height."""
        below = self.foot_radius + self.shin + self.thigh + self.torso_length
        return self.height - self.head_radius - below

    @property
    def pelvis_height(self) -> float:
        """Height of the pelvis (and of the hip joints) at rest: ankle height + shin + thigh."""
        return self.foot_radius + self.shin + self.thigh

    @property
    def shoulder_height(self) -> float:
        """Height of the shoulder joints at rest."""
        return self.pelvis_height + self.torso_length

    @property
    def arm_length(self) -> float:
        """Shoulder to hand centre with the elbow straight."""
        return self.upper_arm + self.forearm

    @property
    def leg_length(self) -> float:
        """Hip to ankle with the knee straight."""
        return self.thigh + self.shin


# Adult proportions as fractions of the standing height (Drillis & Contini / Winter's tables,
# adapted to joint centres and to the capsule body): the vertical chain sums to 1.
_CHAIN = {
    "foot_radius": 0.026,
    "shin": 0.246,
    "thigh": 0.245,
    "torso_length": 0.300,
    "neck": 0.125,
    "head_radius": 0.058,
}


def standard_body(height: float = 1750.0) -> BodyShape:
    """An average adult body of the given height (mean proportions, no jitter).

    Args:
        height: standing height in mm.

    Returns:
        The body; handy as a fixed reference in tests and examples.

    >>> body = standard_body(1750.0)
    >>> round(body.pelvis_height), round(body.shoulder_height)
    (905, 1430)
    """
    h = float(height)
    if not math.isfinite(h) or not 1000.0 <= h <= 2500.0:
        raise SynthError(f"standard_body: height {height} mm is not a human height")
    return BodyShape(
        height=h,
        torso_length=_CHAIN["torso_length"] * h,
        head_radius=_CHAIN["head_radius"] * h,
        shoulder_width=0.220 * h,
        hip_width=0.104 * h,
        upper_arm=0.186 * h,
        forearm=0.190 * h,
        hand_radius=0.025 * h,
        thigh=_CHAIN["thigh"] * h,
        shin=_CHAIN["shin"] * h,
        foot_length=0.095 * h,
        foot_radius=_CHAIN["foot_radius"] * h,
        neck_radius=0.029 * h,
        torso_radius=0.062 * h,
        flank_radius=0.040 * h,
        pelvis_radius=0.051 * h,
        upper_arm_radius=0.023 * h,
        forearm_radius=0.018 * h,
        thigh_radius=0.036 * h,
        shin_radius=0.026 * h,
    )


def sample_body(rng: np.random.Generator) -> BodyShape:
    """Draw a plausible adult body (men and women in equal shares).

    Heights follow normal distributions (men 1760 +- 70 mm, women 1630 +- 65 mm) clipped to
    1500-1950 mm; segment lengths are fractions of the height from anthropometric tables, each
    jittered by a few percent (the vertical chain is then rescaled to add up to the height);
    shoulder width 330-450 mm; capsule radii scale with the height, a per-subject build factor
    (0.85-1.2) and a few percent of per-segment jitter. The draws happen in a fixed order, so
    the body is a deterministic function of the generator's state.

    Args:
        rng: the random generator (consumed).

    Returns:
        The body.
    """
    female = bool(rng.random() < 0.5)
    mean, sd = (1630.0, 65.0) if female else (1760.0, 70.0)
    height = float(np.clip(rng.normal(mean, sd), 1500.0, 1950.0))

    def jitter(sd: float = 0.02, limit: float = 0.05) -> float:
        return 1.0 + float(np.clip(rng.normal(0.0, sd), -limit, limit))

    chain = {name: fraction * jitter() for name, fraction in _CHAIN.items()}
    scale = height / sum(chain.values())  # the neck absorbs nothing: all rescale together
    seg = {name: value * scale for name, value in chain.items()}
    build = float(np.clip(rng.normal(1.0, 0.07), 0.85, 1.2))  # slim .. heavy, per subject
    arm_factor = 0.9 if female else 1.0  # thinner arms and neck on average
    shoulder = height * (0.207 if female else 0.224) * jitter(0.035, 0.08)
    return BodyShape(
        height=height,
        torso_length=seg["torso_length"],
        head_radius=seg["head_radius"],
        shoulder_width=float(np.clip(shoulder, 330.0, 450.0)),
        hip_width=height * (0.110 if female else 0.100) * jitter(0.04, 0.08),
        upper_arm=height * 0.186 * jitter(0.025),
        forearm=height * 0.190 * jitter(0.025),
        hand_radius=height * (0.024 if female else 0.026) * jitter(0.03),
        thigh=seg["thigh"],
        shin=seg["shin"],
        foot_length=height * 0.095 * jitter(0.03),
        foot_radius=seg["foot_radius"],
        neck_radius=height * 0.029 * arm_factor * build * jitter(0.04, 0.08),
        torso_radius=height * 0.062 * build * jitter(0.04, 0.08),
        flank_radius=height * 0.040 * build * jitter(0.04, 0.08),
        pelvis_radius=height * (0.054 if female else 0.050) * build * jitter(0.04, 0.08),
        upper_arm_radius=height * 0.023 * arm_factor * build * jitter(0.04, 0.08),
        forearm_radius=height * 0.018 * arm_factor * build * jitter(0.04, 0.08),
        thigh_radius=height * 0.036 * build * jitter(0.04, 0.08),
        shin_radius=height * 0.026 * build * jitter(0.04, 0.08),
    )


GIRTH_RANGES: dict[str, tuple[float, float, float]] = {
    "head_radius": (0.04, 0.92, 1.08),
    "neck_radius": (0.06, 0.88, 1.15),
    "torso_radius": (0.08, 0.85, 1.25),
    "flank_radius": (0.06, 0.88, 1.15),
    "pelvis_radius": (0.06, 0.88, 1.18),
    "upper_arm_radius": (0.08, 0.85, 1.2),
    "forearm_radius": (0.06, 0.88, 1.15),
    "thigh_radius": (0.08, 0.85, 1.2),
    "shin_radius": (0.06, 0.88, 1.15),
}
"""Per-segment girth factors of :func:`sample_girths`: ``(sd, low, high)`` of a normal factor
around 1, clipped (the head's is its size)."""


def sample_girths(body: BodyShape, rng: np.random.Generator) -> BodyShape:
    """``body`` with each segment's girth (and the head's size) varied on its own.

    :func:`sample_body` scales every radius with one build factor; people also differ segment
    by segment (a heavy torso on thin legs, strong arms, a small head). Each radius of
    :data:`GIRTH_RANGES` is multiplied by its own clipped normal factor, drawn in that order.
    The height is kept: a larger head leaves a shorter neck.

    Args:
        body: the body from :func:`sample_body`.
        rng: the random generator (consumed).

    Returns:
        The new body.
    """
    changes = {
        name: getattr(body, name) * float(np.clip(rng.normal(1.0, sd), low, high))
        for name, (sd, low, high) in GIRTH_RANGES.items()
    }
    return dataclasses.replace(body, **changes)


# --------------------------------------------------------------------------- pose
_SCALAR_FIELDS = ("yaw", "trunk_flexion", "trunk_side_bend", "trunk_twist")
_SIDE_FIELDS = (
    "shoulder_flexion",
    "shoulder_abduction",
    "arm_rotation",
    "elbow_flexion",
    "hip_flexion",
    "hip_abduction",
    "knee_flexion",
    "ankle_flexion",
)


@dataclass(frozen=True, eq=False)
class Pose:
    """Joint angles over K instants (radians) and the root's world position (mm).

    See the module docstring for the conventions. Arrays are copied to read-only float64.

    Attributes:
        root: (K, 3) world position of the pelvis (midpoint of the hips).
        yaw: (K,) heading: 0 faces ``+y``, positive turns counter-clockwise seen from above.
        trunk_flexion: (K,) forward lean of the trunk about the pelvis.
        trunk_side_bend: (K,) lean towards the subject's right.
        trunk_twist: (K,) rotation about the trunk axis; positive brings the right shoulder
            forward.
        shoulder_flexion, shoulder_abduction: (K, 2) upper-arm direction (right, left).
        arm_rotation: (K, 2) direction of the elbow's bend (upper-arm external rotation).
        elbow_flexion: (K, 2) 0 = straight arm.
        hip_flexion, hip_abduction: (K, 2) thigh direction.
        knee_flexion: (K, 2) 0 = straight leg; the shin bends backwards.
        ankle_flexion: (K, 2) dorsiflexion (toes up) from the foot's neutral angle.
    """

    root: FloatArray
    yaw: FloatArray
    trunk_flexion: FloatArray
    trunk_side_bend: FloatArray
    trunk_twist: FloatArray
    shoulder_flexion: FloatArray
    shoulder_abduction: FloatArray
    arm_rotation: FloatArray
    elbow_flexion: FloatArray
    hip_flexion: FloatArray
    hip_abduction: FloatArray
    knee_flexion: FloatArray
    ankle_flexion: FloatArray

    def __post_init__(self) -> None:
        root = _frozen_array(self.root, "Pose.root")
        if root.ndim != 2 or root.shape[1] != 3:
            raise SynthError(f"Pose.root: expected shape (K, 3), got {root.shape}")
        object.__setattr__(self, "root", root)
        count = root.shape[0]
        for name in _SCALAR_FIELDS:
            arr = _frozen_array(getattr(self, name), f"Pose.{name}")
            if arr.shape != (count,):
                raise SynthError(f"Pose.{name}: expected shape ({count},), got {arr.shape}")
            object.__setattr__(self, name, arr)
        for name in _SIDE_FIELDS:
            arr = _frozen_array(getattr(self, name), f"Pose.{name}")
            if arr.shape != (count, 2):
                raise SynthError(f"Pose.{name}: expected shape ({count}, 2), got {arr.shape}")
            object.__setattr__(self, name, arr)

    @property
    def count(self) -> int:
        """K, the number of instants."""
        return int(self.root.shape[0])


def _frozen_array(value: npt.ArrayLike, name: str) -> FloatArray:
    arr = np.array(value, dtype=np.float64)  # a copy: the caller's array stays theirs
    if not np.all(np.isfinite(arr)):
        raise SynthError(f"{name}: non-finite values")
    arr.flags.writeable = False
    return arr


def rest_pose(body: BodyShape, count: int = 1) -> Pose:
    """The rest pose at the origin facing ``+y``: every angle 0, pelvis at its rest height.

    Args:
        body: the subject (sets the pelvis height).
        count: K, the number of (identical) instants.

    Returns:
        The pose, shapes as in :class:`Pose`.
    """
    if isinstance(count, bool) or not isinstance(count, int | np.integer) or count < 0:
        raise SynthError(f"rest_pose: count must be a non-negative integer, got {count!r}")
    root = np.zeros((count, 3))
    root[:, 2] = body.pelvis_height
    scalar = np.zeros(count)
    side = np.zeros((count, 2))
    return Pose(root, scalar, scalar, scalar, scalar, *([side] * len(_SIDE_FIELDS)))


# --------------------------------------------------------------------------- kinematics
@dataclass(frozen=True, eq=False)
class SkeletonFrames:
    """The skeleton at K instants, world millimetres.

    Attributes:
        joints: (K, 13, 3) joint centres in DHP19's order.
        neck: (K, 3) top of the torso, midway between the shoulders.
        pelvis: (K, 3) midway between the hips.
        toes: (K, 2, 3) toe end of each foot capsule's axis (right, left).
        forward: (K, 3) unit horizontal facing direction of the body (the root's heading).
    """

    joints: FloatArray
    neck: FloatArray
    pelvis: FloatArray
    toes: FloatArray
    forward: FloatArray

    def __post_init__(self) -> None:
        count = np.shape(self.joints)[0] if np.ndim(self.joints) > 0 else -1
        expected = {
            "joints": (count, NUM_JOINTS, 3),
            "neck": (count, 3),
            "pelvis": (count, 3),
            "toes": (count, 2, 3),
            "forward": (count, 3),
        }
        for name, shape in expected.items():
            arr = np.asarray(getattr(self, name), dtype=np.float64)
            if arr.shape != shape:
                raise SynthError(f"SkeletonFrames.{name}: expected shape {shape}, got {arr.shape}")
            object.__setattr__(self, name, arr)

    @property
    def count(self) -> int:
        """K, the number of instants."""
        return int(self.joints.shape[0])


def _rotation(angle: FloatArray, axis: int) -> FloatArray:
    """Rotations by ``angle`` (K,) about coordinate ``axis``: (K, 3, 3)."""
    c, s = np.cos(angle), np.sin(angle)
    i, j = (axis + 1) % 3, (axis + 2) % 3  # the plane turned, in the rotation's sense
    out = np.zeros((*np.shape(angle), 3, 3))
    out[..., axis, axis] = 1.0
    out[..., i, i] = c
    out[..., i, j] = -s
    out[..., j, i] = s
    out[..., j, j] = c
    return out


def _rot_x(angle: FloatArray) -> FloatArray:
    return _rotation(angle, 0)


def _rot_y(angle: FloatArray) -> FloatArray:
    return _rotation(angle, 1)


def _rot_z(angle: FloatArray) -> FloatArray:
    return _rotation(angle, 2)


def _apply(basis: FloatArray, local: FloatArray) -> FloatArray:
    """World vectors (K, 3) from local coordinates (K, 3) in the frames ``basis`` (K, 3, 3)."""
    return np.asarray(np.einsum("kij,kj->ki", basis, local), dtype=np.float64)


def limb_direction(flexion: FloatArray, abduction: FloatArray, sign: float) -> FloatArray:
    """Unit direction of a proximal limb segment in its parent frame (right, forward, up).

    Args:
        flexion, abduction: (K,) radians (see the module docstring).
        sign: +1 for a right limb, -1 for a left one.

    Returns:
        (K, 3) ``(s sin a, cos a sin f, -cos a cos f)``.
    """
    ca = np.cos(abduction)
    return np.stack(
        [sign * np.sin(abduction), ca * np.sin(flexion), -ca * np.cos(flexion)], axis=-1
    )


def forward_kinematics(body: BodyShape, pose: Pose) -> SkeletonFrames:
    """Joint positions of ``body`` in ``pose``: rigid segments, feet on the floor at rest.

    Args:
        body: segment lengths.
        pose: K instants of joint angles and root positions.

    Returns:
        The skeleton at the K instants.

    Shape:
        pose arrays (K, ...) -> joints (K, 13, 3), neck/pelvis/forward (K, 3), toes (K, 2, 3).

    >>> body = standard_body(1750.0)
    >>> frames = forward_kinematics(body, rest_pose(body))
    >>> frames.joints[0, 11].round(1).tolist()  # right ankle: hip x, on the floor + foot radius
    [91.0, 0.0, 45.5]
    """
    if not isinstance(body, BodyShape):
        raise SynthError(f"forward_kinematics: body must be a BodyShape, got {type(body)}")
    if not isinstance(pose, Pose):
        raise SynthError(f"forward_kinematics: pose must be a Pose, got {type(pose)}")
    count = pose.count
    root_basis = _rot_z(pose.yaw)  # columns: right, forward, up of the root frame
    # trunk: twist about its own axis after leaning forwards/sideways (applied to local vectors
    # from right to left: side bend, flexion (a negative x rotation tips up forwards), twist)
    trunk_basis = (
        root_basis
        @ _rot_z(pose.trunk_twist)
        @ _rot_x(-pose.trunk_flexion)
        @ _rot_y(pose.trunk_side_bend)
    )
    pelvis = pose.root
    trunk_up = trunk_basis[:, :, 2]
    neck = pelvis + body.torso_length * trunk_up
    head = neck + body.neck_length * trunk_up

    joints = np.empty((count, NUM_JOINTS, 3))
    toes = np.empty((count, 2, 3))
    joints[:, _J["head"]] = head
    for side, name in ((RIGHT, "R"), (LEFT, "L")):
        s = SIDE_SIGNS[side]
        # arm, in the trunk frame
        f = pose.shoulder_flexion[:, side]
        a = pose.shoulder_abduction[:, side]
        psi = pose.arm_rotation[:, side]
        e = pose.elbow_flexion[:, side]
        d = limb_direction(f, a, s)
        # R_x(f) R_y(-s a) applied to the rest bend vector (s sin psi, cos psi, 0)
        sp, cp = np.sin(psi), np.cos(psi)
        sa, ca = np.sin(a), np.cos(a)
        sf, cf = np.sin(f), np.cos(f)
        bend = np.stack([s * sp * ca, cp * cf - sp * sa * sf, cp * sf + sp * sa * cf], axis=-1)
        fore = np.cos(e)[:, None] * d + np.sin(e)[:, None] * bend
        shoulder = neck + (s * body.shoulder_width / 2.0) * trunk_basis[:, :, 0]
        elbow = shoulder + body.upper_arm * _apply(trunk_basis, d)
        hand = elbow + body.forearm * _apply(trunk_basis, fore)
        # leg, in the root frame
        f = pose.hip_flexion[:, side]
        a = pose.hip_abduction[:, side]
        k = pose.knee_flexion[:, side]
        p = pose.ankle_flexion[:, side]
        d = limb_direction(f, a, s)
        back = np.stack([np.zeros(count), -np.cos(f), -np.sin(f)], axis=-1)  # knee bend
        ck, sk = np.cos(k)[:, None], np.sin(k)[:, None]
        shin = ck * d + sk * back
        neutral = sk * d - ck * back  # perpendicular to the shin, forwards at rest
        foot_dir = np.cos(p)[:, None] * neutral - np.sin(p)[:, None] * shin
        hip = pelvis + (s * body.hip_width / 2.0) * root_basis[:, :, 0]
        knee = hip + body.thigh * _apply(root_basis, d)
        ankle = knee + body.shin * _apply(root_basis, shin)
        toes[:, side] = ankle + body.foot_length * _apply(root_basis, foot_dir)
        joints[:, _J["shoulder" + name]] = shoulder
        joints[:, _J["elbow" + name]] = elbow
        joints[:, _J["hand" + name]] = hand
        joints[:, _J["hip" + name]] = hip
        joints[:, _J["knee" + name]] = knee
        joints[:, _J["foot" + name]] = ankle
    return SkeletonFrames(
        joints=joints,
        neck=neck,
        pelvis=np.array(pelvis),
        toes=toes,
        forward=np.array(root_basis[:, :, 1]),
    )
