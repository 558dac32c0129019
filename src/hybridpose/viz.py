"""Pictures of event data: event frames with the labelled skeleton drawn on top.

Figures are made with matplotlib's object API (``matplotlib.figure.Figure``), never pyplot: no
display is needed and the importing program's backend is left alone.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import numpy.typing as npt
from matplotlib.axes import Axes
from matplotlib.figure import Figure

from hybridpose.atomic import atomic_write
from hybridpose.errors import HybridPoseError
from hybridpose.events import Events
from hybridpose.geometry import project
from hybridpose.io.recording import Recording
from hybridpose.joints import BONES

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
    """
    out = Path(out)
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
