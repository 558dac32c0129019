"""The commands about recordings: inspect, convert-dhp19, video-to-events, plot-events, simulate.

Each command is a pair: ``add_<command>`` adds its parser, ``run_<command>`` runs it.
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

from hybridpose.cli.args import (
    EXIT_SOME_FAILED,
    Subparsers,
    add_command,
    float_above,
    int_at_least,
    path_arg,
)

if TYPE_CHECKING:  # the command's modules are imported when it runs
    from hybridpose.synth.generate import SimulationConfig


# ------------------------------------------------------------------------------ inspect
def add_inspect(subparsers: Subparsers) -> None:
    p = add_command(subparsers, "inspect", "show what a recording file holds", run_inspect)
    p.add_argument("file", type=Path, help="a native recording (.h5)")
    p.add_argument("--json", action="store_true", help="print one JSON object instead of text")


def run_inspect(args: argparse.Namespace) -> int:
    from hybridpose.io.recording import Recording
    from hybridpose.summary import format_summary, recording_summary

    summary = recording_summary(args.file)
    if not args.json:
        print(format_summary(summary))
        return 0
    with Recording(args.file) as rec:  # metadata only, as the summary
        summary["extra"] = _json_safe(rec.meta.extra)
    print(json.dumps(summary, indent=2, allow_nan=False))
    return 0


def _json_safe(value: Any) -> Any:
    """``value`` with non-finite floats as None, so that the output is strict JSON."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: _json_safe(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_json_safe(v) for v in value]
    return value


# ------------------------------------------------------------------------------ convert-dhp19
def add_convert_dhp19(subparsers: Subparsers) -> None:
    p = add_command(
        subparsers,
        "convert-dhp19",
        "convert a raw DHP19 download to native recordings",
        run_convert_dhp19,
    )
    p.add_argument(
        "--root",
        type=path_arg,
        required=True,
        help="DHP19 root with DVS_movies/, Vicon_data/, P_matrices/",
    )
    p.add_argument(
        "--out", type=path_arg, required=True, help="output directory for the .h5 recordings"
    )
    p.add_argument(
        "--workers", type=int_at_least(1), default=1, help="parallel processes (default 1)"
    )
    p.add_argument(
        "--hot-pixel-filter", action="store_true", help="drop pixels with 10^4 or more events"
    )
    p.add_argument(
        "--background-filter", action="store_true", help="background-activity filter (70 ms)"
    )
    p.add_argument(
        "--background-stamps",
        choices=("neighbours", "neighbours-and-self"),
        metavar="RULE",
        help="with --background-filter, its rule: neighbours (an event stamps its 8 neighbours, "
        "as DHP19's BackgroundFilter.m does since 2019-10-04; default) or neighbours-and-self "
        "(its own pixel too, the June 2019 rule)",
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
        type=int_at_least(0),
        default=1000,
        metavar="N",
        help="repair backward timestamp jumps up to N us, reject larger ones (default 1000)",
    )
    p.add_argument(
        "--max-end-gap-us",
        type=int_at_least(0),
        default=1_000_000,
        metavar="N",
        help="reject a recording whose events end more than N us before its stop (a cut "
        "file; default 1000000, or --max-end-gap-fraction of the recording if smaller)",
    )
    p.add_argument(
        "--max-end-gap-fraction",
        type=_fraction,
        default=0.1,
        metavar="F",
        help="the same limit as a fraction of the recording (default 0.1)",
    )
    p.add_argument(
        "--camera-position-tolerance-mm",
        type=float_above(0.0, inclusive=True),
        default=10.0,
        metavar="MM",
        help="warn about a camera whose row of camera_positions.npy lies more than MM from "
        "the centre of its P matrix (default 10)",
    )
    p.add_argument("--quiet", action="store_true", help="no progress bar")


def run_convert_dhp19(args: argparse.Namespace) -> int:
    from hybridpose.io.dhp19 import DEFAULT_BACKGROUND_STAMPS, Dhp19Error, convert_dhp19

    if args.background_stamps is not None and not args.background_filter:
        raise Dhp19Error("--background-stamps: only with --background-filter")

    with _warnings_to_stderr("hybridpose.io.dhp19", "convert-dhp19"):
        summary = convert_dhp19(
            args.root,
            args.out,
            workers=args.workers,
            hot_pixel_filter=args.hot_pixel_filter,
            background_filter=args.background_filter,
            background_stamps=args.background_stamps or DEFAULT_BACKGROUND_STAMPS,
            max_stray_fraction=args.max_stray_fraction,
            max_repairable_jump_us=args.max_repairable_jump_us,
            max_end_gap_us=args.max_end_gap_us,
            max_end_gap_fraction=args.max_end_gap_fraction,
            camera_position_tolerance_mm=args.camera_position_tolerance_mm,
            progress=not args.quiet,
        )
    print(summary.format())
    # rejected recordings are listed above; a script sees them through the exit status
    return EXIT_SOME_FAILED if summary.rejected else 0


@contextmanager
def _warnings_to_stderr(logger_name: str, command: str) -> Iterator[None]:
    """Print the warnings logged under ``logger_name`` to stderr, one line each, as
    ``hybridpose COMMAND: warning: ...``, while the block runs."""
    logger = logging.getLogger(logger_name)
    handler = logging.StreamHandler(sys.stderr)
    handler.setLevel(logging.WARNING)
    handler.setFormatter(logging.Formatter(f"hybridpose {command}: warning: %(message)s"))
    logger.addHandler(handler)
    try:
        yield
    finally:
        logger.removeHandler(handler)


def _fraction(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if not 0.0 <= value <= 1.0:
        raise argparse.ArgumentTypeError(f"expected a fraction in [0, 1], got {text}")
    return value


# ------------------------------------------------------------------------------ video-to-events
def add_video_to_events(subparsers: Subparsers) -> None:
    p = add_command(
        subparsers,
        "video-to-events",
        "simulate an event camera watching a video (file, image folder or .npy)",
        run_video_to_events,
    )
    p.add_argument(
        "video", type=path_arg, help="a video file, a folder of PNG/JPEG images or a .npy"
    )
    p.add_argument("--out", type=path_arg, required=True, help="the recording to write (.h5)")
    p.add_argument(
        "--fps",
        type=float_above(0.0),
        metavar="F",
        help="frame rate: overrides the video's timestamps; required for folders and .npy",
    )
    p.add_argument(
        "--seed", type=int_at_least(0), default=0, metavar="N", help="random seed (default 0)"
    )
    p.add_argument(
        "--threshold",
        type=float_above(0.0),
        metavar="C",
        help="contrast threshold, ON and OFF, in log intensity (default 0.25)",
    )
    p.add_argument(
        "--noise-rate",
        type=float_above(0.0, inclusive=True),
        metavar="HZ",
        help="background-activity events per pixel per second (default 0.1)",
    )
    p.add_argument(
        "--refractory-us",
        type=float_above(0.0, inclusive=True),
        metavar="US",
        help="refractory period of a pixel in microseconds (default 500)",
    )
    p.add_argument(
        "--overwrite", action="store_true", help="replace --out if it exists (default: refuse)"
    )
    _add_sim_device(p)
    p.add_argument("--quiet", action="store_true", help="no progress bar")


def _add_sim_device(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--device",
        metavar="DEV",
        help="run the simulator with torch on this device (e.g. cuda, cuda:1, cpu); default: "
        "the compiled CPU kernels. The same model: the same events up to rounding",
    )


def _sim_device(args: argparse.Namespace) -> str | None:
    """``--device`` checked against this machine (None when not given)."""
    if args.device is None:
        return None
    from hybridpose.devices import resolve_device

    return str(resolve_device(args.device))


def run_video_to_events(args: argparse.Namespace) -> int:
    from dataclasses import replace

    from hybridpose.paths import OutputPathError, check_output_file
    from hybridpose.synth.esim import EsimConfig
    from hybridpose.synth.video import video_to_events

    out = check_output_file(args.out, (".h5",))
    device = _sim_device(args)
    if out.exists() and not args.overwrite:
        raise OutputPathError(
            f"{out}: exists; pass --overwrite to replace it, or use another --out"
        )
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
        device=device,
    )
    print(summary.format())
    return 0


# ------------------------------------------------------------------------------ plot-events
def add_plot_events(subparsers: Subparsers) -> None:
    p = add_command(
        subparsers,
        "plot-events",
        "save a PNG of each camera's recent events with the labelled skeleton",
        run_plot_events,
    )
    p.add_argument("file", type=Path, help="a native recording (.h5)")
    p.add_argument(
        "--out", type=path_arg, required=True,
        help="the picture to write: .png (or .pdf, .svg)",
    )  # fmt: skip
    p.add_argument(
        "--time", type=float_above(0.0, inclusive=True), default=1.0, metavar="S",
        help="the instant to show, in seconds (default 1.0)",
    )  # fmt: skip
    p.add_argument(
        "--window-ms", type=float_above(0.0), default=30.0, metavar="MS",
        help="show the events of the last MS milliseconds (default 30)",
    )  # fmt: skip
    p.add_argument(
        "--cameras", type=int_at_least(0), nargs="+", metavar="N",
        help="cameras to show (default all)",
    )  # fmt: skip


def run_plot_events(args: argparse.Namespace) -> int:
    from hybridpose.viz import plot_recording_frame

    out = plot_recording_frame(
        args.file, args.out, args.time, window_ms=args.window_ms, cameras=args.cameras
    )
    print(f"wrote {out}")
    return 0


# ------------------------------------------------------------------------------ simulate
def add_simulate(subparsers: Subparsers) -> None:
    p = add_command(
        subparsers, "simulate", "generate the synthetic DHP19-like dataset", run_simulate
    )
    p.add_argument(
        "--out", type=path_arg, required=True, help="output directory for the recordings"
    )
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
        "--seed", type=int_at_least(0), default=0, metavar="N", help="dataset seed (default 0)"
    )
    p.add_argument(
        "--workers", type=int_at_least(1), default=1, help="parallel processes (default 1)"
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
    p.add_argument(
        "--sensor",
        choices=("davis346", "clean"),
        default="davis346",
        help="the event camera: davis346 (v2e's pixel model: low-pass, leak, shot noise, hot "
        "pixels, jitter, DHP19's IR spots) or clean (ideal ESIM pixel); default davis346",
    )
    p.add_argument(
        "--appearance",
        choices=("clothed", "plain"),
        default="clothed",
        help="the subjects: clothed (textured clothes, skin and hair, per-segment girths) or "
        "plain (the first datasets' smooth capsules); default clothed",
    )
    p.add_argument(
        "--sampling",
        choices=("frames", "tiles"),
        default="frames",
        help="how the moving body is sampled in time: frames (the body's whole box; default) "
        "or tiles (each 8x8 tile refined alone: the same bound per pixel, 15.8x faster at "
        "346x260)",
    )
    p.add_argument(
        "--repetitions",
        type=int_at_least(1),
        metavar="N",
        help="repetitions per recording, at most (default: the preset's; 12 within 25 s)",
    )
    _add_sim_device(p)
    p.add_argument(
        "--format",
        choices=("h5", "dhp19-raw"),
        default="h5",
        help="h5: native recordings (default); dhp19-raw: DHP19's download layout (DVS_movies/, "
        "Vicon_data/, P_matrices/) for convert-dhp19, 346x260 only",
    )
    p.add_argument(
        "--wrap-timestamps",
        action="store_true",
        help="dhp19-raw only: let the 32-bit timestamps wrap in the middle of each recording",
    )
    p.add_argument(
        "--stray-events",
        type=int_at_least(0),
        metavar="N",
        help="dhp19-raw only: N events per recording before the start and after the stop "
        "(default 0)",
    )
    p.add_argument("--quiet", action="store_true", help="no progress bar")


def run_simulate(args: argparse.Namespace) -> int:
    from dataclasses import replace

    from hybridpose.synth.generate import PRESETS, simulate_dataset, with_sensor

    config = with_sensor(PRESETS[args.preset], args.sensor)
    changes: dict[str, object] = {
        "seed": args.seed, "appearance": args.appearance, "sampling": args.sampling,
    }  # fmt: skip
    if args.repetitions is not None:
        changes["performance"] = replace(config.performance, repetitions=args.repetitions)
    if args.subjects is not None:
        changes["subjects"] = tuple(args.subjects)
    if args.movements is not None:
        changes["movements"] = tuple(args.movements)
    if args.resolution is not None:
        changes["sensor_size"] = args.resolution
    config = replace(config, **changes)  # type: ignore[arg-type]
    device = _sim_device(args)
    if args.format == "dhp19-raw":
        return _simulate_dhp19_raw(args, config, device)
    raw_only = {
        "--wrap-timestamps": args.wrap_timestamps,
        "--stray-events": args.stray_events is not None,
    }
    given = [name for name, value in raw_only.items() if value]
    if given:
        from hybridpose.synth.generate import SimulationError

        raise SimulationError(f"{' and '.join(given)}: only with --format dhp19-raw")
    summary = simulate_dataset(
        args.out, config, workers=args.workers, shard=args.shard, progress=not args.quiet,
        device=device,
    )  # fmt: skip
    print(summary.describe())
    return EXIT_SOME_FAILED if summary.failed else 0


def _simulate_dhp19_raw(
    args: argparse.Namespace, config: SimulationConfig, device: str | None
) -> int:
    from hybridpose.synth.dhp19_raw import RawOptions, simulate_dhp19_raw

    options = RawOptions(wrap_timestamps=args.wrap_timestamps, stray_events=args.stray_events or 0)
    summary = simulate_dhp19_raw(
        args.out,
        config,
        workers=args.workers,
        shard=args.shard,
        progress=not args.quiet,
        options=options,
        device=device,
    )
    print(summary.describe())
    return EXIT_SOME_FAILED if summary.any_failed else 0


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
