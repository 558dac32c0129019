"""A tiny, complete, fake DHP19 download, for the converter's tests.

The files are written with hybridpose's writers of DHP19's raw layout
(:func:`hybridpose.io.aedat.write_aedat2`, :func:`hybridpose.io.dhp19.encode_addresses`,
:func:`hybridpose.io.mat5.write_mat5`, :func:`hybridpose.io.dhp19.write_p_matrices`), which are
checked on their own against hand-computed bytes and independent readers (struct, scipy's
loadmat; tests/test_aedat.py, tests/test_mat5.py, tests/test_dhp19_raw.py). What stays
independent of the converter here is the content: the projection matrices are built as
``K [R | t]`` by hand, the events are placed around the joints projected with those matrices and
flipped to DHP19's raw pixel frame with this module's own arithmetic, and :data:`FLIP` and
:data:`MATRIX_OF_CAMERA` restate DHP19's conventions (docs/DHP19.md) for the tests to check the
converter against.

The geometry is DHP19-like: a subject standing at the world origin (z up, facing -y), four
cameras 3.5-4 m away looking at the hips: the two front cameras are the files P2 and P3, the
side/back ones P1 and P4. Events are scattered around the projections of the joints, so a
correct conversion puts the projected labels on top of the events.

As a script, ``python tests/dhp19_fixture.py OUT_DIR`` writes the tree into ``OUT_DIR``, which
is then a DHP19 root for ``hybridpose convert-dhp19 --root OUT_DIR``.

The one exception to "no converter code here" is :func:`worker_task_that_dies`, a stand-in for
the batch converter's worker task that only delegates to the real one.
"""

from __future__ import annotations

import os
import signal
import struct
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from hybridpose.io.aedat import write_aedat2
from hybridpose.io.dhp19 import encode_addresses, write_p_matrices
from hybridpose.io.mat5 import MatValue, write_mat5
from hybridpose.io.recording import CameraCalibration

WIDTH, HEIGHT = 346, 260
JOINTS = (
    "head",
    "shoulderR",
    "shoulderL",
    "elbowR",
    "elbowL",
    "hipR",
    "hipL",
    "handR",
    "handL",
    "kneeR",
    "kneeL",
    "footR",
    "footL",
)
# event camera id -> number of its P matrix file (DHP19 notebooks)
MATRIX_OF_CAMERA = {0: 4, 1: 1, 2: 3, 3: 2}
# DHP19's labels are projected and then flipped v -> 260 - v; this matrix does that flip
FLIP = np.array([[1.0, 0.0, 0.0], [0.0, -1.0, 260.0], [0.0, 0.0, 1.0]])
START_RAW_US = 2_000_000
"""Raw timestamp of the start special event in the fake recordings."""
MARGIN_US = 100_000
"""Events are spread this far before the start and after the stop (they must be dropped)."""

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]


# ------------------------------------------------------------------------------- AEDAT 2.0
def truncate_aedat2(path: Path, keep_records: int) -> int:
    """Cut an AEDAT 2.0 file after its first ``keep_records`` records, on a record boundary.

    What an interrupted download or copy leaves: the header and a whole number of 8-byte
    records, so nothing in the file itself says it is incomplete. The header is skipped as the
    format defines it ('#' lines ending in CR LF), without hybridpose's reader.

    Returns:
        The number of records left (``keep_records``, or fewer if the file had fewer).
    """
    data = path.read_bytes()
    pos = 0
    while data.startswith(b"#", pos):
        pos = data.index(b"\r\n", pos) + 2
    kept = min(keep_records, (len(data) - pos) // 8)
    path.write_bytes(data[: pos + 8 * kept])
    return kept


# ----------------------------------------------------------------------------- Vicon, P
def write_vicon_mat(
    path: Path,
    joints: FloatArray,
    *,
    order: Sequence[str] = JOINTS,
    replace: dict[str, Any] | None = None,
    compress: bool = False,
    others: dict[str, Any] | None = None,
) -> Path:
    """Save joints ``(N, 13, 3)`` (DHP19 order) as the struct ``XYZPOS`` of a MATLAB v5 file.

    ``order`` lists the fields to write, in that order (leave one out to make a broken file);
    ``replace`` substitutes the value of some fields; ``compress`` writes MATLAB -v7 style
    compressed variables; ``others`` are variables saved before ``XYZPOS``.
    """
    values: dict[str, MatValue] = {name: joints[:, JOINTS.index(name)] for name in order}
    values.update(replace or {})
    return write_mat5(path, {**(others or {}), "XYZPOS": values}, compress=compress)


def mat5_bytes_by_hand(
    fields: dict[str, npt.NDArray[np.generic]],
    *,
    variable: str = "XYZPOS",
    big_endian: bool = False,
    data_type: str = "i2",
) -> bytes:
    """A level-5 MAT-file holding one 1x1 struct, built byte by byte (no scipy).

    Numeric fields are stored with MAT type ``data_type`` (as MATLAB does when doubles fit a
    smaller integer type) while their class stays double; tags of 4 bytes or less use the
    small data element format.
    """
    o = ">" if big_endian else "<"
    mi_types = {"i1": 1, "u1": 2, "i2": 3, "u2": 4, "i4": 5, "u4": 6, "f4": 7, "f8": 9}

    def element(mi_type: int, payload: bytes) -> bytes:
        if len(payload) <= 4 and mi_type != 14:
            return struct.pack(o + "I", (len(payload) << 16) | mi_type) + payload.ljust(4, b"\0")
        padding = b"\0" * (-len(payload) % 8)
        return struct.pack(o + "II", mi_type, len(payload)) + payload + padding

    def matrix(mx_class: int, dims: Sequence[int], name: str, body: bytes) -> bytes:
        flags = element(6, struct.pack(o + "II", mx_class, 0))
        shape = element(5, struct.pack(o + f"{len(dims)}i", *dims))
        return element(14, flags + shape + element(1, name.encode()) + body)

    width = 32
    names = b"".join(name.encode().ljust(width, b"\0") for name in fields)
    body = element(5, struct.pack(o + "i", width)) + element(1, names)
    for value in fields.values():
        data = np.asarray(value).flatten(order="F").astype(o + data_type).tobytes()
        body += matrix(6, np.shape(value), "", element(mi_types[data_type], data))
    text = b"MATLAB 5.0 MAT-file, written by hand by tests/dhp19_fixture.py".ljust(116, b" ")
    header = text + b"\0" * 8 + struct.pack(o + "H", 0x0100) + (b"MI" if big_endian else b"IM")
    return header + matrix(2, (1, 1), variable, body)


def look_at(
    center: Sequence[float], target: Sequence[float], focal: float = 300.0
) -> CameraCalibration:
    """A pinhole camera ``P = K [R | t]`` in hybridpose's pixel frame (v down, w > 0 in front)
    at ``center`` (mm, world z up) looking at ``target``; principal point centred."""
    c = np.asarray(center, dtype=np.float64)
    forward = np.asarray(target, dtype=np.float64) - c
    forward /= np.linalg.norm(forward)
    right = np.cross(forward, [0.0, 0.0, 1.0])
    right /= np.linalg.norm(right)
    down = np.cross(forward, right)
    R = np.stack([right, down, forward])
    K = np.array([[focal, 0.0, (WIDTH - 1) / 2], [0.0, focal, (HEIGHT - 1) / 2], [0.0, 0.0, 1.0]])
    P = K @ np.concatenate([R, (-R @ c)[:, None]], axis=1)
    return CameraCalibration(P=P, center=c)


def fake_cameras() -> list[CameraCalibration]:
    """The four cameras in event-camera-id order (0: P4 back-left, 1: P1 right, 2: P3, 3: P2)."""
    hips = (0.0, 0.0, 900.0)
    return [
        look_at((-3300.0, 1800.0, 1500.0), hips),  # cam 0 -> P4, back left
        look_at((3600.0, 600.0, 1400.0), hips),  # cam 1 -> P1, right side
        look_at((1400.0, -3300.0, 1300.0), hips),  # cam 2 -> P3, front
        look_at((-1500.0, -3250.0, 1300.0), hips),  # cam 3 -> P2, front
    ]


def move_camera_position(p_dir: Path, camera: int, offset_mm: Sequence[float]) -> FloatArray:
    """Move event camera ``camera``'s row of ``p_dir/camera_positions.npy`` by ``offset_mm``.

    The row is that of the camera's matrix file (:data:`MATRIX_OF_CAMERA`); the file is
    rewritten with ``numpy.save``, the ``P`` files are left alone, so the moved position no
    longer is the centre of its ``P``. Returns the new (4, 3) positions.
    """
    positions = np.load(p_dir / "camera_positions.npy")
    positions[MATRIX_OF_CAMERA[camera] - 1] += np.asarray(offset_mm, dtype=np.float64)
    np.save(p_dir / "camera_positions.npy", positions)
    return np.asarray(positions, dtype=np.float64)


def project(P: FloatArray, points: FloatArray) -> FloatArray:
    """Pixels ``(..., 2)`` of world points ``(..., 3)``."""
    h = points @ P[:, :3].T + P[:, 3]
    return h[..., :2] / h[..., 2:3]


# ------------------------------------------------------------------------------ a skeleton
def skeleton(num_samples: int, movement: int) -> FloatArray:
    """Joints ``(N, 13, 3)`` mm at 100 Hz: a standing body raising one arm (side by movement)."""
    rest = np.array(
        [
            [0, 0, 1650],  # head
            [-180, 0, 1450],  # shoulderR
            [180, 0, 1450],  # shoulderL
            [-200, 0, 1150],  # elbowR
            [200, 0, 1150],  # elbowL
            [-100, 0, 950],  # hipR
            [100, 0, 950],  # hipL
            [-210, 0, 880],  # handR
            [210, 0, 880],  # handL
            [-100, 0, 500],  # kneeR
            [100, 0, 500],  # kneeL
            [-100, 0, 80],  # footR
            [100, 0, 80],  # footL
        ],
        dtype=np.float64,
    )
    t = np.arange(num_samples) / 100.0
    angle = (np.pi / 2) * (1 - np.cos(2 * np.pi * t)) / 2  # 0 -> 90 deg -> 0 once a second
    side = -1.0 if movement % 2 else 1.0  # odd movements: the left arm (+x), even: the right
    shoulder, elbow, hand = (2, 4, 8) if side < 0 else (1, 3, 7)
    joints = np.repeat(rest[None], num_samples, axis=0)
    for j, length in ((elbow, 300.0), (hand, 570.0)):
        joints[:, j, 0] = rest[shoulder, 0] - side * length * np.sin(angle)
        joints[:, j, 2] = rest[shoulder, 2] - length * np.cos(angle)
    return joints


# ----------------------------------------------------------------------------- a recording
@dataclass(frozen=True)
class FakeRecording:
    """What was written for one recording, in file order, for tests to check against.

    ``kind`` is 0 for polarity events, 1 for special events, 2 for APS records.
    """

    aedat: Path
    vicon: Path
    joints: FloatArray
    start_raw_us: int
    stop_raw_us: int
    x_raw: IntArray
    y_raw: IntArray
    t: IntArray
    on: npt.NDArray[np.bool_]
    camera: IntArray
    kind: IntArray

    def addresses(self) -> npt.NDArray[np.uint32]:
        return encode_addresses(
            self.x_raw, self.y_raw, self.on, self.camera, special=self.kind == 1, aps=self.kind == 2
        )


def make_fake_recording(
    aedat: Path,
    vicon: Path,
    cameras: Sequence[CameraCalibration],
    *,
    movement: int = 1,
    seconds: float = 1.0,
    events_per_camera: int = 1000,
    specials: Sequence[int] | None = None,
    aps_records: int = 3,
    seed: int = 0,
) -> FakeRecording:
    """Write one fake recording: events near the projected joints, specials, Vicon labels.

    Args:
        aedat: the ``.aedat`` file to write.
        vicon: the ``.mat`` file to write.
        cameras: the four cameras in event-camera-id order.
        movement: picks the arm that moves.
        seconds: the Vicon length (100 samples per second).
        events_per_camera: polarity events per camera, spread over the Vicon interval and a
            :data:`MARGIN_US` margin before and after it.
        specials: raw times of the special events; default: start and stop for odd movements
            (2 specials, stop derived from the Vicon length), start, middle and stop for even
            ones (3 specials, first and last).
        aps_records: APS records (bit 31) sprinkled in, which the converter must ignore.
        seed: the random seed.
    """
    rng = np.random.default_rng(seed)
    n_labels = round(seconds * 100)
    joints = skeleton(n_labels, movement)
    start, stop = START_RAW_US, START_RAW_US + n_labels * 10_000
    if specials is None:
        specials = [start, stop] if movement % 2 else [start, (start + stop) // 2, stop]

    columns: list[IntArray] = []
    for cam_id, cam in enumerate(cameras):
        t = np.sort(rng.integers(start - MARGIN_US, stop + MARGIN_US, events_per_camera))
        k = np.clip(np.rint((t - start) / 10_000).astype(np.int64), 0, n_labels - 1)
        j = rng.integers(0, len(JOINTS), events_per_camera)
        uv = project(cam.P, joints[k, j]) + rng.normal(0.0, 1.5, (events_per_camera, 2))
        x = np.clip(np.rint(uv[:, 0]), 0, WIDTH - 1).astype(np.int64)
        y = np.clip(np.rint(uv[:, 1]), 0, HEIGHT - 1).astype(np.int64)
        on = rng.integers(0, 2, events_per_camera)
        columns.append(
            np.stack([t, (WIDTH - 1) - x, (HEIGHT - 1) - y, on, np.full_like(t, cam_id), 0 * t])
        )
    special_t = np.asarray(specials, dtype=np.int64)
    zero = 0 * special_t
    columns.append(np.stack([special_t, zero, zero, zero, zero, 1 + zero]))  # camera 0
    aps_t = rng.integers(start, stop, aps_records)
    aps = np.stack([aps_t, aps_t % 300, aps_t % 200, 0 * aps_t, 0 * aps_t, 2 + 0 * aps_t])
    columns.append(aps)
    table = np.concatenate(columns, axis=1)
    table = table[:, np.argsort(table[0], kind="stable")]
    t, x_raw, y_raw, on, camera, kind = table

    record = FakeRecording(
        aedat=aedat,
        vicon=vicon,
        joints=joints,
        start_raw_us=start,
        stop_raw_us=stop,
        x_raw=x_raw,
        y_raw=y_raw,
        t=t,
        on=on.astype(bool),
        camera=camera,
        kind=kind,
    )
    write_aedat2(aedat, record.addresses(), t)
    write_vicon_mat(vicon, joints)
    return record


@dataclass(frozen=True)
class FakeDhp19:
    """A fake DHP19 root and what it holds."""

    root: Path
    cameras: list[CameraCalibration]
    recordings: dict[tuple[int, int, int], FakeRecording]  # (subject, session, movement)


def make_fake_dhp19(
    root: Path,
    *,
    subject: int = 1,
    session: int = 1,
    movements: Sequence[int] = (1, 2),
    seconds: float = 1.0,
    events_per_camera: int = 1000,
    seed: int = 0,
) -> FakeDhp19:
    """Lay out a complete tiny DHP19 tree under ``root`` (DVS_movies, Vicon_data, P_matrices).

    Returns:
        The cameras and every recording written, for tests to compare against.
    """
    cameras = fake_cameras()
    write_p_matrices(root / "P_matrices", cameras)
    recordings = {}
    for k in movements:
        recordings[(subject, session, k)] = make_fake_recording(
            root / "DVS_movies" / f"S{subject}" / f"session{session}" / f"mov{k}.aedat",
            root / "Vicon_data" / f"S{subject}_{session}_{k}.mat",
            cameras,
            movement=k,
            seconds=seconds,
            events_per_camera=events_per_camera,
            seed=seed + 1000 * k,
        )
    return FakeDhp19(root=root, cameras=cameras, recordings=recordings)


# ------------------------------------------------------------------------ worker processes
DIE_FOR_RECORDING = "HYBRIDPOSE_TEST_DIE_FOR_RECORDING"
"""Environment variable: name of the recording whose worker kills itself (SIGKILL)."""
RAISE_FOR_RECORDING = "HYBRIDPOSE_TEST_RAISE_FOR_RECORDING"
"""Environment variable: name of the recording whose worker raises ZeroDivisionError (a bug)."""


def worker_task_that_dies(task: Any) -> str | None:
    """Replaces ``hybridpose.io.dhp19.batch._run_task`` in spawned worker processes (picklable).

    For the recording named by :data:`DIE_FOR_RECORDING` (read in the child, which inherits the
    environment) it opens a real recording writer on the output, which creates its hidden
    temporary file, and then SIGKILLs its own process, as the kernel's out-of-memory killer
    would mid-write. For the one named by :data:`RAISE_FOR_RECORDING` it raises. Every other
    recording is converted by the real task.
    """
    # in the child: the real modules, not the test's patched ones
    from hybridpose.io.dhp19 import batch
    from hybridpose.io.recording import CameraCalibration, RecordingMeta, RecordingWriter

    name: str = task.recording.name
    if name == os.environ.get(DIE_FOR_RECORDING):
        camera = CameraCalibration(P=np.eye(3, 4), center=np.zeros(3))
        writer = RecordingWriter(task.out, (WIDTH, HEIGHT), [camera], RecordingMeta("dhp19"))
        writer.__enter__()
        os.kill(os.getpid(), signal.SIGKILL)
    if name == os.environ.get(RAISE_FOR_RECORDING):
        raise ZeroDivisionError(f"a bug while converting {name}")
    reason: str | None = batch._run_task(task)
    return reason


def main(argv: Sequence[str]) -> int:
    if len(argv) != 1:
        print("usage: python tests/dhp19_fixture.py OUT_DIR", file=sys.stderr)
        return 2
    fake = make_fake_dhp19(Path(argv[0]))
    print(f"fake DHP19 root with {len(fake.recordings)} recordings written to {fake.root}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
