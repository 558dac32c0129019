"""Tests of the model-variant registry (hybridpose.variants): its facts, the rule that a variant's
name lives in the registry only, and a variant added through the registry alone (the SNN
restarted from an empty state at every window) flowing through the evaluation, the energy
count, the report and the streaming predictor."""

from __future__ import annotations

import re
import shutil
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch
from tiny_run import DURATION_US, WINDOW, write_checkpoints, write_recording

import hybridpose
from hybridpose.data import to_sensor_pixels
from hybridpose.energy import EnergyModel, count_snn
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
from hybridpose.heatmaps import decode_heatmaps
from hybridpose.io.recording import Recording
from hybridpose.nn.snn import SNN
from hybridpose.recipes import STAGES
from hybridpose.stream import StreamError, StreamingPredictor
from hybridpose.variants import (
    MAIN,
    REFERENCE,
    SCHEDULES,
    SNN_ALONE,
    VARIANTS,
    PaperFigures,
    Schedule,
    UnknownVariantError,
    Variant,
    ablations,
    demo_variants,
    hybrid_checkpoint_name,
    names,
    variant,
)

pytestmark = pytest.mark.usefixtures("one_thread")  # tests/conftest.py

CAMS = (2, 3)
SRC = Path(hybridpose.__file__).parent


# ------------------------------------------------------------------------------ the registry


def test_registry_facts() -> None:
    assert names() == (
        "ann_high", "ann_low_held", "snn", "snn_continuous", "hybrid", "hybrid_no_state_init",
        "hybrid_no_delta", "hybrid_rnn",
    )  # fmt: skip
    assert all(VARIANTS[n].name == n for n in names())
    assert {REFERENCE, MAIN, SNN_ALONE} <= set(names())
    assert len({v.color for v in VARIANTS.values()}) == len(VARIANTS)
    assert len({v.label for v in VARIANTS.values()}) == len(VARIANTS)
    assert all(v.behaviour in SCHEDULES for v in VARIANTS.values())
    assert [v.name for v in demo_variants()] == ["ann_high", "ann_low_held", "snn", "hybrid"]
    assert [(v.name, v.state_init, v.delta_readout) for v in ablations()] == [
        ("hybrid_no_state_init", False, True),
        ("hybrid_no_delta", True, False),
    ]
    assert all(v.derive_from == MAIN and v.behaviour == "hybrid" for v in ablations())
    # the paper's Table 1 figures: hybrid 5.19 px at 0.424 W, the ANN 5.03 px at 3.718 W
    assert variant(MAIN).paper == PaperFigures(5.19, (5.16, 5.17), 0.424)
    assert variant(REFERENCE).paper.power_w == 3.718
    # the paper's SNN row restarts the SNN at every window; the continuous one carries it
    assert variant("snn").schedule.ann == "never" and variant("snn").schedule.snn == "from_zero"
    assert variant("snn_continuous").schedule.snn == "carried"
    assert variant("snn_continuous").checkpoint == "snn"
    assert variant("ann_low_held").runs_ann and not variant("ann_low_held").runs_snn
    # the CNN-RNN hybrid: the hybrid's schedule with a ConvGRU stepping; optional; the paper
    # gives its error at the window's last step only
    rnn = variant("hybrid_rnn")
    assert rnn.schedule == Schedule("window_start", "from_ann", "convgru")
    assert rnn.checkpoint == "hybrid_rnn" and rnn.optional and not rnn.is_ablation
    assert rnn.paper == PaperFigures(None, last_step_px=5.52)
    assert [v.name for v in VARIANTS.values() if v.optional] == ["hybrid_rnn"]
    assert all(SCHEDULES[b].stepper == "snn" for b in SCHEDULES if b != "hybrid_rnn")
    with pytest.raises(UnknownVariantError, match="unknown model 'cnn'; choose one of ann_high"):
        variant("cnn")


def test_hybrid_checkpoint_names() -> None:
    assert hybrid_checkpoint_name(True, True) == "hybrid"
    assert hybrid_checkpoint_name(False, True) == "hybrid_no_state_init"
    assert hybrid_checkpoint_name(True, False) == "hybrid_no_delta"
    assert hybrid_checkpoint_name(False, False) == "hybrid_no_state_init_no_delta"


def test_a_variant_name_lives_in_the_registry() -> None:
    """Each variant name appears in at most two source files. The names that are also training
    stages (``snn``, ``hybrid``, ``hybrid_rnn``: stage, checkpoint and configuration names) are
    left out."""
    sources = {p: p.read_text() for p in SRC.rglob("*.py")}
    checked = [n for n in names() if n not in STAGES]
    assert [n for n in names() if n in STAGES] == ["snn", "hybrid", "hybrid_rnn"]
    assert checked == [
        "ann_high", "ann_low_held", "snn_continuous", "hybrid_no_state_init", "hybrid_no_delta",
    ]  # fmt: skip
    for name in checked:
        pattern = re.compile(rf"\b{name}\b")
        files = sorted(
            str(p.relative_to(SRC)) for p, text in sources.items() if pattern.search(text)
        )
        assert "variants.py" in files and len(files) <= 2, (name, files)


# ------------------------------------------------------------------------------ a new variant

RESTARTED = Variant(
    "snn_restarted", "SNN alone, restarted", "#bcbd22", "snn_from_zero", "snn",
    PaperFigures(21.4, (45.6, 15.5)),
)  # fmt: skip


@pytest.fixture
def registered(monkeypatch: pytest.MonkeyPatch) -> Iterator[Variant]:
    """The registry with one more variant, added as a user would: one entry."""
    monkeypatch.setitem(VARIANTS, RESTARTED.name, RESTARTED)
    yield RESTARTED


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, Path]:
    root = tmp_path_factory.mktemp("variants")
    data = root / "data"
    data.mkdir()
    recording = write_recording(data / "s13.h5", 13)
    return write_checkpoints(root / "checkpoints"), recording, root


@torch.no_grad()
def test_new_variant_predictions_energy_and_stream(
    registered: Variant, run: tuple[Path, Path, Path]
) -> None:
    checkpoints, recording, _ = run
    models = load_models(checkpoints)
    assert models.networks[registered.name] is models.snn  # snn.pt, read once
    steps = WINDOW.steps
    n_windows = DURATION_US // WINDOW.stride_us
    seg = Segment(str(recording), tuple(i * WINDOW.stride_us for i in range(n_windows)), 0)
    with Recording(recording) as rec:
        data = [load_segment(rec, rec.labels(), cam, seg, WINDOW) for cam in CAMS]
    out = predict(models, data, steps)
    assert list(out)[-1] == registered.name
    # known answer: every window from the zero state, by direct calls of the SNN
    snn = models.snn
    for s in range(len(CAMS)):
        for w in range(n_windows):
            bins = data[s].bins[w * steps : (w + 1) * steps, None]
            hm, _ = snn(bins, snn.zero_state(1, *bins.shape[-2:]))
            got = out[registered.name][s, w * steps : (w + 1) * steps]
            torch.testing.assert_close(got, decode_heatmaps(hm[:, 0]), atol=1e-3, rtol=0)
    # the same behaviour as the registered ``snn``; restarting differs from carrying the state
    # (windows after the first)
    torch.testing.assert_close(out[registered.name], out["snn"], atol=0, rtol=0)
    carried = out["snn_continuous"]
    assert not torch.equal(out[registered.name][:, steps:], carried[:, steps:])
    torch.testing.assert_close(out[registered.name][:, :steps], carried[:, :steps])

    # energy: the SNN's counted steps when run window by window from zero, at 100 Hz
    energy = measure_energy(models, data[:1], WINDOW, EnergyModel())
    windows = data[0].bins.reshape(n_windows, steps, *data[0].bins.shape[1:]).transpose(0, 1)
    step = EnergyModel().energy_pj(count_snn(snn, windows)).per_inference_pj
    assert energy.power_w[registered.name] == pytest.approx(step * 1e-12 * 1e6 / WINDOW.bin_us)
    assert energy.power_w[registered.name] == energy.power_w["snn"]
    assert energy.power_w[registered.name] != energy.power_w["snn_continuous"]
    assert energy.firing_rate[registered.name] is not None

    # the stream runs it step by step and gives the same poses
    with Recording(recording) as rec:
        events = [rec.events(c, 0, 10**12) for c in CAMS]
        projections = [rec.cameras[c].calibration.P for c in CAMS]
    sp = StreamingPredictor.from_checkpoints(checkpoints, registered.name, projections=projections)
    poses = []
    for s, ev in enumerate(events):
        poses += sp.push(ev, s)
    poses += sp.advance(DURATION_US)
    streamed = np.stack([p.uv for p in poses], axis=1)
    expected = np.stack(
        [to_sensor_pixels(out[registered.name][s].double().numpy(), WINDOW.crop,
                          WINDOW.downsample) for s in range(len(CAMS))]
    )  # fmt: skip
    np.testing.assert_allclose(streamed, expected, atol=1e-4)


def test_new_variant_in_the_report(registered: Variant, run: tuple[Path, Path, Path]) -> None:
    checkpoints, _, root = run
    spec = EvalSpec(
        checkpoints, root / "data", root / "out", windows_per_recording=4, energy_windows=4
    )
    report = evaluate(spec, progress=False)
    assert list(report["models"]) == [*names()]
    assert registered.name in report["models"] and report["models"][registered.name]["power_w"] > 0
    assert report["paper"]["models"][registered.name]["mpjpe2d_px"] == 21.4
    assert "| SNN alone, restarted |" in (root / "out" / "report.md").read_text()


def test_stream_refuses_an_unknown_variant() -> None:
    with pytest.raises(StreamError, match="unknown mode 'cnn'; choose one of ann_high, "):
        StreamingPredictor("cnn", WINDOW, (24, 24))


def _stream_poses(sp: StreamingPredictor, recording: Path) -> np.ndarray:
    with Recording(recording) as rec:
        events = rec.events(CAMS[0], 0, 10**12)
    return np.stack([p.uv[0] for p in [*sp.push(events, 0), *sp.advance(DURATION_US)]])


def test_stream_switches_follow_the_variant(run: tuple[Path, Path, Path]) -> None:
    """The variant sets the hybrid's switches; an explicit ``state_init`` overrides it; a
    network built with other switches is refused rather than run under the variant's name."""
    checkpoints, recording, _ = run
    models = load_models(checkpoints)
    no_init = StreamingPredictor.from_checkpoints(checkpoints, "hybrid_no_state_init", streams=1)
    assert not no_init.state_init
    overridden = StreamingPredictor.from_checkpoints(
        checkpoints, "hybrid", streams=1, state_init=False
    )
    assert not overridden.state_init and overridden.mode == "hybrid"
    plain = StreamingPredictor.from_checkpoints(checkpoints, "hybrid", streams=1)
    assert plain.state_init
    expected = _stream_poses(no_init, recording)
    np.testing.assert_array_equal(_stream_poses(overridden, recording), expected)
    assert not np.array_equal(_stream_poses(plain, recording), expected)
    with pytest.raises(AttributeError):
        plain.state_init = False  # type: ignore[misc]
    with pytest.raises(StreamError, match="'hybrid' initialises the membranes with state_init=Tru"):
        StreamingPredictor.from_network(
            "hybrid", models.networks["hybrid_no_state_init"], WINDOW, (24, 24)
        )
    with pytest.raises(StreamError, match="'hybrid_no_delta' runs the SNN with delta_readout=F"):
        StreamingPredictor("hybrid_no_delta", WINDOW, (24, 24), ann=models.hybrid.ann,
                           snn=models.hybrid.snn)  # fmt: skip
    other = SNN(replace(models.snn.config, readout_decay=0.5))
    with pytest.raises(StreamError, match="'hybrid': the ANN's state heads were built for another"):
        StreamingPredictor("hybrid", WINDOW, (24, 24), ann=models.hybrid.ann, snn=other)


def test_load_models_reads_what_the_variants_need(
    run: tuple[Path, Path, Path], tmp_path: Path
) -> None:
    checkpoints, _, _ = run
    only_hybrid = tmp_path / "only_hybrid"
    only_hybrid.mkdir()
    shutil.copy(checkpoints / "hybrid.pt", only_hybrid / "hybrid.pt")
    models = load_models(only_hybrid, ["hybrid_no_delta", "hybrid"])
    assert list(models.networks) == ["hybrid", "hybrid_no_delta"]  # report order
    assert models.derived == {"hybrid_no_delta": True}
    assert not models.networks["hybrid_no_delta"].snn.config.delta_readout  # type: ignore[union-attr]
    with pytest.raises(KeyError, match="snn was not loaded"):
        _ = models.snn
    with pytest.raises(FileNotFoundError, match=r"ann\.pt"):
        load_models(only_hybrid, ["ann_low_held"])
    with pytest.raises(EvaluationError, match="no model variant to load"):
        load_models(only_hybrid, [])
    with pytest.raises(UnknownVariantError, match="unknown model 'cnn'"):
        load_models(only_hybrid, ["cnn"])
