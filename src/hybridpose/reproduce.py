"""``hybridpose reproduce``: simulate the dataset, train the stages, evaluate; resumable.

The stages are :data:`~hybridpose.recipes.STAGES`: the paper's three (ann, snn, hybrid), then
the CNN-RNN hybrid (``hybrid_rnn``, the hybrid with a ConvGRU in the SNN's place).

Layout of the output directory::

    OUT/data/             the synthetic default dataset at the preset's sensor size
    OUT/checkpoints/      ann.pt, snn.pt, hybrid.pt, hybrid_rnn.pt and their CSV logs
    OUT/report/           report.json, report.md, error_vs_step.png, error_vs_power.png
    OUT/timings.json      wall-clock seconds per phase (summed over resumed runs)

A recipe with ``retimed_from`` (``cpu-1khz``) trains only its ``stages`` (the hybrid): its
ANN and SNN are the shipped ones of that preset retimed to its bins (:mod:`hybridpose.retime`),
and its hybrid starts from the shipped hybrid retimed.

With ``ablations`` the two ablations of the hybrid are trained too (same recipe), so that
the report shows trained ablations instead of ones derived from the hybrid at evaluation.

Every phase resumes: the simulator skips finished recordings, a training stage continues from
its checkpoint (a complete one is skipped), and the evaluation is redone only when a checkpoint
is newer than the report. Run the same command again after an interruption.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, TypeVar

import torch

from hybridpose.atomic import write_text_atomic
from hybridpose.checkpoint import load_checkpoint
from hybridpose.errors import HybridPoseError
from hybridpose.evaluate import EvalSpec, evaluate
from hybridpose.nn.presets import preset
from hybridpose.pretrained import pretrained_dir
from hybridpose.recipes import recipe
from hybridpose.retime import retime_run
from hybridpose.synth.generate import PRESETS as SIM_PRESETS
from hybridpose.synth.generate import simulate_dataset
from hybridpose.train import Precision, TrainSpec, make_spec, train
from hybridpose.variants import ablations

T = TypeVar("T")


class ReproduceError(HybridPoseError, RuntimeError):
    """A phase of the reproduction failed (the message says which and how to continue)."""


@dataclass(frozen=True)
class ReproduceSpec:
    """One reproduction. ``workers``: simulation processes; ``device``, ``precision``,
    ``channels_last`` and ``loader_workers`` (DataLoader processes): the training stages' run
    settings (:class:`~hybridpose.train.TrainSpec`); the evaluation runs on ``device`` too,
    and so does the simulation unless ``device`` is the CPU (where the compiled kernels are
    faster than torch)."""

    preset: str
    out_dir: Path
    workers: int = 1
    seed: int = 0
    progress: bool = True
    ablations: bool = False
    device: str = "cpu"
    precision: Precision = "fp32"
    channels_last: bool = False
    loader_workers: int = 0


def _timings(path: Path) -> dict[str, float]:
    if path.exists():
        data = json.loads(path.read_text())
        if isinstance(data, dict):
            return {str(k): float(v) for k, v in data.items()}
    return {}


def _timed(path: Path, phase: str, run: Callable[[], T]) -> T:
    started = time.perf_counter()
    try:
        return run()
    finally:
        timings = _timings(path)
        timings[phase] = timings.get(phase, 0.0) + time.perf_counter() - started
        timings["total"] = sum(v for k, v in timings.items() if k != "total")
        write_text_atomic(path, json.dumps(timings, indent=2) + "\n")


def _sim_device(spec: ReproduceSpec) -> str | None:
    """Where the simulation runs: ``spec.device`` unless it is the CPU (None: numba)."""
    return None if torch.device(spec.device).type == "cpu" else spec.device


def _complete(path: Path) -> bool:
    return path.exists() and bool(load_checkpoint(path).get("complete"))


def reproduce(spec: ReproduceSpec, log: Callable[[str], None] = print) -> dict[str, Any]:
    """Run (or continue) the whole reproduction; returns the evaluation report."""
    model = preset(spec.preset)
    rec = recipe(spec.preset)
    out = spec.out_dir
    data, ckpt, report_dir = out / "data", out / "checkpoints", out / "report"
    timings = out / "timings.json"
    out.mkdir(parents=True, exist_ok=True)

    sim = replace(
        SIM_PRESETS["default"], sensor_size=model.sensor_size, seed=spec.seed,
        sampling=rec.simulation_sampling,
    )  # fmt: skip
    if rec.simulation_repetitions is not None:
        performance = replace(sim.performance, repetitions=rec.simulation_repetitions)
        sim = replace(sim, performance=performance)
    phases = len(rec.stages) + 2  # simulate, the stages, evaluate
    log(f"[1/{phases}] simulating the default dataset at {sim.sensor_size[0]}x{sim.sensor_size[1]}")
    summary = _timed(
        timings,
        "simulate",
        lambda: simulate_dataset(
            data, sim, workers=spec.workers, progress=spec.progress, device=_sim_device(spec)
        ),
    )
    log(summary.describe())
    if summary.failed:
        raise ReproduceError(f"{data}: {len(summary.failed)} recordings failed; run again")

    def train_once(tspec: TrainSpec, step: str, name: str, what: str) -> None:
        """Train one checkpoint unless it is complete (resuming a partial one), timed as
        ``train_{name}``."""
        if _complete(tspec.checkpoint_path):
            log(f"{step} {name}: already trained ({tspec.checkpoint_path})")
            return
        log(f"{step} training {what}")
        _timed(timings, f"train_{name}", lambda: train(tspec, resume=True, progress=spec.progress))

    run_settings: dict[str, Any] = {
        "seed": spec.seed, "device": spec.device, "precision": spec.precision,
        "channels_last": spec.channels_last, "workers": spec.loader_workers,
    }  # fmt: skip
    hybrid_init = ckpt / "snn.pt" if rec.hybrid_from_snn else None
    if rec.retimed_from is not None:
        source = pretrained_dir(rec.retimed_from)
        log(f"[retime] the shipped {rec.retimed_from} networks for {rec.window.bin_us} us bins")
        retimed = retime_run(source, model, rec.window, ckpt)
        hybrid_init = retimed["hybrid"]
    for i, stage in enumerate(rec.stages):
        init = hybrid_init if stage == "hybrid" else None
        tspec = make_spec(stage, spec.preset, data, ckpt, init_snn=init, **run_settings)
        train_once(tspec, f"[{i + 2}/{phases}]", stage, f"the {stage} stage")

    trained = [ckpt / f"{s}.pt" for s in rec.stages]
    if spec.ablations:  # the paper's ablations, trained like the hybrid
        for v in ablations():
            tspec = make_spec(
                "hybrid", spec.preset, data, ckpt, init_snn=hybrid_init, **run_settings,
                state_init=v.state_init, delta_readout=v.delta_readout, name=v.checkpoint,
            )  # fmt: skip
            trained.append(tspec.checkpoint_path)
            train_once(tspec, "[ablation]", v.name, v.name)

    report_json = report_dir / "report.json"
    newest = max(p.stat().st_mtime for p in trained)
    if report_json.exists() and report_json.stat().st_mtime >= newest:
        log(f"[{phases}/{phases}] evaluation: up to date ({report_json})")
        result: dict[str, Any] = json.loads(report_json.read_text())
        return result
    log(f"[{phases}/{phases}] evaluating on the test subjects")
    espec = EvalSpec(
        ckpt,
        data,
        report_dir,
        windows_per_recording=rec.eval_windows_per_recording,
        energy_windows=rec.energy_windows,
        seed=spec.seed,
        rate_factors=rec.eval_rate_factors,
        protocols=rec.eval_protocols,
        device=spec.device,
    )
    report = _timed(timings, "evaluate", lambda: evaluate(espec, progress=spec.progress))
    return report


def default_workers() -> int:
    return max(1, len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else 1)


__all__ = ["ReproduceError", "ReproduceSpec", "default_workers", "reproduce"]
