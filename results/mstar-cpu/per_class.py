"""Per-class accuracy of a grid's finished cells, as a CSV (the numbers of `sarjepa report`'s
per-class tables, in a file that diffs).

    python results/mstar-cpu/per_class.py RUN_DIR [RUN_DIR ...] > per_class.csv

Rows: method (pretraining runs pooled: ``sarjepa@1`` and ``sarjepa@2`` count as ``sarjepa``),
dataset, protocol, shots, class, accuracy % (recall of that class over every evaluated test image
of every seed and pretraining run), images.
"""

from __future__ import annotations

import csv
import json
import sys
from collections import defaultdict
from pathlib import Path

import numpy as np
from sarjepa.benchmark.predictions import confusion_matrix, per_class_accuracy, read_predictions


def main(run_dirs: list[str]) -> None:
    sums: dict[tuple, np.ndarray] = {}
    names: dict[tuple, list[str]] = {}
    runs: dict[tuple, set] = defaultdict(set)
    for run in run_dirs:
        for res in sorted(Path(run).glob("output/*/*/*/seed*/result.json")):
            meta = json.loads(res.read_text())
            pred = read_predictions(res.parent)
            if pred is None:
                continue
            method = meta["method"].split("@")[0]
            key = (method, meta["dataset"], meta["trainer"], int(meta["shots"]))
            conf = confusion_matrix(pred.labels, pred.predictions, pred.num_classes)
            sums[key] = sums.get(key, 0) + conf
            names[key] = pred.classnames
            runs[key].add((meta["method"], meta["seed"]))
    out = csv.writer(sys.stdout, lineterminator="\n")
    out.writerow(["method", "dataset", "protocol", "shots", "class", "accuracy", "images", "cells"])
    for key in sorted(sums):
        acc = per_class_accuracy(sums[key])
        for name, a, n in zip(names[key], acc, sums[key].sum(axis=1), strict=True):
            out.writerow([*key, name, f"{a:.1f}", int(n), len(runs[key])])


if __name__ == "__main__":
    main(sys.argv[1:])
