"""Streaming inference: events in, in chunks of any size; poses out at the SNN's rate.

:class:`StreamingPredictor` is the one object of hybridpose that holds mutable state. It cuts
the incoming events of one or more cameras into the SNN's time bins on an absolute grid
(``origin_us + k * bin_us``), and at the end of every bin it predicts one pose per camera, as
the model variant's behaviour says (:mod:`hybridpose.variants`; a window is ``reinit_every``
bins, the ANN's frame the last ``ann_events`` events before the window or the bin):

``ann_every_step``  the ANN at every bin end (the costly baseline)
``ann_held``        the ANN at every window start, its pose held until the next one
``snn_carried``     the SNN alone, from an empty state at the stream's start, never re-initialised
``snn_from_zero``   the SNN alone, restarted from an empty state at every window start
``hybrid``          the ANN initialises the SNN at every window start
                    (:meth:`~hybridpose.nn.hybrid.HybridPose.initial_state`), the SNN steps
                    every bin
``hybrid_rnn``      the same with the ConvGRU (:class:`~hybridpose.nn.rnn.ConvRNN`) in the
                    SNN's place: dense engine only

With ``ann_lead=L`` a hybrid's ANN runs in a second thread, ``L`` bins ahead of each window, and
the SNN it initialises catches up over those bins there, so that no step waits for the ANN
(:mod:`hybridpose.reinit`).

These are the variants of :mod:`hybridpose.evaluate`, computed step by step: on the same events
the predictions equal the offline batch evaluation's (tested).

Time: a bin ``[s, e)`` closes once every camera has delivered all its events with ``t < e``:
when an event with ``t >= e`` arrives on each camera, or when :meth:`StreamingPredictor.advance`
says that time has passed (a live source's clock, the end of a replayed slice). A gap without
events closes its bins with empty inputs, so the SNN's membranes decay as they would on
hardware; a burst is split across its bins. Within one camera events must arrive in time order.

Memory is bounded whatever the stream's length: per camera the last ``ann_events`` events (the
ANN frame's ring buffer) and the events not yet binned (those past the slowest camera's clock),
the SNN's state, and a fixed-size latency histogram. Poses are returned, not kept.

Latency: every pose carries the wall time its step took, from the bin's closing to the pose
(binning, the ANN when it runs, the SNN step, decoding and triangulation, all cameras
together); :class:`LatencyStats` keeps p50/p99 in bounded memory.
"""

from __future__ import annotations

import copy
import math
import time
from collections import deque
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, Protocol, TypeAlias

import numpy as np
import numpy.typing as npt
import torch
from torch import Tensor

from hybridpose._jit import jit
from hybridpose.checkpoint import Model, load_checkpoint
from hybridpose.data import WindowConfig, crop_origin
from hybridpose.errors import HybridPoseError
from hybridpose.events import EVENT_DTYPE, Events, check_event_array
from hybridpose.geometry import TwoViewTriangulator
from hybridpose.heatmaps import decode_array
from hybridpose.nn.ann import ANN
from hybridpose.nn.hybrid import HybridConfig, HybridPose
from hybridpose.nn.presets import ModelConfig
from hybridpose.nn.rnn import ConvRNN
from hybridpose.nn.snn import SNN, SNNState, fold_snn_batchnorm, plain_snn_step
from hybridpose.recipes import window_from_dict
from hybridpose.reinit import BackgroundInit
from hybridpose.representations import EventCounter, frame_size, stacked_histogram
from hybridpose.trained import checkpoint_file, load_models
from hybridpose.variants import MAIN, VARIANTS, UnknownVariantError, Variant, variant

Mode: TypeAlias = str
"""A model variant's name (:mod:`hybridpose.variants`)."""
Engine = Literal["dense", "event"]
FloatArray = npt.NDArray[np.float64]


class StreamError(HybridPoseError, ValueError):
    """Events or settings a stream cannot take (out of order, wrong camera, bad mode...)."""


# ------------------------------------------------------------------------------ latency


class LatencyStats:
    """Quantiles of step latencies in bounded memory: a histogram of log-spaced bins.

    Bins are ``10 ** (1 / per_decade)`` wide from 100 ns to 100 s, so a quantile is exact to
    that factor (about 1.2 % with the default 200 bins per decade); the count, mean and
    maximum are exact.
    """

    LOW_S = 1e-7
    DECADES = 9

    def __init__(self, per_decade: int = 200) -> None:
        self.per_decade = per_decade
        self.counts = np.zeros(self.DECADES * per_decade + 2, dtype=np.int64)
        self.count = 0
        self.total_s = 0.0
        self.max_s = 0.0

    def add(self, seconds: float) -> None:
        """Record one latency."""
        self.count += 1
        self.total_s += seconds
        self.max_s = max(self.max_s, seconds)
        if seconds < self.LOW_S:
            i = 0
        else:
            i = 1 + int(math.log10(seconds / self.LOW_S) * self.per_decade)
            i = min(i, len(self.counts) - 1)
        self.counts[i] += 1

    def quantile(self, q: float) -> float | None:
        """The ``q`` quantile in seconds (the geometric centre of its bin; None when empty)."""
        if self.count == 0:
            return None
        if not 0.0 <= q <= 1.0:
            raise ValueError(f"q must lie in [0, 1], got {q}")
        rank = max(1, math.ceil(q * self.count))
        i = int(np.searchsorted(np.cumsum(self.counts), rank))
        if i == 0:  # below the first bin: at most LOW_S
            return min(self.LOW_S, self.max_s)
        if i == len(self.counts) - 1:  # above the last bin: the maximum is the best bound
            return self.max_s
        centre = self.LOW_S * 10 ** ((i - 0.5) / self.per_decade)
        return float(min(centre, self.max_s))

    def merge(self, other: LatencyStats) -> None:
        """Add the latencies recorded by ``other`` (the same resolution)."""
        if other.per_decade != self.per_decade:
            raise ValueError("cannot merge latency histograms of different resolutions")
        self.counts += other.counts
        self.count += other.count
        self.total_s += other.total_s
        self.max_s = max(self.max_s, other.max_s)

    @property
    def mean_s(self) -> float | None:
        return self.total_s / self.count if self.count else None

    def summary(self) -> dict[str, float | int | None]:
        """``count``, ``p50_ms``, ``p99_ms``, ``mean_ms``, ``max_ms``."""

        def ms(x: float | None) -> float | None:
            return None if x is None else x * 1e3

        return {
            "count": self.count,
            "p50_ms": ms(self.quantile(0.5)),
            "p99_ms": ms(self.quantile(0.99)),
            "mean_ms": ms(self.mean_s),
            "max_ms": ms(self.max_s if self.count else None),
        }


# ------------------------------------------------------------------------------ buffers


class EventRing:
    """The last ``capacity`` events of one camera, in time order (the ANN frame's source)."""

    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        self._buf = np.empty(capacity, dtype=EVENT_DTYPE)
        self._size = 0
        self._head = 0  # where the next event goes

    def __len__(self) -> int:
        return self._size

    def extend(self, events: Events) -> None:
        """Append events (in time order, after those already held)."""
        n = len(events)
        if n == 0:
            return
        if n >= self.capacity:
            self._buf[:] = events[n - self.capacity :]
            self._head, self._size = 0, self.capacity
            return
        first = min(n, self.capacity - self._head)
        self._buf[self._head : self._head + first] = events[:first]
        self._buf[: n - first] = events[first:]
        self._head = (self._head + n) % self.capacity
        self._size = min(self.capacity, self._size + n)

    def events(self) -> Events:
        """A copy of the held events, oldest first."""
        if self._size < self.capacity:
            return self._buf[: self._size].copy()
        return np.concatenate([self._buf[self._head :], self._buf[: self._head]])


class _Pending:
    """Events of one camera received but not yet binned (time order), as the pushed chunks:
    taking a bin's events splits at most one chunk, so a stream pushed far ahead of another
    costs nothing per step."""

    def __init__(self) -> None:
        self._chunks: deque[Events] = deque()
        self.last_t: int | None = None

    def append(self, events: Events) -> None:
        if len(events):
            # a copy: the caller may reuse its buffer before the bins close
            self._chunks.append(events.copy())
            self.last_t = int(events["t"][-1])

    def take_before(self, t_us: int) -> Events:
        """Remove and return the events with ``t < t_us``."""
        taken: list[Events] = []
        while self._chunks:
            chunk = self._chunks[0]
            if int(chunk["t"][-1]) < t_us:
                taken.append(self._chunks.popleft())
                continue
            k = int(np.searchsorted(chunk["t"], t_us, side="left"))
            if k:
                taken.append(chunk[:k])
                self._chunks[0] = chunk[k:]
            break
        if not taken:
            return np.empty(0, dtype=EVENT_DTYPE)
        return taken[0] if len(taken) == 1 else np.concatenate(taken)


@jit
def _sensor_pixels(uv: npt.NDArray[np.float32], downsample: int, x0: int, y0: int,
                   out: npt.NDArray[np.float32]) -> None:  # fmt: skip
    """:func:`~hybridpose.data.to_sensor_pixels` of (S, J, 2) float32 model pixels into
    ``out`` (float32): the same float64 arithmetic in one compiled loop (numpy's per-call
    overhead made that function and the casts around it a tenth of a 1 ms step)."""
    for s in range(uv.shape[0]):
        for j in range(uv.shape[1]):
            out[s, j, 0] = (np.float64(uv[s, j, 0]) + 0.5) * downsample - 0.5 + x0
            out[s, j, 1] = (np.float64(uv[s, j, 1]) + 0.5) * downsample - 0.5 + y0


@jit
def _time_sorted(t: npt.NDArray[np.int64]) -> bool:
    """Whether ``t`` never decreases (one compiled loop: a chunk of one bin holds a few
    events, where numpy's diff and any cost several microseconds each)."""
    for i in range(1, t.shape[0]):  # noqa: SIM110 (a generator does not compile in numba)
        if t[i] < t[i - 1]:
            return False
    return True


# ------------------------------------------------------------------------------ SNN runners


Bins: TypeAlias = Tensor | npt.NDArray[np.float32]
"""One bin's event counts (B, C, H, W), as a tensor or a numpy array (the stream's: the
event-driven engine reads it as it is, a dense runner moves it to its device)."""


class SNNRunner(Protocol):
    """One SNN step at a time from a state it holds (the dense or the event-driven engine):
    ``step`` returns the heatmaps (B, J, H, W), ``step_uv`` the decoded joints (B, J, 2) in
    heatmap pixels (:func:`~hybridpose.heatmaps.decode_array`), ``advance`` nothing."""

    def reset(self, batch: int, height: int, width: int) -> None: ...
    def set_state(self, state: SNNState) -> None: ...
    def step(self, x: Bins) -> Tensor: ...
    def step_uv(self, x: Bins) -> npt.NDArray[np.float32]: ...
    def advance(self, x: Bins) -> None: ...


def _decoded(heatmaps: Tensor) -> npt.NDArray[np.float32]:
    """The joints (..., J, 2) in heatmap pixels of heatmaps on any device."""
    return decode_array(heatmaps.detach().cpu().numpy())


class _DecodesHeatmaps:
    """What the torch runners share: ``set_state``, and ``step_uv`` and ``advance`` of a step
    that computes the heatmaps anyway."""

    state: SNNState | None

    def set_state(self, state: SNNState) -> None:
        # contiguous: a channels-last state (the predictor's ANN's) would run the step in it
        self.state = SNNState._make(t.contiguous() for t in state)

    def step(self, x: Bins) -> Tensor:
        raise NotImplementedError

    def step_uv(self, x: Bins) -> npt.NDArray[np.float32]:
        return _decoded(self.step(x))

    def advance(self, x: Bins) -> None:
        self.step(x)


class DenseRunner(_DecodesHeatmaps):
    """One SNN step in PyTorch: :func:`~hybridpose.nn.snn.plain_snn_step` (the LIF as a few
    tensor operations; equal to :meth:`SNN.step`) under ``torch.inference_mode``, BatchNorm
    folded into the convolutions (a copy). The training LIF's fused numba kernel is not used:
    for one step it costs more than it saves, and its thread pool competes with torch's."""

    def __init__(self, snn: SNN, device: torch.device) -> None:
        self.snn = fold_snn_batchnorm(copy.deepcopy(snn).eval()).to(device)
        self.device = device
        self.state: SNNState | None = None

    def reset(self, batch: int, height: int, width: int) -> None:
        self.state = self.snn.zero_state(batch, height, width, self.device)

    @torch.inference_mode()
    def step(self, x: Bins) -> Tensor:
        if self.state is None:
            raise StreamError("the SNN has no state: reset or set it first")
        out, self.state = plain_snn_step(self.snn, torch.as_tensor(x, device=self.device),
                                         self.state)  # fmt: skip
        return out


class RecurrentRunner(_DecodesHeatmaps):
    """One ConvGRU step (the CNN-RNN hybrid's :meth:`ConvRNN.step`, a copy in eval mode)
    under ``torch.inference_mode``."""

    def __init__(self, rnn: ConvRNN, device: torch.device) -> None:
        self.rnn = copy.deepcopy(rnn).eval().to(device)
        self.device = device
        self.state: SNNState | None = None

    def reset(self, batch: int, height: int, width: int) -> None:
        self.state = self.rnn.zero_state(batch, height, width, self.device)

    @torch.inference_mode()
    def step(self, x: Bins) -> Tensor:
        if self.state is None:
            raise StreamError("the ConvGRU has no state: reset or set it first")
        out, self.state = self.rnn.step(torch.as_tensor(x, device=self.device), self.state)
        return out


def make_runner(snn: SNN | ConvRNN, engine: Engine, device: torch.device) -> SNNRunner:
    """The SNN engine by name: ``dense`` (PyTorch) or ``event`` (event-driven, CPU); a
    ConvGRU runs on the dense engine only."""
    if isinstance(snn, ConvRNN):
        if engine != "dense":
            raise StreamError(
                f"the {engine!r} engine runs SNNs only; the CNN-RNN hybrid's ConvGRU runs on "
                "the dense engine"
            )
        return RecurrentRunner(snn, device)
    if engine == "dense":
        return DenseRunner(snn, device)
    if engine == "event":
        if device.type != "cpu":
            raise StreamError(
                f"the event-driven engine runs on the CPU only, not on {device}; use the dense "
                "engine there"
            )
        from hybridpose.nn.event_driven import EventDrivenSNN

        return EventDrivenSNN(snn)
    raise StreamError(f"unknown engine {engine!r}; choose 'dense' or 'event'")


# ------------------------------------------------------------------------------ predictor


@dataclass(frozen=True)
class _AnnFrames:
    """The ANN's input from each stream's held events: (S, C, H, W) frames on ``device``
    (a plain callable: the background worker builds them, and holds no predictor)."""

    sensor_size: tuple[int, int]
    window: WindowConfig
    device: torch.device

    def __call__(self, events: Sequence[Events]) -> Tensor:
        cfg = self.window
        frames = [
            stacked_histogram(
                e, self.sensor_size, cfg.ann_bins, crop=cfg.crop, downsample=cfg.downsample
            )
            for e in events
        ]
        return torch.from_numpy(np.stack(frames).astype(np.float32)).to(self.device)


def _inference_copy(ann: ANN, device: torch.device) -> ANN:
    """A copy of ``ann`` in evaluation mode on ``device``; on the CPU its weights are in
    channels-last memory, where oneDNN's convolutions need no reordering: the shipped ANN
    ran 25% faster (16.5 against 12.5 ms for two 64x64 frames, one thread), with outputs
    equal up to float32 rounding (3e-5)."""
    copied = copy.deepcopy(ann).eval().to(device)
    if device.type == "cpu":
        copied = copied.to(memory_format=torch.channels_last)  # type: ignore[call-overload]
    return copied


def _check_lead(lead: int, reinit_every: int, initialises: bool, mode: str) -> int:
    """``ann_lead``, checked: 0, or 1..reinit_every - 1 for a variant whose ANN initialises a
    network."""
    if isinstance(lead, bool) or not isinstance(lead, int) or lead < 0:
        raise StreamError(f"ann_lead must be a whole number of bins >= 0, got {lead!r}")
    if lead and not initialises:
        raise StreamError(
            f"ann_lead: mode {mode!r} has no ANN that initialises a network to run ahead"
        )
    if lead >= reinit_every:
        raise StreamError(
            f"ann_lead must be below the window ({reinit_every} bins), got {lead}: the next "
            "window's ANN would start before the last one's had joined"
        )
    return lead


def stream_variant(mode: Mode | Variant) -> Variant:
    """The variant a stream runs, by name (a :class:`StreamError` naming the choices)."""
    if isinstance(mode, Variant):
        return mode
    try:
        return variant(mode)
    except UnknownVariantError:
        raise StreamError(f"unknown mode {mode!r}; choose one of {', '.join(VARIANTS)}") from None


def checkpoint_geometry(directory: str | Path, mode: Mode) -> tuple[WindowConfig, tuple[int, int]]:
    """The window settings and the sensor size a mode's checkpoint expects (weights not built)."""
    data = load_checkpoint(checkpoint_file(directory, stream_variant(mode)))
    config = ModelConfig.from_dict(data["model_config"])
    return window_from_dict(data["window_config"]), config.sensor_size


def poses_between(start_us: int, end_us: int, bin_us: int, period_us: int) -> int:
    """How many poses a predictor gives for a stream whose first event is at ``start_us`` when
    it is advanced to ``end_us``: its bins start at the multiple of ``period_us`` (the time
    between initialisations) at or before the first event, and every bin that ends by
    ``end_us`` closes."""
    origin = start_us // period_us * period_us
    return max(0, (end_us - origin) // bin_us)


def _check_networks(v: Variant, ann: ANN | None, snn: SNN | ConvRNN | None) -> None:
    """The variant's networks are given, and the one that steps is of its kind."""
    if v.runs_ann and ann is None:
        raise StreamError(f"mode {v.name!r} needs the ANN")
    if v.runs_snn and snn is None:
        raise StreamError(f"mode {v.name!r} needs the SNN")
    stepper = ConvRNN if v.schedule.stepper == "convgru" else SNN
    if v.runs_snn and not isinstance(snn, stepper):
        raise StreamError(f"mode {v.name!r} steps a {stepper.__name__}, not a {type(snn).__name__}")


@dataclass(frozen=True)
class StreamPose:
    """One prediction of a stream.

    Attributes:
        t_us: the end of the bin: the time the pose is for.
        index: the bin's number on the stream's grid (``(t_us - origin_us) / bin_us - 1``).
        step: bins since the last ANN initialisation, 1..reinit_every (``index % K + 1``).
        uv: (S, J, 2) joints in sensor pixels, one row per camera stream.
        xyz: (J, 3) world mm, triangulated from two calibrated streams (else None).
        events: events in this bin, all streams together.
        latency_s: wall time of this step, from the bin's closing to this pose.
    """

    t_us: int
    index: int
    step: int
    uv: npt.NDArray[np.float32]
    xyz: FloatArray | None
    events: int
    latency_s: float


class StreamingPredictor:
    """Events of ``streams`` cameras in, one pose per bin out (see the module docstring).

    Args:
        mode: the model variant, or its name (:mod:`hybridpose.variants`).
        window: the checkpoint's window settings (ANN frame, bin length, crop, downsampling).
        sensor_size: ``(width, height)`` of the cameras.
        ann: the ANN (variants that run one).
        snn: the SNN (variants that run one), or the ConvGRU (the CNN-RNN hybrid).
        state_init: the ANN sets the SNN's membranes (False: zeros, readout only); None: as
            the variant says.
        projections: one (3, 4) ``P`` per stream, or None; two give 3D poses.
        streams: the number of camera streams when ``projections`` is None.
        reinit_every: bins between ANN initialisations (default ``window.steps``).
        origin_us: where the bin grid starts; re-initialisations fall on ``origin_us + k *
            reinit_every * bin_us``. None (the default): the multiple of ``reinit_every *
            bin_us`` at or before the first event or :meth:`advance` time, so that a replayed
            recording's windows fall where the offline evaluation puts them and a live
            camera's clock (any epoch) works alike.
        engine: ``dense`` (PyTorch) or ``event`` (event-driven, CPU) for the SNN.
        device: where the networks run.
        ann_lead: 0 (the default): the ANN initialises the SNN at the window's start, in the
            step of its first bin. ``L >= 1`` (hybrids, ``L < reinit_every``): it runs in a
            second thread on the events before ``L`` bins ahead of the window, and the SNN it
            initialises catches up over those bins there (:mod:`hybridpose.reinit`), so that
            no step waits for the ANN. A window with no event before it (the stream's first)
            takes the ANN's output on empty frames, computed when the predictor is made.
    """

    def __init__(
        self,
        mode: Mode,
        window: WindowConfig,
        sensor_size: tuple[int, int],
        *,
        ann: ANN | None = None,
        snn: SNN | ConvRNN | None = None,
        state_init: bool | None = None,
        projections: Sequence[npt.ArrayLike | None] | None = None,
        streams: int | None = None,
        reinit_every: int | None = None,
        origin_us: int | None = None,
        engine: Engine = "dense",
        device: str | torch.device = "cpu",
        ann_lead: int = 0,
    ) -> None:
        self.variant = stream_variant(mode)
        _check_networks(self.variant, ann, snn)
        if projections is None:
            projections = [None] * (1 if streams is None else streams)
        elif streams is not None and streams != len(projections):
            raise StreamError(f"{streams} streams but {len(projections)} projections")
        if not projections:
            raise StreamError("a stream needs at least one camera")
        k = window.steps if reinit_every is None else reinit_every
        if isinstance(k, bool) or not isinstance(k, int) or k < 1:
            raise StreamError(f"reinit_every must be an integer >= 1, got {k!r}")
        self.mode: Mode = self.variant.name
        self.window = window
        self.sensor_size = (int(sensor_size[0]), int(sensor_size[1]))
        init = self.variant.state_init if state_init is None else state_init
        self.reinit_every = k
        self.origin_us = None if origin_us is None else int(origin_us)
        self.device = torch.device(device)
        if engine == "event" and self.variant.runs_snn and self.device.type != "cpu":
            raise StreamError(
                f"the event-driven engine runs on the CPU only, not on {self.device}; use the "
                "dense engine there"
            )
        self.projections = [None if p is None else np.asarray(p, np.float64) for p in projections]
        self.width, self.height = frame_size(self.sensor_size, window.crop, window.downsample)
        self._crop_origin = crop_origin(window.crop)
        p0, p1 = [*self.projections, None, None][:2]
        self._triangulate = (
            TwoViewTriangulator(p0, p1)
            if self.streams == 2 and p0 is not None and p1 is not None
            else None
        )
        self.ann = None if ann is None else _inference_copy(ann, self.device)
        self.runner: SNNRunner | None = None
        # the hybrid's initialisation (HybridPose.initial_state) around the same ANN
        self._initialiser: HybridPose[SNN | ConvRNN] | None = None
        if self.variant.runs_snn:
            assert snn is not None
            if snn.config.delta_readout != self.variant.delta_readout:
                raise StreamError(
                    f"mode {self.mode!r} runs the SNN with delta_readout="
                    f"{self.variant.delta_readout}, but this SNN has "
                    f"{snn.config.delta_readout}"
                )
            self.runner = make_runner(snn, engine, self.device)
            if self.variant.schedule.snn == "from_ann":
                assert self.ann is not None
                try:  # zero_state's shapes only: a copy, like the runner's
                    self._initialiser = HybridPose(self.ann, copy.deepcopy(snn), HybridConfig(init))
                except ValueError as err:
                    raise StreamError(f"mode {self.mode!r}: {err}") from None
        self._state_init = init
        self._frames_of = _AnnFrames(self.sensor_size, window, self.device)
        # the ANN's output on empty frames (_warm_up)
        self._empty_init: SNNState | None = None
        self._empty_held: npt.NDArray[np.float32] | None = None
        self.ann_lead = _check_lead(ann_lead, k, self._initialiser is not None, self.mode)
        self.background: BackgroundInit[Sequence[Events]] | None = None
        worker = None
        if self.ann_lead:
            assert snn is not None and self._initialiser is not None
            worker = make_runner(snn, engine, self.device)
        self._counter = EventCounter(self.sensor_size, window.crop, window.downsample)
        self._warm_up(worker)
        if worker is not None:
            assert self._initialiser is not None
            self.background = BackgroundInit(self._initialiser, worker, self._frames_of)
        self.latency = LatencyStats()
        self._pending = [_Pending() for _ in self.projections]
        self._rings = [EventRing(window.ann_events) for _ in self.projections]
        # per stream: every event with t < clock has been pushed (None: nothing yet)
        self._clock: list[int | None] = [None] * len(self.projections)
        self._index = 0  # the next bin to close
        self._held: npt.NDArray[np.float32] | None = None  # ann_held: the last ANN pose

    @torch.inference_mode()
    def _warm_up(self, worker: SNNRunner | None) -> None:
        """Run each network once on empty input, so that the first real step does not pay for
        loading compiled code or allocating buffers (hundreds of milliseconds)."""
        batch = len(self.projections)
        if self.ann is not None:
            cfg = self.window
            empty = torch.zeros(batch, 2 * cfg.ann_bins, self.height, self.width,
                                device=self.device)  # fmt: skip
            # the frames of a window with no event before it (the stream's first): kept, so
            # that its step does not wait for the ANN
            if self._initialiser is not None:
                self._empty_init = self._initialiser.initial_state(empty)[1]
            else:
                self._empty_held = _decoded(self.ann(empty)[0])
        for runner in (self.runner, worker):
            if runner is not None:
                if self._empty_init is not None:  # set_state's compiled helpers
                    runner.set_state(self._empty_init)  # replaced by the reset below
                runner.reset(batch, self.height, self.width)
                runner.step_uv(np.zeros((batch, 2, self.height, self.width), np.float32))
                runner.reset(batch, self.height, self.width)
        # the compiled helpers of a step (input checks, binning, decoding, triangulation)
        # load on their first call
        for n in (1, 2):  # a chunk's fields are strided views, contiguous for one event
            events = np.zeros(n, dtype=EVENT_DTYPE)
            _time_sorted(events["t"])
            self._counter.add(events, np.zeros(self._counter.shape, np.float32))
        decode_array(np.zeros((batch, 1, self.height, self.width), dtype=np.float32))
        uv = np.zeros((batch, 1, 2), dtype=np.float32)
        _sensor_pixels(uv, 1, 0, 0, uv)
        if self._triangulate is not None:
            self._triangulate.into(uv[0], uv[0], np.empty((1, 3)))

    @classmethod
    def from_network(
        cls,
        mode: Mode | Variant,
        network: Model,
        window: WindowConfig,
        sensor_size: tuple[int, int],
        **kwargs: object,
    ) -> StreamingPredictor:
        """A predictor running ``network`` (the ANN, the SNN or a hybrid, as
        :func:`hybridpose.trained.load_models` gives it) as the variant ``mode``; other
        keyword arguments go to the constructor.

        Raises:
            StreamError: a hybrid whose switches are not the variant's (its ``state_init``,
                unless ``state_init`` is given; its SNN's ``delta_readout``).
        """
        v = stream_variant(mode)
        nets: dict[str, object] = {}
        if isinstance(network, HybridPose):
            if "state_init" not in kwargs and network.config.state_init != v.state_init:
                raise StreamError(
                    f"mode {v.name!r} initialises the membranes with state_init="
                    f"{v.state_init}, but this hybrid was built with "
                    f"{network.config.state_init}"
                )
            nets = {"ann": network.ann, "snn": network.snn}
        elif isinstance(network, SNN):
            nets = {"snn": network}
        elif isinstance(network, ANN):
            nets = {"ann": network}
        return cls(v, window, sensor_size, **nets, **kwargs)  # type: ignore[arg-type]

    @classmethod
    def from_checkpoints(
        cls,
        directory: str | Path,
        mode: Mode | Variant = MAIN,
        sensor_size: tuple[int, int] | None = None,
        **kwargs: object,
    ) -> StreamingPredictor:
        """A predictor from a training run's checkpoints (``ann.pt``, ``snn.pt``, ``hybrid.pt``,
        ``hybrid_rnn.pt``).

        The variant's checkpoint is read (:func:`hybridpose.trained.load_models`: an ablation
        without its own is derived from the hybrid); the window settings and the sensor size
        come from the checkpoint. Other keyword arguments go to the constructor.
        """
        v = stream_variant(mode)
        models = load_models(Path(directory), [v.name])
        size = models.config.sensor_size if sensor_size is None else sensor_size
        return cls.from_network(v, models.networks[v.name], models.window, size, **kwargs)

    # -------------------------------------------------------------------- feeding

    @property
    def state_init(self) -> bool:
        """Whether the ANN sets the SNN's membranes at an initialisation (False: zeros, the
        ANN sets the readout only); fixed at construction."""
        return self._state_init

    @property
    def streams(self) -> int:
        return len(self.projections)

    @property
    def bin_us(self) -> int:
        return self.window.bin_us

    @property
    def period_us(self) -> int:
        """Time between ANN initialisations, ``reinit_every * bin_us``."""
        return self.reinit_every * self.bin_us

    @property
    def next_bin_end_us(self) -> int | None:
        """The end of the bin that closes next (None before the stream has a time origin)."""
        if self.origin_us is None:
            return None
        return self.origin_us + (self._index + 1) * self.bin_us

    def _set_origin(self, t_us: int) -> None:
        if self.origin_us is None:
            self.origin_us = (t_us // self.period_us) * self.period_us

    def push(self, events: Events, stream: int = 0) -> list[StreamPose]:
        """Add events of one camera stream (time order, at or after its previous events);
        returns the poses of the bins this closes (possibly none)."""
        if not 0 <= stream < self.streams:
            raise StreamError(f"stream {stream} does not exist (this predictor has {self.streams})")
        self._hold(events, stream)
        return self._close_bins()

    def _hold(self, events: Events, stream: int) -> None:
        """:meth:`push` without closing bins."""
        check_event_array(events)
        if len(events):
            t = events["t"]
            if not _time_sorted(t):
                raise StreamError(f"stream {stream}: events out of time order within a chunk")
            first, clock = int(t[0]), self._clock[stream]
            if clock is not None and first < clock:
                raise StreamError(
                    f"stream {stream}: an event at t={first} us arrives after t={clock} us "
                    "(events must come in time order)"
                )
            self._set_origin(first)
            self._pending[stream].append(events)
            self._clock[stream] = int(t[-1])

    def advance(self, t_us: int, stream: int | None = None) -> list[StreamPose]:
        """Declare that every event with ``t < t_us`` has been pushed (on ``stream``, or on all
        streams); returns the poses of the bins this closes."""
        if stream is not None and not 0 <= stream < self.streams:
            raise StreamError(f"stream {stream} does not exist (this predictor has {self.streams})")
        targets = range(self.streams) if stream is None else [stream]
        self._set_origin(int(t_us))
        for s in targets:
            clock = self._clock[s]
            self._clock[s] = int(t_us) if clock is None else max(clock, int(t_us))
        return self._close_bins()

    def feed(self, t_end_us: int, per_stream: Sequence[Events]) -> list[StreamPose]:
        """Push one chunk: for every stream, its events not yet pushed with ``t < t_end_us``
        (a source's chunk, :mod:`hybridpose.sources`); returns the poses it completes."""
        if len(per_stream) != self.streams:
            raise StreamError(f"a chunk of {len(per_stream)} streams for {self.streams} streams")
        for s, events in enumerate(per_stream):
            self._hold(events, s)
        return self.advance(t_end_us)  # the same poses as pushing one by one, in order

    def run(self, chunks: Iterable[tuple[int, Sequence[Events]]]) -> Iterator[StreamPose]:
        """:meth:`feed` every chunk of a source and yield the poses as they come."""
        for t_end, per_stream in chunks:
            yield from self.feed(t_end, per_stream)

    def close(self) -> None:
        """Stop the background re-initialisation's thread, if any (also done when the
        predictor is collected); the predictor cannot step after a window it prepares."""
        if self.background is not None:
            self.background.close()

    def __enter__(self) -> StreamingPredictor:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -------------------------------------------------------------------- stepping

    def _close_bins(self) -> list[StreamPose]:
        """Step every bin that every stream has passed: once a bin closes, no event before
        its end can arrive (:meth:`push` refuses events before a stream's clock)."""
        poses: list[StreamPose] = []
        if self.origin_us is None or any(c is None for c in self._clock):
            return poses
        watermark = min(c for c in self._clock if c is not None)
        while self.origin_us + (self._index + 1) * self.bin_us <= watermark:
            poses.append(self._step())
        return poses

    def _frames(self) -> Tensor:
        """(S, C, H, W) ANN frames of the events held (those before the current time)."""
        return self._frames_of([ring.events() for ring in self._rings])

    def _step(self) -> StreamPose:
        """Step the next bin. Not under ``torch.inference_mode`` as a whole: entering it costs
        ~10 us, a few % of a 1 ms step with the event-driven engine, which needs no torch; the
        networks' calls enter it themselves."""
        start = time.perf_counter()
        cfg = self.window
        assert self.origin_us is not None
        t0 = self.origin_us + self._index * self.bin_us
        t1 = t0 + self.bin_us
        step = self._index % self.reinit_every
        if self._index == 0:  # events before the grid's origin (none later: see _close_bins)
            for ring, pending in zip(self._rings, self._pending, strict=True):
                ring.extend(pending.take_before(t0))
        if step == 0:
            self._start_window()
        # the next window's ANN, ahead of it, on the events before this bin (handed over at
        # the end of the step, see _to_worker)
        lead_starts = self.background is not None and step == self.reinit_every - self.ann_lead
        held = [ring.events() for ring in self._rings] if lead_starts else None
        taken = [p.take_before(t1) for p in self._pending]
        for ring, events in zip(self._rings, taken, strict=True):
            ring.extend(events)
        n_events = sum(len(e) for e in taken)
        bins = None
        schedule = self.variant.schedule
        if schedule.ann == "every_step":
            assert self.ann is not None
            with torch.inference_mode():
                out, _ = self.ann(self._frames())  # the events before t1
            uv_model = _decoded(out)  # (S, J, 2)
        elif schedule.snn == "none":
            assert self._held is not None
            uv_model = self._held
        else:
            bins = np.zeros((self.streams, *self._counter.shape), dtype=np.float32)
            for s, events in enumerate(taken):
                self._counter.add(events, bins[s])
            assert self.runner is not None
            uv_model = self.runner.step_uv(bins)  # (S, J, 2), decoded by the runner
        uv = np.empty(uv_model.shape, dtype=np.float32)
        _sensor_pixels(uv_model, cfg.downsample, *self._crop_origin, uv)
        xyz = None
        if self._triangulate is not None:
            xyz = np.empty((len(uv[0]), 3))
            self._triangulate.into(uv[0], uv[1], xyz)
        if self.background is not None:
            self._to_worker(held, bins)
        self._index += 1
        latency = time.perf_counter() - start
        self.latency.add(latency)
        return StreamPose(t1, self._index - 1, step + 1, uv, xyz, n_events, latency)

    def _to_worker(self, held: list[Events] | None, bins: npt.NDArray[np.float32] | None) -> None:
        """Hand the background worker its work of this step, once the step's own is done: the
        worker then takes the GIL while the stream waits for its next bin, not in the middle
        of a step (a handover at the step's start made it 3-5 ms at 10 ms bins). ``held``: the
        events before this bin, when the next window's ANN starts here; ``bins``: this bin,
        which the next window's SNN catches up on."""
        assert self.background is not None
        if held is not None:
            self.background.start(held)
        if self.background.busy:
            assert bins is not None  # a hybrid: the SNN stepped this bin
            self.background.feed(bins)

    @torch.inference_mode()
    def _start_window(self) -> None:
        """What the variant does at a window start, on the frames of the events before it."""
        schedule = self.variant.schedule
        if self.background is not None and self.background.busy:  # prepared beside the stream
            assert self.runner is not None
            self.runner = self.background.join(self.runner)
        elif schedule.ann == "window_start":
            empty = not any(len(ring) for ring in self._rings)  # the ANN's output is known
            if self._initialiser is not None:  # the hybrid
                assert self.runner is not None and self._empty_init is not None
                if empty:
                    state = SNNState._make(t.clone() for t in self._empty_init)
                else:
                    _, state = self._initialiser.initial_state(self._frames())
                self.runner.set_state(state)
            elif empty:
                self._held = self._empty_held
            else:
                assert self.ann is not None
                held, _ = self.ann(self._frames())
                self._held = _decoded(held)
        elif schedule.snn == "from_zero":
            assert self.runner is not None
            self.runner.reset(self.streams, self.height, self.width)


__all__ = [
    "Bins",
    "DenseRunner",
    "EventRing",
    "LatencyStats",
    "SNNRunner",
    "StreamError",
    "StreamPose",
    "StreamingPredictor",
    "checkpoint_geometry",
    "make_runner",
    "poses_between",
    "stream_variant",
]
