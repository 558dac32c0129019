"""Tests of hybridpose.retime: a trained SNN's checkpoint for shorter bins.

The retimed network's input current on a short bin's share of the events equals the original
current on the long bin's events (the synaptic part scaled by the factor, the constant part
kept): checked against the evaluation-mode BatchNorm written out by hand, layer by layer.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest
import torch

from hybridpose.checkpoint import build_model
from hybridpose.data import WindowConfig
from hybridpose.nn.hybrid import HybridPose
from hybridpose.nn.presets import ModelConfig, preset
from hybridpose.nn.snn import SNN, SNNConfig
from hybridpose.pretrained import pretrained_dir
from hybridpose.recipes import window_to_dict
from hybridpose.retime import (
    RetimeError,
    retime_checkpoint,
    retime_snn_config,
    retime_snn_weights,
)

CONFIG = SNNConfig(widths=(2, 3, 4, 5), tau=3.0, readout_decay=0.8)
WINDOW = WindowConfig(ann_events=50, bin_us=10_000, steps=10, crop=(0, 0, 16, 16))
SHORT = replace(WINDOW, bin_us=1_000, steps=100)


def _trained_snn(config: SNNConfig = CONFIG, seed: int = 0) -> SNN:
    """An SNN with random weights and BatchNorm statistics, in eval mode."""
    torch.manual_seed(seed)
    snn = SNN(config)
    with torch.no_grad():
        for module in snn.modules():
            if isinstance(module, torch.nn.BatchNorm2d):
                assert module.running_mean is not None and module.running_var is not None
                module.running_mean.uniform_(-0.5, 0.5)
                module.running_var.uniform_(0.2, 2.0)
                module.weight.uniform_(0.5, 1.5)
                module.bias.uniform_(-0.3, 0.3)
        assert snn.head.bias is not None
        torch.nn.init.normal_(snn.head.weight)
        torch.nn.init.normal_(snn.head.bias)
    return snn.eval()


def test_retimed_config_counts_the_same_time_constant_in_shorter_steps() -> None:
    short = retime_snn_config(CONFIG, 10.0)
    assert short.tau == 30.0
    assert short.readout_decay == pytest.approx(0.977933, abs=1e-6)  # by hand: exp(ln 0.8 / 10)
    assert replace(short, tau=3.0, readout_decay=0.8) == CONFIG
    with pytest.raises(RetimeError, match="positive"):
        retime_snn_config(CONFIG, 0.0)


def test_a_short_bins_current_on_its_share_of_the_events_is_the_long_bins() -> None:
    factor = 10.0
    snn = _trained_snn()
    short = SNN(retime_snn_config(CONFIG, factor)).eval()
    short.load_state_dict(retime_snn_weights(snn.state_dict(), CONFIG, factor))
    torch.manual_seed(1)
    for spec in CONFIG.layer_specs():
        old, new = getattr(snn, spec.name), getattr(short, spec.name)
        x = torch.poisson(torch.full((3, old.conv.in_channels, 8, 8), 2.0))
        bn = old.bn
        # the evaluation-mode current a W x + b, written out by hand
        a = (bn.weight / torch.sqrt(bn.running_var + bn.eps))[:, None, None]
        b = bn.bias[:, None, None] - a * bn.running_mean[:, None, None]
        wx = old.conv(x)
        with torch.no_grad():
            torch.testing.assert_close(old.bn(wx), a * wx + b)
            # the short bin: 1/f of the events, f times the synaptic current, the same bias
            torch.testing.assert_close(new.bn(new.conv(x / factor)), a * wx + b)
            torch.testing.assert_close(
                new.bn(new.conv(x)), factor * a * wx + b, rtol=1e-5, atol=1e-4
            )  # values 10x larger
        assert float(new.tau) == 30.0 and float(old.tau) == 3.0
    # the head's bias is added f times as often; its weights see spikes f times rarer
    assert short.head.bias is not None and snn.head.bias is not None
    torch.testing.assert_close(short.head.bias, snn.head.bias / factor)
    torch.testing.assert_close(short.head.weight, snn.head.weight)


def _checkpoint(stage: str, model: ModelConfig, window: WindowConfig) -> dict[str, object]:
    torch.manual_seed(0)
    network = build_model(stage, model)
    return {
        "name": stage,
        "stage": stage,
        "preset": model.name,
        "model_config": model.to_dict(),
        "window_config": window_to_dict(window),
        "model": network.state_dict(),
        "optimizer": {"state": {}},
        "complete": True,
    }


def test_retime_checkpoint_makes_the_cpu_hybrid_a_1khz_one() -> None:
    cpu, fast = preset("cpu"), preset("cpu-1khz")
    window = WindowConfig(ann_events=500, crop=(11, 0, 64, 64))
    short = replace(window, bin_us=1_000, steps=100)
    data = _checkpoint("hybrid", cpu, window)
    out = retime_checkpoint(data, fast, short)
    assert out["preset"] == "cpu-1khz" and out["optimizer"] is None and out["complete"]
    assert out["retimed"] == {"preset": "cpu", "factor": 10.0, "bin_us": 10_000}
    assert out["window_config"] == window_to_dict(short)
    model = build_model("hybrid", ModelConfig.from_dict(out["model_config"]))
    model.load_state_dict(out["model"])  # the networks of the 1 kHz preset
    assert isinstance(model, HybridPose)
    assert model.snn.config == fast.snn
    weights = data["model"]
    assert isinstance(weights, dict)
    changed = set()
    for key, value in out["model"].items():  # the U-Net, state heads and BatchNorms kept
        if not torch.equal(value, weights[key]):
            changed.add(key)
    layers = [s.name for s in fast.snn.layer_specs()]
    scaled = {f"snn.{n}.{k}" for n in layers for k in ("conv.weight", "tau")}
    assert changed == scaled  # the head of a fresh SNN is zero: its bias / 10 is too
    torch.testing.assert_close(
        out["model"]["snn.down2.conv.weight"], 10 * weights["snn.down2.conv.weight"]
    )


def test_retime_checkpoint_refuses_what_it_cannot_retime() -> None:
    cpu, fast = preset("cpu"), preset("cpu-1khz")
    window = WindowConfig(ann_events=500, crop=(11, 0, 64, 64))
    short = replace(window, bin_us=1_000, steps=100)
    with pytest.raises(RetimeError, match="hybrid_rnn checkpoint cannot be retimed"):
        retime_checkpoint(_checkpoint("hybrid_rnn", cpu, window), fast, short)
    shared = {**_checkpoint("hybrid", cpu, window), "shared_ann": {"file": "ann.pt"}}
    with pytest.raises(RetimeError, match="reads its U-Net from another file"):
        retime_checkpoint(shared, fast, short)
    with pytest.raises(RetimeError, match="differ from the target's in more than their bins"):
        retime_checkpoint(_checkpoint("snn", cpu, window), fast, replace(short, ann_events=400))
    # bins of 2 ms: tau 15, not the 1 kHz preset's 30
    with pytest.raises(RetimeError, match="retimed by 5 its networks are not preset 'cpu-1khz'"):
        retime_checkpoint(_checkpoint("snn", cpu, window), fast, replace(short, bin_us=2_000))


def test_the_hybrid_stage_refuses_an_snn_for_other_bins(tmp_path: Path) -> None:
    """The 10 ms SNN loaded into the 1 kHz preset would keep its tau of 3 (a buffer of the
    state dict): ``--init-snn`` refuses it and says to retime it; the retimed one loads."""
    from hybridpose.train import TrainingError, _initial_model, make_spec

    fast = pretrained_dir("cpu-1khz")
    spec = make_spec(
        "hybrid", "cpu-1khz", tmp_path, tmp_path, ann_checkpoint=fast / "ann.pt",
        init_snn=pretrained_dir("cpu") / "snn.pt",
    )  # fmt: skip
    refused = r"snn\.pt: its SNN is not this preset's \(tau 3\.0 against 30\.0; a network for"
    with pytest.raises(TrainingError, match=refused):
        _initial_model(spec)
    model = _initial_model(replace(spec, init_snn=fast / "snn.pt"))
    assert isinstance(model, HybridPose) and float(model.snn.enc.tau) == 30.0
