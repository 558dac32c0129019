"""The sweep of the ANN's rate (hybridpose.evaluate.run.rate_sweep): the held ANN and the hybrid
with windows 2x longer, checked against direct calls of the networks, and its table and plot."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from tiny_run import (
    CAMERAS,
    CROP,
    WINDOW,
    build_models,
    joints_at,
    write_checkpoints,
    write_recording,
)

from hybridpose.data import ann_frame, snn_bins
from hybridpose.evaluate import EvalSpec, evaluate, select_segments
from hybridpose.geometry import project
from hybridpose.heatmaps import decode_heatmaps
from hybridpose.io.recording import Recording

pytestmark = pytest.mark.usefixtures("one_thread")  # tests/conftest.py


@pytest.fixture(scope="module")
def swept(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, Any]]:
    root = tmp_path_factory.mktemp("sweep")
    data = root / "data"
    data.mkdir()
    recording = write_recording(data / "s13.h5", 13)
    spec = EvalSpec(
        write_checkpoints(root / "checkpoints"), data, root / "out", windows_per_recording=3,
        energy_windows=4, protocols=("project",), rate_factors=(1, 2),
    )  # fmt: skip
    return recording, evaluate(spec, progress=False)


def test_factor_one_is_the_main_table(swept: tuple[Path, dict[str, Any]]) -> None:
    _, report = swept
    one, two = report["rate_sweep"]
    assert one["ann_rate_hz"] == pytest.approx(1e6 / 30_000) and one["window_ms"] == 30
    assert two["ann_rate_hz"] == pytest.approx(1e6 / 60_000) and two["window_ms"] == 60
    for name in ("ann_low_held", "hybrid"):
        for key in ("mpjpe2d_px", "mpjpe2d_px_per_step", "power_w"):
            assert one["models"][name][key] == report["models"][name][key]
        assert len(two["models"][name]["mpjpe2d_px_per_step"]) == 2 * WINDOW.steps
    # the held ANN runs once per window: half the power at half the rate
    held = report["models"]["ann_high"]["power_w"] / WINDOW.steps
    assert one["models"]["ann_low_held"]["power_w"] == pytest.approx(held, rel=1e-12)
    assert two["models"]["ann_low_held"]["power_w"] == pytest.approx(held / 2, rel=1e-12)
    assert set(two["models"]) == {"ann_low_held", "hybrid"}


@torch.no_grad()
def test_longer_windows_against_direct_calls(swept: tuple[Path, dict[str, Any]]) -> None:
    recording, report = swept
    long = replace(WINDOW, steps=2 * WINDOW.steps, stride_us=2 * WINDOW.stride_us)
    (seg,) = select_segments([str(recording)], long, (2, 3), 3, 1, seed=0)
    ann, _, hybrid = build_models()
    k = long.steps
    errors: dict[str, list[np.ndarray]] = {"hybrid": [], "ann_low_held": []}
    with Recording(recording) as rec:
        for cam in (2, 3):
            for t0 in seg.t0s[seg.warmup :]:
                edges = t0 + long.bin_us * np.arange(k + 1)
                bins = torch.from_numpy(snn_bins(rec, cam, edges, long))[:, None]
                frame = torch.from_numpy(ann_frame(rec, cam, t0, long))[None]
                _, hm, _ = hybrid(frame, bins)
                target = project(CAMERAS[cam][0], joints_at(edges[1:]))
                for name, uv in (
                    ("hybrid", decode_heatmaps(hm[:, 0])),
                    ("ann_low_held", decode_heatmaps(ann(frame)[0]).expand(k, -1, -1)),
                ):
                    pred = uv.double().numpy() + np.array(CROP[:2])
                    errors[name].append(np.linalg.norm(pred - target, axis=-1).mean(-1))
    two = report["rate_sweep"][1]
    for name, per_window in errors.items():
        e = np.stack(per_window)  # (cameras x windows, steps)
        m = two["models"][name]
        assert m["mpjpe2d_px"] == pytest.approx(e.mean(), rel=1e-5), name
        np.testing.assert_allclose(m["mpjpe2d_px_per_step"], e.mean(0), rtol=1e-5)


def test_sweep_table_and_plot(swept: tuple[Path, dict[str, Any]]) -> None:
    recording, report = swept
    out = recording.parent.parent / "out"
    assert json.loads((out / "report.json").read_text())["rate_sweep"] == report["rate_sweep"]
    md = (out / "report.md").read_text()
    assert "## The ANN's rate" in md
    two = report["rate_sweep"][1]["models"]
    ratio = two["hybrid"]["mpjpe2d_px"] / two["ann_low_held"]["mpjpe2d_px"]
    assert f"| 16.6667 | 60 | {two['ann_low_held']['mpjpe2d_px']:.2f} " in md
    assert f"| {ratio:.3f} |" in md
    assert (out / "rate_sweep.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
