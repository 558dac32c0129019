"""Tests of the DHP19 converter against hand-computed answers and the independent fake DHP19.

The fake download (tests/dhp19_fixture.py) encodes addresses, Vicon structs and projection
matrices with its own code, so a shared misunderstanding would have to be written twice.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np
import pytest
from dhp19_fixture import (
    FLIP,
    JOINTS,
    MATRIX_OF_CAMERA,
    START_RAW_US,
    FakeDhp19,
    FakeRecording,
    aedat2_bytes,
    encode_address,
    fake_cameras,
    make_fake_dhp19,
    mat5_bytes_by_hand,
    project,
    skeleton,
    write_aedat2,
    write_p_matrices,
    write_vicon_mat,
)
from dhp19_fixture import main as fixture_main
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from hybridpose.errors import HybridPoseError
from hybridpose.events import validate_events
from hybridpose.io import dhp19
from hybridpose.io.aedat import AedatError
from hybridpose.io.dhp19 import (
    ConversionResult,
    ConversionSummary,
    Dhp19Error,
    background_activity_mask,
    convert_dhp19,
    convert_recording,
    decode_addresses,
    find_recordings,
    find_start_stop,
    hot_pixel_mask,
    read_p_matrices,
    read_vicon_mat,
    repair_timestamp_order,
    unwrap_timestamps,
)
from hybridpose.io.mat5 import MatFileError
from hybridpose.io.recording import Recording

FUZZ = settings(
    max_examples=25,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
SPECIAL = encode_address(0, 0, False, 0, special=True)


# ------------------------------------------------------------------------------- helpers
@pytest.fixture(scope="module")
def p_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_p_matrices(tmp_path_factory.mktemp("calib") / "P_matrices", fake_cameras())


@pytest.fixture(scope="module")
def fake(tmp_path_factory: pytest.TempPathFactory) -> FakeDhp19:
    return make_fake_dhp19(tmp_path_factory.mktemp("dhp19"), events_per_camera=600)


@pytest.fixture(scope="module")
def fake_converted(fake: FakeDhp19, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("converted")
    summary = convert_dhp19(fake.root, out, progress=False)
    assert len(summary.converted) == 2
    return out


def ev(x: int, y: int, t: int, on: bool = True, cam: int = 0) -> tuple[int, int]:
    return encode_address(x, y, on, cam), t


def sp(t: int) -> tuple[int, int]:
    return SPECIAL, t


def tiny(folder: Path, rows: list[tuple[int, int]], n_labels: int = 10) -> tuple[Path, Path]:
    """A hand-made recording: ``rows`` of (address, timestamp) and ``n_labels`` Vicon samples."""
    aedat = write_aedat2(folder / "mov1.aedat", [a for a, _ in rows], [t for _, t in rows])
    mat = write_vicon_mat(folder / "S1_1_1.mat", skeleton(n_labels, 1))
    return aedat, mat


def convert(aedat: Path, mat: Path, p_dir: Path, out: Path, **kw: object) -> ConversionResult:
    return convert_recording(
        aedat,
        mat,
        p_dir,
        out,
        subject=1,
        session=1,
        movement=1,
        **kw,  # type: ignore[arg-type]
    )


def all_events(path: Path, camera: int) -> np.ndarray:
    with Recording(path) as rec:
        return rec.events_slice(camera, 0, rec.cameras[camera].num_events)


def leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir()) if folder.exists() else []


# ---------------------------------------------------------------------------------- errors
def test_error_types() -> None:
    # the batch converter rejects a recording on any HybridPoseError, the readers' included
    for error in (Dhp19Error, AedatError, MatFileError):
        assert issubclass(error, HybridPoseError) and issubclass(error, ValueError)


# ------------------------------------------------------------------------------- addresses
def test_decode_hand_computed_addresses() -> None:
    # y=7 (7 << 22 = 0x01C00000), x=5 (5 << 12 = 0x5000), ON (0x800), camera 2
    d = decode_addresses(np.array([0x01C05802, 0x01C05002, 0x7FFFF00F], dtype=np.uint32))
    assert d.x.tolist() == [5, 5, 1023]
    assert d.y.tolist() == [7, 7, 511]
    assert d.p.tolist() == [1, -1, -1]
    assert d.camera.tolist() == [2, 2, 15]
    assert d.is_polarity.tolist() == [True, True, True]
    assert not d.is_special.any()


def test_decode_event_kinds() -> None:
    d = decode_addresses([0x00000400, 0x80000000, 0x80000400, 0x00000C03])
    assert d.is_special.tolist() == [True, False, False, True]
    assert d.is_polarity.tolist() == [False, False, False, False]
    assert d.camera.tolist()[3] == 3


@settings(max_examples=30, deadline=None)
@given(
    st.lists(
        st.tuples(st.integers(0, 1023), st.integers(0, 511), st.booleans(), st.integers(0, 15)),
        min_size=1,
        max_size=20,
    )
)
def test_decode_inverts_the_fixture_encoder(fields: list[tuple[int, int, bool, int]]) -> None:
    d = decode_addresses(np.array([encode_address(*f) for f in fields], dtype=np.uint32))
    assert d.x.tolist() == [f[0] for f in fields]
    assert d.y.tolist() == [f[1] for f in fields]
    assert d.p.tolist() == [1 if f[2] else -1 for f in fields]
    assert d.camera.tolist() == [f[3] for f in fields]
    assert d.is_polarity.all()


# ------------------------------------------------------------------------------------ time
def test_unwrap_one_wrap() -> None:
    assert unwrap_timestamps([4294967290, 5, 20]).tolist() == [4294967290, 4294967301, 4294967316]


def test_unwrap_two_wraps_and_small_backward_steps() -> None:
    w = 1 << 32
    h = 1 << 31
    raw = [w - 10, 3, 2, h, w - 5, 7]
    assert unwrap_timestamps(raw).tolist() == [w - 10, w + 3, w + 2, w + h, 2 * w - 5, 2 * w + 7]


def test_unwrap_late_record_from_before_a_wrap() -> None:
    w = 1 << 32
    assert unwrap_timestamps([w - 10, 3, w - 5, 8]).tolist() == [w - 10, w + 3, w - 5, w + 8]


def test_unwrap_short_inputs() -> None:
    assert unwrap_timestamps([]).tolist() == []
    assert unwrap_timestamps([5]).tolist() == [5]
    assert unwrap_timestamps([100, 50]).tolist() == [100, 50]


def test_repair_sorts_small_disorder_and_counts_lagging_events() -> None:
    t = np.array([0, 100, 50, 60, 200], dtype=np.int64)  # lags 0, 0, 50, 40, 0
    order, moved = repair_timestamp_order(t, tolerance_us=1000)
    assert order.tolist() == [0, 2, 3, 1, 4]
    assert moved == 2


def test_repair_accepts_a_lag_of_exactly_the_tolerance() -> None:
    order, moved = repair_timestamp_order(np.array([1000, 0], dtype=np.int64), tolerance_us=1000)
    assert order.tolist() == [1, 0] and moved == 1


def test_repair_rejects_a_large_jump_naming_event_and_jump() -> None:
    t = np.array([0, 5000, 2000], dtype=np.int64)
    with pytest.raises(Dhp19Error, match=r"cam X: .*back by 3000 us at event 42"):
        repair_timestamp_order(
            t, tolerance_us=1000, name="cam X", record_index=np.array([40, 41, 42])
        )


def test_repair_of_sorted_input_is_identity() -> None:
    order, moved = repair_timestamp_order(np.array([1, 1, 2], dtype=np.int64))
    assert order.tolist() == [0, 1, 2] and moved == 0


# ----------------------------------------------------------------------------- start/stop
# event stream from 0 to 10_000_000 us, 50 Vicon samples = 500_000 us
@pytest.mark.parametrize(
    ("specials", "start", "stop"),
    [
        ([1_000_000], 1_000_000, 1_500_000),  # 1: near the start -> start
        ([9_000_000], 8_500_000, 9_000_000),  # 1: nearer the end -> stop
        ([1_000_000, 1_400_000], 1_000_000, 1_500_000),  # 2: second ignored
        ([6_000_000, 6_100_000], 5_500_000, 6_000_000),  # 2: first nearer the end -> stop
        ([5_000_000, 6_000_000], 5_000_000, 5_500_000),  # tie -> start
        ([1_000_000, 2_000_000, 3_000_000], 1_000_000, 3_000_000),  # 3: first and last
        ([1, 2, 3, 4], 1, 500_001),  # 4: like 1 and 2
        ([1, 2, 3, 4, 7_000_000], 1, 7_000_000),  # 5: first and last
    ],
)
def test_start_stop_rules(specials: list[int], start: int, stop: int) -> None:
    span = find_start_stop(specials, 0, 10_000_000, 50, "f")
    assert (span.start_us, span.stop_us) == (start, stop)
    assert span.rule.startswith(f"{len(specials)} specials")


def test_no_special_event_is_rejected() -> None:
    with pytest.raises(Dhp19Error, match="f: no start/stop special event"):
        find_start_stop([], 0, 10, 5, "f")


def test_six_specials_are_corrupted() -> None:
    with pytest.raises(Dhp19Error, match=r"6 special events.*corrupted"):
        find_start_stop([1, 2, 3, 4, 5, 6], 0, 10, 5, "f")


def test_last_special_before_first_is_rejected() -> None:
    with pytest.raises(Dhp19Error, match="not after the first"):
        find_start_stop([30, 20, 10], 0, 100, 5, "f")


# -------------------------------------------------------------------------------- filters
def test_hot_pixel_mask_removes_pixels_above_threshold_only() -> None:
    x = np.array([1, 1, 1, 1, 2, 2, 2, 0])
    y = np.array([0, 0, 0, 0, 0, 0, 0, 3])
    keep = hot_pixel_mask(x, y, threshold=3, sensor_size=(4, 4))
    assert keep.tolist() == [False] * 4 + [True] * 4


def naive_background_filter(
    x: np.ndarray, y: np.ndarray, t: np.ndarray, support: int, size: tuple[int, int]
) -> list[bool]:
    """jAER's loop, written out: stamp the 8 neighbours, pass if the own stamp is recent."""
    width, height = size
    stamp: dict[tuple[int, int], int] = {}
    keep = []
    for xi, yi, ti in zip(x.tolist(), y.tolist(), t.tolist(), strict=True):
        last = stamp.get((xi, yi))
        keep.append(last is not None and ti - last < support)
        for dx in (-1, 0, 1):
            for dy in (-1, 0, 1):
                nx, ny = xi + dx, yi + dy
                if (dx, dy) != (0, 0) and 0 <= nx < width and 0 <= ny < height:
                    stamp[(nx, ny)] = ti
    return keep


def test_background_filter_hand_case() -> None:
    # e0 alone; e1 next to e0, 100 us later; e2 on e0's pixel, 69 999 us after e1 (passes);
    # e3 on e1's pixel exactly 70 000 us after e2 stamped it (fails: strict); e4 far away
    x = np.array([10, 11, 10, 11, 30])
    y = np.array([10, 10, 10, 10, 30])
    t = np.array([0, 100, 70_099, 140_099, 140_100])
    keep = background_activity_mask(x, y, t, support_us=70_000, sensor_size=(40, 40))
    assert keep.tolist() == [False, True, True, False, False]
    assert keep.tolist() == naive_background_filter(x, y, t, 70_000, (40, 40))


def test_background_filter_own_pixel_does_not_support_itself() -> None:
    keep = background_activity_mask([3, 3, 3], [3, 3, 3], [0, 1, 2], sensor_size=(8, 8))
    assert keep.tolist() == [False, False, False]


def test_background_filter_empty() -> None:
    assert background_activity_mask([], [], []).tolist() == []


@settings(max_examples=40, deadline=None)
@given(
    st.lists(
        st.tuples(st.integers(0, 5), st.integers(0, 4), st.integers(0, 300)),
        min_size=0,
        max_size=60,
    ),
    st.integers(1, 150),
)
def test_background_filter_matches_naive_loop(
    rows: list[tuple[int, int, int]], support: int
) -> None:
    rows = sorted(rows, key=lambda r: r[2])  # sorted by time, ties in list order
    x = np.array([r[0] for r in rows], dtype=np.int64)
    y = np.array([r[1] for r in rows], dtype=np.int64)
    t = np.array([r[2] for r in rows], dtype=np.int64)
    got = background_activity_mask(x, y, t, support_us=support, sensor_size=(6, 5))
    assert got.tolist() == naive_background_filter(x, y, t, support, (6, 5))


# ---------------------------------------------------------------------------- Vicon, P
def test_vicon_fields_are_read_in_dhp19_order(tmp_path: Path) -> None:
    joints = np.arange(4 * 13 * 3, dtype=np.float64).reshape(4, 13, 3)
    joints[2, 5] = np.nan
    path = write_vicon_mat(tmp_path / "v.mat", joints, order=tuple(reversed(JOINTS)))
    got = read_vicon_mat(path)
    assert got.shape == (4, 13, 3)
    np.testing.assert_array_equal(got, joints)  # NaN compares equal here


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"order": JOINTS[:-1]}, "XYZPOS has no field 'footL'"),
        ({"replace": {"kneeR": np.zeros((5, 4))}}, r"XYZPOS\.kneeR must be a real \(N, 3\)"),
        ({"replace": {"head": "abc"}}, r"XYZPOS\.head must be a real"),
        ({"replace": {"head": np.zeros((4, 3))}}, "XYZPOS fields differ in length"),
        ({"replace": {"hipL": np.full((5, 3), np.inf)}}, r"XYZPOS\.hipL holds a coordinate beyond"),
    ],
)
def test_bad_vicon_struct_is_named(tmp_path: Path, kwargs: dict, message: str) -> None:
    path = write_vicon_mat(tmp_path / "bad.mat", skeleton(5, 1), **kwargs)
    with pytest.raises(Dhp19Error, match=rf"bad\.mat: {message}"):
        read_vicon_mat(path)


def test_vicon_without_xyzpos_or_not_a_mat(tmp_path: Path) -> None:
    from scipy.io import savemat

    other = tmp_path / "other.mat"
    savemat(str(other), {"something": np.zeros(3)})
    with pytest.raises(MatFileError, match=r"other\.mat: no 1x1 struct 'XYZPOS'"):
        read_vicon_mat(other)
    text = tmp_path / "text.mat"
    text.write_text("hello, not matlab")
    with pytest.raises(MatFileError, match=r"text\.mat: not a readable MATLAB 5 file"):
        read_vicon_mat(text)
    with pytest.raises(Dhp19Error, match=r"missing\.mat: no such Vicon file"):
        read_vicon_mat(tmp_path / "missing.mat")


def test_vicon_reader_agrees_with_scipy_loadmat(tmp_path: Path) -> None:
    from scipy.io import loadmat

    joints = skeleton(7, 2)
    joints[3, 4] = np.nan
    for compress in (False, True):
        path = write_vicon_mat(tmp_path / f"v{compress}.mat", joints, compress=compress)
        xyzpos = loadmat(str(path))["XYZPOS"][0, 0]
        theirs = np.stack([xyzpos[name] for name in JOINTS], axis=1)
        np.testing.assert_array_equal(read_vicon_mat(path), theirs)
        np.testing.assert_array_equal(read_vicon_mat(path), joints)


def test_vicon_skips_other_variables(tmp_path: Path) -> None:
    joints = skeleton(3, 1)
    others = {"a": np.zeros((2, 2)), "s": {"x": 1.0}, "txt": "hello"}
    for compress in (False, True):
        path = write_vicon_mat(tmp_path / "v.mat", joints, others=others, compress=compress)
        np.testing.assert_array_equal(read_vicon_mat(path), joints)


@pytest.mark.parametrize(("big_endian", "data_type"), [(False, "i2"), (True, "i2"), (True, "f8")])
def test_vicon_written_by_hand(tmp_path: Path, big_endian: bool, data_type: str) -> None:
    joints = np.rint(skeleton(5, 1))
    fields = {name: joints[:, j] for j, name in enumerate(JOINTS)}
    path = tmp_path / "hand.mat"
    path.write_bytes(mat5_bytes_by_hand(fields, big_endian=big_endian, data_type=data_type))
    np.testing.assert_array_equal(read_vicon_mat(path), joints)


def test_vicon_with_no_samples(tmp_path: Path) -> None:
    path = write_vicon_mat(tmp_path / "empty.mat", np.zeros((0, 13, 3)))
    with pytest.raises(Dhp19Error, match=r"empty\.mat: XYZPOS has no samples"):
        read_vicon_mat(path)


def test_p_matrices_are_read_as_stored(p_dir: Path) -> None:
    calib = read_p_matrices(p_dir)
    for m in range(1, 5):
        np.testing.assert_array_equal(calib.P[m - 1], np.load(p_dir / f"P{m}.npy"))
    np.testing.assert_array_equal(calib.centers, np.load(p_dir / "camera_positions.npy"))


def test_fortran_ordered_p_matrix(tmp_path: Path, p_dir: Path) -> None:
    d = tmp_path / "P_matrices"
    d.mkdir()
    for f in p_dir.iterdir():
        (d / f.name).write_bytes(f.read_bytes())
    P = np.arange(12, dtype=np.float32).reshape(3, 4) + np.eye(3, 4, dtype=np.float32)
    np.save(d / "P2.npy", np.asfortranarray(P))
    np.testing.assert_array_equal(read_p_matrices(d).P[1], P)


@pytest.mark.parametrize(
    ("name", "content", "message"),
    [
        ("P3.npy", None, "P3.npy: no such file"),
        ("P3.npy", np.zeros((3, 3)), r"P3.npy: holds a float64 array of shape \(3, 3\)"),
        ("P1.npy", np.full((3, 4), np.nan), "P1.npy: holds non-finite values"),
        ("P4.npy", np.zeros((3, 4)), "P4.npy: singular or overflowing projection matrix"),
        ("P4.npy", np.full((3, 4), 1e300) + np.eye(3, 4), "P4.npy: singular or overflowing"),
        ("P2.npy", np.array([{"a": 1}], dtype=object), "P2.npy: holds a object array"),
        ("camera_positions.npy", np.zeros((3, 3)), "camera_positions.npy: holds"),
        ("P2.npy", b"not numpy at all", "P2.npy: not a readable .npy file"),
        ("P2.npy", "truncate", "P2.npy: truncated .npy file"),
    ],
)
def test_bad_p_matrices_are_named(
    tmp_path: Path, p_dir: Path, name: str, content: object, message: str
) -> None:
    d = tmp_path / "P_matrices"
    d.mkdir()
    for f in p_dir.iterdir():
        (d / f.name).write_bytes(f.read_bytes())
    target = d / name
    if content is None:
        target.unlink()
    elif isinstance(content, bytes):
        target.write_bytes(content)
    elif isinstance(content, str):
        target.write_bytes(target.read_bytes()[:-8])
    else:
        np.save(target, content)
    with pytest.raises(Dhp19Error, match=message):
        read_p_matrices(d)


def test_missing_p_folder(tmp_path: Path) -> None:
    with pytest.raises(Dhp19Error, match="nowhere: no P_matrices folder"):
        read_p_matrices(tmp_path / "nowhere")


# ------------------------------------------------------------------------ one recording
def expected_events(rec: FakeRecording, camera: int) -> dict[str, np.ndarray]:
    """What the converter should write for ``camera``, from the fixture's own columns."""
    keep = (
        (rec.kind == 0)
        & (rec.camera == camera)
        & (rec.t >= rec.start_raw_us)
        & (rec.t <= rec.stop_raw_us)
    )
    return {
        "x": 345 - rec.x_raw[keep],
        "y": 259 - rec.y_raw[keep],
        "t": rec.t[keep] - rec.start_raw_us,
        "p": np.where(rec.on[keep], 1, -1),
    }


def test_round_trip_of_the_fake_download(fake: FakeDhp19, fake_converted: Path) -> None:
    for (s, n, k), rec in fake.recordings.items():
        path = fake_converted / f"S{s}_session{n}_mov{k}.h5"
        with Recording(path) as r:
            assert r.sensor_size == (346, 260)
            assert (r.meta.source, r.meta.subject, r.meta.session, r.meta.movement) == (
                "dhp19",
                s,
                n,
                k,
            )
            assert r.meta.extra["start_us_raw"] == START_RAW_US
            assert r.meta.extra["start_stop_rule"].startswith("2 specials" if k == 1 else "3")
            labels = r.labels()
            np.testing.assert_array_equal(labels.t_us, np.arange(100) * 10_000)
            np.testing.assert_array_equal(labels.joints_mm, rec.joints.astype(np.float32))
        for c in range(4):
            got = all_events(path, c)
            want = expected_events(rec, c)
            assert len(got) > 100
            for field in ("x", "y", "t", "p"):
                np.testing.assert_array_equal(got[field], want[field], err_msg=field)


def test_convert_recording_counts(fake: FakeDhp19, p_dir: Path, tmp_path: Path) -> None:
    rec = fake.recordings[(1, 1, 1)]
    result = convert(rec.aedat, rec.vicon, p_dir, tmp_path / "out.h5")
    for c in range(4):
        cam = (rec.kind == 0) & (rec.camera == c)
        inside = cam & (rec.t >= rec.start_raw_us) & (rec.t <= rec.stop_raw_us)
        assert result.events_kept[c] == np.count_nonzero(inside)
        assert result.dropped_outside[c] == np.count_nonzero(cam & ~inside)
    assert result.dropped_outside[0] > 0  # the fixture puts events outside on purpose
    assert result.ignored_records == 3 and result.specials == 2
    assert result.repaired == (0, 0, 0, 0)
    assert result.hot_pixel_filtered == result.background_filtered == (0, 0, 0, 0)
    assert (result.start_us, result.stop_us, result.num_labels) == (
        START_RAW_US,
        START_RAW_US + 1_000_000,
        100,
    )


def test_camera_mapping_to_p_files(fake: FakeDhp19, fake_converted: Path) -> None:
    p_files = fake.root / "P_matrices"
    positions = np.load(p_files / "camera_positions.npy")
    with Recording(fake_converted / "S1_session1_mov1.h5") as r:
        for c, m in MATRIX_OF_CAMERA.items():
            raw = np.load(p_files / f"P{m}.npy")
            cal = r.cameras[c].calibration
            np.testing.assert_allclose(cal.P, FLIP @ raw, rtol=0, atol=0)
            np.testing.assert_array_equal(cal.center, positions[m - 1])
            assert cal.name == f"dhp19-cam{c}-P{m}"
            np.testing.assert_array_equal(np.array(r.meta.extra["P_raw"][c]), raw)
            assert r.meta.extra["cameras"][c]["labels_in_image_fraction"] == 1.0


def test_projected_labels_land_on_the_events(fake_converted: Path) -> None:
    # the end-to-end check of the flip: events (flipped x and y) against labels projected with
    # the stored P (flipped v only); the fixture scatters events 1.5 px around the joints
    path = fake_converted / "S1_session1_mov2.h5"
    with Recording(path) as r:
        labels = r.labels()
        for c in range(4):
            events = all_events(path, c)
            k = np.clip(np.rint(events["t"] / 10_000).astype(int), 0, labels.count - 1)
            uv = project(r.cameras[c].calibration.P, labels.joints_mm[k].astype(np.float64))
            xy = np.stack([events["x"], events["y"]], axis=1).astype(np.float64)[:, None]
            nearest = np.nanmin(np.linalg.norm(uv - xy, axis=2), axis=1)
            assert np.median(nearest) < 3.0, f"camera {c}"


def test_flip_and_polarity_of_single_events(p_dir: Path, tmp_path: Path) -> None:
    rows = [sp(1000), ev(0, 0, 1000, on=True), ev(345, 259, 1100, on=False), ev(3, 7, 1200)]
    aedat, mat = tiny(tmp_path, rows)
    out = tmp_path / "o.h5"
    convert(aedat, mat, p_dir, out)
    got = all_events(out, 0)
    assert got["x"].tolist() == [345, 0, 342]
    assert got["y"].tolist() == [259, 0, 252]
    assert got["p"].tolist() == [1, -1, 1]
    assert got["t"].tolist() == [0, 100, 200]


@pytest.mark.parametrize(
    ("row", "message"),
    [
        (ev(346, 0, 1100), "polarity event 1 has raw x 346"),
        (ev(0, 260, 1100), "polarity event 1 has raw y 260"),
        (ev(0, 0, 1100, cam=4), "polarity event 1 has raw camera id 4"),
    ],
)
def test_pixels_outside_the_sensor_are_rejected(
    p_dir: Path, tmp_path: Path, row: tuple[int, int], message: str
) -> None:
    aedat, mat = tiny(tmp_path, [sp(1000), row])
    out = tmp_path / "out" / "o.h5"
    with pytest.raises(Dhp19Error, match=rf"mov1\.aedat: {message}"):
        convert(aedat, mat, p_dir, out)
    assert leftovers(out.parent) == []


def test_events_outside_start_stop_are_dropped_bounds_inclusive(
    p_dir: Path, tmp_path: Path
) -> None:
    # 10 labels -> 100 ms; 3 specials: start 10 000, stop 60 000 (first and last)
    rows = [ev(1, 1, 9_999), sp(10_000), ev(2, 2, 10_000), sp(20_000), ev(3, 3, 60_000)]
    rows += [sp(60_000), ev(4, 4, 60_001), ev(5, 5, 70_000, cam=1)]
    aedat, mat = tiny(tmp_path, rows)
    result = convert(aedat, mat, p_dir, tmp_path / "o.h5")
    assert all_events(tmp_path / "o.h5", 0)["t"].tolist() == [0, 50_000]
    assert result.events_kept == (2, 0, 0, 0)
    assert result.dropped_outside == (2, 1, 0, 0)


def test_start_derived_when_the_only_special_is_nearer_the_end(p_dir: Path, tmp_path: Path) -> None:
    # events from 0 to 1 000 000 us, one special at 900 000 -> it is the stop; 10 labels = 100 ms
    rows = [ev(1, 1, 0), ev(2, 2, 799_999), ev(3, 3, 800_000), sp(900_000), ev(4, 4, 1_000_000)]
    aedat, mat = tiny(tmp_path, rows)
    result = convert(aedat, mat, p_dir, tmp_path / "o.h5")
    assert (result.start_us, result.stop_us) == (800_000, 900_000)
    assert all_events(tmp_path / "o.h5", 0)["x"].tolist() == [342]


@pytest.mark.parametrize(
    ("specials", "message"),
    [(0, "no start/stop special event"), (6, "6 special events")],
)
def test_bad_special_counts_reject_the_recording(
    p_dir: Path, tmp_path: Path, specials: int, message: str
) -> None:
    rows = [sp(1000 + i) for i in range(specials)] + [ev(1, 1, 2000)]
    aedat, mat = tiny(tmp_path, rows)
    with pytest.raises(Dhp19Error, match=message):
        convert(aedat, mat, p_dir, tmp_path / "out" / "o.h5")
    assert leftovers(tmp_path / "out") == []


def test_timestamp_wrap_inside_a_recording(p_dir: Path, tmp_path: Path) -> None:
    w = 1 << 32
    rows = [sp(w - 30_000), ev(1, 1, w - 20_000), ev(2, 2, w - 1), ev(3, 3, w + 5), sp(w + 60_000)]
    rows += [sp(w + 70_000)]  # 3 specials: start w - 30 000, stop w + 70 000
    aedat, mat = tiny(tmp_path, rows)
    result = convert(aedat, mat, p_dir, tmp_path / "o.h5")
    assert (result.start_us, result.stop_us) == (w - 30_000, w + 70_000)
    assert all_events(tmp_path / "o.h5", 0)["t"].tolist() == [10_000, 29_999, 30_005]


def test_small_disorder_is_repaired(p_dir: Path, tmp_path: Path) -> None:
    rows = [sp(1000), ev(1, 1, 2000), ev(2, 2, 3000), ev(3, 3, 2500), ev(4, 4, 2600, cam=1)]
    aedat, mat = tiny(tmp_path, rows)
    result = convert(aedat, mat, p_dir, tmp_path / "o.h5")
    assert result.repaired == (1, 0, 0, 0)
    got = all_events(tmp_path / "o.h5", 0)
    assert got["t"].tolist() == [1000, 1500, 2000]
    assert got["x"].tolist() == [344, 342, 343]


def test_large_disorder_rejects_the_recording(p_dir: Path, tmp_path: Path) -> None:
    rows = [sp(1000), ev(1, 1, 2000), ev(2, 2, 9000, cam=2), ev(3, 3, 3000, cam=2)]
    aedat, mat = tiny(tmp_path, rows)
    out = tmp_path / "out" / "o.h5"
    with pytest.raises(Dhp19Error, match=r"camera 2: .*back by 6000 us at event 3"):
        convert(aedat, mat, p_dir, out)
    assert leftovers(out.parent) == []


def test_no_event_between_start_and_stop(p_dir: Path, tmp_path: Path) -> None:
    aedat, mat = tiny(tmp_path, [ev(1, 1, 0), sp(500_000), ev(1, 1, 10_000_000)])
    with pytest.raises(Dhp19Error, match="no polarity event between start"):
        convert(aedat, mat, p_dir, tmp_path / "o.h5")
    aedat, mat = tiny(tmp_path, [sp(500_000)])
    with pytest.raises(Dhp19Error, match="no polarity events"):
        convert(aedat, mat, p_dir, tmp_path / "o.h5")


def test_hot_pixel_filter_in_conversion(p_dir: Path, tmp_path: Path) -> None:
    rows = (
        [sp(1000)] + [ev(5, 5, 1000 + i) for i in range(4)] + [ev(6, 6, 1100 + i) for i in range(3)]
    )
    aedat, mat = tiny(tmp_path, rows)
    result = convert(
        aedat, mat, p_dir, tmp_path / "o.h5", hot_pixel_filter=True, hot_pixel_threshold=3
    )
    assert result.hot_pixel_filtered == (4, 0, 0, 0)
    assert set(all_events(tmp_path / "o.h5", 0)["x"].tolist()) == {345 - 6}
    with Recording(tmp_path / "o.h5") as r:
        assert r.meta.extra["hot_pixel_filter"] == {"threshold": 3, "removed": [4, 0, 0, 0]}


@pytest.mark.parametrize(
    "arg", ["hot_pixel_threshold", "background_support_us", "max_repairable_jump_us"]
)
def test_negative_thresholds_are_rejected(p_dir: Path, tmp_path: Path, arg: str) -> None:
    aedat, mat = tiny(tmp_path, [sp(1000), ev(1, 1, 1000)])
    with pytest.raises(Dhp19Error, match=rf"{arg} must be >= 0, got -1"):
        convert(aedat, mat, p_dir, tmp_path / "o.h5", **{arg: -1})


def test_background_filter_in_conversion(fake: FakeDhp19, p_dir: Path, tmp_path: Path) -> None:
    rec = fake.recordings[(1, 1, 1)]
    result = convert(rec.aedat, rec.vicon, p_dir, tmp_path / "o.h5", background_filter=True)
    for c in range(4):
        want = expected_events(rec, c)
        keep = naive_background_filter(want["x"], want["y"], want["t"], 70_000, (346, 260))
        got = all_events(tmp_path / "o.h5", c)
        assert result.background_filtered[c] == keep.count(False) > 0
        np.testing.assert_array_equal(got["t"], want["t"][np.array(keep, dtype=bool)])


# ------------------------------------------------------------------------- a whole root
def test_convert_dhp19_summary_and_skip(fake: FakeDhp19, tmp_path: Path) -> None:
    out = tmp_path / "out"
    first = convert_dhp19(fake.root, out, progress=False)
    names = ["S1_session1_mov1.h5", "S1_session1_mov2.h5"]
    assert first.converted == [out / n for n in names]
    assert first.skipped == [] and first.rejected == []
    stamps = [(out / n).stat().st_mtime_ns for n in names]
    second = convert_dhp19(fake.root, out, progress=True)
    assert second.converted == [] and second.skipped == [out / n for n in names]
    assert [(out / n).stat().st_mtime_ns for n in names] == stamps
    assert "0 converted, 2 skipped" in second.format()


def test_rejections_do_not_stop_the_others(tmp_path: Path) -> None:
    root = tmp_path / "root"
    make_fake_dhp19(root, movements=(1, 2, 3, 4), events_per_camera=50)
    (root / "Vicon_data" / "S1_1_2.mat").unlink()
    bad = root / "DVS_movies" / "S1" / "session1" / "mov3.aedat"
    bad.write_bytes(bad.read_bytes()[:-1])
    out = tmp_path / "out"
    summary = convert_dhp19(root, out, progress=False)
    assert summary.converted == [out / "S1_session1_mov1.h5", out / "S1_session1_mov4.h5"]
    assert [name for name, _ in summary.rejected] == ["S1_session1_mov2", "S1_session1_mov3"]
    assert "no Vicon file" in summary.rejected[0][1]
    assert "truncated" in summary.rejected[1][1]
    assert leftovers(out) == ["S1_session1_mov1.h5", "S1_session1_mov4.h5"]
    text = summary.format()
    assert "2 converted, 0 skipped (already converted), 2 rejected" in text
    assert "rejected S1_session1_mov3: " in text


def test_find_recordings_sorts_numerically_and_ignores_other_names(tmp_path: Path) -> None:
    for rel in ("S10/session1/mov1", "S2/session5/mov7", "S2/session1/mov10", "S2/session1/mov2"):
        write_aedat2(tmp_path / "DVS_movies" / f"{rel}.aedat", [], [])
    write_aedat2(tmp_path / "DVS_movies" / "S2" / "session1" / "mov2_old.aedat", [], [])
    found = find_recordings(tmp_path)
    assert [r.name for r in found] == [
        "S2_session1_mov2",
        "S2_session1_mov10",
        "S2_session5_mov7",
        "S10_session1_mov1",
    ]
    assert found[1].vicon_mat == tmp_path / "Vicon_data" / "S2_1_10.mat"


def test_fixture_runs_as_a_script(tmp_path: Path) -> None:
    assert fixture_main([]) == 2
    assert fixture_main([str(tmp_path)]) == 0
    assert [r.name for r in find_recordings(tmp_path)] == ["S1_session1_mov1", "S1_session1_mov2"]
    assert len(list((tmp_path / "P_matrices").glob("*.npy"))) == 5


def test_summary_format_by_hand() -> None:
    s = ConversionSummary(
        converted=[Path("a.h5")], skipped=[], rejected=[("S4_session3_mov4", "x")]
    )
    assert s.format() == (
        "DHP19 conversion: 1 converted, 0 skipped (already converted), 1 rejected\n"
        "  rejected S4_session3_mov4: x"
    )


def test_missing_root_parts_raise(fake: FakeDhp19, tmp_path: Path) -> None:
    with pytest.raises(Dhp19Error, match="nothing: DHP19 root does not exist"):
        convert_dhp19(tmp_path / "nothing", tmp_path / "out", progress=False)
    (tmp_path / "empty").mkdir()
    with pytest.raises(Dhp19Error, match="DVS_movies: no DVS_movies folder"):
        convert_dhp19(tmp_path / "empty", tmp_path / "out", progress=False)
    (tmp_path / "empty" / "DVS_movies").mkdir()
    with pytest.raises(Dhp19Error, match="P_matrices: no P_matrices folder"):
        convert_dhp19(tmp_path / "empty", tmp_path / "out", progress=False)
    with pytest.raises(Dhp19Error, match="workers must be at least 1"):
        convert_dhp19(fake.root, tmp_path / "out", workers=0, progress=False)


def test_two_workers_write_identical_files(
    fake: FakeDhp19, fake_converted: Path, tmp_path: Path
) -> None:
    summary = convert_dhp19(fake.root, tmp_path, workers=2, progress=False)
    assert [p.name for p in summary.converted] == ["S1_session1_mov1.h5", "S1_session1_mov2.h5"]
    for path in summary.converted:
        reference = fake_converted / path.name
        assert path.read_bytes() == reference.read_bytes()
        with Recording(path) as a, Recording(reference) as b:
            assert a.meta == b.meta
            for c in range(4):
                np.testing.assert_array_equal(all_events(path, c), all_events(reference, c))


# ------------------------------------------------------------------------ property tests
def flip_bits(data: bytes, positions: list[int]) -> bytes:
    out = bytearray(data)
    for pos in positions:
        out[(pos // 8) % len(out)] ^= 1 << (pos % 8)
    return bytes(out)


VALID_AEDAT = aedat2_bytes(
    [*(encode_address(i % 346, i % 260, i % 2 == 0, i % 4) for i in range(30)), SPECIAL],
    [*range(1000, 1030), 1000],
)


@FUZZ
@given(
    st.sampled_from(["P1.npy", "P4.npy", "camera_positions.npy"]),
    st.integers(0, 300),
    st.lists(st.integers(0, 8 * 300), max_size=3),
)
def test_read_p_matrices_on_damaged_files(
    p_dir: Path, name: str, cut: int, flips: list[int]
) -> None:
    with tempfile.TemporaryDirectory() as d:
        folder = Path(d)
        for f in p_dir.iterdir():
            (folder / f.name).write_bytes(f.read_bytes())
        data = (p_dir / name).read_bytes()
        (folder / name).write_bytes(flip_bits(data, flips)[:cut] if flips else data[:cut])
        try:
            calib = read_p_matrices(folder)
        except Dhp19Error as err:
            assert name in str(err)
        else:
            assert calib.P.shape == (4, 3, 4) and np.all(np.isfinite(calib.P))


AEDAT_HEADER_BYTES = len(aedat2_bytes([], []))


@settings(FUZZ, max_examples=50)
@given(
    st.sampled_from(["aedat", "aedat records", "mat", "P3.npy"]),
    st.one_of(st.none(), st.integers(0, 1 << 16)),
    st.lists(st.integers(0, 1 << 20), min_size=0, max_size=3),
)
def test_convert_recording_on_damaged_inputs(
    p_dir: Path, which: str, cut: int | None, flips: list[int]
) -> None:
    with tempfile.TemporaryDirectory() as d:
        folder = Path(d)
        calib = folder / "P_matrices"
        calib.mkdir()
        for f in p_dir.iterdir():
            (calib / f.name).write_bytes(f.read_bytes())
        aedat, mat = folder / "mov1.aedat", folder / "S1_1_1.mat"
        aedat.write_bytes(VALID_AEDAT)
        write_vicon_mat(mat, skeleton(3, 1))
        target = {"aedat": aedat, "aedat records": aedat, "mat": mat, "P3.npy": calib / "P3.npy"}
        data = target[which].read_bytes()
        if which == "aedat records":  # damage the events only, so that the header still parses
            body = flip_bits(data[AEDAT_HEADER_BYTES:], flips) if flips else b""
            data = data[:AEDAT_HEADER_BYTES] + body
        elif flips:
            data = flip_bits(data, flips)
        target[which].write_bytes(data if cut is None else data[: cut % (len(data) + 1)])
        out_dir = folder / "out"
        out = out_dir / "o.h5"
        try:
            result = convert(aedat, mat, calib, out)
        except HybridPoseError:
            assert leftovers(out_dir) == []
        else:
            assert leftovers(out_dir) == ["o.h5"]
            with Recording(out) as rec:
                for c in range(4):
                    events = all_events(out, c)
                    validate_events(events, (346, 260))
                    assert len(events) == result.events_kept[c]
                assert rec.num_labels == result.num_labels == 3


def test_stored_matrices_put_the_body_in_front_whatever_the_raw_sign(tmp_path: Path) -> None:
    # P is defined up to scale; DHP19's files may carry either sign. The stored matrix must not
    # depend on it: its sign is chosen so that the labelled body has w > 0 (our convention).
    fake = make_fake_dhp19(tmp_path / "root", movements=(1,), events_per_camera=200)
    p_files = fake.root / "P_matrices"
    for m in (1, 3):  # negate two of the four raw matrices
        np.save(p_files / f"P{m}.npy", -np.load(p_files / f"P{m}.npy"))
    out = tmp_path / "out"
    assert len(convert_dhp19(fake.root, out, progress=False).converted) == 1
    with Recording(out / "S1_session1_mov1.h5") as r:
        joints = r.labels().joints_mm.reshape(-1, 3).astype(np.float64)
        for c, m in enumerate(dhp19.CAMERA_TO_MATRIX):
            P = r.cameras[c].calibration.P
            raw = np.load(p_files / f"P{m}.npy")
            np.testing.assert_allclose(np.abs(P), np.abs(FLIP @ raw), rtol=0, atol=0)
            w = joints @ P[2, :3] + P[2, 3]
            assert np.all(w[np.isfinite(w)] > 0), f"camera {c}"
            assert r.meta.extra["cameras"][c]["labels_in_front_fraction"] == 1.0
            assert not np.isnan(project(P, joints)).all()
