"""Benchmark: what the davis346 sensor model and the clothed bodies change, and at what speed.

Simulates the same recordings (one test subject, a slow, a fast and a whole-body movement, two
repetitions each; 346x260) under several settings, each in a fresh process, one after the
other in one run, and reports per setting:

- simulated seconds per wall second (all four cameras, one process) and peak memory;
- events per second per camera while the body moves and while it is still;
- the ON fraction;
- the share of noise events, estimated as the still-phase event rate times the recording's
  length over all its events (in still phases every event is noise: leak, shot noise, hot
  pixels, reflections, and the photoreceptor's settling right after a movement);
- the share of events inside the body: of the events within 2.5 ms of 100 instants spread
  over the moving phases, those whose pixel lies in the body's silhouette at that instant,
  eroded by two pixels (so that events of the moving edges do not count);
- the median time span of a 7500-event frame per camera while moving (DHP19's frame size);

Settings: ``clean``/``plain`` (the first datasets' model), ``davis346``/``plain`` (the sensor
alone) and ``davis346``/``clothed`` (the new default); with ``--before-src DIR`` also the code
at ``DIR`` (e.g. a checkout of an earlier commit) with its own defaults, for the speed before.

    python bench/sensor.py [--subject 13] [--movements 2,16,22] [--repetitions 2]
        [--size 346x260] [--before-src /tmp/old/src] [--json out.json]
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

SETTINGS = (("clean", "plain"), ("davis346", "plain"), ("davis346", "clothed"))
FRAME_EVENTS = 7500


def _config(sensor: str, appearance: Any, size: str, repetitions: int) -> Any:
    from hybridpose.synth import generate

    width, height = (int(v) for v in size.split("x"))
    config = dataclasses.replace(generate.PRESETS["default"], sensor_size=(width, height))
    if sensor != "before":
        config = generate.with_sensor(config, sensor)
        config = dataclasses.replace(config, appearance=appearance)
    performance = dataclasses.replace(config.performance, repetitions=repetitions)
    return dataclasses.replace(config, performance=performance)


def _all_events(recording: Any, camera: int) -> Any:
    return recording.events_slice(camera, 0, recording.cameras[camera].num_events)


def _render_frames(view: Any, subject: Any, perf: Any, config: Any, instants: Any) -> Any:
    """Linear intensity of the whole sensor at the instants (seconds)."""
    from hybridpose.synth.body import body_capsules
    from hybridpose.synth.render import capsule_boxes, render

    frames = perf.frames(instants)
    capsules = body_capsules(subject.body, frames)
    width, height = config.sensor_size
    return render(
        view, capsules, frames.forward, subject.clothing, config.lighting, (0, width, 0, height),
        capsule_boxes(view, capsules),
    )  # fmt: skip


def _performance(config: Any, subject: int, movement: int) -> tuple[Any, Any]:
    """The subject and its performance of the movement, as the generator makes them."""
    from hybridpose.synth import generate
    from hybridpose.synth.motions import perform

    subj = generate.make_subject(config, subject)
    rng = generate._rng(config, generate._PERFORMANCE, subject, movement)
    return subj, perform(movement, subj.body, rng, config.performance)


def _interior_share(config: Any, subj: Any, perf: Any, path: Path) -> tuple[int, int]:
    """(events near 100 moving instants, of which inside the eroded silhouette), all cameras."""
    import numpy as np
    from scipy.ndimage import binary_erosion

    from hybridpose.io.recording import Recording
    from hybridpose.synth import generate

    probe = np.arange(0.0, perf.duration_s, 1e-3)
    moving = probe[~perf.is_still(probe)]
    instants = moving[np.linspace(0, len(moving) - 1, 100).astype(int)]
    near = inside = 0
    with Recording(path) as recording:
        for camera, view in enumerate(generate.make_views(config)):
            events = _all_events(recording, camera)
            masked = dataclasses.replace(view, background=np.full_like(view.background, -1.0))
            frames = _render_frames(masked, subj, perf, config, instants)
            for t, frame in zip(instants * 1e6, frames, strict=True):
                body = binary_erosion(frame >= 0.0, iterations=2)
                lo, hi = np.searchsorted(events["t"], [t - 2500, t + 2500])
                window = events[lo:hi]
                near += len(window)
                inside += int(body[window["y"].astype(int), window["x"].astype(int)].sum())
    return near, inside


def _frame_spans_ms(path: Path, still: Any) -> list[float]:
    """Time spans of consecutive 7500-event frames per camera whose middle is moving."""
    import numpy as np

    from hybridpose.io.recording import Recording

    spans: list[float] = []
    with Recording(path) as recording:
        for camera in range(len(recording.cameras)):
            t = _all_events(recording, camera)["t"]
            ends = np.arange(FRAME_EVENTS, len(t), FRAME_EVENTS)
            starts, stops = t[ends - FRAME_EVENTS], t[ends - 1]
            keep = ~still((starts + stops) / 2e6)
            spans += ((stops - starts)[keep] / 1e3).tolist()
    return spans


def _child(
    sensor: str, appearance: str, size: str, subject: int, movements: str, reps: int
) -> None:
    """Runs in a fresh process: simulate, measure, print one JSON line."""
    import numpy as np

    from hybridpose.io.recording import Recording
    from hybridpose.synth import generate

    config = _config(sensor, appearance, size, reps)
    out = Path(tempfile.mkdtemp(prefix="bench-sensor-"))
    totals: dict[str, float] = dict.fromkeys(
        ("wall_s", "duration_s", "moving_s", "events", "on", "moving_events", "still_events",
         "noise", "near", "inside"), 0.0,
    )  # fmt: skip
    spans: list[float] = []
    for number in (int(m) for m in movements.split(",")):
        path = out / f"m{number}.h5"
        t0 = time.perf_counter()
        result = generate.simulate_recording(subject, number, config, path)
        totals["wall_s"] += time.perf_counter() - t0
        totals["duration_s"] += result.duration_s
        totals["moving_s"] += result.moving_s
        still_s = result.duration_s - result.moving_s
        for camera in result.cameras:
            totals["events"] += camera.events
            totals["moving_events"] += camera.events_moving
            totals["still_events"] += camera.events_still
            totals["noise"] += camera.events_still / max(still_s, 1e-9) * result.duration_s
        with Recording(path) as recording:
            totals["on"] += sum(
                int((_all_events(recording, c)["p"] > 0).sum())
                for c in range(len(recording.cameras))
            )
        if sensor != "before":
            subj, perf = _performance(config, subject, number)
            near, inside = _interior_share(config, subj, perf, path)
            totals["near"] += near
            totals["inside"] += inside
            spans += _frame_spans_ms(path, perf.is_still)
        path.unlink()
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    totals["frame_ms_median"] = float(np.median(spans)) if spans else float("nan")
    print(json.dumps({"totals": totals, "peak_mb": peak_mb}))


def _row(name: str, m: dict[str, Any], base_speed: float | None) -> str:
    t = m["totals"]
    cams = 4
    still_s = t["duration_s"] - t["moving_s"]
    speed = t["duration_s"] / t["wall_s"]
    cells = [
        name,
        f"{speed:.3f}",
        f"{speed / base_speed:.2f}" if base_speed else "1.00",
        f"{t['moving_events'] / t['moving_s'] / cams:,.0f}",
        f"{t['still_events'] / still_s / cams:,.0f}",
        f"{t['on'] / t['events']:.3f}",
        f"{t['noise'] / t['events']:.3f}",
        f"{t['inside'] / t['near']:.3f}" if t["near"] else "-",
        f"{t['frame_ms_median']:.0f}" if t["frame_ms_median"] == t["frame_ms_median"] else "-",
        f"{m['peak_mb']:.0f}",
    ]
    return "| " + " | ".join(cells) + " |"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--subject", type=int, default=13)
    parser.add_argument("--movements", default="2,16,22")
    parser.add_argument("--repetitions", type=int, default=2)
    parser.add_argument("--size", default="346x260")
    parser.add_argument("--before-src", type=Path, help="a src/ folder of the code before")
    parser.add_argument("--json", type=Path, help="write the measurements here")
    parser.add_argument("--child", nargs=2, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        sensor, appearance = args.child
        _child(sensor, appearance, args.size, args.subject, args.movements, args.repetitions)
        return
    runs: list[tuple[str, str, Path | None]] = [(s, a, None) for s, a in SETTINGS]
    if args.before_src:
        runs.insert(0, ("before", "-", args.before_src))
    measured: dict[str, Any] = {}
    for sensor, appearance, src in runs:
        env = dict(os.environ)
        if src is not None:
            env["PYTHONPATH"] = str(Path(src).resolve())
        cmd = [sys.executable, __file__, "--child", sensor, appearance]
        cmd += ["--size", args.size, "--subject", str(args.subject)]
        cmd += ["--movements", args.movements, "--repetitions", str(args.repetitions)]
        print(f"simulating {sensor}/{appearance} ...", file=sys.stderr, flush=True)
        done = subprocess.run(cmd, env=env, capture_output=True, text=True)
        if done.returncode:
            sys.exit(f"{sensor}/{appearance} failed:\n{done.stderr}")
        line = done.stdout
        measured[f"{sensor}/{appearance}"] = json.loads(line.strip().splitlines()[-1])
    base = next(iter(measured.values()))["totals"]
    base_speed = base["duration_s"] / base["wall_s"]
    print(
        f"\n{args.size}, subject {args.subject}, movements {args.movements}, "
        f"{args.repetitions} repetitions; one process, all four cameras\n"
    )
    print(
        "| sensor / bodies | x real time | speed / first | events/s per camera, moving "
        "| events/s per camera, still | ON fraction | noise share | inside the body "
        "| 7500-event frame, ms (moving) | peak MB |"
    )
    print("|" + "---|" * 10)
    for name, m in measured.items():
        print(_row(name, m, base_speed if name != next(iter(measured)) else None))
    if args.json:
        args.json.write_text(json.dumps(measured, indent=1))


if __name__ == "__main__":
    main()
