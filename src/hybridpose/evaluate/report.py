"""The evaluation's report: ``report.json``'s content, ``report.md`` and the two plots.

Labels, colours and the paper's reference figures come from :mod:`hybridpose.variants`.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from hybridpose.energy import EnergyModel
from hybridpose.variants import MAIN, PAPER_RATIOS, REFERENCE, SNN_ALONE, VARIANTS, variant

SWEPT = ("ann_low_held", MAIN)
"""The variants of the rate sweep (:func:`hybridpose.evaluate.run.rate_sweep`): the ANN's rate
is what they trade."""

if TYPE_CHECKING:
    from matplotlib.figure import Figure

    from hybridpose.evaluate.run import EnergyFigures
    from hybridpose.evaluate.scoring import StepErrors
    from hybridpose.trained import TrainedModels


def _mean(total: float, count: float) -> float | None:
    """``total / count``; None (JSON null) when nothing was scored."""
    return float(total / count) if count > 0 else None


def _ratio(a: float | None, b: float | None) -> float | None:
    return a / b if a is not None and b else None


def build_report(
    names: Sequence[str],
    models: TrainedModels,
    errors: StepErrors,
    energy: EnergyFigures,
    *,
    cameras: Sequence[int],
    recordings: int,
    scored_windows: int,
    warmup_windows: int,
) -> dict[str, Any]:
    """The report (``report.json``'s content) for the variants ``names`` (they include the
    reference ANN, the SNN alone and the main hybrid of :mod:`hybridpose.variants`)."""
    cfg = models.window
    out: dict[str, Any] = {}
    for name in names:
        n2, n3 = errors.n2d[name], errors.n3d[name]
        out[name] = {
            "mpjpe2d_px": _mean(errors.sum2d[name].sum(), n2.sum()),
            "mpjpe2d_px_per_step": [
                _mean(v, n) for v, n in zip(errors.sum2d[name], n2, strict=True)
            ],
            "mpjpe3d_mm": _mean(errors.sum3d[name].sum(), n3.sum()),
            "mpjpe3d_mm_per_step": [
                _mean(v, n) for v, n in zip(errors.sum3d[name], n3, strict=True)
            ],
            "energy_mj_per_s": energy.power_w[name] * 1e3,
            "power_w": energy.power_w[name],
            "firing_rate": energy.firing_rate[name],
            "derived": models.derived.get(name, False),
        }
    ann, hyb, snn = out[REFERENCE], out[MAIN], out[SNN_ALONE]
    ratios = {
        "hybrid_over_ann_error": _ratio(hyb["mpjpe2d_px"], ann["mpjpe2d_px"]),
        "hybrid_over_ann_power": _ratio(hyb["power_w"], ann["power_w"]),
        "snn_over_hybrid_error": _ratio(snn["mpjpe2d_px"], hyb["mpjpe2d_px"]),
    }
    return {
        "models": out,
        "ratios": ratios,
        "paper": {
            "models": {v.name: asdict(v.paper) for v in VARIANTS.values()},
            "ratios": PAPER_RATIOS,
        },
        "setup": {
            "preset": models.preset,
            "sensor_size": list(models.config.sensor_size),
            "input_size": list(models.config.input_size),
            "cameras": list(cameras),
            "output_rate_hz": 1e6 / cfg.bin_us,
            "ann_rate_hz": 1e6 / cfg.bin_us / cfg.steps,
            "steps_per_window": cfg.steps,
            "ann_events": cfg.ann_events,
            "recordings": recordings,
            "scored_windows_per_camera": scored_windows,
            "warmup_windows": warmup_windows,
            "energy_model_pj": asdict(EnergyModel()),
            "counts_per_inference": energy.counts,
        },
    }


# ------------------------------------------------------------------------------ markdown, plots


def _names(report: dict[str, Any]) -> list[str]:
    """The report's models in the registry's order."""
    return [name for name in VARIANTS if name in report["models"]]


def _f(x: float | None, digits: int = 2) -> str:
    return "—" if x is None or not math.isfinite(x) else f"{x:.{digits}f}"


def _latency(latency: dict[str, Any] | None) -> str:
    if not latency or latency.get("p50_ms") is None:
        return "—"
    return f"{latency['p50_ms']:.2f} / {latency['p99_ms']:.2f}"


def _cameras(cameras: Sequence[int]) -> str:
    if len(cameras) == 1:
        return f"camera {cameras[0]}"
    return "cameras " + ", ".join(str(c) for c in cameras[:-1]) + f" and {cameras[-1]}"


def _setup_line(setup: dict[str, Any]) -> str:
    w, h = setup["sensor_size"]
    three_d = "" if len(setup["cameras"]) == 1 else ", 3D in mm"
    other_rate = (
        ""
        if setup["output_rate_hz"] == PAPER_OUTPUT_HZ
        else f" The paper reports no {setup['output_rate_hz']:g} Hz results: its columns are "
        f"its {PAPER_OUTPUT_HZ:g} Hz figures, for scale."
    )
    return (
        f"{setup.get('data', 'Test subjects')}, {_cameras(setup['cameras'])}, "
        f"{setup['recordings']} recordings, {setup['scored_windows_per_camera']} scored "
        f"windows per camera; output {setup['output_rate_hz']:g} Hz, ANN "
        f"{setup['ann_rate_hz']:g} Hz. 2D errors in pixels of the {w}x{h} sensor (the "
        f"paper's are in 346x260 pixels){three_d}.{other_rate}"
    )


def _paper_steps(first_last: list[float] | None, last: float | None) -> str:
    """The paper's first → last step (or its last step alone)."""
    if first_last is not None:
        return f"{first_last[0]:.2f} → {first_last[1]:.2f}"
    return "—" if last is None else f"— → {last:.2f}"


def _model_row(name: str, m: dict[str, Any], ann_power: float, timed: bool) -> str:
    v = variant(name)
    p = asdict(v.paper)
    steps = m["mpjpe2d_px_per_step"]
    fl = p["first_last"]
    label = v.label + (" (derived)" if m["derived"] else "")
    rate = m["firing_rate"]
    paper_mw = None if p["power_w"] is None else 1e3 * p["power_w"]
    return (
        f"| {label} | {_f(m['mpjpe2d_px'])} | {_f(steps[0])} → {_f(steps[-1])} "
        f"| {_f(m['mpjpe3d_mm'], 1)} | {1e3 * m['power_w']:.4g} "
        f"| {m['power_w'] / ann_power:.3f} "
        f"| {'—' if rate is None else f'{100 * rate:.2f}%'} | {_f(p['mpjpe2d_px'])} "
        f"| {_paper_steps(fl, p['last_step_px'])} "
        f"| {'—' if paper_mw is None else f'{paper_mw:g}'} |"
        + (f" {_latency(m.get('latency_ms'))} |" if timed else "")
    )


PAPER_OUTPUT_HZ = 100.0
"""The output rate of the paper's figures set beside ours (its Table 1: 10 ms SNN bins)."""


def _paper_label(output_rate_hz: float) -> str:
    """How the paper's columns are headed: its rate named when ours differs."""
    if output_rate_hz == PAPER_OUTPUT_HZ:
        return "paper"
    return f"paper at {PAPER_OUTPUT_HZ:g} Hz"


def _tables(section: dict[str, Any], paper_ratios: dict[str, float]) -> list[str]:
    """The models' table and the ratios' table of one protocol's ``section``."""
    models = section["models"]
    names = _names(section)
    timed = any("latency_ms" in models[n] for n in names)
    paper = _paper_label(section["setup"]["output_rate_hz"])
    lines = [
        "| model | 2D MPJPE px | first → last step | 3D MPJPE mm | power mW | / ANN power "
        f"| firing rate | {paper} 2D px | {paper} first → last | {paper} power mW |"
        + (" latency p50 / p99 ms |" if timed else ""),
        "|---|---|---|---|---|---|---|---|---|---|" + ("---|" if timed else ""),
    ]
    ann_power = models[REFERENCE]["power_w"]
    lines += [_model_row(name, models[name], ann_power, timed) for name in names]
    r = section["ratios"]
    lines += [
        "",
        f"| ratio | ours | {paper} |",
        "|---|---|---|",
        f"| hybrid / ANN error | {_f(r['hybrid_over_ann_error'], 3)} "
        f"| {paper_ratios['hybrid_over_ann_error']:.3f} |",
        f"| hybrid / ANN power | {_f(r['hybrid_over_ann_power'], 3)} "
        f"| {paper_ratios['hybrid_over_ann_power']:.3f} |",
        f"| SNN / hybrid error | {_f(r['snn_over_hybrid_error'])} "
        f"| {paper_ratios['snn_over_hybrid_error']:.2f} |",
        "",
    ]
    return lines


PAPER_PROTOCOL_NOTE = (
    "The authors' evaluation: camera 3 only, every window from the first after the ANN's "
    "first full frame, the crop moved to columns 34-290 (scaled to the sensor), SNN bins "
    "splitting the window's event span, integer argmax against truncated labels at each "
    "bin's start, the SNN restarted at every window; no 3D."
)


def _sweep_table(sweep: list[dict[str, Any]]) -> list[str]:
    """The rate sweep: the held ANN and the hybrid against the ANN's rate."""
    lines = [
        "## The ANN's rate",
        "",
        "The hybrid and the held ANN with the ANN run less often (longer windows; the output "
        "stays at every bin), project protocol; power at the output rate.",
        "",
        "| ANN rate Hz | window ms | held ANN 2D px | hybrid 2D px | hybrid first → last "
        "| hybrid / held ANN error | held ANN power mW | hybrid power mW |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for point in sweep:
        held = point["models"].get("ann_low_held")
        hyb = point["models"].get("hybrid")
        if held is None or hyb is None:
            continue
        steps = hyb["mpjpe2d_px_per_step"]
        lines.append(
            f"| {point['ann_rate_hz']:g} | {point['window_ms']:g} | {_f(held['mpjpe2d_px'])} "
            f"| {_f(hyb['mpjpe2d_px'])} | {_f(steps[0])} → {_f(steps[-1])} "
            f"| {_f(_ratio(hyb['mpjpe2d_px'], held['mpjpe2d_px']), 3)} "
            f"| {1e3 * held['power_w']:.4g} | {1e3 * hyb['power_w']:.4g} |"
        )
    return [*lines, ""]


def report_markdown(report: dict[str, Any]) -> str:
    """The report as Markdown tables, the paper's numbers beside ours: the first protocol's,
    then the paper protocol's when the report has it."""
    setup = report["setup"]
    paper_ratios = report["paper"]["ratios"]
    lines = [
        f"# {setup.get('title', 'Evaluation')}: preset `{setup['preset']}`",
        "",
        _setup_line(setup),
        "",
        *_tables(report, paper_ratios),
    ]
    extra = report.get("paper_protocol")
    if extra is not None:
        lines += [
            "## The paper's protocol",
            "",
            PAPER_PROTOCOL_NOTE + " " + _setup_line(extra["setup"]),
            "",
            *_tables(extra, paper_ratios),
        ]
    sweep = report.get("rate_sweep")
    if sweep:
        lines += _sweep_table(sweep)
    sections = [report, *([extra] if extra is not None else [])]
    if any(s["models"][n]["derived"] for s in sections for n in _names(s)):
        lines += [
            "(derived): the ablation is the trained hybrid with the option switched off at "
            "evaluation, not a model trained that way.",
            "",
        ]
    return "\n".join(lines)


def plot_report(report: dict[str, Any], out_dir: Path) -> list[Path]:
    """``error_vs_step.png``, ``error_vs_power.png`` and, with a rate sweep,
    ``rate_sweep.png`` from a report."""
    from matplotlib.figure import Figure

    from hybridpose.viz import save_figure

    models = report["models"]
    fig = Figure(figsize=(7.0, 4.4), layout="constrained")
    ax = fig.add_subplot()
    for name in _names(report):
        steps = [np.nan if v is None else v for v in models[name]["mpjpe2d_px_per_step"]]
        ax.plot(range(1, len(steps) + 1), steps, marker="o", ms=3, color=variant(name).color,
                label=variant(name).label)  # fmt: skip
    ax.set_xlabel("step since the ANN initialisation")
    ax.set_ylabel("2D MPJPE (px)")
    ax.set_title("Error against time since initialisation")
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=8)
    paths = [out_dir / "error_vs_step.png", out_dir / "error_vs_power.png"]
    save_figure(fig, paths[0])
    fig = Figure(figsize=(7.0, 4.4), layout="constrained")
    ax = fig.add_subplot()
    plotted = False
    for name in _names(report):
        m = models[name]
        if m["mpjpe2d_px"] is None or not m["power_w"] > 0:
            continue
        ax.scatter(m["power_w"] * 1e3, m["mpjpe2d_px"], s=40, color=variant(name).color,
                   label=variant(name).label)  # fmt: skip
        plotted = True
    if plotted:
        ax.set_xscale("log")
        ax.legend(fontsize=8)
    ax.set_xlabel("power at the output rate (mW, from counted operations)")
    ax.set_ylabel("2D MPJPE (px)")
    ax.set_title("Error against power")
    ax.grid(True, alpha=0.3, which="both")
    save_figure(fig, paths[1])
    if report.get("rate_sweep"):
        paths.append(out_dir / "rate_sweep.png")
        save_figure(_sweep_figure(report["rate_sweep"]), paths[-1])
    return paths


def _sweep_figure(sweep: list[dict[str, Any]]) -> Figure:
    """Error and power of the held ANN and the hybrid against the ANN's rate."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=(9.0, 3.8), layout="constrained")
    err, power = fig.subplots(1, 2)
    rates = [p["ann_rate_hz"] for p in sweep]
    for name in SWEPT:
        if not all(name in p["models"] for p in sweep):
            continue
        v = variant(name)
        e = [np.nan if (x := p["models"][name]["mpjpe2d_px"]) is None else x for p in sweep]
        err.plot(rates, e, marker="o", color=v.color, label=v.label)
        w = [1e3 * p["models"][name]["power_w"] for p in sweep]
        power.plot(rates, w, marker="o", color=v.color, label=v.label)
    for ax, label in ((err, "2D MPJPE (px)"), (power, "power at the output rate (mW)")):
        ax.set_xscale("log", base=2)
        ax.set_xticks(rates, [f"{r:g}" for r in rates])
        ax.set_xlabel("ANN rate (Hz)")
        ax.set_ylabel(label)
        ax.grid(True, alpha=0.3)
        ax.legend(fontsize=8)
    err.set_title("Error against the ANN's rate")
    power.set_title("Power against the ANN's rate")
    return fig


__all__ = ["build_report", "plot_report", "report_markdown"]
