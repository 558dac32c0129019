"""The compiled per-pixel kernels of the event simulator (:mod:`hybridpose.synth.esim`).

Each kernel is a numba-compiled loop (:func:`hybridpose._jit.jit`); the model they implement is
documented in :mod:`hybridpose.synth.esim`. Counting and filling passes share one function per
region kind (a ``fill`` flag), so that the events written are exactly the events counted.
"""

from __future__ import annotations

import math

import numpy as np
import numpy.typing as npt

from hybridpose._jit import jit, jit_inline
from hybridpose.events import Events

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]


@jit
def crossings(
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
            t = crossing_time(ref, l0, dl, t0, dt)
            if not t - last_event < refractory:
                if cursor >= 0:
                    out_t[cursor + n] = np.int64(math.floor(t))
                    out_p[cursor + n] = 1
                n += 1
                last_event = t
    elif l1 <= ref - c_neg:
        while l1 <= ref - c_neg:
            ref -= c_neg
            t = crossing_time(ref, l0, dl, t0, dt)
            if not t - last_event < refractory:
                if cursor >= 0:
                    out_t[cursor + n] = np.int64(math.floor(t))
                    out_p[cursor + n] = -1
                n += 1
                last_event = t
    return ref, last_event, n


@jit
def crossing_time(level: float, l0: float, dl: float, t0: float, dt: float) -> float:
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
def photoreceptor_rate(log_value: float, cutoff_w: float, log_eps: float) -> float:
    """The photoreceptor's angular cutoff (rad/us) at a log intensity: v2e's intensity rule."""
    intensity = max(math.exp(log_value) - log_eps, 0.0)
    return cutoff_w * (255.0 * min(intensity, 1.0) + 20.0) / 275.0


@jit
def low_pass(y0: float, in0: float, in1: float, dt: float, w: float) -> float:
    """Exact output of ``dy/dt = w (in - y)`` after ``dt`` for an input ramping ``in0 -> in1``."""
    slope_tau = (in1 - in0) / (dt * w)  # tau * d(in)/dt
    return in1 - slope_tau + (y0 - in0 + slope_tau) * math.exp(-dt * w)


@jit
def region_pass(
    frames: npt.NDArray[np.floating],
    t_us: FloatArray,
    used: npt.NDArray[np.bool_] | None,
    t_prev: float,
    x0: int,
    y0: int,
    ref: FloatArray,
    last: FloatArray,
    filt: FloatArray,
    last_event: FloatArray,
    c_pos: FloatArray,
    c_neg: FloatArray,
    leak: FloatArray,
    refractory: float,
    cutoff_w: float,
    log_eps: float,
    counts: IntArray,
    fill: bool,
    row_offsets: IntArray,
    written: IntArray,
    out_x: npt.NDArray[np.uint16],
    out_y: npt.NDArray[np.uint16],
    out_t: IntArray,
    out_p: npt.NDArray[np.int8],
) -> int:
    """Run the pixel model over the region's samples.

    Per pixel and sample: the photoreceptor low-pass (when ``cutoff_w > 0``), then the leak as
    a ramp ``leak * (t - t_prev)`` added to the signal (equivalent to the reference drifting
    down), then the threshold crossings of the linear interpolation between samples. With
    ``used`` (K, h, w), a pixel takes only its samples marked there (the last one must be):
    its input runs straight from one to the next.

    Counting pass (``fill`` False): updates ``ref``, ``last``, ``filt``, ``last_event`` in
    place (``ref`` ends at ``t_us[-1]``, the leak subtracted) and adds each pixel's number of
    emitted events to ``counts[r, c]``; returns -1, or the flat index (k, r, c) of the first
    non-finite sample. Where ``written[0] >= 0`` it also writes the events, in the filling
    pass's order, from ``out[written[0]]`` on, and sets ``written[0]`` to the end of them, or
    to -1 if they did not all fit in ``out`` (the filling pass is then needed). Filling pass
    (``fill`` True): the same computation from the unmodified state for the pixels with
    ``counts > 0``, writing region row ``r``'s events from ``out[row_offsets[r]]`` on (the
    caller sorts). Rows are the outer loop so that a row's state stays in cache while the
    samples stream past.
    """
    n_k, h, w = frames.shape
    capacity = len(out_t)
    position = written[0]  # the counting pass's write cursor (-1: none)
    hi = np.empty(w)
    lo = np.empty(w)
    ref_r = np.empty(w)
    ev_r = np.empty(w)
    filt_r = np.empty(w)
    in_r = np.empty(w)
    prev_r = np.empty(w)
    t_last = np.empty(w)  # each pixel's last sample taken
    t_end = t_us[n_k - 1]
    for r in range(h):
        y = y0 + r
        cursor = row_offsets[r] if fill else position
        rows = (ref_r, ev_r, filt_r, in_r, prev_r, hi, lo)
        active = load_row(
            y, x0, ref, last, filt, last_event, c_pos, c_neg, cutoff_w, counts[r], fill, *rows
        )
        if not active:
            continue
        t_last[:] = t_prev
        for k in range(n_k):
            t1 = t_us[k]
            for c in range(w):
                if (fill and in_r[c] != in_r[c]) or _left_out(used, k, r, c):
                    continue
                t0 = t_last[c]
                t_last[c] = t1
                x = x0 + c
                l1 = np.float64(frames[k, r, c])
                v1: float = l1
                if cutoff_w > 0.0:
                    wc = photoreceptor_rate(l1, cutoff_w, log_eps)
                    v1 = low_pass(filt_r[c], in_r[c], l1, t1 - t0, wc)
                    filt_r[c] = v1
                    in_r[c] = l1
                v1 += leak[y, x] * (t1 - t_prev)
                if v1 < hi[c] and v1 > lo[c]:
                    prev_r[c] = v1
                    continue  # the common case: no crossing
                if not math.isfinite(l1):
                    return int((k * h + r) * w + c)
                if not fill:  # the counting pass writes while the events fit
                    cursor = _room(cursor, capacity, v1 - ref_r[c], c_pos[y, x], c_neg[y, x])
                new_ref, new_last, n = crossings(
                    prev_r[c], v1, t0, t1, ref_r[c], ev_r[c], c_pos[y, x], c_neg[y, x],
                    refractory, out_t, out_p, cursor,
                )  # fmt: skip
                cursor = _place(out_x, out_y, cursor, n, x, y)
                if not fill:
                    counts[r, c] += n
                prev_r[c] = v1
                ref_r[c] = new_ref
                ev_r[c] = new_last
                hi[c] = new_ref + c_pos[y, x]
                lo[c] = new_ref - c_neg[y, x]
        if not fill:
            position = cursor
            drift = t_end - t_prev
            store_row(
                y,
                x0,
                frames[n_k - 1, r],
                drift,
                cutoff_w > 0.0,
                ref,
                last,
                filt,
                last_event,
                leak,
                *rows,
            )
    written[0] = position
    return -1


@jit_inline
def _room(cursor: int, capacity: int, change: float, c_pos: float, c_neg: float) -> int:
    """The counting pass's write cursor for one interval's crossings: -1 (from then on) where
    they might not fit in ``capacity`` (at most ``|change| / min(C+, C-)`` of them, ``change``
    from the reference, + 1 for rounding)."""
    fits = cursor + abs(change) / min(c_pos, c_neg) + 1.0 <= capacity
    return cursor if cursor >= 0 and fits else -1


@jit_inline
def _place(
    out_x: npt.NDArray[np.uint16],
    out_y: npt.NDArray[np.uint16],
    cursor: int,
    n: int,
    x: int,
    y: int,
) -> int:
    """Set the position of the ``n`` events written at ``cursor`` (none when -1); returns
    where the next ones go."""
    if cursor < 0:
        return cursor
    for i in range(cursor, cursor + n):
        out_x[i] = x
        out_y[i] = y
    return cursor + n


@jit_inline
def _left_out(used: npt.NDArray[np.bool_] | None, k: int, r: int, c: int) -> bool:
    """Whether ``used`` (None: every sample) leaves sample ``k`` of pixel ``(r, c)`` out."""
    return used is not None and not used[k, r, c]


@jit
def store_row(
    y: int,
    x0: int,
    last_frame: npt.NDArray[np.floating],
    drift_us: float,
    low_pass: bool,
    ref: FloatArray,
    last: FloatArray,
    filt: FloatArray,
    last_event: FloatArray,
    leak: FloatArray,
    ref_r: FloatArray,
    ev_r: FloatArray,
    filt_r: FloatArray,
    in_r: FloatArray,
    prev_r: FloatArray,
    hi: FloatArray,
    lo: FloatArray,
) -> None:
    """Write the row buffers back to sensor row ``y`` (the counting pass's final state); the
    reference is moved to the end of the call by ``drift_us`` of leak."""
    for c in range(len(ref_r)):
        x = x0 + c
        ref[y, x] = ref_r[c] - leak[y, x] * drift_us
        last_event[y, x] = ev_r[c]
        last[y, x] = last_frame[c]
        filt[y, x] = filt_r[c] if low_pass else last[y, x]


@jit
def load_row(
    y: int,
    x0: int,
    ref: FloatArray,
    last: FloatArray,
    filt: FloatArray,
    last_event: FloatArray,
    c_pos: FloatArray,
    c_neg: FloatArray,
    cutoff_w: float,
    counts: IntArray,
    fill: bool,
    ref_r: FloatArray,
    ev_r: FloatArray,
    filt_r: FloatArray,
    in_r: FloatArray,
    prev_r: FloatArray,
    hi: FloatArray,
    lo: FloatArray,
) -> bool:
    """Copy sensor row ``y`` from ``x0`` on into the row buffers; returns whether it is active.

    In the filling pass a pixel without events (``counts[c] == 0``) is marked skipped: its
    input is NaN and its thresholds are infinite.
    """
    active = not fill
    for c in range(len(ref_r)):
        x = x0 + c
        ref_r[c] = ref[y, x]
        ev_r[c] = last_event[y, x]
        in_r[c] = last[y, x]
        filt_r[c] = filt[y, x]
        prev_r[c] = filt[y, x] if cutoff_w > 0.0 else last[y, x]
        hi[c] = ref_r[c] + c_pos[y, x]
        lo[c] = ref_r[c] - c_neg[y, x]
        if fill and counts[c] == 0:  # emits nothing: skipped
            hi[c] = np.inf
            lo[c] = -np.inf
            in_r[c] = np.nan
        elif fill:
            active = True
    return active


SETTLED_LOG = 1e-4
"""A pixel outside the rendered region whose photoreceptor output is this close to its (constant)
input is taken as settled: its output is set to the input."""


@jit
def outside_pixel(
    value: float,
    out0: float,
    ref: float,
    last_event: float,
    c_pos: float,
    c_neg: float,
    leak: float,
    t_prev: float,
    t_end: float,
    refractory: float,
    w: float,
    out_t: IntArray,
    out_p: npt.NDArray[np.int8],
    cursor: int,
) -> tuple[float, float, float, int]:
    """One pixel whose input stays at ``value`` over ``(t_prev, t_end]``.

    Its photoreceptor output relaxes from ``out0`` towards ``value`` with the rate ``w``
    (rad/us; exactly exponential), sampled every half time constant until it is settled;
    the leak adds a ramp. Returns ``(ref, last_event, output, n_emitted)`` with ``ref`` at
    ``t_end``; writes events at ``out[cursor:]`` when ``cursor >= 0``.
    """
    n = 0
    t0 = t_prev
    v0 = out0
    output = out0
    while True:
        if w > 0.0 and abs(output - value) > SETTLED_LOG:
            t1 = min(t0 + 0.5 / w, t_end)
            output = value + (out0 - value) * math.exp(-(t1 - t_prev) * w)
        else:  # settled: a straight line to the end
            t1 = t_end
            output = value
        v1 = output + leak * (t1 - t_prev)
        if v1 >= ref + c_pos or v1 <= ref - c_neg:
            ref, last_event, m = crossings(
                v0, v1, t0, t1, ref, last_event, c_pos, c_neg, refractory, out_t, out_p,
                cursor + n if cursor >= 0 else -1,
            )  # fmt: skip
            n += m
        if t1 >= t_end:
            break
        t0, v0 = t1, v1
    return ref - leak * (t_end - t_prev), last_event, output, n


@jit
def outside_pass(
    box: IntArray,
    t_prev: float,
    t_end: float,
    ref: FloatArray,
    last: FloatArray,
    filt: FloatArray,
    last_event: FloatArray,
    c_pos: FloatArray,
    c_neg: FloatArray,
    leak: FloatArray,
    refractory: float,
    cutoff_w: float,
    log_eps: float,
    counts: IntArray,
    fill: bool,
    out_x: npt.NDArray[np.uint16],
    out_y: npt.NDArray[np.uint16],
    out_t: IntArray,
    out_p: npt.NDArray[np.int8],
) -> None:
    """The pixels outside the region ``box = (x0, x1, y0, y1)``: leak and low-pass settling.

    Counting pass: updates the state in place, ``counts[y, x]`` = events. Filling pass: replays
    the pixels with ``counts > 0`` from the unmodified state, writing their events in order.
    """
    height, width = ref.shape
    cursor = 0
    for y in range(height):
        inside_row = box[2] <= y < box[3]
        for x in range(width):
            if inside_row and box[0] <= x < box[1]:
                continue
            if fill and counts[y, x] == 0:
                continue
            if cutoff_w == 0.0 or abs(filt[y, x] - last[y, x]) <= SETTLED_LOG:
                # settled (outside_pixel's straight line to the end, its very arithmetic): a
                # pixel without a crossing needs neither the rate's exp nor the call
                v1 = last[y, x] + leak[y, x] * (t_end - t_prev)
                if v1 < ref[y, x] + c_pos[y, x] and v1 > ref[y, x] - c_neg[y, x]:
                    if not fill:
                        ref[y, x] = ref[y, x] - leak[y, x] * (t_end - t_prev)
                        filt[y, x] = last[y, x]
                    continue
            w = photoreceptor_rate(last[y, x], cutoff_w, log_eps) if cutoff_w > 0.0 else 0.0
            new_ref, new_event, output, n = outside_pixel(
                last[y, x], filt[y, x], ref[y, x], last_event[y, x], c_pos[y, x], c_neg[y, x],
                leak[y, x], t_prev, t_end, refractory, w, out_t, out_p, cursor if fill else -1,
            )  # fmt: skip
            if fill:
                for i in range(cursor, cursor + n):
                    out_x[i] = x
                    out_y[i] = y
                cursor += n
            else:
                counts[y, x] = n
                ref[y, x] = new_ref
                last_event[y, x] = new_event
                filt[y, x] = output


@jit
def radix_sort(keys: IntArray) -> IntArray:
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
def decode_keys(keys: IntArray, t_base: int, width: int, per_us: int, out: Events) -> None:
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
def max_abs_diff(first: FloatArray, frames: npt.NDArray[np.floating], out: FloatArray) -> None:
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
