"""Output paths named on the command line, checked before any work.

Every command that writes checks its output first, so that a wrong ``--out`` costs nothing:
a directory that exists as a file, an output file of the wrong kind, or one that is a directory.
The messages are the same in every command.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

from hybridpose.errors import HybridPoseError


class OutputPathError(HybridPoseError, ValueError):
    """An output path that cannot be written as asked."""


def check_output_dir(path: str | os.PathLike[str]) -> Path:
    """``path`` as an output directory: missing (it will be created) or a directory.

    Raises:
        OutputPathError: it exists and is not a directory, or a parent of it is a file.
    """
    out = Path(path)
    if out.exists() and not out.is_dir():
        raise OutputPathError(f"{out}: exists and is not a directory")
    for parent in out.parents:
        if parent.exists():
            if not parent.is_dir():
                raise OutputPathError(f"{out}: {parent} is a file, not a directory")
            break
    return out


def check_output_file(path: str | os.PathLike[str], suffixes: Sequence[str]) -> Path:
    """``path`` as an output file with one of ``suffixes`` (``.png``...): not a directory, in a
    directory that is one or can be created.

    Raises:
        OutputPathError: another suffix, a directory at ``path``, or a parent that is a file.
    """
    out = Path(path)
    if out.suffix.lower() not in [s.lower() for s in suffixes]:
        want = " or ".join(suffixes)
        raise OutputPathError(f"{out}: the file name must end in {want}")
    if out.is_dir():
        raise OutputPathError(f"{out}: is a directory")
    check_output_dir(out.parent)
    return out


__all__ = ["OutputPathError", "check_output_dir", "check_output_file"]
