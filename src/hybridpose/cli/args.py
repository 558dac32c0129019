"""What the commands of ``hybridpose`` share: the parser, its help layout, the exit statuses and
the argument types."""

from __future__ import annotations

import argparse
from collections.abc import Callable
from pathlib import Path
from typing import NoReturn, TypeAlias

EXIT_SOME_FAILED = 1
EXIT_USER_ERROR = 2
Handler = Callable[[argparse.Namespace], int]
Subparsers: TypeAlias = "argparse._SubParsersAction[Parser]"
"""What ``add_subparsers`` returns: each command's ``add_<command>`` adds its parser to it."""


class Parser(argparse.ArgumentParser):
    """An argument parser whose errors are one line (argparse prints the usage block too)."""

    def error(self, message: str) -> NoReturn:
        self.exit(EXIT_USER_ERROR, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


class HelpFormatter(argparse.HelpFormatter):
    """Keeps every subcommand and its help on one line.

    argparse measures subcommand names without their extra indent, so a long name such as
    ``convert-dhp19`` would push its help onto the next line.
    """

    def add_argument(self, action: argparse.Action) -> None:
        super().add_argument(action)
        if isinstance(action, argparse._SubParsersAction):
            names = [len(a.dest) for a in action._get_subactions()]
            self._action_max_length = max(self._action_max_length, max(names, default=0) + 6)


def add_command(
    subparsers: Subparsers, name: str, help_text: str, handler: Handler
) -> argparse.ArgumentParser:
    """A subcommand's parser, its one-line help also its description, run by ``handler``."""
    p = subparsers.add_parser(
        name, help=help_text, description=help_text, formatter_class=HelpFormatter
    )
    p.set_defaults(handler=handler)
    return p


def int_at_least(minimum: int) -> Callable[[str], int]:
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


def float_above(minimum: float, inclusive: bool = False) -> Callable[[str], float]:
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


def path_arg(text: str) -> Path:
    """An argparse type: a path, never empty."""
    # Path("") is ".", which would silently mean the current directory
    if text == "":
        raise argparse.ArgumentTypeError("expected a path, got an empty string")
    return Path(text)


def name_or_path(text: str) -> str:
    """An argparse type: a name or a path, kept as typed (``./cpu`` stays apart from ``cpu``),
    never empty."""
    if text == "":
        raise argparse.ArgumentTypeError("expected a name or a path, got an empty string")
    return text
