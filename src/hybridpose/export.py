"""ONNX export of a trained hybrid: the ANN, and one SNN step with its state as explicit tensors.

:func:`export_onnx` writes three files into one directory (docs/export.md)::

    ann.onnx        frame (B, C_ann, H, W)  ->  heatmaps (B, J, H, W), state_enc ... state_readout
    snn_step.onnx   bins (B, 2, H, W), state_enc ... state_readout
                        ->  heatmaps (B, J, H, W), next_state_enc ... next_state_readout
    manifest.json   names, shapes, both configs, how to build the inputs: all a user needs to
                    run the pair without hybridpose

The ANN graph is :meth:`HybridPose.initial_state` (so ``state_init=False`` gives zero
membranes and the ANN's heatmaps as the readout). The step graph is :meth:`SNN.step` in eval
mode; the state tensors follow :class:`SNNState`'s field order. The batch dimension is dynamic
in both.

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

Verification (:func:`verify_onnx`, run by :func:`export_onnx` before it writes anything)
compares onnxruntime with PyTorch on random event frames, random sparse integer bins and random
states: every output must agree within :data:`TOLERANCE` (1e-4, absolute). Two runtimes sum a
convolution in different orders, so their membranes differ by about 1e-6; a membrane that
close to the threshold may spike in one and not the other, both rightly, and that one spike
then moves the next layer by far more than the tolerance. The one-step check therefore draws
its states so that no membrane of the step lands within the tolerance of the threshold (one
that would is moved away on its own side, which changes no spike). A window (the ANN, then
steps fed their own state) cannot be steered that way: there a PyTorch loop of
:func:`plain_snn_step` takes the other runtime's decision at exactly the membranes within the
tolerance of the threshold (onnxruntime's, read from its next membrane, about 0 after a spike
and about ``v_th`` without; ``HybridPose.forward``'s, read from its spikes) and everything else
must agree. :class:`Verification` counts those borderline membranes and the decisions that
differed.
"""

from __future__ import annotations

import importlib
import json
import math
import os
import warnings
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import torch
from torch import Tensor, nn
from tqdm import tqdm

from hybridpose import __version__
from hybridpose.atomic import atomic_write, write_text_atomic
from hybridpose.checkpoint import CheckpointError, load_model
from hybridpose.data import WindowConfig
from hybridpose.errors import HybridPoseError, first_line
from hybridpose.joints import JOINT_NAMES
from hybridpose.nn.hybrid import HybridPose
from hybridpose.nn.presets import ModelConfig
from hybridpose.nn.snn import SNN, SNNState, SpikeRule, heaviside, plain_snn_step
from hybridpose.recipes import window_from_dict, window_to_dict

FloatArray = npt.NDArray[np.float32]

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

TOLERANCE = 1e-4
"""Largest absolute difference between onnxruntime and PyTorch that verification accepts."""

EXTRA = ("onnx", "onnxscript", "onnxruntime")
"""The packages of the ``onnx`` extra: the exporter needs the first two, verification the last."""

BIN_RATE = 0.05
"""Mean events per pixel and polarity in a random verification bin (sparse, like real bins)."""

_EXAMPLE_BATCH = 2
"""Batch size of the example inputs the graphs are captured with: torch.export specialises
sizes 0 and 1, so a batch of 1 would fix the graphs' batch dimension."""

_BATCH_FIRST = {0: torch.export.Dim(BATCH)}
"""``torch.export``'s dynamic-shape spec of a tensor whose first dimension is the batch."""


class ExportError(HybridPoseError, ValueError):
    """A checkpoint cannot be exported (wrong stage, missing extra, unreadable graph)."""


class VerificationError(ExportError):
    """The exported graphs disagree with PyTorch by more than :data:`TOLERANCE`."""

    def __init__(self, message: str, verification: Verification) -> None:
        super().__init__(message)
        self.verification = verification


# ----------------------------------------------------------------------------- the graphs


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


# ----------------------------------------------------------------------------- export


@dataclass(frozen=True)
class Verification:
    """How far onnxruntime is from PyTorch: the largest absolute differences, per output.

    Attributes:
        ann: ``ann.onnx`` against ``HybridPose.initial_state`` on random event frames.
        step: ``snn_step.onnx`` against ``SNN.step`` (the fused LIF) on random bins and random
            states, none of whose membranes lands within ``tolerance`` of the threshold.
        loop: the ANN graph once, then ``loop_steps`` step graphs fed their own state, against
            a PyTorch loop of :func:`plain_snn_step` that decides the membranes within
            ``tolerance`` of the threshold as onnxruntime did (worst step).
        reference_vs_forward: the same PyTorch loop, deciding the borderline membranes as
            ``HybridPose.forward`` did, against ``HybridPose.forward`` on the same window:
            the heatmaps of every step and the final state.
        step_margin: the closest any membrane of the one-step check came to the threshold.
        borderline: membranes of the loop (neurons x steps) within ``tolerance`` of the
            threshold, where the reference followed onnxruntime's spike decision.
        flips: of those, the ones where onnxruntime decided differently from PyTorch's step.
        forward_flips: the same count for ``HybridPose.forward``.
        batch: the batch size of every check.
        loop_steps: the steps of the loop.
        tolerance: the largest accepted difference.
    """

    ann: Mapping[str, float]
    step: Mapping[str, float]
    loop: Mapping[str, float]
    reference_vs_forward: float
    step_margin: float
    borderline: int
    flips: int
    forward_flips: int
    batch: int
    loop_steps: int
    tolerance: float = TOLERANCE

    def differences(self) -> dict[str, float]:
        """Every compared quantity by name (``check.output``) with its largest difference."""
        out = {f"{check}.{name}": value for check in ("ann", "step", "loop")
               for name, value in getattr(self, check).items()}  # fmt: skip
        out["reference_vs_forward"] = self.reference_vs_forward
        return out

    @property
    def max_abs_diff(self) -> float:
        """The largest difference of all (infinite where a value was NaN or infinite)."""
        return max(self.differences().values())

    @property
    def passed(self) -> bool:
        return self.max_abs_diff <= self.tolerance


@dataclass(frozen=True)
class ExportResult:
    """What :func:`export_onnx` wrote, and its verification (None when not verified)."""

    ann: Path
    snn_step: Path
    manifest: Path
    opset: int
    verification: Verification | None


def export_onnx(
    checkpoint_dir: str | os.PathLike[str],
    out_dir: str | os.PathLike[str],
    *,
    opset: int | None = None,
    verify: bool = True,
    batch: int = 2,
    seed: int = 0,
    progress: bool = True,
) -> ExportResult:
    """Export the hybrid in ``checkpoint_dir/hybrid.pt`` to ONNX in ``out_dir``.

    Writes ``ann.onnx``, ``snn_step.onnx`` and then ``manifest.json``, each atomically; with
    ``verify`` the graphs are checked against PyTorch (:func:`verify_onnx`) before anything is
    written, so a failed check leaves ``out_dir`` as it was.

    Args:
        checkpoint_dir: a directory holding ``hybrid.pt`` (and the ``ann.pt`` it may read its
            frozen U-Net from), as training or ``pretrained_dir`` leaves it; or a hybrid
            checkpoint file (an ablation such as ``hybrid_no_delta.pt``).
        out_dir: where the files go (created if needed; existing files are replaced).
        opset: the ONNX opset; None for the exporter's default.
        verify: compare onnxruntime with PyTorch first.
        batch: batch size of the verification's inputs.
        seed: seed of the verification's random inputs.
        progress: show a progress bar.

    Returns:
        the written paths, the opset and the verification.

    Raises:
        FileNotFoundError: no ``hybrid.pt`` (or the ``ann.pt`` it needs).
        CheckpointError: an unreadable checkpoint, or one without a window configuration.
        ExportError: not a hybrid checkpoint, or the ``onnx`` extra is not installed.
        VerificationError: onnxruntime and PyTorch differ by more than :data:`TOLERANCE`.
    """
    if batch < 1:
        raise ValueError(f"batch must be >= 1, got {batch}")
    require_onnx()
    hybrid, config, window, data = _load_hybrid(Path(checkpoint_dir))
    out = Path(out_dir)
    height, width = config.input_size
    frame = torch.zeros(_EXAMPLE_BATCH, config.ann.in_channels, height, width)
    state = hybrid.snn.zero_state(_EXAMPLE_BATCH, height, width)
    bins = torch.zeros(_EXAMPLE_BATCH, config.snn.in_channels, height, width)
    with tqdm(total=3 + verify, desc="export", unit="stage", disable=not progress) as bar:
        bar.set_postfix_str(ANN_FILE)
        ann_bytes, ann_opset = _to_onnx(
            AnnGraph(hybrid), (frame,), (_BATCH_FIRST,), ANN_INPUTS, ANN_OUTPUTS, opset
        )
        bar.update()
        bar.set_postfix_str(STEP_FILE)
        step_bytes, step_opset = _to_onnx(
            StepGraph(hybrid.snn), (bins, *state),
            (_BATCH_FIRST, (_BATCH_FIRST,) * len(state)),  # the second: *state
            STEP_INPUTS, STEP_OUTPUTS, opset,
        )  # fmt: skip
        bar.update()
        # below its own minimum (18) the exporter converts, and keeps 18 where it cannot
        if opset is not None and (ann_opset, step_opset) != (opset, opset):
            raise ExportError(
                f"opset {opset}: the exporter produced {ann_opset} ({ANN_FILE}) and "
                f"{step_opset} ({STEP_FILE}); choose 18 or above"
            )
        verification = None
        if verify:
            bar.set_postfix_str("verify")
            verification = _verify(
                ann_bytes, step_bytes, hybrid, config, window,
                batch=batch, steps=window.steps, seed=seed,
            )  # fmt: skip
            _raise_if_failed(verification, out, "; nothing was written")
            bar.update()
        bar.set_postfix_str("write")
        paths = out / ANN_FILE, out / STEP_FILE, out / MANIFEST_FILE
        for path, content in zip(paths, (ann_bytes, step_bytes), strict=False):
            with atomic_write(path) as f:
                f.write(content)
        manifest = build_manifest(config, window, data, ann_opset)
        write_text_atomic(paths[2], json.dumps(manifest, indent=2) + "\n")
        bar.update()
    return ExportResult(paths[0], paths[1], paths[2], ann_opset, verification)


def verify_onnx(
    export_dir: str | os.PathLike[str],
    checkpoint_dir: str | os.PathLike[str],
    *,
    batch: int = 2,
    steps: int | None = None,
    seed: int = 0,
) -> Verification:
    """Check an export against the checkpoint it came from, with onnxruntime and PyTorch.

    Three checks on seeded random inputs (the module docstring says how the threshold is
    handled): ``ann.onnx`` against ``HybridPose.initial_state``; ``snn_step.onnx`` against
    ``SNN.step``; the ANN graph once then ``steps`` step graphs, each fed the state the last
    one returned, against the same window in PyTorch, which is itself checked against
    ``HybridPose.forward``. Frames hold the checkpoint's ``ann_events`` events at random
    pixels, bins and polarities; bins are Poisson counts (:data:`BIN_RATE` per pixel and
    polarity); membranes are normal with standard deviation ``v_th``.

    Args:
        export_dir: the directory :func:`export_onnx` wrote.
        checkpoint_dir: what was exported: its directory, or the checkpoint file.
        batch: batch size of every check.
        steps: steps of the loop; None for the checkpoint's steps per window.
        seed: seed of the random inputs.

    Returns:
        the largest differences, all within :data:`TOLERANCE`.

    Raises:
        FileNotFoundError: a graph or the checkpoint is missing.
        CheckpointError: an unreadable checkpoint.
        ExportError: the ``onnx`` extra is missing, or onnxruntime cannot load or run a graph.
        VerificationError: a difference above :data:`TOLERANCE`.
    """
    require_onnx()
    if batch < 1 or (steps is not None and steps < 1):
        raise ValueError(f"batch and steps must be >= 1, got {batch} and {steps}")
    hybrid, config, window, _ = _load_hybrid(Path(checkpoint_dir))
    export = Path(export_dir)
    graphs = []
    for name in (ANN_FILE, STEP_FILE):
        path = export / name
        if not path.is_file():
            raise FileNotFoundError(f"{path}: no such file (write it with export_onnx)")
        graphs.append(path.read_bytes())
    n_steps = window.steps if steps is None else steps
    verification = _verify(
        graphs[0], graphs[1], hybrid, config, window, batch=batch, steps=n_steps, seed=seed
    )
    _raise_if_failed(verification, export)
    return verification


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
            f"ONNX export needs {', '.join(missing)} (the onnx extra): "
            "pip install 'hybridpose[onnx]'"
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


# ----------------------------------------------------------------------------- internals


def _load_hybrid(
    checkpoint: Path,
) -> tuple[HybridPose, ModelConfig, WindowConfig, dict[str, Any]]:
    path = checkpoint if checkpoint.is_file() else checkpoint / CHECKPOINT_FILE
    model, data = load_model(path)  # FileNotFoundError, CheckpointError
    if not isinstance(model, HybridPose):
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


def _raise_if_failed(verification: Verification, where: Path, note: str = "") -> None:
    if verification.passed:
        return
    diffs = verification.differences()
    worst = max(diffs, key=lambda k: diffs[k])
    raise VerificationError(
        f"{where}: the export does not match PyTorch: {worst} differs by {diffs[worst]:.3g} "
        f"(tolerance {verification.tolerance:g}){note}",
        verification,
    )


class _Runtime:
    """One graph in an onnxruntime session, fed and read by name."""

    def __init__(self, model: bytes, label: str) -> None:
        import onnxruntime

        options = onnxruntime.SessionOptions()
        options.log_severity_level = 3  # errors only: its warnings are about graph rewrites
        # its idle worker threads would otherwise spin for a while after every run, taking the
        # cores from the PyTorch reference that runs between the graphs
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        self.label = label
        try:
            self.session = onnxruntime.InferenceSession(
                model, options, providers=["CPUExecutionProvider"]
            )
        except Exception as err:  # onnxruntime raises its own types for every kind of damage
            raise ExportError(f"{label}: onnxruntime cannot load it ({first_line(err)})") from None

    def run(
        self, names: Sequence[str], feeds: Mapping[str, Tensor | FloatArray]
    ) -> list[FloatArray]:
        arrays = {k: v.numpy() if isinstance(v, Tensor) else v for k, v in feeds.items()}
        try:
            outputs: list[FloatArray] = self.session.run(list(names), arrays)
        except Exception as err:  # as above: wrong names, shapes or types
            raise ExportError(f"{self.label}: onnxruntime failed ({first_line(err)})") from None
        return outputs


def _max_abs(name: str, got: FloatArray | Tensor, want: Tensor) -> float:
    """``max |got - want|``; infinite where either is not finite."""
    got_t = torch.from_numpy(np.asarray(got)) if not isinstance(got, Tensor) else got
    if got_t.shape != want.shape:
        raise ExportError(f"{name}: shape {tuple(got_t.shape)}, PyTorch's {tuple(want.shape)}")
    value = float((got_t.double() - want.double()).abs().max())
    return value if math.isfinite(value) else math.inf


def _diffs(
    names: Sequence[str], got: Sequence[FloatArray], want: Sequence[Tensor]
) -> dict[str, float]:
    return {n: _max_abs(n, g, w) for n, g, w in zip(names, got, want, strict=True)}


def _worst(a: Mapping[str, float], b: Mapping[str, float]) -> dict[str, float]:
    return {k: max(a.get(k, 0.0), b[k]) for k in b}


def _random_frame(
    gen: torch.Generator, batch: int, channels: int, height: int, width: int, events: int
) -> Tensor:
    """``events`` events per sample at uniformly random pixels, bins and polarities: a frame
    of counts like ``stacked_histogram``'s (the ANN never saw dense noise; its states would
    be far larger than on events, and so would their rounding errors)."""
    size = channels * height * width
    index = torch.randint(0, size, (batch, events), generator=gen)
    counts = torch.zeros(batch, size).scatter_add_(1, index, torch.ones(batch, events))
    return counts.reshape(batch, channels, height, width)


def _random_bins(
    gen: torch.Generator, steps: int, batch: int, channels: int, height: int, width: int
) -> Tensor:
    """Poisson event counts, :data:`BIN_RATE` on average per pixel and polarity."""
    rate = torch.full((steps, batch, channels, height, width), BIN_RATE)
    return torch.poisson(rate, generator=gen)


def _random_state(gen: torch.Generator, snn: SNN, batch: int, height: int, width: int) -> SNNState:
    """Membranes normal with standard deviation ``v_th`` (a fair share above the threshold),
    the readout standard normal."""
    zero = snn.zero_state(batch, height, width)
    scale = snn.config.v_th
    return SNNState._make(
        torch.randn(t.shape, generator=gen) * (1.0 if name == "readout" else scale)
        for name, t in zip(STATE_FIELDS, zero, strict=True)
    )


def _membranes(snn: SNN, bins: Tensor, state: SNNState) -> dict[str, Tensor]:
    """Every layer's ``h`` (before the threshold) in one PyTorch step."""
    seen: dict[str, Tensor] = {}

    def record(name: str, h: Tensor, v_th: float) -> Tensor:
        seen[name] = h
        return heaviside(name, h, v_th)

    plain_snn_step(snn, bins, state, record)
    return seen


def _clear_of_threshold(snn: SNN, bins: Tensor, state: SNNState, margin: float) -> SNNState:
    """``state`` with every membrane whose ``h`` would land within ``margin`` of the threshold
    in this step moved ``2 margin`` further away on its own side.

    ``h = v (1 - 1 / tau) + x / tau``: moving ``v`` by ``d`` moves ``h`` by ``d (1 - 1 / tau)``
    and nothing else; staying on its side, the neuron spikes as before, so no other layer's
    input changes.
    """
    fields = state._asdict()
    layers = snn.spiking_layers()
    for name, h in _membranes(snn, bins, state).items():
        v_th = layers[name].v_th
        gain = 1.0 - 1.0 / float(layers[name].tau)
        away = torch.where(h >= v_th, 2 * margin / gain, -2 * margin / gain)
        fields[name] = torch.where((h - v_th).abs() < margin, fields[name] + away, fields[name])
    return SNNState(**fields)


def _threshold_margin(snn: SNN, bins: Tensor, state: SNNState) -> float:
    """The closest any ``h`` of the step comes to its layer's threshold."""
    layers = snn.spiking_layers()
    return min(
        float((h - layers[name].v_th).abs().min())
        for name, h in _membranes(snn, bins, state).items()
    )


@dataclass
class _Tally:
    borderline: int = 0
    flips: int = 0


def _follow(decisions: Mapping[str, Tensor], margin: float, tally: _Tally) -> SpikeRule:
    """The LIF's rule, except within ``margin`` of the threshold, where each layer takes the
    other runtime's decision (``decisions[name]``, boolean, the layer's shape)."""

    def rule(name: str, h: Tensor, v_th: float) -> Tensor:
        own = h >= v_th
        near = (h - v_th).abs() < margin
        theirs = decisions[name]
        tally.borderline += int(near.sum())
        tally.flips += int((near & (own != theirs)).sum())
        return torch.where(near, theirs, own).to(h.dtype)

    return rule


def _decisions_from_state(snn: SNN, next_state: SNNState) -> dict[str, Tensor]:
    """Which neurons spiked, read from the next membranes ``h - s v_th``: where ``h`` is near
    ``v_th`` (the only place this is used) they are about 0 after a spike, ``v_th`` without."""
    return {
        name: getattr(next_state, name) < layer.v_th / 2
        for name, layer in snn.spiking_layers().items()
    }


def _forward_with_spikes(
    hybrid: HybridPose, frame: Tensor, bins: Tensor
) -> tuple[Tensor, SNNState, dict[str, Tensor]]:
    """``HybridPose.forward``'s heatmaps (T, B, J, H, W) and final state, and the spikes
    (T, B, C, H', W') every spiking layer emitted, as booleans."""
    spikes: dict[str, Tensor] = {}

    def keep(name: str) -> Callable[[nn.Module, Any, Any], None]:
        def hook(module: nn.Module, args: Any, output: Any) -> None:
            spikes[name] = output[0] > 0  # SpikingConv returns (spikes, v)

        return hook

    layers = hybrid.snn.spiking_layers()
    handles = [layer.register_forward_hook(keep(name)) for name, layer in layers.items()]
    try:
        _, heatmaps, state = hybrid(frame, bins)
    finally:
        for handle in handles:
            handle.remove()
    return heatmaps, state, spikes


def _verify(
    ann_model: bytes,
    step_model: bytes,
    hybrid: HybridPose,
    config: ModelConfig,
    window: WindowConfig,
    *,
    batch: int,
    steps: int,
    seed: int,
) -> Verification:
    ann_graph = _Runtime(ann_model, ANN_FILE)
    step_graph = _Runtime(step_model, STEP_FILE)
    snn = hybrid.snn
    height, width = config.input_size
    c_ann, c_snn = config.ann.in_channels, config.snn.in_channels
    gen = torch.Generator().manual_seed(seed)
    hybrid.eval()
    with torch.no_grad():
        # 1. the ANN graph: continuous, no threshold anywhere
        frame = _random_frame(gen, batch, c_ann, height, width, window.ann_events)
        heatmaps, state = hybrid.initial_state(frame)
        got = ann_graph.run(ANN_OUTPUTS, {FRAME: frame})
        ann = _diffs(ANN_OUTPUTS, got, (heatmaps, *state))

        # 2. one step from random states kept clear of the threshold, against the fused LIF
        bins = _random_bins(gen, 1, batch, c_snn, height, width)[0]
        state = _clear_of_threshold(snn, bins, _random_state(gen, snn, batch, height, width),
                                    TOLERANCE)  # fmt: skip
        step_margin = _threshold_margin(snn, bins, state)
        heatmaps, next_state = snn.step(bins, state)
        got = step_graph.run(
            STEP_OUTPUTS, {BINS: bins, **dict(zip(STATE_INPUTS, state, strict=True))}
        )
        step = _diffs(STEP_OUTPUTS, got, (heatmaps, *next_state))

        # 3. a window: the ANN graph once, then the step graph fed its own state; two PyTorch
        # step loops follow it, one deciding the borderline membranes as onnxruntime did, one
        # as HybridPose.forward did (its convolutions see T x B samples at once, not B, and
        # round differently too)
        frame = _random_frame(gen, batch, c_ann, height, width, window.ann_events)
        bins_seq = _random_bins(gen, steps, batch, c_snn, height, width)
        forward_heatmaps, forward_state, forward_spikes = _forward_with_spikes(
            hybrid, frame, bins_seq
        )
        runtime_state = ann_graph.run(STATE_INPUTS, {FRAME: frame})
        _, start = hybrid.initial_state(frame)
        like_runtime, like_forward = start, start
        runtime_tally, forward_tally = _Tally(), _Tally()
        loop: dict[str, float] = {}
        reference_vs_forward = 0.0
        for k in range(steps):
            feeds: dict[str, Tensor | FloatArray] = {BINS: bins_seq[k]}
            feeds.update(zip(STATE_INPUTS, runtime_state, strict=True))
            got = step_graph.run(STEP_OUTPUTS, feeds)
            runtime_next = SNNState._make(torch.from_numpy(a) for a in got[1:])
            rule = _follow(_decisions_from_state(snn, runtime_next), TOLERANCE, runtime_tally)
            heatmaps, like_runtime = plain_snn_step(snn, bins_seq[k], like_runtime, rule)
            loop = _worst(loop, _diffs(STEP_OUTPUTS, got, (heatmaps, *like_runtime)))
            decided = {name: s[k] for name, s in forward_spikes.items()}
            rule = _follow(decided, TOLERANCE, forward_tally)
            heatmaps, like_forward = plain_snn_step(snn, bins_seq[k], like_forward, rule)
            reference_vs_forward = max(
                reference_vs_forward, _max_abs(HEATMAPS, heatmaps, forward_heatmaps[k])
            )
            runtime_state = got[1:]
        for name, mine, theirs in zip(STATE_FIELDS, like_forward, forward_state, strict=True):
            reference_vs_forward = max(reference_vs_forward, _max_abs(name, mine, theirs))
    return Verification(
        ann=ann, step=step, loop=loop, reference_vs_forward=reference_vs_forward,
        step_margin=step_margin, borderline=runtime_tally.borderline, flips=runtime_tally.flips,
        forward_flips=forward_tally.flips, batch=batch, loop_steps=steps,
    )  # fmt: skip


__all__ = [
    "ANN_FILE",
    "ANN_INPUTS",
    "ANN_OUTPUTS",
    "MANIFEST_FILE",
    "NEXT_STATE_OUTPUTS",
    "STATE_INPUTS",
    "STEP_FILE",
    "STEP_INPUTS",
    "STEP_OUTPUTS",
    "TOLERANCE",
    "AnnGraph",
    "ExportError",
    "ExportResult",
    "StepGraph",
    "Verification",
    "VerificationError",
    "build_manifest",
    "export_onnx",
    "heaviside",
    "plain_snn_step",
    "require_onnx",
    "verify_onnx",
]
