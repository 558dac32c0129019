"""DHP19's calibration (``P_matrices/``) and the output cameras made from it; and the inverse,
``P_matrices/`` written from cameras in our pixel frame.

The pixel flip and the camera mapping are steps 5 and 8 of :mod:`hybridpose.io.dhp19`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from hybridpose.atomic import atomic_write
from hybridpose.errors import first_line
from hybridpose.io.dhp19.common import CAMERA_TO_MATRIX, Dhp19Error, F64Array
from hybridpose.io.recording import CameraCalibration

FLIP_A = np.array([[1.0, 0.0, 0.0], [0.0, -1.0, 260.0], [0.0, 0.0, 1.0]])
"""Pixel transform from DHP19's projection frame to ours: ``v -> 260 - v``, ``u`` unchanged."""


@dataclass(frozen=True, eq=False)
class PMatrices:
    """The DHP19 calibration as shipped: raw matrices and camera centres.

    Attributes:
        P: (4, 3, 4) ``P[m - 1]`` is the content of ``P{m}.npy`` (DHP19's pixel frame).
        centers: (4, 3) ``centers[m - 1]`` is the centre of camera ``P{m}`` in world mm.
    """

    P: F64Array
    centers: F64Array


def _load_small_npy(path: Path, shape: tuple[int, ...]) -> F64Array:
    """Load a finite real array of exactly ``shape``, checking the header before reading."""
    if not path.is_file():
        raise Dhp19Error(f"{path}: no such file")
    try:
        with path.open("rb") as f:
            version = np.lib.format.read_magic(f)
            if version == (1, 0):
                found, fortran, dtype = np.lib.format.read_array_header_1_0(f)
            else:
                found, fortran, dtype = np.lib.format.read_array_header_2_0(f)
            if tuple(found) != shape or dtype.kind not in "iuf":
                raise Dhp19Error(
                    f"{path}: holds a {dtype} array of shape {tuple(found)}, expected a real "
                    f"array of shape {shape}"
                )
            count = int(np.prod(shape))
            data = np.fromfile(f, dtype=dtype, count=count)
    except Dhp19Error:
        raise
    except Exception as err:  # numpy's header parser raises several kinds on malformed input
        raise Dhp19Error(f"{path}: not a readable .npy file ({first_line(err)})") from None
    if len(data) != count:
        raise Dhp19Error(f"{path}: truncated .npy file ({len(data)} of {count} values)")
    array = data.reshape(shape, order="F" if fortran else "C").astype(np.float64)
    if not np.all(np.isfinite(array)):
        raise Dhp19Error(f"{path}: holds non-finite values")
    return array


def read_p_matrices(p_dir: Path) -> PMatrices:
    """Read ``P1.npy`` .. ``P4.npy`` and ``camera_positions.npy`` from DHP19's ``P_matrices``.

    Args:
        p_dir: the ``P_matrices`` folder.

    Returns:
        The raw calibration (see :class:`PMatrices`).

    Raises:
        Dhp19Error: the folder or a file is missing, not a .npy file, of the wrong shape, holds
            non-finite values, or a matrix is singular (``det(P[:, :3]) == 0``) or so large
            that it overflows.
    """
    p_dir = Path(p_dir)
    if not p_dir.is_dir():
        raise Dhp19Error(f"{p_dir}: no P_matrices folder")
    matrices = []
    for m in range(1, 5):
        path = p_dir / f"P{m}.npy"
        P = _load_small_npy(path, (3, 4))
        with np.errstate(all="ignore"):  # overflow is reported below, as bad input
            det = np.linalg.det(P[:, :3])
            flipped = FLIP_A @ P
        if det == 0.0 or not np.isfinite(det) or not np.all(np.isfinite(flipped)):
            raise Dhp19Error(
                f"{path}: singular or overflowing projection matrix (det of P[:, :3] is {det:g})"
            )
        matrices.append(P)
    centers = _load_small_npy(p_dir / "camera_positions.npy", (4, 3))
    return PMatrices(P=np.stack(matrices), centers=centers)


def dhp19_cameras(p: PMatrices, joints: F64Array | None = None) -> list[CameraCalibration]:
    """The calibration of the four output cameras, in event-camera-id order, in our pixel frame.

    Camera ``c`` uses ``P{m}.npy`` with ``m = CAMERA_TO_MATRIX[c]``; its stored matrix is
    ``s * FLIP_A @ P_raw`` (see :mod:`hybridpose.io.dhp19`) and its centre row ``m - 1`` of the
    positions. The sign ``s`` makes the labelled body lie in front of the camera (``w > 0``, the
    project's convention): it is the sign of the median ``w`` of the valid label points. Without
    valid labels it falls back to ``sign(det(P_raw[:, :3]))``, which is right for a raw matrix
    whose own image frame is not mirrored (the usual output of a calibration).

    Args:
        p: the matrices and centres of ``P_matrices/``.
        joints: (N, 13, 3) Vicon labels in mm (NaN = missing), used only for the sign.
    """
    points = np.zeros((0, 3)) if joints is None else joints.reshape(-1, 3)
    points = points[np.all(np.isfinite(points), axis=1)]
    cameras = []
    for c, m in enumerate(CAMERA_TO_MATRIX):
        flipped = FLIP_A @ p.P[m - 1]
        w = points @ flipped[2, :3] + flipped[2, 3]
        median_w = float(np.median(w)) if len(w) else 0.0
        if median_w != 0.0:
            sign = 1.0 if median_w > 0 else -1.0
        else:
            sign = 1.0 if np.linalg.det(p.P[m - 1][:, :3]) > 0 else -1.0
        cameras.append(
            CameraCalibration(P=sign * flipped, center=p.centers[m - 1], name=f"dhp19-cam{c}-P{m}")
        )
    return cameras


def write_p_matrices(p_dir: Path, cameras: Sequence[CameraCalibration]) -> Path:
    """Write DHP19's ``P1.npy`` .. ``P4.npy`` and ``camera_positions.npy`` for four cameras.

    The inverse of :func:`read_p_matrices` followed by :func:`dhp19_cameras`: camera ``c``
    (event camera id ``c``, our pixel frame) goes to ``P{m}.npy``, ``m = CAMERA_TO_MATRIX[c]``,
    as ``FLIP_A @ P`` (DHP19's frame; ``FLIP_A`` is its own inverse), and its centre to row
    ``m - 1`` of the positions. :func:`dhp19_cameras` gives ``P`` back (up to rounding) when the
    labelled body lies in front of the camera (``w > 0``, the project's convention). Each file
    is written atomically (float64, as ``numpy.save`` writes it).

    Args:
        p_dir: the ``P_matrices`` folder to write (created if needed).
        cameras: the four cameras in event-camera-id order.

    Returns:
        ``p_dir``.

    Raises:
        Dhp19Error: not four cameras, or a centre that is not finite.
        OSError: a file cannot be written.
    """
    p_dir = Path(p_dir)
    if len(cameras) != len(CAMERA_TO_MATRIX):
        raise Dhp19Error(f"DHP19 has {len(CAMERA_TO_MATRIX)} cameras, got {len(cameras)}")
    matrices = np.zeros((len(cameras), 3, 4))
    positions = np.zeros((len(cameras), 3))
    for c, m in enumerate(CAMERA_TO_MATRIX):
        if not np.all(np.isfinite(cameras[c].center)):
            raise Dhp19Error(f"camera {c}: its centre must be finite, got {cameras[c].center}")
        matrices[m - 1] = FLIP_A @ cameras[c].P
        positions[m - 1] = cameras[c].center
    for m, P in enumerate(matrices, start=1):
        _save_npy(p_dir / f"P{m}.npy", P)
    _save_npy(p_dir / "camera_positions.npy", positions)
    return p_dir


def _save_npy(path: Path, array: F64Array) -> None:
    with atomic_write(path) as f:
        np.save(f, np.ascontiguousarray(array, dtype=np.float64))
