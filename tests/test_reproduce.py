"""Tests of hybridpose.reproduce: the whole pipeline on a tiny preset, and resuming it.

A ``test`` preset (a tiny model on a 32x24 sensor, one training and one test subject, one
movement, a few optimiser steps per stage) is registered in the preset, recipe and simulation
tables for the duration of the test, so the real code path runs end to end in seconds.
"""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
import torch

import hybridpose.nn.presets as presets
import hybridpose.recipes as recipes
import hybridpose.reproduce as reproduce_module
import hybridpose.synth.generate as generate
from hybridpose.checkpoint import load_checkpoint
from hybridpose.cli import main
from hybridpose.data import WindowConfig
from hybridpose.evaluate import EvalSpec
from hybridpose.nn.ann import ANNConfig
from hybridpose.nn.presets import ModelConfig
from hybridpose.nn.snn import SNNConfig
from hybridpose.pretrained import ship
from hybridpose.recipes import Recipe, StageConfig
from hybridpose.reproduce import ReproduceSpec, reproduce
from hybridpose.train import TrainSpec
from hybridpose.trained import load_models
from hybridpose.variants import names as variant_names

MODEL = ModelConfig(
    name="test",
    sensor_size=(32, 24),
    input_size=(16, 16),
    ann=ANNConfig(in_channels=4, stem=4, widths=(4, 4, 4, 4)),
    snn=SNNConfig(widths=(2, 2, 2, 2)),
)
STAGE = StageConfig(lr=1e-3, batch_size=4, epochs=1, samples_per_epoch=8)
RECIPE = Recipe(
    window=WindowConfig(
        ann_events=50,
        ann_bins=2,
        bin_us=10_000,
        steps=3,
        stride_us=30_000,
        crop=(8, 4, 16, 16),
        cameras=(2, 3),
    ),
    ann=STAGE,
    snn=STAGE,
    hybrid=replace(STAGE, state_loss_weight=0.01),
    train_subjects=(1,),
    test_subjects=(13,),
    hybrid_from_snn=True,
    eval_windows_per_recording=2,
    energy_windows=2,
)


@pytest.fixture
def test_preset(monkeypatch: pytest.MonkeyPatch, one_thread: None) -> None:
    monkeypatch.setitem(presets.PRESETS, "test", MODEL)
    monkeypatch.setitem(recipes.RECIPES, "test", RECIPE)
    tiny = generate.PRESETS["tiny"]
    monkeypatch.setitem(
        generate.PRESETS, "default", replace(tiny, subjects=(1, 13), movements=(1,))
    )


def test_reproduce_end_to_end_and_resume(test_preset: None, tmp_path: Path) -> None:
    out = tmp_path / "run"
    messages: list[str] = []
    report = reproduce(ReproduceSpec("test", out, progress=False), log=messages.append)
    # the dataset at the preset's sensor size, one training and one test subject
    files = sorted(p.name for p in (out / "data").glob("*.h5"))
    assert files == ["S13_session1_mov1.h5", "S1_session1_mov1.h5"]
    # the stages, complete: the paper's three (the hybrid started from the snn stage), then
    # the CNN-RNN hybrid (the recipe has no settings of its own for it: the hybrid's)
    ckpt = out / "checkpoints"
    for stage in ("ann", "snn", "hybrid", "hybrid_rnn"):
        data = load_checkpoint(ckpt / f"{stage}.pt")
        assert data["complete"] is True and data["stage"] == stage
        assert data["model_config"] == MODEL.to_dict()
    assert load_checkpoint(ckpt / "hybrid_rnn.pt")["stage_config"]["state_loss_weight"] == 0.01
    assert [m.split("]")[0] for m in messages if "training the" in m] == [
        "[2/6", "[3/6", "[4/6", "[5/6",
    ]  # fmt: skip
    # the report: every model, written to disk as returned
    assert set(report["models"]) == set(variant_names())
    on_disk = json.loads((out / "report" / "report.json").read_text())
    assert on_disk == json.loads(json.dumps(report))
    assert report["setup"]["recordings"] == 1  # the test subject only
    assert report["setup"]["scored_windows_per_camera"] == 2
    for name in ("report.md", "error_vs_step.png", "error_vs_power.png"):
        assert (out / "report" / name).stat().st_size > 0
    timings = json.loads((out / "timings.json").read_text())
    phases = {
        "simulate", "train_ann", "train_snn", "train_hybrid", "train_hybrid_rnn", "evaluate",
    }  # fmt: skip
    assert set(timings) == phases | {"total"}
    assert timings["total"] == pytest.approx(sum(timings[p] for p in phases))
    # run again: everything is done, nothing is redone
    stamps = {p: p.stat().st_mtime_ns for p in ckpt.glob("*.pt")}
    messages.clear()
    again = reproduce(ReproduceSpec("test", out, progress=False), log=messages.append)
    assert again == on_disk
    assert sum("already trained" in m for m in messages) == 4
    assert any("up to date" in m for m in messages)
    assert {p: p.stat().st_mtime_ns for p in ckpt.glob("*.pt")} == stamps
    # a removed hybrid checkpoint is retrained, then the report is redone
    (ckpt / "hybrid.pt").unlink()
    messages.clear()
    reproduce(ReproduceSpec("test", out, progress=False), log=messages.append)
    assert any("training the hybrid stage" in m for m in messages)
    assert not any("evaluation: up to date" in m for m in messages)
    assert (out / "report" / "report.json").stat().st_mtime >= (ckpt / "hybrid.pt").stat().st_mtime


def test_reproduce_cli_refuses_unknown_preset(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["reproduce", "--preset", "nope", "--out", str(tmp_path)])
    assert exit_info.value.code == 2
    assert "invalid choice" in capsys.readouterr().err


def test_reproduce_trains_the_ablations_on_request(test_preset: None, tmp_path: Path) -> None:
    out = tmp_path / "run"
    report = reproduce(ReproduceSpec("test", out, progress=False, ablations=True), log=print)
    for name, state_init, delta in (
        ("hybrid_no_state_init", False, True),
        ("hybrid_no_delta", True, False),
    ):
        data = load_checkpoint(out / "checkpoints" / f"{name}.pt")
        assert data["complete"] is True and data["name"] == name
        assert data["model_config"]["hybrid"]["state_init"] is state_init
        assert data["model_config"]["snn"]["delta_readout"] is delta
        assert report["models"][name]["derived"] is False
    assert report["models"]["hybrid"]["derived"] is False
    timings = json.loads((out / "timings.json").read_text())
    assert {"train_hybrid_no_state_init", "train_hybrid_no_delta"} <= set(timings)
    # shipping the run keeps every trained checkpoint, the hybrids reading their U-Net from
    # ann.pt, and loads back to the same variants, none derived
    shipped = ship(out, dest=tmp_path / "shipped")
    stems = {"ann", "snn", "hybrid", "hybrid_no_state_init", "hybrid_no_delta", "hybrid_rnn"}
    assert {p.stem for p in shipped.glob("*.pt")} == stems
    for stem in stems - {"ann", "snn"}:
        assert load_checkpoint(shipped / f"{stem}.pt")["shared_ann"]["file"] == "ann.pt"
    assert "shared_ann" not in load_checkpoint(shipped / "snn.pt")
    assert list(load_models(shipped).networks) == list(report["models"])
    assert not any(load_models(shipped).derived.values())
    assert (shipped / "report.json").read_bytes() == (out / "report" / "report.json").read_bytes()


def test_a_retimed_recipe_starts_from_the_shipped_networks_retimed(
    test_preset: None, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # the "test" run shipped, then a recipe for bins 5x shorter retimed from it
    source = tmp_path / "run"
    reproduce(ReproduceSpec("test", source, progress=False), log=lambda _: None)
    shipped = ship(source, dest=tmp_path / "shipped")
    fast = replace(
        MODEL, name="test-fast", snn=replace(MODEL.snn, tau=15.0, readout_decay=0.8 ** (1 / 5))
    )
    window = replace(RECIPE.window, bin_us=2_000, steps=15)
    monkeypatch.setitem(presets.PRESETS, "test-fast", fast)
    monkeypatch.setitem(
        recipes.RECIPES,
        "test-fast",
        replace(
            RECIPE,
            window=window,
            hybrid=replace(RECIPE.hybrid, freeze_batchnorm=True),
            retimed_from="test",
            stages=("hybrid",),
            hybrid_from_snn=False,
        ),
    )
    asked: list[str] = []

    def shipped_dir(name: str) -> Path:
        asked.append(name)
        return shipped

    monkeypatch.setattr(reproduce_module, "pretrained_dir", shipped_dir)
    out = tmp_path / "fast"
    messages: list[str] = []
    report = reproduce(ReproduceSpec("test-fast", out, progress=False), log=messages.append)
    assert asked == ["test"]
    assert [m.split("]")[0] for m in messages if "training the" in m] == ["[2/3"]
    ckpt = out / "checkpoints"
    retimed = load_checkpoint(ckpt / "hybrid_retimed.pt")
    trained = load_checkpoint(ckpt / "hybrid.pt")
    source_snn = load_checkpoint(shipped / "snn.pt")
    for data in (load_checkpoint(ckpt / "ann.pt"), load_checkpoint(ckpt / "snn.pt"), trained):
        assert data["preset"] == "test-fast" and data["complete"] is True
        assert data["model_config"]["snn"]["tau"] == 15.0
        assert data["window_config"]["bin_us"] == 2_000 and data["window_config"]["steps"] == 15
    assert load_checkpoint(ckpt / "snn.pt")["retimed"]["factor"] == 5.0
    torch.testing.assert_close(
        load_checkpoint(ckpt / "snn.pt")["model"]["enc.conv.weight"],
        5 * source_snn["model"]["enc.conv.weight"],
    )
    # the hybrid stage started from the retimed hybrid (its SNN and state heads) and trained
    # with frozen BatchNorm statistics: those are the retimed ones still, the weights moved
    for key in ("snn.down1.bn.running_mean", "snn.down1.bn.running_var"):
        assert torch.equal(trained["model"][key], retimed["model"][key])
    assert not torch.equal(
        trained["model"]["snn.down1.conv.weight"], retimed["model"]["snn.down1.conv.weight"]
    )
    assert set(report["models"]) == set(variant_names()) - {"hybrid_rnn"}
    assert report["setup"]["steps_per_window"] == 15 and report["setup"]["output_rate_hz"] == 500.0


def test_the_run_settings_reach_every_stage_and_the_evaluation(
    test_preset: None, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    trained: list[TrainSpec] = []
    evaluated: list[EvalSpec] = []

    def fake_train(spec: TrainSpec, **_: Any) -> Path:
        trained.append(spec)
        spec.checkpoint_path.parent.mkdir(parents=True, exist_ok=True)
        spec.checkpoint_path.touch()
        return spec.checkpoint_path

    def fake_evaluate(spec: EvalSpec, **_: Any) -> dict[str, Any]:
        evaluated.append(spec)
        return {}

    simulated_on: list[str | None] = []
    real_simulate = generate.simulate_dataset

    def fake_simulate(*args: Any, device: str | None = None, **kwargs: Any) -> Any:
        simulated_on.append(device)  # the data itself is made by the compiled kernels
        return real_simulate(*args, **kwargs)

    monkeypatch.setattr(reproduce_module, "train", fake_train)
    monkeypatch.setattr(reproduce_module, "evaluate", fake_evaluate)
    monkeypatch.setattr(reproduce_module, "simulate_dataset", fake_simulate)
    spec = ReproduceSpec(
        "test", tmp_path / "run", progress=False, seed=3, device="meta", precision="bf16",
        channels_last=True, loader_workers=2,
    )  # fmt: skip
    reproduce(spec, log=lambda _: None)
    # the simulation runs on the device too, except on the CPU (where numba is faster)
    assert simulated_on == ["meta"]
    assert reproduce_module._sim_device(replace(spec, device="cpu")) is None
    assert [s.stage for s in trained] == ["ann", "snn", "hybrid", "hybrid_rnn"]
    for s in trained:
        assert (s.device, s.precision, s.channels_last, s.workers, s.seed) == (
            "meta", "bf16", True, 2, 3,
        )  # fmt: skip
    assert [e.device for e in evaluated] == ["meta"]
