"""Tests of the CNN-RNN hybrid (hybridpose.nn.rnn and the ``hybrid_rnn`` variant and stage):
the ConvGRU cell against a hand computation and against torch's GRUCell, the network's wiring
against an explicit one written from the SNN's layer table, its state contract with the ANN's
heads, its MACs counted by hand, its training stage, its evaluation, streaming and loading.
"""

from __future__ import annotations

import math
import shutil
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from tiny_run import (
    DURATION_US,
    MODEL,
    WINDOW,
    build_models,
    build_rnn_hybrid,
    write_checkpoints,
    write_recording,
)
from torch import Tensor

from hybridpose.checkpoint import (
    build_model,
    load_checkpoint,
    load_model,
    save_checkpoint,
    share_ann,
)
from hybridpose.checkpoint import weights_only as strip_optimizer
from hybridpose.data import to_sensor_pixels
from hybridpose.energy import EnergyModel, count_hybrid, count_rnn
from hybridpose.evaluate import (
    EvalSpec,
    EvaluationError,
    Segment,
    evaluate,
    load_models,
    load_segment,
    measure_energy,
    predict,
)
from hybridpose.export import ExportError, export_onnx
from hybridpose.heatmaps import decode_heatmaps
from hybridpose.io.recording import Recording
from hybridpose.nn.hybrid import HybridConfig, HybridPose, is_rnn_hybrid, is_snn_hybrid
from hybridpose.nn.rnn import ConvGRUCell, ConvRNN
from hybridpose.nn.snn import SNN, SNNConfig, SNNState
from hybridpose.recipes import RECIPES, STAGES, Recipe, StageConfig
from hybridpose.stream import StreamError, StreamingPredictor
from hybridpose.train import TrainingError, TrainSpec, make_spec, train

pytestmark = pytest.mark.usefixtures("one_thread")  # tests/conftest.py

CAMS = (2, 3)


# ------------------------------------------------------------------------------ the cell


def test_cell_known_answer_by_hand() -> None:
    """One unit, 1x1 kernels: the GRU equations evaluated by hand."""
    cell = ConvGRUCell(1, 1, kernel=1)
    assert cell.conv_x.bias is not None and cell.conv_h.bias is not None
    with torch.no_grad():
        cell.conv_x.weight.copy_(torch.tensor([0.5, -1.0, 2.0]).view(3, 1, 1, 1))
        cell.conv_x.bias.copy_(torch.tensor([0.1, 0.2, -0.3]))
        cell.conv_h.weight.copy_(torch.tensor([1.5, 0.25, -0.5]).view(3, 1, 1, 1))
        cell.conv_h.bias.copy_(torch.tensor([0.0, -0.1, 0.2]))
    x, h = 0.8, -0.4

    def sigmoid(v: float) -> float:
        return 1.0 / (1.0 + math.exp(-v))

    r = sigmoid(0.5 * x + 0.1 + 1.5 * h + 0.0)  # sigmoid(-0.1) = 0.4750
    z = sigmoid(-1.0 * x + 0.2 + 0.25 * h - 0.1)  # sigmoid(-0.8) = 0.3100
    n = math.tanh(2.0 * x - 0.3 + r * (-0.5 * h + 0.2))  # tanh(1.4900) = 0.9033
    expected = (1 - z) * n + z * h
    assert expected == pytest.approx(0.4992618699, abs=1e-9)
    with torch.no_grad():
        seq, last = cell(torch.full((1, 1, 1, 1, 1), x), torch.full((1, 1, 1, 1), h))
    assert seq.shape == (1, 1, 1, 1, 1) and torch.equal(seq[0], last)
    assert float(last) == pytest.approx(expected, abs=1e-6)


def test_cell_equals_torch_gru_cell_at_every_pixel() -> None:
    """With 1x1 kernels a ConvGRU cell is torch.nn.GRUCell (an independent implementation)
    at every pixel, over several steps."""
    torch.manual_seed(0)
    c_in, c, t, b, hw = 3, 4, 3, 2, 5
    cell = ConvGRUCell(c_in, c, kernel=1)
    gru = torch.nn.GRUCell(c_in, c)
    assert cell.conv_x.bias is not None and cell.conv_h.bias is not None
    with torch.no_grad():
        cell.conv_x.weight.copy_(gru.weight_ih[:, :, None, None])
        cell.conv_x.bias.copy_(gru.bias_ih)
        cell.conv_h.weight.copy_(gru.weight_hh[:, :, None, None])
        cell.conv_h.bias.copy_(gru.bias_hh)
    x = torch.randn(t, b, c_in, hw, hw)
    h0 = torch.randn(b, c, hw, hw)
    with torch.no_grad():
        seq, last = cell(x, h0)
        h = h0.permute(0, 2, 3, 1).reshape(-1, c)
        for step in range(t):
            h = gru(x[step].permute(0, 2, 3, 1).reshape(-1, c_in), h)
            want = h.reshape(b, hw, hw, c).permute(0, 3, 1, 2)
            torch.testing.assert_close(seq[step], want, atol=1e-6, rtol=1e-5)
    torch.testing.assert_close(last, seq[-1], atol=0, rtol=0)


# ------------------------------------------------------------------------------ the network

# the SNN's layer table (hybridpose.nn.snn's docstring), written out: (name, stride, kernel)
TABLE = [
    ("enc", 1, 5), ("down1", 2, 5), ("down2", 2, 5), ("down3", 2, 5), ("res1", 1, 3),
    ("res2", 1, 3), ("up1", 1, 5), ("up2", 1, 5), ("up3", 1, 5),
]  # fmt: skip
CONFIG = SNNConfig(widths=(2, 3, 4, 5), joints=3)


def _reference_cell(cell: ConvGRUCell, stride: int, kernel: int, x: Tensor, h: Tensor) -> Tensor:
    """The cell's step with F.conv2d at the table's stride and padding, (1 - z) n + z h."""
    gx = F.conv2d(x, cell.conv_x.weight, cell.conv_x.bias, stride, kernel // 2)
    gh = F.conv2d(h, cell.conv_h.weight, cell.conv_h.bias, 1, kernel // 2)
    c = h.shape[1]
    r = torch.sigmoid(gx[:, :c] + gh[:, :c])
    z = torch.sigmoid(gx[:, c : 2 * c] + gh[:, c : 2 * c])
    n = torch.tanh(gx[:, 2 * c :] + r * gh[:, 2 * c :])
    return (1 - z) * n + z * h


def _reference_step(rnn: ConvRNN, x: Tensor, state: SNNState) -> tuple[Tensor, SNNState]:
    """One step wired by hand from the table: the residual sum, nearest upsampling (by
    F.interpolate) beside the skip, the 1x1 head and the decaying delta readout."""
    cells = rnn.cells()
    stride = {name: s for name, s, _ in TABLE}
    kernel = {name: k for name, _, k in TABLE}

    def run(name: str, inp: Tensor) -> Tensor:
        return _reference_cell(cells[name], stride[name], kernel[name], inp, getattr(state, name))

    def up(t: Tensor) -> Tensor:
        return F.interpolate(t, scale_factor=2, mode="nearest")

    enc = run("enc", x)
    d1 = run("down1", enc)
    d2 = run("down2", d1)
    d3 = run("down3", d2)
    r1 = run("res1", d3)
    r2 = run("res2", r1)
    u1 = run("up1", torch.cat([up(r2 + d3), d2], 1))
    u2 = run("up2", torch.cat([up(u1), d1], 1))
    u3 = run("up3", torch.cat([up(u2), enc], 1))
    out = 0.8 * state.readout + F.conv2d(u3, rnn.head.weight, rnn.head.bias)
    return out, SNNState(enc, d1, d2, d3, r1, r2, u1, u2, u3, out)


def _random_state(rnn: ConvRNN, b: int, h: int, w: int) -> SNNState:
    return SNNState._make([torch.randn_like(t) for t in rnn.zero_state(b, h, w)])


@torch.no_grad()
def test_network_mirrors_the_snn_layer_table() -> None:
    torch.manual_seed(1)
    rnn = ConvRNN(CONFIG).eval()
    torch.nn.init.normal_(rnn.head.weight, std=0.5)
    snn = SNN(CONFIG)
    assert list(rnn.cells()) == [name for name, _, _ in TABLE] == list(snn.spiking_layers())
    for (name, stride, kernel), spec in zip(TABLE, CONFIG.layer_specs(), strict=True):
        cell = rnn.cells()[name]
        c_in = snn.spiking_layers()[name].conv.in_channels
        assert cell.conv_x.in_channels == c_in and cell.conv_x.out_channels == 3 * spec.channels
        assert (cell.conv_x.kernel_size, cell.conv_x.stride) == ((kernel, kernel), (stride,) * 2)
        assert cell.conv_h.in_channels == spec.channels and cell.conv_h.stride == (1, 1)
    # the state contract: the SNN's shapes, field by field
    for got, want in zip(rnn.zero_state(2, 16, 24), snn.zero_state(2, 16, 24), strict=True):
        assert got.shape == want.shape and not got.any()
    # T steps of forward = T steps of the hand-wired reference, from a random state
    x = torch.randn(4, 2, 2, 16, 24)
    state = _random_state(rnn, 2, 16, 24)
    heatmaps, after = rnn(x, state)
    assert heatmaps.shape == (4, 2, 3, 16, 24)
    ref = state
    for t in range(4):
        out, ref = _reference_step(rnn, x[t], ref)
        torch.testing.assert_close(heatmaps[t], out, atol=1e-5, rtol=1e-5)
    for got, want in zip(after, ref, strict=True):
        torch.testing.assert_close(got, want, atol=1e-5, rtol=1e-5)
    # step = forward on one bin; without the delta readout the output is the head alone
    out, stepped = rnn.step(x[0], state)
    torch.testing.assert_close(out, heatmaps[0], atol=1e-6, rtol=1e-6)
    for got, want in zip(stepped, rnn(x[:1], state)[1], strict=True):
        torch.testing.assert_close(got, want, atol=0, rtol=0)
    no_delta = ConvRNN(replace(CONFIG, delta_readout=False))
    no_delta.load_state_dict(rnn.state_dict())
    hm, last = no_delta.eval()(x, state)
    torch.testing.assert_close(hm[-1] - last.readout, torch.zeros_like(hm[-1]))
    assert not torch.allclose(hm[1], heatmaps[1])
    with pytest.raises(ValueError, match="multiples of 8"):
        rnn.zero_state(1, 12, 16)
    with pytest.raises(ValueError, match=r"\(T, B, C, H, W\)"):
        rnn(x[0], state)


@torch.no_grad()
def test_the_ann_heads_initialise_the_rnn() -> None:
    ann, _, _ = build_models()
    hybrid = build_rnn_hybrid()
    assert is_rnn_hybrid(hybrid) and not is_snn_hybrid(hybrid)
    frame = torch.randn(2, MODEL.ann.in_channels, 16, 16)
    bins = torch.randn(3, 2, 2, 16, 16).clamp(min=0).round()
    heatmaps, state = hybrid.initial_state(frame)
    # the heads' output is the hidden state as is; the readout starts at the ANN's heatmaps
    ann_heatmaps, ann_state = ann(frame)
    for got, want in zip(state, ann_state, strict=True):
        torch.testing.assert_close(got, want)
    torch.testing.assert_close(state.readout, heatmaps)
    first, hm, after = hybrid(frame, bins)
    want_hm, want_after = hybrid.snn(bins, ann_state)
    torch.testing.assert_close(first, ann_heatmaps)
    torch.testing.assert_close(hm, want_hm)
    torch.testing.assert_close(after.up3, want_after.up3)
    # without state init the hidden states start at zero, the readout still at the heatmaps
    zeroed = HybridPose(hybrid.ann, hybrid.snn, HybridConfig(state_init=False))
    _, start = zeroed.initial_state(frame)
    assert all(not t.any() for t in start[:-1])
    torch.testing.assert_close(start.readout, heatmaps)
    assert not torch.allclose(zeroed(frame, bins)[1], hm)
    # the config check: the heads were built for MODEL.snn
    with pytest.raises(ValueError, match="another SNN configuration"):
        HybridPose(ann, ConvRNN(replace(MODEL.snn, widths=(2, 2, 2, 4))))


# ------------------------------------------------------------------------------ MACs by hand

# MODEL.snn (widths 2, 2, 2, 2; 13 joints) on 16x16: per layer, positions x out x in x k^2
HAND_MACS = {
    "enc.conv_x": 256 * 6 * 2 * 25, "enc.conv_h": 256 * 6 * 2 * 25,
    "down1.conv_x": 64 * 6 * 2 * 25, "down1.conv_h": 64 * 6 * 2 * 25,
    "down2.conv_x": 16 * 6 * 2 * 25, "down2.conv_h": 16 * 6 * 2 * 25,
    "down3.conv_x": 4 * 6 * 2 * 25, "down3.conv_h": 4 * 6 * 2 * 25,
    "res1.conv_x": 4 * 6 * 2 * 9, "res1.conv_h": 4 * 6 * 2 * 9,
    "res2.conv_x": 4 * 6 * 2 * 9, "res2.conv_h": 4 * 6 * 2 * 9,
    "up1.conv_x": 16 * 6 * 4 * 25, "up1.conv_h": 16 * 6 * 2 * 25,
    "up2.conv_x": 64 * 6 * 4 * 25, "up2.conv_h": 64 * 6 * 2 * 25,
    "up3.conv_x": 256 * 6 * 4 * 25, "up3.conv_h": 256 * 6 * 2 * 25,
    "head": 256 * 13 * 2,
    # r * h_n and z * (h - n): 2 per hidden unit (2 channels x positions)
    "enc.gates": 2 * 2 * 256, "down1.gates": 2 * 2 * 64, "down2.gates": 2 * 2 * 16,
    "down3.gates": 2 * 2 * 4, "res1.gates": 2 * 2 * 4, "res2.gates": 2 * 2 * 4,
    "up1.gates": 2 * 2 * 16, "up2.gates": 2 * 2 * 64, "up3.gates": 2 * 2 * 256,
}  # fmt: skip
HAND_STEP_MACS = 517_520


def test_mac_count_by_hand() -> None:
    assert sum(HAND_MACS.values()) == HAND_STEP_MACS
    rnn = ConvRNN(MODEL.snn).eval()
    t, b = 3, 2
    counts = count_rnn(rnn, torch.rand(t, b, 2, 16, 16))
    assert counts.samples == t * b
    assert {layer.name: layer.macs // (t * b) for layer in counts} == HAND_MACS
    assert all(layer.macs % (t * b) == 0 for layer in counts)
    totals = counts.totals
    assert (totals.macs, totals.synops, totals.membrane_updates) == (t * b * HAND_STEP_MACS, 0, 0)
    assert EnergyModel().energy_pj(counts).per_inference_pj == pytest.approx(
        HAND_STEP_MACS * 4.6, rel=1e-12
    )
    # in a hybrid window: the ANN and its heads per frame, the ConvGRU per step
    hybrid = build_rnn_hybrid()
    window = count_hybrid(hybrid, torch.rand(b, 4, 16, 16), torch.rand(t, b, 2, 16, 16))
    assert window.snn.totals.macs == t * b * HAND_STEP_MACS and window.snn.samples == t * b
    assert window.ann.samples == window.state_heads.samples == b
    assert window.state_heads.totals.macs > 0


# ------------------------------------------------------------------------------ evaluation


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, Path]:
    root = tmp_path_factory.mktemp("rnn")
    data = root / "data"
    data.mkdir()
    recording = write_recording(data / "s13.h5", 13)
    return write_checkpoints(root / "checkpoints"), recording, root


@torch.no_grad()
def test_predictions_energy_and_stream(run: tuple[Path, Path, Path]) -> None:
    checkpoints, recording, _ = run
    models = load_models(checkpoints)
    net = models.networks["hybrid_rnn"]
    assert is_rnn_hybrid(net) and "hybrid_rnn" not in models.hybrids()
    steps = WINDOW.steps
    n_windows = DURATION_US // WINDOW.stride_us
    seg = Segment(str(recording), tuple(i * WINDOW.stride_us for i in range(n_windows)), 0)
    with Recording(recording) as rec:
        data = [load_segment(rec, rec.labels(), cam, seg, WINDOW) for cam in CAMS]
    out = predict(models, data, steps)
    # known answer: every window from the ANN's state at its start, by direct calls
    for s in range(len(CAMS)):
        for w in (0, 7, n_windows - 1):
            bins = data[s].bins[w * steps : (w + 1) * steps, None]
            _, hm, _ = net(data[s].frames[w * steps][None], bins)
            got = out["hybrid_rnn"][s, w * steps : (w + 1) * steps]
            torch.testing.assert_close(got, decode_heatmaps(hm[:, 0]), atol=1e-3, rtol=0)
    assert not torch.equal(out["hybrid_rnn"], out["hybrid"])
    assert not torch.equal(out["hybrid_rnn"], out["ann_low_held"])

    # energy: (E_ANN + E_heads) once per window + the ConvGRU's E_step at 100 Hz, all dense
    energy = measure_energy(models, data[:1], WINDOW, EnergyModel())
    assert energy.firing_rate["hybrid_rnn"] is None
    assert energy.counts["hybrid_rnn_convgru_step"] == {
        "macs": HAND_STEP_MACS, "synops": 0.0, "membrane_updates": 0.0,
    }  # fmt: skip
    frame_macs = energy.counts["ann"]["macs"] + energy.counts["state_heads"]["macs"]
    high = 1e6 / WINDOW.bin_us
    expected = (frame_macs * high / steps + HAND_STEP_MACS * high) * 4.6e-12
    assert energy.power_w["hybrid_rnn"] == pytest.approx(expected, rel=1e-12)
    assert energy.power_w["hybrid_rnn"] > energy.power_w["hybrid"]

    # the stream runs it step by step and gives the same poses (dense engine only)
    with Recording(recording) as rec:
        events = [rec.events(c, 0, 10**12) for c in CAMS]
    sp = StreamingPredictor.from_checkpoints(checkpoints, "hybrid_rnn", streams=2)
    poses = [*sp.push(events[0], 0), *sp.push(events[1], 1), *sp.advance(DURATION_US)]
    assert [p.step for p in poses] == [i % steps + 1 for i in range(len(poses))]
    streamed = np.stack([p.uv for p in poses], axis=1)
    expected_uv = np.stack(
        [to_sensor_pixels(out["hybrid_rnn"][s].double().numpy(), WINDOW.crop,
                          WINDOW.downsample) for s in range(len(CAMS))]
    )  # fmt: skip
    np.testing.assert_allclose(streamed, expected_uv, atol=1e-4)
    with pytest.raises(StreamError, match="runs SNNs only"):
        StreamingPredictor.from_checkpoints(checkpoints, "hybrid_rnn", engine="event")
    with pytest.raises(StreamError, match="'hybrid_rnn' steps a ConvRNN, not a SNN"):
        StreamingPredictor("hybrid_rnn", WINDOW, (24, 24), ann=net.ann, snn=models.snn)
    with pytest.raises(StreamError, match="'hybrid' steps a SNN, not a ConvRNN"):
        StreamingPredictor("hybrid", WINDOW, (24, 24), ann=net.ann, snn=net.snn)


def test_evaluate_reports_it(run: tuple[Path, Path, Path]) -> None:
    checkpoints, _, root = run
    spec = EvalSpec(
        checkpoints, root / "data", root / "out", windows_per_recording=4, energy_windows=4,
        protocols=("project",),
    )  # fmt: skip
    report = evaluate(spec, progress=False)
    m = report["models"]["hybrid_rnn"]
    assert m["mpjpe2d_px"] > 0 and len(m["mpjpe2d_px_per_step"]) == WINDOW.steps
    assert m["firing_rate"] is None and m["derived"] is False and m["power_w"] > 0
    counts = report["setup"]["counts_per_inference"]
    assert counts["hybrid_rnn_convgru_step"]["macs"] == HAND_STEP_MACS
    assert report["paper"]["models"]["hybrid_rnn"]["last_step_px"] == 5.52
    assert "| CNN-RNN hybrid (ConvGRU) |" in (root / "out" / "report.md").read_text()


# ------------------------------------------------------------------------------ loading


def test_load_models_with_and_without_its_checkpoint(
    run: tuple[Path, Path, Path], tmp_path: Path
) -> None:
    checkpoints, _, _ = run
    with_rnn = load_models(checkpoints)
    assert list(with_rnn.networks)[-1] == "hybrid_rnn"
    without = tmp_path / "without"
    without.mkdir()
    for name in ("ann", "snn", "hybrid"):
        shutil.copy(checkpoints / f"{name}.pt", without / f"{name}.pt")
    models = load_models(without)
    assert "hybrid_rnn" not in models.networks
    assert list(models.networks) == [n for n in with_rnn.networks if n != "hybrid_rnn"]
    with pytest.raises(FileNotFoundError, match=r"hybrid_rnn\.pt: no such checkpoint file; the"):
        load_models(without, ["hybrid", "hybrid_rnn"])
    only = load_models(checkpoints, ["hybrid_rnn"])
    assert list(only.networks) == ["hybrid_rnn"] and only.config == MODEL
    # the SNN's hybrid where the ConvGRU's should be
    shutil.copy(checkpoints / "hybrid.pt", without / "hybrid_rnn.pt")
    with pytest.raises(EvaluationError, match="expected a hybrid of a ConvRNN, got hybrid"):
        load_models(without)
    # the ONNX export is the SNN hybrid's only
    with pytest.raises(ExportError, match="a 'hybrid_rnn' checkpoint; export needs the hybrid"):
        export_onnx(checkpoints / "hybrid_rnn.pt", tmp_path / "onnx", progress=False)


# ------------------------------------------------------------------------------ training


def test_recipes_and_specs_have_the_stage(tmp_path: Path) -> None:
    assert STAGES[-2:] == ("hybrid", "hybrid_rnn")
    for name, rec in RECIPES.items():  # every recipe that trains it has settings of its own
        if "hybrid_rnn" in rec.stages:
            assert rec.hybrid_rnn is not None, name
            assert rec.stage("hybrid_rnn") is rec.hybrid_rnn
    assert [n for n, r in RECIPES.items() if "hybrid_rnn" not in r.stages] == [
        "cpu-1khz",
        "cpu-sparse",
    ]
    assert RECIPES["cpu"].stage("hybrid_rnn").epochs == 2
    plain = Recipe(RECIPES["cpu"].window, StageConfig(), StageConfig(), StageConfig(epochs=3))
    assert plain.stage("hybrid_rnn") == StageConfig(epochs=3)  # the hybrid's, by default
    spec = make_spec("hybrid_rnn", "cpu", tmp_path, tmp_path)
    assert spec.name == "hybrid_rnn" and spec.optim == RECIPES["cpu"].hybrid_rnn
    with pytest.raises(TrainingError, match="ablations of the hybrid stage"):
        make_spec("hybrid_rnn", "cpu", tmp_path, tmp_path, state_init=False)


@pytest.fixture(scope="module")
def train_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    data = tmp_path_factory.mktemp("train_data")
    write_recording(data / "S1_mov1.h5", 1)
    return data


def _spec(stage: str, data: Path, out: Path) -> TrainSpec:
    return TrainSpec(
        stage=stage,  # type: ignore[arg-type]
        preset="test",
        data_dir=data,
        out_dir=out,
        optim=StageConfig(
            lr=1e-2, batch_size=4, epochs=1, samples_per_epoch=16, state_loss_weight=0.1
        ),
        model=MODEL,
        window=WINDOW,
        name=stage,
        seed=3,
        subjects=(1,),
    )


def test_training_the_stage(train_dir: Path, tmp_path: Path) -> None:
    """The U-Net stays the ANN's, the heads and the ConvGRU train, the state loss is on; the
    checkpoint loads, shares its U-Net with ann.pt, and refuses an SNN to start from.
    (Exact resume: tests/test_train.py's test_resume_is_exact.)"""
    ann_path = train(_spec("ann", train_dir, tmp_path), progress=False, tensorboard=False)
    spec = _spec("hybrid_rnn", train_dir, tmp_path)
    path = train(spec, progress=False, tensorboard=False)
    assert path.name == "hybrid_rnn.pt"
    rows = spec.log_path.read_text().splitlines()
    state_loss = float(rows[-1].split(",")[5])
    assert rows[0].split(",")[5] == "state_loss" and state_loss > 0
    model, data = load_model(path)
    assert is_rnn_hybrid(model) and not model.training and data["stage"] == "hybrid_rnn"
    ann, _ = load_model(ann_path)
    torch.manual_seed(3)
    fresh = build_model("hybrid_rnn", MODEL)
    assert is_rnn_hybrid(fresh)
    trained, initial = model.state_dict(), fresh.state_dict()
    for key, value in ann.state_dict().items():
        if not key.startswith("state_heads."):
            assert torch.equal(trained[f"ann.{key}"], value), key
    changed = {k for k in trained if not torch.equal(trained[k], initial[k])}
    assert {"snn.enc.conv_x.weight", "snn.up3.conv_h.weight", "snn.head.weight"} <= changed
    assert "ann.state_heads.enc.0.weight" in changed
    # shipped as the hybrid is: the frozen U-Net read from ann.pt
    shipped = tmp_path / "shipped"
    shipped.mkdir()
    ann_data = strip_optimizer(load_checkpoint(ann_path))
    save_checkpoint(shipped / "ann.pt", ann_data)
    save_checkpoint(shipped / "hybrid_rnn.pt", share_ann(strip_optimizer(data), ann_data, "ann.pt"))
    again, _ = load_model(shipped / "hybrid_rnn.pt")
    for key, value in again.state_dict().items():
        assert torch.equal(value, trained[key]), key
    # an SNN to start from makes no sense here
    other = replace(spec, out_dir=tmp_path / "other", init_snn=ann_path)
    other.out_dir.mkdir()
    shutil.copy(ann_path, other.out_dir / "ann.pt")
    with pytest.raises(TrainingError, match="the hybrid_rnn stage trains no SNN"):
        train(other, progress=False, tensorboard=False)
