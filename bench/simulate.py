"""Benchmark: synthetic-dataset generation speed, event rates and memory.

For each sensor size (the full DAVIS346 346x260 and the 87x65 of the ``cpu`` model preset) it
simulates the same recordings (one test subject, a slow, a fast and a whole-body movement by
default), each in a fresh process, and reports: simulated seconds per wall second for all four
cameras, events per wall second, events per second per camera while the body moves and while
it is still, rendered frames per moving second, and the peak resident memory of the process.

It then estimates the time of the whole ``default`` dataset (17 subjects x 33 movements) at the
``cpu`` size from the measured speed of all 33 movements of one subject, for ``--workers``
processes; ``--full`` generates the whole dataset instead and reports its real time and size.

    python bench/simulate.py [--movements 1,16,22] [--subject 13] [--workers 2] [--full DIR]
        [--sizes 346x260,87x65] [--sensor davis346|clean] [--appearance clothed|plain]
        [--repetitions N] [--sampling frames|tiles] [--device DEV]

``--device`` renders and simulates with torch on that device (``cuda`` on a GPU machine;
``cpu`` times the torch path on the CPU); by default the compiled CPU kernels run.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

SIZES = ((346, 260), (87, 65))


def _child(
    size: str,
    subject: str,
    movements: str,
    out: str,
    sensor: str,
    appearance: Any,
    reps: str,
    sampling: Any,
    device: str,
) -> None:
    """Runs in a fresh process: simulate, then print one JSON line of measurements."""
    from hybridpose.synth.generate import PRESETS, simulate_recording, with_sensor

    width, height = (int(v) for v in size.split("x"))
    config = dataclasses.replace(PRESETS["default"], sensor_size=(width, height))
    config = dataclasses.replace(
        with_sensor(config, sensor), appearance=appearance, sampling=sampling
    )
    if reps != "default":
        performance = dataclasses.replace(config.performance, repetitions=int(reps))
        config = dataclasses.replace(config, performance=performance)
    results = []
    start = time.perf_counter()
    for number in (int(m) for m in movements.split(",")):
        t0 = time.perf_counter()
        path = Path(out) / f"m{number}.h5"
        r = simulate_recording(
            int(subject), number, config, path, None if device == "numba" else device
        )
        results.append(
            {
                "movement": number,
                "wall_s": time.perf_counter() - t0,
                "duration_s": r.duration_s,
                "moving_s": r.moving_s,
                "bytes": path.stat().st_size,
                "cameras": [dataclasses.asdict(c) for c in r.cameras],
            }
        )
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(
        json.dumps({"results": results, "wall_s": time.perf_counter() - start, "peak_mb": peak_mb})
    )


MODEL = ["davis346", "clothed", "default", "frames", "numba"]
"""The sensor, appearance, repetitions, sampling and device (``numba``: the compiled CPU
kernels) measured (set from the command line)."""


def measure(size: tuple[int, int], subject: int, movements: str) -> dict[str, Any]:
    """Simulate in a fresh process (so peak memory is this run's alone)."""
    with tempfile.TemporaryDirectory() as out:
        arguments = ["--child", f"{size[0]}x{size[1]}", str(subject), movements, out, *MODEL]
        proc = subprocess.run(
            [sys.executable, __file__, *arguments], capture_output=True, text=True, check=False
        )
        if proc.returncode != 0:
            sys.exit(proc.stderr)
        data: dict[str, Any] = json.loads(proc.stdout.strip().splitlines()[-1])
        return data


def summarise(size: tuple[int, int], data: dict[str, Any]) -> dict[str, float]:
    results = data["results"]
    wall = sum(r["wall_s"] for r in results)
    duration = sum(r["duration_s"] for r in results)
    moving = sum(r["moving_s"] for r in results)
    still = duration - moving
    cams = [c for r in results for c in r["cameras"]]
    events = sum(c["events"] for c in cams)
    return {
        "size": f"{size[0]}x{size[1]}",
        "simulated_s": duration,
        "wall_s": wall,
        "realtime": duration / wall,
        "events_per_wall_s": events / wall,
        "moving_ev_s_per_cam": sum(c["events_moving"] for c in cams) / (4 * moving),
        "still_ev_s_per_cam": sum(c["events_still"] for c in cams) / (4 * still),
        "frames_per_moving_s_per_cam": sum(c["frames"] for c in cams) / (4 * moving),
        "mb_per_simulated_s": sum(r["bytes"] for r in results) / 1e6 / duration,
        "peak_mb": data["peak_mb"],
    }


def main() -> None:
    if len(sys.argv) == 11 and sys.argv[1] == "--child":
        _child(*sys.argv[2:])
        return
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--subject", type=int, default=13)
    parser.add_argument("--movements", default="1,16,22", help="movement numbers to time")
    parser.add_argument("--workers", type=int, default=2, help="for the dataset estimate")
    parser.add_argument("--skip-estimate", action="store_true")
    parser.add_argument("--full", type=Path, help="generate the whole default dataset here")
    parser.add_argument("--sizes", default="346x260,87x65", help="sensor sizes to time")
    parser.add_argument("--sensor", default="davis346", choices=("davis346", "clean"))
    parser.add_argument("--appearance", default="clothed", choices=("clothed", "plain"))
    parser.add_argument("--repetitions", default="default", help="at most, per recording")
    parser.add_argument("--sampling", default="frames", choices=("frames", "tiles"))
    parser.add_argument("--device", default="numba", help="a torch device, or numba (default)")
    args = parser.parse_args()
    MODEL[:] = [args.sensor, args.appearance, args.repetitions, args.sampling, args.device]
    sizes = [tuple(int(v) for v in size.split("x")) for size in args.sizes.split(",")]

    # one tiny run compiles and caches the kernels before anything is timed
    measure((32, 24), args.subject, "1")
    print(f"subject {args.subject}, movements {args.movements}; 4 cameras each")
    header = (
        f"{'sensor':>8} {'sim s':>6} {'wall s':>7} {'x realtime':>10} {'Mev/wall s':>10} "
        f"{'ev/s/cam moving':>15} {'ev/s/cam still':>14} {'frames/s':>8} {'MB/sim s':>8} "
        f"{'peak MB':>7}"
    )
    print(header)
    for width, height in sizes:
        s = summarise((width, height), measure((width, height), args.subject, args.movements))
        print(
            f"{s['size']:>8} {s['simulated_s']:6.1f} {s['wall_s']:7.1f} {s['realtime']:10.3f} "
            f"{s['events_per_wall_s'] / 1e6:10.3f} {s['moving_ev_s_per_cam']:15,.0f} "
            f"{s['still_ev_s_per_cam']:14,.0f} {s['frames_per_moving_s_per_cam']:8,.0f} "
            f"{s['mb_per_simulated_s']:8.3f} {s['peak_mb']:7.0f}"
        )

    if not args.skip_estimate and args.full is None:
        all33 = ",".join(str(m) for m in range(1, 34))
        s = summarise(SIZES[1], measure(SIZES[1], args.subject, all33))  # the cpu size
        per_subject = s["wall_s"]
        total = per_subject * 17 / args.workers
        print(
            f"\ndefault dataset at {s['size']}: one subject's 33 movements = "
            f"{s['simulated_s']:.0f} simulated s in {per_subject:.0f} s wall "
            f"({s['realtime']:.2f}x real time); "
            f"17 subjects on {args.workers} workers ~ {total / 60:.1f} min, "
            f"~{s['mb_per_simulated_s'] * s['simulated_s'] * 17 / 1e3:.2f} GB"
        )
    if args.full is not None:
        if args.full.exists():
            shutil.rmtree(args.full)
        t0 = time.perf_counter()
        cmd = [
            sys.executable, "-m", "hybridpose", "simulate", "--out", str(args.full),
            "--resolution", "87x65", "--workers", str(args.workers), "--sensor", args.sensor,
            "--appearance", args.appearance, "--sampling", args.sampling,
        ]  # fmt: skip
        if args.repetitions != "default":
            cmd += ["--repetitions", args.repetitions]
        if args.device != "numba":
            cmd += ["--device", args.device]
        subprocess.run(cmd, check=True)
        wall = time.perf_counter() - t0
        size = sum(p.stat().st_size for p in args.full.glob("*.h5"))
        count = len(list(args.full.glob("*.h5")))
        print(
            f"\ndefault dataset at 87x65: {count} recordings in {wall / 60:.1f} min on "
            f"{args.workers} workers, {size / 1e9:.2f} GB"
        )


if __name__ == "__main__":
    main()
