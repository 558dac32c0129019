"""The evaluation suite: every model variant side by side on the test subjects.

The variants (:mod:`hybridpose.variants`), all at the SNN's output rate, one prediction per
bin: the ANN at every step, the ANN at the window start held, the SNN alone, the hybrid and
its two ablations (their own checkpoints when the directory has them, trained with
``hybridpose train --stage hybrid --no-state-init`` / ``--no-delta``; otherwise *derived* from
``hybrid.pt`` by switching the option off at evaluation, and the report says so).

Evaluation windows: every test recording gives one segment of ``windows_per_recording``
consecutive windows (all of them when None) on both cameras, starting at a seeded random
window; ``warmup_windows`` windows before it are run but not scored, so that the continuously
running SNN has left its empty state.

Modules: :mod:`~hybridpose.evaluate.segments` (which windows, their inputs and labels),
:mod:`~hybridpose.evaluate.run` (predictions per behaviour, energy, the run),
:mod:`~hybridpose.evaluate.scoring` (2D and 3D errors per step, streamed poses) and
:mod:`~hybridpose.evaluate.report` (``report.json``, ``report.md``, the plots).
"""

from hybridpose.evaluate.report import build_report, plot_report, report_markdown
from hybridpose.evaluate.run import EnergyFigures, EvalSpec, evaluate, measure_energy, predict
from hybridpose.evaluate.scoring import PoseScorer, StepErrors, pose_errors, score
from hybridpose.evaluate.segments import (
    Segment,
    SegmentData,
    common_windows,
    load_segment,
    scored_windows,
    select_segments,
)
from hybridpose.trained import EvaluationError, TrainedModels, load_models

__all__ = [
    "EnergyFigures",
    "EvalSpec",
    "EvaluationError",
    "PoseScorer",
    "Segment",
    "SegmentData",
    "StepErrors",
    "TrainedModels",
    "build_report",
    "common_windows",
    "evaluate",
    "load_models",
    "load_segment",
    "measure_energy",
    "plot_report",
    "pose_errors",
    "predict",
    "report_markdown",
    "score",
    "scored_windows",
    "select_segments",
]
