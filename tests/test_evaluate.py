"""Tests of hybridpose.evaluate: the six-model evaluation, by known answers on tiny data.

The data: recordings of a 24x24 sensor with four cameras, of which cameras 2 (looking along +z
from z = -1 m) and 3 (looking along -x from x = +1 m) are evaluated; deterministic random
events, 100 Hz labels of 13 joints that move slowly around the origin and project inside the
16x16 crop. The checkpoints are tiny untrained networks (seeded), written with the payload keys
that :mod:`hybridpose.train` writes. Untrained networks predict nonsense, so the known answers
are (a) the report's structure and its exact relations (ratios, energy units, the rates of the
energy model), (b) the 2D and 3D errors recomputed here from the documented definitions
(frames, bins, decoding, projections, a hand-written midpoint triangulation) and (c) the
scoring and segment internals on hand-made inputs.
"""

from __future__ import annotations

import json
import math
import shutil
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import pytest
import torch
from tiny_run import (  # tests/tiny_run.py: the tiny recordings and checkpoints
    ALL_T0,
    CAMERAS,
    CROP,
    MODEL,
    N_JOINTS,
    ROTATIONS,
    WINDOW,
    K,
    _payload,
    build_models,
    joints_at,
    write_checkpoints,
    write_recording,
)
from torch import Tensor, nn

from hybridpose.checkpoint import save_checkpoint
from hybridpose.data import WindowConfig, ann_frame, index_windows, snn_bins, to_model_pixels
from hybridpose.energy import SpikeRecorder
from hybridpose.evaluate import (
    EvalSpec,
    EvaluationError,
    Segment,
    SegmentData,
    StepErrors,
    evaluate,
    load_models,
    load_segment,
    pose_errors,
    predict,
    score,
    select_segments,
)
from hybridpose.geometry import project
from hybridpose.heatmaps import decode_heatmaps
from hybridpose.io.recording import Recording
from hybridpose.nn.hybrid import HybridConfig
from hybridpose.nn.snn import SNN, SNNConfig
from hybridpose.variants import names

MODELS = names()

pytestmark = pytest.mark.usefixtures("one_thread")  # tests/conftest.py

FloatArray = npt.NDArray[np.float64]


@dataclass(frozen=True)
class Setup:
    checkpoints: Path
    data: Path
    recording: Path
    root: Path


@pytest.fixture(scope="module")
def setup(tmp_path_factory: pytest.TempPathFactory) -> Setup:
    root = tmp_path_factory.mktemp("evaluate")
    data = root / "data"
    data.mkdir()
    recording = write_recording(data / "s13.h5", 13)
    write_recording(data / "s01.h5", 1)  # a training subject: not evaluated
    return Setup(write_checkpoints(root / "checkpoints"), data, recording, root)


SPEC_ARGS: dict[str, Any] = {
    "windows_per_recording": 4,
    "warmup_windows": 1,
    "energy_windows": 4,
    "seed": 0,
}


@pytest.fixture(scope="module")
def report(setup: Setup) -> dict[str, Any]:
    spec = EvalSpec(setup.checkpoints, setup.data, setup.root / "out", **SPEC_ARGS)
    return evaluate(spec, progress=False)


# ------------------------------------------------------------------------------ the run


def test_evaluate_writes_report_and_plots(setup: Setup, report: dict[str, Any]) -> None:
    out = setup.root / "out"
    for name in ("report.json", "report.md", "error_vs_step.png", "error_vs_power.png"):
        assert (out / name).is_file() and (out / name).stat().st_size > 0
    assert (out / "error_vs_step.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    stored = json.loads((out / "report.json").read_text())
    assert stored == json.loads(json.dumps(report))
    md = (out / "report.md").read_text()
    assert "hybrid, no state init (derived)" in md
    assert "| ANN at every step |" in md
    setup_ = stored["setup"]
    assert setup_["recordings"] == 1  # the training subject's file is left out
    assert setup_["scored_windows_per_camera"] == 4
    assert setup_["energy_windows"] == 5  # the first segment: 4 scored + 1 warmup window
    assert setup_["steps_per_window"] == 3
    assert setup_["output_rate_hz"] == 100.0
    assert setup_["ann_rate_hz"] == pytest.approx(100.0 / 3)
    assert setup_["sensor_size"] == [24, 24] and setup_["cameras"] == [2, 3]


def test_report_structure_and_exact_relations(report: dict[str, Any]) -> None:
    models = report["models"]
    assert set(models) == set(MODELS)
    for name in MODELS:
        m = models[name]
        for key in ("mpjpe2d_px", "mpjpe3d_mm", "energy_mj_per_s", "power_w"):
            assert isinstance(m[key], float) and math.isfinite(m[key]) and m[key] > 0, (name, key)
        assert len(m["mpjpe2d_px_per_step"]) == WINDOW.steps
        assert len(m["mpjpe3d_mm_per_step"]) == WINDOW.steps
        # every pose has all 13 joints inside the crop, so every step has as many poses and
        # the overall error is the mean of the per-step errors
        assert m["mpjpe2d_px"] == pytest.approx(np.mean(m["mpjpe2d_px_per_step"]), rel=1e-12)
        assert m["mpjpe3d_mm"] == pytest.approx(np.mean(m["mpjpe3d_mm_per_step"]), rel=1e-12)
        assert m["energy_mj_per_s"] == pytest.approx(1000.0 * m["power_w"], rel=1e-15)
    # the ANN's power at the low rate is its power at the high rate over the steps per window
    assert models["ann_low_held"]["power_w"] == pytest.approx(
        models["ann_high"]["power_w"] / WINDOW.steps, rel=1e-12
    )
    # ablations derived from hybrid.pt (no checkpoints of their own)
    flags = {name: models[name]["derived"] for name in MODELS}
    assert flags == {
        "ann_high": False,
        "ann_low_held": False,
        "snn": False,
        "snn_continuous": False,
        "hybrid": False,
        "hybrid_no_state_init": True,
        "hybrid_no_delta": True,
        "hybrid_rnn": False,
    }
    assert models["ann_high"]["firing_rate"] is None
    assert models["ann_low_held"]["firing_rate"] is None
    for name in ("snn", "hybrid", "hybrid_no_state_init", "hybrid_no_delta"):
        rate = models[name]["firing_rate"]
        assert isinstance(rate, float) and 0.0 < rate < 1.0, (name, rate)
    r = report["ratios"]
    ann, hyb, snn = models["ann_high"], models["hybrid"], models["snn"]
    assert r["hybrid_over_ann_error"] == hyb["mpjpe2d_px"] / ann["mpjpe2d_px"]
    assert r["hybrid_over_ann_power"] == hyb["power_w"] / ann["power_w"]
    assert r["snn_over_hybrid_error"] == snn["mpjpe2d_px"] / hyb["mpjpe2d_px"]


def test_power_from_hand_counted_operations(report: dict[str, Any]) -> None:
    """The energy model's structure, with the dense counts of the tiny networks by hand."""
    counts = report["setup"]["counts_per_inference"]
    pj: dict[str, float] = report["setup"]["energy_model_pj"]
    assert pj == {"e_mac_pj": 4.6, "e_ac_pj": 0.9, "e_membrane_pj": 4.6}
    # the ANN per frame, MACs = pixels * c_in * c_out * k^2: two 7x7 stem convs at 16x16, two
    # 3x3 convs per down block at 8, 4, 2, 1 px, per up block (8 -> 4, then 4 -> 4 channels)
    # at 2, 4, 8, 16 px, the 3x3 head to 13 joints
    stem = 2 * 256 * 4 * 4 * 49
    downs = (64 + 16 + 4 + 1) * 2 * 4 * 4 * 9
    ups = (4 + 16 + 64 + 256) * (8 * 4 + 4 * 4) * 9
    head = 256 * 4 * 13 * 9
    assert counts["ann"] == {"macs": stem + downs + ups + head, "synops": 0, "membrane_updates": 0}
    # the state heads: two 1x1 convs (4 -> 2, 2 -> 2) at every spiking layer's resolution
    pixels = {1: 256, 2: 64, 4: 16, 8: 4}
    layer_pixels = sum(pixels[s] for s in (1, 2, 4, 8, 8, 8, 4, 2, 1))
    assert counts["state_heads"]["macs"] == layer_pixels * (4 * 2 + 2 * 2)
    # one membrane update per neuron and step: 2 channels in each of the 9 layers
    for key in ("snn", "hybrid_snn_step", "hybrid_no_state_init_snn_step"):
        assert counts[key]["membrane_updates"] == 2 * layer_pixels
        assert counts[key]["macs"] == 0 and counts[key]["synops"] > 0

    def joules(c: dict[str, float]) -> float:
        return (
            c["macs"] * pj["e_mac_pj"]
            + c["synops"] * pj["e_ac_pj"]
            + c["membrane_updates"] * pj["e_membrane_pj"]
        ) * 1e-12

    high, low = 100.0, 100.0 / WINDOW.steps
    frame, heads = joules(counts["ann"]), joules(counts["state_heads"])
    expected = {
        "ann_high": frame * high,
        "ann_low_held": frame * low,
        "snn": joules(counts["snn"]) * high,
        # the hybrid: the ANN and its state heads at the low rate, the SNN at the high rate
        "hybrid": (frame + heads) * low + joules(counts["hybrid_snn_step"]) * high,
        # without state initialisation the heads are not run
        "hybrid_no_state_init": frame * low
        + joules(counts["hybrid_no_state_init_snn_step"]) * high,
        "hybrid_no_delta": (frame + heads) * low
        + joules(counts["hybrid_no_delta_snn_step"]) * high,
    }
    for name, power in expected.items():
        assert report["models"][name]["power_w"] == pytest.approx(power, rel=1e-9), name


# ------------------------------------------------------------------------ an independent score


def _rays(camera: int, uv: FloatArray) -> tuple[FloatArray, FloatArray]:
    """Camera centre and world direction of the ray through sensor pixels ``uv`` (..., 2)."""
    rotation, centre = ROTATIONS[camera], CAMERAS[camera][1]
    pix = np.concatenate([uv, np.ones((*uv.shape[:-1], 1))], axis=-1)
    direction = pix @ np.linalg.inv(K).T @ rotation  # R^T K^-1 (u, v, 1), row vectors
    return np.broadcast_to(centre, direction.shape), direction


def _midpoint(uv2: FloatArray, uv3: FloatArray) -> FloatArray:
    """The midpoint of the common perpendicular of the two cameras' rays (textbook formula)."""
    o1, d1 = _rays(2, uv2)
    o2, d2 = _rays(3, uv3)
    w0 = o1 - o2
    a, b, c = (d1 * d1).sum(-1), (d1 * d2).sum(-1), (d2 * d2).sum(-1)
    d, e = (d1 * w0).sum(-1), (d2 * w0).sum(-1)
    den = a * c - b * b
    s = (b * e - c * d) / den
    t = (a * e - b * d) / den
    mid: FloatArray = 0.5 * (o1 + s[..., None] * d1 + o2 + t[..., None] * d2)
    return mid


def _decode(hm: Tensor) -> FloatArray:
    """Decoded heatmaps (..., J, H, W) as sensor pixels (downsample 1: add the crop origin)."""
    uv: FloatArray = decode_heatmaps(hm).double().numpy() + np.array(CROP[:2], dtype=np.float64)
    return uv


@torch.no_grad()
def test_errors_match_an_independent_computation(setup: Setup, report: dict[str, Any]) -> None:
    """Every model's 2D errors (and ann_high's 3D error) from the documented definitions."""
    (seg,) = select_segments(
        [str(setup.recording)], WINDOW, (2, 3), 4, SPEC_ARGS["warmup_windows"], seed=0
    )
    ann, snn, hybrid = build_models()
    steps, bin_us = WINDOW.steps, WINDOW.bin_us
    n = len(seg.t0s) * steps
    preds: dict[str, dict[int, FloatArray]] = {m: {} for m in MODELS}  # (n, J, 2) sensor px
    truth = joints_at(seg.t0s[0] + bin_us * np.arange(1, n + 1)).astype(np.float32)
    with Recording(setup.recording) as rec:
        for cam in (2, 3):

            def frame(t: int, cam: int = cam) -> Tensor:
                return torch.from_numpy(ann_frame(rec, cam, t, WINDOW))[None]

            ends = [seg.t0s[0] + (k + 1) * bin_us for k in range(n)]
            starts = [seg.t0s[0] + (k // steps) * steps * bin_us for k in range(n)]
            preds["ann_high"][cam] = np.stack([_decode(ann(frame(t))[0])[0] for t in ends])
            preds["ann_low_held"][cam] = np.stack([_decode(ann(frame(t))[0])[0] for t in starts])
            edges = seg.t0s[0] + bin_us * np.arange(n + 1)
            bins = torch.from_numpy(snn_bins(rec, cam, edges, WINDOW))[:, None]  # (n, 1, ...)
            hm, _ = snn(bins, snn.zero_state(1, 16, 16))
            preds["snn_continuous"][cam] = _decode(hm[:, 0])
            windows, restarted = [], []
            for w, t0 in enumerate(seg.t0s):
                assert t0 == seg.t0s[0] + w * steps * bin_us
                window = bins[w * steps : (w + 1) * steps]
                _, hm, _ = hybrid(frame(t0), window)
                windows.append(_decode(hm[:, 0]))
                hm, _ = snn(window, snn.zero_state(1, 16, 16))
                restarted.append(_decode(hm[:, 0]))
            preds["hybrid"][cam] = np.concatenate(windows)
            preds["snn"][cam] = np.concatenate(restarted)
    keep = slice(seg.warmup * steps, n)
    step = np.arange(n)[keep] % steps
    for name in ("ann_high", "ann_low_held", "snn", "snn_continuous", "hybrid"):
        per_pose = []
        for cam in (2, 3):
            target = project(CAMERAS[cam][0], truth)  # sensor pixels
            per_pose.append(np.linalg.norm(preds[name][cam] - target, axis=-1).mean(-1)[keep])
        errors = np.stack(per_pose)  # (2, scored poses)
        m = report["models"][name]
        assert m["mpjpe2d_px"] == pytest.approx(errors.mean(), rel=1e-5), name
        per_step = [errors[:, step == s].mean() for s in range(steps)]
        np.testing.assert_allclose(m["mpjpe2d_px_per_step"], per_step, rtol=1e-5)
    xyz = _midpoint(preds["ann_high"][2], preds["ann_high"][3])
    err3 = np.linalg.norm(xyz - truth, axis=-1).mean(-1)[keep]
    assert report["models"]["ann_high"]["mpjpe3d_mm"] == pytest.approx(err3.mean(), rel=1e-5)


# ------------------------------------------------------------------------------ scoring


def test_pose_errors_by_hand() -> None:
    target = np.zeros((3, 3, 2))
    pred = np.zeros((3, 3, 2))
    pred[0] = [[3.0, 4.0], [0.0, 0.0], [-6.0, 8.0]]  # errors 5, 0, 10
    pred[1] = [[3.0, -4.0], [1000.0, 1000.0], [0.0, 0.0]]  # errors 5, (masked), 0
    pred[2] = [[1.0, 1.0], [2.0, 2.0], [3.0, 3.0]]  # no valid joint
    target[:, :, 0] += 7.0  # a common shift changes nothing
    pred[:, :, 0] += 7.0
    mask = np.array([[True, True, True], [True, False, True], [False, False, False]])
    out = pose_errors(pred, target, mask)
    assert out.shape == (3,)
    assert out[0] == pytest.approx(5.0)
    assert out[1] == pytest.approx(2.5)
    assert np.isnan(out[2])
    # a masked-out joint may be NaN (unlabelled) without touching the mean
    target[1, 1] = np.nan
    assert pose_errors(pred, target, mask)[1] == pytest.approx(2.5)
    # 3D works the same way: (3, 4, 12) has length 13
    out3 = pose_errors(np.array([[[3.0, 4.0, 12.0]]]), np.zeros((1, 1, 3)), np.ones((1, 1), bool))
    assert out3.tolist() == [13.0]


def test_pose_errors_nan_prediction_is_not_a_zero_error() -> None:
    pred = np.array([[[4.0, 3.0], [np.nan, np.nan]]])
    out = pose_errors(pred, np.zeros((1, 2, 2)), np.ones((1, 2), dtype=bool))
    # the pose is unusable (NaN, left out of every mean), never scored as 2.5
    assert np.isnan(out[0])


SCORE_CROP = (3, 1, 16, 16)
SCORE_DOWN = 2


def _hand_segment_data(
    n: int, camera: int, valid: npt.NDArray[np.bool_]
) -> tuple[SegmentData, FloatArray]:
    """A camera's :class:`SegmentData` for ``n`` poses of 3 joints, and its 3D truth."""
    joints3d = joints_at(10_000 * np.arange(1, n + 1))[:, :3]
    P = CAMERAS[camera][0]
    joints2d = to_model_pixels(project(P, joints3d), SCORE_CROP, SCORE_DOWN)
    empty = torch.zeros(0)
    return SegmentData(empty, empty, joints2d, valid, joints3d, np.asarray(P)), joints3d


def test_score_known_answers_with_warmup_and_masks() -> None:
    steps, n_win, warmup = 2, 3, 1
    n = steps * n_win  # poses 0, 1 are warmup; 2, 3, 4, 5 are scored at steps 0, 1, 0, 1
    cfg = WindowConfig(
        ann_events=10, bin_us=10_000, steps=steps, stride_us=20_000, crop=SCORE_CROP,
        downsample=SCORE_DOWN,
    )  # fmt: skip
    valid2 = np.ones((n, 3), dtype=bool)
    valid3 = np.ones((n, 3), dtype=bool)
    valid2[3, 2] = False  # one joint unlabelled in camera 2 (pose 3, step 1)
    valid3[4, :] = False  # a whole pose unlabelled in camera 3 (pose 4, step 0)
    valid2[0, :] = False  # masks of warmup poses do not matter
    d2, _ = _hand_segment_data(n, 2, valid2)
    d3, _ = _hand_segment_data(n, 3, valid3)
    seg = Segment("hand", tuple(range(0, 20_000 * n_win, 20_000)), warmup)
    # per pose: warmup nonsense, then (3, 4) at step 0 and (6, 8) at step 1
    offsets = np.array(
        [[300.0, 400.0], [300.0, 400.0], [3.0, 4.0], [6.0, 8.0], [3.0, 4.0], [6.0, 8.0]]
    )
    offsets = offsets[:, None, :]  # (n, 1, 2): the same for every joint
    preds: dict[str, list[Tensor]] = {}
    for name in MODELS:
        per_cam = []
        for d in (d2, d3):
            exact = d.joints2d.copy()
            if name != "ann_high":  # the others are off by (3, 4) at step 0, (6, 8) at step 1
                exact = exact + offsets
            exact[0:2] += 1000.0  # warmup windows: nonsense that must not count
            if d is d2:
                exact[3, 2] = [-500.0, 900.0]  # the unlabelled joint: also left out
            per_cam.append(torch.from_numpy(exact)[None])  # (S=1, W*T, J, 2) float64
        preds[name] = per_cam
    errors = StepErrors(steps)
    score(errors, preds, [[d2], [d3]], [seg], cfg)
    for name in MODELS:
        # poses with a valid joint per step: step 0: poses 2 (both cameras), 4 (camera 2 only)
        np.testing.assert_array_equal(errors.n2d[name], [3, 4])
        np.testing.assert_array_equal(errors.n3d[name], [1, 2])
    # exact predictions: 0 px, and the two exact projections triangulate to the truth
    np.testing.assert_array_equal(errors.sum2d["ann_high"], [0.0, 0.0])
    assert np.all(errors.sum3d["ann_high"] < 1e-9)
    # (3, 4) model pixels are 5 * 2 sensor pixels at downsampling 2, (6, 8) are 20
    for name in MODELS[1:]:
        np.testing.assert_allclose(errors.sum2d[name] / errors.n2d[name], [10.0, 20.0])
        assert np.all(errors.sum3d[name] > 1.0)


def test_score_3d_error_is_that_of_the_triangulated_offset_predictions() -> None:
    # one window, no warmup, one joint; camera 2 exact, camera 3 shifted along v by 1 model px
    cfg = WindowConfig(ann_events=10, steps=1, stride_us=10_000, crop=SCORE_CROP, downsample=2)
    d2, truth = _hand_segment_data(1, 2, np.ones((1, 3), dtype=bool))
    d3, _ = _hand_segment_data(1, 3, np.ones((1, 3), dtype=bool))
    shifted = d3.joints2d.copy()
    shifted[..., 1] += 1.0
    preds = {
        m: [torch.from_numpy(d2.joints2d)[None], torch.from_numpy(shifted)[None]] for m in MODELS
    }
    errors = StepErrors(1)
    score(errors, preds, [[d2], [d3]], [Segment("hand", (0,), 0)], cfg)
    # independently: the midpoint of the two rays through the sensor pixels
    uv2 = (d2.joints2d + 0.5) * 2 - 0.5 + np.array(SCORE_CROP[:2])
    uv3 = (shifted + 0.5) * 2 - 0.5 + np.array(SCORE_CROP[:2])
    expected = np.linalg.norm(_midpoint(uv2, uv3) - truth, axis=-1).mean()
    assert expected > 1.0
    assert errors.sum3d["hybrid"][0] == pytest.approx(expected, rel=1e-9)
    # 2D: camera 2 exact, camera 3 off by 1 model pixel = 2 sensor pixels
    assert errors.sum2d["hybrid"][0] == pytest.approx(2.0) and errors.n2d["hybrid"][0] == 2


# ------------------------------------------------------------------------------ segments


def test_select_segments_longest_run_on_both_cameras(tmp_path: Path) -> None:
    # labels missing from 900 to 1000 ms cut camera 2's windows into 60..870 ms (28) and
    # 990..1470 ms (17); camera 3 starts at 680 ms (its 100th event at 729.5 ms), so the
    # windows on both cameras are 750..870 ms (5) and 990..1470 ms (17)
    path = str(
        write_recording(
            tmp_path / "gap.h5", 13, camera3_start_us=680_000, nan_labels=(900_000, 1_000_000)
        )
    )
    second = tuple(range(990_000, 1_470_001, 30_000))
    assert len(second) == 17
    (whole,) = select_segments([path], WINDOW, (2, 3), None, 1, seed=0)
    assert whole == Segment(path, second, 1)
    # camera 2 alone has a longer run, which a selection by one camera would take
    cam2 = [w.t0_us for w in index_windows([path], replace(WINDOW, cameras=(2,)))]
    assert cam2 == [*range(60_000, 870_001, 30_000), *second]
    # more windows than the run holds: the whole run
    assert select_segments([path], WINDOW, (2, 3), 30, 2, seed=5) == [Segment(path, second, 2)]
    # a run of warmup windows only gives no segment
    assert select_segments([path], WINDOW, (2, 3), None, 17, seed=0) == []
    assert select_segments([path], WINDOW, (2, 3), 0, 3, seed=0) == []


def test_select_segments_random_start_is_seeded(setup: Setup) -> None:
    path = str(setup.recording)
    starts = set()
    for seed in range(8):
        segs = select_segments([path], WINDOW, (2, 3), 5, 2, seed=seed)
        assert segs == select_segments([path], WINDOW, (2, 3), 5, 2, seed=seed)
        (seg,) = segs
        assert seg.path == path and seg.warmup == 2
        assert len(seg.t0s) == 7  # 5 scored + 2 warmup, consecutive grid windows
        assert np.all(np.diff(seg.t0s) == WINDOW.stride_us)
        assert set(seg.t0s) <= set(ALL_T0)
        starts.add(seg.t0s[0])
    assert len(starts) > 1
    (whole,) = select_segments([path], WINDOW, (2, 3), None, 1, seed=3)
    assert whole.t0s == ALL_T0
    # one generator for all recordings: the second copy of a file gets the next draw
    a, b = select_segments([path, path], WINDOW, (2, 3), 5, 2, seed=1)
    assert a == select_segments([path], WINDOW, (2, 3), 5, 2, seed=1)[0]
    rng = np.random.default_rng(1)
    first, second = (int(rng.integers(0, len(ALL_T0) - 7 + 1)) for _ in range(2))
    assert a.t0s[0] == ALL_T0[first] and b.t0s[0] == ALL_T0[second]


# ------------------------------------------------------------------------------ predictions


@torch.no_grad()
def test_predict_bookkeeping_against_direct_calls(setup: Setup) -> None:
    models = load_models(setup.checkpoints)
    steps = WINDOW.steps
    seg = Segment(str(setup.recording), ALL_T0[10:14], 1)
    n = len(seg.t0s) * steps
    with Recording(setup.recording) as rec:
        labels = rec.labels()
        # two segments in one batch: camera 2 and camera 3 of the same windows
        data = [load_segment(rec, labels, cam, seg, WINDOW) for cam in (2, 3)]
        frames = {
            cam: [
                torch.from_numpy(ann_frame(rec, cam, seg.t0s[0] + k * WINDOW.bin_us, WINDOW))
                for k in range(n + 1)
            ]
            for cam in (2, 3)
        }
    out = predict(models, data, steps)
    assert set(out) == set(MODELS)
    for name in MODELS:
        assert out[name].shape == (2, n, N_JOINTS, 2), name
    for s, cam in enumerate((2, 3)):
        torch.testing.assert_close(data[s].frames, torch.stack(frames[cam]))
        ann_uv = [decode_heatmaps(models.ann(f[None])[0])[0] for f in frames[cam]]
        for k in range(n):
            w = k // steps
            # ann_high at step k: the frame that ends at the end of bin k
            torch.testing.assert_close(out["ann_high"][s, k], ann_uv[k + 1], atol=1e-4, rtol=0)
            # ann_low_held: the window start's prediction at every step of the window
            torch.testing.assert_close(
                out["ann_low_held"][s, k], ann_uv[w * steps], atol=1e-4, rtol=0
            )
            # which is ann_high's prediction at the previous window's last step
            if w > 0:
                assert torch.equal(out["ann_low_held"][s, k], out["ann_high"][s, w * steps - 1])
        # the SNN alone, continuous: from the zero state over the whole segment
        x = data[s].bins[:, None]
        hm, _ = models.snn(x, models.snn.zero_state(1, 16, 16))
        torch.testing.assert_close(
            out["snn_continuous"][s], decode_heatmaps(hm[:, 0]), atol=1e-4, rtol=0
        )
        # the hybrids: every window from the ANN at its start
        for name, model in (
            ("hybrid", models.hybrid),
            ("hybrid_no_state_init", models.networks["hybrid_no_state_init"]),
            ("hybrid_no_delta", models.networks["hybrid_no_delta"]),
        ):
            for w in range(len(seg.t0s)):
                window = data[s].bins[w * steps : (w + 1) * steps, None]
                _, hm, _ = model(frames[cam][w * steps][None], window)
                # batched and unbatched convolutions round differently; the sub-pixel
                # refinement (a log-parabola) can amplify that to ~1e-4 px
                torch.testing.assert_close(
                    out[name][s, w * steps : (w + 1) * steps],
                    decode_heatmaps(hm[:, 0]),
                    atol=1e-3,
                    rtol=0,
                )
    # the models differ, so the checks above could tell them apart
    assert not torch.equal(out["hybrid"], out["hybrid_no_delta"])
    assert not torch.equal(out["hybrid"], out["hybrid_no_state_init"])
    assert not torch.equal(out["snn"], out["hybrid"])
    assert not torch.equal(out["ann_high"], out["ann_low_held"])


# ------------------------------------------------------------------------------ checkpoints


def test_load_models_derives_ablations_without_touching_the_hybrid(
    setup: Setup, tmp_path: Path
) -> None:
    models = load_models(setup.checkpoints)
    assert models.derived == {"hybrid_no_state_init": True, "hybrid_no_delta": True}
    assert models.window == WINDOW and models.config == MODEL and models.preset == "test"
    assert models.hybrid.config.state_init and models.hybrid.snn.config.delta_readout
    hybrids = models.hybrids()
    no_state_init, no_delta = hybrids["hybrid_no_state_init"], hybrids["hybrid_no_delta"]
    assert not no_state_init.config.state_init
    assert no_state_init.snn.config.delta_readout
    assert no_delta.config.state_init and not no_delta.snn.config.delta_readout
    assert no_delta is not models.hybrid and no_delta.snn is not models.hybrid.snn
    # an ablation checkpoint of its own is used as it is
    own = tmp_path / "ckpt"
    shutil.copytree(setup.checkpoints, own)
    config = replace(MODEL, hybrid=HybridConfig(state_init=False))
    _, _, hybrid = build_models(seed=1)
    hybrid.config = config.hybrid
    save_checkpoint(
        own / "hybrid_no_state_init.pt",
        _payload("hybrid_no_state_init", "hybrid", hybrid, config, WINDOW),
    )
    loaded = load_models(own)
    assert loaded.derived == {"hybrid_no_state_init": False, "hybrid_no_delta": True}
    own_no_state_init = loaded.hybrids()["hybrid_no_state_init"]
    assert not own_no_state_init.config.state_init
    for key, value in hybrid.state_dict().items():
        assert torch.equal(own_no_state_init.state_dict()[key], value), key


def test_checkpoint_errors(setup: Setup, tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError):
        load_models(tmp_path / "missing")
    # another window configuration in hybrid.pt than in ann.pt
    other = tmp_path / "other"
    shutil.copytree(setup.checkpoints, other)
    _, _, hybrid = build_models()
    save_checkpoint(
        other / "hybrid.pt",
        _payload("hybrid", "hybrid", hybrid, MODEL, replace(WINDOW, ann_events=200)),
    )
    with pytest.raises(EvaluationError, match="other windows"):
        load_models(other)
    # an SNN where the ANN should be
    swapped = tmp_path / "swapped"
    shutil.copytree(setup.checkpoints, swapped)
    shutil.copy(swapped / "snn.pt", swapped / "ann.pt")
    with pytest.raises(EvaluationError, match="expected a ANN checkpoint"):
        load_models(swapped)


# ------------------------------------------------------------------------------ errors


def test_evaluate_errors(setup: Setup, tmp_path: Path) -> None:
    out = tmp_path / "out"
    with pytest.raises(FileNotFoundError):
        evaluate(EvalSpec(tmp_path / "missing", setup.data, out), progress=False)
    big = tmp_path / "big"
    big.mkdir()
    write_recording(big / "s14.h5", 14, sensor=(32, 32))
    with pytest.raises(EvaluationError, match="sensor 32x32"):
        evaluate(EvalSpec(setup.checkpoints, big, out), progress=False)
    train_only = tmp_path / "train_only"
    train_only.mkdir()
    shutil.copy(setup.data / "s01.h5", train_only / "s01.h5")
    with pytest.raises(EvaluationError, match="no recordings of the test subjects"):
        evaluate(EvalSpec(setup.checkpoints, train_only, out), progress=False)
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(EvaluationError, match=r"empty: no recording files \(\*\.h5\)"):
        evaluate(EvalSpec(setup.checkpoints, empty, out), progress=False)
    assert not out.exists()


def test_evaluate_with_no_scorable_joints_does_not_report_zero_error(
    setup: Setup, tmp_path: Path
) -> None:
    data = tmp_path / "data"
    data.mkdir()
    # every joint 3 m off to the side: outside camera 2's crop (and behind camera 3)
    write_recording(data / "s15.h5", 15, joint_shift_mm=3000.0)
    spec = EvalSpec(setup.checkpoints, data, tmp_path / "out", **SPEC_ARGS)
    # the windows exist (the labels are valid, only outside the image): the recording is
    # evaluated, and no model gets an error
    result = evaluate(spec, progress=False)
    assert result["setup"]["recordings"] == 1
    for name in MODELS:
        assert result["models"][name]["mpjpe2d_px"] is None, name
        assert all(v is None for v in result["models"][name]["mpjpe2d_px_per_step"]), name


# ------------------------------------------------------------------------------ spikes


def _forced_snn(currents: dict[str, float]) -> SNN:
    """An SNN whose spiking layers get a constant input current each (conv weights zero)."""
    snn = SNN(SNNConfig(widths=(2, 3, 2, 4))).eval()
    for name, layer in snn.spiking_layers().items():
        assert isinstance(layer.bn, nn.BatchNorm2d)
        with torch.no_grad():
            layer.conv.weight.zero_()
            layer.bn.bias.fill_(currents[name])  # bn(0) = beta in eval mode
    return snn


LAYERS = ("enc", "down1", "down2", "down3", "res1", "res2", "up1", "up2", "up3")
CHANNELS_SCALES = {
    "enc": (2, 1),
    "down1": (3, 2),
    "down2": (2, 4),
    "down3": (4, 8),
    "res1": (4, 8),
    "res2": (4, 8),
    "up1": (2, 4),
    "up2": (3, 2),
    "up3": (2, 1),
}


@torch.no_grad()
def test_spike_recorder_known_rates() -> None:
    t, b, h, w = 6, 2, 16, 16
    x = torch.rand(t, b, 2, h, w, generator=torch.Generator().manual_seed(0)) * 3
    neurons = {k: c * (h // s) * (w // s) * b * t for k, (c, s) in CHANNELS_SCALES.items()}

    def rates(currents: dict[str, float]) -> tuple[float, dict[str, float], dict[str, int]]:
        snn = _forced_snn(currents)
        with SpikeRecorder(snn) as rec:
            snn(x, snn.zero_state(b, h, w))
        return rec.firing_rate, rec.layer_rates(), rec.neuron_steps

    rate, layers, steps = rates(dict.fromkeys(LAYERS, 100.0))
    assert rate == 1.0 and set(layers.values()) == {1.0}
    assert steps == neurons
    rate, layers, _ = rates(dict.fromkeys(LAYERS, -100.0))
    assert rate == 0.0 and set(layers.values()) == {0.0}
    # a constant current of 1.5 with tau 3 and threshold 1: h = 0.5, 0.833, 1.056 (spike,
    # v = 0.056), 0.537, 0.858, 1.072 (spike): 2 spikes in 6 steps
    mixed = dict.fromkeys(LAYERS, -100.0)
    mixed["enc"] = 100.0
    mixed["down1"] = 1.5
    rate, layers, _ = rates(mixed)
    assert layers["enc"] == 1.0
    assert layers["down1"] == pytest.approx(1 / 3, rel=1e-12)
    assert all(layers[k] == 0.0 for k in LAYERS if k not in ("enc", "down1"))
    total = sum(neurons.values())
    assert rate == pytest.approx((neurons["enc"] + neurons["down1"] / 3) / total, rel=1e-12)


@torch.no_grad()
def test_spike_recorder_accumulates_and_detaches() -> None:
    snn = _forced_snn(dict.fromkeys(LAYERS, 100.0))
    x = torch.zeros(2, 1, 2, 8, 8)
    recorder = SpikeRecorder(snn)
    assert recorder.firing_rate == 0.0 and set(recorder.layer_rates().values()) == {0.0}
    with recorder:
        snn(x, snn.zero_state(1, 8, 8))
        snn(x, snn.zero_state(1, 8, 8))
    assert recorder.neuron_steps["enc"] == 2 * 2 * 2 * 8 * 8
    assert recorder.spikes["enc"] == 2 * 2 * 2 * 8 * 8
    snn(x, snn.zero_state(1, 8, 8))  # after the block: not counted
    assert recorder.neuron_steps["enc"] == 2 * 2 * 2 * 8 * 8
    assert recorder.firing_rate == 1.0


def test_spike_recorder_differentiable_rate() -> None:
    """The rate as a tensor (the training's firing-rate penalty): the same value as
    :attr:`firing_rate`, and more current means more spikes along its gradient."""
    mixed = dict.fromkeys(LAYERS, -100.0)
    mixed["enc"] = 100.0
    mixed["down1"] = 1.5
    snn = _forced_snn(mixed)
    x = torch.zeros(6, 1, 2, 16, 16)
    with SpikeRecorder(snn, differentiable=True) as rec:
        snn(x, snn.zero_state(1, 16, 16))
    rate = rec.rate()
    assert float(rate.detach()) == pytest.approx(rec.firing_rate, rel=1e-6) and rec.firing_rate > 0
    rate.backward()  # type: ignore[no-untyped-call]
    grads = {n: p.grad for n, p in snn.named_parameters()}
    down1, enc = grads["down1.bn.bias"], grads["enc.bn.bias"]
    assert down1 is not None and bool((down1 > 0).all())
    # enc lies 99 above the threshold: the surrogate is nearly flat there
    assert enc is not None and float(enc.abs().max()) < 1e-3 * float(down1.min())
    # weighted by layer: enc fires every step, down1 a third of them (see the test above)
    with SpikeRecorder(snn, differentiable=True) as rec:
        snn(x, snn.zero_state(1, 16, 16))
    weights = dict.fromkeys(LAYERS, 0.0) | {"enc": 2.0, "down1": 3.0, "up3": 5.0}
    n = {k: c * (16 // s) ** 2 * 6 for k, (c, s) in CHANNELS_SCALES.items()}
    want = (2 * n["enc"] + 3 * n["down1"] / 3) / (2 * n["enc"] + 3 * n["down1"] + 5 * n["up3"])
    assert float(rec.rate(weights).detach()) == pytest.approx(want, rel=1e-6)
    with SpikeRecorder(snn) as plain:
        snn(x, snn.zero_state(1, 16, 16))
    with pytest.raises(RuntimeError, match="differentiable=True"):
        plain.rate()
    with pytest.raises(RuntimeError, match="no spiking layer ran"):
        SpikeRecorder(snn, differentiable=True).rate()


def test_evaluate_refuses_a_later_recording_of_another_sensor(setup: Setup, tmp_path: Path) -> None:
    data = tmp_path / "data"
    data.mkdir()
    shutil.copy(setup.recording, data / "s13.h5")
    write_recording(data / "s14.h5", 14, sensor=(32, 32))  # sorted after s13.h5
    spec = EvalSpec(
        setup.checkpoints, data, tmp_path / "out", windows_per_recording=1, energy_windows=1
    )
    with pytest.raises(EvaluationError, match=r"s14\.h5: sensor 32x32, but the models expect"):
        evaluate(spec, progress=False)
