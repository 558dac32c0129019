"""The SNN alone under two protocols, against the hybrid and the ANN, moving vs still poses.

An analysis, not a timing: ``evaluate``'s ``snn`` runs the SNN continuously across windows (the
issue's definition); the paper's "SNN alone (from an empty state)" row, 45.6 -> 15.5 px from the
first to the last step, restarts it from zero at every window. This script scores both on the
same segments (camera 3) with the shipped ``cpu`` weights, and splits the poses into moving and
still (mean joint speed above or below 0.1 m/s)::

    python bench/snn_protocols.py --data runs/cpu/data [--every 4]
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import numpy.typing as npt
import torch

from hybridpose.data import split_by_subject
from hybridpose.evaluate import load_models, load_segment, pose_errors, select_segments
from hybridpose.heatmaps import decode_heatmaps
from hybridpose.io.recording import Recording
from hybridpose.pretrained import pretrained_dir
from hybridpose.subjects import TEST_SUBJECTS


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, required=True, help="the 87x65 default dataset")
    parser.add_argument("--every", type=int, default=4, help="use every N-th test recording")
    args = parser.parse_args()
    torch.set_grad_enabled(False)
    m = load_models(pretrained_dir("cpu"))
    cfg = m.window
    steps = cfg.steps
    files = split_by_subject(sorted(args.data.glob("*.h5")), TEST_SUBJECTS)[:: args.every]
    segments = select_segments(files, cfg, (2, 3), 4, 1, 0)
    errors: dict[str, list[npt.NDArray[np.float64]]] = {
        "snn, continuous": [], "snn, reset every window": [], "hybrid": [], "ann_high": [],
    }  # fmt: skip
    moving: list[npt.NDArray[np.bool_]] = []
    for seg in segments:
        with Recording(seg.path) as rec:
            d = load_segment(rec, rec.labels(), 3, seg, cfg)
        n_win = len(seg.t0s)
        h, w = d.bins.shape[-2:]
        windows = d.bins.reshape(n_win, steps, *d.bins.shape[1:]).transpose(0, 1)
        hm, _ = m.snn(d.bins[:, None], m.snn.zero_state(1, h, w))
        preds = {"snn, continuous": decode_heatmaps(hm[:, 0])}
        hm, _ = m.snn(windows, m.snn.zero_state(n_win, h, w))
        preds["snn, reset every window"] = decode_heatmaps(hm).transpose(0, 1).flatten(0, 1)
        _, hm, _ = m.hybrid(d.frames[0:-1:steps], windows)
        preds["hybrid"] = decode_heatmaps(hm).transpose(0, 1).flatten(0, 1)
        preds["ann_high"] = decode_heatmaps(m.ann(d.frames[1:])[0])
        keep = slice(seg.warmup * steps, n_win * steps)
        for name, uv in preds.items():
            pred = uv.double().numpy()[keep]
            errors[name].append(pose_errors(pred, d.joints2d[keep], d.valid[keep]))
        speed = np.linalg.norm(np.diff(d.joints3d, axis=0), axis=-1).mean(axis=-1)  # mm/bin
        moving.append((np.concatenate([speed[:1], speed]) > 1.0)[keep])
    mv = np.concatenate(moving)
    print(f"{len(segments)} recordings, {len(mv)} poses, {mv.mean():.0%} moving; 2D MPJPE px")
    print(f"{'':26s} {'all':>6s} {'moving':>7s} {'still':>6s} {'step 1':>7s} {'step 10':>8s}")
    for name, values in errors.items():
        e = np.concatenate(values)
        step = np.arange(len(e)) % steps
        print(
            f"{name:26s} {np.nanmean(e):6.2f} {np.nanmean(e[mv]):7.2f} {np.nanmean(e[~mv]):6.2f}"
            f" {np.nanmean(e[step == 0]):7.2f} {np.nanmean(e[step == steps - 1]):8.2f}"
        )


if __name__ == "__main__":
    main()
