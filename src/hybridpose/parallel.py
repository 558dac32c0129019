"""Run independent file-producing tasks in worker processes, surviving killed workers.

The pool stops at once when the run is interrupted, and its workers never outlive it:

* Ctrl-C (SIGINT, which the terminal sends to the whole process group) is ignored by the
  workers; the main process decides. On ``KeyboardInterrupt`` (or any other exception) in the
  main process, no further task is handed out and every worker is terminated (killed if it
  does not exit within a second) before the exception propagates. While
  :func:`map_in_processes` runs, SIGTERM raises ``KeyboardInterrupt`` as Ctrl-C does (see
  :func:`interrupt_on_sigterm`).
* A worker whose main process dies, even by SIGKILL, exits too: on Linux the kernel kills it
  (``PR_SET_PDEATHSIG``); elsewhere, and as a second guard, a thread of the worker notices that
  its parent changed. The ``multiprocessing`` resource tracker that spawning starts exits when
  the main process and the workers are gone. No ``multiprocessing`` lock or queue is used:
  each worker talks to the main process over its own pipe.

Temporary files of terminated workers are left to the caller, who removes them with
:func:`hybridpose.io.recording.remove_stale_temp_files` once :func:`map_in_processes` has
returned or raised (the workers are gone by then).
"""

from __future__ import annotations

import _thread
import contextlib
import ctypes
import os
import signal
import sys
import threading
import time
import traceback
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from multiprocessing import get_context
from multiprocessing.connection import Connection, wait
from multiprocessing.process import BaseProcess
from types import FrameType
from typing import Any, Generic, TypeVar

from tqdm import tqdm

T = TypeVar("T")
R = TypeVar("R")

PARENT_POLL_S = 0.5
"""How often a worker checks that its main process is still there (besides PR_SET_PDEATHSIG)."""

STOP_GRACE_S = 1.0
"""How long terminated workers get to exit before they are killed."""

REDELIVER_AFTER_S = 0.01
"""How long after an interrupt was swallowed it is delivered again."""

_PR_SET_PDEATHSIG = 1  # from <linux/prctl.h>


# ------------------------------------------------------------------------ signals
_SIGTERM_MESSAGE = f"signal {signal.SIGTERM.name}"


def _raise_interrupt(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt(f"signal {signal.Signals(signum).name}")


def _redeliver_lost_interrupt(
    previous: Callable[[Any], object],
) -> Callable[[Any], object]:
    """An unraisable-exception hook that signals the main thread again when a
    ``KeyboardInterrupt`` was swallowed, and hands every other exception to ``previous``.

    Python runs a signal's handler wherever the main thread happens to be, including inside a
    weak-reference callback or a ``__del__``, where an exception cannot propagate: Python
    prints "Exception ignored in ..." and goes on. numba's compiler, with its many weakly
    referenced objects, lost a SIGTERM that way and the run went on to its end. Signalling
    again, from another thread once the hook has returned, makes the handler run at a point
    where the exception does propagate (should it be swallowed again, this repeats).
    """

    def hook(unraisable: Any) -> None:
        if isinstance(unraisable.exc_value, KeyboardInterrupt):
            lost = (
                signal.SIGTERM if str(unraisable.exc_value) == _SIGTERM_MESSAGE else signal.SIGINT
            )
            # from another thread, a moment later: signalled here, the handler would run
            # inside this hook, where its exception is swallowed again
            again = threading.Timer(REDELIVER_AFTER_S, _thread.interrupt_main, args=(lost,))
            again.daemon = True
            again.start()
        else:
            previous(unraisable)

    return hook


@contextlib.contextmanager
def interrupt_on_sigterm() -> Iterator[None]:
    """Within the block, SIGTERM raises ``KeyboardInterrupt`` in the main thread, as Ctrl-C does.

    So an interrupted run cleans up (and a command exits with status 130) whichever of the two
    stopped it. An interrupt that lands where Python swallows exceptions (a weak-reference
    callback, a ``__del__``) is delivered again rather than lost (see
    :func:`_redeliver_lost_interrupt`). Does nothing outside the main thread, or where SIGTERM
    already has a handler (such as this one, entered further up). The previous handler and
    unraisable hook are restored on leaving.
    """
    if (
        threading.current_thread() is not threading.main_thread()
        or signal.getsignal(signal.SIGTERM) is not signal.SIG_DFL
    ):
        yield
        return
    previous = signal.signal(signal.SIGTERM, _raise_interrupt)
    previous_hook = sys.unraisablehook
    sys.unraisablehook = _redeliver_lost_interrupt(previous_hook)
    try:
        yield
    finally:
        sys.unraisablehook = previous_hook
        signal.signal(signal.SIGTERM, previous)


# ------------------------------------------------------------------------ in a worker
def _die_with_parent(parent: int) -> None:
    """Make this process exit as soon as its parent, process ``parent``, is gone."""
    if sys.platform.startswith("linux"):
        with contextlib.suppress(OSError, AttributeError):
            libc = ctypes.CDLL(None, use_errno=True)
            libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)

    def watch() -> None:
        # also catches a parent that died before prctl above took effect
        while os.getppid() == parent:
            time.sleep(PARENT_POLL_S)
        os._exit(1)

    threading.Thread(target=watch, name="watch-parent", daemon=True).start()


def _worker(function: Callable[[Any], Any], connection: Connection, parent: int) -> None:
    """A worker's main: run each task received on ``connection`` and send back
    ``(True, result)`` or ``(False, exception, traceback)``, until the pipe closes."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C: the main process decides
    if hasattr(signal, "pthread_sigmask"):  # blocked by the parent while it started us
        signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGINT})
    _die_with_parent(parent)
    while True:
        try:
            task = connection.recv()
        except EOFError:  # the main process is done with us
            return
        try:
            reply: tuple[Any, ...] = (True, function(task))
        except BaseException as err:  # sent back; the main process re-raises it
            reply = (False, err, traceback.format_exc())
        try:
            connection.send(reply)
        except Exception as err:  # an unpicklable result or exception
            message = f"cannot send the outcome of a task back: {err!r}"
            connection.send((False, RuntimeError(message), traceback.format_exc()))


# ------------------------------------------------------------------------ in the main process
class _RemoteTraceback(Exception):
    """The traceback of an exception raised in a worker (the ``__cause__`` of the re-raised)."""

    def __str__(self) -> str:
        return f'\n"""\n{self.args[0]}"""'


class _WorkerDied(Exception):
    """The worker process died (killed from outside) before sending its task's outcome."""


@dataclass
class _Worker:
    process: BaseProcess
    connection: Connection
    task: int | None = None  # the index of the task it runs

    def give(self, index: int, task: Any) -> None:
        try:
            self.connection.send(task)
        except OSError:  # it died meanwhile
            raise _WorkerDied from None
        self.task = index

    def outcome(self) -> Any:
        """The result of its task; re-raises the task's exception, :class:`_WorkerDied` if the
        worker died."""
        self.task = None
        try:
            reply = self.connection.recv()
        except (EOFError, OSError):
            raise _WorkerDied from None
        if not reply[0]:
            raise reply[1] from _RemoteTraceback(reply[2])
        return reply[1]


class _Processes(Generic[T, R]):
    """Worker processes running ``function``; :meth:`stop` ends them all (also on error)."""

    def __init__(self, function: Callable[[T], R]) -> None:
        # spawn, not fork: the caller may hold open HDF5 files or threads that fork would copy
        self.context = get_context("spawn")
        self.function = function
        self.workers: list[_Worker] = []

    def start(self) -> _Worker:
        ours, theirs = self.context.Pipe()
        process = self.context.Process(target=_worker, args=(self.function, theirs, os.getpid()))
        worker = _Worker(process, ours)
        self.workers.append(worker)  # before it starts: stop() must see it whatever happens
        # the child starts with SIGINT blocked, so that a Ctrl-C while it starts up does not
        # kill it with a traceback; it ignores SIGINT, then unblocks it
        if hasattr(signal, "pthread_sigmask"):
            old = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT})
            try:
                process.start()
            finally:
                signal.pthread_sigmask(signal.SIG_SETMASK, old)
        else:
            process.start()
        theirs.close()  # so that its death reads as end of file here
        return worker

    def ready(self) -> list[_Worker]:
        """Wait until a busy worker has an outcome to read (or died); those workers."""
        busy = [w for w in self.workers if w.task is not None]
        ready = set(wait([w.connection for w in busy] + [w.process.sentinel for w in busy]))
        return [w for w in busy if w.connection in ready or w.process.sentinel in ready]

    def stop(self, graceful: bool) -> None:
        """End every worker: idle ones exit when their pipe closes (``graceful``); otherwise
        or after :data:`STOP_GRACE_S` they are terminated, then killed."""
        started = [w.process for w in self.workers if w.process.pid is not None]
        for w in self.workers:
            w.connection.close()
        if not graceful:
            for p in started:
                p.terminate()
        deadline = time.monotonic() + STOP_GRACE_S
        for p in started:
            p.join(max(0.0, deadline - time.monotonic()))
        for p in started:
            if p.exitcode is None and graceful:
                p.terminate()
                p.join(STOP_GRACE_S)
            if p.exitcode is None:
                p.kill()
                p.join()
            p.close()
        self.workers.clear()

    @contextlib.contextmanager
    def running(self) -> Iterator[_Processes[T, R]]:
        try:
            yield self
        except BaseException:
            self.stop(graceful=False)
            raise
        self.stop(graceful=True)


def _run_together(
    processes: _Processes[T, R],
    tasks: Sequence[T],
    workers: int,
    bar: tqdm[Any],
    outcomes: dict[int, R],
) -> None:
    """Run ``tasks`` in ``workers`` processes into ``outcomes`` until done or a worker died;
    after a death no new task is handed out (the unfinished ones stay out of ``outcomes``)."""
    queue = deque(range(len(tasks)))
    broken = False

    def hand_out(worker: _Worker) -> None:
        nonlocal broken
        try:
            worker.give(queue[0], tasks[queue[0]])
        except _WorkerDied:
            broken = True  # its task stays queued
            return
        queue.popleft()

    for _ in range(min(workers, len(tasks))):
        hand_out(processes.start())
    while any(w.task is not None for w in processes.workers):
        for worker in processes.ready():
            running = worker.task
            assert running is not None
            try:
                outcomes[running] = worker.outcome()
            except _WorkerDied:
                broken = True  # out of memory, probably: the rest runs alone
                continue
            bar.update(1)
            if queue and not broken:
                hand_out(worker)


def _run_alone(function: Callable[[T], R], task: T, killed: R) -> R:
    """``function(task)`` in a fresh process of its own; ``killed`` if that process dies."""
    with _Processes(function).running() as processes:
        try:
            worker = processes.start()
            worker.give(0, task)
            processes.ready()
            result: R = worker.outcome()
        except _WorkerDied:
            return killed
    return result


def map_in_processes(
    function: Callable[[T], R],
    tasks: Sequence[T],
    workers: int,
    bar: tqdm[Any],
    killed: R,
) -> list[R]:
    """``[function(task) for task in tasks]`` in ``workers`` processes, in task order.

    When the OS kills a worker (typically out of memory), no further task is handed out; the
    tasks running in the other workers finish, and the unfinished ones are then run again one
    at a time, each in a fresh process, so a task that kills its process takes only itself down
    and gets ``killed`` as its result. An exception raised by ``function`` (a bug) propagates,
    as does ``KeyboardInterrupt`` (Ctrl-C, or SIGTERM, see :func:`interrupt_on_sigterm`); the
    workers are terminated first. Either way the caller should then remove the temporary
    files that killed or terminated workers left behind. ``bar`` advances once per task.
    """
    outcomes: dict[int, R] = {}
    with interrupt_on_sigterm():
        with _Processes(function).running() as processes:
            _run_together(processes, tasks, workers, bar, outcomes)
        for i in range(len(tasks)):
            if i not in outcomes:
                outcomes[i] = _run_alone(function, tasks[i], killed)
                bar.update(1)
    return [outcomes[i] for i in range(len(tasks))]


__all__ = ["interrupt_on_sigterm", "map_in_processes"]
