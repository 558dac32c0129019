"""The CNN-RNN hybrid's recurrent network: a ConvGRU at the SNN's layer resolutions and widths.

The paper's dense baseline for the hybrid (Aydin et al. 2024, the CNN-RNN hybrid): the same
ANN initialises the hidden state of a convolutional recurrent network, which then predicts one
heatmap per bin until the next window, exactly as the SNN does in
:class:`~hybridpose.nn.hybrid.HybridPose` (which wraps either).

Structure: the SNN's 9 layers as :meth:`~hybridpose.nn.snn.SNNConfig.layer_specs` declares them
(names, widths, downsampling, input blocks with nearest x2 upsampling and the residual sum
``res2 + down3``, kernels, strides; run by :func:`~hybridpose.nn.snn.run_layers`), each layer a
:class:`ConvGRUCell` instead of a spiking convolution; then the SNN's 1x1 head on ``up3`` and its
readout (:func:`~hybridpose.nn.snn.readout_step`: the decaying delta readout, or the head alone).
A layer's output, what the layers after it receive, is its hidden state ``h``.

ConvGRU cell (the gate equations of :class:`torch.nn.GRUCell`, with convolutions)::

    [x_r, x_z, x_n] = conv_x(x)      the spec's kernel and stride, C_in -> 3C, bias
    [h_r, h_z, h_n] = conv_h(h)      the spec's kernel, stride 1 (the layer's resolution), bias
    r = sigmoid(x_r + h_r)           reset gate
    z = sigmoid(x_z + h_z)           update gate
    n = tanh(x_n + r * h_n)          candidate
    h' = n + z * (h - n)             = (1 - z) * n + z * h

No BatchNorm. The input convolution runs on the whole sequence at once; the recurrence steps.

State: an :class:`~hybridpose.nn.snn.SNNState`, the 9 hidden states where the SNN has its
membranes, plus the readout; so the ANN's state heads initialise it unchanged. The heads'
output (unbounded: it ends in a BatchNorm) is used **as is** as the initial hidden state, not
through a ``tanh``: the update ``h' = n + z (h - n)`` is a convex combination with ``n`` in
(-1, 1), so any start decays into that range at the rate the update gates choose, while one
state space for the heads, the cell and the state-consistency loss (the hidden state after a
window against the heads' prediction from the next frame) keeps that loss meaningful.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from hybridpose.nn.snn import SNNConfig, SNNState, empty_state, run_sequence

GATE_PRODUCTS = 2
"""Elementwise multiplications per hidden unit and step: ``r * h_n`` and ``z * (h - n)``
(the sigmoids, the tanh and the additions are not counted; :mod:`hybridpose.energy`)."""


def gru_update(gates_x: Tensor, gates_h: Tensor, h: Tensor) -> Tensor:
    """One GRU update from the two convolutions' gates (B, 3C, H, W) and the hidden state
    ``h`` (B, C, H, W) (the module docstring's equations)."""
    x_r, x_z, x_n = gates_x.chunk(3, dim=1)
    h_r, h_z, h_n = gates_h.chunk(3, dim=1)
    r = torch.sigmoid(x_r + h_r)
    z = torch.sigmoid(x_z + h_z)
    n = torch.tanh(x_n + r * h_n)
    return n + z * (h - n)


class ConvGRUCell(nn.Module):
    """A convolutional GRU layer, applied to a whole sequence (the module docstring)."""

    def __init__(self, c_in: int, c_hidden: int, kernel: int, stride: int = 1) -> None:
        super().__init__()
        self.conv_x = nn.Conv2d(c_in, 3 * c_hidden, kernel, stride, padding=kernel // 2)
        self.conv_h = nn.Conv2d(c_hidden, 3 * c_hidden, kernel, 1, padding=kernel // 2)

    def forward(self, x: Tensor, h: Tensor) -> tuple[Tensor, Tensor]:
        """``x`` (T, B, C_in, H, W), ``h`` (B, C, H', W') -> every step's hidden state
        (T, B, C, H', W') and the last one."""
        t, b = x.shape[:2]
        gates = self.conv_x(x.flatten(0, 1))
        outs = []
        for gates_t in gates.reshape(t, b, *gates.shape[1:]).unbind(0):
            h = gru_update(gates_t, self.conv_h(h), h)
            outs.append(h)
        return torch.stack(outs), h


class ConvRNN(nn.Module):
    """The ConvGRU pose network; see the module docstring for its layers and state.

    Built from an :class:`~hybridpose.nn.snn.SNNConfig` (its widths, kernels, joints, input
    channels and readout; the LIF's ``tau``, ``v_th`` and surrogate are not used), so that the
    ANN built for that SNN configuration initialises it.
    """

    # the recurrent layers, built from SNNConfig.layer_specs() (declared for type checkers)
    enc: ConvGRUCell
    down1: ConvGRUCell
    down2: ConvGRUCell
    down3: ConvGRUCell
    res1: ConvGRUCell
    res2: ConvGRUCell
    up1: ConvGRUCell
    up2: ConvGRUCell
    up3: ConvGRUCell

    def __init__(self, config: SNNConfig | None = None) -> None:
        super().__init__()
        config = SNNConfig() if config is None else config
        self.config = config
        for spec in config.layer_specs():
            c_in = config.input_channels(spec)
            self.add_module(spec.name, ConvGRUCell(c_in, spec.channels, spec.kernel, spec.stride))
        self.head = nn.Conv2d(config.widths[0], config.joints, 1)
        # as the SNN's: the readout's gain 1 / (1 - decay) would amplify a random head
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
        return run_sequence(self.config, self.cells(), self.head, x, state)

    def step(self, x: Tensor, state: SNNState) -> tuple[Tensor, SNNState]:
        """One bin ``x`` (B, C_in, H, W) -> heatmaps (B, joints, H, W) and the next state."""
        out, state = self.forward(x[None], state)
        return out[0], state

    def cells(self) -> dict[str, ConvGRUCell]:
        """The recurrent layers by state-field name."""
        return {s.name: getattr(self, s.name) for s in self.config.layer_specs()}


__all__ = ["GATE_PRODUCTS", "ConvGRUCell", "ConvRNN", "gru_update"]
