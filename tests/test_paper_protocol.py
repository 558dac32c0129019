"""Known-answer tests of the paper's evaluation protocol (hybridpose.evaluate.paper), one per
rule of its module docstring, and the whole protocol's errors against an independent
computation on a tiny recording (tests/tiny_run.py)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import pytest
import torch
from tiny_run import (
    CAMERAS,
    DURATION_US,
    SENSOR,
    WINDOW,
    build_models,
    joints_at,
    write_checkpoints,
    write_recording,
)

from hybridpose.cli import main
from hybridpose.data import ann_frame
from hybridpose.evaluate import EvalSpec, evaluate
from hybridpose.evaluate.paper import (
    integer_targets,
    left_out,
    paper_crop,
    paper_segments,
    paper_window,
    score_paper,
    span_bins,
    window_starts,
)
from hybridpose.evaluate.scoring import StepErrors
from hybridpose.evaluate.segments import SegmentData
from hybridpose.events import make_events
from hybridpose.heatmaps import argmax_heatmaps
from hybridpose.io.recording import CameraCalibration, Recording, RecordingMeta, RecordingWriter
from hybridpose.variants import names

pytestmark = pytest.mark.usefixtures("one_thread")  # tests/conftest.py

FloatArray = npt.NDArray[np.float64]
PAPER_WINDOW = paper_window(WINDOW, SENSOR)


# ------------------------------------------------------------------------------ rule by rule


def test_crop_rule() -> None:
    # the authors' columns 34-290 and rows 2-258 at 346x260
    assert paper_crop((346, 260), (256, 256)) == (34, 2, 256, 256)
    # scaled: 34 / 346 * 87 = 8.55 -> 9; 2 / 260 * 65 = 0.5 -> 1 (halves round up)
    assert paper_crop((87, 65), (64, 64)) == (9, 1, 64, 64)
    # 34 / 346 * 24 = 2.36 -> 2; 2 / 260 * 24 = 0.18 -> 0
    assert paper_crop((24, 24), (16, 16)) == (2, 0, 16, 16)
    assert PAPER_WINDOW.crop == (2, 0, 16, 16) and PAPER_WINDOW.cameras == (3,)
    # 34 / 346 * 40 = 3.93 -> 4, clipped so that 39 columns fit: 1
    assert paper_crop((40, 20), (39, 20)) == (1, 0, 39, 20)
    with pytest.raises(ValueError, match="a 41x20 crop does not fit a 40x20 sensor"):
        paper_crop((40, 20), (41, 20))


def test_window_starts_rule(tmp_path: Path) -> None:
    # camera 3's events start at 10.5 ms, one every 0.5 ms: event index 99 at 60.0 ms and
    # index 100 (the authors' t[N] with N = ann_events = 100) at 60.5 ms, so the first window
    # is ceil(60.5 / 30) * 30 = 90 ms (index 99 would give 60 ms); the last event is at
    # 1499.5 ms -> events last 1500 ms, labels 1500 + 10 ms: n = (1500 - 90 - 30) // 30 = 46
    path = write_recording(tmp_path / "r.h5", 13, camera3_start_us=10_500)
    with Recording(path) as rec:
        assert int(rec.events_slice(3, 100, 101)["t"][0]) == 60_500
        starts = window_starts(rec, 3, PAPER_WINDOW)
        assert starts == [90_000 + 30_000 * k for k in range(46)]
        # camera 2 (events from 0): t[100] = 50 ms -> 60 ms; n = (1500 - 60 - 30) // 30 = 47
        assert window_starts(rec, 2, PAPER_WINDOW) == [60_000 + 30_000 * k for k in range(47)]


def test_left_out_and_segments(tmp_path: Path) -> None:
    kept = write_recording(tmp_path / "a.h5", 13)
    dropped = tmp_path / "b.h5"
    _write_events(dropped, {3: [(5, 5, 1000, 1)] * 200}, RecordingMeta("test", 16, 2, 1))
    other = tmp_path / "c.h5"
    _write_events(other, {3: [(5, 5, 1000, 1)] * 200}, RecordingMeta("test", 16, 2, 2))
    assert left_out(str(dropped)) and not left_out(str(other)) and not left_out(str(kept))
    segs = paper_segments([str(kept), str(dropped)], PAPER_WINDOW, None, seed=0)
    assert [s.path for s in segs] == [str(kept)]
    assert segs[0].t0s == tuple(60_000 + 30_000 * k for k in range(47)) and segs[0].warmup == 0
    (few,) = paper_segments([str(kept)], PAPER_WINDOW, 5, seed=0)
    assert len(few.t0s) == 5 and set(few.t0s) <= set(segs[0].t0s)
    assert np.all(np.diff(few.t0s) == 30_000)


def _write_events(
    path: Path, events: dict[int, list[tuple[int, int, int, int]]], meta: RecordingMeta
) -> Path:
    """A recording of the tiny cameras with the given (x, y, t, p) events and the tiny
    labels."""
    cams = [CameraCalibration(P, c, f"cam{i}") for i, (P, c) in enumerate(CAMERAS)]
    labels_t = np.arange(0, DURATION_US + 1, 10_000, dtype=np.int64)
    with RecordingWriter(path, SENSOR, cams, meta) as w:
        for cam, evs in events.items():
            x, y, t, p = (np.array(v, dtype=np.int64) for v in zip(*evs, strict=True))
            w.append_events(cam, make_events(x, y, t, p))
        w.write_labels(labels_t, joints_at(labels_t).astype(np.float32))
    return path


def test_span_bins_rule(tmp_path: Path) -> None:
    # window [300, 330) ms; its events at +1, +5, +9, +14 and +21 ms span 20 ms, cut in 3:
    # [1, 7.67), [7.67, 14.33), [14.33, 21] -> bins 0, 0, 1, 1, 2 (fixed 10 ms edges: 0, 0,
    # 0, 1, 2). The event at +30 ms belongs to the next window.
    t0 = 300_000
    evs = [(5, 6, t0 + dt, 1) for dt in (1000, 5000, 9000, 14000, 21000, 30000)]
    path = _write_events(tmp_path / "s.h5", {3: evs}, RecordingMeta("test", 13))
    with Recording(path) as rec:
        bins = span_bins(rec, 3, t0, PAPER_WINDOW)
    assert bins.shape == (3, 2, 16, 16) and bins.dtype == np.float32
    # pixel (x, y) = (5, 6) is (3, 6) in the crop starting at column 2; polarity ON = channel 1
    np.testing.assert_array_equal(bins[:, 1, 6, 3], [2, 2, 1])
    assert bins.sum() == 5


def test_integer_targets_rule() -> None:
    # P maps (X, Y, 1) to (u, v) = (X, Y): the crop (2, 0, 16, 16) counts 2 <= u < 18 and
    # 0 <= v < 16
    P = np.array([[1.0, 0, 0, 0], [0, 1.0, 0, 0], [0, 0, 1.0, 0]])
    uv = [(2.0, 0.0), (17.99, 15.7), (18.0, 3.0), (1.99, 3.0), (5.7, 16.0), (np.nan, 1.0)]
    joints = np.array([[u, v, 1.0] for u, v in uv])
    targets, valid = integer_targets(P, joints, PAPER_WINDOW)
    np.testing.assert_array_equal(valid, [True, True, False, False, False, False])
    np.testing.assert_array_equal(targets[:2], [[0, 0], [15, 15]])
    # downsampling 2: int((5.7 - 2) / 2) = 1
    halved = PAPER_WINDOW.__class__(**{**PAPER_WINDOW.__dict__, "downsample": 2})
    t2, v2 = integer_targets(P, np.array([[5.7, 3.9, 1.0]]), halved)
    assert v2.tolist() == [True] and t2.tolist() == [[1.0, 1.0]]


def test_argmax_decoding() -> None:
    hm = torch.zeros(2, 3, 4)
    hm[0, 2, 1] = 1.0
    hm[1, 0, 3] = 5.0
    hm[1, 2, 0] = 5.0  # a tie: the first maximum in row-major order
    np.testing.assert_array_equal(argmax_heatmaps(hm).numpy(), [[1, 2], [3, 0]])


def test_scoring_rule() -> None:
    """Per prediction the mean over its counted joints; a prediction without any is left
    out; errors in sensor pixels (times the downsampling)."""
    targets = np.zeros((2, 3, 2))
    pred = torch.tensor([[[[3.0, 0.0], [0.0, 4.0], [100.0, 0.0]], [[1.0, 0.0]] * 3]])
    valid = np.array([[True, True, False], [False, False, False]])
    seg = SegmentData(torch.zeros(0), torch.zeros(0), targets, valid, np.zeros(0), np.zeros(0))
    cfg = PAPER_WINDOW.__class__(**{**PAPER_WINDOW.__dict__, "steps": 2})
    errors = StepErrors(2, ["m"])
    score_paper(errors, {"m": pred}, [seg], cfg)
    assert errors.sum2d["m"].tolist() == [3.5, 0.0] and errors.n2d["m"].tolist() == [1, 0]
    halved = cfg.__class__(**{**cfg.__dict__, "downsample": 2})
    errors = StepErrors(2, ["m"])
    score_paper(errors, {"m": pred}, [seg], halved)
    assert errors.sum2d["m"].tolist() == [7.0, 0.0]


# ------------------------------------------------------------------------------ the whole run


@pytest.fixture(scope="module")
def paper_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, Any]]:
    root = tmp_path_factory.mktemp("paper")
    data = root / "data"
    data.mkdir()
    recording = write_recording(data / "s13.h5", 13)
    write_recording(data / "s01.h5", 1)  # a training subject
    spec = EvalSpec(
        write_checkpoints(root / "checkpoints"), data, root / "out", energy_windows=4,
        protocols=("paper",),
    )  # fmt: skip
    return recording, evaluate(spec, progress=False)


def _span_bins_by_hand(events: Any, t0: int, steps: int) -> FloatArray:
    """Per-event loop: the window's events, their span cut into ``steps`` parts."""
    x0, y0, w, h = PAPER_WINDOW.crop  # type: ignore[misc]
    out = np.zeros((steps, 2, h, w))
    inside = events[(events["t"] >= t0) & (events["t"] < t0 + PAPER_WINDOW.stride_us)]
    first, last = int(inside["t"][0]), int(inside["t"][-1])
    for e in inside:
        k = min(int((int(e["t"]) - first) * steps // (last - first)), steps - 1)
        c, r = int(e["x"]) - x0, int(e["y"]) - y0
        if 0 <= c < w and 0 <= r < h:
            out[k, int(e["p"] > 0), r, c] += 1
    return out


def _targets_by_hand(t_us: FloatArray) -> tuple[FloatArray, npt.NDArray[np.bool_]]:
    """Camera 3's labels at ``t_us``, projected by hand, truncated; which count."""
    x0, y0, w, h = PAPER_WINDOW.crop  # type: ignore[misc]
    X = joints_at(t_us)
    homog = np.concatenate([X, np.ones((*X.shape[:-1], 1))], axis=-1) @ CAMERAS[3][0].T
    uv = homog[..., :2] / homog[..., 2:]
    ok = (uv[..., 0] >= x0) & (uv[..., 0] < x0 + w) & (uv[..., 1] >= y0) & (uv[..., 1] < y0 + h)
    return np.trunc(uv - np.array([x0, y0])), ok


@torch.no_grad()
def test_paper_protocol_errors_match_an_independent_computation(
    paper_run: tuple[Path, dict[str, Any]],
) -> None:
    recording, report = paper_run
    assert report["setup"]["protocol"] == "paper" and report["setup"]["cameras"] == [3]
    assert report["setup"]["crop"] == [2, 0, 16, 16]
    assert report["setup"]["recordings"] == 1 and report["setup"]["scored_windows_per_camera"] == 47
    ann, snn, hybrid = build_models()
    steps, bin_us = WINDOW.steps, WINDOW.bin_us
    t0s = [60_000 + 30_000 * k for k in range(47)]
    with Recording(recording) as rec:
        events = rec.events(3, 0, 10**12)

        def frame(t: int) -> torch.Tensor:
            return torch.from_numpy(ann_frame(rec, 3, t, PAPER_WINDOW))[None]

        preds: dict[str, list[torch.Tensor]] = {n: [] for n in ("ann_high", "ann_low_held")}
        preds.update(snn=[], snn_continuous=[], hybrid=[])
        state = snn.zero_state(1, 16, 16)
        for t0 in t0s:
            bins = torch.from_numpy(_span_bins_by_hand(events, t0, steps)).float()[:, None]
            for i in range(steps):
                preds["ann_high"].append(argmax_heatmaps(ann(frame(t0 + (i + 1) * bin_us))[0])[0])
                preds["ann_low_held"].append(argmax_heatmaps(ann(frame(t0))[0])[0])
            hm, _ = snn(bins, snn.zero_state(1, 16, 16))
            preds["snn"] += list(argmax_heatmaps(hm[:, 0]))
            hm, state = snn(bins, state)
            preds["snn_continuous"] += list(argmax_heatmaps(hm[:, 0]))
            _, hm, _ = hybrid(frame(t0), bins)
            preds["hybrid"] += list(argmax_heatmaps(hm[:, 0]))
    # bin i of window k against the labels at its start t0 + i * bin
    label_t = np.array([t0 + i * bin_us for t0 in t0s for i in range(steps)], dtype=np.float64)
    targets, ok = _targets_by_hand(label_t)
    step = np.arange(len(label_t)) % steps
    for name, p in preds.items():
        err = np.linalg.norm(torch.stack(p).double().numpy() - targets, axis=-1)
        per_pose = np.array([e[o].mean() for e, o in zip(err, ok, strict=True)])
        m = report["models"][name]
        assert m["mpjpe2d_px"] == pytest.approx(per_pose.mean(), rel=1e-9), name
        per_step = [per_pose[step == s].mean() for s in range(steps)]
        np.testing.assert_allclose(m["mpjpe2d_px_per_step"], per_step, rtol=1e-9)
        assert m["mpjpe3d_mm"] is None  # the protocol has no 3D figure
    assert list(report["models"]) == list(names())


def test_both_protocols_in_one_report(
    tmp_path: Path, paper_run: tuple[Path, dict[str, Any]]
) -> None:
    recording, paper_only = paper_run
    ckpt = recording.parent.parent / "checkpoints"
    out = tmp_path / "out"
    code = main([
        "evaluate", "--checkpoints", str(ckpt), "--data", str(recording.parent), "--out",
        str(out), "--quiet",
    ])  # fmt: skip
    assert code == 0
    report = json.loads((out / "report.json").read_text())
    assert report["setup"]["protocol"] == "project"
    extra = report["paper_protocol"]
    assert set(extra) == {"models", "ratios", "setup"} and extra["setup"]["protocol"] == "paper"
    for name in names():
        assert extra["models"][name]["mpjpe2d_px"] == pytest.approx(
            paper_only["models"][name]["mpjpe2d_px"], rel=1e-12
        )
    md = (out / "report.md").read_text()
    assert "## The paper's protocol" in md and "camera 3, 1 recordings, 47 scored" in md
    assert md.count("| hybrid / ANN error |") == 2
