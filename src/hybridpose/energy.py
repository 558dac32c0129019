"""Operation counts from real activity on real inputs, and the energy model built on them.

Counts (per layer, measured by forward hooks on the layer's own input and output tensors):

**Dense MACs** (the ANN, its state heads, and the ConvGRU of the CNN-RNN hybrid). A
convolution whose output is
``(N, C_out, H_out, W_out)``, with a ``kh x kw`` kernel over ``C_in`` input channels in
``groups`` groups, performs, whatever its input holds::

    MACs = N * C_out * H_out * W_out * (C_in / groups) * kh * kw

(the standard count: taps that fall on the zero padding are counted too). A linear layer with
``rows`` input rows: ``rows * in_features * out_features``. The ConvGRU (:func:`count_rnn`):
every convolution (each cell's input and hidden convolutions, the 1x1 head) counted so, plus
its elementwise gate products as MACs, :data:`~hybridpose.nn.rnn.GATE_PRODUCTS` = 2 per hidden
unit and step (``r * h_n`` and ``z * (h - n)``: a record ``NAME.gates`` per layer); its
sigmoids, tanh, additions and the readout's decay are not counted (nor are the SNN's LIF
comparisons and its readout).

**Synaptic operations** (the SNN). An input element of integer value ``k`` (a spike: 1; an
event or spike count: k) is accumulated ``|k|`` times into every output it reaches: each output
position whose receptive field holds it (taps on the zero padding reach nothing, so an input
near the border reaches fewer outputs), in each of the ``C_out / groups`` output channels of
its group. With ``A_g[n, p]`` the sum of ``|x[n, c, p]|`` over the channels c of group g,
summed over the inputs::

    synops = sum_g (C_out / groups) * sum_{n, outputs o} sum_{taps t of o inside} A_g[n, p(o, t)]
           = sum_g (C_out / groups) * sum(conv2d(A_g, ones(kh, kw), stride, padding, dilation))

one single-channel convolution with a kernel of ones per group, in float64, so the count is
exact. Equivalently: the number of (nonzero input, weight) pairs that meet in some output, an
input of value k counting k times. A linear layer: ``synops = sum |x| * out_features``.
Inputs of synaptic layers must be integers: a fractional input would make the operation a
multiplication, not an accumulate, and raises a :class:`ValueError`. In the SNN every
convolution receives a whole sequence flattened to ``(T * B, C, H, W)``; one call counts all
of it.

**Membrane updates**: one per spiking neuron per time step, i.e. the number of elements of a
spiking layer's convolution output (its BatchNorm and LIF neurons have the same shape).

:class:`EnergyModel` turns counts into energy, per layer and in total::

    E = MACs * E_MAC + synops * E_AC + membrane_updates * E_MEM

with the 45 nm fp32 constants of Horowitz (ISSCC 2014) by default: E_MAC = 4.6 pJ,
E_AC = 0.9 pJ, and E_MEM = 4.6 pJ (one multiply-accumulate per LIF update; see
:class:`EnergyModel`). Power at an output rate is the energy per prediction interval divided
by the interval, e.g. ``P = E_inference * rate``; :func:`scenario_power` gives the
four scenarios of the paper (ANN at the high rate, ANN held at the low rate, SNN alone, the
hybrid), and :func:`schedule_power` the power of any model variant from what it runs
(:mod:`hybridpose.variants`): the evaluation's figures come from it.

:func:`model_info` gives parameter and dense MAC counts per layer of a preset's networks without
any data (shapes only, on PyTorch's ``meta`` device): the engine of ``hybridpose model-info``.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Iterator, Mapping
from dataclasses import MISSING, dataclass, field
from types import TracebackType
from typing import Any, Literal, NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.utils.hooks import RemovableHandle

from hybridpose.nn.ann import ANN
from hybridpose.nn.hybrid import AnyHybrid
from hybridpose.nn.presets import ModelConfig
from hybridpose.nn.rnn import GATE_PRODUCTS, ConvRNN
from hybridpose.nn.snn import SNN, SNNState, SpikingConv
from hybridpose.variants import SCHEDULES, Behaviour, Schedule

Kind = Literal["dense", "synaptic"]
"""How a layer is counted: dense MACs, or synaptic operations (accumulates)."""

COUNTED_LAYERS: tuple[type[nn.Module], ...] = (nn.Conv2d, nn.Linear)
"""The layer types whose operations are counted (the only ones with synapses in our models)."""

STATE_HEADS_PREFIX = "state_heads."


# ---------------------------------------------------------------------------------------------
# Per-call counts (pure functions)


def dense_macs(layer: nn.Module, output_shape: torch.Size | tuple[int, ...]) -> int:
    """Dense MACs of one call of a ``Conv2d`` or ``Linear`` that produced ``output_shape``.

    Conv2d: ``numel(output) * (C_in / groups) * kh * kw``; Linear: ``numel(output) * in``.
    """
    n_out = math.prod(output_shape)
    if isinstance(layer, nn.Conv2d):
        kh, kw = layer.kernel_size
        return n_out * (layer.in_channels // layer.groups) * kh * kw
    if isinstance(layer, nn.Linear):
        return n_out * layer.in_features
    raise ValueError(f"cannot count operations of a {type(layer).__name__} (Conv2d, Linear only)")


def synaptic_operations(layer: nn.Module, x: Tensor) -> int:
    """Synaptic operations of one call of a ``Conv2d`` or ``Linear`` on the input ``x``.

    Every input element of integer value k counts ``|k|`` accumulates per output it reaches
    (see the module docstring for the formula). ``x`` must hold integers (spikes or counts).

    >>> conv = nn.Conv2d(1, 2, 3, padding=1)
    >>> x = torch.zeros(1, 1, 4, 4)
    >>> x[0, 0, 0, 0] = 1.0  # a corner: 4 of the 16 outputs per channel
    >>> synaptic_operations(conv, x)
    8
    """
    a = _integer_magnitudes(x)
    if isinstance(layer, nn.Linear):
        return _exact_int(a.sum()) * layer.out_features
    if not isinstance(layer, nn.Conv2d):
        raise ValueError(
            f"cannot count operations of a {type(layer).__name__} (Conv2d, Linear only)"
        )
    if layer.padding_mode != "zeros":
        raise ValueError(
            f"synaptic operations need zero padding, the layer pads with {layer.padding_mode!r}"
        )
    if a.dim() == 3:  # an unbatched (C, H, W) input
        a = a[None]
    if a.dim() != 4 or a.shape[1] != layer.in_channels:
        raise ValueError(
            f"input of shape {tuple(x.shape)} does not fit a Conv2d with {layer.in_channels} "
            "input channels"
        )
    n, c, h, w = a.shape
    groups = layer.groups
    per_group = a.reshape(n, groups, c // groups, h, w).sum(dim=2)  # A_g: (N, groups, H, W)
    ones = torch.ones(groups, 1, *layer.kernel_size, dtype=a.dtype, device=a.device)
    padding = layer.padding
    if isinstance(padding, str):  # "same" / "valid": the same call, another overload for mypy
        reach = F.conv2d(per_group, ones, None, layer.stride, padding, layer.dilation, groups)
    else:
        reach = F.conv2d(per_group, ones, None, layer.stride, padding, layer.dilation, groups)
    return _exact_int(reach.sum()) * (layer.out_channels // groups)


def _integer_magnitudes(x: Tensor) -> Tensor:
    """``|x|`` in float64, after checking that ``x`` holds finite integers."""
    a = x.detach().to(torch.float64).abs()
    if not bool(torch.isfinite(a).all()):
        raise ValueError("synaptic layer input holds NaN or infinite values")
    if bool((a != torch.round(a)).any()):
        raise ValueError(
            "synaptic layer input holds non-integer values: those are multiplications, not "
            "accumulates; count the layer as dense"
        )
    return a


def _exact_int(total: Tensor) -> int:
    return round(float(total.item()))


# ---------------------------------------------------------------------------------------------
# Records


@dataclass(frozen=True)
class LayerCount:
    """What one layer did over all calls counted.

    ``macs`` are the dense MACs executed (dense layers; 0 for synaptic ones), ``synops`` the
    synaptic operations (synaptic layers; 0 for dense ones); ``dense_macs`` is the dense count
    of every layer, for reference (a synaptic layer's "if it were dense"). ``input_*`` describe
    the inputs seen: elements, nonzero elements, and the sum of ``|x|``.
    """

    name: str
    kind: Kind
    calls: int = 0
    macs: int = 0
    synops: int = 0
    membrane_updates: int = 0
    dense_macs: int = 0
    input_elements: int = 0
    input_nonzero: int = 0
    input_abs_sum: float = 0.0

    @property
    def input_nonzero_fraction(self) -> float:
        """Fraction of input elements that are nonzero (the firing rate for binary spikes)."""
        return self.input_nonzero / self.input_elements if self.input_elements else 0.0

    @property
    def input_rate(self) -> float:
        """Mean ``|x|`` per input element: spikes per neuron and step (counts included)."""
        return self.input_abs_sum / self.input_elements if self.input_elements else 0.0


@dataclass(frozen=True)
class Totals:
    """Sums over layers."""

    macs: int
    synops: int
    membrane_updates: int
    dense_macs: int


@dataclass(frozen=True)
class OpCounts:
    """Per-layer counts covering ``samples`` inferences (ANN frames, or SNN steps x batch)."""

    layers: tuple[LayerCount, ...]
    samples: int = 1

    def __post_init__(self) -> None:
        if self.samples < 1:
            raise ValueError(f"samples must be at least 1, got {self.samples}")
        names = [layer.name for layer in self.layers]
        if len(set(names)) != len(names):
            raise ValueError(f"layer names must be unique, got {names}")

    @property
    def totals(self) -> Totals:
        return Totals(
            macs=sum(layer.macs for layer in self.layers),
            synops=sum(layer.synops for layer in self.layers),
            membrane_updates=sum(layer.membrane_updates for layer in self.layers),
            dense_macs=sum(layer.dense_macs for layer in self.layers),
        )

    def layer(self, name: str) -> LayerCount:
        """The record of the layer ``name``."""
        for layer in self.layers:
            if layer.name == name:
                return layer
        raise KeyError(f"no layer {name!r}; layers: {[la.name for la in self.layers]}")

    def __iter__(self) -> Iterator[LayerCount]:
        return iter(self.layers)


# ---------------------------------------------------------------------------------------------
# Counting from real activity


@dataclass(frozen=True)
class Target:
    """A layer to count: the module, how to count it, and whether spiking neurons follow it."""

    module: nn.Module
    kind: Kind
    neuron: bool = False

    def __post_init__(self) -> None:
        if not isinstance(self.module, COUNTED_LAYERS):
            raise ValueError(
                f"cannot count operations of a {type(self.module).__name__} (Conv2d, Linear only)"
            )
        if self.kind not in ("dense", "synaptic"):
            raise ValueError(f"kind must be 'dense' or 'synaptic', got {self.kind!r}")


_COUNT_FIELDS = tuple(f.name for f in dataclasses.fields(LayerCount) if f.default is not MISSING)
"""The counters of a :class:`LayerCount` (every field but ``name`` and ``kind``)."""


class _Hooks:
    """Forward hooks that a ``with`` block installs (in ``__enter__``) and removes on exit."""

    _handles: list[RemovableHandle]

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        for handle in self._handles:
            handle.remove()
        self._handles.clear()


class OperationCounter(_Hooks):
    """Counts the operations of the ``targets`` while in a ``with`` block.

    >>> conv = nn.Conv2d(1, 2, 3, padding=1, bias=False)
    >>> with OperationCounter({"conv": Target(conv, "synaptic", neuron=True)}) as counter:
    ...     _ = conv(torch.ones(1, 1, 4, 4))
    >>> counter.totals
    Totals(macs=0, synops=200, membrane_updates=32, dense_macs=288)

    Counts accumulate over every call (and over several ``with`` blocks);
    :attr:`layers` gives one record per target in the order given, :meth:`counts` all of them.
    """

    def __init__(self, targets: Mapping[str, Target]) -> None:
        seen: set[int] = set()
        for name, target in targets.items():
            if id(target.module) in seen:
                raise ValueError(f"layer {name!r} is listed twice")
            seen.add(id(target.module))
        self._targets = dict(targets)
        self._acc: dict[str, dict[str, Any]] = {
            name: {field: 0 for field in _COUNT_FIELDS} for name in self._targets
        }
        self._handles: list[RemovableHandle] = []

    def __enter__(self) -> OperationCounter:
        if self._handles:
            raise RuntimeError("this OperationCounter is already counting")
        for name, target in self._targets.items():
            self._handles.append(target.module.register_forward_hook(self._hook(name, target)))
        return self

    def _hook(self, name: str, target: Target) -> Callable[[nn.Module, tuple[Any, ...], Any], None]:
        acc = self._acc[name]

        def hook(module: nn.Module, args: tuple[Any, ...], output: Any) -> None:
            x = args[0]
            if not isinstance(x, Tensor) or not isinstance(output, Tensor):
                raise TypeError(f"layer {name!r}: expected tensor input and output")
            with torch.no_grad():
                dense = dense_macs(module, output.shape)
                if target.kind == "synaptic":
                    try:
                        acc["synops"] += synaptic_operations(module, x)
                    except ValueError as err:
                        raise ValueError(f"layer {name!r}: {err}") from None
                else:
                    acc["macs"] += dense
                if target.neuron:
                    acc["membrane_updates"] += output.numel()
                acc["calls"] += 1
                acc["dense_macs"] += dense
                acc["input_elements"] += x.numel()
                acc["input_nonzero"] += int(torch.count_nonzero(x).item())
                acc["input_abs_sum"] += float(x.detach().abs().sum(dtype=torch.float64).item())

        return hook

    @property
    def layers(self) -> tuple[LayerCount, ...]:
        """One record per target, in the order given."""
        return tuple(
            LayerCount(name=name, kind=self._targets[name].kind, **acc)
            for name, acc in self._acc.items()
        )

    def counts(self, samples: int = 1) -> OpCounts:
        """All records, as covering ``samples`` inferences."""
        return OpCounts(self.layers, samples)

    @property
    def totals(self) -> Totals:
        return self.counts().totals


def dense_targets(module: nn.Module, exclude_prefix: str | None = None) -> dict[str, Target]:
    """Every Conv2d and Linear inside ``module`` by module path, counted as dense."""
    return {
        name: Target(m, "dense")
        for name, m in module.named_modules()
        if isinstance(m, COUNTED_LAYERS)
        and not (exclude_prefix is not None and name.startswith(exclude_prefix))
    }


def ann_targets(ann: ANN) -> dict[str, Target]:
    """The ANN's layers without its state heads (e.g. ``stem.0.0``, ``head``): dense."""
    return dense_targets(ann, exclude_prefix=STATE_HEADS_PREFIX)


def state_head_targets(ann: ANN) -> dict[str, Target]:
    """The state heads' layers (e.g. ``state_heads.enc.0``): dense."""
    return {
        name: target
        for name, target in dense_targets(ann).items()
        if name.startswith(STATE_HEADS_PREFIX)
    }


def snn_targets(snn: SNN) -> dict[str, Target]:
    """Every SNN layer, synaptic: each spiking layer's convolution (``enc.conv`` ...) with its
    neurons, and the 1x1 ``head`` (spike inputs too, no neurons)."""
    spiking = {
        id(m.conv) for m in snn.modules() if isinstance(m, SpikingConv)
    }  # the convs that feed LIF neurons
    return {
        name: Target(m, "synaptic", neuron=id(m) in spiking)
        for name, m in snn.named_modules()
        if isinstance(m, COUNTED_LAYERS)
    }


class SpikeRecorder(_Hooks):
    """Counts the spikes of every spiking layer of ``snn`` while in a ``with`` block.

    :attr:`firing_rate` is the mean number of spikes per neuron and time step over all spiking
    layers together (spikes / neuron-steps); :meth:`layer_rates` gives it per layer.

    With ``differentiable`` the recorder also keeps :meth:`rate`, the same rate as a tensor
    through which gradients reach the network, optionally with a weight per layer (the
    training's activity penalty, :attr:`hybridpose.recipes.StageConfig.spike_loss_weight`).
    """

    def __init__(self, snn: SNN, differentiable: bool = False) -> None:
        self._layers = snn.spiking_layers()
        self.spikes = dict.fromkeys(self._layers, 0.0)
        self.neuron_steps = dict.fromkeys(self._layers, 0)
        self._handles: list[RemovableHandle] = []
        self._differentiable = differentiable
        self._totals: dict[str, Tensor] = {}

    def __enter__(self) -> SpikeRecorder:
        for name, layer in self._layers.items():
            self._handles.append(layer.register_forward_hook(self._hook(name)))
        return self

    def _hook(self, name: str) -> Callable[[nn.Module, tuple[Any, ...], Any], None]:
        def hook(module: nn.Module, args: tuple[Any, ...], output: Any) -> None:
            spikes = output[0]
            self.spikes[name] += float(spikes.detach().sum(dtype=torch.float64))
            self.neuron_steps[name] += spikes.numel()
            if self._differentiable:
                total = spikes.sum()
                self._totals[name] = self._totals[name] + total if name in self._totals else total

        return hook

    def rate(self, weights: Mapping[str, float] | None = None) -> Tensor:
        """:attr:`firing_rate` as a tensor that carries gradients (needs ``differentiable``);
        with ``weights`` (per layer, e.g. :func:`hybridpose.nn.snn.fan_out`) each layer's
        spikes and neuron-steps count ``weights[layer]`` times: with the fan-out, the
        fraction of the synapses that carry a spike per step."""
        if not self._differentiable:
            raise RuntimeError("SpikeRecorder(differentiable=True) keeps the rate as a tensor")
        if not self._totals:
            raise RuntimeError("no spiking layer ran inside the recorder's with block")
        w = dict.fromkeys(self._totals, 1.0) if weights is None else weights
        spikes = sum(w[k] * total for k, total in self._totals.items())
        assert isinstance(spikes, Tensor)
        return spikes / sum(w[k] * self.neuron_steps[k] for k in self._totals)

    def layer_rates(self) -> dict[str, float]:
        """Spikes per neuron and step, per layer (0 where nothing ran)."""
        return {
            k: self.spikes[k] / self.neuron_steps[k] if self.neuron_steps[k] else 0.0
            for k in self._layers
        }

    @property
    def firing_rate(self) -> float:
        total = sum(self.neuron_steps.values())
        return sum(self.spikes.values()) / total if total else 0.0


class AnnCounts(NamedTuple):
    """The ANN's counts and, separately, its state heads' (both per frame of the batch)."""

    ann: OpCounts
    state_heads: OpCounts


def count_ann(ann: ANN, frame: Tensor) -> AnnCounts:
    """Run ``ann`` on ``frame`` (B, C, H, W) without gradients and count its operations.

    The model is used as it is (put it in ``eval()`` mode first for inference counts).
    """
    with (
        torch.no_grad(),
        OperationCounter(ann_targets(ann)) as main,
        OperationCounter(state_head_targets(ann)) as heads,
    ):
        ann(frame)
    batch = frame.shape[0]
    return AnnCounts(main.counts(batch), heads.counts(batch))


def count_snn(snn: SNN, bins: Tensor, state: SNNState | None = None) -> OpCounts:
    """Run ``snn`` over ``bins`` (T, B, C, H, W) from ``state`` (default: the zero state) and
    count its operations; the result covers ``T * B`` inferences (one per bin and sample)."""
    if bins.dim() != 5:
        raise ValueError(f"bins must be (T, B, C, H, W), got {tuple(bins.shape)}")
    t, b, _, h, w = bins.shape
    if state is None:
        state = snn.zero_state(b, h, w, bins.device, bins.dtype)
    with torch.no_grad(), OperationCounter(snn_targets(snn)) as counter:
        snn(bins, state)
    return counter.counts(t * b)


def count_rnn(rnn: ConvRNN, bins: Tensor, state: SNNState | None = None) -> OpCounts:
    """Run the ConvGRU ``rnn`` over ``bins`` (T, B, C, H, W) from ``state`` (default: the
    zero state) and count its dense MACs, gate products included (the module docstring); the
    result covers ``T * B`` inferences (one per bin and sample)."""
    if bins.dim() != 5:
        raise ValueError(f"bins must be (T, B, C, H, W), got {tuple(bins.shape)}")
    t, b, _, h, w = bins.shape
    if state is None:
        state = rnn.zero_state(b, h, w, bins.device, bins.dtype)
    with torch.no_grad(), OperationCounter(dense_targets(rnn)) as counter:
        _, after = rnn(bins, state)
    gates = []
    for spec in rnn.config.layer_specs():
        products = GATE_PRODUCTS * t * getattr(after, spec.name).numel()
        gates.append(LayerCount(f"{spec.name}.gates", "dense", t, products, dense_macs=products))
    return OpCounts((*counter.layers, *gates), t * b)


class HybridCounts(NamedTuple):
    """One hybrid window: the ANN and its state heads (per frame), the network that steps
    (per step: the SNN, or the CNN-RNN hybrid's ConvGRU)."""

    ann: OpCounts
    state_heads: OpCounts
    snn: OpCounts


def count_hybrid(model: AnyHybrid, frame: Tensor, bins: Tensor) -> HybridCounts:
    """Run one hybrid window (``frame`` and ``bins``, as :meth:`HybridPose.forward`) and count:
    the ANN's start of the window, then the SNN's (:func:`count_snn`) or the ConvGRU's
    (:func:`count_rnn`) steps from the state it gives."""
    b = bins.shape[1]
    with (
        torch.no_grad(),
        OperationCounter(ann_targets(model.ann)) as main,
        OperationCounter(state_head_targets(model.ann)) as heads,
    ):
        _, state = model.initial_state(frame)
    net = model.snn
    steps = count_rnn(net, bins, state) if isinstance(net, ConvRNN) else count_snn(net, bins, state)
    return HybridCounts(main.counts(b), heads.counts(b), steps)


# ---------------------------------------------------------------------------------------------
# Energy and power


@dataclass(frozen=True)
class EnergyBreakdown:
    """Energy in picojoules per layer and in total, for the ``samples`` inferences counted."""

    layers: Mapping[str, float]
    samples: int

    @property
    def total_pj(self) -> float:
        return math.fsum(self.layers.values())

    @property
    def per_inference_pj(self) -> float:
        return self.total_pj / self.samples


@dataclass(frozen=True)
class EnergyModel:
    """Energy per operation, in picojoules (defaults: 45 nm, 32-bit float; Horowitz 2014).

    ``E_layer = macs * e_mac_pj + synops * e_ac_pj + membrane_updates * e_membrane_pj``.

    ``e_membrane_pj`` defaults to one fp32 multiply-accumulate (4.6 pJ) per neuron and step:
    the LIF update ``v + (x - v) / tau = v * (1 - 1/tau) + x / tau`` is one MAC once ``1/tau``
    is folded into the input's weights; the threshold comparison and the soft reset (a
    subtraction, only on a spike) are not counted.
    """

    e_mac_pj: float = 4.6
    e_ac_pj: float = 0.9
    e_membrane_pj: float = 4.6

    def __post_init__(self) -> None:
        for name in ("e_mac_pj", "e_ac_pj", "e_membrane_pj"):
            value = getattr(self, name)
            if not (math.isfinite(value) and value >= 0):
                raise ValueError(f"{name} must be a finite number >= 0, got {value}")

    def layer_energy_pj(self, layer: LayerCount) -> float:
        """Energy of one layer's counted operations, in pJ."""
        return (
            layer.macs * self.e_mac_pj
            + layer.synops * self.e_ac_pj
            + layer.membrane_updates * self.e_membrane_pj
        )

    def energy_pj(self, counts: OpCounts) -> EnergyBreakdown:
        """Energy per layer and in total (:class:`EnergyBreakdown`)."""
        return EnergyBreakdown(
            {layer.name: self.layer_energy_pj(layer) for layer in counts}, counts.samples
        )

    def power_w(self, counts: OpCounts, rate_hz: float) -> float:
        """Power in watts when the counted inference runs ``rate_hz`` times a second:
        ``E_inference [pJ] * 1e-12 * rate_hz``."""
        _check_rate(rate_hz, "rate_hz")
        return self.energy_pj(counts).per_inference_pj * 1e-12 * rate_hz


def _check_rate(rate_hz: float, name: str) -> None:
    if not (math.isfinite(rate_hz) and rate_hz > 0):
        raise ValueError(f"{name} must be a positive number, got {rate_hz}")


def power_ann(model: EnergyModel, ann: OpCounts, rate_hz: float) -> float:
    """The ANN run at ``rate_hz``: ``P = E_ANN * rate``.

    At the high rate it is the "ANN re-run every bin" baseline; at the low rate, the "ANN held"
    baseline (its prediction held until the next frame: no operations in between).
    """
    return model.power_w(ann, rate_hz)


def power_snn(model: EnergyModel, snn: OpCounts, rate_hz: float) -> float:
    """The SNN alone, one step per output: ``P = E_step * rate``."""
    return model.power_w(snn, rate_hz)


def power_hybrid(
    model: EnergyModel,
    ann: OpCounts,
    state_heads: OpCounts | None,
    snn: OpCounts,
    low_rate_hz: float,
    high_rate_hz: float,
) -> float:
    """The hybrid: ANN and state heads at ``low_rate_hz``, the SNN at ``high_rate_hz``.

    Per ANN period ``1 / low`` the energy is ``E_ANN + E_heads + (high / low) * E_step``;
    divided by the period: ``P = (E_ANN + E_heads) * low + E_step * high``. ``state_heads``
    is None when the heads do not set the SNN's membranes (the ``state_init=False`` ablation:
    they are not run).
    """
    _check_rate(low_rate_hz, "low_rate_hz")
    _check_rate(high_rate_hz, "high_rate_hz")
    if high_rate_hz < low_rate_hz:
        raise ValueError(f"high rate {high_rate_hz} Hz is below the low rate {low_rate_hz} Hz")
    e_frame = model.energy_pj(ann).per_inference_pj
    if state_heads is not None:
        e_frame += model.energy_pj(state_heads).per_inference_pj
    e_step = model.energy_pj(snn).per_inference_pj
    return (e_frame * low_rate_hz + e_step * high_rate_hz) * 1e-12


def schedule_power(
    model: EnergyModel,
    schedule: Schedule,
    *,
    ann: OpCounts | None = None,
    state_heads: OpCounts | None = None,
    snn: OpCounts | None = None,
    high_rate_hz: float,
    low_rate_hz: float,
) -> float:
    """Power of a model variant from what its behaviour runs (:mod:`hybridpose.variants`).

    The ANN alone: at the output rate (``every_step``) or once per window (``window_start``,
    its prediction held); the SNN alone: one step per output; the hybrid: the ANN (and the
    state heads, when given) once per window, the SNN (or the CNN-RNN hybrid's ConvGRU, its
    counts given as ``snn``) at every step. Counts are per inference (per frame for the ANN
    and its heads, per step for the SNN), measured as the variant runs.
    """

    def need(counts: OpCounts | None, what: str) -> OpCounts:
        if counts is None:
            raise ValueError(
                f"a variant with the ANN {schedule.ann} and the SNN {schedule.snn} needs the "
                f"{what} counts"
            )
        return counts

    if schedule.snn == "none":
        rate = high_rate_hz if schedule.ann == "every_step" else low_rate_hz
        return power_ann(model, need(ann, "ANN"), rate)
    if schedule.ann == "never":
        return power_snn(model, need(snn, "SNN"), high_rate_hz)
    return power_hybrid(
        model, need(ann, "ANN"), state_heads, need(snn, "SNN"), low_rate_hz, high_rate_hz
    )


@dataclass(frozen=True)
class ScenarioPower:
    """Power in watts of the four scenarios at the same output (high) rate."""

    ann_high_rate_w: float
    ann_low_rate_held_w: float
    snn_w: float
    hybrid_w: float
    high_rate_hz: float
    low_rate_hz: float

    @property
    def hybrid_saving(self) -> float:
        """``1 - P_hybrid / P_ANN(high)``: the paper reports 0.886 (3.718 W vs 0.424 W)."""
        return 1.0 - self.hybrid_w / self.ann_high_rate_w if self.ann_high_rate_w else 0.0


def scenario_power(
    model: EnergyModel,
    ann: OpCounts,
    state_heads: OpCounts,
    snn: OpCounts,
    snn_alone: OpCounts | None = None,
    high_rate_hz: float = 100.0,
    low_rate_hz: float = 10.0,
) -> ScenarioPower:
    """The four scenarios from per-inference counts.

    ``snn`` is the SNN as run in the hybrid (started from the ANN's states); ``snn_alone`` the
    SNN run from an empty state (its activity differs); it defaults to ``snn``.
    """

    def power(behaviour: Behaviour, **counts: OpCounts | None) -> float:
        return schedule_power(
            model, SCHEDULES[behaviour], high_rate_hz=high_rate_hz, low_rate_hz=low_rate_hz,
            **counts,
        )  # fmt: skip

    return ScenarioPower(
        ann_high_rate_w=power("ann_every_step", ann=ann),
        ann_low_rate_held_w=power("ann_held", ann=ann),
        snn_w=power("snn_carried", snn=snn if snn_alone is None else snn_alone),
        hybrid_w=power("hybrid", ann=ann, state_heads=state_heads, snn=snn),
        high_rate_hz=high_rate_hz,
        low_rate_hz=low_rate_hz,
    )


# ---------------------------------------------------------------------------------------------
# Model information without data


@dataclass(frozen=True)
class LayerInfo:
    """Static information about one counted layer: parameters, dense MACs per call, shapes."""

    name: str
    type: str
    params: int
    macs: int
    input_shape: tuple[int, ...]
    output_shape: tuple[int, ...]


@dataclass
class _ShapeRecorder:
    modules: Mapping[str, nn.Module]
    found: dict[str, LayerInfo] = field(default_factory=dict)

    def run(self, forward: Callable[[], object]) -> list[LayerInfo]:
        handles = [m.register_forward_hook(self._hook(name)) for name, m in self.modules.items()]
        try:
            forward()
        finally:
            for handle in handles:
                handle.remove()
        return [self.found[name] for name in self.modules if name in self.found]

    def _hook(self, name: str) -> Callable[[nn.Module, tuple[Any, ...], Any], None]:
        def hook(module: nn.Module, args: tuple[Any, ...], output: Any) -> None:
            self.found[name] = LayerInfo(
                name=name,
                type=type(module).__name__,
                params=sum(p.numel() for p in module.parameters()),
                macs=dense_macs(module, output.shape),
                input_shape=tuple(args[0].shape),
                output_shape=tuple(output.shape),
            )

        return hook


def _section(params: int, layers: list[LayerInfo]) -> dict[str, Any]:
    return {
        "params": params,
        "macs": sum(la.macs for la in layers),
        "layers": [
            {
                "name": la.name,
                "type": la.type,
                "params": la.params,
                "macs": la.macs,
                "input_shape": list(la.input_shape),
                "output_shape": list(la.output_shape),
            }
            for la in layers
        ],
    }


def model_info(config: ModelConfig) -> dict[str, Any]:
    """Parameters and dense MACs of a configuration's networks, per layer and in total.

    Built and run on PyTorch's ``meta`` device (shapes only: no memory, no data, no
    arithmetic), one frame and one SNN time step at ``config.input_size``, batch 1. Keys:
    ``ann`` (without the state heads), ``state_heads``, ``snn`` (dense MACs per time step, for
    reference: the SNN's real cost is its synaptic operations, counted from activity), each
    with ``params``, ``macs`` and ``layers`` (name, type, params, macs, input and output
    shapes); plus ``name`` and ``input_size``. ``params`` count every parameter, BatchNorm's
    included; MACs count convolutions and linear layers only.
    """
    h, w = config.input_size
    meta = torch.device("meta")
    with torch.device(meta):
        ann = config.build_ann().eval()
        snn = config.build_snn().eval()
    frame = torch.empty(1, config.ann.in_channels, h, w, device=meta)
    bins = torch.empty(1, 1, config.snn.in_channels, h, w, device=meta)
    ann_modules = {n: t.module for n, t in ann_targets(ann).items()}
    head_modules = {n: t.module for n, t in state_head_targets(ann).items()}
    snn_modules = {n: t.module for n, t in snn_targets(snn).items()}
    with torch.no_grad():
        ann_layers = _ShapeRecorder({**ann_modules, **head_modules}).run(lambda: ann(frame))
        snn_layers = _ShapeRecorder(snn_modules).run(
            lambda: snn(bins, snn.zero_state(1, h, w, meta))
        )
    ann_params = sum(
        p.numel() for n, p in ann.named_parameters() if not n.startswith(STATE_HEADS_PREFIX)
    )
    head_params = sum(
        p.numel() for n, p in ann.named_parameters() if n.startswith(STATE_HEADS_PREFIX)
    )
    return {
        "name": config.name,
        "input_size": list(config.input_size),
        "ann": _section(ann_params, [la for la in ann_layers if la.name in ann_modules]),
        "state_heads": _section(head_params, [la for la in ann_layers if la.name in head_modules]),
        "snn": _section(sum(p.numel() for p in snn.parameters()), snn_layers),
    }
