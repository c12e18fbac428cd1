"""What averaging several checkpoints of one category would score, measured without building it.

Each checkpoint (other seeds, or the snapshots of one run: ``fit --snapshot-every``) scores the
labelled test set as ``python -m training evaluate`` would; its image scores and anomaly maps are
divided by its own calibrated image and pixel thresholds, then averaged over the checkpoints. In
those units each member flags a pixel or an image above 1, so the average's thresholds are 1 —
derived from held-out normal images only, like a single checkpoint's; test labels are used only to
measure. The output is one JSON line (and ``--out``): each member's headline metrics and the
average's, overall and per defect type.

An average costs one inference per member, so this measures whether one would be worth building:

    python -m benchmarks.ensemble --data-root ../shared/data --category tire \\
        --checkpoints weights/tire-snapshots/step4800.safetensors weights/tire.safetensors
"""

import argparse
import json
import sys
from pathlib import Path

import numpy as np

from models.checkpoint import CheckpointError, load_checkpoint
from models.precision import PRECISIONS, check_precision
from training.data import DataError, index_category
from training.evaluate import EvaluationRun, evaluate, metrics_by_defect
from training.fit import resolve_device
from training.report import headline


def average(runs: list[EvaluationRun], thresholds: list[tuple[float, float]]) -> dict:
    """The metrics of the members' scores and maps averaged, each in units of its (image, pixel)
    thresholds, at thresholds 1."""
    first = runs[0]
    scores = np.mean([run.scores / image for run, (image, _) in zip(runs, thresholds, strict=True)], axis=0)
    maps = [
        np.mean([run.maps[i] / pixel for run, (_, pixel) in zip(runs, thresholds, strict=True)], axis=0)
        for i in range(len(first.maps))
    ]
    labels = np.array([defect != "good" for defect in first.defects])
    types = sorted({d for d in first.defects if d != "good"})
    return metrics_by_defect(scores, labels, maps, first.masks, first.defects, types, 1.0, 1.0)


def summary(metrics: dict) -> dict:
    """Headline figures overall and per defect type, rounded for the JSON line."""
    per_defect = {
        defect: {k: round(float(values[k]), 6) for k in ("image_auroc", "pixel_auroc", "aupro")}
        for defect, values in metrics["per_defect"].items()
    }
    return {**headline(metrics), "per_defect": per_defect}


def run(args: argparse.Namespace) -> dict:
    device = resolve_device(args.device)
    precision = check_precision(args.precision, device)
    index = index_category(args.data_root, args.category)
    runs, thresholds, members = [], [], []
    for path in args.checkpoints:
        checkpoint = load_checkpoint(path, device)
        cal = checkpoint.calibration
        if cal.image_threshold <= 0 or cal.pixel_threshold <= 0:
            raise ValueError(f"{path}: its thresholds must be positive to serve as units, got {cal}")
        evaluation = evaluate(checkpoint, index, device, precision)
        print(f"{path}: {json.dumps(headline(evaluation.metrics))}", file=sys.stderr)
        runs.append(evaluation)
        thresholds.append((cal.image_threshold, cal.pixel_threshold))
        members.append({"checkpoint": str(path), **summary(evaluation.metrics)})
    return {
        "category": args.category,
        "precision": precision,
        "members": members,
        "average": summary(average(runs, thresholds)),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data-root", type=Path, required=True, help="folder of MVTec-layout categories")
    parser.add_argument("--category", required=True)
    parser.add_argument("--checkpoints", type=Path, nargs="+", required=True, help="two or more")
    parser.add_argument("--device", default="auto", help="auto, cpu or cuda[:N]")
    parser.add_argument("--precision", choices=PRECISIONS, default="float32")
    parser.add_argument("--out", type=Path, help="also write the JSON here")
    args = parser.parse_args(argv)
    if len(args.checkpoints) < 2:
        parser.error("--checkpoints needs two or more checkpoints to average")
    try:
        result = run(args)
    except (DataError, CheckpointError, ValueError, OSError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    line = json.dumps(result)
    if args.out:
        args.out.write_text(line + "\n")
    print(line)
    return 0


if __name__ == "__main__":
    sys.exit(main())
