"""The ``hybridpose`` command: a thin argparse front end, one subcommand -> one library call.

User errors (a missing file, a foreign or corrupt file, a bad argument) print one line on stderr
and exit with status 2; set ``HYBRIDPOSE_DEBUG=1`` to see the traceback instead. Anything else is
a bug and keeps its traceback.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import NoReturn

from hybridpose import __version__
from hybridpose.errors import HybridPoseError, describe_error

EXIT_SOME_FAILED = 1
EXIT_USER_ERROR = 2
Handler = Callable[[argparse.Namespace], int]


class _Parser(argparse.ArgumentParser):
    """An argument parser whose errors are one line (argparse prints the usage block too)."""

    def error(self, message: str) -> NoReturn:
        self.exit(EXIT_USER_ERROR, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


class _HelpFormatter(argparse.HelpFormatter):
    """Keeps every subcommand and its help on one line.

    argparse measures subcommand names without their extra indent, so a long name such as
    ``convert-dhp19`` would push its help onto the next line.
    """

    def add_argument(self, action: argparse.Action) -> None:
        super().add_argument(action)
        if isinstance(action, argparse._SubParsersAction):
            names = [len(a.dest) for a in action._get_subactions()]
            self._action_max_length = max(self._action_max_length, max(names, default=0) + 6)


def _int_at_least(minimum: int) -> Callable[[str], int]:
    """An argparse type: a whole number >= ``minimum``."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
        if value < minimum:
            raise argparse.ArgumentTypeError(f"expected a number >= {minimum}, got {value}")
        return value

    return parse


def _fraction(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if not 0.0 <= value <= 1.0:
        raise argparse.ArgumentTypeError(f"expected a fraction in [0, 1], got {text}")
    return value


def _path(text: str) -> Path:
    # Path("") is ".", which would silently mean the current directory
    if text == "":
        raise argparse.ArgumentTypeError("expected a path, got an empty string")
    return Path(text)


# ------------------------------------------------------------------------------ subcommands
def _cmd_inspect(args: argparse.Namespace) -> int:
    from hybridpose.summary import format_summary, recording_summary

    summary = recording_summary(args.file)
    print(json.dumps(summary, indent=2) if args.json else format_summary(summary))
    return 0


def _cmd_convert_dhp19(args: argparse.Namespace) -> int:
    from hybridpose.io.dhp19 import convert_dhp19

    summary = convert_dhp19(
        args.root,
        args.out,
        workers=args.workers,
        hot_pixel_filter=args.hot_pixel_filter,
        background_filter=args.background_filter,
        max_stray_fraction=args.max_stray_fraction,
        max_repairable_jump_us=args.max_repairable_jump_us,
        progress=not args.quiet,
    )
    print(summary.format())
    # rejected recordings are listed above; a script sees them through the exit status
    return EXIT_SOME_FAILED if summary.rejected else 0


def _float_above(minimum: float, inclusive: bool = False) -> Callable[[str], float]:
    """An argparse type: a finite number > ``minimum`` (>= with ``inclusive``)."""

    def parse(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
        ok = value >= minimum if inclusive else value > minimum
        if not (ok and value < float("inf")):  # NaN fails ok
            relation = ">=" if inclusive else ">"
            raise argparse.ArgumentTypeError(f"expected a number {relation} {minimum}, got {text}")
        return value

    return parse


def _cmd_video_to_events(args: argparse.Namespace) -> int:
    from dataclasses import replace

    from hybridpose.synth.esim import EsimConfig
    from hybridpose.synth.video import video_to_events

    config = EsimConfig()  # the documented defaults, then what was given
    if args.threshold is not None:
        config = replace(
            config,
            threshold_pos=args.threshold,
            threshold_neg=args.threshold,
            threshold_min=min(config.threshold_min, args.threshold),
        )
    if args.noise_rate is not None:
        config = replace(config, noise_rate_hz=args.noise_rate)
    if args.refractory_us is not None:
        config = replace(config, refractory_us=args.refractory_us)
    summary = video_to_events(
        args.video,
        args.out,
        fps=args.fps,
        config=config,
        seed=args.seed,
        progress=not args.quiet,
    )
    print(summary.format())
    return 0


def _cmd_simulate(args: argparse.Namespace) -> int:
    from dataclasses import replace

    from hybridpose.synth.generate import PRESETS, simulate_dataset

    config = PRESETS[args.preset]
    changes: dict[str, object] = {"seed": args.seed}
    if args.subjects is not None:
        changes["subjects"] = tuple(args.subjects)
    if args.movements is not None:
        changes["movements"] = tuple(args.movements)
    if args.resolution is not None:
        changes["sensor_size"] = args.resolution
    config = replace(config, **changes)  # type: ignore[arg-type]
    summary = simulate_dataset(
        args.out, config, workers=args.workers, shard=args.shard, progress=not args.quiet
    )
    print(summary.describe())
    return EXIT_SOME_FAILED if summary.failed else 0


def _cmd_model_info(args: argparse.Namespace) -> int:
    from hybridpose.energy import model_info
    from hybridpose.nn.presets import preset

    info = model_info(preset(args.preset))
    if args.json:
        print(json.dumps(info, indent=2))
        return 0
    h, w = info["input_size"]
    print(f"preset {info['name']}: input {h}x{w}; dense MACs per ANN frame / per SNN step")
    for section, title in (("ann", "ANN"), ("state_heads", "state heads"), ("snn", "SNN")):
        print(f"\n{title}")
        print(f"  {'layer':<24} {'type':<8} {'params':>10} {'MACs':>15}  output")
        for layer in info[section]["layers"]:
            shape = "x".join(str(v) for v in layer["output_shape"][1:])
            print(
                f"  {layer['name']:<24} {layer['type']:<8} {layer['params']:>10,} "
                f"{layer['macs']:>15,}  {shape}"
            )
        total = info[section]
        print(f"  {'total':<24} {'':<8} {total['params']:>10,} {total['macs']:>15,}")
    return 0


def _cmd_plot_events(args: argparse.Namespace) -> int:
    from hybridpose.viz import plot_recording_frame

    out = plot_recording_frame(
        args.file, args.out, args.time, window_ms=args.window_ms, cameras=args.cameras
    )
    print(f"wrote {out}")
    return 0


def _number_list(low: int, high: int) -> Callable[[str], list[int]]:
    """An argparse type: numbers and ranges like ``1-12,15`` within ``[low, high]``."""

    def parse(text: str) -> list[int]:
        numbers: list[int] = []
        try:
            for part in text.split(","):
                first, _, last = part.strip().partition("-")
                a, b = int(first), int(last or first)
                numbers.extend(range(a, b + 1))
        except ValueError:
            raise argparse.ArgumentTypeError(
                f"expected numbers and ranges like 1-12,15, got {text!r}"
            ) from None
        bad = [n for n in numbers if not low <= n <= high]
        if not numbers or bad:
            raise argparse.ArgumentTypeError(f"numbers must lie in {low}-{high}, got {text!r}")
        return sorted(set(numbers))

    return parse


def _resolution(text: str) -> tuple[int, int]:
    try:
        width, height = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected WIDTHxHEIGHT, e.g. 87x65, got {text!r}"
        ) from None
    if not (8 <= width <= 4096 and 8 <= height <= 4096):
        raise argparse.ArgumentTypeError(f"both sides must lie in 8-4096, got {text}")
    return width, height


def _shard(text: str) -> tuple[int, int]:
    from hybridpose.synth.generate import SimulationError, parse_shard

    try:
        return parse_shard(text)
    except SimulationError as err:
        raise argparse.ArgumentTypeError(str(err)) from None


def _cmd_train(args: argparse.Namespace) -> int:
    from hybridpose.train import TrainingInterrupted, checkpoint_summary, make_spec, train

    spec = make_spec(
        args.stage,
        args.preset,
        args.data,
        args.out,
        state_init=not args.no_state_init,
        delta_readout=not args.no_delta,
        seed=args.seed,
        workers=args.workers,
        device=args.device,
        ann_checkpoint=args.ann,
        init_snn=args.init_snn,
        max_windows=args.max_windows,
        epochs=args.epochs,
        lr=args.lr,
        batch_size=args.batch_size,
        samples_per_epoch=args.samples_per_epoch,
    )
    try:
        path = train(spec, resume=args.resume, progress=not args.quiet)
    except TrainingInterrupted as stop:
        print(f"hybridpose train: {stop}", file=sys.stderr)
        return 130
    print(checkpoint_summary(path))
    return 0


def _cmd_evaluate(args: argparse.Namespace) -> int:
    from hybridpose.evaluate import EvalSpec, evaluate

    spec = EvalSpec(
        args.checkpoints,
        args.data,
        args.out,
        windows_per_recording=args.windows_per_recording,
        warmup_windows=args.warmup_windows,
        max_recordings=args.max_recordings,
        seed=args.seed,
        device=args.device,
    )
    evaluate(spec, progress=not args.quiet)
    print((args.out / "report.md").read_text(), end="")
    print(f"wrote {args.out / 'report.json'}, report.md and the plots")
    return 0


def _cmd_reproduce(args: argparse.Namespace) -> int:
    from hybridpose.evaluate import report_markdown
    from hybridpose.reproduce import ReproduceSpec, default_workers, reproduce
    from hybridpose.train import TrainingInterrupted

    workers = args.workers if args.workers is not None else default_workers()
    spec = ReproduceSpec(args.preset, args.out, workers=workers, seed=args.seed,
                         progress=not args.quiet, ablations=args.ablations)  # fmt: skip
    try:
        report = reproduce(spec)
    except TrainingInterrupted as stop:
        print(
            f"hybridpose reproduce: stopped; progress saved in {stop.checkpoint}; "
            "run the same command again to continue",
            file=sys.stderr,
        )
        return 130
    print(report_markdown(report), end="")
    timings = json.loads((args.out / "timings.json").read_text())
    print(f"total {timings['total'] / 60:.1f} min; report in {args.out / 'report'}")
    return 0


def _cmd_demo(args: argparse.Namespace) -> int:
    from hybridpose.demo import DemoSpec, demo_table, run_demo

    spec = DemoSpec(out_dir=args.out, checkpoints=args.checkpoint, workers=args.workers,
                    engine=args.engine, seed=args.seed)  # fmt: skip
    report = run_demo(spec, progress=not args.quiet)
    print(demo_table(report))
    s = report["setup"]
    print(
        f"{s['recordings']} held-out recordings, {s['scored_windows_per_camera']} "
        f"scored windows per camera; 2D px of the {s['sensor_size'][0]}x{s['sensor_size'][1]} "
        f"sensor, power at {s['output_rate_hz']:g} Hz from counted operations, latency per "
        f"step (both cameras); {s['total_s']:.0f} s in all"
    )
    print(f"wrote {args.out / 'report.md'}, report.json, error_vs_step.png, "
          f"error_vs_power.png, hybrid.gif")  # fmt: skip
    return 0


def _cmd_stream(args: argparse.Namespace) -> int:
    from hybridpose.pretrained import pretrained_dir
    from hybridpose.stream_cli import stream_command

    checkpoints = args.checkpoint if args.checkpoint is not None else pretrained_dir("cpu")
    return stream_command(
        checkpoints,
        recording=args.recording,
        live=args.live,
        mode=args.model,
        cameras=tuple(args.cameras),
        realtime=args.realtime,
        speed=args.speed,
        reinit_every=args.reinit_every,
        engine=args.engine,
        animate=args.animate,
        duration_s=args.duration,
        device=args.device,
        quiet=args.quiet,
    )


def _cmd_export(args: argparse.Namespace) -> int:
    from hybridpose.export import export_onnx

    result = export_onnx(args.checkpoint, args.out, progress=not args.quiet)
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


def _add_checkpoint_option(p: argparse.ArgumentParser) -> None:
    """``--checkpoint DIR`` of the commands that run trained models (default: shipped)."""
    p.add_argument(
        "--checkpoint",
        type=_path,
        metavar="DIR",
        help="a training run's checkpoints (default: the shipped cpu weights)",
    )


def _add_engine_option(p: argparse.ArgumentParser) -> None:
    """``--engine`` of the commands that stream (hybridpose.stream's SNN engines)."""
    p.add_argument(
        "--engine",
        choices=("dense", "event"),
        default="event",
        help="the SNN's engine: event-driven (CPU, the default) or PyTorch",
    )


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="hybridpose",
        description="Hybrid ANN-SNN perception on event cameras: event-based 2D/3D human pose.",
        formatter_class=_HelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"hybridpose {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    def add(name: str, help_text: str, handler: Handler) -> argparse.ArgumentParser:
        p = sub.add_parser(
            name, help=help_text, description=help_text, formatter_class=_HelpFormatter
        )
        p.set_defaults(handler=handler)
        return p

    p = add("inspect", "show what a recording file holds", _cmd_inspect)
    p.add_argument("file", type=Path, help="a native recording (.h5)")
    p.add_argument("--json", action="store_true", help="print one JSON object instead of text")

    p = add(
        "convert-dhp19", "convert a raw DHP19 download to native recordings", _cmd_convert_dhp19
    )
    p.add_argument(
        "--root",
        type=_path,
        required=True,
        help="DHP19 root with DVS_movies/, Vicon_data/, P_matrices/",
    )
    p.add_argument(
        "--out", type=_path, required=True, help="output directory for the .h5 recordings"
    )
    p.add_argument(
        "--workers", type=_int_at_least(1), default=1, help="parallel processes (default 1)"
    )
    p.add_argument(
        "--hot-pixel-filter", action="store_true", help="drop pixels with 10^4 or more events"
    )
    p.add_argument(
        "--background-filter", action="store_true", help="background-activity filter (70 ms)"
    )
    p.add_argument(
        "--max-stray-fraction",
        type=_fraction,
        default=0.01,
        metavar="F",
        help="reject a recording with more than this fraction of stray events (default 0.01)",
    )
    p.add_argument(
        "--max-repairable-jump-us",
        type=_int_at_least(0),
        default=1000,
        metavar="N",
        help="repair backward timestamp jumps up to N us, reject larger ones (default 1000)",
    )
    p.add_argument("--quiet", action="store_true", help="no progress bar")

    p = add(
        "video-to-events",
        "simulate an event camera watching a video (file, image folder or .npy)",
        _cmd_video_to_events,
    )
    p.add_argument("video", type=_path, help="a video file, a folder of PNG/JPEG images or a .npy")
    p.add_argument("--out", type=_path, required=True, help="the recording to write (.h5)")
    p.add_argument(
        "--fps",
        type=_float_above(0.0),
        metavar="F",
        help="frame rate: overrides the video's timestamps; required for folders and .npy",
    )
    p.add_argument(
        "--seed", type=_int_at_least(0), default=0, metavar="N", help="random seed (default 0)"
    )
    p.add_argument(
        "--threshold",
        type=_float_above(0.0),
        metavar="C",
        help="contrast threshold, ON and OFF, in log intensity (default 0.25)",
    )
    p.add_argument(
        "--noise-rate",
        type=_float_above(0.0, inclusive=True),
        metavar="HZ",
        help="background-activity events per pixel per second (default 0.1)",
    )
    p.add_argument(
        "--refractory-us",
        type=_float_above(0.0, inclusive=True),
        metavar="US",
        help="refractory period of a pixel in microseconds (default 500)",
    )
    p.add_argument("--quiet", action="store_true", help="no progress bar")

    p = add("model-info", "parameters and dense MACs of a model preset", _cmd_model_info)
    p.add_argument("--preset", choices=("paper", "cpu"), required=True, help="the model preset")
    p.add_argument("--json", action="store_true", help="print one JSON object instead of text")

    p = add(
        "plot-events",
        "save a PNG of each camera's recent events with the labelled skeleton",
        _cmd_plot_events,
    )
    p.add_argument("file", type=Path, help="a native recording (.h5)")
    p.add_argument("--out", type=_path, required=True, help="the PNG to write")
    p.add_argument(
        "--time", type=_float_above(0.0, inclusive=True), default=1.0, metavar="S",
        help="the instant to show, in seconds (default 1.0)",
    )  # fmt: skip
    p.add_argument(
        "--window-ms", type=_float_above(0.0), default=30.0, metavar="MS",
        help="show the events of the last MS milliseconds (default 30)",
    )  # fmt: skip
    p.add_argument(
        "--cameras", type=_int_at_least(0), nargs="+", metavar="N",
        help="cameras to show (default all)",
    )  # fmt: skip

    p = add("simulate", "generate the synthetic DHP19-like dataset", _cmd_simulate)
    p.add_argument("--out", type=_path, required=True, help="output directory for the recordings")
    p.add_argument(
        "--preset",
        choices=("tiny", "default"),
        default="default",
        help="tiny: 2 subjects x 2 movements at 87x65, seconds; default: 17 x 33 at 346x260",
    )
    p.add_argument(
        "--subjects",
        type=_number_list(1, 999),
        metavar="LIST",
        help="subjects, e.g. 1-12 or 13,15 (default: the preset's; 1-12 train, 13-17 test)",
    )
    p.add_argument(
        "--movements",
        type=_number_list(1, 33),
        metavar="LIST",
        help="DHP19 movement numbers 1-33 in session order, e.g. 1-8 (default: the preset's)",
    )
    p.add_argument(
        "--seed", type=_int_at_least(0), default=0, metavar="N", help="dataset seed (default 0)"
    )
    p.add_argument(
        "--workers", type=_int_at_least(1), default=1, help="parallel processes (default 1)"
    )
    p.add_argument(
        "--shard",
        type=_shard,
        default=(1, 1),
        metavar="K/N",
        help="make only the K-th of N equal shares (for several machines; default 1/1)",
    )
    p.add_argument(
        "--resolution",
        type=_resolution,
        metavar="WxH",
        help="sensor size, same field of view (default: the preset's; e.g. 87x65)",
    )
    p.add_argument("--quiet", action="store_true", help="no progress bar")

    p = add("train", "train one stage: ann, snn or hybrid (PAPER.md's recipe)", _cmd_train)
    p.add_argument("--stage", choices=("ann", "snn", "hybrid"), required=True)
    p.add_argument("--preset", choices=("paper", "cpu"), required=True, help="model preset")
    p.add_argument("--data", type=_path, required=True, help="directory of recordings (.h5)")
    p.add_argument("--out", type=_path, required=True, help="directory for NAME.pt and logs")
    p.add_argument("--resume", action="store_true", help="continue the checkpoint in --out")
    p.add_argument("--epochs", type=_int_at_least(1), metavar="N", help="override the recipe")
    p.add_argument("--lr", type=_float_above(0.0), metavar="LR", help="override the recipe")
    p.add_argument("--batch-size", type=_int_at_least(1), metavar="N", help="override the recipe")
    p.add_argument(
        "--samples-per-epoch", type=_int_at_least(1), metavar="N",
        help="windows per epoch (override the recipe)",
    )  # fmt: skip
    p.add_argument("--seed", type=_int_at_least(0), default=0, metavar="N", help="default 0")
    p.add_argument(
        "--workers", type=_int_at_least(0), default=0, metavar="N",
        help="data-loading processes (default 0: in the training process)",
    )  # fmt: skip
    p.add_argument("--device", default="cpu", help="torch device (default cpu)")
    p.add_argument(
        "--ann", type=_path, metavar="FILE", help="hybrid: the ANN checkpoint (default OUT/ann.pt)"
    )
    p.add_argument(
        "--init-snn", type=_path, metavar="FILE", help="hybrid: start the SNN from this checkpoint"
    )
    p.add_argument(
        "--no-state-init", action="store_true",
        help="hybrid ablation: membranes start at zero (saved as hybrid_no_state_init.pt)",
    )  # fmt: skip
    p.add_argument(
        "--no-delta", action="store_true",
        help="hybrid ablation: no delta readout (saved as hybrid_no_delta.pt)",
    )  # fmt: skip
    p.add_argument(
        "--max-windows", type=_int_at_least(1), metavar="N",
        help="use a deterministic sample of N training windows (quick runs)",
    )  # fmt: skip
    p.add_argument("--quiet", action="store_true", help="no progress bar")

    p = add(
        "evaluate",
        "compare ANN, SNN, hybrid and ablations on the test subjects: error, energy, power",
        _cmd_evaluate,
    )
    p.add_argument(
        "--checkpoints", type=_path, required=True,
        help="directory with ann.pt, snn.pt, hybrid.pt (and optional ablations)",
    )  # fmt: skip
    p.add_argument("--data", type=_path, required=True, help="directory of recordings (.h5)")
    p.add_argument("--out", type=_path, required=True, help="directory for the report")
    p.add_argument(
        "--windows-per-recording", type=_int_at_least(1), metavar="N",
        help="consecutive windows scored per recording (default all)",
    )  # fmt: skip
    p.add_argument(
        "--warmup-windows", type=_int_at_least(0), default=1, metavar="N",
        help="windows run before the scored ones, unscored (default 1)",
    )  # fmt: skip
    p.add_argument(
        "--max-recordings", type=_int_at_least(1), metavar="N", help="use the first N only"
    )
    p.add_argument("--seed", type=_int_at_least(0), default=0, metavar="N", help="default 0")
    p.add_argument("--device", default="cpu", help="torch device (default cpu)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")

    p = add(
        "reproduce",
        "simulate the default dataset, train the three stages and evaluate (resumable)",
        _cmd_reproduce,
    )
    p.add_argument("--preset", choices=("cpu", "paper"), default="cpu", help="default cpu")
    p.add_argument("--out", type=_path, required=True, help="output directory")
    p.add_argument(
        "--workers", type=_int_at_least(1), metavar="N",
        help="simulation processes (default: the CPU cores)",
    )  # fmt: skip
    p.add_argument("--seed", type=_int_at_least(0), default=0, metavar="N", help="default 0")
    p.add_argument(
        "--ablations", action="store_true",
        help="also train the hybrid's two ablations (about 2 x the hybrid stage's time)",
    )  # fmt: skip
    p.add_argument("--quiet", action="store_true", help="no progress bars")

    p = add(
        "demo",
        "stream the shipped models side by side on new simulated recordings (the main job)",
        _cmd_demo,
    )
    p.add_argument(
        "--out", type=_path, default=Path("demo"), help="output directory (default demo)"
    )
    _add_checkpoint_option(p)
    p.add_argument(
        "--workers",
        type=_int_at_least(1),
        default=2,
        metavar="N",
        help="simulation processes (default 2)",
    )
    _add_engine_option(p)
    p.add_argument(
        "--seed",
        type=_int_at_least(0),
        default=2026,
        metavar="N",
        help="the held-out recordings' seed (default 2026)",
    )
    p.add_argument("--quiet", action="store_true", help="no progress bars")

    p = add(
        "stream",
        "run a trained model on a replayed recording or a live camera, pose by pose",
        _cmd_stream,
    )
    source = p.add_mutually_exclusive_group(required=True)
    source.add_argument("--recording", type=_path, metavar="FILE", help="replay this recording")
    source.add_argument(
        "--live", action="store_true", help="a live DAVIS or DVXplorer (needs the live extra)"
    )
    _add_checkpoint_option(p)
    p.add_argument(
        "--model",
        choices=("hybrid", "snn", "ann_high", "ann_low_held"),
        default="hybrid",
        help="default hybrid",
    )
    p.add_argument(
        "--cameras",
        type=_int_at_least(0),
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
        type=_float_above(0.0),
        default=1.0,
        metavar="X",
        help="with --realtime: replay X times faster (default 1)",
    )
    p.add_argument(
        "--reinit-every",
        type=_int_at_least(1),
        metavar="K",
        help="bins between ANN initialisations (default: the checkpoint's window)",
    )
    _add_engine_option(p)
    p.add_argument(
        "--animate",
        type=_path,
        metavar="OUT.gif",
        help="write an animation of the events and the poses (first seconds)",
    )
    p.add_argument(
        "--duration",
        type=_float_above(0.0),
        metavar="S",
        help="stop after S seconds of stream time",
    )
    p.add_argument(
        "--device",
        default="cpu",
        help="torch device of the networks (default cpu; a GPU needs --engine dense)",
    )
    p.add_argument("--quiet", action="store_true", help="no status line")

    p = add(
        "export", "export a trained hybrid as ONNX graphs (the ANN and the SNN step)", _cmd_export
    )
    p.add_argument(
        "--checkpoint",
        type=_path,
        required=True,
        metavar="DIR",
        help="directory with hybrid.pt (and the ann.pt it reads)",
    )
    p.add_argument("--format", choices=("onnx",), default="onnx", help="default onnx")
    p.add_argument("--out", type=_path, required=True, metavar="DIR", help="output directory")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the process exit status."""
    parser = build_parser()
    args = parser.parse_args(argv)
    handler: Handler = args.handler
    try:
        return handler(args)
    except (HybridPoseError, OSError) as err:
        # OSError: a path that is missing, a directory, not writable, a full disk...
        if os.environ.get("HYBRIDPOSE_DEBUG"):
            raise
        print(f"hybridpose {args.command}: error: {describe_error(err)}", file=sys.stderr)
        return EXIT_USER_ERROR
    except KeyboardInterrupt:
        print(f"hybridpose {args.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
