"""The DAVIS346 sensor model: each of v2e's effects against its analytic answer.

Leak (rate and phase), the photoreceptor low-pass (the time constant and its fall with
intensity, inside and outside the rendered region), unequal ON/OFF thresholds, shot noise
(rate, intensity dependence, per-pixel spread), hot pixels against DHP19's own filter,
timestamp jitter, the IR reflection spots, and the named sensors.
"""

from __future__ import annotations

import math
from dataclasses import replace

import numpy as np
import pytest
from test_esim import EXACT

from hybridpose.events import Events
from hybridpose.io.dhp19.filters import hot_pixel_mask
from hybridpose.synth.esim import EsimConfig, EsimError, EsimState, esim_advance, esim_init
from hybridpose.synth.generate import PRESETS, SimulationError, with_sensor
from hybridpose.synth.sensor import (
    DHP19_REFLECTIONS,
    SENSORS,
    ReflectionSpot,
    reflection_events,
    spot_pixels,
)

# no mismatch, no refractory period, no noise: only the effect under test
QUIET = EXACT


def rng(seed: int = 0) -> np.random.Generator:
    return np.random.default_rng(seed)


def still(
    state_shape: tuple[int, int], value: float, config: EsimConfig, seconds: float, calls: int
) -> tuple[Events, EsimState]:
    """Run a static scene of log intensity ``value`` for ``seconds`` in ``calls`` equal calls
    (each call passes a one-pixel region, as the generator does in still chunks)."""
    state = esim_init(np.full(state_shape, value), 0.0, config, rng())
    out = []
    gen = rng(1)
    for i in range(1, calls + 1):
        frame = np.full((1, 1, 1), value)
        events, state = esim_advance(state, frame, [seconds * 1e6 * i / calls], config, gen)
        out.append(events)
    return np.concatenate(out), state


# ------------------------------------------------------------------------------ leak
def test_leak_fires_on_events_at_the_leak_rate_from_a_uniform_phase() -> None:
    """At constant light a pixel's reference drifts down by rate * C+ per second: with rate
    1 Hz, events come exactly 1 s apart, and from a uniform initial phase every pixel fires
    exactly 10 times in 10 s (floor(10 - U) + 1 = 10 for U in (0, 1))."""
    config = replace(QUIET, leak_rate_hz=1.0)
    events, _ = still((6, 7), math.log(0.3), config, 10.0, calls=7)
    assert set(events["p"].tolist()) == {1}
    per_pixel = np.bincount(events["y"].astype(int) * 7 + events["x"], minlength=42)
    assert per_pixel.tolist() == [10] * 42
    for pixel in range(42):
        times = np.sort(events["t"][events["y"].astype(int) * 7 + events["x"] == pixel])
        assert np.all(np.abs(np.diff(times) - 1_000_000) <= 1)
    first = np.array(
        [events["t"][events["y"].astype(int) * 7 + events["x"] == p].min() for p in range(42)]
    )
    assert first.min() < 250_000 and first.max() > 750_000  # phases spread over the cycle


def test_leak_is_the_same_whatever_the_calls() -> None:
    config = replace(QUIET, leak_rate_hz=2.0)
    one, state_one = still((3, 4), 0.0, config, 3.0, calls=1)
    many, state_many = still((3, 4), 0.0, config, 3.0, calls=13)
    assert np.array_equal(np.sort(one["t"]), np.sort(many["t"]))
    assert np.allclose(state_one.reference, state_many.reference, atol=1e-9)


def test_leak_inside_the_region_matches_outside() -> None:
    """A pixel sampled every 10 ms (inside the region) leaks like one that is not sampled."""
    config = replace(QUIET, leak_rate_hz=1.0)
    state = esim_init(np.zeros((1, 2)), 0.0, config, rng())
    times = np.arange(1, 301) * 10_000.0
    frames = np.zeros((len(times), 1, 1))
    events, _ = esim_advance(state, frames, times, config, rng(), origin=(0, 0))
    inside = np.sort(events["t"][events["x"] == 0])
    outside = np.sort(events["t"][events["x"] == 1])
    assert len(inside) == len(outside) == 3
    # each pixel's first event comes at its own phase; the period is exactly 1 s in both
    assert np.all(np.abs(np.diff(inside) - 1_000_000) <= 1)
    assert np.all(np.abs(np.diff(outside) - 1_000_000) <= 1)


# ------------------------------------------------------------------------------ low-pass
def step_response(
    intensity: float, inside: bool, cutoff_hz: float = 100.0
) -> tuple[Events, EsimConfig]:
    """A pixel stepping up by 1.05 (log) to ``intensity``; its events over 0.2 s."""
    config = replace(QUIET, cutoff_hz=cutoff_hz, threshold_pos=0.1, threshold_neg=0.1)
    high = math.log(intensity + config.log_eps)
    low = high - 1.05
    state = esim_init(np.array([[low, low]]), 0.0, config, rng())
    if inside:  # sampled every 5 us by the caller (the pixel in the region)
        times = np.arange(1, 40_001) * 5.0
        frames = np.full((len(times), 1, 1), high)
        events, _ = esim_advance(state, frames, times, config, rng(), origin=(0, 0))
        return events[events["x"] == 0], config
    # outside the region: the step is one sample of the region pixel, then constant input
    frames = np.full((1, 1, 1), high)
    state = esim_advance(state, frames, [1.0], config, rng(), origin=(1, 0))[1]
    frames = np.full((1, 1, 1), high)
    events, _ = esim_advance(state, frames, [200_000.0], config, rng(), origin=(0, 0))
    return events[events["x"] == 1], config


@pytest.mark.parametrize("inside", [True, False])
def test_low_pass_crossings_follow_the_exponential(inside: bool) -> None:
    """After a step of 1.05 (log) the output is ``1.05 (1 - exp(-w t))``: the k-th ON event
    (k = 1..10) comes at ``-ln(1 - 0.1 k / 1.05) / w``, with ``w = 2 pi f`` and v2e's
    ``f = cutoff (255 I + 20) / 275``."""
    intensity = 0.5
    events, config = step_response(intensity, inside)
    w = 2 * math.pi * config.cutoff_hz * (255 * intensity + 20) / 275 / 1e6
    expected = np.array([-math.log(1 - 0.1 * k / 1.05) / w for k in range(1, 11)])
    assert events["p"].tolist() == [1] * 10
    # inside: linear interpolation between 5 us samples; outside: between half-time-constant
    # samples of the exponential (a chord lies below a rising concave curve: late, bounded)
    tolerance = 6.0 if inside else 0.15 / w
    assert np.all(np.abs(events["t"] - expected) <= tolerance)


def test_the_cutoff_falls_with_intensity() -> None:
    bright, _ = step_response(0.8, inside=True)
    dark, _ = step_response(0.05, inside=True)
    ratio = (255 * 0.8 + 20) / (255 * 0.05 + 20)  # v2e's rule
    assert dark["t"][4] / bright["t"][4] == pytest.approx(ratio, rel=0.01)


def test_no_cutoff_means_no_lag() -> None:
    events, _ = step_response(0.5, inside=True, cutoff_hz=0.0)
    assert len(events) == 10 and events["t"].max() <= 4  # all in the first 5 us interval


# ------------------------------------------------------------------------------ thresholds
def test_unequal_thresholds_give_on_off_in_their_inverse_ratio() -> None:
    """Up by 2.1 then down by 2.1 with C+ = 0.21, C- = 0.17: the rise crosses
    floor(2.1 / 0.21) = 10 ON levels (the reference ends at 2.1) and the fall back to 0 crosses
    floor(2.1 / 0.17) = 12 OFF levels."""
    config = replace(QUIET, threshold_pos=0.21, threshold_neg=0.17)
    state = esim_init(np.zeros((1, 1)), 0.0, config, rng())
    ramp = np.concatenate([np.linspace(0, 2.1 + 1e-9, 50), np.linspace(2.1, 0.0, 50)])
    events, _ = esim_advance(
        state, ramp.reshape(-1, 1, 1), np.arange(1, 101) * 100.0, config, rng()
    )
    assert int((events["p"] == 1).sum()) == 10
    assert int((events["p"] == -1).sum()) == 12


def test_davis346_is_off_heavy_on_a_symmetric_scene() -> None:
    config = SENSORS["davis346"]
    assert config.threshold_neg / config.threshold_pos == pytest.approx(0.17 / 0.21)


# ------------------------------------------------------------------------------ shot noise
@pytest.mark.parametrize("intensity", [0.0, 0.5, 1.0])
def test_shot_noise_rate_follows_intensity(intensity: float) -> None:
    """v2e: rate * ((factor - 1) (255 I + 20) / 275 + 1) per pixel, half per polarity."""
    config = replace(QUIET, shot_noise_rate_hz=5.0, shot_noise_intensity_factor=0.25)
    value = math.log(intensity + config.log_eps)
    events, _ = still((40, 50), value, config, 10.0, calls=4)
    level = (255 * intensity + 20) / 275
    expected = 5.0 * ((0.25 - 1) * level + 1) * 2000 * 10.0
    assert abs(len(events) - expected) < 5 * math.sqrt(expected)
    on = int((events["p"] == 1).sum())
    assert abs(on - expected / 2) < 5 * math.sqrt(expected / 2)


def test_shot_noise_per_pixel_spread_widens_the_count_distribution() -> None:
    """Without spread per-pixel counts are Poisson (variance = mean); with a spread of 0.3
    decades the rates are log-normal and the variance is several times the mean."""
    variances = []
    for decades in (0.0, 0.3):
        config = replace(QUIET, shot_noise_rate_hz=20.0, noise_rate_cov_decades=decades)
        events, _ = still((30, 30), math.log(0.5), config, 10.0, calls=2)
        counts = np.bincount(events["y"].astype(int) * 30 + events["x"], minlength=900)
        variances.append(counts.var() / counts.mean())
    assert 0.8 < variances[0] < 1.2
    assert variances[1] > 3.0


def test_shot_noise_does_not_move_the_reference() -> None:
    config = replace(QUIET, shot_noise_rate_hz=50.0)
    events, state = still((5, 5), 0.2, config, 2.0, calls=3)
    assert len(events) > 0
    assert np.all(state.reference == 0.2)


# ------------------------------------------------------------------------------ hot pixels
def test_hot_pixels_of_davis346_are_caught_by_dhp19s_rule_in_20_s() -> None:
    """Every hot pixel fires 0.6-1.9 kHz, so DHP19's >= 10^4-events filter removes exactly them
    from 20 s; the davis346 sensor's hot pixels are drawn so."""
    config = replace(
        QUIET, hot_pixel_fraction=4e-3, hot_pixel_rate_hz=600.0, hot_pixel_rate_decades=0.5,
        shot_noise_rate_hz=0.1, leak_rate_hz=0.1,
    )  # fmt: skip
    events, state = still((40, 50), math.log(0.3), config, 20.0, calls=5)
    assert state.hot_rates_hz is not None and len(state.hot_rates_hz) == 8
    assert np.all((state.hot_rates_hz >= 600.0) & (state.hot_rates_hz <= 600.0 * 10**0.5))
    davis = SENSORS["davis346"]
    assert (davis.hot_pixel_rate_hz, davis.hot_pixel_rate_decades) == (600.0, 0.5)
    keep = hot_pixel_mask(events["x"], events["y"], sensor_size=(50, 40))
    removed = np.unique(events["y"][~keep].astype(int) * 50 + events["x"][~keep])
    assert removed.tolist() == state.hot_pixels.tolist()


# ------------------------------------------------------------------------------ jitter
def test_timestamp_jitter_has_the_configured_spread_and_stays_in_the_call() -> None:
    config = replace(QUIET, timestamp_jitter_us=50.0)
    state = esim_init(np.zeros((100, 100)), 0.0, config, rng())
    # every pixel crosses 0.25 exactly at t = 5000 us (a ramp 0 -> 0.5 over 10 ms)
    frames = np.stack([np.full((100, 100), 0.5)])
    events, _ = esim_advance(state, frames, [10_000.0], config, rng())
    assert len(events) == 20_000
    offsets = events["t"][events["t"] < 7_500] - 5_000
    assert abs(offsets.mean()) < 2.0
    assert offsets.std() == pytest.approx(50.0, rel=0.05)
    assert events["t"].min() >= 0 and events["t"].max() <= 10_000


# ------------------------------------------------------------------------------ reflections
def test_reflection_spot_flashes_at_the_strobe_rate() -> None:
    """A spot of contrast 1.2 on thresholds 0.25: pixels at radius r fire
    floor(1.2 (1 - (r/R)^2) / 0.25) ON events per flash, 100 flashes per second."""
    spot = ReflectionSpot(camera=0, center=(173.0, 130.0), radius=4.0, contrast=1.2)
    assert ReflectionSpot(camera=0, center=(0.0, 0.0), radius=1.0).contrast == 0.5  # default
    state = esim_init(np.zeros((260, 346)), 0.0, QUIET, rng())
    events = reflection_events((spot,), state, 0.0, 1e6, 2_500.0, QUIET)
    _, _, contrast = spot_pixels(spot, (346, 260))
    per_flash = np.floor(contrast / 0.25).astype(int).sum()
    assert int((events["p"] == 1).sum()) == 100 * per_flash
    assert int((events["p"] == -1).sum()) == 100 * per_flash
    centre = events[(events["x"] == 173) & (events["y"] == 130) & (events["p"] == 1)]
    times = np.sort(centre["t"].astype(np.int64)).reshape(100, 4)  # 4 events per flash
    assert times[:, 0].tolist() == [2_500 + 10_000 * k for k in range(100)]
    assert np.all(times - times[:, :1] == np.arange(4))  # one per (1 us) refractory step
    assert np.all(np.diff(events["t"].astype(np.int64)) >= 0)


def test_dhp19_reflections_lie_inside_the_reference_masks() -> None:
    """Generate_DHP19.m masks x 780-810, y 115-145 (camera 2) and 346*3 + 214-221, 136-144
    (camera 3) of the tiled frame (1-based): every spot pixel lies inside its mask."""
    masks = {2: (780 - 692, 810 - 692, 115, 145), 3: (214, 221, 136, 144)}
    for spot in DHP19_REFLECTIONS:
        xs, ys, _ = spot_pixels(spot, (346, 260))
        x0, x1, y0, y1 = masks[spot.camera]
        assert len(xs) > 0
        assert np.all((xs + 1 >= x0) & (xs + 1 <= x1) & (ys + 1 >= y0) & (ys + 1 <= y1))


# ------------------------------------------------------------------------------ named sensors
def test_named_sensors() -> None:
    base = PRESETS["tiny"]
    clean = with_sensor(base, "clean")
    assert clean.esim == EsimConfig() and clean.reflections == ()
    davis = with_sensor(base, "davis346")
    assert davis.esim == SENSORS["davis346"] and davis.reflections == DHP19_REFLECTIONS
    assert base.esim == SENSORS["davis346"]  # the default
    with pytest.raises(SimulationError, match="unknown sensor 'dvs128'"):
        with_sensor(base, "dvs128")


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("cutoff_hz", -1.0),
        ("leak_rate_hz", -0.1),
        ("shot_noise_rate_hz", -5.0),
        ("noise_rate_cov_decades", -0.1),
        ("timestamp_jitter_us", math.nan),
        ("hot_pixel_rate_decades", math.inf),
    ],
)
def test_bad_sensor_parameters_raise(field: str, value: float) -> None:
    with pytest.raises(EsimError, match=f"EsimConfig.{field}: must be"):
        EsimConfig(**{field: value})
