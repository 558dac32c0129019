"""Tests of hybridpose.reinit: the background re-initialisation's protocol, with fake networks
(its numerical result inside the predictor is tested in test_stream.py)."""

from __future__ import annotations

import threading
from typing import Any

import numpy as np
import pytest
import torch

from hybridpose.reinit import BackgroundInit, BackgroundInitError
from hybridpose.stream import Bins


class _Runner:
    """Records what it is asked to do."""

    def __init__(self, name: str, fail_at: float | None = None) -> None:
        self.name, self.fail_at = name, fail_at
        self.calls: list[tuple[str, float]] = []

    def reset(self, batch: int, height: int, width: int) -> None:
        self.calls.append(("reset", 0.0))

    def set_state(self, state: Any) -> None:
        self.calls.append(("set_state", float(state)))

    def advance(self, x: Bins) -> None:
        if self.fail_at is not None and float(x) == self.fail_at:
            raise ValueError(f"{self.name} cannot step {float(x)}")
        self.calls.append(("advance", float(x)))

    def step(self, x: Bins) -> torch.Tensor:
        raise AssertionError("the worker catches up with advance(), which returns nothing")

    def step_uv(self, x: Bins) -> np.ndarray:
        raise AssertionError("the worker catches up with advance(), which returns nothing")


_FRAME_THREADS: list[str] = []


def _frames(source: torch.Tensor) -> torch.Tensor:
    """The frames of a start's source: here the value plus 0.5, so that the recorded states
    show that they were built (from 1.0: 15.0); records the thread that built them."""
    _FRAME_THREADS.append(threading.current_thread().name)
    return source + 0.5


class _Initialiser:
    """``initial_state``: the state is the frame's value times 10; optionally waits for
    ``go``."""

    def __init__(self, go: threading.Event | None = None) -> None:
        self.go = go
        self.threads: list[str] = []

    def initial_state(self, frame: torch.Tensor) -> tuple[None, torch.Tensor]:
        self.threads.append(threading.current_thread().name)
        if self.go is not None:
            assert self.go.wait(10.0)
        return None, frame * 10


def test_start_feed_join_in_order_and_engines_trade_places() -> None:
    init, worker, main = _Initialiser(), _Runner("worker"), _Runner("main")
    background = BackgroundInit(init, worker, _frames)  # type: ignore[arg-type]
    background.start(torch.tensor(1.0))
    preparing = background.busy
    background.feed(torch.tensor(2.0))
    background.feed(torch.tensor(3.0))
    ready: object = background.join(main)
    assert ready is worker and preparing and not background.busy
    assert worker.calls == [("set_state", 15.0), ("advance", 2.0), ("advance", 3.0)]
    # the frames and the ANN run in the worker, not in the stream's thread
    assert init.threads == _FRAME_THREADS[-1:] == ["hybridpose-background-init"]
    # the next window is prepared on the engine the stream gave back
    background.start(torch.tensor(4.0))
    assert background.join(worker) is main
    assert main.calls == [("set_state", 45.0)]
    assert background.joins == 2
    background.close()
    assert not background._thread.is_alive()
    background.close()  # idempotent


def test_a_failure_in_the_worker_is_raised_at_the_join_and_the_next_window_works() -> None:
    worker, main = _Runner("worker", fail_at=2.0), _Runner("main")
    background = BackgroundInit(_Initialiser(), worker, _frames)  # type: ignore[arg-type]
    background.start(torch.tensor(1.0))
    background.feed(torch.tensor(2.0))
    background.feed(torch.tensor(3.0))  # skipped: the window is lost
    with pytest.raises(BackgroundInitError, match=r"worker cannot step 2\.0") as info:
        background.join(main)
    assert isinstance(info.value.__cause__, ValueError)
    assert worker.calls == [("set_state", 15.0)]
    background.start(torch.tensor(5.0))
    background.feed(torch.tensor(6.0))
    assert background.join(main) is worker
    assert worker.calls[-2:] == [("set_state", 55.0), ("advance", 6.0)]
    background.close()


def test_out_of_order_use_is_refused() -> None:
    background = BackgroundInit(_Initialiser(), _Runner("worker"), _frames)  # type: ignore[arg-type]
    with pytest.raises(BackgroundInitError, match="feed: no window is being prepared"):
        background.feed(torch.tensor(1.0))
    with pytest.raises(BackgroundInitError, match="join: no window is being prepared"):
        background.join(_Runner("main"))
    background.start(torch.tensor(1.0))
    with pytest.raises(BackgroundInitError, match="start: the previous window was not joined"):
        background.start(torch.tensor(2.0))
    background.close()


def test_a_join_that_finds_the_worker_busy_waits_and_is_counted() -> None:
    go = threading.Event()
    background = BackgroundInit(_Initialiser(go), _Runner("worker"), _frames)  # type: ignore[arg-type]
    background.start(torch.tensor(1.0))
    timer = threading.Timer(0.5, go.set)  # the ANN "finishes" half a second from now
    timer.start()
    background.join(_Runner("main"))
    assert background.waits == 1 and background.wait_s > 0.1
    background.close()
    timer.join()
