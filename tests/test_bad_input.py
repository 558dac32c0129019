"""Bad input as a user gives it: each is refused with one line naming the path or argument,
before any work, and leaves nothing behind."""

from __future__ import annotations

import errno
import tempfile
from pathlib import Path

import h5py
import numpy as np
import pytest
import torch

from hybridpose.atomic import atomic_write
from hybridpose.checkpoint import CheckpointError, load_checkpoint
from hybridpose.cli import main
from hybridpose.devices import DeviceError
from hybridpose.errors import describe_error
from hybridpose.evaluate import EvalSpec, evaluate
from hybridpose.events import make_events
from hybridpose.io.recording import CameraCalibration, Recording, RecordingMeta, RecordingWriter
from hybridpose.synth.video import VideoError, video_to_events
from hybridpose.train import make_spec, train

MISSING_DEVICES = ["cuda:64", "bogus"]  # no machine has 65 GPUs; not a device type at all


def one_error_line(capsys: pytest.CaptureFixture[str]) -> str:
    """The single line a refused command printed on stderr (and nothing on stdout)."""
    captured = capsys.readouterr()
    lines = captured.err.strip().splitlines()
    assert len(lines) == 1, captured.err
    assert captured.out == ""
    return lines[0]


def write_recording(path: Path) -> Path:
    K = np.array([[50.0, 0, 31.5], [0, 50.0, 23.5], [0, 0, 1]])
    P = K @ np.hstack([np.eye(3), [[0.0], [0.0], [1000.0]]])
    with RecordingWriter(
        path, (64, 48), [CameraCalibration(P, np.zeros(3))], RecordingMeta(source="test")
    ) as w:
        w.append_events(0, make_events(x=[10, 20], y=[5, 6], t=[900_000, 990_000], p=[1, -1]))
        w.write_labels([1_000_000], np.zeros((1, 13, 3)))
    return path


# ------------------------------------------------------------------------------ --device


@pytest.mark.parametrize("device", MISSING_DEVICES)
def test_cli_train_refuses_a_missing_device_before_any_work(
    tmp_path: Path, device: str, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "out"
    argv = ["train", "--stage", "ann", "--preset", "cpu", "--data", str(tmp_path / "nowhere")]
    assert main([*argv, "--out", str(out), "--device", device, "--quiet"]) == 2
    line = one_error_line(capsys)
    assert f"--device {device}: " in line and "this machine has" in line and "cpu" in line
    assert not out.exists()


@pytest.mark.parametrize("device", MISSING_DEVICES)
def test_cli_evaluate_refuses_a_missing_device_before_any_work(
    tmp_path: Path, device: str, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "out"
    argv = ["evaluate", "--checkpoints", str(tmp_path), "--data", str(tmp_path)]
    assert main([*argv, "--out", str(out), "--device", device, "--quiet"]) == 2
    line = one_error_line(capsys)
    assert f"--device {device}: " in line and "this machine has" in line
    assert not out.exists()


@pytest.mark.parametrize("device", MISSING_DEVICES)
def test_library_train_and_evaluate_refuse_a_missing_device(tmp_path: Path, device: str) -> None:
    spec = make_spec("ann", "cpu", tmp_path / "nowhere", tmp_path / "out", device=device)
    with pytest.raises(DeviceError, match=f"--device {device}: "):
        train(spec, progress=False)
    with pytest.raises(DeviceError, match=f"--device {device}: "):
        evaluate(EvalSpec(tmp_path, tmp_path, tmp_path / "out", device=device), progress=False)
    assert not (tmp_path / "out").exists()


# ------------------------------------------------------------------------------ --out


@pytest.mark.parametrize(
    "argv",
    [
        ["train", "--stage", "ann", "--preset", "cpu", "--data", "{tmp}", "--quiet"],
        ["evaluate", "--checkpoints", "{tmp}", "--data", "{tmp}", "--quiet"],
        ["reproduce", "--quiet"],
    ],
)
def test_out_directory_that_is_a_file_is_refused_like_simulate(
    tmp_path: Path, argv: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    taken = tmp_path / "taken"
    taken.write_text("mine")
    args = [a.format(tmp=tmp_path) for a in argv]
    assert main([*args, "--out", str(taken)]) == 2
    assert one_error_line(capsys).endswith(f": error: {taken}: exists and is not a directory")
    assert taken.read_text() == "mine"


def test_plot_events_into_a_file_that_is_no_directory(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    rec = write_recording(tmp_path / "r.h5")
    taken = tmp_path / "taken"
    taken.write_text("mine")
    assert main(["plot-events", str(rec), "--out", str(taken / "f.png")]) == 2
    assert one_error_line(capsys).endswith(f": error: {taken}: exists and is not a directory")


def test_plot_events_refuses_a_format_it_cannot_write_and_creates_nothing(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    rec = write_recording(tmp_path / "r.h5")
    out = tmp_path / "new" / "x.txt"
    assert main(["plot-events", str(rec), "--out", str(out)]) == 2
    line = one_error_line(capsys)
    assert line.endswith(f"{out}: the file name must end in .png or .pdf or .svg")
    assert not (tmp_path / "new").exists()


def test_plot_events_onto_a_directory_names_the_users_path(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    rec = write_recording(tmp_path / "r.h5")
    folder = tmp_path / "f.png"
    folder.mkdir()
    assert main(["plot-events", str(rec), "--out", str(folder)]) == 2
    line = one_error_line(capsys)
    assert line.endswith(f"{folder}: is a directory") and ".tmp" not in line
    assert sorted(p.name for p in tmp_path.iterdir()) == ["f.png", "r.h5"]


# ------------------------------------------------------------------------------ atomic


def test_atomic_write_onto_a_directory_names_the_target(tmp_path: Path) -> None:
    target = tmp_path / "p.png"
    target.mkdir()
    with pytest.raises(IsADirectoryError) as info, atomic_write(target) as f:
        f.write(b"x")
    assert info.value.filename == str(target) and info.value.errno == errno.EISDIR
    assert info.value.strerror == "Is a directory"
    assert list(tmp_path.iterdir()) == [target]


def test_atomic_write_that_cannot_make_its_temp_names_the_target(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    target = tmp_path / "v.bin"

    def read_only(dir: str, prefix: str, suffix: str) -> tuple[int, str]:
        raise OSError(errno.EROFS, "Read-only file system", f"{dir}/{prefix}k3j_x{suffix}")

    monkeypatch.setattr(tempfile, "mkstemp", read_only)
    with pytest.raises(OSError, match="Read-only") as info, atomic_write(target):
        pass
    assert info.value.filename == str(target) and info.value.errno == errno.EROFS


def test_atomic_write_keeps_other_errors_as_they_are(tmp_path: Path) -> None:
    other = FileNotFoundError(errno.ENOENT, "No such file or directory", "/elsewhere.tmp")
    with pytest.raises(FileNotFoundError) as info, atomic_write(tmp_path / "a.bin"):
        raise other
    assert info.value is other


def _camera() -> CameraCalibration:
    P = np.array([[10.0, 0, 4, 0], [0, 10.0, 4, 0], [0, 0, 1.0, 1000.0]])
    return CameraCalibration(P, np.array([0.0, 0.0, -1000.0]), "cam0")


def test_recording_writer_that_cannot_make_its_temp_names_the_target(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    target = tmp_path / "v.h5"

    def read_only(dir: str, prefix: str, suffix: str) -> tuple[int, str]:
        raise OSError(errno.EROFS, "Read-only file system", f"{dir}/{prefix}vm1{suffix}")

    monkeypatch.setattr(tempfile, "mkstemp", read_only)
    with pytest.raises(OSError, match="Read-only") as info:
        RecordingWriter(target, (8, 8), [_camera()], RecordingMeta("test"))
    assert info.value.filename == str(target) and info.value.errno == errno.EROFS


def test_recording_writer_names_the_target_when_hdf5_cannot_create_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    target = tmp_path / "v.h5"

    def refuse(name: str, *args: object, **kwargs: object) -> object:
        # h5py's own wording: the name, errno and reason inside the message
        raise OSError(
            f"Unable to synchronously create file (unable to open file: name = '{name}', "
            "errno = 30, error message = 'Read-only file system', flags = 13, o_flags = 242)"
        )

    monkeypatch.setattr(h5py, "File", refuse)
    with pytest.raises(OSError) as info:
        RecordingWriter(target, (8, 8), [_camera()], RecordingMeta("test"))
    assert describe_error(info.value) == f"{target}: Read-only file system"
    assert not list(tmp_path.iterdir())  # the temporary file is gone


# ------------------------------------------------------------------------------ video-to-events


def test_video_to_events_refuses_an_existing_out_unless_overwrite(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    stack = tmp_path / "v.npy"
    np.save(stack, np.random.default_rng(0).integers(0, 255, (3, 16, 16), np.uint8))
    out = tmp_path / "o.h5"
    out.write_bytes(b"earlier")
    argv = ["video-to-events", str(stack), "--out", str(out), "--fps", "30", "--quiet"]
    assert main(argv) == 2
    line = one_error_line(capsys)
    assert line.endswith(f"{out}: exists; pass --overwrite to replace it, or use another --out")
    assert out.read_bytes() == b"earlier"
    assert main([*argv, "--overwrite"]) == 0
    with Recording(out) as rec:
        assert rec.cameras[0].num_events > 0


def test_video_to_events_refuses_a_one_frame_video_and_writes_nothing(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    stack = tmp_path / "one.npy"
    np.save(stack, np.zeros((1, 16, 16), np.uint8))
    out = tmp_path / "o.h5"
    with pytest.raises(VideoError, match=r"one\.npy: needs at least 2 frames to make events"):
        video_to_events(stack, out, fps=30.0, progress=False)
    argv = ["video-to-events", str(stack), "--out", str(out), "--fps", "30", "--quiet"]
    assert main(argv) == 2
    assert "needs at least 2 frames" in one_error_line(capsys)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["one.npy"]


# ------------------------------------------------------------------------------ train --resume


def test_train_resume_without_a_checkpoint_says_it_starts_from_scratch(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    import hybridpose.train as training

    calls: list[bool] = []

    def fake_train(spec: object, *, resume: bool, progress: bool) -> Path:
        calls.append(resume)
        return tmp_path / "out" / "ann.pt"

    monkeypatch.setattr(training, "train", fake_train)
    monkeypatch.setattr(training, "checkpoint_summary", lambda path: f"trained {path.name}")
    argv = ["train", "--stage", "ann", "--preset", "cpu", "--data", str(tmp_path)]
    argv += ["--out", str(tmp_path / "out"), "--quiet", "--resume"]
    assert main(argv) == 0
    captured = capsys.readouterr()
    expected = (
        f"hybridpose train: nothing to resume ({tmp_path / 'out' / 'ann.pt'} does not exist); "
        "training starts from scratch"
    )
    assert captured.err.strip().splitlines() == [expected]
    assert calls == [True]
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "ann.pt").write_bytes(b"a run to continue")
    assert main(argv) == 0
    assert capsys.readouterr().err == ""  # something to resume: nothing to say


# ------------------------------------------------------------------------------ checkpoints


@pytest.mark.parametrize("damage", ["truncated", "random"])
def test_a_damaged_checkpoint_is_one_short_line_without_unsafe_advice(
    tmp_path: Path, damage: str
) -> None:
    path = tmp_path / f"{damage}.pt"
    torch.save({"model": {"w": torch.zeros(1000)}}, path)
    whole = path.read_bytes()
    if damage == "truncated":
        path.write_bytes(whole[: len(whole) // 2])
    else:
        path.write_bytes(np.random.default_rng(1).bytes(len(whole)))
    with pytest.raises(CheckpointError) as info:
        load_checkpoint(path)
    message = str(info.value)
    assert message.startswith(f"{path}: ") and "\n" not in message
    assert len(message) < 200, message
    assert "weights_only" not in message
