"""Tiny recordings and untrained checkpoints for the evaluation and streaming tests.

A 24x24 sensor with four cameras, of which cameras 2 (looking along +z from z = -1 m) and 3
(looking along -x from x = +1 m) are used; deterministic random events, 100 Hz labels of 13
joints that move slowly around the origin and project inside the 16x16 crop. The checkpoints
are tiny untrained networks (seeded), written with the payload keys that :mod:`hybridpose.train`
writes: ``ann.pt``, ``snn.pt``, ``hybrid.pt`` and (unless asked not to) ``hybrid_rnn.pt``.
"""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import torch
from torch import nn

from hybridpose.checkpoint import save_checkpoint
from hybridpose.data import WindowConfig
from hybridpose.events import make_events
from hybridpose.io.recording import CameraCalibration, RecordingMeta, RecordingWriter
from hybridpose.nn.ann import ANN, ANNConfig
from hybridpose.nn.hybrid import HybridPose
from hybridpose.nn.presets import ModelConfig
from hybridpose.nn.rnn import ConvRNN
from hybridpose.nn.snn import SNN, SNNConfig
from hybridpose.recipes import StageConfig, window_to_dict

FloatArray = npt.NDArray[np.float64]

SENSOR = (24, 24)
CROP = (4, 4, 16, 16)
F, C0, DIST = 20.0, 11.5, 1000.0
K = np.array([[F, 0.0, C0], [0.0, F, C0], [0.0, 0.0, 1.0]])
# camera 2: at (0, 0, -1000) looking along +z; camera 3: at (1000, 0, 0) looking along -x
R_FRONT = np.eye(3)
R_SIDE = np.array([[0.0, 0.0, 1.0], [0.0, 1.0, 0.0], [-1.0, 0.0, 0.0]])
CENTRE_FRONT = np.array([0.0, 0.0, -DIST])
CENTRE_SIDE = np.array([DIST, 0.0, 0.0])


def camera_matrix(rotation: FloatArray, centre: FloatArray) -> FloatArray:
    """``K [R | -R C]``."""
    P: FloatArray = K @ np.hstack([rotation, (-rotation @ centre)[:, None]])
    return P


P_FRONT = camera_matrix(R_FRONT, CENTRE_FRONT)
P_SIDE = camera_matrix(R_SIDE, CENTRE_SIDE)
CAMERAS = (
    (P_FRONT, CENTRE_FRONT),
    (P_SIDE, CENTRE_SIDE),
    (P_FRONT, CENTRE_FRONT),
    (P_SIDE, CENTRE_SIDE),
)
ROTATIONS = {2: R_FRONT, 3: R_SIDE}

DURATION_US = 1_500_000
EVENT_DT_US = 500  # one event per camera every 0.5 ms: 3000 over 1.5 s
LABEL_T = np.arange(0, DURATION_US + 1, 10_000, dtype=np.int64)  # 100 Hz
N_JOINTS = 13

WINDOW = WindowConfig(
    ann_events=100,
    ann_bins=2,
    bin_us=10_000,
    steps=3,
    stride_us=30_000,
    crop=CROP,
    downsample=1,
    sigma_px=1.0,
    cameras=(2, 3),
)
MODEL = ModelConfig(
    name="test",
    sensor_size=SENSOR,
    input_size=(16, 16),
    ann=ANNConfig(in_channels=4, stem=4, widths=(4, 4, 4, 4)),
    snn=SNNConfig(widths=(2, 2, 2, 2)),
)

# the 100th event of every camera is at 49.5 ms, so the first window starts at 60 ms; the
# last one ends at 1.5 s: t0 = 60, 90, ..., 1470 ms, 48 windows on both cameras
ALL_T0 = tuple(range(60_000, 1_470_001, 30_000))


def joints_at(t_us: npt.ArrayLike) -> FloatArray:
    """Joint j on a ring of radius 120 mm, at height 10 (j - 6) mm, swaying along x."""
    t = np.asarray(t_us, dtype=np.float64)
    angle = 2 * np.pi * np.arange(N_JOINTS) / N_JOINTS
    out = np.zeros((len(t), N_JOINTS, 3))
    out[..., 0] = 120 * np.cos(angle) + 40 * np.sin(2 * np.pi * t[:, None] / 1e6)
    out[..., 1] = 120 * np.sin(angle)
    out[..., 2] = 10.0 * (np.arange(N_JOINTS) - 6)
    return out


def write_recording(
    path: Path,
    subject: int,
    *,
    sensor: tuple[int, int] = SENSOR,
    camera3_start_us: int = 0,
    nan_labels: tuple[int, int] | None = None,
    joint_shift_mm: float = 0.0,
    gap_us: tuple[int, int] | None = None,
) -> Path:
    """A recording of four cameras; see the module docstring. ``gap_us``: no events of any
    camera in ``[start, end)``."""
    cams = [CameraCalibration(P, c, f"cam{i}") for i, (P, c) in enumerate(CAMERAS)]
    with RecordingWriter(path, sensor, cams, RecordingMeta("test", subject=subject)) as w:
        for cam in range(4):
            start = camera3_start_us if cam == 3 else 0
            t = np.arange(start, DURATION_US, EVENT_DT_US, dtype=np.int64)
            if gap_us is not None:
                t = t[(t < gap_us[0]) | (t >= gap_us[1])]
            rng = np.random.default_rng(100 + cam)
            x = rng.integers(0, sensor[0], len(t))
            y = rng.integers(0, sensor[1], len(t))
            w.append_events(cam, make_events(x, y, t, np.where(np.arange(len(t)) % 3, 1, -1)))
        joints = joints_at(LABEL_T)
        joints[..., 0] += joint_shift_mm
        joints = joints.astype(np.float32)
        if nan_labels is not None:
            lo, hi = nan_labels
            t_label = LABEL_T
            joints[(t_label >= lo) & (t_label <= hi)] = np.nan
        w.write_labels(LABEL_T, joints)
    return path


def _payload(
    name: str, stage: str, module: nn.Module, config: ModelConfig, window: WindowConfig
) -> dict[str, Any]:
    """The checkpoint dict of hybridpose.train's ``_payload`` (without an optimizer)."""
    return {
        "name": name,
        "stage": stage,
        "preset": "test",
        "model_config": config.to_dict(),
        "window_config": window_to_dict(window),
        "stage_config": {**asdict(StageConfig()), "seed": 0},
        "model": module.state_dict(),
        "optimizer": None,
        "epoch": 1,
        "batch": 0,
        "step": 10,
        "complete": True,
        "metrics": {"train_loss": 0.0},
        "train_windows": 48,
    }


def build_models(seed: int = 0) -> tuple[ANN, SNN, HybridPose]:
    """Tiny seeded networks; the SNN's BatchNorm gains are raised so that it spikes, and its
    head (zero when fresh) gets weights so that its output depends on the spikes."""
    torch.manual_seed(seed)
    ann = MODEL.build_ann()
    snn = MODEL.build_snn()
    nn.init.normal_(snn.head.weight, std=0.5)
    for layer in snn.spiking_layers().values():
        assert isinstance(layer.bn, nn.BatchNorm2d)
        with torch.no_grad():
            layer.bn.weight.fill_(20.0)  # sparse inputs: ~12% of neurons spike
    hybrid = HybridPose(ann, snn, MODEL.hybrid)
    for m in (ann, snn, hybrid):
        m.eval()
    return ann, snn, hybrid


def build_rnn_hybrid(seed: int = 0) -> HybridPose[ConvRNN]:
    """The tiny CNN-RNN hybrid: :func:`build_models`' ANN (its U-Net, as the ``hybrid_rnn``
    stage keeps it frozen) and a seeded ConvGRU whose head (zero when fresh) gets weights."""
    ann, _, _ = build_models(seed)
    torch.manual_seed(seed + 1000)
    rnn = ConvRNN(MODEL.snn)
    nn.init.normal_(rnn.head.weight, std=0.5)
    return HybridPose(ann, rnn, MODEL.hybrid).eval()


def write_checkpoints(
    directory: Path, window: WindowConfig = WINDOW, *, hybrid_rnn: bool = True
) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    ann, snn, hybrid = build_models()
    for name, module in (("ann", ann), ("snn", snn), ("hybrid", hybrid)):
        save_checkpoint(directory / f"{name}.pt", _payload(name, name, module, MODEL, window))
    if hybrid_rnn:
        save_checkpoint(
            directory / "hybrid_rnn.pt",
            _payload("hybrid_rnn", "hybrid_rnn", build_rnn_hybrid(), MODEL, window),
        )
    return directory
