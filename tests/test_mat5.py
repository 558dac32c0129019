"""Tests of the bounds-checked MATLAB level-5 reader (hybridpose.io.mat5).

The files are written by scipy's savemat and by the independent fake DHP19
(tests/dhp19_fixture.py); the fuzz test damages them to check that the reader never crashes.
"""

from __future__ import annotations

import re
import tempfile
from pathlib import Path

import numpy as np
import pytest
from dhp19_fixture import skeleton, write_vicon_mat
from fuzzing import FUZZ, flip_bits
from hypothesis import given
from hypothesis import strategies as st

from hybridpose.io import mat5
from hybridpose.io.dhp19 import Dhp19Error, read_vicon_mat
from hybridpose.io.mat5 import MatFileError, read_mat5_struct


def valid_mat_bytes() -> bytes:
    with tempfile.TemporaryDirectory() as d:
        return write_vicon_mat(Path(d) / "v.mat", skeleton(4, 1)).read_bytes()


VALID_MAT = valid_mat_bytes()


def test_mat_struct_reader_describes_odd_fields(tmp_path: Path) -> None:
    fields = {
        "cplx": np.ones((2, 3)) * 1j,
        "empty": np.zeros((0, 0)),
        "cells": np.array([1, "a"], dtype=object),
    }
    path = tmp_path / "odd.mat"
    from scipy.io import savemat

    savemat(str(path), {"S": fields, "N": np.ones(3)})
    got = read_mat5_struct(path, "S")
    assert got["cplx"] == "complex" and got["cells"] == "cell"
    assert isinstance(got["empty"], np.ndarray) and got["empty"].shape == (0, 0)
    with pytest.raises(MatFileError, match=r"odd\.mat: N is a double array, not a 1x1 struct"):
        read_mat5_struct(path, "N")
    with pytest.raises(MatFileError, match=r"odd\.mat: no 1x1 struct 'M' in the file"):
        read_mat5_struct(path, "M")
    savemat(str(path), {"S": np.array([[(1.0,), (2.0,)]], dtype=[("x", object)])})
    with pytest.raises(MatFileError, match=r"S is a struct array of size \(1, 2\), not 1x1"):
        read_mat5_struct(path, "S")


def test_mat_versions_and_bombs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = write_vicon_mat(tmp_path / "v.mat", skeleton(50, 1), compress=True)
    data = bytearray(path.read_bytes())
    data[124:126] = b"\x00\x02"  # version 0x0200, little-endian: MATLAB 7.3 (HDF5)
    (tmp_path / "v73.mat").write_bytes(bytes(data))
    with pytest.raises(MatFileError, match=r"v73\.mat: .*version 0x0200 \(MATLAB 7\.3"):
        read_mat5_struct(tmp_path / "v73.mat", "XYZPOS")
    (tmp_path / "v4.mat").write_bytes(b"\0" * 200)
    with pytest.raises(MatFileError, match="no endian indicator"):
        read_mat5_struct(tmp_path / "v4.mat", "XYZPOS")
    monkeypatch.setattr(mat5, "_MAX_INFLATED_BYTES", 1000)
    with pytest.raises(MatFileError, match="inflates beyond 1000 B"):
        read_mat5_struct(path, "XYZPOS")


def test_damaged_field_name_length_that_crashes_scipy(tmp_path: Path) -> None:
    # scipy 1.17's loadmat dies with a segmentation fault on this file (a field matrix whose
    # empty name was given a length of 64): the reason hybridpose.io.mat5 exists
    data = bytearray(VALID_MAT)
    dims_then_name = b"\x03\x00\x00\x00\x01\x00\x00\x00\x00\x00\x00\x00"
    second = data.index(dims_then_name, data.index(dims_then_name) + 1)
    data[second + 8] = 0x40
    path = tmp_path / "crash.mat"
    path.write_bytes(bytes(data))
    with pytest.raises(MatFileError, match=r"crash\.mat: not a readable MATLAB 5 file"):
        read_mat5_struct(path, "XYZPOS")


@FUZZ
@given(
    st.integers(0, len(VALID_MAT)),
    st.lists(st.integers(0, 8 * len(VALID_MAT)), max_size=3),
    st.binary(max_size=100),
)
def test_read_mat5_struct_on_damaged_files(cut: int, flips: list[int], junk: bytes) -> None:
    # the reader raises MatFileError or returns sane fields; read_vicon_mat on top of it raises
    # the same MatFileError, a Dhp19Error about the struct's content, or returns valid joints
    with tempfile.TemporaryDirectory() as d:
        for data in (flip_bits(VALID_MAT, flips), VALID_MAT[:cut], junk):
            path = Path(d) / "v.mat"
            path.write_bytes(data)
            try:
                fields = read_mat5_struct(path, "XYZPOS")
            except MatFileError as err:
                assert "v.mat" in str(err)
                with pytest.raises(MatFileError, match=re.escape(str(err))):
                    read_vicon_mat(path)
                continue
            for value in fields.values():
                assert isinstance(value, str) or (
                    isinstance(value, np.ndarray) and value.dtype == np.float64
                )
            try:
                joints = read_vicon_mat(path)
            except Dhp19Error as err:
                assert "v.mat" in str(err)
            else:
                assert joints.ndim == 3 and joints.shape[1:] == (13, 3) and len(joints) > 0
