"""DHP19's Vicon labels: the 3D joints of one recording (step 7 of the converter).

See :mod:`hybridpose.io.dhp19`.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from hybridpose.io.dhp19.common import Dhp19Error, F64Array
from hybridpose.io.mat5 import read_mat5_struct
from hybridpose.joints import JOINT_NAMES

MAX_COORDINATE_MM = 1e6
"""A Vicon coordinate farther than 1 km from the origin is corrupt, not a pose."""


def read_vicon_mat(path: Path) -> F64Array:
    """Read the 3D joints of a DHP19 Vicon file (MATLAB 5 / v7 MAT-file, struct ``XYZPOS``).

    The file is parsed by :func:`~hybridpose.io.mat5.read_mat5_struct`, not ``scipy.io.loadmat``:
    scipy's reader crashes the whole process (segmentation fault) on some damaged files, and
    one damaged recording must not stop a batch conversion.

    Args:
        path: ``Vicon_data/S{s}_{n}_{k}.mat``.

    Returns:
        Joints in millimetres in DHP19 joint order (:data:`JOINT_NAMES`), NaN where missing.

    Shape:
        ``(N, 13, 3)``, N = number of samples at 100 Hz (at least 1).

    Raises:
        Dhp19Error: missing file, a missing joint field, a field that is not a real (N, 3)
            array, fields of different lengths, coordinates beyond :data:`MAX_COORDINATE_MM`
            (infinite or corrupt) or no samples.
        MatFileError: the file is unreadable, not a readable MATLAB 5 file, damaged, or has no
            1x1 struct ``XYZPOS`` (see :func:`~hybridpose.io.mat5.read_mat5_struct`).
    """
    path = Path(path)
    if not path.is_file():
        raise Dhp19Error(f"{path}: no such Vicon file")
    fields = read_mat5_struct(path, "XYZPOS")
    joints = []
    for joint in JOINT_NAMES:
        if joint not in fields:
            raise Dhp19Error(f"{path}: XYZPOS has no field {joint!r}")
        value = fields[joint]
        if isinstance(value, str) or value.ndim != 2 or value.shape[1] != 3:
            got = f"a {value} array" if isinstance(value, str) else f"shape {value.shape}"
            raise Dhp19Error(f"{path}: XYZPOS.{joint} must be a real (N, 3) array, got {got}")
        joints.append(value)
    lengths = {len(j) for j in joints}
    if len(lengths) != 1:
        raise Dhp19Error(f"{path}: XYZPOS fields differ in length ({sorted(lengths)})")
    out = np.stack(joints, axis=1)
    if len(out) == 0:
        raise Dhp19Error(f"{path}: XYZPOS has no samples")
    too_far = np.abs(out) > MAX_COORDINATE_MM  # NaN compares False: missing stays allowed
    if np.any(too_far):
        j = int(np.argwhere(too_far)[0][1])
        raise Dhp19Error(
            f"{path}: XYZPOS.{JOINT_NAMES[j]} holds a coordinate beyond {MAX_COORDINATE_MM:g} mm "
            "(infinite or corrupt)"
        )
    return out
