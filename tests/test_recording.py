"""The native recording file: round trip, the ms index, atomic writes, lazy reads, bad files."""

from __future__ import annotations

import io
import os
import re
from pathlib import Path
from typing import Any

import h5py
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from hybridpose.events import EVENT_DTYPE, build_ms_index, make_events
from hybridpose.io.recording import (
    FORMAT_VERSION,
    CameraCalibration,
    Recording,
    RecordingError,
    RecordingMeta,
    RecordingWriter,
    stale_temp_files,
)

SENSOR = (346, 260)


def random_events(n: int, seed: int, duration_us: int = 3_000_000, start_us: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    t = np.sort(rng.integers(start_us, start_us + duration_us, n))
    return make_events(
        rng.integers(0, SENSOR[0], n), rng.integers(0, SENSOR[1], n), t, rng.choice([-1, 1], n)
    )


def cameras(n: int = 2) -> list[CameraCalibration]:
    out = []
    for i in range(n):
        P = np.hstack([np.diag([400.0, 400.0, 1.0]), np.array([[173.0], [130.0], [3500.0 + i]])])
        out.append(CameraCalibration(P, np.array([0.0, 0.0, -3500.0 - i]), f"cam{i}"))
    return out


def write(path: Path, streams: list[np.ndarray], chunk: int = 997, labels: bool = True) -> None:
    meta = RecordingMeta("test", subject=3, session=2, movement=5, extra={"note": "x"})
    with RecordingWriter(path, SENSOR, cameras(len(streams)), meta, chunk_events=256) as w:
        for cam, ev in enumerate(streams):
            for a in range(0, len(ev), chunk):
                w.append_events(cam, ev[a : a + chunk])
        if labels:
            t = np.arange(0, 3_000_000, 10_000)
            joints = np.arange(len(t) * 13 * 3, dtype=np.float32).reshape(len(t), 13, 3)
            joints[5, 2] = np.nan
            w.write_labels(t, joints)


def test_round_trip_events_labels_calibration_meta(tmp_path: Path) -> None:
    ev0, ev1 = random_events(20_000, 0), random_events(5_000, 1, start_us=123_456)
    path = tmp_path / "rec.h5"
    write(path, [ev0, ev1])
    with Recording(path) as rec:
        assert rec.format_version == FORMAT_VERSION
        assert rec.sensor_size == SENSOR
        assert rec.meta == RecordingMeta("test", 3, 2, 5, {"note": "x"})
        assert [c.num_events for c in rec.cameras] == [20_000, 5_000]
        assert rec.cameras[1].t_start_us == int(ev1["t"][0])
        assert rec.cameras[1].t_end_us == int(ev1["t"][-1])
        np.testing.assert_array_equal(rec.cameras[1].calibration.P, cameras()[1].P)
        np.testing.assert_array_equal(rec.cameras[1].calibration.center, cameras()[1].center)
        assert rec.cameras[0].calibration.name == "cam0"
        np.testing.assert_array_equal(rec.events_slice(0, 0, 20_000), ev0)
        np.testing.assert_array_equal(rec.events_slice(1, 0, 5_000), ev1)
        labels = rec.labels()
        assert labels.count == 300 and labels.joints_mm.shape == (300, 13, 3)
        assert np.isnan(labels.joints_mm[5, 2]).all()
        assert labels.joints_mm[0, 0, 1] == 1.0


def test_streamed_ms_index_equals_index_of_whole_stream(tmp_path: Path) -> None:
    ev = random_events(30_000, 2, start_us=7_777)
    # chunks that end exactly on, just before and just after millisecond boundaries
    path = tmp_path / "rec.h5"
    write(path, [ev], chunk=313)
    with Recording(path) as rec:
        streamed = rec.ms_index(0)
    whole = build_ms_index(ev["t"])
    assert streamed.origin_us == whole.origin_us == 7_000
    np.testing.assert_array_equal(streamed.offsets, whole.offsets)


@settings(
    max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(st.lists(st.integers(1, 400), min_size=1, max_size=12), st.integers(0, 10_000))
def test_any_chunking_gives_the_same_index(
    tmp_path: Path, chunk_sizes: list[int], seed: int
) -> None:
    ev = random_events(sum(chunk_sizes), seed, duration_us=50_000)
    path = tmp_path / f"rec{seed}.h5"
    with RecordingWriter(path, SENSOR, cameras(1), RecordingMeta("test")) as w:
        a = 0
        for size in chunk_sizes:
            w.append_events(0, ev[a : a + size])
            a += size
    with Recording(path) as rec:
        np.testing.assert_array_equal(rec.ms_index(0).offsets, build_ms_index(ev["t"]).offsets)
        np.testing.assert_array_equal(rec.events_slice(0, 0, len(ev)), ev)
    path.unlink()


def test_windows_equal_brute_force(tmp_path: Path) -> None:
    ev = random_events(40_000, 3)
    path = tmp_path / "rec.h5"
    write(path, [ev])
    t = ev["t"]
    with Recording(path) as rec:
        for start, end in [(0, 100_000), (1_000_000, 1_100_000), (2_999_000, 4_000_000), (5, 5)]:
            expected = ev[(t >= start) & (t < end)]
            np.testing.assert_array_equal(rec.events(0, start, end), expected)
        np.testing.assert_array_equal(
            rec.events_before(0, 1_500_000, 7500), ev[t < 1_500_000][-7500:]
        )
        np.testing.assert_array_equal(rec.events_after(0, 1_500_000, 100), ev[t >= 1_500_000][:100])
        assert rec.events(0, -100, -50).dtype == EVENT_DTYPE
        with pytest.raises(RecordingError, match="no camera 3"):
            rec.events(3, 0, 10)


def test_empty_camera_and_no_labels(tmp_path: Path) -> None:
    path = tmp_path / "empty.h5"
    with RecordingWriter(path, SENSOR, cameras(1), RecordingMeta("test")):
        pass
    with Recording(path) as rec:
        assert rec.cameras[0].num_events == 0 and rec.cameras[0].t_start_us is None
        assert len(rec.events(0, 0, 10**9)) == 0
        assert rec.labels().count == 0
        assert rec.meta.subject is None


class CountingFile(io.RawIOBase):
    """A read-only file object that counts the bytes h5py reads through it."""

    def __init__(self, path: Path) -> None:
        self._f = path.open("rb")
        self.bytes_read = 0

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def seek(self, offset: int, whence: int = 0) -> int:
        return self._f.seek(offset, whence)

    def tell(self) -> int:
        return self._f.tell()

    def readinto(self, buffer: Any) -> int:
        n = self._f.readinto(buffer)
        self.bytes_read += n or 0
        return n or 0

    def close(self) -> None:
        self._f.close()
        super().close()


def test_window_read_touches_only_the_window(tmp_path: Path) -> None:
    # 2e6 events over 20 s (10^5 ev/s): a 100 ms window holds ~10^4 events
    ev = random_events(2_000_000, 4, duration_us=20_000_000)
    path = tmp_path / "big.h5"
    with RecordingWriter(path, SENSOR, cameras(1), RecordingMeta("test")) as w:
        for a in range(0, len(ev), 250_000):
            w.append_events(0, ev[a : a + 250_000])
    size = path.stat().st_size
    f = CountingFile(path)
    with Recording(f) as rec:
        rec.ms_index(0)
        before = f.bytes_read
        window = rec.events(0, 10_000_000, 10_100_000)
        window_bytes = f.bytes_read - before
    f.close()
    assert len(window) == np.count_nonzero((ev["t"] >= 10_000_000) & (ev["t"] < 10_100_000))
    # the window's events and at most a couple of 64k-event chunks per column around it
    assert window_bytes < 0.05 * size, (window_bytes, size)


def test_failed_write_leaves_nothing_and_keeps_the_old_file(tmp_path: Path) -> None:
    path = tmp_path / "rec.h5"
    path.write_bytes(b"old contents")
    ev = random_events(100, 5)
    with (
        pytest.raises(RuntimeError),
        RecordingWriter(path, SENSOR, cameras(1), RecordingMeta("t")) as w,
    ):
        w.append_events(0, ev)
        raise RuntimeError("interrupted")
    assert path.read_bytes() == b"old contents"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["rec.h5"]


def test_writer_rejects_bad_appends(tmp_path: Path) -> None:
    path = tmp_path / "rec.h5"
    with RecordingWriter(path, SENSOR, cameras(1), RecordingMeta("t")) as w:
        w.append_events(0, make_events([1], [1], [500], [1]))
        with pytest.raises(RecordingError, match="before the previous chunk"):
            w.append_events(0, make_events([1], [1], [499], [1]))
        with pytest.raises(RecordingError, match="outside the 346x260"):
            w.append_events(0, make_events([400], [1], [600], [1]))
        with pytest.raises(RecordingError, match="not sorted"):
            w.append_events(0, make_events([1, 1], [1, 1], [700, 600], [1, 1]))
        with pytest.raises(RecordingError, match="no camera 1"):
            w.append_events(1, make_events([1], [1], [700], [1]))
        with pytest.raises(RecordingError, match="labels need"):
            w.write_labels([0, 1], np.zeros((2, 13)))
        with pytest.raises(RecordingError, match="increase strictly"):
            w.write_labels([0, 0], np.zeros((2, 13, 3)))
    with Recording(path) as rec:
        assert rec.cameras[0].num_events == 1  # the good append survived the rejected ones


def test_missing_foreign_and_newer_files(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match=re.escape("nope.h5: no such file")):
        Recording(tmp_path / "nope.h5")
    text = tmp_path / "text.h5"
    text.write_text("hello")
    with pytest.raises(RecordingError, match=re.escape("text.h5: not a readable HDF5 file")):
        Recording(text)
    foreign = tmp_path / "foreign.h5"
    with h5py.File(foreign, "w") as f:
        f.create_dataset("DVS", data=np.zeros((2, 2)))
    with pytest.raises(RecordingError, match=re.escape("foreign.h5: not a hybridpose recording")):
        Recording(foreign)
    newer = tmp_path / "newer.h5"
    write(newer, [random_events(10, 6)])
    with h5py.File(newer, "r+") as f:
        f.attrs["format_version"] = FORMAT_VERSION + 1
    with pytest.raises(RecordingError, match="newer than this hybridpose reads"):
        Recording(newer)
    broken = tmp_path / "broken.h5"
    write(broken, [random_events(10, 6)])
    with h5py.File(broken, "r+") as f:
        del f["cameras/0/ms_index"]
    with pytest.raises(RecordingError, match=re.escape("broken.h5: corrupt recording")):
        Recording(broken)


def _read_everything(source: Any) -> dict[str, Any]:
    """Everything a reader can get out of a recording, for comparison with the original."""
    with Recording(source) as rec:
        content: dict[str, Any] = {
            "sensor": rec.sensor_size,
            "meta": (rec.meta.source, rec.meta.subject, rec.meta.session, rec.meta.movement),
            "extra": rec.meta.extra,
        }
        for cam in rec.cameras:
            rec.ms_index(cam.index)
            content[f"events{cam.index}"] = rec.events(cam.index, -(10**12), 10**12)
            content[f"before{cam.index}"] = rec.events_before(cam.index, 10**12, 100)
            content[f"P{cam.index}"] = cam.calibration.P
            content[f"center{cam.index}"] = cam.calibration.center
            content[f"name{cam.index}"] = cam.calibration.name
        labels = rec.labels()
        content["label_t"], content["label_joints"] = labels.t_us, labels.joints_mm
    return content


@pytest.fixture(scope="module")
def valid_bytes(tmp_path_factory: pytest.TempPathFactory) -> bytes:
    path = tmp_path_factory.mktemp("fuzz") / "small.h5"
    write(path, [random_events(3000, 7), random_events(500, 8)], chunk=400)
    return path.read_bytes()


@pytest.fixture(scope="module")
def valid_content(valid_bytes: bytes, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    path = tmp_path_factory.mktemp("fuzz") / "original.h5"
    path.write_bytes(valid_bytes)
    return _read_everything(path)


def _must_fail_cleanly_or_read_the_original(
    data: bytes, tmp_path: Path, original: dict[str, Any] | None
) -> None:
    """A damaged file gives a RecordingError naming it, or exactly the original content."""
    path = tmp_path / "fuzzed.h5"
    path.write_bytes(data)
    try:
        content = _read_everything(path)
    except RecordingError as err:
        assert "fuzzed.h5" in str(err)
    else:
        assert original is not None, "random bytes read as a recording"
        assert content.keys() == original.keys()
        for key, value in original.items():
            np.testing.assert_array_equal(content[key], value, err_msg=key)
    finally:
        path.unlink()


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(st.data())
def test_truncated_files_fail_cleanly(
    valid_bytes: bytes, valid_content: dict[str, Any], tmp_path: Path, data: st.DataObject
) -> None:
    cut = data.draw(st.integers(0, len(valid_bytes) - 1))
    _must_fail_cleanly_or_read_the_original(valid_bytes[:cut], tmp_path, valid_content)


@settings(
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(st.data())
def test_bit_flipped_files_fail_cleanly(
    valid_bytes: bytes, valid_content: dict[str, Any], tmp_path: Path, data: st.DataObject
) -> None:
    buf = bytearray(valid_bytes)
    for _ in range(data.draw(st.integers(1, 4))):
        pos = data.draw(st.integers(0, len(buf) - 1))
        buf[pos] ^= 1 << data.draw(st.integers(0, 7))
    _must_fail_cleanly_or_read_the_original(bytes(buf), tmp_path, valid_content)


@settings(
    max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(st.binary(max_size=4096))
def test_random_bytes_fail_cleanly(tmp_path: Path, blob: bytes) -> None:
    _must_fail_cleanly_or_read_the_original(b"\x89HDF\r\n\x1a\n" + blob, tmp_path, None)


def test_temp_files_are_hidden_and_named_after_the_target(tmp_path: Path) -> None:
    w = RecordingWriter(tmp_path / "a.h5", SENSOR, cameras(1), RecordingMeta("t"))
    (temp,) = tmp_path.iterdir()
    pid = os.getpid()
    assert re.fullmatch(rf"\.a\.h5\.[A-Za-z0-9-]+-{pid}\.[^.]+\.tmp", temp.name), temp.name
    assert stale_temp_files(tmp_path) == []  # its writer (this process) is alive
    w.abort()
    assert list(tmp_path.iterdir()) == []


def test_stale_temp_files_are_those_of_dead_processes_on_this_host(tmp_path: Path) -> None:
    dead = next(pid for pid in range(4_000_000, 4_100_000) if not Path(f"/proc/{pid}").exists())
    w = RecordingWriter(tmp_path / "live.h5", SENSOR, cameras(1), RecordingMeta("t"))
    (live,) = tmp_path.iterdir()
    host = live.name.split(".")[3].rsplit("-", 1)[0]  # .live.h5.HOST-PID.RANDOM.tmp
    stale = tmp_path / f".S1_session1_mov1.h5.{host}-{dead}.k2j4.tmp"
    elsewhere = tmp_path / f".S1_session1_mov2.h5.{host}x-{dead}.k2j4.tmp"  # another machine
    not_ours = [tmp_path / f".notes.txt.{host}-{dead}.k2j4.tmp", tmp_path / ".notes.tmp"]
    for p in (stale, elsewhere, *not_ours):
        p.write_bytes(b"partial")
    assert stale_temp_files(tmp_path) == [stale]
    w.abort()


def test_metadata_that_is_not_json_fails_before_anything_is_written(tmp_path: Path) -> None:
    meta = RecordingMeta("t", extra={"count": np.int64(3)})
    with pytest.raises(RecordingError, match="not JSON-serialisable"):
        RecordingWriter(tmp_path / "a.h5", SENSOR, cameras(1), meta)
    assert list(tmp_path.iterdir()) == []


def _damage(path: Path, edit: Any) -> None:
    with h5py.File(path, "r+") as f:
        edit(f)


def _replace_t_by_group(f: h5py.File) -> None:
    del f["cameras/0/t"]
    f.create_group("cameras/0/t")


def _shorten_ms_index(f: h5py.File) -> None:
    del f["cameras/0/ms_index"]
    ds = f.create_dataset("cameras/0/ms_index", data=np.array([0, len(f["cameras/0/x"])]))
    ds.attrs["origin_us"] = 0


def _nan_in_P(f: h5py.File) -> None:
    P = f["cameras/0/P"][()]
    P[0, 0] = np.nan
    del f["cameras/0/P"]
    f.create_dataset("cameras/0/P", data=P)


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (_replace_t_by_group, "/cameras/0/t is not a dataset"),
        (lambda f: f.attrs.__setitem__("num_cameras", 10**12), "does not match the camera groups"),
        (lambda f: f.attrs.__setitem__("format_version", -7), "invalid format version -7"),
        (lambda f: f.attrs.__setitem__("sensor_width", 0), "invalid sensor size"),
        (_nan_in_P, "P must be a finite 3x4 matrix"),
    ],
)
def test_damaged_structure_is_a_clear_error_naming_the_file(
    tmp_path: Path, edit: Any, message: str
) -> None:
    path = tmp_path / "damaged.h5"
    write(path, [random_events(500, 9)])
    _damage(path, edit)
    with pytest.raises(RecordingError, match=re.escape(message)) as info:
        Recording(path)
    assert str(info.value).startswith(str(path))


def test_an_index_that_does_not_fit_the_events_is_refused(tmp_path: Path) -> None:
    # 100 events over 0..9.9 ms would need 11 entries; a 2-entry index would give wrong windows
    path = tmp_path / "short.h5"
    ev = make_events(np.zeros(100), np.zeros(100), np.arange(100) * 100, np.ones(100))
    with RecordingWriter(path, SENSOR, cameras(1), RecordingMeta("t")) as w:
        w.append_events(0, ev)
    _damage(path, _shorten_ms_index)
    with Recording(path) as rec, pytest.raises(RecordingError, match="has 2 entries, expected 11"):
        rec.events(0, 5000, 6000)


def test_events_slice_out_of_range(tmp_path: Path) -> None:
    path = tmp_path / "r.h5"
    write(path, [random_events(50, 10)])
    with Recording(path) as rec:
        with pytest.raises(RecordingError, match=re.escape("has events 0:50; cannot read 48:55")):
            rec.events_slice(0, 48, 55)
        with pytest.raises(RecordingError, match="cannot read -1:3"):
            rec.events_slice(0, -1, 3)


def test_finished_files_get_ordinary_permissions(tmp_path: Path) -> None:
    import stat

    old = os.umask(0o022)
    try:
        path = tmp_path / "perm.h5"
        meta = RecordingMeta(source="test")
        cam = CameraCalibration(np.hstack([np.eye(3), np.zeros((3, 1))]), np.zeros(3))
        with RecordingWriter(path, (8, 8), [cam], meta):
            pass
        assert stat.S_IMODE(path.stat().st_mode) == 0o644
    finally:
        os.umask(old)
