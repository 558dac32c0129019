"""Tests of hybridpose.metrics with hand-built cases and a plain-loop reference."""

from __future__ import annotations

import math
import warnings

import numpy as np
import numpy.typing as npt
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hybridpose.errors import HybridPoseError
from hybridpose.metrics import (
    DHP19_IMAGE_SIZE,
    MaskRule,
    MetricError,
    joint_hits,
    joint_mask_2d,
    mpjpe_2d,
    mpjpe_3d,
    pck,
    per_joint_error_2d,
    per_joint_error_3d,
    reduce_joints,
)

Array = npt.NDArray[np.float64]
NAN = math.nan


@pytest.fixture(autouse=True)
def _no_warnings() -> object:
    # All-masked inputs must give NaN silently: any warning is a defect.
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        yield


# --------------------------------------------------------------------------- plain-loop reference
def inside_image_loop(u: float, v: float, image_size: tuple[int, int]) -> bool:
    """The pixel convention, literally: the joint lies in pixel (round-half-up(u), ...),
    pixel x covers [x - 0.5, x + 0.5), and that pixel must be one of the image's."""
    w, h = image_size
    if not (math.isfinite(u) and math.isfinite(v)):
        return False
    return 0 <= math.floor(u + 0.5) <= w - 1 and 0 <= math.floor(v + 0.5) <= h - 1


def dhp19_notebook_mask(u: Array, v: Array, image_size: tuple[int, int] = (344, 260)) -> Array:
    """The DHP19 reference notebook's mask, transcribed statement by statement."""
    W, H = image_size  # the notebook's names
    mask = np.ones(u.shape)
    mask[np.isnan(u) | np.isnan(v)] = 0
    mask[u > W] = 0
    mask[u <= 0] = 0
    mask[v > H] = 0
    mask[v <= 0] = 0
    return mask


def loop_pose_mean(
    pred: Array,
    target: Array,
    image_size: tuple[int, int] | None,
    rule: str = "image",
    integer_targets: bool = False,
) -> float:
    """Mean over poses of the per-pose mean error, written as the obvious loops; the DHP19
    rule is the notebook's (mask, then truncate the kept targets like astype(int32))."""
    pose_means = []
    for n in range(target.shape[0]):
        if rule == "dhp19":
            keep = dhp19_notebook_mask(target[n, :, 0], target[n, :, 1], image_size or (344, 260))
        errors = []
        for j in range(target.shape[1]):
            t = [float(c) for c in target[n, j]]
            if rule == "dhp19":
                if keep[j] == 0:
                    continue
                if integer_targets:
                    t = [float(int(c)) for c in t]  # int() truncates toward zero like int32
            else:
                if not all(math.isfinite(c) for c in t):
                    continue
                if image_size is not None and not inside_image_loop(t[0], t[1], image_size):
                    continue
            errors.append(math.sqrt(sum((a - b) ** 2 for a, b in zip(pred[n, j], t, strict=True))))
        if errors:
            pose_means.append(sum(errors) / len(errors))
    return sum(pose_means) / len(pose_means) if pose_means else NAN


def loop_pck(pred: Array, target: Array, threshold: float) -> float:
    """Joint-weighted: hits over valid joints, pooled over all poses."""
    hits = [
        float(np.linalg.norm(pred[n, j] - target[n, j]) <= threshold)
        for n in range(target.shape[0])
        for j in range(target.shape[1])
        if np.all(np.isfinite(target[n, j]))
    ]
    return sum(hits) / len(hits) if hits else NAN


def random_case(seed: int, shape: tuple[int, ...], dim: int) -> tuple[Array, Array]:
    """Targets spread over and beyond a 344x260 image with some NaN joints; noisy predictions."""
    rng = np.random.default_rng(seed)
    target = rng.uniform(-40, 380, (*shape, dim))
    target[rng.random(shape) < 0.15] = np.nan
    pred = np.nan_to_num(target, nan=0.0) + rng.normal(0, 6, (*shape, dim))
    return pred, target


# --------------------------------------------------------------------------- joint_mask_2d
def test_mask_image_rule_is_the_pixel_squares() -> None:
    # Pixel x covers [x - 0.5, x + 0.5): the image is [-0.5, W - 0.5) x [-0.5, H - 0.5).
    w, h = 344, 260
    uv = np.array(
        [
            [-0.5, 10.0],  # left edge of the first pixel: in
            [-0.51, 10.0],  # out
            [w - 0.5, 10.0],  # right edge of the last pixel (half-open): out
            [w - 0.51, 10.0],  # in
            [10.0, -0.5],  # in
            [10.0, -0.51],  # out
            [10.0, h - 0.5],  # out
            [10.0, h - 0.51],  # in
            [0.0, 0.0],  # corner pixel centre: in
            [w - 1, h - 1],  # opposite corner pixel centre: in
            [-0.5, h - 0.51],  # both corners of the rectangle at once: in
            [NAN, 10.0],
            [10.0, NAN],
            [math.inf, 10.0],
            [10.0, -math.inf],
            [171.5, 129.5],
        ]
    )
    expected = [True, False, False, True, True, False, False, True, True, True, True]
    expected += [False, False, False, False, True]
    np.testing.assert_array_equal(joint_mask_2d(uv, (w, h)), expected)
    np.testing.assert_array_equal(joint_mask_2d(uv, (w, h), rule="image"), expected)
    assert [inside_image_loop(u, v, (w, h)) for u, v in uv] == expected
    assert DHP19_IMAGE_SIZE == (344, 260)
    # Column 344 of the 346-wide sensor is cropped away in DHP19's evaluation image.
    assert not joint_mask_2d([344.0, 100.0], DHP19_IMAGE_SIZE)
    assert joint_mask_2d([344.0, 100.0], (346, 260))


def test_mask_dhp19_rule_hand_cases() -> None:
    # The notebook: mask u, v NaN, u > 344, u <= 0, v > 260, v <= 0; everything else counts.
    uv = np.array(
        [
            [0.0, 100.0],  # u = 0: masked (u <= 0)
            [0.3, 100.0],  # kept
            [344.0, 100.0],  # u = W: kept (only u > W is masked)
            [344.2, 100.0],  # masked
            [100.0, 260.0],  # v = H: kept
            [100.0, 260.4],  # masked
            [100.0, 0.0],  # v = 0: masked
            [100.0, 1e-6],  # kept
            [-0.3, 100.0],  # masked (the image rule keeps it)
            [343.7, 259.8],  # kept (the image rule masks it)
            [NAN, 100.0],  # masked
            [100.0, NAN],  # masked
            [math.inf, 100.0],  # masked (u > W)
            [100.0, -math.inf],  # masked (v <= 0)
        ]
    )
    expected = [False, True, True, False, True, False, False, True, False, True]
    expected += [False, False, False, False]
    got = joint_mask_2d(uv, rule="dhp19")  # (344, 260) by default
    np.testing.assert_array_equal(got, expected)
    np.testing.assert_array_equal(joint_mask_2d(uv, DHP19_IMAGE_SIZE, rule="dhp19"), expected)
    np.testing.assert_array_equal(dhp19_notebook_mask(uv[:, 0], uv[:, 1]), expected)
    # The two rules really differ on those border joints.
    image = joint_mask_2d(uv, DHP19_IMAGE_SIZE)
    assert image[8] and not got[8]
    assert got[9] and not image[9]
    # Another image size is honoured.
    np.testing.assert_array_equal(
        joint_mask_2d([[10.0, 5.0], [10.5, 5.0], [3.0, 5.5]], (10, 5), rule="dhp19"),
        [True, False, False],
    )


def test_mask_dhp19_rule_matches_the_notebook_on_random_joints() -> None:
    rng = np.random.default_rng(7)
    uv = rng.uniform(-3, 350, (500, 2))
    # Many joints exactly on the boundaries and NaN in either coordinate.
    uv[:40, 0] = rng.choice([0.0, 344.0, 344.0 + 1e-9, -1e-9], 40)
    uv[40:80, 1] = rng.choice([0.0, 260.0, 260.0 + 1e-9, 1e-9], 40)
    uv[80:100, rng.integers(0, 2)] = NAN
    expected = dhp19_notebook_mask(uv[:, 0], uv[:, 1]) == 1
    np.testing.assert_array_equal(joint_mask_2d(uv, rule="dhp19"), expected)
    expected_small = dhp19_notebook_mask(uv[:, 0], uv[:, 1], (200, 100)) == 1
    np.testing.assert_array_equal(joint_mask_2d(uv, (200, 100), rule="dhp19"), expected_small)


def test_mask_shape_and_bad_arguments() -> None:
    assert joint_mask_2d(np.zeros((2, 3, 13, 2)), (10, 10)).shape == (2, 3, 13)
    with pytest.raises(MetricError, match=r"joints_uv: expected shape \(\.\.\., 2\)"):
        joint_mask_2d(np.zeros((13, 3)), (10, 10))
    for bad in [(0, 10), (10.5, 10), (10,), "ab", None]:
        with pytest.raises(MetricError, match="image_size") as info:
            joint_mask_2d(np.zeros((13, 2)), bad)  # type: ignore[arg-type]
        assert isinstance(info.value, HybridPoseError)
        assert isinstance(info.value, ValueError)
    with pytest.raises(MetricError, match="image_size: required with rule='image'"):
        joint_mask_2d(np.zeros((13, 2)))
    with pytest.raises(MetricError, match="rule: expected 'image' or 'dhp19'"):
        joint_mask_2d(np.zeros((13, 2)), (10, 10), rule="DHP19")  # type: ignore[arg-type]
    assert joint_mask_2d(np.ones((4, 13, 2)), rule="dhp19").shape == (4, 13)


# --------------------------------------------------------------------------- 2D errors
def test_per_joint_error_2d_three_four_five() -> None:
    pred = np.array([[3.0, 4.0], [10.0, 10.0], [0.0, 0.0], [5.0, 5.0]])
    target = np.array([[0.0, 0.0], [13.0, 14.0], [NAN, 1.0], [5.0, 5.0]])
    np.testing.assert_allclose(per_joint_error_2d(pred, target), [5.0, 5.0, NAN, 0.0])


def test_mpjpe_2d_averages_valid_joints_per_pose_then_poses() -> None:
    target = np.array(
        [
            [[0.0, 0.0], [0.0, 0.0], [NAN, NAN]],  # errors 5, 10, masked -> pose mean 7.5
            [[1.0, 1.0], [2.0, 2.0], [3.0, 3.0]],  # errors 1, 1, 1 -> pose mean 1
        ]
    )
    pred = np.array(
        [
            [[3.0, 4.0], [6.0, 8.0], [100.0, 100.0]],
            [[1.0, 2.0], [2.0, 1.0], [4.0, 3.0]],
        ]
    )
    assert mpjpe_2d(pred, target) == pytest.approx((7.5 + 1.0) / 2)  # not the pooled 18 / 5
    assert isinstance(mpjpe_2d(pred, target), float)
    np.testing.assert_allclose(reduce_joints(per_joint_error_2d(pred, target), 0), [7.5, 1.0])


def test_mpjpe_2d_image_masking() -> None:
    # The third joint's target is outside a 344x260 image: with image_size it no longer counts.
    target = np.array([[10.0, 10.0], [20.0, 20.0], [350.0, 20.0]])
    pred = target + np.array([[3.0, 4.0], [0.0, 2.0], [0.0, 30.0]])
    assert mpjpe_2d(pred, target) == pytest.approx((5 + 2 + 30) / 3)
    assert mpjpe_2d(pred, target, image_size=DHP19_IMAGE_SIZE) == pytest.approx((5 + 2) / 2)
    err = per_joint_error_2d(pred, target, image_size=DHP19_IMAGE_SIZE)
    np.testing.assert_allclose(err, [5.0, 2.0, NAN])


def test_mpjpe_2d_dhp19_rule_hand_cases() -> None:
    # One pose, four joints on the border, all off by (3, 4) -> error 5 where counted, and a
    # fifth joint inside everywhere with error 1.
    target = np.array([[-0.3, 50.0], [0.0, 50.0], [344.0, 50.0], [100.0, 260.4], [20.0, 20.0]])
    pred = target + np.array([[3.0, 4.0]] * 4 + [[0.0, 1.0]])
    # DHP19 keeps u = -0.3? no (u <= 0); u = 0? no; u = 344? yes; v = 260.4? no.
    np.testing.assert_allclose(
        per_joint_error_2d(pred, target, rule="dhp19"), [NAN, NAN, 5.0, NAN, 1.0]
    )
    assert mpjpe_2d(pred, target, rule="dhp19") == pytest.approx((5.0 + 1.0) / 2)
    assert mpjpe_2d(pred, target, image_size=DHP19_IMAGE_SIZE, rule="dhp19") == pytest.approx(3.0)
    # The image rule keeps u = -0.3 and u = 0 but not u = 344 or v = 260.4.
    np.testing.assert_allclose(
        per_joint_error_2d(pred, target, image_size=DHP19_IMAGE_SIZE), [5.0, 5.0, NAN, NAN, 1.0]
    )
    assert mpjpe_2d(pred, target, image_size=DHP19_IMAGE_SIZE) == pytest.approx(11.0 / 3)
    # Without image_size the image rule tests nothing; the DHP19 rule always does.
    assert mpjpe_2d(pred, target) == pytest.approx(21.0 / 5)
    # An explicit mask combines with the DHP19 rule.
    mask = np.array([True, True, True, True, False])
    assert mpjpe_2d(pred, target, mask=mask, rule="dhp19") == pytest.approx(5.0)


def test_integer_targets_truncate_like_the_reference() -> None:
    target = np.array([[[10.9, 20.7], [0.3, 259.99], [343.99, 5.5], [NAN, 3.0], [0.0, 9.0]]])
    pred = np.array([[[10.0, 20.0], [0.0, 259.0], [343.0, 8.0], [1.0, 1.0], [0.0, 9.0]]])
    # Truncated targets (10, 20), (0, 259), (343, 5); joint 3 is NaN, joint 4 has u = 0 (masked).
    np.testing.assert_allclose(
        per_joint_error_2d(pred, target, rule="dhp19", integer_targets=True),
        [[0.0, 0.0, 3.0, NAN, NAN]],
    )
    assert mpjpe_2d(pred, target, rule="dhp19", integer_targets=True) == pytest.approx(1.0)
    # Off by default: sub-pixel targets.
    sub = per_joint_error_2d(pred, target, rule="dhp19")
    np.testing.assert_allclose(
        sub, [[math.hypot(0.9, 0.7), math.hypot(0.3, 0.99), math.hypot(0.99, 2.5), NAN, NAN]]
    )
    # Masking happens before truncation: u = 0.3 counts though it truncates to 0, and
    # u = 344 counts though it truncates to index 344 (just outside the 344 columns).
    edge = np.array([[0.3, 1.5], [344.0, 1.5]])
    np.testing.assert_allclose(
        per_joint_error_2d(
            np.array([[0.0, 1.0], [343.0, 1.0]]), edge, rule="dhp19", integer_targets=True
        ),
        [0.0, 1.0],
    )
    # Only defined for the DHP19 rule, and the inputs are not touched.
    with pytest.raises(MetricError, match="integer_targets: only defined with rule='dhp19'"):
        mpjpe_2d(pred, target, integer_targets=True)
    assert target[0, 0, 0] == 10.9


def test_rule_option_errors() -> None:
    pred = np.zeros((5, 2))
    with pytest.raises(MetricError, match="rule: expected 'image' or 'dhp19'"):
        mpjpe_2d(pred, pred, rule="geometric")  # type: ignore[arg-type]
    with pytest.raises(MetricError, match="rule"):
        pck(pred, pred, 1.0, rule="pixel")  # type: ignore[arg-type]
    with pytest.raises(MetricError, match="image_size"):
        mpjpe_2d(pred, pred, image_size=(0, 10), rule="dhp19")


def test_explicit_mask_is_combined_with_target_masking() -> None:
    target = np.array([[0.0, 0.0], [0.0, 0.0], [NAN, 0.0]])
    pred = np.array([[3.0, 4.0], [6.0, 8.0], [0.0, 0.0]])
    mask = np.array([False, True, True])
    np.testing.assert_allclose(per_joint_error_2d(pred, target, mask=mask), [NAN, 10.0, NAN])
    assert mpjpe_2d(pred, target, mask=mask) == pytest.approx(10.0)
    with pytest.raises(MetricError, match="mask: expected booleans"):
        mpjpe_2d(pred, target, mask=np.array([0, 1, 1]))
    with pytest.raises(MetricError, match="does not broadcast"):
        mpjpe_2d(pred, target, mask=np.array([True, False]))
    with pytest.raises(MetricError, match="enlarge"):
        mpjpe_2d(pred, target, mask=np.ones((4, 3), bool))


def test_all_masked_gives_nan_silently() -> None:
    target = np.full((2, 3, 2), NAN)
    pred = np.zeros((2, 3, 2))
    assert math.isnan(mpjpe_2d(pred, target))
    assert math.isnan(mpjpe_3d(np.zeros((2, 3, 3)), np.full((2, 3, 3), NAN)))
    assert math.isnan(pck(pred, target, 5.0))
    off_image = np.full((2, 3, 2), 1000.0)
    assert math.isnan(mpjpe_2d(pred, off_image, image_size=(344, 260)))
    assert math.isnan(mpjpe_2d(pred, np.ones((2, 3, 2)), mask=np.zeros((2, 3), bool)))
    assert math.isnan(mpjpe_2d(np.zeros((0, 13, 2)), np.zeros((0, 13, 2))))


def test_nan_prediction_on_a_valid_joint_is_an_error() -> None:
    target = np.zeros((2, 3, 2))
    pred = np.zeros((2, 3, 2))
    pred[1, 2, 0] = NAN
    with pytest.raises(MetricError, match=r"pred: 1 non-finite.*\(1, 2\)"):
        mpjpe_2d(pred, target)
    # Where the target does not count, the prediction does not matter.
    target[1, 2] = NAN
    assert mpjpe_2d(pred, target) == 0.0
    pred[0, 0] = np.inf
    target[0, 0] = np.inf
    assert mpjpe_2d(pred, target) == 0.0


def test_shape_errors() -> None:
    with pytest.raises(MetricError, match=r"pred: expected shape \(\.\.\., J, 2\)"):
        mpjpe_2d(np.zeros((13, 3)), np.zeros((13, 2)))
    with pytest.raises(MetricError, match=r"target: expected shape \(\.\.\., J, 3\)"):
        mpjpe_3d(np.zeros((13, 3)), np.zeros(3))
    with pytest.raises(MetricError, match="do not broadcast"):
        mpjpe_2d(np.zeros((4, 13, 2)), np.zeros((5, 13, 2)))


# --------------------------------------------------------------------------- broadcasting, axes
def test_broadcast_over_time_and_batch_and_per_step_means() -> None:
    # pred (T=3, B=2, J=2, 2) against a target (B, J, 2) shared by all steps; step k is off by
    # (3k, 4k) on every joint, so its error is 5k, except where the target is missing.
    target = np.array([[[0.0, 0.0], [10.0, 10.0]], [[5.0, 5.0], [NAN, NAN]]])
    steps = np.arange(3.0)[:, None, None, None] * np.array([3.0, 4.0])
    pred = np.nan_to_num(target, nan=0.0)[None] + steps
    err = per_joint_error_2d(pred, target)
    assert err.shape == (3, 2, 2)
    assert np.all(np.isnan(err[:, 1, 1]))
    np.testing.assert_allclose(reduce_joints(err, keep_axes=(0,)), [0.0, 5.0, 10.0])
    np.testing.assert_allclose(reduce_joints(err, keep_axes=(0, 1)), [[0, 0], [5, 5], [10, 10]])
    np.testing.assert_allclose(reduce_joints(err, keep_axes=-1), [5.0, 5.0])  # per joint
    np.testing.assert_allclose(reduce_joints(err, keep_axes=(1, 2)), [[5.0, 5.0], [5.0, NAN]])
    assert mpjpe_2d(pred, target) == pytest.approx(5.0)
    assert reduce_joints(err).shape == ()


def test_reduce_joints_bad_axes() -> None:
    values = np.zeros((3, 2, 13))
    with pytest.raises(MetricError, match="twice"):
        reduce_joints(values, keep_axes=(0, -3))
    with pytest.raises(MetricError, match="not an axis"):
        reduce_joints(values, keep_axes=(3,))
    with pytest.raises(MetricError, match="not an axis"):
        reduce_joints(values, keep_axes=(0.5,))  # type: ignore[arg-type]
    with pytest.raises(MetricError, match="scalar"):
        reduce_joints(np.float64(1.0))


@pytest.mark.parametrize(
    ("image_size", "rule", "integer_targets"),
    [
        (None, "image", False),
        ((344, 260), "image", False),
        (None, "dhp19", False),
        (None, "dhp19", True),
        ((300, 200), "dhp19", True),
    ],
)
def test_mpjpe_2d_matches_plain_loops(
    image_size: tuple[int, int] | None, rule: MaskRule, integer_targets: bool
) -> None:
    pred, target = random_case(0, (4, 25, 13), 2)
    opts = {"rule": rule, "integer_targets": integer_targets}
    expected_steps = [
        loop_pose_mean(pred[s], target[s], image_size, rule, integer_targets) for s in range(4)
    ]
    err = per_joint_error_2d(pred, target, image_size=image_size, **opts)  # type: ignore[arg-type]
    np.testing.assert_allclose(reduce_joints(err, keep_axes=0), expected_steps, rtol=1e-12)
    expected = loop_pose_mean(
        pred.reshape(100, 13, 2), target.reshape(100, 13, 2), image_size, rule, integer_targets
    )
    got = mpjpe_2d(pred, target, image_size=image_size, **opts)  # type: ignore[arg-type]
    assert got == pytest.approx(expected, rel=1e-12)


def test_dhp19_reference_with_argmax_predictions() -> None:
    # Integer (argmax) predictions near the targets, the reference's use case: integer_targets
    # makes an exact hit on the truncated label cost nothing.
    rng = np.random.default_rng(3)
    target = rng.uniform(0.01, 343.99, (30, 13, 2)) * np.array([1.0, 260 / 344])
    pred = np.trunc(target)
    assert mpjpe_2d(pred, target, rule="dhp19", integer_targets=True) == 0.0
    assert mpjpe_2d(pred, target, rule="dhp19") > 0.3  # about 0.77 px on average
    pred[:, :, 0] += 1.0
    assert mpjpe_2d(pred, target, rule="dhp19", integer_targets=True) == pytest.approx(1.0)


def test_mpjpe_3d_and_pck_match_plain_loops() -> None:
    pred, target = random_case(1, (60, 13), 3)
    assert mpjpe_3d(pred, target) == pytest.approx(loop_pose_mean(pred, target, None), rel=1e-12)
    for thr in (3.0, 8.0, 15.0):
        assert pck(pred, target, thr) == pytest.approx(loop_pck(pred, target, thr), rel=1e-12)


def test_inputs_are_not_modified() -> None:
    pred, target = random_case(2, (5, 13), 2)
    mask = np.ones((5, 13), bool)
    copies = [a.copy() for a in (pred, target, mask)]
    mpjpe_2d(pred, target, mask=mask, image_size=(344, 260))
    pck(pred, target, 5.0, mask=mask)
    for a, b in zip((pred, target, mask), copies, strict=True):
        np.testing.assert_array_equal(a, b)


# --------------------------------------------------------------------------- 3D
def test_mpjpe_3d_known_answers_without_alignment() -> None:
    target = np.array([[0.0, 0.0, 0.0], [1.0, 1.0, 1.0], [NAN, 0.0, 0.0]])
    pred = np.array([[1.0, 2.0, 2.0], [3.0, 4.0, 7.0], [0.0, 0.0, 0.0]])  # errors 3 and 7
    np.testing.assert_allclose(per_joint_error_3d(pred, target), [3.0, 7.0, NAN])
    assert mpjpe_3d(pred, target) == pytest.approx(5.0)
    # A rigid offset is an error like any other (no root or Procrustes alignment).
    offset_target = np.nan_to_num(target)
    assert mpjpe_3d(offset_target + np.array([0.0, 0.0, 40.0]), offset_target) == pytest.approx(
        40.0
    )


# --------------------------------------------------------------------------- PCK
def test_pck_known_answers() -> None:
    target = np.zeros((1, 5, 2))
    target[0, 4] = NAN
    pred = np.array([[[1.0, 0.0], [0.0, 2.0], [3.0, 0.0], [0.0, 0.0], [9.0, 9.0]]])
    assert pck(pred, target, 2.0) == pytest.approx(3 / 4)  # 2.0 itself counts as correct
    assert pck(pred, target, 1.999) == pytest.approx(2 / 4)
    assert pck(pred, target, 10.0) == pytest.approx(1.0)
    hits = joint_hits(per_joint_error_2d(pred, target), 2.0)
    np.testing.assert_array_equal(hits, [[1.0, 1.0, 0.0, 1.0, NAN]])
    pred3 = np.concatenate([pred, np.zeros((1, 5, 1))], axis=-1)
    target3 = np.concatenate([target, np.zeros((1, 5, 1))], axis=-1)
    assert pck(pred3, target3, 2.0) == pytest.approx(3 / 4)


def test_pck_is_joint_weighted() -> None:
    # Pose 0: 1 valid joint, a hit. Pose 1: 4 valid joints, 1 hit. Joint-weighted 2/5 = 0.4;
    # averaging per pose would give (1 + 1/4) / 2 = 0.625.
    target = np.zeros((2, 4, 2))
    target[0, 1:] = NAN
    pred = np.zeros((2, 4, 2))
    pred[0, 1:] = 50.0  # ignored: the targets are missing
    pred[1, 1:, 0] = [3.0, 4.0, 10.0]
    assert pck(pred, target, 2.0) == pytest.approx(0.4)
    hits = joint_hits(per_joint_error_2d(pred, target), 2.0)
    assert float(reduce_joints(hits, weighting="joint")) == pytest.approx(0.4)
    assert float(reduce_joints(hits)) == pytest.approx(0.625)  # the per-pose mean differs
    assert loop_pck(pred, target, 2.0) == pytest.approx(0.4)
    # The same in 3D, and with the poses spread over a (T, B) grid.
    pred3 = np.concatenate([pred, np.zeros((2, 4, 1))], axis=-1)
    target3 = np.concatenate([target, np.zeros((2, 4, 1))], axis=-1)
    assert pck(pred3, target3, 2.0) == pytest.approx(0.4)
    assert pck(pred[None], target[None], 2.0) == pytest.approx(0.4)
    # Per step with joint weighting: keep axis 0 of (T=2, N=2, J=4) with step 1 all hits.
    grid = np.stack([hits, np.where(np.isnan(hits), NAN, 1.0)])
    np.testing.assert_allclose(reduce_joints(grid, keep_axes=0, weighting="joint"), [0.4, 1.0])
    np.testing.assert_allclose(reduce_joints(grid, keep_axes=0), [0.625, 1.0])
    # Keeping the joint axis gives the same per-joint breakdown with either weighting.
    np.testing.assert_allclose(
        reduce_joints(hits, keep_axes=-1, weighting="joint"), reduce_joints(hits, keep_axes=-1)
    )
    with pytest.raises(MetricError, match="weighting"):
        reduce_joints(hits, weighting="poses")  # type: ignore[arg-type]


def test_pck_with_dhp19_rule() -> None:
    target = np.array([[[0.0, 10.0], [10.9, 20.7], [344.0, 20.0]]])
    pred = np.array([[[0.0, 10.0], [10.0, 20.0], [341.0, 20.0]]])
    # DHP19: joint 0 masked (u = 0); joint 1 error 1.14 px (0 once truncated); joint 2 error 3.
    assert pck(pred, target, 1.0, rule="dhp19") == pytest.approx(0.0)
    assert pck(pred, target, 1.0, rule="dhp19", integer_targets=True) == pytest.approx(0.5)
    assert pck(pred, target, 3.0, rule="dhp19") == pytest.approx(1.0)
    # The image rule keeps joint 0 (error 0) and masks joint 2.
    assert pck(pred, target, 1.0, image_size=DHP19_IMAGE_SIZE) == pytest.approx(0.5)


def test_pck_bad_arguments() -> None:
    pred = np.zeros((5, 2))
    for thr in (0.0, -1.0, NAN, math.inf):
        with pytest.raises(MetricError, match="threshold"):
            pck(pred, pred, thr)
    with pytest.raises(MetricError, match="image_size"):
        pck(np.zeros((5, 3)), np.zeros((5, 3)), 1.0, image_size=(10, 10))
    with pytest.raises(MetricError, match="only meaningful for 2D"):
        pck(np.zeros((5, 3)), np.zeros((5, 3)), 1.0, rule="dhp19")
    with pytest.raises(MetricError, match="only meaningful for 2D"):
        pck(np.zeros((5, 3)), np.zeros((5, 3)), 1.0, integer_targets=True)
    with pytest.raises(MetricError, match=r"\(\.\.\., J, 2\) or \(\.\.\., J, 3\)"):
        pck(np.zeros((5, 4)), np.zeros((5, 4)), 1.0)


# --------------------------------------------------------------------------- properties
@settings(max_examples=30, deadline=None)
@given(
    seed=st.integers(0, 2**16),
    shift=st.tuples(*[st.floats(-1e3, 1e3)] * 3),
    scale=st.floats(0.01, 100.0),
)
def test_property_mpjpe_3d_equivariance(
    seed: int, shift: tuple[float, float, float], scale: float
) -> None:
    # Shifting both poses leaves the error unchanged; scaling both scales it; permuting the
    # joints consistently does not change it.
    pred, target = random_case(seed, (4, 13), 3)
    base = mpjpe_3d(pred, target)
    assert mpjpe_3d(pred + shift, target + shift) == pytest.approx(base, rel=1e-9, abs=1e-9)
    assert mpjpe_3d(pred * scale, target * scale) == pytest.approx(base * scale, rel=1e-9)
    perm = np.random.default_rng(seed).permutation(13)
    assert mpjpe_3d(pred[:, perm], target[:, perm]) == pytest.approx(base, rel=1e-12)
    assert 0.0 <= pck(pred, target, 10.0) <= 1.0
