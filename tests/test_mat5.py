"""Tests of the bounds-checked MATLAB level-5 reader and of the writer (hybridpose.io.mat5).

The files are written by scipy's savemat, by the fixture's independent byte builder
(``mat5_bytes_by_hand``) and by our writer, itself checked byte by byte against hand-made files
and read back by scipy's loadmat; the fuzz test damages them to check that the reader never
crashes.
"""

from __future__ import annotations

import re
import struct
import tempfile
from pathlib import Path

import numpy as np
import numpy.typing as npt
import pytest
from dhp19_fixture import JOINTS, mat5_bytes_by_hand, skeleton, write_vicon_mat
from fuzzing import FUZZ, flip_bits
from hypothesis import given
from hypothesis import strategies as st

from hybridpose.io import mat5
from hybridpose.io.dhp19 import Dhp19Error, read_vicon_mat
from hybridpose.io.mat5 import (
    MAT_HEADER_TEXT,
    MatFileError,
    MatValue,
    mat5_bytes,
    read_mat5_struct,
    write_mat5,
    write_mat5_struct,
)


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


# ------------------------------------------------------------------------------ the writer
def test_writer_matches_the_hand_made_file_byte_for_byte() -> None:
    # the fixture's independent byte builder, with doubles: the same elements, padding and
    # small-element tags as the writer; only the 116-byte header text differs
    joints = skeleton(6, 2)
    fields: dict[str, npt.NDArray[np.generic]] = {n: joints[:, j] for j, n in enumerate(JOINTS)}
    ours = mat5_bytes({"XYZPOS": fields})
    hand = mat5_bytes_by_hand(fields, data_type="f8")
    assert ours[116:] == hand[116:]
    assert ours[:116].startswith(MAT_HEADER_TEXT) and ours[126:128] == b"IM"


def test_writer_small_struct_by_hand() -> None:
    # a 1x1 struct "s" with one field "a" = 1.0, every element written out by hand
    got = mat5_bytes({"s": {"a": 1.0}})
    tag = struct.Struct("<II").pack
    field = tag(6, 8) + struct.pack("<II", 6, 0)  # flags: double
    field += tag(5, 8) + struct.pack("<ii", 1, 1)  # dims 1x1
    field += tag(1, 0)  # empty name (8 bytes, as MATLAB writes it)
    field += tag(9, 8) + struct.pack("<d", 1.0)
    body = tag(6, 8) + struct.pack("<II", 2, 0)  # flags: struct
    body += tag(5, 8) + struct.pack("<ii", 1, 1)
    body += struct.pack("<I", (1 << 16) | 1) + b"s\0\0\0"  # small element: the name "s"
    body += struct.pack("<I", (4 << 16) | 5) + struct.pack("<i", 32)  # field name width
    body += tag(1, 32) + b"a".ljust(32, b"\0")
    body += tag(14, len(field)) + field
    assert got[128:] == tag(14, len(body)) + body
    assert got[124:128] == b"\x00\x01IM"


def test_writer_round_trips_through_scipy_and_our_reader(tmp_path: Path) -> None:
    from scipy.io import loadmat

    joints = skeleton(9, 1)
    joints[4, 2] = np.nan
    fields = {name: joints[:, j] for j, name in enumerate(JOINTS)}
    variables: dict[str, MatValue] = {
        "a": np.arange(6, dtype=np.int16).reshape(2, 3),
        "s": {"x": 1.5, "t": "h\u00e9llo", "inner": {"v": [1, 2, 3]}},
        "XYZPOS": fields,
    }
    for compress in (False, True):
        path = write_mat5(tmp_path / f"v{compress}.mat", variables, compress=compress)
        theirs = loadmat(str(path))
        np.testing.assert_array_equal(theirs["a"], np.arange(6).reshape(2, 3))
        s = theirs["s"][0, 0]
        assert s["t"][0] == "h\u00e9llo" and s["x"][0, 0] == 1.5
        np.testing.assert_array_equal(s["inner"][0, 0]["v"], [[1, 2, 3]])  # a vector is a row
        xyzpos = theirs["XYZPOS"][0, 0]
        for name, value in fields.items():
            np.testing.assert_array_equal(xyzpos[name], value)
        ours = read_mat5_struct(path, "XYZPOS")
        for name, value in fields.items():
            np.testing.assert_array_equal(ours[name], value)
        assert read_mat5_struct(path, "s")["t"] == "char"
    assert not list(tmp_path.glob(".*.tmp"))


def test_write_mat5_struct_is_the_inverse_of_read_mat5_struct(tmp_path: Path) -> None:
    fields = {"p": np.arange(12.0).reshape(4, 3), "q": np.full((2, 5), np.nan)}
    path = write_mat5_struct(tmp_path / "x.mat", "Q", fields)
    got = read_mat5_struct(path, "Q")
    assert list(got) == ["p", "q"]
    for name, value in fields.items():
        np.testing.assert_array_equal(got[name], value)
    assert write_mat5_struct(tmp_path / "y.mat", "Q", fields).read_bytes() == path.read_bytes()


@pytest.mark.parametrize(
    ("variables", "message"),
    [
        ({"v": np.ones(2) * 1j}, "only real numbers, text and structs are written, got complex"),
        ({"v": np.array([True])}, "only real numbers, text and structs are written, got bool"),
        ({"v": np.array([1, "a"], dtype=object)}, "got object"),
        ({"1v": 1.0}, "variable '1v': a MAT-file name is"),
        ({"_v": 1.0}, "variable '_v': a MAT-file name is"),
        ({"v": {"bad name": 1.0}}, "v: field 'bad name': a MAT-file name is"),
        ({"v" * 64: 1.0}, "a MAT-file name is 1-63 ASCII letters"),
        ({"v": "\U0001f600"}, "characters beyond U\\+FFFF cannot be stored"),
    ],
)
def test_writer_refuses_what_it_cannot_write(
    tmp_path: Path, variables: dict[str, MatValue], message: str
) -> None:
    with pytest.raises(MatFileError, match=message):
        write_mat5(tmp_path / "x.mat", variables)
    assert not list(tmp_path.iterdir())
