"""Figures: accuracy vs shots per method (from a run folder) and pretraining loss curves.

Both write PNG and PDF with fixed metadata, so regenerating gives identical files.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from sarjepa.benchmark.core.errors import SarjepaError
from sarjepa.benchmark.core.io import atomic_write

_PDF_META = {"CreationDate": None, "Producer": "sarjepa", "Creator": "sarjepa"}
_PNG_META = {"Software": "sarjepa"}


def _save(fig, stem: Path) -> list[str]:
    stem.parent.mkdir(parents=True, exist_ok=True)
    png, pdf = stem.with_suffix(".png"), stem.with_suffix(".pdf")
    atomic_write(
        png,
        lambda f: fig.savefig(f, format="png", dpi=150, bbox_inches="tight", metadata=_PNG_META),
    )
    atomic_write(
        pdf, lambda f: fig.savefig(f, format="pdf", bbox_inches="tight", metadata=_PDF_META)
    )
    return [str(png), str(pdf)]


def plot_accuracy_vs_shots(
    summary: list[dict[str, object]],
    stem: str | Path,
    chance: dict[str, float] | None = None,
) -> list[str]:
    """One panel per (dataset, protocol): mean accuracy vs shots per method, with ±std bands.

    Args:
        summary: rows of :func:`benchmark.tables.summarise`.
        stem: output path without suffix; ``.png`` and ``.pdf`` are written.
        chance: accuracy (%) of guessing per dataset (100 / classes), drawn as a dashed line.

    Returns:
        The written file paths.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    if not summary:
        raise SarjepaError("nothing to plot: the summary is empty")
    panels = sorted({(str(s["dataset"]), str(s["protocol"])) for s in summary})
    methods = sorted({str(s["method"]) for s in summary})
    colors = {m: plt.get_cmap("tab10")(i % 10) for i, m in enumerate(methods)}
    ncols = min(3, len(panels))
    nrows = (len(panels) + ncols - 1) // ncols
    fig, axes = plt.subplots(nrows, ncols, figsize=(4.2 * ncols, 3.4 * nrows), squeeze=False)
    for ax, (dataset, protocol) in zip(axes.flat, panels):
        for m in methods:
            rows = sorted(
                (
                    s
                    for s in summary
                    if (s["dataset"], s["protocol"], s["method"]) == (dataset, protocol, m)
                ),
                key=lambda s: int(s["shots"]),
            )
            if not rows:
                continue
            k = np.array([int(s["shots"]) for s in rows])
            mu = np.array([float(s["accuracy_mean"]) for s in rows])
            sd = np.array([float(s["accuracy_std"]) for s in rows])
            ax.plot(k, mu, marker="o", color=colors[m], label=m)
            ax.fill_between(k, mu - sd, mu + sd, color=colors[m], alpha=0.2, linewidth=0)
        if chance and dataset in chance:
            ax.axhline(chance[dataset], color="0.4", linestyle="--", linewidth=1, label="chance")
        ax.set_title(f"{dataset} - {protocol}")
        ax.set_xlabel("shots per class")
        ax.set_ylabel("accuracy (%)")
        shots = sorted({int(s["shots"]) for s in summary if s["dataset"] == dataset})
        ax.set_xticks(shots)
        ax.grid(alpha=0.3)
    for ax in list(axes.flat)[len(panels) :]:
        ax.set_visible(False)
    handles, labels = axes.flat[0].get_legend_handles_labels()
    ncol = min(len(labels), 6)
    fig.legend(
        handles,
        labels,
        loc="lower center",
        ncol=ncol,
        frameon=False,
        bbox_to_anchor=(0.5, -0.02),
    )
    fig.tight_layout(rect=(0, 0.06, 1, 1))
    try:
        return _save(fig, Path(stem))
    finally:
        plt.close(fig)


def read_pretrain_log(path: str | Path) -> list[dict[str, float]]:
    """Parse a pretraining ``log.txt`` (one JSON object per line, with at least epoch and loss)."""
    p = Path(path)
    if not p.is_file():
        raise SarjepaError(f"pretraining log not found: {path}")
    rows = []
    for i, line in enumerate(p.read_text().splitlines(), 1):
        line = line.strip()
        if not line:
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as exc:
            raise SarjepaError(f"{path}:{i}: not a JSON line ({exc.msg})") from None
        if "epoch" in row and "loss" in row:
            rows.append(row)
    if not rows:
        raise SarjepaError(f"{path}: no lines with 'epoch' and 'loss'")
    return rows


def plot_pretrain_logs(
    logs: list[str | Path], stem: str | Path, labels: list[str] | None = None
) -> list[str]:
    """Loss (log scale) and learning rate against epoch for one or more pretraining runs."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    labels = labels or [Path(p).parent.name or str(p) for p in logs]
    fig, (ax_loss, ax_lr) = plt.subplots(1, 2, figsize=(9, 3.4))
    for path, label in zip(logs, labels):
        rows = read_pretrain_log(path)
        ep = [r["epoch"] for r in rows]
        ax_loss.plot(ep, [r["loss"] for r in rows], marker=".", label=label)
        if all("lr" in r for r in rows):
            ax_lr.plot(ep, [r["lr"] for r in rows], label=label)
    ax_loss.set_yscale("log")
    ax_loss.set_xlabel("epoch")
    ax_loss.set_ylabel("training loss")
    ax_loss.grid(alpha=0.3)
    ax_loss.legend(frameon=False)
    ax_lr.set_xlabel("epoch")
    ax_lr.set_ylabel("learning rate (end of epoch)")
    ax_lr.grid(alpha=0.3)
    fig.tight_layout()
    try:
        return _save(fig, Path(stem))
    finally:
        plt.close(fig)
