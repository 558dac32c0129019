"""Read and write the raw records of jAER AEDAT 2.0 files.

An AEDAT 2.0 file is a text header followed by binary records:

* **Header.** Lines that start with ``#`` and end with CR LF; the first must be
  ``#!AER-DAT2.0``. A line is only taken as header if it also is printable ASCII (tab allowed),
  because the binary data may itself begin with the byte ``#``. Lines longer than
  :data:`MAX_HEADER_LINE_BYTES` are binary data, not header.
* **Data.** 8-byte big-endian records: uint32 address, uint32 timestamp in microseconds. A data
  block whose length is not a whole number of records is rejected, not trimmed: it means a
  truncated download (or a header parsed wrongly), and either way the file cannot be trusted.

The reader only splits records; what the address bits mean depends on the camera and the
dataset (for DHP19 see :func:`hybridpose.io.dhp19.decode_addresses`). Every problem with a file
raises :class:`AedatError` naming the file. The writer (:func:`write_aedat2`,
:func:`write_aedat2_chunks`) is its inverse: it writes atomically, so a reader never sees a
half-written file.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from pathlib import Path

import numpy as np
import numpy.typing as npt

from hybridpose.atomic import atomic_write
from hybridpose.errors import HybridPoseError

AEDAT2_MAGIC = b"#!AER-DAT2.0"
"""The first header line of every AEDAT 2.0 file (followed by CR LF)."""
RECORD_BYTES = 8
"""One record: big-endian uint32 address, then uint32 timestamp."""
MAX_HEADER_LINE_BYTES = 1 << 20  # longer '#' "lines" are binary data, not header
DEFAULT_HEADER_LINES = (
    AEDAT2_MAGIC.decode("ascii"),
    "# This is a raw AE data file - do not edit",
    "# Data format is int32 address, int32 timestamp (8 bytes total), repeated for each event",
    "# Timestamps tick is 1 us",
    "# created Thu Jan 01 00:00:00 CET 2019",
)
"""The header :func:`write_aedat2` writes by default: jAER's lines, with a fixed date (so that
the same records always give the same bytes)."""
TIMESTAMP_MODULUS = 1 << 32
"""Timestamps are written modulo 2^32: the 32-bit counter of the camera wraps."""

U32Array = npt.NDArray[np.uint32]


class AedatError(HybridPoseError, ValueError):
    """An AEDAT file is missing, unreadable or malformed; the message names the file."""


def _is_header_line(line: bytes) -> bool:
    if not (line.startswith(b"#") and line.endswith(b"\r\n")):
        return False
    body = line[:-2]
    return all(0x20 <= b <= 0x7E or b == 0x09 for b in body)


def _header_length(path: Path) -> int:
    """Byte length of the AEDAT 2.0 header of ``path`` (checks the magic first line)."""
    length = 0
    first = True
    with path.open("rb") as f:
        while True:
            line = f.readline(MAX_HEADER_LINE_BYTES)
            if first:
                if line.rstrip(b"\r\n") != AEDAT2_MAGIC or not _is_header_line(line):
                    _raise_bad_magic(path, line)
                first = False
            elif not _is_header_line(line):
                return length
            length += len(line)


def _raise_bad_magic(path: Path, line: bytes) -> None:
    found = re.match(rb"#!AER-DAT(\d+\.\d+)", line)
    if found and found.group(1) != b"2.0":
        version = found.group(1).decode()
        raise AedatError(f"{path}: AEDAT {version} file; only AEDAT 2.0 is supported")
    raise AedatError(
        f"{path}: not an AEDAT 2.0 file (the first line must be '#!AER-DAT2.0' ended by CR LF)"
    )


def read_aedat2(path: Path) -> tuple[U32Array, U32Array]:
    """Read the raw records of a jAER AEDAT 2.0 file.

    Args:
        path: the ``.aedat`` file.

    Returns:
        ``(addresses, timestamps)``, both uint32 in file order; timestamps in microseconds,
        still 32-bit (they wrap every 2^32 us; see :func:`hybridpose.io.dhp19.unwrap_timestamps`).

    Shape:
        both ``(N,)``, N = number of 8-byte records after the header.

    Raises:
        AedatError: the file is missing or unreadable, its first line is not ``#!AER-DAT2.0``,
            or its data is not a whole number of 8-byte records (truncated file).
    """
    path = Path(path)
    try:
        if not path.is_file():
            raise AedatError(f"{path}: no such AEDAT file")
        header = _header_length(path)
        size = path.stat().st_size
    except OSError as err:
        raise AedatError(f"{path}: cannot read AEDAT file ({err.strerror or err})") from None
    data_bytes = size - header
    if data_bytes % RECORD_BYTES:
        raise AedatError(
            f"{path}: {data_bytes} data bytes after the {header}-byte header are not a whole "
            f"number of {RECORD_BYTES}-byte records ({data_bytes % RECORD_BYTES} bytes left "
            "over): the file is truncated"
        )
    n = data_bytes // RECORD_BYTES
    if n == 0:
        return np.zeros(0, np.uint32), np.zeros(0, np.uint32)
    try:
        # memmap keeps the big-endian file out of process memory; only the native copies stay
        records = np.memmap(path, dtype=np.dtype(">u4"), mode="r", offset=header, shape=(n, 2))
    except (OSError, ValueError) as err:
        raise AedatError(f"{path}: cannot map AEDAT data ({err})") from None
    addresses = records[:, 0].astype(np.uint32)
    timestamps = records[:, 1].astype(np.uint32)
    del records
    return addresses, timestamps


def read_aedat2_header(path: Path) -> list[str]:
    """The header lines of an AEDAT 2.0 file, without their CR LF (the first is the magic).

    Raises:
        AedatError: the file is missing or unreadable, or its first line is not
            ``#!AER-DAT2.0``.
    """
    path = Path(path)
    try:
        if not path.is_file():
            raise AedatError(f"{path}: no such AEDAT file")
        length = _header_length(path)
        with path.open("rb") as f:
            header = f.read(length)
    except OSError as err:
        raise AedatError(f"{path}: cannot read AEDAT file ({err.strerror or err})") from None
    return header.decode("ascii").split("\r\n")[:-1]


# ------------------------------------------------------------------------------ writing
def aedat2_header(header_lines: Sequence[str] = DEFAULT_HEADER_LINES) -> bytes:
    """The bytes of an AEDAT 2.0 header: each line, then CR LF.

    Args:
        header_lines: the lines without line ends; each must start with ``#`` and be printable
            ASCII (tab allowed), as the reader requires of header lines. The first should be
            :data:`AEDAT2_MAGIC`; that is not enforced, so that tests can write the files the
            reader must refuse.

    Raises:
        AedatError: a line that does not start with ``#`` or is not printable ASCII.
    """
    out = []
    for line in header_lines:
        data = line.encode("ascii", errors="replace")
        if not (line.isascii() and _is_header_line(data + b"\r\n")):
            raise AedatError(
                f"AEDAT header line {line!r}: must start with '#' and be printable ASCII"
            )
        out.append(data + b"\r\n")
    return b"".join(out)


def _checked_u32(values: npt.ArrayLike, what: str, *, wrap: bool) -> npt.NDArray[np.uint32]:
    """``values`` as uint32: whole numbers in ``[0, 2^32)``, or any ``>= 0`` taken modulo 2^32."""
    a = np.asarray(values)
    if a.ndim != 1:
        raise AedatError(f"AEDAT {what} must be one-dimensional, got shape {a.shape}")
    if a.size == 0:
        return np.zeros(0, np.uint32)
    if a.dtype.kind not in "iu":
        raise AedatError(f"AEDAT {what} must be whole numbers, got {a.dtype}")
    if a.min() < 0:
        raise AedatError(f"AEDAT {what} must be >= 0, got {int(a.min())}")
    if not wrap and a.max() >= TIMESTAMP_MODULUS:
        raise AedatError(f"AEDAT {what} must be below 2^32, got {int(a.max())}")
    if wrap and a.dtype.kind == "i":
        a = a % TIMESTAMP_MODULUS
    return a.astype(np.uint32)  # unsigned: the cast keeps the low 32 bits, i.e. modulo 2^32


def aedat2_records(addresses: npt.ArrayLike, timestamps: npt.ArrayLike) -> bytes:
    """The bytes of AEDAT 2.0 records: per record big-endian uint32 address, uint32 timestamp.

    Args:
        addresses: (N,) addresses in ``[0, 2^32)``.
        timestamps: (N,) timestamps in microseconds, ``>= 0``; written modulo 2^32 (the
            camera's 32-bit counter wraps; :func:`hybridpose.io.dhp19.unwrap_timestamps`
            undoes it).

    Returns:
        ``8 * N`` bytes.

    Raises:
        AedatError: the arrays differ in length, are not whole numbers, or hold values out of
            range.

    Example:
        >>> aedat2_records([0x01C05802], [2**32 + 5]).hex()  # the timestamp wraps to 5
        '01c0580200000005'
    """
    a = _checked_u32(addresses, "addresses", wrap=False)
    t = _checked_u32(timestamps, "timestamps", wrap=True)
    if len(a) != len(t):
        raise AedatError(f"{len(a)} AEDAT addresses but {len(t)} timestamps")
    records = np.empty((len(a), 2), dtype=np.dtype(">u4"))
    records[:, 0] = a
    records[:, 1] = t
    return records.tobytes()


def aedat2_bytes(
    addresses: npt.ArrayLike,
    timestamps: npt.ArrayLike,
    header_lines: Sequence[str] = DEFAULT_HEADER_LINES,
) -> bytes:
    """A whole AEDAT 2.0 file in memory: :func:`aedat2_header` then :func:`aedat2_records`."""
    return aedat2_header(header_lines) + aedat2_records(addresses, timestamps)


def write_aedat2_chunks(
    path: Path,
    chunks: Iterable[tuple[npt.ArrayLike, npt.ArrayLike]],
    header_lines: Sequence[str] = DEFAULT_HEADER_LINES,
) -> Path:
    """Write an AEDAT 2.0 file atomically from ``(addresses, timestamps)`` chunks, in order.

    Memory stays bounded by one chunk. The file appears only when every chunk is written (a
    temporary file beside it is renamed into place; see :func:`hybridpose.atomic.atomic_write`);
    on an error, ``path`` is left as it was.

    Args:
        path: the file to write (its folder is created if needed).
        chunks: pairs as taken by :func:`aedat2_records`.
        header_lines: see :func:`aedat2_header`.

    Returns:
        ``path``.

    Raises:
        AedatError: a bad header line or chunk (nothing is written then).
        OSError: the file cannot be written (it names ``path``).
    """
    path = Path(path)
    header = aedat2_header(header_lines)
    with atomic_write(path) as f:
        f.write(header)
        for addresses, timestamps in chunks:
            f.write(aedat2_records(addresses, timestamps))
    return path


def write_aedat2(
    path: Path,
    addresses: npt.ArrayLike,
    timestamps: npt.ArrayLike,
    header_lines: Sequence[str] = DEFAULT_HEADER_LINES,
) -> Path:
    """Write an AEDAT 2.0 file atomically (:func:`write_aedat2_chunks` with one chunk).

    :func:`read_aedat2` gives back ``addresses`` and ``timestamps % 2^32``.
    """
    return write_aedat2_chunks(path, [(addresses, timestamps)], header_lines)


__all__ = [
    "AEDAT2_MAGIC",
    "DEFAULT_HEADER_LINES",
    "MAX_HEADER_LINE_BYTES",
    "RECORD_BYTES",
    "TIMESTAMP_MODULUS",
    "AedatError",
    "aedat2_bytes",
    "aedat2_header",
    "aedat2_records",
    "read_aedat2",
    "read_aedat2_header",
    "write_aedat2",
    "write_aedat2_chunks",
]
