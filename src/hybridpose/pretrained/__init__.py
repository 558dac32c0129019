"""Shipped weights: the ``cpu`` preset as ``hybridpose reproduce --preset cpu`` trained it, and
two sets ``reproduce`` made from them: the 1 kHz hybrid ``cpu-1khz`` and the sparse 10 ms
hybrid ``cpu-sparse``.

``pretrained/cpu/`` holds ``ann.pt``, ``snn.pt`` and ``hybrid.pt`` (without optimizer state;
``hybrid.pt`` reads its frozen U-Net from ``ann.pt``, see
:func:`hybridpose.checkpoint.share_ann`), and the evaluation of that run: ``report.json`` and
``report.md``; the hybrid's trained ablations and the CNN-RNN hybrid (an optional variant)
when the run has them, likewise sharing ``ann.pt`` (:func:`shipped_checkpoints` lists them
from the variant registry). Load them with :func:`pretrained_dir` and the usual loaders::

    from hybridpose.checkpoint import load_model
    from hybridpose.pretrained import pretrained_dir
    hybrid, info = load_model(pretrained_dir("cpu") / "hybrid.pt")

``pretrained/cpu-1khz/`` holds the same files for 1 ms bins: the ``cpu`` ANN and SNN retimed
(:mod:`hybridpose.retime`; not trained again, their checkpoints say so under ``retimed``) and
the hybrid retimed and fine-tuned at 1 ms. ``pretrained/cpu-sparse/`` holds the ``cpu`` ANN
and SNN unchanged (retimed by a factor of 1) and the ``cpu`` hybrid fine-tuned at 10 ms with
the activity penalty, which fires about a quarter of its spikes: the event-driven engine's
10 ms model.

To refresh them after a new reproduction (maintainers): ``ship("runs/cpu")``,
``ship("runs/cpu-1khz", "cpu-1khz")``, ``ship("runs/cpu-sparse", "cpu-sparse")``.
"""

from __future__ import annotations

import os
import shutil
from importlib import resources
from pathlib import Path

from hybridpose.atomic import atomic_write
from hybridpose.checkpoint import (
    load_checkpoint,
    save_checkpoint,
    share_ann,
    unshared,
    weights_only,
)
from hybridpose.errors import HybridPoseError
from hybridpose.variants import VARIANTS

SHIPPED = ("cpu", "cpu-1khz", "cpu-sparse")
REPORT_FILES = ("report.json", "report.md")
FILES = ("ann.pt", "snn.pt", "hybrid.pt", *REPORT_FILES)
"""What every shipped preset holds; the ablations and the CNN-RNN hybrid come when trained."""


class CheckpointDirError(HybridPoseError, FileNotFoundError):
    """A ``--checkpoint`` argument that names neither a shipped set nor a directory."""


def pretrained_dir(preset: str = "cpu") -> Path:
    """The directory of a preset's shipped checkpoints and report.

    Raises:
        ValueError: no weights are shipped for ``preset``.
        FileNotFoundError: the package was installed without its weights.
    """
    if preset not in SHIPPED:
        raise ValueError(f"no shipped weights for preset {preset!r}; shipped: {list(SHIPPED)}")
    path = Path(str(resources.files("hybridpose.pretrained"))) / preset
    missing = [f for f in FILES if not (path / f).is_file()]
    if missing:
        raise FileNotFoundError(f"{path}: shipped files missing: {', '.join(missing)}")
    return path


def checkpoint_dir(name_or_dir: str | os.PathLike[str] | None, default: str = "cpu") -> Path:
    """What a ``--checkpoint NAME|DIR`` argument names: a shipped set by its name (``cpu``...)
    or a training run's checkpoint directory; None: the ``default`` shipped set.

    A shipped name wins over a directory of the same name in the working directory (write
    ``./cpu`` for that one).

    Raises:
        CheckpointDirError: neither a shipped name nor a directory.
    """
    if name_or_dir is None:
        return pretrained_dir(default)
    text = os.fspath(name_or_dir)
    if text in SHIPPED:
        return pretrained_dir(text)
    path = Path(text)
    if path.is_dir():
        return path
    what = "a file, not a directory" if path.exists() else "no such directory"
    raise CheckpointDirError(
        f"{text}: {what}, and not a shipped set of weights (shipped: {', '.join(SHIPPED)})"
    )


def shipped_checkpoints() -> tuple[tuple[str, bool], ...]:
    """Each checkpoint file stem the variant registry names, in report order, with whether a
    run must hold it (the ablations and the optional variants are shipped when trained)."""
    required: dict[str, bool] = {}
    for v in VARIANTS.values():
        needed = not (v.optional or v.is_ablation)
        required[v.checkpoint] = required.get(v.checkpoint, False) or needed
    return tuple(required.items())


def ship(run_dir: str | os.PathLike[str], preset: str = "cpu", *, dest: Path | None = None) -> Path:
    """Copy a reproduction's checkpoints (weights only) and report into the package (or into
    ``dest``).

    Every checkpoint that holds the frozen U-Net (the hybrids) reads it from ``ann.pt``.

    Raises:
        FileNotFoundError: the run lacks a required checkpoint or its report.
    """
    run = Path(run_dir)
    if dest is None:
        dest = Path(str(resources.files("hybridpose.pretrained"))) / preset
    missing = [
        f"checkpoints/{stem}.pt"
        for stem, needed in shipped_checkpoints()
        if needed and not (run / "checkpoints" / f"{stem}.pt").is_file()
    ] + [f"report/{n}" for n in REPORT_FILES if not (run / "report" / n).is_file()]
    if missing:
        raise FileNotFoundError(f"{run}: not a finished reproduction, missing {', '.join(missing)}")
    dest.mkdir(parents=True, exist_ok=True)
    ann = weights_only(load_checkpoint(run / "checkpoints" / "ann.pt"))
    save_checkpoint(dest / "ann.pt", ann)
    for stem, _ in shipped_checkpoints():
        source = run / "checkpoints" / f"{stem}.pt"
        if stem == "ann":
            continue
        if not source.is_file():
            (dest / f"{stem}.pt").unlink(missing_ok=True)  # no stale weights of an earlier run
            continue
        checkpoint = weights_only(unshared(source))  # a run may hold shipped files
        if any(k.startswith("ann.") for k in checkpoint["model"]):  # a hybrid's frozen U-Net
            checkpoint = share_ann(checkpoint, ann, "ann.pt")
        save_checkpoint(dest / f"{stem}.pt", checkpoint)
    for name in REPORT_FILES:
        with atomic_write(dest / name) as f, (run / "report" / name).open("rb") as src:
            shutil.copyfileobj(src, f)
    return dest


__all__ = [
    "SHIPPED",
    "CheckpointDirError",
    "checkpoint_dir",
    "pretrained_dir",
    "ship",
    "shipped_checkpoints",
]
