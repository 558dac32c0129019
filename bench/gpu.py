"""Benchmark: the ``paper`` preset on one GPU, and the estimated time of its reproduction.

Sized to fit about 8 minutes on one H100/H200-class GPU with 16 CPU cores:

1. **simulate** about a minute of full-resolution (346x260) data: training subject 1 and test
   subject 13, a few movements of one repetition each, in ``--sim-workers`` processes, with
   the recipe's sampling (tiles for ``paper``; ``--sim-sampling``), rendering and simulating
   on ``--device`` as ``reproduce --device`` does (torch: :mod:`hybridpose.synth.render_torch`
   and :mod:`hybridpose.synth.esim_torch`; ``--sim-device numba`` for the compiled CPU
   kernels): events per second and simulated seconds per wall second;
2. **train** each stage of the recipe (ann, snn, hybrid, hybrid_rnn) for ``--steps``
   optimisation steps at the recipe's batch, with ``--precision`` and ``--channels-last``:
   samples per second (after the first step, which pays for cuDNN's autotuning) and peak GPU
   memory;
3. **evaluate** the test recordings (every window, the project's protocol): wall time per
   scored window, the set-up included;
4. **estimate** ``hybridpose reproduce --preset paper``: the default dataset's simulated
   seconds (from its movements' plans, no simulation) at the measured speed, each stage's
   samples (epochs x windows per epoch, from the recipe and the dataset's length) at the
   measured throughput, and the evaluation's windows at the measured rate.

    python bench/gpu.py [--device cuda] [--steps 20] [--precision bf16] [--channels-last]
        [--sim-workers 16] [--sim-device DEV|numba] [--sim-sampling frames|tiles]
        [--movements 1,2,3] [--out DIR] [--json FILE]

``--preset cpu --device cpu --steps 2 --movements 1`` runs the same code paths at the 87x65
size on a CPU in a few minutes (a check of the script, not a measurement of the paper preset).
"""

from __future__ import annotations

import argparse
import csv
import dataclasses
import json
import tempfile
import time
from pathlib import Path
from typing import Any

import torch

from hybridpose.evaluate import EvalSpec, evaluate
from hybridpose.nn.presets import preset
from hybridpose.recipes import recipe
from hybridpose.synth.generate import PRESETS as SIM_PRESETS
from hybridpose.synth.generate import (
    SimulationConfig,
    make_performance,
    make_subject,
    simulate_dataset,
)
from hybridpose.train import make_spec, train

TRAIN_SUBJECT, TEST_SUBJECT = 1, 13


def simulation_config(
    model_preset: str, movements: tuple[int, ...], subjects: tuple[int, ...]
) -> SimulationConfig:
    """The default dataset's settings at the preset's sensor size, one repetition per
    movement (the bench's sample); ``movements`` and ``subjects`` as given."""
    sim = dataclasses.replace(
        SIM_PRESETS["default"], sensor_size=preset(model_preset).sensor_size,
        subjects=subjects, movements=movements,
        sampling=recipe(model_preset).simulation_sampling,
    )  # fmt: skip
    performance = dataclasses.replace(sim.performance, repetitions=1)
    return dataclasses.replace(sim, performance=performance)


def dataset_seconds(model_preset: str) -> tuple[float, float]:
    """Simulated seconds of the whole default dataset (as ``reproduce`` makes it) and of its
    training subjects, from the movements' plans: no rendering."""
    sim = dataclasses.replace(SIM_PRESETS["default"], sensor_size=preset(model_preset).sensor_size)
    reps = recipe(model_preset).simulation_repetitions
    if reps is not None:
        sim = dataclasses.replace(
            sim, performance=dataclasses.replace(sim.performance, repetitions=reps)
        )
    total = train_s = 0.0
    train_subjects = set(recipe(model_preset).train_subjects)
    for s in sim.subjects:
        subject = make_subject(sim, s)
        for m in sim.movements:
            seconds = make_performance(sim, subject, m).duration_s
            total += seconds
            train_s += seconds if s in train_subjects else 0.0
    return total, train_s


def time_stage(
    stage: str, model_preset: str, data: Path, out: Path, args: argparse.Namespace
) -> dict[str, Any]:
    rec = recipe(model_preset).stage(stage)  # type: ignore[arg-type]
    batch = args.batch or rec.batch_size
    spec = make_spec(
        stage, model_preset, data, out, device=args.device, precision=args.precision,  # type: ignore[arg-type]
        channels_last=args.channels_last, workers=args.loader_workers, batch_size=batch,
        epochs=1, samples_per_epoch=batch * args.steps,
    )  # fmt: skip
    if args.device.startswith("cuda"):
        torch.cuda.reset_peak_memory_stats()
    started = time.perf_counter()
    train(spec, progress=False, tensorboard=False)
    wall = time.perf_counter() - started
    rows = [r for r in _read_log(spec.log_path) if float(r["samples_per_s"]) > 0]
    # the first row covers the first step (autotuning, compilation): leave it out when there
    # are more; rows are every 10 steps
    rate = float(rows[-1]["samples_per_s"]) if len(rows) > 1 else args.steps * batch / wall
    peak = (
        torch.cuda.max_memory_allocated() / 2**30
        if args.device.startswith("cuda")
        else float(rows[-1]["peak_memory_mb"]) / 1024
    )
    return {
        "stage": stage,
        "batch": batch,
        "steps": args.steps,
        "wall_s": wall,
        "samples_per_s": rate,
        "peak_gib": peak,
        "epochs": rec.epochs,
        "samples_per_epoch": rec.samples_per_epoch,
    }


def _read_log(path: Path) -> list[dict[str, str]]:
    with path.open(newline="") as f:
        return list(csv.DictReader(f))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--preset", default="paper")
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--steps", type=int, default=20, help="optimisation steps per stage")
    parser.add_argument("--batch", type=int, default=None, help="default: the recipe's")
    parser.add_argument("--precision", default="bf16", choices=("fp32", "bf16"))
    parser.add_argument("--channels-last", action="store_true")
    parser.add_argument("--loader-workers", type=int, default=4)
    parser.add_argument("--sim-workers", type=int, default=16)
    parser.add_argument(
        "--sim-device",
        default=None,
        help="a torch device or numba (default: --device, or numba where --device is the CPU)",
    )
    parser.add_argument("--sim-sampling", choices=("frames", "tiles"), default=None)
    parser.add_argument("--movements", default="1,2,3,4,5,6", help="of each subject")
    parser.add_argument("--out", type=Path, default=None, help="keep the data and checkpoints")
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()
    movements = tuple(int(m) for m in args.movements.split(","))
    root = Path(args.out or tempfile.mkdtemp(prefix="hybridpose-gpu-bench-"))
    data, ckpt = root / "data", root / "checkpoints"
    print(
        f"# {torch.__version__}, device {args.device}"
        + (f" ({torch.cuda.get_device_name()})" if args.device.startswith("cuda") else "")
    )

    # 1. simulate
    sim = simulation_config(args.preset, movements, (TRAIN_SUBJECT, TEST_SUBJECT))
    if args.sim_sampling is not None:
        sim = dataclasses.replace(sim, sampling=args.sim_sampling)
    sim_device: str | None = args.sim_device
    if sim_device is None and torch.device(args.device).type != "cpu":
        sim_device = args.device  # as reproduce: the compiled kernels where it is the CPU
    elif sim_device == "numba":
        sim_device = None
    started = time.perf_counter()
    summary = simulate_dataset(
        data, sim, workers=args.sim_workers, progress=False, device=sim_device
    )
    sim_wall = time.perf_counter() - started
    simulated = sum(r.duration_s for r in summary.written)
    events = sum(c.events for r in summary.written for c in r.cameras)
    sim_speed = simulated / sim_wall
    print(
        f"simulate: {simulated:.1f} s of {sim.sensor_size[0]}x{sim.sensor_size[1]} data "
        f"(4 cameras, {sim.sampling}, {sim_device or 'numba'}) in {sim_wall:.1f} s on "
        f"{args.sim_workers} processes: "
        f"{sim_speed:.2f}x real time, {events / sim_wall / 1e6:.2f} M events/s"
    )

    # 2. train
    rows = []
    for stage in recipe(args.preset).stages:
        row = time_stage(stage, args.preset, data, ckpt, args)
        rows.append(row)
        print(
            f"train {stage:>10}: batch {row['batch']}, {row['steps']} steps in "
            f"{row['wall_s']:.1f} s, {row['samples_per_s']:.1f} samples/s, "
            f"peak {row['peak_gib']:.2f} GiB"
        )

    # 3. evaluate
    started = time.perf_counter()
    report = evaluate(
        EvalSpec(ckpt, data, root / "report", energy_windows=2, device=args.device,
                 protocols=("project",)),
        progress=False,
    )  # fmt: skip
    eval_wall = time.perf_counter() - started
    scored = report["setup"]["recordings"] * report["setup"]["scored_windows_per_camera"]
    print(f"evaluate: {scored} scored windows per camera in {eval_wall:.1f} s")

    # 4. estimate the reproduction
    total_s, train_s = dataset_seconds(args.preset)
    window = recipe(args.preset).window
    windows_per_epoch = len(recipe(args.preset).window.cameras) * train_s * 1e6 / window.stride_us
    estimate = {"simulate": total_s / sim_speed}
    for row in rows:
        per_epoch = row["samples_per_epoch"] or windows_per_epoch
        estimate[f"train_{row['stage']}"] = row["epochs"] * per_epoch / row["samples_per_s"]
    rec = recipe(args.preset)
    test_recordings = len(rec.test_subjects) * len(SIM_PRESETS["default"].movements)
    if rec.eval_windows_per_recording is None:  # every window of the test subjects
        eval_windows = (total_s - train_s) * 1e6 / window.stride_us
    else:
        eval_windows = test_recordings * rec.eval_windows_per_recording
    estimate["evaluate"] = eval_windows * eval_wall / max(scored, 1)
    print(
        f"\nreproduce --preset {args.preset} estimated on this machine "
        f"(dataset: {total_s / 3600:.1f} h simulated, {windows_per_epoch:,.0f} training "
        f"windows per epoch):"
    )
    for phase, seconds in estimate.items():
        print(f"  {phase:>17}: {seconds / 60:8.1f} min")
    total = sum(estimate.values())
    print(f"  {'total':>17}: {total / 60:8.1f} min")
    if args.json:
        args.json.write_text(json.dumps({
            "device": args.device, "precision": args.precision,
            "channels_last": args.channels_last, "simulate_realtime": sim_speed,
            "simulate_device": sim_device or "numba", "simulate_sampling": sim.sampling,
            "train": rows, "evaluate_s": eval_wall, "estimate_s": estimate,
        }, indent=2) + "\n")  # fmt: skip


if __name__ == "__main__":
    main()
