"""The paper's three training stages and the CNN-RNN baseline's (settings in
:mod:`hybridpose.recipes`).

* ``ann``: the U-Net's heatmaps against Gaussian targets at the frame's end (its state heads
  are not trained here).
* ``snn``: the SNN alone from an empty state over one window of bins, mean per-step MSE.
* ``hybrid``: the ANN's U-Net loaded from the ``ann`` checkpoint and frozen; the SNN and the
  state heads trained on ``(1 - w) * mean per-step MSE + w * state-consistency MSE``, the second
  term being the MSE between the SNN's membranes after the window's last bin and the states
  the ANN predicts from the next window's frame (the target is detached: the SNN's dynamics
  are pulled towards the ANN's initialisation, not the other way round). The ablations are
  configuration: ``state_init=False`` (membranes start at zero; no state heads, no state
  loss) and ``delta_readout=False``.
* ``hybrid_rnn``: the same with the ConvGRU (:mod:`hybridpose.nn.rnn`) in the SNN's place,
  its hidden states in the membranes' (the state loss compares them); fresh, never from an SNN.

Everything a run needs to continue is in its checkpoint (:mod:`hybridpose.checkpoint`),
written atomically after every epoch and when the run is stopped (Ctrl-C or SIGTERM: the
current optimiser step finishes first). ``resume=True`` continues from it and gives exactly
the result of an uninterrupted run with the same seed: the model is initialised from the seed,
each epoch's windows are a pure function of ``(seed, epoch)`` (:func:`epoch_windows`), the
checkpoint records how many batches of the current epoch are done, and nothing else is random.

Several processes (GPUs or nodes, launched with ``torchrun``) train one model with
:class:`~torch.nn.parallel.DistributedDataParallel`: every process takes its share of each
global batch; rank 0 writes the checkpoint and the logs. CPU processes use the gloo backend.
"""

from __future__ import annotations

import csv
import io
import math
import os
import resource
import signal
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from types import FrameType
from typing import Any, Literal, NamedTuple

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import Tensor, nn
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader
from tqdm import tqdm

from hybridpose.atomic import write_text_atomic
from hybridpose.checkpoint import (
    build_model,
    load_checkpoint,
    load_model,
    save_checkpoint,
)
from hybridpose.data import (
    Item,
    WindowConfig,
    WindowDataset,
    WindowIndex,
    collate_windows,
    index_windows_cached,
    recording_files,
    shuffled,
    shuffled_by_file,
    split_by_subject,
)
from hybridpose.devices import resolve_device
from hybridpose.energy import SpikeRecorder
from hybridpose.errors import HybridPoseError
from hybridpose.heatmaps import decode_heatmaps
from hybridpose.nn.ann import ANN
from hybridpose.nn.hybrid import AnyHybrid, HybridPose
from hybridpose.nn.presets import ModelConfig, preset
from hybridpose.nn.snn import SNN, SNNState, fan_out
from hybridpose.recipes import ANN_INITIALISED, Stage, StageConfig, recipe, window_to_dict
from hybridpose.variants import hybrid_checkpoint_name

LOG_EVERY = 10
"""Optimiser steps between rows of the CSV log (and an epoch's last step always)."""

LOG_FIELDS = (
    "epoch", "step", "samples", "loss", "heatmap_loss", "state_loss", "synop_rate", "mpjpe_px",
    "lr", "elapsed_s", "samples_per_s", "peak_memory_mb",
)  # fmt: skip
"""The CSV log's columns. ``samples_per_s``: this process's training samples per second since
the previous row (the global batch's share times the processes, so the run's throughput);
``peak_memory_mb``: the device's peak allocated memory (CUDA) or the process's peak resident
memory (CPU) so far."""

Precision = Literal["fp32", "bf16"]
PRECISIONS: tuple[Precision, ...] = ("fp32", "bf16")


class TrainingError(HybridPoseError, ValueError):
    """A training run cannot start or continue (bad data directory, checkpoint clash...)."""


class TrainingInterrupted(HybridPoseError):
    """The run was stopped by a signal; its checkpoint holds everything done so far."""

    def __init__(self, checkpoint: Path) -> None:
        super().__init__(f"stopped; progress saved in {checkpoint} (continue with --resume)")
        self.checkpoint = checkpoint


@dataclass(frozen=True)
class TrainSpec:
    """One training run.

    Attributes:
        stage: ``ann``, ``snn``, ``hybrid`` or ``hybrid_rnn``.
        preset: the model preset and recipe.
        data_dir: directory of recording files (all ``*.h5``; the training subjects are used).
        out_dir: where the checkpoint ``NAME.pt`` and the log ``NAME_log.csv`` go.
        optim: the stage's settings (the recipe's, with overrides applied).
        model: the networks (the preset's, with ablation switches applied).
        window: how windows are cut.
        name: the checkpoint name (default: the stage, or the ablation's name).
        seed: initialisation and data order.
        workers: DataLoader worker processes (0 = load in the training process).
        device: torch device.
        precision: ``bf16`` runs the forward pass and the loss under ``torch.autocast`` in
            bfloat16 (the LIF's membranes stay float32; no loss scaling is needed); ``fp32``
            runs everything in float32. A run setting, like ``workers``: a checkpoint resumes
            in either.
        channels_last: keep the networks' weights and the ANN's frames in channels-last memory
            (faster convolutions on GPUs with tensor cores; a run setting too).
        ann_checkpoint: the hybrid stages' ANN (default ``out_dir/ann.pt``).
        init_snn: optionally start the hybrid's SNN from this SNN checkpoint, or its SNN and
            state heads from this hybrid checkpoint.
        subjects: training subjects.
        max_windows: use at most this many training windows (a deterministic sample; for
            quick runs and tests).
    """

    stage: Stage
    preset: str
    data_dir: Path
    out_dir: Path
    optim: StageConfig
    model: ModelConfig
    window: WindowConfig
    name: str
    seed: int = 0
    workers: int = 0
    device: str = "cpu"
    precision: Precision = "fp32"
    channels_last: bool = False
    ann_checkpoint: Path | None = None
    init_snn: Path | None = None
    subjects: tuple[int, ...] = field(default_factory=tuple)
    max_windows: int | None = None

    def __post_init__(self) -> None:
        if self.precision not in PRECISIONS:
            raise TrainingError(
                f"unknown precision {self.precision!r}; choose one of {list(PRECISIONS)}"
            )

    @property
    def checkpoint_path(self) -> Path:
        return self.out_dir / f"{self.name}.pt"

    @property
    def log_path(self) -> Path:
        return self.out_dir / f"{self.name}_log.csv"


def make_spec(
    stage: Stage,
    preset_name: str,
    data_dir: str | os.PathLike[str],
    out_dir: str | os.PathLike[str],
    *,
    state_init: bool = True,
    delta_readout: bool = True,
    name: str | None = None,
    seed: int = 0,
    workers: int = 0,
    device: str = "cpu",
    precision: Precision = "fp32",
    channels_last: bool = False,
    ann_checkpoint: str | os.PathLike[str] | None = None,
    init_snn: str | os.PathLike[str] | None = None,
    max_windows: int | None = None,
    **overrides: Any,
) -> TrainSpec:
    """A :class:`TrainSpec` from a preset, with ablation switches and stage overrides
    (``lr``, ``batch_size``, ``epochs``, ``samples_per_epoch``, ``state_loss_weight``,
    ``spike_loss_weight``, ``grad_clip``; None = the recipe's)."""
    model = preset(preset_name)
    rec = recipe(preset_name)
    if stage != "hybrid" and (not state_init or not delta_readout):
        raise TrainingError("--no-state-init and --no-delta are ablations of the hybrid stage")
    model = replace(
        model,
        snn=replace(model.snn, delta_readout=delta_readout),
        hybrid=replace(model.hybrid, state_init=state_init),
    )
    optim = rec.stage(stage).replace(**overrides)
    if not state_init:
        optim = replace(optim, state_loss_weight=0.0)  # no state heads to train
    if name is None:
        name = hybrid_checkpoint_name(state_init, delta_readout) if stage == "hybrid" else stage
    out = Path(out_dir)
    return TrainSpec(
        stage=stage,
        preset=preset_name,
        data_dir=Path(data_dir),
        out_dir=out,
        optim=optim,
        model=model,
        window=rec.window,
        name=name,
        seed=seed,
        workers=workers,
        device=device,
        precision=precision,
        channels_last=channels_last,
        ann_checkpoint=Path(ann_checkpoint) if ann_checkpoint is not None else None,
        init_snn=Path(init_snn) if init_snn is not None else None,
        subjects=rec.train_subjects,
        max_windows=max_windows,
    )


# ------------------------------------------------------------------------------ data


def training_windows(spec: TrainSpec) -> list[WindowIndex]:
    """The windows of the training subjects (a deterministic sample of ``max_windows``)."""
    every = recording_files(spec.data_dir)
    if not every:
        raise TrainingError(f"{spec.data_dir}: no recording files (*.h5)")
    files = split_by_subject(every, spec.subjects)
    if not files:
        raise TrainingError(
            f"{spec.data_dir}: no recordings of the training subjects {list(spec.subjects)}"
        )
    windows = index_windows_cached(files, spec.window, spec.out_dir)
    if not windows:
        raise TrainingError(
            f"{spec.data_dir}: no training windows (recordings too short, too few events "
            f"before a window, or no labels)"
        )
    if spec.max_windows is not None and spec.max_windows < len(windows):
        windows = sorted(shuffled(windows, spec.seed, -1)[: spec.max_windows], key=_window_key)
    return windows


def _window_key(w: WindowIndex) -> tuple[str, int, int]:
    return (w.path, w.camera, w.t0_us)


def epoch_windows(
    windows: Sequence[WindowIndex], seed: int, epoch: int, samples: int | None
) -> list[WindowIndex]:
    """The windows of one epoch, in order: a pure function of ``(seed, epoch)``.

    With ``samples`` set, a uniform sample of that many windows (a fresh one each epoch);
    then the order visits a few recordings at a time (:func:`shuffled_by_file`) so that a
    reader keeps its files open.
    """
    chosen = list(windows)
    if samples is not None and samples < len(chosen):
        chosen = shuffled(chosen, seed, epoch)[:samples]
    return shuffled_by_file(chosen, seed, epoch)


def _dataset(spec: TrainSpec, windows: Sequence[WindowIndex]) -> WindowDataset:
    paths = sorted({w.path for w in windows})
    if spec.stage == "ann":
        return WindowDataset(paths, spec.window, windows, labels_at="start", with_bins=False)
    return WindowDataset(
        paths,
        spec.window,
        windows,
        with_next_frame=spec.stage in ANN_INITIALISED and spec.optim.state_loss_weight > 0,
    )


# ------------------------------------------------------------------------------ modules


class AnnHeatmaps(nn.Module):
    """The ANN stage's module: frame -> heatmaps (the state heads are not run)."""

    def __init__(self, ann: ANN) -> None:
        super().__init__()
        self.ann = ann

    def forward(self, frame: Tensor) -> Tensor:
        heatmaps, _ = self.ann.features(frame)
        return heatmaps


@contextmanager
def _synop_rate(network: nn.Module, zero: Tensor) -> Iterator[Callable[[], Tensor]]:
    """Record the spikes of ``network`` (an SNN; anything else fires nothing) in a ``with``
    block; the yielded function gives the fraction of its synapses that carried a spike per
    step (the spikes weighted by their fan-out, :func:`~hybridpose.nn.snn.fan_out`) as a
    tensor with gradients."""
    if not isinstance(network, SNN):
        yield lambda: zero
        return
    weights = fan_out(network.config)
    with SpikeRecorder(network, differentiable=True) as recorder:
        yield lambda: recorder.rate(weights)


class SnnFromZero(nn.Module):
    """The SNN stage's module: bins -> per-step heatmaps from an empty state, and the SNN's
    synaptic activity (a tensor with gradients, for the activity penalty)."""

    def __init__(self, snn: SNN) -> None:
        super().__init__()
        self.snn = snn

    def forward(self, bins: Tensor) -> tuple[Tensor, Tensor]:
        _, b, _, h, w = bins.shape
        zero = self.snn.zero_state(b, h, w, bins.device, bins.dtype)
        with _synop_rate(self.snn, bins.new_zeros(())) as rate:
            heatmaps: Tensor = self.snn(bins, zero)[0]
        return heatmaps, rate()


class HybridWindow(nn.Module):
    """The hybrid stages' module: one window -> per-step heatmaps, the state loss and the
    recurrent network's synaptic activity (zero for the ConvGRU)."""

    def __init__(self, hybrid: AnyHybrid) -> None:
        super().__init__()
        self.hybrid = hybrid

    def forward(
        self, frame: Tensor, bins: Tensor, next_frame: Tensor | None
    ) -> tuple[Tensor, Tensor, Tensor]:
        zero = bins.new_zeros(())
        with _synop_rate(self.hybrid.snn, zero) as rate:
            _, heatmaps, state = self.hybrid(frame, bins)
        if next_frame is None:
            return heatmaps, zero, rate()
        with torch.no_grad():
            _, target = self.hybrid.ann(next_frame)
        return heatmaps, state_consistency_loss(state, target), rate()


def state_consistency_loss(state: SNNState, target: SNNState) -> Tensor:
    """Mean over the spiking layers of the MSE between membranes (the readout excluded)."""
    losses = [F.mse_loss(v, t.detach()) for v, t in zip(state[:-1], target[:-1], strict=True)]
    return torch.stack(losses).mean()


def _freeze_ann(hybrid: AnyHybrid, train_state_heads: bool) -> None:
    """Freeze the ANN's U-Net (and the state heads unless ``train_state_heads``)."""
    for name, param in hybrid.ann.named_parameters():
        param.requires_grad_(train_state_heads and name.startswith("state_heads."))


def _set_modes(model: nn.Module, freeze_batchnorm: bool = False) -> None:
    """Training mode, but the hybrid's frozen U-Net in eval mode (its state heads train), and
    with ``freeze_batchnorm`` the recurrent network's BatchNorm normalising by its running
    statistics (which then stay as they are)."""
    model.train()
    if isinstance(model, HybridPose):
        model.ann.eval()
        if model.config.state_init:
            model.ann.state_heads.train()
    if freeze_batchnorm:
        recurrent = model.snn if isinstance(model, HybridPose) else model
        for module in recurrent.modules():
            if isinstance(module, nn.modules.batchnorm._BatchNorm):
                module.eval()


# ------------------------------------------------------------------------------ distributed


@dataclass(frozen=True)
class _World:
    rank: int = 0
    size: int = 1

    @property
    def main(self) -> bool:
        return self.rank == 0


def _init_distributed(device: str) -> _World:
    """Join the process group that ``torchrun`` describes in the environment, if any."""
    size = int(os.environ.get("WORLD_SIZE", "1"))
    if size <= 1:
        return _World()
    if not dist.is_initialized():
        backend = "nccl" if device.startswith("cuda") else "gloo"
        dist.init_process_group(backend)
    return _World(dist.get_rank(), dist.get_world_size())


def _device(name: str, world: _World) -> torch.device:
    """The torch device; under torchrun, bare ``cuda`` is the GPU of ``LOCAL_RANK``."""
    if world.size > 1 and name == "cuda":
        device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
        torch.cuda.set_device(device)
        return device
    return torch.device(name)


# ------------------------------------------------------------------------------ stopping


class _StopFlag:
    """Ctrl-C / SIGTERM ask the run to stop after the current step; a second Ctrl-C aborts."""

    def __init__(self) -> None:
        self.requested = False

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        if self.requested and signum == signal.SIGINT:
            raise KeyboardInterrupt
        self.requested = True

    @contextmanager
    def installed(self) -> Iterator[_StopFlag]:
        import threading

        if threading.current_thread() is not threading.main_thread():
            yield self  # signals are delivered to the main thread only
            return
        previous = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM)}
        for s in previous:
            signal.signal(s, self._handle)
        try:
            yield self
        finally:
            for s, handler in previous.items():
                signal.signal(s, handler)


def _any_rank(flag: bool, world: _World, device: torch.device) -> bool:
    if world.size == 1:
        return flag
    t = torch.tensor([1.0 if flag else 0.0], device=device)
    dist.all_reduce(t)
    return bool(t.item() > 0)


# ------------------------------------------------------------------------------ logging


class _Log:
    """The CSV log (and TensorBoard when installed), rewritten atomically on resume."""

    def __init__(self, path: Path, keep_until_step: int | None, tensorboard: bool) -> None:
        self.path = path
        rows: list[dict[str, str]] = []
        if keep_until_step is not None and path.exists():
            with path.open(newline="") as f:
                rows = [r for r in csv.DictReader(f) if int(r["step"]) <= keep_until_step]
        self.rows = rows
        self._flush()
        self.writer: Any = None
        if tensorboard:
            try:
                from torch.utils.tensorboard import SummaryWriter
            except ImportError:
                pass
            else:
                self.writer = SummaryWriter(str(path.parent / "tensorboard" / path.stem))

    def _flush(self) -> None:
        buffer = io.StringIO()
        writer = csv.DictWriter(buffer, LOG_FIELDS)
        writer.writeheader()
        writer.writerows(self.rows)
        write_text_atomic(self.path, buffer.getvalue())

    def add(self, row: dict[str, float | int]) -> None:
        self.rows.append({k: _fmt(row[k]) for k in LOG_FIELDS})
        self._flush()
        if self.writer is not None:
            for key in ("loss", "heatmap_loss", "state_loss", "mpjpe_px", "lr"):
                self.writer.add_scalar(f"train/{key}", row[key], row["step"])

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()


def _fmt(value: float | int) -> str:
    if isinstance(value, int):
        return str(value)
    return f"{value:.6g}"


# ------------------------------------------------------------------------------ the run


class _StepLosses(NamedTuple):
    """One optimiser step's figures."""

    loss: float
    heatmap: float
    state: float
    synops: float  # the fraction of the SNN's synapses carrying a spike per step (0: no SNN)
    error: float  # sum of joint errors (px) at the last label
    joints: int  # how many joints the error covers


@dataclass
class _Running:
    """Sums since the last log row."""

    loss: float = 0.0
    heatmap: float = 0.0
    state: float = 0.0
    synops: float = 0.0
    error: float = 0.0
    error_n: int = 0
    steps: int = 0

    def add(self, losses: _StepLosses) -> None:
        self.loss += losses.loss
        self.heatmap += losses.heatmap
        self.state += losses.state
        self.synops += losses.synops
        self.error += losses.error
        self.error_n += losses.joints
        self.steps += 1

    def row(self) -> dict[str, float]:
        n = max(self.steps, 1)
        return {
            "loss": self.loss / n,
            "heatmap_loss": self.heatmap / n,
            "state_loss": self.state / n,
            "synop_rate": self.synops / n,
            "mpjpe_px": self.error / self.error_n if self.error_n else math.nan,
        }


def _batch_error(heatmaps: Tensor, joints2d: Tensor, valid: Tensor) -> tuple[float, int]:
    """Sum of joint errors (px) at the last label and how many joints it covers."""
    pred = decode_heatmaps(heatmaps[-1] if heatmaps.dim() == 5 else heatmaps)
    target = joints2d[-1]
    mask = valid[-1]
    err = torch.linalg.vector_norm(pred - target, dim=-1)[mask]
    return float(err.sum()), int(err.numel())


def _initial_model(spec: TrainSpec) -> nn.Module:
    torch.manual_seed(spec.seed)
    model = build_model(spec.stage, spec.model)
    if isinstance(model, ANN):  # the ANN stage trains the U-Net; the heads wait for the hybrid
        model.state_heads.requires_grad_(False)
    if isinstance(model, HybridPose):
        ann_path = spec.ann_checkpoint or spec.out_dir / "ann.pt"
        ann, data = load_model(ann_path)
        if not isinstance(ann, ANN) or data["stage"] != "ann":
            raise TrainingError(f"{ann_path}: not an ANN checkpoint (stage {data['stage']!r})")
        if ann.config != model.ann.config:
            raise TrainingError(f"{ann_path}: its ANN does not match the preset {spec.preset!r}")
        # the U-Net from the checkpoint; the state heads keep their fresh initialisation
        unet = {k: v for k, v in ann.state_dict().items() if not k.startswith("state_heads.")}
        missing, _ = model.ann.load_state_dict(unet, strict=False)
        if any(not k.startswith("state_heads.") for k in missing):
            raise TrainingError(f"{ann_path}: incomplete ANN weights")
        if spec.init_snn is not None:
            _init_snn(model, spec.init_snn, spec.stage)
        _freeze_ann(model, train_state_heads=spec.model.hybrid.state_init)
    return model


def _init_snn(model: AnyHybrid, path: Path, stage: str) -> None:
    """Start the hybrid's SNN from an SNN checkpoint, or its SNN and state heads from a hybrid
    checkpoint; the networks must be the preset's (a tau of other bins would load silently)."""
    if not isinstance(model.snn, SNN):
        raise TrainingError(f"init_snn: the {stage} stage trains no SNN")
    source, _ = load_model(path)
    heads: nn.Module | None = None
    if isinstance(source, HybridPose) and isinstance(source.snn, SNN):
        heads = source.ann.state_heads
        source = source.snn
    if not isinstance(source, SNN):
        raise TrainingError(f"{path}: neither an SNN nor a hybrid checkpoint")
    theirs = asdict(replace(source.config, delta_readout=model.snn.config.delta_readout))
    differ = [f"{k} {v} against {getattr(model.snn.config, k)}" for k, v in theirs.items()
              if v != getattr(model.snn.config, k)]  # fmt: skip
    if differ:
        raise TrainingError(
            f"{path}: its SNN is not this preset's ({', '.join(differ)}; a network for other "
            "bins must be retimed first, hybridpose.retime)"
        )
    model.snn.load_state_dict(source.state_dict())
    if heads is not None:
        model.ann.state_heads.load_state_dict(heads.state_dict())


def _stage_module(model: nn.Module) -> nn.Module:
    if isinstance(model, ANN):
        return AnnHeatmaps(model)
    if isinstance(model, SNN):
        return SnnFromZero(model)
    if isinstance(model, HybridPose):
        return HybridWindow(model)
    raise TypeError(type(model).__name__)


def _payload(
    spec: TrainSpec,
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    epoch: int,
    batch: int,
    step: int,
    complete: bool,
    metrics: dict[str, float],
    n_windows: int,
    sums: dict[str, dict[str, float]] | None = None,
    elapsed_s: float = 0.0,
) -> dict[str, Any]:
    return {
        "name": spec.name,
        "stage": spec.stage,
        "preset": spec.preset,
        "model_config": spec.model.to_dict(),
        "window_config": window_to_dict(spec.window),
        "stage_config": {**asdict(spec.optim), "seed": spec.seed},
        "model": model.state_dict(),
        "optimizer": optimizer.state_dict(),
        "epoch": epoch,
        "batch": batch,
        "step": step,
        "complete": complete,
        "metrics": metrics,
        "train_windows": n_windows,
        "sums": sums,  # the log's and the epoch's running sums when stopped mid-epoch
        "elapsed_s": elapsed_s,
    }


def _check_resumable(spec: TrainSpec, data: dict[str, Any]) -> None:
    path = spec.checkpoint_path
    if data.get("stage") != spec.stage or data.get("name") != spec.name:
        raise TrainingError(f"{path}: written by another stage ({data.get('stage')!r})")
    if data.get("model_config") != spec.model.to_dict():
        raise TrainingError(f"{path}: written for another model configuration")
    stored = dict(data.get("stage_config", {}))
    stored.setdefault("spike_loss_weight", 0.0)  # checkpoints from before the penalty
    mine = {**asdict(spec.optim), "seed": spec.seed}
    keys = ("lr", "batch_size", "samples_per_epoch", "state_loss_weight", "spike_loss_weight",
            "grad_clip", "seed")  # fmt: skip
    for key in keys:
        if stored.get(key) != mine[key]:
            raise TrainingError(
                f"{path}: written with {key}={stored.get(key)!r}, this run has {mine[key]!r}; "
                "an exact resume needs the same settings (only --epochs may grow)"
            )
    if data.get("optimizer") is None:
        raise TrainingError(f"{path}: a weights-only checkpoint cannot be resumed")


@dataclass
class _RunState:
    """Where the run is and what it has summed so far: what a checkpoint records."""

    epoch: int = 0
    batch: int = 0  # batches of ``epoch`` done
    step: int = 0
    metrics: dict[str, float] = field(default_factory=dict)
    started: float = field(default_factory=time.perf_counter)  # shifted back by earlier runs
    resumed_sums: dict[str, dict[str, Any]] | None = None  # a stopped run's, until used
    running: _Running = field(default_factory=_Running)
    epoch_sum: _Running = field(default_factory=_Running)

    @classmethod
    def restore(cls, existing: dict[str, Any] | None) -> _RunState:
        """A fresh run's state, or the one ``existing`` (a checkpoint) records."""
        if existing is None:
            return cls()
        batch = int(existing["batch"])
        return cls(
            epoch=int(existing["epoch"]),
            batch=batch,
            step=int(existing["step"]),
            metrics=dict(existing["metrics"]),
            started=time.perf_counter() - float(existing.get("elapsed_s", 0.0)),
            resumed_sums=existing.get("sums") if batch > 0 else None,
        )

    def elapsed(self) -> float:
        return time.perf_counter() - self.started

    def start_epoch(self) -> None:
        """Reset the sums, but continue those of a run stopped mid-epoch."""
        if self.resumed_sums is not None:
            self.running = _Running(**self.resumed_sums["running"])
            self.epoch_sum = _Running(**self.resumed_sums["epoch"])
            self.resumed_sums = None
        else:
            self.running, self.epoch_sum = _Running(), _Running()


@dataclass(frozen=True)
class _Context:
    """What stays fixed during a run."""

    spec: TrainSpec
    world: _World
    device: torch.device
    model: nn.Module
    module: nn.Module  # the stage module, wrapped for DDP when distributed
    params: list[nn.Parameter]
    optimizer: torch.optim.Optimizer
    windows: list[WindowIndex]
    log: _Log | None  # rank 0 only
    progress: bool


def train(
    spec: TrainSpec, *, resume: bool = False, progress: bool = True, tensorboard: bool = True
) -> Path:
    """Run (or continue) one training stage; returns the checkpoint's path.

    Raises:
        TrainingError: bad data, a checkpoint that exists without ``resume``, or one written
            with other settings.
        TrainingInterrupted: stopped by Ctrl-C or SIGTERM after saving the checkpoint.
        DeviceError: ``spec.device`` is not a device of this machine.
    """
    resolve_device(spec.device)  # a device this machine lacks: one clear line, before any work
    world = _init_distributed(spec.device)
    device = _device(spec.device, world)
    path = spec.checkpoint_path
    existing = _existing_checkpoint(spec, world, resume)
    if existing is not None and int(existing["epoch"]) >= spec.optim.epochs:
        return path  # already trained this far
    model, params, optimizer, windows = _prepare(spec, existing, device)
    module = _distributed(_stage_module(model), world, device)
    log = (
        _Log(spec.log_path, int(existing["step"]) if existing is not None else None, tensorboard)
        if world.main
        else None
    )
    ctx = _Context(spec, world, device, model, module, params, optimizer, windows, log, progress)
    run = _RunState.restore(existing)
    stop = _StopFlag()
    try:
        with stop.installed():
            while run.epoch < spec.optim.epochs:
                _run_epoch(ctx, run, stop)
    finally:
        if log is not None:
            log.close()
    if world.size > 1:
        dist.barrier()  # no process returns before rank 0's checkpoint is written
    return path


def _existing_checkpoint(spec: TrainSpec, world: _World, resume: bool) -> dict[str, Any] | None:
    """The checkpoint to continue (None for a fresh run), once it is known to fit ``spec``."""
    path = spec.checkpoint_path
    existing = load_checkpoint(path) if path.exists() else None
    if existing is not None and not resume:
        raise TrainingError(f"{path} exists: pass --resume to continue it, or remove it")
    if spec.optim.batch_size % world.size:
        raise TrainingError(
            f"batch size {spec.optim.batch_size} is not divisible by {world.size} processes"
        )
    if existing is not None:
        _check_resumable(spec, existing)
    return existing


def _prepare(
    spec: TrainSpec, existing: dict[str, Any] | None, device: torch.device
) -> tuple[nn.Module, list[nn.Parameter], torch.optim.Optimizer, list[WindowIndex]]:
    """The model (from the seed, then the checkpoint's weights), its trainable parameters,
    their optimiser and the training windows."""
    model = _initial_model(spec)
    windows = training_windows(spec)
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.Adam(params, lr=spec.optim.lr)
    if existing is not None:
        model.load_state_dict(existing["model"])
        optimizer.load_state_dict(existing["optimizer"])
    model.to(device)
    if spec.channels_last:
        model.to(memory_format=torch.channels_last)  # type: ignore[call-overload]
    _set_modes(model, spec.optim.freeze_batchnorm)
    return model, params, optimizer, windows


def _distributed(module: nn.Module, world: _World, device: torch.device) -> nn.Module:
    """``module`` wrapped in DDP when several processes train it."""
    if world.size <= 1:
        return module
    if device.type == "cuda":  # BatchNorm statistics over the global batch
        module = nn.SyncBatchNorm.convert_sync_batchnorm(module)  # type: ignore[no-untyped-call]
    return DistributedDataParallel(
        module, device_ids=[device.index] if device.type == "cuda" else None
    )


def _run_epoch(ctx: _Context, run: _RunState, stop: _StopFlag) -> None:
    """Train the rest of ``run.epoch`` and save the checkpoint.

    Raises:
        TrainingInterrupted: ``stop`` was requested (on any rank), after saving.
    """
    spec = ctx.spec
    order = epoch_windows(ctx.windows, spec.seed, run.epoch, spec.optim.samples_per_epoch)
    n_batches = len(order) // spec.optim.batch_size
    if n_batches == 0:
        raise TrainingError(
            f"{len(order)} training windows make no batch of {spec.optim.batch_size}"
        )
    dataset = _dataset(spec, order)
    loader = _epoch_loader(spec, dataset, ctx.world, run.batch, n_batches)
    bar = tqdm(
        total=n_batches,
        initial=run.batch,
        desc=f"{spec.name} epoch {run.epoch + 1}/{spec.optim.epochs}",
        unit="batch",
        disable=not (ctx.progress and ctx.world.main),
        dynamic_ncols=True,
    )
    run.start_epoch()
    if _run_batches(ctx, run, stop, loader, bar, n_batches):
        _save_progress(ctx, run, mid_epoch=True)
        bar.close()
        raise TrainingInterrupted(spec.checkpoint_path)
    bar.close()
    dataset.close()
    run.metrics = {f"train_{k}": v for k, v in run.epoch_sum.row().items()}
    run.epoch, run.batch = run.epoch + 1, 0
    _save_progress(ctx, run, mid_epoch=False)
    if _any_rank(stop.requested, ctx.world, ctx.device) and run.epoch < spec.optim.epochs:
        raise TrainingInterrupted(spec.checkpoint_path)


def _epoch_loader(
    spec: TrainSpec, dataset: WindowDataset, world: _World, first: int, n_batches: int
) -> DataLoader[Item]:
    """The loader of this process's share of the epoch's batches ``first..n_batches-1``."""
    size = spec.optim.batch_size
    local = size // world.size
    batches = [
        list(range(i * size + world.rank * local, i * size + (world.rank + 1) * local))
        for i in range(first, n_batches)
    ]
    return DataLoader(
        dataset,
        batch_sampler=batches,
        num_workers=spec.workers,
        collate_fn=collate_windows,
        multiprocessing_context="spawn" if spec.workers else None,
    )


def _run_batches(
    ctx: _Context,
    run: _RunState,
    stop: _StopFlag,
    loader: DataLoader[Item],
    bar: tqdm[Any],
    n_batches: int,
) -> bool:
    """Train on the loader's batches; True when stopped before the epoch's last one."""
    spec = ctx.spec
    last_row, since_row = time.perf_counter(), 0
    for items in loader:
        losses = _train_step(spec, ctx.module, ctx.optimizer, ctx.params, items, ctx.device)
        since_row += 1
        run.batch += 1
        run.step += 1
        run.running.add(losses)
        run.epoch_sum.add(losses)
        bar.update(1)
        bar.set_postfix(loss=f"{losses.loss:.3g}", px=f"{run.running.row()['mpjpe_px']:.2f}")
        if ctx.log is not None and (run.step % LOG_EVERY == 0 or run.batch == n_batches):
            ctx.log.add(
                {
                    "epoch": run.epoch,
                    "step": run.step,
                    "samples": run.step * spec.optim.batch_size,
                    **run.running.row(),
                    "lr": spec.optim.lr,
                    "elapsed_s": run.elapsed(),
                    "samples_per_s": since_row
                    * spec.optim.batch_size
                    / max(time.perf_counter() - last_row, 1e-9),
                    "peak_memory_mb": peak_memory_mb(ctx.device),
                }
            )
            run.running = _Running()
            last_row, since_row = time.perf_counter(), 0
        if _any_rank(stop.requested, ctx.world, ctx.device) and run.batch < n_batches:
            return True
    return False


def _save_progress(ctx: _Context, run: _RunState, *, mid_epoch: bool) -> None:
    """Write the checkpoint (rank 0 only); a mid-epoch one keeps the running sums."""
    if not ctx.world.main:
        return
    sums = {"running": asdict(run.running), "epoch": asdict(run.epoch_sum)} if mid_epoch else None
    complete = not mid_epoch and run.epoch >= ctx.spec.optim.epochs
    save_checkpoint(
        ctx.spec.checkpoint_path,
        _payload(
            ctx.spec, ctx.model, ctx.optimizer, run.epoch, run.batch, run.step, complete,
            run.metrics, len(ctx.windows), sums, run.elapsed(),
        ),
    )  # fmt: skip


def _losses(
    spec: TrainSpec, module: nn.Module, batch: dict[str, Tensor]
) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """The stage's forward pass: heatmaps, the heatmaps' MSE, the state loss and the synaptic
    activity (zero where the stage has none)."""
    target = batch["heatmaps"]
    state_loss = rate = target.new_zeros(())
    if spec.stage == "ann":
        heatmaps = module(batch["frame"])
        heatmap_loss = F.mse_loss(heatmaps, target[0])
    elif spec.stage == "snn":
        heatmaps, rate = module(batch["bins"])
        heatmap_loss = F.mse_loss(heatmaps, target)
    else:
        heatmaps, state_loss, rate = module(batch["frame"], batch["bins"], batch.get("next_frame"))
        heatmap_loss = F.mse_loss(heatmaps, target)
    return heatmaps, heatmap_loss, state_loss, rate


def peak_memory_mb(device: torch.device) -> float:
    """The device's peak allocated memory (CUDA), or the process's peak resident memory."""
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # kB on Linux


def _train_step(
    spec: TrainSpec,
    module: nn.Module,
    optimizer: torch.optim.Optimizer,
    params: list[nn.Parameter],
    items: dict[str, Tensor],
    device: torch.device,
) -> _StepLosses:
    """One optimiser step: the heatmaps' MSE, for the hybrids mixed with the state loss
    (``(1 - w) * heatmaps + w * state``), plus ``spike_loss_weight`` times the SNN's synaptic
    activity."""
    batch = {k: v.to(device) for k, v in items.items()}
    if spec.channels_last:
        batch = {
            k: v.contiguous(memory_format=torch.channels_last) if v.dim() == 4 else v
            for k, v in batch.items()
        }
    with torch.autocast(device.type, dtype=torch.bfloat16, enabled=spec.precision == "bf16"):
        heatmaps, heatmap_loss, state_loss, rate = _losses(spec, module, batch)
    w = spec.optim.state_loss_weight if spec.stage in ANN_INITIALISED else 0.0
    heatmaps = heatmaps.float()
    loss = (1.0 - w) * heatmap_loss + w * state_loss if w > 0 else heatmap_loss
    if spec.optim.spike_loss_weight > 0:
        loss = loss + spec.optim.spike_loss_weight * rate
    optimizer.zero_grad(set_to_none=True)
    loss.backward()  # type: ignore[no-untyped-call]
    if spec.optim.grad_clip is not None:
        nn.utils.clip_grad_norm_(params, spec.optim.grad_clip)
    optimizer.step()
    err, n = _batch_error(heatmaps.detach(), batch["joints2d"], batch["valid"])
    return _StepLosses(
        float(loss.detach()), float(heatmap_loss.detach()), float(state_loss.detach()),
        float(rate.detach()), err, n,
    )  # fmt: skip


def checkpoint_summary(path: str | os.PathLike[str]) -> str:
    """One line about a checkpoint: stage, progress, last metrics."""
    data = load_checkpoint(path)
    metrics = ", ".join(f"{k} {v:.4g}" for k, v in dict(data.get("metrics", {})).items())
    state = "complete" if data.get("complete") else f"epoch {data.get('epoch')} (in progress)"
    return f"{path}: {data['name']} ({data['stage']}, {data.get('preset')}), {state}; {metrics}"


__all__ = [
    "LOG_FIELDS",
    "PRECISIONS",
    "AnnHeatmaps",
    "HybridWindow",
    "Precision",
    "SnnFromZero",
    "TrainSpec",
    "TrainingError",
    "TrainingInterrupted",
    "checkpoint_summary",
    "epoch_windows",
    "make_spec",
    "peak_memory_mb",
    "state_consistency_loss",
    "train",
    "training_windows",
]
