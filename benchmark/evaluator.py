"""Classification metrics and Dassl's printed result block.

The block printed after ``Finish training`` is Dassl's ``Classification`` evaluator output::

    => result
    * total: 2,425
    * correct: 2,213
    * accuracy: 91.3%
    * error: 8.7%
    * macro_f1: 90.1%

(thousands separators as Dassl prints them). Macro-F1 is scikit-learn's ``f1_score(average=
"macro")`` over the labels present in the ground truth, as in Dassl. Per-class accuracy is the
recall of each class present in the ground truth.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np
import torch
from sklearn.metrics import f1_score


def classification_metrics(
    y_true: Sequence[int], y_pred: Sequence[int], lab2cname: Mapping[int, str]
) -> dict[str, Any]:
    """Accuracy, error, macro-F1 and per-class accuracy (all in percent).

    Args:
        y_true: ground-truth labels, ``(N,)``.
        y_pred: predicted labels, ``(N,)``.
        lab2cname: label -> class name (names key the per-class dict).

    Returns:
        ``{"accuracy", "error", "macro_f1", "total", "correct", "per_class_accuracy"}``;
        ``per_class_accuracy`` maps the class names present in ``y_true`` (label order) to
        percentages.
    """
    t = np.asarray(y_true, dtype=np.int64)
    p = np.asarray(y_pred, dtype=np.int64)
    if t.shape != p.shape or t.size == 0:
        raise ValueError(f"need equal, non-empty label arrays, got {t.shape} and {p.shape}")
    correct = int((t == p).sum())
    total = int(t.size)
    acc = 100.0 * correct / total
    labels = np.unique(t)
    macro_f1 = 100.0 * float(f1_score(t, p, average="macro", labels=labels))
    per_class = {}
    for lab in labels.tolist():
        sel = t == lab
        per_class[str(lab2cname.get(lab, lab))] = 100.0 * float((p[sel] == lab).sum()) / sel.sum()
    return {
        "accuracy": acc,
        "error": 100.0 - acc,
        "macro_f1": macro_f1,
        "total": total,
        "correct": correct,
        "per_class_accuracy": per_class,
    }


def result_block(m: Mapping[str, Any]) -> str:
    """Dassl's ``=> result`` block for :func:`classification_metrics` output (no trailing \\n)."""
    return (
        "=> result\n"
        f"* total: {m['total']:,}\n"
        f"* correct: {m['correct']:,}\n"
        f"* accuracy: {m['accuracy']:.1f}%\n"
        f"* error: {m['error']:.1f}%\n"
        f"* macro_f1: {m['macro_f1']:.1f}%"
    )


def per_class_block(y_true: Sequence[int], y_pred: Sequence[int], lab2cname: Mapping) -> str:
    """Dassl's ``=> per-class result`` block (printed when ``TEST.PER_CLASS_RESULT``)."""
    t = np.asarray(y_true)
    p = np.asarray(y_pred)
    lines = ["=> per-class result"]
    accs = []
    for lab in np.unique(t).tolist():
        sel = t == lab
        total, correct = int(sel.sum()), int((p[sel] == lab).sum())
        acc = 100.0 * correct / total
        accs.append(acc)
        lines.append(
            f"* class: {lab} ({lab2cname.get(lab, lab)})\ttotal: {total:,}\t"
            f"correct: {correct:,}\tacc: {acc:.1f}%"
        )
    lines.append(f"* average: {float(np.mean(accs)):.1f}%")
    return "\n".join(lines)


class Classification:
    """Accumulates predictions batch by batch, then reports (Dassl's evaluator interface).

    Args:
        lab2cname: label -> class name.
        per_class: also print the per-class block.
        log: printer for the blocks.
    """

    def __init__(
        self, lab2cname: Mapping[int, str], per_class: bool = False, log: Callable = print
    ) -> None:
        self.lab2cname = dict(lab2cname)
        self.per_class = per_class
        self.log = log
        self.reset()

    def reset(self) -> None:
        """Forget all processed batches."""
        self.y_true: list[int] = []
        self.y_pred: list[int] = []

    def process(self, logits: torch.Tensor, labels: torch.Tensor) -> None:
        """Add a batch: ``logits`` ``(B, C)``, ``labels`` ``(B,)``; prediction = argmax."""
        self.y_pred.extend(logits.argmax(dim=1).cpu().tolist())
        self.y_true.extend(labels.cpu().tolist())

    def evaluate(self) -> dict[str, Any]:
        """Print the block(s) and return :func:`classification_metrics`."""
        m = classification_metrics(self.y_true, self.y_pred, self.lab2cname)
        self.log(result_block(m))
        if self.per_class:
            self.log(per_class_block(self.y_true, self.y_pred, self.lab2cname))
        return m
