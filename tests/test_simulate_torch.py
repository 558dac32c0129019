"""The simulator's torch path (``simulate --device``): on the CPU, the numba path's recordings."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest

from hybridpose.cli import main
from hybridpose.io.recording import Recording
from hybridpose.synth.generate import PRESETS, simulate_recording


def _events(path: Path) -> list[np.ndarray]:
    with Recording(path) as rec:
        return [rec.events_slice(c, 0, rec.cameras[c].num_events) for c in range(4)]


def test_whole_frames_on_the_device_make_the_same_recording(tmp_path: Path) -> None:
    # rendering (render_torch), the sampler's refinement and the pixel model (esim_torch) on
    # a torch device: every event and every statistic as with the compiled kernels
    config = dataclasses.replace(PRESETS["tiny"], sampling="frames")
    kernel = simulate_recording(13, 1, config, tmp_path / "kernel.h5")
    device = simulate_recording(13, 1, config, tmp_path / "device.h5", device="cpu")
    assert device.cameras == kernel.cameras
    assert min(c.events for c in kernel.cameras) > 1000
    assert min(c.frames for c in kernel.cameras) > 100  # refined: many instants rendered
    device_events, kernel_events = _events(tmp_path / "device.h5"), _events(tmp_path / "kernel.h5")
    for got, expected in zip(device_events, kernel_events, strict=True):
        np.testing.assert_array_equal(got, expected)


def test_simulate_device_renders_the_tiles_there(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    args = ["simulate", "--preset", "tiny", "--subjects", "13", "--movements", "16", "--quiet"]
    args += ["--sampling", "tiles"]
    assert main([*args, "--out", str(tmp_path / "kernel")]) == 0
    assert main([*args, "--out", str(tmp_path / "device"), "--device", "cpu"]) == 0
    name = "S13_session3_mov2.h5"
    for got, expected in zip(
        _events(tmp_path / "device" / name), _events(tmp_path / "kernel" / name), strict=True
    ):
        assert len(expected) > 1000
        np.testing.assert_array_equal(got, expected)
    capsys.readouterr()
    assert main([*args, "--out", str(tmp_path / "x"), "--device", "cuda"]) == 2
    assert "--device cuda: this machine has no such device (it has: cpu)" in capsys.readouterr().err
    assert not (tmp_path / "x").exists()
