"""Tests of the demo (``hybridpose demo``), the ``stream`` command and the stream animation.

The demo runs for real on a shortened spec (one held-out recording, one repetition) with the
shipped weights: its report must hold the evaluation's keys, scores that agree with an
independent re-scoring of the streamed poses, and the files it promises. The stream command
runs on the tiny recording and checkpoints of tests/tiny_run.py.
"""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image
from tiny_run import WINDOW, write_checkpoints, write_recording

from hybridpose.cli import main
from hybridpose.data import interpolate_joints, to_model_pixels
from hybridpose.demo import DemoSpec, demo_table, run_demo
from hybridpose.errors import HybridPoseError
from hybridpose.evaluate import PoseScorer, StepErrors
from hybridpose.events import make_events
from hybridpose.geometry import project
from hybridpose.io.recording import Recording
from hybridpose.stream import StreamingPredictor, StreamPose
from hybridpose.variants import demo_variants
from hybridpose.viz import StreamFrame, save_stream_gif

pytestmark = pytest.mark.usefixtures("one_thread")  # tests/conftest.py

EVALUATE_MODEL_KEYS = {
    "mpjpe2d_px", "mpjpe2d_px_per_step", "mpjpe3d_mm", "mpjpe3d_mm_per_step",
    "energy_mj_per_s", "power_w", "firing_rate", "derived",
}  # fmt: skip


def _frames(gif: Path) -> int:
    """The number of frames of a GIF."""
    with Image.open(gif) as image:
        return int(getattr(image, "n_frames", 1))


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, Any]]:
    out = tmp_path_factory.mktemp("demo")
    spec = DemoSpec(out_dir=out, subjects=(18,), movements=(22,), repetitions=1, workers=1,
                    gif_seconds=0.5,
                    energy_windows=2)  # fmt: skip
    return out, run_demo(spec, progress=False)


def test_demo_writes_the_report_plots_and_gif(demo: tuple[Path, dict[str, Any]]) -> None:
    out, report = demo
    for name in ("report.json", "report.md", "error_vs_step.png", "error_vs_power.png",
                 "hybrid.gif"):  # fmt: skip
        assert (out / name).stat().st_size > 0
    assert json.loads((out / "report.json").read_text()) == json.loads(json.dumps(report))
    assert set(report["models"]) == {v.name for v in demo_variants()}
    for name, m in report["models"].items():
        assert set(m) >= EVALUATE_MODEL_KEYS, name
        assert m["latency_ms"]["count"] > 0 and m["latency_ms"]["p99_ms"] >= m["latency_ms"][
            "p50_ms"] > 0  # fmt: skip
        assert len(m["mpjpe2d_px_per_step"]) == 10
    assert set(report["ratios"]) == {"hybrid_over_ann_error", "hybrid_over_ann_power",
                                     "snn_over_hybrid_error"}  # fmt: skip
    md = (out / "report.md").read_text()
    assert md.startswith("# Demo: preset `cpu`") and "latency p50 / p99 ms" in md
    assert _frames(out / "hybrid.gif") == 25  # 0.5 s of 10 ms steps, every second one
    assert Image.open(out / "hybrid.gif").size == (2 * 87 * 4, 65 * 4)


def test_demo_numbers_are_those_of_the_trained_models(demo: tuple[Path, dict[str, Any]]) -> None:
    """Held-out data, shipped weights: the ANN and the hybrid find the body (a few pixels of
    the 87x65 sensor), the hybrid costs ~1/9 of the ANN's power, the ANN every step costs
    10x the ANN held."""
    _, report = demo
    m = report["models"]
    assert m["ann_high"]["mpjpe2d_px"] < 4.0 and m["hybrid"]["mpjpe2d_px"] < 4.0
    assert m["hybrid"]["mpjpe3d_mm"] < 250
    assert m["hybrid"]["power_w"] / m["ann_high"]["power_w"] < 0.15
    assert m["ann_low_held"]["power_w"] == pytest.approx(m["ann_high"]["power_w"] / 10)
    assert m["snn"]["power_w"] < m["hybrid"]["power_w"]
    table = demo_table(report)
    assert table.splitlines()[0].split()[:2] == ["model", "2D"]
    assert len(table.splitlines()) == 2 + len(demo_variants())


def test_pose_scorer_against_a_hand_computation(tmp_path: Path) -> None:
    """Perfect 2D poses score 0 px; poses shifted by (3, 4) px score 5 px; only kept windows."""
    path = write_recording(tmp_path / "r.h5", 13)
    with Recording(path) as rec:
        labels = rec.labels()
        Ps = [rec.cameras[c].calibration.P for c in (2, 3)]
    t = np.arange(100_000, 310_001, 10_000)  # bin ends; window t0 = 90 ms, 120 ms, ...
    truth = interpolate_joints(labels.t_us, labels.joints_mm, t)
    uv = np.stack([project(P, truth) for P in Ps], axis=1).astype(np.float32)  # (N, 2, J, 2)

    def poses(shift: float) -> list[StreamPose]:
        return [StreamPose(int(ti), i, i % 3 + 1, uv[i] + np.float32(shift) * np.array(
            [0.6, 0.8], np.float32), None, 0, 0.0) for i, ti in enumerate(t)]  # fmt: skip

    scorer = PoseScorer(labels, Ps, WINDOW, (16, 16), scored_t0s={90_000, 120_000})
    errors = StepErrors(3)
    scorer.add(errors, "hybrid", poses(0.0))
    assert errors.n2d["hybrid"].sum() == 2 * 6  # 2 windows of 3 steps, 2 cameras
    assert errors.sum2d["hybrid"].sum() == pytest.approx(0.0, abs=1e-4)
    errors = StepErrors(3)
    scorer.add(errors, "snn", poses(5.0))
    np.testing.assert_allclose(errors.sum2d["snn"] / errors.n2d["snn"], 5.0, atol=1e-4)
    model_px = to_model_pixels(uv[:, 0], WINDOW.crop, WINDOW.downsample)
    assert ((model_px > 0) & (model_px < 15)).all()  # every joint inside the crop: all scored


def test_stream_command_replays_a_recording(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    checkpoints = write_checkpoints(tmp_path / "ck")
    path = write_recording(tmp_path / "r.h5", 13)
    gif = tmp_path / "s.gif"
    assert main(["stream", "--recording", str(path), "--checkpoint", str(checkpoints),
                 "--animate", str(gif), "--duration", "0.5", "--quiet"]) == 0  # fmt: skip
    out = capsys.readouterr().out
    assert "hybrid: 50 poses over 0.50 s of stream" in out
    assert "step latency (all cameras together, wall time): p50" in out
    assert "error against the labels: 2D" in out and "3D" in out
    assert _frames(gif) == 25
    assert main(["stream", "--recording", str(path), "--checkpoint", str(checkpoints),
                 "--model", "snn", "--cameras", "3", "--realtime", "--speed", "5",
                 "--duration", "0.2", "--quiet"]) == 0  # fmt: skip
    out = capsys.readouterr().out
    assert "snn: 20 poses" in out and "1 camera stream(s)" in out and "lag behind" in out
    assert "3D" not in out


def test_stream_command_errors(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    checkpoints = write_checkpoints(tmp_path / "ck")
    path = write_recording(tmp_path / "r.h5", 13, sensor=(32, 32))
    assert main(["stream", "--recording", str(path), "--checkpoint", str(checkpoints)]) == 2
    assert "sensor 32x32, but the model expects 24x24" in capsys.readouterr().err
    assert main(["stream", "--recording", str(tmp_path / "none.h5"),
                 "--checkpoint", str(checkpoints)]) == 2  # fmt: skip
    assert "no such file" in capsys.readouterr().err
    good = write_recording(tmp_path / "good.h5", 13)
    assert main(["stream", "--recording", str(good), "--checkpoint", str(checkpoints),
                 "--device", "cuda"]) == 2  # fmt: skip
    assert "event-driven engine runs on the CPU only, not on cuda" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["stream", "--checkpoint", str(checkpoints)])  # neither --recording nor --live


def test_stream_gif_frames_and_drawing(tmp_path: Path) -> None:
    uv = np.full((13, 2), np.nan)
    uv[0] = (5.0, 5.0)
    uv[1] = (10.0, 5.0)
    frames = [
        StreamFrame(
            t * 10_000, t % 10 + 1, [make_events([2], [3], [t * 10_000], [1])], [uv + t * 0.1], [uv]
        )
        for t in range(10)
    ]
    out = save_stream_gif(frames, tmp_path / "a.gif", (24, 16), title="x", every=3, scale=2)
    assert _frames(out) == 4 and Image.open(out).size == (48, 32)
    rgb = np.asarray(Image.open(out).convert("RGB"))
    assert (rgb == (255, 255, 255)).all(axis=-1).mean() > 0.5  # mostly background
    with pytest.raises(HybridPoseError, match=r"b\.gif: no frames to animate"):
        save_stream_gif([], tmp_path / "b.gif", (24, 16))


def test_predictor_from_pretrained_agrees_with_its_window(tmp_path: Path) -> None:
    from hybridpose.pretrained import pretrained_dir

    sp = StreamingPredictor.from_checkpoints(pretrained_dir("cpu"), "hybrid", streams=2)
    assert sp.sensor_size == (87, 65) and (sp.height, sp.width) == (64, 64)
    assert sp.reinit_every == 10 and sp.bin_us == 10_000
    assert replace(sp.window, cameras=(2, 3)) == sp.window
