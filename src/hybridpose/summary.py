"""What a recording holds, as a JSON-ready dict and as text: the engine of ``hybridpose inspect``.

Only metadata, labels and the first/last timestamps are read, never the event columns, so a
summary of a recording with 10^8 events takes milliseconds.
"""

from __future__ import annotations

import os
from typing import Any

import numpy as np

from hybridpose.io.recording import Recording


def recording_summary(path: str | os.PathLike[str]) -> dict[str, Any]:
    """Summarise a recording file.

    Returns:
        A dict with ``path``, ``format_version``, ``source``, ``subject``, ``session``,
        ``movement``, ``sensor`` (``width``, ``height``), ``cameras`` (a list; each with ``index``,
        ``name``, ``events``, ``t_start_us``, ``t_end_us``, ``duration_s``, ``event_rate_hz``,
        ``center_mm``) and ``labels`` (``count``, ``joints``, ``t_start_us``, ``t_end_us``,
        ``rate_hz``, ``nan_fraction``). Times of an empty camera or empty label set are None.
    """
    with Recording(path) as rec:
        cameras = []
        for cam in rec.cameras:
            span = None
            if cam.t_start_us is not None and cam.t_end_us is not None:
                span = (cam.t_end_us - cam.t_start_us) / 1e6
            cameras.append(
                {
                    "index": cam.index,
                    "name": cam.calibration.name,
                    "events": cam.num_events,
                    "t_start_us": cam.t_start_us,
                    "t_end_us": cam.t_end_us,
                    "duration_s": span,
                    "event_rate_hz": cam.num_events / span if span else None,
                    "center_mm": [_finite_or_none(v) for v in cam.calibration.center],
                }
            )
        labels = rec.labels()
        n = labels.count
        label_span = (int(labels.t_us[-1]) - int(labels.t_us[0])) / 1e6 if n > 1 else None
        return {
            "path": str(path),
            "format_version": rec.format_version,
            "source": rec.meta.source,
            "subject": rec.meta.subject,
            "session": rec.meta.session,
            "movement": rec.meta.movement,
            "sensor": {"width": rec.sensor_size[0], "height": rec.sensor_size[1]},
            "cameras": cameras,
            "labels": {
                "count": n,
                "joints": int(labels.joints_mm.shape[1]),
                "t_start_us": int(labels.t_us[0]) if n else None,
                "t_end_us": int(labels.t_us[-1]) if n else None,
                # (n - 1) intervals between n samples
                "rate_hz": (n - 1) / label_span if label_span else None,
                "nan_fraction": float(np.isnan(labels.joints_mm).mean()) if n else None,
            },
        }


def format_summary(summary: dict[str, Any]) -> str:
    """Render :func:`recording_summary`'s dict as a short human-readable report."""
    s = summary
    origin = " ".join(
        f"{k} {s[k]}" for k in ("subject", "session", "movement") if s.get(k) is not None
    )
    lines = [
        f"{s['path']}",
        f"  source {s['source']}{'  ' + origin if origin else ''}  format v{s['format_version']}",
        f"  sensor {s['sensor']['width']} x {s['sensor']['height']}",
        "  camera  name                  events     start (s)   end (s)  rate (ev/s)  centre (mm)",
    ]
    for c in s["cameras"]:
        centre = ", ".join("nan" if v is None else f"{v:.0f}" for v in c["center_mm"])
        lines.append(
            f"  {c['index']:>6}  {c['name'][:20]:<20} {c['events']:>9,}  "
            f"{_sec(c['t_start_us']):>10}  {_sec(c['t_end_us']):>8}  "
            f"{_num(c['event_rate_hz']):>11}  ({centre})"
        )
    lab = s["labels"]
    if lab["count"]:
        lines.append(
            f"  labels  {lab['count']:,} x {lab['joints']} joints, "
            f"{_sec(lab['t_start_us'])} s to {_sec(lab['t_end_us'])} s, "
            f"{_num(lab['rate_hz'])} Hz, {100 * lab['nan_fraction']:.1f}% NaN"
        )
    else:
        lines.append("  labels  none")
    return "\n".join(lines)


def _sec(t_us: int | None) -> str:
    return "-" if t_us is None else f"{t_us / 1e6:.3f}"


def _num(v: float | None) -> str:
    return "-" if v is None else f"{v:,.0f}"


def _finite_or_none(v: float) -> float | None:
    return float(v) if np.isfinite(v) else None
