"""The SNN, the ANN and the hybrid: the state contract, chunking, initialisation, gradients."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from hybridpose.nn.ann import ANN, ANNConfig
from hybridpose.nn.hybrid import HybridConfig, HybridPose
from hybridpose.nn.lif import lif_multistep
from hybridpose.nn.presets import PRESETS, ModelConfig, preset
from hybridpose.nn.snn import SNN, SNNConfig, SNNState, fold_batchnorm, fold_snn_batchnorm

SMALL = ModelConfig(
    name="test",
    sensor_size=(40, 32),
    input_size=(32, 32),
    ann=ANNConfig(in_channels=20, stem=4, widths=(6, 8, 10, 12)),
    snn=SNNConfig(widths=(4, 6, 8, 10), tau=2.5),
)
H, W = SMALL.input_size


def _inputs(seed: int = 0, t: int = 6, b: int = 2) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    frame = torch.poisson(torch.full((b, 20, H, W), 0.5), generator=g)
    bins = torch.poisson(torch.full((t, b, 2, H, W), 1.0), generator=g)
    return frame, bins


def _model(seed: int = 0) -> HybridPose:
    torch.manual_seed(seed)
    model = SMALL.build_hybrid()
    # lively BatchNorm statistics so that neurons fire on random inputs
    for m in model.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            assert m.running_var is not None
            m.running_var.fill_(0.2)
            m.weight.data.uniform_(0.8, 1.5)
            m.bias.data.uniform_(0.0, 0.6)
    return model.eval()


def test_state_fields_follow_the_layer_spec() -> None:
    specs = SMALL.snn.layer_specs()
    assert SNNState._fields == (*(s.name for s in specs), "readout")
    assert len(specs) == 9  # the paper's 9 spiking layers


def test_ann_state_matches_zero_state_in_fields_shapes_and_dtypes() -> None:
    model = _model()
    frame, _ = _inputs()
    heatmaps, state = model.ann(frame)
    zero = model.snn.zero_state(frame.shape[0], H, W)
    assert type(state) is SNNState and state._fields == zero._fields
    for name, a, z in zip(SNNState._fields, state, zero, strict=True):
        assert a.shape == z.shape, name
        assert a.dtype == z.dtype, name
    assert heatmaps.shape == (2, SMALL.snn.joints, H, W)
    assert torch.equal(state.readout, heatmaps)  # the readout starts at the ANN's heatmaps
    assert not state.readout.requires_grad  # ... detached


def test_chunking_equivalence() -> None:
    model = _model()
    frame, bins = _inputs(t=8)
    _, state = model.ann(frame)
    with torch.no_grad():
        whole, s_whole = model.snn(bins, state)
        first, s_mid = model.snn(bins[:3], state)
        second, s_end = model.snn(bins[3:], s_mid)
        steps = []
        s_step = state
        for t in range(bins.shape[0]):
            out, s_step = model.snn.step(bins[t], s_step)
            steps.append(out)
    assert torch.equal(whole, torch.cat([first, second]))
    assert torch.equal(whole, torch.stack(steps))
    for a, b, c in zip(s_whole, s_end, s_step, strict=True):
        assert torch.equal(a, b) and torch.equal(a, c)
    assert whole.abs().sum() > 0


def test_init_semantics_v_init_then_the_first_bin_is_integrated() -> None:
    # the first layer starts at v_init and integrates its first input:
    # v1 = v_init + (z - v_init) / tau
    model = _model()
    frame, bins = _inputs(t=1)
    with torch.no_grad():
        _, state = model.ann(frame)
        z = model.snn.enc.bn(model.snn.enc.conv(bins[0]))
        h = state.enc + (z - state.enc) / SMALL.snn.tau
        expected_spikes = (h >= 1.0).float()
        spikes, v = lif_multistep(z[None], state.enc, SMALL.snn.tau)
        _, new_state = model.snn(bins, state)
    assert torch.equal(spikes[0], expected_spikes)
    assert torch.allclose(new_state.enc, h - expected_spikes, atol=1e-6)
    assert torch.equal(new_state.enc, v)


def test_delta_readout_accumulates_from_the_ann_heatmaps() -> None:
    model = _model()
    frame, bins = _inputs(t=3)
    with torch.no_grad():
        ann_heatmaps, out, _ = model(frame, bins)
        snn_out, _ = model.snn(bins, model.ann(frame)[1])
    decay = SMALL.snn.readout_decay
    # out_t = decay * out_{t-1} + delta_t with out_{-1} = ANN heatmaps: recover delta_0
    d0 = out[0] - decay * ann_heatmaps
    d1 = out[1] - decay * out[0]
    off = dataclasses.replace(SMALL.snn, delta_readout=False)
    plain = SNN(off)
    plain.load_state_dict(model.snn.state_dict())
    plain.eval()
    with torch.no_grad():
        direct, _ = plain(bins, model.ann(frame)[1])
    assert torch.allclose(d0, direct[0], atol=1e-5)
    assert torch.allclose(d1, direct[1], atol=1e-5)
    assert torch.equal(snn_out, out)


def test_without_state_init_the_membranes_start_at_zero() -> None:
    model = _model()
    ablation = HybridPose(model.ann, model.snn, HybridConfig(state_init=False)).eval()
    frame, _ = _inputs()
    with torch.no_grad():
        heatmaps, state = ablation.initial_state(frame)
    for name, tensor in zip(SNNState._fields[:-1], state[:-1], strict=True):
        assert torch.count_nonzero(tensor) == 0, name
    assert torch.equal(state.readout, heatmaps)


def test_gradients_reach_the_state_heads_and_the_snn() -> None:
    model = _model().train()
    # the head starts at zero (see the next test), which blocks every gradient below it until
    # the first optimiser step; give it the nonzero weights it has after one
    torch.nn.init.normal_(model.snn.head.weight, std=0.1)
    for p in model.ann.parameters():
        p.requires_grad_(False)
    for p in model.ann.state_heads.parameters():
        p.requires_grad_(True)
    frame, bins = _inputs(t=4)
    _, out, _ = model(frame, bins)
    out.square().mean().backward()
    for name, head in model.ann.state_heads.items():
        grads = [p.grad for p in head.parameters() if p.grad is not None]
        assert grads and any(g.abs().sum() > 0 for g in grads), name
    assert model.snn.enc.conv.weight.grad is not None
    assert model.snn.enc.conv.weight.grad.abs().sum() > 0
    assert model.ann.head.weight.grad is None  # the frozen ANN gets nothing


def test_snn_head_starts_at_zero_and_learns_at_the_first_step() -> None:
    snn = SNN(SMALL.snn).train()
    _, bins = _inputs(t=3)
    out, _ = snn(bins, snn.zero_state(2, H, W))
    assert torch.equal(out, torch.zeros_like(out))
    (out - 1.0).square().mean().backward()
    assert snn.head.weight.grad is not None and snn.head.weight.grad.abs().sum() > 0
    bias = snn.head.bias
    assert bias is not None and bias.grad is not None and torch.all(bias.grad < 0)


def test_learnable_tau_gets_a_gradient() -> None:
    config = dataclasses.replace(SMALL.snn, learn_tau=True)
    snn = SNN(config)
    torch.nn.init.normal_(snn.head.weight, std=0.1)  # as after a first step (it starts at 0)
    assert isinstance(snn.enc.tau, torch.nn.Parameter)
    _, bins = _inputs(t=3)
    out, _ = snn(bins, snn.zero_state(2, H, W))
    out.sum().backward()
    assert snn.up3.tau.grad is not None and snn.up3.tau.grad != 0


def test_folded_batchnorm_gives_the_same_outputs() -> None:
    model = _model()
    frame, bins = _inputs(t=4)
    with torch.no_grad():
        _, state = model.ann(frame)
        before, s_before = model.snn(bins, state)
        fold_snn_batchnorm(model.snn)
        after, s_after = model.snn(bins, state)
    assert all(
        isinstance(layer.bn, torch.nn.Identity) for layer in model.snn.spiking_layers().values()
    )
    assert torch.allclose(before, after, atol=1e-4)
    # a spike can flip where a potential sits within rounding of the threshold: allow very few
    flips = sum(int((a - b).abs().gt(1e-3).sum()) for a, b in zip(s_before, s_after, strict=True))
    assert flips <= 5


def test_fold_batchnorm_by_hand() -> None:
    conv = torch.nn.Conv2d(1, 1, 1, bias=False)
    conv.weight.data.fill_(2.0)
    bn = torch.nn.BatchNorm2d(1).eval()
    assert bn.running_mean is not None and bn.running_var is not None
    bn.running_mean.fill_(1.0)
    bn.running_var.fill_(4.0 - bn.eps)  # std 2
    bn.weight.data.fill_(3.0)
    bn.bias.data.fill_(0.5)
    fused = fold_batchnorm(conv, bn)
    # bn(2x) = 3 (2x - 1) / 2 + 0.5 = 3x - 1
    assert fused.weight.item() == pytest.approx(3.0)
    assert fused.bias is not None and fused.bias.item() == pytest.approx(-1.0)


def test_snn_inputs_must_be_multiples_of_8() -> None:
    snn = SNN(SMALL.snn)
    with pytest.raises(ValueError, match="multiples of 8"):
        snn.zero_state(1, 30, 32)
    with pytest.raises(ValueError, match="T, B, C, H, W"):
        snn(torch.zeros(2, 2, 32, 32), snn.zero_state(2, 32, 32))


def test_hybrid_refuses_mismatched_networks() -> None:
    other = dataclasses.replace(SMALL.snn, widths=(4, 6, 8, 12))
    with pytest.raises(ValueError, match="another SNN"):
        HybridPose(ANN(SMALL.ann, SMALL.snn), SNN(other))


def test_config_round_trip_and_presets() -> None:
    for config in (*PRESETS.values(), SMALL):
        assert ModelConfig.from_dict(config.to_dict()) == config
    paper = preset("paper")
    assert paper.input_size == (256, 256) and paper.snn.widths == (32, 64, 128, 256)
    assert paper.ann.widths == (64, 128, 256, 512, 512) and paper.ann.stem == 32
    cpu = preset("cpu")
    assert cpu.snn.layer_specs()[0].name == paper.snn.layer_specs()[0].name
    assert len(cpu.snn.layer_specs()) == len(paper.snn.layer_specs())
    with pytest.raises(ValueError, match="unknown preset"):
        preset("gpu")


def test_cpu_preset_runs_end_to_end() -> None:
    config = preset("cpu")
    model = config.build_hybrid().eval()
    h, w = config.input_size
    with torch.no_grad():
        ann_heatmaps, out, state = model(torch.zeros(1, 20, h, w), torch.zeros(3, 1, 2, h, w))
    assert ann_heatmaps.shape == (1, 13, h, w) and out.shape == (3, 1, 13, h, w)
    assert state.readout.shape == (1, 13, h, w)


def test_model_info_cli(capsys: pytest.CaptureFixture[str]) -> None:
    import json

    from hybridpose.cli import main

    assert main(["model-info", "--preset", "cpu", "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    for key in ("ann", "state_heads", "snn"):
        assert info[key]["params"] > 0 and info[key]["macs"] > 0
        assert info[key]["macs"] == sum(layer["macs"] for layer in info[key]["layers"])
    enc = next(layer for layer in info["snn"]["layers"] if layer["name"] == "enc.conv")
    # 5x5 conv, 2 -> 8 channels, on 64x64, padding 2: 8 * 64 * 64 * 2 * 25 dense MACs
    assert enc["macs"] == 8 * 64 * 64 * 2 * 25 and enc["params"] == 8 * 2 * 25
    snn = preset("cpu").build_snn()
    assert info["snn"]["params"] == sum(p.numel() for p in snn.parameters())
    assert main(["model-info", "--preset", "cpu"]) == 0
    text = capsys.readouterr().out
    assert "state heads" in text and "enc.conv" in text and "total" in text
    with pytest.raises(SystemExit):
        main(["model-info", "--preset", "gpu"])


def test_nearest_upsampling_equals_interpolate() -> None:
    import torch.nn.functional as F

    from hybridpose.nn.snn import _up

    x = torch.randn(3, 2, 4, 5, 7)
    expected = F.interpolate(x.flatten(0, 1), scale_factor=2, mode="nearest")
    assert torch.equal(_up(x).flatten(0, 1), expected)
