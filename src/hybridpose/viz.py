"""Pictures of event data: event frames with the labelled skeleton drawn on top.

Figures are made with matplotlib's object API (``matplotlib.figure.Figure``), never pyplot: no
display is needed and the importing program's backend is left alone.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import numpy.typing as npt
from matplotlib.axes import Axes
from matplotlib.figure import Figure

from hybridpose.atomic import atomic_write
from hybridpose.data import interpolate_joints
from hybridpose.errors import HybridPoseError
from hybridpose.events import Events
from hybridpose.geometry import project
from hybridpose.io.recording import Labels, Recording
from hybridpose.joints import BONES
from hybridpose.paths import check_output_file

if TYPE_CHECKING:
    from hybridpose.stream import StreamPose

ON_COLOUR = np.array([0.85, 0.15, 0.1])
OFF_COLOUR = np.array([0.1, 0.35, 0.9])


def event_image(
    events: Events, sensor_size: tuple[int, int], saturation: int = 3
) -> npt.NDArray[np.float64]:
    """An RGB picture of events: white background, ON red, OFF blue, by count.

    Args:
        events: the events to show.
        sensor_size: ``(width, height)``.
        saturation: a pixel's colour is full once it has this many events of one polarity.

    Returns:
        (H, W, 3) float image in [0, 1].
    """
    width, height = sensor_size
    flat = events["y"].astype(np.int64) * width + events["x"]
    on = np.bincount(flat[events["p"] > 0], minlength=width * height).reshape(height, width)
    off = np.bincount(flat[events["p"] < 0], minlength=width * height).reshape(height, width)
    a_on = np.minimum(on / saturation, 1.0)[..., None]
    a_off = np.minimum(off / saturation, 1.0)[..., None]
    image: npt.NDArray[np.float64] = np.ones((height, width, 3))
    image = image * (1 - a_on) + ON_COLOUR * a_on
    image = image * (1 - a_off) + OFF_COLOUR * a_off
    return image


def draw_skeleton(
    ax: Axes, uv: npt.ArrayLike, colour: str = "limegreen", label: str | None = None
) -> None:
    """Draw the 13-joint skeleton ``uv`` (13, 2) in pixels; NaN joints are left out."""
    uv = np.asarray(uv, dtype=np.float64)
    for i, j in BONES:
        if np.all(np.isfinite(uv[[i, j]])):
            ax.plot(uv[[i, j], 0], uv[[i, j], 1], "-", color=colour, lw=1.0, alpha=0.8)
    ok = np.all(np.isfinite(uv), axis=1)
    ax.plot(uv[ok, 0], uv[ok, 1], "o", color=colour, ms=2.5, alpha=0.8, label=label)


PICTURE_SUFFIXES = (".png", ".pdf", ".svg")
"""The formats :func:`plot_recording_frame` writes (matplotlib picks one by the suffix)."""


def plot_recording_frame(
    recording: str | os.PathLike[str],
    out: str | os.PathLike[str],
    t_s: float,
    window_ms: float = 30.0,
    cameras: Sequence[int] | None = None,
) -> Path:
    """Save a PNG of each camera's events in ``(t - window, t]`` with the labelled skeleton.

    The 3D label nearest ``t`` is projected through each camera's ``P``. One panel per camera,
    side by side. Returns the written path.

    Raises:
        OutputPathError: ``out`` does not end in one of :data:`PICTURE_SUFFIXES`, is a
            directory or lies in a file; checked first, so nothing is read or created then.
    """
    out = check_output_file(out, PICTURE_SUFFIXES)
    with Recording(recording) as rec:
        cams = list(range(len(rec.cameras))) if cameras is None else list(cameras)
        labels = rec.labels()
        joints = None
        if labels.count:
            last = float(labels.t_us[-1]) / 1e6
            if not 0.0 <= t_s <= last + 0.01:
                raise HybridPoseError(f"{recording}: --time {t_s} s is outside 0-{last:.2f} s")
            nearest = int(np.argmin(np.abs(labels.t_us - t_s * 1e6)))
            joints = labels.joints_mm[nearest].astype(np.float64)
        t_end = round(t_s * 1e6)
        t_start = t_end - round(window_ms * 1e3)
        width, height = rec.sensor_size
        fig = Figure(figsize=(3.2 * len(cams) * width / height, 3.4))
        axes = fig.subplots(1, len(cams), squeeze=False)
        for ax, cam in zip(axes[0], cams, strict=True):
            events = rec.events(cam, t_start + 1, t_end + 1)  # (t - window, t]
            ax.imshow(event_image(events, (width, height)), interpolation="nearest")
            if joints is not None:
                draw_skeleton(ax, project(rec.cameras[cam].calibration.P, joints))
            ax.set_title(f"camera {cam}: {len(events):,} events", fontsize=9)
            ax.set_xlim(-0.5, width - 0.5)
            ax.set_ylim(height - 0.5, -0.5)
            ax.set_xticks([])
            ax.set_yticks([])
        fig.suptitle(f"{Path(recording).name}  t = {t_s:.3f} s, last {window_ms:g} ms", fontsize=9)
        fig.tight_layout()
    save_figure(fig, out)
    return out


def save_figure(fig: Figure, out: str | os.PathLike[str], dpi: int = 110) -> None:
    """Write ``fig`` to ``out`` atomically (a temporary file beside it, then a rename).

    The format follows the file name's suffix (png, pdf, svg...).
    """
    out = Path(out)
    with atomic_write(out) as f:
        fig.savefig(f, dpi=dpi, format=out.suffix.lstrip(".") or "png")


# ------------------------------------------------------------------------------ animations


@dataclass(frozen=True)
class StreamFrame:
    """One streamed step to animate: per camera stream, its events of the step and the
    predicted and true joints ``(J, 2)`` in sensor pixels."""

    t_us: int
    step: int
    events: list[Events]
    predicted: list[npt.NDArray[np.float64]]
    truth: list[npt.NDArray[np.float64]]


def stream_frame(
    pose: StreamPose,
    events: list[Events],
    labels: Labels | None,
    projections: Sequence[npt.NDArray[np.float64] | None],
) -> StreamFrame:
    """The frame of one streamed pose: its events per stream, the predicted joints and the
    labels at the pose's time projected through each stream's camera (NaN without labels or
    calibration)."""
    joints = None
    if labels is not None:
        joints = interpolate_joints(labels.t_us, labels.joints_mm, [pose.t_us])[0]
    missing = np.full((pose.uv.shape[1], 2), np.nan)
    truth = [missing if joints is None or P is None else project(P, joints) for P in projections]
    predicted = [pose.uv[s].astype(np.float64) for s in range(len(events))]
    return StreamFrame(pose.t_us, pose.step, events, predicted, truth)


PREDICTED_RGB = (220, 30, 160)
TRUTH_RGB = (20, 170, 60)


def _draw_skeleton_pil(draw: Any, uv: npt.NDArray[np.float64], scale: float, x0: float,
                       rgb: tuple[int, int, int], width: int) -> None:  # fmt: skip
    def at(j: int) -> tuple[float, float]:
        return (x0 + (uv[j, 0] + 0.5) * scale, (uv[j, 1] + 0.5) * scale)

    for i, j in BONES:
        if np.all(np.isfinite(uv[[i, j]])):
            draw.line([at(i), at(j)], fill=rgb, width=width)
    for j in range(len(uv)):
        if np.all(np.isfinite(uv[j])):
            x, y = at(j)
            r = width + 1
            draw.ellipse([x - r, y - r, x + r, y + r], fill=rgb)


def save_stream_gif(
    frames: Sequence[StreamFrame],
    out: str | os.PathLike[str],
    sensor_size: tuple[int, int],
    *,
    title: str = "",
    fps: float = 50.0,
    every: int = 2,
    trail: int = 3,
    scale: int = 4,
) -> Path:
    """An animated GIF of streamed poses: each camera's recent events (the last ``trail``
    steps), the true skeleton (green) and the predicted one (magenta), cameras side by side.

    Args:
        frames: consecutive steps.
        out: the GIF's path (written atomically).
        sensor_size: ``(width, height)`` of the cameras.
        title: a caption drawn in the corner with the time and the step since initialisation.
        fps: frames per second of the animation (real time when ``fps * every`` steps per
            second is the stream's rate).
        every: draw every ``every``-th step.
        trail: how many steps of events each frame shows.
        scale: pixels per sensor pixel.
    """
    from PIL import Image, ImageDraw

    if not frames:
        raise HybridPoseError(f"{out}: no frames to animate")
    width, height = sensor_size
    n_cams = len(frames[0].events)
    pictures = []
    for k in range(0, len(frames), every):
        recent = frames[max(0, k - trail + 1) : k + 1]
        panels = []
        for c in range(n_cams):
            events = np.concatenate([f.events[c] for f in recent])
            rgb = (event_image(events, sensor_size, saturation=2) * 255).astype(np.uint8)
            panels.append(rgb)
        strip = np.concatenate(panels, axis=1)
        image = Image.fromarray(strip).resize((width * n_cams * scale, height * scale),
                                              Image.Resampling.NEAREST)  # fmt: skip
        draw = ImageDraw.Draw(image)
        frame = frames[k]
        for c in range(n_cams):
            x0 = c * width * scale
            _draw_skeleton_pil(draw, frame.truth[c], scale, x0, TRUTH_RGB, 2)
            _draw_skeleton_pil(draw, frame.predicted[c], scale, x0, PREDICTED_RGB, 2)
            if c:
                draw.line([(x0, 0), (x0, height * scale)], fill=(120, 120, 120), width=1)
        caption = f"{title}  t={frame.t_us / 1e6:.2f} s  step {frame.step}"
        draw.text((4, 3), caption, fill=(0, 0, 0))
        draw.text((4, height * scale - 14), "true", fill=TRUTH_RGB)
        draw.text((40, height * scale - 14), "predicted", fill=PREDICTED_RGB)
        pictures.append(image.convert("P", palette=Image.Palette.ADAPTIVE, colors=64))
    out = Path(out)
    duration_ms = max(20, round(1000 / fps))
    with atomic_write(out) as f:
        pictures[0].save(f, format="GIF", save_all=True, append_images=pictures[1:],
                         duration=duration_ms, loop=0, optimize=True)  # fmt: skip
    return out
