"""The ESIM-style event simulator: hand-computed crossings, refractory period, noise statistics,
chunking equivalence, regions, determinism and argument checks."""

from __future__ import annotations

import math
import re
from dataclasses import replace
from typing import Any

import numpy as np
import numpy.typing as npt
import pytest

import hybridpose.synth.esim as esim_module
from hybridpose.events import EVENT_DTYPE, Events, validate_events
from hybridpose.synth.esim import (
    EsimConfig,
    EsimError,
    EsimState,
    esim_advance,
    esim_advance_regions,
    esim_init,
    log_intensity,
    max_log_change,
)
from hybridpose.synth.esim_kernels import region_pass
from hybridpose.synth.sensor import SENSORS

# exact thresholds, no noise, no refractory period: every crossing is an event
EXACT = EsimConfig(
    threshold_pos=0.25,
    threshold_neg=0.25,
    threshold_sigma=0.0,
    refractory_us=0.0,
    noise_rate_hz=0.0,
    hot_pixel_fraction=0.0,
)


def rng(seed: int = 0) -> np.random.Generator:
    return np.random.default_rng(seed)


def start(first: npt.ArrayLike, config: EsimConfig = EXACT, t_us: float = 0.0) -> EsimState:
    return esim_init(np.asarray(first, dtype=np.float64), t_us, config, rng())


def pixel_track(values: list[float]) -> npt.NDArray[np.float64]:
    """(K, 1, 1) frames of a one-pixel sensor."""
    return np.asarray(values, dtype=np.float64).reshape(-1, 1, 1)


def as_tuples(events: Events) -> list[tuple[int, int, int, int]]:
    return [(int(e["x"]), int(e["y"]), int(e["t"]), int(e["p"])) for e in events]


def times_and_polarities(events: Events) -> list[tuple[int, int]]:
    return [(int(e["t"]), int(e["p"])) for e in events]


# ------------------------------------------------------------------------------ crossings
def test_linear_rise_gives_floor_dl_over_c_events_at_interpolated_times() -> None:
    state = start([[0.0]])
    events, new = esim_advance(state, pixel_track([1.1]), [1000.0], EXACT, rng())
    # floor(1.1 / 0.25) = 4 crossings, at levels 0.25 .. 1.0: t = level / 1.1 * 1000 us
    assert times_and_polarities(events) == [(227, 1), (454, 1), (681, 1), (909, 1)]
    assert new.reference[0, 0] == 1.0
    assert new.last_log[0, 0] == 1.1
    assert new.t_us == 1000.0
    assert events.dtype == EVENT_DTYPE


def test_crossing_exactly_at_a_sample_counts() -> None:
    # L rises by exactly 2 C: both levels are crossed, the second exactly at the sample time
    events, new = esim_advance(start([[0.0]]), pixel_track([0.5]), [800.0], EXACT, rng())
    assert times_and_polarities(events) == [(400, 1), (800, 1)]
    assert new.reference[0, 0] == 0.5


def test_a_ramp_over_many_frames_and_any_chunk_split() -> None:
    # L_k = 3/16 k at t_k = 1000 k: level n C = n/4 is crossed at t = n * 4000 / 3 us
    n_frames = 12
    levels = [0.1875 * k for k in range(1, n_frames + 1)]
    times = [1000.0 * k for k in range(1, n_frames + 1)]
    expected = [(math.floor(n * 4000 / 3), 1) for n in range(1, 10)]  # up to 9 C = 2.25 = L_12
    assert expected[:4] == [(1333, 1), (2666, 1), (4000, 1), (5333, 1)]
    events, whole = esim_advance(start([[0.0]]), pixel_track(levels), times, EXACT, rng())
    assert times_and_polarities(events) == expected
    assert whole.reference[0, 0] == 2.25
    for split in range(1, n_frames):
        first, mid = esim_advance(
            start([[0.0]]), pixel_track(levels[:split]), times[:split], EXACT, rng()
        )
        second, end = esim_advance(mid, pixel_track(levels[split:]), times[split:], EXACT, rng())
        joined = np.concatenate([first, second])
        assert times_and_polarities(joined) == expected, split
        assert end.reference[0, 0] == whole.reference[0, 0]
        assert end.last_log[0, 0] == whole.last_log[0, 0]


def test_a_falling_ramp_gives_off_events() -> None:
    events, new = esim_advance(start([[0.0]]), pixel_track([-1.1]), [1000.0], EXACT, rng())
    assert times_and_polarities(events) == [(227, -1), (454, -1), (681, -1), (909, -1)]
    assert new.reference[0, 0] == -1.0


def test_up_then_down() -> None:
    # 0 -> 0.6 over [0, 1000]: ON at levels 0.25 (416.7 us) and 0.5 (833.3 us), ref = 0.5.
    # 0.6 -> 0 over [1000, 2000]: OFF at 0.25 (t = 1000 + 0.35/0.6 * 1000 = 1583.3) and at 0.0
    # exactly at the sample (2000).
    events, new = esim_advance(
        start([[0.0]]), pixel_track([0.6, 0.0]), [1000.0, 2000.0], EXACT, rng()
    )
    assert times_and_polarities(events) == [(416, 1), (833, 1), (1583, -1), (2000, -1)]
    assert new.reference[0, 0] == 0.0


def test_asymmetric_nominal_thresholds() -> None:
    config = replace(EXACT, threshold_pos=0.5, threshold_neg=0.125)
    events, _ = esim_advance(
        start([[0.0]], config), pixel_track([1.0, 0.75]), [1000.0, 2000.0], config, rng()
    )
    # up by 1.0 with C+ = 0.5: 2 ON (500, 1000); down by 0.25 with C- = 0.125: 2 OFF (1500, 2000)
    assert times_and_polarities(events) == [(500, 1), (1000, 1), (1500, -1), (2000, -1)]


def test_per_pixel_thresholds_are_used_per_pixel() -> None:
    # hand-made state: three pixels with C+ = 1/8, 1/4, 3/8 and C- = 1/2
    state = start([[0.0, 0.0, 0.0]])
    state = replace(
        state,
        threshold_pos=np.array([[0.125, 0.25, 0.375]]),
        threshold_neg=np.full((1, 3), 0.5),
    )
    frames = np.full((1, 1, 3), 1.0)
    events, new = esim_advance(state, frames, [1000.0], EXACT, rng())
    counts = np.bincount(events["x"], minlength=3)
    assert counts.tolist() == [8, 4, 2]  # floor(1 / C)
    assert new.reference.tolist() == [[1.0, 1.0, 0.75]]
    assert set(events["t"][events["x"] == 2].tolist()) == {375, 750}


def test_drawn_thresholds_are_per_pixel_and_clipped() -> None:
    config = replace(EXACT, threshold_sigma=0.05, threshold_min=0.2)
    state = esim_init(np.zeros((200, 300)), 0.0, config, rng(3))
    for thresholds in (state.threshold_pos, state.threshold_neg):
        assert thresholds.min() == 0.2  # clipped: about 16% of the N(0.25, 0.05) draws
        unclipped = thresholds[thresholds > 0.2]
        assert 0.05 < np.mean(thresholds == 0.2) < 0.3
        assert unclipped.mean() > 0.25
        assert len(np.unique(thresholds)) > 1000
    assert not np.array_equal(state.threshold_pos, state.threshold_neg)
    # a uniform rise of dL gives floor(dL / C) events per pixel, C the pixel's own threshold
    d_l = 1.3
    frames = np.full((1, 200, 300), d_l)
    events, _ = esim_advance(state, frames, [1000.0], config, rng())
    counts = np.zeros((200, 300), np.int64)
    np.add.at(counts, (events["y"], events["x"]), 1)
    np.testing.assert_array_equal(counts, np.floor(d_l / state.threshold_pos))
    assert np.all(events["p"] == 1)


def test_a_static_scene_gives_nothing() -> None:
    first = np.log(np.linspace(0.01, 1.0, 64 * 48).reshape(48, 64) + 1e-3)
    state = start(first)
    frames = np.broadcast_to(first, (50, 48, 64))
    events, new = esim_advance(state, frames, 1000.0 * np.arange(1, 51), EXACT, rng())
    assert len(events) == 0
    np.testing.assert_array_equal(new.reference, first)
    assert np.all(new.last_event_us == -np.inf)


def test_small_changes_accumulate_across_frames() -> None:
    # nothing for two frames, then 0.1875 -> 0.3125 crosses 0.25 halfway (at 2500 us)
    events, _ = esim_advance(
        start([[0.0]]), pixel_track([0.125, 0.1875, 0.3125]), [1000.0, 2000.0, 3000.0], EXACT, rng()
    )
    assert times_and_polarities(events) == [(2500, 1)]


# ------------------------------------------------------------------------------ refractory
def test_refractory_drops_events_but_the_reference_moves() -> None:
    config = replace(EXACT, threshold_pos=0.125, threshold_neg=0.125, refractory_us=300.0)
    state = start([[0.0]], config)
    # 0 -> 1 over 1000 us: crossings every 125 us (125, 250, ..., 1000)
    events, mid = esim_advance(state, pixel_track([1.0]), [1000.0], config, rng())
    # 125 emitted; 250, 375 within 300 us of it; 500 emitted; 625, 750 dropped; 875 emitted;
    # 1000 dropped (125 us after 875)
    assert times_and_polarities(events) == [(125, 1), (500, 1), (875, 1)]
    assert mid.reference[0, 0] == 0.0 + 8 * 0.125
    assert mid.last_event_us[0, 0] == 875.0
    # the timer survives the call: 1.0 -> 1.25 over [1000, 1200] crosses at 1100 (225 us after
    # 875: dropped) and 1200 (325 us after 875: emitted; a dropped event restarts nothing)
    events, end = esim_advance(mid, pixel_track([1.25]), [1200.0], config, rng())
    assert times_and_polarities(events) == [(1200, 1)]
    assert end.reference[0, 0] == 1.25


# ------------------------------------------------------------------------------ noise
def test_background_activity_rate_polarity_and_uniform_times() -> None:
    config = replace(EXACT, noise_rate_hz=10.0)
    height, width, duration_us = 100, 100, 10_000_000.0
    state = start(np.zeros((height, width)), config)
    frames = np.zeros((1, height, width))
    events, _ = esim_advance(state, frames, [duration_us], config, rng(7))
    expected = 10.0 * width * height * duration_us / 1e6  # 1e5
    n = len(events)
    assert abs(n - expected) < 5 * math.sqrt(expected)
    n_on = int(np.sum(events["p"] == 1))
    assert abs(n_on - n / 2) < 5 * math.sqrt(n) / 2
    assert events["t"].min() >= 0 and events["t"].max() <= duration_us
    per_bin = np.histogram(events["t"], bins=10, range=(0, duration_us))[0]
    assert np.all(np.abs(per_bin - n / 10) < 5 * math.sqrt(n / 10))
    per_row = np.bincount(events["y"], minlength=height)
    assert np.all(np.abs(per_row - n / height) < 5 * math.sqrt(n / height))
    validate_events(events, (width, height))


def test_noise_does_not_touch_the_reference() -> None:
    config = replace(EXACT, noise_rate_hz=100.0)
    state = start(np.zeros((10, 10)), config)
    events, new = esim_advance(state, np.zeros((1, 10, 10)), [1e6], config, rng())
    assert len(events) > 1000
    assert np.all(new.reference == 0.0)
    assert np.all(new.last_event_us == -np.inf)


def test_hot_pixels_fire_at_their_rate_at_fixed_positions() -> None:
    config = replace(EXACT, hot_pixel_fraction=0.01, hot_pixel_rate_hz=50.0)
    height, width = 100, 100
    state = start(np.zeros((height, width)), config)
    assert len(state.hot_pixels) == 100
    first, mid = esim_advance(state, np.zeros((1, height, width)), [5e6], config, rng(1))
    second, _ = esim_advance(mid, np.zeros((1, height, width)), [10e6], config, rng(2))
    events = np.concatenate([first, second])
    flat = events["y"].astype(np.int64) * width + events["x"]
    assert set(flat.tolist()) == set(state.hot_pixels.tolist())
    expected = 100 * 50.0 * 10.0  # 5e4
    assert abs(len(events) - expected) < 5 * math.sqrt(expected)
    per_pixel = np.bincount(flat, minlength=height * width)[state.hot_pixels]
    assert np.all(np.abs(per_pixel - 500) < 5 * math.sqrt(500))
    n_on = int(np.sum(events["p"] == 1))
    assert abs(n_on - len(events) / 2) < 5 * math.sqrt(len(events)) / 2


# ------------------------------------------------------------------------------ structure
def moving_scene(n_frames: int, height: int = 40, width: int = 60) -> npt.NDArray[np.float32]:
    """Log frames of a bright disc moving right over a textured background."""
    yy, xx = np.mgrid[0:height, 0:width]
    frames = []
    for k in range(n_frames):
        disc = ((xx - 10 - 0.7 * k) ** 2 + (yy - height / 2) ** 2) < 8**2
        image = 0.1 + 0.7 * disc + 0.1 * np.sin(xx / 5 + k / 7) ** 2
        frames.append(log_intensity(image, EXACT))
    return np.stack(frames)


def test_chunking_gives_identical_events_and_state() -> None:
    config = replace(EXACT, threshold_sigma=0.03, refractory_us=300.0)
    frames = moving_scene(41)
    times = 1000.0 * np.arange(41)
    state = esim_init(frames[0], times[0], config, rng(5))
    whole, end = esim_advance(state, frames[1:], times[1:], config, rng())
    assert len(whole) > 1000
    pieces = []
    current = state
    for lo, hi in ((1, 2), (2, 17), (17, 18), (18, 41)):
        events, current = esim_advance(current, frames[lo:hi], times[lo:hi], config, rng())
        pieces.append(events)
    np.testing.assert_array_equal(np.concatenate(pieces), whole)
    for name in ("reference", "last_log", "last_event_us"):
        np.testing.assert_array_equal(getattr(current, name), getattr(end, name))
    assert current.t_us == end.t_us


def test_same_seed_same_output_and_sorted_inside_the_sensor() -> None:
    config = EsimConfig(noise_rate_hz=5.0, hot_pixel_fraction=0.01)
    frames = moving_scene(21)
    times = 1000.0 * np.arange(21) + 0.5
    runs = []
    for _ in range(2):
        generator = rng(11)
        state = esim_init(frames[0], times[0], config, generator)
        runs.append((state, *esim_advance(state, frames[1:], times[1:], config, generator)))
    (s1, e1, n1), (s2, e2, n2) = runs
    np.testing.assert_array_equal(e1, e2)
    np.testing.assert_array_equal(s1.threshold_pos, s2.threshold_pos)
    np.testing.assert_array_equal(n1.reference, n2.reference)
    validate_events(e1, (60, 40))
    assert e1["t"].min() >= math.floor(times[0]) and e1["t"].max() <= math.floor(times[-1])
    keys = np.stack([e1["t"], e1["y"], e1["x"], e1["p"]]).T.tolist()
    assert keys == sorted(keys)  # canonical order: (t, y, x, p)
    # a different seed changes the noise
    other_gen = rng(12)
    other = esim_init(frames[0], times[0], config, other_gen)
    e3, _ = esim_advance(other, frames[1:], times[1:], config, other_gen)
    assert not np.array_equal(e1, e3)


def test_events_of_a_region_land_at_its_origin() -> None:
    state = start(np.zeros((8, 10)))
    region = np.zeros((1, 2, 3))
    region[0, 1, 2] = 0.5  # region pixel (row 1, col 2): sensor pixel x = 3 + 2, y = 2 + 1
    region[0, 0, 0] = -0.25  # sensor (3, 2)
    events, new = esim_advance(state, region, [100.0], EXACT, rng(), origin=(3, 2))
    assert as_tuples(events) == [(5, 3, 50, 1), (3, 2, 100, -1), (5, 3, 100, 1)]
    expected_last = np.zeros((8, 10))
    expected_last[3, 5] = 0.5
    expected_last[2, 3] = -0.25
    np.testing.assert_array_equal(new.last_log, expected_last)
    # pixels outside the region did not move; the next full frame starts from their old values
    full = np.zeros((1, 8, 10))
    full[0, 0, 0] = 0.25  # crosses once, interpolated from t = 100 (the last sample)
    events, _ = esim_advance(new, full, [300.0], EXACT, rng())
    # (0, 0): 0 -> 0.25 over [100, 300] -> 300; (5, 3): 0.5 -> 0 -> two OFF at 200, 300;
    # (3, 2): -0.25 -> 0 crosses back up at 300
    assert as_tuples(events) == [(5, 3, 200, -1), (0, 0, 300, 1), (3, 2, 300, 1), (5, 3, 300, -1)]


def test_inputs_are_not_mutated() -> None:
    config = replace(EXACT, noise_rate_hz=10.0, refractory_us=100.0)
    frames = moving_scene(11)
    state = esim_init(frames[0], 0.0, config, rng())
    saved = {
        name: getattr(state, name).copy()
        for name in ("reference", "last_log", "last_event_us", "threshold_pos", "hot_pixels")
    }
    frames_saved = frames.copy()
    times = 1000.0 * np.arange(1, 11)
    times_saved = times.copy()
    events, new = esim_advance(state, frames[1:], times, config, rng())
    assert len(events) > 0
    for name, value in saved.items():
        np.testing.assert_array_equal(getattr(state, name), value)
    np.testing.assert_array_equal(frames, frames_saved)
    np.testing.assert_array_equal(times, times_saved)
    assert state.t_us == 0.0
    assert new.reference is not state.reference


def test_float32_and_float64_frames_agree() -> None:
    frames32 = moving_scene(11)
    times = 1000.0 * np.arange(11)
    state = start(frames32[0].astype(np.float64))
    e32, s32 = esim_advance(state, frames32[1:], times[1:], EXACT, rng())
    e64, s64 = esim_advance(state, frames32[1:].astype(np.float64), times[1:], EXACT, rng())
    np.testing.assert_array_equal(e32, e64)
    np.testing.assert_array_equal(s32.reference, s64.reference)


def test_sensor_size_and_init_state() -> None:
    state = esim_init(np.ones((3, 5), np.float32), 42.0, EsimConfig(), rng())
    assert state.sensor_size == (5, 3)
    assert state.t_us == 42.0
    assert state.reference.dtype == np.float64
    np.testing.assert_array_equal(state.reference, np.ones((3, 5)))
    assert np.all(state.last_event_us == -np.inf)


# ------------------------------------------------------------------------------ helpers
def test_max_log_change_known_answers() -> None:
    last = np.array([[0.0, 0.0]])
    frames = np.array([[[0.5, -0.25]], [[0.5, 1.0]], [[0.0, 1.0]], [[0.0, 1.0]]])
    assert max_log_change(last, frames).tolist() == [0.5, 1.25, 0.5, 0.0]
    frames32 = frames.astype(np.float32)
    assert max_log_change(last, frames32).tolist() == [0.5, 1.25, 0.5, 0.0]
    with_nan = frames.copy()
    with_nan[1, 0, 0] = np.nan
    out = max_log_change(last, with_nan)
    assert out[0] == 0.5 and np.isnan(out[1]) and np.isnan(out[2]) and out[3] == 0.0
    with pytest.raises(EsimError, match="shape"):
        max_log_change(np.zeros((2, 2)), frames)


def test_log_intensity() -> None:
    out = log_intensity(np.array([0.0, 1.0]), EXACT)
    assert out.dtype == np.float32
    np.testing.assert_allclose(out, np.log([1e-3, 1.001]), rtol=1e-6, atol=1e-6)
    with pytest.raises(EsimError, match=">= 0"):
        log_intensity(np.array([0.5, -0.1]), EXACT)
    with pytest.raises(EsimError, match="finite"):
        log_intensity(np.array([np.nan]), EXACT)


def test_config_step_limit() -> None:
    assert EsimConfig().log_step_limit == 0.5 * 0.25
    assert EsimConfig(threshold_pos=0.4, threshold_neg=0.2).log_step_limit == 0.5 * 0.2


# ------------------------------------------------------------------------------ bad arguments
@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("threshold_pos", 0.0, "threshold_pos: must be > 0"),
        ("threshold_neg", -0.1, "threshold_neg: must be > 0"),
        ("threshold_sigma", -0.01, "threshold_sigma: must be >= 0"),
        ("threshold_min", 0.3, "exceeds the smaller nominal"),
        ("refractory_us", -1.0, "refractory_us: must be >= 0"),
        ("noise_rate_hz", math.nan, "noise_rate_hz: must be finite"),
        ("hot_pixel_fraction", 1.5, r"hot_pixel_fraction: must be in \[0, 1\]"),
        ("log_eps", 0.0, "log_eps: must be > 0"),
        ("max_log_step", math.inf, "max_log_step: must be finite"),
        ("threshold_pos", "0.25", "expected a number"),
    ],
)
def test_bad_config_raises(field: str, value: object, message: str) -> None:
    with pytest.raises(EsimError, match=message):
        EsimConfig(**{field: value})  # type: ignore[arg-type]


def test_bad_arguments_raise() -> None:
    state = start(np.zeros((4, 5)))
    frames = np.zeros((2, 4, 5))
    good_t = np.array([10.0, 20.0])
    cases: list[tuple[dict[str, object], str]] = [
        ({"t_us": np.array([20.0, 10.0])}, "increase strictly"),
        ({"t_us": np.array([10.0, 10.0])}, "increase strictly"),
        ({"t_us": np.array([0.0, 10.0])}, "not after the state's last sample"),
        ({"t_us": np.array([10.0])}, "t_us has shape"),
        ({"t_us": np.array([10.0, np.nan])}, "NaN"),
        ({"log_frames": np.zeros((4, 5))}, r"\(K, h, w\)"),
        ({"log_frames": np.zeros((0, 4, 5)), "t_us": np.zeros(0)}, "non-empty"),
        ({"log_frames": np.zeros((2, 4, 6))}, "does not fit"),
        ({"log_frames": np.zeros((2, 2, 2)), "origin": (4, 0)}, "does not fit"),
        ({"log_frames": np.zeros((2, 2, 2)), "origin": (-1, 0)}, "origin"),
        ({"log_frames": np.zeros((2, 2, 2)), "origin": (0.5, 0)}, "origin"),
        ({"log_frames": np.zeros((2, 2, 2)), "origin": 3}, "origin"),
        ({"log_frames": np.zeros((2, 4, 5), complex)}, "real numbers"),
        ({"config": "config"}, "EsimConfig"),
        ({"rng": 0}, "Generator"),
    ]
    for change, message in cases:
        kwargs: dict[str, object] = {
            "state": state,
            "log_frames": frames,
            "t_us": good_t,
            "config": EXACT,
            "rng": rng(),
        }
        kwargs.update(change)
        with pytest.raises(EsimError, match=message):
            esim_advance(**kwargs)  # type: ignore[arg-type]


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_non_finite_samples_are_named(bad: float) -> None:
    state = start(np.zeros((4, 5)))
    frames = np.zeros((3, 4, 5), np.float32)
    frames[2, 1, 3] = bad
    with pytest.raises(EsimError, match=r"log_frames\[2, 1, 3\]"):
        esim_advance(state, frames, [1.0, 2.0, 3.0], EXACT, rng())


def test_bad_init_arguments_raise() -> None:
    with pytest.raises(EsimError, match=r"\(H, W\)"):
        esim_init(np.zeros(5), 0.0, EXACT, rng())
    with pytest.raises(EsimError, match="NaN or infinite"):
        esim_init(np.array([[np.nan]]), 0.0, EXACT, rng())
    with pytest.raises(EsimError, match="t_us"):
        esim_init(np.zeros((2, 2)), math.inf, EXACT, rng())
    with pytest.raises(EsimError, match="Generator"):
        esim_init(np.zeros((2, 2)), 0.0, EXACT, 0)  # type: ignore[arg-type]
    state = start(np.zeros((2, 2)))
    with pytest.raises(EsimError, match="shape"):
        replace(state, last_log=np.zeros((2, 3)))
    with pytest.raises(EsimError, match="hot_pixels"):
        replace(state, hot_pixels=np.array([4]))


# ------------------------------------------------------------------------------ regions
Tiles = list[tuple[tuple[int, int], npt.NDArray[Any], npt.NDArray[Any]]]


def split(frames: npt.NDArray[Any], times: npt.NDArray[Any], sparse_tile: bool) -> Tiles:
    """Four tiles of (K, 30, 40) frames at origin (10, 5); the second keeps only the odd
    instants and the last when ``sparse_tile``."""
    keep = np.r_[1:21:2, 20] if sparse_tile else np.arange(1, 21)
    return [
        ((10, 5), frames[1:, :16, :24], times[1:]),
        ((34, 5), frames[keep, :16, 24:], times[keep]),
        ((10, 21), frames[1:, 16:, :24], times[1:]),
        ((34, 21), frames[1:, 16:, 24:], times[1:]),
    ]


def test_regions_with_their_own_instants_equal_one_region() -> None:
    # a 60x40 scene split into four tiles, against one region. The scene is made linear in
    # time between the odd instants, so a tile keeping only those has the same interpolation
    frames = moving_scene(21)[:, 5:35, 10:50].astype(np.float64)  # (21, 30, 40)
    times = 1000.0 * np.arange(21) + 0.5
    frames[2:-1:2] = 0.5 * (frames[1:-2:2] + frames[3::2])
    sensor = np.zeros((40, 60))
    sensor[5:35, 10:50] = frames[0]
    davis = SENSORS["davis346"]
    for config, sparse in (
        # leak, low-pass, noise: every tile with the same instants
        (replace(davis, timestamp_jitter_us=0.0), False),
        # the low-pass filter steps once per sample: without it, fewer samples on a line too
        (replace(davis, timestamp_jitter_us=0.0, cutoff_hz=0.0), True),
    ):
        state = esim_init(sensor, times[0], config, rng(3))
        whole, end = esim_advance(state, frames[1:], times[1:], config, rng(4), origin=(10, 5))
        assert len(whole) > 4000
        tiled, tiled_end = esim_advance_regions(state, split(frames, times, sparse), config, rng(4))
        np.testing.assert_array_equal(tiled, whole)
        for name in ("reference", "last_log", "filtered", "last_event_us"):
            # the leak is summed over fewer intervals in the sparse tile: rounding only
            atol = 1e-9 if sparse else 0.0
            np.testing.assert_allclose(
                getattr(tiled_end, name), getattr(end, name), rtol=0, atol=atol
            )
        assert tiled_end.t_us == end.t_us
    # the low-pass filter steps per sample: there fewer samples give other events
    config = replace(davis, timestamp_jitter_us=0.0)
    state = esim_init(sensor, times[0], config, rng(3))
    whole, _ = esim_advance(state, frames[1:], times[1:], config, rng(4), origin=(10, 5))
    assert len(esim_advance_regions(state, split(frames, times, True), config, rng(4))[0]) != len(
        whole
    )
    # timestamp jitter is drawn in the order of the tiles' events: the same events, other times
    state = esim_init(sensor, times[0], davis, rng(3))
    whole, _ = esim_advance(state, frames[1:], times[1:], davis, rng(4), origin=(10, 5))
    tiled, _ = esim_advance_regions(state, split(frames, times, False), davis, rng(4))
    assert sorted(as_tuples(tiled)) != sorted(as_tuples(whole))
    assert sorted((x, y, p) for x, y, _, p in as_tuples(tiled)) == sorted(
        (x, y, p) for x, y, _, p in as_tuples(whole)
    )


def test_events_that_do_not_fit_the_buffer_take_a_filling_pass(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # the counting pass writes the events while they fit in one buffer; the regions whose
    # events do not fit are filled by a second pass. Timestamp jitter is drawn in the events'
    # order, so equal events (times included) mean the same order too
    frames = moving_scene(21)[:, 5:35, 10:50].astype(np.float64)
    times = 1000.0 * np.arange(21) + 0.5
    sensor = np.zeros((40, 60))
    sensor[5:35, 10:50] = frames[0]
    davis = SENSORS["davis346"]
    assert davis.timestamp_jitter_us > 0
    state = esim_init(sensor, times[0], davis, rng(3))
    tiles = split(frames, times, False)
    fills: list[bool] = []

    def counted(*args: Any) -> int:
        fills.append(bool(args[17]))
        result: int = region_pass(*args)
        return result

    monkeypatch.setattr(esim_module, "region_pass", counted)
    results: dict[int, tuple[Events, EsimState, int]] = {}
    default = esim_module.REGION_EVENTS_BUFFER
    for size in (default, 1500, 0):
        monkeypatch.setattr(esim_module, "REGION_EVENTS_BUFFER", size)
        fills.clear()
        got, got_end = esim_advance_regions(state, tiles, davis, rng(4))
        results[size] = (got, got_end, fills.count(True))
    events, end, n_fills = results[default]
    assert len(events) > 4000 and n_fills == 0  # all of them written by the counting passes
    assert results[1500][2] == 3  # the first region's fit, the others' not
    assert results[0][2] == 4
    for size in (1500, 0):
        np.testing.assert_array_equal(results[size][0], events)
        for name in ("reference", "last_log", "filtered", "last_event_us"):
            np.testing.assert_array_equal(getattr(results[size][1], name), getattr(end, name))


def test_a_region_leaves_out_the_samples_it_does_not_use() -> None:
    # the second tile holds every instant but uses only the odd ones and the last: the same
    # events and state, to the bit, as the tile holding only those (low-pass included, whose
    # rate is the used sample's)
    frames = moving_scene(21)[:, 5:35, 10:50].astype(np.float64)
    times = 1000.0 * np.arange(21) + 0.5
    frames[2:-1:2] = 0.5 * (frames[1:-2:2] + frames[3::2])
    sensor = np.zeros((40, 60))
    sensor[5:35, 10:50] = frames[0]
    for config in (
        replace(SENSORS["davis346"], timestamp_jitter_us=0.0),
        replace(SENSORS["davis346"], timestamp_jitter_us=0.0, cutoff_hz=0.0),
    ):
        state = esim_init(sensor, times[0], config, rng(3))
        sparse, sparse_end = esim_advance_regions(state, split(frames, times, True), config, rng(4))
        tiles: list[tuple[Any, ...]] = list(split(frames, times, False))
        used = np.zeros((20, 16, 16), bool)
        used[np.r_[1:21:2, 20] - 1] = True
        tiles[1] = (*tiles[1], used)
        got, got_end = esim_advance_regions(state, tiles, config, rng(4))
        assert len(got) > 4000
        np.testing.assert_array_equal(got, sparse)
        for name in ("reference", "last_log", "filtered", "last_event_us"):
            np.testing.assert_array_equal(getattr(got_end, name), getattr(sparse_end, name))
    # every pixel must use its last sample; a mask of another shape or type is refused
    for bad in (used[:-1], used.astype(np.int8), np.concatenate([used[:-1], ~used[-1:]])):
        tiles[1] = (*tiles[1][:3], bad)
        with pytest.raises(EsimError, match="region 1's used samples must be a"):
            esim_advance_regions(state, tiles, config, rng(4))


def test_regions_must_tile_one_rectangle_and_end_together() -> None:
    state = start(np.zeros((8, 10)))
    one = np.zeros((1, 2, 3))
    cases = [
        ([((0, 0), one, [10.0]), ((4, 0), one, [10.0])], "tile one rectangle exactly"),
        ([((0, 0), one, [10.0]), ((2, 0), one, [10.0])], "tile one rectangle exactly"),
        ([((0, 0), one, [10.0]), ((3, 0), one, [20.0])], "last instants differ"),
        ([((8, 0), one, [10.0])], "region 0 (3x2 at (8, 0), 1 instants for 1 frames)"),
        ([((0, 0), one, [0.0])], "region 0's instants must be finite and increase"),
        ([], "no region"),
    ]
    for regions, message in cases:
        with pytest.raises(EsimError, match=re.escape(message)):
            esim_advance_regions(state, regions, EXACT, rng())
