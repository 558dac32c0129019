"""The LIF neuron: hand-computed trajectories, surrogate gradient, fused multi-step vs step loop."""

from __future__ import annotations

import math

import pytest
import torch

import hybridpose.nn.lif as lif_module
from hybridpose.nn.lif import atan_surrogate_grad, lif_multistep, lif_step, spike


def test_lif_step_by_hand() -> None:
    # tau 2, threshold 1: h = v + (x - v) / 2
    x = torch.tensor([0.0, 2.0, 4.0, 1.0])
    v = torch.tensor([0.5, 0.0, 0.5, 1.0])
    s, v_next = lif_step(x, v, 2.0)
    # h = [0.25, 1.0, 2.25, 1.0]: spikes where h >= 1, soft reset subtracts 1
    assert s.tolist() == [0.0, 1.0, 1.0, 1.0]
    assert v_next.tolist() == pytest.approx([0.25, 0.0, 1.25, 0.0])


def test_constant_input_trajectory_by_hand() -> None:
    # x = 1.5, tau = 3, v0 = 0: h1 = 0.5, h2 = 0.8333, h3 = 1.0556 -> spike, v3 = 0.0556,
    # h4 = 0.0556 + (1.5 - 0.0556) / 3 = 0.5370
    v = torch.zeros(1)
    hs, ss = [], []
    for _ in range(4):
        s, v_new = lif_step(torch.tensor([1.5]), v, 3.0)
        hs.append(float(v + (1.5 - v) / 3))
        ss.append(float(s))
        v = v_new
    assert ss == [0.0, 0.0, 1.0, 0.0]
    assert hs == pytest.approx([0.5, 5 / 6, 19 / 18, 1 / 18 + (1.5 - 1 / 18) / 3], rel=1e-6)


def test_atan_surrogate_gradient_by_hand() -> None:
    u = torch.tensor([0.0, 0.5, -1.0], requires_grad=True)
    (grad,) = torch.autograd.grad(spike(u, alpha=2.0).sum(), u)
    expected = [1.0 / (1 + (math.pi * x) ** 2) for x in (0.0, 0.5, -1.0)]  # alpha/2 = 1
    assert grad.tolist() == pytest.approx(expected)
    assert atan_surrogate_grad(torch.tensor(0.0), 4.0).item() == pytest.approx(2.0)


def _step_loop(
    x: torch.Tensor, v0: torch.Tensor, tau: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    v = v0
    spikes = []
    for t in range(x.shape[0]):
        s, v = lif_step(x[t], v, tau)
        spikes.append(s)
    return torch.stack(spikes), v


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("compiled", [True, False])
def test_fused_equals_step_loop_outputs_and_gradients(
    dtype: torch.dtype, compiled: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    if not compiled:  # the torch path used on GPUs, run here on the CPU
        monkeypatch.setattr(lif_module, "_use_numba", lambda t: False)
    g = torch.Generator().manual_seed(0)
    T, shape = 25, (3, 4, 6, 5)
    x = (torch.randn(T, *shape, generator=g, dtype=dtype) * 1.5 + 0.5).requires_grad_()
    v0 = (torch.randn(*shape, generator=g, dtype=dtype) * 0.3).requires_grad_()
    tau = torch.tensor(2.5, dtype=dtype, requires_grad=True)
    w_s = torch.randn(T, *shape, generator=g, dtype=dtype)
    w_v = torch.randn(*shape, generator=g, dtype=dtype)

    s1, v1 = _step_loop(x, v0, tau)
    grads1 = torch.autograd.grad((s1 * w_s).sum() + (v1 * w_v).sum(), (x, v0, tau))
    s2, v2 = lif_multistep(x, v0, tau)
    grads2 = torch.autograd.grad((s2 * w_s).sum() + (v2 * w_v).sum(), (x, v0, tau))

    assert torch.equal(s1, s2) and s1.sum() > 0  # identical spikes, and some of them
    assert torch.allclose(v1, v2, atol=1e-6)
    for a, b in zip(grads1, grads2, strict=True):
        assert torch.allclose(a, b, atol=1e-5, rtol=1e-5)
    assert grads1[2].abs() > 0


def test_fused_with_a_float_tau_and_only_spikes_used() -> None:
    x = torch.randn(10, 7).requires_grad_()
    v0 = torch.zeros(7)
    s, _ = lif_multistep(x, v0, 2.0)
    (grad,) = torch.autograd.grad(s.sum(), x)
    assert grad.shape == x.shape and grad.abs().sum() > 0
    s_ref, _ = _step_loop(x.detach(), v0, torch.tensor(2.0))
    assert torch.equal(s, s_ref)


def test_fused_rejects_mismatched_shapes() -> None:
    with pytest.raises(ValueError, match="x must be"):
        lif_multistep(torch.zeros(4, 3), torch.zeros(2), 2.0)


def test_large_buffers_are_recycled_only_after_their_tensors_die() -> None:
    import gc

    pool = lif_module._BufferPool()
    shape = (4, 1 << 20)  # 16 MB of float32
    a = pool.empty(shape, torch.float32)
    b = pool.empty(shape, torch.float32)
    assert a.data_ptr() != b.data_ptr()  # both alive: never shared
    a_ptr = a.data_ptr()
    view = a[1:]  # a view keeps the buffer alive
    del a
    gc.collect()
    c = pool.empty(shape, torch.float32)
    assert c.data_ptr() not in (a_ptr, b.data_ptr())
    del view
    gc.collect()
    d = pool.empty(shape, torch.float32)
    assert d.data_ptr() == a_ptr  # recycled once nothing views it
    assert pool.empty((3, 1 << 20), torch.float32).data_ptr() != a_ptr  # other sizes: fresh


def test_pooled_passes_stay_exact_across_repeated_calls() -> None:
    # big enough for the pool (>= 16 MB per (T, N) buffer), run twice so the second call
    # runs on recycled buffers holding the first call's data
    g = torch.Generator().manual_seed(3)
    x = torch.randn(40, 110_000, generator=g) * 1.5
    v0 = torch.zeros(110_000)
    tau = torch.tensor(2.5)
    x_ref = x.clone().requires_grad_()
    s_ref, v_ref = _step_loop(x_ref, v0, tau)
    (grad_ref,) = torch.autograd.grad(s_ref.sum(), x_ref)
    for _ in range(2):
        xg = x.clone().requires_grad_()
        s, v = lif_multistep(xg, v0, 2.5)
        (grad,) = torch.autograd.grad(s.sum(), xg)
        assert torch.equal(s, s_ref) and torch.allclose(v, v_ref, atol=1e-6)
        assert torch.allclose(grad, grad_ref, atol=1e-5) and grad.abs().sum() > 0


def test_half_precision_inputs_are_integrated_in_float32() -> None:
    # autocast hands the LIF bfloat16 currents: the membranes must not be summed in bfloat16,
    # where 1 + 1/512 rounds back to 1 (a current of 1/256 with tau 2 would be lost)
    g = torch.Generator().manual_seed(5)
    x = (torch.randn(12, 300, generator=g) * 1.2).bfloat16().requires_grad_()
    v0 = (torch.rand(300, generator=g) * 0.9).bfloat16()
    s, v = lif_multistep(x, v0, 2.0)
    x32 = x.detach().float().requires_grad_()
    s_ref, v_ref = _step_loop(x32, v0.float(), torch.tensor(2.0))
    assert s.dtype == v.dtype == torch.float32
    assert torch.equal(s, s_ref) and torch.allclose(v, v_ref, atol=1e-6)
    (grad,) = torch.autograd.grad(s.sum() + v.sum(), x)
    (grad_ref,) = torch.autograd.grad(s_ref.sum() + v_ref.sum(), x32)
    assert grad.dtype == torch.bfloat16  # back to the input's dtype
    assert torch.allclose(grad.float(), grad_ref.bfloat16().float()) and grad.abs().sum() > 0
    # by hand: the bfloat16 input 0.92 is 236/256 = 0.921875; h = 0.9 + (0.921875 - 0.9) / 2
    # in float32 (in bfloat16, whose step near 0.9 is 1/256, it would round to 0.91015625)
    small = lif_multistep(torch.full((1, 1), 0.92).bfloat16(), torch.full((1,), 0.9), 2.0)[1]
    assert small.dtype == torch.float32
    assert small.item() == pytest.approx((0.9 + 0.921875) / 2, abs=1e-7)
