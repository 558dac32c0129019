"""Video to events: reading videos, image folders and .npy stacks, conversion, the CLI command."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import av
import numpy as np
import numpy.typing as npt
import pytest
from PIL import Image

from hybridpose.cli import main
from hybridpose.events import Events
from hybridpose.io.recording import Recording
from hybridpose.synth.esim import EsimConfig
from hybridpose.synth.video import (
    VideoError,
    read_frames,
    srgb_to_linear,
    to_luminance,
    video_to_events,
)

T, H, W = 30, 24, 32
QUIET = EsimConfig(noise_rate_hz=0.0, hot_pixel_fraction=0.0)
Frames = npt.NDArray[np.uint8]


def moving_square() -> Frames:
    """(T, H, W, 3) sRGB frames: a bright 8x8 square moving 1 px per frame over a dark field."""
    frames = np.full((T, H, W, 3), 10, np.uint8)
    for k in range(T):
        frames[k, 8:16, 2 + k // 2 : 10 + k // 2] = (230, 200, 180)
    return frames


def changed_pixels(frames: Frames) -> set[tuple[int, int]]:
    """(x, y) of every pixel whose value changes between two consecutive frames."""
    changed = np.any(np.diff(frames.astype(np.int16), axis=0) != 0, axis=(0, 3))
    ys, xs = np.nonzero(changed)
    return set(zip(xs.tolist(), ys.tolist(), strict=True))


def event_pixels(events: Events) -> set[tuple[int, int]]:
    return set(zip(events["x"].tolist(), events["y"].tolist(), strict=True))


def write_video(path: Path, frames: Frames, fps: int = 30) -> Path:
    """A lossless (FFV1, RGB) Matroska video of the frames."""
    with av.open(str(path), "w") as container:
        stream = container.add_stream("ffv1", rate=fps)
        stream.width, stream.height, stream.pix_fmt = W, H, "bgr0"
        for image in frames:
            for packet in stream.encode(av.VideoFrame.from_ndarray(image, format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return path


def write_pngs(folder: Path, frames: Frames) -> Path:
    folder.mkdir()
    for k, image in enumerate(frames):
        Image.fromarray(image).save(folder / f"frame_{k:04d}.png")
    return folder


def read_events(path: Path) -> Events:
    with Recording(path) as rec:
        return rec.events_slice(0, 0, rec.cameras[0].num_events)


@pytest.fixture
def frames() -> Frames:
    return moving_square()


@pytest.fixture
def video(tmp_path: Path, frames: Frames) -> Path:
    return write_video(tmp_path / "square.mkv", frames)


# ------------------------------------------------------------------------------ conversion
def test_video_events_follow_the_square(tmp_path: Path, video: Path, frames: Frames) -> None:
    out = tmp_path / "out.h5"
    summary = video_to_events(video, out, config=QUIET, seed=1, progress=False)
    events = read_events(out)
    assert summary.events == len(events) > 1000
    assert summary.frames == T and summary.sensor_size == (W, H)
    assert event_pixels(events) == changed_pixels(frames)  # along the path and nowhere else
    # Matroska stores milliseconds: the last frame is at 967 ms
    assert summary.duration_s == pytest.approx(0.967)
    assert 0 <= events["t"].min() < 100_000
    assert 900_000 < events["t"].max() <= 967_000
    assert set(np.unique(events["p"]).tolist()) == {-1, 1}
    with Recording(out) as rec:
        assert rec.sensor_size == (W, H)
        assert rec.meta.source == "video-to-events"
        extra = rec.meta.extra
        assert extra["input"] == "square.mkv" and extra["fps"] == 30.0
        assert extra["fps_given"] is False and extra["seed"] == 1
        assert extra["esim"]["noise_rate_hz"] == 0.0
        assert extra["esim"]["threshold_pos"] == 0.25
        P = rec.cameras[0].calibration.P
        np.testing.assert_array_equal(
            P, [[32.0, 0.0, 15.5, 0.0], [0.0, 32.0, 11.5, 0.0], [0.0, 0.0, 1.0, 0.0]]
        )
        assert np.all(np.isnan(rec.cameras[0].calibration.center))


def test_video_folder_and_npy_give_the_same_events(
    tmp_path: Path, video: Path, frames: Frames
) -> None:
    folder = write_pngs(tmp_path / "pngs", frames)
    stack = tmp_path / "stack.npy"
    np.save(stack, frames)
    results = []
    for source in (video, folder, stack):
        out = tmp_path / f"{source.stem}.h5"
        video_to_events(source, out, fps=30.0, config=QUIET, seed=2, progress=False)
        results.append(read_events(out))
    assert len(results[0]) > 1000
    for other in results[1:]:
        np.testing.assert_array_equal(other, results[0])
    # fps timestamps: frame 29 at 29/30 s
    assert 900_000 < results[0]["t"].max() <= 966_666


def test_fps_overrides_the_video_timestamps(tmp_path: Path, video: Path, frames: Frames) -> None:
    out = tmp_path / "fast.h5"
    summary = video_to_events(video, out, fps=60.0, config=QUIET, progress=False)
    events = read_events(out)
    assert summary.duration_s == pytest.approx(29 / 60)
    assert 450_000 < events["t"].max() <= 483_333
    assert event_pixels(events) == changed_pixels(frames)
    with Recording(out) as rec:
        assert rec.meta.extra["fps"] == 60.0 and rec.meta.extra["fps_given"] is True


def test_chunk_size_does_not_change_the_events(tmp_path: Path, frames: Frames) -> None:
    stack = tmp_path / "stack.npy"
    np.save(stack, frames)
    results = []
    for chunk in (1, 7, 64):
        out = tmp_path / f"chunk{chunk}.h5"
        video_to_events(stack, out, fps=30.0, config=QUIET, chunk_frames=chunk, progress=False)
        results.append(read_events(out))
    np.testing.assert_array_equal(results[0], results[1])
    np.testing.assert_array_equal(results[0], results[2])


def test_a_static_video_with_noise_gives_only_noise(tmp_path: Path) -> None:
    stack = tmp_path / "static.npy"
    np.save(stack, np.full((11, 100, 100), 128, np.uint8))
    config = EsimConfig(noise_rate_hz=100.0, hot_pixel_fraction=0.0)
    summary = video_to_events(stack, tmp_path / "o.h5", fps=10.0, config=config, progress=False)
    expected = 100.0 * 100 * 100 * 1.0  # 1 s of 1e4 pixels at 100 Hz
    assert abs(summary.events - expected) < 5 * np.sqrt(expected)


def test_a_failed_conversion_leaves_no_file(tmp_path: Path, frames: Frames) -> None:
    bad = frames.astype(np.float32) / 255
    bad[20, 0, 0, 0] = 2.0  # out of range: found only at frame 20, after chunks were written
    stack = tmp_path / "bad.npy"
    np.save(stack, bad)
    out = tmp_path / "out.h5"
    out.write_bytes(b"earlier")
    with pytest.raises(VideoError, match=r"bad\.npy frame 20: float values must lie in \[0, 1\]"):
        video_to_events(stack, out, fps=30.0, config=QUIET, chunk_frames=4, progress=False)
    assert out.read_bytes() == b"earlier"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bad.npy", "out.h5"]


# ------------------------------------------------------------------------------ reading
def test_read_frames_of_a_video(video: Path, frames: Frames) -> None:
    with read_frames(video) as source:
        assert source.size == (W, H) and source.count == T and source.fps == 30.0
        got = list(source)
    assert len(got) == T
    assert [round(t) for t, _ in got[:3]] == [0, 33_000, 67_000]
    _, image = got[5]
    assert image.dtype == np.float32 and image.shape == (H, W)
    np.testing.assert_allclose(image, to_luminance(frames[5], "frame"), atol=1e-6)
    with read_frames(video, fps=10.0) as source:
        assert [t for t, _ in source][:3] == [0.0, 100_000.0, 200_000.0]


def test_luminance_is_linear_rec709() -> None:
    # sRGB 128/255 decodes to 0.21586; pure primaries weigh 0.2126, 0.7152, 0.0722
    assert srgb_to_linear([128 / 255])[0] == pytest.approx(0.2158605, abs=1e-6)
    assert srgb_to_linear([0.04045 / 2])[0] == pytest.approx(0.04045 / 2 / 12.92)
    colours = np.array([[[255, 0, 0], [0, 255, 0], [0, 0, 255], [255, 255, 255]]], np.uint8)
    np.testing.assert_allclose(to_luminance(colours, "c"), [[0.2126, 0.7152, 0.0722, 1.0]], 1e-6)
    gray = np.array([[0, 128, 255]], np.uint8)
    np.testing.assert_allclose(to_luminance(gray, "g"), [[0.0, 0.2158605, 1.0]], atol=1e-6)
    np.testing.assert_allclose(
        to_luminance(np.array([[0.5]], np.float64), "f"), [[0.21404114]], atol=1e-6
    )
    np.testing.assert_allclose(
        to_luminance(np.array([[65535]], np.uint16), "u16"), [[1.0]], atol=1e-6
    )
    with pytest.raises(VideoError, match="frame 3"):
        to_luminance(np.array([[np.nan]]), "frame 3")
    with pytest.raises(VideoError, match="unsupported pixel type"):
        to_luminance(np.zeros((2, 2), np.int32), "x")


def test_read_frames_of_a_folder_and_an_array(tmp_path: Path, frames: Frames) -> None:
    folder = write_pngs(tmp_path / "pngs", frames[:3])
    # not an image name: ignored
    Image.fromarray(frames[0]).save(folder / "notes.txt", format="PNG")
    with read_frames(folder, fps=25.0) as source:
        assert source.size == (W, H) and source.count == 3
        assert [t for t, _ in source] == [0.0, 40_000.0, 80_000.0]
    gray = np.linspace(0.0, 1.0, 2 * 3 * 4).reshape(2, 3, 4)
    np.save(tmp_path / "g.npy", gray)
    with read_frames(tmp_path / "g.npy", fps=2.0) as source:
        assert source.size == (4, 3) and source.count == 2
        got = list(source)
    assert [t for t, _ in got] == [0.0, 500_000.0]
    np.testing.assert_allclose(got[1][1], srgb_to_linear(gray[1]), atol=1e-6)


# ------------------------------------------------------------------------------ bad inputs
def test_a_broken_video_names_the_file(tmp_path: Path) -> None:
    broken = tmp_path / "broken.mp4"
    broken.write_bytes(b"\x00\x01 this is not a video " * 100)
    with pytest.raises(VideoError, match=r"broken\.mp4: not a readable video"):
        read_frames(broken)
    with pytest.raises(VideoError, match=r"broken\.mp4"):
        video_to_events(broken, tmp_path / "o.h5", progress=False)
    assert not (tmp_path / "o.h5").exists()


def test_bad_inputs_raise_clear_errors(tmp_path: Path, frames: Frames) -> None:
    with pytest.raises(FileNotFoundError, match=r"missing\.mkv"):
        read_frames(tmp_path / "missing.mkv")
    folder = write_pngs(tmp_path / "pngs", frames[:2])
    with pytest.raises(VideoError, match=r"pngs: an image folder has no timestamps.*--fps"):
        read_frames(folder)
    np.save(tmp_path / "a.npy", frames)
    with pytest.raises(VideoError, match=r"a\.npy: a \.npy array has no timestamps"):
        read_frames(tmp_path / "a.npy")
    with pytest.raises(VideoError, match="fps must be"):
        read_frames(tmp_path / "a.npy", fps=0.0)
    np.save(tmp_path / "flat.npy", np.zeros((5, 5)))
    with pytest.raises(VideoError, match=r"flat\.npy: expected frames \(T, H, W\)"):
        read_frames(tmp_path / "flat.npy", fps=1.0)
    np.save(tmp_path / "ints.npy", np.zeros((2, 5, 5), np.int32))
    with pytest.raises(VideoError, match=r"ints\.npy: unsupported dtype int32"):
        read_frames(tmp_path / "ints.npy", fps=1.0)
    np.save(tmp_path / "empty.npy", np.zeros((0, 5, 5), np.uint8))
    with pytest.raises(VideoError, match=r"empty\.npy: no frames"):
        read_frames(tmp_path / "empty.npy", fps=1.0)
    (tmp_path / "junk.npy").write_bytes(b"junk")
    with pytest.raises(VideoError, match=r"junk\.npy: not a readable \.npy array"):
        read_frames(tmp_path / "junk.npy", fps=1.0)
    empty = tmp_path / "nothing"
    empty.mkdir()
    with pytest.raises(VideoError, match="nothing: no PNG or JPEG images"):
        read_frames(empty, fps=1.0)
    (folder / "frame_0001.png").write_bytes(b"not a png")
    with pytest.raises(VideoError, match=r"frame_0001\.png: not a readable image"):
        list(read_frames(folder, fps=1.0))
    Image.fromarray(frames[0, :10]).save(folder / "frame_0001.png")
    with pytest.raises(VideoError, match=r"frame_0001\.png: image is 32x10, the first"):
        list(read_frames(folder, fps=1.0))
    with pytest.raises(VideoError, match="chunk_frames"):
        video_to_events(tmp_path / "a.npy", tmp_path / "o.h5", fps=1.0, chunk_frames=0)


def test_missing_pyav_says_how_to_install(
    tmp_path: Path, video: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, "av", None)  # import av now raises ImportError
    hint = r"pip install 'hybridpose\[video\]' \(in a clone: pip install -e '\.\[video\]'\)"
    with pytest.raises(VideoError, match=hint):
        read_frames(video)


# ------------------------------------------------------------------------------ command line
def test_cli_video_to_events(
    tmp_path: Path, video: Path, frames: Frames, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "cli.h5"
    argv = ["video-to-events", str(video), "--out", str(out), "--seed", "3", "--quiet"]
    argv += ["--noise-rate", "0", "--threshold", "0.3", "--refractory-us", "100", "--fps", "30"]
    assert main(argv) == 0
    printed = capsys.readouterr().out.strip().splitlines()
    assert len(printed) == 1 and "cli.h5" in printed[0] and "30 frames" in printed[0]
    with Recording(out) as rec:
        extra = rec.meta.extra
        esim = extra["esim"]
        assert (esim["threshold_pos"], esim["threshold_neg"]) == (0.3, 0.3)
        assert (esim["noise_rate_hz"], esim["refractory_us"]) == (0.0, 100.0)
        assert extra["seed"] == 3 and extra["fps"] == 30.0
        events = rec.events_slice(0, 0, rec.cameras[0].num_events)
    assert printed[0].startswith(f"{out}: {len(events)} events")
    assert event_pixels(events) == changed_pixels(frames)
    json.dumps(extra)  # stored as JSON


def test_cli_errors_are_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    broken = tmp_path / "broken.avi"
    broken.write_bytes(b"garbage" * 50)
    assert main(["video-to-events", str(broken), "--out", str(tmp_path / "o.h5")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "broken.avi" in err[0] and err[0].startswith("hybridpose")
    folder = tmp_path / "pngs"
    folder.mkdir()
    assert main(["video-to-events", str(folder), "--out", str(tmp_path / "o.h5")]) == 2
    assert "--fps" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exit_info:
        main(["video-to-events", str(broken), "--out", "o.h5", "--threshold", "-1"])
    assert exit_info.value.code == 2
    assert not (tmp_path / "o.h5").exists()


def test_the_torch_pixel_model_gives_the_same_events(
    tmp_path: Path, frames: Frames, capsys: pytest.CaptureFixture[str]
) -> None:
    # --device runs esim_advance_torch: on the CPU, the compiled kernel's events to the bit
    stack = tmp_path / "stack.npy"
    np.save(stack, frames)
    kernel, device = tmp_path / "kernel.h5", tmp_path / "device.h5"
    args = ["video-to-events", str(stack), "--fps", "30", "--seed", "4", "--quiet"]
    assert main([*args, "--out", str(kernel)]) == 0
    assert main([*args, "--out", str(device), "--device", "cpu"]) == 0
    expected = read_events(kernel)
    assert len(expected) > 500
    np.testing.assert_array_equal(read_events(device), expected)
    capsys.readouterr()
    assert main([*args, "--out", str(tmp_path / "x.h5"), "--device", "cuda:7"]) == 2
    assert "--device cuda:7: this machine has no such device" in capsys.readouterr().err
    assert not (tmp_path / "x.h5").exists()
