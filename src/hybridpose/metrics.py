"""Pose accuracy: per-joint errors, MPJPE in 2D (pixels) and 3D (mm), and PCK.

The API has two layers:

1. Per-joint values with NaN where a joint does not count:
   :func:`per_joint_error_2d`, :func:`per_joint_error_3d` (Euclidean errors) and
   :func:`joint_hits` (1.0 / 0.0 whether an error is within a threshold).
2. One reduction, :func:`reduce_joints`, that averages such values while keeping any axes you
   ask for, e.g. the error per step since the ANN initialised the SNN::

       err = per_joint_error_2d(pred, target, image_size=(344, 260))  # (T, B, J)
       reduce_joints(err, keep_axes=(0,))                              # (T,) px per step
       reduce_joints(err, keep_axes=(-1,))                             # (J,) px per joint

:func:`mpjpe_2d`, :func:`mpjpe_3d` and :func:`pck` are the headline numbers: the two layers
with nothing kept, returned as a float.

Averaging. MPJPE follows the DHP19 evaluation: a pose's error is the mean over its valid joints
(``np.nanmean`` over the joints in the reference notebook), and poses are then averaged with
equal weight (a pose with 3 valid joints counts as much as one with 13). PCK is joint-weighted
as usual: correct joints / valid joints, pooled over everything. Poses without any valid joint
are left out; if nothing at all is valid the result is NaN, without a warning.

Masking. A joint counts only where the target is finite, where the optional ``mask`` is True
and, in 2D, where the target passes the image rule (:func:`joint_mask_2d`):

- ``rule="image"`` (default): the target lies on the image in this project's pixel convention
  (pixel ``x`` covers ``[x - 0.5, x + 0.5)``), i.e. ``-0.5 <= u < W - 0.5`` and
  ``-0.5 <= v < H - 0.5``. Tested only when ``image_size`` is given.
- ``rule="dhp19"``: the DHP19 reference evaluation (``Eval_2D_triangulation_and_3D_tutorial``),
  ``0 < u <= W`` and ``0 < v <= H`` with ``(W, H) = (344, 260)`` unless ``image_size`` says
  otherwise; our converter stores labels in the reference's frame, so the rule applies as is.
  With ``integer_targets=True`` the targets are also truncated to integers before the error,
  like the reference's ``astype(int32)``.

**Which matches the published DHP19 numbers:** ``mpjpe_2d(pred, target, rule="dhp19",
integer_targets=True)`` with integer (argmax) predictions is the reference notebook's
computation, the protocol behind the published 2D MPJPE values (Calabrese et al. 2019; Aydin et
al. 2024 also decode by integer argmax). ``rule="dhp19"`` alone is the same protocol with
sub-pixel targets (truncation moves a target by 0.5 px per axis on average; sub-pixel decoding
is allowed and better); ``rule="image"`` is the geometric rule for everything else. The two
rules keep different joints along the border (:func:`joint_mask_2d`), so always say which rule
a number was computed with.

A non-finite prediction on a joint that counts is an error, never silently skipped: it would
otherwise improve the score.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

import numpy as np
import numpy.typing as npt

from hybridpose.errors import HybridPoseError

FloatArray = npt.NDArray[np.float64]
BoolArray = npt.NDArray[np.bool_]

MaskRule = Literal["image", "dhp19"]
"""Which 2D targets count as inside the image: see :func:`joint_mask_2d`."""

Weighting = Literal["pose", "joint"]
"""How :func:`reduce_joints` weights values: per pose (MPJPE) or per joint (PCK)."""

DHP19_IMAGE_SIZE = (344, 260)
"""``(width, height)`` of DHP19's evaluation image: the 346x260 sensor with the rightmost two
columns cropped."""


class MetricError(HybridPoseError, ValueError):
    """Predictions, targets or options of a metric are malformed or inconsistent."""


def joint_mask_2d(
    joints_uv: npt.ArrayLike,
    image_size: tuple[int, int] | None = None,
    rule: MaskRule = "image",
) -> BoolArray:
    """Which 2D joints are finite and inside the image, by one of two rules.

    ``rule="image"``: the joint lies on one of the image's pixel squares in this project's
    convention (pixel ``x`` covers ``[x - 0.5, x + 0.5)``): ``-0.5 <= u < width - 0.5`` and
    ``-0.5 <= v < height - 0.5``. ``image_size`` is required.

    ``rule="dhp19"``: the DHP19 reference evaluation's rule, ``0 < u <= width`` and
    ``0 < v <= height``; ``image_size`` defaults to :data:`DHP19_IMAGE_SIZE` ``(344, 260)``.
    It reproduces the published DHP19 numbers (see the module notes).

    The two keep intervals have the same length but the DHP19 one is shifted by +0.5 px: per
    axis it drops ``[-0.5, 0]`` (the outer half of the first pixel) and adds ``[W - 0.5, W]``
    (half a pixel beyond the last pixel square; truncated, ``u = W`` becomes index ``W``,
    which no argmax over ``W`` columns can reach).

    Args:
        joints_uv: pixel coordinates ``(u, v)``.
        image_size: ``(width, height)`` in pixels; None only with ``rule="dhp19"``.
        rule: ``"image"`` or ``"dhp19"``.

    Returns:
        True where the joint is finite and inside the image by ``rule``.

    Shape:
        (..., 2) -> (...)

    Raises:
        MetricError: if the last axis is not 2, the image size is not two positive integers
            (or missing for ``rule="image"``), or the rule is unknown.
    """
    uv = np.asarray(joints_uv, dtype=np.float64)
    if uv.ndim < 1 or uv.shape[-1] != 2:
        raise MetricError(f"joints_uv: expected shape (..., 2), got {uv.shape}")
    _check_rule(rule)
    if image_size is None:
        if rule == "image":
            raise MetricError("image_size: required with rule='image'")
        image_size = DHP19_IMAGE_SIZE
    width, height = _check_image_size(image_size)
    u, v = uv[..., 0], uv[..., 1]
    # Comparisons with NaN are False, so NaN joints drop out without a separate test; the
    # bounds are finite, so +-inf drop out too.
    inside: BoolArray
    if rule == "image":
        inside = (u >= -0.5) & (u < width - 0.5) & (v >= -0.5) & (v < height - 0.5)
    else:
        inside = (u > 0) & (u <= width) & (v > 0) & (v <= height)
    return inside


def per_joint_error_2d(
    pred: npt.ArrayLike,
    target: npt.ArrayLike,
    *,
    mask: npt.ArrayLike | None = None,
    image_size: tuple[int, int] | None = None,
    rule: MaskRule = "image",
    integer_targets: bool = False,
) -> FloatArray:
    """Euclidean pixel error of every joint, NaN where the joint does not count.

    Args:
        pred: predicted joints in pixels.
        target: ground-truth joints in pixels, NaN = missing; broadcasts with ``pred``.
        mask: optional booleans, False = leave the joint out; broadcasts with ``(..., J)``.
        image_size: ``(width, height)``. With ``rule="image"``: when given, targets outside
            the image are left out; when None, no image test. With ``rule="dhp19"``: defaults
            to :data:`DHP19_IMAGE_SIZE`.
        rule: the image rule of :func:`joint_mask_2d`, ``"image"`` or ``"dhp19"``.
        integer_targets: ``rule="dhp19"`` only: truncate the targets toward zero after masking,
            like the reference's ``astype(int32)``, to reproduce published numbers. Off by
            default: sub-pixel targets are more accurate.

    Returns:
        Errors in pixels.

    Shape:
        pred (..., J, 2), target (..., J, 2), mask (..., J) -> (..., J)

    Raises:
        MetricError: on shape mismatches, bad options or a non-finite prediction on a joint
            that counts.
    """
    p, t = _pair(pred, target, 2)
    _check_rule(rule)
    if integer_targets and rule != "dhp19":
        raise MetricError("integer_targets: only defined with rule='dhp19'")
    valid = np.all(np.isfinite(t), axis=-1)
    if image_size is not None or rule == "dhp19":
        valid &= joint_mask_2d(t, image_size, rule)
    if integer_targets:
        t = np.trunc(t)  # the mask above is the reference's: on the targets before truncation
    return _errors(p, t, valid, mask)


def per_joint_error_3d(
    pred: npt.ArrayLike, target: npt.ArrayLike, *, mask: npt.ArrayLike | None = None
) -> FloatArray:
    """Euclidean 3D error of every joint (no alignment), NaN where the joint does not count.

    Args:
        pred: predicted joints in mm.
        target: ground-truth joints in mm, NaN = missing; broadcasts with ``pred``.
        mask: optional booleans, False = leave the joint out; broadcasts with ``(..., J)``.

    Returns:
        Errors in mm.

    Shape:
        pred (..., J, 3), target (..., J, 3), mask (..., J) -> (..., J)

    Raises:
        MetricError: on shape mismatches or a non-finite prediction on a joint that counts.
    """
    p, t = _pair(pred, target, 3)
    valid = np.all(np.isfinite(t), axis=-1)
    return _errors(p, t, valid, mask)


def joint_hits(errors: npt.ArrayLike, threshold: float) -> FloatArray:
    """1.0 where an error is within ``threshold`` (inclusive), 0.0 where not, NaN stays NaN.

    Args:
        errors: per-joint errors from :func:`per_joint_error_2d` or :func:`per_joint_error_3d`.
        threshold: the PCK radius, in the errors' unit (pixels or mm), finite and > 0.

    Returns:
        Values whose joint-weighted :func:`reduce_joints` mean (``weighting="joint"``) is
        the PCK.

    Shape:
        (...) -> (...)

    Raises:
        MetricError: if the threshold is not a finite positive number.
    """
    thr = float(threshold)
    if not (np.isfinite(thr) and thr > 0):
        raise MetricError(f"threshold: must be a finite number > 0, got {threshold!r}")
    err = np.asarray(errors, dtype=np.float64)
    hits: FloatArray = np.where(np.isnan(err), np.nan, (err <= thr).astype(np.float64))
    return hits


def reduce_joints(
    values: npt.ArrayLike,
    keep_axes: int | Sequence[int] = (),
    *,
    weighting: Weighting = "pose",
) -> FloatArray:
    """Average per-joint values (NaN = not counted) over every axis not in ``keep_axes``.

    ``weighting="pose"`` (MPJPE, the DHP19 evaluation): the joint axis (the last) is averaged
    first, giving one value per pose; the poses are then averaged with equal weight, skipping
    poses without any counted joint. ``weighting="joint"`` (PCK): every counted joint has the
    same weight, i.e. sum over counted values / number of counted values. If the joint axis
    itself is kept, both give each joint's mean over all poses (a per-joint breakdown).
    A group with nothing to average is NaN (no warning).

    Args:
        values: per-joint values, e.g. errors or :func:`joint_hits`.
        keep_axes: axes of ``values`` to keep (negative counts from the end; -1 is the joint
            axis).
        weighting: ``"pose"`` or ``"joint"``.

    Returns:
        The means over the kept axes, in their original order; a 0-d array if none is kept.

    Shape:
        (..., J) -> the kept axes, e.g. (T, B, J) with ``keep_axes=(0,)`` -> (T,)

    Raises:
        MetricError: if ``values`` is 0-d, ``keep_axes`` names an axis twice or out of range,
            or ``weighting`` is unknown.
    """
    if weighting not in ("pose", "joint"):
        raise MetricError(f"weighting: expected 'pose' or 'joint', got {weighting!r}")
    vals = np.asarray(values, dtype=np.float64)
    if vals.ndim == 0:
        raise MetricError("values: expected per-joint values of shape (..., J), got a scalar")
    keep = _normalise_axes(keep_axes, vals.ndim)
    joint_axis = vals.ndim - 1
    if weighting == "pose" and joint_axis not in keep:
        vals = _nan_mean(vals, (joint_axis,))  # one value per pose
    others = tuple(a for a in range(vals.ndim) if a not in keep)
    return _nan_mean(vals, others)


def mpjpe_2d(
    pred: npt.ArrayLike,
    target: npt.ArrayLike,
    *,
    mask: npt.ArrayLike | None = None,
    image_size: tuple[int, int] | None = None,
    rule: MaskRule = "image",
    integer_targets: bool = False,
) -> float:
    """Mean per-joint position error in pixels.

    For the published DHP19 numbers use ``rule="dhp19", integer_targets=True`` with integer
    argmax predictions; ``rule="dhp19"`` alone keeps the protocol's masking with sub-pixel
    targets (see the module notes).

    Args:
        pred, target, mask, image_size, rule, integer_targets: as in
            :func:`per_joint_error_2d`.

    Returns:
        The mean over poses of each pose's mean error over its valid joints; NaN if no joint
        is valid.

    Shape:
        pred (..., J, 2), target (..., J, 2), mask (..., J) -> float
    """
    errors = per_joint_error_2d(
        pred, target, mask=mask, image_size=image_size, rule=rule, integer_targets=integer_targets
    )
    return float(reduce_joints(errors))


def mpjpe_3d(
    pred: npt.ArrayLike, target: npt.ArrayLike, *, mask: npt.ArrayLike | None = None
) -> float:
    """Mean per-joint position error in mm, without any alignment.

    Args:
        pred, target, mask: as in :func:`per_joint_error_3d`.

    Returns:
        The mean over poses of each pose's mean error over its valid joints; NaN if no joint
        is valid.

    Shape:
        pred (..., J, 3), target (..., J, 3), mask (..., J) -> float
    """
    return float(reduce_joints(per_joint_error_3d(pred, target, mask=mask)))


def pck(
    pred: npt.ArrayLike,
    target: npt.ArrayLike,
    threshold: float,
    *,
    mask: npt.ArrayLike | None = None,
    image_size: tuple[int, int] | None = None,
    rule: MaskRule = "image",
    integer_targets: bool = False,
) -> float:
    """Percentage of correct keypoints: correct joints / valid joints, pooled over all poses.

    Joint-weighted: every valid joint counts once, however many valid joints its pose has
    (unlike MPJPE, which averages per pose first). 2D or 3D is read from the last axis
    (2: pixels, 3: mm); masking as in MPJPE, and ``image_size``, ``rule`` and
    ``integer_targets`` are allowed only in 2D. An error equal to the threshold counts as
    correct.

    Args:
        pred, target, mask: as in :func:`per_joint_error_2d` / :func:`per_joint_error_3d`.
        threshold: radius in pixels (2D) or mm (3D), finite and > 0.
        image_size, rule, integer_targets: as in :func:`per_joint_error_2d`, 2D only.

    Returns:
        A fraction in [0, 1]; NaN if no joint is valid.

    Shape:
        pred (..., J, D), target (..., J, D), mask (..., J) -> float, D in {2, 3}

    Raises:
        MetricError: bad shapes, threshold or options, or 2D-only options with 3D joints.
    """
    dim = np.shape(target)[-1] if np.ndim(target) else None
    if dim == 2:
        errors = per_joint_error_2d(
            pred,
            target,
            mask=mask,
            image_size=image_size,
            rule=rule,
            integer_targets=integer_targets,
        )
    elif dim == 3:
        if image_size is not None or rule != "image" or integer_targets:
            raise MetricError(
                "image_size, rule, integer_targets: only meaningful for 2D joints, got 3D targets"
            )
        errors = per_joint_error_3d(pred, target, mask=mask)
    else:
        raise MetricError(
            f"target: expected shape (..., J, 2) or (..., J, 3), got {np.shape(target)}"
        )
    return float(reduce_joints(joint_hits(errors, threshold), weighting="joint"))


# --------------------------------------------------------------------------- helpers
def _check_rule(rule: str) -> None:
    if rule not in ("image", "dhp19"):
        raise MetricError(f"rule: expected 'image' or 'dhp19', got {rule!r}")


def _check_image_size(image_size: tuple[int, int]) -> tuple[int, int]:
    try:
        width, height = image_size
        ok = all(float(s).is_integer() and s > 0 for s in (width, height))
    except (TypeError, ValueError):
        ok = False
    if not ok:
        raise MetricError(f"image_size: expected (width, height) > 0, got {image_size!r}")
    return int(width), int(height)


def _pair(pred: npt.ArrayLike, target: npt.ArrayLike, dim: int) -> tuple[FloatArray, FloatArray]:
    p = np.asarray(pred, dtype=np.float64)
    t = np.asarray(target, dtype=np.float64)
    for name, arr in (("pred", p), ("target", t)):
        if arr.ndim < 2 or arr.shape[-1] != dim:
            raise MetricError(f"{name}: expected shape (..., J, {dim}), got {arr.shape}")
    try:
        shape = np.broadcast_shapes(p.shape, t.shape)
    except ValueError:
        raise MetricError(f"pred {p.shape} and target {t.shape} do not broadcast") from None
    return np.broadcast_to(p, shape), np.broadcast_to(t, shape)


def _errors(
    pred: FloatArray, target: FloatArray, valid: BoolArray, mask: npt.ArrayLike | None
) -> FloatArray:
    if mask is not None:
        m = np.asarray(mask)
        if m.dtype != np.bool_:
            raise MetricError(f"mask: expected booleans, got dtype {m.dtype}")
        try:
            valid = valid & m
        except ValueError:
            raise MetricError(
                f"mask {m.shape} does not broadcast with the joints {valid.shape}"
            ) from None
        if valid.shape != pred.shape[:-1]:
            raise MetricError(f"mask {m.shape} would enlarge the joints {pred.shape[:-1]}")
    bad = valid & ~np.all(np.isfinite(pred), axis=-1)
    if np.any(bad):
        first = tuple(int(i) for i in np.argwhere(bad)[0])
        raise MetricError(
            f"pred: {int(bad.sum())} non-finite predictions on joints with a valid target "
            f"(first at index {first}); mask them out explicitly if that is intended"
        )
    with np.errstate(invalid="ignore"):  # inf - inf on joints that are masked anyway
        diff = np.where(valid[..., None], pred - target, np.nan)
    errors: FloatArray = np.sqrt(np.sum(diff * diff, axis=-1))
    return errors


def _normalise_axes(keep_axes: int | Sequence[int], ndim: int) -> tuple[int, ...]:
    axes = (keep_axes,) if isinstance(keep_axes, (int, np.integer)) else tuple(keep_axes)
    out = []
    for a in axes:
        if not isinstance(a, (int, np.integer)) or not -ndim <= a < ndim:
            raise MetricError(f"keep_axes: {a!r} is not an axis of a {ndim}-d array")
        out.append(int(a) % ndim)
    if len(set(out)) != len(out):
        raise MetricError(f"keep_axes: {keep_axes!r} names an axis twice")
    return tuple(sorted(out))


def _nan_mean(x: FloatArray, axes: tuple[int, ...]) -> FloatArray:
    # np.nanmean warns on all-NaN slices; sums and counts give NaN there silently.
    finite = ~np.isnan(x)
    total = np.sum(np.where(finite, x, 0.0), axis=axes)
    count = np.sum(finite, axis=axes)
    out = np.full(np.shape(total), np.nan)
    np.divide(total, count, out=out, where=count > 0)
    return out
