"""Skeleton: body proportions, the pose, and forward kinematics against hand-computed poses."""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import numpy.typing as npt
import pytest

from hybridpose.errors import HybridPoseError
from hybridpose.joints import BONES, JOINT_NAMES
from hybridpose.synth.motions import MOVEMENTS, PerformanceSettings, perform
from hybridpose.synth.skeleton import (
    LEFT,
    RIGHT,
    BodyShape,
    Pose,
    SkeletonFrames,
    SynthError,
    forward_kinematics,
    rest_pose,
    sample_body,
    standard_body,
)

Array = npt.NDArray[np.float64]
J = {name: i for i, name in enumerate(JOINT_NAMES)}
BODY = standard_body(1750.0)
UP = np.array([0.0, 0.0, 1.0])
X = np.array([1.0, 0.0, 0.0])
Y = np.array([0.0, 1.0, 0.0])


def posed(**angles: float | tuple[float, float]) -> SkeletonFrames:
    """One frame of BODY at rest except for the given angles (degrees; per-side as (R, L))."""
    pose = rest_pose(BODY, 1)
    values: dict[str, Array] = {}
    for name, value in angles.items():
        current = np.array(getattr(pose, name))
        if isinstance(value, tuple):
            current[0] = np.radians(value)
        else:
            current[0] = np.radians(value)
        values[name] = current
    return forward_kinematics(BODY, dataclasses.replace(pose, **values))


def joint(frames: SkeletonFrames, name: str) -> Array:
    return np.asarray(frames.joints[0, J[name]])


# --------------------------------------------------------------------------- known poses
def test_rest_pose_hangs_arms_and_stands_on_the_floor() -> None:
    f = posed()
    for side, sign in (("R", 1.0), ("L", -1.0)):
        shoulder = joint(f, "shoulder" + side)
        assert np.allclose(shoulder, [sign * BODY.shoulder_width / 2, 0, BODY.shoulder_height])
        assert np.allclose(joint(f, "elbow" + side), shoulder - BODY.upper_arm * UP)
        assert np.allclose(joint(f, "hand" + side), shoulder - BODY.arm_length * UP)
        hip = joint(f, "hip" + side)
        assert np.allclose(hip, [sign * BODY.hip_width / 2, 0, BODY.pelvis_height])
        assert np.allclose(joint(f, "knee" + side), hip - BODY.thigh * UP)
        ankle = joint(f, "foot" + side)
        assert np.allclose(ankle, [sign * BODY.hip_width / 2, 0, BODY.foot_radius])
        toe = f.toes[0, 0 if side == "R" else 1]
        assert np.allclose(toe, ankle + BODY.foot_length * Y)  # the foot lies flat, forwards
    head = joint(f, "head")
    assert np.allclose(head, [0, 0, BODY.height - BODY.head_radius])  # top of head = height
    assert np.allclose(f.neck[0], [0, 0, BODY.shoulder_height])
    assert np.allclose(f.pelvis[0], [0, 0, BODY.pelvis_height])
    assert np.allclose(f.forward[0], Y)


def test_arms_abducted_90_degrees_point_sideways_at_shoulder_height() -> None:
    f = posed(shoulder_abduction=(90.0, 90.0))
    right, left = joint(f, "shoulderR"), joint(f, "shoulderL")
    assert np.allclose(joint(f, "handR"), right + BODY.arm_length * X)
    assert np.allclose(joint(f, "handL"), left - BODY.arm_length * X)
    assert np.allclose(joint(f, "elbowR"), right + BODY.upper_arm * X)


def test_shoulder_flexion_raises_the_arm_forwards() -> None:
    f = posed(shoulder_flexion=(90.0, 180.0))
    assert np.allclose(joint(f, "handR"), joint(f, "shoulderR") + BODY.arm_length * Y)
    assert np.allclose(joint(f, "handL"), joint(f, "shoulderL") + BODY.arm_length * UP)
    back = posed(shoulder_flexion=(-30.0, 0.0))  # negative flexion swings backwards
    assert joint(back, "handR")[1] < -100.0


def test_elbow_bend_direction() -> None:
    # hanging arm, elbow at 90 degrees: a curl brings the forearm forwards
    curl = posed(elbow_flexion=(90.0, 90.0))
    for side in "RL":
        assert np.allclose(
            joint(curl, "hand" + side), joint(curl, "elbow" + side) + BODY.forearm * Y
        )
    # abducted arm rotated by 90 degrees: the forearm stands up (a waving arm)
    wave = posed(
        shoulder_abduction=(90.0, 90.0), arm_rotation=(90.0, 90.0), elbow_flexion=(90.0, 90.0)
    )
    for side in "RL":
        assert np.allclose(
            joint(wave, "hand" + side), joint(wave, "elbow" + side) + BODY.forearm * UP
        )
    # arm forward, rotation 0: the forearm bends upwards (a punch's chamber)
    guard = posed(shoulder_flexion=(90.0, 90.0), elbow_flexion=(90.0, 90.0))
    assert np.allclose(joint(guard, "handR"), joint(guard, "elbowR") + BODY.forearm * UP)


def test_hip_and_knee_flexed_90_degrees_give_a_horizontal_thigh_and_vertical_shin() -> None:
    f = posed(hip_flexion=(90.0, 0.0), knee_flexion=(90.0, 0.0))
    hip = joint(f, "hipR")
    assert np.allclose(joint(f, "kneeR"), hip + BODY.thigh * Y)
    assert np.allclose(joint(f, "footR"), hip + BODY.thigh * Y - BODY.shin * UP)
    # neutral ankle: the foot is perpendicular to the shin, i.e. horizontal and forwards
    assert np.allclose(f.toes[0, RIGHT], joint(f, "footR") + BODY.foot_length * Y)
    # the other leg has not moved
    assert np.allclose(joint(f, "footL"), [-BODY.hip_width / 2, 0, BODY.foot_radius])


def test_hip_abduction_and_ankle_dorsiflexion() -> None:
    f = posed(hip_abduction=(30.0, 30.0))
    leg = BODY.leg_length
    s, c = math.sin(math.radians(30)), math.cos(math.radians(30))
    assert np.allclose(joint(f, "footR") - joint(f, "hipR"), [leg * s, 0, -leg * c])
    assert np.allclose(joint(f, "footL") - joint(f, "hipL"), [-leg * s, 0, -leg * c])
    f = posed(ankle_flexion=(20.0, 0.0))
    toe = f.toes[0, RIGHT] - joint(f, "footR")  # dorsiflexion lifts the toes
    a = math.radians(20)
    assert np.allclose(toe, BODY.foot_length * np.array([0, math.cos(a), math.sin(a)]))


def test_yaw_turns_the_body_counter_clockwise() -> None:
    f = posed(yaw=90.0)  # faces -x: its right is +y
    assert np.allclose(f.forward[0], [-1, 0, 0])
    assert np.allclose(joint(f, "shoulderR")[:2], [0, BODY.shoulder_width / 2])
    assert np.allclose(f.toes[0, RIGHT][:2], [-BODY.foot_length, BODY.hip_width / 2])


def test_trunk_flexion_side_bend_and_twist() -> None:
    lean = posed(trunk_flexion=90.0)
    assert np.allclose(lean.neck[0], lean.pelvis[0] + BODY.torso_length * Y)
    side = posed(trunk_side_bend=90.0)
    assert np.allclose(side.neck[0], side.pelvis[0] + BODY.torso_length * X)
    twist = posed(trunk_twist=90.0)  # the right shoulder comes forward
    assert np.allclose(joint(twist, "shoulderR")[:2], [0, BODY.shoulder_width / 2])
    # the legs hang off the pelvis, not the trunk
    assert np.allclose(joint(lean, "kneeR"), joint(posed(), "kneeR"))


def test_bones_are_rigid_over_random_poses() -> None:
    rng = np.random.default_rng(5)
    count = 500
    pose = rest_pose(BODY, count)
    fields = {}
    for f in dataclasses.fields(Pose):
        if f.name != "root":
            fields[f.name] = rng.uniform(-3, 3, np.shape(getattr(pose, f.name)))
    fields["root"] = rng.uniform(-500, 500, (count, 3))
    frames = forward_kinematics(BODY, dataclasses.replace(pose, **fields))
    lengths = {
        ("shoulderR", "elbowR"): BODY.upper_arm,
        ("elbowL", "handL"): BODY.forearm,
        ("hipR", "kneeR"): BODY.thigh,
        ("kneeL", "footL"): BODY.shin,
        ("shoulderR", "shoulderL"): BODY.shoulder_width,
        ("hipR", "hipL"): BODY.hip_width,
    }
    for (a, b), length in lengths.items():
        d = np.linalg.norm(frames.joints[:, J[a]] - frames.joints[:, J[b]], axis=1)
        assert np.allclose(d, length)
    assert np.allclose(
        np.linalg.norm(frames.toes - frames.joints[:, [11, 12]], axis=2), BODY.foot_length
    )
    assert np.allclose(np.linalg.norm(frames.forward, axis=1), 1.0)
    assert np.allclose(frames.forward[:, 2], 0.0)


RIGID = [bone for bone in BONES if bone not in ((1, 5), (2, 6))]  # the trunk bends at the pelvis


def bone_lengths(frames: SkeletonFrames) -> Array:
    pairs = np.array(RIGID)
    d = frames.joints[:, pairs[:, 0]] - frames.joints[:, pairs[:, 1]]
    toes = np.linalg.norm(frames.toes - frames.joints[:, [J["footR"], J["footL"]]], axis=2)
    return np.concatenate([np.linalg.norm(d, axis=2), toes], axis=1)


@pytest.mark.parametrize("number", [m.number for m in MOVEMENTS])
def test_bone_lengths_are_constant_over_a_performance(number: int) -> None:
    rng = np.random.default_rng(100 + number)
    body = sample_body(rng)
    performance = perform(number, body, rng, PerformanceSettings(repetitions=2))
    lengths = bone_lengths(performance.frames(np.arange(0.0, performance.duration_s, 0.004)))
    assert np.allclose(lengths, lengths[0], rtol=0, atol=1e-6)


def test_pose_arrays_are_copied_and_validated() -> None:
    yaw = np.zeros(2)
    pose = rest_pose(BODY, 2)
    changed = dataclasses.replace(pose, yaw=yaw)
    yaw[0] = 1.0  # the caller's array stays theirs
    assert changed.yaw[0] == 0.0
    with pytest.raises(ValueError):
        changed.yaw[0] = 1.0  # read-only
    with pytest.raises(SynthError, match="yaw"):
        dataclasses.replace(pose, yaw=np.zeros(3))
    with pytest.raises(SynthError, match="knee_flexion"):
        dataclasses.replace(pose, knee_flexion=np.zeros(2))
    with pytest.raises(SynthError, match="non-finite"):
        dataclasses.replace(pose, trunk_twist=np.array([0.0, np.nan]))
    with pytest.raises(SynthError, match="root"):
        dataclasses.replace(pose, root=np.zeros((2, 2)))
    with pytest.raises(SynthError):
        forward_kinematics(BODY, "pose")  # type: ignore[arg-type]
    with pytest.raises(SynthError):
        rest_pose(BODY, -1)
    assert forward_kinematics(BODY, rest_pose(BODY, 0)).count == 0


# --------------------------------------------------------------------------- body shapes
def test_sample_body_ranges_over_many_draws() -> None:
    rng = np.random.default_rng(0)
    bodies = [sample_body(rng) for _ in range(400)]
    heights = np.array([b.height for b in bodies])
    assert heights.min() >= 1500.0 and heights.max() <= 1950.0
    assert 1640.0 < heights.mean() < 1750.0  # men and women
    assert heights.std() > 60.0
    for b in bodies:
        assert 330.0 <= b.shoulder_width <= 450.0
        assert 0.47 < b.leg_length / b.height < 0.53
        assert 0.34 < b.arm_length / b.height < 0.41
        assert 0.10 < b.neck_length / b.height < 0.15
        assert 0.09 < b.hip_width / b.height < 0.13
        assert 30.0 < b.foot_radius < 60.0  # the ankle's height
        assert 25.0 < b.upper_arm_radius < 60.0 and 20.0 < b.forearm_radius < 45.0
        assert 45.0 < b.thigh_radius < 85.0 and 30.0 < b.shin_radius < 65.0
        assert 70.0 < b.torso_radius < 140.0 and 80.0 < b.head_radius < 125.0
        assert b.forearm_radius < b.upper_arm_radius and b.shin_radius < b.thigh_radius
        # the torso is wider than deep
        assert b.shoulder_width + 2 * b.flank_radius > 2 * b.torso_radius * 1.3
        top = b.foot_radius + b.shin + b.thigh + b.torso_length + b.neck_length + b.head_radius
        assert top == pytest.approx(b.height)


def test_sample_body_is_deterministic_and_varies() -> None:
    a = sample_body(np.random.default_rng(7))
    assert a == sample_body(np.random.default_rng(7))
    assert a != sample_body(np.random.default_rng(8))
    assert all(isinstance(v, float) for v in dataclasses.astuple(a))


def test_body_shape_validation() -> None:
    with pytest.raises(SynthError, match="thigh"):
        dataclasses.replace(BODY, thigh=-1.0)
    with pytest.raises(SynthError, match="head_radius"):
        dataclasses.replace(BODY, head_radius=math.inf)
    with pytest.raises(SynthError, match="neck"):
        dataclasses.replace(BODY, torso_length=BODY.torso_length + 200.0)
    with pytest.raises(SynthError, match="height"):
        dataclasses.replace(BODY, height=3000.0)
    with pytest.raises(SynthError, match="forearm_radius"):
        dataclasses.replace(BODY, forearm_radius=BODY.forearm * 2)
    with pytest.raises(SynthError, match="expected a number"):
        dataclasses.replace(BODY, shin=True)
    with pytest.raises(SynthError):
        standard_body(100.0)
    assert isinstance(SynthError("x"), HybridPoseError) and isinstance(SynthError("x"), ValueError)
    assert dataclasses.replace(BODY, shin=430).shin == 430.0


def test_left_index() -> None:
    f = posed(shoulder_abduction=(0.0, 90.0))
    assert joint(f, "handL")[0] < -BODY.arm_length  # index 1 is the left arm
    assert LEFT == 1 and RIGHT == 0
    assert isinstance(BodyShape.__dataclass_fields__, dict)
