"""The paper's evaluation protocol: the authors' code (uzh-rpg/hybrid_ann_snn) as its table was
measured, scaled to a preset.

Its rules, at DHP19's scale (346x260 sensor, 7500-event ANN frames, 100 ms windows of ten
10 ms bins), and how a preset of another size follows them:

1. **Camera 3 only.** 2D errors on one camera; the protocol has no 3D figure (the report's
   3D fields are null).
2. **Windows.** Window ``k`` starts at ``t0 = start + k * stride``, ``k = 0 .. n - 1``, with
   ``start = ceil(t_N / stride) * stride``, ``t_N`` the timestamp of event index ``N`` (the
   authors' ``t[7500]``; ``N`` = the preset's ``ann_events``), ``n = floor((L - start -
   stride) / stride)`` and ``L`` the shorter of the event stream (its last event's
   millisecond, plus one) and the labels (the last label's time plus one label period).
3. **Inputs.** The ANN frame is the last ``N`` events before ``t0``, their time span (first to
   last event) cut into equal parts: the project's frames are built the same way. The SNN's
   bins are the window's events ``[t0, t0 + stride)`` with *their* span (first to last event)
   cut into ``T`` equal parts, where the project uses fixed edges ``t0 + i * bin``.
4. **Crop.** Columns 34-290 and rows 2-258 of the 346x260 frame (the project's cpu and paper
   presets crop columns 45-301 at that scale). For another sensor the crop keeps the
   preset's size and moves its origin by the same fraction of the sensor:
   ``x0 = round(34 / 346 * W)``, ``y0 = round(2 / 260 * H)`` (halves rounded up), clipped to
   fit (:func:`paper_crop`: ``(9, 1)`` for the cpu preset's 64x64 crop of 87x65).
5. **Labels.** Bin ``i`` of window ``k`` is scored against Vicon sample ``10 k + i``, the pose
   at ``t0 + i * bin``: the *start* of the bin, one label period before the end of the events
   the prediction saw (the ANN at 100 Hz likewise: a frame ending at ``T`` is scored against
   sample ``T / 10 ms - 1``; the held ANN against the same samples as the SNN). The project
   scores every prediction against the pose at the end of its bin. A joint counts when its
   projection ``(u, v)`` is finite and ``x0 <= u < x0 + width``, ``y0 <= v < y0 + height``;
   its target is truncated to integers: ``int((u - x0) / d)``, ``int((v - y0) / d)`` for
   downsampling ``d`` (1 in both presets).
6. **Decoding.** The integer argmax of each heatmap (:func:`hybridpose.heatmaps.argmax_heatmaps`;
   the project refines it to sub-pixels).
7. **Averaging.** Per prediction, the mean error over its counted joints (in sensor pixels:
   times ``d``); then the mean over predictions, per step of the window and overall.
8. **Left out:** subject 16, session 2, movement 1 (non-monotonic timestamps in DHP19).

The SNN alone (``snn``) restarts from an empty state at every window, as the authors reset the
network before every sample; ``snn_continuous`` runs over the consecutive windows of a
recording from an empty state at its first.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import replace
from typing import Any

import numpy as np
import numpy.typing as npt
import torch
from torch import Tensor

from hybridpose.data import WindowConfig, ann_frames, interpolate_joints
from hybridpose.evaluate.scoring import StepErrors, pose_errors
from hybridpose.evaluate.segments import Segment, SegmentData
from hybridpose.geometry import project
from hybridpose.io.recording import Recording, read_meta
from hybridpose.representations import Crop, stacked_histogram

CAMERA = 3
"""The camera the paper's 2D errors are measured on (DHP19's camera 3, matrix ``P2.npy``)."""
REFERENCE_SENSOR = (346, 260)
"""The sensor the protocol's numbers are stated for (width, height)."""
REFERENCE_CROP_ORIGIN = (34, 2)
"""The authors' crop origin on the 346x260 frame: columns 34-290, rows 2-258."""
LEFT_OUT = ((16, 2, 1),)
"""(subject, session, movement) recordings the authors leave out."""


def paper_crop(sensor_size: tuple[int, int], size: tuple[int, int]) -> Crop:
    """The protocol's crop ``(x0, y0, width, height)`` of a ``size`` = (width, height) region
    on a ``sensor_size`` = (width, height) sensor (rule 4 of the module docstring).

    >>> paper_crop((346, 260), (256, 256)), paper_crop((87, 65), (64, 64))
    ((34, 2, 256, 256), (9, 1, 64, 64))
    """
    (sw, sh), (w, h) = sensor_size, size
    if w > sw or h > sh:
        raise ValueError(f"a {w}x{h} crop does not fit a {sw}x{sh} sensor")
    x0 = math.floor(REFERENCE_CROP_ORIGIN[0] / REFERENCE_SENSOR[0] * sw + 0.5)
    y0 = math.floor(REFERENCE_CROP_ORIGIN[1] / REFERENCE_SENSOR[1] * sh + 0.5)
    return (min(x0, sw - w), min(y0, sh - h), w, h)


def paper_window(config: WindowConfig, sensor_size: tuple[int, int]) -> WindowConfig:
    """``config`` with the protocol's crop (same size, moved origin) and camera 3."""
    crop = config.crop
    size = (sensor_size[0], sensor_size[1]) if crop is None else (crop[2], crop[3])
    return replace(config, crop=paper_crop(sensor_size, size), cameras=(CAMERA,))


def window_starts(rec: Recording, camera: int, config: WindowConfig) -> list[int]:
    """The protocol's window starts in ``rec`` on ``camera`` (rule 2), in µs."""
    cam = rec.cameras[camera]
    labels = rec.labels()
    n_events = cam.num_events
    if n_events <= config.ann_events or len(labels.t_us) < 2:
        return []
    stride = config.stride_us
    t_n = int(rec.events_slice(camera, config.ann_events, config.ann_events + 1)["t"][0])
    start = -(-t_n // stride) * stride
    t_last = int(rec.events_slice(camera, n_events - 1, n_events)["t"][0])
    events_len = (t_last // 1000 + 1) * 1000
    period = int(np.median(np.diff(labels.t_us)))
    labels_len = int(labels.t_us[-1]) + period
    length = min(events_len, labels_len)
    n = (length - start - stride) // stride
    return [start + k * stride for k in range(max(n, 0))]


def left_out(path: str) -> bool:
    """Whether the protocol leaves the recording ``path`` out (:data:`LEFT_OUT`)."""
    meta = read_meta(path)
    return (meta.subject, meta.session, meta.movement) in LEFT_OUT


def paper_segments(
    paths: Sequence[str],
    config: WindowConfig,
    windows_per_recording: int | None,
    seed: int,
) -> list[Segment]:
    """One segment per recording (those :func:`left_out` excepted) on camera 3: all of its
    protocol windows, or ``windows_per_recording`` consecutive ones from a seeded start."""
    rng = np.random.default_rng(seed)
    out: list[Segment] = []
    for path in paths:
        if left_out(path):
            continue
        with Recording(path) as rec:
            if len(rec.cameras) <= CAMERA:
                continue
            t0s = window_starts(rec, CAMERA, config)
        if not t0s:
            continue
        n = len(t0s) if windows_per_recording is None else min(windows_per_recording, len(t0s))
        first = int(rng.integers(0, len(t0s) - n + 1))
        out.append(Segment(path, tuple(t0s[first : first + n]), 0))
    return out


def span_bins(
    rec: Recording, camera: int, t0: int, config: WindowConfig
) -> npt.NDArray[np.float32]:
    """The SNN's input for the window at ``t0`` (rule 3): its events' span cut into
    ``config.steps`` equal parts, two polarity counts each.

    Shape:
        -> (T, 2, H, W) float32
    """
    events = rec.events(camera, t0, t0 + config.stride_us)
    frame = stacked_histogram(
        events, rec.sensor_size, config.steps, crop=config.crop, downsample=config.downsample
    )
    return frame.reshape(config.steps, 2, *frame.shape[-2:]).astype(np.float32, copy=False)


def integer_targets(
    P: npt.ArrayLike, joints3d: npt.ArrayLike, config: WindowConfig
) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.bool_]]:
    """The protocol's 2D targets in model pixels (rule 5): truncated integers, and which
    joints count.

    Shape:
        joints3d (..., J, 3) -> targets (..., J, 2), valid (..., J)
    """
    assert config.crop is not None
    x0, y0, w, h = config.crop
    uv = project(P, joints3d)
    u, v = uv[..., 0], uv[..., 1]
    with np.errstate(invalid="ignore"):
        valid = np.isfinite(u) & np.isfinite(v) & (u >= x0) & (u < x0 + w) & (v >= y0)
        valid &= v < y0 + h
    d = config.downsample
    safe = np.where(valid[..., None], uv - np.array([x0, y0], dtype=np.float64), 0.0)
    targets = np.trunc(safe / d)
    return targets, valid


def load_paper_segment(
    rec: Recording, labels: Any, camera: int, seg: Segment, config: WindowConfig
) -> SegmentData:
    """The protocol's inputs and labels of ``seg`` on ``camera``: ANN frames at every bin edge,
    the SNN's span bins of every window, integer targets at every bin's start (``config`` is
    the :func:`paper_window`)."""
    steps, bin_us = config.steps, config.bin_us
    n_win = len(seg.t0s)
    edges = seg.t0s[0] + np.arange(n_win * steps + 1, dtype=np.int64) * bin_us
    frames = ann_frames(rec, camera, edges, config)
    bins = np.concatenate([span_bins(rec, camera, t0, config) for t0 in seg.t0s])
    joints3d = interpolate_joints(labels.t_us, labels.joints_mm, edges[:-1])
    P = np.asarray(rec.cameras[camera].calibration.P)
    targets, valid = integer_targets(P, joints3d, config)
    return SegmentData(
        torch.from_numpy(frames), torch.from_numpy(bins), targets, valid, joints3d, P
    )


def score_paper(
    errors: StepErrors,
    preds: dict[str, Tensor],
    data: Sequence[SegmentData],
    config: WindowConfig,
) -> None:
    """Add one batch: ``preds[model]`` (S, W*T, J, 2) integer argmax predictions in model
    pixels against the segments' integer targets (rules 5-7); errors in sensor pixels."""
    d = config.downsample
    for name, pred in preds.items():
        for s, seg in enumerate(data):
            p = pred[s].double().numpy() * d
            per_pose = pose_errors(p, seg.joints2d * d, seg.valid)
            steps = np.arange(len(per_pose)) % config.steps
            errors.add("2d", name, per_pose, steps)


__all__ = [
    "CAMERA",
    "LEFT_OUT",
    "REFERENCE_CROP_ORIGIN",
    "REFERENCE_SENSOR",
    "integer_targets",
    "left_out",
    "load_paper_segment",
    "paper_crop",
    "paper_segments",
    "paper_window",
    "score_paper",
    "span_bins",
    "window_starts",
]
