"""Event pictures and the plot-events command."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from matplotlib.image import imread

from hybridpose.cli import main
from hybridpose.errors import HybridPoseError
from hybridpose.events import make_events
from hybridpose.io.recording import CameraCalibration, RecordingMeta, RecordingWriter
from hybridpose.viz import OFF_COLOUR, ON_COLOUR, event_image, plot_recording_frame


def test_event_image_colours_by_polarity_and_count() -> None:
    ev = make_events(
        x=[1, 1, 1, 2, 0], y=[0, 0, 0, 1, 1], t=[0, 1, 2, 3, 4], p=[1, 1, 1, -1, 1]
    )  # pixel (1,0): 3 ON; (2,1): 1 OFF; (0,1): 1 ON
    image = event_image(ev, (3, 2), saturation=3)
    assert image.shape == (2, 3, 3)
    assert image[0, 1] == pytest.approx(ON_COLOUR)  # saturated
    assert image[1, 2] == pytest.approx(1 + (OFF_COLOUR - 1) / 3)  # a third of the way
    assert image[1, 0] == pytest.approx(1 + (ON_COLOUR - 1) / 3)
    assert image[0, 0] == pytest.approx([1.0, 1.0, 1.0])  # no events: white
    assert image[0, 2] == pytest.approx([1.0, 1.0, 1.0])


def _recording(path: Path) -> Path:
    K = np.array([[50.0, 0, 31.5], [0, 50.0, 23.5], [0, 0, 1]])
    P = K @ np.hstack([np.eye(3), [[0.0], [0.0], [1000.0]]])
    meta = RecordingMeta(source="test")
    with RecordingWriter(path, (64, 48), [CameraCalibration(P, np.zeros(3))] * 2, meta) as w:
        for cam in (0, 1):
            w.append_events(cam, make_events(x=[10, 20], y=[5, 6], t=[900_000, 990_000], p=[1, -1]))
        w.write_labels([1_000_000], np.zeros((1, 13, 3)))
    return path


def test_plot_recording_frame_writes_one_panel_per_camera(tmp_path: Path) -> None:
    rec = _recording(tmp_path / "r.h5")
    one = plot_recording_frame(rec, tmp_path / "one.png", 1.0, window_ms=200, cameras=[1])
    both = plot_recording_frame(rec, tmp_path / "both.png", 1.0, window_ms=200)
    a, b = imread(one), imread(both)
    assert a.ndim == 3 and b.shape[1] > 1.8 * a.shape[1]  # two panels side by side
    assert not list(tmp_path.glob(".*.tmp"))


def test_cli_plot_events(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    rec = _recording(tmp_path / "r.h5")
    out = tmp_path / "sub" / "f.png"
    assert main(["plot-events", str(rec), "--out", str(out), "--time", "1"]) == 0
    assert out.exists() and "wrote" in capsys.readouterr().out
    assert main(["plot-events", str(rec), "--out", str(out), "--cameras", "5"]) == 2
    assert "camera" in capsys.readouterr().err
    assert main(["plot-events", str(tmp_path / "missing.h5"), "--out", str(out)]) == 2
    assert "missing.h5" in capsys.readouterr().err


def test_time_outside_the_recording_is_an_error(tmp_path: Path) -> None:
    rec = _recording(tmp_path / "r.h5")
    with pytest.raises(HybridPoseError, match="outside"):
        plot_recording_frame(rec, tmp_path / "f.png", 5.0)
    assert not list(tmp_path.glob("*.png")) and not list(tmp_path.glob(".*"))


def test_importing_viz_leaves_the_backend_alone() -> None:
    code = "import matplotlib; b = matplotlib.get_backend(); import hybridpose.viz; "
    code += "assert matplotlib.get_backend() == b, (b, matplotlib.get_backend())"
    subprocess.run([sys.executable, "-c", code], check=True)
