"""The ``hybridpose`` command: a thin argparse front end, one subcommand -> one library call.

User errors (a missing file, a foreign or corrupt file, a bad argument) print one line on stderr
and exit with status 2; set ``HYBRIDPOSE_DEBUG=1`` to see the traceback instead. Anything else is
a bug and keeps its traceback.

Each command is a pair, side by side in the module of its kind: ``add_<command>`` adds its
parser, ``run_<command>`` runs it. :mod:`hybridpose.cli.data` holds the commands about
recordings, :mod:`hybridpose.cli.models` those that describe, train and evaluate models,
:mod:`hybridpose.cli.run` those that run and ship them; :mod:`hybridpose.cli.args` what they
share.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable, Sequence

from hybridpose import __version__
from hybridpose.cli import data, models, run
from hybridpose.cli.args import EXIT_USER_ERROR, Handler, HelpFormatter, Parser, Subparsers
from hybridpose.errors import HybridPoseError, describe_error
from hybridpose.parallel import interrupt_on_sigterm

COMMANDS: tuple[Callable[[Subparsers], None], ...] = (
    data.add_inspect,
    data.add_convert_dhp19,
    data.add_video_to_events,
    models.add_model_info,
    data.add_plot_events,
    data.add_simulate,
    models.add_train,
    models.add_evaluate,
    models.add_reproduce,
    run.add_demo,
    run.add_stream,
    run.add_export,
)
"""The commands in the order ``hybridpose --help`` lists them."""


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(
        prog="hybridpose",
        description="Hybrid ANN-SNN perception on event cameras: event-based 2D/3D human pose.",
        formatter_class=HelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"hybridpose {__version__}")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for add in COMMANDS:
        add(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the process exit status."""
    parser = build_parser()
    args = parser.parse_args(argv)
    handler: Handler = args.handler
    try:
        with interrupt_on_sigterm():  # SIGTERM stops a command as Ctrl-C does: exit 130
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
