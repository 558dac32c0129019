"""The synthetic dataset in DHP19's download layout (``hybridpose simulate --format dhp19-raw``).

:func:`simulate_dhp19_raw` writes what a DHP19 download holds, so that ``hybridpose
convert-dhp19`` (:func:`hybridpose.io.dhp19.convert_dhp19`) runs end to end on synthetic data::

    ROOT/hybridpose-dhp19-raw.json                  the settings (simulation, raw options)
    ROOT/.native/S{s}_session{n}_mov{k}.h5          the native recordings (staging)
    ROOT/DVS_movies/S{s}/session{n}/mov{k}.aedat    events of the 4 cameras, AEDAT 2.0
    ROOT/Vicon_data/S{s}_{n}_{k}.mat                struct XYZPOS, 13 joints, 100 Hz, mm
    ROOT/P_matrices/P1.npy .. P4.npy                3x4 projection matrices, DHP19's frame
    ROOT/P_matrices/camera_positions.npy            (4, 3) camera centres, mm

Each file is the exact inverse of what the converter does (steps of :mod:`hybridpose.io.dhp19`),
so converting it with the filters off gives back the native recording's events per camera and
its labels exactly, and its calibration up to rounding (tests/test_dhp19_raw.py checks this):

- **Addresses** (:func:`~hybridpose.io.dhp19.encode_addresses`): raw ``x_raw = 345 - x``,
  ``y_raw = 259 - y`` (the converter's flip undone), polarity bit 11 for ON, the camera id in
  bits 0-3.
- **Time.** The native events start at ``t = 0`` of the recording; the file's clock starts at
  an offset: a seeded value in ``[10^8, 2 * 10^8)`` us, or, with ``wrap_timestamps``, one chosen
  so that the 32-bit counter wraps (2^32 us) at a seeded instant in the middle half of the
  recording (the converter unwraps it). Timestamps are written modulo 2^32.
- **Start and stop.** Special events (bit 10, camera id 0) mark the Vicon recording: one at the
  start (native ``t = 0``) and one at the stop, ``N * 10 ms`` later for ``N`` Vicon samples;
  with 2 specials the converter takes the first as the start and derives the stop from the
  Vicon length. (Should events run past ``N * 10 ms``, which the simulator never does, a
  third special at the last event makes the converter take the first and the last.)
- **Stray events** (``stray_events``): random polarity events of random cameras and pixels in
  the :data:`STRAY_MARGIN_US` before the start special and after the stop (half each, the odd
  one before), as a real camera records before and after the Vicon does. The converter drops
  them as outside ``[start, stop]`` (``dropped_outside``); they are not the off-sensor strays
  of its step 3.
- **Order.** The records of the four cameras and the specials are interleaved in time order
  (a stable merge: each camera keeps its own order; at equal times the specials come first,
  then the cameras by id).
- **Labels**: the native labels (float32, in mm) as float64 fields of ``XYZPOS``, sample ``k``
  at ``k * 10 ms`` after the start.
- **Calibration**: camera ``c`` to ``P{m}.npy`` with ``m = CAMERA_TO_MATRIX[c]`` as
  ``FLIP_A @ P`` (:func:`~hybridpose.io.dhp19.write_p_matrices`).

Only DHP19's own sensor size, 346x260, and its label rate, 100 Hz, can be laid out this way (the
converter assumes both); other settings are refused with :class:`Dhp19RawError`.

Resume. The native recordings are simulated into ``ROOT/.native`` by
:func:`~hybridpose.synth.generate.simulate_dataset`, which skips finished files. A recording's
raw files are skipped when its ``.mat`` exists and its ``.aedat`` (written last) names the
settings' digest in its header; anything else is rewritten (atomically). The calibration is
rewritten only if it differs. A root that holds a DHP19 download (``DVS_movies/``,
``Vicon_data/`` or ``P_matrices/``) without the settings file, or with other settings, is
refused, so a real download is never written into.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
from tqdm import tqdm

from hybridpose.atomic import write_text_atomic
from hybridpose.errors import HybridPoseError, describe_error, first_line
from hybridpose.io.aedat import (
    DEFAULT_HEADER_LINES,
    AedatError,
    read_aedat2_header,
    write_aedat2_chunks,
)
from hybridpose.io.dhp19.addresses import encode_addresses
from hybridpose.io.dhp19.calibration import FLIP_A, write_p_matrices
from hybridpose.io.dhp19.common import CAMERA_TO_MATRIX, SENSOR_SIZE, VICON_PERIOD_US
from hybridpose.io.dhp19.timing import WRAP_US, find_start_stop
from hybridpose.io.mat5 import write_mat5_struct
from hybridpose.io.recording import CameraCalibration, Recording
from hybridpose.joints import JOINT_NAMES
from hybridpose.synth.generate import (
    SimulationConfig,
    SimulationError,
    SimulationSummary,
    planned_recordings,
    recording_name,
    simulate_dataset,
)
from hybridpose.synth.motions import movement
from hybridpose.synth.scene import rig_calibrations

FORMAT_NAME = "hybridpose-dhp19-raw"
FORMAT_VERSION = 1
"""Version of the raw layout written here; bumped on every change that alters a file."""
SETTINGS_FILE = "hybridpose-dhp19-raw.json"
"""The settings file at the root: simulation settings, raw options and format version."""
NATIVE_DIR = ".native"
"""The staging folder of the native recordings, inside the root."""
DOWNLOAD_DIRS = ("DVS_movies", "Vicon_data", "P_matrices")
"""The folders of a DHP19 download; a root holding any of them must be ours to be written."""
STRAY_MARGIN_US = 100_000
"""Stray events lie at most this long before the start special or after the stop."""
MAX_STRAY_EVENTS = 1_000_000
"""The most stray events per recording (they are held in memory)."""
CLOCK_START_US = (100_000_000, 200_000_000)
"""Without wrapping, the file's clock at the start special is drawn from this range (us)."""
MERGE_WINDOW_US = 1_000_000
"""The four cameras are merged and written this much native time at a time (bounds memory)."""

_RAW_STREAM = 100  # the random stream of the raw layout, apart from generate's streams 0-4
_SPECIAL_ADDRESS = int(encode_addresses(0, 0, -1, 0, special=True))


class Dhp19RawError(SimulationError):
    """Settings that DHP19's layout cannot hold, bad raw options, or a root that is not ours."""


@dataclass(frozen=True)
class RawOptions:
    """How the raw files differ from a plain copy of the native recording.

    Attributes:
        wrap_timestamps: start the file's clock so that the 32-bit timestamp counter wraps in
            the middle half of each recording.
        stray_events: polarity events per recording before the start special and after the
            stop (0 to :data:`MAX_STRAY_EVENTS`), which the converter drops.
    """

    wrap_timestamps: bool = False
    stray_events: int = 0

    def __post_init__(self) -> None:
        if not isinstance(self.wrap_timestamps, bool):
            raise Dhp19RawError(
                f"wrap_timestamps must be True or False, got {self.wrap_timestamps!r}"
            )
        n = self.stray_events
        if isinstance(n, bool) or not isinstance(n, int | np.integer):
            raise Dhp19RawError(f"stray_events must be a whole number, got {n!r}")
        if not 0 <= n <= MAX_STRAY_EVENTS:
            raise Dhp19RawError(f"stray_events must lie in 0-{MAX_STRAY_EVENTS}, got {n}")

    def settings(self) -> dict[str, Any]:
        """The options as stored in the settings file."""
        return {"wrap_timestamps": self.wrap_timestamps, "stray_events": int(self.stray_events)}


def check_config(config: SimulationConfig) -> None:
    """Refuse simulation settings that DHP19's layout cannot hold (:class:`Dhp19RawError`).

    The converter assumes DHP19's 346x260 sensor (it flips ``x -> 345 - x`` and drops pixels
    beyond it) and Vicon labels at 100 Hz (sample ``k`` at ``k * 10 ms``).
    """
    if tuple(config.sensor_size) != SENSOR_SIZE:
        width, height = config.sensor_size
        raise Dhp19RawError(
            f"the DHP19 raw layout needs DHP19's {SENSOR_SIZE[0]}x{SENSOR_SIZE[1]} sensor, got "
            f"{width}x{height}: use --resolution {SENSOR_SIZE[0]}x{SENSOR_SIZE[1]} (the default "
            "preset's) or --format h5"
        )
    if config.label_rate_hz != 1e6 / VICON_PERIOD_US:
        raise Dhp19RawError(
            f"the DHP19 raw layout needs labels at {1e6 / VICON_PERIOD_US:g} Hz (Vicon), got "
            f"{config.label_rate_hz:g} Hz"
        )


def layout_settings(config: SimulationConfig, options: RawOptions) -> dict[str, Any]:
    """Everything the raw files depend on, as stored in :data:`SETTINGS_FILE`."""
    return {
        "format": FORMAT_NAME,
        "format_version": FORMAT_VERSION,
        "simulation": config.settings(),
        "raw": options.settings(),
    }


def settings_digest(settings: dict[str, Any]) -> str:
    """A short digest of ``settings`` (16 hex digits of SHA-256 of its canonical JSON)."""
    text = json.dumps(settings, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:16]


# ------------------------------------------------------------------------ one recording
@dataclass(frozen=True)
class RawRecording:
    """What :func:`write_raw_recording` wrote for one recording.

    Attributes:
        aedat: ``DVS_movies/S{s}/session{n}/mov{k}.aedat``.
        vicon: ``Vicon_data/S{s}_{n}_{k}.mat``.
        start_us: the file's clock at the start special (below 2^32).
        stop_us: the stop the converter finds, unwrapped (beyond 2^32 when the clock wraps):
            ``start_us + N * 10 ms`` for ``N`` Vicon samples with 2 specials.
        specials: special events written (2, or 3 when events run past the Vicon length).
        strays_before: stray events before the start, per camera.
        strays_after: stray events after the stop, per camera.
        records: records written (events, specials and strays).
        wraps: whether the 32-bit counter wraps inside the file.
    """

    aedat: Path
    vicon: Path
    start_us: int
    stop_us: int
    specials: int
    strays_before: tuple[int, ...]
    strays_after: tuple[int, ...]
    records: int
    wraps: bool


def raw_paths(root: Path, subject: int, session: int, movement_index: int) -> tuple[Path, Path]:
    """DHP19's ``(aedat, vicon)`` paths of a recording under ``root``."""
    aedat = root / "DVS_movies" / f"S{subject}" / f"session{session}" / f"mov{movement_index}.aedat"
    return aedat, root / "Vicon_data" / f"S{subject}_{session}_{movement_index}.mat"


@dataclass(frozen=True)
class _Extras:
    """The records that are not native events: specials and strays, native time, unsorted."""

    t: npt.NDArray[np.int64]
    address: npt.NDArray[np.uint32]
    camera: npt.NDArray[np.int64]  # -1 for specials
    before: npt.NDArray[np.bool_]  # a stray before the start


def _extras(rng: np.random.Generator, special_t: list[int], stop_us: int, count: int) -> _Extras:
    """The specials at ``special_t`` and ``count`` strays around ``[0, stop_us]``."""
    # a quarter of the recording at most: the converter's start/stop rule must still take the
    # first special for the start (it lies nearer the first event than the last)
    margin = max(1, min(STRAY_MARGIN_US, stop_us // 4))
    n_before = (count + 1) // 2
    t = np.concatenate(
        [
            rng.integers(-margin, 0, n_before),  # [-margin, -1]
            rng.integers(stop_us + 1, stop_us + margin + 1, count - n_before),
        ]
    ).astype(np.int64)
    camera = rng.integers(0, len(CAMERA_TO_MATRIX), count)
    x = rng.integers(0, SENSOR_SIZE[0], count)
    y = rng.integers(0, SENSOR_SIZE[1], count)
    p = rng.integers(0, 2, count)
    strays = encode_addresses(x, y, p, camera)
    specials = np.full(len(special_t), _SPECIAL_ADDRESS, np.uint32)
    return _Extras(
        t=np.concatenate([np.asarray(special_t, np.int64), t]),
        address=np.concatenate([specials, strays]).astype(np.uint32),
        camera=np.concatenate([np.full(len(special_t), -1), camera]).astype(np.int64),
        before=np.concatenate([np.zeros(len(special_t), bool), np.arange(count) < n_before]),
    )


def _records(
    rec: Recording, extras: _Extras, offset_us: int, end_us: int
) -> Iterator[tuple[npt.NDArray[np.uint32], npt.NDArray[np.int64]]]:
    """``(addresses, raw timestamps)`` in time order, :data:`MERGE_WINDOW_US` at a time."""
    width, height = SENSOR_SIZE
    lo = min(0, int(extras.t.min(initial=0)))
    for t0 in range(lo, end_us + 1, MERGE_WINDOW_US):
        t1 = t0 + MERGE_WINDOW_US
        inside = (extras.t >= t0) & (extras.t < t1)
        addresses = [extras.address[inside]]
        times = [extras.t[inside]]
        for c in range(len(rec.cameras)):
            ev = rec.events(c, t0, t1)
            x_raw = (width - 1) - ev["x"].astype(np.int64)
            y_raw = (height - 1) - ev["y"].astype(np.int64)
            addresses.append(encode_addresses(x_raw, y_raw, ev["p"], c))
            times.append(ev["t"].astype(np.int64))
        t = np.concatenate(times)
        order = np.argsort(t, kind="stable")  # specials first, then cameras by id
        yield np.concatenate(addresses)[order], t[order] + offset_us


def _check_native(rec: Recording, cameras: list[CameraCalibration] | None) -> int:
    """Check that a native recording fits DHP19's layout; its number of labels."""
    if rec.sensor_size != SENSOR_SIZE:
        width, height = rec.sensor_size
        raise Dhp19RawError(
            f"{rec.name}: sensor {width}x{height}; the DHP19 raw layout needs "
            f"{SENSOR_SIZE[0]}x{SENSOR_SIZE[1]}"
        )
    if len(rec.cameras) != len(CAMERA_TO_MATRIX):
        raise Dhp19RawError(f"{rec.name}: {len(rec.cameras)} cameras; DHP19 has 4")
    labels = rec.labels()
    n = labels.count
    if n == 0 or not np.array_equal(labels.t_us, np.arange(n, dtype=np.int64) * VICON_PERIOD_US):
        raise Dhp19RawError(
            f"{rec.name}: labels are not at 100 Hz from t = 0 (DHP19's Vicon timing)"
        )
    if cameras is not None:
        for info, want in zip(rec.cameras, cameras, strict=True):
            cal = info.calibration
            if not (np.array_equal(cal.P, want.P) and np.array_equal(cal.center, want.center)):
                raise Dhp19RawError(
                    f"{rec.name}: camera {info.index} has another calibration than the rig "
                    "of the settings"
                )
    return n


def write_raw_recording(
    native: Path,
    root: Path,
    options: RawOptions = RawOptions(),
    *,
    seed: int = 0,
    cameras: list[CameraCalibration] | None = None,
    digest: str = "",
) -> RawRecording:
    """Write one native recording as DHP19's ``.aedat`` and Vicon ``.mat`` under ``root``.

    The layout is described in :mod:`hybridpose.synth.dhp19_raw`. The ``.mat`` is written
    first, the ``.aedat`` last, each atomically, so a finished ``.aedat`` means a finished
    recording. The calibration (``P_matrices/``) is not written here.

    Args:
        native: a native recording at 346x260 with 4 cameras and labels at 100 Hz from 0.
        root: the DHP19 root to write into.
        options: wrap and stray events.
        seed: seeds the clock offset and the strays, with the recording's subject, session and
            movement (so each recording gets its own).
        cameras: if given, the calibration the recording must have (that of ``P_matrices/``).
        digest: :func:`settings_digest` of the settings, written into the ``.aedat`` header.

    Returns:
        What was written.

    Raises:
        Dhp19RawError: the recording does not fit DHP19's layout.
        RecordingError: the native file cannot be read.
        OSError: a file cannot be written.
    """
    with Recording(native) as rec:
        n_labels = _check_native(rec, cameras)
        meta = rec.meta
        subject, session, index = (int(v or 0) for v in (meta.subject, meta.session, meta.movement))
        rng = np.random.default_rng(
            np.random.SeedSequence([seed, _RAW_STREAM, subject, session, index])
        )
        duration = n_labels * VICON_PERIOD_US
        last_event = max((c.t_end_us for c in rec.cameras if c.t_end_us is not None), default=0)
        stop = max(duration, last_event)
        special_t = [0, duration] if stop == duration else [0, stop // 2, stop]
        if options.wrap_timestamps:
            offset = WRAP_US - int(rng.integers(stop // 4, max(stop // 4, 3 * stop // 4) + 1))
        else:
            offset = int(rng.integers(*CLOCK_START_US))
        extras = _extras(rng, special_t, stop, options.stray_events)
        end = max(last_event, int(extras.t.max(initial=0)))
        _check_span(extras, rec, stop, n_labels, native)

        aedat, vicon = raw_paths(root, subject, session, index)
        joints = rec.labels().joints_mm.astype(np.float64)
        write_mat5_struct(vicon, "XYZPOS", {n: joints[:, j] for j, n in enumerate(JOINT_NAMES)})
        header = [
            *DEFAULT_HEADER_LINES,
            f"# synthetic DHP19 recording S{subject} session{session} mov{index}, written by "
            "hybridpose simulate --format dhp19-raw",
            f"# {FORMAT_NAME} settings {digest or 'unrecorded'}",
        ]
        write_aedat2_chunks(aedat, _records(rec, extras, offset, end), header)
        records = sum(c.num_events for c in rec.cameras) + len(extras.t)
    strays = extras.camera >= 0
    return RawRecording(
        aedat=aedat,
        vicon=vicon,
        start_us=offset,
        stop_us=offset + stop,
        specials=len(special_t),
        strays_before=_per_camera(extras.camera[strays & extras.before]),
        strays_after=_per_camera(extras.camera[strays & ~extras.before]),
        records=records,
        wraps=offset + end >= WRAP_US,
    )


def _per_camera(camera: npt.NDArray[np.int64]) -> tuple[int, ...]:
    return tuple(int(v) for v in np.bincount(camera, minlength=len(CAMERA_TO_MATRIX)))


def _check_span(extras: _Extras, rec: Recording, stop: int, n_labels: int, native: Path) -> None:
    """Check that the converter's start/stop rule finds ``[0, stop]`` in this file (a guard)."""
    ends = [c.t_start_us for c in rec.cameras if c.t_start_us is not None]
    lasts = [c.t_end_us for c in rec.cameras if c.t_end_us is not None]
    strays_t = extras.t[extras.camera >= 0]
    first = min([*ends, *strays_t.tolist()], default=0)
    last = max([*lasts, *strays_t.tolist()], default=0)
    span = find_start_stop(extras.t[extras.camera < 0], first, last, n_labels, str(native))
    if (span.start_us, span.stop_us) != (0, stop):
        raise Dhp19RawError(
            f"{native}: the converter would find [{span.start_us}, {span.stop_us}] us instead "
            f"of [0, {stop}] us ({span.rule}); the recording is too short for its stray events"
        )


def raw_recording_done(aedat: Path, vicon: Path, digest: str) -> bool:
    """Whether both files exist and the ``.aedat`` header names the settings ``digest``."""
    if not vicon.is_file():
        return False
    try:
        lines = read_aedat2_header(aedat)
    except AedatError:
        return False
    return f"# {FORMAT_NAME} settings {digest}" in lines


# ------------------------------------------------------------------------ the root
def _flatten(value: Any, prefix: str = "") -> dict[str, Any]:
    if isinstance(value, dict):
        out: dict[str, Any] = {}
        for key, item in value.items():
            out.update(_flatten(item, f"{prefix}.{key}" if prefix else str(key)))
        return out
    return {prefix: value}


def _differences(stored: Any, wanted: dict[str, Any], shown: int = 3) -> str:
    """``key: stored -> wanted`` for the first ``shown`` settings that differ."""
    a, b = _flatten(stored), _flatten(wanted)
    keys = sorted(k for k in a.keys() | b.keys() if a.get(k, "missing") != b.get(k, "missing"))
    parts = [f"{k}: {a.get(k, 'missing')} -> {b.get(k, 'missing')}" for k in keys[:shown]]
    more = f" and {len(keys) - shown} more" if len(keys) > shown else ""
    return "; ".join(parts) + more


def check_root(root: Path, settings: dict[str, Any]) -> bool:
    """Check that ``root`` may receive a raw layout made with ``settings``.

    Returns:
        Whether the settings file must be written (it is missing).

    Raises:
        Dhp19RawError: ``root`` is not a directory; it holds a DHP19 download without the
            settings file; or its settings file is unreadable or differs from ``settings``
            (the message names the first differences, stored -> requested).
    """
    if root.exists() and not root.is_dir():
        raise Dhp19RawError(f"{root}: exists and is not a directory")
    path = root / SETTINGS_FILE
    if path.exists():
        try:
            stored = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
            raise Dhp19RawError(
                f"{path}: cannot be read ({first_line(err)}); delete it or use another --out"
            ) from None
        if stored != settings:
            raise Dhp19RawError(
                f"{root}: holds a DHP19 raw layout made with other settings "
                f"({_differences(stored, settings)}); delete it or use another --out"
            )
        return False
    found = [name for name in DOWNLOAD_DIRS if (root / name).exists()]
    if found:
        raise Dhp19RawError(
            f"{root}: holds a DHP19 download ({', '.join(n + '/' for n in found)}) without "
            f"{SETTINGS_FILE}, so not one written by hybridpose simulate --format dhp19-raw; "
            "use another --out"
        )
    return True


@dataclass(frozen=True)
class Dhp19RawSummary:
    """What :func:`simulate_dhp19_raw` did.

    Attributes:
        simulation: the native recordings simulated into :data:`NATIVE_DIR` (or skipped).
        written: ``.aedat`` files written by this run (with their ``.mat``).
        skipped: ``.aedat`` files already written with these settings.
        failed: ``(native recording, reason)`` of each recording whose raw files could not be
            written (the simulation's failures are in ``simulation.failed``).
        calibration_written: whether ``P_matrices/`` was (re)written.
    """

    simulation: SimulationSummary
    written: list[Path]
    skipped: list[Path]
    failed: list[tuple[Path, str]]
    calibration_written: bool

    @property
    def any_failed(self) -> bool:
        return bool(self.failed or self.simulation.failed)

    def describe(self) -> str:
        """The simulation's summary, then a few lines about the raw layout."""
        calibration = "written" if self.calibration_written else "unchanged"
        lines = [
            self.simulation.describe(),
            f"DHP19 raw layout: wrote {len(self.written)} recording(s), skipped "
            f"{len(self.skipped)} already written, {len(self.failed)} failed; P_matrices "
            f"{calibration}",
        ]
        lines += [f"  failed: {path.name}: {why}" for path, why in self.failed]
        return "\n".join(lines)


def _calibration_unchanged(p_dir: Path, cameras: list[CameraCalibration]) -> bool:
    """Whether ``p_dir`` already holds exactly what :func:`write_p_matrices` would write."""
    try:
        positions = np.load(p_dir / "camera_positions.npy")
        for c, m in enumerate(CAMERA_TO_MATRIX):
            if not np.array_equal(np.load(p_dir / f"P{m}.npy"), FLIP_A @ cameras[c].P):
                return False
            if not np.array_equal(positions[m - 1], cameras[c].center):
                return False
    except (OSError, ValueError, IndexError):
        return False
    return True


def simulate_dhp19_raw(
    out_root: str | os.PathLike[str],
    config: SimulationConfig,
    *,
    workers: int = 1,
    shard: tuple[int, int] = (1, 1),
    progress: bool = True,
    options: RawOptions = RawOptions(),
    device: str | None = None,
) -> Dhp19RawSummary:
    """Simulate ``config`` (this shard's share) and write it in DHP19's download layout.

    In order: the root and the settings are checked (and the settings file written if
    missing); the native recordings are simulated into ``out_root/.native`` (finished ones are
    skipped); each native recording's ``.aedat`` and ``.mat`` are written (skipping those
    already written with these settings); then ``P_matrices/``. See
    :mod:`hybridpose.synth.dhp19_raw` for the layout. ``hybridpose convert-dhp19 --root
    out_root`` converts the result.

    Args:
        out_root: the DHP19 root to write (created if missing).
        config: the simulation; its sensor must be 346x260 and its labels at 100 Hz.
        workers: processes simulating in parallel (the raw files are written by this process).
        shard: ``(K, N)``: only every N-th recording from the K-th on.
        progress: show progress bars.
        options: wrap and stray events.
        device: simulate with torch on this device (None: the compiled CPU kernels; see
            :func:`~hybridpose.synth.generate.simulate_dataset`).

    Returns:
        What was simulated, written, skipped and what failed.

    Raises:
        Dhp19RawError: settings the layout cannot hold, or a root that is not ours (see
            :func:`check_root`).
        SimulationError: the staging folder cannot be used.
    """
    root = Path(out_root)
    check_config(config)
    settings = layout_settings(config, options)
    if check_root(root, settings):
        write_text_atomic(root / SETTINGS_FILE, json.dumps(settings, indent=2, sort_keys=True))
    digest = settings_digest(settings)
    simulation = simulate_dataset(
        root / NATIVE_DIR, config, workers=workers, shard=shard, progress=progress, device=device
    )
    cameras = rig_calibrations(config.sensor_size, config.rig)
    unusable = {path for path, _ in simulation.failed}
    written: list[Path] = []
    skipped: list[Path] = []
    failed: list[tuple[Path, str]] = []
    pairs = planned_recordings(config, shard)
    for subject, number in tqdm(pairs, disable=not progress, desc="dhp19-raw", unit="rec"):
        native = root / NATIVE_DIR / recording_name(subject, number)
        if native in unusable:
            continue
        m = movement(number)
        aedat, vicon = raw_paths(root, subject, m.session, m.index)
        if raw_recording_done(aedat, vicon, digest):
            skipped.append(aedat)
            continue
        try:
            write_raw_recording(
                native, root, options, seed=config.seed, cameras=cameras, digest=digest
            )
        except (HybridPoseError, OSError) as err:
            failed.append((native, describe_error(err)))
            continue
        written.append(aedat)
    calibration_written = not _calibration_unchanged(root / "P_matrices", cameras)
    if calibration_written:
        write_p_matrices(root / "P_matrices", cameras)
    return Dhp19RawSummary(simulation, written, skipped, failed, calibration_written)


__all__ = [
    "CLOCK_START_US",
    "DOWNLOAD_DIRS",
    "FORMAT_NAME",
    "FORMAT_VERSION",
    "MAX_STRAY_EVENTS",
    "MERGE_WINDOW_US",
    "NATIVE_DIR",
    "SETTINGS_FILE",
    "STRAY_MARGIN_US",
    "Dhp19RawError",
    "Dhp19RawSummary",
    "RawOptions",
    "RawRecording",
    "check_config",
    "check_root",
    "layout_settings",
    "raw_paths",
    "raw_recording_done",
    "settings_digest",
    "simulate_dhp19_raw",
    "write_raw_recording",
]
