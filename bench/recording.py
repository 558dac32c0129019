"""Benchmark: streamed writes and lazy window reads of a large native recording.

Writes one camera with N events (default 10^8, about 1.3 GB before compression) at a constant
rate through ``RecordingWriter`` in chunks of 10^6 events, then reads 100 ms windows at random
times and the 7500-event ANN frames before them, and reports per read: wall time, events returned
and the bytes actually read from the file (counted through a file object), against the file size.

    python bench/recording.py [--events 1e8] [--rate 1e5] [--dir /tmp] [--keep]
"""

from __future__ import annotations

import argparse
import io
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
from tqdm import tqdm

from hybridpose.events import EVENT_DTYPE
from hybridpose.io.recording import CameraCalibration, Recording, RecordingMeta, RecordingWriter

CHUNK = 1_000_000


class CountingFile(io.RawIOBase):
    """Read-only file object that counts the bytes h5py pulls through it."""

    def __init__(self, path: Path) -> None:
        self._f = path.open("rb", buffering=0)
        self.bytes_read = 0

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def seek(self, offset: int, whence: int = 0) -> int:
        return self._f.seek(offset, whence)

    def tell(self) -> int:
        return self._f.tell()

    def readinto(self, buffer: Any) -> int:
        n = self._f.readinto(buffer) or 0
        self.bytes_read += n
        return n

    def close(self) -> None:
        self._f.close()
        super().close()


def write(path: Path, n_events: int, rate_hz: float, seed: int) -> float:
    rng = np.random.default_rng(seed)
    gap_us = 1e6 / rate_hz
    cam = CameraCalibration(np.eye(3, 4), np.zeros(3), "bench")
    start = time.perf_counter()
    with RecordingWriter(path, (346, 260), [cam], RecordingMeta("bench")) as w:
        for a in tqdm(range(0, n_events, CHUNK), desc="write", unit="Mev", unit_scale=False):
            n = min(CHUNK, n_events - a)
            ev = np.empty(n, dtype=EVENT_DTYPE)
            ev["x"] = rng.integers(0, 346, n)
            ev["y"] = rng.integers(0, 260, n)
            # constant rate with jitter, sorted within the chunk, after the previous chunk
            ev["t"] = np.sort(((a + np.arange(n) + rng.random(n)) * gap_us).astype(np.int64))
            ev["p"] = rng.choice(np.array([-1, 1], np.int8), n)
            w.append_events(0, ev)
    return time.perf_counter() - start


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=float, default=1e8)
    parser.add_argument("--rate", type=float, default=1e5, help="events per second")
    parser.add_argument("--reads", type=int, default=20)
    parser.add_argument("--dir", type=Path, default=None)
    parser.add_argument("--keep", action="store_true")
    args = parser.parse_args()
    n_events = int(args.events)
    duration_us = int(n_events / args.rate * 1e6)
    if duration_us < 400_000:
        parser.error("--events / --rate must span at least 0.4 s (the reads need 100 ms windows)")
    path = Path(tempfile.mkdtemp(dir=args.dir)) / "bench.h5"
    try:
        measure(path, n_events, duration_us, args.rate, args.reads)
    finally:
        if args.keep and path.exists():
            print(f"kept {path}")
        else:  # also on Ctrl-C or an error: never leave a GB-sized file behind
            path.unlink(missing_ok=True)
            path.parent.rmdir()
    return 0


def measure(path: Path, n_events: int, duration_us: int, rate: float, reads: int) -> None:
    seconds = write(path, n_events, rate, seed=0)
    size = path.stat().st_size
    print(
        f"wrote {n_events:,} events in {seconds:.1f} s ({n_events / seconds / 1e6:.2f} Mev/s), "
        f"file {size / 1e9:.2f} GB ({size / n_events:.1f} B/event)"
    )
    rng = np.random.default_rng(1)
    margin = min(1_000_000, duration_us // 4)  # keep windows and frames inside the stream
    f = CountingFile(path)
    times, nbytes, counts = [], [], []
    with Recording(f) as rec:
        t_open = time.perf_counter()
        rec.ms_index(0)
        index_s = time.perf_counter() - t_open
        for t0 in rng.integers(margin, duration_us - margin, reads):
            before, start = f.bytes_read, time.perf_counter()
            window = rec.events(0, int(t0), int(t0) + 100_000)
            frame = rec.events_before(0, int(t0), 7500)
            times.append(time.perf_counter() - start)
            nbytes.append(f.bytes_read - before)
            counts.append(len(window) + len(frame))
    f.close()
    print(f"millisecond index loaded once in {index_s * 1e3:.1f} ms")
    print(
        f"100 ms window + 7500-event frame, {reads} random reads: median "
        f"{statistics.median(times) * 1e3:.2f} ms, {statistics.median(counts):,.0f} events, "
        f"{statistics.median(nbytes) / 1e6:.2f} MB read of {size / 1e9:.2f} GB "
        f"({statistics.median(nbytes) / size:.2e} of the file)"
    )


if __name__ == "__main__":
    sys.exit(main())
