"""The base of every error that bad input (a file, an argument, a recording) can raise.

The command line turns a :class:`HybridPoseError` into one line on stderr and a non-zero exit;
anything else is a bug and keeps its traceback.
"""


class HybridPoseError(Exception):
    """Bad input: the message names the file or argument and the problem."""


def install_hint(extra: str) -> str:
    """How to install an optional extra, the same in every message: from the package index,
    or into a clone's editable install."""
    return f"pip install 'hybridpose[{extra}]' (in a clone: pip install -e '.[{extra}]')"


def first_line(err: BaseException) -> str:
    """The first line of an exception's message (its type name if the message is empty).

    Library messages (h5py, numpy, the OS) are often several lines long; a user-facing error
    quotes only the first.
    """
    text = str(err).strip().splitlines()
    return text[0] if text else type(err).__name__


def describe_error(err: BaseException) -> str:
    """One line for a user: an OS error as ``PATH: reason``, anything else as its first line."""
    if isinstance(err, OSError) and err.strerror and err.filename is not None:
        return f"{err.filename}: {err.strerror}"
    return first_line(err)
