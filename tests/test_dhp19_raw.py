"""Tests of ``simulate --format dhp19-raw`` (hybridpose.synth.dhp19_raw) and its writers.

The key test converts the raw layout back with the DHP19 converter and compares the result with
the native recordings of the same seed: the same events per camera and the same labels, exactly.
The writers promoted from tests/dhp19_fixture.py (addresses, ``P_matrices``) are checked here
against hand-computed answers; the AEDAT and MAT-file writers in test_aedat.py and test_mat5.py.
"""

from __future__ import annotations

import dataclasses
import json
import re
import shutil
from pathlib import Path

import numpy as np
import pytest
from dhp19_fixture import FLIP, MATRIX_OF_CAMERA, fake_cameras, skeleton

from hybridpose.cli import main
from hybridpose.io.aedat import read_aedat2, read_aedat2_header
from hybridpose.io.dhp19 import (
    CAMERA_TO_MATRIX,
    Dhp19Error,
    convert_dhp19,
    convert_recording,
    decode_addresses,
    dhp19_cameras,
    encode_addresses,
    read_p_matrices,
    write_p_matrices,
)
from hybridpose.io.recording import Recording
from hybridpose.synth import generate, sensor
from hybridpose.synth.dhp19_raw import (
    CLOCK_START_US,
    NATIVE_DIR,
    SETTINGS_FILE,
    STRAY_MARGIN_US,
    Dhp19RawError,
    Dhp19RawSummary,
    RawOptions,
    layout_settings,
    raw_paths,
    settings_digest,
    simulate_dhp19_raw,
    write_raw_recording,
)
from hybridpose.synth.generate import PRESETS, SimulationConfig, simulate_dataset
from hybridpose.synth.scene import rig_calibrations

WRAP = 1 << 32


def fast_config(**changes: object) -> SimulationConfig:
    """One short recording at DHP19's 346x260 (about 1 s, a punch), coarsely sampled: seconds.

    Coarse sampling (thresholds 0.6, steps of 2-20 ms) makes the events unrealistic but keeps
    the test fast; the round trip does not care what the events are.
    """
    base = PRESETS["tiny"]
    config = dataclasses.replace(
        base,
        sensor_size=(346, 260),
        subjects=(1,),
        movements=(15,),  # punch straight forward left: session 3, mov 1
        performance=dataclasses.replace(
            base.performance,
            repetitions=1,
            still_s=(0.0, 0.0),
            lead_in_s=0.1,
            lead_out_s=0.1,
            speed_range=(1.4, 1.4),
            amplitude_range=(0.5, 0.5),
        ),
        min_step_us=2000.0,
        max_step_us=20000.0,
        esim=dataclasses.replace(base.esim, threshold_pos=0.6, threshold_neg=0.6, max_log_step=1.0),
    )
    return dataclasses.replace(config, **changes)  # type: ignore[arg-type]


CONFIG = fast_config()
NATIVE_NAME = "S1_session3_mov1.h5"


@pytest.fixture(scope="module")
def raw(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Dhp19RawSummary]:
    root = tmp_path_factory.mktemp("raw") / "root"
    return root, simulate_dhp19_raw(root, CONFIG, progress=False)


def all_events(rec: Recording, camera: int) -> np.ndarray:
    return rec.events_slice(camera, 0, rec.cameras[camera].num_events)


def assert_same_content(native: Path, converted: Path) -> None:
    """Events per camera and labels exactly equal, calibration equal up to rounding."""
    with Recording(native) as a, Recording(converted) as b:
        assert b.sensor_size == a.sensor_size == (346, 260)
        assert (b.meta.subject, b.meta.session, b.meta.movement) == (
            a.meta.subject,
            a.meta.session,
            a.meta.movement,
        )
        for c in range(4):
            events = all_events(a, c)
            assert len(events) > 1000
            np.testing.assert_array_equal(all_events(b, c), events)
            np.testing.assert_allclose(
                b.cameras[c].calibration.P, a.cameras[c].calibration.P, rtol=0, atol=1e-9
            )
            center = a.cameras[c].calibration.center
            np.testing.assert_array_equal(b.cameras[c].calibration.center, center)
        la, lb = a.labels(), b.labels()
        np.testing.assert_array_equal(lb.t_us, la.t_us)
        assert lb.joints_mm.dtype == la.joints_mm.dtype == np.float32
        np.testing.assert_array_equal(lb.joints_mm, la.joints_mm)  # float32 -> f64 -> f32


# ------------------------------------------------------------------------ the round trip
def test_converting_the_raw_layout_gives_back_the_h5_output(
    raw: tuple[Path, Dhp19RawSummary], tmp_path: Path
) -> None:
    root, summary = raw
    assert not summary.any_failed and summary.calibration_written
    aedat, vicon = raw_paths(root, 1, 3, 1)
    assert summary.written == [aedat] and vicon.is_file()
    assert sorted(p.name for p in (root / "P_matrices").iterdir()) == [
        "P1.npy",
        "P2.npy",
        "P3.npy",
        "P4.npy",
        "camera_positions.npy",
    ]
    # the h5 output of the same seed, simulated on its own (the staged copy must equal it)
    h5 = simulate_dataset(tmp_path / "h5", CONFIG, progress=False)
    assert [r.path.name for r in h5.written] == [NATIVE_NAME]

    converted = convert_dhp19(root, tmp_path / "converted", progress=False)  # filters off
    assert converted.rejected == [] and len(converted.converted) == 1
    assert_same_content(h5.written[0].path, converted.converted[0])
    assert_same_content(root / NATIVE_DIR / NATIVE_NAME, converted.converted[0])
    with Recording(converted.converted[0]) as rec:
        extra = rec.meta.extra
    assert extra["start_stop_rule"] == "2 specials: first = start"
    assert extra["dropped_outside"] == [0, 0, 0, 0]
    start = extra["start_us_raw"]
    assert CLOCK_START_US[0] <= start < CLOCK_START_US[1]
    assert extra["special_events_us_raw"] == [start, extra["stop_us_raw"]]


def test_the_aedat_file_by_its_bits(raw: tuple[Path, Dhp19RawSummary]) -> None:
    # checked on the raw records, without the converter: flipped pixels, camera ids, specials
    root, _ = raw
    aedat, _ = raw_paths(root, 1, 3, 1)
    addresses, t = read_aedat2(aedat)
    fields = decode_addresses(addresses)
    assert np.all(np.diff(t.astype(np.int64)) >= 0)  # one time order, no wrap
    special = np.flatnonzero(fields.is_special)
    assert len(special) == 2 and special[0] == 0  # the start comes first
    start, stop = (int(v) for v in t[special])
    with Recording(root / NATIVE_DIR / NATIVE_NAME) as rec:
        assert stop - start == rec.num_labels * 10_000
        for c in range(4):
            events = all_events(rec, c)
            mine = fields.is_polarity & (fields.camera == c)
            np.testing.assert_array_equal(fields.x[mine], 345 - events["x"].astype(np.int64))
            np.testing.assert_array_equal(fields.y[mine], 259 - events["y"].astype(np.int64))
            np.testing.assert_array_equal(fields.p[mine], events["p"])
            np.testing.assert_array_equal(t[mine].astype(np.int64) - start, events["t"])
    header = read_aedat2_header(aedat)
    digest = settings_digest(layout_settings(CONFIG, RawOptions()))
    assert header[0] == "#!AER-DAT2.0"
    assert f"# hybridpose-dhp19-raw settings {digest}" in header


@pytest.mark.parametrize(
    ("wrap", "strays"), [(False, 7), (True, 0), (True, 9)], ids=["strays", "wrap", "both"]
)
def test_strays_are_dropped_and_the_wrap_is_undone(
    raw: tuple[Path, Dhp19RawSummary], tmp_path: Path, wrap: bool, strays: int
) -> None:
    native = raw[0] / NATIVE_DIR / NATIVE_NAME
    root = tmp_path / "root"
    options = RawOptions(wrap_timestamps=wrap, stray_events=strays)
    written = write_raw_recording(native, root, options, seed=5)
    write_p_matrices(root / "P_matrices", rig_calibrations(CONFIG.sensor_size, CONFIG.rig))
    assert sum(written.strays_before) == (strays + 1) // 2
    assert sum(written.strays_after) == strays // 2
    assert written.wraps == wrap and written.specials == 2

    _, raw_t = read_aedat2(written.aedat)
    steps = np.diff(raw_t.astype(np.int64))
    assert int(np.count_nonzero(steps < -(1 << 31))) == int(wrap)  # the counter wraps once
    assert int(np.count_nonzero(steps < 0)) == int(wrap)  # and the file is otherwise in order
    if wrap:
        start = written.start_us
        with Recording(native) as rec:
            duration = rec.num_labels * 10_000
        assert start < WRAP < start + duration  # it wraps inside [start, stop]
        assert start + duration // 4 <= WRAP <= start + 3 * duration // 4

    result = convert_recording(
        written.aedat,
        written.vicon,
        root / "P_matrices",
        tmp_path / "out.h5",
        subject=1,
        session=3,
        movement=1,
    )
    assert (result.start_us, result.stop_us) == (written.start_us, written.stop_us)
    expected = [a + b for a, b in zip(written.strays_before, written.strays_after, strict=True)]
    assert list(result.dropped_outside) == expected
    assert result.stray_dropped == (0, 0, 0, 0) and result.specials == 2
    assert_same_content(native, tmp_path / "out.h5")


def test_strays_lie_within_the_margin(raw: tuple[Path, Dhp19RawSummary], tmp_path: Path) -> None:
    native = raw[0] / NATIVE_DIR / NATIVE_NAME
    written = write_raw_recording(native, tmp_path, RawOptions(stray_events=200), seed=1)
    addresses, t = read_aedat2(written.aedat)
    fields = decode_addresses(addresses)
    t64 = t.astype(np.int64)
    outside = fields.is_polarity & ((t64 < written.start_us) | (t64 > written.stop_us))
    assert int(outside.sum()) == 200
    assert t64[outside].min() >= written.start_us - STRAY_MARGIN_US
    assert t64[outside].max() <= written.stop_us + STRAY_MARGIN_US
    assert set(fields.camera[outside].tolist()) == {0, 1, 2, 3}


def test_the_seed_decides_the_clock(raw: tuple[Path, Dhp19RawSummary], tmp_path: Path) -> None:
    native = raw[0] / NATIVE_DIR / NATIVE_NAME
    a = write_raw_recording(native, tmp_path / "a", seed=3)
    b = write_raw_recording(native, tmp_path / "b", seed=3)
    c = write_raw_recording(native, tmp_path / "c", seed=4)
    assert a.aedat.read_bytes() == b.aedat.read_bytes()
    assert a.vicon.read_bytes() == b.vicon.read_bytes()
    assert a.start_us != c.start_us


# ------------------------------------------------------------------------ resume, refusals
def file_state(root: Path) -> dict[str, tuple[int, bytes]]:
    return {
        p.relative_to(root).as_posix(): (p.stat().st_mtime_ns, p.read_bytes())
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


@pytest.fixture
def root_copy(raw: tuple[Path, Dhp19RawSummary], tmp_path: Path) -> Path:
    """A copy of the module's finished root, for a test to change."""
    root = tmp_path / "root"
    shutil.copytree(raw[0], root)
    return root


def test_resume_with_the_same_settings_is_a_no_op(root_copy: Path) -> None:
    root = root_copy
    before = file_state(root)
    again = simulate_dhp19_raw(root, CONFIG, progress=False)
    assert again.simulation.skipped == [root / NATIVE_DIR / NATIVE_NAME]
    assert again.simulation.written == [] and again.written == [] and not again.any_failed
    assert again.skipped == [raw_paths(root, 1, 3, 1)[0]]
    assert not again.calibration_written
    assert "skipped 1 already written" in again.describe()
    assert file_state(root) == before


def test_an_unfinished_recording_is_written_again(root_copy: Path) -> None:
    root = root_copy
    before = file_state(root)
    aedat, vicon = raw_paths(root, 1, 3, 1)
    aedat.unlink()  # killed before the .aedat, which is written last
    (root / "P_matrices" / "P2.npy").unlink()
    again = simulate_dhp19_raw(root, CONFIG, progress=False)
    assert again.written == [aedat] and again.calibration_written
    after = file_state(root)
    assert {k: v[1] for k, v in after.items()} == {k: v[1] for k, v in before.items()}
    mat = vicon.relative_to(root).as_posix()
    assert after[mat][0] > before[mat][0]  # rewritten, with the same bytes


@pytest.mark.parametrize("folder", ["DVS_movies", "Vicon_data", "P_matrices"])
def test_a_download_without_our_settings_is_refused(tmp_path: Path, folder: str) -> None:
    (tmp_path / folder).mkdir()
    message = rf"^{re.escape(str(tmp_path))}: holds a DHP19 download \({folder}/\) without "
    with pytest.raises(Dhp19RawError, match=message):
        simulate_dhp19_raw(tmp_path, CONFIG, progress=False)
    assert sorted(p.name for p in tmp_path.iterdir()) == [folder]  # nothing written


@pytest.mark.parametrize(
    ("config", "options", "difference"),
    [
        (fast_config(seed=1), RawOptions(), "simulation.seed: 0 -> 1"),
        (CONFIG, RawOptions(stray_events=3), "raw.stray_events: 0 -> 3"),
        (CONFIG, RawOptions(wrap_timestamps=True), "raw.wrap_timestamps: False -> True"),
    ],
)
def test_a_root_with_other_settings_is_refused(
    tmp_path: Path, config: SimulationConfig, options: RawOptions, difference: str
) -> None:
    settings = tmp_path / SETTINGS_FILE
    settings.write_text(json.dumps(layout_settings(CONFIG, RawOptions())))
    (tmp_path / "DVS_movies").mkdir()
    with pytest.raises(Dhp19RawError) as info:
        simulate_dhp19_raw(tmp_path, config, progress=False, options=options)
    text = str(info.value)
    assert text.startswith(f"{tmp_path}: holds a DHP19 raw layout made with other settings")
    assert difference in text and "\n" not in text
    assert not (tmp_path / NATIVE_DIR).exists()


def test_an_unreadable_settings_file_is_refused(tmp_path: Path) -> None:
    (tmp_path / SETTINGS_FILE).write_text("{not json")
    with pytest.raises(Dhp19RawError, match=rf"{SETTINGS_FILE}: cannot be read"):
        simulate_dhp19_raw(tmp_path, CONFIG, progress=False)


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"stray_events": -1}, r"stray_events must lie in 0-1000000, got -1"),
        ({"stray_events": 1_000_001}, r"stray_events must lie in 0-1000000, got 1000001"),
        ({"stray_events": 2.5}, r"stray_events must be a whole number, got 2\.5"),
        ({"stray_events": True}, r"stray_events must be a whole number, got True"),
        ({"wrap_timestamps": "yes"}, r"wrap_timestamps must be True or False, got 'yes'"),
    ],
)
def test_bad_options_are_refused(changes: dict[str, object], message: str) -> None:
    with pytest.raises(Dhp19RawError, match=message):
        RawOptions(**changes)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("config", "message"),
    [
        (PRESETS["tiny"], r"needs DHP19's 346x260 sensor, got 87x65: use --resolution 346x260"),
        (fast_config(label_rate_hz=50.0), r"needs labels at 100 Hz \(Vicon\), got 50 Hz"),
    ],
)
def test_settings_the_layout_cannot_hold_are_refused(
    tmp_path: Path, config: SimulationConfig, message: str
) -> None:
    with pytest.raises(Dhp19RawError, match=message):
        simulate_dhp19_raw(tmp_path / "root", config, progress=False)
    assert not (tmp_path / "root").exists()


# ------------------------------------------------------------------------ the command line
def test_simulate_command_writes_a_root_that_convert_dhp19_reads(
    raw: tuple[Path, Dhp19RawSummary],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    # the command's tiny preset and davis346 sensor become CONFIG's, and the native recording
    # is staged already (a resumed run), so only the raw files are written: fast
    monkeypatch.setitem(generate.PRESETS, "tiny", CONFIG)
    monkeypatch.setitem(sensor.SENSORS, "davis346", CONFIG.esim)
    root, out = tmp_path / "root", tmp_path / "converted"
    shutil.copytree(raw[0] / NATIVE_DIR, root / NATIVE_DIR)
    args = ["simulate", "--preset", "tiny", "--format", "dhp19-raw", "--wrap-timestamps"]
    args += ["--stray-events", "4", "--out", str(root), "--quiet"]
    assert main(args) == 0
    printed = capsys.readouterr().out
    assert "skipped 1 finished" in printed
    assert "DHP19 raw layout: wrote 1 recording(s)" in printed
    stored = json.loads((root / SETTINGS_FILE).read_text())
    assert stored["raw"] == {"wrap_timestamps": True, "stray_events": 4}
    assert stored["simulation"]["seed"] == 0 and stored["simulation"]["sensor_size"] == [346, 260]
    assert main(["convert-dhp19", "--root", str(root), "--out", str(out), "--quiet"]) == 0
    assert "1 converted" in capsys.readouterr().out
    assert_same_content(root / NATIVE_DIR / NATIVE_NAME, out / NATIVE_NAME)
    with Recording(out / NATIVE_NAME) as rec:
        assert sum(rec.meta.extra["dropped_outside"]) == 4
        assert rec.meta.extra["stop_us_raw"] > WRAP > rec.meta.extra["start_us_raw"]


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--stray-events", "3"], "--stray-events: only with --format dhp19-raw"),
        (["--wrap-timestamps"], "--wrap-timestamps: only with --format dhp19-raw"),
        (["--format", "h5", "--stray-events", "0"], "--stray-events: only with --format"),
        (["--format", "dhp19-raw"], "needs DHP19's 346x260 sensor, got 87x65"),
        (["--format", "raw"], "argument --format: invalid choice: 'raw'"),
        (["--format", "dhp19-raw", "--stray-events", "-2"], "argument --stray-events: expected"),
    ],
)
def test_simulate_command_refuses_bad_format_options(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], extra: list[str], message: str
) -> None:
    out = tmp_path / "out"
    args = ["simulate", "--preset", "tiny", "--out", str(out), "--quiet", *extra]
    try:
        status = main(args)
    except SystemExit as exit_info:  # argparse's own errors
        status = int(str(exit_info.code))
    assert status == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and message in lines[0]
    assert not out.exists()


# ------------------------------------------------------------------------ promoted writers
def test_encode_addresses_known_answers() -> None:
    # by hand: y << 22 | x << 12 | on << 11 | special << 10 | camera, APS flag bit 31
    assert int(encode_addresses(5, 7, 1, 2)) == 0x01C05802
    assert int(encode_addresses(345, 259, -1, 3)) == (259 << 22) | (345 << 12) | 3 == 0x40D59003
    assert int(encode_addresses(0, 0, False, 0, special=True)) == 0x400
    assert int(encode_addresses(1023, 511, True, 15, aps=True)) == 0xFFFFF80F
    got = encode_addresses([0, 1], [2, 3], np.array([1, -1]), 1, special=[False, True])
    assert got.dtype == np.uint32 and got.tolist() == [0x00800801, 0x00C01401]


def test_encode_addresses_inverts_decode() -> None:
    rng = np.random.default_rng(0)
    x, y, c = rng.integers(0, 1024, 500), rng.integers(0, 512, 500), rng.integers(0, 16, 500)
    p = rng.choice([-1, 1], 500)
    kind = rng.integers(0, 3, 500)  # polarity, special, APS
    d = decode_addresses(encode_addresses(x, y, p, c, special=kind == 1, aps=kind == 2))
    assert d.x.tolist() == x.tolist() and d.y.tolist() == y.tolist()
    assert d.p.tolist() == p.tolist() and d.camera.tolist() == c.tolist()
    assert d.is_polarity.tolist() == (kind == 0).tolist()
    assert d.is_special.tolist() == (kind == 1).tolist()


@pytest.mark.parametrize(
    ("args", "message"),
    [
        ((1024, 0, 1, 0), r"field x must lie in 0-1023, got 1024"),
        ((0, -1, 1, 0), r"field y must lie in 0-511, got -1"),
        ((0, 0, 1, 16), r"field camera must lie in 0-15, got 16"),
        ((0.5, 0, 1, 0), r"field x must be whole numbers, got float64"),
    ],
)
def test_encode_addresses_refuses_fields_out_of_range(
    args: tuple[float, int, int, int], message: str
) -> None:
    with pytest.raises(Dhp19Error, match=message):
        encode_addresses(*args)


def test_write_p_matrices_known_answer_and_round_trip(tmp_path: Path) -> None:
    cameras = fake_cameras()
    p_dir = write_p_matrices(tmp_path / "P_matrices", cameras)
    positions = np.load(p_dir / "camera_positions.npy")
    for c, cam in enumerate(cameras):
        m = MATRIX_OF_CAMERA[c]  # the fixture's own statement of DHP19's mapping
        assert m == CAMERA_TO_MATRIX[c]
        stored = np.load(p_dir / f"P{m}.npy")
        assert stored.dtype == np.float64 and stored.shape == (3, 4)
        # DHP19's frame: v' = 260 w - v, by hand on each row
        np.testing.assert_array_equal(stored[0], cam.P[0])
        np.testing.assert_allclose(stored[1], 260.0 * cam.P[2] - cam.P[1], rtol=1e-14)
        np.testing.assert_array_equal(stored[2], cam.P[2])
        np.testing.assert_array_equal(stored, FLIP @ cam.P)
        np.testing.assert_array_equal(positions[m - 1], cam.center)
    back = dhp19_cameras(read_p_matrices(p_dir), skeleton(20, 1))
    for cam, got in zip(cameras, back, strict=True):
        np.testing.assert_allclose(got.P, cam.P, rtol=1e-12, atol=1e-9)
        np.testing.assert_array_equal(got.center, cam.center)
    assert not list(p_dir.glob(".*.tmp"))


def test_write_p_matrices_needs_four_cameras(tmp_path: Path) -> None:
    with pytest.raises(Dhp19Error, match="DHP19 has 4 cameras, got 3"):
        write_p_matrices(tmp_path, fake_cameras()[:3])
