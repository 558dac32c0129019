"""Convert a whole DHP19 root: find its recordings, skip finished outputs, convert the rest.

Each recording is converted by :func:`~hybridpose.io.dhp19.convert.convert_recording`, in worker
processes if asked; see :mod:`hybridpose.io.dhp19`.
"""

from __future__ import annotations

import re
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tqdm import tqdm

from hybridpose.errors import HybridPoseError, describe_error, first_line
from hybridpose.io.dhp19.calibration import (
    check_camera_positions,
    log_camera_position_warnings,
    read_p_matrices,
)
from hybridpose.io.dhp19.common import (
    BACKGROUND_SUPPORT_US,
    CAMERA_POSITION_TOLERANCE_MM,
    DEFAULT_BACKGROUND_STAMPS,
    HOT_PIXEL_THRESHOLD,
    MAX_END_GAP_FRACTION,
    MAX_END_GAP_US,
    MAX_REPAIRABLE_JUMP_US,
    MAX_STRAY_FRACTION,
    BackgroundStamps,
    Dhp19Error,
    check_background_stamps,
    check_camera_position_tolerance,
    output_settings,
)
from hybridpose.io.dhp19.convert import convert_recording
from hybridpose.io.recording import Recording, remove_stale_temp_files
from hybridpose.parallel import map_in_processes

_RECORDING_RE = re.compile(r"^S(\d+)/session(\d+)/mov(\d+)\.aedat$")


@dataclass(frozen=True)
class Dhp19Recording:
    """One recording found in a DHP19 root."""

    subject: int
    session: int
    movement: int
    aedat: Path
    vicon_mat: Path

    @property
    def name(self) -> str:
        return f"S{self.subject}_session{self.session}_mov{self.movement}"


_RECORDING_PATTERN = "S{s}/session{n}/mov{k}.aedat"
_IGNORED_SHOWN = 4


def find_recordings(root: Path | str) -> list[Dhp19Recording]:
    """All ``DVS_movies/S{s}/session{n}/mov{k}.aedat`` under ``root``, sorted by (s, n, k).

    Args:
        root: the DHP19 root.

    Returns:
        One entry per ``.aedat`` file, with the Vicon file it needs (which may not exist).

    Raises:
        Dhp19Error: ``root`` is empty (``""``), missing or not a folder, ``root/DVS_movies`` is
            not a folder, or no file in it matches the pattern (the message lists a few
            ``.aedat`` files whose names do not match, such as ``Mov1.aedat``).
    """
    if isinstance(root, str) and root == "":
        raise Dhp19Error("the DHP19 root is an empty path")
    root = Path(root)
    if not root.exists():
        raise Dhp19Error(f"{root}: DHP19 root does not exist")
    if not root.is_dir():
        raise Dhp19Error(f"{root}: DHP19 root is not a directory")
    movies = root / "DVS_movies"
    if not movies.is_dir():
        raise Dhp19Error(f"{movies}: no DVS_movies folder in the DHP19 root")
    found = []
    for aedat in movies.glob("S*/session*/mov*.aedat"):
        match = _RECORDING_RE.match(aedat.relative_to(movies).as_posix())
        if match is None:
            continue
        s, n, k = (int(g) for g in match.groups())
        found.append(Dhp19Recording(s, n, k, aedat, root / "Vicon_data" / f"S{s}_{n}_{k}.mat"))
    if not found:
        raise Dhp19Error(f"{movies}: no recording found: {_ignored_aedat_files(movies)}")
    return sorted(found, key=lambda r: (r.subject, r.session, r.movement))


def _ignored_aedat_files(movies: Path) -> str:
    """Why nothing was found: the ``.aedat`` files (any case) whose names do not match."""
    names = sorted(
        p.relative_to(movies).as_posix()
        for p in movies.rglob("*")
        if p.suffix.lower() == ".aedat" and p.is_file()
    )
    if not names:
        return f"no .aedat file matches {_RECORDING_PATTERN} (there is no .aedat file at all)"
    shown = ", ".join(names[:_IGNORED_SHOWN])
    more = f" and {len(names) - _IGNORED_SHOWN} more" if len(names) > _IGNORED_SHOWN else ""
    return (
        f"no .aedat file matches {_RECORDING_PATTERN} (case-sensitive); ignored because of "
        f"their names: {shown}{more}"
    )


@dataclass(frozen=True)
class ConversionSummary:
    """What :func:`convert_dhp19` did.

    Attributes:
        converted: recordings written by this run.
        skipped: outputs that already existed, made with the same settings (filters,
            rejection thresholds) by the same :data:`CONVERTER_VERSION`, and were not redone.
        rejected: ``(recording name, reason)`` of each recording that could not be converted
            (or whose existing output was made with other settings or another converter
            version, or cannot be read), in (subject, session, movement) order.
        stale_temp_removed: temporary files of killed earlier runs removed from the output
            directory at the start.
    """

    converted: list[Path]
    skipped: list[Path]
    rejected: list[tuple[str, str]]
    stale_temp_removed: int = 0

    def format(self) -> str:
        """A short human summary, one line per rejection."""
        lines = [
            f"DHP19 conversion: {len(self.converted)} converted, {len(self.skipped)} skipped "
            f"(already converted), {len(self.rejected)} rejected"
        ]
        if self.stale_temp_removed:
            lines.append(
                f"  removed {self.stale_temp_removed} stale temporary file(s) of killed earlier "
                "runs"
            )
        lines += [f"  rejected {name}: {reason}" for name, reason in self.rejected]
        return "\n".join(lines)


@dataclass(frozen=True)
class _Task:
    recording: Dhp19Recording
    p_dir: Path
    out: Path
    hot_pixel_filter: bool
    background_filter: bool
    max_stray_fraction: float = MAX_STRAY_FRACTION
    max_repairable_jump_us: int = MAX_REPAIRABLE_JUMP_US
    max_end_gap_us: int = MAX_END_GAP_US
    max_end_gap_fraction: float = MAX_END_GAP_FRACTION
    background_stamps: BackgroundStamps = DEFAULT_BACKGROUND_STAMPS
    camera_position_tolerance_mm: float = CAMERA_POSITION_TOLERANCE_MM


def _run_task(task: _Task) -> str | None:
    """Convert one recording; the reason of a rejection, or None. Runs in worker processes.

    Bad input (any :class:`~hybridpose.errors.HybridPoseError`), an ``OSError`` (disk full,
    permission) and a ``MemoryError`` become the recording's rejection reason; the atomic writer
    has left nothing behind then. Anything else is a bug and propagates.
    """
    rec = task.recording
    if not rec.vicon_mat.is_file():
        return f"no Vicon file {rec.vicon_mat}"
    try:
        convert_recording(
            rec.aedat,
            rec.vicon_mat,
            task.p_dir,
            task.out,
            subject=rec.subject,
            session=rec.session,
            movement=rec.movement,
            hot_pixel_filter=task.hot_pixel_filter,
            background_filter=task.background_filter,
            max_stray_fraction=task.max_stray_fraction,
            max_repairable_jump_us=task.max_repairable_jump_us,
            max_end_gap_us=task.max_end_gap_us,
            max_end_gap_fraction=task.max_end_gap_fraction,
            background_stamps=task.background_stamps,
            camera_position_tolerance_mm=task.camera_position_tolerance_mm,
            warn_camera_positions=False,  # warned once per run, by convert_dhp19
        )
    except HybridPoseError as err:
        return str(err)
    except OSError as err:
        return f"system error ({describe_error(err)})"
    except MemoryError:
        return "out of memory while converting (MemoryError); try fewer --workers"
    return None


_MISSING = "not recorded"
_SETTING_LABELS = {
    "hot_pixel_filter": "hot-pixel filter",
    "background_filter": "background filter",
    "max_stray_fraction": "max stray fraction",
    "max_repairable_jump_us": "max repairable jump",
    "end_gap_limit": "max end gap",
    "converter_version": "converter version",
}


def _stored_setting(extra: dict[str, Any], key: str) -> Any:
    """A setting as stored in ``extra`` (a filter's without its counts)."""
    if key not in extra:
        return _MISSING
    value = extra[key]
    if isinstance(value, dict):
        return {k: v for k, v in value.items() if k != "removed"}
    return value


def _describe_settings(settings: dict[str, Any]) -> str:
    parts = []
    for key, value in settings.items():
        label = _SETTING_LABELS[key]
        if value is None:
            parts.append(f"{label} off")
        elif isinstance(value, dict):
            parts.append(f"{label} " + ", ".join(f"{k}={v}" for k, v in sorted(value.items())))
        elif key == "max_repairable_jump_us" and value != _MISSING:
            parts.append(f"{label} {value} us")
        else:
            parts.append(f"{label} {value}")
    return "; ".join(parts)


def _existing_output_problem(out: Path, wanted: dict[str, Any]) -> str | None:
    """Why an existing output must not be skipped (other settings, unreadable), or None."""
    try:
        with Recording(out) as rec:
            extra = rec.meta.extra
    except (HybridPoseError, OSError) as err:
        return (
            f"{out} exists but cannot be read ({first_line(err)}); delete it or use another --out"
        )
    stored = {key: _stored_setting(extra, key) for key in wanted}
    differ = [key for key in wanted if stored[key] != wanted[key]]
    if differ:
        return (
            f"{out} exists with different settings (stored: "
            f"{_describe_settings({k: stored[k] for k in differ})}; requested: "
            f"{_describe_settings({k: wanted[k] for k in differ})}); delete it or use another "
            "--out"
        )
    return None


def _check_writable(out_dir: Path) -> None:
    """Create and delete one temporary file in ``out_dir``, or raise Dhp19Error."""
    try:
        with tempfile.NamedTemporaryFile(dir=out_dir, prefix=".hybridpose-probe-"):
            pass
    except OSError as err:
        reason = err.strerror or first_line(err)
        raise Dhp19Error(f"{out_dir}: not writable ({reason})") from None


def convert_dhp19(
    root: Path | str,
    out_dir: Path | str,
    *,
    workers: int = 1,
    hot_pixel_filter: bool = False,
    background_filter: bool = False,
    max_stray_fraction: float = MAX_STRAY_FRACTION,
    max_repairable_jump_us: int = MAX_REPAIRABLE_JUMP_US,
    max_end_gap_us: int = MAX_END_GAP_US,
    max_end_gap_fraction: float = MAX_END_GAP_FRACTION,
    background_stamps: BackgroundStamps = DEFAULT_BACKGROUND_STAMPS,
    camera_position_tolerance_mm: float = CAMERA_POSITION_TOLERANCE_MM,
    progress: bool = True,
) -> ConversionSummary:
    """Convert every recording of a DHP19 root into ``out_dir/S{s}_session{n}_mov{k}.h5``.

    At the start, temporary files that killed earlier runs left in ``out_dir`` are removed
    (:func:`~hybridpose.io.recording.stale_temp_files`; the summary counts them). Outputs that
    exist already are skipped (delete them to redo) only if they were made with the settings
    asked for (filters and rejection thresholds) by the same :data:`CONVERTER_VERSION`; an
    existing output made with other settings, by another converter version (or one that
    stored none), or one that cannot be read, is rejected with the reason and left untouched.
    A recording that fails any check, or whose conversion meets an ``OSError`` or
    ``MemoryError``, is rejected with its reason and leaves no file; the others go on.

    The calibration is read once, at the start: a camera whose row of
    ``camera_positions.npy`` lies farther than ``camera_position_tolerance_mm`` from the centre
    of its ``P`` matrix is warned about then, once per run
    (:func:`~hybridpose.io.dhp19.log_camera_position_warnings`); every output stores the
    distances (``extra["camera_positions"]``).

    With ``workers > 1``, a worker process killed from outside (typically by the kernel when
    memory runs out) breaks the process pool: the recordings already converted are kept, and
    each unfinished one is converted again alone, in a fresh one-worker pool; one whose worker
    is killed again is rejected ("worker process was killed (out of memory?)"). Temporary files
    that the killed workers left for this run's outputs are removed afterwards.

    Args:
        root: DHP19 root with ``DVS_movies/``, ``Vicon_data/`` and ``P_matrices/``.
        out_dir: where the recordings go (created if needed; must be writable).
        workers: processes converting in parallel, one recording each. They are spawned, so a
            script that calls this with ``workers > 1`` needs the usual
            ``if __name__ == "__main__":`` guard.
        hot_pixel_filter: remove hot pixels (10^4 or more events in a recording).
        background_filter: apply the 70 ms background-activity filter of the DHP19 reference.
        background_stamps: its rule, ``"neighbours"`` (the reference's current one, default) or
            ``"neighbours-and-self"`` (June 2019); part of the settings an existing output must
            have been made with to be skipped.
        max_stray_fraction: reject a recording with more than this fraction of stray polarity
            events (in ``[0, 1]``; see :func:`convert_recording`).
        max_repairable_jump_us: the largest per-camera backward timestamp jump that is
            repaired; a larger one rejects the recording (``>= 0``).
        max_end_gap_us, max_end_gap_fraction: a recording whose events end more than the
            smaller of these (us, and fraction of its interval) before its stop is rejected as
            cut (see :func:`convert_recording`).
        camera_position_tolerance_mm: warn about a camera whose position lies farther than
            this (mm, ``>= 0``) from its ``P`` centre; not a setting the outputs are compared on.
        progress: show a progress bar over the recordings.

    Returns:
        The converted, skipped and rejected recordings, in (subject, session, movement) order.

    Raises:
        Dhp19Error: ``root`` or ``out_dir`` is an empty path; ``root``, ``DVS_movies``,
            ``Vicon_data`` or ``P_matrices`` is missing (or not a folder); no ``.aedat`` file
            matches ``S{s}/session{n}/mov{k}.aedat``; the calibration is malformed; ``out_dir``
            exists and is not a directory, cannot be created or is not writable; a setting is
            out of range.
    """
    _check_arguments(out_dir, workers, max_stray_fraction, max_repairable_jump_us)
    _check_more_arguments(
        max_end_gap_us, max_end_gap_fraction, background_stamps, camera_position_tolerance_mm
    )
    recordings = find_recordings(root)
    root, out_dir = Path(root), Path(out_dir)
    p_dir = _check_root(root, camera_position_tolerance_mm)
    stale_removed = _prepare_out_dir(out_dir)

    wanted = output_settings(
        HOT_PIXEL_THRESHOLD if hot_pixel_filter else None,
        BACKGROUND_SUPPORT_US if background_filter else None,
        max_stray_fraction,
        max_repairable_jump_us,
        max_end_gap_us,
        max_end_gap_fraction,
        background_stamps,
    )

    plan = _plan(recordings, out_dir, wanted)
    tasks = [
        _Task(
            recordings[i],
            p_dir,
            out,
            hot_pixel_filter,
            background_filter,
            max_stray_fraction,
            max_repairable_jump_us,
            max_end_gap_us,
            max_end_gap_fraction,
            background_stamps,
            camera_position_tolerance_mm,
        )
        for i, out in plan.to_convert
    ]
    outcomes = _run_tasks(tasks, workers, progress, out_dir)
    converted = []
    reasons = dict(plan.rejected)
    for (i, out), why in zip(plan.to_convert, outcomes, strict=True):
        if why is None:
            converted.append(out)
        else:
            reasons[i] = why
    rejected = [(recordings[i].name, reasons[i]) for i in sorted(reasons)]
    return ConversionSummary(
        converted=converted,
        skipped=plan.skipped,
        rejected=rejected,
        stale_temp_removed=stale_removed,
    )


def _check_arguments(
    out_dir: Path | str, workers: int, max_stray_fraction: float, max_repairable_jump_us: int
) -> None:
    """Reject an empty output path and settings out of range (Dhp19Error), before any I/O."""
    if isinstance(out_dir, str) and out_dir == "":
        raise Dhp19Error("the output directory is an empty path")
    if workers < 1:
        raise Dhp19Error(f"workers must be at least 1, got {workers}")
    if not 0.0 <= max_stray_fraction <= 1.0:
        raise Dhp19Error(f"max_stray_fraction must be in [0, 1], got {max_stray_fraction}")
    if max_repairable_jump_us < 0:
        raise Dhp19Error(f"max_repairable_jump_us must be >= 0, got {max_repairable_jump_us}")


def _check_more_arguments(
    max_end_gap_us: int,
    max_end_gap_fraction: float,
    background_stamps: str,
    camera_position_tolerance_mm: float,
) -> None:
    """Reject the remaining settings of :func:`convert_dhp19` out of range (Dhp19Error)."""
    if max_end_gap_us < 0:
        raise Dhp19Error(f"max_end_gap_us must be >= 0, got {max_end_gap_us}")
    if not 0.0 <= max_end_gap_fraction <= 1.0:
        raise Dhp19Error(f"max_end_gap_fraction must be in [0, 1], got {max_end_gap_fraction}")
    check_background_stamps(background_stamps)
    check_camera_position_tolerance(camera_position_tolerance_mm)


def _check_root(root: Path, camera_position_tolerance_mm: float) -> Path:
    """The ``P_matrices`` folder of a root, once ``Vicon_data`` and the calibration check out.

    The calibration is read here once, so that a malformed one fails the whole run instead of
    every recording, and a camera position that disagrees with its ``P`` is warned about once
    (:func:`~hybridpose.io.dhp19.log_camera_position_warnings`).

    Raises:
        Dhp19Error: ``Vicon_data`` is not a folder, or ``P_matrices`` is missing or malformed.
    """
    vicon_dir = root / "Vicon_data"
    if not vicon_dir.is_dir():
        raise Dhp19Error(f"{vicon_dir}: no Vicon_data folder in the DHP19 root")
    p_dir = root / "P_matrices"
    calibration = read_p_matrices(p_dir)  # fail once here, not once per recording
    log_camera_position_warnings(
        check_camera_positions(calibration, p_dir, camera_position_tolerance_mm)
    )
    return p_dir


def _prepare_out_dir(out_dir: Path) -> int:
    """Create ``out_dir`` if needed, check that it is writable and clean it of stale temporaries.

    Returns:
        The number of temporary files of killed earlier runs removed.

    Raises:
        Dhp19Error: ``out_dir`` exists and is not a directory, cannot be created or is not
            writable.
    """
    if out_dir.exists() and not out_dir.is_dir():
        raise Dhp19Error(f"{out_dir}: output path exists and is not a directory")
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise Dhp19Error(
            f"{out_dir}: cannot create the output directory ({describe_error(err)})"
        ) from None
    _check_writable(out_dir)
    return remove_stale_temp_files(out_dir)


@dataclass(frozen=True)
class _Plan:
    """What to do with the recordings of a root: skip, reject or convert each one.

    Attributes:
        skipped: existing outputs made with the wanted settings, not redone.
        rejected: position in the recordings -> why that recording is rejected (its existing
            output was made with other settings or cannot be read).
        to_convert: ``(position in the recordings, output)`` of each recording to convert.
    """

    skipped: list[Path]
    rejected: dict[int, str]
    to_convert: list[tuple[int, Path]]


def _plan(recordings: list[Dhp19Recording], out_dir: Path, wanted: dict[str, Any]) -> _Plan:
    """Sort the recordings by their output ``out_dir/{name}.h5``: skip, reject or convert.

    An existing output is skipped only if it was made with the settings ``wanted`` (see
    :func:`~hybridpose.io.dhp19.common.output_settings`), else the recording is rejected.
    """
    plan = _Plan(skipped=[], rejected={}, to_convert=[])
    for i, rec in enumerate(recordings):
        out = out_dir / f"{rec.name}.h5"
        if out.exists():
            problem = _existing_output_problem(out, wanted)
            if problem is None:
                plan.skipped.append(out)
            else:
                plan.rejected[i] = problem
        else:
            plan.to_convert.append((i, out))
    return plan


KILLED_REASON = "worker process was killed (out of memory?)"
"""The rejection of a recording whose worker process died even when converting it alone."""


def _run_tasks(tasks: list[_Task], workers: int, progress: bool, out_dir: Path) -> list[str | None]:
    """Run the tasks, in ``workers`` processes if more than one; their rejection reasons.

    With worker processes, the temporary files that killed workers left for the tasks'
    outputs in ``out_dir`` are removed afterwards, also when the run is interrupted (the
    workers are terminated then).

    Returns:
        Per task, in order, the reason of its rejection or None (converted).
    """
    with tqdm(total=len(tasks), disable=not progress, desc="DHP19", unit="rec") as bar:
        if workers == 1 or len(tasks) <= 1:
            outcomes = []
            for task in tasks:
                outcomes.append(_run_task(task))
                bar.update(1)
        else:
            try:
                outcomes = map_in_processes(
                    _run_task, tasks, min(workers, len(tasks)), bar, KILLED_REASON
                )
            finally:  # also when interrupted: the workers are gone, their temporaries stale
                remove_stale_temp_files(out_dir, {task.out.name for task in tasks})
    return outcomes
