"""Why the hybrid's error grows over the window: short hybrid-stage trainings, one setting changed
at a time, each scored against the held ANN at three ANN rates.

An experiment, not a timing. Every probe trains the ``cpu`` recipe's hybrid stage for
``--epochs`` epochs from the same ANN (``ann.pt``, frozen) and SNN (``snn.pt``) with one setting
changed, then the held ANN and the hybrid are scored under the project protocol with windows 1,
2 and 4 times the trained length (the ANN at 10, 5 and 2.5 Hz; ``evaluate.rate_sweep``)::

    python bench/hybrid_drift.py --data DATA --checkpoints DIR --out runs/drift \\
        [--probes baseline decay95 ...] [--epochs 2] [--windows-per-recording 2]

Each probe writes ``OUT/NAME/hybrid.pt`` and ``OUT/NAME/sweep.json`` (a finished probe is not
trained again) and the table is printed at the end and written to ``OUT/drift.md``.
"""

from __future__ import annotations

import argparse
import json
import shutil
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

import torch

from hybridpose.evaluate import EvalSpec, load_models
from hybridpose.evaluate.run import rate_sweep
from hybridpose.train import TrainSpec, make_spec, train


def _decay(value: float) -> Callable[[TrainSpec], TrainSpec]:
    def change(spec: TrainSpec) -> TrainSpec:
        snn = replace(spec.model.snn, readout_decay=value)
        return replace(spec, model=replace(spec.model, snn=snn))

    return change


def _longer_windows(factor: int) -> Callable[[TrainSpec], TrainSpec]:
    def change(spec: TrainSpec) -> TrainSpec:
        w = spec.window
        return replace(
            spec, window=replace(w, steps=w.steps * factor, stride_us=w.stride_us * factor)
        )

    return change


def _state_weight(value: float) -> Callable[[TrainSpec], TrainSpec]:
    def change(spec: TrainSpec) -> TrainSpec:
        return replace(spec, optim=replace(spec.optim, state_loss_weight=value))

    return change


PROBES: dict[str, tuple[str, Callable[[TrainSpec], TrainSpec]]] = {
    "baseline": ("the recipe's settings", lambda spec: spec),
    "decay95": ("readout decay 0.95 (recipe 0.8)", _decay(0.95)),
    "decay100": ("readout decay 1.0: a pure accumulator", _decay(1.0)),
    "window20": ("trained on windows of 20 bins (200 ms)", _longer_windows(2)),
    "state0": ("no state-consistency loss (recipe weight 0.005)", _state_weight(0.0)),
    "state05": ("state-consistency weight 0.05", _state_weight(0.05)),
}
"""The probes: name -> (what changes, the change)."""


def run_probe(name: str, args: argparse.Namespace) -> list[dict[str, Any]]:
    out = args.out / name
    result = out / "sweep.json"
    if result.exists():
        loaded: list[dict[str, Any]] = json.loads(result.read_text())
        return loaded
    out.mkdir(parents=True, exist_ok=True)
    for stem in ("ann", "snn"):
        shutil.copy2(args.checkpoints / f"{stem}.pt", out / f"{stem}.pt")
    spec = make_spec(
        "hybrid", "cpu", args.data, out, init_snn=out / "snn.pt", epochs=args.epochs,
        seed=args.seed,
    )  # fmt: skip
    spec = PROBES[name][1](spec)
    if not (out / "hybrid.pt").exists():
        train(spec, resume=(out / "hybrid.pt").exists(), progress=False, tensorboard=False)
    # the held ANN from --checkpoints, the probe's hybrid; scored on the recipe's windows
    # (those of ann.pt) and multiples, whatever windows the probe trained on
    held = load_models(args.checkpoints, ["ann_low_held"])
    models = replace(held, networks={**held.networks, **load_models(out, ["hybrid"]).networks})
    for m in models.modules():
        m.eval()
    espec = EvalSpec(out, args.data, out, windows_per_recording=args.windows_per_recording)
    with torch.no_grad():
        sweep = rate_sweep(espec, models, (1, 2, 4), progress=False)
    result.write_text(json.dumps(sweep, indent=1) + "\n")
    return sweep


def table(results: dict[str, list[dict[str, Any]]]) -> str:
    lines = [
        "| probe | what changes | ANN Hz | held ANN px | hybrid px | first → last "
        "| hybrid / held |",
        "|---|---|---|---|---|---|---|",
    ]
    for name, sweep in results.items():
        for point in sweep:
            held, hyb = point["models"]["ann_low_held"], point["models"]["hybrid"]
            steps = hyb["mpjpe2d_px_per_step"]
            lines.append(
                f"| {name} | {PROBES[name][0]} | {point['ann_rate_hz']:g} "
                f"| {held['mpjpe2d_px']:.3f} | {hyb['mpjpe2d_px']:.3f} "
                f"| {steps[0]:.2f} → {steps[-1]:.2f} "
                f"| {hyb['mpjpe2d_px'] / held['mpjpe2d_px']:.3f} |"
            )
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, required=True, help="the cpu preset's dataset")
    parser.add_argument("--checkpoints", type=Path, required=True, help="with ann.pt, snn.pt")
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--probes", nargs="+", choices=list(PROBES), default=list(PROBES))
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--windows-per-recording", type=int, default=2)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    results = {}
    for name in args.probes:
        results[name] = run_probe(name, args)
        print(table({name: results[name]}), flush=True)
    text = table(results)
    (args.out / "drift.md").write_text(text)
    print(text)


if __name__ == "__main__":
    main()
