"""The command line: help, inspect (text and JSON), one-line user errors without tracebacks."""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from dhp19_fixture import make_fake_dhp19, move_camera_position

from hybridpose.cli import main
from hybridpose.events import make_events
from hybridpose.io.recording import CameraCalibration, RecordingMeta, RecordingWriter


@pytest.fixture
def recording(tmp_path: Path) -> Path:
    path = tmp_path / "S13_session2_mov4.h5"
    cams = [
        CameraCalibration(np.eye(3, 4), np.array([100.0, -200.0, 3000.0]), "front"),
        CameraCalibration(np.eye(3, 4), np.array([np.nan, 0.0, 0.0]), "side"),
    ]
    meta = RecordingMeta("synthetic", subject=13, session=2, movement=4)
    with RecordingWriter(path, (346, 260), cams, meta) as w:
        # camera 0: 2001 events from 1.0 s to 3.0 s; camera 1: none
        t = np.linspace(1_000_000, 3_000_000, 2001).astype(np.int64)
        w.append_events(0, make_events(t % 346, t % 260, t, np.where(t % 2, 1, -1)))
        joints = np.ones((201, 13, 3), np.float32)
        joints[:, 0, :] = np.nan  # head missing throughout: 1/13 of the values
        w.write_labels(1_000_000 + 10_000 * np.arange(201), joints)
    return path


def test_inspect_json_has_the_documented_keys(
    recording: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["inspect", str(recording), "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["source"] == "synthetic"
    assert info["sensor"] == {"width": 346, "height": 260}
    cam0, cam1 = info["cameras"]
    assert (cam0["events"], cam0["t_start_us"], cam0["t_end_us"]) == (2001, 1_000_000, 3_000_000)
    assert cam0["event_rate_hz"] == pytest.approx(2001 / 2.0)
    assert cam0["center_mm"] == [100.0, -200.0, 3000.0]
    assert (cam1["events"], cam1["t_start_us"], cam1["t_end_us"]) == (0, None, None)
    assert cam1["center_mm"] == [None, 0.0, 0.0]
    labels = info["labels"]
    assert (labels["count"], labels["t_start_us"], labels["t_end_us"]) == (
        201,
        1_000_000,
        3_000_000,
    )
    assert labels["rate_hz"] == pytest.approx(100.0)
    assert labels["nan_fraction"] == pytest.approx(1 / 13)
    assert (info["subject"], info["session"], info["movement"]) == (13, 2, 4)
    assert info["extra"] == {}  # not converted from DHP19: what there is, here nothing


def test_inspect_json_shows_the_metadata_a_simulator_stored(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "sim.h5"
    cam = CameraCalibration(np.eye(3, 4), np.zeros(3), "cam")
    extra = {"seed": 3, "noise": {"rate_hz": 0.1, "unknown": float("nan")}}
    with RecordingWriter(path, (8, 8), [cam], RecordingMeta("synthetic", extra=extra)):
        pass
    assert main(["inspect", str(path), "--json"]) == 0
    text = capsys.readouterr().out

    def no_constants(name: str) -> None:
        raise AssertionError(f"not strict JSON: {name}")

    info = json.loads(text, parse_constant=no_constants)  # NaN is written as null
    assert info["extra"] == {"seed": 3, "noise": {"rate_hz": 0.1, "unknown": None}}
    assert info["labels"]["count"] == 0 and info["cameras"][0]["events"] == 0


def test_inspect_json_shows_the_dhp19_converter_metadata(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    fake = make_fake_dhp19(tmp_path / "dhp19", movements=(1,), events_per_camera=300)
    move_camera_position(fake.root / "P_matrices", 1, (0.0, 20.0, 0.0))  # camera 1: 20 mm
    out = tmp_path / "out"
    convert = ["convert-dhp19", "--root", str(fake.root), "--out", str(out), "--quiet"]
    assert main([*convert, "--background-filter", "--hot-pixel-filter"]) == 0
    assert "camera 1 (row 0, P1.npy): its position lies 20.0 mm" in capsys.readouterr().err
    assert main(["inspect", str(out / "S1_session1_mov1.h5"), "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["source"] == "dhp19"
    extra = info["extra"]
    rec = fake.recordings[(1, 1, 1)]
    assert extra["converter_version"] == 4
    # odd movements of the fixture have a start and a stop special: 2 specials
    assert extra["start_stop_rule"] == "2 specials: first = start"
    assert extra["special_events_us_raw"] == [rec.start_raw_us, rec.stop_raw_us]
    assert (extra["start_us_raw"], extra["stop_us_raw"]) == (rec.start_raw_us, rec.stop_raw_us)
    polarity = rec.kind == 0
    ends = extra["stream_ends_us_raw"]
    assert (ends["first_in_file"], ends["last_in_file"]) == (
        int(rec.t[polarity][0]),
        int(rec.t[polarity][-1]),
    )
    for c in range(4):
        mine = polarity & (rec.camera == c)
        before = int(np.count_nonzero(mine & (rec.t < rec.start_raw_us)))
        after = int(np.count_nonzero(mine & (rec.t > rec.stop_raw_us)))
        assert extra["dropped_before_start"][c] == before > 0
        assert extra["dropped_after_stop"][c] == after > 0
        assert extra["dropped_outside"][c] == before + after
    assert extra["hot_pixel_filter"]["threshold"] == 10_000
    assert extra["hot_pixel_filter"]["removed"] == [0, 0, 0, 0]
    background = extra["background_filter"]
    assert (background["support_us"], background["stamps"]) == (70_000, "neighbours")
    kept = [cam["events"] for cam in info["cameras"]]
    for c in range(4):  # what the crop kept is what the filters removed plus what is left
        in_window = (
            int(np.count_nonzero(polarity & (rec.camera == c))) - (extra["dropped_outside"][c])
        )
        assert in_window == background["removed"][c] + kept[c]
    positions = extra["camera_positions"]
    assert positions["distance_to_P_center_mm"] == [0.0, 20.0, 0.0, 0.0]
    assert positions["cameras_over_tolerance"] == [1] and positions["tolerance_mm"] == 10.0


def test_inspect_text(recording: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["inspect", str(recording)]) == 0
    out = capsys.readouterr().out
    assert "source synthetic  subject 13 session 2 movement 4" in out
    assert "2,001" in out and "1,000" in out  # events and rate of camera 0
    assert "201 x 13 joints" in out and "100 Hz" in out and "7.7% NaN" in out


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["inspect", "{tmp}/missing.h5"], "missing.h5: no such file"),
        (["inspect", "{tmp}/text.h5"], "text.h5: not a readable HDF5 file"),
        (["inspect", "{tmp}"], "is a directory"),
        (["convert-dhp19", "--root", "{tmp}/x", "--out", "{tmp}/o", "--workers", "0"], ">= 1"),
        (["inspect"], "required: file"),
        (["convert-dhp19", "--root", "{tmp}/nowhere", "--out", "{tmp}/o"], "nowhere"),
        (["convert-dhp19", "--root", "{tmp}/dhp19", "--out", "{tmp}/text.h5"], "text.h5"),
        (["no-such-command"], "invalid choice"),
    ],
)
def test_user_errors_are_one_line_without_traceback(
    tmp_path: Path, argv: list[str], message: str
) -> None:
    (tmp_path / "text.h5").write_text("not hdf5")
    make_fake_dhp19(tmp_path / "dhp19", movements=(1,), events_per_camera=50)
    args = [a.format(tmp=tmp_path) for a in argv]
    proc = subprocess.run(
        [sys.executable, "-m", "hybridpose", *args], capture_output=True, text=True, check=False
    )
    assert proc.returncode == 2
    assert proc.stdout == ""
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    assert message in lines[0]
    assert "Traceback" not in proc.stderr


def test_help_lists_every_subcommand_with_one_line() -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "hybridpose", "--help"], capture_output=True, text=True, check=True
    )
    lines = {line.split()[0]: line for line in proc.stdout.splitlines() if line.startswith("    ")}
    assert "show what a recording file holds" in lines["inspect"]
    assert "convert a raw DHP19 download" in lines["convert-dhp19"]


def test_convert_dhp19_through_the_cli(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    root = make_fake_dhp19(tmp_path / "dhp19", movements=(1, 2), events_per_camera=100).root
    out = tmp_path / "out"
    assert main(["convert-dhp19", "--root", str(root), "--out", str(out), "--quiet"]) == 0
    assert "2 converted, 0 skipped" in capsys.readouterr().out
    assert sorted(p.name for p in out.iterdir()) == ["S1_session1_mov1.h5", "S1_session1_mov2.h5"]
    # a damaged recording is rejected and reported, and the exit status says so
    (out / "S1_session1_mov2.h5").unlink()
    aedat = root / "DVS_movies" / "S1" / "session1" / "mov2.aedat"
    aedat.write_bytes(aedat.read_bytes()[:-3])
    assert main(["convert-dhp19", "--root", str(root), "--out", str(out), "--quiet"]) == 1
    printed = capsys.readouterr().out
    assert "0 converted, 1 skipped" in printed and "1 rejected" in printed
    assert "mov2.aedat" in printed and "truncated" in printed
    assert sorted(p.name for p in out.iterdir()) == ["S1_session1_mov1.h5"]


def test_simulate_choices_are_the_registries() -> None:
    """The CLI spells the sensor and appearance names out (importing the simulator would slow
    every command's start); they must be the simulator's own."""
    from hybridpose.cli import build_parser
    from hybridpose.synth.appearance import APPEARANCES
    from hybridpose.synth.generate import SAMPLINGS, SimulationConfig
    from hybridpose.synth.sensor import DEFAULT_SENSOR, SENSOR_REFLECTIONS, SENSORS

    commands = next(a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction))
    options = {a.dest: a for a in commands.choices["simulate"]._actions}
    assert options["sensor"].choices is not None and options["appearance"].choices is not None
    assert set(options["sensor"].choices) == set(SENSORS) == set(SENSOR_REFLECTIONS)
    assert options["sensor"].default == DEFAULT_SENSOR
    assert set(options["appearance"].choices) == set(APPEARANCES)
    assert options["appearance"].default == SimulationConfig().appearance
    assert tuple(options["sampling"].choices or ()) == SAMPLINGS
    assert options["sampling"].default == SimulationConfig().sampling == "frames"


def test_train_stage_choices_are_the_stages() -> None:
    """The CLI spells the training stages out (importing hybridpose.recipes would load torch
    for every command); they must be the recipes' own, in order."""
    from hybridpose.cli import build_parser
    from hybridpose.recipes import STAGES

    commands = next(a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction))
    options = {a.dest: a for a in commands.choices["train"]._actions}
    assert options["stage"].choices is not None
    assert tuple(options["stage"].choices) == STAGES


def test_preset_choices_are_the_presets_and_recipes() -> None:
    """The CLI spells the presets out (importing them would load torch for every command)."""
    from hybridpose.cli import build_parser
    from hybridpose.nn.presets import PRESETS
    from hybridpose.recipes import RECIPES

    commands = next(a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction))
    for command in ("model-info", "train", "reproduce"):
        options = {a.dest: a for a in commands.choices[command]._actions}
        assert tuple(options["preset"].choices or ()) == tuple(PRESETS) == tuple(RECIPES)


def test_precision_choices_are_the_trainings() -> None:
    """The CLI spells the precisions out too; train and reproduce both offer them."""
    from hybridpose.cli import build_parser
    from hybridpose.train import PRECISIONS

    commands = next(a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction))
    for command in ("train", "reproduce"):
        options = {a.dest: a for a in commands.choices[command]._actions}
        assert tuple(options["precision"].choices or ()) == PRECISIONS == ("fp32", "bf16")
        assert options["precision"].default == "fp32"
        assert options["channels_last"].default is False
