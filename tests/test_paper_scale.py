"""The ``paper`` preset at full scale on the CPU: one optimisation step of each training stage.

The paper's networks (full widths) on its 256x256 crop of the 346x260 sensor, trained from
two recordings written here (random events, moving labels) with the paper recipe's windows
(7,500 events per ANN frame, 10 bins of 10 ms), the batch cut to 2 (1 for the CNN-RNN's dense
ConvGRU): every stage builds, runs forward and backward at full resolution and takes an Adam
step. Measured on 2 cores (the run of the whole file): ~1.5 min and ~7 GB of peak memory, most
of both in the SNN's and the ConvGRU's backpropagation through time.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

import hybridpose.train as train_module
from hybridpose.checkpoint import load_checkpoint
from hybridpose.events import make_events
from hybridpose.io.recording import CameraCalibration, RecordingMeta, RecordingWriter
from hybridpose.nn.presets import preset
from hybridpose.recipes import Stage, recipe
from hybridpose.train import make_spec, train

SENSOR = preset("paper").sensor_size  # (346, 260)
DURATION_US = 300_000
EVENTS = 60_000  # per camera: 7,500 events span ~40 ms, the ANN frame before each window
# a camera 3 m away, looking at the origin: 1 mm at the subject is 0.1 px
P = np.array([[300.0, 0, 173, 173 * 3000], [0, 300.0, 130, 130 * 3000], [0, 0, 1, 3000]])


def write_recording(path: Path, subject: int) -> None:
    rng = np.random.default_rng(subject)
    width, height = SENSOR
    cams = [CameraCalibration(P, np.array([0.0, 0.0, -3000.0]), f"cam{i}") for i in range(4)]
    meta = RecordingMeta("test", subject=subject, session=1, movement=1)
    with RecordingWriter(path, SENSOR, cams, meta) as w:
        for cam in recipe("paper").window.cameras:
            t = np.sort(rng.integers(0, DURATION_US, EVENTS))
            x, y = rng.integers(0, width, EVENTS), rng.integers(0, height, EVENTS)
            w.append_events(cam, make_events(x, y, t, rng.integers(0, 2, EVENTS)))
        label_t = np.arange(0, DURATION_US + 1, 10_000, dtype=np.int64)
        # 13 joints within +-300 mm of the origin (within +-30 px of the image centre)
        start = rng.uniform(-300, 300, (1, 13, 3))
        joints = start + np.linspace(0, 50, len(label_t))[:, None, None]
        w.write_labels(label_t, joints.astype(np.float32))


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    directory = tmp_path_factory.mktemp("paper_recordings")
    train_subject = recipe("paper").train_subjects[0]
    for subject in (train_subject, train_subject + 1):
        write_recording(directory / f"S{subject}_session1_mov1.h5", subject)
    return directory


@pytest.fixture(scope="module")
def out_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("paper_checkpoints")


@pytest.mark.parametrize(
    ("stage", "batch"), [("ann", 2), ("snn", 2), ("hybrid", 2), ("hybrid_rnn", 1)]
)
def test_one_step_of_each_stage_at_full_scale(
    stage: Stage, batch: int, data_dir: Path, out_dir: Path
) -> None:
    # the hybrid stages start from the ANN stage's checkpoint (the first case writes it)
    spec = make_spec(
        stage, "paper", data_dir, out_dir, batch_size=batch, epochs=1, samples_per_epoch=batch,
        max_windows=2 * batch,
    )  # fmt: skip
    assert spec.model.input_size == (256, 256) and spec.window.crop == (45, 2, 256, 256)
    torch.manual_seed(spec.seed)
    initial = train_module._initial_model(spec).state_dict()
    path = train(spec, progress=False, tensorboard=False)
    data = load_checkpoint(path)
    assert (data["step"], data["complete"], data["stage"]) == (1, True, stage)
    assert np.isfinite(data["metrics"]["train_loss"]) and data["metrics"]["train_loss"] > 0
    trained = data["model"]
    assert trained.keys() == initial.keys()
    assert all(torch.isfinite(v).all() for v in trained.values() if v.is_floating_point())
    changed = [k for k, v in initial.items() if v.is_floating_point() and not v.equal(trained[k])]
    # the step moved the stage's trainable weights; the hybrids' U-Net stays frozen
    assert changed
    if stage in ("hybrid", "hybrid_rnn"):
        unet = ("ann.stem.", "ann.downs.", "ann.ups.", "ann.head.")
        assert not any(k.startswith(unet) for k in changed)
        assert any(k.startswith("ann.state_heads.") for k in changed)
        assert any(k.startswith("snn.") for k in changed)
