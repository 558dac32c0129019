"""Benchmark: how much an idle gap before a step slows it (a live stream's case).

Run from the repository root::

    python bench/idle_gap.py [--gaps-ms 0,1,9] [--calls 300] [--rounds 2]

A stream released at the camera's pace steps once per bin and then waits for the next bin:
~0.6 ms at 1 ms bins, ~9 ms at 10 ms bins. Replayed as fast as possible the steps run back to
back. This script times three pieces of work, each ~0.3-0.7 ms, back to back (gap 0) and
after sleeping each gap, and prints the median time per call:

* ``compute``: a chain of dependent floating-point operations in registers (no memory);
* ``memory``: 200,000 random reads and writes over a 2 MB array (the order of the
  event-driven engine's working set for two cameras: membranes, weights, readout);
* ``engine``: the event-driven engine's step of the shipped 1 kHz hybrid's SNN
  (``cpu-1khz``, 64x64, one batch of two samples) on the same ~10-event bin each call, from
  the state a real stream left (the demo's recording, 2 s at 1 ms bins, cameras 2 and 3).

On the 2-core VM this project is measured on, the compute chain does not care about gaps
while the memory-bound work and the engine slow by tens of percent after one: the data the
step needs is no longer in the core's caches. So a step in a live stream costs more than the
same step in a replay; ``bench/stream.py --realtime`` measures that stream.
"""

from __future__ import annotations

import argparse
import platform
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import numpy.typing as npt
import torch
from stream import recording  # bench/stream.py's recording (this directory)

from hybridpose._jit import jit
from hybridpose.evaluate import load_models
from hybridpose.nn.event_driven import EventDrivenSNN
from hybridpose.nn.snn import SNN
from hybridpose.pretrained import pretrained_dir
from hybridpose.representations import EventCounter
from hybridpose.sources import RecordingReplay


@jit
def _chain(n: int) -> float:
    a, b = 1.0, 0.5
    for _ in range(n):
        a = a * 0.999999 + b
        b = b * 1.000001 - 0.1
    return a + b


@jit
def _touch(buffer: npt.NDArray[np.float32], index: npt.NDArray[np.int64]) -> float:
    total = 0.0
    for i in index:
        total += buffer[i]
        buffer[i] = total * 1e-9
    return total


def engine_step(data: Path) -> Callable[[], object]:
    """One event-driven step of ``cpu-1khz``'s SNN, from a real stream's state."""
    models = load_models(pretrained_dir("cpu-1khz"), ["hybrid"])
    path = recording(data)
    cfg = models.window
    replay = RecordingReplay(path, (2, 3), chunk_us=cfg.bin_us)
    replay = RecordingReplay(path, (2, 3), chunk_us=cfg.bin_us, end_us=replay.start_us + 2_000_000)
    counter = EventCounter(replay.sensor_size, cfg.crop, cfg.downsample)
    snn = models.networks["hybrid"].snn  # the hybrid's SNN
    assert isinstance(snn, SNN)
    engine = EventDrivenSNN(snn)
    engine.reset(2, *counter.shape[1:])
    bins = np.zeros((2, *counter.shape), dtype=np.float32)
    for _, chunk in replay:
        bins[...] = 0.0
        for s, events in enumerate(chunk):
            counter.add(events, bins[s])
        engine.step_uv(bins)
    last = bins.copy()
    return lambda: engine.step_uv(last)


def median_us(work: Callable[[], object], gap_s: float, calls: int) -> float:
    times = []
    for _ in range(calls):
        if gap_s:
            time.sleep(gap_s)
        t = time.perf_counter()
        work()
        times.append(time.perf_counter() - t)
    return float(np.median(times)) * 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--gaps-ms", default="0,1,9")
    parser.add_argument("--calls", type=int, default=300)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--data", type=Path, default=None)
    args = parser.parse_args()
    torch.set_num_threads(1)
    gaps = [float(g) / 1e3 for g in args.gaps_ms.split(",")]
    buffer = np.ones(2_000_000 // 4, dtype=np.float32)
    index = np.random.default_rng(0).integers(0, len(buffer), 200_000)
    data = args.data or Path(tempfile.gettempdir()) / "hybridpose-bench-stream"
    work: dict[str, Callable[[], object]] = {
        "compute": lambda: _chain(300_000),
        "memory": lambda: _touch(buffer, index),
        "engine": engine_step(data),
    }
    for w in work.values():  # compile, first touch
        w()
    print(f"# {platform.processor() or platform.machine()}: median us per call, "
          f"{args.calls} calls per cell")  # fmt: skip
    print("round  work     " + "  ".join(f"gap {g * 1e3:g} ms" for g in gaps) + "  (x gap 0)")
    for r in range(args.rounds):
        for name, w in work.items():
            cells = [median_us(w, g, args.calls) for g in gaps]
            ratios = " ".join(f"{c / cells[0]:.2f}" for c in cells[1:])
            print(f"{r + 1:5d}  {name:7s}  " + "  ".join(f"{c:8.0f}" for c in cells)
                  + f"  ({ratios})", flush=True)  # fmt: skip


if __name__ == "__main__":
    main()
