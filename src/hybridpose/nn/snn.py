"""The spiking network: an encoder-decoder of 9 LIF layers with a decaying "delta" readout.

Structure (the paper's encoder-decoder; widths ``w0..w3`` from :class:`SNNConfig`, ``s`` =
downsampling)::

    enc    5x5 conv  C_in -> w0          s=1     (input: 2-polarity event counts of one bin)
    down1  5x5 conv  stride 2  w0 -> w1   s=2
    down2  5x5 conv  stride 2  w1 -> w2   s=4
    down3  5x5 conv  stride 2  w2 -> w3   s=8
    res1   3x3 conv  w3 -> w3             s=8
    res2   3x3 conv  w3 -> w3             s=8     res = res2 + down3 (spike counts 0..2)
    up1    5x5 conv  [up(res), down2] -> w2   s=4
    up2    5x5 conv  [up(up1), down1] -> w1   s=2
    up3    5x5 conv  [up(up2), enc]   -> w0   s=1
    head   1x1 conv  w0 -> joints (no neuron): delta_t

Every spiking layer is a bias-free convolution, BatchNorm, then LIF (:mod:`hybridpose.nn.lif`).
Upsampling is nearest-neighbour, so every convolution's input is binary spikes or an integer
count (the first layer's events, the residual sum): every synaptic operation is honestly an
accumulate (energy.py counts them).

Readout: with ``delta_readout`` the output accumulates, ``out_t = decay * out_{t-1} + delta_t``
(the hybrid sets ``out`` to the ANN's heatmaps at each initialisation); without it,
``out_t = delta_t``.

State: :class:`SNNState`, one membrane tensor per spiking layer plus ``readout``. The module
stores no state: ``step`` and ``forward`` take it and return the next one.

The wiring is declared once, in :meth:`SNNConfig.layer_specs` (each layer's input blocks,
kernel and stride) and :func:`readout_step`; :class:`SNN` builds its layers from it,
:func:`run_layers` runs it for ``SNN.forward`` and :func:`plain_snn_step`, and the
event-driven engine (:mod:`hybridpose.nn.event_driven`) lays out its scatters from it.
"""

from __future__ import annotations

import copy
import functools
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import NamedTuple

import torch
from torch import Tensor, nn

from hybridpose.nn.lif import DEFAULT_ALPHA, lif_multistep


class SNNState(NamedTuple):
    """Membrane potentials ``(B, C, H / s, W / s)`` of the 9 spiking layers and the readout."""

    enc: Tensor
    down1: Tensor
    down2: Tensor
    down3: Tensor
    res1: Tensor
    res2: Tensor
    up1: Tensor
    up2: Tensor
    up3: Tensor
    readout: Tensor  # (B, joints, H, W): the decaying output accumulator

    def detach(self) -> SNNState:
        """The same state cut from the autograd graph (for truncated BPTT across chunks)."""
        return SNNState(*(t.detach() for t in self))


INPUT = "input"
"""The source name of the bin's event counts in :attr:`LayerInput.sources`."""


@dataclass(frozen=True)
class LayerInput:
    """One block of a spiking layer's input (blocks are concatenated along the channels): the
    sum of the outputs of ``sources`` (layer names, or :data:`INPUT`), upsampled x2 by nearest
    neighbour first when ``upsample``."""

    sources: tuple[str, ...]
    upsample: bool = False


@dataclass(frozen=True)
class LayerSpec:
    """One spiking layer: as the state contract sees it (name, channels, downsampling ``scale``)
    and as it is wired (its input blocks, kernel size and stride)."""

    name: str
    channels: int
    scale: int
    inputs: tuple[LayerInput, ...]
    kernel: int
    stride: int = 1


@dataclass(frozen=True)
class SNNConfig:
    """Configuration of :class:`SNN` (defaults: the paper's widths and the 100 Hz hybrid)."""

    in_channels: int = 2
    widths: tuple[int, int, int, int] = (32, 64, 128, 256)
    joints: int = 13
    kernel: int = 5
    res_kernel: int = 3
    tau: float = 3.0
    v_th: float = 1.0
    surrogate_alpha: float = DEFAULT_ALPHA
    learn_tau: bool = False
    delta_readout: bool = True
    readout_decay: float = 0.8

    def __post_init__(self) -> None:
        if len(self.widths) != 4 or min(self.widths) < 1:
            raise ValueError(f"widths must be 4 positive numbers, got {self.widths}")
        if not self.tau > 1.0:
            raise ValueError(f"tau must be > 1 (a leak), got {self.tau}")
        if not 0.0 <= self.readout_decay <= 1.0:
            raise ValueError(f"readout_decay must lie in [0, 1], got {self.readout_decay}")

    def layer_specs(self) -> tuple[LayerSpec, ...]:
        """The spiking layers in :class:`SNNState` order (the state contract), which is also
        their order of computation, with their wiring (the module docstring's table)."""
        return _layer_specs(self)

    def input_channels(self, spec: LayerSpec) -> int:
        """The channels of a layer's concatenated input (a block's sources have equal widths)."""
        widths = {s.name: s.channels for s in self.layer_specs()} | {INPUT: self.in_channels}
        return sum(widths[block.sources[0]] for block in spec.inputs)


@functools.lru_cache(maxsize=32)
def _layer_specs(config: SNNConfig) -> tuple[LayerSpec, ...]:
    """:meth:`SNNConfig.layer_specs`, built once per configuration (the forward pass and
    every streamed step read it)."""
    w0, w1, w2, w3 = config.widths
    k, rk = config.kernel, config.res_kernel

    def after(*sources: str, up: bool = False) -> LayerInput:
        return LayerInput(sources, up)

    return (
        LayerSpec("enc", w0, 1, (after(INPUT),), k),
        LayerSpec("down1", w1, 2, (after("enc"),), k, stride=2),
        LayerSpec("down2", w2, 4, (after("down1"),), k, stride=2),
        LayerSpec("down3", w3, 8, (after("down2"),), k, stride=2),
        LayerSpec("res1", w3, 8, (after("down3"),), rk),
        LayerSpec("res2", w3, 8, (after("res1"),), rk),
        # the residual sum res2 + down3 (spike counts 0..2), upsampled, beside down2
        LayerSpec("up1", w2, 4, (after("res2", "down3", up=True), after("down2")), k),
        LayerSpec("up2", w1, 2, (after("up1", up=True), after("down1")), k),
        LayerSpec("up3", w0, 1, (after("up2", up=True), after("enc")), k),
    )


DOWNSAMPLING = 8
"""Input height and width must be multiples of this."""


def fan_out(config: SNNConfig) -> dict[str, float]:
    """The synaptic operations one spike of each layer triggers, away from the borders.

    Per layer it feeds: ``kernel ** 2 / stride ** 2`` output positions (four times as many
    when the input is upsampled x2 first: the spike is four inputs) times that layer's
    channels; the last layer's spikes also feed the 1x1 head (one per joint). The weights of
    the training's activity penalty (:attr:`hybridpose.recipes.StageConfig.spike_loss_weight`):
    a spike costs what it costs the energy model (synaptic operations) and the event-driven
    engine (its scatter).
    """
    specs = config.layer_specs()
    out = {s.name: 0.0 for s in specs}
    for spec in specs:
        for block in spec.inputs:
            per_input = spec.kernel**2 / spec.stride**2 * spec.channels
            for source in block.sources:
                if source != INPUT:
                    out[source] += per_input * (4 if block.upsample else 1)
    out[specs[-1].name] += config.joints
    return out


class SpikingConv(nn.Module):
    """Bias-free convolution, BatchNorm, LIF; applied to a whole sequence at once.

    After :func:`fold_batchnorm` the BatchNorm is an identity and the convolution has a bias.
    """

    def __init__(self, c_in: int, c_out: int, kernel: int, stride: int, config: SNNConfig) -> None:
        super().__init__()
        self.conv = nn.Conv2d(c_in, c_out, kernel, stride, padding=kernel // 2, bias=False)
        self.bn: nn.Module = nn.BatchNorm2d(c_out)
        self.v_th = config.v_th
        self.alpha = config.surrogate_alpha
        tau = torch.tensor(float(config.tau))
        if config.learn_tau:
            self.tau: Tensor = nn.Parameter(tau)
        else:
            self.register_buffer("tau", tau)

    def forward(self, x: Tensor, v: Tensor) -> tuple[Tensor, Tensor]:
        """``x`` (T, B, C_in, H, W), ``v`` (B, C_out, H', W') -> spikes (T, B, C_out, H', W'), v."""
        t, b = x.shape[:2]
        z: Tensor = self.bn(self.conv(x.flatten(0, 1)))
        return lif_multistep(z.reshape(t, b, *z.shape[1:]), v, self.tau, self.v_th, self.alpha)


def readout_step(previous: Tensor, delta: Tensor, config: SNNConfig) -> Tensor:
    """One step of the readout: ``decay * previous + delta`` with the delta readout, else the
    head's ``delta`` alone."""
    return config.readout_decay * previous + delta if config.delta_readout else delta


def readout_sequence(delta: Tensor, previous: Tensor, config: SNNConfig) -> tuple[Tensor, Tensor]:
    """:func:`readout_step` over a sequence: the head's ``delta`` (T, B, J, H, W) from the
    readout ``previous`` (B, J, H, W) -> the outputs (T, B, J, H, W) and the last one."""
    if not config.delta_readout:
        return delta, delta[-1]
    outs = []
    out = previous
    # unbind, not delta[t]: indexing a tensor that requires grad in a loop makes the
    # backward pass quadratic in T (each index's gradient is a full-size zero tensor)
    for delta_t in delta.unbind(0):
        out = readout_step(out, delta_t, config)
        outs.append(out)
    return torch.stack(outs), out


def run_sequence(
    config: SNNConfig,
    layers: Mapping[str, nn.Module],
    head: nn.Module,
    x: Tensor,
    state: SNNState,
) -> tuple[Tensor, SNNState]:
    """A network of :meth:`SNNConfig.layer_specs`'s layers over the bins ``x`` (T, B, C_in,
    H, W) from ``state``: each layer ``layers[name](input, state) -> (output, state)`` on the
    whole sequence, then the 1x1 ``head`` and the readout (:func:`readout_sequence`). The
    forward pass of :class:`SNN` and of the ConvGRU (:class:`hybridpose.nn.rnn.ConvRNN`).

    Returns:
        heatmaps (T, B, joints, H, W), one per bin, and the state after the last bin.
    """
    if x.dim() != 5:
        raise ValueError(f"x must be (T, B, C, H, W), got {tuple(x.shape)}")
    last, hidden = run_layers(
        config.layer_specs(), x, state, lambda name, inp, v: layers[name](inp, v), channel_dim=2
    )
    t, b = last.shape[:2]
    delta = head(last.flatten(0, 1))
    out, readout = readout_sequence(delta.reshape(t, b, *delta.shape[1:]), state.readout, config)
    return out, SNNState._make([*hidden, readout])


def empty_state(
    config: SNNConfig,
    batch: int,
    height: int,
    width: int,
    device: torch.device | str | None = None,
    dtype: torch.dtype = torch.float32,
) -> SNNState:
    """Zeros of every layer's shape (:meth:`SNNConfig.layer_specs`) and the readout's, for
    inputs of ``height x width`` pixels (multiples of 8): :meth:`SNN.zero_state`."""
    if height % DOWNSAMPLING or width % DOWNSAMPLING:
        raise ValueError(f"input size {height}x{width}: both must be multiples of 8")
    tensors = [
        torch.zeros(batch, s.channels, height // s.scale, width // s.scale, device=device,
                    dtype=dtype)
        for s in config.layer_specs()
    ]  # fmt: skip
    readout = torch.zeros(batch, config.joints, height, width, device=device, dtype=dtype)
    return SNNState._make([*tensors, readout])


LIFLayer = Callable[[str, Tensor, Tensor], tuple[Tensor, Tensor]]
"""``(layer name, input, v) -> (spikes, v)``: one spiking layer applied to its input."""


def run_layers(
    specs: Sequence[LayerSpec], x: Tensor, state: SNNState, layer: LIFLayer, channel_dim: int
) -> tuple[Tensor, list[Tensor]]:
    """Every spiking layer in order, each on its wired input (:meth:`SNNConfig.layer_specs`).

    Args:
        specs: the layers, in order of computation.
        x: the input events, with channels at ``channel_dim``.
        state: the membranes before (by layer name).
        layer: applies one layer (the sequence or the single-step form).
        channel_dim: 2 for sequences (T, B, C, H, W), 1 for one step (B, C, H, W).

    Returns:
        the last layer's spikes and every layer's new membranes, in ``specs`` order.
    """
    outputs = {INPUT: x}
    membranes: list[Tensor] = []
    for spec in specs:
        blocks = []
        for block in spec.inputs:
            total = outputs[block.sources[0]]
            for source in block.sources[1:]:
                total = total + outputs[source]
            blocks.append(_up(total) if block.upsample else total)
        joined = blocks[0] if len(blocks) == 1 else torch.cat(blocks, dim=channel_dim)
        spikes, v = layer(spec.name, joined, getattr(state, spec.name))
        outputs[spec.name] = spikes
        membranes.append(v)
    return outputs[specs[-1].name], membranes


def _up(x: Tensor) -> Tensor:
    """Nearest-neighbour x2 upsampling of a sequence (T, B, C, H, W): spikes stay binary.

    A broadcast and one copy: equal to ``F.interpolate(mode="nearest")`` and, measured on
    the CPU, 3-5x faster forward and backward.
    """
    *lead, h, w = x.shape
    return x[..., :, None, :, None].expand(*lead, h, 2, w, 2).reshape(*lead, 2 * h, 2 * w)


class SNN(nn.Module):
    """The spiking pose network; see the module docstring for its layers and state."""

    # the spiking layers, built from SNNConfig.layer_specs() (declared here for type checkers)
    enc: SpikingConv
    down1: SpikingConv
    down2: SpikingConv
    down3: SpikingConv
    res1: SpikingConv
    res2: SpikingConv
    up1: SpikingConv
    up2: SpikingConv
    up3: SpikingConv

    def __init__(self, config: SNNConfig = SNNConfig()) -> None:
        super().__init__()
        self.config = config
        for spec in config.layer_specs():
            c_in = config.input_channels(spec)
            self.add_module(
                spec.name, SpikingConv(c_in, spec.channels, spec.kernel, spec.stride, config)
            )
        self.head = nn.Conv2d(config.widths[0], config.joints, 1)
        # The readout sums the head's output with gain 1 / (1 - decay) (5 at decay 0.8, without
        # bound at 1.0): a randomly initialised head would start with heatmaps of order 1
        # everywhere, and the first hundreds of steps would go into cancelling them. Starting at
        # zero output, the head's weights get their gradient at the first step and the layers
        # below from then on.
        nn.init.zeros_(self.head.weight)
        if self.head.bias is not None:
            nn.init.zeros_(self.head.bias)

    def zero_state(
        self,
        batch: int,
        height: int,
        width: int,
        device: torch.device | str | None = None,
        dtype: torch.dtype = torch.float32,
    ) -> SNNState:
        """The empty state for inputs of ``height x width`` pixels (multiples of 8)."""
        return empty_state(self.config, batch, height, width, device, dtype)

    def forward(self, x: Tensor, state: SNNState) -> tuple[Tensor, SNNState]:
        """Run the bins ``x`` (T, B, C_in, H, W) from ``state``.

        Returns:
            heatmaps (T, B, joints, H, W), one per bin, and the state after the last bin.
        """
        return run_sequence(self.config, self.spiking_layers(), self.head, x, state)

    def step(self, x: Tensor, state: SNNState) -> tuple[Tensor, SNNState]:
        """One bin ``x`` (B, C_in, H, W) -> heatmaps (B, joints, H, W) and the next state."""
        out, state = self.forward(x[None], state)
        return out[0], state

    def spiking_layers(self) -> dict[str, SpikingConv]:
        """The spiking layers by state-field name."""
        return {s.name: getattr(self, s.name) for s in self.config.layer_specs()}


SpikeRule = Callable[[str, Tensor, float], Tensor]
"""``(layer name, h, v_th) -> spikes`` (0/1, the dtype of ``h``): where a step fires."""


def heaviside(name: str, h: Tensor, v_th: float) -> Tensor:
    """The LIF's own rule, for every layer: a spike where ``h >= v_th``."""
    return (h >= v_th).to(h.dtype)


def plain_snn_step(
    snn: SNN, bins: Tensor, state: SNNState, spike_rule: SpikeRule = heaviside
) -> tuple[Tensor, SNNState]:
    """:meth:`SNN.step` in eval mode, with the LIF written as plain torch operations.

    The same wiring (:func:`run_layers`) and readout (:func:`readout_step`) as
    ``SNN.forward``, so the result equals ``snn.step(bins, state)`` bitwise; unlike the fused
    LIF it can be exported. ``snn`` must be in eval mode (BatchNorm uses its running
    statistics).

    Args:
        snn: the trained network.
        bins: event counts of one bin.
        state: the state before the bin.
        spike_rule: decides which membranes fire; verification passes one that records the
            membranes or follows another runtime at the threshold.

    Returns:
        the heatmaps of the bin and the state after it.

    Shape:
        bins (B, C_in, H, W), state as :meth:`SNN.zero_state` -> (B, J, H, W), state
    """
    layers = snn.spiking_layers()

    def lif(name: str, x: Tensor, v: Tensor) -> tuple[Tensor, Tensor]:
        layer = layers[name]
        current = layer.bn(layer.conv(x))
        h = v + (current - v) / layer.tau
        s = spike_rule(name, h, layer.v_th)
        return s, h - s * layer.v_th

    last, membranes = run_layers(snn.config.layer_specs(), bins, state, lif, channel_dim=1)
    delta: Tensor = snn.head(last)  # (B, J, H, W)
    out = readout_step(state.readout, delta, snn.config)
    return out, SNNState._make([*membranes, out])


def fold_batchnorm(conv: nn.Conv2d, bn: nn.BatchNorm2d) -> nn.Conv2d:
    """A convolution with bias equal to ``bn(conv(x))`` in inference mode.

    ``bn(y) = gamma (y - mean) / sqrt(var + eps) + beta``: scale each output channel's weights
    by ``gamma / sqrt(var + eps)`` and set the bias to ``beta - mean * that scale`` (plus the
    scaled original bias).
    """
    if bn.running_mean is None or bn.running_var is None:
        raise ValueError("BatchNorm without running statistics cannot be folded")
    scale = bn.weight.detach() / torch.sqrt(bn.running_var + bn.eps)
    fused = copy.deepcopy(conv)
    fused.weight = nn.Parameter(conv.weight.detach() * scale[:, None, None, None])
    bias = conv.bias.detach() if conv.bias is not None else torch.zeros_like(bn.running_mean)
    fused.bias = nn.Parameter(bn.bias.detach() + (bias - bn.running_mean) * scale)
    return fused


def fold_snn_batchnorm(snn: SNN) -> SNN:
    """Fold every spiking layer's BatchNorm into its convolution, in place (inference only)."""
    for layer in snn.spiking_layers().values():
        if isinstance(layer.bn, nn.BatchNorm2d):
            layer.conv = fold_batchnorm(layer.conv, layer.bn)
            layer.bn = nn.Identity()
    return snn
