"""The commands that describe, train and evaluate models: model-info, train, evaluate, reproduce.

Each command is a pair: ``add_<command>`` adds its parser, ``run_<command>`` runs it.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from typing import TYPE_CHECKING

from hybridpose.cli.args import Subparsers, add_command, float_above, int_at_least, path_arg
from hybridpose.variants import hybrid_checkpoint_name

PRESETS = ("paper", "cpu", "cpu-1khz", "cpu-sparse")
"""hybridpose.nn.presets.PRESETS, spelled out: importing it would load torch for every command
(tests/test_cli.py checks that they agree)."""
PRECISIONS = ("fp32", "bf16")
"""hybridpose.train.PRECISIONS, spelled out for the same reason."""

if TYPE_CHECKING:
    from hybridpose.evaluate.run import Protocol


# ------------------------------------------------------------------------------ model-info
def add_model_info(subparsers: Subparsers) -> None:
    p = add_command(
        subparsers, "model-info", "parameters and dense MACs of a model preset", run_model_info
    )
    p.add_argument("--preset", choices=PRESETS, required=True, help="the model preset")
    p.add_argument("--json", action="store_true", help="print one JSON object instead of text")


def run_model_info(args: argparse.Namespace) -> int:
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


# ------------------------------------------------------------------------------ train
def add_train(subparsers: Subparsers) -> None:
    p = add_command(
        subparsers,
        "train",
        "train one stage: ann, snn, hybrid (Aydin et al. 2024) or hybrid_rnn (the paper's "
        "CNN-RNN baseline)",
        run_train,
    )
    # hybridpose.recipes.STAGES, spelled out: importing it would load torch for every command
    # (tests/test_cli.py checks that they agree)
    p.add_argument("--stage", choices=("ann", "snn", "hybrid", "hybrid_rnn"), required=True)
    p.add_argument("--preset", choices=PRESETS, required=True, help="model preset")
    p.add_argument("--data", type=path_arg, required=True, help="directory of recordings (.h5)")
    p.add_argument("--out", type=path_arg, required=True, help="directory for NAME.pt and logs")
    p.add_argument("--resume", action="store_true", help="continue the checkpoint in --out")
    p.add_argument("--epochs", type=int_at_least(1), metavar="N", help="override the recipe")
    p.add_argument("--lr", type=float_above(0.0), metavar="LR", help="override the recipe")
    p.add_argument("--batch-size", type=int_at_least(1), metavar="N", help="override the recipe")
    p.add_argument(
        "--samples-per-epoch", type=int_at_least(1), metavar="N",
        help="windows per epoch (override the recipe)",
    )  # fmt: skip
    p.add_argument(
        "--spike-loss-weight", type=float_above(0.0, inclusive=True), metavar="W",
        help="snn, hybrid: weight of the synaptic activity (the fraction of synapses carrying a "
        "spike per step) added to the loss (override the recipe)",
    )  # fmt: skip
    p.add_argument("--seed", type=int_at_least(0), default=0, metavar="N", help="default 0")
    p.add_argument(
        "--workers", type=int_at_least(0), default=0, metavar="N",
        help="data-loading processes (default 0: in the training process)",
    )  # fmt: skip
    p.add_argument("--device", default="cpu", help="torch device (default cpu)")
    _add_run_settings(p)
    p.add_argument(
        "--ann", type=path_arg, metavar="FILE",
        help="hybrid, hybrid_rnn: the ANN checkpoint (default OUT/ann.pt)",
    )  # fmt: skip
    p.add_argument(
        "--init-snn", type=path_arg, metavar="FILE",
        help="hybrid: start the SNN from this checkpoint",
    )  # fmt: skip
    p.add_argument(
        "--no-state-init", action="store_true",
        help="hybrid ablation: membranes start at zero (saved as "
        f"{hybrid_checkpoint_name(False, True)}.pt)",
    )  # fmt: skip
    p.add_argument(
        "--no-delta", action="store_true",
        help="hybrid ablation: no delta readout (saved as "
        f"{hybrid_checkpoint_name(True, False)}.pt)",
    )  # fmt: skip
    p.add_argument(
        "--max-windows", type=int_at_least(1), metavar="N",
        help="use a deterministic sample of N training windows (quick runs)",
    )  # fmt: skip
    p.add_argument("--quiet", action="store_true", help="no progress bar")


def _add_run_settings(p: argparse.ArgumentParser) -> None:
    """The training's precision and memory layout (train, reproduce)."""
    p.add_argument(
        "--precision", choices=PRECISIONS, default="fp32",
        help="bf16: forward pass and loss under torch.autocast in bfloat16 (GPUs; default fp32)",
    )  # fmt: skip
    p.add_argument(
        "--channels-last", action="store_true",
        help="channels-last weights and frames (faster convolutions on GPUs with tensor cores)",
    )  # fmt: skip


def run_train(args: argparse.Namespace) -> int:
    from hybridpose.devices import resolve_device
    from hybridpose.paths import check_output_dir
    from hybridpose.train import TrainingInterrupted, checkpoint_summary, make_spec, train

    resolve_device(args.device)  # a bad --device or --out is refused before any work
    check_output_dir(args.out)
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
        precision=args.precision,
        channels_last=args.channels_last,
        ann_checkpoint=args.ann,
        init_snn=args.init_snn,
        max_windows=args.max_windows,
        epochs=args.epochs,
        lr=args.lr,
        batch_size=args.batch_size,
        samples_per_epoch=args.samples_per_epoch,
        spike_loss_weight=args.spike_loss_weight,
    )
    if args.resume and not spec.checkpoint_path.exists() and os.environ.get("RANK", "0") == "0":
        # the same command starts a run and continues it; say which one this is
        print(
            f"hybridpose train: nothing to resume ({spec.checkpoint_path} does not exist); "
            "training starts from scratch",
            file=sys.stderr,
        )
    try:
        path = train(spec, resume=args.resume, progress=not args.quiet)
    except TrainingInterrupted as stop:
        print(f"hybridpose train: {stop}", file=sys.stderr)
        return 130
    print(checkpoint_summary(path))
    return 0


# ------------------------------------------------------------------------------ evaluate
def add_evaluate(subparsers: Subparsers) -> None:
    p = add_command(
        subparsers,
        "evaluate",
        "compare ANN, SNN, hybrid and ablations on the test subjects: error, energy, power",
        run_evaluate,
    )
    p.add_argument(
        "--checkpoints", type=path_arg, required=True,
        help="directory with ann.pt, snn.pt, hybrid.pt (and optional ablations)",
    )  # fmt: skip
    p.add_argument("--data", type=path_arg, required=True, help="directory of recordings (.h5)")
    p.add_argument("--out", type=path_arg, required=True, help="directory for the report")
    p.add_argument(
        "--windows-per-recording", type=int_at_least(1), metavar="N",
        help="consecutive windows scored per recording (default all)",
    )  # fmt: skip
    p.add_argument(
        "--warmup-windows", type=int_at_least(0), default=1, metavar="N",
        help="windows run before the scored ones, unscored (default 1)",
    )  # fmt: skip
    p.add_argument(
        "--max-recordings", type=int_at_least(1), metavar="N", help="use the first N only"
    )
    p.add_argument("--seed", type=int_at_least(0), default=0, metavar="N", help="default 0")
    p.add_argument(
        "--protocol", choices=(*PROTOCOL_CHOICES,), default="both",
        help="project: both front cameras, sub-pixel decoding, labels at each bin's end; "
        "paper: the authors' evaluation (camera 3, their windows and crop, integer argmax, "
        "labels at each bin's start); both (default): the project's, with the paper's added "
        "as paper_protocol",
    )  # fmt: skip
    p.add_argument(
        "--rate-sweep", action="store_true",
        help="also the held ANN and the hybrid with the ANN at 1/2 and 1/4 of its rate "
        "(windows 2 and 4 times longer): a table and rate_sweep.png",
    )  # fmt: skip
    p.add_argument("--device", default="cpu", help="torch device (default cpu)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")


RATE_FACTORS = (1, 2, 4)
"""``evaluate --rate-sweep``: the ANN's rate divided by each."""

PROTOCOL_CHOICES: dict[str, tuple[Protocol, ...]] = {
    "project": ("project",),
    "paper": ("paper",),
    "both": ("project", "paper"),
}
"""``evaluate --protocol``: the protocols each choice runs, the first giving the report's
``models`` (:class:`hybridpose.evaluate.EvalSpec`)."""


def run_evaluate(args: argparse.Namespace) -> int:
    from hybridpose.devices import resolve_device
    from hybridpose.evaluate import EvalSpec, evaluate
    from hybridpose.paths import check_output_dir

    resolve_device(args.device)  # a bad --device or --out is refused before any work
    check_output_dir(args.out)
    spec = EvalSpec(
        args.checkpoints,
        args.data,
        args.out,
        windows_per_recording=args.windows_per_recording,
        warmup_windows=args.warmup_windows,
        max_recordings=args.max_recordings,
        seed=args.seed,
        device=args.device,
        protocols=PROTOCOL_CHOICES[args.protocol],
        rate_factors=RATE_FACTORS if args.rate_sweep else (),
    )
    evaluate(spec, progress=not args.quiet)
    print((args.out / "report.md").read_text(), end="")
    print(f"wrote {args.out / 'report.json'}, report.md and the plots")
    return 0


# ------------------------------------------------------------------------------ reproduce
def add_reproduce(subparsers: Subparsers) -> None:
    p = add_command(
        subparsers,
        "reproduce",
        "simulate the default dataset, train the three stages and the CNN-RNN hybrid, and "
        "evaluate (resumable)",
        run_reproduce,
    )
    p.add_argument("--preset", choices=PRESETS, default="cpu", help="default cpu")
    p.add_argument("--out", type=path_arg, required=True, help="output directory")
    p.add_argument(
        "--workers", type=int_at_least(1), metavar="N",
        help="simulation processes (default: the CPU cores)",
    )  # fmt: skip
    p.add_argument("--seed", type=int_at_least(0), default=0, metavar="N", help="default 0")
    p.add_argument(
        "--ablations", action="store_true",
        help="also train the hybrid's two ablations (about 2 x the hybrid stage's time)",
    )  # fmt: skip
    p.add_argument(
        "--device", default="cpu", help="torch device of training and evaluation (default cpu)"
    )
    _add_run_settings(p)
    p.add_argument(
        "--loader-workers", type=int_at_least(0), default=0, metavar="N",
        help="data-loading processes per training stage (default 0: in the training process)",
    )  # fmt: skip
    p.add_argument("--quiet", action="store_true", help="no progress bars")


def run_reproduce(args: argparse.Namespace) -> int:
    from hybridpose.devices import resolve_device
    from hybridpose.evaluate import report_markdown
    from hybridpose.paths import check_output_dir
    from hybridpose.reproduce import ReproduceSpec, default_workers, reproduce
    from hybridpose.train import TrainingInterrupted

    resolve_device(args.device)  # a bad --device or --out is refused before any work
    check_output_dir(args.out)
    workers = args.workers if args.workers is not None else default_workers()
    spec = ReproduceSpec(
        args.preset, args.out, workers=workers, seed=args.seed, progress=not args.quiet,
        ablations=args.ablations, device=args.device, precision=args.precision,
        channels_last=args.channels_last, loader_workers=args.loader_workers,
    )  # fmt: skip
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
