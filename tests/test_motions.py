"""Movements and performances: DHP19's list, stillness, continuity, bounds, sides, speeds."""

from __future__ import annotations

import dataclasses
import math
from functools import cache

import numpy as np
import numpy.typing as npt
import pytest

from hybridpose.joints import JOINT_NAMES
from hybridpose.synth.motions import (
    CEILING_MM,
    MOVEMENTS,
    Movement,
    Performance,
    PerformanceSettings,
    movement,
    movement_pose,
    nominal_duration_s,
    perform,
)
from hybridpose.synth.skeleton import (
    BodyShape,
    SkeletonFrames,
    SynthError,
    forward_kinematics,
    rest_pose,
    sample_body,
    standard_body,
)

Array = npt.NDArray[np.float64]
J = {name: i for i, name in enumerate(JOINT_NAMES)}
DT = 1e-3  # 1 ms samples
NUMBERS = [m.number for m in MOVEMENTS]

# DHP19's list (docs/DHP19.md), session by session, in file order
DHP19 = (
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

# the limb a one-sided movement moves: (joint family, side)
LATERAL = {
    1: ("hand", "L"),
    2: ("hand", "R"),
    3: ("foot", "L"),
    4: ("foot", "R"),
    5: ("hand", "L"),
    6: ("hand", "R"),
    7: ("foot", "L"),
    8: ("foot", "R"),
    15: ("hand", "L"),
    16: ("hand", "R"),
    17: ("hand", "L"),
    18: ("hand", "R"),
    19: ("hand", "L"),
    20: ("hand", "R"),
    23: ("foot", "L"),
    24: ("foot", "R"),
    25: ("foot", "L"),
    26: ("foot", "R"),
    27: ("hand", "L"),
    28: ("hand", "R"),
    29: ("hand", "L"),
    30: ("hand", "R"),
    31: ("hand", "L"),
    32: ("hand", "R"),
}
JUMPS = (10, 11, 12, 22)  # both feet leave the floor together


@dataclasses.dataclass(frozen=True)
class Sampled:
    performance: Performance
    t: Array
    frames: SkeletonFrames


@cache
def sampled(number: int) -> Sampled:
    """A random subject's performance of ``number``, sampled every millisecond."""
    rng = np.random.default_rng(1000 + number)
    body = sample_body(rng)
    performance = perform(number, body, rng)
    t = np.arange(-0.2, performance.duration_s + 0.2, DT)
    return Sampled(performance, t, performance.frames(t))


def path_length(frames: SkeletonFrames, name: str) -> float:
    return float(np.linalg.norm(np.diff(frames.joints[:, J[name]], axis=0), axis=1).sum())


def peak_speed(frames: SkeletonFrames, names: tuple[str, ...], dt: float = DT) -> float:
    """Fastest of the named joints in m/s."""
    idx = [J[n] for n in names]
    step = np.linalg.norm(np.diff(frames.joints[:, idx], axis=0), axis=2)
    return float(step.max() / dt / 1000.0)


def fixed(**changes: object) -> PerformanceSettings:
    """Settings without random speed or amplitude."""
    base = PerformanceSettings(
        speed_range=(1.0, 1.0), repetition_speed_jitter=0.0, amplitude_range=(1.0, 1.0)
    )
    return dataclasses.replace(base, **changes)  # type: ignore[arg-type]


# --------------------------------------------------------------------------- the list
def test_the_33_movements_follow_dhp19() -> None:
    assert len(MOVEMENTS) == 33
    assert len({m.name for m in MOVEMENTS}) == 33
    assert [len(s) for s in DHP19] == [8, 6, 6, 6, 7]
    expected = [
        (session + 1, index + 1, name)
        for session, names in enumerate(DHP19)
        for index, name in enumerate(names)
    ]
    assert [(m.session, m.index, m.name) for m in MOVEMENTS] == expected
    assert [m.number for m in MOVEMENTS] == list(range(1, 34))
    for m in MOVEMENTS:
        assert movement(m.number) is m
        assert movement(np.int64(m.number)) is m  # type: ignore[arg-type]
    assert movement(1).name == "left arm abduction"
    assert (movement(16).session, movement(16).index) == (3, 2)
    assert (movement(33).session, movement(33).index, movement(33).name) == (5, 7, "clap")


@pytest.mark.parametrize("bad", [0, 34, -1, True, 2.0, "3"])
def test_movement_rejects_numbers_outside_1_to_33(bad: object) -> None:
    with pytest.raises(SynthError, match="movement"):
        movement(bad)  # type: ignore[arg-type]


# --------------------------------------------------------------------------- every movement
@pytest.mark.parametrize("number", NUMBERS)
def test_still_between_repetitions_and_moving_inside(number: int) -> None:
    s = sampled(number)
    p, f = s.performance, s.frames
    still = p.is_still(s.t)
    assert still[0] and still[-1]
    assert np.array_equal(still, ~np.any((s.t[:, None] > p.start_s) & (s.t[:, None] < p.end_s), 1))
    # every still instant holds the very same (bitwise) rest frame
    for arr in (f.joints, f.neck, f.pelvis, f.toes, f.forward):
        assert np.array_equal(arr[still], np.broadcast_to(arr[still][:1], arr[still].shape))
    rest = f.joints[still][0]
    # and the body moves at every instant of a repetition: no two samples alike
    moving = ~still[1:] & ~still[:-1]
    assert np.all(np.any(f.joints[1:][moving] != f.joints[:-1][moving], axis=(1, 2)))
    for start, end in zip(p.start_s, p.end_s, strict=True):
        inside = (s.t > start) & (s.t < end)
        moved = np.linalg.norm(f.joints[inside] - rest, axis=2).max()
        assert moved > 100.0
        # it leaves the rest pose smoothly: near the ends it is close to rest
        near = (s.t > start) & (s.t < start + 0.01)
        assert np.linalg.norm(f.joints[near] - rest, axis=2).max() < 1.0


@pytest.mark.parametrize("number", NUMBERS)
def test_continuous_with_realistic_speeds(number: int) -> None:
    f = sampled(number).frames
    step = np.linalg.norm(np.diff(f.joints, axis=0), axis=2)  # mm per ms = m/s
    assert step.max() < 10.0
    # no jumps: each step is close to its neighbours' (the acceleration is bounded)
    accel = np.linalg.norm(np.diff(f.joints, n=2, axis=0), axis=2) / DT**2 / 1000.0
    assert accel.max() < 500.0  # m/s^2; a jump of 1 mm in one sample would be 1000
    toes = np.linalg.norm(np.diff(f.toes, axis=0), axis=2)
    assert toes.max() < 12.0


@pytest.mark.parametrize("number", NUMBERS)
def test_inside_the_cylinder_and_above_the_floor(number: int) -> None:
    s = sampled(number)
    f = s.frames
    points = np.concatenate([f.joints, f.toes], axis=1)
    assert np.hypot(points[..., 0], points[..., 1]).max() <= 1000.0
    assert f.joints[..., 2].min() >= 0.0
    assert f.toes[..., 2].min() >= 0.0
    assert f.joints[..., 2].max() <= CEILING_MM
    # the feet are on the floor at rest: ankle height = foot radius
    still = s.performance.is_still(s.t)
    ankles = f.joints[still][:, [J["footR"], J["footL"]], 2]
    assert np.allclose(ankles, s.performance.body.foot_radius)


def test_tallest_fastest_subject_stays_within_bounds() -> None:
    # the default ranges' extremes: speed 1.25 x repetition jitter 1.1, amplitude 1.1
    settings = fixed(speed_range=(1.375, 1.375), amplitude_range=(1.1, 1.1))
    for height in (1500.0, 1950.0):
        body = standard_body(height)
        for number in NUMBERS:
            p = perform(number, body, np.random.default_rng(number), settings)
            f = p.frames(np.arange(0.0, p.duration_s, DT))
            points = np.concatenate([f.joints, f.toes], axis=1)
            assert np.hypot(points[..., 0], points[..., 1]).max() <= 1000.0, number
            assert f.joints[..., 2].max() <= CEILING_MM, number
            assert peak_speed(f, JOINT_NAMES) < 10.0, number


@pytest.mark.parametrize("number", sorted(LATERAL))
def test_one_sided_movements_move_the_named_limb(number: int) -> None:
    family, side = LATERAL[number]
    assert (side == "L") == ("left" in movement(number).name)
    other = "R" if side == "L" else "L"
    f = sampled(number).frames
    active, idle = path_length(f, family + side), path_length(f, family + other)
    assert active > 1500.0
    assert active > 4.0 * idle
    if family == "hand":  # the feet stay put
        assert path_length(f, "footL") + path_length(f, "footR") < 0.05 * active


@pytest.mark.parametrize(("number", "hopping"), [(13, "R"), (14, "L")])
def test_hops_on_one_foot(number: int, hopping: str) -> None:
    s = sampled(number)
    f, p = s.frames, s.performance
    free = "L" if hopping == "R" else "R"
    hop_z = f.joints[:, J["foot" + hopping], 2] - p.body.foot_radius
    free_z = f.joints[:, J["foot" + free], 2] - p.body.foot_radius
    for start, end in zip(p.start_s, p.end_s, strict=True):
        middle = (s.t > start + 0.3 * (end - start)) & (s.t < start + 0.7 * (end - start))
        assert free_z[middle].min() > 80.0  # the free foot is held up all along
        assert hop_z[middle].max() > 30.0  # the hopping foot leaves the floor ...
        assert hop_z[middle].min() < 1e-6  # ... and lands
        # hops: the hopping foot goes up three times per repetition
        lifted = hop_z[middle | ((s.t > start) & (s.t < end))] > 10.0
        assert np.count_nonzero(np.diff(lifted.astype(int)) == 1) == 3


@pytest.mark.parametrize("number", JUMPS)
def test_jumps_leave_the_floor_and_land(number: int) -> None:
    s = sampled(number)
    f, p = s.frames, s.performance
    feet = f.joints[:, [J["footR"], J["footL"]], 2] - p.body.foot_radius
    for start, end in zip(p.start_s, p.end_s, strict=True):
        inside = (s.t > start) & (s.t < end)
        airborne = feet[inside].min(axis=1)  # the lower foot's height above its rest
        assert airborne.max() > 50.0
        assert f.pelvis[inside, 2].max() > p.body.pelvis_height + 50.0
        assert f.pelvis[inside, 2].min() < p.body.pelvis_height - 20.0  # crouch / landing
    assert np.allclose(feet[-1], 0.0)  # landed


def test_jump_forwards_moves_forwards_and_comes_back() -> None:
    s = sampled(11)
    f, p = s.frames, s.performance
    forward = f.forward[0]
    travel = (f.pelvis - f.pelvis[0]) @ forward
    for start, end in zip(p.start_s, p.end_s, strict=True):
        inside = (s.t > start) & (s.t < end)
        assert travel[inside].max() > 250.0
        assert travel[inside].min() > -1.0
    assert abs(travel[-1]) < 1e-6


def test_punches_are_several_times_faster_than_abductions() -> None:
    body = standard_body(1750.0)

    def peak(number: int) -> float:
        p = perform(number, body, np.random.default_rng(0), fixed(repetitions=1))
        return peak_speed(p.frames(np.arange(0.0, p.duration_s, DT)), ("handR", "handL"))

    punches = [peak(n) for n in range(15, 21)]
    slow = [peak(n) for n in (1, 2, 5, 6)]
    assert min(punches) > 2.5 * max(slow)
    assert min(punches) > 4.0 and max(punches) < 7.5
    kicks = [
        peak_speed(
            perform(n, body, np.random.default_rng(0), fixed(repetitions=1)).frames(
                np.arange(0.0, 3.0, DT)
            ),
            ("footR", "footL"),
        )
        for n in range(23, 27)
    ]
    assert min(kicks) > 4.0


def test_walking_and_jogging_alternate_legs_and_swing_arms() -> None:
    for number in (9, 21):
        s = sampled(number)
        f, p = s.frames, s.performance
        inside = ~p.is_still(s.t)
        foot = f.joints[inside][:, [J["footR"], J["footL"]], 2] - p.body.foot_radius
        assert foot.max(axis=0).min() > 60.0  # both feet step
        both_up = np.all(foot > (30.0 if number == 9 else 100.0), axis=1)
        assert not np.any(both_up)  # never both high at once
        # in the steady middle of each repetition the arms swing in opposition
        middle = np.zeros_like(inside)
        for start, end in zip(p.start_s, p.end_s, strict=True):
            middle |= (s.t > start + 0.3 * (end - start)) & (s.t < start + 0.7 * (end - start))
        fwd = f.forward[0]
        hands = (f.joints[middle][:, [J["handR"], J["handL"]]] - f.pelvis[middle][:, None]) @ fwd
        swing = hands - hands.mean(axis=0)
        assert np.corrcoef(swing[:, 0], swing[:, 1])[0, 1] < -0.5
        knee = (f.joints[middle][:, J["kneeR"]] - f.pelvis[middle]) @ fwd
        assert np.corrcoef(knee, swing[:, 0])[0, 1] < -0.5  # right knee up: right arm back
    jog = sampled(21)
    jog_feet = jog.frames.joints[:, [J["footR"], J["footL"]], 2] - jog.performance.body.foot_radius
    assert np.any(np.all(jog_feet > 5.0, axis=1))  # jogging has a flight phase


def test_star_jumps_spread_arms_and_legs_together() -> None:
    s = sampled(22)
    f, p = s.frames, s.performance
    width = np.linalg.norm(f.joints[:, J["footR"]] - f.joints[:, J["footL"]], axis=1)
    hands_up = np.minimum(f.joints[:, J["handR"], 2], f.joints[:, J["handL"], 2])
    for start, end in zip(p.start_s, p.end_s, strict=True):
        inside = (s.t > start) & (s.t < end)
        top = np.argmax(np.where(inside, hands_up, -np.inf))
        assert hands_up[top] > f.joints[top, J["head"], 2]  # both hands overhead
        assert width[top] > p.body.hip_width + 150.0  # with the feet apart


def test_clap_hands_meet_in_front_of_the_chest() -> None:
    s = sampled(33)
    f, p = s.frames, s.performance
    body = p.body
    gap = np.linalg.norm(f.joints[:, J["handR"]] - f.joints[:, J["handL"]], axis=1)
    for start, end in zip(p.start_s, p.end_s, strict=True):
        inside = (s.t > start) & (s.t < end)
        assert gap[inside].min() == pytest.approx(2 * body.hand_radius, abs=1.0)  # touching
        meet = np.argmin(np.where(inside, gap, np.inf))
        middle = (f.joints[meet, J["handR"]] + f.joints[meet, J["handL"]]) / 2
        ahead = (middle - f.neck[meet]) @ f.forward[meet]
        assert 200.0 < ahead < 500.0
        assert body.pelvis_height < middle[2] < body.shoulder_height
        claps = np.count_nonzero(np.diff((gap[inside] < 2 * body.hand_radius + 1).astype(int)) == 1)
        assert claps == 4


@pytest.mark.parametrize("number", [29, 30])
def test_circles_are_traced_in_front_of_the_body(number: int) -> None:
    s = sampled(number)
    f, p = s.frames, s.performance
    hand = "handL" if number == 29 else "handR"
    start, end = p.start_s[0], p.end_s[0]
    middle = (s.t > start + 0.3 * (end - start)) & (s.t < start + 0.7 * (end - start))
    offset = f.joints[middle, J[hand]] - f.neck[middle]
    fwd = f.forward[0]
    right = np.array([fwd[1], -fwd[0], 0.0])
    assert (offset @ fwd).min() > 250.0  # in front of the body
    x, z = offset @ right, offset[:, 2]
    x, z = x - (x.max() + x.min()) / 2, z - (z.max() + z.min()) / 2
    angle = np.unwrap(np.arctan2(z, x))
    assert abs(angle[-1] - angle[0]) > 1.2 * math.pi  # goes round (most of two turns here)
    radius = np.hypot(x, z)
    assert radius.std() < 0.03 * radius.mean()  # a circle
    assert np.ptp(offset @ fwd) < 0.05 * radius.mean()  # in a frontal plane


def test_figure8_crosses_itself_in_front_of_the_body() -> None:
    s = sampled(32)
    f, p = s.frames, s.performance
    start, end = p.start_s[0], p.end_s[0]
    middle = (s.t > start + 0.3 * (end - start)) & (s.t < start + 0.7 * (end - start))
    offset = f.joints[middle, J["handR"]] - f.neck[middle]
    fwd = f.forward[0]
    right = np.array([fwd[1], -fwd[0], 0.0])
    assert (offset @ fwd).min() > 250.0
    x = offset @ right
    z = offset[:, 2]
    x, z = x - (x.max() + x.min()) / 2, z - (z.max() + z.min()) / 2
    # a lying 8: up and down twice per sideways sweep, through its crossing at the centre
    assert np.ptp(x) > np.ptp(z)
    x_turns = np.count_nonzero(np.diff(np.sign(x)) != 0)
    z_turns = np.count_nonzero(np.diff(np.sign(z)) != 0)
    assert x_turns >= 2 and z_turns >= 2 * x_turns - 1
    assert np.hypot(x, z).min() < 10.0


def test_waving_hand_is_above_the_shoulder() -> None:
    for number, hand in ((27, "handL"), (28, "handR")):
        s = sampled(number)
        f, p = s.frames, s.performance
        start, end = p.start_s[0], p.end_s[0]
        middle = (s.t > start + 0.4 * (end - start)) & (s.t < start + 0.6 * (end - start))
        assert np.all(f.joints[middle, J[hand], 2] > p.body.shoulder_height + 100.0)


# --------------------------------------------------------------------------- performances
def test_performance_is_deterministic_given_the_seed() -> None:
    body = standard_body(1700.0)
    t = np.arange(0.0, 14.0, 0.005)
    a = perform(16, body, np.random.default_rng(3)).frames(t)
    b = perform(16, body, np.random.default_rng(3)).frames(t)
    c = perform(16, body, np.random.default_rng(4)).frames(t)
    assert np.array_equal(a.joints, b.joints) and np.array_equal(a.toes, b.toes)
    assert not np.array_equal(a.joints, c.joints)


def test_recordings_last_about_as_long_as_dhp19s() -> None:
    """By default a recording keeps as many of its 12 repetitions as end within 25 s; the
    repetitions kept are the first ones of the performance without the limit (same draws)."""
    body = standard_body(1700.0)
    limited = perform(2, body, np.random.default_rng(9))
    unlimited = perform(2, body, np.random.default_rng(9), PerformanceSettings(max_duration_s=None))
    kept = limited.start_s.size
    assert unlimited.start_s.size == 12 and 6 <= kept < 12
    assert limited.duration_s <= 25.0 < unlimited.end_s[kept] + 0.5
    assert np.array_equal(limited.start_s, unlimited.start_s[:kept])
    assert np.array_equal(limited.amplitude, unlimited.amplitude[:kept])
    assert limited.duration_s == pytest.approx(limited.end_s[-1] + 0.5)
    with pytest.raises(SynthError, match="max_duration_s"):
        PerformanceSettings(max_duration_s=0.0)


def test_repetitions_vary() -> None:
    body = standard_body(1700.0)
    p = perform(2, body, np.random.default_rng(9), PerformanceSettings(repetitions=5))
    lengths = p.end_s - p.start_s
    assert p.start_s.size == 5
    assert np.unique(lengths).size == 5
    assert np.unique(p.amplitude).size == 5
    gaps = p.start_s[1:] - p.end_s[:-1]
    assert np.all((gaps >= 0.4) & (gaps <= 1.0))
    assert p.start_s[0] == pytest.approx(0.5) and p.duration_s - p.end_s[-1] == pytest.approx(0.5)
    assert np.all((lengths > 0.8 * 0.9 * 2.4 / 1.25) & (lengths < 1.1 * 2.4 / 0.8 / 0.9))
    assert lengths == pytest.approx(nominal_duration_s(2) / (p.speed * (lengths * 0 + 1)), rel=0.11)
    # the peak abduction follows the amplitude
    t = np.arange(0.0, p.duration_s, 0.002)
    f = p.frames(t)
    lift = f.joints[:, J["handR"], 2]
    peaks = [lift[(t > s0) & (t < s1)].max() for s0, s1 in zip(p.start_s, p.end_s, strict=True)]
    assert np.argsort(peaks).tolist() == np.argsort(p.amplitude).tolist()


def test_subject_speed_comes_from_the_rng() -> None:
    body = standard_body(1700.0)
    speeds = {perform(1, body, np.random.default_rng(seed)).speed for seed in range(20)}
    assert len(speeds) == 20
    assert min(speeds) >= 0.8 and max(speeds) <= 1.25


def test_heading_and_position_jitter() -> None:
    body = standard_body(1700.0)
    headings, positions = [], []
    for seed in range(30):
        p = perform(5, body, np.random.default_rng(seed))
        headings.append(p.heading)
        positions.append(p.position)
        rest = p.frames(np.array([0.0]))
        assert np.allclose(rest.forward[0], [-math.sin(p.heading), math.cos(p.heading), 0.0])
        assert np.allclose(rest.pelvis[0, :2], p.position)
    assert max(np.abs(headings)) <= math.radians(15.0)
    assert max(np.abs(headings)) > math.radians(8.0)
    assert np.abs(positions).max() <= 100.0 and np.abs(positions).max() > 50.0


def test_times_outside_the_recording_hold_the_rest_pose() -> None:
    body = standard_body(1700.0)
    p = perform(22, body, np.random.default_rng(1))
    t = np.array([-5.0, 0.0, p.duration_s, p.duration_s + 3.0, p.start_s[0], p.end_s[-1]])
    copy = t.copy()
    f = p.frames(t)
    assert np.array_equal(t, copy)  # inputs are not touched
    assert np.all(p.is_still(t))
    assert np.array_equal(f.joints, np.broadcast_to(f.joints[:1], f.joints.shape))
    assert not p.is_still([float(p.start_s[0] + 0.1)])[0]
    local = forward_kinematics(body, rest_pose(body, 1))
    # the rest pose, placed at the standing point
    assert f.joints[0, J["footR"], 2] == pytest.approx(local.joints[0, J["footR"], 2])
    assert p.frames(np.zeros(0)).count == 0


def test_movement_pose_outside_the_phase_range_is_rest() -> None:
    body = standard_body(1700.0)
    rest = forward_kinematics(body, rest_pose(body, 1)).joints[0]
    for number in NUMBERS:
        f = forward_kinematics(body, movement_pose(number, body, np.array([-1.0, 0.0, 1.0, 2.0])))
        assert np.allclose(f.joints, rest, rtol=0, atol=1e-4), number


def test_invalid_arguments() -> None:
    body = standard_body(1700.0)
    rng = np.random.default_rng(0)
    p = perform(1, body, rng)
    with pytest.raises(SynthError, match="1-D"):
        p.frames(np.zeros((2, 2)))
    with pytest.raises(SynthError, match="finite"):
        p.frames([0.0, math.nan])
    with pytest.raises(SynthError, match="1-D"):
        p.is_still(0.5)
    with pytest.raises(SynthError, match="outside"):
        perform(34, body, rng)
    with pytest.raises(SynthError, match="Generator"):
        perform(1, body, 3)  # type: ignore[arg-type]
    with pytest.raises(SynthError, match="BodyShape"):
        perform(1, "body", rng)  # type: ignore[arg-type]
    with pytest.raises(SynthError, match="MOVEMENTS"):
        perform(Movement(1, 1, 1, "dance"), body, rng)
    with pytest.raises(SynthError, match="repetitions"):
        PerformanceSettings(repetitions=0)
    with pytest.raises(SynthError, match="still_s"):
        PerformanceSettings(still_s=(1.0, 0.5))
    with pytest.raises(SynthError, match="amplitude_range"):
        PerformanceSettings(amplitude_range=(0.9, 2.0))
    with pytest.raises(SynthError, match="heading"):
        PerformanceSettings(heading_jitter_deg=-1.0)
    with pytest.raises(SynthError, match="ordered"):
        dataclasses.replace(p, start_s=p.start_s[::-1].copy(), end_s=p.end_s[::-1].copy())
    with pytest.raises(SynthError, match="amplitudes"):
        movement_pose(3, body, [0.5], amplitude=-1.0)


def test_one_repetition_settings_as_the_generator_uses_them() -> None:
    settings = dataclasses.replace(
        PerformanceSettings(), repetitions=1, still_s=(0.3, 0.4), lead_in_s=0.3, lead_out_s=0.3
    )
    body: BodyShape = sample_body(np.random.default_rng(1))
    p = perform(16, body, np.random.default_rng(2), settings)
    assert p.start_s.size == 1 and p.start_s[0] == pytest.approx(0.3)
    assert p.duration_s == pytest.approx(p.end_s[0] + 0.3)
