"""Shipped weights: the ``cpu`` preset as ``hybridpose reproduce --preset cpu`` trained it.

``pretrained/cpu/`` holds ``ann.pt``, ``snn.pt`` and ``hybrid.pt`` (without optimizer state;
``hybrid.pt`` reads its frozen U-Net from ``ann.pt``, see
:func:`hybridpose.checkpoint.share_ann`), and the evaluation of that run: ``report.json`` and
``report.md``; ``hybrid_rnn.pt`` (the CNN-RNN hybrid, an optional variant) when the run has one,
likewise sharing ``ann.pt``. Load them with :func:`pretrained_dir` and the usual loaders::

    from hybridpose.checkpoint import load_model
    from hybridpose.pretrained import pretrained_dir
    hybrid, info = load_model(pretrained_dir("cpu") / "hybrid.pt")

To refresh them after a new reproduction (maintainers): ``ship("runs/cpu")``.
"""

from __future__ import annotations

import os
import shutil
from importlib import resources
from pathlib import Path

from hybridpose.atomic import atomic_write
from hybridpose.checkpoint import load_checkpoint, save_checkpoint, share_ann, weights_only

SHIPPED = ("cpu",)
FILES = ("ann.pt", "snn.pt", "hybrid.pt", "report.json", "report.md")


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


def ship(run_dir: str | os.PathLike[str], preset: str = "cpu") -> Path:
    """Copy a reproduction's checkpoints (weights only) and report into the package."""
    run = Path(run_dir)
    dest = Path(str(resources.files("hybridpose.pretrained"))) / preset
    dest.mkdir(parents=True, exist_ok=True)
    ann = weights_only(load_checkpoint(run / "checkpoints" / "ann.pt"))
    snn = weights_only(load_checkpoint(run / "checkpoints" / "snn.pt"))
    hybrid = weights_only(load_checkpoint(run / "checkpoints" / "hybrid.pt"))
    save_checkpoint(dest / "ann.pt", ann)
    save_checkpoint(dest / "snn.pt", snn)
    save_checkpoint(dest / "hybrid.pt", share_ann(hybrid, ann, "ann.pt"))
    rnn = run / "checkpoints" / "hybrid_rnn.pt"
    if rnn.is_file():
        rnn_hybrid = weights_only(load_checkpoint(rnn))
        save_checkpoint(dest / "hybrid_rnn.pt", share_ann(rnn_hybrid, ann, "ann.pt"))
    for name in ("report.json", "report.md"):
        with atomic_write(dest / name) as f, (run / "report" / name).open("rb") as src:
            shutil.copyfileobj(src, f)
    return dest


__all__ = ["SHIPPED", "pretrained_dir", "ship"]
