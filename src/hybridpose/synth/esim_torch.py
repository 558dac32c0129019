"""The event simulator's per-pixel model in torch operations, for any torch device.

:func:`esim_advance_torch` is :func:`hybridpose.synth.esim.esim_advance` with the region's
pixel model (:func:`hybridpose.synth.esim_kernels.region_pass`: photoreceptor low-pass, leak,
threshold crossings, refractory period) run by torch on ``device``; everything else (the
argument checks, the pixels outside the region, the noise drawn from ``rng``, the timestamp
jitter and the final sort) is esim's own code (:func:`hybridpose.synth.esim._advance` with this
module's region step). Same inputs and ``rng`` state, same events and new state.

Why: the numba kernel runs one pixel after another on the CPU; on a GPU the pixels of a region
run at once. The work is laid out for that:

1. Vectorised over the region's ``P`` pixels (flattened), a Python loop over the ``K`` samples:
   per sample, every pixel's low-pass, leak and crossing test are a few elementwise float64
   operations, in the kernel's order, so that on the CPU every result is the kernel's to the
   bit (IEEE ``+ - * /`` are exactly rounded; ``exp`` is taken from the same library as
   numba's there, see below).
2. One threshold crossing per pixel and interval, the common case: a sampler bounds each
   interval's change to half a threshold (:attr:`~hybridpose.synth.esim.EsimConfig.log_step_limit`).
   Emitted events are recorded densely: a (K, P) float64 buffer of crossing times (NaN: none)
   and the polarities (9 bytes per sample on the device: callers bound K * P, as the
   samplers do). A pixel that, after its one crossing, still stands at or beyond a
   threshold (it needed more than one crossing in that interval), or that got a non-finite
   sample, is flagged, without a host-device synchronisation: nothing in the loop waits for the
   device.
3. After the loop, one synchronisation (the size of the events and flags, compacted on the
   device) and one copy to the host of the region's new state, its events and the flagged
   pixels. The flagged pixels, few, are then recomputed exactly on the CPU by the numba kernel
   itself from the unmodified state (their samples fetched in one more copy: a counting pass
   that gives their new state, then a filling pass that writes their events, as esim does),
   replacing their events and state; a non-finite sample raises esim's error there, naming the
   same sample as esim_advance.

Order of the events: esim's jitter is drawn in the order in which the kernel lists the events
(row, sample, column, crossing); with ``timestamp_jitter_us > 0`` the events are put in that
order. The kernel does not say in which interval a recomputed pixel's event fell, only its
floored time; where that time could belong to two intervals, counting passes over the samples up
to the boundary in question decide (so an event exactly at a sample is placed as the kernel
placed it). Without jitter the order does not matter: the final sort is canonical.

``exp`` (the low-pass only): torch's CPU ``exp`` differs from the C library's, which numba
calls, by one ulp for a few arguments in a thousand; on the CPU this module therefore takes
``exp`` from a compiled numba loop, and the results are the kernel's to the bit (as long as
numba does not vectorise that loop with Intel's SVML, which it does only where SVML is
installed). On other devices ``exp`` is the device's (CUDA's double ``exp`` is within 1 ulp):
there a low-passed pixel's state may differ from the kernel's in the last bit, and rarely an
event with it (a crossing time within rounding of a whole microsecond, or a value within
rounding of a threshold). Without low-pass (``cutoff_hz = 0``) no ``exp`` is taken, and only
exactly rounded operations remain. A division by a constant is by a device tensor, not a Python
number: CUDA divides by a host scalar as a multiplication by its reciprocal.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial

import numpy as np
import numpy.typing as npt
import torch
from torch import Tensor

from hybridpose._jit import jit
from hybridpose.devices import resolve_device
from hybridpose.events import Events
from hybridpose.synth.esim import (
    EsimConfig,
    EsimState,
    EventColumns,
    PixelModel,
    StateCopies,
    _advance,
    _as_frames,
    _check_advance_arguments,
    _check_advance_window,
    _check_frames_shape,
    _check_last_region,
    _event_columns,
    _non_finite_error,
    _not_real_error,
)
from hybridpose.synth.esim_kernels import region_pass

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]

MAX_REDO_COLUMNS = 65535
"""Flagged pixels are recomputed as one row of at most this many pixels per kernel call (the
kernel writes the column as a uint16)."""


def esim_advance_torch(
    state: EsimState,
    log_frames: npt.ArrayLike | Tensor,
    t_us: npt.ArrayLike | Tensor,
    config: EsimConfig,
    rng: np.random.Generator,
    origin: tuple[int, int] = (0, 0),
    device: str | torch.device = "cpu",
) -> tuple[Events, EsimState]:
    """:func:`~hybridpose.synth.esim.esim_advance` with the region's pixels run by torch.

    The contract is esim_advance's (the same checks and error messages, the same events and new
    state for the same inputs and ``rng`` state); see the module docstring for how the work is
    split between ``device`` and the CPU and for what may differ on a device other than the CPU.

    Args:
        state: the sensor after its last sample (not modified).
        log_frames: (K, h, w) log intensities: a numpy array or a torch tensor on any device
            (float32 and float64 are used as they are, other real types as float64).
        t_us: (K,) float sample times in us, strictly increasing, the first after ``state.t_us``.
        config: refractory period, low-pass, leak and noise (the thresholds are the state's).
        rng: random generator for the noise and the jitter (consumed as esim_advance does).
        origin: ``(x0, y0)``, the sensor pixel of ``log_frames[:, 0, 0]``.
        device: the torch device that runs the region's pixel model (checked with
            :func:`hybridpose.devices.resolve_device`).

    Returns:
        ``(events, new_state)``: an :data:`~hybridpose.events.EVENT_DTYPE` array sorted by
        ``(t, y, x, p)`` and the state after sample ``t_us[-1]`` (numpy arrays on the CPU).

    Shape:
        log_frames (K, h, w) with ``x0 + w <= W`` and ``y0 + h <= H``; t_us (K,).

    Raises:
        EsimError: bad shapes, a rectangle outside the sensor, non-finite samples or times,
            times that do not increase (esim_advance's messages).
        DeviceError: ``device`` is not a device of this machine.
    """
    _check_advance_arguments(state, config, rng)
    if isinstance(log_frames, Tensor):
        frames = _tensor_frames(log_frames, "esim_advance: log_frames")
    else:
        frames = torch.from_numpy(_as_frames(log_frames, "esim_advance: log_frames"))
    if isinstance(t_us, Tensor):
        t_us = t_us.detach().cpu().numpy()
    n_k, h, w = frames.shape
    x0, y0, times = _check_advance_window(state, (n_k, h, w), t_us, origin)
    frames = frames.to(resolve_device(device)).contiguous()
    region = _Region(x0, y0, frames, times, ordered=config.timestamp_jitter_us > 0)
    box = (x0, x0 + w, y0, y0 + h)
    result = _advance(state, float(times[-1]), box, config, rng, partial(_region_events, region))
    if isinstance(result, int):
        raise _non_finite_error(result, frames.cpu().numpy())
    return result


def max_log_change_torch(
    last_log_region: npt.ArrayLike | Tensor, log_frames: npt.ArrayLike | Tensor
) -> FloatArray:
    """:func:`~hybridpose.synth.esim.max_log_change` of tensors on any device.

    ``out[0] = max |L_0 - last|`` and ``out[k] = max |L_k - L_{k-1}|`` over the pixels, in
    float64 on the frames' device; NaN where an interval involves a NaN. Equal to
    max_log_change to the bit.

    Args:
        last_log_region: (h, w) log intensity of the previous sample over the same region.
        log_frames: (K, h, w) the next samples (numpy, or a tensor on any device).

    Returns:
        (K,) float64 numpy array.

    Shape:
        last_log_region (h, w); log_frames (K, h, w).

    Raises:
        EsimError: if the shapes do not match (max_log_change's messages).
    """
    name = "max_log_change: log_frames"
    if isinstance(log_frames, Tensor):
        frames = _tensor_frames(log_frames, name)
    else:
        frames = torch.from_numpy(_as_frames(log_frames, name))
    if isinstance(last_log_region, Tensor):
        last = last_log_region.detach().to(device=frames.device, dtype=torch.float64)
    else:
        last = torch.from_numpy(np.ascontiguousarray(last_log_region, dtype=np.float64))
        last = last.to(frames.device)
    _check_last_region(tuple(last.shape), tuple(frames.shape))
    flat = frames.reshape(frames.shape[0], -1).to(torch.float64)
    previous = torch.cat([last.reshape(1, -1), flat[:-1]])
    out: FloatArray = (flat - previous).abs().amax(dim=1).cpu().numpy()
    return out


def _tensor_frames(frames: Tensor, name: str) -> Tensor:
    """A tensor of frames checked as esim's ``_as_frames`` checks an array: float32 and float64
    kept, other real types as float64 (on the tensor's device)."""
    frames = frames.detach()
    if frames.dtype not in (torch.float32, torch.float64):
        if frames.is_complex() or frames.dtype == torch.bool:
            raise _not_real_error(name, str(frames.dtype).removeprefix("torch."))
        frames = frames.to(torch.float64)
    _check_frames_shape(tuple(frames.shape), name)
    return frames


# ------------------------------------------------------------------------------ the region step
@dataclass(frozen=True)
class _Region:
    """A checked region: ``frames`` (K, h, w) on the device, ``times`` (K,) on the host;
    ``ordered``: list the events in the kernel's order (the jitter is drawn in that order)."""

    x0: int
    y0: int
    frames: Tensor
    times: FloatArray
    ordered: bool


@dataclass
class _Pixels:
    """The region's pixels on the device, each (P,) float64: the kernel's row buffers."""

    ref: Tensor
    ev: Tensor
    filt: Tensor
    inp: Tensor
    prev: Tensor
    hi: Tensor
    lo: Tensor
    c_pos: Tensor
    c_neg: Tensor
    leak: Tensor


@dataclass(frozen=True)
class _Model:
    """The scalar parameters of the pixel model and the device's ``exp``."""

    refractory: float
    cutoff_w: float
    eps: float
    exp: Callable[[Tensor], Tensor]
    c275: Tensor


def _region_events(
    region: _Region, state: EsimState, copies: StateCopies, pixel: PixelModel
) -> list[EventColumns] | int:
    """The torch :data:`~hybridpose.synth.esim.RegionEvents` step: the loop on the device, one
    synchronisation, the flagged pixels recomputed by the kernel."""
    n_k, h, w = region.frames.shape
    _, _, _, refractory, cutoff_w, eps = pixel
    device = region.frames.device
    exp = _exp_cpu if device.type == "cpu" else torch.exp
    c275 = torch.tensor(275.0, dtype=torch.float64, device=device)
    model = _Model(refractory, cutoff_w, eps, exp, c275)
    px = _load(state, region, model)
    out_t, out_up, flagged = _run(region, state.t_us, px, model)
    final = torch.stack(
        [
            px.ref - px.leak * (float(region.times[-1]) - state.t_us),
            region.frames[-1].reshape(-1).to(torch.float64),
            px.filt if cutoff_w > 0.0 else region.frames[-1].reshape(-1).to(torch.float64),
            px.ev,
        ]
    )
    block, keys, times, up, redo = _fetch(out_t, out_up, flagged, final, (n_k, h, w))
    window = np.s_[region.y0 : region.y0 + h, region.x0 : region.x0 + w]
    for copy, values in zip(copies, block, strict=True):
        copy[window] = values.reshape(h, w)
    rows, rest = np.divmod(keys, n_k * w)
    columns: EventColumns = (
        (region.x0 + rest % w).astype(np.uint16),
        (region.y0 + rows).astype(np.uint16),
        np.floor(times).astype(np.int64),
        np.where(up, 1, -1).astype(np.int8),
    )
    if len(redo) == 0:
        return [columns]
    redone = _redo(region, state, copies, pixel, redo)
    if isinstance(redone, int):
        return redone
    return [_merge(columns, keys, *redone, ordered=region.ordered)]


def _load(state: EsimState, region: _Region, model: _Model) -> _Pixels:
    """The region's state on the device (the kernel's ``load_row``)."""
    _, h, w = region.frames.shape
    window = np.s_[region.y0 : region.y0 + h, region.x0 : region.x0 + w]
    arrays = (
        state.reference, state.last_event_us, state.filtered, state.last_log,
        state.threshold_pos, state.threshold_neg, state.leak_per_us,
    )  # fmt: skip
    stacked = torch.from_numpy(np.stack([a[window].reshape(-1) for a in arrays]))
    ref, ev, filt, last, c_pos, c_neg, leak = stacked.to(region.frames.device).unbind(0)
    prev = filt if model.cutoff_w > 0.0 else last
    return _Pixels(ref, ev, filt, last, prev, ref + c_pos, ref - c_neg, c_pos, c_neg, leak)


def _run(
    region: _Region, t_prev: float, px: _Pixels, model: _Model
) -> tuple[Tensor, Tensor, Tensor]:
    """The K samples of every pixel, one crossing per interval, no synchronisation.

    Returns ``(out_t, out_up, flagged)``: (K, P) float64 crossing time of each emitted event
    (NaN: none), (K, P) bool its polarity (True: ON), (P,) bool the pixels to recompute.
    ``px`` ends in the state after the last sample (before the leak's final drift).
    """
    n_k = region.frames.shape[0]
    flat = region.frames.reshape(n_k, -1)
    device = flat.device
    out_t = torch.empty((n_k, flat.shape[1]), dtype=torch.float64, device=device)
    out_up = torch.empty((n_k, flat.shape[1]), dtype=torch.bool, device=device)
    flagged = torch.zeros(flat.shape[1], dtype=torch.bool, device=device)
    for k in range(n_k):
        t0 = t_prev if k == 0 else float(region.times[k - 1])
        t1 = float(region.times[k])
        emitted, up, again = _interval(px, flat[k].to(torch.float64), t0, t1, t_prev, model)
        out_t[k] = emitted
        out_up[k] = up
        flagged |= again
    return out_t, out_up, flagged


def _interval(
    px: _Pixels, l1: Tensor, t0: float, t1: float, t_prev: float, model: _Model
) -> tuple[Tensor, Tensor, Tensor]:
    """One interval ``(t0, t1]`` of every pixel (the kernel's inner loop and ``crossings``,
    one crossing); updates ``px``. Returns the emitted event's time (NaN: none), whether the
    crossing is ON, and whether the pixel needs recomputing (a further crossing, or a
    non-finite value)."""
    v1 = l1
    if model.cutoff_w > 0.0:
        v1 = _low_pass(px, l1, t1 - t0, model)
    v1 = v1 + px.leak * (t1 - t_prev)
    up = v1 >= px.hi
    cross = up | (v1 <= px.lo)
    level = torch.where(up, px.hi, px.lo)  # ref + C+ or ref - C-: the new reference
    # crossing_time: the fraction of the interval, clipped to [0, 1] (NaN: 0)
    frac = (level - px.prev) / (v1 - px.prev)
    frac = torch.where(frac >= 0.0, torch.where(frac > 1.0, 1.0, frac), 0.0)
    t = t0 + frac * (t1 - t0)
    emit = cross & ~(t - px.ev < model.refractory)
    px.ev = torch.where(emit, t, px.ev)
    px.ref = torch.where(cross, level, px.ref)
    px.hi = px.ref + px.c_pos
    px.lo = px.ref - px.c_neg
    px.prev = v1
    again = ~((v1 < px.hi) & (v1 > px.lo))
    return torch.where(emit, t, math.nan), up, again


def _low_pass(px: _Pixels, l1: Tensor, dt: float, model: _Model) -> Tensor:
    """The photoreceptor's output at the end of the interval (the kernel's
    ``photoreceptor_rate`` and ``low_pass``, operation for operation); updates ``px``."""
    intensity = torch.clamp(model.exp(l1) - model.eps, min=0.0)
    rate = model.cutoff_w * (255.0 * torch.clamp(intensity, max=1.0) + 20.0) / model.c275
    slope_tau = (l1 - px.inp) / (dt * rate)
    out = l1 - slope_tau + (px.filt - px.inp + slope_tau) * model.exp(-dt * rate)
    px.filt = out
    px.inp = l1
    return out


@jit
def _exp_kernel(x: FloatArray, out: FloatArray) -> None:
    """``out = exp(x)`` elementwise, with the ``exp`` the kernels use."""
    for i in range(x.shape[0]):
        out[i] = math.exp(x[i])


def _exp_cpu(x: Tensor) -> Tensor:
    """``exp`` of a CPU float64 tensor, bit for bit the numba kernels' ``math.exp``."""
    x = x.contiguous()
    out = torch.empty_like(x)
    _exp_kernel(x.numpy(), out.numpy())
    return out


def _fetch(
    out_t: Tensor, out_up: Tensor, flagged: Tensor, final: Tensor, shape: tuple[int, int, int]
) -> tuple[FloatArray, IntArray, FloatArray, npt.NDArray[np.bool_], IntArray]:
    """Compact on the device (one synchronisation), then one copy to the host.

    Returns the (4, P) final state, the unflagged pixels' events, each as its key
    ``(r * K + k) * w + c`` (ascending: the kernel's order), time and polarity (True: ON), and
    the flat indices ``r * w + c`` of the flagged pixels.
    """
    n_k, h, w = shape
    n_slots = n_k * h * w
    keep = ~torch.isnan(out_t) & ~flagged
    by_row = keep.view(n_k, h, w).permute(1, 0, 2).reshape(-1)  # key order
    found = torch.cat([by_row, flagged]).nonzero().squeeze(1)  # the synchronisation
    slot = found.clamp(max=n_slots - 1)
    rows, rest = slot // (n_k * w), slot % (n_k * w)
    source = (rest // w) * (h * w) + rows * w + rest % w  # the slot in (K, P) order
    packed = torch.cat(
        [
            final.reshape(-1),
            found.to(torch.float64),
            out_t.reshape(-1)[source],
            out_up.reshape(-1)[source].to(torch.float64),
        ]
    )
    host = packed.cpu().numpy()
    n_state = final.numel()
    m = (len(host) - n_state) // 3
    index = host[n_state : n_state + m].astype(np.int64)
    events = index < n_slots
    times = host[n_state + m : n_state + 2 * m][events]
    up = host[n_state + 2 * m :][events] > 0.5
    block = host[:n_state].reshape(4, -1)
    return block, index[events], times, up, index[~events] - n_slots


# ------------------------------------------------------------------------------ the CPU redo
def _redo(
    region: _Region, state: EsimState, copies: StateCopies, pixel: PixelModel, flagged: IntArray
) -> tuple[EventColumns, IntArray] | int:
    """The flagged pixels recomputed by the numba kernel, from the unmodified state.

    Writes their new state into ``copies``; returns their events and keys
    ``(r * K + k) * w + c`` (0 for every event when the order does not matter), or the flat
    index of the first non-finite sample in the kernel's order (row, sample, column).
    """
    n_k, h, w = region.frames.shape
    index = torch.from_numpy(flagged).to(region.frames.device)
    samples = region.frames.reshape(n_k, -1)[:, index].cpu().numpy()  # (K, n), frames' dtype
    rows, cols = np.divmod(flagged, w)
    bad = ~np.isfinite(samples)
    if bad.any():
        which = np.flatnonzero(bad.any(axis=0))
        k_first = bad[:, which].argmax(axis=0)
        first = np.lexsort((cols[which], k_first, rows[which]))[0]
        return int((k_first[first] * h + rows[which][first]) * w + cols[which][first])
    parts = []
    for start in range(0, len(flagged), MAX_REDO_COLUMNS):
        part = slice(start, start + MAX_REDO_COLUMNS)
        ys, xs = region.y0 + rows[part], region.x0 + cols[part]
        chunk = np.ascontiguousarray(samples[:, None, part])
        ts, ps, local, ks = _redo_chunk(chunk, ys, xs, region, state, copies, pixel)
        keys = (rows[part][local] * n_k + ks) * w + cols[part][local]
        parts.append(((xs[local], ys[local], ts, ps), keys))
    x, y, t, p = (np.concatenate([part[0][i] for part in parts]) for i in range(4))
    out: EventColumns = (x.astype(np.uint16), y.astype(np.uint16), t, p)
    return out, np.concatenate([part[1] for part in parts])


def _redo_chunk(
    samples: npt.NDArray[np.floating],
    ys: IntArray,
    xs: IntArray,
    region: _Region,
    state: EsimState,
    copies: StateCopies,
    pixel: PixelModel,
) -> tuple[IntArray, npt.NDArray[np.int8], IntArray, IntArray]:
    """Up to :data:`MAX_REDO_COLUMNS` flagged pixels as one (K, 1, n) region of the kernel.

    Returns each event's time, polarity, pixel (index into ``ys``/``xs``) and interval.
    """
    start: StateCopies = (
        _take(state.reference, ys, xs), _take(state.last_log, ys, xs),
        _take(state.filtered, ys, xs), _take(state.last_event_us, ys, xs),
    )  # fmt: skip
    c_pos, c_neg, leak = (_take(a, ys, xs) for a in pixel[:3])
    pseudo: PixelModel = (c_pos, c_neg, leak, pixel[3], pixel[4], pixel[5])
    counts = np.zeros((1, len(ys)), np.int64)
    final = _copied(start)
    _kernel(samples, region.times, state.t_us, final, pseudo, counts, None)
    for copy, values in zip(copies, final, strict=True):
        copy[ys, xs] = values[0]
    out = _event_columns(int(counts.sum()))
    _kernel(samples, region.times, state.t_us, start, pseudo, counts, out)
    local = out[0].astype(np.int64)
    if not region.ordered:
        return out[2], out[3], local, np.zeros(len(local), np.int64)

    def cumulative(j: int) -> IntArray:
        """Each pixel's number of events in the intervals 0..j."""
        prefix = np.zeros((1, len(ys)), np.int64)
        n = j + 1
        _kernel(samples[:n], region.times[:n], state.t_us, _copied(start), pseudo, prefix, None)
        found: IntArray = prefix[0]
        return found

    intervals = _intervals(out[2], local, region.times, state.t_us, cumulative)
    return out[2], out[3], local, intervals


def _take(array: FloatArray, ys: IntArray, xs: IntArray) -> FloatArray:
    """``array[ys, xs]`` as a (1, n) float64 copy."""
    return np.array(array[ys, xs], dtype=np.float64).reshape(1, -1)


def _copied(arrays: StateCopies) -> StateCopies:
    """Copies of the four arrays."""
    return arrays[0].copy(), arrays[1].copy(), arrays[2].copy(), arrays[3].copy()


def _kernel(
    samples: npt.NDArray[np.floating],
    times: FloatArray,
    t_prev: float,
    arrays: StateCopies,
    pixel: PixelModel,
    counts: IntArray,
    out: EventColumns | None,
) -> None:
    """One pass of :func:`~hybridpose.synth.esim_kernels.region_pass` over a (K, 1, n) region
    at the origin: counting (``out`` None; updates ``arrays``) or filling ``out``."""
    c_pos, c_neg, leak, refractory, cutoff_w, eps = pixel
    ref, last, filt, last_event = arrays
    region_pass(
        samples, times, None, t_prev, 0, 0, ref, last, filt, last_event, c_pos, c_neg, leak,
        refractory, cutoff_w, eps, counts, out is not None, np.zeros(1, np.int64),
        np.full(1, -1, np.int64), *(_event_columns(0) if out is None else out),
    )  # fmt: skip


def _intervals(
    floored: IntArray,
    pixel: IntArray,
    times: FloatArray,
    t_prev: float,
    cumulative: Callable[[int], IntArray],
) -> IntArray:
    """The interval of each recomputed event, listed per pixel in time order.

    Interval ``k`` runs from ``t0 = times[k - 1]`` (``t_prev`` for k = 0) to ``t0 + dt`` as the
    kernel computes it, so an event's floored time bounds its interval to a range; where the
    range holds several intervals, ``cumulative(j)`` (each pixel's count of events up to
    interval ``j``) decides: the event's interval is the first ``j`` whose count exceeds the
    event's rank within its pixel.
    """
    starts = np.concatenate([[t_prev], times[:-1]])
    ends = starts + (times - starts)  # t0 + 1.0 * dt: the latest crossing time
    value = floored.astype(np.float64)
    first = np.searchsorted(np.maximum.accumulate(np.floor(ends)), value, side="left")
    last = np.searchsorted(np.floor(starts), value, side="right") - 1
    order = np.argsort(pixel, kind="stable")
    rank = np.empty(len(pixel), np.int64)
    group_start = np.searchsorted(pixel[order], pixel[order], side="left")
    rank[order] = np.arange(len(pixel)) - group_start
    out = first.copy()
    open_ = first < last
    if open_.any():
        bounds = np.unique(
            np.concatenate(
                [np.arange(a, b) for a, b in zip(first[open_], last[open_], strict=True)]
            )
        )
        for j in bounds:
            decided = open_ & (first <= j) & (j < last) & (cumulative(int(j))[pixel] > rank)
            out[decided] = j
            open_ &= ~decided
        out[open_] = last[open_]
    return out


def _merge(
    columns: EventColumns,
    keys: IntArray,
    redone: EventColumns,
    redone_keys: IntArray,
    *,
    ordered: bool,
) -> EventColumns:
    """The device's events and the recomputed ones, in key order when ``ordered`` (stable: a
    pixel's several crossings in one interval keep their order)."""
    merged = tuple(np.concatenate([a, b]) for a, b in zip(columns, redone, strict=True))
    x, y, t, p = merged
    if ordered:
        order = np.argsort(np.concatenate([keys, redone_keys]), kind="stable")
        x, y, t, p = x[order], y[order], t[order], p[order]
    return (x.astype(np.uint16), y.astype(np.uint16), t.astype(np.int64), p.astype(np.int8))


__all__ = ["esim_advance_torch", "max_log_change_torch"]
