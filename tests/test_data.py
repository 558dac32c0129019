"""Tests of hybridpose.data: windows, labels, heatmaps and the dataset, by known answers."""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader

from hybridpose.data import (
    DataError,
    WindowConfig,
    WindowDataset,
    WindowIndex,
    ann_frame,
    ann_frames,
    collate_windows,
    gaussian_heatmaps,
    index_windows,
    index_windows_cached,
    interpolate_joints,
    shuffled,
    shuffled_by_file,
    to_model_pixels,
    to_sensor_pixels,
)
from hybridpose.events import make_events
from hybridpose.geometry import project
from hybridpose.io.recording import CameraCalibration, Recording, RecordingMeta, RecordingWriter
from hybridpose.representations import stacked_histogram

SENSOR = (80, 60)
F, CX, CY, DIST = 100.0, 40.0, 30.0, 1000.0
P = np.array([[F, 0, CX, CX * DIST], [0, F, CY, CY * DIST], [0, 0, 1, DIST]], dtype=np.float64)
N_EVENTS = 3000  # camera 0: event i at t = 200 i us
LABEL_T = np.arange(0, 500_001, 10_000, dtype=np.int64)  # 100 Hz, 51 labels
NAN_LABELS = slice(30, 36)  # labels at 300..350 ms missing


def joints_at(t_us: np.ndarray) -> np.ndarray:
    """Ground truth: joint j at (10 j - 60 + t / 10 ms, 5 j - 30, 0) mm, linear in time."""
    t = np.asarray(t_us, dtype=np.float64)
    j = np.arange(13, dtype=np.float64)
    out = np.zeros((len(t), 13, 3))
    out[..., 0] = 10 * j - 60 + t[:, None] / 10_000
    out[..., 1] = 5 * j - 30
    return out


def camera0_events() -> np.ndarray:
    i = np.arange(N_EVENTS)
    return make_events(i % SENSOR[0], (i // SENSOR[0]) % SENSOR[1], 200 * i, np.where(i % 2, 1, -1))


def write_recording(path: Path) -> Path:
    cams = [CameraCalibration(P, np.array([0.0, 0.0, -DIST]), f"cam{i}") for i in range(2)]
    with RecordingWriter(path, SENSOR, cams, RecordingMeta("test")) as w:
        w.append_events(0, camera0_events())
        i = np.arange(500)  # camera 1: too few events for the default test config
        w.append_events(1, make_events(i % 80, i % 60, 1000 * i, np.ones(500)))
        joints = joints_at(LABEL_T).astype(np.float32)
        joints[NAN_LABELS] = np.nan
        w.write_labels(LABEL_T, joints)
    return path


@pytest.fixture
def recording(tmp_path: Path) -> Path:
    return write_recording(tmp_path / "rec.h5")


CONFIG = WindowConfig(
    ann_events=1000, ann_bins=4, bin_us=10_000, steps=5, stride_us=100_000, cameras=(0, 1, 5)
)


# ----------------------------------------------------------------------------- config


def test_config_validation() -> None:
    assert WindowConfig().cameras == (2, 3)
    with pytest.raises(DataError):
        WindowConfig(steps=0)
    with pytest.raises(DataError):
        WindowConfig(crop=(0, 0, 0, 10))
    with pytest.raises(DataError):
        WindowConfig(sigma_px=0.0)
    with pytest.raises(DataError):
        WindowConfig(cameras=())
    np.testing.assert_array_equal(CONFIG.label_times(100), [10_100, 20_100, 30_100, 40_100, 50_100])


# ----------------------------------------------------------------------------- interpolation


def test_interpolate_joints_midpoints_and_outside() -> None:
    t = np.array([0, 10, 20], dtype=np.int64)
    joints = np.zeros((3, 2, 3), dtype=np.float32)
    joints[:, 0, 0] = [0.0, 10.0, 40.0]
    joints[:, 1, :] = np.array([[1, 1, 1], [np.nan, 2, 2], [3, 3, 3]])
    out = interpolate_joints(t, joints, np.array([-1, 0, 5, 10, 15, 20, 21]))
    assert out.shape == (7, 2, 3)
    np.testing.assert_allclose(out[[1, 2, 3, 4, 5], 0, 0], [0.0, 5.0, 10.0, 25.0, 40.0])
    assert np.all(np.isnan(out[[0, 6]]))  # outside the label range
    # joint 1: a NaN neighbour poisons the interval, exact label times use only that label
    assert np.isnan(out[2, 1, 0]) and np.isnan(out[4, 1, 0])
    np.testing.assert_allclose(out[2, 1, 1:], [1.5, 1.5])
    np.testing.assert_allclose(out[1, 1], [1, 1, 1])
    np.testing.assert_allclose(out[5, 1], [3, 3, 3])
    np.testing.assert_allclose(interpolate_joints(t[:1], joints[:1], np.array([0]))[0], joints[0])
    assert np.all(np.isnan(interpolate_joints(t[:0], joints[:0], np.array([0]))))


# ----------------------------------------------------------------------------- heatmaps


def test_gaussian_heatmaps_peak_centroid_and_zeros() -> None:
    uv = np.array([[10.0, 7.0], [12.3, 9.6], [np.nan, 3.0], [-0.6, 5.0], [5.0, 23.5]])
    maps = gaussian_heatmaps(uv, (24, 32), 2.0)
    assert maps.shape == (5, 24, 32) and maps.dtype == np.float32
    assert maps[0].max() == 1.0 and maps[0, 7, 10] == 1.0
    assert maps[0, 7, 12] == pytest.approx(np.exp(-4 / 8), rel=1e-6)
    ys, xs = np.mgrid[0:24, 0:32]
    m = maps[1].astype(np.float64)
    assert (m * xs).sum() / m.sum() == pytest.approx(12.3, abs=1e-3)
    assert (m * ys).sum() / m.sum() == pytest.approx(9.6, abs=1e-3)
    assert maps[1].max() < 1.0
    assert not maps[2:].any()  # NaN, left of the image, below the image
    batched = gaussian_heatmaps(np.stack([uv, uv]), (24, 32), 2.0)
    assert batched.shape == (2, 5, 24, 32)
    np.testing.assert_array_equal(batched[1], maps)


# ----------------------------------------------------------------------------- pixels


def test_model_pixels_hand_case_and_round_trip() -> None:
    crop = (10, 5, 64, 48)
    out = to_model_pixels(np.array([10.0, 5.0]), crop, 4)
    np.testing.assert_allclose(out, [-0.375, -0.375])
    # the four sensor centres 10..13 straddle model pixel 0
    np.testing.assert_allclose(to_model_pixels(np.array([11.5, 6.5]), crop, 4), [0.0, 0.0])
    rng = np.random.default_rng(0)
    uv = rng.uniform(-5, 100, (7, 13, 2))
    np.testing.assert_allclose(to_sensor_pixels(to_model_pixels(uv, crop, 4), crop, 4), uv)
    np.testing.assert_allclose(to_model_pixels(uv), uv)
    assert np.isnan(to_model_pixels(np.array([np.nan, 1.0]), crop, 2)[0])


# ----------------------------------------------------------------------------- index


def test_index_windows_grid_and_skipping(recording: Path) -> None:
    windows = index_windows([recording], CONFIG)
    # event 999 is at 199.8 ms -> first t0 = 200 ms; t0 = 300 ms has only NaN labels; the last
    # bin end must be <= 500 ms; camera 1 has too few events and camera 5 does not exist
    assert windows == [
        WindowIndex(str(recording), 0, 200_000),
        WindowIndex(str(recording), 0, 400_000),
    ]
    # one more event needed: event 1000 is at exactly 200 ms, not before t0 = 200 ms
    later = WindowConfig(ann_events=1001, ann_bins=4, steps=5, cameras=(0,))
    assert [w.t0_us for w in index_windows([recording], later)] == [400_000]
    # longer windows run past the labels (t0 = 400 ms); at t0 = 300 ms steps 6..20 have labels,
    # and one finite joint at any step is enough to keep a window
    long = WindowConfig(ann_events=1000, ann_bins=4, steps=20, cameras=(0,))
    assert [w.t0_us for w in index_windows([recording], long)] == [200_000, 300_000]
    # camera 1 is indexed once it has enough events
    cam1 = WindowConfig(ann_events=100, ann_bins=4, steps=5, cameras=(1,))
    assert [w.t0_us for w in index_windows([recording], cam1)] == [100_000, 200_000, 400_000]


def test_shuffled_is_deterministic_permutation() -> None:
    items = list(range(50))
    a = shuffled(items, seed=3, epoch=1)
    assert a == shuffled(items, seed=3, epoch=1)
    assert sorted(a) == items and a != items
    assert a != shuffled(items, seed=3, epoch=2)
    assert shuffled([], 0, 0) == []


# ----------------------------------------------------------------------------- dataset


def test_dataset_item_known_answers(recording: Path) -> None:
    crop, down = (8, 4, 64, 48), 2
    config = WindowConfig(
        ann_events=1000,
        ann_bins=4,
        bin_us=10_000,
        steps=5,
        stride_us=100_000,
        crop=crop,
        downsample=down,
        cameras=(0,),
    )
    ds = WindowDataset([recording], config)
    assert len(ds) == 2
    item = ds[0]
    t0 = 200_000
    assert item["frame"].shape == (8, 24, 32) and item["frame"].dtype == torch.float32
    assert item["bins"].shape == (5, 2, 24, 32)
    assert item["joints3d"].shape == (5, 13, 3) and item["joints2d"].shape == (5, 13, 2)
    assert item["heatmaps"].shape == (5, 13, 24, 32) and item["valid"].dtype == torch.bool
    assert int(item["camera"]) == 0 and int(item["t0_us"]) == t0
    with Recording(recording) as rec:
        before = rec.events_before(0, t0, 1000)
        expected = stacked_histogram(before, SENSOR, 4, crop=crop, downsample=down)
        during = rec.events(0, t0, t0 + 50_000)
    np.testing.assert_array_equal(item["frame"].numpy(), expected)
    assert item["frame"].sum() > 0
    # bins conserve the window's events inside the crop
    ev = camera0_events()
    ev = ev[(ev["t"] >= t0) & (ev["t"] < t0 + 50_000)]
    assert len(during) == len(ev) == 250
    in_crop = (ev["x"] >= 8) & (ev["x"] < 72) & (ev["y"] >= 4) & (ev["y"] < 52)
    assert item["bins"].sum() == in_crop.sum()
    per_bin = [in_crop[(ev["t"] - t0) // 10_000 == k].sum() for k in range(5)]
    np.testing.assert_array_equal(item["bins"].sum(dim=(1, 2, 3)).numpy(), per_bin)
    on = in_crop & (ev["p"] > 0)
    assert item["bins"][:, 1].sum() == on.sum()
    # labels at the bin ends, projected and mapped to model pixels
    times = t0 + 10_000 * np.arange(1, 6)
    truth = joints_at(times)
    np.testing.assert_allclose(item["joints3d"].numpy(), truth, atol=1e-4)
    uv = to_model_pixels(project(P, truth), crop, down)
    np.testing.assert_allclose(item["joints2d"].numpy(), uv, atol=1e-3)
    assert item["valid"].all()
    np.testing.assert_allclose(
        item["heatmaps"].numpy(), gaussian_heatmaps(uv, (24, 32), 2.0), atol=1e-5
    )
    ds.close()


def test_dataset_ann_targets_and_next_frame(recording: Path) -> None:
    config = WindowConfig(ann_events=1000, ann_bins=4, steps=5, stride_us=100_000, cameras=(0,))
    ann = WindowDataset([recording], config, labels_at="start", with_bins=False)
    hybrid = WindowDataset([recording], config, with_next_frame=True)
    t0 = 200_000
    a, h = ann[0], hybrid[0]
    assert int(a["t0_us"]) == int(h["t0_us"]) == t0
    # the ANN stage: no bins, one label at t0 (where its frame ends)
    assert "bins" not in a and "next_frame" not in a
    assert a["label_t_us"].tolist() == [t0]
    np.testing.assert_allclose(a["joints3d"].numpy(), joints_at(np.array([t0])), atol=1e-4)
    assert a["heatmaps"].shape == (1, 13, 60, 80)
    torch.testing.assert_close(a["frame"], h["frame"])
    # the hybrid stage: the frame at the window's end (t0 + 5 x 10 ms) for the state loss
    assert h["label_t_us"].tolist() == [t0 + 10_000 * k for k in range(1, 6)]
    with Recording(recording) as rec:
        expected = stacked_histogram(rec.events_before(0, t0 + 50_000, 1000), SENSOR, 4)
    np.testing.assert_array_equal(h["next_frame"].numpy(), expected)
    batch = collate_windows([h, hybrid[1]])
    assert batch["next_frame"].shape == (2, 8, 60, 80)  # batch-first like the frame
    assert batch["label_t_us"].shape == (5, 2)  # time-first like the labels
    with pytest.raises(DataError, match="labels_at"):
        WindowDataset([recording], config, labels_at="middle")  # type: ignore[arg-type]


def test_dataset_marks_nan_and_outside_joints_invalid(tmp_path: Path) -> None:
    path = write_recording(tmp_path / "rec.h5")
    # t0 = 250 ms: bin ends 260..300 ms; the 300 ms label is NaN, so the last step is invalid
    config = WindowConfig(ann_events=1000, ann_bins=4, steps=5, cameras=(0,), crop=(40, 0, 20, 60))
    ds = WindowDataset([path], config, windows=[WindowIndex(str(path), 0, 250_000)])
    item = ds[0]
    valid = item["valid"].numpy()
    assert not valid[4].any() and torch.isnan(item["joints2d"][4]).all()
    assert not item["heatmaps"][4].any()
    # joints with u outside 40..59 sensor pixels fall off the cropped image
    u = project(P, joints_at(np.array([260_000])))[0, :, 0]
    np.testing.assert_array_equal(valid[0], (u >= 39.5) & (u < 59.5))
    assert valid[0].any() and not valid[0].all()
    assert not item["heatmaps"][0][~item["valid"][0]].any()


def test_collate_and_dataloader(recording: Path) -> None:
    ds = WindowDataset([recording], CONFIG)
    batch = collate_windows([ds[0], ds[1]])
    assert batch["frame"].shape == (2, 8, 60, 80)
    assert batch["bins"].shape == (5, 2, 2, 60, 80)
    assert batch["heatmaps"].shape == (5, 2, 13, 60, 80)
    assert batch["joints3d"].shape == (5, 2, 13, 3)
    assert batch["joints2d"].shape == (5, 2, 13, 2)
    assert batch["valid"].shape == (5, 2, 13)
    assert batch["camera"].shape == (2,) and batch["t0_us"].tolist() == [200_000, 400_000]
    torch.testing.assert_close(batch["bins"][:, 1], ds[1]["bins"])
    with pytest.raises(DataError):
        collate_windows([])
    for workers in (0, 1):
        loader = DataLoader(ds, batch_size=2, num_workers=workers, collate_fn=collate_windows)
        (got,) = list(loader)
        torch.testing.assert_close(got, batch, equal_nan=True)
    ds.close()


def test_index_cache_hits_and_invalidates(recording: Path, tmp_path: Path) -> None:
    cache_dir = tmp_path / "cache"
    cache_dir.mkdir()
    expected = index_windows([recording], CONFIG)
    assert expected  # the checks below need windows
    assert index_windows_cached([recording], CONFIG, cache_dir) == expected
    (cache,) = cache_dir.glob(".windows-*.npz")
    # a hit reads the cache: make it recognisably different and see it come back
    with np.load(cache) as data:
        arrays = {k: data[k] for k in data.files}
    arrays["t0_us"] = arrays["t0_us"] + 1
    np.savez(cache, **arrays)
    hit = index_windows_cached([recording], CONFIG, cache_dir)
    assert [w.t0_us for w in hit] == [w.t0_us + 1 for w in expected]
    # another setting or a changed file makes a new index, never the stale one
    other = dataclasses.replace(CONFIG, stride_us=50_000)
    assert index_windows_cached([recording], other, cache_dir) == index_windows([recording], other)
    os.utime(recording, ns=(1, 1))
    assert index_windows_cached([recording], CONFIG, cache_dir) == expected
    assert len(list(cache_dir.glob(".windows-*.npz"))) == 3
    # an unreadable cache is rebuilt
    for f in cache_dir.glob(".windows-*.npz"):
        f.write_bytes(b"garbage")
    assert index_windows_cached([recording], CONFIG, cache_dir) == expected


def test_shuffled_by_file_groups_files(recording: Path) -> None:
    windows = [WindowIndex(f"f{i % 40}", 0, 1000 * i) for i in range(400)]
    order = shuffled_by_file(windows, seed=1, epoch=0, files_per_group=4)
    assert sorted(order, key=lambda w: w.t0_us) == windows  # a permutation
    assert order == shuffled_by_file(windows, seed=1, epoch=0, files_per_group=4)
    assert order != shuffled_by_file(windows, seed=1, epoch=1, files_per_group=4)
    # each block of 40 windows (4 files x 10) holds exactly 4 files
    for start in range(0, 400, 40):
        assert len({w.path for w in order[start : start + 40]}) == 4
    with pytest.raises(DataError):
        shuffled_by_file(windows, 0, 0, files_per_group=0)


def test_ann_frames_equal_one_frame_at_a_time(recording: Path) -> None:
    """One read of the file for many frames gives exactly the frames read one by one: near the
    start (fewer than ann_events before), at an event's own time, between events, and with a
    crop and downsampling."""
    cropped = dataclasses.replace(CONFIG, crop=(4, 2, 64, 48), downsample=2)
    times = np.array([0, 100, 50_000, 200_000, 200_100, 400_000, 599_800, 700_000])
    with Recording(recording) as rec:
        for cfg in (CONFIG, cropped):
            for cam in (0, 1):
                got = ann_frames(rec, cam, times, cfg)
                expected = np.stack([ann_frame(rec, cam, int(t), cfg) for t in times])
                assert got.dtype == np.float32 and got.shape == expected.shape
                np.testing.assert_array_equal(got, expected)
        assert ann_frames(rec, 0, times, CONFIG)[3].sum() == 1000  # a full frame
        with pytest.raises(DataError, match="ascending"):
            ann_frames(rec, 0, times[::-1], CONFIG)
