"""The hybrid's re-initialisation off the critical path: the ANN beside the stream.

In the synchronous hybrid the ANN runs at the start of every window, on the events before it,
and the SNN's step at that bin waits for it (10-20 ms on one core, where an SNN step takes a
fraction of a millisecond). :class:`BackgroundInit` moves that work to a second thread (the
second core: the ANN's torch operations and the event-driven SNN's compiled step release the
GIL), *leading* the window by ``lead`` bins:

1. at the end of its step of the bin that starts at ``t0 - lead * bin_us``, the predictor
   hands the worker a copy of the events before that time (:meth:`BackgroundInit.start`);
2. the worker builds the ANN's frames from them and runs the ANN (the SNN's state from it,
   :meth:`HybridPose.initial_state`) while the stream goes on stepping the old state; each of
   the ``lead`` bins the stream steps meanwhile is also handed to the worker
   (:meth:`~BackgroundInit.feed`), which steps its own copy of the SNN from the ANN's state
   over them: it *catches up*;
3. at ``t0`` the stream swaps in the worker's SNN, whose state is the ANN's of ``t0 - lead``
   carried to ``t0`` over the buffered bins (:meth:`~BackgroundInit.join`), and steps the
   window's first bin from it.

The result is exactly the synchronous hybrid initialised ``lead`` bins earlier, its first
``lead`` poses not shown: deterministic whatever the threads' timing (tests compare it with
a synchronous predictor so placed). Step 3 waits only if the worker has not finished (the ANN
and ``lead`` catch-up steps take longer than ``lead`` bins of stream time): the wait is
counted in :attr:`BackgroundInit.waits`. The cost in accuracy is that of initialising from
older events; ``bench/async_init.py`` measures it against the synchronous hybrid.

The worker holds its own SNN engine; the two engines trade places at every join (no state is
copied). The thread is a daemon and stops on :meth:`BackgroundInit.close` (or when the
predictor that owns it is collected), so an interrupted stream leaves nothing behind.
"""

from __future__ import annotations

import queue
import threading
import time
import weakref
from collections.abc import Callable
from typing import TYPE_CHECKING, Generic, TypeVar, cast

import torch
from torch import Tensor

from hybridpose.errors import HybridPoseError

if TYPE_CHECKING:
    from hybridpose.nn.hybrid import HybridPose
    from hybridpose.nn.rnn import ConvRNN
    from hybridpose.nn.snn import SNN
    from hybridpose.stream import Bins, SNNRunner


class BackgroundInitError(HybridPoseError, RuntimeError):
    """The background re-initialisation failed (the worker's error is chained) or was used
    out of order."""


_START, _BIN, _END, _STOP = "start", "bin", "end", "stop"

Source = TypeVar("Source")
"""What :meth:`BackgroundInit.start` is given: the ANN's input before ``frames`` makes it."""


class BackgroundInit(Generic[Source]):
    """One worker thread that initialises and catches up the next window's SNN.

    Args:
        initialiser: the hybrid whose :meth:`~HybridPose.initial_state` turns a frame into the
            SNN's state (its ANN runs in the worker only, never at the same time as in the
            stream's thread).
        runner: the worker's own SNN engine (the same network as the stream's, another
            instance); it is handed to the stream at each :meth:`join`, and the stream's
            previous engine comes back in exchange.
        frames: turns what :meth:`start` is given (the stream's held events) into the ANN's
            input, in the worker: building the frames takes about a millisecond, a whole
            1 ms step. It must hold no reference to the stream's predictor (the worker keeps
            it as long as it runs).
    """

    def __init__(
        self,
        initialiser: HybridPose[SNN | ConvRNN],
        runner: SNNRunner,
        frames: Callable[[Source], Tensor],
    ) -> None:
        # (kind, item): the source at _START, a bin at _BIN, None otherwise
        self._jobs: queue.SimpleQueue[tuple[str, object]] = queue.SimpleQueue()
        self._done: queue.SimpleQueue[BaseException | None] = queue.SimpleQueue()
        self._open = False  # a window is being prepared (start called, join not yet)
        self.waits = 0
        """Joins that found the worker busy (the stream's step waited for it)."""
        self.wait_s = 0.0
        """Seconds the stream waited in those joins, in all."""
        self.joins = 0
        box = _RunnerBox(runner)
        self._box = box
        self._thread = threading.Thread(
            target=_work, args=(initialiser, frames, box, self._jobs, self._done),
            name="hybridpose-background-init", daemon=True,
        )  # fmt: skip
        self._thread.start()
        # run by close(), by the collector, or at the interpreter's exit (a script that never
        # closed its predictor): the worker must be stopped before the interpreter goes, or the
        # process aborts in torch's teardown
        self._finalizer = weakref.finalize(self, _stop, self._jobs, self._thread)

    @property
    def busy(self) -> bool:
        """Whether a window is being prepared (between :meth:`start` and :meth:`join`)."""
        return self._open

    def start(self, source: Source) -> None:
        """Begin preparing the next window from ``source`` (the events before the lead's first
        bin, which ``frames`` turns into the ANN's (S, C, H, W) input)."""
        if self._open:
            raise BackgroundInitError("start: the previous window was not joined")
        self._open = True
        self._jobs.put((_START, source))

    def feed(self, bins: Bins) -> None:
        """One bin the stream has stepped (S, C, H, W) since :meth:`start`: the worker steps
        it too, from the ANN's state."""
        if not self._open:
            raise BackgroundInitError("feed: no window is being prepared")
        self._jobs.put((_BIN, bins))

    def join(self, runner: SNNRunner) -> SNNRunner:
        """Wait until the worker has stepped every fed bin; returns its engine, whose state is
        the next window's, and keeps ``runner`` (the stream's previous engine) for the next
        window.

        Raises:
            BackgroundInitError: the worker failed (its error chained).
        """
        if not self._open:
            raise BackgroundInitError("join: no window is being prepared")
        self._jobs.put((_END, None))
        started = time.perf_counter()
        try:
            error = self._done.get_nowait()
        except queue.Empty:
            error = self._done.get()
            self.waits += 1
            self.wait_s += time.perf_counter() - started
        self._open = False
        self.joins += 1
        if error is not None:
            raise BackgroundInitError(
                f"the background re-initialisation failed: {error}"
            ) from error
        ready = self._box.runner
        self._box.runner = runner
        return ready

    def close(self) -> None:
        """Stop the worker (it finishes the bin in hand); idempotent."""
        self._finalizer()


def _stop(jobs: queue.SimpleQueue[tuple[str, object]], thread: threading.Thread) -> None:
    """Tell the worker to stop and wait for it (not from the worker itself: the collector
    may run a finalizer in any thread)."""
    jobs.put((_STOP, None))
    if thread is not threading.current_thread():
        thread.join(timeout=5.0)


class _RunnerBox:
    """The worker's engine, swapped by :meth:`BackgroundInit.join` while the worker is idle."""

    def __init__(self, runner: SNNRunner) -> None:
        self.runner = runner


def _work(
    initialiser: HybridPose[SNN | ConvRNN],
    frames: Callable[[Source], Tensor],
    box: _RunnerBox,
    jobs: queue.SimpleQueue[tuple[str, object]],
    done: queue.SimpleQueue[BaseException | None],
) -> None:
    """The worker's loop (no reference to the predictor or to :class:`BackgroundInit`, so
    that either can be collected while the thread waits)."""
    failed: BaseException | None = None
    with torch.inference_mode():
        while True:
            kind, item = jobs.get()
            if kind == _STOP:
                return
            if kind == _END:
                done.put(failed)
                failed = None
                continue
            if failed is not None:
                continue  # the window is lost: skip its work, report at the join
            try:
                if kind == _START:
                    _, state = initialiser.initial_state(frames(cast(Source, item)))
                    box.runner.set_state(state)
                else:
                    box.runner.advance(cast("Bins", item))
            except Exception as err:  # reported to the stream at the join
                failed = err


__all__ = ["BackgroundInit", "BackgroundInitError"]
