"""The performance of one of DHP19's 33 movements by one subject, as one recording.

The movements themselves, smooth parametric motions of one repetition from the rest pose back
to it, are defined in :mod:`hybridpose.synth.movements` (their names are re-exported here).

A :class:`Performance` is one recording's worth of a movement by one body: a lead-in, a few
repetitions separated by still phases of random length, a lead-out. The subject's speed factor,
each repetition's speed and amplitude, the heading and the standing point all come from the
caller's random generator, so ``perform`` is deterministic given the generator's state.

The motions are designed to keep every joint centre inside a cylinder of radius 1000 mm around
the origin (the standing point is moved towards the centre when a movement needs the room,
e.g. the jump forwards), above the floor and below 2500 mm, for bodies of 1500-1950 mm at the
default speed and amplitude ranges.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import cached_property

import numpy as np
import numpy.typing as npt

from hybridpose.synth.movements import (
    MOTION_SPECS,
    MOVEMENTS,
    Movement,
    movement,
    movement_pose,
    nominal_duration_s,
)
from hybridpose.synth.movements import movement as movement_by_number
from hybridpose.synth.skeleton import (
    BodyShape,
    Pose,
    SkeletonFrames,
    SynthError,
    forward_kinematics,
    rest_pose,
)

FloatArray = npt.NDArray[np.float64]
BoolArray = npt.NDArray[np.bool_]
IntArray = npt.NDArray[np.int64]

CEILING_MM = 2500.0
"""No joint centre of a performance rises above this height."""

__all__ = [
    "CEILING_MM",
    "MOVEMENTS",
    "Movement",
    "Performance",
    "PerformanceSettings",
    "movement",
    "movement_pose",
    "nominal_duration_s",
    "perform",
]


# --------------------------------------------------------------------------- performance
def _check_range(name: str, value: tuple[float, float], low: float, high: float) -> None:
    if (
        not isinstance(value, tuple)
        or len(value) != 2
        or not all(isinstance(v, int | float) and math.isfinite(v) for v in value)
    ):
        raise SynthError(f"PerformanceSettings.{name}: expected a (low, high) pair, got {value!r}")
    if not low <= value[0] <= value[1] <= high:
        raise SynthError(
            f"PerformanceSettings.{name}: need {low} <= low <= high <= {high}, got {value}"
        )


@dataclass(frozen=True)
class PerformanceSettings:
    """How a subject performs a movement in one recording.

    Attributes:
        repetitions: number of repetitions (the most, with ``max_duration_s``).
        max_duration_s: if set, the recording keeps as many of its repetitions as end (with
            the lead-out) within this many seconds, at least one: DHP19's subjects repeat a
            movement for a recording of about 20-25 s, fewer times when it is slow.
        still_s: (low, high) range of the still time between repetitions, seconds.
        lead_in_s, lead_out_s: still time before the first and after the last repetition.
        speed_range: range of the subject's speed factor (a repetition lasts its nominal
            length divided by the speed). The motions are tuned for factors up to ~1.4.
        repetition_speed_jitter: each repetition's speed is the subject's times a factor in
            ``1 +- jitter``.
        amplitude_range: range of each repetition's amplitude factor (angles, heights, sizes).
        heading_jitter_deg: the subject faces ``+y`` turned by up to this many degrees.
        position_jitter_mm: the standing point is offset by up to this in x and in y (then
            pulled towards the centre if the movement would leave the area).
        area_radius_mm: every joint stays within this distance of the vertical axis.
    """

    repetitions: int = 12
    max_duration_s: float | None = 25.0
    still_s: tuple[float, float] = (0.4, 1.0)
    lead_in_s: float = 0.5
    lead_out_s: float = 0.5
    speed_range: tuple[float, float] = (0.8, 1.25)
    repetition_speed_jitter: float = 0.1
    amplitude_range: tuple[float, float] = (0.85, 1.1)
    heading_jitter_deg: float = 15.0
    position_jitter_mm: float = 100.0
    area_radius_mm: float = 1000.0

    def __post_init__(self) -> None:
        reps = self.repetitions
        if isinstance(reps, bool) or not isinstance(reps, int) or reps < 1:
            raise SynthError(f"PerformanceSettings.repetitions: expected >= 1, got {reps!r}")
        _check_range("still_s", self.still_s, 0.0, 60.0)
        longest = self.max_duration_s
        if longest is not None and (
            isinstance(longest, bool) or not isinstance(longest, int | float) or not longest > 0
        ):  # NaN fails too
            raise SynthError(f"PerformanceSettings.max_duration_s: expected > 0, got {longest!r}")
        _check_range("speed_range", self.speed_range, 0.2, 2.0)
        _check_range("amplitude_range", self.amplitude_range, 0.3, 1.15)
        limits = {
            "lead_in_s": (0.0, 60.0),
            "lead_out_s": (0.0, 60.0),
            "repetition_speed_jitter": (0.0, 0.5),
            "heading_jitter_deg": (0.0, 180.0),
            "position_jitter_mm": (0.0, 1000.0),
            "area_radius_mm": (500.0, 1e6),
        }
        for name, (low, high) in limits.items():
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int | float):
                raise SynthError(f"PerformanceSettings.{name}: expected a number, got {value!r}")
            if not low <= value <= high:
                raise SynthError(f"PerformanceSettings.{name}: {value} is outside [{low}, {high}]")


def _times(t_s: npt.ArrayLike) -> FloatArray:
    t = np.asarray(t_s, dtype=np.float64)
    if t.ndim != 1:
        raise SynthError(f"Performance: expected a 1-D array of times, got shape {t.shape}")
    if not np.all(np.isfinite(t)):
        raise SynthError("Performance: times must be finite")
    return t


@dataclass(frozen=True, eq=False)
class Performance:
    """One recording of a movement by one body: repetitions separated by still phases.

    Attributes:
        movement: what is performed.
        body: who performs it.
        duration_s: the recording's length; the body is at rest at 0 and at the end.
        start_s, end_s: (R,) each repetition's interval; the body moves exactly inside them.
        amplitude: (R,) each repetition's amplitude factor.
        position: (2,) the standing point (x, y) in mm, where the rest pose stands.
        heading: the rest pose's yaw in radians (0 faces ``+y``).
        speed: the subject's speed factor.
    """

    movement: Movement
    body: BodyShape
    duration_s: float
    start_s: FloatArray
    end_s: FloatArray
    amplitude: FloatArray
    position: FloatArray
    heading: float
    speed: float

    def __post_init__(self) -> None:
        if self.movement not in MOVEMENTS:
            raise SynthError(f"Performance.movement: not one of MOVEMENTS: {self.movement!r}")
        if not isinstance(self.body, BodyShape):
            raise SynthError(f"Performance.body: expected a BodyShape, got {type(self.body)}")
        start = np.array(self.start_s, dtype=np.float64)
        end = np.array(self.end_s, dtype=np.float64)
        amp = np.array(self.amplitude, dtype=np.float64)
        position = np.array(self.position, dtype=np.float64)
        if start.ndim != 1 or start.shape != end.shape or amp.shape != start.shape:
            raise SynthError("Performance: start_s, end_s and amplitude must be equal 1-D arrays")
        if position.shape != (2,) or not np.all(np.isfinite(position)):
            raise SynthError(f"Performance.position: expected 2 finite values, got {position}")
        arrays = np.concatenate([start, end, amp, [self.duration_s, self.heading, self.speed]])
        if not np.all(np.isfinite(arrays)):
            raise SynthError("Performance: non-finite times, amplitudes, heading or speed")
        if np.any(end <= start) or np.any(start[1:] < end[:-1]):
            raise SynthError("Performance: repetitions must be non-empty, ordered, disjoint")
        if start.size and (start[0] < 0 or end[-1] > self.duration_s):
            raise SynthError("Performance: repetitions must lie within [0, duration_s]")
        if np.any(amp <= 0) or self.speed <= 0:
            raise SynthError("Performance: amplitudes and speed must be positive")
        for name, arr in (("start_s", start), ("end_s", end), ("amplitude", amp)):
            arr.flags.writeable = False
            object.__setattr__(self, name, arr)
        position.flags.writeable = False
        object.__setattr__(self, "position", position)
        object.__setattr__(self, "duration_s", float(self.duration_s))
        object.__setattr__(self, "heading", float(self.heading))
        object.__setattr__(self, "speed", float(self.speed))

    def _phase(self, t: FloatArray) -> tuple[IntArray, FloatArray]:
        """Repetition index (-1 when still) and phase within it, per time."""
        idx = np.searchsorted(self.start_s, t, side="right") - 1
        safe = np.clip(idx, 0, max(self.start_s.size - 1, 0))
        if self.start_s.size == 0:
            return np.full(t.shape, -1, dtype=np.int64), np.zeros_like(t)
        start, end = self.start_s[safe], self.end_s[safe]
        moving = (idx >= 0) & (t > start) & (t < end)
        u = np.where(moving, (t - start) / (end - start), 0.0)
        return np.where(moving, safe, -1).astype(np.int64), u

    def is_still(self, t_s: npt.ArrayLike) -> BoolArray:
        """True where the body does not move: outside every repetition's open interval.

        Args:
            t_s: (K,) times in seconds.

        Returns:
            (K,) booleans.
        """
        rep, _ = self._phase(_times(t_s))
        return np.asarray(rep < 0)

    def _place(self, local: Pose) -> Pose:
        """Move a pose from the subject's frame to the standing point and heading."""
        c, s = math.cos(self.heading), math.sin(self.heading)
        root = np.array(local.root)
        x, y = root[:, 0].copy(), root[:, 1].copy()
        root[:, 0] = self.position[0] + c * x - s * y
        root[:, 1] = self.position[1] + s * x + c * y
        return Pose(
            root=root,
            yaw=local.yaw + self.heading,
            trunk_flexion=local.trunk_flexion,
            trunk_side_bend=local.trunk_side_bend,
            trunk_twist=local.trunk_twist,
            shoulder_flexion=local.shoulder_flexion,
            shoulder_abduction=local.shoulder_abduction,
            arm_rotation=local.arm_rotation,
            elbow_flexion=local.elbow_flexion,
            hip_flexion=local.hip_flexion,
            hip_abduction=local.hip_abduction,
            knee_flexion=local.knee_flexion,
            ankle_flexion=local.ankle_flexion,
        )

    @cached_property
    def _rest(self) -> SkeletonFrames:
        """The skeleton at rest on the standing point (one instant)."""
        return forward_kinematics(self.body, self._place(rest_pose(self.body, 1)))

    def frames(self, t_s: npt.ArrayLike) -> SkeletonFrames:
        """The skeleton at times ``t_s`` (seconds); outside the repetitions, the rest pose.

        Still instants all get the very same (bitwise) rest frame.

        Args:
            t_s: (K,) times, any order; times outside [0, duration_s] hold the rest pose.

        Returns:
            The skeleton at the K times.
        """
        t = _times(t_s)
        rep, u = self._phase(t)
        moving = rep >= 0
        count = t.size
        rest = self._rest
        joints = np.broadcast_to(rest.joints, (count, *rest.joints.shape[1:])).copy()
        neck = np.broadcast_to(rest.neck, (count, 3)).copy()
        pelvis = np.broadcast_to(rest.pelvis, (count, 3)).copy()
        toes = np.broadcast_to(rest.toes, (count, 2, 3)).copy()
        forward = np.broadcast_to(rest.forward, (count, 3)).copy()
        if np.any(moving):
            spec = MOTION_SPECS[self.movement.number]
            local = spec.motion(self.body, u[moving], self.amplitude[rep[moving]])
            live = forward_kinematics(self.body, self._place(local))
            joints[moving] = live.joints
            neck[moving] = live.neck
            pelvis[moving] = live.pelvis
            toes[moving] = live.toes
            forward[moving] = live.forward
        return SkeletonFrames(joints=joints, neck=neck, pelvis=pelvis, toes=toes, forward=forward)


def _fit_position(draft: Performance, wanted: FloatArray, radius: float) -> tuple[float, float]:
    """The standing point nearest to ``wanted`` (on the way to the best-centred one) that keeps
    every joint and toe within ``radius`` of the vertical axis."""
    t = np.linspace(0.0, draft.duration_s, max(int(draft.duration_s * 250.0), 2))
    frames = draft.frames(t)  # drawn at the origin: offsets from the standing point
    points = np.concatenate([frames.joints, frames.toes], axis=1)[:, :, :2].reshape(-1, 2)

    def reach(p: FloatArray) -> float:
        return float(np.sqrt(np.max(np.sum((points + p) ** 2, axis=1))))

    if reach(wanted) <= radius:
        return float(wanted[0]), float(wanted[1])
    best = -(points.min(axis=0) + points.max(axis=0)) / 2.0  # centre of the bounding box
    if reach(best) > radius:
        return float(best[0]), float(best[1])  # cannot fit: as central as it gets
    lo, hi = 0.0, 1.0  # reach is convex along the segment: bisect for the first fit
    for _ in range(40):
        mid = (lo + hi) / 2.0
        if reach((1.0 - mid) * wanted + mid * best) <= radius:
            hi = mid
        else:
            lo = mid
    p = (1.0 - hi) * wanted + hi * best
    return float(p[0]), float(p[1])


def perform(
    movement: int | Movement,
    body: BodyShape,
    rng: np.random.Generator,
    settings: PerformanceSettings = PerformanceSettings(),
) -> Performance:
    """One recording of ``movement`` by ``body``: deterministic given the generator's state.

    Draws, in this order: the subject's speed factor, heading, position jitter, then per
    repetition a speed factor, an amplitude, and the still time before each later repetition.

    Args:
        movement: a :class:`Movement` or its number 1..33.
        body: the subject.
        rng: the random generator (consumed); pass one per subject and movement.
        settings: repetition count, timing and jitter ranges.

    Returns:
        The performance; sample it with :meth:`Performance.frames`.
    """
    m = movement if isinstance(movement, Movement) else movement_by_number(movement)
    if m not in MOVEMENTS:
        raise SynthError(f"perform: not one of MOVEMENTS: {m!r}")
    if not isinstance(body, BodyShape):
        raise SynthError(f"perform: body must be a BodyShape, got {type(body)}")
    if not isinstance(rng, np.random.Generator):
        raise SynthError(f"perform: rng must be a numpy Generator, got {type(rng)}")
    if not isinstance(settings, PerformanceSettings):
        raise SynthError(f"perform: settings must be PerformanceSettings, got {type(settings)}")
    reps = settings.repetitions
    speed = float(rng.uniform(*settings.speed_range))
    heading = math.radians(float(rng.uniform(-1.0, 1.0)) * settings.heading_jitter_deg)
    wanted = rng.uniform(-1.0, 1.0, size=2) * settings.position_jitter_mm
    jitter = settings.repetition_speed_jitter
    rep_speed = speed * rng.uniform(1.0 - jitter, 1.0 + jitter, size=reps)
    amplitude = rng.uniform(*settings.amplitude_range, size=reps)
    still = rng.uniform(*settings.still_s, size=reps - 1)
    lengths = MOTION_SPECS[m.number].duration_s / rep_speed
    gaps = np.concatenate([[settings.lead_in_s], still])
    start = np.cumsum(gaps) + np.concatenate([[0.0], np.cumsum(lengths)[:-1]])
    end = start + lengths
    if settings.max_duration_s is not None:  # the draws above stay those of all repetitions
        keep = max(1, int(np.sum(end + settings.lead_out_s <= settings.max_duration_s)))
        start, end, amplitude = start[:keep], end[:keep], amplitude[:keep]
    duration = float(end[-1] + settings.lead_out_s)
    draft = Performance(m, body, duration, start, end, amplitude, np.zeros(2), heading, speed)
    position = _fit_position(draft, wanted, settings.area_radius_mm - 10.0)
    return Performance(m, body, duration, start, end, amplitude, np.array(position), heading, speed)
