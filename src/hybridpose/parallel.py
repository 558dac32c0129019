"""Run independent file-producing tasks in worker processes, surviving killed workers."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor, as_completed
from concurrent.futures.process import BrokenProcessPool
from multiprocessing import get_context
from typing import Any, TypeVar

from tqdm import tqdm

T = TypeVar("T")
R = TypeVar("R")


def map_in_processes(
    function: Callable[[T], R],
    tasks: Sequence[T],
    workers: int,
    bar: tqdm[Any],
    killed: R,
) -> list[R]:
    """``[function(task) for task in tasks]`` in ``workers`` processes, in task order.

    When the OS kills a worker (typically out of memory), the pool breaks and every unfinished
    task fails with it; those tasks are then run again one at a time, each in a fresh process,
    so a task that kills its process takes only itself down and gets ``killed`` as its result.
    The caller should then remove the temporary files the killed processes left behind. An
    exception raised by ``function`` (a bug) propagates. ``bar`` advances once per task.
    """
    # spawn, not fork: the caller may hold open HDF5 files or threads that fork would copy
    context = get_context("spawn")
    outcomes: dict[int, R] = {}
    with ProcessPoolExecutor(max_workers=workers, mp_context=context) as pool:
        futures = {pool.submit(function, task): i for i, task in enumerate(tasks)}
        for future in as_completed(futures):
            try:
                outcomes[futures[future]] = future.result()
            except BrokenProcessPool:
                continue  # redone alone below
            bar.update(1)
    for i in range(len(tasks)):
        if i in outcomes:
            continue
        with ProcessPoolExecutor(max_workers=1, mp_context=context) as pool:
            try:
                outcomes[i] = pool.submit(function, tasks[i]).result()
            except BrokenProcessPool:
                outcomes[i] = killed
        bar.update(1)
    return [outcomes[i] for i in range(len(tasks))]
