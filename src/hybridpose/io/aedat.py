"""Read the raw records of jAER AEDAT 2.0 files.

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
raises :class:`AedatError` naming the file.
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import numpy.typing as npt

from hybridpose.errors import HybridPoseError

AEDAT2_MAGIC = b"#!AER-DAT2.0"
"""The first header line of every AEDAT 2.0 file (followed by CR LF)."""
RECORD_BYTES = 8
"""One record: big-endian uint32 address, then uint32 timestamp."""
MAX_HEADER_LINE_BYTES = 1 << 20  # longer '#' "lines" are binary data, not header

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


__all__ = [
    "AEDAT2_MAGIC",
    "MAX_HEADER_LINE_BYTES",
    "RECORD_BYTES",
    "AedatError",
    "read_aedat2",
]
