"""Picture and measurement: the plain and the clothed appearance of one subject, and their events.

Renders the same instant of the same subject and movement in one camera with the ``plain`` and
the ``clothed`` appearance (:mod:`hybridpose.synth.appearance`), simulates the events of a short
window of motion around it for each (the default :class:`EsimConfig`, the time grid refined as
:mod:`hybridpose.synth.generate` refines it: until no pixel's log intensity steps by more than the
sampling bound between two samples), and writes the four panels (intensity above, events
below; each at the sensor's 346x260) side by side into one PNG. It prints, per appearance, the
number of events and the share of them that fall inside the body's silhouette at the window's
middle: texture that moves with a limb fires inside the silhouette, a uniform capsule almost only
on its edges.

    python bench/appearance.py [--subject 2] [--movement 22] [--camera 2] [--window-ms 20]
        [--out docs/images/appearance-plain-vs-clothed.png]
"""

from __future__ import annotations

import argparse
import dataclasses
from pathlib import Path
from typing import NamedTuple

import numpy as np
import numpy.typing as npt
from matplotlib.figure import Figure
from scipy.ndimage import binary_erosion

from hybridpose.events import Events
from hybridpose.synth.appearance import APPEARANCES, AppearanceName
from hybridpose.synth.body import body_capsules
from hybridpose.synth.esim import (
    EsimConfig,
    esim_advance,
    esim_init,
    log_intensity,
    max_log_change,
)
from hybridpose.synth.generate import PRESETS, SimulationConfig, make_subject, make_views
from hybridpose.synth.motions import Performance, perform
from hybridpose.synth.render import View, capsule_boxes, render, union_box
from hybridpose.viz import event_image, save_figure

Box = tuple[int, int, int, int]
MIN_STEP_US = 10.0


class Window(NamedTuple):
    """What one appearance produced: the image at the middle, the body's silhouette there,
    the pixels the body covers throughout the window (its interior, less a pixel's rim), and
    the events."""

    image: npt.NDArray[np.float32]
    silhouette: npt.NDArray[np.bool_]
    interior: npt.NDArray[np.bool_]
    events: Events

    def share(self, mask: npt.NDArray[np.bool_]) -> float:
        """The share of the events that fall on ``mask`` (H, W)."""
        if not len(self.events):
            return float("nan")
        return float(mask[self.events["y"], self.events["x"]].mean())


class _Scene(NamedTuple):
    view: View
    config: SimulationConfig
    subject_number: int
    performance: Performance


def _log_frames(scene: _Scene, t_s: npt.NDArray[np.float64], box: Box) -> npt.NDArray[np.float32]:
    subject = make_subject(scene.config, scene.subject_number)
    frames = scene.performance.frames(t_s)
    capsules = body_capsules(subject.body, frames)
    image = render(
        scene.view, capsules, frames.forward, subject.clothing, scene.config.lighting, box
    )
    return log_intensity(image, EsimConfig())


def _refined(
    scene: _Scene, t0: float, t1: float, box: Box
) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.float32]]:
    """Instants in ``[t0, t1]`` (s) and their log frames of ``box``, halved until no pixel steps
    by more than the sampling bound (or the step reaches ``MIN_STEP_US``)."""
    bound = EsimConfig().log_step_limit
    times = np.linspace(t0, t1, 201)
    logs = _log_frames(scene, times, box)
    while True:
        steps = max_log_change(logs[0], logs[1:])
        gaps = np.diff(times) * 1e6
        split = np.flatnonzero((steps > bound) & (gaps > 2 * MIN_STEP_US))
        if not len(split):
            return times, logs
        mids = 0.5 * (times[split] + times[split + 1])
        order = np.argsort(np.concatenate([times, mids]), kind="stable")
        times = np.concatenate([times, mids])[order]
        logs = np.concatenate([logs, _log_frames(scene, mids, box)])[order]


def fastest_instant(performance: Performance) -> float:
    """The instant of the first repetition at which some joint moves fastest (s)."""
    t = np.linspace(performance.start_s[0], performance.end_s[0], 2001)
    joints = performance.frames(t).joints
    speed = np.linalg.norm(np.diff(joints, axis=0), axis=-1).max(axis=1)
    return float(0.5 * (t[:-1] + t[1:])[np.argmax(speed)])


def simulate_window(
    appearance: AppearanceName, subject: int, movement: int, camera: int, window_s: float
) -> Window:
    """The events of ``window_s`` seconds around the first repetition's fastest instant (the
    largest speed of any joint)."""
    config = dataclasses.replace(PRESETS["default"], appearance=appearance)
    person = make_subject(config, subject)
    performance = perform(movement, person.body, np.random.default_rng(0), config.performance)
    scene = _Scene(make_views(config)[camera], config, subject, performance)
    middle = fastest_instant(performance)
    t0, t1 = middle - window_s / 2, middle + window_s / 2
    width, height = scene.view.sensor_size
    probes = np.linspace(t0, t1, 21)
    capsules = body_capsules(person.body, performance.frames(probes))
    box = union_box(capsule_boxes(scene.view, capsules, margin=3))
    background = log_intensity(scene.view.background, EsimConfig())
    covered = _log_frames(scene, probes, (0, width, 0, height)) != background  # (21, H, W)
    times, logs = _refined(scene, t0, t1, box)
    first = background.astype(np.float64)
    first[box[2] : box[3], box[0] : box[1]] = logs[0]
    rng = np.random.default_rng(1)
    state = esim_init(first, t0 * 1e6, EsimConfig(), rng)
    events, _ = esim_advance(state, logs[1:], times[1:] * 1e6, EsimConfig(), rng, (box[0], box[2]))
    mid_frames = performance.frames(np.array([middle]))
    mid = body_capsules(person.body, mid_frames)
    image = render(
        scene.view, mid, mid_frames.forward, person.clothing, config.lighting, (0, width, 0, height)
    )[0]
    interior = binary_erosion(covered.all(axis=0))
    return Window(image, image != scene.view.background, interior, events)


def picture(windows: dict[str, Window], window_ms: float, out: Path) -> None:
    """Intensity (top) and events (bottom) per appearance, each panel at the sensor's size."""
    height, width = next(iter(windows.values())).image.shape
    fig = Figure(figsize=(len(windows) * width / 100, 2 * height / 100), dpi=100)
    for column, (name, window) in enumerate(windows.items()):
        panels = (
            (np.sqrt(np.clip(window.image, 0.0, 1.0)), f"{name}"),
            (
                event_image(window.events, (width, height)),
                f"{name}: {len(window.events):,} events in {window_ms:g} ms, "
                f"{100 * window.share(window.silhouette):.0f}% in the silhouette",
            ),
        )
        for row, (pixels, label) in enumerate(panels):
            ax = fig.add_axes((column / len(windows), 1 - (row + 1) / 2, 1 / len(windows), 1 / 2))
            ax.imshow(pixels, cmap="gray", vmin=0.0, vmax=1.0, interpolation="nearest")
            ax.text(4, 14, label, color="black", fontsize=8, backgroundcolor="white")
            ax.set_axis_off()
    out.parent.mkdir(parents=True, exist_ok=True)
    save_figure(fig, out, dpi=100)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--subject", type=int, default=2)
    parser.add_argument("--movement", type=int, default=22)
    parser.add_argument("--camera", type=int, default=2)
    parser.add_argument("--window-ms", type=float, default=20.0)
    parser.add_argument(
        "--out", type=Path, default=Path("docs/images/appearance-plain-vs-clothed.png")
    )
    args = parser.parse_args()
    windows: dict[str, Window] = {
        name: simulate_window(name, args.subject, args.movement, args.camera, args.window_ms / 1e3)
        for name in APPEARANCES
    }
    for name, window in windows.items():
        print(
            f"{name}: {len(window.events)} events in {args.window_ms:g} ms; inside the "
            f"silhouette at the middle {100 * window.share(window.silhouette):.1f}%, inside the "
            f"body throughout (less a pixel's rim) {100 * window.share(window.interior):.1f}%"
        )
    picture(windows, args.window_ms, args.out)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
