"""The evaluation suite: six models side by side on the test subjects (PAPER.md, issue 5).

Models (all at the SNN's output rate, one prediction per bin):

=========================  ================================================================
``ann_high``               the ANN re-run at every step on the last N events before the step's
                           end (the most accurate and most expensive baseline)
``ann_low_held``           the ANN at the window start, its prediction held for the window
``snn``                    the SNN alone from an empty state, run continuously across windows
``hybrid``                 the ANN initialises the SNN at each window start
``hybrid_no_state_init``   the hybrid with its membranes started at zero (delta readout only)
``hybrid_no_delta``        the hybrid without the delta readout (state initialisation only)
=========================  ================================================================

The two ablations are their own checkpoints when the directory has them
(``hybrid_no_state_init.pt``, ``hybrid_no_delta.pt``, trained with ``hybridpose train --stage
hybrid --no-state-init`` / ``--no-delta``); otherwise they are *derived* from ``hybrid.pt`` by
switching the option off at evaluation (no retraining), and the report says so.

Evaluation windows: every test recording gives one segment of ``windows_per_recording``
consecutive windows (all of them when None) on both cameras, starting at a seeded random
window; ``warmup_windows`` windows before it are run but not scored, so that the continuously
running SNN has left its empty state. Errors:

* 2D: joints decoded sub-pixel (:func:`hybridpose.heatmaps.decode_heatmaps`) and compared in
  sensor pixels (model pixels times the downsampling) with the labels' projections; joints
  outside the model's crop or unlabelled are left out. Reported overall and per step since
  the window start (the last ANN initialisation).
* 3D: the two cameras' 2D predictions triangulated (midpoint of the two rays, DHP19's
  protocol), in mm against the 3D labels; joints valid in both views.

Energy (:mod:`hybridpose.energy`): operations counted on the first segments, at least
``energy_windows`` windows of real data (camera ``cameras[0]``): dense MACs for the ANN and
the state heads, synaptic operations and membrane updates for the SNN; power at the output
rate as in the paper; the SNN's mean firing rate.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from copy import deepcopy
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import numpy.typing as npt
import torch
from torch import Tensor
from tqdm import tqdm

from hybridpose.atomic import write_text_atomic
from hybridpose.checkpoint import Model, load_model
from hybridpose.data import (
    WindowConfig,
    ann_frame,
    index_windows,
    interpolate_joints,
    project_labels,
    snn_bins,
    split_by_subject,
    to_sensor_pixels,
)
from hybridpose.energy import (
    EnergyModel,
    OpCounts,
    OperationCounter,
    SpikeRecorder,
    ann_targets,
    snn_targets,
    state_head_targets,
)
from hybridpose.errors import HybridPoseError
from hybridpose.geometry import triangulate_two_views
from hybridpose.heatmaps import decode_heatmaps
from hybridpose.io.recording import Labels, Recording
from hybridpose.nn.ann import ANN
from hybridpose.nn.hybrid import HybridPose
from hybridpose.nn.presets import ModelConfig
from hybridpose.nn.snn import SNN
from hybridpose.recipes import RECIPES, window_from_dict
from hybridpose.synth.generate import TEST_SUBJECTS
from hybridpose.train import recording_files

if TYPE_CHECKING:
    from hybridpose.stream import StreamPose

MODELS = (
    "ann_high",
    "ann_low_held",
    "snn",
    "hybrid",
    "hybrid_no_state_init",
    "hybrid_no_delta",
)

PAPER: dict[str, dict[str, Any]] = {
    # PAPER.md, DHP19 test set, camera 3: 2D MPJPE in px (346x260), first and last step, power
    "ann_high": {"mpjpe2d_px": 5.03, "first_last": None, "power_w": 3.718},
    "ann_low_held": {"mpjpe2d_px": 5.84, "first_last": (5.08, 6.73), "power_w": None},
    "snn": {"mpjpe2d_px": 21.4, "first_last": (45.6, 15.5), "power_w": None},
    "hybrid": {"mpjpe2d_px": 5.19, "first_last": (5.16, 5.17), "power_w": 0.424},
    "hybrid_no_state_init": {"mpjpe2d_px": 5.85, "first_last": (5.10, 7.20), "power_w": None},
    "hybrid_no_delta": {"mpjpe2d_px": 5.46, "first_last": None, "power_w": None},
}
PAPER_RATIOS = {
    "hybrid_over_ann_error": 5.19 / 5.03,
    "hybrid_over_ann_power": 0.424 / 3.718,
    "snn_over_hybrid_error": 21.4 / 5.19,
}


class EvaluationError(HybridPoseError, ValueError):
    """The checkpoints or the data cannot be evaluated together."""


@dataclass(frozen=True)
class EvalSpec:
    """One evaluation run (defaults: the checkpoints' recipe)."""

    checkpoints: Path
    data_dir: Path
    out_dir: Path
    windows_per_recording: int | None = None
    warmup_windows: int = 1
    energy_windows: int = 16
    cameras: tuple[int, int] = (2, 3)
    segments_per_batch: int = 8
    seed: int = 0
    max_recordings: int | None = None
    device: str = "cpu"


@dataclass
class TrainedModels:
    """The networks of a training run (:func:`load_models`), their configurations, and which
    ablations were derived from the hybrid rather than read from their own checkpoints."""

    ann: ANN
    snn: SNN
    hybrid: HybridPose
    no_state_init: HybridPose
    no_delta: HybridPose
    derived: dict[str, bool]
    config: ModelConfig
    window: WindowConfig
    preset: str

    def hybrids(self) -> dict[str, HybridPose]:
        """The hybrid and its two ablations, by model name."""
        return {
            "hybrid": self.hybrid,
            "hybrid_no_state_init": self.no_state_init,
            "hybrid_no_delta": self.no_delta,
        }


def _load(path: Path, kind: type[Model]) -> tuple[Any, dict[str, Any]]:
    model, data = load_model(path)
    if not isinstance(model, kind):
        raise EvaluationError(f"{path}: expected a {kind.__name__} checkpoint, got {data['stage']}")
    return model, data


def load_models(directory: Path) -> TrainedModels:
    """The checkpoints of a training run (``ann.pt``, ``snn.pt``, ``hybrid.pt``, ablations)."""
    if not directory.is_dir():
        raise FileNotFoundError(f"{directory}: no such checkpoint directory")
    ann, ann_data = _load(directory / "ann.pt", ANN)
    snn, _ = _load(directory / "snn.pt", SNN)
    hybrid, hdata = _load(directory / "hybrid.pt", HybridPose)
    derived = {}
    ablations: dict[str, HybridPose] = {}
    for name, config in (
        ("hybrid_no_state_init", replace(hybrid.config, state_init=False)),
        ("hybrid_no_delta", None),
    ):
        path = directory / f"{name}.pt"
        if path.exists():
            ablations[name], _ = _load(path, HybridPose)
            derived[name] = False
            continue
        derived[name] = True
        copy = deepcopy(hybrid)
        if config is not None:
            copy.config = config
        else:
            copy.snn.config = replace(copy.snn.config, delta_readout=False)
        ablations[name] = copy
    config = ModelConfig.from_dict(hdata["model_config"])
    window = window_from_dict(ann_data["window_config"])
    if window_from_dict(hdata["window_config"]) != window:
        raise EvaluationError(f"{directory}: ann.pt and hybrid.pt were trained on other windows")
    return TrainedModels(
        ann,
        snn,
        hybrid,
        ablations["hybrid_no_state_init"],
        ablations["hybrid_no_delta"],
        derived,
        config,
        window,
        str(hdata.get("preset", "")),
    )


# ------------------------------------------------------------------------------ segments


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
    frames = np.stack([ann_frame(rec, camera, int(t), cfg) for t in edges])
    bins = snn_bins(rec, camera, edges, cfg)
    joints3d = interpolate_joints(labels.t_us, labels.joints_mm, edges[1:])
    P = rec.cameras[camera].calibration.P
    h, w = frames.shape[-2:]
    joints2d, valid = project_labels(P, joints3d, cfg, (w, h))
    return SegmentData(
        torch.from_numpy(frames), torch.from_numpy(bins), joints2d, valid, joints3d, np.asarray(P)
    )


def _check_sensor(rec: Recording, config: ModelConfig) -> None:
    if tuple(rec.sensor_size) != tuple(config.sensor_size):
        w, h = config.sensor_size
        raise EvaluationError(
            f"{rec.name}: sensor {rec.sensor_size[0]}x{rec.sensor_size[1]}, but the models "
            f"expect {w}x{h}"
        )


# ------------------------------------------------------------------------------ running


@torch.no_grad()
def _predict(models: TrainedModels, data: list[SegmentData], steps: int) -> dict[str, Tensor]:
    """Heatmap predictions decoded to model pixels, per model: (S, W * T, J, 2)."""
    s = len(data)
    frames = torch.stack([d.frames for d in data])  # (S, E, C, H, W)
    bins = torch.stack([d.bins for d in data])  # (S, W*T, 2, H, W)
    n_edges = frames.shape[1]
    n_win = (n_edges - 1) // steps
    flat = frames.flatten(0, 1)
    ann_hm = torch.cat([models.ann(flat[i : i + 64])[0] for i in range(0, len(flat), 64)])
    ann_uv = decode_heatmaps(ann_hm).reshape(s, n_edges, *ann_hm.shape[1:2], 2)
    out: dict[str, Tensor] = {}
    out["ann_high"] = ann_uv[:, 1:]
    starts = ann_uv[:, 0:-1:steps]  # (S, W, J, 2)
    out["ann_low_held"] = starts.repeat_interleave(steps, dim=1)
    # the SNN alone, continuously over the whole segment (time-first)
    x = bins.transpose(0, 1)
    h, w = x.shape[-2:]
    hm, _ = models.snn(x, models.snn.zero_state(s, h, w))
    out["snn"] = decode_heatmaps(hm).transpose(0, 1)
    # the hybrids: every window from the ANN's state at its start, windows batched
    start_frames = frames[:, 0:-1:steps].flatten(0, 1)  # (S*W, C, H, W)
    window_bins = bins.reshape(s, n_win, steps, *bins.shape[2:]).flatten(0, 1).transpose(0, 1)
    for name, model in models.hybrids().items():
        _, hm, _ = model(start_frames, window_bins)  # (T, S*W, J, H, W)
        uv = decode_heatmaps(hm)  # (T, S*W, J, 2)
        out[name] = uv.transpose(0, 1).reshape(s, n_win * steps, *uv.shape[2:])
    return out


@dataclass
class StepErrors:
    """Per-step sums of per-pose mean errors (2D) and the 3D errors, per model."""

    steps: int

    def __post_init__(self) -> None:
        self.sum2d = {m: np.zeros(self.steps) for m in MODELS}
        self.n2d = {m: np.zeros(self.steps) for m in MODELS}
        self.sum3d = {m: np.zeros(self.steps) for m in MODELS}
        self.n3d = {m: np.zeros(self.steps) for m in MODELS}

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


def _score(
    errors: StepErrors,
    preds: dict[str, list[Tensor]],
    data: list[list[SegmentData]],
    segments: Sequence[Segment],
    cfg: WindowConfig,
) -> None:
    """Add one batch of segments: ``preds[model][cam]`` (S, W*T, J, 2) model pixels."""
    steps = cfg.steps
    for name in MODELS:
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


def scored_windows(path: str, window: WindowConfig, cameras: tuple[int, int]) -> set[int]:
    """The window starts the evaluation would score in ``path`` on both cameras, without the
    first (the SNN's warm-up)."""
    return set(common_windows(path, window, cameras)[1:])


# ------------------------------------------------------------------------------ energy


@dataclass(frozen=True)
class EnergyFigures:
    """Power per model at the output rate (W), the SNNs' mean firing rates, and the operation
    counts per inference behind them."""

    power_w: dict[str, float]
    firing_rate: dict[str, float | None]
    counts: dict[str, dict[str, float]]


def _per_inference(counts: OpCounts) -> dict[str, float]:
    t = counts.totals
    return {
        "macs": t.macs / counts.samples,
        "synops": t.synops / counts.samples,
        "membrane_updates": t.membrane_updates / counts.samples,
    }


@torch.no_grad()
def measure_energy(
    models: TrainedModels, data: list[SegmentData], cfg: WindowConfig, energy: EnergyModel
) -> EnergyFigures:
    """Operation counts on the given segments (one camera), power at the output rate."""
    steps = cfg.steps
    high = 1e6 / cfg.bin_us
    low = high / steps
    frames = torch.stack([d.frames[0:-1:steps] for d in data]).flatten(0, 1)
    bins = torch.stack([d.bins for d in data])  # (S, W*T, ...)
    s, n_wt = bins.shape[:2]
    window_bins = bins.reshape(s, n_wt // steps, steps, *bins.shape[2:]).flatten(0, 1)
    window_bins = window_bins.transpose(0, 1)
    n_frames = frames.shape[0]
    with OperationCounter(ann_targets(models.ann)) as ann_c:
        models.ann(frames)
    ann_counts = ann_c.counts(n_frames)
    e_ann = energy.energy_pj(ann_counts).per_inference_pj
    power: dict[str, float] = {
        "ann_high": e_ann * 1e-12 * high,
        "ann_low_held": e_ann * 1e-12 * low,
    }
    rates: dict[str, float | None] = {"ann_high": None, "ann_low_held": None}
    counts = {"ann": _per_inference(ann_counts)}
    # the SNN alone, continuously from an empty state
    x = bins.transpose(0, 1)
    h, w = x.shape[-2:]
    with OperationCounter(snn_targets(models.snn)) as c, SpikeRecorder(models.snn) as spikes:
        models.snn(x, models.snn.zero_state(s, h, w))
    snn_counts = c.counts(s * n_wt)
    power["snn"] = energy.energy_pj(snn_counts).per_inference_pj * 1e-12 * high
    rates["snn"] = spikes.firing_rate
    counts["snn"] = _per_inference(snn_counts)
    for name, model in models.hybrids().items():
        with (
            OperationCounter(ann_targets(model.ann)) as a,
            OperationCounter(state_head_targets(model.ann)) as heads,
            OperationCounter(snn_targets(model.snn)) as c,
            SpikeRecorder(model.snn) as spikes,
        ):
            model(frames, window_bins)
        e_frame = energy.energy_pj(a.counts(n_frames)).per_inference_pj
        if model.config.state_init:
            e_frame += energy.energy_pj(heads.counts(n_frames)).per_inference_pj
        step_counts = c.counts(window_bins.shape[0] * window_bins.shape[1])
        e_step = energy.energy_pj(step_counts).per_inference_pj
        power[name] = (e_frame * low + e_step * high) * 1e-12
        rates[name] = spikes.firing_rate
        counts[f"{name}_snn_step"] = _per_inference(step_counts)
    counts["state_heads"] = _per_inference(heads.counts(n_frames))
    return EnergyFigures(power, rates, counts)


# ------------------------------------------------------------------------------ the run


def evaluate(spec: EvalSpec, *, progress: bool = True) -> dict[str, Any]:
    """Evaluate the checkpoints of ``spec.checkpoints`` on the test subjects of
    ``spec.data_dir``; writes ``report.json``, ``report.md`` and the plots to ``spec.out_dir``
    and returns the report."""
    models = load_models(spec.checkpoints)
    cfg = models.window
    known = RECIPES.get(models.preset)
    subjects = known.test_subjects if known is not None else TEST_SUBJECTS
    files = [str(p) for p in recording_files(spec.data_dir)]
    test = split_by_subject(files, subjects)
    if spec.max_recordings is not None:
        test = test[: spec.max_recordings]
    if not test:
        raise EvaluationError(f"{spec.data_dir}: no recordings of the test subjects {subjects}")
    segments = select_segments(
        test, cfg, spec.cameras, spec.windows_per_recording, spec.warmup_windows, spec.seed
    )
    if not segments:
        raise EvaluationError(f"{spec.data_dir}: no test windows on cameras {spec.cameras}")
    for m in (models.ann, models.snn, models.hybrid, models.no_state_init, models.no_delta):
        m.to(spec.device).eval()
    errors = StepErrors(cfg.steps)
    energy_model = EnergyModel()
    energy: EnergyFigures | None = None
    energy_windows = 0
    scored = sum(len(s.t0s) - s.warmup for s in segments)
    bar = tqdm(total=scored, desc="evaluate", unit="window", disable=not progress)
    for start in range(0, len(segments), spec.segments_per_batch):
        group = segments[start : start + spec.segments_per_batch]
        # segments of one batch must have equal length to be stacked
        for length in sorted({len(s.t0s) for s in group}):
            same = [s for s in group if len(s.t0s) == length]
            data: list[list[SegmentData]] = [[], []]
            for seg in same:
                with Recording(seg.path) as rec:
                    _check_sensor(rec, models.config)
                    labels = rec.labels()
                    for c, cam in enumerate(spec.cameras):
                        data[c].append(load_segment(rec, labels, cam, seg, cfg))
            preds: dict[str, list[Tensor]] = {m: [] for m in MODELS}
            for c in range(2):
                for name, value in _predict(models, data[c], cfg.steps).items():
                    preds[name].append(value)
            _score(errors, preds, data, same, cfg)
            if energy is None:
                k = max(1, math.ceil(spec.energy_windows / length))
                energy = measure_energy(models, data[0][:k], cfg, energy_model)
                energy_windows = k * length
            bar.update(sum(len(s.t0s) - s.warmup for s in same))
    bar.close()
    assert energy is not None
    report = build_report(
        MODELS,
        models,
        errors,
        energy,
        cameras=spec.cameras,
        recordings=len(segments),
        scored_windows=sum(len(s.t0s) - s.warmup for s in segments),
        warmup_windows=spec.warmup_windows,
    )
    report["setup"]["energy_windows"] = energy_windows
    spec.out_dir.mkdir(parents=True, exist_ok=True)
    write_text_atomic(spec.out_dir / "report.json", json.dumps(report, indent=2) + "\n")
    write_text_atomic(spec.out_dir / "report.md", report_markdown(report))
    plot_report(report, spec.out_dir)
    return report


def _mean(total: float, count: float) -> float | None:
    """``total / count``; None (JSON null) when nothing was scored."""
    return float(total / count) if count > 0 else None


def _ratio(a: float | None, b: float | None) -> float | None:
    return a / b if a is not None and b else None


def build_report(
    names: Sequence[str],
    models: TrainedModels,
    errors: StepErrors,
    energy: EnergyFigures,
    *,
    cameras: Sequence[int],
    recordings: int,
    scored_windows: int,
    warmup_windows: int,
) -> dict[str, Any]:
    """The report (``report.json``'s content) for the models ``names`` (a subset of
    :data:`MODELS` that includes ``ann_high``, ``snn`` and ``hybrid``)."""
    cfg = models.window
    out: dict[str, Any] = {}
    for name in names:
        n2, n3 = errors.n2d[name], errors.n3d[name]
        out[name] = {
            "mpjpe2d_px": _mean(errors.sum2d[name].sum(), n2.sum()),
            "mpjpe2d_px_per_step": [
                _mean(v, n) for v, n in zip(errors.sum2d[name], n2, strict=True)
            ],
            "mpjpe3d_mm": _mean(errors.sum3d[name].sum(), n3.sum()),
            "mpjpe3d_mm_per_step": [
                _mean(v, n) for v, n in zip(errors.sum3d[name], n3, strict=True)
            ],
            "energy_mj_per_s": energy.power_w[name] * 1e3,
            "power_w": energy.power_w[name],
            "firing_rate": energy.firing_rate[name],
            "derived_from_hybrid": models.derived.get(name, False),
        }
    ann, hyb, snn = out["ann_high"], out["hybrid"], out["snn"]
    ratios = {
        "hybrid_over_ann_error": _ratio(hyb["mpjpe2d_px"], ann["mpjpe2d_px"]),
        "hybrid_over_ann_power": _ratio(hyb["power_w"], ann["power_w"]),
        "snn_over_hybrid_error": _ratio(snn["mpjpe2d_px"], hyb["mpjpe2d_px"]),
    }
    return {
        "models": out,
        "ratios": ratios,
        "paper": {"models": PAPER, "ratios": PAPER_RATIOS},
        "setup": {
            "preset": models.preset,
            "sensor_size": list(models.config.sensor_size),
            "input_size": list(models.config.input_size),
            "cameras": list(cameras),
            "output_rate_hz": 1e6 / cfg.bin_us,
            "ann_rate_hz": 1e6 / cfg.bin_us / cfg.steps,
            "steps_per_window": cfg.steps,
            "ann_events": cfg.ann_events,
            "recordings": recordings,
            "scored_windows_per_camera": scored_windows,
            "warmup_windows": warmup_windows,
            "energy_model_pj": asdict(EnergyModel()),
            "counts_per_inference": energy.counts,
        },
    }


# ------------------------------------------------------------------------------ report


LABELS = {
    "ann_high": "ANN at every step",
    "ann_low_held": "ANN at the low rate, held",
    "snn": "SNN alone",
    "hybrid": "hybrid",
    "hybrid_no_state_init": "hybrid, no state init",
    "hybrid_no_delta": "hybrid, no delta readout",
}


def _names(report: dict[str, Any]) -> list[str]:
    """The report's models in :data:`MODELS` order."""
    return [name for name in MODELS if name in report["models"]]


def _f(x: float | None, digits: int = 2) -> str:
    return "—" if x is None or not math.isfinite(x) else f"{x:.{digits}f}"


def _latency(latency: dict[str, Any] | None) -> str:
    if not latency or latency.get("p50_ms") is None:
        return "—"
    return f"{latency['p50_ms']:.2f} / {latency['p99_ms']:.2f}"


def report_markdown(report: dict[str, Any]) -> str:
    """The report as a Markdown table, the paper's numbers beside ours."""
    setup = report["setup"]
    models = report["models"]
    ann_power = models["ann_high"]["power_w"]
    w, h = setup["sensor_size"]
    timed = any("latency_ms" in models[n] for n in _names(report))
    lines = [
        f"# {setup.get('title', 'Evaluation')}: preset `{setup['preset']}`",
        "",
        f"{setup.get('data', 'Test subjects')}, cameras {setup['cameras'][0]} and "
        f"{setup['cameras'][1]}, "
        f"{setup['recordings']} recordings, {setup['scored_windows_per_camera']} scored "
        f"windows per camera; output {setup['output_rate_hz']:g} Hz, ANN "
        f"{setup['ann_rate_hz']:g} Hz. 2D errors in pixels of the {w}x{h} sensor (the "
        f"paper's are in 346x260 pixels), 3D in mm.",
        "",
        "| model | 2D MPJPE px | first → last step | 3D MPJPE mm | power W | / ANN power "
        "| firing rate | paper 2D px | paper first → last | paper power W |"
        + (" latency p50 / p99 ms |" if timed else ""),
        "|---|---|---|---|---|---|---|---|---|---|" + ("---|" if timed else ""),
    ]
    for name in _names(report):
        m = models[name]
        p = PAPER[name]
        steps = m["mpjpe2d_px_per_step"]
        fl = p["first_last"]
        label = LABELS[name] + (" (derived)" if m["derived_from_hybrid"] else "")
        rate = m["firing_rate"]
        lines.append(
            f"| {label} | {_f(m['mpjpe2d_px'])} | {_f(steps[0])} → {_f(steps[-1])} "
            f"| {_f(m['mpjpe3d_mm'], 1)} | {m['power_w']:.4g} | {m['power_w'] / ann_power:.3f} "
            f"| {'—' if rate is None else f'{100 * rate:.2f}%'} | {_f(p['mpjpe2d_px'])} "
            f"| {'—' if fl is None else f'{fl[0]:.2f} → {fl[1]:.2f}'} "
            f"| {'—' if p['power_w'] is None else p['power_w']} |"
            + (f" {_latency(m.get('latency_ms'))} |" if timed else "")
        )
    r = report["ratios"]
    pr = report["paper"]["ratios"]
    lines += [
        "",
        "| ratio | ours | paper |",
        "|---|---|---|",
        f"| hybrid / ANN error | {_f(r['hybrid_over_ann_error'], 3)} "
        f"| {pr['hybrid_over_ann_error']:.3f} |",
        f"| hybrid / ANN power | {_f(r['hybrid_over_ann_power'], 3)} "
        f"| {pr['hybrid_over_ann_power']:.3f} |",
        f"| SNN / hybrid error | {_f(r['snn_over_hybrid_error'])} "
        f"| {pr['snn_over_hybrid_error']:.2f} |",
        "",
    ]
    if any(models[n]["derived_from_hybrid"] for n in _names(report)):
        lines += [
            "(derived): the ablation is the trained hybrid with the option switched off at "
            "evaluation, not a model trained that way.",
            "",
        ]
    return "\n".join(lines)


COLORS = {
    "ann_high": "#1f77b4",
    "ann_low_held": "#ff7f0e",
    "snn": "#2ca02c",
    "hybrid": "#d62728",
    "hybrid_no_state_init": "#9467bd",
    "hybrid_no_delta": "#8c564b",
}


def plot_report(report: dict[str, Any], out_dir: Path) -> list[Path]:
    """``error_vs_step.png`` and ``error_vs_power.png`` from a report."""
    from matplotlib.figure import Figure

    from hybridpose.viz import save_figure

    models = report["models"]
    fig = Figure(figsize=(7.0, 4.4), layout="constrained")
    ax = fig.add_subplot()
    for name in _names(report):
        steps = [np.nan if v is None else v for v in models[name]["mpjpe2d_px_per_step"]]
        ax.plot(range(1, len(steps) + 1), steps, marker="o", ms=3, color=COLORS[name],
                label=LABELS[name])  # fmt: skip
    ax.set_xlabel("step since the ANN initialisation")
    ax.set_ylabel("2D MPJPE (px)")
    ax.set_title("Error against time since initialisation")
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=8)
    paths = [out_dir / "error_vs_step.png", out_dir / "error_vs_power.png"]
    save_figure(fig, paths[0])
    fig = Figure(figsize=(7.0, 4.4), layout="constrained")
    ax = fig.add_subplot()
    plotted = False
    for name in _names(report):
        m = models[name]
        if m["mpjpe2d_px"] is None or not m["power_w"] > 0:
            continue
        ax.scatter(m["power_w"] * 1e3, m["mpjpe2d_px"], s=40, color=COLORS[name],
                   label=LABELS[name])  # fmt: skip
        plotted = True
    if plotted:
        ax.set_xscale("log")
        ax.legend(fontsize=8)
    ax.set_xlabel("power at the output rate (mW, from counted operations)")
    ax.set_ylabel("2D MPJPE (px)")
    ax.set_title("Error against power")
    ax.grid(True, alpha=0.3, which="both")
    save_figure(fig, paths[1])
    return paths


__all__ = [
    "MODELS",
    "PAPER",
    "EnergyFigures",
    "EvalSpec",
    "EvaluationError",
    "PoseScorer",
    "Segment",
    "SegmentData",
    "StepErrors",
    "TrainedModels",
    "build_report",
    "common_windows",
    "evaluate",
    "load_models",
    "load_segment",
    "measure_energy",
    "plot_report",
    "pose_errors",
    "report_markdown",
    "scored_windows",
    "select_segments",
]
