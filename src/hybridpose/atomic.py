"""Atomic file writes: a temporary file beside the target, fsynced, then renamed over it.

A reader sees either the old file or the complete new one, never a half-written file, even
when the writer is killed; the temporary file of a killed writer is hidden (``.NAME.*.tmp``).
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO, NoReturn


def umask() -> int:
    """The process's umask, read where the OS exposes it (Linux) without changing it.

    ``os.umask`` can only be read by setting it, which races with other threads creating files.
    """
    try:
        with Path("/proc/self/status").open() as f:
            for line in f:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except OSError:
        pass
    return 0o022


@contextmanager
def atomic_write(path: str | os.PathLike[str]) -> Iterator[IO[bytes]]:
    """Open a temporary binary file that replaces ``path`` when the ``with`` block succeeds.

    The parent directory is created if needed. On an exception the temporary file is removed
    and ``path`` is left as it was. The new file gets the usual permissions (0666 less the
    umask), not mkstemp's private 0600.
    """
    out = Path(path)
    prefix = f".{out.name}."
    out.parent.mkdir(parents=True, exist_ok=True)
    try:
        handle, name = tempfile.mkstemp(dir=out.parent, prefix=prefix, suffix=".tmp")
    except OSError as err:
        raise_naming_target(err, prefix, out)
    temp = Path(name)
    try:
        temp.chmod(0o666 & ~umask())
        with os.fdopen(handle, "wb") as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        temp.replace(out)
    except OSError as err:
        temp.unlink(missing_ok=True)
        raise_naming_target(err, prefix, out)
    except BaseException:
        temp.unlink(missing_ok=True)
        raise


def raise_naming_target(err: OSError, prefix: str, out: Path) -> NoReturn:
    """Raise ``err``, naming ``out`` where it names the hidden temporary file (same errno and
    reason, so the same OSError subclass).

    The temporary file is an implementation detail: "out.png: Is a directory" helps a user,
    ".out.png.sq_gixyk.tmp: Is a directory" does not. Other errors are raised unchanged.
    """
    filename = err.filename
    if err.errno is not None and isinstance(filename, str | bytes | os.PathLike):
        name = Path(os.fsdecode(filename)).name
        if name.startswith(prefix) and name.endswith(".tmp"):
            raise OSError(err.errno, err.strerror, str(out)) from err
    raise err


def write_text_atomic(path: str | os.PathLike[str], text: str) -> None:
    """Write ``text`` (UTF-8) to ``path`` atomically."""
    with atomic_write(path) as f:
        f.write(text.encode("utf-8"))


__all__ = ["atomic_write", "umask", "write_text_atomic"]
