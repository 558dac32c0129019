"""``hybridpose stream``: a trained model on a replayed recording or a live camera.

A live status line shows the stream time, the poses, the step latency (p50/p99) and, when
the recording has labels, the running 2D error; at the end a summary: latency, throughput
against real time, the lag behind the source in a real-time replay, and the errors.
"""

from __future__ import annotations

import math
import sys
import time
from collections import deque
from pathlib import Path

import numpy as np
from tqdm import tqdm

from hybridpose.errors import HybridPoseError
from hybridpose.evaluate import PoseScorer, StepErrors
from hybridpose.io.recording import Labels
from hybridpose.sources import LiveCamera, RecordingReplay
from hybridpose.stream import (
    Engine,
    LatencyStats,
    Mode,
    StreamingPredictor,
    checkpoint_geometry,
)
from hybridpose.viz import StreamFrame, save_stream_gif, stream_frame

STATUS_EVERY_S = 0.25
"""Seconds between updates of the status line."""
ANIMATION_S = 5.0
"""Stream time the ``--animate`` GIF covers (from the start)."""


def stream_command(
    checkpoints: Path,
    *,
    recording: Path | None,
    live: bool,
    mode: Mode,
    cameras: tuple[int, ...],
    realtime: bool,
    speed: float,
    reinit_every: int | None,
    engine: Engine,
    animate: Path | None,
    duration_s: float | None,
    quiet: bool,
    device: str = "cpu",
) -> int:
    """Run the stream; prints the summary; returns the exit status."""
    window, sensor = checkpoint_geometry(checkpoints, mode)
    labels: Labels | None = None
    if live:
        source: RecordingReplay | LiveCamera = LiveCamera(sensor)
        projections: list[np.ndarray | None] = [None]
    else:
        assert recording is not None
        if len(cameras) > 2:
            raise HybridPoseError("--cameras: at most two cameras (two give 3D poses)")
        replay = RecordingReplay(
            recording, cameras, chunk_us=min(1000, window.bin_us), realtime=realtime, speed=speed
        )
        if replay.sensor_size != sensor:
            raise HybridPoseError(
                f"{recording}: sensor {replay.sensor_size[0]}x{replay.sensor_size[1]}, but the "
                f"model expects {sensor[0]}x{sensor[1]}"
            )
        source, projections = replay, list(replay.projections)
        labels = replay.labels if replay.labels.count else None
    predictor = StreamingPredictor.from_checkpoints(
        checkpoints,
        mode,
        projections=projections,
        reinit_every=reinit_every,
        engine=engine,
        device=device,
    )
    scorer = None
    if labels is not None:
        scorer = PoseScorer(
            labels,
            [p for p in projections if p is not None],
            window,
            (predictor.height, predictor.width),
        )
    errors = StepErrors(predictor.reinit_every)
    lag = LatencyStats()
    frames: list[StreamFrame] = []
    total = None if live else replay.duration_us / 1e6
    if duration_s is not None and total is not None:
        total = min(total, duration_s)
    bar = tqdm(
        total=total,
        unit="s",
        desc=f"{mode}",
        disable=quiet,
        file=sys.stderr,
        bar_format="{desc} {n:.2f}/{total:.2f} s stream time [{elapsed}] {postfix}",
    )
    poses_seen = 0
    first_t: int | None = None
    last_t = 0
    wall0 = shown = time.perf_counter()
    # for --animate: the chunks (with their ends) that may still hold events of open bins
    recent: deque[tuple[int, list[np.ndarray]]] = deque()
    first_release: int | None = None  # the end of the first chunk: no bin is known before it
    try:
        for t_end, chunk in source:
            first_release = t_end if first_release is None else first_release
            poses = predictor.feed(t_end, chunk)
            now = time.perf_counter()
            if animate is not None:
                recent.append((t_end, chunk))
            for p in poses:
                if first_t is None:  # the stream starts at the first bin that holds events
                    first_t = max(p.t_us - window.bin_us, getattr(source, "start_us", 0))
                last_t = p.t_us
                if realtime and isinstance(source, RecordingReplay):
                    # bins that end before the replay starts are released with its first chunk
                    release = source.release_time(max(p.t_us, first_release))
                    lag.add(max(0.0, now - release))
                if animate is not None and p.t_us - first_t <= ANIMATION_S * 1e6:
                    frames.append(
                        stream_frame(
                            p, _bin_events(recent, p.t_us, window.bin_us), labels, projections
                        )
                    )
            next_start = predictor.next_bin_end_us
            while recent and next_start is not None and recent[0][0] <= next_start - window.bin_us:
                recent.popleft()  # only events before the next open bin: not needed any more
            if scorer is not None and poses:
                scorer.add(errors, mode, poses)
            poses_seen += len(poses)
            if poses and first_t is not None and now - shown >= STATUS_EVERY_S:
                shown = now
                bar.n = (last_t - first_t) / 1e6
                bar.set_postfix_str(_status(predictor, errors, mode, poses_seen), refresh=False)
                bar.refresh()
            if (
                duration_s is not None
                and first_t is not None
                and (last_t - first_t >= duration_s * 1e6)
            ):
                break
    except KeyboardInterrupt:
        print("stopped", file=sys.stderr)
    bar.close()
    wall = time.perf_counter() - wall0
    stream_s = max(0, last_t - (first_t or 0)) / 1e6
    if isinstance(source, LiveCamera) and source.dropped:
        print(f"dropped {source.dropped} events older than events already delivered (the "
              "camera's clock went back)", file=sys.stderr)  # fmt: skip
    print(_summary(predictor, errors, mode, poses_seen, stream_s, wall, lag, realtime))
    if animate is not None and frames:
        save_stream_gif(frames, animate, sensor, title=mode, fps=1e6 / window.bin_us / 2)
        print(f"wrote {animate}")
    return 0


def _bin_events(
    recent: deque[tuple[int, list[np.ndarray]]], t_us: int, bin_us: int
) -> list[np.ndarray]:
    """Per stream, the events of the bin ``[t_us - bin_us, t_us)`` among the recent chunks."""
    out = []
    for s in range(len(recent[0][1])):
        events = np.concatenate([chunk[s] for _, chunk in recent])
        t = events["t"]
        out.append(events[(t >= t_us - bin_us) & (t < t_us)])
    return out


def _mean_error(errors: StepErrors, mode: str, kind: str) -> float | None:
    total = errors.sum2d[mode] if kind == "2d" else errors.sum3d[mode]
    count = errors.n2d[mode] if kind == "2d" else errors.n3d[mode]
    return float(total.sum() / count.sum()) if count.sum() else None


def _status(predictor: StreamingPredictor, errors: StepErrors, mode: str, poses: int) -> str:
    lat = predictor.latency.summary()
    parts = [f"{poses} poses", f"step p50 {lat['p50_ms']:.2f} ms p99 {lat['p99_ms']:.2f} ms"]
    err = _mean_error(errors, mode, "2d")
    if err is not None:
        parts.append(f"2D error {err:.2f} px")
    return ", ".join(parts)


def _summary(
    predictor: StreamingPredictor,
    errors: StepErrors,
    mode: str,
    poses: int,
    stream_s: float,
    wall_s: float,
    lag: LatencyStats,
    realtime: bool,
) -> str:
    lat = predictor.latency.summary()
    lines = [
        f"{mode}: {poses} poses over {stream_s:.2f} s of stream in {wall_s:.2f} s "
        f"({stream_s / wall_s if wall_s > 0 else math.inf:.2f}x real time), "
        f"{predictor.streams} camera stream(s), {1e6 / predictor.bin_us:g} Hz output"
        + (
            f", ANN every {predictor.reinit_every} steps"
            if mode in ("hybrid", "ann_low_held")
            else ""
        ),
    ]
    if lat["count"]:
        lines.append(
            f"step latency (all cameras together, wall time): p50 {lat['p50_ms']:.3f} ms, p99 "
            f"{lat['p99_ms']:.3f} ms, mean {lat['mean_ms']:.3f} ms, max {lat['max_ms']:.3f} ms"
        )
    if realtime and lag.count:
        lines.append(
            f"lag behind the replayed camera: p50 {1e3 * (lag.quantile(0.5) or 0):.2f} ms, "
            f"p99 {1e3 * (lag.quantile(0.99) or 0):.2f} ms"
        )
    e2, e3 = _mean_error(errors, mode, "2d"), _mean_error(errors, mode, "3d")
    if e2 is not None:
        lines.append(
            f"error against the labels: 2D {e2:.2f} px"
            + (f", 3D {e3:.1f} mm" if e3 is not None else "")
        )
    return "\n".join(lines)


__all__ = ["stream_command"]
