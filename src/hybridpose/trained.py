"""The networks of a training run, by model variant (:mod:`hybridpose.variants`).

A training run's checkpoint directory holds ``ann.pt``, ``snn.pt``, ``hybrid.pt`` and possibly
trained ablations and ``hybrid_rnn.pt`` (the CNN-RNN hybrid, an optional variant: left out
when its file is missing, unless asked for by name); :func:`load_models` reads the
checkpoints the chosen variants need (each file once) and derives an ablation whose own
checkpoint is missing from the one it names (``Variant.derive_from``), switching its option
off. The evaluation, the demo, the stream command and the benchmarks all load through it.
"""

from __future__ import annotations

from collections.abc import Iterable
from copy import deepcopy
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, TypeVar

from hybridpose.checkpoint import Model, load_model
from hybridpose.data import WindowConfig
from hybridpose.errors import HybridPoseError
from hybridpose.nn.ann import ANN
from hybridpose.nn.hybrid import HybridPose, is_snn_hybrid
from hybridpose.nn.presets import ModelConfig
from hybridpose.nn.rnn import ConvRNN
from hybridpose.nn.snn import SNN
from hybridpose.recipes import window_from_dict
from hybridpose.variants import MAIN, REFERENCE, SNN_ALONE, VARIANTS, Variant, variant

M = TypeVar("M", ANN, SNN, HybridPose)


class EvaluationError(HybridPoseError, ValueError):
    """The checkpoints or the data cannot be evaluated together."""


def network_kind(v: Variant) -> type[Model]:
    """The module a variant runs: the ANN, the SNN, or the hybrid (ANN + SNN, or ANN +
    ConvGRU when its schedule's ``stepper`` is ``convgru``: :func:`stepper_kind`)."""
    schedule = v.schedule
    if schedule.snn == "none":
        return ANN
    if schedule.ann == "never":
        return SNN
    return HybridPose


def stepper_kind(v: Variant) -> type[SNN] | type[ConvRNN] | None:
    """The network that steps every bin in ``v`` (None: the ANN alone)."""
    if not v.runs_snn:
        return None
    return ConvRNN if v.schedule.stepper == "convgru" else SNN


@dataclass
class TrainedModels:
    """The networks of a training run (:func:`load_models`) and what they were trained for.

    Attributes:
        networks: per variant name, the module it runs (variants that share a checkpoint
            share the module).
        derived: per variant that could be derived, whether it was (True) or read from its
            own checkpoint (False).
        config: the model configuration (of the main hybrid).
        window: the window settings the checkpoints were trained on.
        preset: the recipe's name ("" when the checkpoint does not say).
    """

    networks: dict[str, Model]
    derived: dict[str, bool]
    config: ModelConfig
    window: WindowConfig
    preset: str

    @property
    def variants(self) -> tuple[Variant, ...]:
        """The loaded variants, in report order."""
        return tuple(VARIANTS[name] for name in self.networks)

    @property
    def ann(self) -> ANN:
        """The ANN of the reference variant (the ANN at every step)."""
        return self._network(REFERENCE, ANN)

    @property
    def snn(self) -> SNN:
        """The SNN trained alone."""
        return self._network(SNN_ALONE, SNN)

    @property
    def hybrid(self) -> HybridPose:
        """The main hybrid."""
        return self._network(MAIN, HybridPose)

    def _network(self, name: str, kind: type[M]) -> M:
        if name not in self.networks:
            raise KeyError(f"{name} was not loaded (load_models(..., names) left it out)")
        net = self.networks[name]
        if not isinstance(net, kind):
            raise TypeError(f"{name} runs a {type(net).__name__}, not a {kind.__name__}")
        return net

    def hybrids(self) -> dict[str, HybridPose]:
        """The loaded variants that run a :class:`HybridPose` of the SNN, by name (the
        CNN-RNN hybrid is not one)."""
        return {n: m for n, m in self.networks.items() if is_snn_hybrid(m)}

    def modules(self) -> list[Model]:
        """Every distinct module, once."""
        out: dict[int, Model] = {}
        for m in self.networks.values():
            out.setdefault(id(m), m)
        return list(out.values())


def _load(
    path: Path, kind: type[Model], stepper: type[SNN] | type[ConvRNN] | None = SNN
) -> tuple[Model, dict[str, Any]]:
    """The checkpoint's model, checked to be a ``kind`` (a hybrid's stepping network a
    ``stepper``)."""
    model, data = load_model(path)
    if not isinstance(model, kind):
        raise EvaluationError(f"{path}: expected a {kind.__name__} checkpoint, got {data['stage']}")
    if isinstance(model, HybridPose) and stepper is not None and not isinstance(model.snn, stepper):
        raise EvaluationError(
            f"{path}: expected a hybrid of a {stepper.__name__}, got {data['stage']}"
        )
    return model, data


def derive(base: HybridPose, v: Variant) -> HybridPose:
    """A copy of the hybrid ``base`` with ``v``'s switches, ``state_init`` and the SNN's
    ``delta_readout`` (an ablation without retraining)."""
    copy = deepcopy(base)
    copy.config = replace(copy.config, state_init=v.state_init)
    copy.snn.config = replace(copy.snn.config, delta_readout=v.delta_readout)
    copy.ann.snn_config = copy.snn.config  # the state heads' contract follows the SNN's
    return copy


def checkpoint_file(directory: str | Path, v: Variant) -> Path:
    """The checkpoint file ``v``'s networks come from: its own, or, for an ablation whose own
    file is missing, the one it is derived from."""
    own = Path(directory) / f"{v.checkpoint}.pt"
    if own.exists() or v.derive_from is None:
        return own
    return Path(directory) / f"{v.derive_from}.pt"


def load_models(directory: str | Path, names: Iterable[str] | None = None) -> TrainedModels:
    """The networks of the variants ``names`` (default: every variant, but an optional one
    whose checkpoint is missing) from a training run's checkpoint directory; variants that run
    the same checkpoint share one module.

    Raises:
        FileNotFoundError: the directory or a needed checkpoint does not exist (an optional
            variant asked for by name included).
        UnknownVariantError: a name is not a registered variant.
        EvaluationError: no variant chosen, a checkpoint holds another kind of network than
            its variant runs, or the checkpoints were trained on other windows.
    """
    directory = Path(directory)
    if not directory.is_dir():
        raise FileNotFoundError(f"{directory}: no such checkpoint directory")
    if names is None:
        chosen = [
            v for v in VARIANTS.values()
            if not v.optional or (directory / f"{v.checkpoint}.pt").exists()
        ]  # fmt: skip
    else:
        chosen = [variant(n) for n in names]
    if not chosen:
        raise EvaluationError(f"{directory}: no model variant to load")
    chosen = sorted(chosen, key=lambda v: list(VARIANTS).index(v.name))
    read: dict[str, tuple[Model, dict[str, Any]]] = {}  # by checkpoint stem
    networks: dict[str, Model] = {}
    derived: dict[str, bool] = {}
    for v in chosen:
        path = directory / f"{v.checkpoint}.pt"
        if v.checkpoint in read:
            networks[v.name] = read[v.checkpoint][0]
        elif v.derive_from is not None and not path.exists():
            if v.derive_from not in read:
                read[v.derive_from] = _load(directory / f"{v.derive_from}.pt", HybridPose)
            base = read[v.derive_from][0]
            assert is_snn_hybrid(base)
            networks[v.name] = derive(base, v)
        else:
            if v.optional and not path.exists():
                raise FileNotFoundError(
                    f"{path}: no such checkpoint file; the optional {v.name} variant needs it "
                    f"(train its stage, or leave the variant out)"
                )
            read[v.checkpoint] = _load(path, network_kind(v), stepper_kind(v))
            networks[v.name] = read[v.checkpoint][0]
        if v.derive_from is not None:
            derived[v.name] = v.checkpoint not in read
    config, window, preset = _settings(directory, read)
    return TrainedModels(networks, derived, config, window, preset)


def _settings(
    directory: Path, read: dict[str, tuple[Model, dict[str, Any]]]
) -> tuple[ModelConfig, WindowConfig, str]:
    """The model configuration, window settings and preset of the checkpoints read: those of
    the first hybrid (else the first checkpoint); every checkpoint with an ANN must have been
    trained on the same windows."""
    with_ann = [(stem, data) for stem, (m, data) in read.items() if not isinstance(m, SNN)]
    hybrids = [data for _, (m, data) in read.items() if isinstance(m, HybridPose)]
    main = hybrids[0] if hybrids else next(iter(read.values()))[1]
    window = window_from_dict((with_ann[0][1] if with_ann else main)["window_config"])
    for stem, data in with_ann[1:]:
        if window_from_dict(data["window_config"]) != window:
            raise EvaluationError(
                f"{directory}: {with_ann[0][0]}.pt and {stem}.pt were trained on other windows"
            )
    config = ModelConfig.from_dict(main["model_config"])
    return config, window, str(main.get("preset", ""))


__all__ = [
    "EvaluationError",
    "TrainedModels",
    "checkpoint_file",
    "derive",
    "load_models",
    "network_kind",
    "stepper_kind",
]
