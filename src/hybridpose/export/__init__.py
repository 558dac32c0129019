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

The modules: :mod:`hybridpose.export.graphs` builds the two graphs (the LIF in plain torch
operations, torch's exporter) and the manifest; :mod:`hybridpose.export.verify` checks them
against PyTorch with onnxruntime (:func:`verify_onnx`, :class:`Verification`); this one writes
them (:func:`export_onnx`).
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

import torch
from tqdm import tqdm

from hybridpose.atomic import atomic_write, write_text_atomic
from hybridpose.export.graphs import (
    _BATCH_FIRST,
    _EXAMPLE_BATCH,
    ANN_FILE,
    ANN_INPUTS,
    ANN_OUTPUTS,
    MANIFEST_FILE,
    NEXT_STATE_OUTPUTS,
    STATE_INPUTS,
    STEP_FILE,
    STEP_INPUTS,
    STEP_OUTPUTS,
    AnnGraph,
    ExportError,
    StepGraph,
    _load_hybrid,
    _to_onnx,
    build_manifest,
    require_onnx,
)
from hybridpose.export.verify import (
    TOLERANCE,
    Verification,
    VerificationError,
    _raise_if_failed,
    _verify,
    verify_onnx,
)

# the threshold-margin machinery, checked on its own by tests/test_export.py
from hybridpose.export.verify import _clear_of_threshold as _clear_of_threshold
from hybridpose.export.verify import _decisions_from_state as _decisions_from_state
from hybridpose.export.verify import _follow as _follow
from hybridpose.export.verify import _membranes as _membranes
from hybridpose.export.verify import _Tally as _Tally
from hybridpose.export.verify import _threshold_margin as _threshold_margin
from hybridpose.nn.snn import heaviside, plain_snn_step
from hybridpose.paths import check_output_dir


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
            checkpoint file (an ablation's checkpoint file, say).
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
    out = check_output_dir(out_dir)  # before a minute of work, not after
    require_onnx()
    hybrid, config, window, data = _load_hybrid(Path(checkpoint_dir))
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
