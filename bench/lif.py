"""Benchmark: our LIF neuron against snnTorch, SpikingJelly and norse, forward and backward.

Run from the repository root (needs the bench extra: ``pip install -e '.[bench]'``)::

    python bench/lif.py [--steps 100] [--shape 8,32,64,64] [--tau 3.0] [--repeats 7] [--seed 0]

One layer of LIF neurons of shape ``--shape`` (default: batch 8, 32 channels, 64x64, about 10^6
neurons: the 32 channels of the SNN's first layer on a 64x64 crop) runs ``--steps`` time steps
on float32 input currents, then the loss ``spikes.sum()`` is backpropagated to the input (BPTT
through the ATan surrogate, or the library's own where it has none). Each repeat draws a fresh
random input and runs every implementation on it, in an order rotated from repeat to repeat so
that a slow moment of a shared machine does not always hit the same one; the forward pass, the
backward pass and their sum are timed separately and the medians reported. One warm-up run per
implementation (numba compiles, caches fill) comes first and is not timed; its spikes are
compared with ours (a sanity check that the same dynamics run: the counts, and the fraction of
(step, neuron) entries where the spike is the same as ours).

Implementations, all with tau, threshold 1, soft reset (subtract the threshold) and v0 = 0:

* ``ours fused``: ``lif_multistep`` (one autograd node, numba loops forward and backward).
* ``ours step loop``: ``lif_step`` in a Python loop under autograd.
* ``snnTorch Leaky``: ``snntorch.Leaky(beta=1 - 1/tau, reset_mechanism="subtract",
  reset_delay=False, spike_grad=atan(alpha))`` called once per step on ``x_t / tau`` (its usual
  usage: the module in a loop). ``reset_delay=False`` is the setting that computes our model
  (tests/test_lif_peers.py has the mapping; they differ only at steps after a potential of
  twice the threshold, rare here).
* ``snnTorch Leaky (default)``: the same with snnTorch's default ``reset_delay=True``, which
  subtracts the threshold one step late (after the next leak): a slightly different model,
  timed for reference.
* ``SpikingJelly LIFNode``: ``LIFNode(tau, decay_input=True, v_reset=None,
  surrogate_function=ATan(alpha), step_mode="m")`` on the whole sequence. SpikingJelly 2.0 has
  no ``backend`` argument any more: on the CPU its multi-step LIF is a registered operator whose
  CPU implementation is a torch loop over the steps recorded by autograd (the torch backend).
* ``norse LIFBoxCell``: ``LIFBoxCell(LIFBoxParameters(tau_mem_inv=1/tau, v_leak=0, v_th=1,
  reset_method=reset_subtract, method="super"), dt=1)`` called once per step (norse's cells are
  used in a loop; its ``Lift`` wrapper is the same loop). The box LIF is norse's LIF without a
  synaptic current, i.e. ours; norse has no ATan, so it backpropagates through its default
  SuperSpike surrogate (about the same cost).

The step loops take the steps with ``x.unbind(0)``, as SpikingJelly does internally (``for x in
x_seq``). Indexing ``x[t]`` instead is a trap when ``x`` requires grad: the backward of each
``x[t]`` is a zero tensor of the full (T, ...) size with one step filled in, all T of them summed
into ``x.grad``, which is quadratic in T (here about 17 s of the backward pass of every loop).

Threads: torch and numba keep their defaults (all cores); the script prints both counts.

Memory: at this size the fused version's arithmetic is the small part of its time. Most of it is
the first touch of its four freshly allocated (T, ...) buffers (h and the spikes forward; the
materialised output gradient and the input gradient backward): glibc hands blocks this large
back to the OS when they are freed, so every iteration page-faults them in again, and on a
virtual machine that is slow and varies a lot from run to run. The step loops work in small
per-step tensors that the allocator recycles and allocate only two or three (T, ...) tensors
(the stacks). To time the arithmetic alone, run with an allocator that keeps freed memory,
e.g. ``GLIBC_TUNABLES=glibc.malloc.mmap_max=0:glibc.malloc.trim_threshold=68719476736`` (or
jemalloc / tcmalloc); the header shows ``GLIBC_TUNABLES``. (PyTorch's ``THP_MEM_ALLOC_ENABLE=1``,
huge pages for large tensors, made every implementation slower on our 2-core machine.)
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import os
import statistics
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from importlib import metadata
from typing import Any

import numba
import torch
from torch import Tensor

from hybridpose.nn.lif import DEFAULT_ALPHA, lif_multistep, lif_step

V_TH = 1.0
ALPHA = DEFAULT_ALPHA
SPEEDUP_OVER_LOOP = 2.5  # the target: fused >= 2.5x our step loop, and >= every peer

Forward = Callable[[Tensor], Tensor]
"""An implementation: input currents (T, ...) -> spikes (T, ...), recording the autograd graph."""


@dataclass
class Result:
    name: str
    forward: Forward
    fwd_s: list[float] = field(default_factory=list)
    bwd_s: list[float] = field(default_factory=list)
    spikes: int = 0
    same_as_ours: float = float("nan")

    def times_ms(self, which: str) -> list[float]:
        """``which``: "fwd", "bwd" or "total"."""
        times = {"fwd": self.fwd_s, "bwd": self.bwd_s}.get(which)
        if times is None:
            times = [f + b for f, b in zip(self.fwd_s, self.bwd_s, strict=True)]
        return [t * 1e3 for t in times]

    def median_ms(self, which: str) -> float:
        return statistics.median(self.times_ms(which))


def ours_fused(tau: float) -> Forward:
    def run(x: Tensor) -> Tensor:
        spikes, _ = lif_multistep(x, torch.zeros(x.shape[1:]), tau, V_TH, ALPHA)
        return spikes

    return run


def ours_step_loop(tau: float) -> Forward:
    def run(x: Tensor) -> Tensor:
        v = torch.zeros(x.shape[1:])
        spikes = []
        for x_t in x.unbind(0):  # not x[t]: see the module docstring
            s, v = lif_step(x_t, v, tau, V_TH, ALPHA)
            spikes.append(s)
        return torch.stack(spikes)

    return run


def snntorch_leaky(tau: float, reset_delay: bool) -> Forward:
    import snntorch
    from snntorch import surrogate

    neuron: Any = snntorch.Leaky(
        beta=1 - 1 / tau,
        threshold=V_TH,
        spike_grad=surrogate.atan(alpha=ALPHA),
        reset_mechanism="subtract",
        reset_delay=reset_delay,
    )

    def run(x: Tensor) -> Tensor:
        current = x / tau  # snnTorch: mem = beta * mem + input, ours: input x / tau
        mem = neuron.reset_mem()
        spikes = []
        for current_t in current.unbind(0):
            spk, mem = neuron(current_t, mem)
            spikes.append(spk)
        return torch.stack(spikes)

    return run


def spikingjelly_lifnode(tau: float) -> Forward:
    from spikingjelly.activation_based import neuron, surrogate

    node: Any = neuron.LIFNode(
        tau=tau,
        decay_input=True,
        v_threshold=V_TH,
        v_reset=None,
        surrogate_function=surrogate.ATan(alpha=ALPHA),
        detach_reset=False,
        step_mode="m",
    )

    def run(x: Tensor) -> Tensor:
        node.reset()  # v back to 0.0 (SpikingJelly's functional.reset_net does this per module)
        spikes: Tensor = node(x)
        return spikes

    return run


def norse_lifbox(tau: float) -> Forward:
    import norse.torch as norse_torch
    from norse.torch.functional.reset import reset_subtract

    params = norse_torch.LIFBoxParameters(
        tau_mem_inv=torch.as_tensor(1 / tau),
        v_leak=torch.as_tensor(0.0),
        v_th=torch.as_tensor(V_TH),
        v_reset=torch.as_tensor(0.0),
        method="super",
        reset_method=reset_subtract,
    )
    cell: Any = norse_torch.LIFBoxCell(params, dt=1.0)

    def run(x: Tensor) -> Tensor:
        state = norse_torch.LIFBoxFeedForwardState(v=torch.zeros(x.shape[1:]))
        spikes = []
        for x_t in x.unbind(0):
            z, state = cell(x_t, state)
            spikes.append(z)
        return torch.stack(spikes)

    return run


def implementations(tau: float) -> list[Result]:
    """Ours, then every peer that is installed (a missing one is reported and skipped)."""
    results = [
        Result("ours fused (lif_multistep)", ours_fused(tau)),
        Result("ours step loop (lif_step)", ours_step_loop(tau)),
    ]
    peers: list[tuple[str, str, Callable[[], Forward]]] = [
        ("snntorch", "snnTorch Leaky", lambda: snntorch_leaky(tau, reset_delay=False)),
        ("snntorch", "snnTorch Leaky (default)*", lambda: snntorch_leaky(tau, reset_delay=True)),
        ("spikingjelly", "SpikingJelly LIFNode (m)", lambda: spikingjelly_lifnode(tau)),
        ("norse", "norse LIFBoxCell loop", lambda: norse_lifbox(tau)),
    ]
    for package, name, make in peers:
        try:
            results.append(Result(name, make()))
        except ImportError as error:
            print(f"skipping {name}: {package} is not installed ({error})", file=sys.stderr)
    return results


def make_input(steps: int, shape: tuple[int, ...], seed: int) -> Tensor:
    """Input currents: normal, mean 0.5, sd 1 (a few percent of neurons spike per step)."""
    g = torch.Generator().manual_seed(seed)
    return torch.randn(steps, *shape, generator=g) + 0.5


def run_once(forward: Forward, x: Tensor) -> tuple[float, float, Tensor]:
    """One forward and backward pass on a fresh leaf of ``x``: times in s, and the spikes."""
    leaf = x.detach().requires_grad_()
    start = time.perf_counter()
    spikes = forward(leaf)
    mid = time.perf_counter()
    torch.autograd.backward(spikes.sum())
    end = time.perf_counter()
    assert leaf.grad is not None and leaf.grad.shape == x.shape
    return mid - start, end - mid, spikes.detach()


def warm_up_and_check(results: list[Result], x: Tensor) -> None:
    """One untimed run each; spike counts and agreement with ours (the first result)."""
    reference: Tensor | None = None
    for result in results:
        _, _, spikes = run_once(result.forward, x)
        fired = spikes != 0
        result.spikes = int(fired.sum())
        if reference is None:
            reference = fired
        result.same_as_ours = float((fired == reference).float().mean())
        del spikes, fired
        gc.collect()


def print_table(results: list[Result], n_values: int) -> None:
    ours = results[0].median_ms("total")
    header = (
        f"{'implementation':<30}{'fwd ms':>8}{'bwd ms':>8}{'total ms':>9}{'min-max':>12}"
        f"{'x ours':>8}{'ns/neuron-step':>16}{'spike rate':>11}{'same spikes':>12}"
    )
    print("\n" + header)
    for r in results:
        total = r.median_ms("total")
        spread = f"{min(r.times_ms('total')):.0f}-{max(r.times_ms('total')):.0f}"
        print(
            f"{r.name:<30}{r.median_ms('fwd'):>8.0f}{r.median_ms('bwd'):>8.0f}{total:>9.0f}"
            f"{spread:>12}{total / ours:>7.2f}x{total * 1e6 / n_values:>16.2f}"
            f"{r.spikes / n_values:>11.2%}{r.same_as_ours:>12.4%}"
        )
    print(
        "x ours: total time relative to ours fused (> 1: slower than ours); same spikes: "
        "fraction of (step, neuron) entries spiking as in ours"
    )


def verdict(results: list[Result]) -> bool:
    ours = results[0].median_ms("total")
    loop = results[1].median_ms("total")
    peers = results[2:]
    ok = loop / ours >= SPEEDUP_OVER_LOOP
    print(
        f"\ntarget 1: ours fused >= {SPEEDUP_OVER_LOOP}x our step loop: "
        f"{loop / ours:.2f}x -> {'met' if ok else 'MISSED'}"
    )
    if peers:
        fastest = min(peers, key=lambda r: r.median_ms("total"))
        met = ours <= fastest.median_ms("total")
        ok = ok and met
        print(
            f"target 2: ours fused at least as fast as the fastest peer ({fastest.name}, "
            f"{fastest.median_ms('total'):.0f} ms): {fastest.median_ms('total') / ours:.2f}x "
            f"-> {'met' if met else 'MISSED'}"
        )
    return ok


def run(
    steps: int, shape: tuple[int, ...], tau: float, repeats: int, seed: int, verbose: bool = False
) -> bool:
    results = implementations(tau)
    n_values = steps * int(torch.tensor(shape).prod())
    versions = [f"torch {torch.__version__}", f"numba {numba.__version__}"]
    for package in ("snntorch", "spikingjelly", "norse"):
        with contextlib.suppress(metadata.PackageNotFoundError):
            versions.append(f"{package} {metadata.version(package)}")
    print(
        f"LIF forward + backward (loss = spikes.sum()), T={steps}, shape {shape} "
        f"({n_values / steps:.0f} neurons), tau {tau}, threshold {V_TH}, soft reset, float32; "
        f"median of {repeats} runs after one warm-up\n{', '.join(versions)}; "
        f"GLIBC_TUNABLES={os.environ.get('GLIBC_TUNABLES', '(unset)')}, "
        f"THP_MEM_ALLOC_ENABLE={os.environ.get('THP_MEM_ALLOC_ENABLE', '(unset)')}"
    )
    x = make_input(steps, shape, seed)
    warm_up_and_check(results, x)
    layer = numba.threading_layer()  # type: ignore[attr-defined]  # known once numba ran
    print(
        f"threads: torch {torch.get_num_threads()} (interop {torch.get_num_interop_threads()}), "
        f"numba {numba.get_num_threads()} (threading layer {layer})"
    )
    for repeat in range(repeats):
        x = make_input(steps, shape, seed + 1 + repeat)  # a fresh input per repeat
        shift = repeat % len(results)
        for result in results[shift:] + results[:shift]:
            fwd, bwd, spikes = run_once(result.forward, x)
            result.fwd_s.append(fwd)
            result.bwd_s.append(bwd)
            del spikes
            gc.collect()
            if verbose:
                print(f"  {result.name:<30}{fwd * 1e3:8.0f}{bwd * 1e3:8.0f} ms", file=sys.stderr)
        print(f"  repeat {repeat + 1}/{repeats} done", file=sys.stderr)
    print_table(results, n_values)
    if any(r.name.endswith("*") for r in results):
        print(
            "*: snnTorch's default reset_delay=True, a slightly different model (bench/README.md)"
        )
    return verdict(results)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--steps", type=int, default=100, help="time steps T")
    parser.add_argument(
        "--shape", default="8,32,64,64", help="neuron tensor shape, e.g. 8,32,64,64"
    )
    parser.add_argument("--tau", type=float, default=3.0, help="membrane time constant (> 1)")
    parser.add_argument("--repeats", type=int, default=7, help="timed runs per implementation")
    parser.add_argument("--seed", type=int, default=0, help="random seed of the inputs")
    parser.add_argument(
        "--verbose", action="store_true", help="print every run's times (to stderr)"
    )
    args = parser.parse_args()
    shape = tuple(int(n) for n in args.shape.split(","))
    if args.steps < 1 or args.repeats < 1 or args.tau <= 1 or min(shape) < 1:
        parser.error("--steps, --repeats and every size must be >= 1, --tau > 1")
    run(args.steps, shape, args.tau, args.repeats, args.seed, args.verbose)


if __name__ == "__main__":
    main()
