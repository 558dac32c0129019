"""Verification of the exported graphs: onnxruntime against PyTorch, the LIF's threshold included.

:func:`verify_onnx` (run by :func:`~hybridpose.export.export_onnx` before it writes anything)
compares onnxruntime with PyTorch on random event frames, random sparse integer bins and random
states: every output must agree within :data:`TOLERANCE` (1e-4, absolute). Two runtimes sum a
convolution in different orders, so their membranes differ by about 1e-6; a membrane that
close to the threshold may spike in one and not the other, both rightly, and that one spike
then moves the next layer by far more than the tolerance. The one-step check therefore draws
its states so that no membrane of the step lands within the tolerance of the threshold (one
that would is moved away on its own side, which changes no spike). A window (the ANN, then
steps fed their own state) cannot be steered that way: there a PyTorch loop of
:func:`plain_snn_step` takes the other runtime's decision at exactly the membranes within the
tolerance of the threshold (onnxruntime's, read from its next membrane, about 0 after a spike
and about ``v_th`` without; ``HybridPose.forward``'s, read from its spikes) and everything else
must agree. :class:`Verification` counts those borderline membranes and the decisions that
differed.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import torch
from torch import Tensor, nn

from hybridpose.data import WindowConfig
from hybridpose.errors import first_line
from hybridpose.export.graphs import (
    ANN_FILE,
    ANN_OUTPUTS,
    BINS,
    FRAME,
    HEATMAPS,
    STATE_FIELDS,
    STATE_INPUTS,
    STEP_FILE,
    STEP_OUTPUTS,
    ExportError,
    _load_hybrid,
    require_onnx,
)
from hybridpose.nn.hybrid import HybridPose
from hybridpose.nn.presets import ModelConfig
from hybridpose.nn.snn import SNN, SNNState, SpikeRule, heaviside, plain_snn_step

FloatArray = npt.NDArray[np.float32]

TOLERANCE = 1e-4
"""Largest absolute difference between onnxruntime and PyTorch that verification accepts."""

BIN_RATE = 0.05
"""Mean events per pixel and polarity in a random verification bin (sparse, like real bins)."""


class VerificationError(ExportError):
    """The exported graphs disagree with PyTorch by more than :data:`TOLERANCE`."""

    def __init__(self, message: str, verification: Verification) -> None:
        super().__init__(message)
        self.verification = verification


@dataclass(frozen=True)
class Verification:
    """How far onnxruntime is from PyTorch: the largest absolute differences, per output.

    Attributes:
        ann: ``ann.onnx`` against ``HybridPose.initial_state`` on random event frames.
        step: ``snn_step.onnx`` against ``SNN.step`` (the fused LIF) on random bins and random
            states, none of whose membranes lands within ``tolerance`` of the threshold.
        loop: the ANN graph once, then ``loop_steps`` step graphs fed their own state, against
            a PyTorch loop of :func:`plain_snn_step` that decides the membranes within
            ``tolerance`` of the threshold as onnxruntime did (worst step).
        reference_vs_forward: the same PyTorch loop, deciding the borderline membranes as
            ``HybridPose.forward`` did, against ``HybridPose.forward`` on the same window:
            the heatmaps of every step and the final state.
        step_margin: the closest any membrane of the one-step check came to the threshold.
        borderline: membranes of the loop (neurons x steps) within ``tolerance`` of the
            threshold, where the reference followed onnxruntime's spike decision.
        flips: of those, the ones where onnxruntime decided differently from PyTorch's step.
        forward_flips: the same count for ``HybridPose.forward``.
        batch: the batch size of every check.
        loop_steps: the steps of the loop.
        tolerance: the largest accepted difference.
    """

    ann: Mapping[str, float]
    step: Mapping[str, float]
    loop: Mapping[str, float]
    reference_vs_forward: float
    step_margin: float
    borderline: int
    flips: int
    forward_flips: int
    batch: int
    loop_steps: int
    tolerance: float = TOLERANCE

    def differences(self) -> dict[str, float]:
        """Every compared quantity by name (``check.output``) with its largest difference."""
        out = {f"{check}.{name}": value for check in ("ann", "step", "loop")
               for name, value in getattr(self, check).items()}  # fmt: skip
        out["reference_vs_forward"] = self.reference_vs_forward
        return out

    @property
    def max_abs_diff(self) -> float:
        """The largest difference of all (infinite where a value was NaN or infinite)."""
        return max(self.differences().values())

    @property
    def passed(self) -> bool:
        return self.max_abs_diff <= self.tolerance


def verify_onnx(
    export_dir: str | os.PathLike[str],
    checkpoint_dir: str | os.PathLike[str],
    *,
    batch: int = 2,
    steps: int | None = None,
    seed: int = 0,
) -> Verification:
    """Check an export against the checkpoint it came from, with onnxruntime and PyTorch.

    Three checks on seeded random inputs (the module docstring says how the threshold is
    handled): ``ann.onnx`` against ``HybridPose.initial_state``; ``snn_step.onnx`` against
    ``SNN.step``; the ANN graph once then ``steps`` step graphs, each fed the state the last
    one returned, against the same window in PyTorch, which is itself checked against
    ``HybridPose.forward``. Frames hold the checkpoint's ``ann_events`` events at random
    pixels, bins and polarities; bins are Poisson counts (:data:`BIN_RATE` per pixel and
    polarity); membranes are normal with standard deviation ``v_th``.

    Args:
        export_dir: the directory :func:`export_onnx` wrote.
        checkpoint_dir: what was exported: its directory, or the checkpoint file.
        batch: batch size of every check.
        steps: steps of the loop; None for the checkpoint's steps per window.
        seed: seed of the random inputs.

    Returns:
        the largest differences, all within :data:`TOLERANCE`.

    Raises:
        FileNotFoundError: a graph or the checkpoint is missing.
        CheckpointError: an unreadable checkpoint.
        ExportError: the ``onnx`` extra is missing, or onnxruntime cannot load or run a graph.
        VerificationError: a difference above :data:`TOLERANCE`.
    """
    require_onnx()
    if batch < 1 or (steps is not None and steps < 1):
        raise ValueError(f"batch and steps must be >= 1, got {batch} and {steps}")
    hybrid, config, window, _ = _load_hybrid(Path(checkpoint_dir))
    export = Path(export_dir)
    graphs = []
    for name in (ANN_FILE, STEP_FILE):
        path = export / name
        if not path.is_file():
            raise FileNotFoundError(f"{path}: no such file (write it with export_onnx)")
        graphs.append(path.read_bytes())
    n_steps = window.steps if steps is None else steps
    verification = _verify(
        graphs[0], graphs[1], hybrid, config, window, batch=batch, steps=n_steps, seed=seed
    )
    _raise_if_failed(verification, export)
    return verification


def _raise_if_failed(verification: Verification, where: Path, note: str = "") -> None:
    if verification.passed:
        return
    diffs = verification.differences()
    worst = max(diffs, key=lambda k: diffs[k])
    raise VerificationError(
        f"{where}: the export does not match PyTorch: {worst} differs by {diffs[worst]:.3g} "
        f"(tolerance {verification.tolerance:g}){note}",
        verification,
    )


class _Runtime:
    """One graph in an onnxruntime session, fed and read by name."""

    def __init__(self, model: bytes, label: str) -> None:
        import onnxruntime

        options = onnxruntime.SessionOptions()
        options.log_severity_level = 3  # errors only: its warnings are about graph rewrites
        # its idle worker threads would otherwise spin for a while after every run, taking the
        # cores from the PyTorch reference that runs between the graphs
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        self.label = label
        try:
            self.session = onnxruntime.InferenceSession(
                model, options, providers=["CPUExecutionProvider"]
            )
        except Exception as err:  # onnxruntime raises its own types for every kind of damage
            raise ExportError(f"{label}: onnxruntime cannot load it ({first_line(err)})") from None

    def run(
        self, names: Sequence[str], feeds: Mapping[str, Tensor | FloatArray]
    ) -> list[FloatArray]:
        arrays = {k: v.numpy() if isinstance(v, Tensor) else v for k, v in feeds.items()}
        try:
            outputs: list[FloatArray] = self.session.run(list(names), arrays)
        except Exception as err:  # as above: wrong names, shapes or types
            raise ExportError(f"{self.label}: onnxruntime failed ({first_line(err)})") from None
        return outputs


def _max_abs(name: str, got: FloatArray | Tensor, want: Tensor) -> float:
    """``max |got - want|``; infinite where either is not finite."""
    got_t = torch.from_numpy(np.asarray(got)) if not isinstance(got, Tensor) else got
    if got_t.shape != want.shape:
        raise ExportError(f"{name}: shape {tuple(got_t.shape)}, PyTorch's {tuple(want.shape)}")
    value = float((got_t.double() - want.double()).abs().max())
    return value if math.isfinite(value) else math.inf


def _diffs(
    names: Sequence[str], got: Sequence[FloatArray], want: Sequence[Tensor]
) -> dict[str, float]:
    return {n: _max_abs(n, g, w) for n, g, w in zip(names, got, want, strict=True)}


def _worst(a: Mapping[str, float], b: Mapping[str, float]) -> dict[str, float]:
    return {k: max(a.get(k, 0.0), b[k]) for k in b}


def _random_frame(
    gen: torch.Generator, batch: int, channels: int, height: int, width: int, events: int
) -> Tensor:
    """``events`` events per sample at uniformly random pixels, bins and polarities: a frame
    of counts like ``stacked_histogram``'s (the ANN never saw dense noise; its states would
    be far larger than on events, and so would their rounding errors)."""
    size = channels * height * width
    index = torch.randint(0, size, (batch, events), generator=gen)
    counts = torch.zeros(batch, size).scatter_add_(1, index, torch.ones(batch, events))
    return counts.reshape(batch, channels, height, width)


def _random_bins(
    gen: torch.Generator, steps: int, batch: int, channels: int, height: int, width: int
) -> Tensor:
    """Poisson event counts, :data:`BIN_RATE` on average per pixel and polarity."""
    rate = torch.full((steps, batch, channels, height, width), BIN_RATE)
    return torch.poisson(rate, generator=gen)


def _random_state(gen: torch.Generator, snn: SNN, batch: int, height: int, width: int) -> SNNState:
    """Membranes normal with standard deviation ``v_th`` (a fair share above the threshold),
    the readout standard normal."""
    zero = snn.zero_state(batch, height, width)
    scale = snn.config.v_th
    return SNNState._make(
        torch.randn(t.shape, generator=gen) * (1.0 if name == "readout" else scale)
        for name, t in zip(STATE_FIELDS, zero, strict=True)
    )


def _membranes(snn: SNN, bins: Tensor, state: SNNState) -> dict[str, Tensor]:
    """Every layer's ``h`` (before the threshold) in one PyTorch step."""
    seen: dict[str, Tensor] = {}

    def record(name: str, h: Tensor, v_th: float) -> Tensor:
        seen[name] = h
        return heaviside(name, h, v_th)

    plain_snn_step(snn, bins, state, record)
    return seen


def _clear_of_threshold(snn: SNN, bins: Tensor, state: SNNState, margin: float) -> SNNState:
    """``state`` with every membrane whose ``h`` would land within ``margin`` of the threshold
    in this step moved ``2 margin`` further away on its own side.

    ``h = v (1 - 1 / tau) + x / tau``: moving ``v`` by ``d`` moves ``h`` by ``d (1 - 1 / tau)``
    and nothing else; staying on its side, the neuron spikes as before, so no other layer's
    input changes.
    """
    fields = state._asdict()
    layers = snn.spiking_layers()
    for name, h in _membranes(snn, bins, state).items():
        v_th = layers[name].v_th
        gain = 1.0 - 1.0 / float(layers[name].tau)
        away = torch.where(h >= v_th, 2 * margin / gain, -2 * margin / gain)
        fields[name] = torch.where((h - v_th).abs() < margin, fields[name] + away, fields[name])
    return SNNState(**fields)


def _threshold_margin(snn: SNN, bins: Tensor, state: SNNState) -> float:
    """The closest any ``h`` of the step comes to its layer's threshold."""
    layers = snn.spiking_layers()
    return min(
        float((h - layers[name].v_th).abs().min())
        for name, h in _membranes(snn, bins, state).items()
    )


@dataclass
class _Tally:
    borderline: int = 0
    flips: int = 0


def _follow(decisions: Mapping[str, Tensor], margin: float, tally: _Tally) -> SpikeRule:
    """The LIF's rule, except within ``margin`` of the threshold, where each layer takes the
    other runtime's decision (``decisions[name]``, boolean, the layer's shape)."""

    def rule(name: str, h: Tensor, v_th: float) -> Tensor:
        own = h >= v_th
        near = (h - v_th).abs() < margin
        theirs = decisions[name]
        tally.borderline += int(near.sum())
        tally.flips += int((near & (own != theirs)).sum())
        return torch.where(near, theirs, own).to(h.dtype)

    return rule


def _decisions_from_state(snn: SNN, next_state: SNNState) -> dict[str, Tensor]:
    """Which neurons spiked, read from the next membranes ``h - s v_th``: where ``h`` is near
    ``v_th`` (the only place this is used) they are about 0 after a spike, ``v_th`` without."""
    return {
        name: getattr(next_state, name) < layer.v_th / 2
        for name, layer in snn.spiking_layers().items()
    }


def _forward_with_spikes(
    hybrid: HybridPose, frame: Tensor, bins: Tensor
) -> tuple[Tensor, SNNState, dict[str, Tensor]]:
    """``HybridPose.forward``'s heatmaps (T, B, J, H, W) and final state, and the spikes
    (T, B, C, H', W') every spiking layer emitted, as booleans."""
    spikes: dict[str, Tensor] = {}

    def keep(name: str) -> Callable[[nn.Module, Any, Any], None]:
        def hook(module: nn.Module, args: Any, output: Any) -> None:
            spikes[name] = output[0] > 0  # SpikingConv returns (spikes, v)

        return hook

    layers = hybrid.snn.spiking_layers()
    handles = [layer.register_forward_hook(keep(name)) for name, layer in layers.items()]
    try:
        _, heatmaps, state = hybrid(frame, bins)
    finally:
        for handle in handles:
            handle.remove()
    return heatmaps, state, spikes


def _verify(
    ann_model: bytes,
    step_model: bytes,
    hybrid: HybridPose,
    config: ModelConfig,
    window: WindowConfig,
    *,
    batch: int,
    steps: int,
    seed: int,
) -> Verification:
    ann_graph = _Runtime(ann_model, ANN_FILE)
    step_graph = _Runtime(step_model, STEP_FILE)
    snn = hybrid.snn
    height, width = config.input_size
    c_ann, c_snn = config.ann.in_channels, config.snn.in_channels
    gen = torch.Generator().manual_seed(seed)
    hybrid.eval()
    with torch.no_grad():
        # 1. the ANN graph: continuous, no threshold anywhere
        frame = _random_frame(gen, batch, c_ann, height, width, window.ann_events)
        heatmaps, state = hybrid.initial_state(frame)
        got = ann_graph.run(ANN_OUTPUTS, {FRAME: frame})
        ann = _diffs(ANN_OUTPUTS, got, (heatmaps, *state))

        # 2. one step from random states kept clear of the threshold, against the fused LIF
        bins = _random_bins(gen, 1, batch, c_snn, height, width)[0]
        state = _clear_of_threshold(snn, bins, _random_state(gen, snn, batch, height, width),
                                    TOLERANCE)  # fmt: skip
        step_margin = _threshold_margin(snn, bins, state)
        heatmaps, next_state = snn.step(bins, state)
        got = step_graph.run(
            STEP_OUTPUTS, {BINS: bins, **dict(zip(STATE_INPUTS, state, strict=True))}
        )
        step = _diffs(STEP_OUTPUTS, got, (heatmaps, *next_state))

        # 3. a window: the ANN graph once, then the step graph fed its own state; two PyTorch
        # step loops follow it, one deciding the borderline membranes as onnxruntime did, one
        # as HybridPose.forward did (its convolutions see T x B samples at once, not B, and
        # round differently too)
        frame = _random_frame(gen, batch, c_ann, height, width, window.ann_events)
        bins_seq = _random_bins(gen, steps, batch, c_snn, height, width)
        forward_heatmaps, forward_state, forward_spikes = _forward_with_spikes(
            hybrid, frame, bins_seq
        )
        runtime_state = ann_graph.run(STATE_INPUTS, {FRAME: frame})
        _, start = hybrid.initial_state(frame)
        like_runtime, like_forward = start, start
        runtime_tally, forward_tally = _Tally(), _Tally()
        loop: dict[str, float] = {}
        reference_vs_forward = 0.0
        for k in range(steps):
            feeds: dict[str, Tensor | FloatArray] = {BINS: bins_seq[k]}
            feeds.update(zip(STATE_INPUTS, runtime_state, strict=True))
            got = step_graph.run(STEP_OUTPUTS, feeds)
            runtime_next = SNNState._make(torch.from_numpy(a) for a in got[1:])
            rule = _follow(_decisions_from_state(snn, runtime_next), TOLERANCE, runtime_tally)
            heatmaps, like_runtime = plain_snn_step(snn, bins_seq[k], like_runtime, rule)
            loop = _worst(loop, _diffs(STEP_OUTPUTS, got, (heatmaps, *like_runtime)))
            decided = {name: s[k] for name, s in forward_spikes.items()}
            rule = _follow(decided, TOLERANCE, forward_tally)
            heatmaps, like_forward = plain_snn_step(snn, bins_seq[k], like_forward, rule)
            reference_vs_forward = max(
                reference_vs_forward, _max_abs(HEATMAPS, heatmaps, forward_heatmaps[k])
            )
            runtime_state = got[1:]
        for name, mine, theirs in zip(STATE_FIELDS, like_forward, forward_state, strict=True):
            reference_vs_forward = max(reference_vs_forward, _max_abs(name, mine, theirs))
    return Verification(
        ann=ann, step=step, loop=loop, reference_vs_forward=reference_vs_forward,
        step_margin=step_margin, borderline=runtime_tally.borderline, flips=runtime_tally.flips,
        forward_flips=forward_tally.flips, batch=batch, loop_steps=steps,
    )  # fmt: skip
