"""The ANN: a U-Net on a stacked event histogram that predicts heatmaps and the SNN's state.

U-Net (the paper's; widths from :class:`ANNConfig`, ``s`` = downsampling)::

    stem   7x7 conv C_in -> c0, 7x7 conv c0 -> c0                    s=1
    down_i avg-pool 2, 3x3 conv, 3x3 conv -> widths[i]                s=2, 4, 8, 16, 32
    up_i   bilinear x2, concatenate the encoder's skip, 3x3 conv x2   back to s=1 (c0)
    head   3x3 conv c0 -> joints                                      heatmaps

LeakyReLU(0.1) after every convolution but the head; no BatchNorm.

State heads (the state contract): for every spiking layer of the SNN (``SNNConfig.layer_specs``)
a small head maps the decoder's feature map at that layer's resolution to the layer's initial
membrane potential: 1x1 conv, BatchNorm, LeakyReLU, 1x1 conv, BatchNorm. The heads are built
from the SNN's own layer specification, so the two cannot drift apart; the readout's initial
value is the ANN's heatmaps, detached.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from hybridpose.nn.snn import SNNConfig, SNNState

SLOPE = 0.1


@dataclass(frozen=True)
class ANNConfig:
    """Configuration of :class:`ANN` (defaults: the paper's U-Net)."""

    in_channels: int = 20
    stem: int = 32
    widths: tuple[int, ...] = (64, 128, 256, 512, 512)
    joints: int = 13
    stem_kernel: int = 7

    def __post_init__(self) -> None:
        if len(self.widths) < 4:
            raise ValueError(
                "the U-Net needs at least 4 down blocks: the state heads read decoder features "
                "at every SNN scale, down to 1/8, and the decoder's coarsest output is 1/8 "
                f"only with 4 blocks (got {len(self.widths)})"
            )


def _conv(c_in: int, c_out: int, kernel: int) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(c_in, c_out, kernel, padding=kernel // 2), nn.LeakyReLU(SLOPE))


class _Down(nn.Sequential):
    def __init__(self, c_in: int, c_out: int) -> None:
        super().__init__(nn.AvgPool2d(2), _conv(c_in, c_out, 3), _conv(c_out, c_out, 3))


class _Up(nn.Module):
    def __init__(self, c_in: int, c_skip: int, c_out: int) -> None:
        super().__init__()
        self.conv = nn.Sequential(_conv(c_in + c_skip, c_out, 3), _conv(c_out, c_out, 3))

    def forward(self, x: Tensor, skip: Tensor) -> Tensor:
        x = F.interpolate(x, size=skip.shape[-2:], mode="bilinear", align_corners=False)
        out: Tensor = self.conv(torch.cat([x, skip], dim=1))
        return out


class StateHead(nn.Sequential):
    """Decoder features -> one spiking layer's initial membrane potential."""

    def __init__(self, c_in: int, c_out: int) -> None:
        super().__init__(
            nn.Conv2d(c_in, c_out, 1, bias=False),
            nn.BatchNorm2d(c_out),
            nn.LeakyReLU(SLOPE),
            nn.Conv2d(c_out, c_out, 1, bias=False),
            nn.BatchNorm2d(c_out),
        )


class ANN(nn.Module):
    """U-Net pose network that also initialises the SNN (see the module docstring)."""

    def __init__(self, config: ANNConfig | None = None, snn: SNNConfig | None = None) -> None:
        super().__init__()
        config = ANNConfig() if config is None else config
        snn = SNNConfig() if snn is None else snn
        self.config = config
        self.snn_config = snn
        c0 = config.stem
        self.stem = nn.Sequential(
            _conv(config.in_channels, c0, config.stem_kernel), _conv(c0, c0, config.stem_kernel)
        )
        chans = (c0, *config.widths)
        self.downs = nn.ModuleList(_Down(chans[i], chans[i + 1]) for i in range(len(config.widths)))
        # decoder: from the deepest scale back to s=1; up_i outputs chans[i] channels
        self.ups = nn.ModuleList(
            _Up(chans[i + 1], chans[i], chans[i]) for i in reversed(range(len(config.widths)))
        )
        self.head = nn.Conv2d(c0, config.joints, 3, padding=1)
        # decoder feature channels by scale: scale 2^i has chans[i] channels
        self.state_heads = nn.ModuleDict(
            {
                spec.name: StateHead(chans[spec.scale.bit_length() - 1], spec.channels)
                for spec in snn.layer_specs()
            }
        )

    def features(self, frame: Tensor) -> tuple[Tensor, dict[int, Tensor]]:
        """Heatmaps (B, J, H, W) and the decoder's feature maps keyed by downsampling."""
        skips = [self.stem(frame)]
        for down in self.downs:
            skips.append(down(skips[-1]))
        x = skips[-1]
        decoded: dict[int, Tensor] = {}
        for up, level in zip(self.ups, reversed(range(len(self.config.widths))), strict=True):
            x = up(x, skips[level])
            decoded[2**level] = x
        return self.head(x), decoded

    def forward(self, frame: Tensor) -> tuple[Tensor, SNNState]:
        """``frame`` (B, C_in, H, W) -> heatmaps (B, J, H, W) and the SNN's initial state."""
        heatmaps, decoded = self.features(frame)
        membranes = [
            self.state_heads[spec.name](decoded[spec.scale])
            for spec in self.snn_config.layer_specs()
        ]
        return heatmaps, SNNState._make([*membranes, heatmaps.detach()])
