"""Typed access to numba's ahead-of-use compiler for the few loops numpy cannot vectorise.

Where numba is used (the renderer's per-pixel compositing and the event simulator's per-pixel
state machine), the work is an inherently sequential loop per pixel: numpy would need either a
Python loop or temporaries many times the image size. ``jit`` compiles such a function once per
process (cached on disk beside the module) and keeps its signature visible to mypy.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar, cast

import numba

F = TypeVar("F", bound=Callable[..., Any])


def jit(function: F) -> F:
    """Compile ``function`` in nopython mode (cached, GIL released, no fast-math).

    Division follows numpy's rules (inf/nan, no ZeroDivisionError check in the loops): the
    kernels guard their divisions themselves.
    """
    return cast(F, numba.njit(cache=True, nogil=True, error_model="numpy")(function))


def jit_parallel(function: F) -> F:
    """:func:`jit` with ``numba.prange`` loops run on all cores."""
    return cast(F, numba.njit(cache=True, nogil=True, error_model="numpy", parallel=True)(function))


def jit_inline(function: F) -> F:
    """:func:`jit`, inlined into each numba caller when that caller is compiled.

    For helpers of a per-pixel loop that take arrays: a call passes each array with reference
    counting, which costs more than a small helper's work (the renderer's texture, called
    per covered pixel, ran at half speed as a call).
    """
    return cast(
        F, numba.njit(cache=True, nogil=True, error_model="numpy", inline="always")(function)
    )
