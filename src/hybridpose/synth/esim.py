"""An ESIM-style event-camera simulator, stateful across chunks of frames.

The model (Rebecq, Gehrig and Scaramuzza, "ESIM: an Open Event Camera Simulator", CoRL 2018) is a
DVS pixel driven by log intensity. Each pixel ``(x, y)`` keeps a reference log intensity
``ref``, the log intensity of its last sample and the time of its last emitted event; its
contrast thresholds ``C+`` and ``C-`` are drawn once per pixel::

    L(t)   = log(I(t) + eps)                                  (log_intensity)
    C+/-   = max(N(C_nominal, sigma^2), C_min)                (per pixel and polarity)

Between two consecutive samples ``(t0, L0)`` and ``(t1, L1)`` the log intensity is taken as
linear in time. While ``L1 >= ref + C+`` the reference moves up, ``ref <- ref + C+``, and the
pixel crosses the new level at::

    t = t0 + (ref - L0) / (L1 - L0) * (t1 - t0)

emitting an ON event (+1) at ``floor(t)`` microseconds unless ``t - t_last < refractory``, where
``t_last`` is the (unfloored) time of the pixel's last *emitted* event of either polarity (the
reference moves either way; dropped events do not restart the refractory timer). Falling
intensity is symmetric: while ``L1 <= ref - C-``, ``ref <- ref - C-`` and an OFF event (-1) at
the crossing time. Any number of crossings per interval is handled. Noise is added on top
without touching any reference: background activity, a Poisson process of rate
``noise_rate_hz`` per pixel with uniform times and random polarity, and hot pixels, a fixed set
of pixels each firing a Poisson process of rate ``hot_pixel_rate_hz``.

:func:`esim_init` draws the per-pixel thresholds and hot pixels and takes the first sample;
:func:`esim_advance` takes the next samples (``K`` frames of the whole sensor or of a
rectangle of it) and returns the events and the new :class:`EsimState`. Splitting the frames of
one call over two consecutive calls gives identical crossing events, so a generator can stream
any length of video with bounded memory. The per-pixel loop is compiled with numba
(:func:`hybridpose._jit.jit`): a pass counts the events (and updates the state), a second pass
over only the pixels that fired fills the preallocated event columns, and a radix sort puts
them in order. No event count can overflow a buffer.

A sampler must sample finely enough for the linear interpolation to be faithful: it refines its
time grid until :func:`max_log_change` of every interval is at most
:attr:`EsimConfig.log_step_limit` (``max_log_step * min(C+, C-)``).
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from functools import partial
from typing import Any

import numpy as np
import numpy.typing as npt

from hybridpose.errors import HybridPoseError
from hybridpose.events import EVENT_DTYPE, Events
from hybridpose.synth.esim_kernels import (
    decode_keys,
    max_abs_diff,
    outside_pass,
    radix_sort,
    region_pass,
)

FloatArray = npt.NDArray[np.float64]
Float32Array = npt.NDArray[np.float32]
IntArray = npt.NDArray[np.int64]

US_PER_S = 1_000_000.0

_UNSET: FloatArray = np.empty(0)
"""The default of :class:`EsimState`'s optional per-pixel arrays (replaced in ``__post_init__``)."""


class EsimError(HybridPoseError, ValueError):
    """A bad argument to the event simulator (configuration, frames, times, state)."""


# ------------------------------------------------------------------------------ configuration
@dataclass(frozen=True)
class EsimConfig:
    """Settings of the simulated sensor.

    Attributes:
        threshold_pos: nominal ON contrast threshold ``C+`` in log-intensity units (> 0).
        threshold_neg: nominal OFF contrast threshold ``C-`` in log-intensity units (> 0).
        threshold_sigma: per-pixel mismatch: standard deviation of the normal draw of each
            pixel's ``C+`` and ``C-`` (>= 0).
        threshold_min: lower clip of the drawn thresholds (> 0, at most the smaller nominal).
        refractory_us: after an emitted event a pixel emits nothing for this long (>= 0 us).
        noise_rate_hz: background-activity events per pixel per second (>= 0), polarity +1 or
            -1 with equal probability.
        hot_pixel_fraction: fraction of pixels that are hot, in [0, 1].
        hot_pixel_rate_hz: events per second of each hot pixel (>= 0), random polarity.
        log_eps: ``eps`` in ``log(I + eps)`` (> 0): keeps black pixels finite.
        max_log_step: the largest change of any pixel's log intensity between two consecutive
            samples that a sampler should allow, as a fraction of ``min(C+, C-)`` (> 0).
        cutoff_hz: the photoreceptor's 3 dB cutoff frequency for a white pixel (>= 0; 0 = no
            low-pass). A pixel's cutoff falls with its intensity as in v2e:
            ``f = cutoff_hz * (255 I + 20) / 275`` (``I`` in [0, 1]).
        leak_rate_hz: leak events per pixel per second at constant light (>= 0): the
            reference drifts down by ``leak_rate_hz * C+`` per second, so a static pixel fires
            ON events at this rate.
        shot_noise_rate_hz: shot-noise events per pixel per second (ON plus OFF) of a black
            pixel (>= 0); a pixel of intensity ``I`` fires at
            ``rate * ((factor - 1) * (255 I + 20) / 275 + 1)``, each polarity also scaled by
            ``C_nominal / C_pixel``.
        shot_noise_intensity_factor: ``factor`` above: the shot-noise rate of a white pixel
            relative to a black one (>= 0).
        noise_rate_cov_decades: per-pixel spread of the leak and shot-noise rates: each pixel's
            rates are multiplied by ``10 ** N(0, decades^2)`` (>= 0).
        hot_pixel_rate_decades: per-hot-pixel spread of ``hot_pixel_rate_hz``: each hot pixel
            fires at ``hot_pixel_rate_hz * 10 ** U(0, decades)`` (>= 0).
        timestamp_jitter_us: standard deviation of a normal jitter added to every timestamp
            (>= 0), rounded to the microsecond and kept inside the call's time span.

    Raises:
        EsimError: if a value is out of range or not finite.
    """

    threshold_pos: float = 0.25
    threshold_neg: float = 0.25
    threshold_sigma: float = 0.03
    threshold_min: float = 0.05
    refractory_us: float = 500.0
    noise_rate_hz: float = 0.1
    hot_pixel_fraction: float = 1e-4
    hot_pixel_rate_hz: float = 50.0
    log_eps: float = 1e-3
    max_log_step: float = 0.5
    cutoff_hz: float = 0.0
    leak_rate_hz: float = 0.0
    shot_noise_rate_hz: float = 0.0
    shot_noise_intensity_factor: float = 0.25
    noise_rate_cov_decades: float = 0.0
    hot_pixel_rate_decades: float = 0.0
    timestamp_jitter_us: float = 0.0

    def __post_init__(self) -> None:
        for name in self.__dataclass_fields__:
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                raise EsimError(f"EsimConfig.{name}: expected a number, got {value!r}")
            if not math.isfinite(value):
                raise EsimError(f"EsimConfig.{name}: must be finite, got {value}")
            object.__setattr__(self, name, float(value))
        positive = ("threshold_pos", "threshold_neg", "threshold_min", "log_eps", "max_log_step")
        for name in positive:
            if getattr(self, name) <= 0:
                raise EsimError(f"EsimConfig.{name}: must be > 0, got {getattr(self, name)}")
        non_negative = (
            "threshold_sigma", "refractory_us", "noise_rate_hz", "hot_pixel_rate_hz",
            "cutoff_hz", "leak_rate_hz", "shot_noise_rate_hz", "shot_noise_intensity_factor",
            "noise_rate_cov_decades", "hot_pixel_rate_decades", "timestamp_jitter_us",
        )  # fmt: skip
        for name in non_negative:
            if getattr(self, name) < 0:
                raise EsimError(f"EsimConfig.{name}: must be >= 0, got {getattr(self, name)}")
        if not 0.0 <= self.hot_pixel_fraction <= 1.0:
            raise EsimError(
                f"EsimConfig.hot_pixel_fraction: must be in [0, 1], got {self.hot_pixel_fraction}"
            )
        smaller = min(self.threshold_pos, self.threshold_neg)
        if self.threshold_min > smaller:
            raise EsimError(
                f"EsimConfig.threshold_min: {self.threshold_min} exceeds the smaller nominal "
                f"threshold {smaller}"
            )

    @property
    def log_step_limit(self) -> float:
        """``max_log_step * min(threshold_pos, threshold_neg)``: the largest allowed change of
        a pixel's log intensity between consecutive samples (see :func:`max_log_change`)."""
        return self.max_log_step * min(self.threshold_pos, self.threshold_neg)


def log_intensity(frames: npt.ArrayLike, config: EsimConfig) -> Float32Array:
    """Log intensity ``L = log(I + eps)`` of linear intensity frames.

    Args:
        frames: linear intensities ``I >= 0`` (any shape, typically (H, W) or (K, H, W)).
        config: gives ``eps`` (``config.log_eps``).

    Returns:
        float32 array of the same shape as ``frames``.

    Raises:
        EsimError: if an intensity is negative, NaN or infinite.
    """
    intensity = np.asarray(frames, dtype=np.float32)
    if intensity.size:
        lo, hi = float(intensity.min()), float(intensity.max())
        if not (lo >= 0.0 and hi < math.inf):  # NaN fails both
            raise EsimError(
                f"log_intensity: intensities must be finite and >= 0 (found values in [{lo}, {hi}])"
            )
    out: Float32Array = np.log(intensity + np.float32(config.log_eps))
    return out


# ------------------------------------------------------------------------------ state
@dataclass(frozen=True, eq=False)
class EsimState:
    """The simulator's memory between two calls: per-pixel arrays over the whole sensor.

    Never modified in place: :func:`esim_advance` returns a new state (sharing the threshold and
    hot-pixel arrays, which never change).

    Attributes:
        reference: (H, W) float64 log intensity at the last crossing of each pixel.
        last_log: (H, W) float64 log intensity of the last sample.
        last_event_us: (H, W) float64 time of each pixel's last emitted event, ``-inf`` before
            the first (for the refractory period).
        threshold_pos: (H, W) float64 ON threshold ``C+`` of each pixel.
        threshold_neg: (H, W) float64 OFF threshold ``C-`` of each pixel (a positive number).
        hot_pixels: (N,) int64 sorted flat indices ``y * W + x`` of the hot pixels.
        t_us: time of the last sample in microseconds.
        filtered: (H, W) float64 photoreceptor output (the low-passed log intensity) at
            ``t_us``; not given (or None): equal to ``last_log`` (no low-pass).
        leak_per_us: (H, W) float64 drift of each pixel's reference per microsecond (the
            leak); not given: zeros.
        noise_spread: (H, W) float64 factor of each pixel's shot-noise rate; not given: ones.
        hot_rates_hz: (N,) float64 rate of each hot pixel; None: the configuration's.
    """

    reference: FloatArray
    last_log: FloatArray
    last_event_us: FloatArray
    threshold_pos: FloatArray
    threshold_neg: FloatArray
    hot_pixels: IntArray
    t_us: float
    filtered: FloatArray = field(default_factory=lambda: _UNSET)
    leak_per_us: FloatArray = field(default_factory=lambda: _UNSET)
    noise_spread: FloatArray = field(default_factory=lambda: _UNSET)
    hot_rates_hz: FloatArray | None = None

    def __post_init__(self) -> None:
        shape = np.shape(self.reference)
        if len(shape) != 2 or min(shape) < 1:
            raise EsimError(f"EsimState: reference must be a non-empty (H, W) array, got {shape}")
        if shape[0] > 65535 or shape[1] > 65535:
            raise EsimError(f"EsimState: sensor {shape} larger than 65535 pixels a side")
        defaults = {
            "filtered": self.last_log,
            "leak_per_us": np.zeros(shape),
            "noise_spread": np.ones(shape),
        }
        for name, default in defaults.items():
            if getattr(self, name) is None or getattr(self, name) is _UNSET:
                object.__setattr__(self, name, default)
        per_pixel = ("reference", "last_log", "last_event_us", "threshold_pos", "threshold_neg")
        for name in per_pixel + tuple(defaults):
            array = np.asarray(getattr(self, name), dtype=np.float64)
            if array.shape != shape:
                raise EsimError(f"EsimState.{name}: shape {array.shape}, expected {shape}")
            object.__setattr__(self, name, array)
        hot = np.asarray(self.hot_pixels, dtype=np.int64)
        if hot.ndim != 1 or (hot.size and (hot.min() < 0 or hot.max() >= shape[0] * shape[1])):
            raise EsimError("EsimState.hot_pixels: must be flat pixel indices inside the sensor")
        object.__setattr__(self, "hot_pixels", hot)
        if self.hot_rates_hz is not None:
            rates = np.asarray(self.hot_rates_hz, dtype=np.float64)
            if rates.shape != hot.shape:
                raise EsimError("EsimState.hot_rates_hz: one rate per hot pixel")
            object.__setattr__(self, "hot_rates_hz", rates)
        t = float(self.t_us)
        if not math.isfinite(t):
            raise EsimError(f"EsimState.t_us: must be finite, got {self.t_us}")
        object.__setattr__(self, "t_us", t)

    @property
    def sensor_size(self) -> tuple[int, int]:
        """``(width, height)`` in pixels."""
        height, width = self.reference.shape
        return int(width), int(height)


def esim_init(
    first_log: npt.ArrayLike, t_us: float, config: EsimConfig, rng: np.random.Generator
) -> EsimState:
    """Start a simulated sensor on its first sample; emits nothing.

    Draws each pixel's thresholds ``C = max(C_nominal + sigma * N(0, 1), C_min)`` (ON first,
    then OFF) and ``round(hot_pixel_fraction * H * W)`` distinct hot pixels from ``rng``.

    Args:
        first_log: (H, W) log intensity of the first sample (see :func:`log_intensity`).
        t_us: its time in microseconds.
        config: the sensor's settings.
        rng: the random generator (consumed).

    Returns:
        The state with ``reference = last_log = first_log`` and no event emitted yet.

    Raises:
        EsimError: if ``first_log`` is not a finite 2-D array or ``t_us`` is not finite.
    """
    _check_config(config)
    if not isinstance(rng, np.random.Generator):
        raise EsimError(f"esim_init: rng must be a numpy Generator, got {type(rng).__name__}")
    first = np.array(first_log, dtype=np.float64)  # a copy: the state owns its arrays
    if first.ndim != 2 or first.size == 0:
        raise EsimError(f"esim_init: first_log must be a non-empty (H, W) array, got {first.shape}")
    if not np.all(np.isfinite(first)):
        raise EsimError("esim_init: first_log holds NaN or infinite values")
    try:
        t_start = float(t_us)
    except (TypeError, ValueError):
        raise EsimError(f"esim_init: t_us must be a number, got {t_us!r}") from None
    if not math.isfinite(t_start):
        raise EsimError(f"esim_init: t_us must be finite, got {t_us}")
    shape = first.shape
    thresholds = []
    for nominal in (config.threshold_pos, config.threshold_neg):
        drawn = nominal + config.threshold_sigma * rng.standard_normal(shape)
        thresholds.append(np.maximum(drawn, config.threshold_min))
    n_pixels = first.size
    n_hot = round(config.hot_pixel_fraction * n_pixels)
    hot = np.sort(rng.choice(n_pixels, size=n_hot, replace=False)).astype(np.int64)
    # the DAVIS346 effects draw only when they are on, so a clean sensor's draws are unchanged
    spread = None
    if config.noise_rate_cov_decades > 0 and (config.leak_rate_hz or config.shot_noise_rate_hz):
        spread = 10.0 ** (config.noise_rate_cov_decades * rng.standard_normal(shape))
    reference = first
    leak = None
    if config.leak_rate_hz > 0:
        leak = config.leak_rate_hz * thresholds[0] / US_PER_S
        if spread is not None:
            leak = leak * spread
        # a sensor that has been running: each pixel is at a uniform phase of its leak cycle
        reference = first - (1.0 - rng.uniform(size=shape)) * thresholds[0]
    hot_rates = None
    if config.hot_pixel_rate_decades > 0 and n_hot:
        hot_rates = config.hot_pixel_rate_hz * 10.0 ** rng.uniform(
            0.0, config.hot_pixel_rate_decades, size=n_hot
        )
    return EsimState(
        reference=reference,
        last_log=first.copy(),
        last_event_us=np.full(shape, -np.inf),
        threshold_pos=thresholds[0],
        threshold_neg=thresholds[1],
        hot_pixels=hot,
        t_us=t_start,
        filtered=first.copy() if config.cutoff_hz > 0 else _UNSET,
        leak_per_us=_UNSET if leak is None else leak,
        noise_spread=_UNSET if spread is None else spread,
        hot_rates_hz=hot_rates,
    )


# ------------------------------------------------------------------------------ public functions
def _check_config(config: object) -> None:
    if not isinstance(config, EsimConfig):
        raise EsimError(f"config must be an EsimConfig, got {type(config).__name__}")


def _as_frames(log_frames: npt.ArrayLike, name: str) -> npt.NDArray[np.floating]:
    """(K, h, w) C-contiguous float32 or float64 (float32 stays float32: no copy, no widening)."""
    frames = np.asarray(log_frames)
    if frames.dtype not in (np.float32, np.float64):
        if not (np.issubdtype(frames.dtype, np.number) and not np.iscomplexobj(frames)):
            raise _not_real_error(name, frames.dtype)
        frames = frames.astype(np.float64)
    _check_frames_shape(frames.shape, name)
    return np.ascontiguousarray(frames)


def _not_real_error(name: str, dtype: object) -> EsimError:
    """The error for frames whose dtype is not a real number type."""
    return EsimError(f"{name}: expected real numbers, got dtype {dtype}")


def _check_frames_shape(shape: tuple[int, ...], name: str) -> None:
    """Frames must be a non-empty (K, h, w) array."""
    if len(shape) != 3 or math.prod(shape) == 0:
        raise EsimError(f"{name}: expected a non-empty (K, h, w) array, got shape {shape}")


def _check_advance_arguments(state: object, config: object, rng: object) -> None:
    """:func:`esim_advance`'s checks of its state, configuration and generator."""
    _check_config(config)
    if not isinstance(state, EsimState):
        raise EsimError(f"esim_advance: state must be an EsimState, got {type(state).__name__}")
    if not isinstance(rng, np.random.Generator):
        raise EsimError(f"esim_advance: rng must be a numpy Generator, got {type(rng).__name__}")


def _check_advance_window(
    state: EsimState, shape: tuple[int, int, int], t_us: npt.ArrayLike, origin: object
) -> tuple[int, int, FloatArray]:
    """:func:`esim_advance`'s checks of the rectangle and the instants of (K, h, w) frames;
    returns ``(x0, y0, times)``."""
    n_k, h, w = shape
    width, height = state.sensor_size
    x0, y0 = _check_origin(origin)
    if x0 + w > width or y0 + h > height:
        raise EsimError(
            f"esim_advance: a {w}x{h} region at origin ({x0}, {y0}) does not fit the "
            f"{width}x{height} sensor"
        )
    times = np.ascontiguousarray(t_us, dtype=np.float64)
    if times.shape != (n_k,):
        raise EsimError(f"esim_advance: t_us has shape {times.shape}, expected ({n_k},)")
    if not np.all(np.isfinite(times)):
        raise EsimError("esim_advance: t_us holds NaN or infinite values")
    if times[0] <= state.t_us:
        raise EsimError(
            f"esim_advance: first sample at {times[0]} us is not after the state's last "
            f"sample at {state.t_us} us"
        )
    if n_k > 1 and np.any(np.diff(times) <= 0):
        raise EsimError("esim_advance: t_us must increase strictly")
    return x0, y0, times


def _non_finite_error(index: int, frames: npt.NDArray[np.floating]) -> EsimError:
    """The error for the non-finite sample at flat index ``(k * h + r) * w + c`` of (K, h, w)
    ``frames``."""
    _, h, w = frames.shape
    k, rest = divmod(index, h * w)
    r, c = divmod(rest, w)
    return EsimError(
        f"esim_advance: log_frames[{k}, {r}, {c}] is {frames[k, r, c]} (must be finite)"
    )


def esim_advance(
    state: EsimState,
    log_frames: npt.ArrayLike,
    t_us: npt.ArrayLike,
    config: EsimConfig,
    rng: np.random.Generator,
    origin: tuple[int, int] = (0, 0),
) -> tuple[Events, EsimState]:
    """Feed the next ``K`` samples to the sensor: crossing events plus noise, and the new state.

    The frames cover the rectangle of the sensor whose top-left pixel is ``origin = (x0, y0)``;
    pixels outside it are taken as unchanged since the last sample (no crossings). Per pixel the
    log intensity is linear in time between consecutive samples, starting from the state's last
    sample at ``state.t_us``; the crossing model is in the module docstring. Then background
    activity (a Poisson process of ``noise_rate_hz`` per pixel) and hot-pixel events (Poisson at
    ``hot_pixel_rate_hz`` per hot pixel) are added over the whole sensor, with times uniform in
    ``(state.t_us, t_us[-1]]`` and polarity +1/-1 with equal probability; noise does not touch
    the references.

    Event timestamps are ``floor`` of the crossing (or noise) time in microseconds. The result
    is sorted by ``(t, y, x, p)`` (a canonical order, whatever the kernel's order). The same
    inputs and ``rng`` state give identical outputs. Splitting the frames of one call over two
    consecutive calls gives identical crossing events and an identical final state: the first
    call's events end at or before the split and the second's start at or after it, so the
    concatenation is the one-call output, except that events falling in the very microsecond
    of the split may come in another order (noise aside, which depends on the calls).

    Args:
        state: the sensor after its last sample (not modified).
        log_frames: (K, h, w) log intensities (float32 or float64; see :func:`log_intensity`).
        t_us: (K,) float sample times in us, strictly increasing, the first after ``state.t_us``.
        config: refractory period and noise (the thresholds were drawn by :func:`esim_init`).
        rng: random generator for the noise (consumed).
        origin: ``(x0, y0)``, the sensor pixel of ``log_frames[:, 0, 0]``.

    Returns:
        ``(events, new_state)``: an :data:`~hybridpose.events.EVENT_DTYPE` array (x = x0 +
        column, y = y0 + row) and the state after sample ``t_us[-1]``.

    Shape:
        log_frames (K, h, w) with ``x0 + w <= W`` and ``y0 + h <= H``; t_us (K,).

    Raises:
        EsimError: bad shapes, a rectangle outside the sensor, non-finite samples or times,
            times that do not increase.
    """
    _check_advance_arguments(state, config, rng)
    frames = _as_frames(log_frames, "esim_advance: log_frames")
    _, h, w = frames.shape
    x0, y0, times = _check_advance_window(state, (frames.shape[0], h, w), t_us, origin)
    region = partial(_region_pass_events, [(x0, y0, frames, times, None)])
    box = (x0, x0 + w, y0, y0 + h)
    result = _advance(state, float(times[-1]), box, config, rng, region)
    if isinstance(result, int):
        raise _non_finite_error(result, frames)
    return result


Region = tuple[int, int, npt.NDArray[np.floating], FloatArray, "npt.NDArray[np.bool_] | None"]
"""``(x0, y0, log_frames (K, h, w), t_us (K,))``: one rectangle's samples."""


def esim_advance_regions(
    state: EsimState,
    regions: Sequence[tuple[Any, ...]],
    config: EsimConfig,
    rng: np.random.Generator,
) -> tuple[Events, EsimState]:
    """:func:`esim_advance` with each rectangle sampled at its own instants.

    ``regions`` holds ``(origin, log_frames, t_us)`` or ``(origin, log_frames, t_us, used)``
    for disjoint rectangles that together tile one rectangle of the sensor (the rest is taken
    as unchanged, as there); each region's instants increase strictly from after
    ``state.t_us`` and all end at the same instant. Every pixel's crossings are those of the
    linear interpolation between its own region's samples, so a region holding the same
    samples as one :func:`esim_advance` call gives its pixels the same events; noise is drawn
    once, over the whole sensor. ``used`` (K, h, w) bool, when given, marks the samples each
    pixel takes (every pixel's last one among them): a pixel's input runs straight from one
    used sample to the next, its other samples left out (the tile sampler's interpolated
    values, which lie on that line; the photoreceptor's rate is then the used sample's).

    Raises:
        EsimError: bad shapes, regions that overlap, leave a gap or leave the sensor,
            instants that do not increase or do not end together, non-finite samples.
    """
    _check_config(config)
    if not isinstance(state, EsimState) or not isinstance(rng, np.random.Generator):
        raise EsimError("esim_advance_regions: needs an EsimState and a numpy Generator")
    width, height = state.sensor_size
    checked: list[Region] = []
    for i, (origin, log_frames, t_us, *rest) in enumerate(regions):
        frames = _as_frames(log_frames, f"esim_advance_regions: region {i}'s log_frames")
        x0, y0 = _check_origin(origin)
        times = np.ascontiguousarray(t_us, dtype=np.float64)
        n_k, h, w = frames.shape
        if x0 + w > width or y0 + h > height or times.shape != (n_k,):
            raise EsimError(
                f"esim_advance_regions: region {i} ({w}x{h} at ({x0}, {y0}), {len(times)} "
                f"instants for {n_k} frames) does not fit the {width}x{height} sensor"
            )
        if not np.all(np.isfinite(times)) or times[0] <= state.t_us or np.any(np.diff(times) <= 0):
            raise EsimError(
                f"esim_advance_regions: region {i}'s instants must be finite and increase "
                f"strictly from after {state.t_us} us"
            )
        checked.append((x0, y0, frames, times, _checked_used(rest, frames.shape, i)))
    if not checked:
        raise EsimError("esim_advance_regions: no region")
    if len({float(r[3][-1]) for r in checked}) != 1:
        raise EsimError("esim_advance_regions: the regions' last instants differ")
    box = (
        min(r[0] for r in checked), max(r[0] + r[2].shape[2] for r in checked),
        min(r[1] for r in checked), max(r[1] + r[2].shape[1] for r in checked),
    )  # fmt: skip
    cover = np.zeros((box[3] - box[2], box[1] - box[0]), np.int64)
    for x0, y0, frames, _, _ in checked:
        r0, c0 = y0 - box[2], x0 - box[0]
        cover[r0 : r0 + frames.shape[1], c0 : c0 + frames.shape[2]] += 1
    if (cover != 1).any():
        raise EsimError("esim_advance_regions: the regions must tile one rectangle exactly")
    t_end = float(checked[0][3][-1])
    result = _advance(state, t_end, box, config, rng, partial(_region_pass_events, checked))
    if isinstance(result, int):
        raise EsimError("esim_advance_regions: a region holds non-finite log intensities")
    return result


StateCopies = tuple[FloatArray, FloatArray, FloatArray, FloatArray]
"""Copies of a state's ``reference``, ``last_log``, ``filtered`` and ``last_event_us``, which a
call updates in place to its new state."""

PixelModel = tuple[FloatArray, FloatArray, FloatArray, float, float, float]
"""The pixel model's parameters: ``C+``, ``C-`` and leak per pixel (H, W), the refractory period
(us), the photoreceptor's angular cutoff (rad/us; 0 = no low-pass) and ``log_eps``."""

RegionEvents = Callable[[EsimState, StateCopies, PixelModel], "list[EventColumns] | int"]
"""The per-region step of :func:`_advance`: ``(state, copies, pixel) -> columns``. Given the
unmodified state, it writes the new state of the region's pixels into ``copies`` and returns
their crossing events (x, y, t, p columns, in the counting kernel's order: region, row,
sample, column, crossing), or the flat index of a non-finite sample."""


def _checked_used(
    rest: Sequence[object], shape: tuple[int, ...], i: int
) -> npt.NDArray[np.bool_] | None:
    """A region's optional ``used`` mask: (K, h, w) bool, every pixel's last sample used."""
    if not rest or rest[0] is None:
        return None
    used = np.ascontiguousarray(rest[0])
    if len(rest) > 1 or used.dtype != np.bool_ or used.shape != shape or not used[-1].all():
        raise EsimError(
            f"esim_advance_regions: region {i}'s used samples must be a {shape} bool array "
            "holding every pixel's last sample"
        )
    return used


REGION_EVENTS_BUFFER = 1 << 20
"""The most events the counting passes of one :func:`_region_pass_events` call write directly
(21 bytes each); the regions whose events do not fit take a filling pass."""


def _region_pass_events(
    regions: Sequence[Region], state: EsimState, copies: StateCopies, pixel: PixelModel
) -> list[EventColumns] | int:
    """The numba :data:`RegionEvents` step: per region a counting pass, which updates
    ``copies`` and writes the events into one buffer while they fit (it holds one event per
    sample the pixels take), then a filling pass over the pixels that fired, for the regions
    whose events did not fit."""
    reference, last_log, filtered, last_event = copies
    c_pos, c_neg, leak, refractory, cutoff_w, eps = pixel
    taken = sum(f.size if u is None else int(np.count_nonzero(u)) for _, _, f, _, u in regions)
    buffer = _event_columns(min(taken, REGION_EVENTS_BUFFER))
    written = np.zeros(1, np.int64)
    counted: list[tuple[IntArray, tuple[int, int] | None]] = []
    for x0, y0, frames, times, used in regions:
        counts = np.zeros(frames.shape[1:], np.int64)
        start = int(written[0])
        bad = region_pass(
            frames, times, used, state.t_us, x0, y0, reference, last_log, filtered, last_event,
            c_pos, c_neg, leak, refractory, cutoff_w, eps, counts, False,
            np.zeros(frames.shape[1], np.int64), written, *buffer,
        )  # fmt: skip
        if bad >= 0:
            return int(bad)
        span = None if written[0] < 0 else (start, int(written[0]))
        written[0] = start if span is None else span[1]  # the next region writes on from here
        counted.append((counts, span))
    columns: list[EventColumns] = []
    for (x0, y0, frames, times, used), (counts, span) in zip(regions, counted, strict=True):
        if span is not None:
            x, y, t, p = buffer
            columns.append(
                (
                    x[span[0] : span[1]],
                    y[span[0] : span[1]],
                    t[span[0] : span[1]],
                    p[span[0] : span[1]],
                )
            )
            continue
        region = _event_columns(int(counts.sum()))
        if len(region[0]):
            # the same computation from the unmodified state, writing the events
            row_counts = counts.sum(axis=1)
            region_pass(
                frames, times, used, state.t_us, x0, y0, state.reference, state.last_log,
                state.filtered, state.last_event_us, c_pos, c_neg, leak, refractory, cutoff_w,
                eps, counts, True, np.cumsum(row_counts) - row_counts, written, *region,
            )  # fmt: skip
        columns.append(region)
    return columns


def _advance(
    state: EsimState,
    t_end: float,
    box: tuple[int, int, int, int],
    config: EsimConfig,
    rng: np.random.Generator,
    region_events: RegionEvents,
) -> tuple[Events, EsimState] | int:
    """The sensor over checked regions tiling ``box = (x0, x1, y0, y1)`` up to ``t_end``: their
    crossings (``region_events``), the pixels outside the box (leak, settling), noise, jitter.
    Returns the events and the new state, or the flat index of a non-finite sample that
    ``region_events`` reported (a single region's, as esim_advance reports it)."""
    reference = state.reference.copy()
    last_log = state.last_log.copy()
    filtered = state.filtered.copy()
    last_event = state.last_event_us.copy()
    c_pos, c_neg, leak = state.threshold_pos, state.threshold_neg, state.leak_per_us
    cutoff_w = 2.0 * math.pi * config.cutoff_hz / US_PER_S
    refractory, eps = config.refractory_us, config.log_eps
    copies = (reference, last_log, filtered, last_event)
    pixel = (c_pos, c_neg, leak, refractory, cutoff_w, eps)
    columns = region_events(state, copies, pixel)
    if isinstance(columns, int):
        return columns
    if config.leak_rate_hz > 0 or config.cutoff_hz > 0:
        columns.append(_outside(state, np.array(box, np.int64), t_end, copies, pixel))
    columns.append(_noise_events(state, t_end, config, rng, last_log))
    xs, ys, ts, ps = (np.concatenate([col[i] for col in columns]) for i in range(4))
    if config.timestamp_jitter_us > 0 and len(ts):
        jitter = np.rint(config.timestamp_jitter_us * rng.standard_normal(len(ts)))
        ts = np.clip(ts + jitter.astype(np.int64), math.floor(state.t_us), math.floor(t_end))
    events = _sorted_events(xs, ys, ts, ps, state.sensor_size)
    new_state = dataclasses.replace(
        state,
        reference=reference,
        last_log=last_log,
        last_event_us=last_event,
        filtered=filtered,
        t_us=t_end,
    )
    return events, new_state


def _check_origin(origin: object) -> tuple[int, int]:
    values = tuple(origin) if isinstance(origin, (tuple, list)) else ()
    if len(values) != 2 or not all(
        isinstance(v, (int, np.integer)) and not isinstance(v, bool) and v >= 0 for v in values
    ):
        raise EsimError(
            f"esim_advance: origin must be (x0, y0), two whole numbers >= 0, got {origin!r}"
        )
    return int(values[0]), int(values[1])


EventColumns = tuple[npt.NDArray[np.uint16], npt.NDArray[np.uint16], IntArray, npt.NDArray[np.int8]]


def _event_columns(n: int) -> EventColumns:
    """Empty columns x, y, t, p for ``n`` events."""
    return (
        np.empty(n, np.uint16), np.empty(n, np.uint16), np.empty(n, np.int64), np.empty(n, np.int8)
    )  # fmt: skip


def _outside(
    state: EsimState,
    box: IntArray,
    t_end: float,
    copies: tuple[FloatArray, FloatArray, FloatArray, FloatArray],
    pixel: tuple[FloatArray, FloatArray, FloatArray, float, float, float],
) -> EventColumns:
    """The events of the pixels outside the region (leak and settling). ``copies``: the
    reference, last log, filtered log and last event time of the counting pass, updated in
    place; ``pixel``: thresholds, leak, refractory period, cutoff and log epsilon."""
    ref, last, filt, last_event = copies
    c_pos, c_neg, leak, refractory, cutoff_w, eps = pixel
    counts = np.zeros(ref.shape, np.int64)
    outside_pass(
        box, state.t_us, t_end, ref, last, filt, last_event, c_pos, c_neg, leak, refractory,
        cutoff_w, eps, counts, False, *_event_columns(0),
    )  # fmt: skip
    columns = _event_columns(int(counts.sum()))
    if len(columns[0]):
        outside_pass(
            box, state.t_us, t_end, state.reference, state.last_log, state.filtered,
            state.last_event_us, c_pos, c_neg, leak, refractory, cutoff_w, eps, counts, True,
            *columns,
        )  # fmt: skip
    return columns


def _noise_events(
    state: EsimState,
    t_end: float,
    config: EsimConfig,
    rng: np.random.Generator,
    log_now: FloatArray,
) -> EventColumns:
    """Background activity, hot pixels and shot noise over ``(state.t_us, t_end]``.

    A Poisson process of rate ``lambda`` on each of ``n`` pixels is one Poisson process of rate
    ``n * lambda`` whose events fall on uniformly drawn pixels; with per-pixel rates, on pixels
    drawn in proportion to their rates. Shot noise takes each pixel's intensity from
    ``log_now`` (the log intensity at ``t_end``). Returns the columns x, y, t, p.
    """
    width, height = state.sensor_size
    duration_s = (t_end - state.t_us) / US_PER_S
    n_noise = rng.poisson(config.noise_rate_hz * width * height * duration_s)
    pixels = rng.integers(0, width * height, size=n_noise, dtype=np.int64)
    hot_rates = config.hot_pixel_rate_hz if state.hot_rates_hz is None else state.hot_rates_hz
    n_hot = rng.poisson(hot_rates * duration_s, size=len(state.hot_pixels))
    pixels = np.concatenate([pixels, np.repeat(state.hot_pixels, n_hot)])
    n = len(pixels)
    # times uniform in (t0, t_end]: t_end minus a uniform draw in [0, duration)
    times = t_end - rng.uniform(0.0, t_end - state.t_us, size=n)
    polarity = rng.integers(0, 2, size=n, dtype=np.int8) * np.int8(2) - np.int8(1)
    columns: list[tuple[IntArray, FloatArray, npt.NDArray[np.int8]]] = [(pixels, times, polarity)]
    if config.shot_noise_rate_hz > 0 and duration_s > 0:
        columns += _shot_noise(state, t_end, config, rng, log_now)
    pixels, times, polarity = (np.concatenate([col[i] for col in columns]) for i in range(3))
    return (
        (pixels % width).astype(np.uint16),
        (pixels // width).astype(np.uint16),
        np.floor(times).astype(np.int64),
        polarity.astype(np.int8),
    )


def shot_noise_rates(
    state: EsimState, config: EsimConfig, log_now: npt.ArrayLike
) -> tuple[FloatArray, FloatArray]:
    """Each pixel's shot-noise rate (Hz) of ON and of OFF events at the log intensity ``log_now``.

    v2e's model: half of ``shot_noise_rate_hz`` per polarity, scaled from 1 (black) to
    ``shot_noise_intensity_factor`` (white) by ``(255 I + 20) / 275``, by the pixel's
    ``noise_spread`` and by ``C_nominal / C_pixel`` of the polarity.
    """
    intensity = np.clip(np.exp(np.asarray(log_now, dtype=np.float64)) - config.log_eps, 0.0, 1.0)
    level = (255.0 * intensity + 20.0) / 275.0
    base = (
        0.5 * config.shot_noise_rate_hz * ((config.shot_noise_intensity_factor - 1.0) * level + 1.0)
    )
    base = base * state.noise_spread
    return (
        base * (config.threshold_pos / state.threshold_pos),
        base * (config.threshold_neg / state.threshold_neg),
    )


def _shot_noise(
    state: EsimState,
    t_end: float,
    config: EsimConfig,
    rng: np.random.Generator,
    log_now: FloatArray,
) -> list[tuple[IntArray, FloatArray, npt.NDArray[np.int8]]]:
    """Shot-noise events of both polarities (they do not touch the references)."""
    duration_s = (t_end - state.t_us) / US_PER_S
    out = []
    for sign, rates in zip((1, -1), shot_noise_rates(state, config, log_now), strict=True):
        cumulative = np.cumsum(rates.ravel())
        total = float(cumulative[-1])
        n = rng.poisson(total * duration_s)
        pixels = np.searchsorted(cumulative, rng.uniform(0.0, total, size=n), side="right")
        pixels = np.minimum(pixels, len(cumulative) - 1).astype(np.int64)
        times = t_end - rng.uniform(0.0, t_end - state.t_us, size=n)
        out.append((pixels, times, np.full(n, sign, np.int8)))
    return out


def _sorted_events(
    xs: npt.NDArray[np.uint16],
    ys: npt.NDArray[np.uint16],
    ts: IntArray,
    ps: npt.NDArray[np.int8],
    sensor_size: tuple[int, int],
) -> Events:
    """The columns as one event array sorted by ``(t, y, x, p)``.

    Events with equal keys are identical, so the order is canonical. The keys
    ``(t - t_min) * 2HW + (y W + x) * 2 + (p > 0)`` are radix-sorted (linear time); a span of
    time too long for int64 keys falls back to ``np.lexsort``.
    """
    n = len(ts)
    events = np.empty(n, EVENT_DTYPE)
    if n == 0:
        return events
    width, height = sensor_size
    per_us = 2 * width * height
    t_min = int(ts.min())
    span = int(ts.max()) - t_min + 1
    if span <= (2**63 - 1) // per_us:
        pixel = ys.astype(np.int64) * width + xs
        keys = (ts - t_min) * per_us + pixel * 2 + (ps > 0)
        decode_keys(radix_sort(keys), t_min, width, per_us, events)
    else:  # pragma: no cover - a single call spanning years of sensor time
        order = np.lexsort((ps, xs, ys, ts))
        events["x"], events["y"], events["t"], events["p"] = (
            xs[order],
            ys[order],
            ts[order],
            ps[order],
        )
    return events


def max_log_change(last_log_region: npt.ArrayLike, log_frames: npt.ArrayLike) -> FloatArray:
    """The largest change of any pixel's log intensity over each sampling interval.

    ``out[0] = max |L_0 - last|`` and ``out[k] = max |L_k - L_{k-1}|`` over the pixels. Samplers
    refine their time grid until every entry is at most :attr:`EsimConfig.log_step_limit`, so
    that the simulator's linear interpolation between samples is faithful.

    Args:
        last_log_region: (h, w) log intensity of the previous sample over the same region
            (``state.last_log[y0:y0 + h, x0:x0 + w]``).
        log_frames: (K, h, w) the next samples.

    Returns:
        (K,) float64; NaN where an interval involves a NaN.

    Example:
        >>> import numpy as np
        >>> max_log_change(np.zeros((1, 2)), np.array([[[0.5, -0.25]], [[0.5, 1.0]]])).tolist()
        [0.5, 1.25]

    Raises:
        EsimError: if the shapes do not match.
    """
    frames = _as_frames(log_frames, "max_log_change: log_frames")
    last = np.ascontiguousarray(last_log_region, dtype=np.float64)
    _check_last_region(last.shape, frames.shape)
    out = np.empty(frames.shape[0])
    max_abs_diff(last.ravel(), frames.reshape(frames.shape[0], -1), out)
    return out


def _check_last_region(last_shape: tuple[int, ...], frames_shape: tuple[int, ...]) -> None:
    """:func:`max_log_change`'s check that the last sample has the frames' (h, w)."""
    if tuple(last_shape) != tuple(frames_shape[1:]):
        raise EsimError(
            f"max_log_change: last_log_region has shape {tuple(last_shape)}, frames are "
            f"{tuple(frames_shape[1:])}"
        )
