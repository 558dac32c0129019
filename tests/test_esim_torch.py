"""The torch path of the event simulator (:mod:`hybridpose.synth.esim_torch`): the same events
and state as the numba path to the bit, the recomputed multi-crossing pixels, hand-computed
answers, esim's errors, and max_log_change_torch."""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import replace
from functools import partial
from typing import Any

import numpy as np
import numpy.typing as npt
import pytest
import torch
from test_esim import EXACT, pixel_track, rng, start

from hybridpose.devices import DeviceError
from hybridpose.events import Events
from hybridpose.synth import esim_torch
from hybridpose.synth.esim import (
    EsimConfig,
    EsimError,
    EsimState,
    esim_advance,
    esim_init,
    log_intensity,
    max_log_change,
)
from hybridpose.synth.esim_torch import esim_advance_torch, max_log_change_torch
from hybridpose.synth.sensor import SENSORS

STATE_FIELDS = ("reference", "last_log", "filtered", "last_event_us", "threshold_pos")

Result = tuple[Events, EsimState]


def scene(n_frames: int, height: int = 30, width: int = 40, amplitude: float = 1.0) -> Any:
    """(n_frames + 1, height, width) float64 log frames: a blurred bright disc drifting right
    over a slowly changing texture; ``amplitude`` scales the changes from the first frame."""
    yy, xx = np.mgrid[0:height, 0:width]
    frames = []
    for k in range(n_frames + 1):
        disc = np.exp(-((xx - 8 - 0.4 * k) ** 2 + (yy - height / 2) ** 2) / 40.0)
        image = 0.1 + 0.6 * disc + 0.1 * np.sin(xx / 5 + k / 9) ** 2 + 0.05 * (yy % 3)
        frames.append(log_intensity(image, EXACT).astype(np.float64))
    out = np.stack(frames)
    return out[0] + amplitude * (out - out[0])


def run_both(
    state: EsimState,
    frames: Any,
    times: npt.ArrayLike,
    config: EsimConfig,
    seed: int = 7,
    origin: tuple[int, int] = (0, 0),
) -> tuple[Result, Result]:
    """The numba and the torch path on the same inputs and generator state."""
    frames_np = frames.numpy() if isinstance(frames, torch.Tensor) else frames
    expected = esim_advance(state, frames_np, times, config, rng(seed), origin=origin)
    got = esim_advance_torch(state, frames, times, config, rng(seed), origin=origin)
    return expected, got


def assert_identical(expected: Result, got: Result) -> None:
    """Events equal as structured arrays, every state array equal bit for bit."""
    assert got[0].dtype == expected[0].dtype
    assert np.array_equal(got[0], expected[0])
    for name in STATE_FIELDS:
        a, b = getattr(expected[1], name), getattr(got[1], name)
        assert a.dtype == b.dtype == np.float64, name
        assert np.array_equal(a.view(np.int64), b.view(np.int64)), name
    assert got[1].t_us == expected[1].t_us
    assert np.array_equal(got[1].hot_pixels, expected[1].hot_pixels)


@pytest.fixture
def redone(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Records how many pixels each call recomputes on the CPU."""
    counts: list[int] = []
    original = esim_torch._redo

    def spy(*args: Any) -> Any:
        counts.append(len(args[-1]))
        return original(*args)

    monkeypatch.setattr(esim_torch, "_redo", spy)
    return counts


def times_and_polarities(events: Events) -> list[tuple[int, int]]:
    return [(int(e["t"]), int(e["p"])) for e in events]


# ------------------------------------------------------------------------------ same as numba
def test_clean_sensor_gives_identical_events_and_state() -> None:
    config = SENSORS["clean"]
    frames = scene(12)
    state = esim_init(frames[0], 0.0, config, rng(1))
    expected, got = run_both(state, frames[1:], 400.0 * np.arange(1, 13), config)
    assert len(expected[0]) > 300
    assert_identical(expected, got)


def test_davis346_gives_identical_events_and_state(redone: list[int]) -> None:
    # low-pass (exp), leak, shot noise, hot pixels and timestamp jitter, float32 frames
    config = SENSORS["davis346"]
    frames = scene(16).astype(np.float32)
    state = esim_init(frames[0], 0.0, config, rng(2))
    assert len(state.hot_pixels) == 0  # 1200 pixels * 1e-4 rounds to none: see below
    expected, got = run_both(state, frames[1:], 500.0 * np.arange(1, 17) + 0.25, config)
    assert len(expected[0]) > 200
    assert_identical(expected, got)
    big = replace(config, hot_pixel_fraction=0.01)  # 12 hot pixels, rates spread
    state = esim_init(frames[0], 0.0, big, rng(2))
    assert len(state.hot_pixels) == 12
    assert_identical(*run_both(state, frames[1:], 500.0 * np.arange(1, 17) + 0.25, big))
    assert sum(redone) == 0  # the device's one crossing per interval did it all


def test_region_inside_a_larger_sensor() -> None:
    config = SENSORS["davis346"]
    frames = scene(10, height=20, width=24)
    sensor = np.full((40, 50), -1.0)
    sensor[7:27, 13:37] = frames[0]
    state = esim_init(sensor, 100.0, config, rng(3))
    times = 100.0 + 700.0 * np.arange(1, 11)
    expected, got = run_both(state, frames[1:], times, config, origin=(13, 7))
    inside = (expected[0]["x"] >= 13) & (expected[0]["x"] < 37)
    assert inside.sum() > 100 and (~inside).sum() > 0  # the leak fires outside too
    assert_identical(expected, got)


@pytest.mark.parametrize("sensor", ["clean", "davis346"])
def test_large_steps_recompute_many_pixels_exactly(sensor: str, redone: list[int]) -> None:
    # steps of several thresholds per interval: most moving pixels cross more than once and
    # are recomputed by the kernel; with jitter their events must also keep the kernel's order
    config = replace(SENSORS[sensor], refractory_us=40.0)
    frames = scene(8, amplitude=6.0)
    state = esim_init(frames[0], 0.0, config, rng(4))
    expected, got = run_both(state, frames[1:], 1000.0 * np.arange(1, 9), config)
    assert redone[-1] > 200
    assert len(expected[0]) > 3000
    assert_identical(expected, got)


def test_refractory_period_drops_the_same_events() -> None:
    frames = scene(12, amplitude=2.0)
    times = 250.0 * np.arange(1, 13)
    counts = []
    for refractory in (0.0, 600.0):
        config = replace(EXACT, threshold_sigma=0.03, refractory_us=refractory)
        state = esim_init(frames[0], 0.0, config, rng(5))
        expected, got = run_both(state, frames[1:], times, config)
        assert_identical(expected, got)
        counts.append(len(expected[0]))
    assert counts[1] < 0.8 * counts[0]


def test_two_consecutive_calls_carry_the_state() -> None:
    config = SENSORS["davis346"]
    frames = scene(20)
    state = esim_init(frames[0], 0.0, config, rng(6))
    times = 600.0 * np.arange(1, 21)
    first, got_first = run_both(state, frames[1:9], times[:8], config, seed=8)
    assert_identical(first, got_first)
    second = esim_advance(first[1], frames[9:], times[8:], config, rng(9))
    got_second = esim_advance_torch(got_first[1], frames[9:], times[8:], config, rng(9))
    assert len(second[0]) > 100
    assert_identical(second, got_second)


def test_tensor_inputs_and_other_dtypes() -> None:
    config = SENSORS["davis346"]
    frames = scene(6)
    state = esim_init(frames[0], 0.0, config, rng(7))
    times = 800.0 * np.arange(1, 7)
    expected = esim_advance(state, frames[1:], times, config, rng(1))
    as_tensor = torch.from_numpy(frames[1:])
    got = esim_advance_torch(
        state, as_tensor, torch.from_numpy(times), config, rng(1), device=torch.device("cpu")
    )
    assert_identical(expected, got)
    # float32 tensor = float32 array; integers are widened to float64 in both paths
    f32 = frames[1:].astype(np.float32)
    expected = esim_advance(state, f32, times, config, rng(1))
    assert_identical(
        expected, esim_advance_torch(state, torch.from_numpy(f32), times, config, rng(1))
    )
    ints = np.round(frames[1:] * 4).astype(np.int32)
    int_state = esim_init(np.round(frames[0] * 4), 0.0, EXACT, rng(7))
    expected = esim_advance(int_state, ints, times, EXACT, rng(1))
    assert len(expected[0]) > 0
    got = esim_advance_torch(int_state, torch.from_numpy(ints), times, EXACT, rng(1))
    assert_identical(expected, got)


# ------------------------------------------------------------------------------ known answers
def test_a_single_pixel_ramp_known_answer(redone: list[int]) -> None:
    # L_k = 3/16 k at t_k = 1000 k (less than one threshold per interval): level n C = n/4 is
    # crossed at t = n/4 / (3/16) * 1000 = n * 4000/3 us: 1333, 2666, 4000, 5333, ..., 12000
    levels = [0.1875 * k for k in range(1, 13)]
    times = [1000.0 * k for k in range(1, 13)]
    events, end = esim_advance_torch(start([[0.0]]), pixel_track(levels), times, EXACT, rng())
    expected = [(math.floor(n * 4000 / 3), 1) for n in range(1, 10)]
    assert expected[:4] == [(1333, 1), (2666, 1), (4000, 1), (5333, 1)]
    assert times_and_polarities(events) == expected
    assert end.reference[0, 0] == 2.25 and end.last_log[0, 0] == 2.25
    assert end.last_event_us[0, 0] == 12000.0
    # up, then down: 0 -> 0.125 -> 0.375 -> 0.125 -> -0.0625 at 1000, 2000, 3000, 4000 us.
    # ON at level 0.25 half way through (1000, 2000]: 1500; back down to 0.125 crosses
    # nothing (the OFF level is 0.0); OFF at 0.0 on 0.125 -> -0.0625 over (3000, 4000], at
    # 3000 + 0.125 / 0.1875 * 1000 = 3666.7
    track = pixel_track([0.125, 0.375, 0.125, -0.0625])
    events, end = esim_advance_torch(start([[0.0]]), track, [1e3, 2e3, 3e3, 4e3], EXACT, rng())
    assert times_and_polarities(events) == [(1500, 1), (3666, -1)]
    assert end.reference[0, 0] == 0.0
    assert sum(redone) == 0


def test_two_crossings_in_one_interval_are_recomputed(redone: list[int]) -> None:
    # 0 -> 1.1 over 1000 us crosses 4 levels, at t = n/4 / 1.1 * 1000: 227, 454, 681, 909;
    # the device handles one, the kernel recomputes the pixel. The second pixel goes
    # 0 -> 0.625: levels 0.25 and 0.5 at 400 and 800 us; the third stays still
    state = start([[0.0, 0.0, 0.0]])
    frames = np.array([[[1.1, 0.625, 0.0]]])
    events, end = esim_advance_torch(state, frames, [1000.0], EXACT, rng())
    assert [(int(e["x"]), int(e["t"])) for e in events] == [
        (0, 227), (1, 400), (0, 454), (0, 681), (1, 800), (0, 909),
    ]  # fmt: skip
    assert end.reference.tolist() == [[1.0, 0.5, 0.0]]
    assert end.last_event_us[0, 1] == 800.0
    assert redone == [2]
    assert_identical(esim_advance(state, frames, [1000.0], EXACT, rng()), (events, end))


def test_recomputed_events_keep_the_kernel_order_under_jitter(redone: list[int]) -> None:
    # The jitter is drawn in the kernel's order (row, sample, column, crossing), so each of a
    # recomputed pixel's events must be placed in its own interval, (0, 800] or (800, 1600],
    # also where its floored time, 800, fits both.
    # Pixel 0: 0 -> 0 -> 0.4, one ON at 800 + 0.25 / 0.4 * 800 = 1300 (on the device).
    # Pixel 1: 0 -> 0.5 -> 1.0, two crossings per interval: 400 and 800 (exactly at the
    #   sample: interval 0), then 1200 and 1600.
    # Pixel 2: still. Pixel 3: C+ = 0.1, starting 0.0001 below its level: 0 -> 0 -> 0.15
    #   crosses at 800 + 0.0001 / 0.15 * 800 = 800.53 (interval 1) and at 1333.9.
    config = replace(EXACT, timestamp_jitter_us=50.0)
    state = start([[0.0, 0.0, 0.0, 0.0]], config)
    state = replace(
        state,
        reference=np.array([[0.0, 0.0, 0.0, -0.0999]]),
        threshold_pos=np.array([[0.25, 0.25, 0.25, 0.1]]),
    )
    frames = np.array([[[0.0, 0.5, 0.0, 0.0]], [[0.4, 1.0, 0.0, 0.15]]])
    times = [800.0, 1600.0]
    unjittered = esim_advance_torch(state, frames, times, EXACT, rng())[0]
    assert [(int(e["x"]), int(e["t"])) for e in unjittered] == [
        (1, 400), (1, 800), (3, 800), (1, 1200), (0, 1300), (3, 1333), (1, 1600),
    ]  # fmt: skip
    expected, got = run_both(state, frames, times, config, seed=3)
    assert_identical(expected, got)
    assert redone[-1] == 2
    assert not np.array_equal(expected[0]["t"], unjittered["t"])


# ------------------------------------------------------------------------------ errors
def error_of(call: Callable[[], object]) -> str:
    with pytest.raises(EsimError) as info:
        call()
    return str(info.value)


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
@pytest.mark.parametrize("config", [EXACT, SENSORS["davis346"]], ids=["exact", "davis346"])
def test_non_finite_sample_raises_esims_error(bad: float, config: EsimConfig) -> None:
    state = esim_init(np.zeros((4, 5)), 0.0, config, rng())
    frames = np.zeros((3, 4, 5), np.float32)
    frames[2, 1, 3] = bad
    frames[1, 2, 0] = bad  # earlier sample, later row: the kernel reports row 1 first
    times = [1.0, 2.0, 3.0]
    message = error_of(lambda: esim_advance(state, frames, times, config, rng()))
    assert message == f"esim_advance: log_frames[2, 1, 3] is {bad} (must be finite)"
    assert error_of(lambda: esim_advance_torch(state, frames, times, config, rng())) == message
    tensor = torch.from_numpy(frames)
    assert error_of(lambda: esim_advance_torch(state, tensor, times, config, rng())) == message


def test_bad_arguments_raise_esims_messages() -> None:
    state = start(np.zeros((4, 5)))
    frames = np.zeros((2, 4, 5))
    cases: list[dict[str, Any]] = [
        {"t_us": np.array([20.0, 10.0])},
        {"t_us": np.array([0.0, 10.0])},
        {"t_us": np.array([10.0])},
        {"t_us": np.array([10.0, np.nan])},
        {"log_frames": np.zeros((4, 5))},
        {"log_frames": np.zeros((0, 4, 5)), "t_us": np.zeros(0)},
        {"log_frames": np.zeros((2, 4, 6))},
        {"log_frames": np.zeros((2, 2, 2)), "origin": (4, 0)},
        {"log_frames": np.zeros((2, 2, 2)), "origin": (-1, 0)},
        {"log_frames": np.zeros((2, 2, 2)), "origin": 3},
        {"log_frames": np.zeros((2, 4, 5), complex)},
        {"log_frames": np.zeros((2, 4, 5), bool)},
        {"config": "config"},
        {"rng": 0},
        {"state": "state"},
    ]
    for change in cases:
        kwargs: dict[str, Any] = {
            "state": state,
            "log_frames": frames,
            "t_us": np.array([10.0, 20.0]),
            "config": EXACT,
            "rng": rng(),
        }
        kwargs.update(change)
        message = error_of(partial(esim_advance, **kwargs))
        assert error_of(partial(esim_advance_torch, **kwargs)) == message, change
        kwargs["log_frames"] = torch.from_numpy(np.asarray(kwargs["log_frames"]))
        assert error_of(partial(esim_advance_torch, **kwargs)) == message, change
    good: dict[str, Any] = {"state": state, "t_us": [10.0, 20.0], "config": EXACT, "rng": rng()}
    complex_frames = torch.zeros((2, 4, 5), dtype=torch.complex64)
    with pytest.raises(EsimError, match="expected real numbers, got dtype complex64"):
        esim_advance_torch(log_frames=complex_frames, **good)
    with pytest.raises(EsimError, match=r"non-empty \(K, h, w\) array, got shape \(4, 5\)"):
        esim_advance_torch(log_frames=torch.zeros((4, 5)), **good)
    with pytest.raises(DeviceError, match="bogus"):
        esim_advance_torch(log_frames=frames, device="bogus", **good)


# ------------------------------------------------------------------------------ max_log_change
def test_max_log_change_torch_equals_max_log_change() -> None:
    generator = rng(3)
    last = generator.normal(size=(6, 7))
    frames = generator.normal(size=(5, 6, 7))
    frames[2, 3, 4] = np.nan  # intervals 2 and 3 involve it
    frames[4, 0, 0] = np.inf  # interval 4: inf
    for f in (frames, frames.astype(np.float32)):
        expected = max_log_change(last, f)
        assert np.isnan(expected[2]) and np.isnan(expected[3]) and expected[4] == np.inf
        for a, b in ((last, f), (torch.from_numpy(last), torch.from_numpy(f))):
            got = max_log_change_torch(a, b)
            assert got.dtype == np.float64 and got.shape == (5,)
            assert np.array_equal(got, expected, equal_nan=True)
    clean = frames.copy()
    clean[2, 3, 4] = clean[4, 0, 0] = 0.5
    assert np.array_equal(max_log_change_torch(last, clean), max_log_change(last, clean))
    assert max_log_change_torch(np.zeros((1, 2)), [[[0.5, -0.25]], [[0.5, 1.0]]]).tolist() == [
        0.5,
        1.25,
    ]
    message = error_of(lambda: max_log_change(np.zeros((2, 2)), frames))
    assert error_of(lambda: max_log_change_torch(np.zeros((2, 2)), frames)) == message
    assert error_of(lambda: max_log_change_torch(torch.zeros((2, 2)), frames)) == message


# ------------------------------------------------------------------------------ GPU
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_without_low_pass_gives_identical_events() -> None:
    # without low-pass no exp is taken: IEEE + - * / only, the same on the GPU
    config = replace(SENSORS["clean"], timestamp_jitter_us=10.0)
    frames = scene(8, amplitude=3.0)
    state = esim_init(frames[0], 0.0, config, rng(4))
    times = 700.0 * np.arange(1, 9)
    expected = esim_advance(state, frames[1:], times, config, rng(1))
    on_gpu = torch.from_numpy(frames[1:]).cuda()
    got = esim_advance_torch(state, on_gpu, times, config, rng(1), device="cuda")
    assert_identical(expected, got)
    assert np.array_equal(
        max_log_change_torch(torch.from_numpy(frames[0]).cuda(), on_gpu),
        max_log_change(frames[0], frames[1:]),
    )
