"""The simulated event cameras: the ``clean`` and ``davis346`` sensor models and DHP19's IR spots.

``clean`` is the ESIM-style pixel of the first datasets (the defaults of
:class:`~hybridpose.synth.esim.EsimConfig`): equal thresholds, uniform background activity, weak
hot pixels. ``davis346`` follows v2e's DVS pixel model (Hu, Liu and Delbruck, "v2e: From Video
Frames to Realistic DVS Events", CVPRW 2021, and its ``EventEmulator``) with the values below;
each is a documented field of :class:`~hybridpose.synth.esim.EsimConfig`:

- ``threshold_pos / threshold_neg`` 0.21 / 0.17: the nominal ON/OFF thresholds of v2e's
  emulator docstring (ON above OFF: more OFF than ON events).
- ``threshold_sigma`` 0.03: v2e's default per-pixel mismatch.
- ``refractory_us`` 500: the clean model's (v2e's default is 0, its "noisy" preset 10 ms).
- ``cutoff_hz`` 300: a white pixel's photoreceptor bandwidth, falling with intensity by v2e's
  rule ``f = cutoff (255 I + 20) / 275``; an assumption for a lit lab (v2e's paper describes
  bandwidths of hundreds of Hz in normal light; its low-light "noisy" preset uses 30).
- ``leak_rate_hz`` 0.1: v2e's default.
- ``shot_noise_rate_hz`` 0.1: a black pixel's rate, of the order of the clean model's
  background activity (v2e's low-light "noisy" preset: 5).
- ``shot_noise_intensity_factor`` 0.25: v2e's (a white pixel has a quarter of a black one's).
- ``noise_rate_cov_decades`` 0.1: v2e's default per-pixel rate spread.
- ``hot_pixel_rate_hz`` 600 with ``hot_pixel_rate_decades`` 0.5: 0.6-1.9 kHz, at least
  1.2x10^4 events in a 20 s recording, so that DHP19's ">= 10^4 events" hot-pixel rule
  catches them.
- ``timestamp_jitter_us`` 20: an assumption, of the order of the DAVIS346's specified latency
  (iniVation's datasheet: 20 us).

**IR reflections.** DHP19's Vicon lights the scene with infrared strobes at its frame rate
(100 Hz); two static spots reflect them into cameras 2 and 3, which is why the reference code
masks two rectangles (``Generate_DHP19.m``: columns 780-810, rows 115-145 of the tiled frame,
i.e. camera 2, and columns 346*3 + 214-221, rows 136-144, camera 3). :data:`DHP19_REFLECTIONS`
places a flickering disc in each: every pixel within ``radius`` sees a square wave of log
contrast ``contrast * (1 - (r / radius)^2)`` at ``strobe_hz`` and fires
``floor(contrast / C)`` ON events at each rise and as many OFF events at each fall, one per
refractory period (:func:`reflection_events`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from hybridpose.events import EVENT_DTYPE, Events
from hybridpose.synth.esim import EsimConfig, EsimState

DHP19_SENSOR = (346, 260)

SENSORS: dict[str, EsimConfig] = {
    "clean": EsimConfig(),
    "davis346": EsimConfig(
        threshold_pos=0.21,
        threshold_neg=0.17,
        threshold_sigma=0.03,
        threshold_min=0.05,
        refractory_us=500.0,
        noise_rate_hz=0.0,
        hot_pixel_fraction=1e-4,
        hot_pixel_rate_hz=600.0,
        hot_pixel_rate_decades=0.5,
        cutoff_hz=300.0,
        leak_rate_hz=0.1,
        shot_noise_rate_hz=0.1,
        shot_noise_intensity_factor=0.25,
        noise_rate_cov_decades=0.1,
        timestamp_jitter_us=20.0,
    ),
}
"""The sensor models by name (``simulate --sensor``); ``davis346`` is the default."""

DEFAULT_SENSOR = "davis346"


@dataclass(frozen=True)
class ReflectionSpot:
    """A static spot that reflects the Vicon's IR strobes into one camera.

    Attributes:
        camera: the camera index (DHP19's camera id).
        center: ``(x, y)`` of its centre on a 346x260 sensor, in the recordings' convention
            (scaled with the sensor at other sizes).
        radius: its radius in pixels at 346x260 (> 0).
        contrast: the log contrast of the flash at its centre (> 0).
        strobe_hz: the flash rate (DHP19's Vicon: 100 Hz).
        duty: the fraction of each period the flash is on, in (0, 1).
    """

    camera: int
    center: tuple[float, float]
    radius: float
    contrast: float = 0.5
    strobe_hz: float = 100.0
    duty: float = 0.3


DHP19_REFLECTIONS: tuple[ReflectionSpot, ...] = (
    ReflectionSpot(camera=2, center=(102.0, 129.0), radius=3.0),
    ReflectionSpot(camera=3, center=(216.5, 139.0), radius=2.0),
)
"""Inside the two rectangles DHP19's reference code masks (see the module docstring)."""

SENSOR_REFLECTIONS: dict[str, tuple[ReflectionSpot, ...]] = {
    "clean": (),
    "davis346": DHP19_REFLECTIONS,
}
"""The reflection spots each named sensor sees (the ideal ``clean`` camera none)."""


def spot_pixels(
    spot: ReflectionSpot, sensor_size: tuple[int, int]
) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.int64], npt.NDArray[np.float64]]:
    """The pixels ``(x, y)`` of a spot on a sensor of ``sensor_size`` and their log contrast."""
    width, height = sensor_size
    sx, sy = width / DHP19_SENSOR[0], height / DHP19_SENSOR[1]
    cx, cy = spot.center[0] * sx, spot.center[1] * sy
    radius = max(spot.radius * min(sx, sy), 0.5)
    xs = np.arange(max(math.floor(cx - radius), 0), min(math.ceil(cx + radius) + 1, width))
    ys = np.arange(max(math.floor(cy - radius), 0), min(math.ceil(cy + radius) + 1, height))
    gx, gy = np.meshgrid(xs, ys)
    r2 = ((gx - cx) ** 2 + (gy - cy) ** 2) / radius**2
    inside = r2 < 1.0
    contrast = spot.contrast * (1.0 - r2[inside])
    return gx[inside].astype(np.int64), gy[inside].astype(np.int64), contrast


def reflection_events(
    spots: tuple[ReflectionSpot, ...],
    state: EsimState,
    t0_us: float,
    t1_us: float,
    phase_us: float,
    config: EsimConfig,
) -> Events:
    """The events of flickering spots over ``(t0_us, t1_us]``, sorted by time.

    A flash rises at ``phase_us + n / strobe_hz`` and falls ``duty / strobe_hz`` later; a pixel
    of contrast ``c`` fires ``floor(c / C+)`` ON events at a rise and ``floor(c / C-)`` OFF
    events at a fall (its own thresholds from ``state``), one per refractory period (at least
    1 us apart). Flash edges are sharp, so these events carry no timestamp jitter.
    """
    chunks: list[Events] = []
    for spot in spots:
        xs, ys, contrast = spot_pixels(spot, state.sensor_size)
        if not len(xs):
            continue
        period = 1e6 / spot.strobe_hz
        first = math.ceil((t0_us - phase_us - period) / period)
        starts = phase_us + period * np.arange(first, math.floor((t1_us - phase_us) / period) + 1)
        for sign, offset, thresholds in (
            (1, 0.0, state.threshold_pos),
            (-1, spot.duty * period, state.threshold_neg),
        ):
            counts = np.floor(contrast / thresholds[ys, xs]).astype(np.int64)
            step = max(config.refractory_us, 1.0)
            for j in range(int(counts.max(initial=0))):
                firing = counts > j
                for t_edge in starts + offset + j * step:
                    if t0_us < t_edge <= t1_us:
                        events = np.empty(int(firing.sum()), EVENT_DTYPE)
                        events["x"], events["y"] = xs[firing], ys[firing]
                        events["t"], events["p"] = math.floor(t_edge), sign
                        chunks.append(events)
    if not chunks:
        return np.empty(0, EVENT_DTYPE)
    out = np.concatenate(chunks)
    return out[np.argsort(out["t"], kind="stable")]
