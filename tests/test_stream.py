"""Tests of hybridpose.stream: the streaming predictor against the offline evaluation.

The known answer for every mode is :func:`hybridpose.evaluate.predict`, the batch evaluation
(itself checked against direct network calls in test_evaluate.py): the same recording, pushed
in chunks of any size, with a gap and with bursts, must give the same poses at the same times.
"""

from __future__ import annotations

import itertools
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np
import numpy.typing as npt
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from tiny_run import DURATION_US, WINDOW, write_checkpoints, write_recording

from hybridpose.data import crop_origin, to_sensor_pixels
from hybridpose.evaluate import Segment, load_models, load_segment, predict
from hybridpose.events import EVENT_DTYPE, EventError, Events, make_events
from hybridpose.geometry import triangulate_two_views
from hybridpose.io.recording import Recording
from hybridpose.sources import RecordingReplay
from hybridpose.stream import (
    EventRing,
    LatencyStats,
    StreamError,
    StreamingPredictor,
    StreamPose,
    _sensor_pixels,
    poses_between,
)
from hybridpose.variants import names

pytestmark = pytest.mark.usefixtures("one_thread")  # tests/conftest.py

CAMS = (2, 3)
GAP = (420_000, 780_000)  # no events of any camera: 36 bins with empty input


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    root = tmp_path_factory.mktemp("stream")
    checkpoints = write_checkpoints(root / "checkpoints")
    recording = write_recording(root / "gap.h5", 13, gap_us=GAP)
    return checkpoints, recording


def _camera_events(recording: Path) -> tuple[list[Events], list[npt.NDArray[np.float64]]]:
    with Recording(recording) as rec:
        events = [rec.events(c, 0, 10**12) for c in CAMS]
        projections = [rec.cameras[c].calibration.P for c in CAMS]
    return events, projections


def _offline(checkpoints: Path, recording: Path, n_windows: int) -> dict[str, np.ndarray]:
    """``predict`` on one segment from t = 0: sensor pixels (2, W * T, J, 2) per model."""
    models = load_models(checkpoints)
    for m in models.modules():
        m.eval()
    seg = Segment(str(recording), tuple(i * WINDOW.stride_us for i in range(n_windows)), 0)
    per_cam: dict[str, list[np.ndarray]] = {}
    with Recording(recording) as rec:
        labels = rec.labels()
        for cam in CAMS:
            data = load_segment(rec, labels, cam, seg, WINDOW)
            for name, uv in predict(models, [data], WINDOW.steps).items():
                sensor = to_sensor_pixels(uv[0].double().numpy(), WINDOW.crop, WINDOW.downsample)
                per_cam.setdefault(name, []).append(sensor)
    return {name: np.stack(v) for name, v in per_cam.items()}


def _predictor(checkpoints: Path, mode: str, **kwargs: object) -> StreamingPredictor:
    return StreamingPredictor.from_checkpoints(checkpoints, mode, **kwargs)  # type: ignore[arg-type]


def _stream(sp: StreamingPredictor, events: list[Events], cuts: list[int]) -> list[StreamPose]:
    """Push each camera's events cut at the given event counts, cameras interleaved."""
    poses: list[StreamPose] = []
    bounds = [0, *cuts, 10**12]
    for lo, hi in itertools.pairwise(bounds):
        for s, ev in enumerate(events):
            poses += sp.push(ev[lo:hi], s)
    poses += sp.advance(DURATION_US)
    return poses


def test_sensor_pixels_are_to_sensor_pixels() -> None:
    # the stream's compiled conversion is data.to_sensor_pixels then a float32 cast, bit for
    # bit (NaN stays NaN), for a crop and without one
    rng = np.random.default_rng(0)
    uv = (rng.uniform(-2.0, 70.0, (2, 13, 2))).astype(np.float32)
    uv[1, 3, 0] = np.nan
    for crop, downsample in [((11, 1, 64, 64), 1), (None, 2), ((3, 5, 40, 32), 4)]:
        out = np.empty_like(uv)
        _sensor_pixels(uv, downsample, *crop_origin(crop), out)
        want = to_sensor_pixels(uv, crop, downsample).astype(np.float32)
        np.testing.assert_array_equal(out, want)


@pytest.mark.parametrize("mode", names())
def test_stream_equals_the_offline_evaluation(run: tuple[Path, Path], mode: str) -> None:
    checkpoints, recording = run
    events, projections = _camera_events(recording)
    n_windows = DURATION_US // WINDOW.stride_us
    expected = _offline(checkpoints, recording, n_windows)[mode]  # (2, W * T, J, 2)
    rng = np.random.default_rng(7)
    cuts = sorted(set(rng.integers(1, 3000, 40).tolist()))  # chunks of 1 to ~300 events
    sp = _predictor(checkpoints, mode, projections=projections)
    poses = _stream(sp, events, cuts)
    assert len(poses) == n_windows * WINDOW.steps == expected.shape[1]
    assert [p.t_us for p in poses] == [(i + 1) * WINDOW.bin_us for i in range(len(poses))]
    assert [p.step for p in poses] == [i % WINDOW.steps + 1 for i in range(len(poses))]
    got = np.stack([p.uv for p in poses], axis=1)  # (2, N, J, 2)
    np.testing.assert_allclose(got, expected, atol=1e-4)
    # the gap's bins had no events and still gave poses
    in_gap = [p for p in poses if GAP[0] < p.t_us <= GAP[1]]
    assert len(in_gap) == (GAP[1] - GAP[0]) // WINDOW.bin_us
    assert all(p.events == 0 for p in in_gap)
    assert sum(p.events for p in poses) == sum(len(e) for e in events)


@pytest.mark.parametrize("mode", ["hybrid", "snn"])
def test_event_driven_engine_streams_the_same_poses(run: tuple[Path, Path], mode: str) -> None:
    """The event-driven SNN engine against the offline evaluation (dense PyTorch)."""
    checkpoints, recording = run
    events, projections = _camera_events(recording)
    expected = _offline(checkpoints, recording, DURATION_US // WINDOW.stride_us)[mode]
    sp = _predictor(checkpoints, mode, projections=projections, engine="event")
    got = np.stack([p.uv for p in _stream(sp, events, [777, 1500])], axis=1)
    np.testing.assert_allclose(got, expected, atol=1e-4)


def test_chunking_does_not_change_the_poses(run: tuple[Path, Path]) -> None:
    """One event at a time, random chunks, and the whole recording in one burst agree."""
    checkpoints, recording = run
    events, projections = _camera_events(recording)
    n = len(events[0])

    def uvs(cuts: list[int]) -> np.ndarray:
        sp = _predictor(checkpoints, "hybrid", projections=projections)
        return np.stack([p.uv for p in _stream(sp, events, cuts)])

    burst = uvs([])
    np.testing.assert_array_equal(uvs(list(range(1, 400))), burst)  # single events at first
    np.testing.assert_array_equal(uvs(list(range(0, n, 997))), burst)


def test_feed_gives_the_poses_of_pushing_each_camera_then_advancing(
    run: tuple[Path, Path],
) -> None:
    """``feed`` closes a chunk's bins once, after all cameras' events; pushing camera by camera
    closes some of them earlier (after the last camera's push). The poses are the same, in the
    same order. Chunks end between bin boundaries (every 15 ms for 10 ms bins)."""
    checkpoints, recording = run
    events, projections = _camera_events(recording)
    fed = _predictor(checkpoints, "hybrid", projections=projections)
    pushed = _predictor(checkpoints, "hybrid", projections=projections)
    got: list[StreamPose] = []
    want: list[StreamPose] = []
    for t_end in range(15_000, DURATION_US + 1, 15_000):
        chunk = [ev[(ev["t"] >= t_end - 15_000) & (ev["t"] < t_end)] for ev in events]
        got += fed.feed(t_end, chunk)
        for s, ev in enumerate(chunk):
            want += pushed.push(ev, s)
        want += pushed.advance(t_end)
    assert len(got) == DURATION_US // WINDOW.bin_us
    assert [(p.t_us, p.step, p.events) for p in got] == [(p.t_us, p.step, p.events) for p in want]
    np.testing.assert_array_equal(np.stack([p.uv for p in got]), np.stack([p.uv for p in want]))


@pytest.mark.parametrize("mode", ["hybrid", "ann_low_held"])
def test_a_window_with_no_event_before_it_does_not_wait_for_the_ann(
    run: tuple[Path, Path], mode: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The stream's first window has no event before it: its step takes the ANN's output on
    empty frames, computed when the predictor was made, instead of running the ANN (whose
    output it equals: test_stream_equals_the_offline_evaluation). Later windows run it."""
    checkpoints, recording = run
    events, projections = _camera_events(recording)
    sp = _predictor(checkpoints, mode, projections=projections)
    calls: list[int] = []
    target: object = sp._initialiser if mode == "hybrid" else sp.ann
    name = "initial_state" if mode == "hybrid" else "forward"
    ann_call = getattr(target, name)

    def counted(frames: torch.Tensor) -> object:
        calls.append(1)
        return ann_call(frames)

    monkeypatch.setattr(target, name, counted)
    first = sp.feed(WINDOW.bin_us, [ev[ev["t"] < WINDOW.bin_us] for ev in events])
    assert [p.step for p in first] == [1] and calls == []
    second_window = WINDOW.stride_us + WINDOW.bin_us
    rest = sp.feed(second_window, [ev[(ev["t"] >= WINDOW.bin_us) & (ev["t"] < second_window)]
                                   for ev in events])  # fmt: skip
    assert rest[-1].step == 1 and calls == [1]


def test_three_d_poses_are_the_triangulated_streams(run: tuple[Path, Path]) -> None:
    checkpoints, recording = run
    events, projections = _camera_events(recording)
    sp = _predictor(checkpoints, "hybrid", projections=projections)
    poses = _stream(sp, events, [1000, 2000])
    for p in poses[::17]:
        assert p.xyz is not None
        want = triangulate_two_views(
            projections[0], projections[1], p.uv[0].astype(np.float64), p.uv[1].astype(np.float64)
        )
        np.testing.assert_allclose(p.xyz, want, rtol=1e-12)
    single = _predictor(checkpoints, "hybrid", projections=[projections[0]])
    one = _stream(single, events[:1], [500])
    assert all(p.xyz is None and p.uv.shape == (1, 13, 2) for p in one)
    # a single stream is the first row of the two-stream run
    np.testing.assert_allclose(np.stack([p.uv[0] for p in one]),
                               np.stack([p.uv[0] for p in poses]), atol=1e-3)  # fmt: skip


def test_reinit_every_is_configurable(run: tuple[Path, Path]) -> None:
    checkpoints, recording = run
    events, projections = _camera_events(recording)
    sp = _predictor(checkpoints, "ann_low_held", projections=projections, reinit_every=5)
    poses = _stream(sp, events, [])
    assert [p.step for p in poses[:11]] == [1, 2, 3, 4, 5, 1, 2, 3, 4, 5, 1]
    for k in range(0, len(poses) - 5, 5):  # held for 5 bins, then a new ANN pose
        for j in range(1, 5):
            np.testing.assert_array_equal(poses[k + j].uv, poses[k].uv)
    with pytest.raises(StreamError, match="reinit_every"):
        _predictor(checkpoints, "hybrid", reinit_every=0)


def test_time_advances_without_events_and_waits_for_the_slowest_stream(
    run: tuple[Path, Path],
) -> None:
    checkpoints, recording = run
    events, projections = _camera_events(recording)
    sp = _predictor(checkpoints, "snn", projections=projections)
    assert sp.advance(0) == [] and sp.next_bin_end_us == WINDOW.bin_us
    poses = sp.advance(55_000)  # no events at all: 5 bins close with empty input
    assert [p.t_us for p in poses] == [10_000, 20_000, 30_000, 40_000, 50_000]
    assert all(p.events == 0 for p in poses)
    # stream 0 runs ahead: nothing closes until stream 1 catches up
    late = events[0][(events[0]["t"] >= 60_000) & (events[0]["t"] < 200_000)]
    assert sp.push(late, 0) == []
    assert [p.t_us for p in sp.advance(95_000, stream=1)] == [60_000, 70_000, 80_000, 90_000]


def test_origin_follows_the_first_event_on_the_reinit_grid(run: tuple[Path, Path]) -> None:
    """A live camera's clock starts anywhere: the grid starts at the multiple of
    reinit_every * bin_us at or before the first event."""
    checkpoints, _ = run
    sp = _predictor(checkpoints, "ann_low_held", streams=1)
    t_first = 1_700_000_123_456
    ev = make_events([3, 4], [5, 6], [t_first, t_first + 50_000], [1, -1])
    poses = sp.push(ev, 0)
    period = WINDOW.steps * WINDOW.bin_us
    assert sp.origin_us == (t_first // period) * period
    assert poses and poses[0].t_us == sp.origin_us + WINDOW.bin_us
    assert poses[-1].t_us <= t_first + 50_000


def test_bad_input_is_refused_clearly(run: tuple[Path, Path]) -> None:
    checkpoints, _ = run
    sp = _predictor(checkpoints, "hybrid", streams=2)
    sp.push(make_events([1], [1], [5_000], [1]), 0)
    with pytest.raises(StreamError, match="stream 0: an event at t=4000 us arrives after"):
        sp.push(make_events([1], [1], [4_000], [1]), 0)
    with pytest.raises(StreamError, match="out of time order within a chunk"):
        sp.push(make_events([1, 1], [1, 1], [9_000, 8_000], [1, 1]), 1)
    with pytest.raises(StreamError, match="stream 2 does not exist"):
        sp.push(make_events([1], [1], [9_000], [1]), 2)
    with pytest.raises(StreamError, match="stream -1 does not exist"):
        sp.advance(20_000, stream=-1)
    with pytest.raises(StreamError, match="unknown mode"):
        StreamingPredictor("cnn", WINDOW, (24, 24))
    with pytest.raises(StreamError, match="needs the ANN"):
        StreamingPredictor("hybrid", WINDOW, (24, 24))
    with pytest.raises(StreamError, match="unknown engine"):
        _predictor(checkpoints, "snn", engine="gpu")
    with pytest.raises(FileNotFoundError):
        StreamingPredictor.from_checkpoints(checkpoints / "nowhere", "hybrid")


def test_memory_stays_bounded_on_a_long_stream(run: tuple[Path, Path]) -> None:
    """An hour of 1 kHz events would be 3.6 M events; 200 s here, and nothing grows."""
    checkpoints, _ = run
    cfg = replace(WINDOW, bin_us=100_000)  # coarse bins: the test is about buffers, not steps
    sp = StreamingPredictor("ann_low_held", cfg, (24, 24), ann=load_models(checkpoints).ann)
    rng = np.random.default_rng(0)
    n_poses = 0
    for second in range(200):
        t = second * 1_000_000 + np.sort(rng.integers(0, 1_000_000, 1000))
        ev = make_events(rng.integers(0, 24, 1000), rng.integers(0, 24, 1000), t,
                         np.ones(1000))  # fmt: skip
        n_poses += len(sp.push(ev, 0))
        assert len(sp._rings[0]) == cfg.ann_events
        assert len(sp._pending[0]._chunks) <= 1
        assert sum(len(c) for c in sp._pending[0]._chunks) <= 1000
    assert n_poses == 200 * 10 - 1  # the last bin waits for the next event
    assert sp.latency.count == n_poses and sp.latency.counts.nbytes < 20_000


@settings(max_examples=60, deadline=None)
@given(st.lists(st.integers(0, 40), max_size=30), st.integers(1, 16))
def test_event_ring_keeps_the_last_events(sizes: list[int], capacity: int) -> None:
    ring = EventRing(capacity)
    seen = np.empty(0, dtype=EVENT_DTYPE)
    t = 0
    for n in sizes:
        ev = make_events(np.arange(n) % 7, np.arange(n) % 5, t + np.arange(n), np.ones(n))
        t += n
        ring.extend(ev)
        seen = np.concatenate([seen, ev])
        np.testing.assert_array_equal(ring.events(), seen[max(0, len(seen) - capacity) :])
        assert len(ring) == min(capacity, len(seen))


def test_latency_quantiles_against_numpy() -> None:
    rng = np.random.default_rng(1)
    samples = np.exp(rng.normal(np.log(2e-3), 0.6, 20_000))  # ~2 ms, long tail
    stats = LatencyStats()
    for s in samples:
        stats.add(float(s))
    for q in (0.5, 0.9, 0.99):
        got = stats.quantile(q)
        assert got is not None
        want = float(np.quantile(samples, q))
        assert abs(got / want - 1) < 0.012 + 1e-9  # one bin: 10 ** (1 / 200) - 1
    assert stats.mean_s == pytest.approx(samples.mean(), rel=1e-12)
    assert stats.max_s == samples.max() and stats.count == len(samples)
    summary = stats.summary()
    assert summary["p50_ms"] == pytest.approx(1e3 * np.quantile(samples, 0.5), rel=0.012)
    assert LatencyStats().quantile(0.5) is None
    # beyond the histogram's range: the exact extremes bound the quantiles
    huge = LatencyStats()
    for x in (500.0, 700.0):
        huge.add(x)
    assert huge.quantile(0.5) == 700.0
    tiny = LatencyStats()
    tiny.add(3e-8)
    assert tiny.quantile(0.5) == 3e-8
    with pytest.raises(ValueError, match="q must lie"):
        stats.quantile(1.5)


def test_empty_pushes_and_torch_free_input(run: tuple[Path, Path]) -> None:
    checkpoints, _ = run
    sp = _predictor(checkpoints, "snn", streams=1)
    assert sp.push(np.empty(0, dtype=EVENT_DTYPE), 0) == []
    assert sp.origin_us is None  # no time yet
    with pytest.raises(EventError, match=r"events: expected dtype .*, got torch\.float32"):
        sp.push(torch.zeros(3), 0)  # type: ignore[arg-type]


def test_the_caller_may_reuse_its_buffer_after_a_push(run: tuple[Path, Path]) -> None:
    """Events are copied on push: overwriting the pushed array before its bins close changes
    nothing."""
    checkpoints, recording = run
    events, projections = _camera_events(recording)

    def poses(scribble: bool) -> np.ndarray:
        sp = _predictor(checkpoints, "hybrid", projections=projections)
        out = []
        for lo in range(0, len(events[0]), 500):
            for s, ev in enumerate(events):
                buffer = ev[lo : lo + 500].copy()
                out += sp.push(buffer, s)
                if scribble:
                    buffer["x"] = 0  # the caller refills its buffer
                    buffer["y"] = 0
        out += sp.advance(DURATION_US)
        return np.stack([p.uv for p in out])

    np.testing.assert_array_equal(poses(True), poses(False))


def test_poses_between_counts_the_bins_a_replay_closes(run: tuple[Path, Path]) -> None:
    """The demo's progress bar total: by hand, then against a predictor on a replay that starts
    between two initialisations."""
    # bins start at 0 (the period's multiple before 25 ms) and end by 1.000001 s: 100 bins
    assert poses_between(25_000, 1_000_001, 10_000, 100_000) == 100
    assert poses_between(100_000, 100_000, 10_000, 100_000) == 0
    checkpoints, recording = run
    replay = RecordingReplay(recording, CAMS, chunk_us=WINDOW.bin_us, start_us=135_000)
    sp = _predictor(checkpoints, "ann_low_held", streams=2)
    poses = sum(len(sp.feed(t, chunk)) for t, chunk in replay)
    period = WINDOW.bin_us * WINDOW.steps
    assert poses == poses_between(replay.start_us, replay.end_us, WINDOW.bin_us, period)
    assert poses != replay.duration_us // WINDOW.bin_us  # the demo's count before: one short


@pytest.mark.parametrize("engine", ["dense", "event"])
def test_background_init_is_the_hybrid_initialised_lead_bins_earlier(
    run: tuple[Path, Path], engine: str
) -> None:
    """With ``ann_lead=L`` window k's poses are those of a synchronous hybrid whose window
    starts L bins before it (its ANN on the events before then), steps L + 1 .. L + K: the
    state the worker prepared and caught up over the L bins. Window 0 is initialised in its
    own step, as the synchronous hybrid."""
    checkpoints, recording = run
    events, projections = _camera_events(recording)
    lead, k, b = 2, WINDOW.steps, WINDOW.bin_us  # 3 bins of 10 ms per window
    period = k * b
    with _predictor(checkpoints, "hybrid", projections=projections, engine=engine,
                    ann_lead=lead) as sp:  # fmt: skip
        poses = _stream(sp, events, [1000, 2500])
        assert sp.background is not None
        assert sp.background.joins == DURATION_US // period - 1
    sync = _stream(_predictor(checkpoints, "hybrid", projections=projections, engine=engine),
                   events, [])  # fmt: skip
    np.testing.assert_array_equal(np.stack([p.uv for p in poses[:k]]),
                                  np.stack([p.uv for p in sync[:k]]))  # fmt: skip
    for window in (1, 13, 14, 25, 26, 40):  # 13-26: the lead or the window meets the gap
        t0 = window * period
        ref = _predictor(checkpoints, "hybrid", projections=projections, engine=engine,
                         origin_us=t0 - lead * b, reinit_every=lead + k)  # fmt: skip
        end = t0 + period
        closed = [p for s, ev in enumerate(events) for p in ref.push(ev[ev["t"] < end], s)]
        want = [p for p in closed + ref.advance(end) if p.t_us > t0]
        got = poses[window * k : (window + 1) * k]
        assert [p.t_us for p in got] == [p.t_us for p in want]
        assert [p.step for p in got] == list(range(1, k + 1))
        np.testing.assert_allclose(np.stack([p.uv for p in got]),
                                   np.stack([p.uv for p in want]), atol=1e-5)  # fmt: skip
    # and it is not the synchronous hybrid: the ANN saw older events
    assert not np.allclose(np.stack([p.uv for p in poses]), np.stack([p.uv for p in sync]))


def test_background_init_settings_are_checked(run: tuple[Path, Path]) -> None:
    checkpoints, _ = run
    with pytest.raises(StreamError, match="mode 'snn' has no ANN that initialises"):
        _predictor(checkpoints, "snn", ann_lead=2)
    k = WINDOW.steps
    with pytest.raises(StreamError, match=rf"must be below the window \({k} bins\), got {k}:"):
        _predictor(checkpoints, "hybrid", ann_lead=k)
    with pytest.raises(StreamError, match="ann_lead must be a whole number"):
        _predictor(checkpoints, "hybrid", ann_lead=-1)


def test_a_script_that_never_closes_its_background_predictor_exits_cleanly(
    run: tuple[Path, Path],
) -> None:
    # the worker thread is stopped at the interpreter's exit (weakref.finalize's atexit):
    # left running inside torch, the process aborted at exit ("terminate called without an
    # active exception", status 134) instead of returning the script's own status
    checkpoints, recording = run
    script = f"""
import sys
from hybridpose.io.recording import Recording
from hybridpose.stream import StreamingPredictor
with Recording({str(recording)!r}) as rec:
    events = [rec.events(c, 0, 10**12) for c in {CAMS!r}]
sp = StreamingPredictor.from_checkpoints({str(checkpoints)!r}, "hybrid", streams=2, ann_lead=2)
for s, ev in enumerate(events):
    sp.push(ev[ev["t"] < 100_000], s)
assert sp.background is not None and sp.background.joins > 0
sys.exit(3)
"""
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                          timeout=120)  # fmt: skip
    assert done.returncode == 3, done.stderr
    assert "terminate" not in done.stderr
