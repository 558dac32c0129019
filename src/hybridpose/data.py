"""Training windows: ANN frame, SNN bins and labels cut from recording files.

A *window* of one camera of one recording starts at ``t0`` (microseconds):

* ``frame``: the ANN input, a stacked histogram (``2 * ann_bins`` channels) of the last
  ``ann_events`` events of the camera with ``t < t0``;
* ``bins``: the SNN input, ``steps`` two-polarity count histograms of the half-open bins
  ``[t0 + s * bin_us, t0 + (s + 1) * bin_us)``;
* labels at each bin's end ``t0 + (s + 1) * bin_us`` (a bin's prediction is for the time of its
  last possible event): 3D joints interpolated linearly from the recording's labels, their
  projection through the camera's ``P`` into model-input pixels, Gaussian heatmaps and a
  validity mask.

Pixel convention (docs/data-format.md): pixel ``(x, y)`` is the square ``[x - 0.5, x + 0.5) x
[y - 0.5, y + 0.5)``, centres at integers, in the sensor and in the model input alike. Cropping
by ``(x0, y0, w, h)`` and downsampling by ``d`` maps sensor coordinate ``u`` to model coordinate
``(u - x0 + 0.5) / d - 0.5`` (:func:`to_model_pixels`), the same map that
:mod:`hybridpose.representations` applies to events.

Everything here is a pure function or a frozen dataclass, except :class:`WindowDataset`, which
keeps a small per-process cache of open recordings (nothing is opened by its constructor
besides indexing, so it is safe to hand to DataLoader workers).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, TypeVar

import numpy as np
import numpy.typing as npt
import torch
from torch.utils.data import Dataset

from hybridpose.atomic import atomic_write
from hybridpose.errors import HybridPoseError
from hybridpose.geometry import project
from hybridpose.io.recording import Labels, Recording, read_meta
from hybridpose.metrics import joint_mask_2d
from hybridpose.representations import (
    Crop,
    binned_histograms,
    frame_size,
    stacked_histogram,
)

FloatArray = npt.NDArray[np.float64]
Float32Array = npt.NDArray[np.float32]
BoolArray = npt.NDArray[np.bool_]
Item = dict[str, torch.Tensor]
T = TypeVar("T")

TIME_FIRST_KEYS = ("bins", "joints3d", "joints2d", "heatmaps", "valid", "label_t_us")
"""Keys that :func:`collate_windows` stacks time-first, ``(T, B, ...)``."""

BATCH_FIRST_KEYS = ("frame", "next_frame", "camera", "t0_us")
"""Keys that :func:`collate_windows` stacks batch-first, ``(B, ...)``."""

_MAX_OPEN = 16
"""Recordings a :class:`WindowDataset` keeps open per process (about 1 MB each)."""

LabelsAt = Literal["bins", "start"]
"""Where a window's labels are: at each SNN bin's end, or once at ``t0`` (the ANN's target)."""


class DataError(HybridPoseError, ValueError):
    """A window configuration or a data argument is invalid."""


def _is_int(value: object) -> bool:
    return isinstance(value, int | np.integer) and not isinstance(value, bool | np.bool_)


@dataclass(frozen=True)
class WindowConfig:
    """How windows are cut from recordings (defaults follow the paper).

    Attributes:
        ann_events: events in the ANN frame (the last ones before ``t0``).
        ann_bins: time bins of the ANN frame (it has ``2 * ann_bins`` channels).
        bin_us: SNN bin length in microseconds.
        steps: SNN bins per window.
        stride_us: window grid: ``t0`` is a multiple of ``stride_us``.
        crop: optional ``(x0, y0, width, height)`` in sensor pixels.
        downsample: integer downsampling factor after the crop.
        sigma_px: heatmap Gaussian sigma in model-input (output) pixels.
        cameras: camera indices to cut windows from (those a file lacks are skipped).
    """

    ann_events: int = 7500
    ann_bins: int = 10
    bin_us: int = 10_000
    steps: int = 10
    stride_us: int = 100_000
    crop: tuple[int, int, int, int] | None = None
    downsample: int = 1
    sigma_px: float = 2.0
    cameras: tuple[int, ...] = (2, 3)

    def __post_init__(self) -> None:
        for name in ("ann_events", "ann_bins", "bin_us", "steps", "stride_us", "downsample"):
            value = getattr(self, name)
            if not _is_int(value) or value < 1:
                raise DataError(f"{name} must be an integer >= 1, got {value!r}")
        if self.crop is not None:
            crop = self.crop
            if (
                not isinstance(crop, tuple)
                or len(crop) != 4
                or not all(_is_int(v) for v in crop)
                or crop[0] < 0
                or crop[1] < 0
                or crop[2] < 1
                or crop[3] < 1
            ):
                raise DataError(
                    f"crop must be (x0, y0, width, height) with x0, y0 >= 0 and a positive "
                    f"size, got {crop!r}"
                )
        sigma = self.sigma_px
        if isinstance(sigma, bool) or not isinstance(sigma, int | float) or not sigma > 0:
            raise DataError(f"sigma_px must be a positive number, got {sigma!r}")
        if not math.isfinite(float(sigma)):
            raise DataError(f"sigma_px must be finite, got {sigma!r}")
        cams = self.cameras
        if (
            not isinstance(cams, tuple)
            or not cams
            or not all(_is_int(c) and c >= 0 for c in cams)
            or len(set(cams)) != len(cams)
        ):
            raise DataError(
                f"cameras must be a non-empty tuple of distinct indices >= 0, got {cams!r}"
            )

    @property
    def window_us(self) -> int:
        """Span of the SNN bins of one window, ``steps * bin_us``."""
        return self.steps * self.bin_us

    def bin_edges(self, t0_us: int) -> npt.NDArray[np.int64]:
        """Edges ``(steps + 1,)`` of the SNN bins of the window at ``t0_us``."""
        return np.int64(t0_us) + np.arange(self.steps + 1, dtype=np.int64) * self.bin_us

    def label_times(self, t0_us: int) -> npt.NDArray[np.int64]:
        """Label times ``(steps,)``: the end of each SNN bin of the window at ``t0_us``."""
        return self.bin_edges(t0_us)[1:]


# ----------------------------------------------------------------------------- labels


def interpolate_joints(
    labels_t_us: npt.ArrayLike, joints_mm: npt.ArrayLike, t_us: npt.ArrayLike
) -> FloatArray:
    """Linear interpolation of 3D joint labels at arbitrary times.

    At a label time the label itself is returned (its neighbour is not used). Between two label
    times the result is NaN wherever either neighbour is NaN; outside ``[t[0], t[-1]]`` it is NaN.

    Args:
        labels_t_us: label times, strictly increasing, microseconds.
        joints_mm: joints at those times, NaN = missing.
        t_us: query times in microseconds.

    Returns:
        float64 joints at the query times.

    Shape:
        labels_t_us (N,), joints_mm (N, J, 3), t_us (K,) -> (K, J, 3)

    Raises:
        DataError: on inconsistent shapes.
    """
    lt = np.asarray(labels_t_us, dtype=np.float64)
    joints = np.asarray(joints_mm, dtype=np.float64)
    t = np.asarray(t_us, dtype=np.float64)
    if lt.ndim != 1 or joints.ndim != 3 or joints.shape[0] != len(lt) or joints.shape[2] != 3:
        raise DataError(
            f"labels need t (N,) and joints (N, J, 3); got t {lt.shape}, joints {joints.shape}"
        )
    if t.ndim != 1:
        raise DataError(f"t_us must be 1-D, got shape {t.shape}")
    n, n_joints = len(lt), joints.shape[1]
    out = np.full((len(t), n_joints, 3), np.nan)
    if n == 0 or len(t) == 0:
        return out
    inside = (t >= lt[0]) & (t <= lt[-1])
    if n == 1:
        out[inside] = joints[0]
        return out
    i = np.clip(np.searchsorted(lt, t, side="right") - 1, 0, n - 2)
    w = (t - lt[i]) / (lt[i + 1] - lt[i])
    left, right = joints[i], joints[i + 1]
    ww = w[:, None, None]
    blend = (1.0 - ww) * left + ww * right
    blend = np.where(ww == 0.0, left, np.where(ww == 1.0, right, blend))
    out[inside] = blend[inside]
    return out


# ----------------------------------------------------------------------------- pixels


def crop_origin(crop: Crop | None) -> tuple[int, int]:
    """The sensor pixel ``(x0, y0)`` where a crop starts (``(0, 0)`` without one)."""
    return (0, 0) if crop is None else (int(crop[0]), int(crop[1]))


def _check_uv(uv: npt.ArrayLike, downsample: int) -> FloatArray:
    arr = np.asarray(uv, dtype=np.float64)
    if arr.ndim < 1 or arr.shape[-1] != 2:
        raise DataError(f"uv: expected shape (..., 2), got {arr.shape}")
    if not _is_int(downsample) or downsample < 1:
        raise DataError(f"downsample must be an integer >= 1, got {downsample!r}")
    return arr


def to_model_pixels(uv: npt.ArrayLike, crop: Crop | None = None, downsample: int = 1) -> FloatArray:
    """Sensor pixel coordinates to the cropped, downsampled model input.

    ``u' = (u - x0 + 0.5) / d - 0.5`` and ``v' = (v - y0 + 0.5) / d - 0.5``: pixel squares map
    onto pixel squares, so sensor pixels ``x0 .. x0 + d - 1`` (centres) land symmetrically
    around model pixel 0. NaN stays NaN.

    Shape:
        (..., 2) -> (..., 2)
    """
    arr = _check_uv(uv, downsample)
    origin = np.asarray(crop_origin(crop), dtype=np.float64)
    result: FloatArray = (arr - origin + 0.5) / downsample - 0.5
    return result


def to_sensor_pixels(
    uv: npt.ArrayLike, crop: Crop | None = None, downsample: int = 1
) -> FloatArray:
    """Inverse of :func:`to_model_pixels`: ``u = (u' + 0.5) * d - 0.5 + x0``.

    Shape:
        (..., 2) -> (..., 2)
    """
    arr = _check_uv(uv, downsample)
    origin = np.asarray(crop_origin(crop), dtype=np.float64)
    result: FloatArray = (arr + 0.5) * downsample - 0.5 + origin
    return result


def gaussian_heatmaps(uv: npt.ArrayLike, size: tuple[int, int], sigma: float) -> Float32Array:
    """Gaussian target heatmaps, one per joint, peak-normalised.

    ``heatmap[..., j, y, x] = exp(-((x - u_j)^2 + (y - v_j)^2) / (2 sigma^2))``: exactly 1 at a
    joint on a pixel centre; for a sub-pixel joint the maximum is below 1 and the weighted
    centroid of the map is the joint. Joints with a NaN coordinate or outside the image
    (:func:`hybridpose.metrics.joint_mask_2d`, ``rule="image"``) give all-zero maps.

    Args:
        uv: joint pixel coordinates ``(u, v)`` in the heatmap's pixels.
        size: ``(height, width)`` of the maps.
        sigma: Gaussian standard deviation in pixels (> 0).

    Shape:
        uv (..., J, 2) -> (..., J, H, W) float32
    """
    arr = np.asarray(uv, dtype=np.float64)
    if arr.ndim < 2 or arr.shape[-1] != 2:
        raise DataError(f"uv: expected shape (..., J, 2), got {arr.shape}")
    if len(size) != 2 or not all(_is_int(s) and s > 0 for s in size):
        raise DataError(f"size must be (height, width) with positive integers, got {size!r}")
    if not float(sigma) > 0 or not math.isfinite(float(sigma)):
        raise DataError(f"sigma must be a positive finite number, got {sigma!r}")
    height, width = int(size[0]), int(size[1])
    inside = joint_mask_2d(arr, (width, height), rule="image")
    safe = np.where(inside[..., None], arr, 0.0)
    scale = -0.5 / (float(sigma) ** 2)
    gx = np.exp(scale * (np.arange(width) - safe[..., 0:1]) ** 2)  # (..., J, W)
    gy = np.exp(scale * (np.arange(height) - safe[..., 1:2]) ** 2)  # (..., J, H)
    gx *= inside[..., None]
    maps: Float32Array = (gy[..., :, None] * gx[..., None, :]).astype(np.float32)
    return maps


def project_labels(
    P: npt.ArrayLike, joints3d: npt.ArrayLike, config: WindowConfig, size: tuple[int, int]
) -> tuple[FloatArray, BoolArray]:
    """3D labels seen by one camera in model-input pixels, and which joints count.

    Args:
        P: the camera's (3, 4) projection matrix.
        joints3d: joints in world mm (NaN = missing).
        config: the crop and downsampling.
        size: ``(width, height)`` of the model input.

    Returns:
        ``joints2d`` (projected, then :func:`to_model_pixels`; NaN where the projection is
        undefined) and ``valid`` (finite and inside the model image,
        :func:`hybridpose.metrics.joint_mask_2d` with ``rule="image"``).

    Shape:
        joints3d (..., J, 3) -> joints2d (..., J, 2), valid (..., J)
    """
    joints2d = to_model_pixels(project(P, joints3d), config.crop, config.downsample)
    return joints2d, joint_mask_2d(joints2d, size, rule="image")


# ----------------------------------------------------------------------------- index


@dataclass(frozen=True)
class WindowIndex:
    """One window: a camera of a recording file and the window start ``t0_us``."""

    path: str
    camera: int
    t0_us: int


def _label_range_ok(labels: Labels, config: WindowConfig, t0_us: int) -> bool:
    times = config.label_times(t0_us)
    if len(labels.t_us) == 0 or times[0] < labels.t_us[0] or times[-1] > labels.t_us[-1]:
        return False
    joints = interpolate_joints(labels.t_us, labels.joints_mm, times)
    return bool(np.any(np.all(np.isfinite(joints), axis=-1)))


def _recording_windows(rec: Recording, path: str, config: WindowConfig) -> list[WindowIndex]:
    labels = rec.labels()
    if len(labels.t_us) == 0:
        return []
    last_end = int(labels.t_us[-1])
    out: list[WindowIndex] = []
    for cam in config.cameras:
        if cam >= len(rec.cameras):
            continue
        n = rec.cameras[cam].num_events
        if n < config.ann_events:
            continue
        t_needed = int(rec.events_slice(cam, config.ann_events - 1, config.ann_events)["t"][0])
        # first grid point strictly after the ann_events-th event
        k = (t_needed + 1 + config.stride_us - 1) // config.stride_us
        t0 = k * config.stride_us
        while t0 + config.window_us <= last_end:
            if _label_range_ok(labels, config, t0):
                out.append(WindowIndex(path, cam, t0))
            t0 += config.stride_us
    return out


def index_windows(
    paths: Sequence[str | os.PathLike[str]], config: WindowConfig
) -> list[WindowIndex]:
    """All windows of the given recordings, in file, camera, time order.

    For each recording and each camera of ``config.cameras`` that the file has, ``t0`` runs
    over the multiples of ``stride_us`` (so the cameras of one recording share ``t0``), starting
    at the first one with at least ``ann_events`` events of that camera before it (``t < t0``).
    A window is kept when all ``steps`` bin-end label times lie within the label range and the
    interpolated 3D labels at those times have at least one finite joint (at any step).

    Returns:
        The windows; a file without labels or a camera with too few events gives none.
    """
    out: list[WindowIndex] = []
    for p in paths:
        path = str(p)
        with Recording(path) as rec:
            out.extend(_recording_windows(rec, path, config))
    return out


def index_windows_cached(
    paths: Sequence[str | os.PathLike[str]], config: WindowConfig, cache_dir: str | os.PathLike[str]
) -> list[WindowIndex]:
    """:func:`index_windows`, kept in ``cache_dir`` for the next call with the same files.

    Indexing reads every file's labels and event positions (tens of seconds for a dataset);
    training stages and evaluations of one run index the same files again and again. The
    cache file's name is a hash of the window settings and of every file's path, size and
    modification time, so a changed file or setting makes a new index, never a stale one.
    """
    names = [str(p) for p in paths]
    files_key = []
    for name in names:
        st = Path(name).stat()
        files_key.append([str(Path(name).resolve()), st.st_size, st.st_mtime_ns])
    key = {"config": dataclasses.asdict(config), "files": files_key}
    digest = hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:20]
    cache = Path(cache_dir) / f".windows-{digest}.npz"
    if cache.exists():
        try:
            with np.load(cache) as data:
                files, cams, t0s = data["recording"], data["camera"], data["t0_us"]
            return [
                WindowIndex(names[int(f)], int(c), int(t))
                for f, c, t in zip(files, cams, t0s, strict=True)
            ]
        except (OSError, ValueError, KeyError, IndexError):
            pass  # unreadable cache: index again
    windows = index_windows(names, config)
    position = {name: i for i, name in enumerate(names)}
    with atomic_write(cache) as f:
        np.savez(
            f,
            recording=np.array([position[w.path] for w in windows], dtype=np.int32),
            camera=np.array([w.camera for w in windows], dtype=np.int32),
            t0_us=np.array([w.t0_us for w in windows], dtype=np.int64),
        )
    return windows


def shuffled(windows: Sequence[T], seed: int, epoch: int) -> list[T]:
    """A deterministic permutation of ``windows`` for ``(seed, epoch)``."""
    rng = np.random.default_rng([int(seed) & 0xFFFFFFFF, int(epoch) & 0xFFFFFFFF])
    order = rng.permutation(len(windows))
    return [windows[int(i)] for i in order]


def shuffled_by_file(
    windows: Sequence[WindowIndex], seed: int, epoch: int, files_per_group: int = 16
) -> list[WindowIndex]:
    """A deterministic permutation of ``windows`` that visits a few files at a time.

    The files are shuffled and cut into groups of ``files_per_group``; the windows of each
    group are shuffled among themselves and the groups follow each other. A reader that keeps
    ``files_per_group`` recordings open (:class:`WindowDataset` keeps ``_MAX_OPEN``) then opens
    each file once per epoch instead of at nearly every window, while a batch still mixes
    windows of many recordings, subjects and movements. One global shuffle is
    :func:`shuffled`.
    """
    if files_per_group < 1:
        raise DataError(f"files_per_group must be >= 1, got {files_per_group}")
    rng = np.random.default_rng([int(seed) & 0xFFFFFFFF, int(epoch) & 0xFFFFFFFF, 1])
    by_file: dict[str, list[WindowIndex]] = {}
    for win in windows:
        by_file.setdefault(win.path, []).append(win)
    files = [list(by_file)[int(i)] for i in rng.permutation(len(by_file))]
    out: list[WindowIndex] = []
    for g in range(0, len(files), files_per_group):
        group = [w for f in files[g : g + files_per_group] for w in by_file[f]]
        out.extend(group[int(i)] for i in rng.permutation(len(group)))
    return out


def split_by_subject(paths: Sequence[str | os.PathLike[str]], subjects: Sequence[int]) -> list[str]:
    """The recordings whose subject (file metadata) is one of ``subjects``, in input order.

    Raises:
        DataError: if a file does not record its subject.
    """
    wanted = {int(s) for s in subjects}
    out: list[str] = []
    for p in paths:
        subject = read_meta(p).subject
        if subject is None:
            raise DataError(f"{p}: the recording does not say which subject it shows")
        if subject in wanted:
            out.append(str(p))
    return out


def recording_files(data_dir: Path) -> list[Path]:
    """The recording files (``*.h5``, not hidden temporaries) of a data directory, sorted by
    name; empty when it holds none.

    Raises:
        FileNotFoundError: the directory does not exist.
    """
    if not data_dir.is_dir():
        raise FileNotFoundError(f"{data_dir}: no such data directory")
    return sorted(p for p in data_dir.glob("*.h5") if not p.name.startswith("."))


# ----------------------------------------------------------------------------- dataset


def ann_frame(rec: Recording, camera: int, t_us: int, config: WindowConfig) -> Float32Array:
    """The ANN input at ``t_us``: a stacked histogram of the last ``ann_events`` events of
    ``camera`` with ``t < t_us`` (fewer near the start of the recording), cropped and
    downsampled as ``config`` says.

    Shape:
        -> (2 * ann_bins, H, W) float32
    """
    before = rec.events_before(camera, int(t_us), config.ann_events)
    frame: Float32Array = stacked_histogram(
        before, rec.sensor_size, config.ann_bins, crop=config.crop, downsample=config.downsample
    ).astype(np.float32, copy=False)
    return frame


def ann_frames(
    rec: Recording, camera: int, times_us: npt.ArrayLike, config: WindowConfig
) -> Float32Array:
    """:func:`ann_frame` at each of the ascending ``times_us``, from one read of the file (the
    events from ``ann_events`` before the first time to the last): equal to calling it per
    time, which reads the file once per frame.

    Shape:
        times (E,) -> (E, 2 * ann_bins, H, W) float32
    """
    t = np.asarray(times_us, dtype=np.int64)
    if len(t) == 0:
        raise DataError("ann_frames: no times")
    if np.any(np.diff(t) < 0):
        raise DataError("ann_frames: the times must be ascending")
    events = np.concatenate(
        [
            rec.events_before(camera, int(t[0]), config.ann_events),
            rec.events(camera, int(t[0]), int(t[-1])),
        ]
    )
    ends = np.searchsorted(events["t"], t, side="left")
    n = config.ann_events
    frames = [
        stacked_histogram(
            events[max(0, end - n) : end],
            rec.sensor_size,
            config.ann_bins,
            crop=config.crop,
            downsample=config.downsample,
        )
        for end in ends
    ]
    out: Float32Array = np.stack(frames).astype(np.float32, copy=False)
    return out


def snn_bins(
    rec: Recording, camera: int, edges: npt.ArrayLike, config: WindowConfig
) -> Float32Array:
    """The SNN input: per bin ``[edges[k], edges[k + 1])`` of ``camera``, the two-polarity
    event counts, cropped and downsampled as ``config`` says.

    Shape:
        edges (T + 1,) -> (T, 2, H, W) float32
    """
    e = np.asarray(edges, dtype=np.int64)
    during = rec.events(camera, int(e[0]), int(e[-1]))
    bins: Float32Array = binned_histograms(
        during, rec.sensor_size, e, crop=config.crop, downsample=config.downsample
    ).astype(np.float32, copy=False)
    return bins


@dataclass(frozen=True, eq=False)
class _Open:
    recording: Recording
    labels: Labels


class WindowDataset(Dataset[Item]):
    """Windows of recording files as dicts of tensors (see :meth:`__getitem__`).

    Args:
        paths: recording files.
        config: how windows are cut.
        windows: precomputed :func:`index_windows` result (computed from ``paths`` if None).
        labels_at: ``"bins"`` (the default): labels at each SNN bin's end, ``steps`` of them;
            ``"start"``: one label at ``t0``, where the ANN frame ends (the ANN's own target).
        with_bins: include the SNN bins (``bins``); the ANN stage does without.
        with_next_frame: include ``next_frame``, the ANN frame at the window's end
            (``t0 + steps * bin_us``), which the hybrid's state-consistency loss needs.

    Recordings are opened lazily in the process that reads them, and at most a few stay open
    (the cache is dropped on pickling and after a fork), so the dataset is safe with
    DataLoader workers.
    """

    def __init__(
        self,
        paths: Sequence[str | os.PathLike[str]],
        config: WindowConfig,
        windows: Sequence[WindowIndex] | None = None,
        *,
        labels_at: LabelsAt = "bins",
        with_bins: bool = True,
        with_next_frame: bool = False,
    ) -> None:
        if labels_at not in ("bins", "start"):
            raise DataError(f"labels_at must be 'bins' or 'start', got {labels_at!r}")
        self.paths = [str(p) for p in paths]
        self.config = config
        self.labels_at: LabelsAt = labels_at
        self.with_bins = with_bins
        self.with_next_frame = with_next_frame
        self.windows: list[WindowIndex] = (
            list(windows) if windows is not None else index_windows(self.paths, config)
        )
        self._open: dict[str, _Open] = {}
        self._pid = os.getpid()

    def __len__(self) -> int:
        return len(self.windows)

    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        state["_open"] = {}
        return state

    def __setstate__(self, state: Mapping[str, Any]) -> None:
        self.__dict__.update(state)
        self._pid = os.getpid()

    def close(self) -> None:
        """Close the recordings this process opened."""
        for entry in self._open.values():
            entry.recording.close()
        self._open.clear()

    def _recording(self, path: str) -> _Open:
        if self._pid != os.getpid():  # forked: the parent's handles are not ours
            self._open = {}
            self._pid = os.getpid()
        entry = self._open.pop(path, None)
        if entry is None:
            rec = Recording(path)
            entry = _Open(rec, rec.labels())
            while len(self._open) >= _MAX_OPEN:
                oldest = next(iter(self._open))
                self._open.pop(oldest).recording.close()
        self._open[path] = entry  # most recently used last
        return entry

    def __getitem__(self, index: int) -> Item:
        """The window ``index`` as tensors.

        Returns:
            ``frame`` (2 * ann_bins, H, W) float32; ``bins`` (steps, 2, H, W) float32 (with
            ``with_bins``); ``next_frame`` like ``frame`` (with ``with_next_frame``); labels at
            ``L`` times (``L = steps`` at the bin ends, or ``L = 1`` at ``t0``, by
            ``labels_at``): ``label_t_us`` (L,) int64, ``joints3d`` (L, J, 3) float32 mm,
            ``joints2d`` (L, J, 2) float32 model-input pixels (NaN where the projection is
            undefined; joints off the image keep their coordinates), ``heatmaps`` (L, J, H, W)
            float32, ``valid`` (L, J) bool (finite and inside the model image); ``camera`` and
            ``t0_us`` 0-d int64. ``(W, H)`` is :func:`hybridpose.representations.frame_size`.
        """
        win = self.windows[index]
        cfg = self.config
        entry = self._recording(win.path)
        rec = entry.recording
        width, height = frame_size(rec.sensor_size, cfg.crop, cfg.downsample)
        edges = cfg.bin_edges(win.t0_us)
        times = edges[1:] if self.labels_at == "bins" else edges[:1]
        joints3d = interpolate_joints(entry.labels.t_us, entry.labels.joints_mm, times)
        P = rec.cameras[win.camera].calibration.P
        joints2d, valid = project_labels(P, joints3d, cfg, (width, height))
        heatmaps = gaussian_heatmaps(joints2d, (height, width), cfg.sigma_px)
        item: Item = {"frame": torch.from_numpy(ann_frame(rec, win.camera, win.t0_us, cfg))}
        if self.with_bins:
            item["bins"] = torch.from_numpy(snn_bins(rec, win.camera, edges, cfg))
        if self.with_next_frame:
            item["next_frame"] = torch.from_numpy(ann_frame(rec, win.camera, int(edges[-1]), cfg))
        item.update(
            label_t_us=torch.from_numpy(times.astype(np.int64)),
            joints3d=torch.from_numpy(joints3d.astype(np.float32)),
            joints2d=torch.from_numpy(joints2d.astype(np.float32)),
            heatmaps=torch.from_numpy(heatmaps),
            valid=torch.from_numpy(valid),
            camera=torch.tensor(win.camera, dtype=torch.int64),
            t0_us=torch.tensor(win.t0_us, dtype=torch.int64),
        )
        return item


def collate_windows(items: Sequence[Mapping[str, torch.Tensor]]) -> Item:
    """Stack :class:`WindowDataset` items into a batch.

    The keys of :data:`TIME_FIRST_KEYS` become time-first ``(T, B, ...)`` (the project's
    tensor convention);
    ``frame`` and ``next_frame`` are ``(B, C, H, W)``; ``camera`` and ``t0_us`` are ``(B,)``.
    Other keys are stacked batch-first.
    """
    if not items:
        raise DataError("collate_windows needs at least one item")
    out: Item = {}
    for key in items[0]:
        values = [item[key] for item in items]
        out[key] = torch.stack(values, dim=1 if key in TIME_FIRST_KEYS else 0)
    return out


__all__ = [
    "BATCH_FIRST_KEYS",
    "TIME_FIRST_KEYS",
    "DataError",
    "WindowConfig",
    "WindowDataset",
    "WindowIndex",
    "ann_frame",
    "ann_frames",
    "collate_windows",
    "crop_origin",
    "gaussian_heatmaps",
    "index_windows",
    "index_windows_cached",
    "interpolate_joints",
    "project_labels",
    "recording_files",
    "shuffled",
    "shuffled_by_file",
    "snn_bins",
    "split_by_subject",
    "to_model_pixels",
    "to_sensor_pixels",
]
