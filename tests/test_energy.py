"""Operation counts (by hand, brute force, neurobench), the energy model and model_info."""

from __future__ import annotations

import copy
import dataclasses
import math

import numpy as np
import pytest
import torch
from torch import nn

from hybridpose.energy import (
    EnergyModel,
    LayerCount,
    OpCounts,
    OperationCounter,
    Target,
    ann_targets,
    count_ann,
    count_hybrid,
    count_snn,
    dense_macs,
    model_info,
    power_ann,
    power_hybrid,
    power_snn,
    scenario_power,
    snn_targets,
    state_head_targets,
    synaptic_operations,
)
from hybridpose.nn.presets import preset
from hybridpose.nn.snn import SNN, SpikingConv, fan_out

CPU = preset("cpu")


def _spike(h: int, w: int, y: int, x: int, value: float = 1.0) -> torch.Tensor:
    t = torch.zeros(1, 1, h, w)
    t[0, 0, y, x] = value
    return t


# --- synaptic operations by hand ---------------------------------------------------------------


def test_a_corner_spike_reaches_four_outputs_per_channel() -> None:
    conv = nn.Conv2d(1, 2, 3, padding=1)
    # the 3x3 windows centred on (0,0), (0,1), (1,0), (1,1) hold the corner: 4 x 2 channels
    assert synaptic_operations(conv, _spike(4, 4, 0, 0)) == 8
    assert synaptic_operations(conv, _spike(4, 4, 3, 3)) == 8
    # an edge pixel: 2 x 3 windows; an inner one: all 9
    assert synaptic_operations(conv, _spike(4, 4, 0, 1)) == 12
    assert synaptic_operations(conv, _spike(4, 4, 1, 1)) == 18
    # an input value k counts k times (event counts, residual spike sums); signs do not matter
    assert synaptic_operations(conv, _spike(4, 4, 0, 0, 3.0)) == 24
    assert synaptic_operations(conv, _spike(4, 4, 1, 1, -1.0)) == 18
    assert synaptic_operations(conv, torch.zeros(1, 1, 4, 4)) == 0


def test_stride_two_by_hand() -> None:
    # 4x4 input, 3x3 kernel, padding 1, stride 2: a 2x2 output whose windows are centred on
    # (0,0), (0,2), (2,0), (2,2), i.e. rows/cols -1..1 and 1..3
    conv = nn.Conv2d(1, 2, 3, stride=2, padding=1)
    assert synaptic_operations(conv, _spike(4, 4, 0, 0)) == 1 * 2  # only the window at (0,0)
    assert synaptic_operations(conv, _spike(4, 4, 1, 1)) == 4 * 2  # all four windows
    assert synaptic_operations(conv, _spike(4, 4, 3, 3)) == 1 * 2  # only the window at (2,2)
    assert synaptic_operations(conv, _spike(4, 4, 0, 1)) == 2 * 2  # windows (0,0) and (0,2)
    # no padding, stride 2 on 5x5: windows rows/cols 0..2 and 2..4; the centre is in all four
    conv = nn.Conv2d(1, 3, 3, stride=2)
    assert synaptic_operations(conv, _spike(5, 5, 2, 2)) == 4 * 3
    assert synaptic_operations(conv, _spike(5, 5, 0, 4)) == 1 * 3
    assert synaptic_operations(conv, _spike(5, 5, 1, 3)) == 1 * 3


def test_channels_and_groups_by_hand() -> None:
    # two input channels, 5 output channels: every input spike reaches all 5
    conv = nn.Conv2d(2, 5, 3, padding=1)
    x = torch.zeros(1, 2, 4, 4)
    x[0, 0, 1, 1] = 1.0  # 9 windows
    x[0, 1, 0, 0] = 2.0  # 4 windows, twice
    assert synaptic_operations(conv, x) == (9 + 2 * 4) * 5
    # groups=2: channel 0 feeds only output channels 0..2, channel 1 only 3..5
    grouped = nn.Conv2d(2, 6, 3, padding=1, groups=2)
    assert synaptic_operations(grouped, x) == (9 + 2 * 4) * 3


def test_linear_synops_by_hand() -> None:
    layer = nn.Linear(5, 3)
    x = torch.tensor([[0.0, 2.0, 0.0, 1.0, 0.0], [1.0, 0.0, 0.0, 0.0, 0.0]])
    assert synaptic_operations(layer, x) == (2 + 1 + 1) * 3
    assert dense_macs(layer, (2, 3)) == 2 * 5 * 3


def test_dense_macs_by_hand() -> None:
    conv = nn.Conv2d(3, 4, 3, stride=2, padding=1)
    out = conv(torch.zeros(2, 3, 8, 8))
    assert tuple(out.shape) == (2, 4, 4, 4)
    assert dense_macs(conv, out.shape) == 2 * 4 * 4 * 4 * 3 * 3 * 3  # 3456
    grouped = nn.Conv2d(4, 6, (3, 5), groups=2)
    out = grouped(torch.zeros(1, 4, 5, 7))
    assert tuple(out.shape) == (1, 6, 3, 3)
    assert dense_macs(grouped, out.shape) == 1 * 6 * 3 * 3 * 2 * 3 * 5  # 1620
    with pytest.raises(ValueError, match="Conv2d, Linear only"):
        dense_macs(nn.Conv1d(1, 1, 3), (1, 1, 4))


def test_synaptic_inputs_must_be_integers_and_padding_zeros() -> None:
    conv = nn.Conv2d(1, 2, 3, padding=1)
    with pytest.raises(ValueError, match="non-integer"):
        synaptic_operations(conv, _spike(4, 4, 1, 1, 0.5))
    with pytest.raises(ValueError, match="NaN"):
        synaptic_operations(conv, _spike(4, 4, 1, 1, math.nan))
    with pytest.raises(ValueError, match="zero padding"):
        synaptic_operations(
            nn.Conv2d(1, 2, 3, padding=1, padding_mode="reflect"), _spike(4, 4, 0, 0)
        )
    with pytest.raises(ValueError, match="input channels"):
        synaptic_operations(conv, torch.zeros(1, 3, 4, 4))


# --- brute force ---------------------------------------------------------------------------------


def brute_force_synops(conv: nn.Conv2d, x: torch.Tensor) -> int:
    """Explicit loops over samples, output channels, output positions, input channels, taps."""
    xs = x.numpy().astype(np.int64)
    n, c_in, h, w = xs.shape
    (sh, sw), (dh, dw), (kh, kw) = conv.stride, conv.dilation, conv.kernel_size
    assert not isinstance(conv.padding, str)
    ph, pw = conv.padding
    h_out = (h + 2 * ph - dh * (kh - 1) - 1) // sh + 1
    w_out = (w + 2 * pw - dw * (kw - 1) - 1) // sw + 1
    assert conv(x).shape[-2:] == (h_out, w_out)
    cin_g, cout_g = c_in // conv.groups, conv.out_channels // conv.groups
    total = 0
    for b in range(n):
        for co in range(conv.out_channels):
            group = co // cout_g
            for oy in range(h_out):
                for ox in range(w_out):
                    for ci in range(group * cin_g, (group + 1) * cin_g):
                        for ky in range(kh):
                            for kx in range(kw):
                                iy, ix = oy * sh - ph + ky * dh, ox * sw - pw + kx * dw
                                if 0 <= iy < h and 0 <= ix < w:
                                    total += abs(int(xs[b, ci, iy, ix]))
    return total


@pytest.mark.parametrize(
    ("c_in", "c_out", "kernel", "stride", "padding", "dilation", "groups"),
    [
        (2, 3, 3, 1, 1, 1, 1),
        (4, 4, 5, 2, 2, 1, 1),
        (3, 2, (3, 5), (2, 1), (1, 2), 1, 1),
        (4, 6, 3, 1, 2, 2, 2),
        (2, 3, 1, 1, 0, 1, 1),
        (3, 3, 4, 3, 3, 1, 3),
    ],
)
def test_fast_count_equals_brute_force(
    c_in: int,
    c_out: int,
    kernel: int | tuple[int, int],
    stride: int | tuple[int, int],
    padding: int | tuple[int, int],
    dilation: int,
    groups: int,
) -> None:
    conv = nn.Conv2d(c_in, c_out, kernel, stride, padding, dilation, groups)
    g = torch.Generator().manual_seed(c_in * 100 + c_out)
    counts = torch.randint(-2, 4, (2, c_in, 7, 6), generator=g).float()
    keep = torch.rand(counts.shape, generator=g) < 0.3  # sparse, with counts up to 3 and -2
    x = counts * keep
    assert synaptic_operations(conv, x) == brute_force_synops(conv, x)
    ones = torch.ones(1, c_in, 7, 6)
    assert synaptic_operations(conv, ones) == brute_force_synops(conv, ones)


# --- the counter ---------------------------------------------------------------------------------


def test_operation_counter_records_and_totals() -> None:
    spiking = nn.Conv2d(1, 2, 3, padding=1, bias=False)
    dense = nn.Conv2d(2, 3, 1)
    targets = {"spiking": Target(spiking, "synaptic", neuron=True), "dense": Target(dense, "dense")}
    x = _spike(4, 4, 0, 0) + _spike(4, 4, 1, 1)  # 8 + 18 synops
    with OperationCounter(targets) as counter:
        for _ in range(2):
            dense(spiking(x))
    spk, dns = counter.layers
    assert (spk.name, spk.kind, spk.calls) == ("spiking", "synaptic", 2)
    assert spk.synops == 2 * (8 + 18) and spk.macs == 0
    assert spk.membrane_updates == 2 * 2 * 16
    assert spk.dense_macs == 2 * (2 * 16 * 9)
    assert spk.input_elements == 32 and spk.input_nonzero == 4
    assert spk.input_nonzero_fraction == pytest.approx(2 / 16)
    assert (dns.kind, dns.macs, dns.synops, dns.membrane_updates) == ("dense", 2 * 3 * 16 * 2, 0, 0)
    totals = counter.totals
    assert totals.synops == spk.synops and totals.macs == dns.macs
    assert totals.dense_macs == spk.dense_macs + dns.dense_macs
    # hooks are gone after the block
    dense(spiking(x))
    assert counter.layers[0].calls == 2
    with pytest.raises(ValueError, match="non-integer"), OperationCounter(targets):
        spiking(x * 0.5)
    with pytest.raises(ValueError, match="listed twice"):
        OperationCounter({"a": Target(dense, "dense"), "b": Target(dense, "synaptic")})
    with pytest.raises(ValueError, match="Conv2d, Linear only"):
        Target(nn.ReLU(), "dense")


# --- neurobench ----------------------------------------------------------------------------------
# neurobench's SynapticOperations (neurobench.metrics.utils.layers.single_layer_MACs) copies the
# layer with every nonzero weight set to 1 and the bias set to 0, sets every nonzero input to 1,
# runs the layer and sums the output: the number of (nonzero input, nonzero weight) pairs that
# meet in some output, zero padding reaching nothing (like ours). An input whose values all lie
# in {-1, 0, 1} is "spiking" and its count is reported as Effective_ACs; any other input as
# Effective_MACs, each nonzero input counting ONCE whatever its value. "Dense" is the same run
# with all inputs and weights set to 1, so it leaves out the padding taps, unlike the standard
# dense count (our dense_macs). The mapping, for a layer without zero weights:
#   binary (or +-1) input x:    our synops(x)        == neurobench Effective_ACs(x)
#   integer input x:            our synops(x)        == sum_k neurobench([|x| >= k]), k = 1, 2, ...
#                               our synops(x != 0)   == neurobench Effective_MACs(x)
#   any input shape:            our synops(ones)     == neurobench Dense;  dense_macs >= Dense
# Zero weights: neurobench skips them, we do not (a dense synapse array spends the accumulate
# whatever the weight); our layers have none. neurobench sums in the layer's dtype, so the
# comparisons run in float64, where its sums are exact too.


def _neurobench_ops(layer: nn.Module, x: torch.Tensor, total: bool = False) -> tuple[int, bool]:
    """neurobench's per-layer count (operations, spiking) of ``layer`` on ``x``, in float64."""
    from neurobench.metrics.utils.layers import (  # type: ignore[import-untyped]
        single_layer_MACs,
    )

    ops, spiking = single_layer_MACs(x.double(), copy.deepcopy(layer).double(), total=total)
    return int(ops), bool(spiking)


NEUROBENCH_LAYERS = [
    nn.Conv2d(2, 3, 3, padding=1),
    nn.Conv2d(4, 4, 5, stride=2, padding=2),
    nn.Conv2d(3, 2, (3, 5), stride=(2, 1), padding=(1, 2)),
    nn.Conv2d(4, 6, 3, padding=2, dilation=2, groups=2),
    nn.Conv2d(3, 3, 4, stride=3),
    nn.Conv2d(2, 3, 1),
    nn.Linear(6, 4),
]


@pytest.mark.parametrize("layer", NEUROBENCH_LAYERS, ids=lambda m: repr(m))
def test_neurobench_agrees_on_single_layers(layer: nn.Module) -> None:
    assert isinstance(layer, nn.Conv2d | nn.Linear) and bool((layer.weight != 0).all())
    shape = (3, 6) if isinstance(layer, nn.Linear) else (2, layer.in_channels, 9, 8)
    g = torch.Generator().manual_seed(7)
    keep = torch.rand(shape, generator=g) < 0.3
    spikes = keep.double()
    signed = spikes * torch.where(torch.rand(shape, generator=g) < 0.5, -1.0, 1.0)
    counts = torch.randint(1, 4, shape, generator=g).double() * keep
    assert int(counts.max()) == 3
    # binary and +-1 inputs: neurobench's Effective_ACs equal our synops
    for x in (spikes, signed):
        assert _neurobench_ops(layer, x) == (synaptic_operations(layer, x), True)
    # integer counts: neurobench calls them MACs and counts each nonzero input once; ours count
    # k times, i.e. the sum of neurobench's counts of the level sets |x| >= k
    nb_counts, spiking = _neurobench_ops(layer, counts)
    assert not spiking
    assert nb_counts == synaptic_operations(layer, (counts != 0).double())
    levels = sum(_neurobench_ops(layer, (counts.abs() >= k).double())[0] for k in (1, 2, 3))
    assert synaptic_operations(layer, counts) == levels > nb_counts
    # neurobench's Dense: every input and weight set to 1, padding taps left out
    nb_dense, _ = _neurobench_ops(layer, spikes, total=True)
    assert nb_dense == synaptic_operations(layer, torch.ones(shape))
    out_shape = layer(spikes.float()).shape
    padded = isinstance(layer, nn.Conv2d) and layer.padding not in ((0, 0), "valid")
    assert (
        (dense_macs(layer, out_shape) > nb_dense)
        if padded
        else (dense_macs(layer, out_shape) == nb_dense)
    )
    # zero weights: neurobench skips them, we count them
    pruned = copy.deepcopy(layer)
    with torch.no_grad():
        pruned.weight[0].zero_()
    assert _neurobench_ops(pruned, spikes)[0] < synaptic_operations(pruned, spikes)


class _SNNRun(nn.Module):
    """The SNN from the empty state, as neurobench's TorchModel expects: bins -> heatmaps."""

    def __init__(self, snn: SNN) -> None:
        super().__init__()
        self.snn = snn

    def forward(self, bins: torch.Tensor) -> torch.Tensor:
        _, b, _, h, w = bins.shape
        out: torch.Tensor = self.snn(bins, self.snn.zero_state(b, h, w, dtype=bins.dtype))[0]
        return out


def test_neurobench_synaptic_operations_metric_on_the_snn() -> None:
    from neurobench.metrics.workload import SynapticOperations  # type: ignore[import-untyped]
    from neurobench.models import TorchModel  # type: ignore[import-untyped]

    snn = _snn().double()
    bins = _bins(3, 1).double()
    ours = count_snn(snn, bins)
    names = {id(t.module): name for name, t in snn_targets(snn).items()}
    model = TorchModel(_SNNRun(snn))
    model.register_hooks()
    try:
        with torch.no_grad():
            preds = model(bins)
        # neurobench divides by data[0].size(0), here the 3 time steps
        result = SynapticOperations()(model, preds, (bins, torch.zeros(0)))
        inputs = {names[id(hook.layer)]: hook.inputs[0][0] for hook in model.connection_hooks}
    finally:
        model.cleanup_hooks()
    assert set(inputs) == {layer.name for layer in ours}
    # layers whose inputs are all 0 or 1 are "spiking" for neurobench: their synops are its ACs
    spiking = {la.name for la in ours if la.input_abs_sum == la.input_nonzero}
    assert set(inputs) - spiking == {"enc.conv", "up1.conv"}  # event counts, residual sums
    assert result["Effective_ACs"] * 3 == pytest.approx(
        sum(ours.layer(n).synops for n in spiking), rel=1e-12
    )
    # the others are its MACs, each nonzero input counted once
    mac_layers = set(inputs) - spiking
    macs = {n: synaptic_operations(snn.get_submodule(n), inputs[n] != 0) for n in mac_layers}
    assert result["Effective_MACs"] * 3 == pytest.approx(sum(macs.values()), rel=1e-12)
    for n in mac_layers:
        assert ours.layer(n).synops > macs[n]  # counts above 1 are accumulated k times by us
    dense = sum(
        synaptic_operations(snn.get_submodule(n), torch.ones_like(x)) for n, x in inputs.items()
    )
    assert result["Dense"] * 3 == pytest.approx(dense, rel=1e-12)
    assert ours.totals.dense_macs > dense  # the standard count includes the padding taps


# --- the energy model --------------------------------------------------------------------------


def _counts() -> OpCounts:
    return OpCounts(
        (
            LayerCount("a", "dense", calls=2, macs=1000, dense_macs=1000),
            LayerCount("b", "synaptic", calls=2, synops=2000, membrane_updates=300, dense_macs=9),
        ),
        samples=2,
    )


def test_energy_arithmetic_by_hand() -> None:
    energy = EnergyModel().energy_pj(_counts())
    assert energy.layers["a"] == pytest.approx(1000 * 4.6)
    assert energy.layers["b"] == pytest.approx(2000 * 0.9 + 300 * 4.6)
    assert energy.total_pj == pytest.approx(4600 + 1800 + 1380)
    assert energy.per_inference_pj == pytest.approx((4600 + 1800 + 1380) / 2)
    custom = EnergyModel(e_mac_pj=1.0, e_ac_pj=0.5, e_membrane_pj=0.25).energy_pj(_counts())
    assert dict(custom.layers) == pytest.approx({"a": 1000.0, "b": 1000.0 + 75.0})
    # 7780 pJ per 2 inferences at 50 Hz: 3890e-12 J * 50 / s
    assert EnergyModel().power_w(_counts(), 50.0) == pytest.approx(3890e-12 * 50)
    with pytest.raises(ValueError, match="e_ac_pj"):
        EnergyModel(e_ac_pj=-1.0)
    with pytest.raises(ValueError, match="rate_hz"):
        EnergyModel().power_w(_counts(), 0.0)


def test_four_scenarios_by_hand() -> None:
    model = EnergyModel()
    ann = OpCounts((LayerCount("ann", "dense", macs=10**9),))  # 4.6 mJ per frame
    heads = OpCounts((LayerCount("heads", "dense", macs=10**8),))  # 0.46 mJ per frame
    # 10 SNN steps: per step 1e8 synops and 1e6 membrane updates = 90 uJ + 4.6 uJ
    snn = OpCounts(
        (LayerCount("snn", "synaptic", synops=10**9, membrane_updates=10**7),), samples=10
    )
    alone = OpCounts((LayerCount("snn", "synaptic", synops=2 * 10**8),), samples=1)  # 180 uJ
    assert power_ann(model, ann, 100.0) == pytest.approx(0.46)
    assert power_snn(model, snn, 100.0) == pytest.approx(94.6e-6 * 100)
    hybrid = power_hybrid(model, ann, heads, snn, 10.0, 100.0)
    assert hybrid == pytest.approx((4.6e-3 + 0.46e-3) * 10 + 94.6e-6 * 100)
    # energy per ANN period (one frame, 10 steps) divided by the period
    assert hybrid == pytest.approx((4.6e-3 + 0.46e-3 + 10 * 94.6e-6) / 0.1)
    s = scenario_power(model, ann, heads, snn, alone, high_rate_hz=100.0, low_rate_hz=10.0)
    assert s.ann_high_rate_w == pytest.approx(0.46)
    assert s.ann_low_rate_held_w == pytest.approx(0.046)
    assert s.snn_w == pytest.approx(180e-6 * 100)
    assert s.hybrid_w == pytest.approx(0.06006)
    assert s.hybrid_saving == pytest.approx(1 - 0.06006 / 0.46)
    assert scenario_power(model, ann, heads, snn).snn_w == pytest.approx(94.6e-6 * 100)
    with pytest.raises(ValueError, match="below the low rate"):
        power_hybrid(model, ann, heads, snn, 100.0, 10.0)


# --- the real networks -------------------------------------------------------------------------


def _bins(t: int = 4, b: int = 1, seed: int = 0) -> torch.Tensor:
    h, w = CPU.input_size
    g = torch.Generator().manual_seed(seed)
    return torch.poisson(torch.full((t, b, CPU.snn.in_channels, h, w), 0.3), generator=g)


def _snn(seed: int = 0) -> SNN:
    """The cpu preset's SNN with BatchNorm statistics measured on random events and a positive
    bias, so that every layer fires (about 7% of the neurons per step), and a nonzero head (a
    fresh one is zero, whose weights neurobench's effective counts would skip)."""
    torch.manual_seed(seed)
    snn = CPU.build_snn()
    nn.init.normal_(snn.head.weight, std=0.1)
    for m in snn.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.momentum = None  # cumulative average
            m.weight.data.uniform_(1.0, 1.5)
            m.bias.data.uniform_(0.2, 0.8)
    bins = _bins(4, 2, seed=100 + seed)
    with torch.no_grad():
        snn.train()(bins, snn.zero_state(2, *CPU.input_size))
    return snn.eval()


def test_snn_counts_on_the_cpu_preset() -> None:
    snn = _snn()
    t, b = 4, 2
    counts = count_snn(snn, _bins(t, b))
    names = [layer.name for layer in counts]
    assert names == [f"{s.name}.conv" for s in CPU.snn.layer_specs()] + ["head"]
    assert counts.samples == t * b
    info = {la["name"]: la for la in model_info(CPU)["snn"]["layers"]}
    for layer in counts:
        assert layer.kind == "synaptic" and layer.calls == 1 and layer.macs == 0
        assert layer.synops > 0, layer.name
        assert 0 < layer.input_nonzero_fraction < 1, layer.name
        # dense MACs per step from model_info (batch 1, shapes only) times T * B
        assert layer.dense_macs == info[layer.name]["macs"] * t * b, layer.name
        # one membrane update per neuron (conv output element) per step; the head has none
        neurons = math.prod(info[layer.name]["output_shape"]) * t * b
        assert layer.membrane_updates == (0 if layer.name == "head" else neurons), layer.name
    # inputs of all but enc (event counts) and up1 (residual spike sums, 0..2) are binary
    for layer in counts:
        if layer.name not in ("enc.conv", "up1.conv"):
            assert layer.input_abs_sum == layer.input_nonzero, layer.name
            assert layer.synops <= layer.dense_macs, layer.name
    totals = counts.totals
    assert totals.synops == sum(layer.synops for layer in counts)
    assert totals.membrane_updates == sum(layer.membrane_updates for layer in counts)
    energy = EnergyModel().energy_pj(counts)
    assert energy.total_pj == pytest.approx(sum(energy.layers.values()))


def test_no_input_spikes_give_no_synops_unless_bias_makes_neurons_fire() -> None:
    h, w = CPU.input_size
    silent = torch.zeros(3, 1, CPU.snn.in_channels, h, w)
    # fresh BatchNorm (mean 0, var 1, no bias) and an empty state: nothing ever fires
    fresh = CPU.build_snn().eval()
    counts = count_snn(fresh, silent)
    assert all(layer.synops == 0 for layer in counts)
    assert all(layer.membrane_updates > 0 for layer in counts if layer.name != "head")
    # a BatchNorm bias (the folded conv bias) above threshold * tau drives down1 without input:
    # enc and down1 still receive nothing, every layer after down1 receives its spikes
    driven = CPU.build_snn().eval()
    bn = driven.down1.bn
    assert isinstance(bn, nn.BatchNorm2d)
    bn.bias.data.fill_(5.0)
    counts = count_snn(driven, silent)
    assert counts.layer("enc.conv").synops == 0
    assert counts.layer("down1.conv").synops == 0
    assert counts.layer("down2.conv").synops > 0
    assert counts.layer("up2.conv").synops > 0  # down1's spikes arrive by the skip


def test_ann_counts_are_dense_and_match_model_info() -> None:
    torch.manual_seed(0)
    ann = CPU.build_ann().eval()
    h, w = CPU.input_size
    g = torch.Generator().manual_seed(1)
    frame = torch.poisson(torch.full((2, CPU.ann.in_channels, h, w), 0.5), generator=g)
    counts = count_ann(ann, frame)
    info = model_info(CPU)
    assert [la.name for la in counts.ann] == [la["name"] for la in info["ann"]["layers"]]
    assert [la.name for la in counts.state_heads] == [
        la["name"] for la in info["state_heads"]["layers"]
    ]
    assert all(la.kind == "dense" and la.synops == 0 for la in counts.ann)
    assert counts.ann.totals.macs == 2 * info["ann"]["macs"]
    assert counts.state_heads.totals.macs == 2 * info["state_heads"]["macs"]
    # the dense count does not depend on what the input holds
    zero = count_ann(ann, torch.zeros_like(frame))
    assert zero.ann.totals == counts.ann.totals
    assert set(ann_targets(ann)).isdisjoint(state_head_targets(ann))


def test_hybrid_counts_equal_the_parts() -> None:
    torch.manual_seed(0)
    model = CPU.build_hybrid().eval()
    h, w = CPU.input_size
    g = torch.Generator().manual_seed(2)
    frame = torch.poisson(torch.full((1, CPU.ann.in_channels, h, w), 0.5), generator=g)
    bins = _bins(3, 1)
    counts = count_hybrid(model, frame, bins)
    ann = count_ann(model.ann, frame)
    with torch.no_grad():
        _, state = model.ann(frame)
    snn = count_snn(model.snn, bins, state)
    assert counts.ann == ann.ann and counts.state_heads == ann.state_heads
    assert counts.snn == snn and snn.samples == 3


def test_model_info_parameters_and_shapes() -> None:
    info = model_info(CPU)
    assert info["name"] == "cpu" and info["input_size"] == [64, 64]
    ann = CPU.build_ann()
    snn = CPU.build_snn()
    head_params = sum(p.numel() for p in ann.state_heads.parameters())
    assert info["ann"]["params"] == sum(p.numel() for p in ann.parameters()) - head_params
    assert info["state_heads"]["params"] == head_params
    assert info["snn"]["params"] == sum(p.numel() for p in snn.parameters())
    for section in ("ann", "state_heads", "snn"):
        layers = info[section]["layers"]
        assert info[section]["macs"] == sum(la["macs"] for la in layers) > 0
    # by hand: enc is a 5x5 conv 2 -> 8 at 64x64 (1 step); head a 1x1 conv 8 -> 13
    snn_layers = {la["name"]: la for la in info["snn"]["layers"]}
    assert snn_layers["enc.conv"]["macs"] == 64 * 64 * 8 * 2 * 25
    assert snn_layers["enc.conv"]["params"] == 8 * 2 * 25
    assert snn_layers["head"]["macs"] == 64 * 64 * 13 * 8
    assert snn_layers["down1.conv"]["output_shape"] == [1, 16, 32, 32]
    # the ANN's stem: 7x7 conv 20 -> 8, then 8 -> 8, at 64x64
    ann_layers = {la["name"]: la for la in info["ann"]["layers"]}
    assert ann_layers["stem.0.0"]["macs"] == 64 * 64 * 8 * 20 * 49
    assert ann_layers["stem.1.0"]["macs"] == 64 * 64 * 8 * 8 * 49
    assert set(snn_targets(snn)) == set(snn_layers)


def test_targets_cover_every_synapse() -> None:
    snn = CPU.build_snn()
    targets = snn_targets(snn)
    convs = {n for n, m in snn.named_modules() if isinstance(m, nn.Conv2d)}
    assert set(targets) == convs
    spiking = {f"{n}.conv" for n, m in snn.named_modules() if isinstance(m, SpikingConv)}
    assert {n for n, t in targets.items() if t.neuron} == spiking
    assert not targets["head"].neuron
    # frozen records
    with pytest.raises(dataclasses.FrozenInstanceError):
        targets["head"].neuron = True  # type: ignore[misc]


def test_fan_out_by_hand() -> None:
    """The synaptic operations per spike that weight the training's activity penalty, for
    the cpu preset (widths 8, 16, 32, 64; kernels 5, residual 3; 13 joints), by hand: a
    stride-2 5x5 convolution reaches 25 / 4 outputs per input on average (9 or 4 by parity),
    an input upsampled x2 is four inputs."""
    assert fan_out(CPU.snn) == {
        "enc": 25 / 4 * 16 + 25 * 8,  # down1; up3's skip input
        "down1": 25 / 4 * 32 + 25 * 16,  # down2; up2's skip
        "down2": 25 / 4 * 64 + 25 * 32,  # down3; up1's skip
        "down3": 9 * 64 + 4 * 25 * 32,  # res1; up1's residual sum, upsampled
        "res1": 9 * 64,  # res2
        "res2": 4 * 25 * 32,  # up1, upsampled
        "up1": 4 * 25 * 16,  # up2, upsampled
        "up2": 4 * 25 * 8,  # up3, upsampled
        "up3": 13,  # the 1x1 head
    }
    # the stride-2 average against the energy model's count of one input at each parity
    conv = nn.Conv2d(1, 16, 5, stride=2, padding=2, bias=False)
    counts = []
    for y, x in [(8, 8), (8, 9), (9, 8), (9, 9)]:
        with OperationCounter({"c": Target(conv, "synaptic")}) as counter:
            conv(_spike(20, 20, y, x))
        counts.append(counter.totals.synops)
    assert counts == [9 * 16, 6 * 16, 6 * 16, 4 * 16]
    assert sum(counts) / 4 == 25 / 4 * 16
