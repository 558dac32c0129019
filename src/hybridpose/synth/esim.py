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

import math
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from hybridpose._jit import jit
from hybridpose.errors import HybridPoseError
from hybridpose.events import EVENT_DTYPE, Events

FloatArray = npt.NDArray[np.float64]
Float32Array = npt.NDArray[np.float32]
IntArray = npt.NDArray[np.int64]

US_PER_S = 1_000_000.0


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
        non_negative = ("threshold_sigma", "refractory_us", "noise_rate_hz", "hot_pixel_rate_hz")
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
    """

    reference: FloatArray
    last_log: FloatArray
    last_event_us: FloatArray
    threshold_pos: FloatArray
    threshold_neg: FloatArray
    hot_pixels: IntArray
    t_us: float

    def __post_init__(self) -> None:
        shape = np.shape(self.reference)
        if len(shape) != 2 or min(shape) < 1:
            raise EsimError(f"EsimState: reference must be a non-empty (H, W) array, got {shape}")
        if shape[0] > 65535 or shape[1] > 65535:
            raise EsimError(f"EsimState: sensor {shape} larger than 65535 pixels a side")
        for name in ("reference", "last_log", "last_event_us", "threshold_pos", "threshold_neg"):
            array = np.asarray(getattr(self, name), dtype=np.float64)
            if array.shape != shape:
                raise EsimError(f"EsimState.{name}: shape {array.shape}, expected {shape}")
            object.__setattr__(self, name, array)
        hot = np.asarray(self.hot_pixels, dtype=np.int64)
        if hot.ndim != 1 or (hot.size and (hot.min() < 0 or hot.max() >= shape[0] * shape[1])):
            raise EsimError("EsimState.hot_pixels: must be flat pixel indices inside the sensor")
        object.__setattr__(self, "hot_pixels", hot)
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
    return EsimState(
        reference=first,
        last_log=first.copy(),
        last_event_us=np.full(shape, -np.inf),
        threshold_pos=thresholds[0],
        threshold_neg=thresholds[1],
        hot_pixels=hot,
        t_us=t_start,
    )


# ------------------------------------------------------------------------------ compiled kernels
@jit
def _crossings(
    l0: float,
    l1: float,
    t0: float,
    t1: float,
    ref: float,
    last_event: float,
    c_pos: float,
    c_neg: float,
    refractory: float,
    out_t: IntArray,
    out_p: npt.NDArray[np.int8],
    cursor: int,
) -> tuple[float, float, int]:
    """The crossings of one pixel over one interval; returns (ref, last_event, n_emitted).

    Writes the emitted events' floor times and polarities at ``out[cursor:]`` when
    ``cursor >= 0`` (the filling pass); the counting pass passes -1.
    """
    n = 0
    dl = l1 - l0
    dt = t1 - t0
    if l1 >= ref + c_pos:
        while l1 >= ref + c_pos:
            ref += c_pos
            t = _crossing_time(ref, l0, dl, t0, dt)
            if not t - last_event < refractory:
                if cursor >= 0:
                    out_t[cursor + n] = np.int64(math.floor(t))
                    out_p[cursor + n] = 1
                n += 1
                last_event = t
    elif l1 <= ref - c_neg:
        while l1 <= ref - c_neg:
            ref -= c_neg
            t = _crossing_time(ref, l0, dl, t0, dt)
            if not t - last_event < refractory:
                if cursor >= 0:
                    out_t[cursor + n] = np.int64(math.floor(t))
                    out_p[cursor + n] = -1
                n += 1
                last_event = t
    return ref, last_event, n


@jit
def _crossing_time(level: float, l0: float, dl: float, t0: float, dt: float) -> float:
    """The time at which one pixel's log intensity meets ``level`` within one interval.

    The log intensity is linear from ``l0`` at ``t0`` to ``l0 + dl`` at ``t0 + dt``; the time is
    clipped to the interval.
    """
    frac = (level - l0) / dl
    if not frac >= 0.0:  # NaN too (only for a state that breaks the invariant)
        frac = 0.0
    elif frac > 1.0:
        frac = 1.0
    return t0 + frac * dt


@jit
def _count_pass(
    frames: npt.NDArray[np.floating],
    t_us: FloatArray,
    t_prev: float,
    x0: int,
    y0: int,
    ref: FloatArray,
    last: FloatArray,
    last_event: FloatArray,
    c_pos: FloatArray,
    c_neg: FloatArray,
    refractory: float,
    counts: IntArray,
) -> int:
    """Run the model over the region, updating ``ref``, ``last``, ``last_event`` in place.

    ``counts[r, c]`` receives the number of emitted events of region pixel (r, c). Rows are the
    outer loop so that a row's state stays in cache while the samples stream past. Returns -1,
    or the flat index (k, r, c) of the first non-finite sample met.
    """
    n_k, h, w = frames.shape
    hi = np.empty(w)
    lo = np.empty(w)
    no_t = np.empty(0, np.int64)
    no_p = np.empty(0, np.int8)
    for r in range(h):
        y = y0 + r
        for c in range(w):
            x = x0 + c
            hi[c] = ref[y, x] + c_pos[y, x]
            lo[c] = ref[y, x] - c_neg[y, x]
        for k in range(n_k):
            t1 = t_us[k]
            t0 = t_prev if k == 0 else t_us[k - 1]
            for c in range(w):
                l1 = np.float64(frames[k, r, c])
                if l1 < hi[c] and l1 > lo[c]:
                    continue  # the common case: no crossing
                if not math.isfinite(l1):
                    return int((k * h + r) * w + c)
                x = x0 + c
                l0 = last[y, x] if k == 0 else np.float64(frames[k - 1, r, c])
                new_ref, new_last, n = _crossings(
                    l0, l1, t0, t1, ref[y, x], last_event[y, x], c_pos[y, x], c_neg[y, x],
                    refractory, no_t, no_p, -1,
                )  # fmt: skip
                ref[y, x] = new_ref
                last_event[y, x] = new_last
                counts[r, c] += n
                hi[c] = new_ref + c_pos[y, x]
                lo[c] = new_ref - c_neg[y, x]
        for c in range(w):
            last[y, x0 + c] = frames[n_k - 1, r, c]
    return -1


@jit
def _fill_pass(
    frames: npt.NDArray[np.floating],
    t_us: FloatArray,
    t_prev: float,
    x0: int,
    y0: int,
    ref0: FloatArray,
    last_event0: FloatArray,
    last0: FloatArray,
    c_pos: FloatArray,
    c_neg: FloatArray,
    refractory: float,
    counts: IntArray,
    row_offsets: IntArray,
    out_x: npt.NDArray[np.uint16],
    out_y: npt.NDArray[np.uint16],
    out_t: IntArray,
    out_p: npt.NDArray[np.int8],
) -> None:
    """Replay the model from the original state for the pixels that emit, writing their events.

    The computation is :func:`_count_pass`'s, step for step, so the counts agree. Region row
    ``r`` writes its events, in loop order, from ``out[row_offsets[r]]`` on (sequential writes;
    the caller sorts).
    """
    n_k, h, w = frames.shape
    ref = np.empty(w)
    last_ev = np.empty(w)
    hi = np.empty(w)
    lo = np.empty(w)
    for r in range(h):
        y = y0 + r
        active = False
        for c in range(w):
            x = x0 + c
            ref[c] = ref0[y, x]
            last_ev[c] = last_event0[y, x]
            if counts[r, c] > 0:
                active = True
                hi[c] = ref[c] + c_pos[y, x]
                lo[c] = ref[c] - c_neg[y, x]
            else:  # emits nothing: skipped by the test below
                hi[c] = np.inf
                lo[c] = -np.inf
        if not active:
            continue
        cursor = row_offsets[r]
        for k in range(n_k):
            t1 = t_us[k]
            t0 = t_prev if k == 0 else t_us[k - 1]
            for c in range(w):
                l1 = np.float64(frames[k, r, c])
                if l1 < hi[c] and l1 > lo[c]:
                    continue
                x = x0 + c
                l0 = last0[y, x] if k == 0 else np.float64(frames[k - 1, r, c])
                new_ref, new_last, n = _crossings(
                    l0, l1, t0, t1, ref[c], last_ev[c], c_pos[y, x], c_neg[y, x],
                    refractory, out_t, out_p, cursor,
                )  # fmt: skip
                for i in range(cursor, cursor + n):
                    out_x[i] = x
                    out_y[i] = y
                cursor += n
                ref[c] = new_ref
                last_ev[c] = new_last
                hi[c] = new_ref + c_pos[y, x]
                lo[c] = new_ref - c_neg[y, x]


@jit
def _radix_sort(keys: IntArray) -> IntArray:
    """Sort non-negative int64 keys (LSD radix sort, 11-bit digits); returns a new array."""
    n = len(keys)
    src = keys.copy()
    dst = np.empty(n, np.int64)
    top = 0
    for i in range(n):
        top = max(top, src[i])
    shift = 0
    while shift < 63 and (top >> shift) > 0:
        count = np.zeros(2049, np.int64)
        for i in range(n):
            count[((src[i] >> shift) & 2047) + 1] += 1
        for d in range(2048):
            count[d + 1] += count[d]
        for i in range(n):
            d = (src[i] >> shift) & 2047
            dst[count[d]] = src[i]
            count[d] += 1
        src, dst = dst, src
        shift += 11
    return src


@jit
def _decode_keys(keys: IntArray, t_base: int, width: int, per_us: int, out: Events) -> None:
    """Unpack sorted keys ``(t - t_base) * per_us + (y * width + x) * 2 + (p > 0)`` into ``out``."""
    for i in range(len(keys)):
        key = keys[i]
        dt, rest = divmod(key, per_us)
        pixel = rest >> 1
        out[i].t = t_base + dt
        out[i].y = pixel // width
        out[i].x = pixel % width
        out[i].p = 1 if rest & 1 else -1


@jit
def _max_abs_diff(first: FloatArray, frames: npt.NDArray[np.floating], out: FloatArray) -> None:
    """``out[k] = max |frames[k] - frames[k - 1]|`` with ``frames[-1] = first``; NaN sticks."""
    n_k, n = frames.shape
    for k in range(n_k):
        m = 0.0
        for i in range(n):
            prev = first[i] if k == 0 else np.float64(frames[k - 1, i])
            d = abs(np.float64(frames[k, i]) - prev)
            if d > m:
                m = d
            elif d != d:  # NaN: the answer is NaN
                m = d
                break
        out[k] = m


# ------------------------------------------------------------------------------ public functions
def _check_config(config: object) -> None:
    if not isinstance(config, EsimConfig):
        raise EsimError(f"config must be an EsimConfig, got {type(config).__name__}")


def _as_frames(log_frames: npt.ArrayLike, name: str) -> npt.NDArray[np.floating]:
    """(K, h, w) C-contiguous float32 or float64 (float32 stays float32: no copy, no widening)."""
    frames = np.asarray(log_frames)
    if frames.dtype not in (np.float32, np.float64):
        if not (np.issubdtype(frames.dtype, np.number) and not np.iscomplexobj(frames)):
            raise EsimError(f"{name}: expected real numbers, got dtype {frames.dtype}")
        frames = frames.astype(np.float64)
    if frames.ndim != 3 or frames.size == 0:
        raise EsimError(f"{name}: expected a non-empty (K, h, w) array, got shape {frames.shape}")
    return np.ascontiguousarray(frames)


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
    _check_config(config)
    if not isinstance(state, EsimState):
        raise EsimError(f"esim_advance: state must be an EsimState, got {type(state).__name__}")
    if not isinstance(rng, np.random.Generator):
        raise EsimError(f"esim_advance: rng must be a numpy Generator, got {type(rng).__name__}")
    frames = _as_frames(log_frames, "esim_advance: log_frames")
    n_k, h, w = frames.shape
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

    reference = state.reference.copy()
    last_log = state.last_log.copy()
    last_event = state.last_event_us.copy()
    counts = np.zeros((h, w), np.int64)
    refractory = config.refractory_us
    bad = _count_pass(
        frames, times, state.t_us, x0, y0, reference, last_log, last_event,
        state.threshold_pos, state.threshold_neg, refractory, counts,
    )  # fmt: skip
    if bad >= 0:
        k, rest = divmod(int(bad), h * w)
        r, c = divmod(rest, w)
        raise EsimError(
            f"esim_advance: log_frames[{k}, {r}, {c}] is {frames[k, r, c]} (must be finite)"
        )
    total = int(counts.sum())
    xs = np.empty(total, np.uint16)
    ys = np.empty(total, np.uint16)
    ts = np.empty(total, np.int64)
    ps = np.empty(total, np.int8)
    if total:
        row_counts = counts.sum(axis=1)
        row_offsets = np.cumsum(row_counts) - row_counts
        _fill_pass(
            frames, times, state.t_us, x0, y0, state.reference, state.last_event_us,
            state.last_log, state.threshold_pos, state.threshold_neg, refractory,
            counts, row_offsets, xs, ys, ts, ps,
        )  # fmt: skip
    noise = _noise_events(state, float(times[-1]), config, rng)
    events = _sorted_events(
        np.concatenate([xs, noise[0]]),
        np.concatenate([ys, noise[1]]),
        np.concatenate([ts, noise[2]]),
        np.concatenate([ps, noise[3]]),
        state.sensor_size,
    )
    new_state = EsimState(
        reference=reference,
        last_log=last_log,
        last_event_us=last_event,
        threshold_pos=state.threshold_pos,
        threshold_neg=state.threshold_neg,
        hot_pixels=state.hot_pixels,
        t_us=float(times[-1]),
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


def _noise_events(
    state: EsimState, t_end: float, config: EsimConfig, rng: np.random.Generator
) -> EventColumns:
    """Background activity over the whole sensor plus hot pixels, over ``(state.t_us, t_end]``.

    A Poisson process of rate ``lambda`` on each of ``n`` pixels is one Poisson process of rate
    ``n * lambda`` whose events fall on uniformly drawn pixels. Returns the columns x, y, t, p.
    """
    width, height = state.sensor_size
    duration_s = (t_end - state.t_us) / US_PER_S
    n_noise = rng.poisson(config.noise_rate_hz * width * height * duration_s)
    pixels = rng.integers(0, width * height, size=n_noise, dtype=np.int64)
    n_hot = rng.poisson(config.hot_pixel_rate_hz * duration_s, size=len(state.hot_pixels))
    pixels = np.concatenate([pixels, np.repeat(state.hot_pixels, n_hot)])
    n = len(pixels)
    # times uniform in (t0, t_end]: t_end minus a uniform draw in [0, duration)
    times = t_end - rng.uniform(0.0, t_end - state.t_us, size=n)
    polarity = rng.integers(0, 2, size=n, dtype=np.int8) * np.int8(2) - np.int8(1)
    return (
        (pixels % width).astype(np.uint16),
        (pixels // width).astype(np.uint16),
        np.floor(times).astype(np.int64),
        polarity.astype(np.int8),
    )


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
        _decode_keys(_radix_sort(keys), t_min, width, per_us, events)
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
    if last.shape != frames.shape[1:]:
        raise EsimError(
            f"max_log_change: last_log_region has shape {last.shape}, frames are {frames.shape[1:]}"
        )
    out = np.empty(frames.shape[0])
    _max_abs_diff(last.ravel(), frames.reshape(frames.shape[0], -1), out)
    return out
