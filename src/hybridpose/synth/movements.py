"""DHP19's 33 movements as smooth parametric motions of one repetition.

Each movement is a function of the phase ``u`` in ``[0, 1]`` within one repetition that starts
and ends at the rest pose (every angle 0, see :mod:`hybridpose.synth.skeleton`) with zero
velocity: point-to-point moves follow minimum-jerk profiles (the quintic smoothstep, the
classic model of human reaching), cyclic moves (walking, waving, circles) run at a steady
rate under a smooth amplitude envelope. Between repetitions the body is exactly still.

The motions are posed in the subject's own frame (standing at the origin, facing ``+y``).
:mod:`hybridpose.synth.motions` performs them in a recording (its ``perform``, which moves the
standing point and heading) and re-exports this module's public names.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from hybridpose.synth.skeleton import (
    LEFT,
    RIGHT,
    SIDE_SIGNS,
    BodyShape,
    Pose,
    SynthError,
)

FloatArray = npt.NDArray[np.float64]


# --------------------------------------------------------------------------- the movement list
@dataclass(frozen=True)
class Movement:
    """One of DHP19's 33 movements.

    Attributes:
        number: 1..33 in DHP19's file order across sessions.
        session: 1..5.
        index: 1-based position within its session (the ``k`` of ``movK.aedat``).
        name: as in DHP19's documentation, e.g. ``"left arm abduction"``.
    """

    number: int
    session: int
    index: int
    name: str


_SESSIONS: tuple[tuple[str, ...], ...] = (
    (
        "left arm abduction",
        "right arm abduction",
        "left leg abduction",
        "right leg abduction",
        "left bicep curl",
        "right bicep curl",
        "left leg knee lift",
        "right leg knee lift",
    ),
    (
        "walking 3.5 km/h",
        "single jump up-down",
        "single jump forwards",
        "multiple jumps up-down",
        "hop on right foot",
        "hop on left foot",
    ),
    (
        "punch straight forward left",
        "punch straight forward right",
        "punch up forwards left",
        "punch up forwards right",
        "punch down forwards left",
        "punch down forwards right",
    ),
    (
        "jogging 7 km/h",
        "star jumps",
        "kick forwards left",
        "kick forwards right",
        "side kick forwards left",
        "side kick forwards right",
    ),
    (
        "wave hello left hand",
        "wave hello right hand",
        "circle left hand",
        "circle right hand",
        "figure-8 left hand",
        "figure-8 right hand",
        "clap",
    ),
)

MOVEMENTS: tuple[Movement, ...] = tuple(
    Movement(number=n + 1, session=session, index=index, name=name)
    for n, (session, index, name) in enumerate(
        (s + 1, i + 1, name) for s, names in enumerate(_SESSIONS) for i, name in enumerate(names)
    )
)
"""The 33 movements in DHP19's file order (``MOVEMENTS[n - 1].number == n``)."""


def movement(number: int) -> Movement:
    """The movement with DHP19 number ``number`` (1..33, file order across the sessions).

    >>> movement(16).name, movement(16).session, movement(16).index
    ('punch straight forward right', 3, 2)
    """
    if isinstance(number, bool) or not isinstance(number, int | np.integer):
        raise SynthError(f"movement: expected an integer 1..33, got {number!r}")
    if not 1 <= number <= len(MOVEMENTS):
        raise SynthError(f"movement: number {number} is outside 1..{len(MOVEMENTS)}")
    return MOVEMENTS[int(number) - 1]


# --------------------------------------------------------------------------- smooth profiles
def _deg(x: float) -> float:
    return math.radians(x)


def _min_jerk(x: FloatArray) -> FloatArray:
    """0 -> 1 with zero velocity and acceleration at both ends (clipped outside [0, 1])."""
    x = np.clip(x, 0.0, 1.0)
    return x * x * x * (10.0 + x * (-15.0 + 6.0 * x))


def _hump(x: FloatArray) -> FloatArray:
    """0 -> 1 -> 0 over [0, 1], peak at 1/2, zero velocity and acceleration at both ends."""
    x = np.clip(x, 0.0, 1.0)
    return 64.0 * (x * (1.0 - x)) ** 3


def _span(u: FloatArray, a: float, b: float) -> FloatArray:
    return (u - a) / (b - a)


def _envelope(u: FloatArray, up: float, down: float) -> FloatArray:
    """Rise over [0, up], 1 in between, fall over [down, 1] (minimum-jerk ramps)."""
    return _min_jerk(u / up) * (1.0 - _min_jerk(_span(u, down, 1.0)))


def _keys(
    u: FloatArray, times: Sequence[float], values: Sequence[float | FloatArray]
) -> FloatArray:
    """Minimum-jerk moves between keyframes (zero velocity at each one).

    The sum telescopes: before ``times[i]`` term i is 0, after ``times[i + 1]`` it is complete.
    """
    out = np.zeros_like(u) + values[0]
    for i in range(len(times) - 1):
        out = out + (np.asarray(values[i + 1]) - np.asarray(values[i])) * _min_jerk(
            _span(u, times[i], times[i + 1])
        )
    return out


def _progress(u: FloatArray, a: float, b: float, ramp: float) -> FloatArray:
    """A 0 -> 1 time warp over [a, b]: steady in the middle, raised-cosine speed ramps.

    ``ramp`` is the width of each speed ramp as a fraction of ``[a, b]``.
    """
    x = np.clip(_span(u, a, b), 0.0, 1.0)

    def ramped(y: FloatArray) -> FloatArray:  # integral of (1 - cos(pi y / ramp)) / 2
        return y / 2.0 - ramp / (2.0 * math.pi) * np.sin(math.pi * y / ramp)

    mid = ramp / 2.0 + (x - ramp)
    total = 1.0 - ramp
    out = np.where(x < ramp, ramped(x), np.where(x > 1.0 - ramp, total - ramped(1.0 - x), mid))
    return np.asarray(out / total, dtype=np.float64)


# --------------------------------------------------------------------------- pose scratchpad
class _Channels:
    """A pose under construction, in the subject's frame (standing point at the origin)."""

    def __init__(self, body: BodyShape, count: int) -> None:
        self.body = body
        self.root = np.zeros((count, 3))
        self.root[:, 2] = body.pelvis_height
        self.yaw = np.zeros(count)
        self.trunk_flexion = np.zeros(count)
        self.trunk_side_bend = np.zeros(count)
        self.trunk_twist = np.zeros(count)
        self.shoulder_flexion = np.zeros((count, 2))
        self.shoulder_abduction = np.zeros((count, 2))
        self.arm_rotation = np.zeros((count, 2))
        self.elbow_flexion = np.zeros((count, 2))
        self.hip_flexion = np.zeros((count, 2))
        self.hip_abduction = np.zeros((count, 2))
        self.knee_flexion = np.zeros((count, 2))
        self.ankle_flexion = np.zeros((count, 2))

    def pose(self) -> Pose:
        return Pose(
            root=self.root,
            yaw=self.yaw,
            trunk_flexion=self.trunk_flexion,
            trunk_side_bend=self.trunk_side_bend,
            trunk_twist=self.trunk_twist,
            shoulder_flexion=self.shoulder_flexion,
            shoulder_abduction=self.shoulder_abduction,
            arm_rotation=self.arm_rotation,
            elbow_flexion=self.elbow_flexion,
            hip_flexion=self.hip_flexion,
            hip_abduction=self.hip_abduction,
            knee_flexion=self.knee_flexion,
            ankle_flexion=self.ankle_flexion,
        )

    def crouch(self, side: int, angle: FloatArray) -> FloatArray:
        """Bend a standing leg with its foot kept flat under the hip; returns the hip's drop.

        The thigh flexes by ``angle``; the shin tilts back by ``beta`` with
        ``thigh sin(angle) = shin sin(beta)`` so that the ankle stays right below the hip,
        and the ankle dorsiflexes by ``beta`` so that the foot stays flat. The drop is a smooth
        (quadratic) function of the angle, so a leg can straighten into a jump with no
        velocity spike.
        """
        body = self.body
        beta = np.arcsin(np.clip(body.thigh / body.shin * np.sin(angle), -1.0, 1.0))
        self.hip_flexion[:, side] += angle
        self.knee_flexion[:, side] += angle + beta
        self.ankle_flexion[:, side] += beta
        return np.asarray(
            2.0 * body.thigh * np.sin(angle / 2.0) ** 2 + 2.0 * body.shin * np.sin(beta / 2.0) ** 2,
            dtype=np.float64,
        )

    def leg_ik(self, side: int, target: FloatArray) -> None:
        """Set a leg's angles so that its ankle lies at ``target`` (K, 3) from its hip.

        Root-frame coordinates; the knee bends backwards in the thigh's flexion plane, and the
        foot is kept level in that plane. A target out of reach leaves the leg straight,
        pointing at it.
        """
        body = self.body
        s = SIDE_SIGNS[side]
        lt, ls = body.thigh, body.shin
        dist = np.linalg.norm(target, axis=1)
        cos_k = np.clip((dist**2 - lt**2 - ls**2) / (2.0 * lt * ls), -1.0, 1.0)
        knee = np.arccos(cos_k)
        reach = lt + ls * cos_k  # the leg's length along the abducted axis
        abduction = np.arcsin(np.clip(s * target[:, 0] / reach, -1.0, 1.0))
        # (y, z) of the ankle is the leg's unflexed (y0, z0) rotated by the flexion about x
        y0, z0 = -ls * np.sin(knee), -reach * np.cos(abduction)
        flexion = np.arctan2(target[:, 2], target[:, 1]) - np.arctan2(z0, y0)
        flexion = (flexion + math.pi) % (2.0 * math.pi) - math.pi
        self.hip_flexion[:, side] = flexion
        self.hip_abduction[:, side] = abduction
        self.knee_flexion[:, side] = knee
        self.ankle_flexion[:, side] = knee - flexion

    def arm_ik(self, side: int, target: FloatArray, pole: Sequence[float]) -> FloatArray:
        """Angles (flexion, abduction, rotation, elbow) putting the hand at ``target``.

        ``target`` (K, 3) is the hand centre relative to the shoulder in the trunk frame;
        ``pole`` is the direction the elbow points to (only its part perpendicular to the
        shoulder -> hand line counts). Returns (K, 4); the caller blends them with the rest
        pose. Targets out of reach are pulled in so the elbow keeps a small bend.
        """
        body = self.body
        s = SIDE_SIGNS[side]
        lu, lf = body.upper_arm, body.forearm
        norm = np.linalg.norm(target, axis=1)
        axis = target / norm[:, None]
        dist = np.clip(norm, abs(lu - lf) + 1.0, lu + lf - 1.0)
        cos_alpha = (lu**2 + dist**2 - lf**2) / (2.0 * lu * dist)
        sin_alpha = np.sqrt(np.clip(1.0 - cos_alpha**2, 0.0, 1.0))
        p = np.asarray(pole, dtype=np.float64)
        perp = p[None, :] - np.sum(axis * p, axis=1)[:, None] * axis
        perp /= np.linalg.norm(perp, axis=1)[:, None]
        elbow = lu * (cos_alpha[:, None] * axis + sin_alpha[:, None] * perp)
        d = elbow / lu
        abduction = np.arcsin(np.clip(s * d[:, 0], -1.0, 1.0))
        flexion = np.arctan2(d[:, 1], -d[:, 2])
        cos_e = np.clip((lu**2 + lf**2 - dist**2) / (2.0 * lu * lf), -1.0, 1.0)
        elbow_flexion = math.pi - np.arccos(cos_e)
        fore = (axis * dist[:, None] - elbow) / lf
        bend = fore - np.sum(fore * d, axis=1)[:, None] * d
        bend /= np.linalg.norm(bend, axis=1)[:, None]
        # back to the upper arm's rest frame: R_y(s a) R_x(-f) bend = (s sin psi, cos psi, 0)
        cf, sf = np.cos(flexion), np.sin(flexion)
        y1 = bend[:, 1] * cf + bend[:, 2] * sf
        z1 = -bend[:, 1] * sf + bend[:, 2] * cf
        x2 = bend[:, 0] * np.cos(abduction) + s * z1 * np.sin(abduction)
        rotation = np.arctan2(s * x2, y1)
        return np.stack([flexion, abduction, rotation, elbow_flexion], axis=1)

    def set_arm(self, side: int, angles: FloatArray) -> None:
        self.shoulder_flexion[:, side] = angles[:, 0]
        self.shoulder_abduction[:, side] = angles[:, 1]
        self.arm_rotation[:, side] = angles[:, 2]
        self.elbow_flexion[:, side] = angles[:, 3]


_Motion = Callable[[BodyShape, FloatArray, FloatArray], Pose]
"""(body, phase u (K,), amplitude factor (K,)) -> pose in the subject's frame."""


def _lift_pitch(ch: _Channels, side: int, lift: FloatArray, pitch: float) -> None:
    """Keep a lifted foot level, then point it by ``pitch`` (world) as ``lift`` -> 1.

    The pitch grows with ``lift**2``, slower than the foot rises, so the toes never dip into
    the floor as the foot leaves it.
    """
    f, k = ch.hip_flexion[:, side], ch.knee_flexion[:, side]
    ch.ankle_flexion[:, side] = k - f + pitch * lift**2


# --------------------------------------------------------------------------- session 1
def _arm_abduction(side: int) -> _Motion:
    def motion(body: BodyShape, u: FloatArray, amp: FloatArray) -> Pose:
        ch = _Channels(body, u.size)
        w = _keys(u, (0.0, 0.44, 0.56, 1.0), (0.0, 0.97, 1.0, 0.0))
        ch.shoulder_abduction[:, side] = _deg(90.0) * amp * w
        ch.elbow_flexion[:, side] = _deg(6.0) * w
        ch.trunk_side_bend[:] = -SIDE_SIGNS[side] * _deg(3.0) * w  # lean away from the arm
        return ch.pose()

    return motion


def _leg_abduction(side: int) -> _Motion:
    def motion(body: BodyShape, u: FloatArray, amp: FloatArray) -> Pose:
        ch = _Channels(body, u.size)
        w = _keys(u, (0.0, 0.42, 0.58, 1.0), (0.0, 0.97, 1.0, 0.0))
        ch.hip_abduction[:, side] = _deg(35.0) * amp * w
        ch.ankle_flexion[:, side] = _deg(-10.0) * w**2
        ch.trunk_side_bend[:] = -SIDE_SIGNS[side] * _deg(7.0) * w  # weight over the other leg
        ch.shoulder_abduction[:] = _deg(8.0) * w[:, None]
        return ch.pose()

    return motion


def _curl(side: int) -> _Motion:
    def motion(body: BodyShape, u: FloatArray, amp: FloatArray) -> Pose:
        ch = _Channels(body, u.size)
        w = _keys(u, (0.0, 0.45, 0.55, 1.0), (0.0, 0.96, 1.0, 0.0))
        ch.elbow_flexion[:, side] = np.minimum(_deg(135.0) * amp, _deg(148.0)) * w
        ch.shoulder_flexion[:, side] = _deg(8.0) * w
        return ch.pose()

    return motion


def _knee_lift(side: int) -> _Motion:
    def motion(body: BodyShape, u: FloatArray, amp: FloatArray) -> Pose:
        ch = _Channels(body, u.size)
        w = _keys(u, (0.0, 0.4, 0.6, 1.0), (0.0, 0.97, 1.0, 0.0))
        ch.hip_flexion[:, side] = _deg(85.0) * amp * w
        ch.knee_flexion[:, side] = _deg(95.0) * w
        _lift_pitch(ch, side, w, _deg(-20.0))
        ch.trunk_flexion[:] = _deg(-3.0) * w
        ch.shoulder_abduction[:] = _deg(6.0) * w[:, None]
        return ch.pose()

    return motion


# --------------------------------------------------------------------------- session 2
def _walking(body: BodyShape, u: FloatArray, amp: FloatArray) -> Pose:
    """Walking on the spot: alternate steps with arm swing, two strides per repetition."""
    ch = _Channels(body, u.size)
    env = _envelope(u, 0.2, 0.8) * amp
    phase = 2.0 * math.pi * 2.0 * u
    wave = np.sin(phase)
    for side, sign in ((RIGHT, 1.0), (LEFT, -1.0)):
        swing = np.maximum(0.0, sign * wave) ** 2  # one leg up at a time
        ch.hip_flexion[:, side] = _deg(32.0) * env * swing
        ch.knee_flexion[:, side] = _deg(58.0) * env * swing
        _lift_pitch(ch, side, env * swing, _deg(-15.0))
        ch.shoulder_flexion[:, side] = -sign * _deg(16.0) * env * wave  # opposite arm forward
        ch.elbow_flexion[:, side] = _deg(14.0) * env
    ch.trunk_side_bend[:] = -_deg(2.0) * env * wave  # over the standing leg
    return ch.pose()


def _jump_cycle(x: FloatArray, crouch: FloatArray, height: FloatArray) -> tuple[FloatArray, ...]:
    """One jump over x in [0, 1]: crouch angle, flight height, and a 0..1 arm swing pair.

    Crouch [0, 0.4] (deepest at 0.2), flight [0.32, 0.70], landing absorption [0.6, 1.0].
    The feet leave the floor while the legs finish extending and land on bent knees.
    """
    c = crouch * (_hump(x / 0.4) + 0.7 * _hump(_span(x, 0.6, 1.0)))
    h = height * _hump(_span(x, 0.32, 0.70))
    back = _hump(x / 0.42)  # arms swing back while crouching ...
    up = _hump(_span(x, 0.15, 0.9))  # ... then forwards and up through the flight
    return c, h, back, up


def _apply_jump(
    ch: _Channels, legs: Sequence[int], c: FloatArray, h: FloatArray, lean: float = 0.55
) -> FloatArray:
    """Crouch the standing legs by ``c``, lift the body by ``h``; returns the pelvis height.

    The trunk leans forwards by ``lean`` times the crouch angle, for balance.
    """
    drop = np.zeros_like(c)
    for side in legs:
        drop = ch.crouch(side, c)  # the same for every standing leg
        # the toes point down in the air, never more than the flight height allows
        ch.ankle_flexion[:, side] -= 0.35 * h / 200.0
    ch.trunk_flexion += lean * c
    return np.asarray(ch.body.pelvis_height - drop + h, dtype=np.float64)


def _single_jump(body: BodyShape, u: FloatArray, amp: FloatArray) -> Pose:
    ch = _Channels(body, u.size)
    c, h, back, up = _jump_cycle(u, _deg(38.0) * amp, 200.0 * amp)
    ch.root[:, 2] = _apply_jump(ch, (RIGHT, LEFT), c, h)
    ch.shoulder_flexion[:] = (_deg(-25.0) * back + _deg(60.0) * up)[:, None]
    ch.elbow_flexion[:] = (_deg(20.0) * _hump(u))[:, None]
    return ch.pose()


def _jump_forwards(body: BodyShape, u: FloatArray, amp: FloatArray) -> Pose:
    """A jump of ~0.33 m forwards in the first half, two steps back to the start in the second."""
    ch = _Channels(body, u.size)
    distance = 330.0 * amp
    x = u / 0.5
    c, h, back, up = _jump_cycle(x, _deg(40.0) * amp, 170.0 * amp)
    ch.root[:, 2] = _apply_jump(ch, (RIGHT, LEFT), c, h)
    ch.root[:, 1] = distance * _min_jerk(_span(x, 0.36, 0.64))  # only while in the air
    ch.shoulder_flexion[:] = (_deg(-25.0) * back + _deg(50.0) * up)[:, None]
    ch.elbow_flexion[:] = (_deg(20.0) * _hump(x))[:, None]
    # steps back: the pelvis glides back and dips enough for the standing leg to reach
    back_half = u > 0.5
    if np.any(back_half):
        v = _span(u[back_half], 0.5, 1.0)
        length = distance[back_half]
        sub = _Channels(body, v.size)
        pelvis_y = length * (1.0 - _min_jerk(_span(v, 0.03, 0.97)))
        dip = 10.0 + 1.6 * (length / 2.0) ** 2 / (2.0 * body.leg_length)
        pelvis_z = body.pelvis_height - dip * _hump(v)
        for side, start in ((RIGHT, 0.05), (LEFT, 0.5)):
            step = _span(v, start, start + 0.45)
            foot_y = length * (1.0 - _min_jerk(step))
            foot_z = body.foot_radius + 45.0 * _hump(step)
            target = np.stack([np.zeros_like(v), foot_y - pelvis_y, foot_z - pelvis_z], axis=1)
            sub.leg_ik(side, target)
        for name in ("hip_flexion", "hip_abduction", "knee_flexion", "ankle_flexion"):
            getattr(ch, name)[back_half] = getattr(sub, name)
        ch.root[back_half, 1] = pelvis_y
        ch.root[back_half, 2] = pelvis_z
    return ch.pose()


def _multiple_jumps(body: BodyShape, u: FloatArray, amp: FloatArray) -> Pose:
    ch = _Channels(body, u.size)
    c, h, back, up = (np.zeros_like(u) for _ in range(4))
    for j in range(3):
        cj, hj, bj, uj = _jump_cycle(3.0 * u - j, _deg(25.0) * amp, 110.0 * amp)
        c, h, back, up = c + cj, h + hj, back + bj, up + uj
    ch.root[:, 2] = _apply_jump(ch, (RIGHT, LEFT), c, h)
    ch.shoulder_flexion[:] = (_deg(-8.0) * back + _deg(12.0) * up)[:, None]
    ch.elbow_flexion[:] = (_deg(25.0) * _envelope(u, 0.15, 0.85))[:, None]
    return ch.pose()


def _hop(side: int) -> _Motion:
    """Hop three times on ``side``'s foot, the other leg held up behind."""
    other = 1 - side

    def motion(body: BodyShape, u: FloatArray, amp: FloatArray) -> Pose:
        ch = _Channels(body, u.size)
        w = _keys(u, (0.0, 0.16, 0.84, 1.0), (0.0, 0.95, 1.0, 0.0))
        ch.hip_flexion[:, other] = _deg(35.0) * w
        ch.knee_flexion[:, other] = _deg(80.0) * w
        _lift_pitch(ch, other, w, _deg(-20.0))
        c, h = np.zeros_like(u), np.zeros_like(u)
        x = _span(u, 0.18, 0.82) * 3.0
        for j in range(3):
            cj, hj, _, _ = _jump_cycle(x - j, _deg(20.0) * amp, 80.0 * amp)
            c, h = c + cj, h + hj
        ch.root[:, 2] = _apply_jump(ch, (side,), c, h, lean=0.2)
        ch.shoulder_abduction[:] = _deg(15.0) * w[:, None]
        ch.elbow_flexion[:] = _deg(20.0) * w[:, None]
        ch.trunk_side_bend += SIDE_SIGNS[side] * _deg(3.0) * w  # over the hopping leg
        return ch.pose()

    return motion


# --------------------------------------------------------------------------- session 3
_PUNCH_TIMES = (0.0, 0.32, 0.5, 0.68, 1.0)


def _punch(side: int, flexion_deg: float) -> _Motion:
    """Chamber the fist by the shoulder, strike (straight, up or down), recoil, lower."""

    def motion(body: BodyShape, u: FloatArray, amp: FloatArray) -> Pose:
        ch = _Channels(body, u.size)
        s = SIDE_SIGNS[side]
        strike = _deg(flexion_deg) * (1.0 + 0.5 * (amp - 1.0))
        chamber = _deg(25.0 + 0.3 * (flexion_deg - 90.0))  # the fist starts towards its target
        ch.shoulder_flexion[:, side] = _keys(u, _PUNCH_TIMES, (0.0, chamber, strike, chamber, 0.0))
        ch.shoulder_abduction[:, side] = _keys(
            u, _PUNCH_TIMES, (0.0, _deg(12.0), _deg(-8.0), _deg(12.0), 0.0)
        )
        ch.elbow_flexion[:, side] = _keys(
            u, _PUNCH_TIMES, (0.0, _deg(120.0), _deg(3.0), _deg(120.0), 0.0)
        )
        ch.trunk_twist[:] = s * _keys(
            u, _PUNCH_TIMES, (0.0, _deg(-3.0), _deg(12.0) * amp, _deg(-3.0), 0.0)
        )
        ch.trunk_flexion[:] = _keys(u, _PUNCH_TIMES, (0.0, 0.0, _deg(4.0), 0.0, 0.0))
        return ch.pose()

    return motion


# --------------------------------------------------------------------------- session 4
def _jogging(body: BodyShape, u: FloatArray, amp: FloatArray) -> Pose:
    """Jogging on the spot: high heels, bent arms, a short flight between steps."""
    ch = _Channels(body, u.size)
    env = _envelope(u, 0.25, 0.75)
    phase = 2.0 * math.pi * 2.5 * u
    wave = np.sin(phase)
    drop = np.zeros_like(u)
    swings = [np.maximum(0.0, sign * wave) ** 2 * env for sign in (1.0, -1.0)]
    for side, sign in ((RIGHT, 1.0), (LEFT, -1.0)):
        swing = swings[side]
        ch.hip_flexion[:, side] = _deg(45.0) * amp * swing
        ch.knee_flexion[:, side] = _deg(95.0) * swing
        _lift_pitch(ch, side, swing, _deg(-30.0))
        # the standing leg gives a little while the other one swings (never both at once)
        drop += ch.crouch(side, _deg(10.0) * amp * swings[1 - side])
        ch.shoulder_flexion[:, side] = env * (_deg(10.0) - sign * _deg(28.0) * amp * wave)
        ch.elbow_flexion[:, side] = _deg(85.0) * env
    flight = 45.0 * amp * env * np.maximum(0.0, (np.cos(phase) ** 2 - 0.75) / 0.25) ** 2
    ch.root[:, 2] = body.pelvis_height - drop + flight
    ch.trunk_flexion[:] = _deg(7.0) * env
    return ch.pose()


def _star_jumps(body: BodyShape, u: FloatArray, amp: FloatArray) -> Pose:
    """Two jumps: out (legs apart, arms up overhead) and back in."""
    ch = _Channels(body, u.size)
    c, h = np.zeros_like(u), np.zeros_like(u)
    for j in range(2):
        cj, hj, _, _ = _jump_cycle(2.0 * u - j, _deg(16.0) * np.ones_like(u), 110.0 * amp)
        c, h = c + cj, h + hj
    out = _min_jerk(_span(2.0 * u, 0.36, 0.64)) - _min_jerk(_span(2.0 * u - 1.0, 0.36, 0.64))
    arms = _min_jerk(_span(2.0 * u, 0.1, 0.9)) - _min_jerk(_span(2.0 * u - 1.0, 0.1, 0.9))
    spread = 0.16 * body.leg_length * amp * out  # each foot, sideways, while in the air
    # legs by inverse kinematics: shortened by the crouch, feet planted apart
    probe = _Channels(body, u.size)
    shortening = probe.crouch(RIGHT, c)
    length = body.leg_length - shortening
    height = np.sqrt(length**2 - spread**2)
    for side in (RIGHT, LEFT):
        target = np.stack([SIDE_SIGNS[side] * spread, np.zeros_like(u), -height], axis=1)
        ch.leg_ik(side, target)
        ch.ankle_flexion[:, side] -= 0.35 * h / 200.0
    ch.root[:, 2] = body.foot_radius + height + h
    ch.trunk_flexion[:] = 0.4 * c
    ch.shoulder_abduction[:] = (_deg(145.0) * np.minimum(amp, 1.05) * arms)[:, None]
    ch.elbow_flexion[:] = (_deg(10.0) * arms)[:, None]
    return ch.pose()


_KICK_TIMES = (0.0, 0.26, 0.48, 0.72, 1.0)


def _kick(side: int, sideways: bool) -> _Motion:
    """Chamber the knee, snap the shin out (forwards, or forwards and to the side), recoil."""

    def motion(body: BodyShape, u: FloatArray, amp: FloatArray) -> Pose:
        ch = _Channels(body, u.size)
        s = SIDE_SIGNS[side]
        a = np.minimum(amp, 1.05)
        flexion: tuple[float | FloatArray, ...]
        abduction: tuple[float | FloatArray, ...]
        if sideways:
            flexion = (0.0, _deg(40.0), _deg(45.0), _deg(40.0), 0.0)
            abduction = (0.0, _deg(30.0), _deg(48.0) * a, _deg(30.0), 0.0)
            lean = _keys(u, _KICK_TIMES, (0.0, _deg(6.0), _deg(15.0), _deg(6.0), 0.0))
            ch.trunk_side_bend[:] = -s * lean  # away from the kicking leg
            ch.trunk_flexion[:] = -0.3 * lean
        else:
            flexion = (0.0, _deg(55.0), _deg(72.0) * a, _deg(55.0), 0.0)
            abduction = (0.0, 0.0, 0.0, 0.0, 0.0)
            ch.trunk_flexion[:] = _keys(
                u, _KICK_TIMES, (0.0, _deg(-5.0), _deg(-12.0), _deg(-5.0), 0.0)
            )
        ch.hip_flexion[:, side] = _keys(u, _KICK_TIMES, flexion)
        ch.hip_abduction[:, side] = _keys(u, _KICK_TIMES, abduction)
        ch.knee_flexion[:, side] = _keys(
            u, _KICK_TIMES, (0.0, _deg(100.0), _deg(6.0), _deg(100.0), 0.0)
        )
        lift = _keys(u, _KICK_TIMES, (0.0, 1.0, 1.0, 1.0, 0.0))
        _lift_pitch(ch, side, lift, _deg(-35.0))
        ch.shoulder_abduction[:] = (_deg(12.0) * lift)[:, None]  # balance
        ch.elbow_flexion[:] = (_deg(25.0) * lift)[:, None]
        return ch.pose()

    return motion


# --------------------------------------------------------------------------- session 5
def _wave(side: int) -> _Motion:
    """Raise the arm to the side, forearm up, and wave the hand side to side."""

    def motion(body: BodyShape, u: FloatArray, amp: FloatArray) -> Pose:
        ch = _Channels(body, u.size)
        env = _envelope(u, 0.34, 0.66)
        # the forearm folds up while the arm rises, so the hand takes a short path
        fold = _envelope(u, 0.3, 0.7)
        waving = _min_jerk(_span(u, 0.3, 0.42)) * (1.0 - _min_jerk(_span(u, 0.58, 0.7)))
        ch.shoulder_abduction[:, side] = _deg(82.0) * env
        ch.shoulder_flexion[:, side] = _deg(15.0) * env
        ch.arm_rotation[:, side] = _deg(90.0) * fold  # bend upwards: the forearm stands up
        ch.elbow_flexion[:, side] = _deg(100.0) * fold + _deg(25.0) * amp * waving * np.sin(
            2.0 * math.pi * 6.0 * u
        )
        ch.trunk_side_bend[:] = -SIDE_SIGNS[side] * _deg(2.0) * env
        return ch.pose()

    return motion


def _hand_path(side: int, path: Callable[[FloatArray, float, FloatArray], FloatArray]) -> _Motion:
    """Trace ``path(theta, arm_length, amp)`` (hand offset from a point in front of the
    shoulder, trunk frame, x towards the subject's side) twice with one hand."""

    def motion(body: BodyShape, u: FloatArray, amp: FloatArray) -> Pose:
        ch = _Channels(body, u.size)
        s = SIDE_SIGNS[side]
        reach = body.arm_length
        theta = 2.0 * math.pi * 2.0 * _progress(u, 0.2, 0.8, 0.2)
        offset = path(theta, reach, amp)
        centre = np.array([0.05 * reach, 0.62 * reach, -0.08 * reach])
        target = centre[None, :] + offset
        target[:, 0] *= s
        angles = ch.arm_ik(side, target, (s * 0.7, -0.3, -1.0))
        ch.set_arm(side, _envelope(u, 0.26, 0.74)[:, None] * angles)
        return ch.pose()

    return motion


def _circle(theta: FloatArray, reach: float, amp: FloatArray) -> FloatArray:
    """A circle in the frontal plane, starting at its lowest point."""
    r = 0.22 * reach * amp
    angle = theta - math.pi / 2.0
    return np.stack([r * np.cos(angle), np.zeros_like(theta), r * np.sin(angle)], axis=1)


def _figure8(theta: FloatArray, reach: float, amp: FloatArray) -> FloatArray:
    """A lying figure 8 (a lemniscate of Gerono) in the frontal plane, from its crossing."""
    half_width, height = 0.25 * reach * amp, 0.36 * reach * amp
    return np.stack(
        [half_width * np.sin(theta), np.zeros_like(theta), height * np.sin(theta) * np.cos(theta)],
        axis=1,
    )


def _clap(body: BodyShape, u: FloatArray, amp: FloatArray) -> Pose:
    """Both hands come up in front of the chest and clap four times."""
    ch = _Channels(body, u.size)
    reach = body.arm_length
    progress = _progress(u, 0.2, 0.8, 0.2)
    apart = 0.5 * (1.0 + np.cos(2.0 * math.pi * 4.0 * progress))  # 0 when the hands meet
    x = body.hand_radius + 0.22 * reach * amp * apart  # hand centre from the midline
    env = _envelope(u, 0.26, 0.74)
    for side in (RIGHT, LEFT):
        s = SIDE_SIGNS[side]
        target = np.stack(
            [
                s * (x - body.shoulder_width / 2.0),
                np.full_like(u, 0.5 * reach),
                np.full_like(u, -0.22 * reach),
            ],
            axis=1,
        )
        angles = ch.arm_ik(side, target, (s * 0.8, -0.2, -1.0))
        ch.set_arm(side, env[:, None] * angles)
    return ch.pose()


# --------------------------------------------------------------------------- registry
@dataclass(frozen=True)
class MotionSpec:
    """How a movement moves: its nominal repetition length and its motion."""

    duration_s: float  # nominal repetition length at speed factor 1
    motion: _Motion


def _specs() -> dict[int, MotionSpec]:
    table: list[tuple[float, _Motion]] = [
        (2.6, _arm_abduction(LEFT)),
        (2.6, _arm_abduction(RIGHT)),
        (1.9, _leg_abduction(LEFT)),
        (1.9, _leg_abduction(RIGHT)),
        (2.0, _curl(LEFT)),
        (2.0, _curl(RIGHT)),
        (1.7, _knee_lift(LEFT)),
        (1.7, _knee_lift(RIGHT)),
        (2.4, _walking),
        (1.3, _single_jump),
        (2.4, _jump_forwards),
        (2.0, _multiple_jumps),
        (2.0, _hop(RIGHT)),
        (2.0, _hop(LEFT)),
        (1.2, _punch(LEFT, 90.0)),
        (1.2, _punch(RIGHT, 90.0)),
        (1.2, _punch(LEFT, 130.0)),
        (1.2, _punch(RIGHT, 130.0)),
        (1.2, _punch(LEFT, 50.0)),
        (1.2, _punch(RIGHT, 50.0)),
        (1.8, _jogging),
        (1.8, _star_jumps),
        (1.5, _kick(LEFT, sideways=False)),
        (1.5, _kick(RIGHT, sideways=False)),
        (1.5, _kick(LEFT, sideways=True)),
        (1.5, _kick(RIGHT, sideways=True)),
        (2.6, _wave(LEFT)),
        (2.6, _wave(RIGHT)),
        (2.4, _hand_path(LEFT, _circle)),
        (2.4, _hand_path(RIGHT, _circle)),
        (2.6, _hand_path(LEFT, _figure8)),
        (2.6, _hand_path(RIGHT, _figure8)),
        (2.0, _clap),
    ]
    return {n + 1: MotionSpec(duration, motion) for n, (duration, motion) in enumerate(table)}


MOTION_SPECS = _specs()
"""Each movement's :class:`MotionSpec`, by DHP19 number (a performance reads its motion and
length)."""


def nominal_duration_s(number: int) -> float:
    """One repetition's length of movement ``number`` at speed factor 1, in seconds."""
    return MOTION_SPECS[movement(number).number].duration_s


def movement_pose(
    number: int, body: BodyShape, u: npt.ArrayLike, amplitude: npt.ArrayLike = 1.0
) -> Pose:
    """The pose of movement ``number`` at repetition phases ``u`` in the subject's own frame.

    The subject stands at the origin facing ``+y``; phases outside [0, 1] give the rest pose.

    Args:
        number: the movement, 1..33.
        body: the subject.
        u: (K,) phases within a repetition.
        amplitude: scalar or (K,) amplitude factor (1 = nominal).

    Returns:
        The pose at the K phases.
    """
    spec = MOTION_SPECS[movement(number).number]
    phase = np.asarray(u, dtype=np.float64)
    if phase.ndim != 1 or not np.all(np.isfinite(phase)):
        raise SynthError(f"movement_pose: expected a finite 1-D phase array, got {phase.shape}")
    amp = np.broadcast_to(np.asarray(amplitude, dtype=np.float64), phase.shape)
    if not np.all(np.isfinite(amp)) or np.any(amp <= 0):
        raise SynthError("movement_pose: amplitudes must be positive and finite")
    return spec.motion(body, np.clip(phase, 0.0, 1.0), np.array(amp))
