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

The writer (:func:`write_mat5`, :func:`write_mat5_struct`) writes what the reader reads, as
MATLAB -v6 (or, compressed, -v7) does: real numeric arrays stored as double, char arrays and
1x1 structs of those, little-endian, atomically. Its output depends only on its input (no
creation date in the header), so the same data always gives the same bytes.
"""

from __future__ import annotations

import struct
import zlib
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TypeAlias

import numpy as np
import numpy.typing as npt

from hybridpose.atomic import atomic_write
from hybridpose.errors import HybridPoseError

F64Array = npt.NDArray[np.float64]


class MatFileError(HybridPoseError, ValueError):
    """A MAT-file is unreadable, not level 5, damaged, or lacks the variable asked for; or a
    value cannot be written as a MAT-file variable."""


_MI_NUMERIC = {1: "i1", 2: "u1", 3: "i2", 4: "u2", 5: "i4", 6: "u4", 7: "f4", 9: "f8"}
_MI_NUMERIC |= {12: "i8", 13: "u8"}
_MI_INT8, _MI_INT32, _MI_UINT32, _MI_MATRIX, _MI_COMPRESSED = 1, 5, 6, 14, 15
_MI_DOUBLE, _MI_UTF16 = 9, 17
_MX_CLASSES = {1: "cell", 2: "struct", 3: "object", 4: "char", 5: "sparse", 6: "double"}
_MX_CLASSES |= {7: "single", 8: "int8", 9: "uint8", 10: "int16", 11: "uint16", 12: "int32"}
_MX_CLASSES |= {13: "uint32", 14: "int64", 15: "uint64", 16: "function handle", 17: "opaque"}
_MX_STRUCT, _MX_CHAR, _MX_DOUBLE = 2, 4, 6
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


# ------------------------------------------------------------------------------ writing
MatValue: TypeAlias = "npt.ArrayLike | str | Mapping[str, MatValue]"
"""What :func:`write_mat5` writes: a real numeric array (stored as double), a string (a char
row) or a mapping of field names to such values (a 1x1 struct)."""

MAT_HEADER_TEXT = b"MATLAB 5.0 MAT-file, written by hybridpose"
"""The descriptive text at the start of every file written here (padded to 116 bytes)."""
_MAX_NAME_LENGTH = 63  # MATLAB's namelengthmax


def _element(mi_type: int, payload: bytes) -> bytes:
    """One little-endian data element: the small format for 1-4 bytes, else tag, data, padding."""
    if 0 < len(payload) <= 4:
        return struct.pack("<I", (len(payload) << 16) | mi_type) + payload.ljust(4, b"\0")
    return struct.pack("<II", mi_type, len(payload)) + payload + b"\0" * (-len(payload) % 8)


def _check_name(name: str, what: str) -> bytes:
    data = name.encode("ascii", errors="replace")
    if not (
        0 < len(data) <= _MAX_NAME_LENGTH
        and name.isascii()
        and name.isidentifier()
        and not name.startswith("_")
    ):
        raise MatFileError(
            f"{what} {name!r}: a MAT-file name is 1-{_MAX_NAME_LENGTH} ASCII letters, digits "
            "and underscores, starting with a letter"
        )
    return data


def _matrix(name: bytes, value: MatValue, where: str) -> bytes:
    """The miMATRIX element of one value (``name`` empty for a struct field)."""
    if isinstance(value, str):
        codes = [ord(c) for c in value]
        if any(c > 0xFFFF for c in codes):
            raise MatFileError(f"{where}: characters beyond U+FFFF cannot be stored")
        body = _element(_MI_UTF16, struct.pack(f"<{len(codes)}H", *codes))
        return _matrix_element(_MX_CHAR, (1, len(codes)), name, body)
    if isinstance(value, Mapping):
        fields = [(_check_name(str(k), f"{where}: field"), v) for k, v in value.items()]
        width = max([32, *(len(f) + 1 for f, _ in fields)])
        body = _element(_MI_INT32, struct.pack("<i", width))
        body += _element(_MI_INT8, b"".join(f.ljust(width, b"\0") for f, _ in fields))
        for field, v in fields:
            body += _matrix(b"", v, f"{where}.{field.decode()}")
        return _matrix_element(_MX_STRUCT, (1, 1), name, body)
    array = np.asarray(value)
    if array.dtype.kind not in "iuf":
        raise MatFileError(
            f"{where}: only real numbers, text and structs are written, got {array.dtype}"
        )
    if array.ndim < 2:  # MATLAB has no 1-D arrays: a scalar is 1x1, a vector a row
        array = array.reshape(1, -1)
    data = np.asarray(array, dtype="<f8").tobytes(order="F")
    return _matrix_element(_MX_DOUBLE, array.shape, name, _element(_MI_DOUBLE, data))


def _matrix_element(mx_class: int, dims: tuple[int, ...], name: bytes, body: bytes) -> bytes:
    flags = _element(_MI_UINT32, struct.pack("<II", mx_class, 0))
    shape = _element(_MI_INT32, struct.pack(f"<{len(dims)}i", *dims))
    return _element(_MI_MATRIX, flags + shape + _element(_MI_INT8, name) + body)


def mat5_bytes(variables: Mapping[str, MatValue], *, compress: bool = False) -> bytes:
    """A whole level-5 MAT-file in memory, little-endian (what :func:`write_mat5` writes).

    Args:
        variables: variable name -> value, written in this order (see :data:`MatValue`).
        compress: store each variable zlib-compressed (MATLAB -v7), else plain (-v6).

    Returns:
        The file's bytes: a 128-byte header (:data:`MAT_HEADER_TEXT`, version 0x0100, ``IM``)
        and one element per variable.

    Raises:
        MatFileError: a name that MATLAB would not accept, or a value that is not a real
            numeric array, a string or a mapping of those (complex, object, bool arrays).
    """
    header = MAT_HEADER_TEXT.ljust(116, b" ") + b"\0" * 8 + struct.pack("<H", 0x0100) + b"IM"
    out = [header]
    for name, value in variables.items():
        element = _matrix(_check_name(name, "variable"), value, name)
        if compress:
            packed = zlib.compress(element)
            element = struct.pack("<II", _MI_COMPRESSED, len(packed)) + packed  # not padded
        out.append(element)
    return b"".join(out)


def write_mat5(path: Path, variables: Mapping[str, MatValue], *, compress: bool = False) -> Path:
    """Write a level-5 MAT-file atomically (see :func:`mat5_bytes` for the arguments).

    ``scipy.io.loadmat`` and MATLAB read the file; :func:`read_mat5_struct` reads its structs.

    Returns:
        ``path`` (its folder is created if needed; on an error it is left as it was).

    Raises:
        MatFileError: a value that cannot be written (nothing is written then).
        OSError: the file cannot be written (it names ``path``).
    """
    path = Path(path)
    data = mat5_bytes(variables, compress=compress)
    with atomic_write(path) as f:
        f.write(data)
    return path


def write_mat5_struct(
    path: Path, name: str, fields: Mapping[str, MatValue], *, compress: bool = False
) -> Path:
    """Write one 1x1 struct ``name`` with ``fields`` as a MAT-file (the inverse of
    :func:`read_mat5_struct` for real numeric fields of two or more dimensions, which come back
    as float64 arrays of the same shape).

    Example:
        DHP19's Vicon file of ``joints`` (N, 13, 3)::

            write_mat5_struct(path, "XYZPOS", {n: joints[:, j] for j, n in enumerate(JOINT_NAMES)})
    """
    return write_mat5(path, {name: fields}, compress=compress)


__all__ = [
    "MAT_HEADER_TEXT",
    "MatFileError",
    "MatValue",
    "mat5_bytes",
    "read_mat5_struct",
    "write_mat5",
    "write_mat5_struct",
]
