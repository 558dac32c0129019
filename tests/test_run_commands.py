"""Regression tests for bad input to the commands that run trained models (demo, stream,
export): every argument is checked before any work, in one line; nothing is silently ignored."""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import numba
import pytest
import torch
from tiny_run import write_checkpoints, write_recording

import hybridpose.demo as demo_module
import hybridpose.export as export_module
import hybridpose.stream as stream_module
from hybridpose.cli import main
from hybridpose.errors import HybridPoseError
from hybridpose.evaluate import report_markdown
from hybridpose.export.graphs import _to_onnx
from hybridpose.pretrained import pretrained_dir


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    root = tmp_path_factory.mktemp("run_commands")
    return write_checkpoints(root / "ck"), write_recording(root / "r.h5", 13)


def _stream(tiny: tuple[Path, Path], *extra: str) -> list[str]:
    checkpoints, recording = tiny
    return ["stream", "--recording", str(recording), "--checkpoint", str(checkpoints),
            "--duration", "0.1", "--quiet", *extra]  # fmt: skip


def _never(*args: object, **kwargs: object) -> Any:
    raise AssertionError("work started before the arguments were checked")


@pytest.mark.parametrize(
    ("device", "message"),
    [
        ("cuda", "--device cuda: this machine has no such device (it has: cpu)"),
        ("bogus", "--device bogus: not a torch device (this machine has: cpu)"),
    ],
)
def test_stream_refuses_a_device_the_machine_lacks(
    tiny: tuple[Path, Path],
    device: str,
    message: str,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    monkeypatch.setattr(stream_module, "checkpoint_geometry", _never)
    assert main(_stream(tiny, "--engine", "dense", "--device", device)) == 2
    err = capsys.readouterr().err
    assert err == f"hybridpose stream: error: {message}\n"


def test_stream_refuses_the_event_engine_on_a_gpu_whatever_the_machine(
    tiny: tuple[Path, Path], capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(stream_module, "checkpoint_geometry", _never)
    assert main(_stream(tiny, "--device", "cuda:7")) == 2
    assert capsys.readouterr().err == (
        "hybridpose stream: error: the event-driven engine runs on the CPU only, not on "
        "cuda:7; use --engine dense there\n"
    )
    assert main(_stream(tiny, "--device", "bogus")) == 2
    assert capsys.readouterr().err.endswith(
        "--device bogus: not a torch device (this machine has: cpu)\n"
    )


def test_stream_checks_the_animation_path_before_streaming(
    tiny: tuple[Path, Path],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(stream_module, "checkpoint_geometry", _never)
    png = tmp_path / "a.png"
    assert main(_stream(tiny, "--animate", str(png))) == 2
    assert capsys.readouterr().err.endswith(f"{png}: the file name must end in .gif\n")
    assert not png.exists()


def test_stream_refuses_the_same_camera_twice(
    tiny: tuple[Path, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(_stream(tiny, "--cameras", "2", "2")) == 2
    assert "--cameras 2 2: the same camera twice" in capsys.readouterr().err


def test_stream_speed_means_a_real_time_replay(
    tiny: tuple[Path, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(_stream(tiny, "--speed", "20")) == 0
    # the lag behind the source is reported for real-time replays only
    assert "lag behind the replayed camera" in capsys.readouterr().out


@pytest.mark.parametrize(("extra", "threads"), [((), 1), (("--threads", "2"), 2)])
def test_stream_runs_on_the_threads_it_chooses(
    tiny: tuple[Path, Path],
    extra: tuple[str, ...],
    threads: int,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    seen: list[tuple[int, int]] = []
    original = stream_module.StreamingPredictor.from_checkpoints

    def spy(*args: Any, **kwargs: Any) -> stream_module.StreamingPredictor:
        seen.append((torch.get_num_threads(), numba.get_num_threads()))
        return original(*args, **kwargs)

    monkeypatch.setattr(stream_module.StreamingPredictor, "from_checkpoints", spy)
    before = torch.get_num_threads(), numba.get_num_threads()
    assert main(_stream(tiny, *extra)) == 0
    expected_numba = min(threads, numba.config.NUMBA_NUM_THREADS)  # type: ignore[attr-defined]
    assert seen == [(threads, expected_numba)]
    assert (torch.get_num_threads(), numba.get_num_threads()) == before  # restored


def test_demo_and_export_refuse_an_output_that_is_a_file(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(demo_module, "run_demo", _never)
    monkeypatch.setattr(export_module, "require_onnx", _never)
    taken = tmp_path / "taken"
    taken.write_text("mine")
    assert main(["demo", "--out", str(taken), "--quiet"]) == 2
    assert (
        capsys.readouterr().err
        == f"hybridpose demo: error: {taken}: exists and is not a directory\n"
    )
    assert main(["export", "--out", str(taken), "--quiet"]) == 2
    assert capsys.readouterr().err == (
        f"hybridpose export: error: {taken}: exists and is not a directory\n"
    )
    assert taken.read_text() == "mine"


def test_export_defaults_to_the_shipped_weights(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls: list[Path] = []

    def fake(checkpoint_dir: Path, out_dir: Path, **kwargs: Any) -> Any:
        calls.append(Path(checkpoint_dir))
        raise KeyboardInterrupt  # stop here: the call is what is tested

    monkeypatch.setattr(export_module, "export_onnx", fake)
    assert main(["export", "--out", str(tmp_path / "onnx"), "--quiet"]) == 130
    assert calls == [pretrained_dir("cpu")]


def test_export_does_not_print_torchvision_notices(
    caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Without torchvision, torch's exporter logs one warning per torchvision operator."""
    registration = logging.getLogger("torch.onnx._internal.exporter._registration")

    def noisy(*args: Any, **kwargs: Any) -> Any:
        registration.warning("torchvision is not installed. Skipping torchvision::nms")
        raise KeyboardInterrupt

    monkeypatch.setattr(torch.onnx, "export", noisy)
    with caplog.at_level(logging.WARNING), pytest.raises(KeyboardInterrupt):
        _to_onnx(torch.nn.Identity(), (torch.zeros(1),), ((),), ["x"], ["y"], None)
    assert "torchvision" not in caplog.text
    assert registration.level == logging.NOTSET  # restored


def test_report_gives_power_in_milliwatts() -> None:
    import json

    report = json.loads((pretrained_dir("cpu") / "report.json").read_text())
    md = report_markdown(report)
    assert "| power mW |" in md and "| paper power mW |" in md
    ann_mw = 1e3 * report["models"]["ann_high"]["power_w"]
    assert f"| 98.5 | {ann_mw:.4g} | 1.000 |" in md  # the shipped ANN: 98.5 mm, 50.12 mW
    assert "| 3718 |" in md  # the paper's 3.718 W


def test_every_install_hint_says_the_same(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The onnx, live and video extras are named alike, for an installed package and a clone."""
    import sys

    from hybridpose.export import require_onnx
    from hybridpose.sources import LiveCamera
    from hybridpose.synth.video import read_frames

    video = tmp_path / "v.mp4"
    video.write_bytes(b"not read: PyAV is missing")
    monkeypatch.setitem(sys.modules, "onnxscript", None)  # import fails
    monkeypatch.setitem(sys.modules, "dv_processing", None)
    monkeypatch.setitem(sys.modules, "av", None)
    messages = []
    for call in (require_onnx, lambda: LiveCamera((8, 8)), lambda: read_frames(video)):
        with pytest.raises(HybridPoseError) as info:
            call()
        messages.append(str(info.value))
    for extra, message in zip(("onnx", "live", "video"), messages, strict=True):
        assert message.endswith(
            f"pip install 'hybridpose[{extra}]' (in a clone: pip install -e '.[{extra}]')"
        ), message


def test_stream_summary_json(
    tiny: tuple[Path, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "summary.json"
    assert main(_stream(tiny, "--summary-json", str(out))) == 0
    printed = capsys.readouterr().out
    summary = json.loads(out.read_text())
    keys = {"latency_ms", "realtime_factor", "mpjpe2d_px", "mpjpe3d_mm", "steps", "events"}
    assert set(summary) >= keys | {"bin_us", "streams", "checkpoint", "engine"}
    lat = summary["latency_ms"]
    assert 0 < lat["p50"] <= lat["p99"] <= lat["max"]
    # the same run as the printed summary: 0.1 s of 10 ms bins, two cameras
    assert f"{summary['mode']}: {summary['steps']} poses over" in printed
    assert summary["steps"] == 10 and summary["streams"] == 2 and summary["bin_us"] == 10_000
    assert f"2D {summary['mpjpe2d_px']:.2f} px, 3D {summary['mpjpe3d_mm']:.1f} mm" in printed
    assert summary["events"] > 0 and summary["realtime_factor"] > 0
    assert summary["checkpoint"] == str(tiny[0]) and summary["engine"] == "event"
    # the steps' own time: within the run's wall time, so at least its real-time factor
    assert 0 < summary["compute_s"] <= summary["wall_s"]
    factor = summary["compute_realtime_factor"]
    assert factor == pytest.approx(summary["stream_s"] / summary["compute_s"], rel=1e-12)
    assert factor >= summary["realtime_factor"]
    assert f"the steps alone {factor:.2f}x real time" in printed


def test_stream_scores_every_pose_whatever_the_batching(
    tiny: tuple[Path, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Poses are scored SCORE_EVERY at a time and the rest at the end: one by one, in batches
    that leave a remainder, or all at the end, the errors are the same."""
    import hybridpose.cli.run as run_module

    got = []
    for every in (1, 3, 10**9):
        monkeypatch.setattr(run_module, "SCORE_EVERY", every)
        out = tmp_path / f"summary{every}.json"
        assert main(_stream(tiny, "--duration", "0.25", "--summary-json", str(out))) == 0
        summary = json.loads(out.read_text())
        assert summary["steps"] == 25
        got.append((summary["mpjpe2d_px"], summary["mpjpe3d_mm"]))
    assert got[0][0] > 0 and got[0][1] > 0
    for errors in got[1:]:
        assert errors == pytest.approx(got[0], rel=1e-12)


def test_stream_checks_its_checkpoint_and_summary_arguments_first(
    tiny: tuple[Path, Path],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(stream_module, "checkpoint_geometry", _never)
    txt = tmp_path / "s.txt"
    assert main(_stream(tiny, "--summary-json", str(txt))) == 2
    assert capsys.readouterr().err.endswith(f"{txt}: the file name must end in .json\n")
    _, recording = tiny
    args = ["stream", "--recording", str(recording), "--checkpoint", "cpu-nope", "--quiet"]
    assert main(args) == 2
    assert capsys.readouterr().err == (
        "hybridpose stream: error: cpu-nope: no such directory, and not a shipped set of "
        "weights (shipped: cpu, cpu-1khz, cpu-sparse)\n"
    )


def test_stream_ann_lead_runs_the_ann_beside_the_stream(
    tiny: tuple[Path, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "s.json"
    # 25 ms ahead of 30 ms windows of 10 ms bins: 3 bins, more than the window allows
    assert main(_stream(tiny, "--ann-lead", "25")) == 2
    assert "ann_lead must be below the window (3 bins), got 3" in capsys.readouterr().err
    assert main(_stream(tiny, "--ann-lead", "15", "--summary-json", str(out))) == 0
    printed = capsys.readouterr().out
    summary = json.loads(out.read_text())
    assert summary["ann_lead_bins"] == 2  # 15 ms rounded up to whole bins
    # 0.1 s of stream: 10 bins, windows at 0, 30, 60 and 90 ms; the first in its own step
    assert summary["background_init"]["windows"] == 3
    assert "ANN beside the stream, 2 bins ahead: 3 windows" in printed


def test_stream_ann_lead_is_for_hybrids_only(
    tiny: tuple[Path, Path], capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(stream_module, "checkpoint_geometry", _never)
    assert main(_stream(tiny, "--model", "snn", "--ann-lead", "10")) == 2
    assert capsys.readouterr().err.endswith(
        "--ann-lead: the snn model has no ANN that initialises a network; it applies to the "
        "hybrids\n"
    )
