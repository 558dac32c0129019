"""A small, bounds-checked reader of MATLAB level-5 MAT-files (MATLAB -v6 and the default -v7).

It reads what a struct of numeric fields needs (:func:`read_mat5_struct`) and nothing more:
compressed (v7) and uncompressed variables, both byte orders and numeric data stored with any
MAT numeric type. The format is MathWorks' "MAT-File Format", level 5.

Why not ``scipy.io.loadmat``: it crashes the whole process (segmentation fault) on some damaged
files; our fuzz tests found such files with scipy 1.17.1 (e.g. a field matrix whose empty name
was given a length of 64). A batch conversion must survive one damaged file and go on with the
others, which a crashed process cannot do. Here every length is checked against the bytes
present, so damaged input raises :class:`MatFileError` naming the file, never a crash or an
allocation larger than the file (a compressed variable may inflate to at most 256 MiB).
"""

from __future__ import annotations

import struct
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import numpy.typing as npt

from hybridpose.errors import HybridPoseError

F64Array = npt.NDArray[np.float64]


class MatFileError(HybridPoseError, ValueError):
    """A MAT-file is unreadable, not level 5, damaged, or lacks the variable asked for."""


_MI_NUMERIC = {1: "i1", 2: "u1", 3: "i2", 4: "u2", 5: "i4", 6: "u4", 7: "f4", 9: "f8"}
_MI_NUMERIC |= {12: "i8", 13: "u8"}
_MI_INT8, _MI_INT32, _MI_UINT32, _MI_MATRIX, _MI_COMPRESSED = 1, 5, 6, 14, 15
_MX_CLASSES = {1: "cell", 2: "struct", 3: "object", 4: "char", 5: "sparse", 6: "double"}
_MX_CLASSES |= {7: "single", 8: "int8", 9: "uint8", 10: "int16", 11: "uint16", 12: "int32"}
_MX_CLASSES |= {13: "uint32", 14: "int64", 15: "uint64", 16: "function handle", 17: "opaque"}
_MX_STRUCT = 2
_MX_NUMERIC = range(6, 16)
_MAT_HEADER_BYTES = 128
_MAX_INFLATED_BYTES = 1 << 28  # structs read here are a few MB; more is a zip bomb or garbage


@dataclass(frozen=True)
class _MatMatrix:
    """The header of one miMATRIX element and the data elements that follow it."""

    mx_class: int
    is_complex: bool
    dims: tuple[int, ...]
    name: str
    rest: list[tuple[int, memoryview]]


def _mat_elements(data: memoryview, order: str, where: str) -> list[tuple[int, memoryview]]:
    """Split a run of data elements into ``(type, payload)``; checks every length."""
    elements = []
    pos = 0
    while pos < len(data):
        if len(data) - pos < 8:
            raise MatFileError(f"{where}: truncated data element tag at byte {pos}")
        first, second = struct.unpack_from(order + "II", data, pos)
        if first >> 16:  # small element: size and type share the first word, data the second
            size, mi_type = first >> 16, first & 0xFFFF
            if size > 4:
                raise MatFileError(f"{where}: small data element of {size} bytes at byte {pos}")
            elements.append((mi_type, data[pos + 4 : pos + 4 + size]))
            pos += 8
            continue
        mi_type, size = first, second
        end = pos + 8 + size
        if end > len(data):
            raise MatFileError(
                f"{where}: data element of {size} bytes at byte {pos} runs past the end"
            )
        elements.append((mi_type, data[pos + 8 : end]))
        # compressed elements are not padded; all others are, to a multiple of 8 bytes
        pos = end if mi_type == _MI_COMPRESSED else pos + 8 + -(-size // 8) * 8
    return elements


def _mat_matrix(data: memoryview, order: str, where: str) -> _MatMatrix:
    """Parse the array flags, dimensions and name of an miMATRIX payload."""
    if len(data) == 0:  # MATLAB writes [] as an empty miMATRIX
        return _MatMatrix(6, False, (0, 0), "", [])
    elements = _mat_elements(data, order, where)
    if len(elements) < 3:
        raise MatFileError(f"{where}: matrix without flags, dimensions and name")
    (flags_type, flags), (dims_type, dims), (name_type, name) = elements[:3]
    if flags_type != _MI_UINT32 or len(flags) != 8:
        raise MatFileError(f"{where}: bad array flags")
    if dims_type != _MI_INT32 or len(dims) % 4 or len(dims) < 8:
        raise MatFileError(f"{where}: bad array dimensions")
    if name_type != _MI_INT8:
        raise MatFileError(f"{where}: bad array name")
    word = struct.unpack_from(order + "I", flags)[0]
    shape = struct.unpack(order + f"{len(dims) // 4}i", dims)
    if min(shape) < 0:
        raise MatFileError(f"{where}: negative array dimension {shape}")
    return _MatMatrix(
        mx_class=word & 0xFF,
        is_complex=bool(word & 0x800),
        dims=tuple(shape),
        name=bytes(name).decode("ascii", errors="replace"),
        rest=elements[3:],
    )


def _mat_numeric(matrix: _MatMatrix, order: str, where: str) -> F64Array | str:
    """The real array of a numeric matrix, or the name of what it is instead."""
    if matrix.mx_class not in _MX_NUMERIC:
        return _MX_CLASSES.get(matrix.mx_class, f"class-{matrix.mx_class}")
    if matrix.is_complex:
        return "complex"
    count = int(np.prod(matrix.dims, dtype=object))
    if count == 0:
        return np.zeros(matrix.dims)
    if not matrix.rest:
        raise MatFileError(f"{where}: numeric matrix {matrix.name!r} without data")
    mi_type, payload = matrix.rest[0]
    code = _MI_NUMERIC.get(mi_type)
    # MATLAB may store a double array with a smaller integer type: the class stays double
    if code is None or len(payload) != count * np.dtype(code).itemsize:
        raise MatFileError(
            f"{where}: data of matrix {matrix.name!r} ({len(payload)} bytes of type {mi_type}) "
            f"does not fit its dimensions {matrix.dims}"
        )
    values = np.frombuffer(payload, dtype=np.dtype(order + code), count=count)
    return values.astype(np.float64).reshape(matrix.dims, order="F")


def _inflate(data: memoryview, where: str) -> memoryview:
    inflater = zlib.decompressobj()
    try:
        out = inflater.decompress(data, _MAX_INFLATED_BYTES)
    except zlib.error as err:
        raise MatFileError(f"{where}: corrupt compressed variable ({err})") from None
    if inflater.unconsumed_tail:
        raise MatFileError(f"{where}: compressed variable inflates beyond {_MAX_INFLATED_BYTES} B")
    return memoryview(out)


def read_mat5_struct(path: Path, name: str) -> dict[str, F64Array | str]:
    """Read the fields of the 1x1 struct ``name`` of a level-5 MAT-file (MATLAB -v6/-v7).

    Compressed (v7) and uncompressed variables, both byte orders and numeric data stored with
    any MAT numeric type are read; other variables are skipped.

    Args:
        path: the ``.mat`` file.
        name: the struct variable to read.

    Returns:
        Field name -> its value as a float64 array of the stored dimensions (column-major
        data reshaped), or, for a field that is not a real numeric array, a word saying what
        it is (``"char"``, ``"cell"``, ``"complex"``, ...).

    Raises:
        MatFileError: the file is unreadable, not a level-5 MAT-file, damaged, has no struct
            ``name`` or that struct is not 1x1.
    """
    path = Path(path)
    try:
        raw = path.read_bytes()
    except OSError as err:
        raise MatFileError(f"{path}: cannot read ({err.strerror or err})") from None
    where = f"{path}: not a readable MATLAB 5 file"
    if len(raw) < _MAT_HEADER_BYTES:
        raise MatFileError(f"{where} (shorter than the 128-byte header)")
    indicator = raw[126:128]
    if indicator not in (b"IM", b"MI"):
        raise MatFileError(f"{where} (no endian indicator; a MATLAB 4 file or not a MAT-file)")
    order = "<" if indicator == b"IM" else ">"
    version = struct.unpack_from(order + "H", raw, 124)[0]
    if version != 0x0100:
        hint = " (MATLAB 7.3 / HDF5: re-save it with -v7)" if version == 0x0200 else ""
        raise MatFileError(f"{where} (MAT-file version {version:#06x}{hint})")
    data = memoryview(raw)[_MAT_HEADER_BYTES:]
    for mi_type, payload in _mat_elements(data, order, where):
        if mi_type == _MI_COMPRESSED:
            inner = _mat_elements(_inflate(payload, where), order, where)
            if len(inner) != 1:
                raise MatFileError(f"{where} (compressed variable holds {len(inner)} elements)")
            mi_type, payload = inner[0]
        if mi_type != _MI_MATRIX:
            continue
        matrix = _mat_matrix(payload, order, where)
        if matrix.name == name:
            return _mat_struct_fields(matrix, order, where, path, name)
    raise MatFileError(f"{path}: no 1x1 struct {name!r} in the file")


def _mat_struct_fields(
    matrix: _MatMatrix, order: str, where: str, path: Path, name: str
) -> dict[str, F64Array | str]:
    if matrix.mx_class != _MX_STRUCT:
        kind = _MX_CLASSES.get(matrix.mx_class, f"class-{matrix.mx_class}")
        raise MatFileError(f"{path}: {name} is a {kind} array, not a 1x1 struct")
    if int(np.prod(matrix.dims, dtype=object)) != 1:
        raise MatFileError(f"{path}: {name} is a struct array of size {matrix.dims}, not 1x1")
    if len(matrix.rest) < 2:
        raise MatFileError(f"{where} (struct {name} without field names)")
    (len_type, len_data), (names_type, names) = matrix.rest[:2]
    if len_type != _MI_INT32 or len(len_data) != 4 or names_type != _MI_INT8:
        raise MatFileError(f"{where} (bad field names of struct {name})")
    width = struct.unpack(order + "i", len_data)[0]
    if width <= 0 or len(names) % width:
        raise MatFileError(f"{where} (field name length {width} of struct {name})")
    field_names = [
        bytes(names[i : i + width]).split(b"\0", 1)[0].decode("ascii", errors="replace")
        for i in range(0, len(names), width)
    ]
    values = matrix.rest[2:]
    if len(values) != len(field_names):
        raise MatFileError(
            f"{where} (struct {name} names {len(field_names)} fields but holds {len(values)})"
        )
    fields: dict[str, F64Array | str] = {}
    for field, (mi_type, payload) in zip(field_names, values, strict=True):
        if mi_type != _MI_MATRIX:
            raise MatFileError(f"{where} (field {name}.{field} is not a matrix)")
        fields[field] = _mat_numeric(_mat_matrix(payload, order, where), order, where)
    return fields


__all__ = ["MatFileError", "read_mat5_struct"]
