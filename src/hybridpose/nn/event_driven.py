"""Event-driven inference of one :class:`~hybridpose.nn.snn.SNN` step: convolutions as scatters.

With 1 ms bins a camera gives a few events per bin and the trained network fires a few percent
of its neurons per step, so a dense convolution multiplies mostly zeros. Here each spiking
layer's input current is built by scattering one weight column per nonzero input::

    z[:, oy, ox] = bias + sum over inputs (c, iy, ix) with value s != 0 of s * W[:, c, ky, kx]
                   for every (ky, kx) with oy * stride - pad + ky = iy, ox * stride - pad + kx = ix

exactly the cross-correlation ``nn.Conv2d`` computes (zero padding ``pad``), then the LIF step of
:mod:`hybridpose.nn.lif` runs densely over all neurons (every membrane leaks) in the same
float32 arithmetic, and the positions that spike become the next layer's sparse input. The
layers and their inputs are the SNN's declared wiring (:meth:`SNNConfig.layer_specs`); the
residual ``res2 + down3`` is scattered as its two spike lists with the same weights (the sum of
the scatters is the scatter of the sum).

Nearest x2 upsampling before a stride-1 convolution needs no upsampled map: one low-resolution
input at ``(iy, ix)`` is the four inputs ``(2 iy + a, 2 ix + b)``, ``a, b in {0, 1}``, with the
same value, and their four scatters add up to one scatter from ``(2 iy, 2 ix)`` of the kernel
``U[ky, kx] = sum_{a, b} W[ky - a, kx - b]`` (size ``k + 1``, padding ``pad + 1``, ``W`` zero
outside ``0..k-1``): 36 instead of 100 output positions per input for a 5x5 kernel.

BatchNorm is folded into each convolution's bias (running statistics, as in evaluation). The
heatmaps agree with ``SNN.step`` in evaluation mode up to float32 rounding (the sums run in
another order: about 1e-6); a spike can therefore differ only where the reference's ``h`` lies
within that rounding of the threshold.

Layout (why it is fast): membranes are stored channels-last ``(H, W, C)`` per sample and each
kernel by parity and in reverse column order (:func:`_scatter_layout`), so one input adds one
contiguous run of weights to one contiguous run of currents per kernel row: the innermost loop
vectorises whatever the channel count. Two inputs at one position share the pass. One layer's
currents live in a buffer the size of the largest layer, which stays in cache. One compiled
call runs the whole step; every buffer is allocated once per geometry
(:meth:`EventDrivenSNN.reset`), none per step but the returned heatmaps.

Measured on the shipped ``cpu`` SNN (64x64, a 2-core CPU shared with other jobs, 1 ms bins of
3-30 events, 2.2-2.8 % of the neurons firing): 0.3-0.4 ms per step at the median and
0.45-0.65 ms at the 99th percentile at batch 1 (0.6-0.8 and 1.0-1.5 ms at batch 2), against
3.5-5 ms at the median for the dense ``SNN.step`` (folded BatchNorm, inference mode). Most of
the time goes to the scatters of ``down2``'s spikes (the busiest layer, ~12 %) into ``down3``
and ``up1``, then the dense LIF passes and the readout (memory-bound).
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt
import torch
from torch import Tensor, nn

from hybridpose._jit import jit
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
_C, _H, _W, _V_OFF, _BIAS_OFF, _TILE, _SP_OFF, _G0, _G1 = range(9)
# Columns of the synapse table (one row per (layer, source), in order of computation).
_DST, _SRC, _W_OFF, _K, _STRIDE, _PAD, _SCALE = range(7)
# Entries of the head table.
_HEAD_W, _HEAD_B, _HEAD_J = range(3)

F32 = npt.NDArray[np.float32]
I32 = npt.NDArray[np.int32]
I64 = npt.NDArray[np.int64]


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
    """One-step inference of a trained :class:`SNN` as scatters over its nonzero inputs.

    A snapshot: the weights (BatchNorm folded), ``tau`` and ``v_th`` of each layer and the head
    are copied at construction; later changes to ``snn`` do not reach it, and ``snn`` itself is
    never modified. The state lives inside (numpy, float32, channels-last) and is read and
    written as an :class:`SNNState` of torch tensors.

    Not thread-safe (one set of buffers); the compiled step releases the GIL.

    Example::

        engine = EventDrivenSNN(snn)
        engine.reset(batch=1, height=64, width=64)    # or engine.set_state(ann_state)
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
        tiles: list[int] = []
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
            # the bias repeated over whole positions, about 64 values: see _lif
            tile = max(1, 64 // channels[index])
            bias_offsets.append(add(np.tile(bias.to(torch.float64).numpy(), tile)))
            tiles.append(tile * channels[index])
            taus.append(float(layer.tau.detach()))
        head_w = snn.head.weight.detach().to("cpu", torch.float64).numpy()  # (J, C, 1, 1)
        head_b = (
            snn.head.bias.detach().to("cpu", torch.float64).numpy()
            if snn.head.bias is not None
            else np.zeros(head_w.shape[0])
        )
        self._head = np.array(
            [add(head_w[:, :, 0, 0].T), add(head_b), head_w.shape[0]], dtype=np.int64
        )  # the head's weights as (C, J): one spike's column is contiguous
        self._weights: F32 = np.concatenate(weights)
        self._groups: I64 = np.array(groups, dtype=np.int64)
        self._bias_offsets = bias_offsets
        self._tiles = tiles
        self._taus: F32 = np.array(taus, dtype=np.float32)
        self._v_th: F32 = np.array([layers[n].v_th for n in LAYERS], dtype=np.float32)
        self._decay = np.float32(self.config.readout_decay)
        self._delta_readout = bool(self.config.delta_readout)
        self._geometry: tuple[int, int, int] | None = None

    # ----------------------------------------------------------------------------- state

    def reset(self, batch: int, height: int, width: int) -> None:
        """Start from the empty state, as :meth:`SNN.zero_state` (allocates the buffers)."""
        if batch < 1:
            raise ValueError(f"batch must be >= 1, got {batch}")
        if height % DOWNSAMPLING or width % DOWNSAMPLING or min(height, width) < 1:
            raise ValueError(f"input size {height}x{width}: both must be multiples of 8")
        if self._geometry != (batch, height, width):
            self._allocate(batch, height, width)
        self._v.fill(0.0)
        self._acc.fill(0.0)
        self._readout.fill(0.0)
        self._n_spikes.fill(0)

    def _allocate(self, batch: int, height: int, width: int) -> None:
        rows = []
        v_off = sp_off = 0
        for index, spec in enumerate(self.config.layer_specs()):
            h, w = height // spec.scale, width // spec.scale
            # the layer's rows of the synapse table
            g0, g1 = np.flatnonzero(self._groups[:, _DST] == index)[[0, -1]]
            rows.append(
                [spec.channels, h, w, v_off, self._bias_offsets[index], self._tiles[index],
                 sp_off, g0, g1 + 1]
            )  # fmt: skip
            v_off += spec.channels * h * w
            sp_off += spec.channels * h * w  # room for every neuron to spike
        rows.append([self.config.in_channels, height, width, 0, 0, 0, sp_off, 0, 0])
        sp_off += self.config.in_channels * height * width
        self._layers: I64 = np.array(rows, dtype=np.int64)
        self._v: F32 = np.zeros((batch, v_off), dtype=np.float32)  # membranes, channels-last
        # one layer's currents at a time (zero between layers): small enough to stay in cache
        largest = max(row[_C] * row[_H] * row[_W] for row in rows[:INPUT])
        self._acc: F32 = np.zeros((batch, largest), dtype=np.float32)
        self._spikes: I32 = np.zeros((batch, sp_off, 3), dtype=np.int32)  # (y, x, c) lists
        self._values: F32 = np.zeros((batch, sp_off), dtype=np.float32)
        self._n_spikes: I64 = np.zeros((batch, INPUT + 1), dtype=np.int64)
        self._fired = np.zeros((batch, max(self._tiles)), dtype=np.bool_)
        joints = self.config.joints
        self._delta: F32 = np.zeros((batch, joints), dtype=np.float32)  # the head at one pixel
        self._readout: F32 = np.zeros((batch, joints, height * width), dtype=np.float32)
        self._geometry = (batch, height, width)

    def _layer_view(self, index: int) -> F32:
        """Layer ``index``'s membranes as a (B, C, H, W) view of the state buffer."""
        assert self._geometry is not None
        c, h, w, off = (int(n) for n in self._layers[index, :4])
        block = self._v[:, off : off + c * h * w].reshape(-1, h, w, c)
        return block.transpose(0, 3, 1, 2)

    def state(self) -> SNNState:
        """A copy of the current state as torch tensors (CPU, float32).

        Shape:
            as :meth:`SNN.zero_state`: layers (B, C, H / s, W / s), readout (B, J, H, W).
        """
        geometry = self._require_state()
        tensors = [torch.from_numpy(np.ascontiguousarray(self._layer_view(i))) for i in range(9)]
        batch, height, width = geometry
        readout = torch.from_numpy(self._readout.reshape(batch, -1, height, width).copy())
        return SNNState._make([*tensors, readout])

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
        self.reset(batch, height, width)
        for index in range(9):
            self._layer_view(index)[...] = _as_numpy(state[index])
        self._readout[...] = _as_numpy(state.readout).reshape(self._readout.shape)

    def _require_state(self) -> tuple[int, int, int]:
        if self._geometry is None:
            raise RuntimeError("no state: call reset() or set_state() first")
        return self._geometry

    # ----------------------------------------------------------------------------- step

    def step(self, x: Tensor | npt.NDArray[np.floating]) -> Tensor:
        """Run one bin and update the state; equal to ``SNN.step`` in evaluation mode.

        Args:
            x: event counts of the bin (any real values work; zeros cost nothing).

        Returns:
            the heatmaps, a new tensor (the state keeps its own copy of the readout).

        Shape:
            ``x`` (B, C_in, H, W) -> (B, J, H, W), B, H, W those of the state.
        """
        batch, height, width = self._require_state()
        counts = _as_numpy(x)
        want = (batch, self.config.in_channels, height, width)
        if counts.shape != want:
            raise ValueError(f"x must be {want} (the state's geometry), got {counts.shape}")
        out = np.empty((batch, self.config.joints, height * width), dtype=np.float32)
        _step(
            counts, self._weights, self._groups, self._layers, self._taus, self._v_th,
            self._head, self._decay, self._delta_readout, self._v, self._acc, self._spikes,
            self._values, self._n_spikes, self._fired, self._delta, self._readout, out,
        )  # fmt: skip
        return torch.from_numpy(out.reshape(batch, -1, height, width))

    def spike_counts(self) -> dict[str, npt.NDArray[np.int64]]:
        """The number of spikes of each layer in the last step, per sample (shape (B,))."""
        self._require_state()
        return {name: self._n_spikes[:, i].copy() for i, name in enumerate(LAYERS)}

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
    groups: I64,
    layers: I64,
    taus: F32,
    v_th: F32,
    head: I64,
    decay: np.float32,
    delta_readout: bool,
    v: F32,
    acc: F32,
    spikes: I32,
    values: F32,
    n_spikes: I64,
    fired: npt.NDArray[np.bool_],
    delta: F32,
    readout: F32,
    out: F32,
) -> None:
    """One step of the whole network, in place; see the module docstring.

    ``x`` (B, C_in, H, W); ``v`` (B, neurons) channels-last per layer at the offsets of
    ``layers``; ``acc`` (B, largest layer) one layer's currents; ``spikes`` (B, capacity, 3)
    the (y, x, c) lists of each layer and of the input, ``values`` their values, ``n_spikes``
    (B, 10) their lengths; ``fired`` and ``delta`` scratch; ``readout`` and ``out``
    (B, J, H * W). Layer by layer, each for all samples: the samples share the layer's
    weights while they are in cache.

    One core: running the samples of a batch of 2 on both cores (numba.prange) was 1.5x faster
    when the other core was idle and up to 10x slower when another process kept it busy.
    """
    batch = x.shape[0]
    for b in range(batch):
        _events(x, b, layers, spikes[b], values[b], n_spikes[b])
    for layer in range(INPUT):
        for b in range(batch):
            _layer(
                layer, weights, groups, layers, taus, v_th, v[b], acc[b], spikes[b], values[b],
                n_spikes[b], fired[b],
            )  # fmt: skip
    for b in range(batch):
        _readout(
            readout[b], out[b], weights, head, decay, delta_readout, spikes[b],
            layers[INPUT - 1, _SP_OFF], n_spikes[b, INPUT - 1], x.shape[3], delta[b],
        )  # fmt: skip


@jit
def _events(x: F32, b: int, layers: I64, sp: I32, values: F32, n_spikes: I64) -> None:
    """List sample ``b``'s nonzero input counts: the first layer's sparse input."""
    start = layers[INPUT, _SP_OFF]
    n = 0
    for c in range(x.shape[1]):
        for y in range(x.shape[2]):
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
    groups: I64,
    layers: I64,
    taus: F32,
    v_th: F32,
    v: F32,
    acc: F32,
    sp: I32,
    values: F32,
    n_spikes: I64,
    fired: npt.NDArray[np.bool_],
) -> None:
    """One spiking layer of one sample: scatter each of its inputs' lists, then the LIF."""
    c_out, h_out, w_out = layers[layer, _C], layers[layer, _H], layers[layer, _W]
    for g in range(layers[layer, _G0], layers[layer, _G1]):
        src = groups[g, _SRC]
        _scatter(
            acc, c_out, h_out, w_out, weights, groups[g, _W_OFF], groups[g, _K],
            groups[g, _STRIDE], groups[g, _PAD], groups[g, _SCALE], sp, values,
            layers[src, _SP_OFF], n_spikes[src],
        )  # fmt: skip
    n_spikes[layer] = _lif(
        acc, v, layers[layer, _V_OFF], c_out, h_out * w_out, w_out, weights,
        layers[layer, _BIAS_OFF], layers[layer, _TILE], taus[layer], v_th[layer], sp, values,
        layers[layer, _SP_OFF], fired,
    )  # fmt: skip


@jit
def _scatter(
    acc: F32,
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
    """Add ``value * W[:, c, ky, kx]`` at every output each listed input reaches.

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
        # two inputs at one position (lists are position by position) share one pass over
        # the outputs: half the loads and stores of the currents
        pair = i + 1 < n and sp[sp_off + i + 1, 0] == y and sp[sp_off + i + 1, 1] == x
        value2, w_c2 = np.float32(0.0), w_c
        if pair:
            value2 = values[sp_off + i + 1]
            w_c2 = first + sp[sp_off + i + 1, 2] * channel_stride
        for ky in range(ky0, ky1 + 1, stride):
            # unsigned indices: numba adds no negative-index wraparound, the loop vectorises
            a = np.uint64(((ty - ky) // stride * w_out + ox0 + m0) * c_out)
            wi = np.uint64(w_c + ky * row_stride)
            if pair:
                wi2 = np.uint64(w_c2 + ky * row_stride)
                for j in range(run):
                    q = np.uint64(j)
                    acc[a + q] += value * weights[wi + q] + value2 * weights[wi2 + q]
            else:
                for j in range(run):
                    q = np.uint64(j)
                    acc[a + q] += value * weights[wi + q]
        i += 2 if pair else 1


@jit
def _lif(
    acc: F32,
    v: F32,
    off: int,
    c: int,
    positions: int,
    width: int,
    weights: F32,
    bias_off: int,
    tile: int,
    tau: np.float32,
    v_th: np.float32,
    sp: I32,
    values: F32,
    sp_off: int,
    fired: npt.NDArray[np.bool_],
) -> int:
    """The LIF step of every neuron of a layer (lif.py's arithmetic); lists its spikes.

    Reads and clears the scattered current ``acc`` (so it is zero for the next layer) and
    returns the number of spikes written at ``sp[sp_off:]``. The bias is stored repeated over
    ``tile // c`` positions, so one flat loop of ``tile`` neurons vectorises whatever ``c``.
    """
    n = 0
    total = positions * c
    bias = np.uint64(bias_off)
    for start in range(0, total, tile):
        length = min(tile, total - start)
        a = np.uint64(start)
        b = np.uint64(off + start)
        count = 0
        for j in range(length):
            q = np.uint64(j)
            z = weights[bias + q] + acc[a + q]
            acc[a + q] = 0.0
            v_old = v[b + q]
            h = v_old + (z - v_old) / tau
            s = h >= v_th
            v[b + q] = h - v_th if s else h
            fired[q] = s
            count += s
        if count:  # the tiles that spike are listed after the vectorised pass
            p = start // c
            y = p // width
            x = p - y * width
            j = 0
            for _ in range(length // c):
                for co in range(c):
                    if fired[j]:
                        sp[sp_off + n, 0] = y
                        sp[sp_off + n, 1] = x
                        sp[sp_off + n, 2] = co
                        values[sp_off + n] = 1.0
                        n += 1
                    j += 1
                x += 1
                if x == width:
                    x = 0
                    y += 1
    return n


@jit
def _readout(
    readout: F32,
    out: F32,
    weights: F32,
    head: I64,
    decay: np.float32,
    delta_readout: bool,
    sp: I32,
    sp_off: int,
    n: int,
    width: int,
    delta: F32,
) -> None:
    """``out = decay * readout + delta`` (or ``delta``), ``delta`` the 1x1 head over the last
    layer's spikes: the bias everywhere, plus a weight column where a neuron spiked.

    The bias is added in the dense pass and the columns after it, at the few pixels that have
    spikes (``SNN`` adds ``bias + columns`` at once: the same up to float32 rounding).
    ``readout`` and ``out`` are (J, H * W); ``delta`` is (J,) scratch.
    """
    joints = head[_HEAD_J]
    pixels = readout.shape[1]
    flat, flat_out = readout.reshape(-1), out.reshape(-1)
    for j in range(joints):
        bias = weights[head[_HEAD_B] + j]
        row = np.uint64(j * pixels)
        for p in range(pixels):
            q = row + np.uint64(p)
            r = decay * flat[q] + bias if delta_readout else bias
            flat[q] = r
            flat_out[q] = r
    # the spikes are listed position by position: sum each position's weight columns, then
    # touch its J strided outputs once
    w_off = head[_HEAD_W]
    i = 0
    while i < n:
        y, x = sp[sp_off + i, 0], sp[sp_off + i, 1]
        delta[:] = 0.0
        while i < n and sp[sp_off + i, 0] == y and sp[sp_off + i, 1] == x:
            w_c = w_off + sp[sp_off + i, 2] * joints
            for j in range(joints):
                delta[j] += weights[w_c + j]
            i += 1
        p = y * width + x
        for j in range(joints):
            r = readout[j, p] + delta[j]
            readout[j, p] = r
            out[j, p] = r
