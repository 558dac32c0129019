"""Event-driven inference of one :class:`~hybridpose.nn.snn.SNN` step: convolutions as scatters.

With 1 ms bins a camera gives a few events per bin and the trained network fires a few percent
of its neurons per step, so a dense convolution multiplies mostly zeros. Here each spiking
layer's input current is built by scattering one weight column per nonzero input::

    z[:, oy, ox] = bias + sum over inputs (c, iy, ix) with value s != 0 of s * W[:, c, ky, kx]
                   for every (ky, kx) with oy * stride - pad + ky = iy, ox * stride - pad + kx = ix

exactly the cross-correlation ``nn.Conv2d`` computes (zero padding ``pad``), then the LIF step of
:mod:`hybridpose.nn.lif` runs in the same float32 arithmetic, and the positions that spike
become the next layer's sparse input. The layers and their inputs are the SNN's declared
wiring (:meth:`SNNConfig.layer_specs`); the residual ``res2 + down3`` is scattered as its two
spike lists with the same weights (the sum of the scatters is the scatter of the sum).

Nearest x2 upsampling before a stride-1 convolution needs no upsampled map: one low-resolution
input at ``(iy, ix)`` is the four inputs ``(2 iy + a, 2 ix + b)``, ``a, b in {0, 1}``, with the
same value, and their four scatters add up to one scatter from ``(2 iy, 2 ix)`` of the kernel
``U[ky, kx] = sum_{a, b} W[ky - a, kx - b]`` (size ``k + 1``, padding ``pad + 1``, ``W`` zero
outside ``0..k-1``): 36 instead of 100 output positions per input for a 5x5 kernel.

Lazy leak: a neuron without input current but its bias ``b`` moves as
``v <- v + (b - v) / tau``, so after ``k`` such steps ``v_k = b + (v - b) (1 - 1 / tau) ** k``,
and it cannot spike if ``v < v_th`` and ``b < v_th`` (``v_k`` stays between ``v`` and ``b``).
So a step updates only the positions some input reached, plus those left at or above the
threshold by the previous step (``hot``: a soft reset can leave ``v >= v_th``); the others keep
the step their membranes are current at (``stamp``) and get the closed form when next reached,
or when the state is read (:meth:`EventDrivenSNN.state`). A layer with a channel whose bias
reaches the threshold fires without input and is updated in full (``tonic``; the shipped SNNs'
``down2`` and ``down3``). :meth:`~EventDrivenSNN.set_state` (an ANN's initialisation) marks
the positions it leaves at or above the threshold as hot, like a step: the first step after it
updates those, not every neuron. Each
scatter widens, per output row, the span of columns it reached; the LIF then runs over each
row's span, contiguous channels-last memory, as one flat loop.

The readout and its decoding are :mod:`hybridpose.nn.event_readout`'s: a dense pass per step,
for exactness (that module says why it is not lazy), and at decay 1 each joint's maximum
followed by candidates instead of a scan of the map. Decoded poses come from the engine
(:meth:`EventDrivenSNN.step_uv`) without the heatmaps being copied out.

BatchNorm is folded into each convolution's bias (running statistics, as in evaluation). The
heatmaps agree with ``SNN.step`` in evaluation mode up to float32 rounding (the sums run in
another order, and the closed-form leak rounds differently from the iterated one: about
1e-6); a spike can therefore differ only where the reference's ``h`` lies within that rounding
of the threshold.

Layout (why it is fast): membranes are stored channels-last ``(H, W, C)`` per sample and each
kernel by parity and in reverse column order (:func:`_scatter_layout`), so one input adds one
contiguous run of weights to one contiguous run of currents per kernel row: the innermost loop
vectorises whatever the channel count. Two or four inputs at one position share the pass
(spikes come in bursts synchronised across channels). One layer's currents live in a buffer
the size of the largest layer, which stays in cache. Spikes are listed from the flags of a
span eight at a time, jumping to each set flag (no branch per neuron). One compiled call runs
the whole step; every buffer is allocated once per geometry (:meth:`EventDrivenSNN.reset`),
none per step.

Measured on the shipped 1 kHz hybrid (``cpu-1khz``, 64x64; a demo recording at 1 ms bins,
~10 events per camera and bin, both cameras in one batch, inside the streaming predictor, as
fast as possible): the network fires ~660 spikes per step and sample (8.7 k at the first step
after an ANN initialisation, then decaying over ~10 steps) and the lazy leak updates ~37 k of
its 127 k neurons per step (12.3 k in ``down2`` and ``down3``, tonic). Step and decoding:
0.23 ms at the median, 1.33-1.39 ms at the 99th percentile (the steps after an
initialisation); with the ANN beside the stream (:mod:`hybridpose.reinit`, a 50 ms lead:
those steps run in the worker) 0.17-0.18 and 0.50-0.51 ms. Per step of the latter (cycle
counters): the scatters ~66 us, the LIF ~75, the readout ~21 and its decoding ~30, the
input ~2. The LIF costs 0.7 ns per neuron in the full updates of ``down2`` and ``down3``
against 2-5 ns in ``enc``, ``down1`` and ``up3``, whose spans are short and whose positions
mostly need the leak's catch-up (their membranes untouched for many steps): not the
arithmetic (its loop runs 8 lanes wide since a boolean replaced an int64 spike count, which
held LLVM to 4 lanes, and measured no faster).
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt
import torch
from torch import Tensor, nn

from hybridpose._jit import jit
from hybridpose.nn import event_readout
from hybridpose.nn.snn import (
    DOWNSAMPLING,
    SNN,
    SNNConfig,
    SNNState,
    SpikingConv,
    fold_batchnorm,
)
from hybridpose.nn.snn import INPUT as INPUT_NAME

LAYERS = tuple(spec.name for spec in SNNConfig().layer_specs())
"""The spiking layers in :class:`SNNState` order (also their order of computation)."""

INPUT = len(LAYERS)
"""Source id of the input events in the synapse table (the layers are 0..8)."""


def _inputs(config: SNNConfig) -> dict[str, tuple[tuple[tuple[int, ...], bool], ...]]:
    """Each spiking layer's input as the SNN's wiring declares it
    (:meth:`SNNConfig.layer_specs`): the blocks of its concatenation, each the source ids
    summed (the residual res2 + down3; :data:`INPUT` for the events) and whether it is
    upsampled x2 first."""
    ids = {name: i for i, name in enumerate(LAYERS)} | {INPUT_NAME: INPUT}
    return {
        spec.name: tuple(
            (tuple(ids[s] for s in block.sources), block.upsample) for block in spec.inputs
        )
        for spec in config.layer_specs()
    }


# Columns of the layer table (one row per layer, row INPUT for the input events).
_C, _H, _W, _V_OFF, _BIAS_OFF, _SP_OFF, _G0, _G1, _P_OFF, _R_OFF, _TONIC, _TB_OFF = range(12)
# Columns of the synapse table (one row per (layer, source), in order of computation).
_DST, _SRC, _W_OFF, _K, _STRIDE, _PAD, _SCALE = range(7)
# Entries of the head table.
_HEAD_W, _HEAD_B, _HEAD_J = range(3)

F32 = npt.NDArray[np.float32]
I32 = npt.NDArray[np.int32]
I64 = npt.NDArray[np.int64]
B1 = npt.NDArray[np.bool_]

_DE_BRUIJN = np.uint64(0x03F79D71B4CB0A89)
_BIT_INDEX = np.zeros(64, dtype=np.int64)
_BIT_INDEX[((np.uint64(1) << np.arange(64, dtype=np.uint64)) * _DE_BRUIJN) >> np.uint64(58)] = (
    np.arange(64)
)
"""The index of a 64-bit word's single set bit ``b``: ``_BIT_INDEX[(b * _DE_BRUIJN) >> 58]``
(a de Bruijn sequence: the top six bits of the product differ for each of the 64 bits)."""

LANES = 8
"""The readout's joints are padded to a multiple of this (an AVX2 vector of float32)."""

BLOCK_LANES = 64
"""Floats per iteration of the readout's dense passes (whole pixels: 64 // JP of them). LLVM
vectorises a loop 8 floats wide and 4 deep: a loop over one pixel's 16 joints ran entirely
in its scalar tail (decoding took 2.5x longer)."""

DECAY_TABLE = 4096
"""Steps for which the leak factor ``(1 - 1 / tau) ** k`` is tabulated (beyond: computed)."""


def _upsampled_kernel(w: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
    """The kernel that scatters one input of a x2 nearest-upsampled map (module docstring).

    Shape:
        ``w`` (C_out, C_in, k, k) -> (C_out, C_in, k + 1, k + 1).
    """
    k = w.shape[-1]
    u = np.zeros((*w.shape[:2], k + 1, k + 1))
    for a in (0, 1):
        for b in (0, 1):
            u[:, :, a : a + k, b : b + k] += w
    return u


def _scatter_layout(w: npt.NDArray[np.float64], stride: int) -> npt.NDArray[np.float64]:
    """A kernel laid out for :func:`_scatter`: one input's outputs along a row are contiguous.

    Along a row, an input at (padded) column ``tx`` reaches the kernel columns ``kx`` of its
    parity ``tx % stride`` and the outputs ``ox = (tx - kx) / stride``, which decrease as
    ``kx`` grows. Stored by parity and in reverse column order, the ``m``-th stored column
    of parity ``r`` (``M_r`` columns) is ``kx = r + stride * (M_r - 1 - m)``: a scatter then
    adds one contiguous run of weights (columns x output channels) to one contiguous run of
    the channels-last output row.

    Shape:
        ``w`` (C_out, C_in, k, k) -> (C_in, k, stride, ceil(k / stride), C_out).
    """
    c_out, c_in, k, _ = w.shape
    out = np.zeros((c_in, k, stride, -(-k // stride), c_out))
    for r in range(stride):
        columns = range(r, k, stride)
        for m, kx in enumerate(reversed(columns)):
            out[:, :, r, m, :] = w[:, :, :, kx].transpose(1, 2, 0)
    return out


def _folded(layer: SpikingConv) -> tuple[nn.Conv2d, Tensor]:
    """A layer's convolution with its BatchNorm folded into the bias, and the bias."""
    conv = layer.conv
    if isinstance(layer.bn, nn.BatchNorm2d):
        conv = fold_batchnorm(conv, layer.bn)  # a copy: the caller's layer is left as it is
    elif not isinstance(layer.bn, nn.Identity):
        raise TypeError(f"cannot fold a {type(layer.bn).__name__} into a convolution")
    bias = conv.bias if conv.bias is not None else torch.zeros(conv.out_channels)
    return conv, bias.detach()


class EventDrivenSNN:
    """One-step inference of a trained :class:`SNN` whose cost follows the spikes.

    A snapshot: the weights (BatchNorm folded), ``tau`` and ``v_th`` of each layer and the head
    are copied at construction; later changes to ``snn`` do not reach it, and ``snn`` itself is
    never modified. The state lives inside (numpy, float32, channels-last, membranes brought up
    to date lazily) and is read and written as an :class:`SNNState` of torch tensors.

    Not thread-safe (one set of buffers); the compiled step releases the GIL.

    Example::

        engine = EventDrivenSNN(snn)
        engine.reset(batch=1, height=64, width=64)    # or engine.set_state(ann_state)
        uv = engine.step_uv(counts)                   # (1, J, 2): decoded, no heatmaps written
        heatmaps = engine.step(counts)                # (1, J, 64, 64), like snn.step in eval
    """

    def __init__(self, snn: SNN) -> None:
        """Copy ``snn``'s weights in inference form (see the class docstring).

        Args:
            snn: the trained network (any mode; its BatchNorm running statistics are used).
        """
        self.config: SNNConfig = snn.config
        layers = snn.spiking_layers()
        weights: list[npt.NDArray[np.float32]] = []
        offset = 0

        def add(array: npt.NDArray[np.float64]) -> int:
            nonlocal offset
            start = offset
            flat = np.ascontiguousarray(array, dtype=np.float32).reshape(-1)
            weights.append(flat)
            offset += flat.size
            return start

        channels = [layers[name].conv.out_channels for name in LAYERS]
        wiring = _inputs(self.config)
        groups: list[list[int]] = []
        bias_offsets: list[int] = []
        tonic: list[bool] = []
        taus: list[float] = []
        for index, name in enumerate(LAYERS):
            layer = layers[name]
            conv, bias = _folded(layer)
            w = conv.weight.detach().to("cpu", torch.float64).numpy()  # (C_out, C_in, k, k)
            k, stride, pad = conv.kernel_size[0], conv.stride[0], conv.padding
            if (
                conv.kernel_size != (k, k) or conv.stride != (stride, stride)
                or not isinstance(pad, tuple) or pad != (k // 2, k // 2)
                or conv.dilation != (1, 1) or conv.groups != 1
            ):  # fmt: skip
                raise ValueError(f"{name}: unsupported convolution {conv}")
            first = 0
            for sources, upsampled in wiring[name]:
                c_in = self.config.in_channels if sources[0] == INPUT else channels[sources[0]]
                part = w[:, first : first + c_in]
                first += c_in
                if upsampled:
                    if stride != 1:
                        raise ValueError(f"{name}: upsampled input needs stride 1")
                    part, k_s, pad_s, scale = _upsampled_kernel(part), k + 1, k // 2 + 1, 2
                else:
                    k_s, pad_s, scale = k, k // 2, 1
                w_off = add(_scatter_layout(part, stride))
                # a sum of sources is scattered source by source, with the same weights
                for source in sources:
                    groups.append([index, source, w_off, k_s, stride, pad_s, scale])
            if first != w.shape[1]:
                raise ValueError(f"{name}: {w.shape[1]} input channels, expected {first}")
            bias32 = bias.to(torch.float32).numpy()
            bias_offsets.append(add(bias32))
            tau = float(layer.tau.detach())
            # a neuron whose bias reaches the threshold may fire without input: its layer is
            # updated in full every step (module docstring); so is one whose leak would
            # overshoot (a learned tau below 1: the closed form's v_k then oscillates)
            tonic.append(bool((bias32 >= np.float32(layer.v_th)).any()) or tau <= 1.0)
            taus.append(tau)
        head_w = snn.head.weight.detach().to("cpu", torch.float64).numpy()  # (J, C, 1, 1)
        head_b = (
            snn.head.bias.detach().to("cpu", torch.float64).numpy()
            if snn.head.bias is not None
            else np.zeros(head_w.shape[0])
        )
        # the head's weights as (C, JP), JP = J padded to LANES: one spike's column is
        # contiguous and its addition vectorised; the bias repeated over a block of pixels
        joints = head_w.shape[0]
        padded = -(-joints // LANES) * LANES
        block = max(1, BLOCK_LANES // padded)
        columns = np.zeros((head_w.shape[1], padded))
        columns[:, :joints] = head_w[:, :, 0, 0].T
        bias_block = np.tile(np.pad(head_b, (0, padded - joints)), block)
        self._head = np.array([add(columns), add(bias_block), padded, block], dtype=np.int64)
        self._weights: F32 = np.concatenate(weights)
        self._groups: I64 = np.array(groups, dtype=np.int64)
        self._bias_offsets = bias_offsets
        self._tonic = tonic
        self._taus: F32 = np.array(taus, dtype=np.float32)
        self._v_th: F32 = np.array([layers[n].v_th for n in LAYERS], dtype=np.float32)
        # the leak of k steps without input, per layer: (1 - 1 / tau) ** k
        skipped = np.arange(DECAY_TABLE, dtype=np.float64)
        self._leak: F32 = ((1.0 - 1.0 / np.array(taus)[:, None]) ** skipped).astype(np.float32)
        # the readout forgets at once without the delta readout: decay 0
        self._decay = float(self.config.readout_decay) if self.config.delta_readout else 0.0
        self._geometry: tuple[int, int, int] | None = None

    @property
    def tonic_layers(self) -> tuple[str, ...]:
        """The layers updated in full every step: a bias reaches the threshold (or a learned
        ``tau`` fell to 1 or below)."""
        return tuple(name for name, t in zip(LAYERS, self._tonic, strict=True) if t)

    # ----------------------------------------------------------------------------- state

    def reset(self, batch: int, height: int, width: int) -> None:
        """Start from the empty state, as :meth:`SNN.zero_state` (allocates the buffers)."""
        self._clear(batch, height, width)
        self._mark_hot()

    def _clear(self, batch: int, height: int, width: int) -> None:
        """Zero every buffer of this geometry (allocated when it is new); no hot list."""
        if batch < 1:
            raise ValueError(f"batch must be >= 1, got {batch}")
        if height % DOWNSAMPLING or width % DOWNSAMPLING or min(height, width) < 1:
            raise ValueError(f"input size {height}x{width}: both must be multiples of 8")
        if self._geometry != (batch, height, width):
            self._allocate(batch, height, width)
        self._v.fill(0.0)
        self._acc.fill(0.0)
        self._n_spikes.fill(0)
        self._n_updated.fill(0)
        self._readout.fill(0.0)
        # every membrane is current as of now
        self._stamp.fill(self._clock[0])
        # an empty map has no candidates: its first decoding scans
        self._is_cand.fill(False)
        self._rstate.fill(0)

    def _mark_hot(self) -> None:
        """List each layer's positions with a membrane at or above the threshold: they may
        fire at the next step without input, so it updates them (and those inputs reach)."""
        _list_hot(self._v, self._layers, self._v_th, self._hot, self._n_hot)

    def _allocate(self, batch: int, height: int, width: int) -> None:
        rows = []
        v_off = sp_off = p_off = r_off = 0
        tiled: list[F32] = []  # each layer's bias repeated along a row: see _lif
        tb_off = 0
        for index, spec in enumerate(self.config.layer_specs()):
            h, w = height // spec.scale, width // spec.scale
            # the layer's rows of the synapse table
            g0, g1 = np.flatnonzero(self._groups[:, _DST] == index)[[0, -1]]
            rows.append(
                [spec.channels, h, w, v_off, self._bias_offsets[index], sp_off, g0, g1 + 1,
                 p_off, r_off, self._tonic[index], tb_off]
            )  # fmt: skip
            v_off += spec.channels * h * w
            sp_off += spec.channels * h * w  # room for every neuron to spike
            p_off += h * w
            r_off += h
            start = self._bias_offsets[index]
            tiled.append(np.tile(self._weights[start : start + spec.channels], w))
            tb_off += w * spec.channels
        rows.append([self.config.in_channels, height, width, 0, 0, sp_off, 0, 0, 0, 0, 0, 0])
        self._tiled_bias: F32 = np.concatenate(tiled)
        sp_off += self.config.in_channels * height * width
        self._layers: I64 = np.array(rows, dtype=np.int64)
        self._v: F32 = np.zeros((batch, v_off), dtype=np.float32)  # membranes, channels-last
        # one layer's currents at a time (zero between layers): small enough to stay in cache
        largest = max(row[_C] * row[_H] * row[_W] for row in rows[:INPUT])
        self._acc: F32 = np.zeros((batch, largest), dtype=np.float32)
        self._spikes: I32 = np.zeros((batch, sp_off, 3), dtype=np.int32)  # (y, x, c) lists
        self._values: F32 = np.zeros((batch, sp_off), dtype=np.float32)
        self._n_spikes: I64 = np.zeros((batch, INPUT + 1), dtype=np.int64)
        self._n_updated: I64 = np.zeros((batch, INPUT), dtype=np.int64)
        # one row's spike flags, padded to whole 8-byte words
        self._fired: B1 = np.zeros((batch, max(r[_C] * r[_W] for r in rows) + 8), dtype=np.bool_)
        # lazy leak: the step each position's membranes are current at, the positions to
        # update next step whatever their input, the span of columns to update in each row
        self._clock: I64 = np.zeros(1, dtype=np.int64)  # steps taken
        self._stamp: I64 = np.zeros((batch, p_off), dtype=np.int64)
        self._hot: I32 = np.zeros((batch, p_off), dtype=np.int32)
        self._n_hot: I64 = np.zeros((batch, INPUT), dtype=np.int64)
        self._span: I32 = np.empty((batch, r_off, 2), dtype=np.int32)
        for row in rows[:INPUT]:
            self._span[:, row[_R_OFF] : row[_R_OFF] + row[_H]] = (row[_W], -1)  # empty
        # the readout, pixel-major, and its decoding's scratch (event_readout)
        padded, pixels = int(self._head[2]), height * width
        self._readout: F32 = np.zeros((batch, pixels, padded), dtype=np.float32)
        lanes = padded * int(self._head[3])  # a block of pixels
        self._delta: F32 = np.zeros((batch, padded), dtype=np.float32)
        self._best: F32 = np.zeros((batch, lanes), dtype=np.float32)
        self._best_pixel: I32 = np.zeros((batch, lanes), dtype=np.int32)
        joints = self.config.joints
        self._uv: F32 = np.zeros((batch, joints, 2), dtype=np.float32)
        # the candidates of the decoding at decay 1 (event_readout.follow)
        self._floor: F32 = np.zeros((batch, joints), dtype=np.float32)
        self._cand: I32 = np.zeros((batch, event_readout.CANDIDATES), dtype=np.int32)
        self._is_cand: B1 = np.zeros((batch, pixels), dtype=np.bool_)
        self._rstate: I64 = np.zeros((batch, 2), dtype=np.int64)
        self._geometry = (batch, height, width)

    def _layer_view(self, index: int) -> F32:
        """Layer ``index``'s membranes as a (B, C, H, W) view of the state buffer (those of
        positions not updated lately lag behind: see :meth:`_catch_up`)."""
        return self._layer_block(index).transpose(0, 3, 1, 2)

    def _layer_block(self, index: int) -> F32:
        """Layer ``index``'s membranes as stored: a (B, H, W, C) view of the state buffer."""
        assert self._geometry is not None
        c, h, w, off = (int(n) for n in self._layers[index, :4])
        return self._v[:, off : off + c * h * w].reshape(-1, h, w, c)

    def _catch_up(self) -> None:
        """Bring every membrane up to date (the leak of the steps a position was skipped)."""
        for b in range(self._v.shape[0]):
            for layer in range(INPUT):
                _leak_all(
                    self._v[b], self._stamp[b], self._layers[layer], self._weights,
                    self._leak[layer], self._taus[layer], self._clock[0],
                )  # fmt: skip

    def state(self) -> SNNState:
        """A copy of the current state as torch tensors (CPU, float32).

        Shape:
            as :meth:`SNN.zero_state`: layers (B, C, H / s, W / s), readout (B, J, H, W).
        """
        self._require_state()
        self._catch_up()
        tensors = [torch.from_numpy(np.ascontiguousarray(self._layer_view(i))) for i in range(9)]
        return SNNState._make([*tensors, self.heatmaps()])

    def heatmaps(self) -> Tensor:
        """The current readout (the last step's heatmaps), a new tensor.

        Shape:
            (B, J, H, W)
        """
        batch, height, width = self._require_state()
        out = np.empty((batch, self.config.joints, height * width), dtype=np.float32)
        for b in range(batch):
            event_readout.heatmaps(self._readout[b], out[b])
        return torch.from_numpy(out.reshape(batch, -1, height, width))

    def set_state(self, state: SNNState) -> None:
        """Continue from ``state`` (copied in; e.g. the ANN's state at an initialisation).

        Raises:
            ValueError: the tensors' shapes do not fit this network.
        """
        if state.enc.dim() != 4:
            raise ValueError(f"state.enc must be (B, C, H, W), got {tuple(state.enc.shape)}")
        batch, _, height, width = state.enc.shape
        for index, spec in enumerate(self.config.layer_specs()):
            want = (batch, spec.channels, height // spec.scale, width // spec.scale)
            if tuple(state[index].shape) != want:
                raise ValueError(f"state.{spec.name}: shape {tuple(state[index].shape)} != {want}")
        want_readout = (batch, self.config.joints, height, width)
        if tuple(state.readout.shape) != want_readout:
            raise ValueError(f"state.readout: shape {tuple(state.readout.shape)} != {want_readout}")
        self._clear(batch, height, width)
        for index in range(9):
            tensor = state[index]
            if tensor.is_contiguous(memory_format=torch.channels_last):  # the stream's ANN's
                # stored as the engine stores it: a plain copy, not a transposing one
                self._layer_block(index)[...] = _as_numpy(tensor.permute(0, 2, 3, 1))
            else:
                self._layer_view(index)[...] = _as_numpy(tensor)
        self._mark_hot()
        values = _as_numpy(state.readout).reshape(batch, self.config.joints, height * width)
        for b in range(batch):
            event_readout.set_readout(self._readout[b], values[b])
            if self._decay == 1.0:  # chosen here, in the stream's worker when there is one
                event_readout.new_candidates(
                    self._readout[b], self._floor[b], self._cand[b], self._is_cand[b],
                    self._rstate[b],
                )  # fmt: skip

    def _require_state(self) -> tuple[int, int, int]:
        if self._geometry is None:
            raise RuntimeError("no state: call reset() or set_state() first")
        return self._geometry

    # ----------------------------------------------------------------------------- step

    def _run(self, x: Tensor | npt.NDArray[np.floating], decode: bool) -> None:
        batch, height, width = self._require_state()
        counts = _as_numpy(x)
        want = (batch, self.config.in_channels, height, width)
        if counts.shape != want:
            raise ValueError(f"x must be {want} (the state's geometry), got {counts.shape}")
        _step(
            counts, self._weights, self._tiled_bias, self._groups, self._layers, self._taus,
            self._v_th, self._leak, self._clock, self._v, self._acc, self._stamp,
            self._hot, self._n_hot, self._span, self._spikes, self._values, self._n_spikes,
            self._n_updated, self._fired, self._head, self._decay, self._readout, self._delta,
            self._best, self._best_pixel, decode, self._uv, self._floor, self._cand,
            self._is_cand, self._rstate,
        )  # fmt: skip

    def step(self, x: Tensor | npt.NDArray[np.floating]) -> Tensor:
        """Run one bin and update the state; equal to ``SNN.step`` in evaluation mode.

        Args:
            x: event counts of the bin (any real values work; zeros cost nothing).

        Returns:
            the heatmaps, a new tensor (:meth:`heatmaps`; :meth:`step_uv` skips writing them).

        Shape:
            ``x`` (B, C_in, H, W) -> (B, J, H, W), B, H, W those of the state.
        """
        self._run(x, decode=False)
        return self.heatmaps()

    def step_uv(self, x: Tensor | npt.NDArray[np.floating]) -> npt.NDArray[np.float32]:
        """Run one bin and return the decoded joints: equal to
        ``decode_array(self.step(x).numpy())`` without the heatmaps being written.

        Shape:
            ``x`` (B, C_in, H, W) -> (B, J, 2) float32, (u, v) in heatmap pixels (a new array).
        """
        self._run(x, decode=True)
        return self._uv.copy()

    def advance(self, x: Tensor | npt.NDArray[np.floating]) -> None:
        """Run one bin and update the state, with no output (:meth:`heatmaps` gives it)."""
        self._run(x, decode=False)

    def spike_counts(self) -> dict[str, npt.NDArray[np.int64]]:
        """The number of spikes of each layer in the last step, per sample (shape (B,))."""
        self._require_state()
        return {name: self._n_spikes[:, i].copy() for i, name in enumerate(LAYERS)}

    def updated_counts(self) -> dict[str, npt.NDArray[np.int64]]:
        """The number of neurons of each layer whose LIF step ran in the last step, per sample
        (shape (B,)): those in the spans reached by an input or left above the threshold, all
        of a tonic layer's; the others' leak waits."""
        self._require_state()
        return {name: self._n_updated[:, i].copy() for i, name in enumerate(LAYERS)}

    def last_spikes(self) -> dict[str, Tensor]:
        """The spikes of the last step as dense maps (for tests and inspection, not speed).

        Shape:
            each layer (B, C, H / s, W / s), float32 0/1.
        """
        batch = self._require_state()[0]
        maps = {}
        for index, name in enumerate(LAYERS):
            c, h, w = (int(n) for n in self._layers[index, :3])
            sp_off = int(self._layers[index, _SP_OFF])
            dense = np.zeros((batch, c, h, w), dtype=np.float32)
            for b in range(batch):
                n = int(self._n_spikes[b, index])
                y, x, ch = self._spikes[b, sp_off : sp_off + n].T
                dense[b, ch, y, x] = 1.0
            maps[name] = torch.from_numpy(dense)
        return maps


def _as_numpy(x: Tensor | npt.NDArray[np.floating]) -> F32:
    """``x`` as a C-contiguous float32 numpy array (no copy when it already is one)."""
    if isinstance(x, Tensor):
        x = x.detach().to("cpu", torch.float32).contiguous().numpy()
    return np.ascontiguousarray(x, dtype=np.float32)


# --------------------------------------------------------------------------------- kernels


@jit
def _step(
    x: F32,
    weights: F32,
    tiled_bias: F32,
    groups: I64,
    layers: I64,
    taus: F32,
    v_th: F32,
    leak: F32,
    clock: I64,
    v: F32,
    acc: F32,
    stamp: I64,
    hot: I32,
    n_hot: I64,
    span: I32,
    spikes: I32,
    values: F32,
    n_spikes: I64,
    n_updated: I64,
    fired: B1,
    head: I64,
    decay: float,
    readout: F32,
    delta: F32,
    best: F32,
    best_pixel: I32,
    decode: bool,
    uv: F32,
    floor: F32,
    cand: I32,
    is_cand: B1,
    rstate: I64,
) -> None:
    """One step of the whole network, in place; see the module docstring.

    Per sample ``b``: ``x[b]`` (C_in, H, W); ``v[b]`` the membranes, channels-last per layer
    at the offsets of ``layers``; ``acc[b]`` one layer's currents; ``spikes[b]`` (capacity,
    3) the (y, x, c) lists of each layer and of the input, ``values[b]`` their values,
    ``n_spikes[b]`` (10) their lengths; ``stamp[b]``, ``hot[b]``, ``n_hot[b]``, ``span[b]``
    the lazy leak's bookkeeping (positions, rows). The readout arrays are
    :mod:`.event_readout`'s. Layer by layer, each for all samples: the samples share the
    layer's weights while they are in cache.

    One core: running the samples of a batch of 2 on both cores (numba.prange) was 1.5x faster
    when the other core was idle and up to 10x slower when another process kept it busy.
    """
    batch = x.shape[0]
    clock[0] += 1
    now = clock[0]
    for b in range(batch):
        _events(x, b, layers, spikes[b], values[b], n_spikes[b])
    for layer in range(INPUT):
        for b in range(batch):
            _layer(
                layer, weights, tiled_bias, groups, layers, taus, v_th, leak[layer], now,
                v[b], acc[b], stamp[b], hot[b], n_hot[b], span[b], spikes[b], values[b],
                n_spikes[b], n_updated[b], fired[b],
            )  # fmt: skip
    height, width = x.shape[2], x.shape[3]
    sp_off = layers[INPUT - 1, _SP_OFF]
    for b in range(batch):
        n = n_spikes[b, INPUT - 1]
        event_readout.update_readout(
            readout[b], weights, head, decay, spikes[b], sp_off, n, width, delta[b]
        )
        if decay != 1.0:
            if decode:
                event_readout.decode(readout[b], best[b], best_pixel[b], height, width, uv[b])
            continue
        # the maxima followed by candidates (event_readout.follow), not a scan of the map
        event_readout.follow(
            readout[b], weights, head, spikes[b], sp_off, n, width, floor[b], cand[b],
            is_cand[b], rstate[b],
        )  # fmt: skip
        if decode:
            event_readout.decode_followed(
                readout[b], best[b], best_pixel[b], height, width, uv[b], floor[b], cand[b],
                is_cand[b], rstate[b],
            )  # fmt: skip


@jit
def _events(x: F32, b: int, layers: I64, sp: I32, values: F32, n_spikes: I64) -> None:
    """List sample ``b``'s nonzero input counts: the first layer's sparse input."""
    start = layers[INPUT, _SP_OFF]
    n = 0
    for c in range(x.shape[1]):
        for y in range(x.shape[2]):
            # a bin holds a few events: test each row at once (a vectorised reduction), and
            # look for them only in the rows that have some
            nonzero = False
            for xx in range(x.shape[3]):
                nonzero |= x[b, c, y, xx] != 0
            if not nonzero:
                continue
            for xx in range(x.shape[3]):
                value = x[b, c, y, xx]
                if value != 0:
                    sp[start + n, 0] = y
                    sp[start + n, 1] = xx
                    sp[start + n, 2] = c
                    values[start + n] = value
                    n += 1
    n_spikes[INPUT] = n


@jit
def _layer(
    layer: int,
    weights: F32,
    tiled_bias: F32,
    groups: I64,
    layers: I64,
    taus: F32,
    v_th: F32,
    leak: F32,
    now: int,
    v: F32,
    acc: F32,
    stamp: I64,
    hot: I32,
    n_hot: I64,
    span: I32,
    sp: I32,
    values: F32,
    n_spikes: I64,
    n_updated: I64,
    fired: B1,
) -> None:
    """One spiking layer of one sample: the rows' spans of positions to update (all of them
    for a tonic layer, else the hot positions: left at or above the threshold by the last
    step or by the state set), each input list
    scattered (widening the spans), then the LIF over the spans."""
    c_out, h_out, w_out = layers[layer, _C], layers[layer, _H], layers[layer, _W]
    p_off, r_off = layers[layer, _P_OFF], layers[layer, _R_OFF]
    rows = span[r_off : r_off + h_out]
    if layers[layer, _TONIC]:
        rows[:, 0] = 0
        rows[:, 1] = w_out - 1
    else:
        for i in range(n_hot[layer]):
            p = hot[p_off + i]
            y, x = p // w_out, p % w_out
            rows[y, 0] = min(rows[y, 0], x)
            rows[y, 1] = max(rows[y, 1], x)
    for g in range(layers[layer, _G0], layers[layer, _G1]):
        src = groups[g, _SRC]
        _scatter(
            acc, rows, c_out, h_out, w_out, weights, groups[g, _W_OFF], groups[g, _K],
            groups[g, _STRIDE], groups[g, _PAD], groups[g, _SCALE], sp, values,
            layers[src, _SP_OFF], n_spikes[src],
        )  # fmt: skip
    n_spikes[layer], n_hot[layer], n_updated[layer] = _lif(
        acc, v, rows, stamp[p_off : p_off + h_out * w_out], hot[p_off : p_off + h_out * w_out],
        layers[layer], weights, tiled_bias, leak, taus[layer], v_th[layer], now, sp, values,
        fired,
    )  # fmt: skip


@jit
def _scatter(
    acc: F32,
    rows: I32,
    c_out: int,
    h_out: int,
    w_out: int,
    weights: F32,
    w_off: int,
    k: int,
    stride: int,
    pad: int,
    scale: int,
    sp: I32,
    values: F32,
    sp_off: int,
    n: int,
) -> None:
    """Add ``value * W[:, c, ky, kx]`` at every output each listed input reaches, and widen
    each output row's span ``rows[oy] = (first, last)`` column to cover the outputs reached.

    Input ``(y, x)`` sits at ``(scale * y, scale * x)`` of the convolution's input; output row
    ``oy`` gets kernel row ``ky = scale * y + pad - stride * oy`` (as nn.Conv2d), so the valid
    rows are those of the input's parity that land inside ``0..h_out - 1``; columns likewise,
    as one contiguous run per row (weights laid out by :func:`_scatter_layout`).
    """
    m_max = (k + stride - 1) // stride
    row_stride = stride * m_max * c_out  # weights of one kernel row
    channel_stride = k * row_stride
    i = 0
    while i < n:
        y, x = sp[sp_off + i, 0], sp[sp_off + i, 1]
        ty = y * scale + pad
        tx = x * scale + pad
        r = tx % stride
        m_r = (k - r + stride - 1) // stride  # kernel columns of parity r
        ox0 = (tx - r) // stride - (m_r - 1)  # output column of stored column 0
        m0 = max(0, -ox0)
        m1 = min(m_r - 1, w_out - 1 - ox0)
        run = (m1 - m0 + 1) * c_out
        first = w_off + (r * m_max + m0) * c_out
        # ky = ty - stride * oy: oy <= h_out - 1 bounds ky from below (same parity as ty)
        ky0 = max(ty % stride, ty - stride * (h_out - 1))
        ky1 = min(k - 1, ty)
        value = values[sp_off + i]
        w_c = first + sp[sp_off + i, 2] * channel_stride
        # two or four inputs at one position (lists are position by position) share one pass
        # over the outputs: a half or a quarter of the loads and stores of the currents
        group = 1
        if i + 1 < n and sp[sp_off + i + 1, 0] == y and sp[sp_off + i + 1, 1] == x:
            group = 2
            if i + 3 < n and sp[sp_off + i + 3, 0] == y and sp[sp_off + i + 3, 1] == x:
                group = 4
        value2 = value3 = value4 = np.float32(0.0)
        w_c2 = w_c3 = w_c4 = w_c
        if group >= 2:
            value2 = values[sp_off + i + 1]
            w_c2 = first + sp[sp_off + i + 1, 2] * channel_stride
        if group == 4:
            value3, value4 = values[sp_off + i + 2], values[sp_off + i + 3]
            w_c3 = first + sp[sp_off + i + 2, 2] * channel_stride
            w_c4 = first + sp[sp_off + i + 3, 2] * channel_stride
        for ky in range(ky0, ky1 + 1, stride):
            oy = (ty - ky) // stride
            rows[oy, 0] = min(rows[oy, 0], ox0 + m0)
            rows[oy, 1] = max(rows[oy, 1], ox0 + m1)
            # unsigned indices: numba adds no negative-index wraparound, the loop vectorises
            a = np.uint64((oy * w_out + ox0 + m0) * c_out)
            row = ky * row_stride
            wi = np.uint64(w_c + row)
            if group == 4:
                wi2, wi3, wi4 = np.uint64(w_c2 + row), np.uint64(w_c3 + row), np.uint64(w_c4 + row)
                for j in range(run):
                    q = np.uint64(j)
                    acc[a + q] += (value * weights[wi + q] + value2 * weights[wi2 + q]) + (
                        value3 * weights[wi3 + q] + value4 * weights[wi4 + q]
                    )
            elif group == 2:
                wi2 = np.uint64(w_c2 + row)
                for j in range(run):
                    q = np.uint64(j)
                    acc[a + q] += value * weights[wi + q] + value2 * weights[wi2 + q]
            else:
                for j in range(run):
                    q = np.uint64(j)
                    acc[a + q] += value * weights[wi + q]
        i += group


@jit
def _leak_factor(leak: F32, tau: np.float32, k: int) -> np.float32:
    """``(1 - 1 / tau) ** k``: tabulated, or computed beyond the table."""
    if k < leak.shape[0]:
        return np.float32(leak[k])
    return np.float32((1.0 - 1.0 / np.float64(tau)) ** k)


@jit
def _lif(
    acc: F32,
    v: F32,
    rows: I32,
    stamp: I64,
    hot: I32,
    layer: I64,
    weights: F32,
    tiled_bias: F32,
    leak: F32,
    tau: np.float32,
    v_th: np.float32,
    now: int,
    sp: I32,
    values: F32,
    fired: B1,
) -> tuple[int, int, int]:
    """The LIF step (lif.py's arithmetic) of the neurons in the rows' spans, after the leak
    of the steps each position was skipped; clears the spans.

    A span is contiguous in the channels-last layout, so its LIF is one flat loop (vectorised
    whatever the channel count) with the bias tiled along the row (``tiled_bias``). Reads and
    clears the scattered current ``acc`` (so it is zero for the next layer), lists the spikes
    at ``sp[layer's offset:]`` and the positions left at or above the threshold (they fire
    next step without input) in ``hot``. Returns the numbers of spikes, of hot positions and
    of neurons updated.
    """
    c, width = layer[_C], layer[_W]
    bias, sp_off = layer[_BIAS_OFF], layer[_SP_OFF]
    fired_words = fired.view(np.uint64)  # once per layer: a view costs as much as a row
    n = 0
    n_hot = 0
    updated = 0
    for y in range(layer[_H]):
        lo, hi = rows[y, 0], rows[y, 1]
        if lo > hi:
            continue
        rows[y, 0], rows[y, 1] = width, -1
        for x in range(lo, hi + 1):
            p = y * width + x
            skipped = now - 1 - stamp[p]
            stamp[p] = now
            if skipped > 0:  # k steps of the bias alone: v -> b + (v - b) * (1 - 1/tau)^k
                f = _leak_factor(leak, tau, skipped)
                q = layer[_V_OFF] + p * c
                for j in range(c):
                    b = weights[bias + j]
                    v[q + j] = b + (v[q + j] - b) * f
        first = (y * width + lo) * c
        a = np.uint64(first)
        q = np.uint64(layer[_V_OFF] + first)
        tb = np.uint64(layer[_TB_OFF] + lo * c)
        total = (hi - lo + 1) * c
        updated += total
        any_fired = False  # a boolean, not a count: an int64 sum held LLVM to 4 lanes
        for j in range(total):
            u = np.uint64(j)
            z = tiled_bias[tb + u] + acc[a + u]
            acc[a + u] = 0.0
            v_old = v[q + u]
            h = v_old + (z - v_old) / tau
            s = h >= v_th
            v[q + u] = h - v_th if s else h
            fired[u] = s
            any_fired |= s
        if any_fired:
            for j in range(total, -(-total // 8) * 8):
                fired[j] = False  # the last word's tail: an earlier, longer span's flags
            n, n_hot = _list_spikes(
                fired, fired_words, total, y, lo, c, width, v, q, v_th, sp, values, sp_off, n,
                hot, n_hot,
            )  # fmt: skip
    return n, n_hot, updated


@jit
def _list_spikes(
    fired: B1,
    fired_words: npt.NDArray[np.uint64],
    total: int,
    y: int,
    lo: int,
    c: int,
    width: int,
    v: F32,
    q: np.uint64,
    v_th: np.float32,
    sp: I32,
    values: F32,
    sp_off: int,
    n: int,
    hot: I32,
    n_hot: int,
) -> tuple[int, int]:
    """List the spikes flagged in ``fired[:total]`` (a span of row ``y`` from column ``lo``)
    and the positions whose membrane stays at or above the threshold. Eight flags at a time,
    and within a word only its set flags, found by their lowest bit (no branch on each flag:
    at a few percent of spikes, mispredicted branches cost more than the rest). Returns the
    new counts."""
    last = -1
    x = lo  # the position and channel of flag `start`, counted along (no division)
    start = 0
    for w in range((total + 7) // 8):
        word = fired_words[w]
        while word:  # one flag byte per neuron: each set byte's lowest bit, lowest first
            low = word & (~word + np.uint64(1))
            j = 8 * w + _BIT_INDEX[(low * _DE_BRUIJN) >> np.uint64(58)] // 8
            word ^= low
            while j - start >= c:
                start += c
                x += 1
            sp[sp_off + n, 0] = y
            sp[sp_off + n, 1] = x
            sp[sp_off + n, 2] = j - start
            values[sp_off + n] = 1.0
            n += 1
            p = y * width + x
            if v[q + np.uint64(j)] >= v_th and p != last:
                hot[n_hot] = p
                n_hot += 1
                last = p
    return n, n_hot


@jit
def _list_hot(v: F32, layers: I64, v_th: F32, hot: I32, n_hot: I64) -> None:
    """List, per sample and layer, the positions with a membrane at or above the threshold
    (one compiled pass: per layer in numpy it took half of a set_state)."""
    for b in range(v.shape[0]):
        row = v[b]
        for layer in range(INPUT):
            c, off, p_off = layers[layer, _C], layers[layer, _V_OFF], layers[layer, _P_OFF]
            threshold = v_th[layer]
            n = 0
            for p in range(layers[layer, _H] * layers[layer, _W]):
                first = np.uint64(off + p * c)  # unsigned: no wraparound, the loop vectorises
                above = False
                for j in range(c):
                    above |= row[first + np.uint64(j)] >= threshold
                if above:
                    hot[b, p_off + n] = p
                    n += 1
            n_hot[b, layer] = n


@jit
def _leak_all(
    v: F32, stamp: I64, layer: I64, weights: F32, leak: F32, tau: np.float32, now: int
) -> None:
    """Bring every membrane of one layer of one sample up to step ``now`` (no input since
    each position's stamp: the bias alone)."""
    c, height, width = layer[_C], layer[_H], layer[_W]
    off, bias, p_off = layer[_V_OFF], layer[_BIAS_OFF], layer[_P_OFF]
    for p in range(height * width):
        skipped = now - stamp[p_off + p]
        if skipped > 0:
            f = _leak_factor(leak, tau, skipped)
            for j in range(c):
                b = weights[bias + j]
                v[off + p * c + j] = b + (v[off + p * c + j] - b) * f
            stamp[p_off + p] = now
