"""How many threads torch and numba use while a command streams.

A streaming step is small (a few milliseconds of work at batch 1 or 2): spread over several
threads it gains little, and when other processes compete for the cores every step waits for
the slowest thread. Measured on the 2-core machine with another job running: the stream ran at
0.07-0.19x real time with p99 steps of 1.5-2.3 s with torch's default threads, and at 1.2-2x
real time with one thread. The streaming commands (``stream``, ``demo``) therefore run on one
thread unless ``--threads`` says otherwise.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import torch


@contextmanager
def limited_threads(threads: int) -> Iterator[None]:
    """Run the block with ``threads`` threads in torch's and numba's pools, then restore them.

    Raises:
        ValueError: ``threads`` < 1.
    """
    if threads < 1:
        raise ValueError(f"threads must be >= 1, got {threads}")
    import numba

    torch_before = torch.get_num_threads()
    numba_before = numba.get_num_threads()
    torch.set_num_threads(threads)
    numba.set_num_threads(min(threads, numba.config.NUMBA_NUM_THREADS))  # type: ignore[attr-defined]
    try:
        yield
    finally:
        torch.set_num_threads(torch_before)
        numba.set_num_threads(numba_before)


__all__ = ["limited_threads"]
