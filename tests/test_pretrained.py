"""Tests of the shipped weights (``cpu``, and ``cpu-1khz`` and ``cpu-sparse`` made from it): they
load, match the preset, and the cpu set predicts sensibly on a recording simulated here with a
seed and a subject the training never saw."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import asdict, replace
from pathlib import Path

import pytest
import torch

from hybridpose.checkpoint import load_checkpoint, load_model, unshared
from hybridpose.energy import model_info
from hybridpose.evaluate import EvalSpec, evaluate, report_markdown
from hybridpose.nn.ann import ANN
from hybridpose.nn.hybrid import HybridPose
from hybridpose.nn.presets import PRESETS
from hybridpose.nn.snn import SNN
from hybridpose.pretrained import pretrained_dir, shipped_checkpoints
from hybridpose.recipes import RECIPES, window_from_dict
from hybridpose.synth.generate import PRESETS as SIM_PRESETS
from hybridpose.synth.generate import simulate_dataset
from hybridpose.trained import load_models
from hybridpose.variants import names as variant_names


@pytest.fixture(scope="module")
def shipped() -> Path:
    return pretrained_dir("cpu")


def test_shipped_checkpoints_load_and_match_the_preset(shipped: Path) -> None:
    preset = PRESETS["cpu"]
    for name, kind in (("ann", ANN), ("snn", SNN), ("hybrid", HybridPose)):
        model, info = load_model(shipped / f"{name}.pt")
        assert isinstance(model, kind)
        assert not model.training
        assert info["stage"] == name and info["preset"] == "cpu"
        assert info["complete"] is True
        assert info["optimizer"] is None  # weights only
        assert info["model_config"] == preset.to_dict()
        assert window_from_dict(info["window_config"]) == RECIPES["cpu"].window
    hybrid, _ = load_model(shipped / "hybrid.pt")
    ann, _ = load_model(shipped / "ann.pt")
    assert isinstance(hybrid, HybridPose) and isinstance(ann, ANN)
    # the hybrid's frozen U-Net is the shipped ANN's (read from ann.pt, checked on loading)
    for key, value in ann.state_dict().items():
        if not key.startswith("state_heads."):
            assert torch.equal(hybrid.ann.state_dict()[key], value), key
    assert "shared_ann" in load_checkpoint(shipped / "hybrid.pt")


def test_shipped_report_agrees_with_the_shipped_models_and_the_code(shipped: Path) -> None:
    report = json.loads((shipped / "report.json").read_text())
    # every variant of the registry, each from a checkpoint of its own (reproduce --ablations):
    # the CNN-RNN hybrid and the two ablations too, none derived
    shipped_variants = list(variant_names())
    stems = [stem for stem, _ in shipped_checkpoints()]
    assert sorted(p.stem for p in shipped.glob("*.pt")) == sorted(stems)
    for stem in ("hybrid_rnn", "hybrid_no_state_init", "hybrid_no_delta"):
        assert "shared_ann" in load_checkpoint(shipped / f"{stem}.pt"), stem
    models = load_models(shipped)
    assert list(models.networks) == shipped_variants
    assert not any(models.derived.values())
    assert list(report["models"]) == shipped_variants
    assert list(report["paper_protocol"]["models"]) == shipped_variants
    assert not any(m["derived"] for m in report["models"].values())
    assert not any(m["derived"] for m in report["paper_protocol"]["models"].values())
    window = RECIPES["cpu"].window
    for name in shipped_variants:
        m = report["models"][name]
        assert m["mpjpe2d_px"] > 0 and m["power_w"] > 0
        assert len(m["mpjpe2d_px_per_step"]) == window.steps
    # report.md is report.json as this code renders it
    assert report_markdown(report) == (shipped / "report.md").read_text()
    # the ANN's power needs no data: its dense MACs follow from the preset's shapes alone
    # (model_info runs on the meta device), times 4.6 pJ per MAC, at 100 Hz and at 10 Hz
    macs = model_info(PRESETS["cpu"])["ann"]["macs"]
    assert report["setup"]["counts_per_inference"]["ann"]["macs"] == macs
    high = 1e6 / window.bin_us
    assert report["models"]["ann_high"]["power_w"] == pytest.approx(macs * 4.6e-12 * high)
    held = report["models"]["ann_low_held"]["power_w"]
    assert held == pytest.approx(macs * 4.6e-12 * high / window.steps)


@pytest.fixture(scope="module")
def fresh_recording(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """Subject 17 (a test subject) doing movement 16 once, simulated with a new seed."""
    out = tmp_path_factory.mktemp("fresh")
    config = replace(SIM_PRESETS["tiny"], subjects=(17,), movements=(16,), seed=2024)
    assert config.sensor_size == PRESETS["cpu"].sensor_size
    summary = simulate_dataset(out, config, progress=False)
    assert not summary.failed
    yield out


def test_shipped_models_predict_a_fresh_recording(
    shipped: Path, fresh_recording: Path, tmp_path: Path
) -> None:
    spec = EvalSpec(shipped, fresh_recording, tmp_path, windows_per_recording=8)
    report = evaluate(spec, progress=False)
    m = report["models"]
    assert report["setup"]["recordings"] == 1
    # The cpu models see a 64x64 crop of an 87x65 sensor: an untrained network is off by
    # tens of pixels, a trained ANN by a few (about 2.5 on the test subjects)
    assert m["ann_high"]["mpjpe2d_px"] < 4.0
    assert m["hybrid"]["mpjpe2d_px"] < 4.0
    assert m["hybrid"]["mpjpe2d_px"] < 1.5 * m["ann_high"]["mpjpe2d_px"]
    assert m["snn"]["mpjpe2d_px"] > m["hybrid"]["mpjpe2d_px"]
    assert m["hybrid"]["mpjpe3d_mm"] < 250.0
    assert report["ratios"]["hybrid_over_ann_power"] < 0.15


def test_checkpoint_dir_takes_a_shipped_name_or_a_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from hybridpose.pretrained import CheckpointDirError, checkpoint_dir

    assert checkpoint_dir(None) == checkpoint_dir("cpu") == pretrained_dir("cpu")
    assert checkpoint_dir(tmp_path) == tmp_path
    monkeypatch.chdir(tmp_path)
    (tmp_path / "cpu").mkdir()
    assert checkpoint_dir("cpu") == pretrained_dir("cpu")  # the name wins over ./cpu
    assert checkpoint_dir("./cpu") == Path("cpu")
    shipped_sets = r"\(shipped: cpu, cpu-1khz, cpu-sparse\)$"
    with pytest.raises(CheckpointDirError, match=r"^nowhere: no such directory, and not a "
                       r"shipped set of weights " + shipped_sets):  # fmt: skip
        checkpoint_dir("nowhere")
    (tmp_path / "f.pt").write_text("")
    with pytest.raises(CheckpointDirError, match=r"^f\.pt: a file, not a directory, and not"):
        checkpoint_dir("f.pt")


def test_ship_takes_a_run_that_holds_shipped_checkpoints(shipped: Path, tmp_path: Path) -> None:
    """``reproduce`` resumed on the shipped checkpoints (how the ablations were trained): the
    hybrids already read their U-Net from ann.pt, and shipping them again gives the same."""
    import shutil

    from hybridpose.pretrained import ship

    run = tmp_path / "run"
    (run / "checkpoints").mkdir(parents=True)
    (run / "report").mkdir()
    for f in shipped.glob("*.pt"):
        shutil.copy(f, run / "checkpoints" / f.name)
    for name in ("report.json", "report.md"):
        shutil.copy(shipped / name, run / "report" / name)
    dest = ship(run, dest=tmp_path / "dest")
    files = sorted(p.name for p in shipped.iterdir() if p.suffix in (".pt", ".json", ".md"))
    assert sorted(p.name for p in dest.iterdir()) == files
    for f in shipped.glob("*.pt"):
        a, b = load_checkpoint(f), load_checkpoint(dest / f.name)
        assert a.get("shared_ann") == b.get("shared_ann"), f.name
        assert a["model"].keys() == b["model"].keys()
        assert all(torch.equal(a["model"][k], b["model"][k]) for k in a["model"]), f.name


def test_shipped_1khz_set_is_the_cpu_set_retimed_then_fine_tuned(shipped: Path) -> None:
    """``cpu-1khz``: the cpu ANN and SNN retimed to 1 ms bins (not trained again), the cpu
    hybrid retimed and fine-tuned at 1 ms with its BatchNorm statistics frozen, evaluated."""
    fast = pretrained_dir("cpu-1khz")
    window = RECIPES["cpu-1khz"].window
    assert (window.bin_us, window.steps) == (1_000, 100)
    cpu = {n: unshared(shipped / f"{n}.pt")["model"] for n in ("ann", "snn", "hybrid")}
    for name in ("ann", "snn", "hybrid"):
        model, info = load_model(fast / f"{name}.pt")
        assert not model.training
        assert info["preset"] == "cpu-1khz" and info["complete"] is True
        assert info["model_config"] == PRESETS["cpu-1khz"].to_dict()
        assert window_from_dict(info["window_config"]) == window
    ann, snn = (load_checkpoint(fast / f"{n}.pt") for n in ("ann", "snn"))
    assert ann["retimed"] == snn["retimed"] == {"preset": "cpu", "factor": 10.0, "bin_us": 10_000}
    assert all(torch.equal(v, cpu["ann"][k]) for k, v in ann["model"].items())
    torch.testing.assert_close(snn["model"]["enc.conv.weight"], 10 * cpu["snn"]["enc.conv.weight"])
    assert float(snn["model"]["up3.tau"]) == 30.0
    hybrid = unshared(fast / "hybrid.pt")
    assert "retimed" not in hybrid and hybrid["stage_config"]["freeze_batchnorm"] is True
    # trained by the recipe as it stands (the activity penalty included)
    assert hybrid["stage_config"] == {**asdict(RECIPES["cpu-1khz"].hybrid), "seed": 0}
    for key in ("snn.down2.bn.running_mean", "snn.down2.bn.running_var"):  # frozen statistics
        assert torch.equal(hybrid["model"][key], cpu["hybrid"][key])
    report = json.loads((fast / "report.json").read_text())
    assert report["setup"]["steps_per_window"] == 100
    assert report["setup"]["output_rate_hz"] == 1000.0
    assert report_markdown(report) == (fast / "report.md").read_text()
    # the paper's figures beside ours are its 100 Hz ones, and say so
    assert "paper at 100 Hz 2D px" in report_markdown(report)
    assert "The paper reports no 1000 Hz results" in report_markdown(report)
    for m in report["models"].values():
        assert len(m["mpjpe2d_px_per_step"]) == 100
    macs = model_info(PRESETS["cpu-1khz"])["ann"]["macs"]
    assert report["models"]["ann_high"]["power_w"] == pytest.approx(macs * 4.6e-12 * 1000)


def test_shipped_sparse_set_is_the_cpu_set_with_its_hybrid_fine_tuned(shipped: Path) -> None:
    """``cpu-sparse``: the cpu ANN and SNN as they are (retimed by a factor of 1), the cpu
    hybrid fine-tuned at its own 10 ms bins with the activity penalty, evaluated: it fires
    fewer spikes than the cpu hybrid in the same evaluation."""
    sparse = pretrained_dir("cpu-sparse")
    window = RECIPES["cpu-sparse"].window
    assert window == RECIPES["cpu"].window
    cpu = {n: unshared(shipped / f"{n}.pt")["model"] for n in ("ann", "snn", "hybrid")}
    for name in ("ann", "snn", "hybrid"):
        _, info = load_model(sparse / f"{name}.pt")
        assert info["preset"] == "cpu-sparse" and info["complete"] is True
        assert info["model_config"] == PRESETS["cpu-sparse"].to_dict()
        assert window_from_dict(info["window_config"]) == window
    for name in ("ann", "snn"):
        data = load_checkpoint(sparse / f"{name}.pt")
        assert data["retimed"] == {"preset": "cpu", "factor": 1.0, "bin_us": 10_000}
        assert data["model"].keys() == cpu[name].keys()
        assert all(torch.equal(v, cpu[name][k]) for k, v in data["model"].items()), name
    hybrid = unshared(sparse / "hybrid.pt")
    assert hybrid["stage_config"] == {**asdict(RECIPES["cpu-sparse"].hybrid), "seed": 0}
    assert hybrid["stage_config"]["spike_loss_weight"] > 0
    for key in ("snn.down2.bn.running_mean", "snn.down2.bn.running_var"):  # frozen statistics
        assert torch.equal(hybrid["model"][key], cpu["hybrid"][key])
    assert not torch.equal(
        hybrid["model"]["snn.up1.conv.weight"], cpu["hybrid"]["snn.up1.conv.weight"]
    )
    report = json.loads((sparse / "report.json").read_text())
    assert report_markdown(report) == (sparse / "report.md").read_text()
    assert report["setup"]["steps_per_window"] == 10
    for m in report["models"].values():
        assert len(m["mpjpe2d_px_per_step"]) == 10
    cpu_report = json.loads((shipped / "report.json").read_text())
    assert (
        report["models"]["hybrid"]["firing_rate"]
        < 0.5 * cpu_report["models"]["hybrid"]["firing_rate"]
    )
