"""Tests of hybridpose.export: ONNX graphs checked against PyTorch with onnxruntime.

PyTorch is the independent reference throughout: the graphs are compared with
``HybridPose.initial_state``, ``SNN.step`` and ``HybridPose.forward`` (the fused training LIF),
and a deliberately damaged graph must fail the check. A tiny hybrid with calibrated BatchNorm
(every layer spikes at a moderate rate) keeps the exports quick; the shipped ``cpu`` weights
are exported once through docs/export.md's own example.
"""

from __future__ import annotations

import json
import re
import shutil
import sys
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import onnxruntime
import pytest
import torch
from onnx import numpy_helper
from tiny_run import _payload  # tests/tiny_run.py: train.py's checkpoint payload
from torch import Tensor, nn

from hybridpose import __version__
from hybridpose.checkpoint import CheckpointError, save_checkpoint, share_ann
from hybridpose.data import WindowConfig
from hybridpose.export import (
    ANN_INPUTS,
    ANN_OUTPUTS,
    STATE_INPUTS,
    STEP_INPUTS,
    STEP_OUTPUTS,
    TOLERANCE,
    ExportError,
    ExportResult,
    VerificationError,
    _clear_of_threshold,
    _decisions_from_state,
    _follow,
    _membranes,
    _Tally,
    _threshold_margin,
    export_onnx,
    plain_snn_step,
    verify_onnx,
)
from hybridpose.nn.ann import ANNConfig
from hybridpose.nn.hybrid import HybridConfig, HybridPose
from hybridpose.nn.presets import ModelConfig
from hybridpose.nn.snn import SNNConfig, SNNState
from hybridpose.recipes import window_from_dict

pytestmark = pytest.mark.usefixtures("one_thread")  # tests/conftest.py

DOC = Path(__file__).parents[1] / "docs" / "export.md"

# the cpu preset's structure, smaller: 16x16 input, widths 4
MODEL = ModelConfig(
    name="tiny",
    sensor_size=(24, 24),
    input_size=(16, 16),
    ann=ANNConfig(in_channels=4, stem=4, widths=(4, 4, 4, 4)),
    snn=SNNConfig(widths=(4, 4, 4, 4), tau=3.0, readout_decay=0.8),
)
# state init off and the delta readout off: the two other branches of both graphs
ABLATION = replace(
    MODEL, snn=replace(MODEL.snn, delta_readout=False), hybrid=HybridConfig(state_init=False)
)
WINDOW = WindowConfig(
    ann_events=100, ann_bins=2, bin_us=10_000, steps=4, stride_us=40_000, crop=(4, 4, 16, 16)
)


def build_hybrid(config: ModelConfig, seed: int = 0) -> HybridPose:
    """A seeded hybrid whose BatchNorm statistics are measured on event-like inputs, with gains
    and offsets that make every SNN layer fire at a moderate rate and the ANN's membranes of
    order 1 to 10, and a non-zero SNN head (a fresh one is zero)."""
    torch.manual_seed(seed)
    hybrid = config.build_hybrid().eval()
    h, w = config.input_size
    # about as many events as verification's frames (100 in 4 x 16 x 16) and bins
    frame = torch.poisson(torch.full((16, config.ann.in_channels, h, w), 0.1))
    bins = torch.poisson(torch.full((WINDOW.steps, 16, 2, h, w), 0.05))
    ann_layers = set(hybrid.ann.modules())
    with torch.no_grad():
        # one BatchNorm at a time, in the order they run, each measuring its input with every
        # layer before it as it will run (all at once in training mode, the ANN's nearly
        # constant random features get statistics that eval mode magnifies tenfold)
        for bn in (m for m in hybrid.modules() if isinstance(m, nn.BatchNorm2d)):
            bn.momentum = None  # running statistics = those of this one batch
            bn.train()
            hybrid(frame, bins)
            bn.eval()
            gain = 0.5 if bn in ann_layers else 1.0
            bn.weight.uniform_(gain, 3 * gain)
            bn.bias.uniform_(-0.5, 1.5)
        nn.init.normal_(hybrid.snn.head.weight, std=0.5)
        assert hybrid.snn.head.bias is not None
        nn.init.normal_(hybrid.snn.head.bias, std=0.1)
    return hybrid


def write_checkpoints(directory: Path, config: ModelConfig) -> HybridPose:
    """``ann.pt`` and a ``hybrid.pt`` that reads its frozen U-Net from it, as shipped."""
    hybrid = build_hybrid(config)
    ann = _payload("ann", "ann", hybrid.ann, config, WINDOW)
    hybrid_payload = _payload("hybrid", "hybrid", hybrid, config, WINDOW)
    save_checkpoint(directory / "ann.pt", ann)
    save_checkpoint(directory / "hybrid.pt", share_ann(hybrid_payload, ann, "ann.pt"))
    return hybrid


@dataclass(frozen=True)
class Exported:
    checkpoints: Path
    result: ExportResult
    hybrid: HybridPose


def _export(root: Path, config: ModelConfig) -> Exported:
    checkpoints = root / "checkpoints"
    hybrid = write_checkpoints(checkpoints, config)
    result = export_onnx(checkpoints, root / "exported", progress=False)
    return Exported(checkpoints, result, hybrid)


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> Exported:
    return _export(tmp_path_factory.mktemp("tiny"), MODEL)


@pytest.fixture(scope="module")
def ablation(tmp_path_factory: pytest.TempPathFactory) -> Exported:
    return _export(tmp_path_factory.mktemp("ablation"), ABLATION)


def _session(path: Path) -> onnxruntime.InferenceSession:
    return onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])


def _dims(value: onnx.ValueInfoProto) -> list[int | str]:
    return [d.dim_param or d.dim_value for d in value.type.tensor_type.shape.dim]


def _random_state(config: ModelConfig, batch: int, seed: int) -> SNNState:
    g = torch.Generator().manual_seed(seed)
    zero = config.build_snn().zero_state(batch, *config.input_size)
    return SNNState._make(torch.randn(t.shape, generator=g) for t in zero)


def _python_blocks(text: str) -> list[str]:
    return re.findall(r"```python\n(.*?)```", text, flags=re.DOTALL)


# ----------------------------------------------------------------------------- the step


def test_plain_step_equals_snn_step_bitwise() -> None:
    """The exported step, looped, equals SNN.step (numba's fused LIF) exactly, on a network
    whose every layer fires at a moderate rate (so that equality says something)."""
    snn = build_hybrid(MODEL).snn
    h, w = MODEL.input_size
    g = torch.Generator().manual_seed(1)
    bins = torch.poisson(torch.full((5, 2, 2, h, w), 0.05), generator=g)
    rates: dict[str, list[float]] = {}

    def record(name: str, h: Tensor, v_th: float) -> Tensor:
        s = (h >= v_th).float()
        rates.setdefault(name, []).append(float(s.mean()))
        return s

    state = want_state = _random_state(MODEL, 2, seed=2)
    with torch.no_grad():
        for t in range(len(bins)):
            got, state = plain_snn_step(snn, bins[t], state, record)
            want, want_state = snn.step(bins[t], want_state)
            assert torch.equal(got, want), t
            for field in SNNState._fields:
                assert torch.equal(getattr(state, field), getattr(want_state, field)), field
    assert set(rates) == set(SNNState._fields) - {"readout"}
    for name, per_step in rates.items():
        assert 0.02 < np.mean(per_step) < 0.9, (name, per_step)


def test_clearing_the_threshold_moves_only_borderline_membranes_and_no_spike() -> None:
    """Half the first layer's membranes put exactly at the threshold (``h = v_th`` up to
    rounding): clearing moves those, and only those, at least the tolerance away, and every
    layer spikes as before."""
    snn = build_hybrid(MODEL).snn
    h, w = MODEL.input_size
    bins = torch.poisson(torch.full((2, 2, h, w), 0.05), generator=torch.Generator().manual_seed(4))
    state = _random_state(MODEL, 2, seed=5)
    with torch.no_grad():
        before = _membranes(snn, bins, state)["enc"]
        v_th = snn.config.v_th
        gain = 1 - 1 / float(snn.spiking_layers()["enc"].tau)  # h moves by gain x v's move
        half = torch.rand(state.enc.shape, generator=torch.Generator().manual_seed(6)) < 0.5
        borderline = state._replace(
            enc=torch.where(half, state.enc + (v_th - before) / gain, state.enc)
        )
        assert _threshold_margin(snn, bins, borderline) < 1e-6
        cleared = _clear_of_threshold(snn, bins, borderline, TOLERANCE)
        assert _threshold_margin(snn, bins, cleared) >= TOLERANCE
        moved = cleared.enc != borderline.enc
        assert moved.any() and not (moved & ~half).any()
        spikes = [_membranes(snn, bins, s) for s in (borderline, cleared)]
    for name in spikes[0]:
        assert torch.equal(spikes[0][name] >= v_th, spikes[1][name] >= v_th), name


def test_follow_takes_the_other_decision_only_at_the_threshold() -> None:
    """Hand-made membranes: two far from the threshold keep PyTorch's decision whatever the
    other runtime did; two within the tolerance take the other runtime's."""
    v_th = 1.0
    h = torch.tensor([v_th - 2e-3, v_th - 5e-5, v_th + 5e-5, v_th + 2e-3])
    theirs = torch.tensor([True, True, False, False])
    tally = _Tally()
    spikes = _follow({"enc": theirs}, TOLERANCE, tally)("enc", h, v_th)
    assert spikes.tolist() == [0.0, 1.0, 0.0, 1.0]
    assert (tally.borderline, tally.flips) == (2, 2)


def test_decisions_read_from_next_membranes() -> None:
    """Near the threshold the next membrane ``h - s v_th`` is about 0 after a spike and about
    ``v_th`` without one."""
    snn = MODEL.build_snn()
    zero = snn.zero_state(1, 8, 8)
    nxt = zero._replace(enc=torch.full_like(zero.enc, 3e-5), up3=torch.full_like(zero.up3, 0.99997))
    decided = _decisions_from_state(snn, nxt)
    assert set(decided) == set(SNNState._fields) - {"readout"}
    assert decided["enc"].all() and not decided["up3"].any()


# ----------------------------------------------------------------------------- the export


def test_export_writes_verified_graphs(tiny: Exported) -> None:
    result = tiny.result
    out = result.ann.parent
    assert sorted(p.name for p in out.iterdir()) == ["ann.onnx", "manifest.json",
                                                     "snn_step.onnx"]  # fmt: skip
    assert result.snn_step.parent == out and result.manifest.parent == out
    v = result.verification
    assert v is not None and v.passed
    assert set(v.ann) == set(ANN_OUTPUTS) and set(v.step) == set(STEP_OUTPUTS)
    assert set(v.loop) == set(STEP_OUTPUTS) and v.loop_steps == WINDOW.steps
    assert all(0.0 <= d <= TOLERANCE for d in v.differences().values()), v.differences()
    assert v.max_abs_diff == max(v.differences().values())
    assert v.step_margin >= TOLERANCE  # no membrane of the step check near the threshold
    assert 0 <= v.flips <= v.borderline
    assert result.opset == onnx.load(result.ann).opset_import[0].version


def test_graph_names_shapes_and_dynamic_batch(tiny: Exported) -> None:
    ann, step = onnx.load(tiny.result.ann), onnx.load(tiny.result.snn_step)
    assert [i.name for i in ann.graph.input] == list(ANN_INPUTS) == ["frame"]
    assert [o.name for o in ann.graph.output] == list(ANN_OUTPUTS)
    assert [i.name for i in step.graph.input] == list(STEP_INPUTS)
    assert [o.name for o in step.graph.output] == list(STEP_OUTPUTS)
    assert ANN_OUTPUTS[1:] == STEP_INPUTS[1:]  # the ANN's state feeds the step unchanged
    h, w = MODEL.input_size
    zero = MODEL.build_snn().zero_state(1, h, w)
    state_shapes = [["batch", *t.shape[1:]] for t in zero]
    assert _dims(ann.graph.input[0]) == ["batch", 4, h, w]
    assert [_dims(o) for o in ann.graph.output] == [["batch", 13, h, w], *state_shapes]
    assert [_dims(i) for i in step.graph.input] == [["batch", 2, h, w], *state_shapes]
    assert [_dims(o) for o in step.graph.output] == [["batch", 13, h, w], *state_shapes]

    ann_session, step_session = _session(tiny.result.ann), _session(tiny.result.snn_step)
    for batch in (1, 3):
        frame = torch.poisson(torch.full((batch, 4, h, w), 0.4))
        outputs = ann_session.run(None, {"frame": frame.numpy()})
        with torch.no_grad():
            heatmaps, state = tiny.hybrid.initial_state(frame)
        for got, want in zip(outputs, (heatmaps, *state), strict=True):
            assert got.shape == tuple(want.shape)
            np.testing.assert_allclose(got, want.numpy(), rtol=0, atol=TOLERANCE)
        bins = torch.poisson(torch.full((batch, 2, h, w), 0.05))
        feeds = {"bins": bins.numpy(), **dict(zip(STATE_INPUTS, outputs[1:], strict=True))}
        stepped = step_session.run(None, feeds)
        assert [o.shape for o in stepped] == [o.shape for o in outputs]
        # values at this batch size, with the threshold handled: the full check
        verification = verify_onnx(tiny.result.ann.parent, tiny.checkpoints, batch=batch)
        assert verification.batch == batch and verification.passed


def test_manifest_round_trip(tiny: Exported) -> None:
    manifest = json.loads(tiny.result.manifest.read_text())
    assert manifest["format"] == "hybridpose-onnx" and manifest["format_version"] == 1
    assert manifest["hybridpose_version"] == __version__
    assert manifest["opset"] == tiny.result.opset
    assert ModelConfig.from_dict(manifest["model_config"]) == MODEL
    assert window_from_dict(manifest["window_config"]) == WINDOW
    assert manifest["steps_per_window"] == WINDOW.steps == 4
    assert manifest["bin_us"] == WINDOW.bin_us and manifest["ann_events"] == WINDOW.ann_events
    assert manifest["ann_bins"] == 2 and manifest["window_us"] == 40_000
    assert manifest["crop"] == [4, 4, 16, 16] and manifest["downsample"] == 1
    assert manifest["input_size"] == [16, 16] and manifest["sensor_size"] == [24, 24]
    assert len(manifest["joints"]) == 13 and manifest["joints"][0] == "head"
    assert manifest["checkpoint"]["name"] == "hybrid" and manifest["checkpoint"]["step"] == 10
    # every name and shape the manifest gives is the graph's own
    for key, path in (("ann", tiny.result.ann), ("snn_step", tiny.result.snn_step)):
        graph = onnx.load(path).graph
        described = manifest["graphs"][key]
        assert described["file"] == path.name
        for side, values in (("inputs", graph.input), ("outputs", graph.output)):
            assert [(t["name"], t["shape"]) for t in described[side]] == [
                (v.name, _dims(v)) for v in values
            ]
    state = manifest["state"]
    assert [s["name"] for s in state] == list(SNNState._fields)
    assert [s["ann_output"] for s in state] == list(ANN_OUTPUTS[1:])
    assert [s["step_input"] for s in state] == list(STEP_INPUTS[1:])
    assert [s["step_output"] for s in state] == list(STEP_OUTPUTS[1:])


def test_ablation_graphs_zero_membranes_and_ignore_the_readout(ablation: Exported) -> None:
    """``state_init=False``: the ANN graph's membranes are zeros (its readout still the
    heatmaps); ``delta_readout=False``: the step's output does not depend on state_readout."""
    v = ablation.result.verification
    assert v is not None and v.passed
    h, w = MODEL.input_size
    frame = torch.poisson(torch.full((2, 4, h, w), 0.4)).numpy()
    outputs = _session(ablation.result.ann).run(None, {"frame": frame})
    assert all(not o.any() for o in outputs[1:-1])
    np.testing.assert_array_equal(outputs[-1], outputs[0])
    assert np.abs(outputs[0]).max() > 0
    step = _session(ablation.result.snn_step)
    state = {n: t.numpy() for n, t in zip(STATE_INPUTS, _random_state(ABLATION, 2, 3),
                                           strict=True)}  # fmt: skip
    bins = torch.poisson(torch.full((2, 2, h, w), 0.05)).numpy()
    first = step.run(None, {"bins": bins, **state})
    state["state_readout"] = state["state_readout"] + 5.0
    second = step.run(None, {"bins": bins, **state})
    for a, b in zip(first, second, strict=True):
        np.testing.assert_array_equal(a, b)


def test_verification_catches_a_damaged_graph(tiny: Exported, tmp_path: Path) -> None:
    """One convolution weight of the step graph nudged by 1e-2: the check must fail, naming
    the step graph, and the error must carry the differences."""
    shutil.copy(tiny.result.ann, tmp_path / "ann.onnx")
    model = onnx.load(tiny.result.snn_step)
    weights = [t for t in model.graph.initializer if len(t.dims) == 4]  # conv kernels
    assert weights
    array = numpy_helper.to_array(weights[0]).copy()
    array.flat[0] += 1e-2
    weights[0].CopyFrom(numpy_helper.from_array(array, weights[0].name))
    onnx.save(model, tmp_path / "snn_step.onnx")
    with pytest.raises(
        VerificationError, match=r"does not match PyTorch: (step|loop)\.\w+ differs by "
    ) as err:
        verify_onnx(tmp_path, tiny.checkpoints)
    verification = err.value.verification
    assert not verification.passed
    assert max(verification.step.values()) > TOLERANCE
    assert max(verification.ann.values()) <= TOLERANCE  # the ANN graph is intact


# ----------------------------------------------------------------------------- errors


def test_missing_or_wrong_checkpoints(tiny: Exported, tmp_path: Path) -> None:
    out = tmp_path / "out"
    missing = tmp_path / "no-such-dir"
    with pytest.raises(FileNotFoundError, match=re.escape(f"{missing / 'hybrid.pt'}: no such")):
        export_onnx(missing, out, progress=False)
    damaged = tmp_path / "damaged"
    damaged.mkdir()
    (damaged / "hybrid.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(CheckpointError, match="not a loadable checkpoint"):
        export_onnx(damaged, out, progress=False)
    # an ANN checkpoint in place of the hybrid's
    stage = tmp_path / "stage"
    stage.mkdir()
    shutil.copy(tiny.checkpoints / "ann.pt", stage / "hybrid.pt")
    with pytest.raises(ExportError, match="'ann' checkpoint; export needs the hybrid"):
        export_onnx(stage, out, progress=False)
    # the hybrid without the ann.pt its U-Net is read from
    alone = tmp_path / "alone"
    alone.mkdir()
    shutil.copy(tiny.checkpoints / "hybrid.pt", alone / "hybrid.pt")
    with pytest.raises(FileNotFoundError, match=r"ann\.pt: no such checkpoint file"):
        export_onnx(alone, out, progress=False)
    with pytest.raises(FileNotFoundError, match=r"ann\.onnx: no such file"):
        verify_onnx(tmp_path, tiny.checkpoints)
    assert not out.exists()


def test_missing_extra_names_it(tiny: Exported, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "onnxruntime", None)  # import raises ImportError
    with pytest.raises(ExportError, match=re.escape("onnxruntime (the onnx extra): pip install "
                                                    "'hybridpose[onnx]'")):  # fmt: skip
        export_onnx(tiny.checkpoints, tiny.checkpoints / "never", progress=False)
    assert not (tiny.checkpoints / "never").exists()


# ----------------------------------------------------------------------------- the docs


def test_doc_loop_example_runs_on_the_tiny_export(
    tiny: Exported, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """docs/export.md's onnxruntime loop, executed as written against the tiny export."""
    loop = next(b for b in _python_blocks(DOC.read_text()) if "import onnxruntime" in b)
    monkeypatch.chdir(tiny.result.ann.parent.parent)  # the example reads ./exported
    namespace: dict[str, Any] = {"__name__": "__doc__"}
    exec(compile(loop, str(DOC), "exec"), namespace)
    printed = capsys.readouterr().out.splitlines()
    assert len(printed) == 2 * (1 + WINDOW.steps)  # two windows: the ANN line, then each step
    joints = namespace["joints"]
    assert joints.shape == (13, 2)
    # the decoded joints are the heatmaps' argmax, mapped back into the sensor's crop
    heatmaps = namespace["heatmaps"]
    flat = heatmaps[0].reshape(13, -1).argmax(axis=1)
    np.testing.assert_array_equal(joints, np.stack([flat % 16 + 4, flat // 16 + 4], axis=1))
    assert set(namespace["state"]) == set(STATE_INPUTS)


def test_doc_export_example_on_the_shipped_weights(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """docs/export.md's export example (the shipped cpu weights, verified), then its loop."""
    blocks = _python_blocks(DOC.read_text())
    export_block = next(b for b in blocks if "export_onnx(" in b)
    loop = next(b for b in blocks if "import onnxruntime" in b)
    monkeypatch.chdir(tmp_path)
    namespace: dict[str, Any] = {"__name__": "__doc__"}
    exec(compile(export_block, str(DOC), "exec"), namespace)
    result = namespace["result"]
    assert isinstance(result, ExportResult)
    v = result.verification
    assert v is not None and v.passed and v.batch == 2 and v.loop_steps == 10
    assert all(d <= TOLERANCE for d in v.differences().values())
    assert v.step_margin >= TOLERANCE and v.borderline > 0  # real weights: some membranes are
    assert 0 <= v.flips <= v.borderline  # within 1e-4 of the threshold in a 10-step window
    manifest = json.loads(result.manifest.read_text())
    assert manifest["steps_per_window"] == 10 and manifest["crop"] == [11, 0, 64, 64]
    capsys.readouterr()
    exec(compile(loop, str(DOC), "exec"), {"__name__": "__doc__"})
    assert len(capsys.readouterr().out.splitlines()) == 2 * (1 + 10)


def test_export_command(tiny: Exported, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from hybridpose.cli import main

    out = tmp_path / "cli"
    assert main(["export", "--checkpoint", str(tiny.checkpoints), "--format", "onnx",
                 "--out", str(out), "--quiet"]) == 0  # fmt: skip
    printed = capsys.readouterr().out
    assert f"wrote {out / 'ann.onnx'}" in printed and f"wrote {out / 'snn_step.onnx'}" in printed
    assert "verified with onnxruntime against PyTorch" in printed
    assert json.loads((out / "manifest.json").read_text()) == json.loads(
        tiny.result.manifest.read_text()
    )
    assert main(["export", "--checkpoint", str(tmp_path / "none"), "--out", str(out)]) == 2
    assert "no such" in capsys.readouterr().err
