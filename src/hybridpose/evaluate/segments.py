"""Which windows the evaluation scores, and their inputs and labels.

Every test recording gives one *segment* of consecutive windows present on both cameras
(:func:`select_segments`); :func:`load_segment` reads its ANN frames at every bin edge, its SNN
bins and its labels on one camera.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Any

import numpy as np
import numpy.typing as npt
import torch
from torch import Tensor

from hybridpose.data import (
    WindowConfig,
    ann_frames,
    index_windows,
    interpolate_joints,
    project_labels,
    snn_bins,
)
from hybridpose.io.recording import Recording
from hybridpose.nn.presets import ModelConfig
from hybridpose.trained import EvaluationError


@dataclass(frozen=True)
class Segment:
    """Consecutive windows of one recording: ``t0s`` (the first ``warmup`` not scored)."""

    path: str
    t0s: tuple[int, ...]
    warmup: int


def common_windows(path: str, config: WindowConfig, cameras: tuple[int, int]) -> list[int]:
    """The window starts of ``path`` (:func:`~hybridpose.data.index_windows`) present on both
    cameras, in time order."""
    per_cam: dict[int, set[int]] = {c: set() for c in cameras}
    for win in index_windows([path], replace(config, cameras=cameras)):
        per_cam[win.camera].add(win.t0_us)
    return sorted(per_cam[cameras[0]] & per_cam[cameras[1]])


def select_segments(
    paths: Sequence[str],
    config: WindowConfig,
    cameras: tuple[int, int],
    windows_per_recording: int | None,
    warmup: int,
    seed: int,
) -> list[Segment]:
    """One segment per recording: consecutive grid windows present on both cameras."""
    out: list[Segment] = []
    rng = np.random.default_rng(seed)
    for path in paths:
        runs = _consecutive_runs(common_windows(path, config, cameras), config.stride_us)
        if not runs:
            continue
        longest = max(runs, key=len)
        want = len(longest) if windows_per_recording is None else windows_per_recording + warmup
        n = min(want, len(longest))
        if n <= warmup:
            continue
        start = int(rng.integers(0, len(longest) - n + 1))
        out.append(Segment(path, tuple(longest[start : start + n]), warmup))
    return out


def _consecutive_runs(t0s: Sequence[int], stride: int) -> list[list[int]]:
    runs: list[list[int]] = []
    for t in t0s:
        if runs and t - runs[-1][-1] == stride:
            runs[-1].append(t)
        else:
            runs.append([t])
    return runs


@dataclass
class SegmentData:
    """Inputs and labels of one segment on one camera."""

    frames: Tensor  # (E, C, H, W): ANN frames at every bin edge
    bins: Tensor  # (W * T, 2, H, W)
    joints2d: npt.NDArray[np.float64]  # (W * T, J, 2) model pixels
    valid: npt.NDArray[np.bool_]  # (W * T, J)
    joints3d: npt.NDArray[np.float64]  # (W * T, J, 3)
    P: npt.NDArray[np.float64]


def load_segment(
    rec: Recording, labels: Any, camera: int, seg: Segment, cfg: WindowConfig
) -> SegmentData:
    """The ANN frames at every bin edge, the SNN bins and the labels of ``seg`` on ``camera``."""
    n_win = len(seg.t0s)
    edges = seg.t0s[0] + np.arange(n_win * cfg.steps + 1, dtype=np.int64) * cfg.bin_us
    frames = ann_frames(rec, camera, edges, cfg)
    bins = snn_bins(rec, camera, edges, cfg)
    joints3d = interpolate_joints(labels.t_us, labels.joints_mm, edges[1:])
    P = rec.cameras[camera].calibration.P
    h, w = frames.shape[-2:]
    joints2d, valid = project_labels(P, joints3d, cfg, (w, h))
    return SegmentData(
        torch.from_numpy(frames), torch.from_numpy(bins), joints2d, valid, joints3d, np.asarray(P)
    )


def check_sensor(rec: Recording, config: ModelConfig) -> None:
    """Raise an :class:`EvaluationError` when ``rec``'s sensor is not the models'."""
    if tuple(rec.sensor_size) != tuple(config.sensor_size):
        w, h = config.sensor_size
        raise EvaluationError(
            f"{rec.name}: sensor {rec.sensor_size[0]}x{rec.sensor_size[1]}, but the models "
            f"expect {w}x{h}"
        )


def scored_windows(path: str, window: WindowConfig, cameras: tuple[int, int]) -> set[int]:
    """The window starts the evaluation would score in ``path`` on both cameras, without the
    first (the SNN's warm-up)."""
    return set(common_windows(path, window, cameras)[1:])


__all__ = [
    "Segment",
    "SegmentData",
    "check_sensor",
    "common_windows",
    "load_segment",
    "scored_windows",
    "select_segments",
]
