"""The event-driven SNN step against the dense PyTorch SNN (the independent reference).

Both compute the same sums in different orders, so currents differ by float32 rounding (about
1e-6): a spike may differ only where the reference's ``h`` lies within that of the threshold.
The teacher-forced tests start both from the reference's state at every step and check every
layer's spikes exactly outside such ties, every membrane and the heatmaps within 1e-4.
"""

from __future__ import annotations

import copy
import dataclasses
from collections.abc import Iterator
from contextlib import contextmanager

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from hybridpose.checkpoint import load_model
from hybridpose.heatmaps import decode_array
from hybridpose.nn.event_driven import (
    BLOCK_LANES,
    LAYERS,
    EventDrivenSNN,
    _scatter,
    _scatter_layout,
    _upsampled_kernel,
)
from hybridpose.nn.event_readout import (
    CANDIDATES,
    decode,
    decode_followed,
    follow,
    new_candidates,
    set_readout,
    update_readout,
)
from hybridpose.nn.snn import SNN, SNNConfig, SNNState, fold_snn_batchnorm
from hybridpose.pretrained import pretrained_dir

pytestmark = pytest.mark.usefixtures("one_thread")  # tests/conftest.py: tiny tensors

TINY = SNNConfig(widths=(4, 8, 8, 16), joints=3, tau=2.5, readout_decay=0.7)
H, W = 24, 32
TOL = 1e-4
TIE = 1e-5  # |h - v_th| below which float32 rounding may flip a spike


def _tiny_snn(config: SNNConfig = TINY, seed: int = 0, quiet: bool = False) -> SNN:
    """Random weights, lively BatchNorm statistics (neurons fire on sparse input), eval mode.

    Some channels' biases reach the threshold (they fire without input, as some trained ones
    do: their layers are tonic); ``quiet``: none do, every layer's leak is lazy.
    """
    torch.manual_seed(seed)
    snn = SNN(config)
    for m in snn.modules():
        if isinstance(m, nn.BatchNorm2d):
            assert m.running_mean is not None and m.running_var is not None
            m.running_mean.uniform_(-0.2, 0.2)
            m.running_var.uniform_(0.1, 0.4)
            m.weight.data.uniform_(0.8, 1.5)
            m.bias.data.uniform_(0.2, 1.2) if not quiet else m.bias.data.uniform_(-0.6, 0.2)
    nn.init.normal_(snn.head.weight, std=0.5)
    assert snn.head.bias is not None
    nn.init.normal_(snn.head.bias, std=0.2)
    return snn.eval()


def _sparse_inputs(steps: int, batch: int, seed: int, height: int = H, width: int = W) -> Tensor:
    """Integer event counts: some bins empty, most with a few events, some bursts."""
    g = torch.Generator().manual_seed(seed)
    x = torch.zeros(steps, batch, 2, height, width)
    for t in range(steps):
        kind = t % 5
        n = 0 if kind == 0 else (40 if kind == 4 else 3)
        for b in range(batch):
            ys = torch.randint(0, height, (n,), generator=g)
            xs = torch.randint(0, width, (n,), generator=g)
            ps = torch.randint(0, 2, (n,), generator=g)
            x[t, b].index_put_((ps, ys, xs), torch.ones(n), accumulate=True)
    return x


def _random_state(snn: SNN, batch: int, seed: int, height: int = H, width: int = W) -> SNNState:
    g = torch.Generator().manual_seed(seed)
    zero = snn.zero_state(batch, height, width)
    layers = [torch.rand(t.shape, generator=g) * 2.0 - 0.5 for t in zero[:-1]]  # -0.5..1.5
    return SNNState._make([*layers, torch.randn(zero.readout.shape, generator=g)])


@dataclasses.dataclass
class _Reference:
    out: Tensor
    state: SNNState
    spikes: dict[str, Tensor]  # (B, C, H, W) per layer
    h: dict[str, Tensor]  # the membrane before the spike decision


@contextmanager
def _recording(snn: SNN) -> Iterator[tuple[dict[str, Tensor], dict[str, Tensor]]]:
    """Record each spiking layer's input current (after BatchNorm) and spikes."""
    currents: dict[str, Tensor] = {}
    spikes: dict[str, Tensor] = {}
    handles = []
    for name, layer in snn.spiking_layers().items():

        def on_bn(_m: nn.Module, _i: tuple[Tensor, ...], z: Tensor, name: str = name) -> None:
            currents[name] = z.detach().clone()

        def on_layer(
            _m: nn.Module, _i: tuple[Tensor, ...], out: tuple[Tensor, Tensor], name: str = name
        ) -> None:
            spikes[name] = out[0][0].detach().clone()  # (T=1, B, ...) -> (B, ...)

        handles.append(layer.bn.register_forward_hook(on_bn))
        handles.append(layer.register_forward_hook(on_layer))
    try:
        yield currents, spikes
    finally:
        for handle in handles:
            handle.remove()


def _reference_step(snn: SNN, x: Tensor, state: SNNState) -> _Reference:
    with torch.inference_mode(), _recording(snn) as (currents, spikes):
        out, next_state = snn.step(x, state)
    h = {}
    for index, (name, layer) in enumerate(snn.spiking_layers().items()):
        v = state[index]
        h[name] = v + (currents[name] - v) / layer.tau  # lif.py's arithmetic
    return _Reference(out, next_state, dict(spikes), h)


@dataclasses.dataclass
class _Tally:
    neurons: int = 0
    spikes: int = 0
    ties: int = 0
    flipped_steps: int = 0
    per_layer_spikes: dict[str, int] = dataclasses.field(default_factory=dict)


def _compare_step(
    engine: EventDrivenSNN, snn: SNN, x: Tensor, state: SNNState, tally: _Tally
) -> SNNState:
    """One teacher-forced step: both from ``state``; spikes, membranes, heatmaps compared.

    Returns:
        the reference's next state.
    """
    ref = _reference_step(snn, x, state)
    engine.set_state(state)
    out = engine.step(x)
    mine = engine.last_spikes()
    v_th = snn.config.v_th
    flipped = False
    for name in LAYERS:
        tie = (ref.h[name] - v_th).abs() < TIE
        differ = mine[name] != ref.spikes[name]
        assert not (differ & ~tie).any(), f"{name}: spikes differ away from the threshold"
        flipped |= bool(differ.any())
        tally.ties += int(tie.sum())
        tally.neurons += tie.numel()
        tally.spikes += int(ref.spikes[name].sum())
        tally.per_layer_spikes[name] = tally.per_layer_spikes.get(name, 0) + int(mine[name].sum())
    if flipped:
        # a spike flipped at a tie changes the layers after it: nothing more to compare
        tally.flipped_steps += 1
        return ref.state
    assert out.shape == ref.out.shape and out.dtype == torch.float32
    torch.testing.assert_close(out, ref.out, rtol=0, atol=TOL)
    for name, got, want in zip(SNNState._fields, engine.state(), ref.state, strict=True):
        torch.testing.assert_close(got, want, rtol=0, atol=TOL, msg=name)
    return ref.state


def test_teacher_forced_steps_match_the_dense_snn() -> None:
    snn = _tiny_snn()
    engine = EventDrivenSNN(snn)
    xs = _sparse_inputs(30, batch=2, seed=1)
    state = _random_state(snn, 2, seed=2)
    tally = _Tally()
    for t in range(xs.shape[0]):
        state = _compare_step(engine, snn, xs[t], state, tally)
    # every layer fired, none saturated: the comparison exercised every scatter
    for name, count in tally.per_layer_spikes.items():
        assert count > 0, name
    assert 0.01 < tally.spikes / tally.neurons < 0.5
    assert tally.ties < 1e-3 * tally.neurons
    assert tally.flipped_steps <= 1


@pytest.mark.parametrize("start", ["zero", "random"])
def test_free_running_matches_the_dense_snn(start: str) -> None:
    snn = _tiny_snn(seed=3)
    engine = EventDrivenSNN(snn)
    state = snn.zero_state(1, H, W) if start == "zero" else _random_state(snn, 1, seed=4)
    engine.set_state(state)
    xs = _sparse_inputs(20, batch=1, seed=5)
    fired = 0
    for t in range(xs.shape[0]):
        with torch.inference_mode():
            want, state = snn.step(xs[t], state)
        got = engine.step(xs[t].numpy())  # numpy input works as well
        fired += sum(int(s.sum()) for s in engine.last_spikes().values())
        torch.testing.assert_close(got, want, rtol=0, atol=TOL)
        for name, a, b in zip(SNNState._fields, engine.state(), state, strict=True):
            torch.testing.assert_close(a, b, rtol=0, atol=TOL, msg=name)
    assert fired > 100


def _hot_state(snn: SNN, batch: int, seed: int) -> SNNState:
    """A random state where a few membranes lie far above the threshold: they stay above it
    after one spike and fire again at the next step without input."""
    state = _random_state(snn, batch, seed)
    g = torch.Generator().manual_seed(seed + 1)
    layers = [t + 3.0 * (torch.rand(t.shape, generator=g) < 0.01) for t in state[:-1]]
    return SNNState._make([*layers, state.readout])


def test_lazy_leak_over_gaps_matches_the_dense_snn() -> None:
    """A network without tonic channels: each step updates only the positions an input
    reaches or that stayed above the threshold; the others' leak is applied when they are next
    reached (in closed form, also past the leak table), or read."""
    snn = _tiny_snn(seed=21, quiet=True)
    engine = EventDrivenSNN(snn)
    assert engine.tonic_layers == ()
    engine._leak = engine._leak[:, :4].copy()  # gaps longer than the table: computed instead
    state = _hot_state(snn, 2, seed=22)
    engine.set_state(state)
    xs = _sparse_inputs(20, batch=2, seed=23)
    xs[5:12] = 0.0  # a gap of 7 empty bins, longer than the table
    fired = updated = hot_steps = 0
    for t in range(xs.shape[0]):
        with torch.inference_mode():
            want, state = snn.step(xs[t], state)
        got = engine.step(xs[t])
        torch.testing.assert_close(got, want, rtol=0, atol=TOL)
        fired += sum(int(s.sum()) for s in engine.last_spikes().values())
        hot_steps += int(engine._n_hot.sum() > 0)
        updated += sum(int(n.sum()) for n in engine.updated_counts().values())
        if t % 4 == 3:  # reading the state brings every membrane up to date
            for name, a, b in zip(SNNState._fields, engine.state(), state, strict=True):
                torch.testing.assert_close(a, b, rtol=0, atol=TOL, msg=name)
    neurons = sum(t[0].numel() for t in state[:-1]) * 2
    assert fired > 100
    assert hot_steps >= 1  # the positions left above the threshold were stepped again
    assert 0 < updated < 0.5 * neurons * xs.shape[0]  # most leaks were deferred
    for name, a, b in zip(SNNState._fields, engine.state(), state, strict=True):
        torch.testing.assert_close(a, b, rtol=0, atol=TOL, msg=name)


def test_a_layer_whose_leak_overshoots_is_stepped_in_full() -> None:
    """A learned tau below 1 makes the leak oscillate around the bias, which may cross the
    threshold without input: that layer is updated every step, and still matches."""
    config = dataclasses.replace(TINY, learn_tau=True)
    snn = _tiny_snn(config, seed=28, quiet=True)
    with torch.no_grad():
        snn.spiking_layers()["up2"].tau.fill_(0.8)
    engine = EventDrivenSNN(snn)
    assert engine.tonic_layers == ("up2",)
    state = _random_state(snn, 1, seed=29)
    engine.set_state(state)
    for x in _sparse_inputs(8, batch=1, seed=30):
        with torch.inference_mode():
            want, state = snn.step(x, state)
        torch.testing.assert_close(engine.step(x), want, rtol=0, atol=TOL)
        assert int(engine.updated_counts()["up2"][0]) == state.up2[0].numel()


def test_without_input_only_hot_positions_are_updated() -> None:
    """Also at the first step after a state is set: the positions it leaves at or above the
    threshold, and no other."""
    snn = _tiny_snn(seed=24, quiet=True)
    engine = EventDrivenSNN(snn)
    engine.set_state(snn.zero_state(1, H, W))
    x = torch.zeros(1, 2, H, W)
    for _ in range(3):
        engine.step(x)
        assert all(int(n[0]) == 0 for n in engine.updated_counts().values())
    state = _random_state(snn, 1, seed=31)  # -0.5..1.5: most positions would be hot
    state = SNNState._make([t * 0.7 for t in state[:-1]] + [state.readout])
    hot = {name: (state[i][0] >= 1.0).any(dim=0) for i, name in enumerate(SNNState._fields[:-1])}
    assert all(bool(h.any()) and not bool(h.all()) for h in hot.values())
    engine.set_state(state)
    want, _ = snn.step(x, state)
    torch.testing.assert_close(engine.step(x), want, rtol=0, atol=TOL)
    for i, (name, n) in enumerate(engine.updated_counts().items()):
        # each row from its first hot position to its last (one span per row)
        spans = [
            int(c[-1] - c[0] + 1) for c in (torch.nonzero(r)[:, 0] for r in hot[name]) if len(c)
        ]
        assert int(n[0]) == sum(spans) * state[i].shape[1] < hot[name].numel() * state[i].shape[1]


def test_decoded_steps_equal_decoding_the_heatmaps() -> None:
    """``step_uv`` decodes inside the engine; ``decode_array`` of ``step``'s heatmaps is the
    reference: equal to the last bit (ties broken alike: the first maximum)."""
    for quiet, config in [
        (False, TINY),
        (True, dataclasses.replace(TINY, joints=17)),
        (False, dataclasses.replace(TINY, readout_decay=1.0)),  # decoded by candidates
    ]:
        snn = _tiny_snn(config, seed=25, quiet=quiet)
        decoded, reference = EventDrivenSNN(snn), EventDrivenSNN(snn)
        state = _random_state(snn, 2, seed=26)
        decoded.set_state(state)
        reference.set_state(state)
        for x in _sparse_inputs(12, batch=2, seed=27):
            uv = decoded.step_uv(x)
            want = decode_array(reference.step(x).numpy())
            assert uv.shape == (2, config.joints, 2) and uv.dtype == np.float32
            np.testing.assert_array_equal(uv, want)
    # ties: the first maximum in row-major order, as numpy's argmax
    maps = np.zeros((3, H * W), dtype=np.float32)
    maps[1, [5 * W + 7, 9 * W + 2, 9 * W + 3]] = 2.0  # a tie in rows 5 and 9: row 5's
    maps[2, [4 * W + 9, 4 * W + 1]] = 1.5  # a tie within a row: column 1
    readout = np.zeros((H * W, 8), dtype=np.float32)
    set_readout(readout, maps)
    uv = np.zeros((3, 2), dtype=np.float32)
    decode(readout, np.zeros(8, np.float32), np.zeros(8, np.int32), H, W, uv)
    np.testing.assert_array_equal(uv, decode_array(maps.reshape(3, H, W)))
    assert uv[:, :].round().tolist() == [[0, 0], [7, 5], [1, 4]]


def test_decoding_by_candidates_equals_the_full_scan_to_the_bit() -> None:
    """At decay 1 the decoding follows candidates instead of scanning the map. Against the
    full scan on the same readout, step after step (values on a coarse grid: ties everywhere;
    a bias whose additions round; new maps as at initialisations), the poses are equal to the
    bit, and most steps decode without a scan."""
    rng = np.random.default_rng(0)
    height, width, joints, padded, channels = 8, 16, 5, 8, 6
    pixels, block = height * width, BLOCK_LANES // padded
    columns = np.zeros((channels, padded), np.float32)
    columns[:, :joints] = rng.integers(-2, 3, (channels, joints)) * 0.125
    bias = np.zeros(padded, np.float32)
    bias[:joints] = rng.normal(0, 1e-3, joints)
    weights = np.concatenate([columns.ravel(), np.tile(bias, block)]).astype(np.float32)
    head = np.array([0, columns.size, padded, block], np.int64)
    readout = np.zeros((pixels, padded), np.float32)
    floor = np.zeros(joints, np.float32)
    cand = np.zeros(CANDIDATES, np.int32)
    is_cand = np.zeros(pixels, np.bool_)
    rstate = np.zeros(2, np.int64)
    best, best_pixel = np.zeros(64, np.float32), np.zeros(64, np.int32)
    want, got = np.zeros((joints, 2), np.float32), np.zeros((joints, 2), np.float32)
    delta = np.zeros(padded, np.float32)
    followed = 0
    for step in range(400):
        if step % 100 == 0:  # a new state, as at an initialisation
            maps = (rng.integers(0, 4, (joints, pixels)) * 0.25).astype(np.float32)
            set_readout(readout, maps)
            new_candidates(readout, floor, cand, is_cand, rstate)
        positions = np.sort(rng.choice(pixels, int(rng.integers(0, 12)), replace=False))
        spikes = np.array(
            [(p // width, p % width, c) for p in positions for c in rng.choice(channels, 2)],
            np.int32,
        ).reshape(-1, 3)
        update_readout(readout, weights, head, 1.0, spikes, 0, len(spikes), width, delta)
        follow(readout, weights, head, spikes, 0, len(spikes), width, floor, cand, is_cand, rstate)
        decode(readout, best.copy(), best_pixel.copy(), height, width, want)
        before = floor.copy()
        decode_followed(readout, best, best_pixel, height, width, got, floor, cand, is_cand, rstate)
        np.testing.assert_array_equal(got, want)
        followed += int(np.array_equal(floor, before))  # no scan: the floors were kept
        assert np.flatnonzero(is_cand).tolist() == cand[: rstate[0]].tolist()  # pixel order
    assert followed > 300


def test_without_delta_readout_the_output_is_the_head() -> None:
    config = dataclasses.replace(TINY, delta_readout=False)
    snn = _tiny_snn(config, seed=6)
    engine = EventDrivenSNN(snn)
    state = _random_state(snn, 2, seed=7)
    engine.set_state(state)
    xs = _sparse_inputs(6, batch=2, seed=8)
    for t in range(xs.shape[0]):
        with torch.inference_mode():
            want, state = snn.step(xs[t], state)
        got = engine.step(xs[t])
        torch.testing.assert_close(got, want, rtol=0, atol=TOL)
        # the readout of a random state is forgotten at once
        torch.testing.assert_close(engine.state().readout, got, rtol=0, atol=0)


def test_borders_and_odd_positions() -> None:
    """Events at the corners, edges and odd rows and columns; a random state makes every layer
    fire along its borders, so each convolution's clipping at every edge is exercised."""
    snn = _tiny_snn(seed=9)
    engine = EventDrivenSNN(snn)
    x = torch.zeros(2, 2, H, W)
    for y, xx in [(0, 0), (0, W - 1), (H - 1, 0), (H - 1, W - 1), (0, 7), (H - 1, 8), (5, 0),
                  (6, W - 1), (1, 1), (H - 2, W - 2), (11, 13)]:  # fmt: skip
        x[0, 0, y, xx] = 1.0
        x[1, 1, y, xx] = 2.0
    state = _random_state(snn, 2, seed=10)
    tally = _Tally()
    _compare_step(engine, snn, x, state, tally)
    assert tally.flipped_steps == 0
    for name, s in engine.last_spikes().items():
        for edge in (s[..., 0, :], s[..., -1, :], s[..., :, 0], s[..., :, -1]):
            assert edge.sum() > 0, name


@pytest.mark.parametrize(
    ("k", "stride", "upsampled"), [(5, 1, False), (5, 2, False), (3, 1, False), (5, 1, True)]
)
def test_one_scattered_input_equals_the_convolution_of_a_one_hot_map(
    k: int, stride: int, upsampled: bool
) -> None:
    """Single inputs everywhere on a small map (odd and even, every border) against conv2d."""
    torch.manual_seed(11)
    c_in, c_out, h, w = 3, 5, 6, 8
    weight = torch.randn(c_out, c_in, k, k, dtype=torch.float64)
    conv_in = (2 * h, 2 * w) if upsampled else (h, w)
    h_out, w_out = conv_in[0] // stride, conv_in[1] // stride
    kernel = weight.numpy()
    k_s, pad, scale = k, k // 2, 1
    if upsampled:
        kernel, k_s, pad, scale = _upsampled_kernel(kernel), k + 1, k // 2 + 1, 2
    weights = np.ascontiguousarray(_scatter_layout(kernel, stride), dtype=np.float32).ravel()
    for c, y, x in [(0, 0, 0), (1, h - 1, w - 1), (2, 0, w - 1), (0, h - 1, 0), (1, 3, 4),
                    (2, 2, 5), (0, 1, w - 2)]:  # fmt: skip
        one_hot = torch.zeros(1, c_in, h, w, dtype=torch.float64)
        one_hot[0, c, y, x] = 2.0
        if upsampled:
            one_hot = F.interpolate(one_hot, scale_factor=2, mode="nearest")
        want = F.conv2d(one_hot, weight, stride=stride, padding=k // 2)[0]  # (C_out, h', w')
        assert want.shape == (c_out, h_out, w_out)
        size = h_out * w_out * c_out
        acc = np.zeros(size + 7, dtype=np.float32)  # 7 more: nothing may land beyond the map
        sp = np.array([[0, 0, 0], [y, x, c]], dtype=np.int32)
        values = np.array([0.0, 2.0], dtype=np.float32)
        rows = np.tile(np.array([w_out, -1], dtype=np.int32), (h_out, 1))  # empty spans
        _scatter(
            acc, rows, c_out, h_out, w_out, weights, 0, k_s, stride, pad, scale, sp, values, 1, 1
        )
        got = torch.from_numpy(acc[:size].reshape(h_out, w_out, c_out)).permute(2, 0, 1)
        assert not acc[size:].any()
        torch.testing.assert_close(got.double(), want, rtol=0, atol=1e-5)
        # each row's span is the first and last column the kernel's footprint reaches
        reach = F.conv2d((one_hot != 0).double(), torch.ones(1, c_in, k, k, dtype=torch.float64),
                         stride=stride, padding=k // 2)[0, 0] > 0  # fmt: skip
        for oy in range(h_out):
            columns = torch.nonzero(reach[oy]).flatten().tolist()
            want_span = [columns[0], columns[-1]] if columns else [w_out, -1]
            assert rows[oy].tolist() == want_span, (c, y, x, oy)


def test_the_callers_snn_is_left_unmodified() -> None:
    snn = _tiny_snn(seed=12)
    before = copy.deepcopy(snn.state_dict())
    EventDrivenSNN(snn)
    after = snn.state_dict()
    assert before.keys() == after.keys()
    for key in before:
        assert torch.equal(before[key], after[key]), key
    assert all(isinstance(layer.bn, nn.BatchNorm2d) for layer in snn.spiking_layers().values())
    assert not snn.training


def test_an_already_folded_snn_gives_the_same_steps() -> None:
    snn = _tiny_snn(seed=16)
    engine = EventDrivenSNN(snn)
    folded = EventDrivenSNN(fold_snn_batchnorm(copy.deepcopy(snn)))
    state = _random_state(snn, 3, seed=17)  # any batch size works
    engine.set_state(state)
    folded.set_state(state)
    for x in _sparse_inputs(5, batch=3, seed=18):
        torch.testing.assert_close(folded.step(x), engine.step(x), rtol=0, atol=1e-5)


def test_state_round_trip_reset_and_errors() -> None:
    snn = _tiny_snn(seed=13)
    engine = EventDrivenSNN(snn)
    with pytest.raises(RuntimeError, match="reset"):
        engine.step(torch.zeros(1, 2, H, W))
    state = _random_state(snn, 2, seed=14)
    engine.set_state(state)
    back = engine.state()
    for name, a, b in zip(SNNState._fields, back, state, strict=True):
        assert a.dtype == b.dtype and torch.equal(a, b), name
    back.enc.fill_(7.0)  # a copy: the engine's state is its own
    assert torch.equal(engine.state().enc, state.enc)
    # a channels-last state (the stream's ANN gives one) is taken as the same values
    engine.set_state(SNNState._make(t.contiguous(memory_format=torch.channels_last)
                                    if t.dim() == 4 else t for t in state))  # fmt: skip
    for name, a, b in zip(SNNState._fields, engine.state(), state, strict=True):
        assert torch.equal(a, b), name
    engine.reset(1, H, W)
    for name, a, b in zip(SNNState._fields, engine.state(), snn.zero_state(1, H, W), strict=True):
        assert a.shape == b.shape and torch.equal(a, b), name
    with pytest.raises(ValueError, match="geometry"):
        engine.step(torch.zeros(2, 2, H, W))
    with pytest.raises(ValueError, match="multiples of 8"):
        engine.reset(1, 20, W)
    bad = state._replace(down2=state.down2[:, :3])
    with pytest.raises(ValueError, match="down2"):
        engine.set_state(bad)


def test_shipped_weights_over_realistic_sparse_input() -> None:
    snn, _ = load_model(pretrained_dir("cpu") / "snn.pt")
    assert isinstance(snn, SNN)
    engine = EventDrivenSNN(snn)
    rng = np.random.default_rng(15)
    height, width = 64, 64
    state = snn.zero_state(1, height, width)
    with torch.inference_mode():  # settle into the network's regime first
        for _ in range(10):
            _, state = snn.step(torch.zeros(1, 2, height, width), state)
    tally = _Tally()
    for t in range(50):
        # a cluster of 3-30 events around a moving centre, as a person gives with 1 ms bins
        n = int(rng.integers(3, 31))
        cy, cx = 32 + 12 * np.sin(t / 9), 32 + 12 * np.cos(t / 13)
        ys = np.clip(np.round(rng.normal(cy, 6, n)), 0, height - 1).astype(int)
        xs = np.clip(np.round(rng.normal(cx, 4, n)), 0, width - 1).astype(int)
        x = np.zeros((1, 2, height, width), dtype=np.float32)
        np.add.at(x[0], (rng.integers(0, 2, n), ys, xs), 1.0)
        state = _compare_step(engine, snn, torch.from_numpy(x), state, tally)
    assert all(count > 0 for count in tally.per_layer_spikes.values())
    assert 0.005 < tally.spikes / tally.neurons < 0.2
    assert tally.ties < 1e-4 * tally.neurons
    assert tally.flipped_steps <= 1
