"""Figures of the report as PNG bytes (matplotlib, Agg), ready to embed as base64."""

from __future__ import annotations

import base64
import io
import tempfile
from pathlib import Path

import numpy as np
from sarjepa.benchmark.report.embedding import Embedding

_PNG_META = {"Software": "sarjepa"}


def data_uri(png: bytes) -> str:
    """``data:image/png;base64,...`` of PNG bytes."""
    return "data:image/png;base64," + base64.b64encode(png).decode("ascii")


def accuracy_vs_shots_png(summary: list[dict[str, object]], chance: dict[str, float]) -> bytes:
    """:func:`benchmark.plots.plot_accuracy_vs_shots` of the summary, as PNG bytes."""
    from sarjepa.benchmark.plots import plot_accuracy_vs_shots

    with tempfile.TemporaryDirectory() as tmp:
        stem = Path(tmp) / "accuracy_vs_shots"
        plot_accuracy_vs_shots(summary, stem, chance=chance)
        return stem.with_suffix(".png").read_bytes()


def embedding_png(emb: Embedding, dpi: int = 80) -> bytes:
    """Scatter of ``emb.points`` coloured by class (tab10/tab20), legend beside; PNG bytes."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    n = len(emb.classnames)
    cmap = plt.get_cmap("tab10" if n <= 10 else "tab20")
    fig, ax = plt.subplots(figsize=(4.6, 3.4))
    for c, name in enumerate(emb.classnames):
        sel = emb.labels == c
        if sel.any():
            pts = emb.points[sel]
            ax.scatter(pts[:, 0], pts[:, 1], s=9, color=cmap(c % cmap.N), label=name, alpha=0.85)
    ax.set_title(f"{emb.method} - {emb.dataset}", fontsize=10)
    ax.set_xticks([])
    ax.set_yticks([])
    ax.legend(fontsize=7, frameon=False, loc="center left", bbox_to_anchor=(1.0, 0.5))
    buf = io.BytesIO()
    try:
        fig.savefig(buf, format="png", dpi=dpi, bbox_inches="tight", metadata=_PNG_META)
    finally:
        plt.close(fig)
    return buf.getvalue()


def colour(fraction: float) -> str:
    """Background of a confusion-matrix cell: white (0) to dark blue (1), as ``rgb(...)``."""
    f = float(np.clip(fraction, 0.0, 1.0))
    r, g, b = (np.array([255, 255, 255]) * (1 - f) + np.array([8, 69, 148]) * f).round()
    return f"rgb({int(r)},{int(g)},{int(b)})"
