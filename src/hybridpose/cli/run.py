"""The commands that run and ship trained models: demo, stream, export.

Each command is a pair: ``add_<command>`` adds its parser, ``run_<command>`` runs it.

``hybridpose stream`` shows a live status line with the stream time, the poses, the step latency
(p50/p99) and, when the recording has labels, the running 2D error; at the end a summary:
latency, throughput against real time, the lag behind the source in a real-time replay, and the
errors.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from collections import deque
from pathlib import Path
from typing import TYPE_CHECKING, NoReturn

from hybridpose.atomic import write_text_atomic
from hybridpose.cli.args import (
    Subparsers,
    add_command,
    float_above,
    int_at_least,
    name_or_path,
    path_arg,
)
from hybridpose.errors import HybridPoseError
from hybridpose.paths import check_output_dir, check_output_file
from hybridpose.variants import MAIN
from hybridpose.variants import names as variant_names

if TYPE_CHECKING:
    import numpy as np
    import torch
    from tqdm import tqdm

    from hybridpose.data import WindowConfig
    from hybridpose.evaluate import StepErrors
    from hybridpose.io.recording import Labels
    from hybridpose.sources import LiveCamera, RecordingReplay
    from hybridpose.stream import LatencyStats, Mode, StreamingPredictor, StreamPose
    from hybridpose.viz import StreamFrame

STREAM_THREADS = 1
"""The streaming commands' torch and numba threads (hybridpose.threads says why)."""
STATUS_EVERY_S = 0.25
"""Seconds between updates of the status line."""
SCORE_EVERY = 200
"""Poses scored together: one call of the scorer costs ~0.3 ms of numpy whatever its size,
as much as a 1 kHz step (scored one by one, the command ran at 0.63x real time)."""
ANIMATION_S = 5.0
"""Stream time the ``--animate`` GIF covers (from the start)."""


def _add_checkpoint_option(p: argparse.ArgumentParser, holds: str = "checkpoints") -> None:
    """``--checkpoint NAME|DIR`` of the commands that run trained models
    (:func:`hybridpose.pretrained.checkpoint_dir`; default: the shipped ``cpu`` set)."""
    from hybridpose.pretrained import SHIPPED

    p.add_argument(
        "--checkpoint",
        type=name_or_path,
        metavar="NAME|DIR",
        help=f"a shipped set of weights ({', '.join(SHIPPED)}) or a training run's directory "
        f"of {holds} (default: cpu; ./{SHIPPED[0]} for a directory named like a shipped set)",
    )


def _add_threads_option(p: argparse.ArgumentParser) -> None:
    """``--threads`` of the commands that stream (hybridpose.threads)."""
    p.add_argument(
        "--threads",
        type=int_at_least(1),
        default=STREAM_THREADS,
        metavar="N",
        help=f"torch and numba threads while streaming (default {STREAM_THREADS}: steady "
        "latency when other processes share the cores)",
    )


def _add_engine_option(p: argparse.ArgumentParser) -> None:
    """``--engine`` of the commands that stream (hybridpose.stream's SNN engines)."""
    p.add_argument(
        "--engine",
        choices=("dense", "event"),
        default="event",
        help="the SNN's engine: event-driven (CPU, the default) or PyTorch",
    )


# ------------------------------------------------------------------------------ demo
def add_demo(subparsers: Subparsers) -> None:
    p = add_command(
        subparsers,
        "demo",
        "stream the shipped models side by side on new simulated recordings (the main job)",
        run_demo,
    )
    p.add_argument(
        "--out", type=path_arg, default=Path("demo"), help="output directory (default demo)"
    )
    _add_checkpoint_option(p)
    p.add_argument(
        "--workers",
        type=int_at_least(1),
        default=2,
        metavar="N",
        help="simulation processes (default 2)",
    )
    _add_engine_option(p)
    _add_threads_option(p)
    p.add_argument(
        "--seed",
        type=int_at_least(0),
        default=2026,
        metavar="N",
        help="the held-out recordings' seed (default 2026)",
    )
    p.add_argument("--quiet", action="store_true", help="no progress bars")


def run_demo(args: argparse.Namespace) -> int:
    from hybridpose import demo
    from hybridpose.pretrained import checkpoint_dir
    from hybridpose.threads import limited_threads

    check_output_dir(args.out)
    checkpoints = checkpoint_dir(args.checkpoint)
    spec = demo.DemoSpec(out_dir=args.out, checkpoints=checkpoints, workers=args.workers,
                         engine=args.engine, seed=args.seed)  # fmt: skip
    with limited_threads(args.threads):
        report = demo.run_demo(spec, progress=not args.quiet)
    print(demo.demo_table(report))
    s = report["setup"]
    print(
        f"{s['recordings']} held-out recordings, {s['scored_windows_per_camera']} "
        f"scored windows per camera; 2D px of the {s['sensor_size'][0]}x{s['sensor_size'][1]} "
        f"sensor, power at {s['output_rate_hz']:g} Hz from counted operations, latency per "
        f"step (both cameras); {s['total_s']:.0f} s in all"
    )
    print(f"wrote {args.out / 'report.md'}, report.json, error_vs_step.png, "
          f"error_vs_power.png, {MAIN}.gif")  # fmt: skip
    return 0


# ------------------------------------------------------------------------------ stream
def add_stream(subparsers: Subparsers) -> None:
    p = add_command(
        subparsers,
        "stream",
        "run a trained model on a replayed recording or a live camera, pose by pose",
        run_stream,
    )
    source = p.add_mutually_exclusive_group(required=True)
    source.add_argument("--recording", type=path_arg, metavar="FILE", help="replay this recording")
    source.add_argument(
        "--live", action="store_true", help="a live DAVIS or DVXplorer (needs the live extra)"
    )
    _add_checkpoint_option(p)
    p.add_argument(
        "--model",
        choices=variant_names(),
        default=MAIN,
        help=f"the model variant (default {MAIN})",
    )
    p.add_argument(
        "--cameras",
        type=int_at_least(0),
        nargs="+",
        default=[2, 3],
        metavar="N",
        help="cameras of the recording to stream; two give 3D (default 2 3)",
    )
    p.add_argument(
        "--realtime",
        action="store_true",
        help="replay at the recording's pace (default: as fast as possible)",
    )
    p.add_argument(
        "--speed",
        type=float_above(0.0),
        metavar="X",
        help="replay in real time, X times faster (implies --realtime)",
    )
    p.add_argument(
        "--reinit-every",
        type=int_at_least(1),
        metavar="K",
        help="bins between ANN initialisations (default: the checkpoint's window)",
    )
    _add_engine_option(p)
    p.add_argument(
        "--ann-lead",
        type=float_above(0.0, inclusive=True),
        default=0.0,
        metavar="MS",
        help="hybrids: run the ANN in a second thread on the events MS before each window, "
        "the SNN catching up there, so that no step waits for it (rounded up to whole bins; "
        "default 0: in the window's first step)",
    )
    p.add_argument(
        "--animate",
        type=path_arg,
        metavar="OUT.gif",
        help="write an animation of the events and the poses (first seconds)",
    )
    p.add_argument(
        "--duration",
        type=float_above(0.0),
        metavar="S",
        help="stop after S seconds of stream time",
    )
    p.add_argument(
        "--device",
        default="cpu",
        help="torch device of the networks (default cpu; a GPU needs --engine dense)",
    )
    _add_threads_option(p)
    p.add_argument(
        "--summary-json",
        type=path_arg,
        metavar="FILE",
        help="also write the summary as JSON: latency_ms {p50, p99, max}, realtime_factor, "
        "mpjpe2d_px, mpjpe3d_mm, steps, events, and the run's settings",
    )
    p.add_argument("--quiet", action="store_true", help="no status line")


def run_stream(args: argparse.Namespace) -> int:
    """Run the stream; prints the summary; returns the exit status."""
    from hybridpose.devices import resolve_device
    from hybridpose.pretrained import checkpoint_dir
    from hybridpose.stream import checkpoint_geometry, stream_variant
    from hybridpose.threads import limited_threads

    # every argument is checked before any work: the engine and the device go together
    # whatever the machine has, so that combination is checked before the machine's devices
    if args.engine == "event" and not _names_the_cpu(args.device):
        raise HybridPoseError(
            f"the event-driven engine runs on the CPU only, not on {args.device}; use "
            "--engine dense there"
        )
    device = resolve_device(args.device)
    if args.animate is not None:
        check_output_file(args.animate, (".gif",))
    if args.speed is not None:
        args.realtime = True  # a replay speed is a real-time replay
    if args.summary_json is not None:
        check_output_file(args.summary_json, (".json",))
    if args.ann_lead and stream_variant(args.model).schedule.snn != "from_ann":
        raise HybridPoseError(
            f"--ann-lead: the {args.model} model has no ANN that initialises a network; it "
            "applies to the hybrids"
        )
    checkpoints = checkpoint_dir(args.checkpoint)
    mode: Mode = args.model
    window, sensor = checkpoint_geometry(checkpoints, mode)
    with limited_threads(args.threads):
        return _stream(args, checkpoints, mode, window, sensor, device)


def _stream(
    args: argparse.Namespace,
    checkpoints: Path,
    mode: Mode,
    window: WindowConfig,
    sensor: tuple[int, int],
    device: torch.device,
) -> int:
    """The stream itself, the arguments checked (:func:`run_stream`)."""
    from hybridpose.stream import StreamingPredictor

    source, projections, labels = _open_source(args, window.bin_us, sensor)
    predictor = StreamingPredictor.from_checkpoints(
        checkpoints,
        mode,
        projections=projections,
        reinit_every=args.reinit_every,
        engine=args.engine,
        device=device,
        ann_lead=math.ceil(args.ann_lead * 1000 / window.bin_us),
    )
    with predictor:
        return _stream_with(args, predictor, source, checkpoints, window, labels, projections)


def _stream_with(
    args: argparse.Namespace,
    predictor: StreamingPredictor,
    source: RecordingReplay | LiveCamera,
    checkpoints: Path,
    window: WindowConfig,
    labels: Labels | None,
    projections: list[np.ndarray | None],
) -> int:
    """Feed ``source`` to ``predictor``; the summary, the JSON and the animation."""
    from hybridpose.sources import LiveCamera
    from hybridpose.viz import save_stream_gif

    mode, sensor = predictor.mode, predictor.sensor_size
    run = _StreamRun(
        predictor, source, mode, window, labels, projections,
        _status_bar(source, mode, args.duration, args.quiet),
        realtime=args.realtime, animate=args.animate is not None,
    )  # fmt: skip
    wall0 = time.perf_counter()
    run.consume(args.duration)
    run.bar.close()
    wall = time.perf_counter() - wall0
    if isinstance(source, LiveCamera) and source.dropped:
        print(f"dropped {source.dropped} events older than events already delivered (the "
              "camera's clock went back)", file=sys.stderr)  # fmt: skip
    if isinstance(source, LiveCamera) and source.late:
        print(f"dropped {source.late} events that arrived more than "
              f"{source.margin_us / 1000:g} ms after their time, when the stream had moved "
              "past it without events", file=sys.stderr)  # fmt: skip
    print(_summary(predictor, run.errors, mode, run.poses_seen, run.stream_s, wall, run.lag,
                   args.realtime))  # fmt: skip
    if args.summary_json is not None:
        summary = _summary_dict(run, wall, args.realtime)
        summary["checkpoint"] = str(checkpoints)
        summary["engine"] = args.engine
        write_text_atomic(args.summary_json, json.dumps(summary, indent=2) + "\n")
        print(f"wrote {args.summary_json}")
    if args.animate is not None and run.frames:
        save_stream_gif(run.frames, args.animate, sensor, title=mode, fps=1e6 / window.bin_us / 2)
        print(f"wrote {args.animate}")
    return 0


def _names_the_cpu(name: str) -> bool:
    """Whether ``--device`` names the CPU (a name that is no device at all counts as the CPU
    here: :func:`~hybridpose.devices.resolve_device` then says what is wrong with it)."""
    import torch

    try:
        return torch.device(name).type == "cpu"
    except (RuntimeError, ValueError, TypeError):
        return True


def _open_source(
    args: argparse.Namespace, bin_us: int, sensor: tuple[int, int]
) -> tuple[RecordingReplay | LiveCamera, list[np.ndarray | None], Labels | None]:
    """The live camera, or the replay of ``--recording`` (its sensor checked against the
    model's); with the cameras' projections and the labels (None where it has none)."""
    from hybridpose.sources import LiveCamera, RecordingReplay

    if args.live:
        return LiveCamera(sensor), [None], None
    recording: Path = args.recording
    cameras = tuple(args.cameras)
    if len(cameras) > 2:
        raise HybridPoseError("--cameras: at most two cameras (two give 3D poses)")
    if len(set(cameras)) < len(cameras):
        raise HybridPoseError(
            f"--cameras {' '.join(map(str, cameras))}: the same camera twice (two different "
            "cameras give 3D poses)"
        )
    speed = 1.0 if args.speed is None else args.speed
    replay = RecordingReplay(
        recording, cameras, chunk_us=min(1000, bin_us), realtime=args.realtime, speed=speed
    )
    if replay.sensor_size != sensor:
        raise HybridPoseError(
            f"{recording}: sensor {replay.sensor_size[0]}x{replay.sensor_size[1]}, but the "
            f"model expects {sensor[0]}x{sensor[1]}"
        )
    labels = replay.labels if replay.labels.count else None
    return replay, list(replay.projections), labels


def _status_bar(
    source: RecordingReplay | LiveCamera, mode: Mode, duration_s: float | None, quiet: bool
) -> tqdm[NoReturn]:
    """The status line: stream time against the replay's length (or ``duration_s``)."""
    from tqdm import tqdm

    from hybridpose.sources import RecordingReplay

    total = source.duration_us / 1e6 if isinstance(source, RecordingReplay) else None
    if duration_s is not None and total is not None:
        total = min(total, duration_s)
    return tqdm(
        total=total,
        unit="s",
        desc=f"{mode}",
        disable=quiet,
        file=sys.stderr,
        bar_format="{desc} {n:.2f}/{total:.2f} s stream time [{elapsed}] {postfix}",
    )


class _StreamRun:
    """The predictor fed chunk by chunk, and what the stream keeps between chunks: the poses
    seen and their stream time, the lag behind a real-time replay, the errors against the
    labels, the status line, and for ``--animate`` the frames and the recent chunks."""

    def __init__(
        self,
        predictor: StreamingPredictor,
        source: RecordingReplay | LiveCamera,
        mode: Mode,
        window: WindowConfig,
        labels: Labels | None,
        projections: list[np.ndarray | None],
        bar: tqdm[NoReturn],
        *,
        realtime: bool,
        animate: bool,
    ) -> None:
        from hybridpose.evaluate import PoseScorer, StepErrors
        from hybridpose.sources import RecordingReplay
        from hybridpose.stream import LatencyStats

        self.predictor, self.source, self.mode, self.bar = predictor, source, mode, bar
        self.bin_us = window.bin_us
        self.labels, self.projections = labels, projections
        self.replay = source if realtime and isinstance(source, RecordingReplay) else None
        self.animate = animate
        self.scorer = None
        if labels is not None:
            self.scorer = PoseScorer(
                labels,
                [p for p in projections if p is not None],
                window,
                (predictor.height, predictor.width),
            )
        self.errors = StepErrors(predictor.reinit_every)
        self.unscored: list[StreamPose] = []  # scored SCORE_EVERY at a time
        self.lag = LatencyStats()
        self.frames: list[StreamFrame] = []
        self.poses_seen = 0
        self.events = 0  # in the bins of the poses seen, all streams
        self.first_t: int | None = None
        self.last_t = 0
        self.shown = time.perf_counter()  # the last update of the status line (or the start)
        # for --animate: the chunks (with their ends) that may still hold events of open bins
        self.recent: deque[tuple[int, list[np.ndarray]]] = deque()
        # the end of the first chunk: no bin is known before it
        self.first_release: int | None = None

    @property
    def stream_s(self) -> float:
        """Seconds of stream time from the first bin that held events to the last pose."""
        return max(0, self.last_t - (self.first_t or 0)) / 1e6

    def consume(self, duration_s: float | None) -> None:
        """Feed the chunks until the source ends, ``duration_s`` of stream time has passed or
        the user interrupts."""
        try:
            for t_end, chunk in self.source:
                self.feed(t_end, chunk)
                if (
                    duration_s is not None
                    and self.first_t is not None
                    and (self.last_t - self.first_t >= duration_s * 1e6)
                ):
                    break
        except KeyboardInterrupt:
            print("stopped", file=sys.stderr)
        self._score()

    def _score(self) -> None:
        """Score the poses not scored yet."""
        if self.scorer is not None and self.unscored:
            self.scorer.add(self.errors, self.mode, self.unscored)
        self.unscored = []

    def feed(self, t_end: int, chunk: list[np.ndarray]) -> None:
        """One chunk: its poses counted, timed, scored, drawn; the status line updated."""
        if self.first_release is None:
            self.first_release = t_end
        poses = self.predictor.feed(t_end, chunk)
        now = time.perf_counter()
        if self.animate:
            self.recent.append((t_end, chunk))
        for p in poses:
            self._add_pose(p, now, self.first_release)
        next_start = self.predictor.next_bin_end_us
        while (
            self.recent and next_start is not None and self.recent[0][0] <= next_start - self.bin_us
        ):
            self.recent.popleft()  # only events before the next open bin: not needed any more
        self.unscored += poses
        if len(self.unscored) >= SCORE_EVERY:
            self._score()
        self.poses_seen += len(poses)
        self.events += sum(p.events for p in poses)
        if poses and self.first_t is not None and now - self.shown >= STATUS_EVERY_S:
            self.shown = now
            self._score()
            self.bar.n = (self.last_t - self.first_t) / 1e6
            status = _status(self.predictor, self.errors, self.mode, self.poses_seen)
            self.bar.set_postfix_str(status, refresh=False)
            self.bar.refresh()

    def _add_pose(self, p: StreamPose, now: float, first_release: int) -> None:
        from hybridpose.viz import stream_frame

        if self.first_t is None:  # the stream starts at the first bin that holds events
            self.first_t = max(p.t_us - self.bin_us, getattr(self.source, "start_us", 0))
        self.last_t = p.t_us
        if self.replay is not None:
            # bins that end before the replay starts are released with its first chunk
            release = self.replay.release_time(max(p.t_us, first_release))
            self.lag.add(max(0.0, now - release))
        if self.animate and p.t_us - self.first_t <= ANIMATION_S * 1e6:
            self.frames.append(
                stream_frame(
                    p,
                    _bin_events(self.recent, p.t_us, self.bin_us),
                    self.labels,
                    self.projections,
                )
            )


def _bin_events(
    recent: deque[tuple[int, list[np.ndarray]]], t_us: int, bin_us: int
) -> list[np.ndarray]:
    """Per stream, the events of the bin ``[t_us - bin_us, t_us)`` among the recent chunks."""
    import numpy as np

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


def _summary_dict(run: _StreamRun, wall_s: float, realtime: bool) -> dict[str, object]:
    """``stream --summary-json``: the figures of :func:`_summary` under fixed keys (None where
    a figure does not exist: no labels, no 3D, no poses)."""
    predictor = run.predictor
    lat = predictor.latency.summary()
    e2, e3 = _mean_error(run.errors, run.mode, "2d"), _mean_error(run.errors, run.mode, "3d")
    out: dict[str, object] = {
        "mode": run.mode,
        "latency_ms": {"p50": lat["p50_ms"], "p99": lat["p99_ms"], "max": lat["max_ms"]},
        "realtime_factor": run.stream_s / wall_s if wall_s > 0 else None,
        # the steps' own wall time: in real time, the share of it the stream's compute takes
        "compute_s": predictor.latency.total_s,
        "compute_realtime_factor": (
            run.stream_s / predictor.latency.total_s if predictor.latency.total_s > 0 else None
        ),
        "mpjpe2d_px": e2,
        "mpjpe3d_mm": e3,
        "steps": run.poses_seen,
        "events": run.events,
        "stream_s": run.stream_s,
        "wall_s": wall_s,
        "bin_us": predictor.bin_us,
        "streams": predictor.streams,
        "reinit_every": predictor.reinit_every,
        "ann_lead_bins": predictor.ann_lead,
    }
    if predictor.background is not None:
        out["background_init"] = {
            "windows": predictor.background.joins,
            "waits": predictor.background.waits,
            "wait_ms": 1e3 * predictor.background.wait_s,
        }
    if realtime and run.lag.count:
        out["lag_ms"] = {
            "p50": 1e3 * (run.lag.quantile(0.5) or 0.0),
            "p99": 1e3 * (run.lag.quantile(0.99) or 0.0),
        }
    return out


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
            if predictor.variant.schedule.ann == "window_start"
            else ""
        ),
    ]
    if lat["count"]:
        lines.append(
            f"step latency (all cameras together, wall time): p50 {lat['p50_ms']:.3f} ms, p99 "
            f"{lat['p99_ms']:.3f} ms, mean {lat['mean_ms']:.3f} ms, max {lat['max_ms']:.3f} ms; "
            f"the steps alone {stream_s / predictor.latency.total_s:.2f}x real time"
        )
    background = predictor.background
    if background is not None:
        lines.append(
            f"ANN beside the stream, {predictor.ann_lead} bins ahead: {background.joins} "
            f"windows, {background.waits} waited for it ({1e3 * background.wait_s:.1f} ms in all)"
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


# ------------------------------------------------------------------------------ export
def add_export(subparsers: Subparsers) -> None:
    p = add_command(
        subparsers,
        "export",
        "export a trained hybrid as ONNX graphs (the ANN and the SNN step)",
        run_export,
    )
    _add_checkpoint_option(p, "hybrid.pt and the ann.pt it reads")
    p.add_argument("--format", choices=("onnx",), default="onnx", help="default onnx")
    p.add_argument("--out", type=path_arg, required=True, metavar="DIR", help="output directory")
    p.add_argument("--quiet", action="store_true", help="no progress bar")


def run_export(args: argparse.Namespace) -> int:
    from hybridpose.export import export_onnx
    from hybridpose.pretrained import checkpoint_dir

    checkpoints = checkpoint_dir(args.checkpoint)
    result = export_onnx(checkpoints, args.out, progress=not args.quiet)
    for path in (result.ann, result.snn_step, result.manifest):
        print(f"wrote {path}")
    v = result.verification
    if v is not None:
        print(
            f"verified with onnxruntime against PyTorch (batch {v.batch}, ANN + {v.loop_steps} "
            f"steps): largest difference {v.max_abs_diff:.2g} (tolerance {v.tolerance:g}); "
            f"{v.borderline} membranes within the tolerance of the threshold, {v.flips} decided "
            "differently"
        )
    return 0
