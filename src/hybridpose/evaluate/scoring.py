"""Scoring predictions against labels: per-pose errors, their sums per step, streamed poses.

* 2D: joints decoded sub-pixel (:func:`hybridpose.heatmaps.decode_heatmaps`) and compared in
  sensor pixels (model pixels times the downsampling) with the labels' projections; joints
  outside the model's crop or unlabelled are left out. Reported overall and per step since
  the window start (the last ANN initialisation).
* 3D: the two cameras' 2D predictions triangulated (midpoint of the two rays, DHP19's
  protocol), in mm against the 3D labels; joints valid in both views.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np
import numpy.typing as npt
from torch import Tensor

from hybridpose.data import WindowConfig, interpolate_joints, project_labels, to_sensor_pixels
from hybridpose.evaluate.segments import Segment, SegmentData
from hybridpose.geometry import triangulate_two_views
from hybridpose.io.recording import Labels
from hybridpose.variants import names as variant_names

if TYPE_CHECKING:
    from hybridpose.stream import StreamPose


@dataclass
class StepErrors:
    """Per-step sums of per-pose mean errors (2D) and the 3D errors, per model."""

    steps: int
    names: Sequence[str] = field(default_factory=variant_names)

    def __post_init__(self) -> None:
        self.sum2d = {m: np.zeros(self.steps) for m in self.names}
        self.n2d = {m: np.zeros(self.steps) for m in self.names}
        self.sum3d = {m: np.zeros(self.steps) for m in self.names}
        self.n3d = {m: np.zeros(self.steps) for m in self.names}

    def add(
        self,
        kind: str,
        model: str,
        per_pose: npt.NDArray[np.float64],
        step_index: npt.NDArray[np.int64],
    ) -> None:
        """Add per-pose errors (``kind`` "2d" or "3d"); NaN poses are left out."""
        total, count = (
            (self.sum2d[model], self.n2d[model])
            if kind == "2d"
            else (self.sum3d[model], self.n3d[model])
        )
        ok = np.isfinite(per_pose)
        np.add.at(total, step_index[ok], per_pose[ok])
        np.add.at(count, step_index[ok], 1)


def pose_errors(
    pred: npt.NDArray[np.float64], target: npt.NDArray[np.float64], mask: npt.NDArray[np.bool_]
) -> npt.NDArray[np.float64]:
    """Mean error over each pose's masked joints (NaN for a pose without any, or with a NaN
    prediction at a masked joint: such a pose is left out, never scored as a zero error)."""
    err = np.linalg.norm(pred - target, axis=-1)
    err = np.where(mask, err, 0.0)  # a NaN prediction at a counted joint stays NaN: unusable
    counts = mask.sum(axis=-1)
    total = err.sum(axis=-1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(counts > 0, total / np.maximum(counts, 1), np.nan)


def score(
    errors: StepErrors,
    preds: dict[str, list[Tensor]],
    data: list[list[SegmentData]],
    segments: Sequence[Segment],
    cfg: WindowConfig,
) -> None:
    """Add one batch of segments: ``preds[model][cam]`` (S, W*T, J, 2) model pixels, for
    every model of ``preds``."""
    steps = cfg.steps
    for name in preds:
        for s, seg in enumerate(segments):
            keep = slice(seg.warmup * steps, len(seg.t0s) * steps)
            step_index = np.arange(len(seg.t0s) * steps)[keep] % steps
            uv_sensor = []
            for c in range(2):
                d = data[c][s]
                pred = preds[name][c][s].double().numpy()[keep]
                pred_s = to_sensor_pixels(pred, cfg.crop, cfg.downsample)
                target_s = to_sensor_pixels(d.joints2d[keep], cfg.crop, cfg.downsample)
                per_pose = pose_errors(pred_s, target_s, d.valid[keep])
                errors.add("2d", name, per_pose, step_index)
                uv_sensor.append(pred_s)
            d0, d1 = data[0][s], data[1][s]
            xyz = triangulate_two_views(d0.P, d1.P, uv_sensor[0], uv_sensor[1])
            truth = d0.joints3d[keep]
            mask3 = d0.valid[keep] & d1.valid[keep] & np.all(np.isfinite(truth), axis=-1)
            per_pose3 = pose_errors(xyz, truth, mask3)
            errors.add("3d", name, per_pose3, step_index)


# ------------------------------------------------------------------------------ streamed poses


class PoseScorer:
    """Scores streamed poses of one recording against its labels, as the evaluation does.

    2D: each stream's joints in sensor pixels against the labels projected through its
    camera, joints outside the model's crop or unlabelled left out; 3D: the triangulated
    pose against the labels, joints valid in both views. Only bins of ``scored_t0s`` windows
    count; errors are added to ``errors`` under ``model`` by step since initialisation.
    """

    def __init__(
        self,
        labels: Labels,
        projections: Sequence[npt.NDArray[np.float64]],
        window: WindowConfig,
        input_size: tuple[int, int],
        scored_t0s: set[int] | None = None,
    ) -> None:
        self.labels = labels
        self.projections = list(projections)
        self.window = window
        self.input_size = input_size  # (height, width)
        self.scored_t0s = scored_t0s

    def keep(self, pose: StreamPose) -> bool:
        t0 = pose.t_us - pose.step * self.window.bin_us
        return self.scored_t0s is None or t0 in self.scored_t0s

    def errors(self, poses: Sequence[StreamPose]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Per pose: 2D error per stream (N, S), 3D error (N,) (NaN where unscorable), step
        index 0..K-1 (N,)."""
        cfg = self.window
        t = np.array([p.t_us for p in poses], dtype=np.int64)
        truth = interpolate_joints(self.labels.t_us, self.labels.joints_mm, t)  # (N, J, 3)
        h, w = self.input_size
        err2d = np.full((len(poses), len(self.projections)), np.nan)
        masks = []
        for s, P in enumerate(self.projections):
            model_px, valid = project_labels(P, truth, cfg, (w, h))
            masks.append(valid)
            pred = np.stack([p.uv[s] for p in poses]).astype(np.float64)
            target = to_sensor_pixels(model_px, cfg.crop, cfg.downsample)
            err2d[:, s] = pose_errors(pred, target, valid)
        err3d = np.full(len(poses), np.nan)
        if len(self.projections) == 2 and all(p.xyz is not None for p in poses):
            xyz = np.stack([p.xyz for p in poses if p.xyz is not None])
            mask3 = masks[0] & masks[1] & np.all(np.isfinite(truth), axis=-1)
            err3d = pose_errors(xyz, truth, mask3)
        steps = np.array([p.step - 1 for p in poses], dtype=np.int64)
        return err2d, err3d, steps

    def add(self, errors: StepErrors, model: str, poses: Sequence[StreamPose]) -> None:
        kept = [p for p in poses if self.keep(p)]
        if not kept:
            return
        err2d, err3d, steps = self.errors(kept)
        for s in range(err2d.shape[1]):
            errors.add("2d", model, err2d[:, s], steps)
        errors.add("3d", model, err3d, steps)


__all__ = ["PoseScorer", "StepErrors", "pose_errors", "score"]
