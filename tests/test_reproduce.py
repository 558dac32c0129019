"""Tests of hybridpose.reproduce: the whole pipeline on a tiny preset, and resuming it.

A ``test`` preset (a tiny model on a 32x24 sensor, one training and one test subject, one
movement, a few optimiser steps per stage) is registered in the preset, recipe and simulation
tables for the duration of the test, so the real code path runs end to end in seconds.
"""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import pytest

import hybridpose.nn.presets as presets
import hybridpose.recipes as recipes
import hybridpose.synth.generate as generate
from hybridpose.checkpoint import load_checkpoint
from hybridpose.cli import main
from hybridpose.data import WindowConfig
from hybridpose.nn.ann import ANNConfig
from hybridpose.nn.presets import ModelConfig
from hybridpose.nn.snn import SNNConfig
from hybridpose.pretrained import ship
from hybridpose.recipes import Recipe, StageConfig
from hybridpose.reproduce import ReproduceSpec, reproduce
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
