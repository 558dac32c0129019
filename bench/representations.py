"""Benchmark: hybridpose's event histograms against tonic's ``ToFrame`` on the same events.

Run from the repository root (needs the bench extra: ``pip install -e '.[bench]'``)::

    python bench/representations.py [--events 1000000] [--repeats 7] [--seed 0]

Three cases, each timed as the median of ``--repeats`` runs after one warm-up, ours and tonic's
runs alternating so that a slow moment of a shared machine hits both:

* ``stacked``: one 10-bin stacked histogram of all the events (``stacked_histogram(n_bins=10)``
  against ``ToFrame(n_time_bins=10)``).
* ``frames``: the ANN's real workload, one 10-bin stacked histogram per consecutive block of
  7500 events.
* ``binned``: 10 ms bins over the whole stream, the SNN input (``binned_histograms`` with edges
  every 10 ms against ``ToFrame(time_window=10_000, start_time, end_time)``).

Before timing, the outputs are compared so that the race is fair: equal arrays where the two
binning rules coincide, and otherwise the exact difference explained. tonic's ``n_time_bins``
bins are ``floor(span / n)`` wide and half-open, so it drops the events at (and, when the span is
not a multiple of n, shortly before) the last timestamp; ours keeps them in the last bin. The
conversion of our events to tonic's layout (polarity -1/+1 -> 0/1) is done once, outside the
timing.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from collections.abc import Callable
from typing import Any

import numpy as np

from hybridpose.events import make_events
from hybridpose.representations import binned_histograms, stacked_histogram

SENSOR = (346, 260)
DURATION_US = 1_000_000  # a multiple of 10 bins and of 10 ms, so the bin edges can coincide
N_BINS = 10
SNN_BIN_US = 10_000
FRAME_EVENTS = 7500
TONIC_DTYPE = np.dtype([("x", np.int16), ("y", np.int16), ("t", np.int64), ("p", np.int8)])


def make_stream(n: int, seed: int) -> np.ndarray:
    """``n`` sorted events on the DHP19 sensor over one second, first at 0 and last at 1 s."""
    rng = np.random.default_rng(seed)
    t = np.sort(rng.integers(0, DURATION_US, n))
    t[0], t[-1] = 0, DURATION_US
    return make_events(
        rng.integers(0, SENSOR[0], n), rng.integers(0, SENSOR[1], n), t, rng.choice([-1, 1], n)
    )


def to_tonic(events: np.ndarray) -> np.ndarray:
    """tonic's layout: fields x, y, t, p with p an index into the polarity axis (0 OFF, 1 ON)."""
    converted = np.empty(len(events), TONIC_DTYPE)
    converted["x"] = events["x"]
    converted["y"] = events["y"]
    converted["t"] = events["t"]
    converted["p"] = events["p"] > 0
    return converted


def median_ms(
    ours: Callable[[], Any], theirs: Callable[[], Any], repeats: int
) -> tuple[float, float]:
    """Median wall time of each function in ms, runs alternating after one warm-up each."""
    ours()
    theirs()
    times: tuple[list[float], list[float]] = ([], [])
    for _ in range(repeats):
        for fn, bucket in ((ours, times[0]), (theirs, times[1])):
            start = time.perf_counter()
            fn()
            bucket.append(time.perf_counter() - start)
    return statistics.median(times[0]) * 1e3, statistics.median(times[1]) * 1e3


def check(condition: bool, what: str) -> None:
    print(f"  check: {what}: {'ok' if condition else 'FAILED'}")
    if not condition:
        sys.exit(2)


def check_stacked(events: np.ndarray, ours: np.ndarray, theirs: np.ndarray) -> None:
    """tonic equals ours minus the events it drops at the last timestamp (span % 10 == 0)."""
    last = events["t"] == events["t"][-1]
    dropped = np.zeros((2, *SENSOR[::-1]))
    np.add.at(
        dropped, ((events["p"][last] > 0).astype(int), events["y"][last], events["x"][last]), 1
    )
    expected = ours.reshape(N_BINS, 2, SENSOR[1], SENSOR[0]).astype(np.int64)
    expected[-1] -= dropped.astype(np.int64)
    check(ours.sum() == len(events), f"ours counts all {len(events)} events")
    check(
        theirs.sum() == len(events) - last.sum(),
        f"tonic counts all but the {last.sum()} event(s) at the last timestamp",
    )
    check(np.array_equal(expected, theirs), "arrays equal apart from those events")


def check_frames(
    events: np.ndarray, tonic_events: np.ndarray, starts: range, to_frame: Callable[..., Any]
) -> None:
    """Per frame, ours counts every event; tonic those before ``t0 + 10 * floor(span / 10)``."""
    for i in starts:
        block = events[i : i + FRAME_EVENTS]
        t = block["t"]
        kept_by_tonic = np.count_nonzero(t < t[0] + N_BINS * ((t[-1] - t[0]) // N_BINS))
        ours_total = stacked_histogram(block, SENSOR, N_BINS).sum()
        tonic_total = to_frame(tonic_events[i : i + FRAME_EVENTS]).sum()
        if ours_total != len(block) or tonic_total != kept_by_tonic:
            check(False, f"frame at event {i}: ours {ours_total}, tonic {tonic_total} events")
    check(True, "every frame: ours counts all its events, tonic those before t0 + 10 floor(D/10)")


def run(n_events: int, repeats: int, seed: int) -> None:
    try:
        import tonic
    except ImportError:
        print(
            "tonic is not installed; install the bench extra: pip install -e '.[bench]'",
            file=sys.stderr,
        )
        sys.exit(1)

    events = make_stream(n_events, seed)
    tonic_events = to_tonic(events)
    sensor3 = (*SENSOR, 2)
    print(
        f"{n_events} events, {SENSOR[0]}x{SENSOR[1]} sensor, {DURATION_US / 1e6:g} s; "
        f"numpy {np.__version__}, tonic {tonic.__version__}; median of {repeats} runs\n"
    )
    rows: list[tuple[str, float, float, int]] = []

    print("stacked: 10 time bins over the whole stream")
    to_frame = tonic.transforms.ToFrame(sensor_size=sensor3, n_time_bins=N_BINS)
    check_stacked(events, stacked_histogram(events, SENSOR, N_BINS), to_frame(tonic_events))
    ours, theirs = median_ms(
        lambda: stacked_histogram(events, SENSOR, N_BINS), lambda: to_frame(tonic_events), repeats
    )
    rows.append(("stacked (10 bins)", ours, theirs, n_events))

    print(f"frames: one 10-bin stacked histogram per {FRAME_EVENTS} events")
    starts = range(0, n_events - FRAME_EVENTS + 1, FRAME_EVENTS)
    check_frames(events, tonic_events, starts, to_frame)

    def ours_frames() -> None:
        for i in starts:  # each frame is dropped at once, as a data loader hands it on
            stacked_histogram(events[i : i + FRAME_EVENTS], SENSOR, N_BINS)

    def tonic_frames() -> None:
        for i in starts:
            to_frame(tonic_events[i : i + FRAME_EVENTS])

    ours, theirs = median_ms(ours_frames, tonic_frames, repeats)
    rows.append(
        (f"frames ({len(starts)} x {FRAME_EVENTS})", ours, theirs, len(starts) * FRAME_EVENTS)
    )

    print("binned: 10 ms bins, half-open [t0, t1), over the whole stream")
    edges = np.arange(0, DURATION_US + 1, SNN_BIN_US)
    to_bins = tonic.transforms.ToFrame(
        sensor_size=sensor3, time_window=SNN_BIN_US, start_time=0, end_time=DURATION_US
    )
    ours_bins, theirs_bins = binned_histograms(events, SENSOR, edges), to_bins(tonic_events)
    in_range = np.count_nonzero(events["t"] < DURATION_US)
    check(ours_bins.shape == theirs_bins.shape, f"same shape {ours_bins.shape}")
    check(
        ours_bins.sum() == theirs_bins.sum() == in_range,
        f"both count all {in_range} events in [0, 1 s)",
    )
    check(np.array_equal(ours_bins, theirs_bins), "arrays equal")
    del ours_bins, theirs_bins
    ours, theirs = median_ms(
        lambda: binned_histograms(events, SENSOR, edges), lambda: to_bins(tonic_events), repeats
    )
    rows.append((f"binned ({len(edges) - 1} x 10 ms)", ours, theirs, n_events))

    widths = (24, 10, 10, 12, 13, 12)
    header = ("case", "ours ms", "tonic ms", "ours Mev/s", "tonic Mev/s", "ours/tonic")
    print(
        "\n"
        + header[0].ljust(widths[0])
        + "".join(h.rjust(w) for h, w in zip(header[1:], widths[1:], strict=True))
    )
    for name, ours_ms, tonic_ms, n in rows:
        print(
            f"{name:<24}{ours_ms:>10.2f}{tonic_ms:>10.2f}{n / ours_ms / 1e3:>12.1f}"
            f"{n / tonic_ms / 1e3:>13.1f}{tonic_ms / ours_ms:>11.1f}x"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=1_000_000, help="number of events")
    parser.add_argument("--repeats", type=int, default=7, help="timed runs per case")
    parser.add_argument("--seed", type=int, default=0, help="random seed of the events")
    args = parser.parse_args()
    if args.events < FRAME_EVENTS or args.repeats < 1:
        parser.error(f"--events must be >= {FRAME_EVENTS} and --repeats >= 1")
    run(args.events, args.repeats, args.seed)


if __name__ == "__main__":
    main()
