"""Tests of hybridpose.checkpoint: round trips, refusal of foreign, newer and malicious files."""

from __future__ import annotations

import re
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
import torch
from torch import nn

from hybridpose import __version__
from hybridpose.checkpoint import (
    FORMAT_NAME,
    FORMAT_VERSION,
    CheckpointError,
    build_model,
    load_checkpoint,
    load_model,
    save_checkpoint,
    share_ann,
    weights_only,
)
from hybridpose.nn.ann import ANN, ANNConfig
from hybridpose.nn.hybrid import HybridConfig, HybridPose
from hybridpose.nn.presets import ModelConfig
from hybridpose.nn.snn import SNN, SNNConfig

MODEL = ModelConfig(
    name="test",
    sensor_size=(24, 24),
    input_size=(16, 16),
    ann=ANNConfig(in_channels=4, stem=4, widths=(4, 4, 4, 4)),
    snn=SNNConfig(widths=(2, 2, 2, 2)),
    hybrid=HybridConfig(state_init=False),
)


def names(path: Path, message: str) -> str:
    """A ``match`` pattern for an error message that starts with the file's full path."""
    return "^" + re.escape(f"{path}: {message}")


def payload(stage: str, model: nn.Module, config: ModelConfig = MODEL) -> dict[str, Any]:
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    loss = sum((p**2).sum() for p in model.parameters())
    assert isinstance(loss, torch.Tensor)
    loss.backward()  # type: ignore[no-untyped-call]
    optimizer.step()  # a real optimizer state: step counts and moments
    return {
        "name": stage,
        "stage": stage,
        "preset": "test",
        "model_config": config.to_dict(),
        "model": model.state_dict(),
        "optimizer": optimizer.state_dict(),
        "epoch": 3,
        "batch": 5,
        "step": 41,
        "complete": False,
        "metrics": {"train_loss": 0.25},
    }


@pytest.mark.parametrize(("stage", "cls"), [("ann", ANN), ("snn", SNN), ("hybrid", HybridPose)])
def test_round_trip(tmp_path: Path, stage: str, cls: type[nn.Module]) -> None:
    torch.manual_seed(0)
    model = build_model(stage, MODEL)
    assert type(model) is cls
    data = payload(stage, model)
    path = tmp_path / "sub" / f"{stage}.pt"
    save_checkpoint(path, data)
    loaded = load_checkpoint(path)
    assert loaded["format"] == FORMAT_NAME and loaded["format_version"] == FORMAT_VERSION
    assert loaded["hybridpose_version"] == __version__
    for key in ("name", "stage", "epoch", "batch", "step", "complete", "metrics"):
        assert loaded[key] == data[key], key
    assert loaded["optimizer"]["param_groups"] == data["optimizer"]["param_groups"]
    state = loaded["optimizer"]["state"]
    assert state.keys() == data["optimizer"]["state"].keys() and state
    for i, entry in state.items():
        for k, v in entry.items():
            assert torch.equal(v, data["optimizer"]["state"][i][k])

    rebuilt, stored = load_model(path)
    assert type(rebuilt) is cls and not rebuilt.training
    assert ModelConfig.from_dict(stored["model_config"]) == MODEL
    if isinstance(rebuilt, HybridPose):
        assert rebuilt.config == HybridConfig(state_init=False)
    weights = rebuilt.state_dict()
    assert weights.keys() == model.state_dict().keys()
    for key, value in model.state_dict().items():
        assert torch.equal(weights[key], value), key


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="no such checkpoint"):
        load_checkpoint(tmp_path / "nothing.pt")
    with pytest.raises(FileNotFoundError):
        load_model(tmp_path / "nothing.pt")
    with pytest.raises(FileNotFoundError):
        load_checkpoint(tmp_path)  # a directory is not a checkpoint file


def test_foreign_files_are_refused_by_name(tmp_path: Path) -> None:
    text = tmp_path / "notes.pt"
    text.write_text("not a checkpoint\n")
    with pytest.raises(CheckpointError, match=names(text, "not a loadable checkpoint")):
        load_checkpoint(text)
    empty = tmp_path / "empty.pt"
    empty.write_bytes(b"")
    with pytest.raises(CheckpointError, match=names(empty, "not a loadable checkpoint")):
        load_checkpoint(empty)
    other = tmp_path / "other.pt"
    torch.save({"state_dict": {"w": torch.zeros(2)}}, other)
    with pytest.raises(CheckpointError, match=names(other, "not a hybridpose checkpoint")):
        load_checkpoint(other)
    tensor = tmp_path / "tensor.pt"
    torch.save(torch.zeros(3), tensor)
    with pytest.raises(CheckpointError, match=names(tensor, "not a hybridpose checkpoint")):
        load_checkpoint(tensor)
    # the right format name but no weights
    torch.save({"format": FORMAT_NAME, "format_version": 1, "stage": "ann"}, other)
    with pytest.raises(CheckpointError, match="lacks 'model_config'"):
        load_checkpoint(other)
    # a damaged checkpoint: half of a real one
    good = tmp_path / "good.pt"
    save_checkpoint(good, payload("snn", build_model("snn", MODEL)))
    cut = tmp_path / "cut.pt"
    cut.write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    with pytest.raises(CheckpointError, match=names(cut, "not a loadable checkpoint")):
        load_checkpoint(cut)


@pytest.mark.parametrize("version", [FORMAT_VERSION + 1, "1", None])
def test_newer_or_bad_format_version_is_refused(tmp_path: Path, version: object) -> None:
    path = tmp_path / "new.pt"
    data = {**payload("snn", build_model("snn", MODEL)), "format": FORMAT_NAME}
    torch.save({**data, "format_version": version}, path)
    with pytest.raises(CheckpointError, match=names(path, "checkpoint format version")):
        load_checkpoint(path)
    torch.save({**data, "format_version": FORMAT_VERSION}, path)
    assert load_checkpoint(path)["step"] == 41  # the same file with today's version loads


class WritesMarker:
    """Unpickling this runs code: it writes ``path``."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def __reduce__(self) -> tuple[Any, ...]:
        return (exec, (f"open({str(self.path)!r}, 'w').write('pwned')",))


def test_a_pickle_that_runs_code_is_refused(tmp_path: Path) -> None:
    marker = tmp_path / "marker"
    path = tmp_path / "evil.pt"
    data = payload("snn", build_model("snn", MODEL))
    data["metrics"] = {"train_loss": WritesMarker(marker)}
    torch.save({"format": FORMAT_NAME, "format_version": FORMAT_VERSION, **data}, path)
    with pytest.raises(CheckpointError, match=names(path, "not a loadable checkpoint")):
        load_checkpoint(path)
    with pytest.raises(CheckpointError):
        load_model(path)
    assert not marker.exists()
    # the file is live: an unsafe load runs its code
    torch.load(path, weights_only=False)
    assert marker.read_text() == "pwned"


def test_weights_only_drops_the_optimizer(tmp_path: Path) -> None:
    data = payload("ann", build_model("ann", MODEL))
    shipped = weights_only(data)
    assert shipped["optimizer"] is None
    assert data["optimizer"] is not None  # a copy: the original keeps its optimizer
    assert {k: v for k, v in shipped.items() if k != "optimizer"} == {
        k: v for k, v in data.items() if k != "optimizer"
    }
    full, light = tmp_path / "full.pt", tmp_path / "light.pt"
    save_checkpoint(full, data)
    save_checkpoint(light, shipped)
    assert load_checkpoint(light)["optimizer"] is None
    assert light.stat().st_size < 0.5 * full.stat().st_size  # Adam keeps two moments
    model, _ = load_model(light)
    assert isinstance(model, ANN)


def test_weights_that_do_not_fit_the_config_are_refused(tmp_path: Path) -> None:
    path = tmp_path / "mismatch.pt"
    wider = replace(MODEL, snn=SNNConfig(widths=(2, 2, 2, 3)))
    data = payload("snn", build_model("snn", wider))
    save_checkpoint(path, {**data, "model_config": MODEL.to_dict()})
    with pytest.raises(CheckpointError, match=names(path, "the stored weights do not fit")):
        load_model(path)
    # weights of another stage
    save_checkpoint(path, {**data, "stage": "ann"})
    with pytest.raises(CheckpointError, match="do not fit"):
        load_model(path)
    # a config that does not parse
    broken = MODEL.to_dict()
    del broken["snn"]
    save_checkpoint(path, {**data, "model_config": broken})
    with pytest.raises(CheckpointError, match="do not fit"):
        load_model(path)
    save_checkpoint(path, {**data, "stage": "cnn"})
    with pytest.raises(CheckpointError, match="unknown stage 'cnn'"):
        load_model(path)
    # the same weights with their own config load
    save_checkpoint(path, {**data, "model_config": wider.to_dict()})
    model, _ = load_model(path)
    assert isinstance(model, SNN) and model.config == wider.snn


def test_shared_ann_round_trip_and_checks(tmp_path: Path) -> None:
    torch.manual_seed(3)
    ann = build_model("ann", MODEL)
    hybrid = build_model("hybrid", MODEL)
    assert isinstance(ann, ANN) and isinstance(hybrid, HybridPose)
    unet = {k: v for k, v in ann.state_dict().items() if not k.startswith("state_heads.")}
    hybrid.ann.load_state_dict(unet, strict=False)  # frozen U-Net = the ANN's
    ann_data = weights_only(payload("ann", ann))
    hybrid_data = weights_only(payload("hybrid", hybrid))
    # payload() took an Adam step on both: put the U-Net back in step
    hybrid_data["model"].update({f"ann.{k}": v for k, v in ann_data["model"].items()
                                 if not k.startswith("state_heads.")})  # fmt: skip
    shared = share_ann(hybrid_data, ann_data, "ann.pt")
    kept = set(shared["model"])
    assert not any(k.startswith("ann.") and not k.startswith("ann.state_heads.") for k in kept)
    assert any(k.startswith("ann.state_heads.") for k in kept)
    assert any(k.startswith("snn.") for k in kept)
    save_checkpoint(tmp_path / "ann.pt", ann_data)
    save_checkpoint(tmp_path / "hybrid.pt", shared)
    loaded, _ = load_model(tmp_path / "hybrid.pt")
    for key, value in hybrid_data["model"].items():
        assert torch.equal(loaded.state_dict()[key], value), key
    stored = sum(v.numel() for v in shared["model"].values())
    unet_size = sum(v.numel() for k, v in ann_data["model"].items() if "state_heads" not in k)
    assert stored == sum(v.numel() for v in hybrid_data["model"].values()) - unet_size
    # a changed ann.pt is detected, not silently used
    changed = dict(ann_data)
    changed["model"] = {
        k: v + 1e-3 if k == "head.weight" else v for k, v in ann_data["model"].items()
    }
    save_checkpoint(tmp_path / "ann.pt", changed)
    with pytest.raises(CheckpointError, match="has changed"):
        load_model(tmp_path / "hybrid.pt")
    (tmp_path / "ann.pt").unlink()
    with pytest.raises(FileNotFoundError):
        load_model(tmp_path / "hybrid.pt")
    # a hybrid whose U-Net is not the ANN's cannot share it
    with pytest.raises(CheckpointError, match="differs"):
        share_ann(hybrid_data, changed, "ann.pt")
