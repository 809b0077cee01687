"""Learning curve: probe accuracy against pretraining samples, from the curve grid of run.sh.

    python results/mstar-cpu/curve.py WORK/curve/runs.csv WORK/grid/runs.csv OUT_PREFIX

Methods of the curve grid are named ``<method>_n<samples>`` (the checkpoint after that many
pretraining samples, pretraining seed 0); random init (the grid's ``random`` rows of the same
dataset, protocol and shots) is the point at 0 samples of every method. Writes OUT_PREFIX.csv
(method, samples, split seeds, mean and std accuracy %) and OUT_PREFIX.png.
"""

from __future__ import annotations

import csv
import re
import sys
from collections import defaultdict

import numpy as np


def main(curve_csv: str, grid_csv: str, prefix: str) -> None:
    acc: dict[tuple[str, int], list[float]] = defaultdict(list)
    with open(curve_csv, newline="") as f:
        rows = list(csv.DictReader(f))
    ds, proto, shots = rows[0]["dataset"], rows[0]["protocol"], rows[0]["shots"]
    for r in rows:
        m = re.fullmatch(r"(.+)_n(\d+)", r["method"])
        if m:
            acc[(m.group(1), int(m.group(2)))].append(float(r["accuracy"]))
    with open(grid_csv, newline="") as f:
        rand = [
            float(r["accuracy"])
            for r in csv.DictReader(f)
            if r["method"] == "random"
            and (r["dataset"], r["protocol"], r["shots"]) == (ds, proto, shots)
        ]
    methods = sorted({m for m, _ in acc})
    with open(f"{prefix}.csv", "w", newline="") as f:
        w = csv.writer(f, lineterminator="\n")
        w.writerow(["method", "samples", "seeds", "accuracy_mean", "accuracy_std"])
        for m in methods:
            pts = [(0, rand)] + sorted((n, v) for (mm, n), v in acc.items() if mm == m)
            for n, v in pts:
                w.writerow([m, n, len(v), f"{np.mean(v):.2f}", f"{np.std(v, ddof=1):.2f}"])
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.4, 4.2))
    for m in methods:
        pts = [(0, rand)] + sorted((n, v) for (mm, n), v in acc.items() if mm == m)
        xs = [n for n, _ in pts]
        ys = [np.mean(v) for _, v in pts]
        es = [np.std(v, ddof=1) for _, v in pts]
        ax.errorbar(xs, ys, yerr=es, marker="o", capsize=2, label=m)
    ax.set_xlabel("pretraining samples (batch 32)")
    ax.set_ylabel(f"{ds} {shots}-shot {proto} accuracy %")
    ax.set_title("probe accuracy vs pretraining samples (pretraining seed 0)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(f"{prefix}.png", dpi=120)


if __name__ == "__main__":
    main(*sys.argv[1:4])
