"""Model presets: ``paper`` (the published sizes) and ``cpu`` (the same structure, CPU-sized).

A preset fixes the networks and the input geometry; training and data settings build on it.

- ``paper``: a 256x256 crop of the 346x260 DAVIS346 sensor, the paper's widths (ANN U-Net
  32 / 64-128-256-512-512, SNN 32-64-128-256), 10-bin stacked histograms for the ANN (20
  channels), tau 3 and readout decay 0.8 (the 100 Hz hybrid). For GPUs and DHP19.
- ``cpu``: a 64x64 crop of an 87x65 sensor (a quarter of DAVIS346 per side: the same field of
  view as the paper's crop), widths divided by 4, the same structure; trainable on 2 CPU cores.
- ``cpu-1khz``: ``cpu`` for 1 ms bins (tau 30 steps): the 1 kHz hybrid, retimed from the
  ``cpu`` networks (:mod:`hybridpose.retime`).
- ``cpu-sparse``: ``cpu``'s networks, its hybrid fine-tuned with the activity penalty: the
  10 ms hybrid for the event-driven engine (:mod:`hybridpose.recipes`).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

from hybridpose.nn.ann import ANN, ANNConfig
from hybridpose.nn.hybrid import HybridConfig, HybridPose
from hybridpose.nn.rnn import ConvRNN
from hybridpose.nn.snn import SNN, SNNConfig


@dataclass(frozen=True)
class ModelConfig:
    """Everything needed to rebuild the networks (stored in every checkpoint); the ConvGRU of
    the CNN-RNN baseline takes the SNN's configuration."""

    name: str
    sensor_size: tuple[int, int]  # (width, height) the preset expects
    input_size: tuple[int, int]  # (height, width) of the crop the networks see
    ann: ANNConfig = field(default_factory=ANNConfig)
    snn: SNNConfig = field(default_factory=SNNConfig)
    hybrid: HybridConfig = field(default_factory=HybridConfig)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ModelConfig:
        """Inverse of :meth:`to_dict` (lists become tuples)."""

        def tuples(d: dict[str, Any]) -> dict[str, Any]:
            return {k: tuple(v) if isinstance(v, list) else v for k, v in d.items()}

        return cls(
            name=data["name"],
            sensor_size=tuple(data["sensor_size"]),
            input_size=tuple(data["input_size"]),
            ann=ANNConfig(**tuples(data["ann"])),
            snn=SNNConfig(**tuples(data["snn"])),
            hybrid=HybridConfig(**data["hybrid"]),
        )

    def build_ann(self) -> ANN:
        return ANN(self.ann, self.snn)

    def build_snn(self) -> SNN:
        return SNN(self.snn)

    def build_hybrid(self) -> HybridPose:
        return HybridPose(self.build_ann(), self.build_snn(), self.hybrid)

    def build_hybrid_rnn(self) -> HybridPose[ConvRNN]:
        """The CNN-RNN baseline: the same ANN, a ConvGRU of the SNN's layers in its place."""
        return HybridPose(self.build_ann(), ConvRNN(self.snn), self.hybrid)


PRESETS: dict[str, ModelConfig] = {
    "paper": ModelConfig(
        name="paper",
        sensor_size=(346, 260),
        input_size=(256, 256),
        ann=ANNConfig(in_channels=20, stem=32, widths=(64, 128, 256, 512, 512)),
        snn=SNNConfig(widths=(32, 64, 128, 256), tau=3.0, readout_decay=0.8),
    ),
    "cpu": ModelConfig(
        name="cpu",
        sensor_size=(87, 65),
        input_size=(64, 64),
        ann=ANNConfig(in_channels=20, stem=8, widths=(16, 32, 64, 128, 128)),
        # readout decay 1.0, not the paper's 0.8: at 0.8 the ANN's heatmaps fade to 11% over a
        # window and the hybrid drifts (docs/training.md, "Why the hybrid drifts")
        snn=SNNConfig(widths=(8, 16, 32, 64), tau=3.0, readout_decay=1.0),
    ),
}
PRESETS["cpu-1khz"] = dataclasses.replace(
    PRESETS["cpu"],
    name="cpu-1khz",
    # the cpu SNN's 30 ms time constant in 1 ms steps (hybridpose.retime)
    snn=dataclasses.replace(PRESETS["cpu"].snn, tau=30.0),
)
PRESETS["cpu-sparse"] = dataclasses.replace(PRESETS["cpu"], name="cpu-sparse")


def preset(name: str) -> ModelConfig:
    """The preset called ``name``; a clear error naming the choices otherwise."""
    try:
        return PRESETS[name]
    except KeyError:
        raise ValueError(f"unknown preset {name!r}; choose one of {sorted(PRESETS)}") from None
