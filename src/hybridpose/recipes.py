"""Training recipes: the data windows and the training stages of each model preset.

A :class:`Recipe` completes a model preset (:mod:`hybridpose.nn.presets`) with everything a run
needs besides the networks: how windows are cut (:class:`~hybridpose.data.WindowConfig`), the
subject split, and one :class:`StageConfig` per training stage (the paper's three-stage training
and the CNN-RNN baseline's stage):

1. ``ann``: the U-Net on its frames, MSE against Gaussian heatmaps at the frame's end.
2. ``snn``: the SNN alone from an empty state, BPTT over one window, mean per-step MSE.
3. ``hybrid``: the ANN loaded and frozen; the SNN and the state heads trained on
   ``(1 - w) * mean per-step MSE + w * state-consistency MSE`` with ``w = state_loss_weight``.
4. ``hybrid_rnn``: the paper's CNN-RNN baseline, trained as the hybrid with a ConvGRU in the
   SNN's place (not one of the paper's three stages; :mod:`hybridpose.nn.rnn`).

``paper`` follows the paper (Adam, lr 1e-4 then 5e-5, batch 8). ``cpu`` is sized so that
``hybridpose reproduce --preset cpu`` trains every stage on 2 CPU cores within its time
budget: an epoch is a fixed-size deterministic sample of the training windows
(``samples_per_epoch``) rather than all of them, and the learning rates are higher because the
run is short.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Any, Literal

from hybridpose.data import WindowConfig
from hybridpose.subjects import TEST_SUBJECTS, TRAIN_SUBJECTS

Stage = Literal["ann", "snn", "hybrid", "hybrid_rnn"]
Protocol = Literal["project", "paper"]
STAGES: tuple[Stage, ...] = ("ann", "snn", "hybrid", "hybrid_rnn")
"""The training stages, in the order ``reproduce`` trains them."""
ANN_INITIALISED: tuple[Stage, ...] = ("hybrid", "hybrid_rnn")
"""The stages that train a recurrent network started from the frozen ANN's state."""


@dataclass(frozen=True)
class StageConfig:
    """Optimisation settings of one training stage.

    Attributes:
        lr: Adam learning rate.
        batch_size: windows per optimiser step (over all processes when distributed).
        epochs: passes of ``samples_per_epoch`` windows each.
        samples_per_epoch: windows per epoch, drawn afresh each epoch from the shuffled
            training windows; None = all of them.
        state_loss_weight: the hybrid's weight ``w`` of the state-consistency loss.
        grad_clip: maximum gradient norm (None = no clipping).
        freeze_batchnorm: the SNN's BatchNorm normalises by its running statistics, which
            stay fixed (for a retimed network, :mod:`hybridpose.retime`).
        spike_loss_weight: weight of the SNN's synaptic activity added to the loss of the snn
            and hybrid stages: the fraction of its synapses that carry a spike per step, each
            spike weighted by its fan-out (:func:`hybridpose.nn.snn.fan_out`), which is what
            the energy model's synaptic operations and the event-driven engine's scatters
            count. Fewer costly spikes: less power, less work per step.
    """

    lr: float = 1e-4
    batch_size: int = 8
    epochs: int = 10
    samples_per_epoch: int | None = None
    state_loss_weight: float = 0.05
    grad_clip: float | None = None
    freeze_batchnorm: bool = False
    spike_loss_weight: float = 0.0

    def __post_init__(self) -> None:
        if not self.lr > 0:
            raise ValueError(f"lr must be positive, got {self.lr}")
        if self.batch_size < 1 or self.epochs < 1:
            raise ValueError("batch_size and epochs must be >= 1")
        if self.samples_per_epoch is not None and self.samples_per_epoch < 1:
            raise ValueError(f"samples_per_epoch must be >= 1, got {self.samples_per_epoch}")
        if not 0.0 <= self.state_loss_weight <= 1.0:
            raise ValueError(f"state_loss_weight must lie in [0, 1], got {self.state_loss_weight}")
        if not (self.spike_loss_weight >= 0 and math.isfinite(self.spike_loss_weight)):
            raise ValueError(f"spike_loss_weight must be >= 0, got {self.spike_loss_weight}")
        if self.grad_clip is not None and not self.grad_clip > 0:
            raise ValueError(f"grad_clip must be positive, got {self.grad_clip}")

    def replace(self, **changes: Any) -> StageConfig:
        """A copy with ``changes`` (None values are ignored: "not overridden")."""
        return dataclasses.replace(self, **{k: v for k, v in changes.items() if v is not None})


@dataclass(frozen=True)
class Recipe:
    """Windows, subject split and stage settings for one model preset.

    ``hybrid_rnn``: the CNN-RNN hybrid's stage (None: the ``hybrid`` stage's settings).
    ``hybrid_from_snn``: ``reproduce`` starts the hybrid's SNN from the trained ``snn`` stage
    (``train --init-snn``) instead of a fresh initialisation. ``eval_windows_per_recording``
    and ``energy_windows``: what ``reproduce`` evaluates on (see :mod:`hybridpose.evaluate`);
    ``eval_rate_factors``: its sweep of the ANN's rate (the rate divided by each factor);
    ``eval_protocols``: the evaluation protocols it reports (:mod:`hybridpose.evaluate`).
    ``simulation_repetitions``: the most repetitions per recording of the dataset ``reproduce``
    simulates (None: the dataset's default, up to 12 within 25 s); ``simulation_sampling``:
    how it samples the moving body (:class:`hybridpose.synth.generate.SimulationConfig`:
    ``tiles`` for the full-resolution ``paper`` preset, ~15x faster there; the 87x65 presets'
    shipped datasets were made with ``frames``). ``retimed_from``: the
    shipped preset whose ANN and SNN ``reproduce`` retimes to this recipe's bins
    (:mod:`hybridpose.retime`) instead of training them, and whose hybrid starts the hybrid
    stages; ``stages``: the stages ``reproduce`` trains.
    """

    window: WindowConfig
    ann: StageConfig
    snn: StageConfig
    hybrid: StageConfig
    hybrid_rnn: StageConfig | None = None
    train_subjects: tuple[int, ...] = TRAIN_SUBJECTS
    test_subjects: tuple[int, ...] = TEST_SUBJECTS
    hybrid_from_snn: bool = False
    eval_windows_per_recording: int | None = None
    energy_windows: int = 16
    simulation_repetitions: int | None = None
    simulation_sampling: Literal["frames", "tiles"] = "frames"
    eval_rate_factors: tuple[int, ...] = (1, 2, 4)
    retimed_from: str | None = None
    stages: tuple[Stage, ...] = STAGES
    eval_protocols: tuple[Protocol, ...] = ("project", "paper")

    def stage(self, name: Stage) -> StageConfig:
        if name not in STAGES:
            raise ValueError(f"unknown stage {name!r}; choose one of {list(STAGES)}")
        config: StageConfig | None = getattr(self, name)
        return self.hybrid if config is None else config


def window_to_dict(config: WindowConfig) -> dict[str, Any]:
    return dataclasses.asdict(config)


def window_from_dict(data: dict[str, Any]) -> WindowConfig:
    """Inverse of :func:`window_to_dict` (lists become tuples)."""
    values: dict[str, Any] = {k: tuple(v) if isinstance(v, list) else v for k, v in data.items()}
    return WindowConfig(**values)


_CPU_WINDOW = WindowConfig(ann_events=500, crop=(11, 0, 64, 64), cameras=(2, 3))
_CPU_HYBRID = StageConfig(
    lr=5e-4, batch_size=16, epochs=5, samples_per_epoch=2_000, state_loss_weight=0.005
)

RECIPES: dict[str, Recipe] = {
    "paper": Recipe(
        # a centred 256x256 crop of the 346x260 sensor
        window=WindowConfig(ann_events=7500, crop=(45, 2, 256, 256), cameras=(2, 3)),
        ann=StageConfig(lr=1e-4, batch_size=8, epochs=20),
        snn=StageConfig(lr=5e-5, batch_size=8, epochs=20),
        hybrid=StageConfig(lr=5e-5, batch_size=8, epochs=5),
        # the CNN-RNN hybrid as the hybrid
        hybrid_rnn=StageConfig(lr=5e-5, batch_size=8, epochs=5),
        simulation_sampling="tiles",
    ),
    "cpu": Recipe(
        # 87x65 sees 1/16 of DAVIS346's pixels and about 1/16 of its events: 500 events span
        # about the same time as the paper's 7500 at full resolution
        window=_CPU_WINDOW,
        ann=StageConfig(lr=1e-3, batch_size=16, epochs=6, samples_per_epoch=10_000),
        snn=StageConfig(lr=1e-3, batch_size=16, epochs=3, samples_per_epoch=2_000),
        # state-consistency weight 0.005, not the paper's 0.05: here the membranes' MSE is
        # about 200x the heatmaps' (0.6-1.0 against 0.003), and at 0.05 it dominated the
        # gradient (docs/training.md: 1.20x the ANN's error against 1.03x after one epoch)
        hybrid=_CPU_HYBRID,
        # the CNN-RNN hybrid with the hybrid's settings, on fewer windows: its dense ConvGRU's
        # training step took about 3.5x the hybrid's on 2 cores (measured on a few steps), so
        # 2 x 1,000 windows cost about 0.7x the hybrid stage's 5 x 2,000 (estimated; measured
        # in the shipped run: 9.0 min against 17.0)
        hybrid_rnn=StageConfig(
            lr=5e-4, batch_size=16, epochs=2, samples_per_epoch=1_000, state_loss_weight=0.005
        ),
        hybrid_from_snn=True,
        eval_windows_per_recording=4,
        # the default dataset's DHP19-length recordings (up to 12 repetitions within 25 s,
        # davis346 sensor, clothed bodies) are cut to 8 repetitions here; even so simulating
        # them at 87x65 took 66.5 min on 2 cores (the README's reproduction), the longest
        # phase of reproduce. The stages draw a fixed number of windows per epoch, so fewer
        # repetitions would shorten it without changing the training's cost
        simulation_repetitions=8,
    ),
}
_PENALISED_FINE_TUNE = dataclasses.replace(
    _CPU_HYBRID, lr=1e-3, batch_size=8, epochs=1, samples_per_epoch=1_200,
    freeze_batchnorm=True, spike_loss_weight=1.0,
)  # fmt: skip
"""The shipped cpu hybrid fine-tuned with its BatchNorm statistics frozen and the activity
penalty (cpu-1khz at 1 ms, cpu-sparse at 10 ms): the event-driven engine's work follows the
spikes (docs/training.md, "The 1 kHz hybrid", has the pilots that chose lr 1e-3 and weight 1).
"""

RECIPES["cpu-1khz"] = Recipe(
    # the cpu preset's windows cut into 100 bins of 1 ms: the same 100 ms between two ANN runs
    window=dataclasses.replace(_CPU_WINDOW, bin_us=1_000, steps=100),
    # not trained: the shipped cpu ANN and SNN, retimed (hybridpose.retime)
    ann=RECIPES["cpu"].ann,
    snn=RECIPES["cpu"].snn,
    # the shipped cpu hybrid retimed, fine-tuned at 1 ms
    hybrid=_PENALISED_FINE_TUNE,
    retimed_from="cpu",
    stages=("hybrid",),
    # 1 window per recording (after 1 unscored): a window runs every variant 100 steps
    eval_windows_per_recording=1,
    eval_protocols=("project",),
    # the stage draws 1,200 windows: 2 repetitions per recording give enough (and simulate
    # in about a quarter of the cpu preset's time)
    simulation_repetitions=2,
    eval_rate_factors=(),
)  # fmt: skip
RECIPES["cpu-sparse"] = Recipe(
    window=_CPU_WINDOW,
    # not trained: the shipped cpu ANN and SNN (retimed by a factor of 1: unchanged)
    ann=RECIPES["cpu"].ann,
    snn=RECIPES["cpu"].snn,
    # the shipped cpu hybrid fine-tuned as cpu-1khz's, at its own 10 ms bins
    hybrid=_PENALISED_FINE_TUNE,
    retimed_from="cpu",
    stages=("hybrid",),
    eval_protocols=("project",),
    eval_rate_factors=(),
    eval_windows_per_recording=4,
    # cpu-1khz's dataset: the stage draws 1,200 windows
    simulation_repetitions=2,
)  # fmt: skip


def recipe(name: str) -> Recipe:
    """The recipe of preset ``name``; a clear error naming the choices otherwise."""
    try:
        return RECIPES[name]
    except KeyError:
        raise ValueError(f"unknown preset {name!r}; choose one of {sorted(RECIPES)}") from None


__all__ = [
    "ANN_INITIALISED",
    "RECIPES",
    "STAGES",
    "Recipe",
    "Stage",
    "StageConfig",
    "recipe",
    "window_from_dict",
    "window_to_dict",
]
