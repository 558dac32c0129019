"""Tests of hybridpose.atomic: all-or-nothing replacement, cleanup, permissions, umask."""

from __future__ import annotations

import os
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest

from hybridpose.atomic import atomic_write, umask, write_text_atomic


@pytest.fixture
def restore_umask() -> Iterator[None]:
    previous = os.umask(0o022)
    os.umask(previous)
    yield
    os.umask(previous)


def test_replaces_only_when_the_block_succeeds(tmp_path: Path) -> None:
    path = tmp_path / "data.bin"
    path.write_bytes(b"old")
    with atomic_write(path) as f:
        f.write(b"new content")
        assert path.read_bytes() == b"old"  # a reader sees the old file meanwhile
        (temp,) = [p for p in tmp_path.iterdir() if p != path]
        assert temp.name.startswith(".data.bin.") and temp.name.endswith(".tmp")
    assert path.read_bytes() == b"new content"
    assert sorted(tmp_path.iterdir()) == [path]


def test_an_exception_keeps_the_old_file_and_removes_the_temp(tmp_path: Path) -> None:
    path = tmp_path / "data.bin"
    path.write_bytes(b"old")
    with pytest.raises(ZeroDivisionError), atomic_write(path) as f:
        f.write(b"half of the new")
        _ = 1 / 0
    assert path.read_bytes() == b"old"
    assert sorted(tmp_path.iterdir()) == [path]
    # KeyboardInterrupt (not an Exception) too; and a new file is not created at all
    fresh = tmp_path / "fresh.txt"
    with pytest.raises(KeyboardInterrupt), atomic_write(fresh) as f:
        f.write(b"x")
        raise KeyboardInterrupt
    assert sorted(tmp_path.iterdir()) == [path]


def test_creates_the_parent_directory(tmp_path: Path) -> None:
    path = tmp_path / "a" / "b" / "c.txt"
    write_text_atomic(path, "deep")
    assert path.read_text() == "deep"


@pytest.mark.parametrize("mask", [0o022, 0o027, 0o077, 0o002])
def test_new_files_get_0666_less_the_umask(tmp_path: Path, restore_umask: None, mask: int) -> None:
    os.umask(mask)
    path = tmp_path / "new.txt"
    with atomic_write(path) as f:
        f.write(b"x")
    assert stat.S_IMODE(path.stat().st_mode) == 0o666 & ~mask
    write_text_atomic(tmp_path / "text.txt", "y")
    assert stat.S_IMODE((tmp_path / "text.txt").stat().st_mode) == 0o666 & ~mask


def test_write_text_atomic_round_trip(tmp_path: Path) -> None:
    path = tmp_path / "text.csv"
    text = "epoch,loss\n0,0.5\nµ ∑ 日本 \U0001f600\r\nno newline at the end"
    write_text_atomic(path, text)
    assert path.read_bytes() == text.encode("utf-8")
    write_text_atomic(path, "")
    assert path.read_bytes() == b""


@pytest.mark.parametrize("mask", [0o022, 0o077, 0o000, 0o137])
def test_umask_reads_the_real_umask(restore_umask: None, mask: int) -> None:
    os.umask(mask)
    assert umask() == mask
    assert umask() == mask  # reading does not change it
    assert os.umask(mask) == mask
