"""The two ONNX graphs of a hybrid, how they are captured, and the manifest that describes them.

The LIF. Training runs the LIF as a custom autograd Function with compiled (numba) loops, which
no exporter can trace. :func:`plain_snn_step` is the same step written with plain torch
operations on the trained modules (``h = v + (x - v) / tau``, ``s = h >= v_th``,
``v = h - s v_th``; BatchNorm in eval mode, which the exporter folds into the convolutions).
It is the same arithmetic in the same order, so it equals ``SNN.step`` bitwise.

The exporter. ``torch.onnx.export(dynamo=True)``, torch's default and maintained exporter
(built on ``torch.export``), not the TorchScript tracer, which torch deprecated in 2.9: the
batch size is a symbolic dimension while the graph is captured, so code that reads it as a
Python number (``zero_state(batch, ...)`` for ``state_init=False``, the upsampling's
``expand``) is either traced symbolically or fails the export, where the tracer could silently
bake the example's batch size into the graph. It costs seconds per graph, not a fraction of one.
"""

from __future__ import annotations

import importlib
import logging
import warnings
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from hybridpose import __version__
from hybridpose.checkpoint import CheckpointError, load_model
from hybridpose.data import WindowConfig
from hybridpose.errors import HybridPoseError, first_line, install_hint
from hybridpose.joints import JOINT_NAMES
from hybridpose.nn.hybrid import HybridPose, is_snn_hybrid
from hybridpose.nn.presets import ModelConfig
from hybridpose.nn.snn import SNN, SNNState, plain_snn_step
from hybridpose.recipes import window_from_dict, window_to_dict

CHECKPOINT_FILE = "hybrid.pt"
ANN_FILE = "ann.onnx"
STEP_FILE = "snn_step.onnx"
MANIFEST_FILE = "manifest.json"
MANIFEST_FORMAT = "hybridpose-onnx"
MANIFEST_VERSION = 1

FRAME = "frame"
BINS = "bins"
HEATMAPS = "heatmaps"
STATE_FIELDS: tuple[str, ...] = SNNState._fields
STATE_INPUTS = tuple(f"state_{name}" for name in STATE_FIELDS)
"""The ANN graph's state outputs and the step graph's state inputs, in SNNState order."""
NEXT_STATE_OUTPUTS = tuple(f"next_state_{name}" for name in STATE_FIELDS)
ANN_INPUTS = (FRAME,)
ANN_OUTPUTS = (HEATMAPS, *STATE_INPUTS)
STEP_INPUTS = (BINS, *STATE_INPUTS)
STEP_OUTPUTS = (HEATMAPS, *NEXT_STATE_OUTPUTS)
BATCH = "batch"
"""The name of the dynamic batch dimension in both graphs and in the manifest's shapes."""

EXTRA = ("onnx", "onnxscript", "onnxruntime")
"""The packages of the ``onnx`` extra: the exporter needs the first two, verification the last."""

_EXAMPLE_BATCH = 2
"""Batch size of the example inputs the graphs are captured with: torch.export specialises
sizes 0 and 1, so a batch of 1 would fix the graphs' batch dimension."""

_BATCH_FIRST = {0: torch.export.Dim(BATCH)}
"""``torch.export``'s dynamic-shape spec of a tensor whose first dimension is the batch."""


class ExportError(HybridPoseError, ValueError):
    """A checkpoint cannot be exported (wrong stage, missing extra, unreadable graph)."""


class AnnGraph(nn.Module):
    """What ``ann.onnx`` computes: the hybrid's initial state, flattened into tensors."""

    def __init__(self, hybrid: HybridPose) -> None:
        super().__init__()
        self.hybrid = hybrid

    def forward(self, frame: Tensor) -> tuple[Tensor, ...]:
        """``frame`` (B, C_ann, H, W) -> heatmaps (B, J, H, W), then the 10 state tensors."""
        heatmaps, state = self.hybrid.initial_state(frame)
        return (heatmaps, *state)


class StepGraph(nn.Module):
    """What ``snn_step.onnx`` computes: :func:`plain_snn_step` on flat tensors."""

    def __init__(self, snn: SNN) -> None:
        super().__init__()
        self.snn = snn

    def forward(self, bins: Tensor, *state: Tensor) -> tuple[Tensor, ...]:
        """``bins`` (B, 2, H, W) and the 10 state tensors -> heatmaps, the 10 next ones."""
        heatmaps, next_state = plain_snn_step(self.snn, bins, SNNState._make(state))
        return (heatmaps, *next_state)


def require_onnx() -> None:
    """Import the ``onnx`` extra's packages, or say how to install the missing ones.

    Raises:
        ExportError: one of :data:`EXTRA` cannot be imported.
    """
    missing = []
    for name in EXTRA:
        try:
            importlib.import_module(name)
        except ImportError:
            missing.append(name)
    if missing:
        raise ExportError(
            f"ONNX export needs {', '.join(missing)} (the onnx extra): {install_hint('onnx')}"
        )


def build_manifest(
    config: ModelConfig, window: WindowConfig, checkpoint: Mapping[str, Any], opset: int
) -> dict[str, Any]:
    """The contents of ``manifest.json``: everything needed to run the graphs (docs/export.md).

    Args:
        config: the model's configuration.
        window: how the model's windows were cut (rates, crop, frame event count).
        checkpoint: the checkpoint dict (its name, preset, version and training position are
            recorded).
        opset: the graphs' ONNX opset.
    """
    height, width = config.input_size
    joints = config.snn.joints
    heatmaps: list[int | str] = [BATCH, joints, height, width]
    shapes: dict[str, list[int | str]] = {
        spec.name: [BATCH, spec.channels, height // spec.scale, width // spec.scale]
        for spec in config.snn.layer_specs()
    }
    shapes["readout"] = heatmaps
    state = [
        {"name": name, "shape": shapes[name], "ann_output": ann_name, "step_input": ann_name,
         "step_output": step_name}
        for name, ann_name, step_name in zip(STATE_FIELDS, STATE_INPUTS, NEXT_STATE_OUTPUTS,
                                             strict=True)
    ]  # fmt: skip

    def tensors(names: Sequence[str], sizes: Sequence[list[int | str]]) -> list[dict[str, Any]]:
        return [{"name": n, "shape": s, "dtype": "float32"}
                for n, s in zip(names, sizes, strict=True)]  # fmt: skip

    state_shapes = [shapes[name] for name in STATE_FIELDS]
    return {
        "format": MANIFEST_FORMAT,
        "format_version": MANIFEST_VERSION,
        "hybridpose_version": __version__,
        "opset": opset,
        "checkpoint": {
            key: checkpoint.get(key)
            for key in ("name", "preset", "hybridpose_version", "epoch", "step", "complete")
        },
        "graphs": {
            "ann": {
                "file": ANN_FILE,
                "inputs": tensors(ANN_INPUTS, [[BATCH, config.ann.in_channels, height, width]]),
                "outputs": tensors(ANN_OUTPUTS, [heatmaps, *state_shapes]),
            },
            "snn_step": {
                "file": STEP_FILE,
                "inputs": tensors(
                    STEP_INPUTS, [[BATCH, config.snn.in_channels, height, width], *state_shapes]
                ),
                "outputs": tensors(STEP_OUTPUTS, [heatmaps, *state_shapes]),
            },
        },
        "state": state,
        "input_size": [height, width],
        "sensor_size": list(config.sensor_size),
        "crop": None if window.crop is None else list(window.crop),
        "downsample": window.downsample,
        "ann_events": window.ann_events,
        "ann_bins": window.ann_bins,
        "bin_us": window.bin_us,
        "steps_per_window": window.steps,
        "window_us": window.window_us,
        "joints": list(JOINT_NAMES) if joints == len(JOINT_NAMES) else joints,
        "inputs": {
            FRAME: (
                "stacked histogram of the last ann_events events before the window starts: "
                "ann_bins equal time bins from the first to the last of them, channel "
                "2 * bin + polarity (0 OFF, 1 ON), event counts after crop (x0, y0, width, "
                "height) and downsample (counts of d x d blocks summed)"
            ),
            BINS: (
                "event counts of one bin of bin_us microseconds, channel 0 OFF, 1 ON, same "
                "crop and downsample; steps_per_window bins per window"
            ),
        },
        "outputs": {
            HEATMAPS: (
                "one map per joint in model pixels; the argmax (row v, column u) is the "
                "joint; sensor pixel = (u + 0.5) * downsample - 0.5 + x0, likewise v with y0"
            ),
        },
        "model_config": config.to_dict(),
        "window_config": window_to_dict(window),
    }


def _load_hybrid(
    checkpoint: Path,
) -> tuple[HybridPose, ModelConfig, WindowConfig, dict[str, Any]]:
    path = checkpoint if checkpoint.is_file() else checkpoint / CHECKPOINT_FILE
    model, data = load_model(path)  # FileNotFoundError, CheckpointError
    if not is_snn_hybrid(model):  # the ANN, the SNN or the CNN-RNN hybrid
        raise ExportError(
            f"{path}: a {data['stage']!r} checkpoint; export needs the hybrid stage's checkpoint"
        )
    if "window_config" not in data:
        raise CheckpointError(f"{path}: checkpoint lacks 'window_config'")
    try:
        window = window_from_dict(dict(data["window_config"]))
    except (TypeError, ValueError) as err:
        raise CheckpointError(f"{path}: bad window_config ({first_line(err)})") from None
    return model, ModelConfig.from_dict(data["model_config"]), window, data


def _to_onnx(
    module: nn.Module,
    args: tuple[Tensor, ...],
    dynamic_shapes: tuple[Any, ...],
    input_names: Sequence[str],
    output_names: Sequence[str],
    opset: int | None,
) -> tuple[bytes, int]:
    """One graph, serialised, with its opset.

    ``dynamic_shapes`` follows the structure of ``forward``'s parameters (a ``*args``
    parameter is one tuple), as ``torch.export`` wants it.
    """
    module.eval()
    # the exporter logs a warning per torchvision operator it cannot register when torchvision
    # is not installed (it is not needed: our graphs use none of them)
    registration = logging.getLogger("torch.onnx._internal.exporter._registration")
    level = registration.level
    registration.setLevel(logging.ERROR)
    try:
        return _export_program(module, args, dynamic_shapes, input_names, output_names, opset)
    finally:
        registration.setLevel(level)


def _export_program(
    module: nn.Module,
    args: tuple[Tensor, ...],
    dynamic_shapes: tuple[Any, ...],
    input_names: Sequence[str],
    output_names: Sequence[str],
    opset: int | None,
) -> tuple[bytes, int]:
    """:func:`_to_onnx` without the logging setting."""
    with warnings.catch_warnings():
        # torch's own notices, not about this model: a deprecated pytree check inside
        # torch.export, and that the inputs' batch dimensions share one name
        warnings.filterwarnings("ignore", message=r".*LeafSpec.*", category=FutureWarning)
        warnings.filterwarnings("ignore", message=r"# The axis name", category=UserWarning)
        program = torch.onnx.export(
            module, args, dynamo=True, input_names=list(input_names),
            output_names=list(output_names), opset_version=opset,
            dynamic_shapes=dynamic_shapes, verbose=False,
        )  # fmt: skip
    if program is None:  # only the TorchScript exporter returns nothing
        raise RuntimeError("torch.onnx.export returned no program")
    proto = program.model_proto
    version = next(o.version for o in proto.opset_import if o.domain in ("", "ai.onnx"))
    return proto.SerializeToString(), int(version)
