"""The demo: the shipped models streamed side by side on freshly simulated, held-out data.

``hybridpose demo`` (the README's main job) runs, from a fresh clone, in a few minutes on a
CPU:

1. simulates held-out synthetic recordings with a fixed seed (a subject number the models
   never saw, four movements; the ``cpu`` preset's 87x65 sensor) into ``OUT/data``;
2. loads the shipped ``cpu`` checkpoints (:mod:`hybridpose.pretrained`);
3. replays every recording's cameras 2 and 3 through a :class:`~hybridpose.stream.
   StreamingPredictor` per model (the registry's demo variants: the ANN at every step, the
   ANN held, the SNN alone and the hybrid; :mod:`hybridpose.variants`), scoring each pose
   against the labels (2D per camera, 3D triangulated) as
   :mod:`hybridpose.evaluate` does, and timing every step;
4. counts operations for the power figures (as the evaluation does, on the demo's data);
5. prints the table and writes ``report.json`` (the evaluation's keys plus each model's
   latency), ``report.md``, ``error_vs_step.png``, ``error_vs_power.png`` and
   ``hybrid.gif`` (events with the predicted and the true skeleton).

Scored bins: those of the windows that the evaluation would use (both cameras have
``ann_events`` events before the window, labels present), without each recording's first
such window, in which the SNN alone is still warming up.
"""

from __future__ import annotations

import dataclasses
import json
import math
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from tqdm import tqdm

from hybridpose.atomic import write_text_atomic
from hybridpose.energy import EnergyModel
from hybridpose.errors import HybridPoseError
from hybridpose.evaluate import (
    PoseScorer,
    SegmentData,
    StepErrors,
    build_report,
    load_models,
    load_segment,
    measure_energy,
    plot_report,
    report_markdown,
    scored_windows,
    select_segments,
)
from hybridpose.io.recording import Recording
from hybridpose.pretrained import pretrained_dir
from hybridpose.sources import RecordingReplay
from hybridpose.stream import (
    Engine,
    LatencyStats,
    StreamingPredictor,
    StreamPose,
    poses_between,
)
from hybridpose.synth.generate import PRESETS as SIM_PRESETS
from hybridpose.synth.generate import (
    SimulationConfig,
    recording_name,
    simulate_dataset,
)
from hybridpose.synth.motions import PerformanceSettings
from hybridpose.variants import MAIN, REFERENCE, demo_variants, variant
from hybridpose.viz import StreamFrame, save_stream_gif, stream_frame

DEMO_SUBJECTS = (18, 19)
"""Bodies the shipped models never saw (they trained on 1-12 and were evaluated on 13-17)."""
STAR_JUMPS = 22
DEMO_MOVEMENTS = (2, 16, STAR_JUMPS, 24)
"""Right arm abduction, right straight punch, star jumps, right forward kick."""


class DemoError(HybridPoseError, ValueError):
    """The demo cannot run with these settings."""


@dataclass(frozen=True)
class DemoSpec:
    """Settings of :func:`run_demo` (defaults: the README's demo)."""

    out_dir: Path = Path("demo")
    checkpoints: Path | None = None  # None: the shipped cpu weights
    subjects: tuple[int, ...] = DEMO_SUBJECTS
    movements: tuple[int, ...] = DEMO_MOVEMENTS
    repetitions: int = 2
    seed: int = 2026
    cameras: tuple[int, int] = (2, 3)
    workers: int = 2
    engine: Engine = "event"
    gif_seconds: float = 3.0
    gif_camera: int = 1  # the stream (index into ``cameras``) the GIF shows beside the other
    energy_windows: int = 8


def demo_simulation(spec: DemoSpec, sensor_size: tuple[int, int]) -> SimulationConfig:
    """The held-out recordings: short performances of the demo's movements.

    They are simulated as the shipped ``cpu`` models' training data was: the default dataset's
    ``davis346`` sensor and ``clothed`` bodies, with a seed and a subject number of their own.
    """
    base = SIM_PRESETS["default"]
    performance = dataclasses.replace(
        PerformanceSettings(),
        repetitions=spec.repetitions,
        still_s=(0.3, 0.5),
        lead_in_s=0.4,
        lead_out_s=0.3,
    )
    return dataclasses.replace(
        base,
        sensor_size=sensor_size,
        subjects=spec.subjects,
        movements=spec.movements,
        seed=spec.seed,
        performance=performance,
    )


# ------------------------------------------------------------------------------ the run


def run_demo(spec: DemoSpec, *, progress: bool = True) -> dict[str, Any]:
    """Run the demo (see the module docstring); returns the report."""
    started = time.perf_counter()
    checkpoints = pretrained_dir("cpu") if spec.checkpoints is None else spec.checkpoints
    shown_models = [v.name for v in demo_variants()]
    models = load_models(checkpoints, shown_models)
    cfg = models.window
    out = spec.out_dir
    out.mkdir(parents=True, exist_ok=True)
    sim = demo_simulation(spec, models.config.sensor_size)
    summary = simulate_dataset(out / "data", sim, workers=spec.workers, progress=progress)
    if summary.failed:
        path, why = summary.failed[0]
        raise DemoError(f"{path}: simulation failed: {why}")
    names = [recording_name(s, m) for s in spec.subjects for m in spec.movements]
    files = [str(out / "data" / name) for name in names]
    sim_s = time.perf_counter() - started

    errors = StepErrors(cfg.steps)
    latency: dict[str, dict[str, Any]] = {}
    frames: list[StreamFrame] = []
    realtime: dict[str, float] = {}
    replays = [RecordingReplay(f, spec.cameras, chunk_us=cfg.bin_us) for f in files]
    scored_t0s = [scored_windows(f, cfg, spec.cameras) for f in files]
    scored = sum(len(t0s) for t0s in scored_t0s)
    scorers = [
        PoseScorer(r.labels, r.projections, cfg, models.config.input_size, t0s)
        for r, t0s in zip(replays, scored_t0s, strict=True)
    ]
    shown = _gif_recording(spec, files)
    gif_from = _busiest_start(replays[shown], scored_t0s[shown], spec.gif_seconds)
    period = cfg.bin_us * cfg.steps
    total_bins = sum(poses_between(r.start_us, r.end_us, cfg.bin_us, period) for r in replays)
    for mode in shown_models:
        bar = tqdm(total=total_bins, desc=f"stream {mode}", unit="step", disable=not progress)
        wall = 0.0
        stats = LatencyStats()
        for replay, scorer in zip(replays, scorers, strict=True):
            predictor = StreamingPredictor.from_network(
                mode,
                models.networks[mode],
                cfg,
                replay.sensor_size,
                projections=replay.projections,
                engine=spec.engine,
            )
            gif = mode == MAIN and replay is replays[shown]
            poses: list[StreamPose] = []
            t = time.perf_counter()
            for t_end, chunk in replay:
                new = predictor.feed(t_end, chunk)
                if gif and gif_from is not None:
                    for p in new:
                        if gif_from < p.t_us <= gif_from + spec.gif_seconds * 1e6:
                            frames.append(stream_frame(p, chunk, scorer.labels, scorer.projections))
                poses += new
                bar.update(len(new))
            wall += time.perf_counter() - t
            scorer.add(errors, mode, poses)
            stats.merge(predictor.latency)
        latency[mode] = stats.summary()
        realtime[mode] = sum(r.duration_us for r in replays) / 1e6 / wall
        bar.close()

    # power from counted operations on the demo's own data, as the evaluation does
    segments = select_segments(files, cfg, spec.cameras, 4, 1, spec.seed)
    if not segments:
        raise DemoError(
            f"{out / 'data'}: no recording has 2 consecutive windows on both cameras to count "
            "operations on (are the recordings too short?)"
        )
    # segments are stacked: take those of the first one's length
    same = [seg for seg in segments if len(seg.t0s) == len(segments[0].t0s)]
    energy_data: list[SegmentData] = []
    for seg in same[: max(1, math.ceil(spec.energy_windows / len(same[0].t0s)))]:
        with Recording(seg.path) as rec:
            energy_data.append(load_segment(rec, rec.labels(), spec.cameras[0], seg, cfg))
    energy = measure_energy(models, energy_data, cfg, EnergyModel())

    report = build_report(
        shown_models,
        models,
        errors,
        energy,
        cameras=spec.cameras,
        recordings=len(files),
        scored_windows=scored,
        warmup_windows=1,
    )
    for mode in shown_models:
        report["models"][mode]["latency_ms"] = latency[mode]
        report["models"][mode]["realtime_factor"] = realtime[mode]
    report["setup"].update(
        title="Demo",
        data=f"Held-out synthetic subjects {', '.join(map(str, spec.subjects))} (seed "
        f"{spec.seed}), movements {', '.join(map(str, spec.movements))}",
        checkpoints=str(checkpoints),
        engine=spec.engine,
        energy_windows=sum(len(d.bins) for d in energy_data) // cfg.steps,
        simulate_s=sim_s,
    )
    write_text_atomic(out / "report.json", json.dumps(report, indent=2) + "\n")
    write_text_atomic(out / "report.md", report_markdown(report))
    plot_report(report, out)
    if frames:
        save_stream_gif(frames, out / f"{MAIN}.gif", models.config.sensor_size,
                        title=variant(MAIN).label, fps=1e6 / cfg.bin_us / 2, every=2)  # fmt: skip
    report["setup"]["total_s"] = time.perf_counter() - started
    write_text_atomic(out / "report.json", json.dumps(report, indent=2) + "\n")
    return report


def _busiest_start(replay: RecordingReplay, t0s: set[int], seconds: float) -> int | None:
    """The scored window start after which the next ``seconds`` have the most events (the
    GIF shows the body moving, not a still lead-in)."""
    if not t0s:
        return None
    span = round(seconds * 1e6)
    with Recording(replay.path) as rec:
        times = [rec.events(c, 0, replay.end_us)["t"] for c in replay.cameras]
    candidates = sorted(t0s)
    counts = [
        sum(int(np.searchsorted(t, t0 + span) - np.searchsorted(t, t0)) for t in times)
        for t0 in candidates
    ]
    return candidates[int(np.argmax(counts))]


def _gif_recording(spec: DemoSpec, files: Sequence[str]) -> int:
    """The recording the GIF shows: star jumps when present (the most motion), else the first."""
    names = [Path(f).name for f in files]
    for subject in spec.subjects:
        star = recording_name(subject, STAR_JUMPS)
        if star in names:
            return names.index(star)
    return 0


def demo_table(report: dict[str, Any]) -> str:
    """The console table: errors, power and latency per model."""
    models = report["models"]
    ann_power = models[REFERENCE]["power_w"]
    rows = [("model", "2D px", "first→last", "3D mm", "power mW", "/ANN", "p50 ms", "p99 ms")]
    for name, m in models.items():
        steps = m["mpjpe2d_px_per_step"]
        lat = m.get("latency_ms", {})
        rows.append((
            name,
            _fmt(m["mpjpe2d_px"]),
            f"{_fmt(steps[0])}→{_fmt(steps[-1])}",
            _fmt(m["mpjpe3d_mm"], 1),
            f"{m['power_w'] * 1e3:.2f}",
            f"{m['power_w'] / ann_power:.3f}",
            _fmt(lat.get("p50_ms")),
            _fmt(lat.get("p99_ms")),
        ))  # fmt: skip
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    lines = ["  ".join(c.ljust(w) if i == 0 else c.rjust(w)
                       for i, (c, w) in enumerate(zip(r, widths, strict=True)))
             for r in rows]  # fmt: skip
    lines.insert(1, "-" * len(lines[0]))
    return "\n".join(lines)


def _fmt(x: float | None, digits: int = 2) -> str:
    return "—" if x is None or not math.isfinite(x) else f"{x:.{digits}f}"


__all__ = ["DemoError", "DemoSpec", "demo_table", "run_demo"]
