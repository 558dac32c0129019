"""Retiming trained networks to another SNN bin length: the 10 ms models as the 1 kHz ones' start.

A LIF layer integrates ``h = v + (x - v) / tau`` once per bin. Cutting every bin into ``f``
shorter ones (``f = old bin / new bin``, 10 for 10 ms -> 1 ms) gives each short bin about
``1 / f`` of the events, and about ``1 / f`` of the spikes of every layer below. The retimed
network keeps each neuron's input current *per unit of time*:

* ``tau`` in steps becomes ``f * tau`` (the same time constant in seconds);
* the synaptic part of every current becomes ``f`` times larger, the constant part (the bias)
  stays: with the evaluation-mode BatchNorm the current is ``a * W x + b``
  (``a = gamma / sqrt(var + eps)``, ``b = beta - a * mean``), so the convolution's weights
  ``W`` are multiplied by ``f`` and the BatchNorm is kept. A short bin's current on ``X / f``
  events then equals the long bin's on ``X``, and over ``f`` short steps the membrane
  integrates what it integrated over one long step (exactly for a constant input in the
  limit of large ``tau``; approximately at the 10 ms networks' tau of 3 bins, hence the
  fine-tuning that follows);
* the readout adds the head's output every step: the head's bias is divided by ``f`` (its
  weights see spikes that are already ``f`` times rarer) and the readout's decay per step
  becomes ``decay ** (1 / f)``.

The U-Net and the state heads are unchanged: they see the same frames and give membrane
potentials, which mean the same at any bin length. A retimed network trains with frozen
BatchNorm statistics (``StageConfig.freeze_batchnorm``): in training mode the BatchNorm would
normalise by the short bins' own statistics and undo the retiming.

``hybridpose reproduce --preset cpu-1khz`` starts from the shipped ``cpu`` networks retimed
by :func:`retime_checkpoint` (:attr:`hybridpose.recipes.Recipe.retimed_from`).
"""

from __future__ import annotations

import dataclasses
import math
from pathlib import Path
from typing import Any

import torch

from hybridpose.checkpoint import save_checkpoint, unshared
from hybridpose.data import WindowConfig
from hybridpose.errors import HybridPoseError
from hybridpose.nn.presets import ModelConfig
from hybridpose.nn.snn import SNNConfig
from hybridpose.recipes import window_from_dict, window_to_dict

SNN_PREFIX = {"snn": "", "hybrid": "snn."}
"""Where a stage's checkpoint keeps the SNN's weights (the ANN holds none)."""


class RetimeError(HybridPoseError, ValueError):
    """A checkpoint cannot be retimed to the target (another structure, or a bad factor)."""


def retime_snn_config(config: SNNConfig, factor: float) -> SNNConfig:
    """``config`` for bins ``factor`` times shorter: tau ``factor`` times more steps, the
    readout's decay per step ``decay ** (1 / factor)``."""
    if not factor > 0 or not math.isfinite(factor):
        raise RetimeError(f"the retiming factor must be a positive number, got {factor!r}")
    return dataclasses.replace(
        config, tau=config.tau * factor, readout_decay=config.readout_decay ** (1.0 / factor)
    )


def retime_snn_weights(
    weights: dict[str, torch.Tensor], config: SNNConfig, factor: float, prefix: str = ""
) -> dict[str, torch.Tensor]:
    """A copy of an SNN's state dict (its keys under ``prefix``) for bins ``factor`` times
    shorter (the module docstring): every spiking layer's convolution weights and ``tau`` x
    ``factor``, the head's bias / ``factor``."""
    out = dict(weights)
    for spec in config.layer_specs():
        layer = f"{prefix}{spec.name}"
        if f"{layer}.bn.running_mean" not in out:
            raise RetimeError(f"{layer}: no BatchNorm (a folded network cannot be retimed)")
        for key in ("conv.weight", "tau"):
            out[f"{layer}.{key}"] = out[f"{layer}.{key}"] * factor
    bias = f"{prefix}head.bias"
    if bias in out:
        out[bias] = out[bias] / factor
    return out


def retime_checkpoint(
    data: dict[str, Any], target: ModelConfig, window: WindowConfig
) -> dict[str, Any]:
    """A checkpoint (ANN, SNN or hybrid; :func:`hybridpose.checkpoint.unshared` for one that
    reads its U-Net from a sibling file) retimed to the SNN bins of ``window``, as a
    checkpoint of the preset ``target`` cut by ``window``.

    The result keeps the source's ablation switches (``delta_readout``, ``state_init``), is
    marked complete, has no optimizer state, and records where it came from in ``retimed``.

    Raises:
        RetimeError: the source is a CNN-RNN hybrid (no time constant to retime), reads its
            U-Net from another file, or its networks or windows retimed are not the target's.
    """
    stage = str(data["stage"])
    name = data.get("name", stage)
    if stage not in ("ann", "snn", "hybrid"):
        raise RetimeError(f"a {stage} checkpoint cannot be retimed (only ann, snn and hybrid)")
    if data.get("shared_ann") is not None:
        raise RetimeError(f"{name}: reads its U-Net from another file; pass unshared(path)")
    source = ModelConfig.from_dict(data["model_config"])
    source_window = window_from_dict(data["window_config"])
    factor = source_window.bin_us / window.bin_us
    if dataclasses.replace(source_window, bin_us=window.bin_us, steps=window.steps) != window:
        raise RetimeError(f"{name}: its windows differ from the target's in more than their bins")
    snn = retime_snn_config(source.snn, factor)
    wanted = dataclasses.replace(target.snn, delta_readout=source.snn.delta_readout)
    if snn != wanted or source.ann != target.ann or source.input_size != target.input_size:
        raise RetimeError(
            f"{name}: retimed by {factor:g} its networks are not preset "
            f"{target.name!r}'s (SNN {snn} against {wanted})"
        )
    model = dataclasses.replace(target, snn=snn, hybrid=source.hybrid)
    weights = dict(data["model"])
    if stage in SNN_PREFIX:
        weights = retime_snn_weights(weights, source.snn, factor, SNN_PREFIX[stage])
    out = dict(data)
    out.update(
        preset=target.name,
        model_config=model.to_dict(),
        window_config=window_to_dict(window),
        model=weights,
        optimizer=None,
        complete=True,
        sums=None,
        retimed={"preset": data.get("preset"), "factor": factor, "bin_us": source_window.bin_us},
    )
    return out


RETIMED_HYBRID = "hybrid_retimed"
"""The file stem of the retimed hybrid in a run's checkpoints: the hybrid stage's start."""


def retime_run(
    source: Path, target: ModelConfig, window: WindowConfig, out_dir: Path
) -> dict[str, Path]:
    """Retime a run's (or a shipped set's) ``ann.pt``, ``snn.pt`` and ``hybrid.pt`` into
    ``out_dir`` as ``ann.pt``, ``snn.pt`` and :data:`RETIMED_HYBRID` ``.pt``; a file already
    there is kept (``reproduce`` resumes). Returns the written (or kept) paths by stem."""
    out_dir.mkdir(parents=True, exist_ok=True)
    written: dict[str, Path] = {}
    for stem, dest in (("ann", "ann"), ("snn", "snn"), ("hybrid", RETIMED_HYBRID)):
        path = out_dir / f"{dest}.pt"
        if not path.exists():
            retimed = retime_checkpoint(unshared(source / f"{stem}.pt"), target, window)
            save_checkpoint(path, {**retimed, "name": dest})
        written[stem] = path
    return written


__all__ = [
    "RETIMED_HYBRID",
    "RetimeError",
    "retime_checkpoint",
    "retime_run",
    "retime_snn_config",
    "retime_snn_weights",
]
