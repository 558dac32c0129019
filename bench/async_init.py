"""Benchmark: the hybrid with its ANN beside the stream (``ann_lead``) against the synchronous one.

Run from the repository root::

    python bench/async_init.py [--leads-ms 0,10,30,50] [--checkpoint cpu] [--engine event]
                               [--data DIR] [--json FILE]

The demo's held-out recordings (subjects 18 and 19, four movements, simulated once into
``--data``) stream through the hybrid on cameras 2 and 3, once per lead: 0 is the synchronous
hybrid (the ANN in the step of each window's first bin); a lead of L ms runs the ANN in a
second thread on the events before ``t0 - L`` and lets the SNN catch up over those bins there
(:mod:`hybridpose.reinit`). Poses are scored as the demo scores them (the evaluation's windows
without each recording's first), so the lead-0 row is the demo's hybrid row.

Per lead: 2D error (px) and its first and last step, 3D error (mm), the ratio of 2D errors to
the synchronous hybrid, and from the predictor's own per-step wall times the p50/p99 of the
steps that start a window (where the synchronous ANN runs) and of all steps, with the number
of window starts that had to wait for the worker. The errors do not depend on the machine's
load (the result is deterministic); the latencies do: run it on a quiet machine.
"""

from __future__ import annotations

import argparse
import json
import math
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

from hybridpose.demo import DemoSpec, demo_simulation
from hybridpose.evaluate import PoseScorer, StepErrors
from hybridpose.evaluate.segments import scored_windows
from hybridpose.pretrained import checkpoint_dir
from hybridpose.sources import RecordingReplay
from hybridpose.stream import Engine, StreamingPredictor, StreamPose
from hybridpose.synth.generate import recording_name, simulate_dataset
from hybridpose.threads import limited_threads
from hybridpose.trained import load_models

MODE = "hybrid"


def run_lead(
    files: list[Path], checkpoints: Path, lead_ms: float, engine: Engine
) -> dict[str, Any]:
    models = load_models(checkpoints, [MODE])
    cfg = models.window
    lead = math.ceil(lead_ms * 1000 / cfg.bin_us)
    errors = StepErrors(cfg.steps, [MODE])
    starts: list[float] = []
    every: list[float] = []
    waits = joins = 0
    for path in files:
        replay = RecordingReplay(path, (2, 3), chunk_us=cfg.bin_us)
        scorer = PoseScorer(replay.labels, replay.projections, cfg, models.config.input_size,
                            scored_windows(str(path), cfg, (2, 3)))  # fmt: skip
        with StreamingPredictor.from_network(
            MODE, models.networks[MODE], cfg, replay.sensor_size,
            projections=replay.projections, engine=engine, ann_lead=lead,
        ) as predictor:  # fmt: skip
            poses: list[StreamPose] = []
            for t_end, chunk in replay:
                poses += predictor.feed(t_end, chunk)
            if predictor.background is not None:
                waits += predictor.background.waits
                joins += predictor.background.joins
        scorer.add(errors, MODE, poses)
        starts += [p.latency_s for p in poses if p.step == 1]
        every += [p.latency_s for p in poses]
    per_step = errors.sum2d[MODE] / errors.n2d[MODE]
    return {
        "lead_ms": lead * cfg.bin_us / 1000,
        "lead_bins": lead,
        "bin_us": cfg.bin_us,
        "mpjpe2d_px": float(errors.sum2d[MODE].sum() / errors.n2d[MODE].sum()),
        "mpjpe2d_px_per_step": per_step.tolist(),
        "mpjpe3d_mm": float(errors.sum3d[MODE].sum() / errors.n3d[MODE].sum()),
        "window_start_p50_ms": float(np.quantile(starts, 0.5)) * 1e3,
        "window_start_p99_ms": float(np.quantile(starts, 0.99)) * 1e3,
        "all_p50_ms": float(np.quantile(every, 0.5)) * 1e3,
        "all_p99_ms": float(np.quantile(every, 0.99)) * 1e3,
        "steps": len(every),
        "background_windows": joins,
        "background_waits": waits,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--leads-ms", default="0,10,30,50")
    parser.add_argument("--checkpoint", default=None, metavar="NAME|DIR")
    parser.add_argument("--engine", default="event", choices=("event", "dense"))
    parser.add_argument("--data", type=Path, default=None)
    parser.add_argument("--json", type=Path, default=None, help="also write the rows here")
    args = parser.parse_args()
    checkpoints = checkpoint_dir(args.checkpoint)
    data = args.data or Path(tempfile.gettempdir()) / "hybridpose-bench-async"
    spec = DemoSpec()
    sensor = load_models(checkpoints, [MODE]).config.sensor_size
    simulate_dataset(data, demo_simulation(spec, sensor), progress=False)
    files = [data / recording_name(s, m) for s in spec.subjects for m in spec.movements]
    print(f"# {len(files)} held-out recordings, cameras 2+3, {MODE} from {checkpoints}, "
          f"{args.engine} engine, 1 thread")  # fmt: skip
    rows = []
    with limited_threads(1):
        for lead_ms in (float(x) for x in args.leads_ms.split(",")):
            rows.append(run_lead(files, checkpoints, lead_ms, args.engine))
    sync = rows[0]["mpjpe2d_px"]
    print("| lead | 2D px | first -> last | 3D mm | / lead 0 | window start p50 / p99 ms "
          "| all steps p50 / p99 ms | windows waited |")  # fmt: skip
    print("|---|---|---|---|---|---|---|---|")
    for r in rows:
        steps = r["mpjpe2d_px_per_step"]
        print(
            f"| {r['lead_ms']:g} ms ({r['lead_bins']} bins) | {r['mpjpe2d_px']:.3f} | "
            f"{steps[0]:.2f} -> {steps[-1]:.2f} | {r['mpjpe3d_mm']:.1f} | "
            f"{r['mpjpe2d_px'] / sync:.3f} | {r['window_start_p50_ms']:.2f} / "
            f"{r['window_start_p99_ms']:.2f} | {r['all_p50_ms']:.3f} / {r['all_p99_ms']:.3f} | "
            f"{r['background_waits']} of {r['background_windows']} |",
            flush=True,
        )
    if args.json:
        args.json.write_text(json.dumps(rows, indent=2) + "\n")


if __name__ == "__main__":
    main()
