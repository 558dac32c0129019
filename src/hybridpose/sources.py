"""Event sources for the streaming predictor: a recording replayed, or a live camera.

A source is an iterable of *chunks* ``(t_end_us, [events of stream 0, events of stream 1,
...])``: each chunk holds, per camera stream, every event with ``t < t_end_us`` not yet
delivered, so that :meth:`hybridpose.stream.StreamingPredictor.run` can close the bins up to
``t_end_us`` after each chunk.

- :class:`RecordingReplay`: a recording file's cameras, as fast as possible or in real time
  (a chunk is released when the wall clock reaches its end, scaled by ``speed``).
- :class:`LiveCamera`: a DAVIS or DVXplorer through iniVation's dv-processing library (the
  ``live`` extra); its events are rescaled to the model's sensor size.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from hybridpose.errors import HybridPoseError, install_hint
from hybridpose.events import EVENT_DTYPE, Events
from hybridpose.io.recording import Labels, Recording

Chunk = tuple[int, list[Events]]


class SourceError(HybridPoseError, ValueError):
    """A source cannot be opened or read (no such camera, no camera attached...)."""


class RecordingReplay:
    """Replay cameras of a recording file in chunks of ``chunk_us``.

    Args:
        path: the recording.
        cameras: the camera indices to replay, one stream each, in this order.
        chunk_us: the span of one chunk (the granularity of the replay clock).
        realtime: release each chunk when the wall clock reaches its end (times ``1 /
            speed``); otherwise as fast as the consumer takes them.
        speed: replay speed in real time (2.0: twice as fast).
        start_us, end_us: the part to replay (default: from the first to past the last event
            of the chosen cameras).

    The file stays open while the replay is iterated; events are read a second at a time
    and cut into chunks in memory.
    """

    BLOCK_US = 1_000_000

    def __init__(
        self,
        path: str | Path,
        cameras: Sequence[int] = (2, 3),
        *,
        chunk_us: int = 1_000,
        realtime: bool = False,
        speed: float = 1.0,
        start_us: int | None = None,
        end_us: int | None = None,
    ) -> None:
        if chunk_us < 1:
            raise SourceError(f"chunk_us must be >= 1, got {chunk_us}")
        if not speed > 0:
            raise SourceError(f"speed must be > 0, got {speed}")
        self.path = Path(path)
        with Recording(self.path) as rec:
            n = len(rec.cameras)
            bad = [c for c in cameras if not 0 <= c < n]
            if bad or not cameras:
                raise SourceError(
                    f"{self.path}: no camera {bad or list(cameras)}; the file has cameras 0-{n - 1}"
                )
            infos = [rec.cameras[c] for c in cameras]
            self.sensor_size: tuple[int, int] = rec.sensor_size
            self.projections: list[npt.NDArray[np.float64]] = [i.calibration.P for i in infos]
            self.labels: Labels = rec.labels()
            starts = [i.t_start_us for i in infos if i.t_start_us is not None]
            ends = [i.t_end_us for i in infos if i.t_end_us is not None]
        self.cameras = tuple(int(c) for c in cameras)
        self.start_us = (min(starts) if starts else 0) if start_us is None else int(start_us)
        self.end_us = (max(ends) + 1 if ends else self.start_us) if end_us is None else int(end_us)
        self.chunk_us = int(chunk_us)
        self.realtime = realtime
        self.speed = float(speed)
        self.wall0 = 0.0  # set when iteration starts, once the first events are read

    @property
    def duration_us(self) -> int:
        return max(0, self.end_us - self.start_us)

    def __iter__(self) -> Iterator[Chunk]:
        # the replay clock (wall0) starts once the file is open and its first second read
        # (tens of milliseconds): the first chunk is then released one chunk later, not late
        started = False
        # chunks on the absolute grid of multiples of chunk_us (aligned with a predictor's
        # bins when chunk_us divides or equals bin_us); blocks hold whole chunks
        block_us = max(1, self.BLOCK_US // self.chunk_us) * self.chunk_us
        first = (self.start_us // self.chunk_us) * self.chunk_us
        with Recording(self.path) as rec:
            for block_start in range(first, self.end_us, block_us):
                block_end = min(block_start + block_us, self.end_us)
                lo_t = max(block_start, self.start_us)
                block = [rec.events(c, lo_t, block_end) for c in self.cameras]
                for a in range(block_start, block_end, self.chunk_us):
                    b = min(a + self.chunk_us, block_end)
                    chunk = []
                    for events in block:
                        t = events["t"]
                        lo, hi = np.searchsorted(t, [a, b], side="left")
                        chunk.append(events[lo:hi])
                    if not started:
                        self.wall0, started = time.perf_counter(), True
                    if self.realtime:
                        due = self.wall0 + (b - self.start_us) / 1e6 / self.speed
                        delay = due - time.perf_counter()
                        if delay > 0:
                            time.sleep(delay)
                    yield b, chunk

    def release_time(self, t_us: int) -> float:
        """The ``time.perf_counter()`` at which the running real-time replay releases the
        events before ``t_us`` (its lag reference)."""
        return self.wall0 + (t_us - self.start_us) / 1e6 / self.speed


def _import_dv() -> Any:
    try:
        import dv_processing
    except ImportError:
        raise SourceError(
            f"a live camera needs iniVation's dv-processing: {install_hint('live')}"
        ) from None
    return dv_processing


def dv_to_events(
    array: npt.NDArray[Any], camera_size: tuple[int, int], sensor_size: tuple[int, int]
) -> Events:
    """dv-processing's event array (timestamp, x, y, polarity 0/1) as :data:`EVENT_DTYPE`,
    pixel coordinates scaled from ``camera_size`` to ``sensor_size`` (``(width, height)``;
    the same field of view, as the 87x65 synthetic sensor is a DAVIS346 seen with pixels
    4 times larger)."""
    out = np.empty(len(array), dtype=EVENT_DTYPE)
    cw, ch = camera_size
    sw, sh = sensor_size
    out["x"] = (array["x"].astype(np.int64) * sw) // cw
    out["y"] = (array["y"].astype(np.int64) * sh) // ch
    out["t"] = array["timestamp"]
    out["p"] = np.where(array["polarity"] > 0, 1, -1)
    return out


class LiveCamera:
    """A live DAVIS or DVXplorer through dv-processing, as one stream.

    Args:
        sensor_size: the model's sensor size; events are rescaled to it.
        serial: the camera's serial number (default: the first camera found).
        margin_us: how long after its time an event may still arrive (USB transfer) when no
            events come: see below.
        clock: the host's clock in seconds (a monotonic one; tests pass a fake).

    Time goes on without events (a still scene). A chunk ends at the last event of a batch
    while events come; when a poll finds none, the chunk ends at the camera's estimated
    current time minus ``margin_us``, so that the predictor's bins keep closing (empty) and
    poses keep coming. The estimate is the host's clock minus the smallest difference seen
    between a batch's arrival and its last event's timestamp (the clocks' offset plus the
    fastest transfer), allowed to grow by 1 ms per second so that it follows the clocks'
    drift. An event that arrives after its time has been declared past (a transfer slower
    than the fastest by more than ``margin_us``) is dropped and counted in ``late``.

    Raises:
        SourceError: dv-processing is not installed, or no camera is attached.
    """

    MARGIN_US = 10_000
    DRIFT = 1e-3  # the clock offset's estimate may grow by this much per unit of host time
    POLL_S = 0.0005

    def __init__(
        self,
        sensor_size: tuple[int, int],
        serial: str | None = None,
        *,
        margin_us: int = MARGIN_US,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if margin_us < 0:
            raise SourceError(f"margin_us must be >= 0, got {margin_us}")
        dv = _import_dv()
        if not dv.io.camera.discover():
            raise SourceError(
                "no DAVIS or DVXplorer camera is attached (dv-processing found none); "
                "replay a recording with --recording instead"
            )
        self._camera = dv.io.camera.open(serial) if serial else dv.io.camera.open()
        if not self._camera.isEventStreamAvailable():
            raise SourceError(f"camera {self._camera.getCameraName()} gives no event stream")
        res = self._camera.getEventResolution()
        self.camera_size = (int(res[0]), int(res[1]))
        self.sensor_size = sensor_size
        self.projections: list[npt.NDArray[np.float64] | None] = [None]
        self.name = str(self._camera.getCameraName())
        self.margin_us = int(margin_us)
        self._clock = clock
        self.dropped = 0  # events older than those already delivered (a clock reset)
        self.late = 0  # events that arrived after their time was declared past (still scene)

    def __iter__(self) -> Iterator[Chunk]:
        last: int | None = None  # the last event delivered
        released: int | None = None  # every event before this time has been delivered
        offset: float | None = None  # host us - camera us, smallest seen (drifting up)
        seen = 0.0  # host us of the last offset update
        while self._camera.isRunning():
            batch = self._camera.getNextEventBatch()
            now = self._clock() * 1e6
            if offset is not None:
                offset += (now - seen) * self.DRIFT
                seen = now
            if batch is None or batch.isEmpty():
                if offset is not None and released is not None:
                    t = round(now - offset) - self.margin_us
                    if t > released:  # a still scene: time goes on without events
                        released = t
                        yield t, [np.empty(0, dtype=EVENT_DTYPE)]
                time.sleep(self.POLL_S)
                continue
            events = dv_to_events(batch.numpy(), self.camera_size, self.sensor_size)
            sample = now - float(events["t"][-1])
            offset, seen = (sample if offset is None else min(offset, sample)), now
            if last is not None and events["t"][0] < last:
                # the device's clock went back (a reset): a stream must stay in time order
                keep = events["t"] >= last
                self.dropped += int(len(events) - keep.sum())
                events = events[keep]
            if released is not None and len(events) and events["t"][0] < released:
                keep = events["t"] >= released
                self.late += int(len(events) - keep.sum())
                events = events[keep]
            if not len(events):
                continue
            last = int(events["t"][-1])
            released = last if released is None else max(released, last)
            # a later batch may still hold events at the last timestamp: close before it
            yield released, [events]


__all__ = ["LiveCamera", "RecordingReplay", "SourceError", "dv_to_events"]
