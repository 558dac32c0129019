"""Checkpoint files: save atomically, load safely, rebuild the model from the stored config.

A checkpoint is a ``torch.save`` of a plain dict, enough to rebuild the model::

    format, format_version, hybridpose_version
    name            "ann", "snn", "hybrid", "hybrid_rnn" or an ablation ("hybrid_no_delta", ...)
    stage           the training stage that wrote it: "ann", "snn", "hybrid" or "hybrid_rnn"
    preset          the recipe it was trained with
    model_config    ModelConfig.to_dict(): enough to rebuild the networks
    window_config   how its training windows were cut (the frame's event count, crop...)
    stage_config    the optimisation settings, seed
    model           the state dict of the stage's module (ANN, SNN or HybridPose, whose
                    ``snn`` is the ConvGRU for "hybrid_rnn")
    optimizer       Adam's state dict (None in a shipped, weights-only checkpoint)
    epoch, batch, step, complete   where training stands (batch: done in the current epoch)
    metrics         the last epoch's training metrics

It holds only tensors, numbers, strings, lists and dicts, so it loads with
``torch.load(weights_only=True)``: a checkpoint file cannot run code.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any

import torch

from hybridpose import __version__
from hybridpose.atomic import atomic_write
from hybridpose.errors import HybridPoseError, first_line
from hybridpose.nn.ann import ANN
from hybridpose.nn.hybrid import HybridPose
from hybridpose.nn.presets import ModelConfig
from hybridpose.nn.rnn import ConvRNN
from hybridpose.nn.snn import SNN

FORMAT_NAME = "hybridpose-checkpoint"
FORMAT_VERSION = 1

Model = ANN | SNN | HybridPose | HybridPose[ConvRNN]
"""What a checkpoint holds: the ANN, the SNN, the hybrid or the CNN-RNN hybrid."""


class CheckpointError(HybridPoseError, ValueError):
    """A checkpoint file is missing, unreadable or not a hybridpose checkpoint."""


def save_checkpoint(path: str | os.PathLike[str], payload: dict[str, Any]) -> None:
    """Write ``payload`` (plus the format fields) to ``path`` atomically."""
    full = {"format": FORMAT_NAME, "format_version": FORMAT_VERSION, **payload}
    full.setdefault("hybridpose_version", __version__)
    with atomic_write(path) as f:
        torch.save(full, f)


def load_checkpoint(path: str | os.PathLike[str]) -> dict[str, Any]:
    """Read a checkpoint with ``weights_only=True`` and check its format.

    Raises:
        FileNotFoundError: no such file.
        CheckpointError: not a loadable hybridpose checkpoint (the message names the file).
    """
    p = Path(path)
    if not p.is_file():
        raise FileNotFoundError(f"{p}: no such checkpoint file")
    try:
        data = torch.load(p, map_location="cpu", weights_only=True)
    except Exception as err:  # torch raises many types on damaged or foreign files
        raise CheckpointError(f"{p}: not a loadable checkpoint ({_why(err)})") from None
    if not isinstance(data, dict) or data.get("format") != FORMAT_NAME:
        raise CheckpointError(f"{p}: not a hybridpose checkpoint")
    version = data.get("format_version")
    if not isinstance(version, int) or version > FORMAT_VERSION:
        raise CheckpointError(
            f"{p}: checkpoint format version {version!r} is newer than this hybridpose reads "
            f"({FORMAT_VERSION}); upgrade hybridpose"
        )
    for key in ("stage", "model_config", "model"):
        if key not in data:
            raise CheckpointError(f"{p}: checkpoint lacks {key!r}")
    return data


def _why(err: Exception) -> str:
    """A short reason why ``torch.load(weights_only=True)`` failed.

    PyTorch's own messages are paragraphs that advise loading with ``weights_only=False``,
    which would let the file run code: never quoted to a user.
    """
    unsafe = re.search(r"Unsupported global: GLOBAL (\S+)", str(err))
    if unsafe:
        return f"it refers to Python code, {unsafe[1]}, which is never loaded"
    return "damaged, or another kind of file"


def build_model(stage: str, config: ModelConfig) -> Model:
    """The module a stage trains: the ANN, the SNN, the whole hybrid or the CNN-RNN hybrid."""
    if stage == "ann":
        return config.build_ann()
    if stage == "snn":
        return config.build_snn()
    if stage == "hybrid":
        return config.build_hybrid()
    if stage == "hybrid_rnn":
        return config.build_hybrid_rnn()
    raise CheckpointError(f"unknown stage {stage!r}")


def load_model(path: str | os.PathLike[str]) -> tuple[Model, dict[str, Any]]:
    """The model stored in a checkpoint, rebuilt from its own config, in eval mode.

    Returns:
        the model (:class:`ANN`, :class:`SNN` or :class:`HybridPose`) and the checkpoint dict.
    """
    data = load_checkpoint(path)
    weights = dict(data["model"])
    shared = data.get("shared_ann")
    if shared is not None:
        weights.update(_shared_ann_weights(Path(path), shared))
    try:
        config = ModelConfig.from_dict(data["model_config"])
        model = build_model(str(data["stage"]), config)
        model.load_state_dict(weights)
    except CheckpointError:
        raise
    except (KeyError, TypeError, ValueError, RuntimeError) as err:
        raise CheckpointError(
            f"{path}: the stored weights do not fit the stored config ({first_line(err)})"
        ) from None
    model.eval()
    return model, data


def weights_only(data: dict[str, Any]) -> dict[str, Any]:
    """A copy of a checkpoint without the optimizer state (for shipping: a third the size)."""
    out = dict(data)
    out["optimizer"] = None
    return out


UNET_EXCLUDED = "state_heads."


def share_ann(hybrid: dict[str, Any], ann: dict[str, Any], ann_file: str) -> dict[str, Any]:
    """A copy of a hybrid checkpoint whose frozen U-Net is read from the sibling ``ann_file``.

    The hybrid stage (and the ``hybrid_rnn`` stage) freezes the ANN's U-Net, so a hybrid
    checkpoint repeats the ANN checkpoint's weights; this copy keeps only its own (the SNN or
    the ConvGRU, and the state heads) and records which file holds the rest (``shared_ann``),
    checked by value on loading.

    Raises:
        CheckpointError: if the hybrid's U-Net differs from ``ann``'s.
    """
    unet = {k: v for k, v in ann["model"].items() if not k.startswith(UNET_EXCLUDED)}
    for key, value in unet.items():
        if not torch.equal(hybrid["model"][f"ann.{key}"], value):
            raise CheckpointError(f"the hybrid's U-Net differs from {ann_file}'s at {key}")
    out = dict(hybrid)
    out["model"] = {
        k: v for k, v in hybrid["model"].items() if not (k.startswith("ann.") and k[4:] in unet)
    }
    checksum = float(sum(v.double().sum() for v in unet.values()))
    out["shared_ann"] = {"file": ann_file, "keys": sorted(unet), "checksum": checksum}
    return out


def unshared(path: str | os.PathLike[str]) -> dict[str, Any]:
    """A checkpoint as :func:`load_checkpoint` reads it, with the weights it reads from a
    sibling ANN file (:func:`share_ann`) merged back in: a whole checkpoint again."""
    data = load_checkpoint(path)
    shared = data.pop("shared_ann", None)
    if shared is not None:
        data["model"] = {**data["model"], **_shared_ann_weights(Path(path), shared)}
    return data


def _shared_ann_weights(path: Path, shared: dict[str, Any]) -> dict[str, torch.Tensor]:
    source = path.parent / str(shared["file"])
    ann = load_checkpoint(source)
    weights = {k: ann["model"][k] for k in shared["keys"] if k in ann["model"]}
    checksum = float(sum(v.double().sum() for v in weights.values()))
    if len(weights) != len(shared["keys"]) or checksum != shared["checksum"]:
        raise CheckpointError(f"{path}: its frozen ANN in {source} has changed")
    return {f"ann.{k}": v for k, v in weights.items()}


__all__ = [
    "CheckpointError",
    "build_model",
    "load_checkpoint",
    "load_model",
    "save_checkpoint",
    "share_ann",
    "unshared",
    "weights_only",
]
