"""Tests of hybridpose.train: the stages on tiny recordings, exact resume, errors, DDP (the
``hybrid_rnn`` stage's own tests are in tests/test_rnn.py; its exact resume is here).

Everything runs on a tiny model (16x16 input, a few channels) and a few tiny recording files
written here with :class:`~hybridpose.io.recording.RecordingWriter`, so that the whole file
takes well under a minute on 2 CPU cores (most of it starting the two DDP processes).
"""

from __future__ import annotations

import csv
import os
import pickle
import signal
import socket
import subprocess
import sys
import warnings
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from tiny_run import MODEL  # tests/tiny_run.py: the tiny networks' configuration
from torch import Tensor, nn

import hybridpose.train as train_module
from hybridpose.checkpoint import build_model, load_checkpoint, load_model, save_checkpoint
from hybridpose.checkpoint import weights_only as strip_optimizer
from hybridpose.data import WindowConfig, WindowIndex
from hybridpose.events import make_events
from hybridpose.io.recording import CameraCalibration, RecordingMeta, RecordingWriter
from hybridpose.nn.ann import ANN, ANNConfig
from hybridpose.nn.hybrid import HybridConfig, HybridPose
from hybridpose.nn.presets import ModelConfig
from hybridpose.nn.snn import SNN, SNNConfig, SNNState
from hybridpose.recipes import Stage, StageConfig
from hybridpose.train import (
    LOG_FIELDS,
    TrainingError,
    TrainingInterrupted,
    TrainSpec,
    epoch_windows,
    state_consistency_loss,
    train,
    training_windows,
)

pytestmark = pytest.mark.usefixtures("one_thread")  # tests/conftest.py

SENSOR = (24, 24)
F_PX, C_PX, DIST_MM = 20.0, 12.0, 1000.0
# world (X, Y, 0) mm -> pixel (12 + X / 50, 12 + Y / 50)
P = np.array(
    [[F_PX, 0, C_PX, C_PX * DIST_MM], [0, F_PX, C_PX, C_PX * DIST_MM], [0, 0, 1, DIST_MM]],
    dtype=np.float64,
)
DURATION_US = 1_500_000
EVENTS_PER_CAMERA = 3000
SUBJECTS = {"S1_mov1.h5": 1, "S2_mov1.h5": 2, "S13_mov1.h5": 13}
TRAIN_SUBJECTS = (1, 2)

WINDOW = WindowConfig(
    ann_events=100,
    ann_bins=2,
    bin_us=10_000,
    steps=3,
    stride_us=30_000,
    crop=(4, 4, 16, 16),
    cameras=(2, 3),
)
OPTIM = StageConfig(lr=1e-3, batch_size=4, epochs=2, samples_per_epoch=16, state_loss_weight=0.1)


def joints_at(t_us: np.ndarray, phase: float) -> np.ndarray:
    """13 joints on a circle of radius 150 mm turning once a second, in the plane Z = 0."""
    t = np.asarray(t_us, dtype=np.float64)[:, None] / 1e6
    angle = 2 * np.pi * (np.arange(13) / 13 + t) + phase
    out = np.zeros((len(t), 13, 3))
    out[..., 0] = 150 * np.cos(angle)
    out[..., 1] = 150 * np.sin(angle)
    return out


def write_recording(path: Path, subject: int) -> None:
    rng = np.random.default_rng(subject)
    cams = [CameraCalibration(P, np.array([0.0, 0.0, -DIST_MM]), f"cam{i}") for i in range(4)]
    meta = RecordingMeta("test", subject=subject, session=1, movement=1)
    with RecordingWriter(path, SENSOR, cams, meta) as w:
        for cam in (2, 3):
            n = EVENTS_PER_CAMERA
            t = np.sort(rng.integers(0, DURATION_US, n))
            x = rng.integers(0, SENSOR[0], n)
            y = rng.integers(0, SENSOR[1], n)
            p = rng.integers(0, 2, n)
            w.append_events(cam, make_events(x, y, t, p))
        label_t = np.arange(0, DURATION_US + 1, 10_000, dtype=np.int64)  # 100 Hz
        w.write_labels(label_t, joints_at(label_t, subject).astype(np.float32))


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    directory = tmp_path_factory.mktemp("recordings")
    for name, subject in SUBJECTS.items():
        write_recording(directory / name, subject)
    return directory


def make_spec(
    stage: Stage,
    data_dir: Path,
    out_dir: Path,
    *,
    model: ModelConfig = MODEL,
    name: str | None = None,
    **optim: Any,
) -> TrainSpec:
    return TrainSpec(
        stage=stage,
        preset="test",
        data_dir=data_dir,
        out_dir=out_dir,
        optim=replace(OPTIM, **optim),
        model=model,
        window=WINDOW,
        name=name or stage,
        seed=7,
        subjects=TRAIN_SUBJECTS,
    )


def run(spec: TrainSpec, *, resume: bool = False) -> Path:
    return train(spec, resume=resume, progress=False, tensorboard=False)


@pytest.fixture(scope="module")
def ann_checkpoint(data_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One trained ANN (2 epochs of 4 batches) for the hybrid stage."""
    return run(make_spec("ann", data_dir, tmp_path_factory.mktemp("ann")))


def read_log(path: Path) -> tuple[list[str], list[dict[str, str]]]:
    with path.open(newline="") as f:
        reader = csv.DictReader(f)
        rows = list(reader)
        return list(reader.fieldnames or []), rows


def assert_same(a: Any, b: Any, where: str = "") -> None:
    """Exact equality of nested dicts, lists and tensors (tensors with torch.equal)."""
    if isinstance(a, Tensor):
        assert isinstance(b, Tensor), where
        assert a.dtype == b.dtype and torch.equal(a, b), where
    elif isinstance(a, dict):
        assert isinstance(b, dict) and a.keys() == b.keys(), where
        for key in a:
            assert_same(a[key], b[key], f"{where}/{key}")
    elif isinstance(a, list | tuple):
        assert isinstance(b, list | tuple) and len(a) == len(b), where
        for i, (x, y) in enumerate(zip(a, b, strict=True)):
            assert_same(x, y, f"{where}[{i}]")
    else:
        assert a == b, where


# ------------------------------------------------------------------------------ the stages


def test_training_windows_use_the_training_subjects_only(data_dir: Path, tmp_path: Path) -> None:
    windows = training_windows(make_spec("ann", data_dir, tmp_path))
    assert {Path(w.path).name for w in windows} == {"S1_mov1.h5", "S2_mov1.h5"}
    assert {w.camera for w in windows} == {2, 3}
    assert all(w.t0_us % WINDOW.stride_us == 0 for w in windows)
    # 100 of 3000 uniform events over 1.5 s take ~50 ms; the last window ends by 1.5 s
    assert 2 * 2 * 40 <= len(windows) <= 2 * 2 * 49
    sample = training_windows(replace(make_spec("ann", data_dir, tmp_path), max_windows=10))
    assert len(sample) == 10 and set(sample) <= set(windows)
    assert sample == sorted(sample, key=lambda w: (w.path, w.camera, w.t0_us))


def check_log(path: Path, steps: list[tuple[int, int]], batch_size: int, lr: float) -> None:
    fields, rows = read_log(path)
    assert fields == list(LOG_FIELDS)
    assert [(int(r["epoch"]), int(r["step"])) for r in rows] == steps
    for r in rows:
        assert int(r["samples"]) == int(r["step"]) * batch_size
        assert float(r["lr"]) == lr
        for key in ("loss", "heatmap_loss", "state_loss", "mpjpe_px", "elapsed_s"):
            assert np.isfinite(float(r[key])), key
        # the process's peak resident memory holds at least torch's own ~100 MB
        assert 0 < float(r["samples_per_s"]) < np.inf and float(r["peak_memory_mb"]) > 100
        assert float(r["loss"]) > 0


def test_ann_stage_writes_checkpoint_and_log(
    data_dir: Path, ann_checkpoint: Path, tmp_path: Path
) -> None:
    assert ann_checkpoint.name == "ann.pt"
    check_log(ann_checkpoint.parent / "ann_log.csv", [(0, 4), (1, 8)], 4, 1e-3)
    model, data = load_model(ann_checkpoint)
    assert type(model) is ANN and not model.training
    assert ModelConfig.from_dict(data["model_config"]) == MODEL
    assert model.config == MODEL.ann and model.snn_config == MODEL.snn
    assert (data["stage"], data["name"], data["preset"]) == ("ann", "ann", "test")
    assert (data["epoch"], data["batch"], data["step"], data["complete"]) == (2, 0, 8, True)
    assert data["stage_config"]["lr"] == 1e-3 and data["stage_config"]["seed"] == 7
    assert data["train_windows"] == len(training_windows(make_spec("ann", data_dir, tmp_path)))
    assert set(data["metrics"]) == {
        "train_loss",
        "train_heatmap_loss",
        "train_state_loss",
        "train_synop_rate",
        "train_mpjpe_px",
    }
    assert data["metrics"]["train_state_loss"] == 0.0  # no state loss outside the hybrid
    assert data["metrics"]["train_synop_rate"] == 0.0  # and no spikes
    # the U-Net trained; the state heads (not run in this stage) kept their initialisation
    torch.manual_seed(7)
    fresh = build_model("ann", MODEL)
    trained = model.state_dict()
    for key, value in fresh.state_dict().items():
        if key.startswith("state_heads."):
            assert torch.equal(trained[key], value), key
    assert not torch.equal(trained["head.weight"], fresh.state_dict()["head.weight"])


def test_ann_log_rows_every_ten_steps_and_at_epoch_ends(data_dir: Path, tmp_path: Path) -> None:
    spec = make_spec("ann", data_dir, tmp_path, epochs=2, samples_per_epoch=48)  # 12 batches
    run(spec)
    check_log(spec.log_path, [(0, 10), (0, 12), (1, 20), (1, 24)], 4, 1e-3)


def test_snn_stage_writes_checkpoint_and_log(data_dir: Path, tmp_path: Path) -> None:
    spec = make_spec("snn", data_dir, tmp_path, epochs=1, lr=5e-4)
    path = run(spec)
    assert path == tmp_path / "snn.pt"
    check_log(tmp_path / "snn_log.csv", [(0, 4)], 4, 5e-4)
    model, data = load_model(path)
    assert type(model) is SNN and model.config == MODEL.snn
    assert ModelConfig.from_dict(data["model_config"]) == MODEL
    assert (data["stage"], data["epoch"], data["step"], data["complete"]) == ("snn", 1, 4, True)
    torch.manual_seed(7)
    fresh = build_model("snn", MODEL).state_dict()
    changed = [k for k, v in model.state_dict().items() if not torch.equal(v, fresh[k])]
    assert "head.weight" in changed
    assert 0.0 < data["metrics"]["train_synop_rate"] < 1.0


@pytest.mark.parametrize("stage", ["snn", "hybrid"])
def test_spike_loss_weight_lowers_the_synaptic_activity(
    data_dir: Path, ann_checkpoint: Path, tmp_path: Path, stage: Stage
) -> None:
    """The activity penalty: the loss is the heatmaps' (and state) loss plus the weight times
    the logged synaptic activity, and training with it spikes less than without it."""
    weight = 0.5

    def last_row(w: float) -> dict[str, float]:
        spec = make_spec(
            stage, data_dir, tmp_path / f"w{w}", epochs=3, lr=1e-2, state_loss_weight=0.0,
            spike_loss_weight=w,
        )  # fmt: skip
        spec = replace(spec, ann_checkpoint=ann_checkpoint)
        run(spec)
        rows = read_log(spec.log_path)[1]
        return {k: float(v) for k, v in rows[-1].items()}

    plain, penalised = last_row(0.0), last_row(weight)
    assert plain["loss"] == pytest.approx(plain["heatmap_loss"], rel=1e-5)
    extra = penalised["loss"] - penalised["heatmap_loss"]
    assert extra == pytest.approx(weight * penalised["synop_rate"], rel=1e-3)
    assert penalised["synop_rate"] < 0.5 * plain["synop_rate"]


def unet_keys(state: dict[str, Tensor]) -> list[str]:
    return [k for k in state if not k.startswith("state_heads.")]


@pytest.mark.parametrize("state_init", [True, False])
def test_hybrid_stage_freezes_the_unet(
    data_dir: Path, ann_checkpoint: Path, tmp_path: Path, state_init: bool
) -> None:
    model_config = replace(MODEL, hybrid=HybridConfig(state_init=state_init))
    spec = replace(
        make_spec(
            "hybrid",
            data_dir,
            tmp_path,
            model=model_config,
            name=None if state_init else "hybrid_no_state_init",
            epochs=1,
            state_loss_weight=0.1 if state_init else 0.0,
        ),
        ann_checkpoint=ann_checkpoint if state_init else None,
    )
    if not state_init:  # the default ANN: out_dir/ann.pt
        (tmp_path / "ann.pt").write_bytes(ann_checkpoint.read_bytes())
    path = run(spec)
    assert path.name == ("hybrid.pt" if state_init else "hybrid_no_state_init.pt")
    fields, rows = read_log(spec.log_path)
    assert fields == list(LOG_FIELDS) and len(rows) == 1
    assert (float(rows[0]["state_loss"]) > 0) == state_init
    model, data = load_model(path)
    assert type(model) is HybridPose and model.config == model_config.hybrid
    assert ModelConfig.from_dict(data["model_config"]) == model_config
    assert data["stage"] == "hybrid"

    ann, _ = load_model(ann_checkpoint)
    ann_state = ann.state_dict()
    hybrid_ann = model.ann.state_dict()
    keys = unet_keys(ann_state)
    assert len(keys) > 10
    for key in keys:
        assert torch.equal(hybrid_ann[key], ann_state[key]), key
    # the SNN trained
    torch.manual_seed(7)
    fresh = build_model("hybrid", model_config)
    assert isinstance(fresh, HybridPose)
    fresh_snn = fresh.snn.state_dict()
    changed = [k for k, v in model.snn.state_dict().items() if not torch.equal(v, fresh_snn[k])]
    assert "head.weight" in changed and "enc.conv.weight" in changed
    # the state heads train with the state loss, and are frozen (and never run) without it
    heads = {k: v for k, v in hybrid_ann.items() if k.startswith("state_heads.")}
    fresh_heads = fresh.ann.state_dict()
    assert heads
    unchanged = [k for k, v in heads.items() if torch.equal(v, fresh_heads[k])]
    if state_init:
        assert "state_heads.enc.0.weight" not in unchanged
        assert "state_heads.up3.4.weight" not in unchanged
    else:
        assert unchanged == list(heads)


# ------------------------------------------------------------------------------ resume


def run_interrupted(spec: TrainSpec, monkeypatch: pytest.MonkeyPatch, after: int) -> None:
    """Run ``spec`` and send SIGINT to this process right after the ``after``-th step."""
    real = train_module._train_step
    calls = 0

    def step_then_interrupt(*args: Any, **kwargs: Any) -> train_module._StepLosses:
        nonlocal calls
        out = real(*args, **kwargs)
        calls += 1
        if calls == after:
            os.kill(os.getpid(), signal.SIGINT)
        return out

    with monkeypatch.context() as m:
        m.setattr(train_module, "_train_step", step_then_interrupt)
        with pytest.raises(TrainingInterrupted) as info:
            run(spec)
    assert info.value.checkpoint == spec.checkpoint_path
    assert calls == after  # the run stopped right after the step that was interrupted


MEASURED = ("elapsed_s", "samples_per_s", "peak_memory_mb")
"""The log's columns that measure the run (time, memory), not the training."""


def log_without_time(path: Path) -> list[dict[str, str]]:
    return [{k: v for k, v in r.items() if k not in MEASURED} for r in read_log(path)[1]]


def resume_specs(
    stage: Stage, data_dir: Path, root: Path, ann: Path
) -> tuple[TrainSpec, TrainSpec, TrainSpec]:
    """Three identical specs (2 epochs of 4 batches) writing to three directories."""
    specs = [
        replace(make_spec(stage, data_dir, root / d), ann_checkpoint=ann)
        for d in ("whole", "epoch", "mid")
    ]
    return specs[0], specs[1], specs[2]


@pytest.mark.parametrize("stage", ["ann", "snn", "hybrid", "hybrid_rnn"])
def test_resume_is_exact(
    stage: Stage,
    data_dir: Path,
    ann_checkpoint: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    whole, by_epoch, mid = resume_specs(stage, data_dir, tmp_path, ann_checkpoint)
    run(whole)
    # (a) one epoch, then resume with epochs=2
    first = run(replace(by_epoch, optim=replace(by_epoch.optim, epochs=1)))
    partial = load_checkpoint(first)
    assert (partial["epoch"], partial["batch"], partial["complete"]) == (1, 0, True)
    run(by_epoch, resume=True)
    # (b) stopped by Ctrl-C after step 6 of 8 (the second step of the second epoch)
    handler = signal.getsignal(signal.SIGINT)
    run_interrupted(mid, monkeypatch, after=6)
    assert signal.getsignal(signal.SIGINT) is handler  # the run restored the handler
    stopped = load_checkpoint(mid.checkpoint_path)
    assert (stopped["epoch"], stopped["batch"], stopped["step"]) == (1, 2, 6)
    assert stopped["complete"] is False
    run(mid, resume=True)

    reference = load_checkpoint(whole.checkpoint_path)
    assert reference["step"] == 8 and reference["complete"] is True
    for spec in (by_epoch, mid):
        data = load_checkpoint(spec.checkpoint_path)
        assert_same(data["model"], reference["model"], "model")
        assert_same(data["optimizer"], reference["optimizer"], "optimizer")
        for key in ("epoch", "batch", "step", "complete", "train_windows"):
            assert data[key] == reference[key], key
    # a resumed run that ended at an epoch boundary reproduces the log and the metrics
    assert log_without_time(by_epoch.log_path) == log_without_time(whole.log_path)
    assert load_checkpoint(by_epoch.checkpoint_path)["metrics"] == reference["metrics"]


def test_resume_mid_epoch_reproduces_log_and_metrics(
    data_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    whole = make_spec("ann", data_dir, tmp_path / "whole")
    mid = make_spec("ann", data_dir, tmp_path / "mid")
    run(whole)
    run_interrupted(mid, monkeypatch, after=2)
    run(mid, resume=True)
    reference = load_checkpoint(whole.checkpoint_path)
    resumed = load_checkpoint(mid.checkpoint_path)
    assert_same(resumed["model"], reference["model"], "model")  # the weights are exact
    assert log_without_time(mid.log_path) == log_without_time(whole.log_path)
    assert resumed["metrics"] == reference["metrics"]


def test_resume_of_a_checkpoint_from_before_the_activity_penalty(
    data_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A run stopped by an earlier version (no spike_loss_weight in its settings, no synop
    sums) resumes as one trained without the penalty."""
    whole = make_spec("snn", data_dir, tmp_path / "whole", epochs=1)
    mid = make_spec("snn", data_dir, tmp_path / "mid", epochs=1)
    run(whole)
    run_interrupted(mid, monkeypatch, after=2)
    old = load_checkpoint(mid.checkpoint_path)
    del old["stage_config"]["spike_loss_weight"]
    for sums in old["sums"].values():
        del sums["synops"]
    save_checkpoint(mid.checkpoint_path, old)
    run(mid, resume=True)
    assert_same(
        load_checkpoint(mid.checkpoint_path)["model"],
        load_checkpoint(whole.checkpoint_path)["model"],
    )


def test_resume_of_a_complete_run_changes_nothing(
    data_dir: Path, ann_checkpoint: Path, tmp_path: Path
) -> None:
    spec = make_spec("ann", data_dir, tmp_path)
    (tmp_path / "ann.pt").write_bytes(ann_checkpoint.read_bytes())
    (tmp_path / "ann_log.csv").write_bytes((ann_checkpoint.parent / "ann_log.csv").read_bytes())
    run(spec, resume=True)
    assert (tmp_path / "ann.pt").read_bytes() == ann_checkpoint.read_bytes()
    assert log_without_time(spec.log_path) == log_without_time(
        ann_checkpoint.parent / "ann_log.csv"
    )


# ------------------------------------------------------------------------------ errors


def test_errors(data_dir: Path, ann_checkpoint: Path, tmp_path: Path) -> None:
    spec = make_spec("ann", data_dir, tmp_path)
    (tmp_path / "ann.pt").write_bytes(ann_checkpoint.read_bytes())
    with pytest.raises(TrainingError, match="exists"):
        run(spec)
    with pytest.raises(TrainingError, match="lr="):
        run(replace(spec, optim=replace(spec.optim, lr=2e-3)), resume=True)
    with pytest.raises(TrainingError, match="seed="):
        run(replace(spec, seed=8), resume=True)
    with pytest.raises(TrainingError, match=r"spike_loss_weight=0\.0, this run has 0\.1"):
        run(replace(spec, optim=replace(spec.optim, spike_loss_weight=0.1)), resume=True)
    with pytest.raises(TrainingError, match="another model configuration"):
        run(replace(spec, model=replace(MODEL, snn=SNNConfig(widths=(2, 2, 2, 3)))), resume=True)
    with pytest.raises(TrainingError, match="another stage"):
        run(replace(spec, stage="snn"), resume=True)
    save_checkpoint(spec.checkpoint_path, strip_optimizer(load_checkpoint(ann_checkpoint)))
    with pytest.raises(TrainingError, match="weights-only"):
        run(spec, resume=True)

    with pytest.raises(FileNotFoundError):
        run(make_spec("ann", tmp_path / "missing", tmp_path / "out"))
    (tmp_path / "empty").mkdir()
    with pytest.raises(TrainingError, match="no recording files"):
        run(make_spec("ann", tmp_path / "empty", tmp_path / "out2"))
    with pytest.raises(TrainingError, match="training subjects"):
        run(replace(make_spec("ann", data_dir, tmp_path / "out3"), subjects=(5,)))
    with pytest.raises(TrainingError, match="no batch of 4"):
        run(replace(make_spec("ann", data_dir, tmp_path / "out4"), max_windows=3))
    with pytest.raises(FileNotFoundError):
        run(make_spec("hybrid", data_dir, tmp_path / "no_ann"))
    snn = tmp_path / "snn.pt"
    save_checkpoint(
        snn,
        {"stage": "snn", "model_config": MODEL.to_dict(), "model": MODEL.build_snn().state_dict()},
    )
    with pytest.raises(TrainingError, match="not an ANN checkpoint"):
        run(replace(make_spec("hybrid", data_dir, tmp_path / "x"), ann_checkpoint=snn))


# ------------------------------------------------------------------------------ pieces


def spy_on_forward(monkeypatch: pytest.MonkeyPatch) -> list[tuple[torch.dtype, bool]]:
    """Record, for every training step, the heatmaps' dtype and whether the network's first
    convolution held its weights in channels-last memory."""
    seen: list[tuple[torch.dtype, bool]] = []
    real = train_module._losses

    def spy(spec: TrainSpec, module: nn.Module, batch: dict[str, Tensor]) -> Any:
        out = real(spec, module, batch)
        conv = next(m for m in module.modules() if isinstance(m, nn.Conv2d))
        seen.append((out[0].dtype, conv.weight.is_contiguous(memory_format=torch.channels_last)))
        return out

    monkeypatch.setattr(train_module, "_losses", spy)
    return seen


def test_bf16_precision_runs_the_forward_pass_under_autocast(
    data_dir: Path, ann_checkpoint: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    seen = spy_on_forward(monkeypatch)
    path = run(replace(make_spec("ann", data_dir, tmp_path / "bf16", epochs=1), precision="bf16"))
    assert seen == [(torch.bfloat16, False)] * 4  # the U-Net's output: the autocast's dtype
    data = load_checkpoint(path)
    assert all(v.dtype == torch.float32 for v in data["model"].values() if v.is_floating_point())
    check_log(path.parent / "ann_log.csv", [(0, 4)], 4, 1e-3)
    seen.clear()
    run(make_spec("ann", data_dir, tmp_path / "fp32", epochs=1))
    assert seen == [(torch.float32, False)] * 4
    # the SNN stages run too: the LIF integrates the autocast's bfloat16 currents in float32
    for stage in ("snn", "hybrid"):
        spec = make_spec(stage, data_dir, tmp_path / stage, epochs=1)
        spec = replace(spec, precision="bf16", ann_checkpoint=ann_checkpoint)
        check_log(run(spec).parent / f"{stage}_log.csv", [(0, 4)], 4, 1e-3)


def test_channels_last_trains_the_same_network(
    data_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    seen = spy_on_forward(monkeypatch)
    spec = make_spec("ann", data_dir, tmp_path / "nchw", epochs=1)
    reference = load_checkpoint(run(spec))["model"]
    assert seen == [(torch.float32, False)] * 4
    seen.clear()
    path = run(replace(spec, out_dir=tmp_path / "nhwc", channels_last=True))
    assert seen == [(torch.float32, True)] * 4
    model = load_checkpoint(path)["model"]
    # the same arithmetic up to the convolutions' summation order, over 4 Adam steps
    for key, value in reference.items():
        assert torch.allclose(model[key], value, atol=1e-5), key


def test_an_unknown_precision_is_refused(data_dir: Path, tmp_path: Path) -> None:
    with pytest.raises(TrainingError, match="unknown precision 'fp16'; choose one of"):
        replace(make_spec("ann", data_dir, tmp_path), precision="fp16")  # type: ignore[arg-type]


def test_state_consistency_loss_known_answer() -> None:
    state_values = [float(i) for i in range(10)]
    target_values = [float(i) + 0.5 * (i % 3) for i in range(9)] + [100.0]
    state = SNNState(*(torch.full((2, 3, 4, 4), v, requires_grad=True) for v in state_values))
    target = SNNState(*(torch.full((2, 3, 4, 4), v, requires_grad=True) for v in target_values))
    loss = state_consistency_loss(state, target)
    # per layer (0.5 * (i % 3))^2 for i = 0..8: three each of 0, 0.25 and 1; the readout is out
    assert loss.item() == pytest.approx((3 * 0.25 + 3 * 1.0) / 9, rel=1e-6)
    loss.backward()  # type: ignore[no-untyped-call]
    assert all(t.grad is None for t in target)  # the target is detached
    assert state.enc.grad is not None and state.readout.grad is None
    # d/dv mean((v - t)^2) over 96 values, averaged over 9 layers: 2 (v - t) / 96 / 9
    expected = 2 * (1.0 - 1.5) / 96 / 9
    torch.testing.assert_close(state.down1.grad, torch.full((2, 3, 4, 4), expected))
    # layers of different shapes: each layer's MSE weighs the same
    mixed = SNNState(*(torch.zeros(1, 1, 2**i % 5 + 1, 3) for i in range(10)))
    ones = SNNState(*(torch.ones_like(t) * (2.0 if i == 0 else 0.0) for i, t in enumerate(mixed)))
    assert state_consistency_loss(mixed, ones).item() == pytest.approx(4.0 / 9)


def fake_windows(files: int, per_file: int) -> list[WindowIndex]:
    return [
        WindowIndex(f"f{i}.h5", 2 + k % 2, 30_000 * k)
        for i in range(files)
        for k in range(per_file)
    ]


def test_epoch_windows_deterministic_sample_and_permutation() -> None:
    windows = fake_windows(20, 10)
    a = epoch_windows(windows, seed=3, epoch=0, samples=None)
    assert a == epoch_windows(windows, seed=3, epoch=0, samples=None)
    assert sorted(a, key=str) == sorted(windows, key=str) and len(a) == len(windows)
    assert a != windows
    assert a != epoch_windows(windows, seed=3, epoch=1, samples=None)
    assert a != epoch_windows(windows, seed=4, epoch=0, samples=None)
    s0 = epoch_windows(windows, seed=3, epoch=0, samples=37)
    s1 = epoch_windows(windows, seed=3, epoch=1, samples=37)
    assert len(s0) == len(s1) == 37
    assert len(set(s0)) == 37 and set(s0) <= set(windows)
    assert s0 == epoch_windows(windows, seed=3, epoch=0, samples=37)
    assert set(s0) != set(s1)  # a fresh sample each epoch
    # more samples than windows: all of them
    assert sorted(epoch_windows(windows, 3, 0, 500), key=str) == sorted(windows, key=str)
    assert epoch_windows([], 3, 0, None) == []


# ------------------------------------------------------------------------------ configuration


def test_ann_config_refuses_fewer_than_4_down_blocks() -> None:
    # the state heads read the decoder at scale 8, which 3 down blocks do not produce
    with pytest.raises(ValueError, match="at least 4 down blocks"):
        ANNConfig(in_channels=4, stem=4, widths=(4, 4, 4))


def test_hybrid_steps_do_not_warn(data_dir: Path, ann_checkpoint: Path, tmp_path: Path) -> None:
    spec = replace(
        make_spec("hybrid", data_dir, tmp_path, epochs=1, samples_per_epoch=8),
        ann_checkpoint=ann_checkpoint,
    )
    warn_always = torch.is_warn_always_enabled()
    torch.set_warn_always(True)  # torch warns once per process otherwise
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            run(spec)
    finally:
        torch.set_warn_always(warn_always)
    assert load_checkpoint(spec.checkpoint_path)["step"] == 2
    assert [str(w.message) for w in caught if "requires_grad" in str(w.message)] == []


# ------------------------------------------------------------------------------ DDP


CHILD = """
import pickle, sys
import torch
import torch.distributed as dist
import hybridpose.train

torch.set_num_threads(1)
with open(sys.argv[1], "rb") as f:
    spec = pickle.load(f)
try:
    hybridpose.train.train(spec, progress=False, tensorboard=False)
finally:
    if dist.is_initialized():
        dist.barrier()  # gloo aborts a process that tears down while its peer still talks
        dist.destroy_process_group()
"""


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def run_distributed(spec: TrainSpec, world_size: int) -> None:
    """``train(spec)`` in ``world_size`` processes on gloo, as torchrun would start them."""
    spec_file = spec.out_dir.with_name(spec.out_dir.name + "_spec.pkl")
    spec_file.write_bytes(pickle.dumps(spec))
    port = free_port()
    children = []
    for rank in range(world_size):
        env = {
            **os.environ,
            "MASTER_ADDR": "127.0.0.1",
            "MASTER_PORT": str(port),
            "RANK": str(rank),
            "LOCAL_RANK": str(rank),
            "WORLD_SIZE": str(world_size),
            "OMP_NUM_THREADS": "1",
            "NUMBA_NUM_THREADS": "1",
        }
        children.append(
            subprocess.Popen(
                [sys.executable, "-c", CHILD, str(spec_file)],
                env=env,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                text=True,
            )
        )
    try:
        outputs = [child.communicate(timeout=120)[0] for child in children]
    finally:
        for child in children:
            if child.poll() is None:
                child.kill()
                child.wait()
    for rank, (child, out) in enumerate(zip(children, outputs, strict=True)):
        assert child.returncode == 0, f"rank {rank} failed:\n{out[-3000:]}"


def test_distributed_ann_matches_one_process(data_dir: Path, tmp_path: Path) -> None:
    """2 processes x 2 windows give the weights of 1 process x 4 windows (gradients are
    averaged over the ranks)."""
    single = make_spec("ann", data_dir, tmp_path / "single", epochs=1)
    double = make_spec("ann", data_dir, tmp_path / "ddp", epochs=1)
    run(single)
    run_distributed(double, 2)
    a = load_checkpoint(single.checkpoint_path)
    b = load_checkpoint(double.checkpoint_path)
    assert b["step"] == a["step"] == 4 and b["complete"] is True
    assert a["model"].keys() == b["model"].keys()
    for key, value in a["model"].items():
        torch.testing.assert_close(b["model"][key], value, rtol=0, atol=1e-6, msg=key)
    torch.manual_seed(7)
    fresh = build_model("ann", MODEL).state_dict()
    for key in ("head.weight", "stem.0.0.weight", "ups.3.conv.1.0.weight"):
        # trained: 4 Adam steps of lr 1e-3 move weights by far more than the tolerance
        assert (b["model"][key] - fresh[key]).abs().max() > 1e-4, key
    _, rows = read_log(double.log_path)
    assert [int(r["step"]) for r in rows] == [4]
    assert float(rows[0]["loss"]) > 0


def test_distributed_ann_stage_runs(data_dir: Path, tmp_path: Path) -> None:
    spec = make_spec("ann", data_dir, tmp_path / "ddp", epochs=1, samples_per_epoch=8)
    run_distributed(spec, 2)
    assert load_checkpoint(spec.checkpoint_path)["step"] == 2
