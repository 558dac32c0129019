"""Generate synthetic DHP19-like recordings: motion -> rendering -> event simulation -> HDF5.

One recording = one subject performing one of the 33 movements, seen by the four cameras of
:mod:`hybridpose.synth.scene`, stored in the native format (docs/data-format.md) under DHP19's
name ``S{subject}_session{n}_mov{k}.h5`` with Vicon-like 3D labels at 100 Hz.

Time sampling. Each camera's simulation advances in chunks of ``chunk_s`` seconds (by default
0.2 s for ``frames``, 0.5 s for ``tiles``); memory stays bounded whatever the recording's length.
Inside a chunk the rendering instants are chosen so that no pixel's log intensity changes by
more than ``esim.max_log_step`` times the smaller contrast threshold between two consecutive
instants:

1. a first grid from the body's image speed: the skeleton is projected every millisecond, a
   pixel of motion asks for ``edge_log_contrast / bound`` samples (a soft edge moving one
   pixel changes a pixel's log intensity by about ``edge_log_contrast``), and the instants
   are placed where the running total of that demand crosses a whole number;
2. the frames are rendered and every interval whose largest change still exceeds the bound
   is halved, repeatedly, until it is no wider than ``2 * min_step_us``.

The bound therefore holds by measurement, not by assumption, except where an interval reached
that width (counted as ``unresolved_intervals`` in the file's metadata). The bound is relative
to the *nominal* thresholds: a pixel whose drawn threshold is lower steps by a larger fraction
of its own. In chunks where nothing moves, nothing is rendered: the image is the same as at
the last instant and only sensor noise is simulated.

Determinism: every random choice comes from numpy generators seeded by ``(seed, purpose,
subject, movement, camera)``, so a recording depends only on its own arguments, not on the
order, sharding or parallelism of the run. Bit-identical files across different machines also
need the same platform and library builds (vectorised ``log`` may round differently).
"""

from __future__ import annotations

import dataclasses
import functools
import json
import math
import os
import tempfile
from collections.abc import Generator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
import numpy.typing as npt
from tqdm import tqdm

from hybridpose.errors import HybridPoseError, describe_error, first_line
from hybridpose.events import Events
from hybridpose.geometry import project
from hybridpose.io.recording import (
    Recording,
    RecordingMeta,
    RecordingWriter,
    remove_stale_temp_files,
)
from hybridpose.parallel import map_in_processes
from hybridpose.subjects import TEST_SUBJECTS, TRAIN_SUBJECTS
from hybridpose.synth.appearance import APPEARANCES, Appearance, AppearanceName, sample_person
from hybridpose.synth.body import Capsules, body_capsules
from hybridpose.synth.esim import (
    EsimConfig,
    EsimState,
    esim_advance,
    esim_advance_regions,
    esim_init,
    log_intensity,
    max_log_change,
)
from hybridpose.synth.motions import MOVEMENTS, Performance, PerformanceSettings, movement, perform
from hybridpose.synth.render import (
    View,
    capsule_boxes,
    make_view,
    render,
    render_tiles,
    union_box,
)
from hybridpose.synth.sampler import TILE, TileRequest, needed_instants, tile_origins, tile_sampling
from hybridpose.synth.scene import (
    SENSOR_SIZE,
    Clothing,
    Lighting,
    RigConfig,
    background,
    rig_calibrations,
    rig_cameras,
)
from hybridpose.synth.sensor import (
    DEFAULT_SENSOR,
    DHP19_REFLECTIONS,
    SENSOR_REFLECTIONS,
    SENSORS,
    ReflectionSpot,
    reflection_events,
)
from hybridpose.synth.skeleton import BodyShape, SkeletonFrames

if TYPE_CHECKING:  # torch is imported only where a device is asked for
    import torch

Sampling = Literal["frames", "tiles"]
SAMPLINGS: tuple[Sampling, ...] = ("frames", "tiles")

GENERATOR_VERSION = 2
"""Stored in every file's settings: a file made by another version is not skipped as finished."""

MAX_FRAME_VALUES = 20_000_000
"""Pixel samples rendered at most before they become events (80 MB of float32 frames)."""

APPEND_EVENTS = 200_000
"""Events gathered before one append to the file (memory stays bounded by this)."""

US = 1e6

CHUNK_S: dict[Sampling, float] = {"frames": 0.2, "tiles": 0.5}
"""Each sampling's default chunk length, in simulated seconds (:attr:`SimulationConfig.chunk_s`)."""


class SimulationError(HybridPoseError, ValueError):
    """Bad simulation settings or an output directory that cannot be used."""


@dataclass(frozen=True)
class SimulationConfig:
    """Everything that determines a synthetic dataset (defaults: the ``default`` preset).

    Attributes:
        sensor_size: ``(width, height)`` of every camera; below 346x260 the same field of view
            is seen with larger pixels.
        subjects: subject numbers (1-12 train and 13-17 test by DHP19's protocol; any positive
            number makes a new subject).
        movements: DHP19 movement numbers 1-33 (session order).
        seed: the dataset's seed; the same seed and settings give identical files.
        performance: repetitions, still phases, speed and amplitude variation.
        esim: the event camera's pixel model (default: the ``davis346`` sensor of
            :mod:`hybridpose.synth.sensor`).
        reflections: static spots flickering with the Vicon's IR strobes (default: DHP19's two,
            in cameras 2 and 3; none for the ``clean`` sensor).
        rig: camera placement.
        lighting: the light.
        chunk_s: simulated seconds per chunk (bounds memory); None: 0.2 for ``frames``, 0.5
            for ``tiles`` (:data:`CHUNK_S`), whose work per chunk outside its rounds (the
            pixels outside the body's box, noise, every tile's last sample) cost a fifth of a
            full-resolution recording in 0.2-second chunks (1-second chunks were no faster
            than 0.5 and took 25% more memory).
        min_step_us: the finest time step the sampler refines to.
        max_step_us: the coarsest step while the body moves.
        edge_log_contrast: log-intensity change per pixel of edge motion assumed by the first
            grid (the refinement corrects it).
        label_rate_hz: rate of the 3D labels (DHP19's Vicon: 100 Hz).
        appearance: how the subjects look: ``"clothed"`` (clothes, skin and hair textured on
            the body, per-segment girths; :mod:`hybridpose.synth.appearance`) or ``"plain"``
            (the first generator's capsules, drawn and rendered exactly as it did).
        sampling: how the moving body's images are sampled in time: ``"frames"`` (the
            body's whole box at instants set by its fastest point, refined where any pixel
            steps too far) or ``"tiles"`` (each 8x8 tile of the box refined alone,
            :mod:`hybridpose.synth.sampler`: the same bound per pixel, far fewer renders).
    """

    sensor_size: tuple[int, int] = SENSOR_SIZE
    subjects: tuple[int, ...] = TRAIN_SUBJECTS + TEST_SUBJECTS
    movements: tuple[int, ...] = tuple(m.number for m in MOVEMENTS)
    seed: int = 0
    performance: PerformanceSettings = field(default_factory=PerformanceSettings)
    esim: EsimConfig = field(default_factory=lambda: SENSORS[DEFAULT_SENSOR])
    reflections: tuple[ReflectionSpot, ...] = DHP19_REFLECTIONS
    rig: RigConfig = field(default_factory=RigConfig)
    lighting: Lighting = field(default_factory=Lighting)
    chunk_s: float | None = None
    min_step_us: float = 10.0
    max_step_us: float = 5000.0
    edge_log_contrast: float = 0.7
    label_rate_hz: float = 100.0
    appearance: AppearanceName = "clothed"
    sampling: Sampling = "frames"

    def __post_init__(self) -> None:
        width, height = self.sensor_size
        if not (8 <= width <= 4096 and 8 <= height <= 4096):
            raise SimulationError(f"sensor size {width}x{height}: both sides must be 8-4096")
        if not self.subjects or min(self.subjects) < 1:
            raise SimulationError(f"subjects must be positive numbers, got {self.subjects}")
        if not self.movements:
            raise SimulationError("no movements selected")
        bad = [n for n in self.movements if not 1 <= n <= len(MOVEMENTS)]
        if bad:
            raise SimulationError(f"movement numbers must lie in 1-33; {bad} are outside")
        for name, values in (("subjects", self.subjects), ("movements", self.movements)):
            if len(set(values)) != len(values):
                raise SimulationError(f"{name} {values}: each may appear only once")
        if self.sampling not in SAMPLINGS:
            raise SimulationError(f"sampling must be frames or tiles, got {self.sampling!r}")
        if not 0 < self.min_step_us <= self.max_step_us:
            raise SimulationError("need 0 < min_step_us <= max_step_us")
        positive = (self.chunk_seconds, self.label_rate_hz, self.edge_log_contrast)
        if not all(value > 0 and math.isfinite(value) for value in positive):  # NaN fails too
            raise SimulationError("chunk_s, label_rate_hz and edge_log_contrast must be > 0")
        if self.seed < 0:
            raise SimulationError(f"seed must be >= 0, got {self.seed}")
        if self.appearance not in APPEARANCES:
            raise SimulationError(f"appearance must be plain or clothed, got {self.appearance!r}")

    @property
    def chunk_seconds(self) -> float:
        """The chunk's length: ``chunk_s``, or the sampling's default."""
        return CHUNK_S[self.sampling] if self.chunk_s is None else self.chunk_s

    def settings(self) -> dict[str, Any]:
        """What a recording's content depends on (everything but the subject/movement lists)."""
        out = dataclasses.asdict(self)
        del out["subjects"], out["movements"]
        out["chunk_s"] = self.chunk_seconds
        if self.sampling == "frames":  # files made before the choice existed stay finished
            del out["sampling"]
        else:  # tile files made before the refinement rendered only the pixels it needs differ
            out["tile_refinement"] = "pixels"
        out["generator_version"] = GENERATOR_VERSION
        stored: dict[str, Any] = json.loads(json.dumps(out))  # tuples -> lists, as in the file
        return stored


def _tiny() -> SimulationConfig:
    return SimulationConfig(
        sensor_size=(87, 65),
        subjects=(1, 13),
        movements=(1, 16),
        performance=dataclasses.replace(
            PerformanceSettings(), repetitions=1, still_s=(0.3, 0.4), lead_in_s=0.3, lead_out_s=0.3
        ),
    )


PRESETS: dict[str, SimulationConfig] = {"tiny": _tiny(), "default": SimulationConfig()}
"""``tiny``: 2 subjects x 2 movements, one repetition, 87x65 (seconds, for tests);
``default``: 17 subjects x 33 movements at 346x260 (DHP19's size; see docs/synthetic-data.md)."""


def with_sensor(config: SimulationConfig, sensor: str) -> SimulationConfig:
    """``config`` seen by the named sensor model (``clean`` or ``davis346``; see
    :mod:`hybridpose.synth.sensor`): its pixel model, and DHP19's IR spots for ``davis346``."""
    if sensor not in SENSORS:
        raise SimulationError(f"unknown sensor {sensor!r}; choose one of {', '.join(SENSORS)}")
    return dataclasses.replace(config, esim=SENSORS[sensor], reflections=SENSOR_REFLECTIONS[sensor])


def recording_name(subject: int, movement_number: int) -> str:
    """DHP19's name for a recording, e.g. ``S13_session2_mov4.h5``."""
    m = movement(movement_number)
    return f"S{subject}_session{m.session}_mov{m.index}.h5"


# ------------------------------------------------------------------------ random streams
def _rng(config: SimulationConfig, *key: int) -> np.random.Generator:
    return np.random.default_rng(np.random.SeedSequence([config.seed, *key]))


_SCENE, _SUBJECT, _PERFORMANCE, _SENSOR, _REFLECTIONS = 0, 1, 2, 3, 4


@dataclass(frozen=True, eq=False)
class Subject:
    """One simulated person: body shape and clothing (plain, or a clothed appearance)."""

    number: int
    body: BodyShape
    clothing: Clothing | Appearance


def make_subject(config: SimulationConfig, number: int) -> Subject:
    """The subject ``number`` of the dataset ``config.seed`` (the same in every recording)."""
    body, clothing = sample_person(_rng(config, _SUBJECT, number), config.appearance)
    return Subject(number, body, clothing)


def make_performance(
    config: SimulationConfig, subject: Subject, movement_number: int
) -> Performance:
    """The subject's performance of movement ``movement_number`` in the dataset ``config``
    (its plan only: cheap; :func:`simulate_recording` renders it)."""
    rng = _rng(config, _PERFORMANCE, subject.number, movement_number)
    return perform(movement_number, subject.body, rng, config.performance)


def make_views(config: SimulationConfig) -> list[View]:
    """The four cameras with their static backgrounds (the same objects for every recording
    of a dataset: a view is never modified)."""
    return list(_views(config.seed, config.sensor_size, config.rig))


@functools.lru_cache(maxsize=2)
def _views(seed: int, sensor_size: tuple[int, int], rig: RigConfig) -> tuple[View, ...]:
    rng = np.random.default_rng(np.random.SeedSequence([seed, _SCENE]))
    return tuple(
        make_view(camera, background(sensor_size, rng)) for camera in rig_cameras(sensor_size, rig)
    )


# ------------------------------------------------------------------------ one camera
@dataclass
class CameraStats:
    """What simulating one camera produced (JSON-serialisable, stored in the file)."""

    events: int = 0
    events_moving: int = 0
    events_still: int = 0
    frames: int = 0
    unresolved_intervals: int = 0
    largest_log_step: float = 0.0


def _speed_grid(
    view: View, frames: SkeletonFrames, t_us: npt.NDArray[np.float64], steps_per_px: float
) -> tuple[npt.NDArray[np.float64] | None, float]:
    """Rendering instants in ``(t_us[0], t_us[-1]]`` from the body's image speed.

    ``frames`` holds the skeleton at the grid ``t_us``. Over each grid interval the fastest
    skeleton point moves ``moved`` pixels and asks for ``moved * steps_per_px`` samples; the
    instants are placed where the running total of that demand crosses a whole number, so
    sampling follows the speed continuously. Returns the instants (None when nothing moves at
    all) and the largest displacement over one grid interval, in pixels.
    """
    points = np.concatenate(
        [frames.joints, frames.neck[:, None], frames.pelvis[:, None], frames.toes], axis=1
    )
    uv = project(view.camera.P, points)  # (M, P, 2)
    moved = np.nan_to_num(np.linalg.norm(np.diff(uv, axis=0), axis=-1).max(axis=1))
    demand = np.concatenate([[0.0], np.cumsum(moved * steps_per_px)])  # at each grid instant
    largest = float(moved.max(initial=0.0))
    if demand[-1] <= 0:
        return None, largest
    levels = np.arange(1.0, np.floor(demand[-1]) + 1.0)
    grid = np.interp(levels, demand, t_us)
    # a still stretch keeps the demand flat: interp then returns its first instant, which is
    # a harmless duplicate removed by the caller's np.unique
    return np.asarray(grid, dtype=np.float64), largest


def simulate_camera(
    writer: RecordingWriter,
    camera: int,
    view: View,
    subject: Subject,
    performance: Performance,
    config: SimulationConfig,
    rng: np.random.Generator,
    reflection_phase_us: float = 0.0,
    device: str | torch.device | None = None,
) -> CameraStats:
    """Simulate one camera over the whole performance, appending its events to ``writer``.

    ``reflection_phase_us`` is the time of the first IR flash of the camera's reflection spots
    (``config.reflections``), if it has any. ``device``: None renders and simulates with the
    compiled CPU kernels; a torch device renders there
    (:mod:`hybridpose.synth.render_torch`) and, with ``sampling="frames"``, runs the pixel
    model there too (:mod:`hybridpose.synth.esim_torch`).
    """
    renderer = _Renderer(view, subject, performance, config, device)
    steps = _camera_steps(writer, camera, renderer, rng, reflection_phase_us)
    return _simulate_together([steps], [renderer])[0]


CameraSteps = Generator[TileRequest, npt.NDArray[np.float32], CameraStats]
"""One camera's simulation: yields the tile sampler's render requests, takes the rendered
log tiles back, returns the camera's statistics (:func:`_camera_steps`)."""


def _simulate_together(
    cameras: Sequence[CameraSteps], renderers: Sequence[_Renderer]
) -> list[CameraStats]:
    """Run the cameras' simulations side by side: each step, every camera's tile request is
    rendered, with the body posed once for the instants of all of them (posing costs about
    2 ms a call whatever the number of instants, and the cameras' instants overlap). The
    same events as one camera after another: a camera's own draws and samples are its own."""
    stats: list[CameraStats | None] = [None] * len(cameras)
    requests: dict[int, TileRequest] = {}

    def advance(i: int, answer: npt.NDArray[np.float32] | None) -> None:
        try:
            requests[i] = next(cameras[i]) if answer is None else cameras[i].send(answer)
        except StopIteration as done:
            stats[i] = done.value
            requests.pop(i, None)

    for i in range(len(cameras)):
        advance(i, None)
    while requests:
        instants = np.unique(np.concatenate([t for t, _, _ in requests.values()]))
        posed = renderers[min(requests)].pose(instants)
        for i, (t, origins, wanted) in list(requests.items()):
            advance(i, renderers[i].log_tiles(t, origins, wanted, posed))
    return [s for s in stats if s is not None]


def _camera_steps(
    writer: RecordingWriter,
    camera: int,
    renderer: _Renderer,
    rng: np.random.Generator,
    reflection_phase_us: float,
) -> CameraSteps:
    """:func:`simulate_camera`'s work as a generator (see :data:`CameraSteps`)."""
    view, performance, config = renderer.view, renderer.performance, renderer.config
    spots = tuple(spot for spot in config.reflections if spot.camera == camera)
    stats = CameraStats()
    esim = config.esim
    bound = esim.log_step_limit
    end_us = performance.duration_s * US

    box = renderer.body_box(np.zeros(1))
    first_log = np.asarray(log_intensity(view.background, esim), dtype=np.float64)
    if _area(box):
        first = renderer.log_frames(np.zeros(1), box)
        first_log[box[2] : box[3], box[0] : box[1]] = _numpy(first)[0]
    state = esim_init(first_log, 0.0, esim, rng)
    pending: list[Events] = []
    pending_count = 0
    chunk_s = config.chunk_seconds
    n_chunks = max(1, math.ceil(end_us / (chunk_s * US) - 1e-9))
    for c in range(n_chunks):
        t_a = c * chunk_s * US
        t_b = end_us if c == n_chunks - 1 else min((c + 1) * chunk_s * US, end_us)
        grid_ms = np.unique(np.concatenate([np.arange(t_a, t_b, 1000.0), [t_b]]))
        frames_ms, capsules_ms = renderer.poses(grid_ms)
        times, moved_px = _speed_grid(view, frames_ms, grid_ms, config.edge_log_contrast / bound)
        # grid_ms starts at the previous instant, so this box holds every pixel the body
        # leaves or enters; the margin covers motion between the millisecond samples
        box = renderer.body_box(grid_ms, capsules_ms, margin=2 + math.ceil(moved_px))
        chunk_events: list[Events] = []
        if times is None or not _area(box):
            # Still (or out of view): the image equals the last instant's and only noise
            # happens. A one-pixel frame holding its last value advances the simulator's clock.
            one_pixel = state.last_log[:1, :1].astype(np.float32)[None]
            events, state = esim_advance(state, one_pixel, np.array([t_b]), esim, rng)
            chunk_events.append(events)
        elif config.sampling == "tiles":
            events, state = yield from _tiled_chunk(renderer, state, t_a, t_b, box, rng, stats)
            chunk_events.append(events)
        else:
            # cap the step while moving, and always end the chunk at t_b
            coarse = np.arange(t_a + config.max_step_us, t_b, config.max_step_us)
            times = np.unique(np.concatenate([times, coarse, [t_b]]))
            # bounded memory at any resolution and speed: at most MAX_FRAME_VALUES pixel
            # samples are rendered before they are turned into events
            per_batch = max(1, MAX_FRAME_VALUES // (2 * _area(box)))
            for start in range(0, len(times), per_batch):
                previous = state.last_log[box[2] : box[3], box[0] : box[1]]
                batch = times[start : start + per_batch]
                logs, batch, steps = _refine(renderer, previous, state.t_us, batch, box, bound)
                stats.frames += len(batch)
                stats.unresolved_intervals += int((steps > bound).sum())
                stats.largest_log_step = max(stats.largest_log_step, float(steps.max()))
                events, state = renderer.advance(state, logs, batch, rng, (box[0], box[2]))
                chunk_events.append(events)
        if spots:
            flashes = reflection_events(spots, state, t_a, t_b, reflection_phase_us, esim)
            chunk_events.append(flashes)
        events = np.concatenate(chunk_events)
        if spots:
            events = events[np.argsort(events["t"], kind="stable")]
        if len(events):
            still = performance.is_still(events["t"] / US)
            stats.events += len(events)
            stats.events_still += int(still.sum())
            stats.events_moving += len(events) - int(still.sum())
            pending.append(events)
            pending_count += len(events)
        if pending and (pending_count >= APPEND_EVENTS or c == n_chunks - 1):
            # appending costs a few ms whatever its size: gather chunks into large appends
            writer.append_events(camera, np.concatenate(pending))
            pending, pending_count = [], 0
    return stats


def _tiled_chunk(
    renderer: _Renderer,
    state: EsimState,
    t_a: float,
    t_b: float,
    box: tuple[int, int, int, int],
    rng: np.random.Generator,
    stats: CameraStats,
) -> Generator[TileRequest, npt.NDArray[np.float32], tuple[Events, EsimState]]:
    """The moving body over ``(t_a, t_b]`` sampled tile by tile (``sampling="tiles"``): every
    tile from the coarse instants, refined alone; at most :data:`MAX_FRAME_VALUES` pixel
    samples of the coarse instants per batch. Yields the sampler's render requests."""
    config = renderer.config
    bound = config.esim.log_step_limit
    coarse = np.arange(t_a + config.max_step_us, t_b, config.max_step_us)
    instants = np.unique(np.concatenate([coarse, [t_b]]))
    per_batch = max(1, MAX_FRAME_VALUES // (2 * _area(box)))
    pieces = []
    for start in range(0, len(instants), per_batch):
        previous = state.last_log[box[2] : box[3], box[0] : box[1]]
        batch = instants[start : start + per_batch]
        boxes, motion = renderer.capsule_motion(np.concatenate([[state.t_us], batch]))
        needed = needed_instants(boxes, motion, tile_origins(box)[0])
        samples = yield from tile_sampling(
            previous, state.t_us, batch, box, bound, 2.0 * config.min_step_us, needed=needed
        )
        stats.frames += math.ceil(samples.pixel_renders / _area(box))
        stats.unresolved_intervals += samples.unresolved
        stats.largest_log_step = max(stats.largest_log_step, samples.largest_step)
        events, state = esim_advance_regions(state, samples.regions, config.esim, rng)
        pieces.append(events)
    return np.concatenate(pieces), state


class _Poses:
    """Poses the body, remembering the last few sets of instants asked for: the cameras of a
    recording run side by side (:func:`_simulate_together`) and ask for the same instants
    (the millisecond grid and the coarse instants of each chunk), so one posing serves all.
    The pose at an instant does not depend on the others posed with it."""

    KEEP = 16

    def __init__(self, subject: Subject, performance: Performance) -> None:
        self.subject = subject
        self.performance = performance
        self._kept: dict[bytes, tuple[SkeletonFrames, Capsules]] = {}

    def __call__(
        self, t_us: npt.NDArray[np.float64], remember: bool = True
    ) -> tuple[SkeletonFrames, Capsules]:
        key = np.ascontiguousarray(t_us, dtype=np.float64).tobytes()
        found = self._kept.pop(key, None)
        if found is None:
            frames = self.performance.frames(t_us / US)
            found = frames, body_capsules(self.subject.body, frames)
        if remember:
            if len(self._kept) >= self.KEEP:
                del self._kept[next(iter(self._kept))]  # the least recently used
            self._kept[key] = found
        return found


@dataclass(frozen=True)
class _Posed:
    """The body posed at increasing, distinct ``instants``: facing directions (K, 3) and
    capsules."""

    instants: npt.NDArray[np.float64]
    forward: npt.NDArray[np.float64]
    capsules: Capsules

    def at(self, instants: npt.NDArray[np.float64]) -> tuple[npt.NDArray[np.float64], Capsules]:
        """The pose at ``instants`` (distinct, increasing, each one of :attr:`instants`)."""
        if len(instants) == len(self.instants):
            return self.forward, self.capsules
        k = np.searchsorted(self.instants, instants)
        c = self.capsules
        frame = None if c.frame is None else c.frame[k]
        return self.forward[k], Capsules(c.a[k], c.b[k], c.radius, c.part, c.side, frame)


class _Renderer:
    """Renders one camera's view of one performance at arbitrary instants."""

    def __init__(
        self,
        view: View,
        subject: Subject,
        performance: Performance,
        config: SimulationConfig,
        device: str | torch.device | None = None,
        poses: _Poses | None = None,
    ) -> None:
        self.view = view
        self.subject = subject
        self.performance = performance
        self.config = config
        self.poses = poses or _Poses(subject, performance)
        self.scene = None
        if device is not None:
            from hybridpose.synth.render_torch import device_view

            self.scene = device_view(view, device)

    def body_box(
        self,
        t_us: npt.NDArray[np.float64],
        capsules: Capsules | None = None,
        margin: int = 2,
    ) -> tuple[int, int, int, int]:
        """The pixel box holding the body's image at every instant of ``t_us`` (``capsules``:
        the body posed there, if already)."""
        if capsules is None:
            capsules = self.poses(t_us)[1]
        return union_box(capsule_boxes(self.view, capsules, margin=margin))

    def pose(self, instants: npt.NDArray[np.float64]) -> _Posed:
        """The body at each of ``instants`` (increasing, distinct), for :meth:`log_tiles`."""
        frames, capsules = self.poses(instants, remember=False)  # a round's: asked for once
        return _Posed(instants, frames.forward, capsules)

    def capsule_motion(
        self, t_us: npt.NDArray[np.float64]
    ) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.float64]]:
        """The capsules' pixel boxes at each instant (K, C, 4) and how far each capsule's
        image moved between consecutive instants (K - 1, C): the most that its axis ends and
        two points of its surface (which turn with it about its axis) moved, in pixels."""
        _, capsules = self.poses(t_us)
        radius = capsules.radius[None, :, None]
        points = [capsules.a, capsules.b]
        if capsules.frame is not None:
            points += [
                capsules.a + radius * capsules.frame[:, :, 0],
                capsules.b + radius * capsules.frame[:, :, 1],
            ]
        uv = project(self.view.camera.P, np.stack(points, axis=2))  # (K, C, P, 2)
        moved = np.linalg.norm(np.diff(uv, axis=0), axis=-1).max(axis=-1)
        return capsule_boxes(self.view, capsules), np.nan_to_num(moved, nan=np.inf)

    def log_tiles(
        self,
        t_us: npt.NDArray[np.float64],
        origins: npt.NDArray[np.int64],
        wanted: npt.NDArray[np.bool_] | None = None,
        body: _Posed | None = None,
    ) -> npt.NDArray[np.float32]:
        """Log intensity of the :data:`~hybridpose.synth.sampler.TILE`-pixel tile at
        ``origins[k]`` at instant ``t_us[k]``: (K, TILE, TILE); only the ``wanted`` pixels
        where given (the others hold anything). The body is posed once per distinct instant,
        or taken from ``body`` (:meth:`pose` at instants that include all of ``t_us``)."""
        instants, which = np.unique(t_us, return_inverse=True)
        forward, posed = (body or self.pose(instants)).at(instants)
        boxes = capsule_boxes(self.view, posed)
        if self.scene is not None:
            from hybridpose.synth.render_torch import render_on_device

            capsules = Capsules(
                posed.a[which], posed.b[which], posed.radius, posed.part, posed.side,
                None if posed.frame is None else posed.frame[which],
            )  # fmt: skip
            tiles = render_on_device(
                self.scene, capsules, forward[which], self.subject.clothing,
                self.config.lighting, origins, (TILE, TILE), boxes[which],
            )  # fmt: skip
            return log_intensity(tiles.cpu().numpy(), self.config.esim)
        images = render_tiles(
            self.view, posed, forward, self.subject.clothing, self.config.lighting, origins,
            TILE, boxes, wanted, poses=which,
        )  # fmt: skip
        return log_intensity(images, self.config.esim)

    def log_frames(
        self, t_us: npt.NDArray[np.float64], box: tuple[int, int, int, int]
    ) -> LogFrames:
        """Log intensity of ``box`` at each instant: (K, y1 - y0, x1 - x0), a float32 array,
        or a tensor on the renderer's device."""
        frames, capsules = self.poses(t_us)
        if self.scene is not None:
            import torch

            from hybridpose.synth.render_torch import render_on_device

            origins = np.tile(np.array([box[0], box[2]], np.int64), (len(t_us), 1))
            linear = render_on_device(
                self.scene, capsules, frames.forward, self.subject.clothing,
                self.config.lighting, origins, (box[3] - box[2], box[1] - box[0]),
            )  # fmt: skip
            if linear.device.type == "cpu":  # numpy's log, so that the CPU gives numba's events
                return torch.from_numpy(log_intensity(linear.numpy(), self.config.esim))
            return torch.log(linear + self.config.esim.log_eps)
        images = render(
            self.view,
            capsules,
            frames.forward,
            self.subject.clothing,
            self.config.lighting,
            box,
            capsule_boxes(self.view, capsules),
        )
        return log_intensity(images, self.config.esim)

    def advance(
        self,
        state: EsimState,
        logs: LogFrames,
        t_us: npt.NDArray[np.float64],
        rng: np.random.Generator,
        origin: tuple[int, int],
    ) -> tuple[Events, EsimState]:
        """The simulator over ``logs`` of the box at ``origin`` (on the renderer's device)."""
        if self.scene is None:
            assert isinstance(logs, np.ndarray)
            return esim_advance(state, logs, t_us, self.config.esim, rng, origin=origin)
        from hybridpose.synth.esim_torch import esim_advance_torch

        return esim_advance_torch(
            state, logs, t_us, self.config.esim, rng, origin=origin, device=self.scene.device
        )


LogFrames = Any
"""Log frames (K, h, w): a float32 numpy array, or a torch tensor on a renderer's device."""


def _numpy(logs: LogFrames) -> npt.NDArray[np.float32]:
    """``logs`` as a numpy array on the CPU."""
    if isinstance(logs, np.ndarray):
        return logs
    out: npt.NDArray[np.float32] = logs.cpu().numpy()
    return out


def _log_steps(previous: npt.NDArray[np.float64], logs: LogFrames) -> npt.NDArray[np.float64]:
    """:func:`~hybridpose.synth.esim.max_log_change`, on the frames' device."""
    if isinstance(logs, np.ndarray):
        return max_log_change(previous, logs)
    from hybridpose.synth.esim_torch import max_log_change_torch

    return max_log_change_torch(previous, logs)


def _merged(logs: LogFrames, more: LogFrames, order: npt.NDArray[np.int64]) -> LogFrames:
    """``logs`` and ``more`` stacked, then taken in ``order``."""
    if isinstance(logs, np.ndarray):
        return np.concatenate([logs, more])[order]
    import torch

    return torch.cat([logs, more])[torch.as_tensor(order, device=logs.device)]


def _area(box: tuple[int, int, int, int]) -> int:
    return max(box[1] - box[0], 0) * max(box[3] - box[2], 0)


def _refine(
    renderer: _Renderer,
    previous: npt.NDArray[np.float64],
    t_previous: float,
    times: npt.NDArray[np.float64],
    box: tuple[int, int, int, int],
    bound: float,
) -> tuple[LogFrames, npt.NDArray[np.float64], npt.NDArray[np.float64]]:
    """Render ``times``, halving every interval in which some pixel steps more than ``bound``.

    ``previous`` is the box's log intensity at ``t_previous``, the instant before ``times[0]``.
    Intervals are halved until they satisfy the bound or are no wider than twice
    ``min_step_us``. Returns the log frames, their instants and each interval's largest step.
    """
    logs = renderer.log_frames(times, box)
    min_gap = 2.0 * renderer.config.min_step_us
    while True:
        steps = _log_steps(previous, logs)
        starts = np.concatenate([[t_previous], times[:-1]])
        split = (steps > bound) & (times - starts > min_gap)
        if not split.any():
            return logs, times, steps
        mids = 0.5 * (starts[split] + times[split])
        order = np.argsort(np.concatenate([times, mids]), kind="stable")
        times = np.concatenate([times, mids])[order]
        logs = _merged(logs, renderer.log_frames(mids, box), order)


# ------------------------------------------------------------------------ one recording
@dataclass(frozen=True)
class RecordingResult:
    """The outcome of one recording: its file and per-camera statistics, or why it failed."""

    path: Path
    cameras: tuple[CameraStats, ...] = ()
    duration_s: float = 0.0
    moving_s: float = 0.0
    error: str | None = None


def simulate_recording(
    subject_number: int,
    movement_number: int,
    config: SimulationConfig,
    path: Path,
    device: str | torch.device | None = None,
) -> RecordingResult:
    """Simulate one recording into ``path`` (atomically); ``device`` as for
    :func:`simulate_camera`."""
    subject = make_subject(config, subject_number)
    performance = make_performance(config, subject, movement_number)
    views = make_views(config)
    m = movement(movement_number)
    label_t = np.arange(0.0, performance.duration_s, 1.0 / config.label_rate_hz)
    labels = performance.frames(label_t).joints
    probe = np.arange(0.0, performance.duration_s, 1e-3)
    moving_s = float((~performance.is_still(probe)).mean() * performance.duration_s)
    meta = RecordingMeta(
        source="synthetic",
        subject=subject_number,
        session=m.session,
        movement=m.index,
        extra={
            "movement_name": m.name,
            "movement_number": m.number,
            "settings": config.settings(),
            "body": json.loads(json.dumps(dataclasses.asdict(subject.body))),
            "duration_s": performance.duration_s,
            "moving_s": moving_s,
        },
    )
    with RecordingWriter(
        path, config.sensor_size, rig_calibrations(config.sensor_size, config.rig), meta
    ) as writer:
        renderers, cameras = [], []
        poses = _Poses(subject, performance)
        for camera, view in enumerate(views):
            rng = _rng(config, _SENSOR, subject_number, movement_number, camera)
            phase = _rng(config, _REFLECTIONS, subject_number, movement_number, camera).uniform(
                0.0, US
            )
            renderers.append(_Renderer(view, subject, performance, config, device, poses))
            cameras.append(_camera_steps(writer, camera, renderers[-1], rng, phase))
        stats = _simulate_together(cameras, renderers)
        writer.update_extra({"cameras": [dataclasses.asdict(c) for c in stats]})
        writer.write_labels(np.round(label_t * US).astype(np.int64), labels)
    return RecordingResult(path, tuple(stats), performance.duration_s, moving_s)


Task = tuple[int, int, SimulationConfig, Path, "str | None"]
"""One recording to make: subject, movement, settings, file, device (a name: it crosses
process boundaries)."""


def _simulate_task(task: Task) -> RecordingResult:
    subject, movement_number, config, path, device = task
    try:
        return simulate_recording(subject, movement_number, config, path, device)
    except (HybridPoseError, OSError) as err:
        return RecordingResult(path, error=describe_error(err))


KILLED = "worker process was killed (out of memory?)"


# ------------------------------------------------------------------------ a dataset
@dataclass(frozen=True)
class SimulationSummary:
    """What :func:`simulate_dataset` did."""

    written: list[RecordingResult]
    skipped: list[Path]
    failed: list[tuple[Path, str]]
    stale_temp_removed: int = 0

    def describe(self) -> str:
        """A few lines for people: counts, events per second moving/still, disk size."""
        lines = [
            f"simulated {len(self.written)} recording(s), skipped {len(self.skipped)} "
            f"finished one(s), {len(self.failed)} failed"
        ]
        cams = [c for r in self.written for c in r.cameras]
        moving = sum(r.moving_s * len(r.cameras) for r in self.written)
        still = sum((r.duration_s - r.moving_s) * len(r.cameras) for r in self.written)
        if cams and moving > 0:
            rate_moving = sum(c.events_moving for c in cams) / moving
            rate_still = sum(c.events_still for c in cams) / still if still > 0 else 0.0
            size = sum(r.path.stat().st_size for r in self.written if r.path.exists())
            lines.append(
                f"  {sum(c.events for c in cams):,} events; per camera "
                f"{rate_moving:,.0f} ev/s while moving, {rate_still:,.0f} ev/s while still; "
                f"{size / 1e6:,.1f} MB written"
            )
        if self.stale_temp_removed:
            lines.append(f"  removed {self.stale_temp_removed} stale temporary file(s)")
        lines += [f"  failed: {path.name}: {why}" for path, why in self.failed]
        return "\n".join(lines)


def parse_shard(text: str) -> tuple[int, int]:
    """``"K/N"`` -> ``(K, N)`` with ``1 <= K <= N``."""
    try:
        k, n = (int(v) for v in text.split("/"))
    except ValueError:
        raise SimulationError(f"shard must look like K/N (e.g. 2/4), got {text!r}") from None
    if not 1 <= k <= n:
        raise SimulationError(f"shard {text}: need 1 <= K <= N")
    return k, n


def planned_recordings(
    config: SimulationConfig, shard: tuple[int, int] = (1, 1)
) -> list[tuple[int, int]]:
    """The ``(subject, movement)`` pairs of shard ``K/N``: every N-th pair from the K-th on."""
    k, n = shard
    pairs = [(s, m) for s in config.subjects for m in config.movements]
    return pairs[k - 1 :: n]


def _existing_problem(path: Path, settings: dict[str, Any]) -> str | None:
    """None when ``path`` is a finished recording made with ``settings``, else why not."""
    try:
        with Recording(path) as rec:
            stored = rec.meta.extra.get("settings")
    except (HybridPoseError, OSError) as err:
        return f"exists but cannot be read ({first_line(err)}); delete it or use another --out"
    if stored != settings:
        return "exists with different settings or generator version; delete it or use another --out"
    return None


def simulate_dataset(
    out_dir: str | os.PathLike[str],
    config: SimulationConfig,
    *,
    workers: int = 1,
    shard: tuple[int, int] = (1, 1),
    progress: bool = True,
    device: str | None = None,
) -> SimulationSummary:
    """Simulate the recordings of ``config`` (this shard's share) into ``out_dir``.

    ``device``: None renders and simulates with the compiled CPU kernels, a torch device name
    with torch there (see :func:`simulate_camera`).

    Finished files made with the same settings are skipped, so an interrupted run resumes
    where it stopped; temporary files of killed runs are removed first. A file of the same name
    made with other settings is reported as failed and left untouched.
    """
    out = Path(out_dir)
    if out.exists() and not out.is_dir():
        raise SimulationError(f"{out}: exists and is not a directory")
    try:
        out.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=out, prefix=".hybridpose-probe-"):
            pass
    except OSError as err:
        reason = err.strerror or first_line(err)
        raise SimulationError(f"{out}: cannot write into the output directory ({reason})") from None
    stale = remove_stale_temp_files(out)
    settings = config.settings()
    tasks: list[Task] = []
    skipped: list[Path] = []
    failed: list[tuple[Path, str]] = []
    for subject, number in planned_recordings(config, shard):
        path = out / recording_name(subject, number)
        if path.exists():
            problem = _existing_problem(path, settings)
            if problem is None:
                skipped.append(path)
            else:
                failed.append((path, problem))
            continue
        tasks.append((subject, number, config, path, device))
    with tqdm(total=len(tasks), disable=not progress, desc="simulate", unit="rec") as bar:
        if workers <= 1 or len(tasks) <= 1:
            results = []
            for task in tasks:
                results.append(_simulate_task(task))
                bar.update(1)
        else:
            try:
                results = map_in_processes(
                    _simulate_task,
                    tasks,
                    min(workers, len(tasks)),
                    bar,
                    RecordingResult(Path(), error=KILLED),
                )
            finally:  # also when interrupted: the workers are gone, their temporaries stale
                remove_stale_temp_files(out, {task[3].name for task in tasks})
    written = []
    for task, result in zip(tasks, results, strict=True):
        if result.error is None:
            written.append(result)
        else:
            failed.append((task[3], result.error))
    return SimulationSummary(written, skipped, failed, stale)


__all__ = [
    "GENERATOR_VERSION",
    "PRESETS",
    "SAMPLINGS",
    "CameraStats",
    "RecordingResult",
    "SimulationConfig",
    "SimulationError",
    "SimulationSummary",
    "Subject",
    "make_performance",
    "make_subject",
    "make_views",
    "parse_shard",
    "planned_recordings",
    "recording_name",
    "simulate_camera",
    "simulate_dataset",
    "simulate_recording",
]
