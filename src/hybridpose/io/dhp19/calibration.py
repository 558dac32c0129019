"""DHP19's calibration (``P_matrices/``) and the output cameras made from it; the check of
``camera_positions.npy`` against the centres of the ``P`` matrices; and the inverse,
``P_matrices/`` written from cameras in our pixel frame.

The pixel flip and the camera mapping are steps 5 and 8 of :mod:`hybridpose.io.dhp19`.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from hybridpose.atomic import atomic_write
from hybridpose.errors import first_line
from hybridpose.io.dhp19.common import (
    CAMERA_POSITION_TOLERANCE_MM,
    CAMERA_TO_MATRIX,
    Dhp19Error,
    F64Array,
)
from hybridpose.io.recording import CameraCalibration

_LOG = logging.getLogger(__name__)

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
            (or nearly singular) that it or its centre overflows.
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
            center = p_matrix_center(P) if det != 0.0 and np.isfinite(det) else P[:, 3] * np.nan
        finite = np.all(np.isfinite(flipped)) and np.all(np.isfinite(center))
        if det == 0.0 or not np.isfinite(det) or not finite:
            raise Dhp19Error(
                f"{path}: singular or overflowing projection matrix (det of P[:, :3] is {det:g})"
            )
        matrices.append(P)
    centers = _load_small_npy(p_dir / "camera_positions.npy", (4, 3))
    return PMatrices(P=np.stack(matrices), centers=centers)


def p_matrix_center(P: F64Array) -> F64Array:
    """The optical centre of a camera read from its 3x4 projection matrix, in world mm.

    The centre ``C`` is the null vector of ``P``: ``P @ [C, 1] = 0``, i.e.
    ``C = -inv(P[:, :3]) @ P[:, 3]``. Scaling ``P`` (by any non-zero factor, negative ones
    included) or flipping its pixels (:data:`FLIP_A`) leaves it unchanged.

    Args:
        P: (3, 4) with ``det(P[:, :3]) != 0`` (:func:`read_p_matrices` checks that).

    Example:
        >>> p_matrix_center(np.array([[1.0, 0, 0, -1], [0, 1, 0, -2], [0, 0, 1, -3]])).tolist()
        [1.0, 2.0, 3.0]
    """
    center: F64Array = -np.linalg.solve(P[:, :3], P[:, 3]).astype(np.float64)
    return center


@dataclass(frozen=True, eq=False)
class CameraPositionCheck:
    """``camera_positions.npy`` against the centres of the ``P`` matrices, per event camera.

    Attributes:
        file: the ``camera_positions.npy`` read.
        p_centers: (4, 3) centre of each event camera's ``P`` (:func:`p_matrix_center`), in
            event-camera-id order, world mm.
        distances_mm: (4,) distance from each event camera's row of ``camera_positions.npy``
            to its ``P`` centre.
        tolerance_mm: the distance above which a camera is warned about.
    """

    file: Path
    p_centers: F64Array
    distances_mm: F64Array
    tolerance_mm: float

    def warnings(self) -> list[str]:
        """One message per camera whose distance exceeds the tolerance, naming file and camera."""
        return [
            f"{self.file}: camera {c} (row {m - 1}, P{m}.npy): its position lies "
            f"{self.distances_mm[c]:.1f} mm from the centre of P{m}.npy (P's null vector), more "
            f"than {self.tolerance_mm:g} mm: rays started at camera_positions.npy (as the "
            "reference's triangulation does) are not the rays of P"
            for c, m in enumerate(CAMERA_TO_MATRIX)
            if self.distances_mm[c] > self.tolerance_mm
        ]

    def metadata(self) -> dict[str, object]:
        """The JSON-serialisable record kept in a converted recording's ``extra``."""
        return {
            "file": self.file.name,
            "distance_to_P_center_mm": [  # to the micrometre
                round(float(d), 3) if np.isfinite(d) else None for d in self.distances_mm
            ],
            "P_center_mm": self.p_centers.tolist(),
            "tolerance_mm": float(self.tolerance_mm),
            "cameras_over_tolerance": [
                int(c) for c in np.flatnonzero(self.distances_mm > self.tolerance_mm)
            ],
        }


def check_camera_positions(
    p: PMatrices, p_dir: Path, tolerance_mm: float = CAMERA_POSITION_TOLERANCE_MM
) -> CameraPositionCheck:
    """Compare each row of ``camera_positions.npy`` with the centre of its ``P`` matrix.

    Camera ``c`` uses ``P{m}.npy`` and row ``m - 1`` of the positions, ``m = CAMERA_TO_MATRIX[c]``
    (the layout :func:`read_p_matrices` reads); the two should be the same point (see
    :data:`~hybridpose.io.dhp19.common.CAMERA_POSITION_TOLERANCE_MM`).

    Args:
        p: the calibration read from ``p_dir``.
        p_dir: the ``P_matrices`` folder, for the messages.
        tolerance_mm: the distance above which :meth:`CameraPositionCheck.warnings` names a
            camera.
    """
    centers = np.stack([p_matrix_center(p.P[m - 1]) for m in CAMERA_TO_MATRIX])
    positions = np.stack([p.centers[m - 1] for m in CAMERA_TO_MATRIX])
    with np.errstate(over="ignore"):  # absurd positions give inf: over any tolerance
        distances = np.linalg.norm(positions - centers, axis=1)
    return CameraPositionCheck(
        file=Path(p_dir) / "camera_positions.npy",
        p_centers=centers,
        distances_mm=distances,
        tolerance_mm=float(tolerance_mm),
    )


def log_camera_position_warnings(check: CameraPositionCheck) -> list[str]:
    """Log :meth:`CameraPositionCheck.warnings` at level WARNING and return them.

    The logger is ``hybridpose.io.dhp19.calibration``; with no logging configured, Python
    prints the messages to stderr. ``hybridpose convert-dhp19`` prints them as
    ``hybridpose convert-dhp19: warning: ...``.
    """
    messages = check.warnings()
    for message in messages:
        _LOG.warning("%s", message)
    return messages


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
