"""A cell's test predictions: ``predictions.csv`` beside ``result.json``, and what is read from it.

Every finished cell writes, before its ``result.json``, one row per evaluated image::

    image,label,prediction
    TEST/BMP2/HB03333.015.jpeg,0,0
    TEST/BMP2/HB03334.000.jpeg,0,2

``image`` is the path relative to the dataset folder (``/`` separators; the item's own path when
the dataset has no folder), ``label`` and ``prediction`` are class indices. ``result.json`` names
the file and holds what the indices mean::

    "predictions": {"file": "predictions.csv", "split": "test", "image_root": "<dataset folder>",
                    "classnames": ["BMP2", "BTR70", ...]}

Plain CSV (no pickle), about 30 bytes per image; rows in the evaluation order of the cell. From it
:func:`confusion_matrix` and :func:`per_class_accuracy` give what the report shows.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from sarjepa.benchmark.core.errors import SarjepaError
from sarjepa.benchmark.core.io import atomic_write_text

PREDICTIONS_FILE = "predictions.csv"
FIELDS = ("image", "label", "prediction")


@dataclass(frozen=True)
class Predictions:
    """One cell's evaluated images.

    Attributes:
        images: ``(N,)`` image paths relative to ``image_root``.
        labels: ``(N,)`` int64 true class indices.
        predictions: ``(N,)`` int64 predicted class indices.
        classnames: name of each class index, ``(C,)``.
        split: the evaluated split (``test``, or ``val`` with ``TEST.SPLIT val``).
        image_root: the dataset folder as the cell saw it (``""`` if none).
    """

    images: list[str]
    labels: np.ndarray
    predictions: np.ndarray
    classnames: list[str]
    split: str
    image_root: str

    @property
    def num_classes(self) -> int:
        return len(self.classnames)


def predictions_csv(images: Sequence[str], labels: Sequence[int], preds: Sequence[int]) -> str:
    """The CSV text of :data:`PREDICTIONS_FILE` (header + one row per image)."""
    if not len(images) == len(labels) == len(preds):
        raise ValueError(f"{len(images)} images, {len(labels)} labels, {len(preds)} predictions")
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(FIELDS)
    writer.writerows(zip(images, (int(y) for y in labels), (int(p) for p in preds)))
    return buf.getvalue()


def write_predictions(
    cell_dir: str | Path,
    images: Sequence[str],
    labels: Sequence[int],
    preds: Sequence[int],
    classnames: Sequence[str],
    split: str,
    image_root: str,
) -> dict[str, Any]:
    """Write ``cell_dir/predictions.csv`` atomically; return the block for ``result.json``."""
    atomic_write_text(predictions_csv(images, labels, preds), Path(cell_dir) / PREDICTIONS_FILE)
    return {
        "file": PREDICTIONS_FILE,
        "split": split,
        "image_root": image_root,
        "classnames": [str(c) for c in classnames],
    }


def read_predictions(cell_dir: str | Path) -> Predictions | None:
    """The predictions of a finished cell, or None when it has none (older or Dassl cells).

    Raises:
        SarjepaError: ``result.json`` names a predictions file that is missing or malformed.
    """
    cell = Path(cell_dir)
    try:
        block = json.loads((cell / "result.json").read_text()).get("predictions")
    except (OSError, ValueError, AttributeError):
        return None
    if not isinstance(block, dict):
        return None
    path = cell / str(block.get("file", PREDICTIONS_FILE))
    classnames = [str(c) for c in block.get("classnames", [])]
    try:
        with open(path, newline="", encoding="utf-8") as f:
            rows = list(csv.reader(f))
    except OSError:
        raise SarjepaError(f"{path}: named in result.json but cannot be read") from None
    if not rows or tuple(rows[0]) != FIELDS:
        raise SarjepaError(f"{path}: expected the header {','.join(FIELDS)}")
    try:
        labels = np.array([int(r[1]) for r in rows[1:]], dtype=np.int64)
        preds = np.array([int(r[2]) for r in rows[1:]], dtype=np.int64)
    except (IndexError, ValueError):
        raise SarjepaError(f"{path}: a row is not 'image,label,prediction'") from None
    both = np.concatenate([labels, preds])
    if len(both) and (both.min() < 0 or both.max() >= len(classnames)):
        raise SarjepaError(f"{path}: class index outside the {len(classnames)} classnames")
    return Predictions(
        images=[r[0] for r in rows[1:]],
        labels=labels,
        predictions=preds,
        classnames=classnames,
        split=str(block.get("split", "test")),
        image_root=str(block.get("image_root", "")),
    )


def confusion_matrix(labels: np.ndarray, preds: np.ndarray, num_classes: int) -> np.ndarray:
    """Counts ``(C, C)`` int64: row = true class, column = predicted class."""
    out = np.zeros((num_classes, num_classes), dtype=np.int64)
    np.add.at(out, (np.asarray(labels), np.asarray(preds)), 1)
    return out


def per_class_accuracy(confusion: np.ndarray) -> np.ndarray:
    """Recall of each class in percent, ``(C,)`` float64; NaN for a class with no image."""
    confusion = np.asarray(confusion)
    totals = confusion.sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(totals > 0, 100.0 * np.diag(confusion) / totals, np.nan)
