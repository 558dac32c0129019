"""Tests of the jAER AEDAT 2.0 reader (hybridpose.io.aedat) on hand-made and fuzzed files.

The files are written by hybridpose's writer, itself checked against hand-computed bytes here.
"""

from __future__ import annotations

import struct
import tempfile
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from fuzzing import FUZZ, VALID_AEDAT, flip_bits
from hypothesis import given
from hypothesis import strategies as st

from hybridpose.io.aedat import DEFAULT_HEADER_LINES as HEADER_LINES
from hybridpose.io.aedat import (
    AedatError,
    aedat2_bytes,
    aedat2_header,
    aedat2_records,
    read_aedat2,
    read_aedat2_header,
    write_aedat2,
    write_aedat2_chunks,
)

HEADER_BYTES = len(aedat2_bytes([], []))
"""Length of the header of VALID_AEDAT (the writer's default header lines)."""


def test_read_aedat2_returns_the_records_written(tmp_path: Path) -> None:
    addresses = [0x01C05802, 0, 0xFFFFFFFF, 0x80000000]
    times = [0, 1, 4294967295, 123456]
    path = write_aedat2(tmp_path / "a.aedat", addresses, times)
    a, t = read_aedat2(path)
    assert a.dtype == np.uint32 and t.dtype == np.uint32
    assert a.tolist() == addresses and t.tolist() == times


def test_header_of_only_the_magic_line(tmp_path: Path) -> None:
    path = write_aedat2(tmp_path / "a.aedat", [7], [9], header_lines=("#!AER-DAT2.0",))
    a, t = read_aedat2(path)
    assert a.tolist() == [7] and t.tolist() == [9]


def test_header_only_gives_no_records(tmp_path: Path) -> None:
    a, t = read_aedat2(write_aedat2(tmp_path / "a.aedat", [], []))
    assert len(a) == 0 and len(t) == 0


@pytest.mark.parametrize(
    "first_record",
    [
        b"#\x01\r\n" + b"\x00\x00\x00\x05",  # '#', a CR LF, but a non-printable byte before it
        b"#AB\x80\x00\x00\x00\x05",  # printable start, then binary
        b"#\x00\x00\x00\x00\x00\x00\x05",  # no CR LF at all
    ],
)
def test_data_starting_with_hash_is_not_header(tmp_path: Path, first_record: bytes) -> None:
    second = struct.pack(">II", 0x01C05802, 77)
    header = b"".join(line.encode() + b"\r\n" for line in HEADER_LINES)
    path = tmp_path / "a.aedat"
    path.write_bytes(header + first_record + second)
    a, t = read_aedat2(path)
    assert a.tolist() == [struct.unpack(">I", first_record[:4])[0], 0x01C05802]
    assert t.tolist() == [struct.unpack(">I", first_record[4:])[0], 77]


def test_file_without_header_is_rejected(tmp_path: Path) -> None:
    path = tmp_path / "raw.aedat"
    path.write_bytes(struct.pack(">II", 1, 2))
    with pytest.raises(AedatError, match=r"raw\.aedat: not an AEDAT 2\.0 file"):
        read_aedat2(path)


def test_header_without_magic_line_is_rejected(tmp_path: Path) -> None:
    path = write_aedat2(tmp_path / "a.aedat", [1], [2], header_lines=HEADER_LINES[1:])
    with pytest.raises(AedatError, match=r"not an AEDAT 2\.0 file"):
        read_aedat2(path)


def test_magic_line_must_end_in_crlf(tmp_path: Path) -> None:
    path = tmp_path / "a.aedat"
    path.write_bytes(b"#!AER-DAT2.0\n" + struct.pack(">II", 1, 2))
    with pytest.raises(AedatError, match="CR LF"):
        read_aedat2(path)


def test_other_aedat_version_is_named(tmp_path: Path) -> None:
    path = write_aedat2(tmp_path / "a.aedat", [1], [2], header_lines=("#!AER-DAT3.1",))
    with pytest.raises(AedatError, match=r"AEDAT 3\.1 file; only AEDAT 2\.0"):
        read_aedat2(path)


def test_trailing_partial_record_is_an_error(tmp_path: Path) -> None:
    path = tmp_path / "a.aedat"
    path.write_bytes(aedat2_bytes([1, 2], [3, 4])[:-3])
    with pytest.raises(AedatError, match=r"a\.aedat: .*5 bytes left over.*truncated"):
        read_aedat2(path)


def test_missing_aedat_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(AedatError, match=r"nope\.aedat: no such AEDAT file"):
        read_aedat2(tmp_path / "nope.aedat")


# ------------------------------------------------------------------------ property tests
@FUZZ
@given(st.binary(max_size=200), st.booleans())
def test_read_aedat2_on_random_bytes(data: bytes, with_magic: bool) -> None:
    with tempfile.TemporaryDirectory() as d:
        path = Path(d) / "r.aedat"
        path.write_bytes((b"#!AER-DAT2.0\r\n" if with_magic else b"") + data)
        try:
            a, t = read_aedat2(path)
        except AedatError as err:
            assert "r.aedat" in str(err)
        else:
            assert len(a) == len(t) and (path.stat().st_size - 8 * len(a)) >= 14


@FUZZ
@given(st.integers(0, len(VALID_AEDAT)), st.lists(st.integers(0, 8 * len(VALID_AEDAT)), max_size=4))
def test_read_aedat2_on_truncated_and_flipped_files(cut: int, flips: list[int]) -> None:
    with tempfile.TemporaryDirectory() as d:
        path = Path(d) / "r.aedat"
        data = flip_bits(VALID_AEDAT[:cut], flips) if cut else b""
        path.write_bytes(data)
        # the header is intact when it was not cut or flipped and the data after it does not
        # start with '#' (a '#' there may be read as a header line, legitimately); then the
        # file holds exactly the records after the header, or is a truncated one
        header_intact = (
            cut >= HEADER_BYTES
            and data[:HEADER_BYTES] == VALID_AEDAT[:HEADER_BYTES]
            and not data[HEADER_BYTES:].startswith(b"#")
        )
        whole_records = (cut - HEADER_BYTES) % 8 == 0
        try:
            a, t = read_aedat2(path)
        except AedatError as err:
            assert "r.aedat" in str(err)
            assert not (header_intact and whole_records), err
        else:
            assert len(a) == len(t)
            if header_intact:
                assert whole_records and len(a) == (cut - HEADER_BYTES) // 8
                records = np.frombuffer(data[HEADER_BYTES:], dtype=">u4").reshape(-1, 2)
                assert a.tolist() == records[:, 0].tolist()
                assert t.tolist() == records[:, 1].tolist()


def test_fuzz_header_length_by_hand() -> None:
    # the header the fuzz tests assume: the fixture's header lines, each ended by CR LF
    assert sum(len(line) + 2 for line in HEADER_LINES) == HEADER_BYTES
    assert VALID_AEDAT[HEADER_BYTES - 2 : HEADER_BYTES] == b"\r\n"
    assert len(VALID_AEDAT) == HEADER_BYTES + 31 * 8


def test_flip_bits_by_hand() -> None:
    # the shared fuzz helper: bit p of byte p // 8, positions wrapped around the data
    assert flip_bits(b"\x00\x00", [0, 9]) == b"\x01\x02"
    assert flip_bits(b"\x00\x00", [16 + 7]) == b"\x80\x00"
    assert flip_bits(b"\xff", [3, 3]) == b"\xff"


def test_valid_aedat_of_the_fuzz_tests_reads_back(tmp_path: Path) -> None:
    path = tmp_path / "v.aedat"
    path.write_bytes(VALID_AEDAT)
    a, t = read_aedat2(path)
    assert len(a) == 31 and t.tolist() == [*range(1000, 1030), 1000]
    assert a[-1] & (1 << 10)  # the last record is the special event


# ------------------------------------------------------------------------------ the writer
def test_writer_bytes_by_hand() -> None:
    # header lines each ended by CR LF; records big-endian (address, timestamp mod 2^32)
    data = aedat2_bytes([0x01C05802, 0x400], [5, 2**32 + 7], header_lines=("#!AER-DAT2.0",))
    assert data == b"#!AER-DAT2.0\r\n" + bytes.fromhex("01c05802 00000005 00000400 00000007")
    assert aedat2_records(np.array([0xFFFFFFFF], np.uint32), np.array([2**33 - 1])) == (b"\xff" * 8)


def test_writer_and_reader_round_trip_in_chunks(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    addresses = rng.integers(0, 2**32, 1000, dtype=np.uint64)
    times = np.cumsum(rng.integers(0, 2**30, 1000))  # passes 2^32 several times
    chunks = [(addresses[i : i + 300], times[i : i + 300]) for i in range(0, 1000, 300)]
    path = write_aedat2_chunks(tmp_path / "a.aedat", chunks, [*HEADER_LINES, "# more"])
    a, t = read_aedat2(path)
    assert a.tolist() == addresses.tolist()
    assert t.tolist() == (times % 2**32).tolist()
    assert read_aedat2_header(path) == [*HEADER_LINES, "# more"]
    assert path.stat().st_size == len(aedat2_header([*HEADER_LINES, "# more"])) + 8000


@pytest.mark.parametrize(
    ("addresses", "timestamps", "message"),
    [
        ([1, 2], [3], "2 AEDAT addresses but 1 timestamps"),
        ([2**32], [0], r"addresses must be below 2\^32, got 4294967296"),
        ([-1], [0], "addresses must be >= 0, got -1"),
        ([1], [-5], "timestamps must be >= 0, got -5"),
        ([1.5], [0], "addresses must be whole numbers, got float64"),
        ([[1]], [[0]], r"addresses must be one-dimensional, got shape \(1, 1\)"),
    ],
)
def test_writer_refuses_bad_records(
    tmp_path: Path, addresses: list[float], timestamps: list[int], message: str
) -> None:
    path = tmp_path / "a.aedat"
    with pytest.raises(AedatError, match=message):
        write_aedat2(path, addresses, timestamps)
    assert not path.exists() and not list(tmp_path.iterdir())  # no temporary file left


@pytest.mark.parametrize("line", ["no hash", "#tab\tok but\r\n", "# caf\u00e9"])
def test_writer_refuses_header_lines_the_reader_would_not_take(line: str) -> None:
    with pytest.raises(AedatError, match="must start with '#' and be printable ASCII"):
        aedat2_header([*HEADER_LINES, line])


def test_writer_is_atomic(tmp_path: Path) -> None:
    path = write_aedat2(tmp_path / "a.aedat", [1], [2])
    before = path.read_bytes()

    def chunks() -> Iterator[tuple[list[int], list[int]]]:
        yield [3], [4]
        raise RuntimeError("killed while writing")

    with pytest.raises(RuntimeError, match="killed"):
        write_aedat2_chunks(path, chunks())
    assert path.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["a.aedat"]


def test_header_of_a_file_that_is_not_aedat(tmp_path: Path) -> None:
    path = tmp_path / "x.aedat"
    path.write_bytes(b"hello")
    with pytest.raises(AedatError, match=r"x\.aedat: not an AEDAT 2\.0 file"):
        read_aedat2_header(path)
    with pytest.raises(AedatError, match=r"y\.aedat: no such AEDAT file"):
        read_aedat2_header(tmp_path / "y.aedat")
