"""The evaluated model variants: one registry that every command reads.

A *variant* is one way of turning trained networks into a pose per SNN bin. The evaluation,
the report and its plots, the demo, the streaming predictor, ``reproduce`` and the command
line's choices all read :data:`VARIANTS`; adding a variant means adding one entry here. A new
*behaviour* (a new kind of network, say) also needs its entry in :data:`SCHEDULES` and its
code where predictions are made and counted: ``evaluate/run.py`` (``predict``,
``measure_energy``) for the batch evaluation and ``stream.py`` for the step-by-step one; a new
network also its module (``nn/``), :func:`hybridpose.trained.network_kind`,
:func:`hybridpose.checkpoint.build_model` and its training stage (``train.py``,
``recipes.py``), as the ConvGRU of ``hybrid_rnn`` has.

Each variant has a **behaviour**, what runs at every step of a window of ``K`` bins:

=================  =================================================================================
``ann_every_step``  the ANN at every bin end on the last ``N`` events (the costly baseline)
``ann_held``        the ANN at the window start, its prediction held for the window
``snn_carried``     the SNN alone, from an empty state once, its state carried across windows
``snn_from_zero``   the SNN alone, restarted from an empty state at every window start
``hybrid``          the ANN at the window start sets the SNN's state, the SNN steps every bin
``hybrid_rnn``      the same with a ConvGRU in the SNN's place (the paper's CNN-RNN hybrid)
=================  =================================================================================

and its **energy** follows from the behaviour (:func:`hybridpose.energy.schedule_power`): the
ANN's dense MACs at the rate it runs (every step, or once per window), plus its state heads
when they set the SNN's membranes (a hybrid with ``state_init``), plus the SNN's counted
synaptic operations and membrane updates at every step, counted as the SNN runs in that
variant (carried, restarted, or from the ANN's state); a ConvGRU's dense MACs at every step.

Networks come from a training run's checkpoint directory: ``checkpoint`` names the file
(``NAME.pt``); a hybrid ablation whose own file is missing is *derived* from the
``derive_from`` checkpoint by switching its option off at evaluation (no retraining; the
report says so). An ``optional`` variant's checkpoint may be missing from a run: it is then
left out of the default selection. :mod:`hybridpose.trained` loads them.

The paper's reference figures (Aydin et al., CVPR Workshops 2024, Table 1: DHP19 test set,
camera 3, 2D MPJPE in pixels of the 346x260 sensor, 100 Hz output, ANN at 10 Hz) sit beside
each variant so that the report can show them next to ours.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from hybridpose.errors import HybridPoseError

Behaviour = Literal[
    "ann_every_step", "ann_held", "snn_carried", "snn_from_zero", "hybrid", "hybrid_rnn"
]
AnnSchedule = Literal["never", "every_step", "window_start"]
SnnStart = Literal["none", "carried", "from_zero", "from_ann"]
Stepper = Literal["snn", "convgru"]


@dataclass(frozen=True)
class Schedule:
    """What a behaviour runs: when the ANN runs and where the SNN's state comes from.

    Attributes:
        ann: ``never``, ``every_step`` (its prediction is the output) or ``window_start``
            (its prediction is held, or its state initialises the SNN).
        snn: ``none`` (no SNN), ``carried`` (from zero once, then carried across windows),
            ``from_zero`` (from zero at every window start) or ``from_ann`` (from the ANN's
            state at every window start).
        stepper: the network that steps every bin where ``snn`` is not ``none``: the SNN, or
            the ConvGRU of the CNN-RNN hybrid (:class:`~hybridpose.nn.rnn.ConvRNN`).
    """

    ann: AnnSchedule
    snn: SnnStart
    stepper: Stepper = "snn"


SCHEDULES: dict[Behaviour, Schedule] = {
    "ann_every_step": Schedule("every_step", "none"),
    "ann_held": Schedule("window_start", "none"),
    "snn_carried": Schedule("never", "carried"),
    "snn_from_zero": Schedule("never", "from_zero"),
    "hybrid": Schedule("window_start", "from_ann"),
    "hybrid_rnn": Schedule("window_start", "from_ann", "convgru"),
}
"""The behaviours, by name (module docstring)."""


@dataclass(frozen=True)
class PaperFigures:
    """A variant's figures in the paper (None where the paper gives none).

    Attributes:
        mpjpe2d_px: 2D MPJPE over the window, pixels of the 346x260 sensor.
        first_last: the error at the first and at the last step of the window.
        power_w: power at the 100 Hz output rate, watts.
        last_step_px: the error at the last step of the window, where the paper gives only
            that (else None: ``first_last`` holds it).
    """

    mpjpe2d_px: float | None
    first_last: tuple[float, float] | None = None
    power_w: float | None = None
    last_step_px: float | None = None


@dataclass(frozen=True)
class Variant:
    """One evaluated model variant (module docstring).

    Attributes:
        name: the key in reports, ``--model`` choices and plots.
        label: what tables and legends call it.
        color: its colour in every plot.
        behaviour: what runs at every step (:data:`SCHEDULES`).
        checkpoint: the checkpoint file (stem) its networks come from.
        paper: the paper's figures for it.
        derive_from: the checkpoint to derive it from when its own is missing (an ablation
            of the hybrid), else None.
        state_init: a hybrid's ANN sets the SNN's membranes (False: they start at zero and
            the ANN sets only the readout).
        delta_readout: the SNN's decaying delta readout (False: its output is its head alone).
        demo: streamed by ``hybridpose demo``.
        optional: its checkpoint may be missing from a training run's directory; loading
            every variant then leaves it out (asking for it by name is an error).
    """

    name: str
    label: str
    color: str
    behaviour: Behaviour
    checkpoint: str
    paper: PaperFigures
    derive_from: str | None = None
    state_init: bool = True
    delta_readout: bool = True
    demo: bool = False
    optional: bool = False

    @property
    def schedule(self) -> Schedule:
        return SCHEDULES[self.behaviour]

    @property
    def runs_ann(self) -> bool:
        return self.schedule.ann != "never"

    @property
    def runs_snn(self) -> bool:
        return self.schedule.snn != "none"

    @property
    def is_ablation(self) -> bool:
        """Trained as the hybrid stage with an option switched off (``reproduce --ablations``)."""
        return self.derive_from is not None


def _variants(*variants: Variant) -> dict[str, Variant]:
    return {v.name: v for v in variants}


VARIANTS: dict[str, Variant] = _variants(
    Variant(
        "ann_high", "ANN at every step", "#1f77b4", "ann_every_step", "ann",
        PaperFigures(5.03, None, 3.718), demo=True,
    ),
    Variant(
        "ann_low_held", "ANN at the low rate, held", "#ff7f0e", "ann_held", "ann",
        PaperFigures(5.84, (5.08, 6.73)), demo=True,
    ),
    Variant(
        "snn", "SNN alone", "#2ca02c", "snn_from_zero", "snn",
        PaperFigures(21.4, (45.6, 15.5)), demo=True,
    ),
    Variant(
        "snn_continuous", "SNN alone, continuous", "#17becf", "snn_carried", "snn",
        PaperFigures(None),
    ),
    Variant(
        "hybrid", "hybrid", "#d62728", "hybrid", "hybrid",
        PaperFigures(5.19, (5.16, 5.17), 0.424), demo=True,
    ),
    Variant(
        "hybrid_no_state_init", "hybrid, no state init", "#9467bd", "hybrid",
        "hybrid_no_state_init", PaperFigures(5.85, (5.10, 7.20)), derive_from="hybrid",
        state_init=False,
    ),
    Variant(
        "hybrid_no_delta", "hybrid, no delta readout", "#8c564b", "hybrid", "hybrid_no_delta",
        PaperFigures(5.46), derive_from="hybrid", delta_readout=False,
    ),
    # the paper's CNN-RNN hybrid: 5.52 px at the window's last step (5.84 without state init)
    Variant(
        "hybrid_rnn", "CNN-RNN hybrid (ConvGRU)", "#e377c2", "hybrid_rnn", "hybrid_rnn",
        PaperFigures(None, last_step_px=5.52), optional=True,
    ),
)  # fmt: skip
"""Every variant, in report order."""

REFERENCE = "ann_high"
"""The variant the others' power and error are compared with (the ANN at the output rate)."""
MAIN = "hybrid"
"""The system of the paper."""
SNN_ALONE = "snn"
"""The SNN baseline of the ``snn_over_hybrid_error`` ratio: the SNN restarted from an empty
state at every window, as the paper's SNN row is evaluated (its authors reset the network
before every 100 ms sample)."""


def _paper_ratio(a: float | None, b: float | None) -> float:
    assert a is not None and b is not None
    return a / b


PAPER_RATIOS = {
    "hybrid_over_ann_error": _paper_ratio(
        VARIANTS[MAIN].paper.mpjpe2d_px, VARIANTS[REFERENCE].paper.mpjpe2d_px
    ),
    "hybrid_over_ann_power": _paper_ratio(
        VARIANTS[MAIN].paper.power_w, VARIANTS[REFERENCE].paper.power_w
    ),
    "snn_over_hybrid_error": _paper_ratio(
        VARIANTS[SNN_ALONE].paper.mpjpe2d_px, VARIANTS[MAIN].paper.mpjpe2d_px
    ),
}
"""The paper's headline ratios (its Table 1), from the variants' figures."""


class UnknownVariantError(HybridPoseError, ValueError):
    """No variant of that name."""


def variant(name: str) -> Variant:
    """The variant called ``name``.

    Raises:
        UnknownVariantError: there is none (the message lists the names).
    """
    try:
        return VARIANTS[name]
    except KeyError:
        raise UnknownVariantError(
            f"unknown model {name!r}; choose one of {', '.join(VARIANTS)}"
        ) from None


def names() -> tuple[str, ...]:
    """Every variant's name, in report order."""
    return tuple(VARIANTS)


def demo_variants() -> tuple[Variant, ...]:
    """The variants ``hybridpose demo`` streams."""
    return tuple(v for v in VARIANTS.values() if v.demo)


def ablations() -> tuple[Variant, ...]:
    """The hybrid's ablations: trained by ``reproduce --ablations``, else derived."""
    return tuple(v for v in VARIANTS.values() if v.is_ablation)


def hybrid_checkpoint_name(state_init: bool, delta_readout: bool) -> str:
    """The checkpoint stem a hybrid stage with these switches is saved as (the ablation's
    name when one is registered with them)."""
    for v in VARIANTS.values():
        if v.behaviour == "hybrid" and (v.state_init, v.delta_readout) == (
            state_init,
            delta_readout,
        ):
            return v.checkpoint
    stem = VARIANTS[MAIN].checkpoint
    return stem + ("" if state_init else "_no_state_init") + ("" if delta_readout else "_no_delta")


__all__ = [
    "MAIN",
    "PAPER_RATIOS",
    "REFERENCE",
    "SCHEDULES",
    "SNN_ALONE",
    "Behaviour",
    "PaperFigures",
    "Schedule",
    "UnknownVariantError",
    "Variant",
    "ablations",
    "demo_variants",
    "hybrid_checkpoint_name",
    "names",
    "variant",
]
