"""The leaky integrate-and-fire neuron of the paper: one step, and a fused multi-step version.

Discrete LIF with soft reset (Aydin et al. 2024, Sec. 3), per neuron and time step::

    h_t = v_{t-1} + (x_t - v_{t-1}) / tau        (leaky integration of the input current x)
    s_t = H(h_t - v_th)                            (spike when h_t >= v_th)
    v_t = h_t - s_t * v_th                         (soft reset: subtract the threshold)

The Heaviside step has no useful gradient; training uses the ATan surrogate (as in SpikingJelly),
whose derivative is ``alpha / 2 / (1 + (pi / 2 * alpha * (h - v_th))^2)``; ``alpha`` sets its
sharpness. The reset term carries gradient too (it is not detached).

:func:`lif_step` is the pure step function; :func:`lif_multistep` rolls it over a sequence
``(T, ...)`` in one autograd node with a hand-written backward pass (backpropagation through
time): it stores only ``h`` and builds no graph per step, so it is much faster than the step
loop and gives the same outputs and gradients (tests check both within 1e-5). On the CPU both
passes run as compiled loops over all neurons per time step (numba, all cores), keep only a copy
of ``v`` every few steps (the backward pass recomputes ``h`` from it, bitwise the same) and
recycle their large buffers; on other devices they run as a few torch operations per step.
"""

from __future__ import annotations

import math
import threading
import weakref
from typing import Any

import numba
import numpy as np
import numpy.typing as npt
import torch
from torch import Tensor

from hybridpose._jit import jit_parallel

DEFAULT_ALPHA = 2.0
"""Sharpness of the ATan surrogate gradient (SpikingJelly's default)."""

HALF = (torch.float16, torch.bfloat16)
"""Dtypes :func:`lif_multistep` integrates in float32."""


def atan_surrogate_grad(u: Tensor, alpha: float) -> Tensor:
    """d spike / d u of the ATan surrogate at ``u = h - v_th``."""
    return (alpha / 2) / (1 + (math.pi / 2 * alpha * u) ** 2)


class _SpikeATan(torch.autograd.Function):
    """Heaviside forward (``u >= 0``), ATan surrogate backward."""

    @staticmethod
    def forward(ctx: Any, u: Tensor, alpha: float) -> Tensor:
        ctx.save_for_backward(u)
        ctx.alpha = alpha
        return (u >= 0).to(u.dtype)

    @staticmethod
    def backward(ctx: Any, grad: Tensor) -> tuple[Tensor, None]:
        (u,) = ctx.saved_tensors
        return grad * atan_surrogate_grad(u, ctx.alpha), None


def spike(u: Tensor, alpha: float = DEFAULT_ALPHA) -> Tensor:
    """``H(u)`` (1 where ``u >= 0``) with the ATan surrogate gradient."""
    out: Tensor = _SpikeATan.apply(u, alpha)  # type: ignore[no-untyped-call]
    return out


def lif_step(
    x: Tensor,
    v: Tensor,
    tau: float | Tensor,
    v_th: float = 1.0,
    alpha: float = DEFAULT_ALPHA,
) -> tuple[Tensor, Tensor]:
    """One LIF step: returns ``(spikes, v_next)`` (see the module docstring).

    Args:
        x: input current, any shape.
        v: membrane potential after the previous step, the same shape.
        tau: membrane time constant (> 1 for a leak; a scalar tensor may require grad).
        v_th: threshold, also the amount subtracted on a spike.
        alpha: sharpness of the surrogate gradient.
    """
    h = v + (x - v) / tau
    s = spike(h - v_th, alpha)
    return s, h - s * v_th


def lif_multistep(
    x: Tensor,
    v0: Tensor,
    tau: float | Tensor,
    v_th: float = 1.0,
    alpha: float = DEFAULT_ALPHA,
) -> tuple[Tensor, Tensor]:
    """``T`` LIF steps at once: ``x`` (T, ...) and ``v0`` (...) -> ``(spikes (T, ...), v_T)``.

    Equal to looping :func:`lif_step` (outputs and gradients, including the gradient of a
    tensor ``tau``), much faster. ``v0`` is the potential before the first step. Half-precision
    inputs (a bfloat16 ``torch.autocast``'s convolutions) are integrated in float32, whose
    spikes and potentials it returns: a membrane summed in bfloat16 (8 bits of mantissa)
    would round away inputs below ~1/256 of the threshold.
    """
    if x.dim() < 1 or x.shape[1:] != v0.shape:
        raise ValueError(f"x must be (T, *v0.shape); got x {tuple(x.shape)}, v0 {tuple(v0.shape)}")
    if x.dtype in HALF or v0.dtype in HALF:  # autocast's outputs: membranes stay float32
        x, v0 = x.float(), v0.float()
    tau_t = tau if isinstance(tau, Tensor) else torch.tensor(float(tau), dtype=x.dtype)
    if tau_t.numel() != 1:
        raise ValueError("tau must be a scalar")
    spikes, v_last = _LIFMultiStep.apply(  # type: ignore[no-untyped-call]
        x, v0, tau_t.to(x.dtype).reshape(()), v_th, alpha
    )
    return spikes, v_last


CHECKPOINT_EVERY = 8
"""The compiled backward pass recomputes ``h`` from a copy of ``v`` kept every this many steps."""


class _LIFMultiStep(torch.autograd.Function):
    """Fused LIF over time. On the CPU (compiled) it keeps, besides the returned spikes, only a
    copy of ``v`` every :data:`CHECKPOINT_EVERY` steps and recomputes ``h`` chunk by chunk in
    the backward pass, with the same arithmetic, so the result is bitwise the same. Large
    fresh buffers cost more than the arithmetic here (each is page-faulted in on first touch),
    so the pass allocates only what it returns. Elsewhere it saves ``h``.
    """

    @staticmethod
    def forward(
        ctx: Any, x: Tensor, v0: Tensor, tau: Tensor, v_th: float, alpha: float
    ) -> tuple[Tensor, Tensor]:
        t_steps = x.shape[0]
        shape = x.shape
        xf = x.detach().reshape(t_steps, -1).contiguous()
        v = v0.detach().reshape(-1).clone()
        s = _empty_like(xf)
        ctx.v_th, ctx.alpha, ctx.shape = v_th, alpha, shape
        if _use_numba(xf):
            # the same arithmetic as lif_step, in the tensors' precision
            cast = xf.numpy().dtype.type
            chunks = -(-t_steps // CHECKPOINT_EVERY)
            checkpoints = torch.empty((chunks, xf.shape[1]), dtype=xf.dtype)
            _forward_kernel(
                xf.numpy(), v.numpy(), cast(tau), cast(v_th), s.numpy(), checkpoints.numpy(),
                CHECKPOINT_EVERY,
            )  # fmt: skip
            ctx.save_for_backward(xf, checkpoints, tau)
        else:
            h = torch.empty_like(xf)
            for t in range(t_steps):
                torch.add(v, (xf[t] - v) / tau, out=h[t])
                torch.ge(h[t], v_th, out=s[t])
                torch.sub(h[t], s[t], alpha=v_th, out=v)
            ctx.save_for_backward(xf, v0.detach().reshape(-1), h, tau)
        return s.reshape(shape), v.reshape(shape[1:])

    @staticmethod
    def backward(
        ctx: Any, grad_s: Tensor | None, grad_v: Tensor | None
    ) -> tuple[Tensor, Tensor, Tensor | None, None, None]:
        xf = ctx.saved_tensors[0]
        tau = ctx.saved_tensors[-1]
        t_steps = xf.shape[0]
        v_th, alpha = ctx.v_th, ctx.alpha
        if grad_s is None:
            gs = torch.zeros((1, 1), dtype=xf.dtype).expand(t_steps, xf.shape[1])
        else:
            gs = grad_s.to(xf.dtype).reshape(t_steps, -1)
        gv = torch.zeros_like(xf[0]) if grad_v is None else grad_v.reshape(-1).to(xf.dtype).clone()
        # the gradient of a sum (or a mean) is one value per step broadcast over the neurons:
        # the compiled loop reads it from a (T, 1) column instead of a strided view
        broadcast = gs.stride(1) == 0
        if broadcast:
            gs = gs[:, :1].contiguous()
        elif not gs.is_contiguous():
            gs = gs.contiguous()
        gx = _empty_like(xf)
        inv_tau = 1.0 / float(tau)
        want_tau = ctx.needs_input_grad[2]
        if _use_numba(xf):
            checkpoints = ctx.saved_tensors[1]
            cast = xf.numpy().dtype.type
            gtau_parts = np.zeros(t_steps, dtype=np.float64)
            _backward_kernel(
                xf.numpy(), checkpoints.numpy(), CHECKPOINT_EVERY, gs.numpy(), broadcast,
                gv.numpy(), cast(tau), cast(v_th), alpha, gx.numpy(), gtau_parts, want_tau,
            )  # fmt: skip
            gtau = float(gtau_parts.sum())
        else:
            v0, h = ctx.saved_tensors[1], ctx.saved_tensors[2]
            gtau_t = torch.zeros((), dtype=torch.float64, device=xf.device)
            for t in range(t_steps - 1, -1, -1):
                sur = atan_surrogate_grad(h[t] - v_th, alpha)
                gh = gs[t] * sur + gv * (1 - v_th * sur)  # gs[t] broadcasts from (1,)
                gx[t] = gh * inv_tau
                if want_tau:
                    v_prev = v0 if t == 0 else h[t - 1] - v_th * (h[t - 1] >= v_th).to(h.dtype)
                    # d h_t / d tau = -(x_t - v_{t-1}) / tau^2
                    gtau_t -= (gh * (xf[t] - v_prev)).sum().double() * inv_tau**2
                gv = gh * (1 - inv_tau)
            gtau = float(gtau_t)
        shape = ctx.shape
        grad_tau = torch.tensor(gtau, dtype=tau.dtype, device=tau.device) if want_tau else None
        return gx.reshape(shape), gv.reshape(shape[1:]), grad_tau, None, None


POOL_MIN_BYTES = 16 << 20
"""CPU buffers at least this large are recycled through :class:`_BufferPool`."""


class _BufferPool:
    """Recycles large CPU buffers of the fused pass once the tensors built on them are freed.

    A fresh (T, N) buffer costs more to fault in page by page than the LIF arithmetic written
    into it (hundreds of MB, about 0.25 ms per MB here), and glibc returns such buffers to the
    OS as soon as they are freed, so every training step would pay it again. Buffers handed
    out here go back to the pool when the last tensor viewing them is garbage-collected and
    are reused for the next request of the same size (they are always overwritten in full).
    At most ``max_bytes`` are kept idle.
    """

    def __init__(self, max_bytes: int = 4 << 30) -> None:
        self.max_bytes = max_bytes
        self._idle: dict[int, list[npt.NDArray[np.uint8]]] = {}
        self._idle_bytes = 0
        self._lock = threading.Lock()

    def empty(self, shape: tuple[int, ...], dtype: torch.dtype) -> Tensor:
        np_dtype = torch.empty(0, dtype=dtype).numpy().dtype
        nbytes = int(np.prod(shape)) * np_dtype.itemsize
        with self._lock:
            idle = self._idle.get(nbytes)
            raw = idle.pop() if idle else None
            if raw is not None:
                self._idle_bytes -= nbytes
        if raw is None:
            raw = np.empty(nbytes, dtype=np.uint8)
        view = raw.view(np_dtype).reshape(shape)
        weakref.finalize(view, self._release, raw)
        return torch.from_numpy(view)

    def _release(self, raw: npt.NDArray[np.uint8]) -> None:
        with self._lock:
            if self._idle_bytes + raw.nbytes <= self.max_bytes:
                self._idle.setdefault(raw.nbytes, []).append(raw)
                self._idle_bytes += raw.nbytes


_POOL = _BufferPool()


def _empty_like(x: Tensor) -> Tensor:
    """A fresh contiguous buffer like ``x`` (recycled through the pool when large)."""
    if x.device.type == "cpu" and x.numel() * x.element_size() >= POOL_MIN_BYTES:
        return _POOL.empty(tuple(x.shape), x.dtype)
    return torch.empty_like(x, memory_format=torch.contiguous_format)


def _use_numba(x: Tensor) -> bool:
    return x.device.type == "cpu" and x.dtype in (torch.float32, torch.float64)


@jit_parallel
def _forward_kernel(
    x: npt.NDArray[np.floating],
    v: npt.NDArray[np.floating],
    tau: float,
    v_th: float,
    s_out: npt.NDArray[np.floating],
    checkpoints: npt.NDArray[np.floating],
    every: int,
) -> None:
    """Spikes into ``s_out``; ``checkpoints[c]`` = v before step ``c * every``; v updated.

    Time is the outer loop: each step streams through contiguous rows of every array."""
    t_steps, n = x.shape
    for t in range(t_steps):
        if t % every == 0:
            row = t // every
            for i in numba.prange(n):
                checkpoints[row, i] = v[i]
        for i in numba.prange(n):
            h = v[i] + (x[t, i] - v[i]) / tau
            if h >= v_th:
                s_out[t, i] = 1.0
                v[i] = h - v_th
            else:
                s_out[t, i] = 0.0
                v[i] = h


@jit_parallel
def _backward_kernel(
    x: npt.NDArray[np.floating],
    checkpoints: npt.NDArray[np.floating],
    every: int,
    gs: npt.NDArray[np.floating],
    broadcast: bool,
    gv: npt.NDArray[np.floating],
    tau: float,
    v_th: float,
    alpha: float,
    gx: npt.NDArray[np.floating],
    gtau_parts: npt.NDArray[np.float64],
    want_tau: bool,
) -> None:
    """BPTT: each chunk of ``every`` steps is recomputed from its checkpoint into a small
    buffer (the forward arithmetic exactly), then walked backwards step by step.
    ``gs`` is (T, N), or (T, 1) with ``broadcast``. ``gtau_parts[t]`` gets step t's part of
    d loss / d tau."""
    t_steps, n = x.shape
    chunks = checkpoints.shape[0]
    inv_tau = 1.0 / tau
    half_pi_alpha = 0.5 * np.pi * alpha
    h = np.empty((every, n), dtype=x.dtype)
    v_before = np.empty((every if want_tau else 1, n if want_tau else 1), dtype=x.dtype)
    v = np.empty(n, dtype=x.dtype)
    for c in range(chunks - 1, -1, -1):
        t0 = c * every
        t1 = min(t0 + every, t_steps)
        for i in numba.prange(n):
            v[i] = checkpoints[c, i]
        for t in range(t0, t1):
            for i in numba.prange(n):
                if want_tau:
                    v_before[t - t0, i] = v[i]
                hv = v[i] + (x[t, i] - v[i]) / tau
                h[t - t0, i] = hv
                v[i] = hv - v_th if hv >= v_th else hv
        for t in range(t1 - 1, t0 - 1, -1):
            acc = 0.0
            for i in numba.prange(n):
                u = h[t - t0, i] - v_th
                sur = 0.5 * alpha / (1.0 + (half_pi_alpha * u) ** 2)
                g_out = gs[t, 0] if broadcast else gs[t, i]
                gh = g_out * sur + gv[i] * (1.0 - v_th * sur)
                gx[t, i] = gh * inv_tau
                if want_tau:
                    acc += gh * (x[t, i] - v_before[t - t0, i])
                gv[i] = gh * (1.0 - inv_tau)
            gtau_parts[t] = -acc * inv_tau * inv_tau
