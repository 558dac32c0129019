"""Tests of hybridpose.sources: recording replay and the live camera's conversion and errors."""

from __future__ import annotations

import builtins
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from tiny_run import DURATION_US, write_recording

from hybridpose.io.recording import Recording
from hybridpose.sources import LiveCamera, RecordingReplay, SourceError, dv_to_events


@pytest.fixture(scope="module")
def recording(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_recording(
        tmp_path_factory.mktemp("sources") / "r.h5", 13, gap_us=(200_000, 250_000)
    )


@pytest.mark.parametrize("chunk_us", [1_000, 7_000, 300_000])
def test_replay_delivers_every_event_once_in_aligned_chunks(recording: Path, chunk_us: int) -> None:
    replay = RecordingReplay(recording, (2, 3), chunk_us=chunk_us)
    chunks = list(replay)
    ends = [t for t, _ in chunks]
    assert ends == sorted(ends) and len(set(ends)) == len(ends)
    # chunk ends on the grid of multiples of chunk_us (blocks hold whole chunks), but the last
    assert all(t % chunk_us == 0 for t in ends[:-1]) and ends[-1] == replay.end_us
    previous = replay.start_us
    with Recording(recording) as rec:
        for s, cam in enumerate((2, 3)):
            got = np.concatenate([c[s] for _, c in chunks])
            np.testing.assert_array_equal(got, rec.events(cam, 0, 10**12))
    for t_end, chunk in chunks:
        for events in chunk:  # each chunk holds the events before its end, after the previous
            assert np.all(events["t"] < t_end) and np.all(events["t"] >= previous - chunk_us)
        previous = t_end
    assert replay.projections[0].shape == (3, 4) and replay.sensor_size == (24, 24)
    assert replay.labels.count > 0 and replay.end_us == DURATION_US - 500 + 1


def test_replay_part_and_realtime_pacing(recording: Path) -> None:
    replay = RecordingReplay(recording, (3,), chunk_us=10_000, realtime=True, speed=4.0,
                             start_us=100_000, end_us=300_000)  # fmt: skip
    t = time.perf_counter()
    chunks = list(replay)
    elapsed = time.perf_counter() - t
    assert elapsed >= 0.2 / 4.0 - 1e-3  # 200 ms of stream at 4x: at least 50 ms
    assert elapsed < 1.0
    events = np.concatenate([c[0] for _, c in chunks])
    assert events["t"].min() >= 100_000 and events["t"].max() < 300_000
    assert replay.release_time(300_000) == pytest.approx(replay.wall0 + 0.05)


def test_the_replay_clock_starts_once_the_first_events_are_read(
    recording: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Opening the file and reading the first second take time; the replay's clock starts
    after them, so the first chunk is released one chunk after the start, not already late
    by the read. A fake clock: each read of a camera's events costs 1 s, sleeping advances it."""
    import hybridpose.sources as sources

    clock = [100.0]

    class FakeTime:
        @staticmethod
        def perf_counter() -> float:
            return clock[0]

        @staticmethod
        def sleep(seconds: float) -> None:
            clock[0] += seconds

    read = Recording.events

    def slow_read(self: Recording, camera: int, t_start: int, t_end: int) -> np.ndarray:
        clock[0] += 1.0
        return read(self, camera, t_start, t_end)

    monkeypatch.setattr(sources, "time", FakeTime)
    monkeypatch.setattr(Recording, "events", slow_read)
    replay = RecordingReplay(recording, (2, 3), chunk_us=10_000, realtime=True,
                             start_us=100_000, end_us=300_000)  # fmt: skip
    t_end, _ = next(iter(replay))
    assert t_end == 110_000
    assert replay.wall0 == pytest.approx(102.0)  # after the two cameras' reads
    assert clock[0] == pytest.approx(replay.release_time(t_end)) == pytest.approx(102.01)


def test_replay_errors(recording: Path, tmp_path: Path) -> None:
    with pytest.raises(SourceError, match="no camera \\[7\\]; the file has cameras 0-3"):
        RecordingReplay(recording, (2, 7))
    with pytest.raises(SourceError, match="chunk_us"):
        RecordingReplay(recording, (2,), chunk_us=0)
    with pytest.raises(SourceError, match="speed"):
        RecordingReplay(recording, (2,), speed=0.0)
    with pytest.raises(FileNotFoundError):
        RecordingReplay(tmp_path / "missing.h5")


def test_dv_events_are_converted_and_rescaled() -> None:
    dv_dtype = np.dtype([("timestamp", "<i8"), ("x", "<i2"), ("y", "<i2"), ("polarity", "i1")])
    raw = np.array([(10, 0, 0, 1), (11, 345, 259, 0), (12, 172, 130, 1)], dtype=dv_dtype)
    ev = dv_to_events(raw, (346, 260), (87, 65))
    assert ev["t"].tolist() == [10, 11, 12]
    assert ev["p"].tolist() == [1, -1, 1]
    # x * 87 // 346 and y * 65 // 260: the last pixel maps to the last pixel
    assert ev["x"].tolist() == [0, 86, 43] and ev["y"].tolist() == [0, 64, 32]


def test_live_camera_without_the_driver_or_a_camera(monkeypatch: pytest.MonkeyPatch) -> None:
    real_import = builtins.__import__

    def no_dv(name: str, *args: Any, **kwargs: Any) -> Any:
        if name == "dv_processing":
            raise ImportError(name)
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_dv)
    with pytest.raises(SourceError, match=r"pip install 'hybridpose\[live\]'"):
        LiveCamera((87, 65))
    monkeypatch.setattr(builtins, "__import__", real_import)
    pytest.importorskip("dv_processing")
    import dv_processing

    if dv_processing.io.camera.discover():
        pytest.skip("a camera is attached")
    with pytest.raises(SourceError, match="no DAVIS or DVXplorer camera is attached"):
        LiveCamera((87, 65))


class _FakeStore:
    """What dv-processing's ``getNextEventBatch`` returns (``isEmpty``, ``numpy``)."""

    def __init__(self, array: np.ndarray) -> None:
        self._array = array

    def isEmpty(self) -> bool:
        return len(self._array) == 0

    def numpy(self) -> np.ndarray:
        return self._array


class _FakeCamera:
    """A DAVIS346 that gives ``batches`` event batches (None: nothing ready yet), then stops."""

    def __init__(self, batches: list[np.ndarray | None]) -> None:
        self._batches = list(batches)

    def isRunning(self) -> bool:
        return bool(self._batches)

    def getNextEventBatch(self) -> _FakeStore | None:
        batch = self._batches.pop(0)
        return None if batch is None else _FakeStore(batch)

    def isEventStreamAvailable(self) -> bool:
        return True

    def getEventResolution(self) -> tuple[int, int]:
        return (346, 260)

    def getCameraName(self) -> str:
        return "DAVIS346_fake"


DV_DTYPE = np.dtype([("timestamp", "<i8"), ("x", "<i2"), ("y", "<i2"), ("polarity", "i1")])


def _fake_dv(camera: _FakeCamera) -> Any:
    class _Io:
        class camera:
            @staticmethod
            def discover() -> list[str]:
                return ["DAVIS346_fake"]

            @staticmethod
            def open(*args: Any) -> _FakeCamera:
                return camera

    class _Dv:
        io = _Io

    return _Dv


def _davis_batches(
    start_us: int, seconds: float, per_ms: int, seed: int
) -> list[np.ndarray | None]:
    rng = np.random.default_rng(seed)
    out: list[np.ndarray | None] = [None]  # the first poll finds nothing
    for ms in range(int(seconds * 1000)):
        t = start_us + ms * 1000 + np.sort(rng.integers(0, 1000, per_ms))
        batch = np.zeros(per_ms, dtype=DV_DTYPE)
        batch["timestamp"] = t
        batch["x"] = rng.integers(0, 346, per_ms)
        batch["y"] = rng.integers(0, 260, per_ms)
        batch["polarity"] = rng.integers(0, 2, per_ms)
        out.append(batch)
    return out


def test_live_camera_streams_batches_rescaled(monkeypatch: pytest.MonkeyPatch) -> None:
    import hybridpose.sources as sources

    batches = _davis_batches(1_700_000_000_000, 0.05, 20, 0)
    monkeypatch.setattr(sources, "_import_dv", lambda: _fake_dv(_FakeCamera(batches)))
    live = LiveCamera((87, 65))
    assert live.camera_size == (346, 260) and live.name == "DAVIS346_fake"
    chunks = list(live)
    assert len(chunks) == 50
    for (t_end, [events]), raw in zip(chunks, batches[1:], strict=True):
        assert raw is not None and t_end == int(raw["timestamp"][-1])
        assert events["x"].max() < 87 and events["y"].max() < 65
        np.testing.assert_array_equal(events["t"], raw["timestamp"])


def test_stream_command_live(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """``hybridpose stream --live`` with the shipped weights on a fake DAVIS346 (0.3 s)."""
    import hybridpose.sources as sources
    from hybridpose.cli import main

    batches = _davis_batches(5_000_000_123, 0.3, 30, 1)
    monkeypatch.setattr(sources, "_import_dv", lambda: _fake_dv(_FakeCamera(batches)))
    assert main(["stream", "--live", "--quiet"]) == 0
    out = capsys.readouterr().out
    # the grid starts at the 100 ms multiple before the first event: 5.0 s; the last event is
    # at ~5.3001 s, so 30 bins of 10 ms close
    assert "hybrid: 30 poses" in out and "1 camera stream(s)" in out
    assert "error against the labels" not in out


def test_live_clock_going_back_drops_the_old_events(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    import hybridpose.sources as sources
    from hybridpose.cli import main

    batches = _davis_batches(5_000_000_000, 0.2, 30, 2)
    back = batches[100]
    assert back is not None
    back["timestamp"] -= 500  # this batch starts ~0.5 ms before the previous one ended
    monkeypatch.setattr(sources, "_import_dv", lambda: _fake_dv(_FakeCamera(batches)))
    assert main(["stream", "--live", "--quiet"]) == 0
    captured = capsys.readouterr()
    dropped = int(np.count_nonzero(back["timestamp"] < batches[99]["timestamp"][-1]))  # type: ignore[index]
    assert 0 < dropped < 30
    assert f"dropped {dropped} events older than events already delivered" in captured.err
    # events from 5.0 s to just before 5.2 s: the bin ending at 5.2 s waits for a later event
    assert "hybrid: 19 poses" in captured.out


class _FakeClock:
    """A host clock that advances ``step_us`` at every reading."""

    def __init__(self, start_us: int, step_us: int) -> None:
        self.us, self.step = start_us, step_us

    def __call__(self) -> float:
        self.us += self.step
        return self.us / 1e6


def test_live_still_scene_keeps_time_going(monkeypatch: pytest.MonkeyPatch) -> None:
    """No events for a while: chunks go on from the host clock, the clocks' offset measured
    on the batches, less the margin; an event that comes after its time has passed is late."""
    import hybridpose.sources as sources

    batch = np.zeros(3, dtype=DV_DTYPE)
    batch["timestamp"] = [5_000_100, 5_000_500, 5_001_000]
    late = np.zeros(2, dtype=DV_DTYPE)
    late["timestamp"] = [5_001_500, 5_008_000]
    camera = _FakeCamera([batch, None, None, None, late, None, None, None])
    monkeypatch.setattr(sources, "_import_dv", lambda: _fake_dv(camera))
    # one host reading per poll: 100.002 s, 100.004 s, ...
    live = LiveCamera((87, 65), margin_us=5_000, clock=_FakeClock(100_000_000, 2_000))
    chunks = list(live)
    # offset at poll 0: 100_002_000 - 5_001_000 = 94_001_000 us, growing 2 us per poll (1 ms
    # per s), so poll k releases 100_002_000 + 2000 k - (94_001_000 + 2 k) - 5000:
    # k = 1, 2: 4_997_998, 4_999_996, before the last event (nothing); k = 3: 5_001_994.
    # Poll 4's batch: 5_001_500 is late, 5_008_000 goes on (its offset sample 94_002_000 is
    # larger). k = 5, 6: 5_005_990, 5_007_988 (nothing); k = 7: 5_009_986.
    assert [t for t, _ in chunks] == [5_001_000, 5_001_994, 5_008_000, 5_009_986]
    assert [len(e) for _, [e] in chunks] == [3, 0, 1, 0]
    assert live.late == 1 and live.dropped == 0


def test_live_still_scene_keeps_the_poses_coming(monkeypatch: pytest.MonkeyPatch) -> None:
    """30 ms of events then 100 polls without any: the predictor's bins close on the host's
    clock, 1 ms per poll, up to the margin before the camera's estimated time."""
    import hybridpose.sources as sources
    from hybridpose.pretrained import pretrained_dir
    from hybridpose.stream import StreamingPredictor, poses_between

    batches = _davis_batches(5_000_000_000, 0.03, 30, 1) + [None] * 100
    monkeypatch.setattr(sources, "_import_dv", lambda: _fake_dv(_FakeCamera(batches)))
    live = LiveCamera((87, 65), margin_us=3_000, clock=_FakeClock(7_000_000_000, 1_000))
    predictor = StreamingPredictor.from_checkpoints(pretrained_dir("cpu"), "snn", streams=1)
    chunks = list(live)
    poses = list(predictor.run(chunks))
    last_event = int(batches[30]["timestamp"][-1])  # type: ignore[index]
    end = chunks[-1][0]
    # 100 polls of 1 ms past the last event, less the margin and the offset's 1 ms/s growth
    assert last_event + 96_000 < end <= last_event + 97_000
    first = int(batches[1]["timestamp"][0])  # type: ignore[index]
    # bins of 10 ms from 5.0 s: without the still scene's chunks only the first 3 would close
    assert len(poses) == poses_between(first, end, 10_000, 100_000) == 12
    assert sum(p.events for p in poses) == 30 * 30  # every event, each in one bin
