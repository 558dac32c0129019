"""The capsule body: its layout, joints inside it, and capsules that follow the skeleton."""

from __future__ import annotations

import dataclasses

import numpy as np
import numpy.typing as npt
import pytest

from hybridpose.joints import JOINT_NAMES, NUM_JOINTS
from hybridpose.synth.body import (
    CAPSULE_NAMES,
    BodyPart,
    Capsules,
    body_capsules,
    capsule_frames,
)
from hybridpose.synth.motions import MOVEMENTS, PerformanceSettings, perform
from hybridpose.synth.skeleton import (
    GIRTH_RANGES,
    SkeletonFrames,
    SynthError,
    forward_kinematics,
    rest_pose,
    sample_body,
    sample_girths,
    standard_body,
)

Array = npt.NDArray[np.float64]
J = {name: i for i, name in enumerate(JOINT_NAMES)}
BODY = standard_body(1750.0)
C = {name: i for i, name in enumerate(CAPSULE_NAMES)}


def segment_distance(p: Array, a: Array, b: Array) -> Array:
    """Distance of points p (..., 3) from the segments a -> b (..., 3)."""
    ab = b - a
    length2 = np.sum(ab * ab, axis=-1)
    t = np.where(length2 > 0, np.sum((p - a) * ab, axis=-1) / np.maximum(length2, 1e-300), 0.0)
    closest = a + np.clip(t, 0.0, 1.0)[..., None] * ab
    return np.asarray(np.linalg.norm(p - closest, axis=-1))


def rest() -> SkeletonFrames:
    return forward_kinematics(BODY, rest_pose(BODY, 1))


def test_layout_parts_sides_and_radii() -> None:
    caps = body_capsules(BODY, rest())
    assert caps.count == len(CAPSULE_NAMES) == 19
    assert caps.a.shape == caps.b.shape == (1, 19, 3)
    assert caps.part.dtype == np.int64 and caps.side.dtype == np.int64
    parts = [BodyPart(p) for p in caps.part]
    assert parts.count(BodyPart.HEAD) == 1 and parts.count(BodyPart.NECK) == 1
    assert parts.count(BodyPart.TORSO) == 4 and parts.count(BodyPart.PELVIS) == 1
    for limb in (BodyPart.UPPER_ARM, BodyPart.FOREARM, BodyPart.HAND):
        assert parts.count(limb) == 2
    for limb in (BodyPart.THIGH, BodyPart.SHIN, BodyPart.FOOT):
        assert parts.count(limb) == 2
    assert [int(p) for p in BodyPart] == list(range(10))
    # paired capsules: one right, one left, same radius
    for name in ("flank", "upper_arm", "forearm", "hand", "thigh", "shin", "foot"):
        right, left = C[name + "R"], C[name + "L"]
        assert (caps.side[right], caps.side[left]) == (1, -1)
        assert caps.radius[right] == caps.radius[left]
    for name in ("head", "neck", "spine", "shoulders", "hips"):
        assert caps.side[C[name]] == 0
    assert caps.radius[C["head"]] == BODY.head_radius
    assert caps.radius[C["handR"]] == BODY.hand_radius
    assert caps.radius[C["thighL"]] == BODY.thigh_radius
    assert caps.radius[C["footR"]] == BODY.foot_radius
    # spheres: head and hands
    spheres = np.all(caps.a[0] == caps.b[0], axis=1)
    assert set(np.flatnonzero(spheres)) == {C["head"], C["handR"], C["handL"]}


def test_capsules_follow_the_skeleton() -> None:
    rng = np.random.default_rng(2)
    body = sample_body(rng)
    p = perform(22, body, rng, PerformanceSettings(repetitions=1))
    frames = p.frames(np.linspace(0.0, p.duration_s, 300))
    caps = body_capsules(body, frames)
    joints = frames.joints
    pairs = {
        "upper_armR": ("shoulderR", "elbowR"),
        "forearmL": ("elbowL", "handL"),
        "thighR": ("hipR", "kneeR"),
        "shinL": ("kneeL", "footL"),
        "flankR": ("hipR", "shoulderR"),
        "shoulders": ("shoulderR", "shoulderL"),
        "hips": ("hipR", "hipL"),
        "neck": (None, "head"),
        "handR": ("handR", "handR"),
        "head": ("head", "head"),
    }
    for name, (a, b) in pairs.items():
        if a is not None:
            assert np.array_equal(caps.a[:, C[name]], joints[:, J[a]])
        assert np.array_equal(caps.b[:, C[name]], joints[:, J[b]])
    assert np.array_equal(caps.a[:, C["neck"]], frames.neck)
    assert np.array_equal(caps.a[:, C["footR"]], joints[:, J["footR"]])
    assert np.array_equal(caps.b[:, C["footL"]], frames.toes[:, 1])
    # the spine runs from the pelvis up the trunk, stopping short of the neck point
    spine_a, spine_b = caps.a[:, C["spine"]], caps.b[:, C["spine"]]
    assert np.array_equal(spine_a, frames.pelvis)
    axis = (frames.neck - frames.pelvis) / body.torso_length
    assert np.allclose(np.cross(spine_b - spine_a, axis), 0.0, atol=1e-9)
    assert np.all(np.linalg.norm(spine_b - spine_a, axis=1) < body.torso_length)
    # rigid: every capsule keeps its length
    lengths = np.linalg.norm(caps.b - caps.a, axis=2)
    assert np.allclose(lengths, lengths[0], atol=1e-6)


def test_torso_is_wider_than_deep_and_the_body_is_as_tall_as_the_subject() -> None:
    caps = body_capsules(BODY, rest())
    torso = np.isin(caps.part, [BodyPart.TORSO, BodyPart.PELVIS])
    ends = np.concatenate([caps.a[0, torso], caps.b[0, torso]])
    radii = np.concatenate([caps.radius[torso], caps.radius[torso]])
    width = (ends[:, 0] + radii).max() - (ends[:, 0] - radii).min()
    depth = (ends[:, 1] + radii).max() - (ends[:, 1] - radii).min()
    assert width > 1.6 * depth
    assert 400.0 < width < 600.0 and 180.0 < depth < 300.0
    everything_a = caps.a[0] - caps.radius[:, None]
    everything_b = caps.b[0] + caps.radius[:, None]
    top = max(everything_a[:, 2].max(), everything_b[:, 2].max())
    bottom = min(everything_a[:, 2].min(), (caps.b[0] - caps.radius[:, None])[:, 2].min())
    assert top == pytest.approx(BODY.height)
    assert bottom == pytest.approx(0.0, abs=1e-9)  # standing on the floor, not in it


@pytest.mark.parametrize("number", [m.number for m in MOVEMENTS])
def test_every_joint_lies_on_a_capsule_axis_at_every_time(number: int) -> None:
    rng = np.random.default_rng(50 + number)
    body = sample_body(rng)
    p = perform(number, body, rng, PerformanceSettings(repetitions=2))
    frames = p.frames(np.arange(0.0, p.duration_s, 0.02))
    caps = body_capsules(body, frames)
    points = frames.joints[:, :, None, :]  # (K, 13, 1, 3) against (K, 1, C, 3)
    dist = segment_distance(points, caps.a[:, None], caps.b[:, None])
    assert dist.shape == (frames.count, NUM_JOINTS, caps.count)
    assert np.all(dist.min(axis=2) < 1e-6)  # on an axis ...
    assert np.all(np.any(dist <= caps.radius, axis=2))  # ... hence inside the body


def test_inputs_are_checked_and_untouched() -> None:
    frames = rest()
    before = frames.joints.copy()
    body_capsules(BODY, frames)
    assert np.array_equal(frames.joints, before)
    with pytest.raises(SynthError, match="BodyShape"):
        body_capsules("body", frames)  # type: ignore[arg-type]
    with pytest.raises(SynthError, match="SkeletonFrames"):
        body_capsules(BODY, frames.joints)  # type: ignore[arg-type]
    caps = body_capsules(BODY, frames)
    with pytest.raises(SynthError, match="radius"):
        dataclasses.replace(caps, radius=caps.radius[:-1])
    with pytest.raises(SynthError, match="positive"):
        dataclasses.replace(caps, radius=-caps.radius)
    empty = body_capsules(BODY, forward_kinematics(BODY, rest_pose(BODY, 0)))
    assert empty.a.shape == (0, 19, 3) and empty.count == 19
    assert isinstance(caps, Capsules)


# ------------------------------------------------------------------------------ texture frames
def _moved(frames: SkeletonFrames, q: Array, t: Array) -> SkeletonFrames:
    return SkeletonFrames(
        joints=frames.joints @ q.T + t,
        neck=frames.neck @ q.T + t,
        pelvis=frames.pelvis @ q.T + t,
        toes=frames.toes @ q.T + t,
        forward=frames.forward @ q.T,
    )


def test_frames_are_orthonormal_along_the_axes_and_face_forwards_at_rest() -> None:
    rng = np.random.default_rng(4)
    body = sample_body(rng)
    p = perform(22, body, rng, PerformanceSettings(repetitions=1))
    frames = p.frames(np.linspace(0.0, p.duration_s, 200))
    caps = body_capsules(body, frames)
    assert caps.frame is not None and caps.frame.shape == (200, 19, 3, 3)
    f = caps.frame
    # rows e1, e2, e3: orthonormal and right-handed
    np.testing.assert_allclose(
        f @ np.swapaxes(f, -1, -2), np.broadcast_to(np.eye(3), f.shape), atol=1e-12
    )
    assert np.allclose(np.linalg.det(f), 1.0)
    # e3 is each capsule's axis (the spheres take their parent's)
    axis = caps.b - caps.a
    length = np.linalg.norm(axis, axis=-1, keepdims=True)
    has_axis = length[..., 0] > 0
    np.testing.assert_allclose(
        f[..., 2, :][has_axis], (axis / np.maximum(length, 1e-300))[has_axis], atol=1e-9
    )
    np.testing.assert_allclose(f[:, C["head"], 2], f[:, C["neck"], 2], atol=1e-12)
    np.testing.assert_allclose(f[:, C["handR"]], f[:, C["forearmR"]], atol=1e-12)
    # at rest every capsule's e1 is the body's front, the feet's (which point forwards) up
    rest_frames = capsule_frames(rest())
    for i, name in enumerate(CAPSULE_NAMES):
        expected = [0.0, 0.0, 1.0] if name.startswith("foot") else [0.0, 1.0, 0.0]
        np.testing.assert_allclose(rest_frames[0, i, 0], expected, atol=1e-12)


def test_frames_move_rigidly_with_the_skeleton() -> None:
    rng = np.random.default_rng(5)
    body = sample_body(rng)
    p = perform(29, body, rng, PerformanceSettings(repetitions=1))
    frames = p.frames(np.linspace(0.0, p.duration_s, 50))
    q, _ = np.linalg.qr(rng.normal(size=(3, 3)))
    q *= np.sign(np.linalg.det(q))  # a rotation
    moved = capsule_frames(_moved(frames, q, np.array([300.0, -40.0, 2000.0])))
    np.testing.assert_allclose(moved, capsule_frames(frames) @ q.T, atol=1e-9)


@pytest.mark.parametrize("number", [m.number for m in MOVEMENTS])
def test_frames_turn_smoothly_in_every_movement(number: int) -> None:
    # carried frames never flip: over 2 ms no capsule's e1 turns by more than 0.15 rad
    rng = np.random.default_rng(80 + number)
    body = sample_body(rng)
    p = perform(number, body, rng, PerformanceSettings(repetitions=1))
    f = capsule_frames(p.frames(np.arange(0.0, p.duration_s, 0.002)))
    turn = np.linalg.norm(np.diff(f[:, :, 0], axis=0), axis=-1)
    assert turn.max() < 0.15, CAPSULE_NAMES[int(np.argmax(turn.max(axis=0)))]


def test_capsule_frames_are_checked() -> None:
    caps = body_capsules(BODY, rest())
    assert caps.frame is not None
    with pytest.raises(SynthError, match="frame"):
        dataclasses.replace(caps, frame=caps.frame[:, :-1])
    plain = dataclasses.replace(caps, frame=None)
    assert plain.frame is None


def test_girths_vary_per_segment_within_their_ranges() -> None:
    rng = np.random.default_rng(6)
    bodies = [sample_body(rng) for _ in range(200)]
    varied = [sample_girths(body, rng) for body in bodies]
    factors = {name: [] for name in GIRTH_RANGES}  # type: dict[str, list[float]]
    for body, new in zip(bodies, varied, strict=True):
        assert new.height == body.height and new.thigh == body.thigh  # lengths kept
        assert new.neck_length == pytest.approx(
            body.neck_length - (new.head_radius - body.head_radius)
        )
        for name in GIRTH_RANGES:
            factors[name].append(getattr(new, name) / getattr(body, name))
    for name, (sd, low, high) in GIRTH_RANGES.items():
        values = np.array(factors[name])
        assert low - 1e-12 <= values.min() and values.max() <= high + 1e-12
        assert values.std() == pytest.approx(sd, rel=0.35)
    # each segment on its own: thigh and upper-arm factors are not the same draw
    assert np.corrcoef(factors["thigh_radius"], factors["upper_arm_radius"])[0, 1] < 0.5
    again = sample_girths(bodies[0], np.random.default_rng(1))
    assert again == sample_girths(bodies[0], np.random.default_rng(1))
    # the girthed body still holds every joint on a capsule axis, inside the body
    frames = forward_kinematics(varied[0], rest_pose(varied[0], 1))
    caps = body_capsules(varied[0], frames)
    dist = segment_distance(frames.joints[:, :, None, :], caps.a[:, None], caps.b[:, None])
    assert np.all(dist.min(axis=2) < 1e-6)
