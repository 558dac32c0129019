"""The hybrid: the ANN initialises the SNN's state at a low rate, the SNN predicts at a high rate.

One *window*: the ANN sees the frame of events before ``t0`` and returns heatmaps and the state
of every spiking layer; the SNN starts from that state, integrates the first bin and predicts
one heatmap per bin until the next window. Ablations are configuration (:class:`HybridConfig`),
not copies of the code:

- ``state_init=False``: the SNN's membranes start at zero (the readout still starts at the
  ANN's heatmaps when the delta readout is on): "delta readout only".
- ``SNNConfig.delta_readout=False``: the SNN's output is its head alone: "state init only".
- The pure SNN baseline is :class:`~hybridpose.nn.snn.SNN` run from ``zero_state`` and
  carried across windows; the pure ANN baseline is :class:`~hybridpose.nn.ann.ANN`.

The network that steps is the SNN, or, for the paper's CNN-RNN baseline, the ConvGRU
:class:`~hybridpose.nn.rnn.ConvRNN` (the same state, interface and configuration): a
``HybridPose[ConvRNN]``. Either is the ``snn`` attribute (the checkpoints' ``snn.*`` weights);
a bare ``HybridPose`` is ``HybridPose[SNN]``, the paper's hybrid.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Generic, TypeGuard

from torch import Tensor, nn
from typing_extensions import TypeVar

from hybridpose.nn.ann import ANN
from hybridpose.nn.rnn import ConvRNN
from hybridpose.nn.snn import SNN, SNNState

Recurrent = TypeVar("Recurrent", bound="SNN | ConvRNN", default=SNN)
"""The network that steps every bin: the SNN (the default), or the ConvGRU baseline."""


@dataclass(frozen=True)
class HybridConfig:
    """Switches of :class:`HybridPose`."""

    state_init: bool = True


class HybridPose(nn.Module, Generic[Recurrent]):
    """ANN + SNN (or ANN + ConvGRU); see the module docstring."""

    def __init__(self, ann: ANN, snn: Recurrent, config: HybridConfig = HybridConfig()) -> None:
        super().__init__()
        if ann.snn_config != snn.config:
            raise ValueError("the ANN's state heads were built for another SNN configuration")
        self.ann = ann
        self.snn: Recurrent = snn
        self.config = config

    def initial_state(self, frame: Tensor) -> tuple[Tensor, SNNState]:
        """ANN heatmaps (B, J, H, W) and the SNN state to start a window from."""
        heatmaps, state = self.ann(frame)
        if not self.config.state_init:
            b, _, h, w = frame.shape
            zero = self.snn.zero_state(b, h, w, frame.device, frame.dtype)
            state = zero._replace(readout=state.readout)
        return heatmaps, state

    def forward(self, frame: Tensor, bins: Tensor) -> tuple[Tensor, Tensor, SNNState]:
        """One window: ``frame`` (B, C_ann, H, W) and ``bins`` (T, B, C_snn, H, W).

        Returns:
            the ANN's heatmaps (B, J, H, W), the SNN's heatmaps per bin (T, B, J, H, W) and
            the state after the last bin.
        """
        ann_heatmaps, state = self.initial_state(frame)
        heatmaps, state = self.snn(bins, state)
        return ann_heatmaps, heatmaps, state


AnyHybrid = HybridPose[SNN] | HybridPose[ConvRNN]
"""The hybrid, or the CNN-RNN baseline."""


def is_rnn_hybrid(model: object) -> TypeGuard[HybridPose[ConvRNN]]:
    """Whether ``model`` is a hybrid whose stepping network is the ConvGRU."""
    return isinstance(model, HybridPose) and isinstance(model.snn, ConvRNN)


def is_snn_hybrid(model: object) -> TypeGuard[HybridPose[SNN]]:
    """Whether ``model`` is a hybrid whose stepping network is the SNN (the paper's system)."""
    return isinstance(model, HybridPose) and isinstance(model.snn, SNN)
