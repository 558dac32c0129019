"""The evaluation run: every model variant's predictions on the test segments, scored, with
power from counted operations.

Predictions are made per behaviour (:mod:`hybridpose.variants`), windows batched:

* ``ann_every_step``: the ANN at every bin end, on the last ``ann_events`` events;
* ``ann_held``: the ANN at each window start, its prediction repeated over the window;
* ``snn_carried``: the SNN from an empty state, run continuously over the whole segment;
* ``snn_from_zero``: the SNN from an empty state at every window start;
* ``hybrid``: every window from the state the hybrid's ANN gives at its start;
* ``hybrid_rnn``: the same with the ConvGRU (:mod:`hybridpose.nn.rnn`) in the SNN's place.

Energy (:mod:`hybridpose.energy`): operations counted on the first segments, at least
``energy_windows`` windows of real data (camera ``cameras[0]``), each variant run as it runs
in the evaluation; power at the output rate from :func:`hybridpose.energy.schedule_power`; the
SNNs' mean firing rate (none for the ConvGRU: its MACs are dense).

Two protocols (:data:`PROTOCOLS`): the project's, on the segments of
:func:`~hybridpose.evaluate.segments.select_segments` (both cameras, 2D and 3D, sub-pixel
decoding, labels at each bin's end), and the paper's (:mod:`hybridpose.evaluate.paper`); and
the sweep of the ANN's rate (:func:`rate_sweep`).
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import torch
from torch import Tensor
from tqdm import tqdm

from hybridpose.atomic import write_text_atomic
from hybridpose.data import WindowConfig, recording_files, split_by_subject
from hybridpose.devices import resolve_device
from hybridpose.energy import (
    AnnCounts,
    EnergyModel,
    OpCounts,
    SpikeRecorder,
    count_ann,
    count_hybrid,
    count_snn,
    schedule_power,
)
from hybridpose.evaluate import paper
from hybridpose.evaluate.report import SWEPT, build_report, plot_report, report_markdown
from hybridpose.evaluate.scoring import StepErrors, score
from hybridpose.evaluate.segments import (
    Segment,
    SegmentData,
    check_sensor,
    load_segment,
    select_segments,
)
from hybridpose.heatmaps import argmax_heatmaps, decode_heatmaps
from hybridpose.io.recording import Recording
from hybridpose.nn.ann import ANN
from hybridpose.nn.hybrid import HybridPose
from hybridpose.nn.snn import SNN
from hybridpose.recipes import RECIPES, Protocol
from hybridpose.subjects import TEST_SUBJECTS
from hybridpose.trained import EvaluationError, TrainedModels, load_models
from hybridpose.variants import variant

PROTOCOLS: tuple[Protocol, ...] = ("project", "paper")
"""The evaluation protocols: the project's (module docstring) and the paper's
(:mod:`hybridpose.evaluate.paper`)."""


@dataclass(frozen=True)
class EvalSpec:
    """One evaluation run (defaults: the checkpoints' recipe). ``protocols``: the first gives
    the report's ``models`` and ``ratios``; a second (the paper's) is added as
    ``paper_protocol`` (``windows_per_recording`` and ``seed`` apply to both).
    ``rate_factors``: the ANN's rate divided by each (:func:`rate_sweep`, project protocol),
    added as ``rate_sweep``; empty: none."""

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
    protocols: tuple[Protocol, ...] = ("project", "paper")
    rate_factors: tuple[int, ...] = ()


# ------------------------------------------------------------------------------ predictions


def _window_bins(bins: Tensor, steps: int) -> Tensor:
    """(S, W*T, C, H, W) segment bins -> (T, S*W, C, H, W): every window a sample."""
    s, n = bins.shape[:2]
    return bins.reshape(s, n // steps, steps, *bins.shape[2:]).flatten(0, 1).transpose(0, 1)


def _from_windows(uv: Tensor, segments: int) -> Tensor:
    """(T, S*W, J, 2) per-window predictions -> (S, W*T, J, 2)."""
    t, sw = uv.shape[:2]
    return uv.transpose(0, 1).reshape(segments, sw // segments * t, *uv.shape[2:])


@torch.no_grad()
def predict(
    models: TrainedModels,
    data: list[SegmentData],
    steps: int,
    names: Iterable[str] | None = None,
    decode: Callable[[Tensor], Tensor] = decode_heatmaps,
) -> dict[str, Tensor]:
    """Heatmap predictions decoded to model pixels by ``decode`` (default: sub-pixel; the
    paper protocol's integer argmax is :func:`~hybridpose.heatmaps.argmax_heatmaps`), per
    variant (default: every loaded one).

    Shape:
        each (S, W * T, J, 2) for S segments of W windows of T = ``steps`` bins.
    """
    s = len(data)
    frames = torch.stack([d.frames for d in data])  # (S, E, C, H, W)
    bins = torch.stack([d.bins for d in data])  # (S, W*T, 2, H, W)
    start_frames = frames[:, 0:-1:steps].flatten(0, 1)  # (S*W, C, H, W)
    window_bins = _window_bins(bins, steps)
    chosen = models.variants if names is None else tuple(variant(n) for n in names)
    # an ANN that some variant runs at every step runs at every bin edge once; else only at
    # the window starts
    every_step = {id(models.networks[v.name]) for v in chosen if v.behaviour == "ann_every_step"}
    ann_uv: dict[int, Tensor] = {}  # per ANN: its predictions at every edge, or every start

    def ann_at(ann: ANN) -> Tensor:
        if id(ann) not in ann_uv:
            flat = frames.flatten(0, 1) if id(ann) in every_step else start_frames
            hm = torch.cat([ann(flat[i : i + 64])[0] for i in range(0, len(flat), 64)])
            ann_uv[id(ann)] = decode(hm).reshape(s, -1, *hm.shape[1:2], 2)
        return ann_uv[id(ann)]

    out: dict[str, Tensor] = {}
    for v in chosen:
        net = models.networks[v.name]
        behaviour = v.behaviour
        if behaviour == "ann_every_step":
            assert isinstance(net, ANN)
            out[v.name] = ann_at(net)[:, 1:]
        elif behaviour == "ann_held":
            assert isinstance(net, ANN)
            starts = ann_at(net)[:, 0:-1:steps] if id(net) in every_step else ann_at(net)
            out[v.name] = starts.repeat_interleave(steps, dim=1)
        elif behaviour == "snn_carried":  # the whole segment, time-first
            assert isinstance(net, SNN)
            x = bins.transpose(0, 1)
            hm, _ = net(x, net.zero_state(s, *x.shape[-2:]))
            out[v.name] = decode(hm).transpose(0, 1)
        elif behaviour == "snn_from_zero":
            assert isinstance(net, SNN)
            hm, _ = net(window_bins, net.zero_state(window_bins.shape[1], *bins.shape[-2:]))
            out[v.name] = _from_windows(decode(hm), s)
        elif behaviour in ("hybrid", "hybrid_rnn"):  # every window from the ANN's state at its
            # start, stepped by the SNN or (the CNN-RNN hybrid) the ConvGRU
            assert isinstance(net, HybridPose)
            _, hm, _ = net(start_frames, window_bins)  # (T, S*W, J, H, W)
            out[v.name] = _from_windows(decode(hm), s)
        else:
            raise ValueError(f"{v.name}: no batch prediction for behaviour {behaviour!r}")
    return out


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
    """Operation counts on the given segments (one camera), each variant run as in
    :func:`predict`; power at the output rate (:func:`hybridpose.energy.schedule_power`).

    ``counts`` holds the counts per inference behind the figures: the ANN's per frame (under
    its checkpoint's name, once however many variants run it), each SNN variant's per step
    (under its name), each hybrid's SNN per step (``NAME_snn_step``), the CNN-RNN hybrid's
    ConvGRU per step (``NAME_convgru_step``, dense MACs; its firing rate is None) and the state
    heads'."""
    steps = cfg.steps
    high = 1e6 / cfg.bin_us
    low = high / steps
    frames = torch.stack([d.frames[0:-1:steps] for d in data]).flatten(0, 1)  # window starts
    bins = torch.stack([d.bins for d in data])  # (S, W*T, ...)
    power: dict[str, float] = {}
    firing: dict[str, float | None] = {}
    counts: dict[str, dict[str, float]] = {}
    ann_counts: dict[int, AnnCounts] = {}
    heads: OpCounts | None = None
    for v in models.variants:
        net = models.networks[v.name]
        schedule = v.schedule
        if isinstance(net, ANN):
            if id(net) not in ann_counts:
                ann_counts[id(net)] = count_ann(net, frames)
                counts[v.checkpoint] = _per_inference(ann_counts[id(net)].ann)
            heads = ann_counts[id(net)].state_heads
            power[v.name] = schedule_power(
                energy, schedule, ann=ann_counts[id(net)].ann, high_rate_hz=high, low_rate_hz=low
            )
            firing[v.name] = None
            continue
        if isinstance(net, SNN):
            x = bins.transpose(0, 1) if schedule.snn == "carried" else _window_bins(bins, steps)
            with SpikeRecorder(net) as spikes:
                snn = count_snn(net, x)
            power[v.name] = schedule_power(
                energy, schedule, snn=snn, high_rate_hz=high, low_rate_hz=low
            )
            counts[v.name] = _per_inference(snn)
            firing[v.name] = spikes.firing_rate
        else:
            assert isinstance(net, HybridPose)
            if isinstance(net.snn, SNN):
                with SpikeRecorder(net.snn) as spikes:
                    hybrid = count_hybrid(net, frames, _window_bins(bins, steps))
                firing[v.name], stepper = spikes.firing_rate, "snn"
            else:  # the CNN-RNN hybrid: a dense ConvGRU, no spikes
                hybrid = count_hybrid(net, frames, _window_bins(bins, steps))
                firing[v.name], stepper = None, "convgru"
            used_heads = hybrid.state_heads if net.config.state_init else None
            power[v.name] = schedule_power(
                energy, schedule, ann=hybrid.ann, state_heads=used_heads, snn=hybrid.snn,
                high_rate_hz=high, low_rate_hz=low,
            )  # fmt: skip
            counts[f"{v.name}_{stepper}_step"] = _per_inference(hybrid.snn)
            heads = hybrid.state_heads
    if heads is not None:
        counts["state_heads"] = _per_inference(heads)
    return EnergyFigures(power, firing, counts)


# ------------------------------------------------------------------------------ the run


def _test_files(spec: EvalSpec, preset: str) -> list[str]:
    """The test subjects' recordings of ``spec.data_dir`` (the recipe's split)."""
    known = RECIPES.get(preset)
    subjects = known.test_subjects if known is not None else TEST_SUBJECTS
    files = recording_files(spec.data_dir)
    if not files:
        raise EvaluationError(f"{spec.data_dir}: no recording files (*.h5)")
    test = split_by_subject(files, subjects)
    if spec.max_recordings is not None:
        test = test[: spec.max_recordings]
    if not test:
        raise EvaluationError(f"{spec.data_dir}: no recordings of the test subjects {subjects}")
    return test


def _load_batch(
    segments: Sequence[Segment], models: TrainedModels, cameras: tuple[int, int], cfg: WindowConfig
) -> list[list[SegmentData]]:
    """The inputs and labels of ``segments``, per camera."""
    data: list[list[SegmentData]] = [[], []]
    for seg in segments:
        with Recording(seg.path) as rec:
            check_sensor(rec, models.config)
            labels = rec.labels()
            for c, cam in enumerate(cameras):
                data[c].append(load_segment(rec, labels, cam, seg, cfg))
    return data


@dataclass
class _Scored:
    """One protocol's errors on its segments, and the energy figures of its first ones."""

    errors: StepErrors
    energy: EnergyFigures
    energy_windows: int
    recordings: int
    scored_windows: int


def _project_scores(
    spec: EvalSpec, models: TrainedModels, cfg: WindowConfig, progress: bool, desc: str
) -> _Scored:
    """The project protocol's errors and energy with the windows ``cfg`` (module docstring)."""
    segments = select_segments(
        _test_files(spec, models.preset), cfg, spec.cameras, spec.windows_per_recording,
        spec.warmup_windows, spec.seed,
    )  # fmt: skip
    if not segments:
        raise EvaluationError(f"{spec.data_dir}: no test windows on cameras {spec.cameras}")
    errors = StepErrors(cfg.steps, [v.name for v in models.variants])
    energy: tuple[EnergyFigures, int] | None = None
    scored = sum(len(s.t0s) - s.warmup for s in segments)
    bar = tqdm(total=scored, desc=desc, unit="window", disable=not progress)
    for group in _batches(segments, spec.segments_per_batch):
        data = _load_batch(group, models, spec.cameras, cfg)
        per_camera = [predict(models, data[c], cfg.steps) for c in range(2)]
        preds = {name: [p[name] for p in per_camera] for name in per_camera[0]}
        score(errors, preds, data, group, cfg)
        if energy is None:
            energy = _energy(models, data[0], len(group[0].t0s), cfg, spec)
        bar.update(sum(len(s.t0s) - s.warmup for s in group))
    bar.close()
    assert energy is not None
    return _Scored(errors, *energy, len(segments), scored)


def _project_run(spec: EvalSpec, models: TrainedModels, progress: bool) -> dict[str, Any]:
    """The project protocol's report (module docstring)."""
    s = _project_scores(spec, models, models.window, progress, "evaluate")
    report = build_report(
        [v.name for v in models.variants], models, s.errors, s.energy, cameras=spec.cameras,
        recordings=s.recordings, scored_windows=s.scored_windows,
        warmup_windows=spec.warmup_windows,
    )  # fmt: skip
    report["setup"]["energy_windows"] = s.energy_windows
    report["setup"]["protocol"] = "project"
    return report


def rate_sweep(
    spec: EvalSpec,
    models: TrainedModels,
    factors: Sequence[int],
    *,
    base: dict[str, Any] | None = None,
    progress: bool = True,
) -> list[dict[str, Any]]:
    """The hybrid and the held ANN with the ANN ``factor`` times slower (windows of ``factor``
    times the trained window's bins; the SNN runs on until the next initialisation), under
    the project protocol: per factor, the ANN's rate and each model's 2D error (overall and
    per step) and power at the output rate. Factor 1 is read from ``base``, the project
    protocol's report of the same ``spec``, when given."""
    names = [n for n in SWEPT if n in models.networks]
    subset = replace(models, networks={n: models.networks[n] for n in names})
    out = []
    for factor in factors:
        if factor == 1 and base is not None:
            out.append(_sweep_point(base, names, models.window))
            continue
        cfg = replace(
            models.window, steps=models.window.steps * factor,
            stride_us=models.window.stride_us * factor,
        )  # fmt: skip
        s = _project_scores(spec, subset, cfg, progress, f"rate sweep: windows x{factor}")
        point: dict[str, Any] = {
            "ann_rate_hz": 1e6 / cfg.stride_us, "window_ms": cfg.stride_us / 1000,
            "recordings": s.recordings, "scored_windows_per_camera": s.scored_windows,
            "models": {},
        }  # fmt: skip
        for n in names:
            per_step = [
                float(v / c) if c else None
                for v, c in zip(s.errors.sum2d[n], s.errors.n2d[n], strict=True)
            ]
            total = s.errors.n2d[n].sum()
            point["models"][n] = {
                "mpjpe2d_px": float(s.errors.sum2d[n].sum() / total) if total else None,
                "mpjpe2d_px_per_step": per_step,
                "power_w": s.energy.power_w[n],
            }
        out.append(point)
    return out


def _sweep_point(report: dict[str, Any], names: Sequence[str], cfg: WindowConfig) -> dict[str, Any]:
    setup = report["setup"]
    keys = ("mpjpe2d_px", "mpjpe2d_px_per_step", "power_w")
    return {
        "ann_rate_hz": 1e6 / cfg.stride_us, "window_ms": cfg.stride_us / 1000,
        "recordings": setup["recordings"],
        "scored_windows_per_camera": setup["scored_windows_per_camera"],
        "models": {n: {k: report["models"][n][k] for k in keys} for n in names},
    }  # fmt: skip


def _paper_run(spec: EvalSpec, models: TrainedModels, progress: bool) -> dict[str, Any]:
    """The paper protocol's report (:mod:`hybridpose.evaluate.paper`)."""
    cfg = paper.paper_window(models.window, models.config.sensor_size)
    segments = paper.paper_segments(
        _test_files(spec, models.preset), cfg, spec.windows_per_recording, spec.seed
    )
    if not segments:
        raise EvaluationError(f"{spec.data_dir}: no test windows of the paper protocol")
    errors = StepErrors(cfg.steps, [v.name for v in models.variants])
    energy: EnergyFigures | None = None
    energy_windows = 0
    scored = sum(len(s.t0s) for s in segments)
    bar = tqdm(total=scored, desc="evaluate (paper protocol)", unit="window",
               disable=not progress)  # fmt: skip
    for group in _batches(segments, spec.segments_per_batch):
        data = []
        for seg in group:
            with Recording(seg.path) as rec:
                check_sensor(rec, models.config)
                data.append(paper.load_paper_segment(rec, rec.labels(), paper.CAMERA, seg, cfg))
        preds = predict(models, data, cfg.steps, decode=argmax_heatmaps)
        paper.score_paper(errors, preds, data, cfg)
        if energy is None:
            energy, energy_windows = _energy(models, data, len(group[0].t0s), cfg, spec)
        bar.update(sum(len(s.t0s) for s in group))
    bar.close()
    assert energy is not None
    report = build_report(
        [v.name for v in models.variants], models, errors, energy, cameras=(paper.CAMERA,),
        recordings=len(segments), scored_windows=scored, warmup_windows=0,
    )  # fmt: skip
    assert cfg.crop is not None
    report["setup"].update(
        energy_windows=energy_windows, protocol="paper", crop=list(cfg.crop),
        decoding="integer argmax", label_time="bin start",
    )  # fmt: skip
    return report


def _batches(segments: Sequence[Segment], per_batch: int) -> Iterator[list[Segment]]:
    """Groups of at most ``per_batch`` segments of equal length (to be stacked)."""
    for start in range(0, len(segments), per_batch):
        group = segments[start : start + per_batch]
        for length in sorted({len(s.t0s) for s in group}):
            yield [s for s in group if len(s.t0s) == length]


def _energy(
    models: TrainedModels, data: list[SegmentData], length: int, cfg: WindowConfig,
    spec: EvalSpec,
) -> tuple[EnergyFigures, int]:  # fmt: skip
    """Operation counts on the first segments: at least ``spec.energy_windows`` windows."""
    k = max(1, math.ceil(spec.energy_windows / length))
    return measure_energy(models, data[:k], cfg, EnergyModel()), min(k, len(data)) * length


def evaluate(spec: EvalSpec, *, progress: bool = True) -> dict[str, Any]:
    """Evaluate the checkpoints of ``spec.checkpoints`` on the test subjects of
    ``spec.data_dir`` under ``spec.protocols``; writes ``report.json``, ``report.md`` and the
    plots to ``spec.out_dir`` and returns the report.

    Raises:
        DeviceError: ``spec.device`` is not a device of this machine (before any work).
        EvaluationError: no protocol, or no test windows.
    """
    resolve_device(spec.device)
    if not spec.protocols or len(set(spec.protocols)) != len(spec.protocols):
        raise EvaluationError(
            f"protocols must be distinct names of {PROTOCOLS}, got {spec.protocols}"
        )
    models = load_models(spec.checkpoints)
    for m in models.modules():
        m.to(spec.device).eval()
    runs = {"project": _project_run, "paper": _paper_run}
    reports = [runs[p](spec, models, progress) for p in spec.protocols]
    report = reports[0]
    if len(reports) > 1:
        report["paper_protocol"] = {k: reports[1][k] for k in ("models", "ratios", "setup")}
    if spec.rate_factors:
        base = report if spec.protocols[0] == "project" else None
        report["rate_sweep"] = rate_sweep(
            spec, models, spec.rate_factors, base=base, progress=progress
        )
    spec.out_dir.mkdir(parents=True, exist_ok=True)
    write_text_atomic(spec.out_dir / "report.json", json.dumps(report, indent=2) + "\n")
    write_text_atomic(spec.out_dir / "report.md", report_markdown(report))
    plot_report(report, spec.out_dir)
    return report


__all__ = [
    "PROTOCOLS",
    "SWEPT",
    "EnergyFigures",
    "EvalSpec",
    "Protocol",
    "evaluate",
    "measure_energy",
    "predict",
    "rate_sweep",
]
