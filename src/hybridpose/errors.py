"""The base of every error that bad input (a file, an argument, a recording) can raise.

The command line turns a :class:`HybridPoseError` into one line on stderr and a non-zero exit;
anything else is a bug and keeps its traceback.
"""


class HybridPoseError(Exception):
    """Bad input: the message names the file or argument and the problem."""
