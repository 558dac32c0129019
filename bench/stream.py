"""Benchmark: the streaming predictor's per-step latency and sustained throughput.

Run from the repository root::

    python bench/stream.py [--seconds 6] [--bins-us 10000,1000] [--threads 1] [--cameras 1,2]
                           [--engines dense,event] [--modes snn,hybrid] [--ann-lead-ms 30]
                           [--sets cpu,cpu-sparse|DIR,...] [--realtime] [--profile] [--data DIR]
                           [--json FILE]

Every shipped set trained for the bins (87x65 sensor, 64x64 crop: ``cpu`` and the sparse
``cpu-sparse`` for 10 ms bins, the 1 kHz hybrid ``cpu-1khz`` for 1 ms bins; any other bin
length runs ``cpu``'s; ``--sets`` names others, shipped or directories) streams one held-out
synthetic recording (subject 18, star jumps: the demo's; simulated once into ``--data``) on
camera 3 alone and on cameras 2 and 3 (one batch of two), as fast as possible, in chunks of
one bin. For each bin
length (10 ms: the paper's 100 Hz; 1 ms: 1 kHz), torch thread count, number of cameras and SNN
engine, it runs

* ``snn``: the SNN alone, one step per bin;
* ``hybrid``: the same with the ANN re-initialising the SNN at 10 Hz (every 10 bins at 10 ms,
  every 100 at 1 ms), synchronously (the ANN in the step of each window's
  first bin) and, as ``hybrid+lead``, with the ANN in a second thread ``--ann-lead-ms`` ahead
  of each window (:mod:`hybridpose.reinit`), side by side;

and reports, from the predictor's own per-step wall times (binning, the networks, decoding and
triangulation of both cameras): p50/p99 of the SNN steps, p50 and p99 of the steps that start
a window (where the synchronous hybrid runs its ANN) with how many of them waited for the
background ANN and for how long in all (a join waits at least for the lead's last bin, handed
over at the end of the step before it), p99 over all steps, and the sustained throughput over
the whole stream (steps per second, events per second, multiples of real time); for the
event-driven engine, its work per step and camera (spikes, neurons whose LIF step ran).
Engines: ``dense`` (PyTorch, BatchNorm folded, inference mode) and ``event``
(:mod:`hybridpose.nn.event_driven`, event-driven convolutions in numba). Both engines are
measured side by side in the same run, in alternating order, after a warm-up stream of one
second that is not timed. ``--profile`` prints torch.profiler's top operators of one dense
1 ms run.

As fast as possible (the default) a background ANN cannot win: the worker's chain (the ANN,
then the lead's bins) is longer than the stream's (the lead's bins), so every window start
waits about the ANN's time. ``--realtime`` releases the chunks at the camera's pace, which is
what a live camera gives and where the lead buys the ANN its time; its steps cost more than
a replay's, since each follows an idle wait (``bench/idle_gap.py`` measures why).

The target: faster than real time with 1 ms bins on 2 cores, p99 step latency below
1 ms.
"""

from __future__ import annotations

import argparse
import itertools
import json
import math
import platform
import tempfile
import time
from dataclasses import replace
from pathlib import Path
from typing import Any, cast

import numpy as np
import torch

from hybridpose.demo import DemoSpec, demo_simulation
from hybridpose.evaluate import load_models
from hybridpose.nn.event_driven import EventDrivenSNN
from hybridpose.pretrained import SHIPPED, checkpoint_dir, pretrained_dir
from hybridpose.recipes import recipe
from hybridpose.sources import RecordingReplay
from hybridpose.stream import Engine, Mode, StreamingPredictor
from hybridpose.synth.generate import recording_name, simulate_dataset

SUBJECT, MOVEMENT = 18, 22


def recording(data: Path) -> Path:
    spec = DemoSpec(subjects=(SUBJECT,), movements=(MOVEMENT,))
    models = load_models(pretrained_dir("cpu"))
    simulate_dataset(data, demo_simulation(spec, models.config.sensor_size), progress=False)
    return data / recording_name(SUBJECT, MOVEMENT)


def shipped_for(bin_us: int) -> list[str]:
    """The shipped sets trained for ``bin_us`` bins (``cpu`` for any other length: speed
    only); a shipped set is named after its preset, whose recipe gives its bins."""
    return [n for n in SHIPPED if recipe(n).window.bin_us == bin_us] or ["cpu"]


def run_once(
    path: Path,
    checkpoints: str,
    mode: Mode,
    bin_us: int,
    engine: Engine,
    seconds: float,
    skip_s: float,
    cameras: tuple[int, ...] = (2, 3),
    lead_ms: float = 0.0,
    realtime: bool = False,
) -> dict[str, Any]:
    models = load_models(checkpoint_dir(checkpoints))
    window = replace(models.window, bin_us=bin_us)
    reinit = 100_000 // bin_us  # the ANN at 10 Hz
    replay = RecordingReplay(path, cameras, chunk_us=bin_us)
    end = replay.start_us + int((skip_s + seconds) * 1e6)
    replay = RecordingReplay(path, cameras, chunk_us=bin_us, end_us=min(end, replay.end_us))
    chunks = list(replay)  # read before timing: the benchmark is about the predictor
    predictor = StreamingPredictor.from_network(
        mode,
        models.networks[mode],
        window,
        replay.sensor_size,
        projections=replay.projections,
        reinit_every=reinit,
        engine=engine,
        ann_lead=math.ceil(lead_ms * 1000 / bin_us),
    )
    skip_until = replay.start_us + int(skip_s * 1e6)
    waited, waited_s = 0, 0.0
    snn_steps: list[float] = []
    ann_steps: list[float] = []
    every: list[float] = []
    events = 0
    wall = 0.0
    work = _EngineWork()
    wall0 = time.perf_counter()
    for t_end, chunk in chunks:
        if realtime:  # release the chunk when the camera would have delivered it
            delay = wall0 + (t_end - replay.start_us) / 1e6 - time.perf_counter()
            if delay > 0:
                time.sleep(delay)
        t = time.perf_counter()
        poses = predictor.feed(t_end, chunk)
        dt = time.perf_counter() - t
        if predictor.background is not None and t_end <= skip_until:
            # waits of the untimed warm-up second
            waited, waited_s = predictor.background.waits, predictor.background.wait_s
        if t_end <= skip_until:
            continue
        wall += dt
        events += sum(len(c) for c in chunk)
        work.add(predictor.runner, len(poses))
        for p in poses:
            (ann_steps if p.step == 1 and mode == "hybrid" else snn_steps).append(p.latency_s)
            every.append(p.latency_s)
    steps = len(every)
    stream_s = steps * bin_us / 1e6
    waits = wait_ms = None
    if predictor.background is not None:
        waits = predictor.background.waits - waited
        wait_ms = (predictor.background.wait_s - waited_s) * 1e3
    predictor.close()

    def q(x: list[float], p: float) -> float | None:
        return float(np.quantile(x, p)) * 1e3 if x else None

    return {
        "checkpoints": checkpoints,
        "mode": f"{mode}+lead" if lead_ms else mode,
        "ann_lead_ms": lead_ms,
        "realtime": realtime,
        "bin_us": bin_us,
        "engine": engine,
        "threads": torch.get_num_threads(),
        "cameras": len(cameras),
        "steps": steps,
        "snn_p50_ms": q(snn_steps, 0.5),
        "snn_p99_ms": q(snn_steps, 0.99),
        "ann_p50_ms": q(ann_steps, 0.5),
        "ann_p99_ms": q(ann_steps, 0.99),
        "window_starts_waited": waits,
        "waited_ms": wait_ms,
        "all_p99_ms": q(every, 0.99),
        "steps_per_s": steps / wall,
        "events_per_s": events / wall,
        "realtime_factor": stream_s / wall,
        "events_per_step": events / max(1, steps),
        **work.summary(len(cameras)),
    }


class _EngineWork:
    """The event-driven engine's work per step, read after each one-bin chunk: spikes and
    neurons updated (the lazy leak's), per camera; the dense engine's reads as None."""

    def __init__(self) -> None:
        self.steps = self.spikes = self.updated = 0

    def add(self, runner: object, poses: int) -> None:
        if poses != 1 or not isinstance(runner, EventDrivenSNN):
            return  # one step per chunk: the counts are that step's
        self.steps += 1
        self.spikes += sum(int(n.sum()) for n in runner.spike_counts().values())
        self.updated += sum(int(n.sum()) for n in runner.updated_counts().values())

    def summary(self, cameras: int) -> dict[str, float | None]:
        if not self.steps:
            return {"spikes_per_step": None, "updated_per_step": None}
        per = self.steps * cameras
        return {"spikes_per_step": self.spikes / per, "updated_per_step": self.updated / per}


def _fmt(x: float | None, digits: int = 3) -> str:
    return "-" if x is None else f"{x:.{digits}f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seconds", type=float, default=6.0)
    parser.add_argument("--bins-us", default="10000,1000")
    parser.add_argument("--threads", default="1")
    parser.add_argument("--cameras", default="1,2", help="camera streams: 1 (camera 3) or 2")
    parser.add_argument("--engines", default="dense,event")
    parser.add_argument("--modes", default="snn,hybrid")
    parser.add_argument(
        "--ann-lead-ms",
        type=float,
        default=30.0,
        help="the hybrid's ANN beside the stream, this far ahead (0: not run)",
    )
    parser.add_argument(
        "--realtime",
        action="store_true",
        help="release the chunks at the camera's pace (the latency a live camera "
        "sees; the throughput is then the compute's share of real time)",
    )
    parser.add_argument(
        "--sets",
        default=None,
        help="checkpoint sets, shipped names or directories, comma-separated (default: "
        "every shipped set trained for the bins; cpu for other bins)",
    )
    parser.add_argument("--profile", action="store_true")
    parser.add_argument("--data", type=Path, default=None)
    parser.add_argument("--json", type=Path, default=None, help="also write the rows here")
    args = parser.parse_args()
    data = args.data or Path(tempfile.gettempdir()) / "hybridpose-bench-stream"
    path = recording(data)
    print(f"# {platform.processor() or platform.machine()}, torch {torch.__version__}, "
          f"recording {path.name} cameras 2+3, {args.seconds:g} s timed per run")  # fmt: skip
    rows = []
    engines = cast(list[Engine], args.engines.split(","))
    for bin_us in (int(b) for b in args.bins_us.split(",")):
        sets = args.sets.split(",") if args.sets else shipped_for(bin_us)
        for threads, checkpoints in itertools.product(
            (int(t) for t in args.threads.split(",")), sets
        ):
            torch.set_num_threads(threads)
            for n_cams, mode in itertools.product(
                (int(c) for c in args.cameras.split(",")), cast(list[Mode], args.modes.split(","))
            ):
                cams = (2, 3) if n_cams == 2 else (3,)
                order = engines if (bin_us + n_cams) % 2 else engines[::-1]
                leads = [0.0, args.ann_lead_ms] if mode == "hybrid" and args.ann_lead_ms else [0.0]
                for engine, lead in itertools.product(order, leads):
                    row = run_once(
                        path, checkpoints, mode, bin_us, engine, args.seconds, 1.0, cams, lead,
                        args.realtime,
                    )  # fmt: skip
                    rows.append(row)
                    waited = f"waited {row['window_starts_waited']}" + (
                        "" if row["waited_ms"] is None else f", {row['waited_ms']:.1f} ms in all"
                    )
                    print(
                        f"{checkpoints}  bin {bin_us / 1000:g} ms  threads {threads}  "
                        f"cams {n_cams}  "
                        f"{row['mode']:11s}  {engine:5s}  "
                        f"SNN step p50 {_fmt(row['snn_p50_ms'])} p99 {_fmt(row['snn_p99_ms'])} ms"
                        f"  window start p50 {_fmt(row['ann_p50_ms'], 2)} p99 "
                        f"{_fmt(row['ann_p99_ms'], 2)} ms ({waited})"
                        f"  all p99 "
                        f"{_fmt(row['all_p99_ms'])} ms  {row['steps_per_s']:.0f} steps/s  "
                        f"{row['events_per_s'] / 1e3:.0f} kev/s  "
                        f"{row['realtime_factor']:.2f}x real time"
                        f"  ({row['events_per_step']:.1f} events/step"
                        + (
                            f", per camera {row['spikes_per_step']:.0f} spikes, "
                            f"{row['updated_per_step'] / 1e3:.1f} k neurons updated)"
                            if row["spikes_per_step"] is not None
                            else ")"
                        ),
                        flush=True,
                    )
    if args.json:
        args.json.write_text(json.dumps(rows, indent=2) + "\n")
    if args.profile:
        torch.set_num_threads(1)
        with torch.profiler.profile() as prof:
            run_once(path, "cpu-1khz", "snn", 1000, "dense", min(args.seconds, 2.0), 0.5)
        print(prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=12))


if __name__ == "__main__":
    main()
