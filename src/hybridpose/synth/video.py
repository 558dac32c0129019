"""Events from ordinary video: frames (a video file, an image folder or a .npy stack) -> ESIM.

:func:`read_frames` turns any of the three inputs into a stream of ``(t_us, intensity)`` pairs:
linear luminance in [0, 1] (sRGB-decoded, then Rec. 709 weights), one float32 (H, W) frame at a
time. :func:`video_to_events` feeds that stream, a chunk of frames at a time, to the event
simulator (:mod:`hybridpose.synth.esim`) and streams the events into a one-camera recording, so
memory stays bounded whatever the video's length. It is the engine of
``hybridpose video-to-events``.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable, Generator, Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any, Self

import numpy as np
import numpy.typing as npt
from tqdm import tqdm

from hybridpose.errors import HybridPoseError, first_line, install_hint
from hybridpose.events import Events
from hybridpose.io.recording import CameraCalibration, RecordingMeta, RecordingWriter
from hybridpose.synth.esim import (
    EsimConfig,
    EsimError,
    EsimState,
    esim_advance,
    esim_init,
    log_intensity,
)

if TYPE_CHECKING:
    import PIL.Image

Float32Array = npt.NDArray[np.float32]
Frame = tuple[float, Float32Array]
FrameGenerator = Generator[Frame, None, None]

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg")
REC709 = np.array([0.2126, 0.7152, 0.0722], dtype=np.float32)
"""Luminance weights of linear R, G, B (Rec. 709 / sRGB primaries)."""
MAX_CHUNK_SAMPLES = 1 << 24
"""At most this many pixel samples (64 MiB of float32) per simulator call, whatever the size."""


class VideoError(HybridPoseError, ValueError):
    """An input video, image folder or frame array cannot be read, or an argument is bad."""


def srgb_to_linear(values: npt.ArrayLike) -> Float32Array:
    """Decode sRGB-encoded values in [0, 1] to linear intensity (IEC 61966-2-1).

    ``c <= 0.04045: c / 12.92``, else ``((c + 0.055) / 1.055) ** 2.4``.

    Example:
        >>> [round(float(v), 4) for v in srgb_to_linear([0.0, 0.5, 1.0])]
        [0.0, 0.214, 1.0]
    """
    c = np.asarray(values, dtype=np.float32)
    linear = np.where(c <= 0.04045, c / 12.92, ((c + 0.055) / 1.055) ** 2.4)
    return linear.astype(np.float32)


_SRGB_LUT_8 = srgb_to_linear(np.arange(256) / 255.0)


def to_luminance(image: npt.NDArray[Any], where: str) -> Float32Array:
    """Linear luminance in [0, 1] of an sRGB image: gray (H, W) or colour (H, W, 3 or 4).

    uint8 values are divided by 255, uint16 by 65535, floats must already lie in [0, 1]; an
    alpha channel is ignored. Colour channels are decoded to linear light first, then weighted
    with :data:`REC709`.

    Raises:
        VideoError: naming ``where``: a bad shape, dtype or value.
    """
    if image.ndim == 3 and image.shape[2] in (3, 4):
        image = image[:, :, :3]
    elif image.ndim != 2:
        raise VideoError(
            f"{where}: expected a gray (H, W) or colour (H, W, 3) image, got {image.shape}"
        )
    if image.dtype == np.uint8:
        linear = _SRGB_LUT_8[image]
    elif image.dtype == np.uint16:
        linear = srgb_to_linear(image / np.float32(65535.0))
    elif np.issubdtype(image.dtype, np.floating):
        lo, hi = float(np.min(image)), float(np.max(image))
        if not (lo >= 0.0 and hi <= 1.0):  # NaN fails too
            raise VideoError(f"{where}: float values must lie in [0, 1], found [{lo}, {hi}]")
        linear = srgb_to_linear(image)
    else:
        raise VideoError(f"{where}: unsupported pixel type {image.dtype} (uint8, uint16 or float)")
    if linear.ndim == 3:
        linear = linear @ REC709
    out: Float32Array = np.clip(linear, 0.0, 1.0, dtype=np.float32)
    return out


# ------------------------------------------------------------------------------ reading
class FrameSource:
    """Frames of one input, read lazily: iterate for ``(t_us, intensity)`` pairs.

    Attributes:
        path: the input.
        size: ``(width, height)`` in pixels.
        count: the number of frames if known in advance (best effort for videos), else None.
        fps: the frame rate that set the timestamps (given), or the video's nominal rate;
            None if unknown.
        skipped: frames dropped so far because their timestamp did not increase.

    Timestamps are microseconds from the first frame (``t_us = 0``), strictly increasing.
    Use as a context manager, or call :meth:`close`, to release a video file.
    """

    def __init__(
        self,
        path: Path,
        size: tuple[int, int],
        count: int | None,
        fps: float | None,
        frames: Callable[[FrameSource], FrameGenerator],
        close: Callable[[], None] = lambda: None,
    ) -> None:
        self.path = path
        self.size = size
        self.count = count
        self.fps = fps
        self.skipped = 0
        self._frames = frames(self)
        self._close = close

    def __iter__(self) -> Iterator[Frame]:
        return self._frames

    def close(self) -> None:
        """Stop reading and release the file."""
        self._frames.close()
        self._close()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


def read_frames(path: str | os.PathLike[str], fps: float | None = None) -> FrameSource:
    """Open a video file, a folder of images or a .npy stack as a stream of intensity frames.

    - A **video file** (anything FFmpeg reads, through PyAV: the ``video`` extra): timestamps
      from the container (``frame.time``), unless ``fps`` is given.
    - A **directory** of PNG/JPEG images, sorted by file name, read with Pillow (``fps``
      required). Every image must have the size of the first.
    - A **.npy** array (T, H, W) (or (T, H, W, 3)) of uint8, uint16 or floats in [0, 1]
      (``fps`` required); memory-mapped, so read a frame at a time.

    Pixel values are taken as sRGB-encoded (what cameras and image files store): colour is
    decoded to linear light and reduced to luminance with Rec. 709 weights (:func:`to_luminance`).
    Timestamps are microseconds from the first frame; with ``fps`` frame ``i`` is at
    ``i * 1e6 / fps``. Frames whose container timestamp does not increase are skipped (counted in
    ``FrameSource.skipped``).

    Args:
        path: the input.
        fps: frame rate that overrides the video's timestamps (> 0); required for folders and
            .npy arrays.

    Returns:
        A :class:`FrameSource` with the frame size, a best-effort frame count and the frames.

    Raises:
        FileNotFoundError: if ``path`` does not exist.
        VideoError: naming the file and the problem: not a video, no video stream, an
            unreadable or odd-sized image, a bad array, a missing ``fps``, PyAV not installed.
    """
    source = Path(path)
    if fps is not None and not (isinstance(fps, (int, float)) and math.isfinite(fps) and fps > 0):
        raise VideoError(f"fps must be a finite number > 0, got {fps!r}")
    if not source.exists():
        raise FileNotFoundError(f"{source}: no such file or directory")
    if source.is_dir():
        return _read_image_folder(source, _require_fps(source, fps, "an image folder"))
    if source.suffix.lower() == ".npy":
        return _read_npy(source, _require_fps(source, fps, "a .npy array"))
    return _read_video(source, None if fps is None else float(fps))


def _require_fps(path: Path, fps: float | None, what: str) -> float:
    if fps is None:
        raise VideoError(f"{path}: {what} has no timestamps; give the frame rate (--fps)")
    return float(fps)


def _read_image_folder(folder: Path, fps: float) -> FrameSource:
    from PIL import Image, UnidentifiedImageError

    files = sorted(
        p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file()
    )
    if not files:
        raise VideoError(f"{folder}: no PNG or JPEG images in the folder")

    def load(file: Path) -> Float32Array:
        try:
            with Image.open(file) as image:
                image.load()
                array = _image_array(image, file)
        except (UnidentifiedImageError, OSError, ValueError) as err:
            if isinstance(err, VideoError):
                raise
            raise VideoError(f"{file}: not a readable image ({first_line(err)})") from None
        return to_luminance(array, str(file))

    first = load(files[0])
    height, width = first.shape

    def frames(src: FrameSource) -> FrameGenerator:
        for i, file in enumerate(files):
            image = first if i == 0 else load(file)
            if image.shape != (height, width):
                raise VideoError(
                    f"{file}: image is {image.shape[1]}x{image.shape[0]}, the first "
                    f"({files[0].name}) is {width}x{height}"
                )
            yield i * 1e6 / fps, image

    return FrameSource(folder, (width, height), len(files), fps, frames)


def _image_array(image: PIL.Image.Image, file: Path) -> npt.NDArray[Any]:
    """The pixels of a loaded image as an array :func:`to_luminance` takes (by image mode).

    16-bit and 32-bit integer images become uint16 (32-bit values must fit), float, 8-bit grey
    and RGB images are taken as they are, 1-bit and grey-with-alpha images become 8-bit grey,
    and every other mode (palette, RGBA, CMYK, ...) becomes RGB.

    Raises:
        VideoError: a 32-bit image with values outside 0..65535.
    """
    if image.mode in ("I;16", "I;16L", "I;16B", "I;16N"):
        return np.asarray(image).astype(np.uint16)
    if image.mode == "I":
        array = np.asarray(image)
        if array.min() < 0 or array.max() > 65535:
            raise VideoError(f"{file}: 32-bit image values outside 0..65535")
        return array.astype(np.uint16)
    if image.mode in ("F", "L", "RGB"):
        return np.asarray(image)
    if image.mode in ("1", "LA", "La"):
        return np.asarray(image.convert("L"))
    return np.asarray(image.convert("RGB"))


def _read_npy(path: Path, fps: float) -> FrameSource:
    try:
        array = np.load(path, mmap_mode="r", allow_pickle=False)
    except (OSError, ValueError, EOFError) as err:
        raise VideoError(f"{path}: not a readable .npy array ({first_line(err)})") from None
    if not isinstance(array, np.ndarray):
        raise VideoError(f"{path}: holds no array")
    if not (array.ndim == 3 or (array.ndim == 4 and array.shape[3] in (3, 4))):
        raise VideoError(f"{path}: expected frames (T, H, W) or (T, H, W, 3), got {array.shape}")
    if array.dtype not in (np.uint8, np.uint16) and not np.issubdtype(array.dtype, np.floating):
        raise VideoError(f"{path}: unsupported dtype {array.dtype} (uint8, uint16 or float)")
    if array.shape[0] == 0 or array.shape[1] == 0 or array.shape[2] == 0:
        raise VideoError(f"{path}: no frames (shape {array.shape})")
    height, width = int(array.shape[1]), int(array.shape[2])

    def frames(src: FrameSource) -> FrameGenerator:
        for i in range(array.shape[0]):
            yield i * 1e6 / fps, to_luminance(np.asarray(array[i]), f"{path} frame {i}")

    return FrameSource(path, (width, height), int(array.shape[0]), fps, frames)


def _read_video(path: Path, fps: float | None) -> FrameSource:
    try:
        import av
    except ImportError:
        raise VideoError(
            f"{path}: reading video files needs PyAV (the video extra): {install_hint('video')}"
        ) from None
    try:
        container = av.open(str(path))
    except (av.FFmpegError, OSError, ValueError) as err:
        raise VideoError(f"{path}: not a readable video ({first_line(err)})") from None
    try:
        stream, (width, height), nominal, count = _video_stream(container, path)
    except BaseException:
        container.close()
        raise

    def frames(src: FrameSource) -> FrameGenerator:
        first_time: float | None = None
        last_t = -math.inf
        index = 0
        try:
            for frame in container.decode(stream):
                if fps is not None:
                    t_us = index * 1e6 / fps
                else:
                    seconds = _frame_seconds(frame, index, nominal, path)
                    if first_time is None:
                        first_time = seconds
                    t_us = (seconds - first_time) * 1e6
                index += 1
                if t_us <= last_t:
                    src.skipped += 1
                    continue
                image = _frame_image(frame, index - 1, (width, height), path)
                last_t = t_us
                yield t_us, to_luminance(image, f"{path} frame {index - 1}")
        except av.FFmpegError as err:
            raise VideoError(
                f"{path}: damaged video at frame {index} ({first_line(err)})"
            ) from None
        finally:
            container.close()

    return FrameSource(path, (width, height), count, fps or nominal, frames, container.close)


def _video_stream(
    container: Any, path: Path
) -> tuple[Any, tuple[int, int], float | None, int | None]:
    """The first video stream of an open PyAV container, made ready for decoding.

    Returns:
        ``(stream, (width, height), nominal, count)``: the stream (decoding on threads), its
        frame size, its nominal frame rate (None if unknown) and its frame count (from the
        stream, else estimated from the container's duration; None if unknown).

    Raises:
        VideoError: no video stream, or one without a frame size.
    """
    if not container.streams.video:
        raise VideoError(f"{path}: no video stream")
    stream = container.streams.video[0]
    stream.thread_type = "AUTO"
    width, height = int(stream.codec_context.width), int(stream.codec_context.height)
    if width <= 0 or height <= 0:
        raise VideoError(f"{path}: video stream has no frame size")
    nominal = float(stream.average_rate) if stream.average_rate else None
    count: int | None = int(stream.frames) or None
    if count is None and nominal and container.duration:
        count = round(container.duration / 1e6 * nominal)  # container.duration is in us
    return stream, (width, height), nominal, count


def _frame_seconds(frame: Any, index: int, nominal: float | None, path: Path) -> float:
    """A decoded frame's container time in seconds; ``index / nominal`` where it has none.

    Raises:
        VideoError: the frame has no timestamp and the stream no nominal frame rate.
    """
    frame_time: float | None = frame.time  # None in some containers
    if frame_time is None:
        if nominal is None:
            raise VideoError(f"{path}: frame {index} has no timestamp; give the frame rate (--fps)")
        return index / nominal
    return float(frame_time)


def _frame_image(frame: Any, index: int, size: tuple[int, int], path: Path) -> npt.NDArray[Any]:
    """Frame ``index`` as an RGB array, checked against the stream's ``size = (width, height)``.

    Raises:
        VideoError: the frame's size is not the stream's.
    """
    width, height = size
    image: npt.NDArray[Any] = frame.to_ndarray(format="rgb24")
    if image.shape[:2] != (height, width):
        raise VideoError(
            f"{path}: frame {index} is {image.shape[1]}x{image.shape[0]}, "
            f"the stream is {width}x{height}"
        )
    return image


# ------------------------------------------------------------------------------ conversion
@dataclass(frozen=True)
class VideoSummary:
    """What :func:`video_to_events` wrote.

    Attributes:
        path: the recording written.
        frames: frames simulated.
        skipped_frames: frames dropped because their timestamp did not increase.
        events: events written.
        duration_s: time from the first to the last frame.
        sensor_size: ``(width, height)``.
    """

    path: Path
    frames: int
    skipped_frames: int
    events: int
    duration_s: float
    sensor_size: tuple[int, int]

    def format(self) -> str:
        """One line for people."""
        width, height = self.sensor_size
        skipped = f", {self.skipped_frames} skipped" if self.skipped_frames else ""
        return (
            f"{self.path}: {self.events} events from {self.frames} frames{skipped} "
            f"({self.duration_s:.3f} s, {width}x{height})"
        )


def video_calibration(width: int, height: int) -> CameraCalibration:
    """The stand-in camera of a video: focal length = width, principal point at the centre.

    ``P = [[f, 0, cx, 0], [0, f, cy, 0], [0, 0, 1, 0]]`` with ``f = width`` and the image centre
    ``(cx, cy) = ((width - 1) / 2, (height - 1) / 2)`` in the pixel convention (centres of
    pixels at integers); the optical centre is unknown (NaN).
    """
    f = float(width)
    P = np.array(
        [[f, 0.0, (width - 1) / 2, 0.0], [0.0, f, (height - 1) / 2, 0.0], [0.0, 0.0, 1.0, 0.0]]
    )
    return CameraCalibration(P=P, center=np.full(3, np.nan), name="video")


def video_to_events(
    path: str | os.PathLike[str],
    out: str | os.PathLike[str],
    fps: float | None = None,
    config: EsimConfig = EsimConfig(),  # noqa: B008 - frozen, so a shared default is safe
    seed: int = 0,
    chunk_frames: int = 64,
    progress: bool = True,
    device: str | None = None,
) -> VideoSummary:
    """Simulate an event camera watching a video and write the events as a recording.

    The frames (see :func:`read_frames`) go to the simulator a chunk at a time
    (:func:`~hybridpose.synth.esim.esim_advance`); it interpolates each pixel's log intensity
    **linearly between consecutive frames**, so fast motion in a low-frame-rate video gives
    events bunched along straight lines in time rather than the true sub-frame dynamics (no
    frame interpolation is done here). The first frame initialises the sensor and emits nothing.

    The output is a one-camera recording (``hybridpose.io.recording``) with the video's frame
    size as sensor size, a stand-in pinhole calibration (:func:`video_calibration`), no labels,
    meta source ``"video-to-events"`` and extra ``{"input", "fps", "fps_given", "seed",
    "esim"}``. Memory is bounded (one chunk of frames and its events at a time) and the file
    appears only when complete.

    Args:
        path: a video file, an image folder or a .npy stack.
        out: the recording to write (.h5).
        fps: frame rate overriding the video's timestamps; required for folders and arrays.
        config: the simulated sensor.
        seed: seed of the random generator (thresholds, hot pixels, noise).
        chunk_frames: frames per simulator call (at most; large frames are sent in smaller
            chunks so that a chunk holds at most ``MAX_CHUNK_SAMPLES`` pixel samples).
        progress: show a progress bar (tqdm, on stderr).
        device: run the pixel model with torch on this device
            (:func:`~hybridpose.synth.esim_torch.esim_advance_torch`: the same events); None,
            the compiled CPU kernel.

    Returns:
        A :class:`VideoSummary`.

    Raises:
        FileNotFoundError: if the input does not exist.
        VideoError: an unreadable input, fewer than 2 frames, or a bad argument.
    """
    if not isinstance(config, EsimConfig):
        raise VideoError(f"config must be an EsimConfig, got {type(config).__name__}")
    if isinstance(chunk_frames, bool) or not isinstance(chunk_frames, int) or chunk_frames < 1:
        raise VideoError(f"chunk_frames must be a whole number >= 1, got {chunk_frames!r}")
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        raise VideoError(f"seed must be a whole number >= 0, got {seed!r}")
    input_path = Path(path)
    rng = np.random.default_rng(seed)
    with read_frames(input_path, fps) as source:
        width, height = source.size
        chunk = max(1, min(chunk_frames, MAX_CHUNK_SAMPLES // (width * height)))
        meta = RecordingMeta(
            source="video-to-events",
            extra={
                "input": input_path.name,
                "fps": source.fps,
                "fps_given": fps is not None,
                "seed": seed,
                "esim": asdict(config),
            },
        )
        frames = iter(source)
        with (
            RecordingWriter(out, (width, height), [video_calibration(width, height)], meta) as w,
            tqdm(
                total=source.count,
                unit="frame",
                desc=input_path.name,
                disable=not progress,
                leave=False,
            ) as bar,
        ):
            first = next(frames, None)
            if first is None:
                raise VideoError(f"{input_path}: no frames")
            t_first, image = first
            state = esim_init(log_intensity(image, config), t_first, config, rng)
            bar.update(1)
            n_frames, n_events = 1, 0
            times: list[float] = []
            images: list[Float32Array] = []
            for t_us, image in frames:
                times.append(t_us)
                images.append(image)
                if len(times) == chunk:
                    events, state = _advance(state, times, images, config, rng, device)
                    w.append_events(0, events)
                    n_frames, n_events = n_frames + len(times), n_events + len(events)
                    bar.update(len(times))
                    times, images = [], []
            if times:
                events, state = _advance(state, times, images, config, rng, device)
                w.append_events(0, events)
                n_frames, n_events = n_frames + len(times), n_events + len(events)
                bar.update(len(times))
            if n_frames < 2:  # the first frame only sets the sensor: no time, no events
                raise VideoError(f"{input_path}: needs at least 2 frames to make events, has 1")
        return VideoSummary(
            path=Path(out),
            frames=n_frames,
            skipped_frames=source.skipped,
            events=n_events,
            duration_s=(state.t_us - t_first) / 1e6,
            sensor_size=(width, height),
        )


def _advance(
    state: EsimState,
    times: list[float],
    images: list[Float32Array],
    config: EsimConfig,
    rng: np.random.Generator,
    device: str | None,
) -> tuple[Events, EsimState]:
    logs = log_intensity(np.stack(images), config)
    try:
        if device is None:
            return esim_advance(state, logs, times, config, rng)
        from hybridpose.synth.esim_torch import esim_advance_torch

        return esim_advance_torch(state, logs, times, config, rng, device=device)
    except EsimError as err:  # pragma: no cover - read_frames guarantees valid input
        raise VideoError(str(err)) from None
