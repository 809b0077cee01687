"""What a run folder holds for the report: each finished cell's result and predictions."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from sarjepa.benchmark.core.errors import SarjepaError
from sarjepa.benchmark.predictions import Predictions, confusion_matrix, read_predictions
from sarjepa.benchmark.runs import PROTOCOL_OF_TRAINER


@dataclass(frozen=True)
class Cell:
    """One finished cell with saved predictions.

    Attributes:
        dataset, protocol, method, shots, seed: the cell's coordinates.
        path: the cell's folder.
        result: its ``result.json``.
        predictions: its ``predictions.csv`` with the class names.
    """

    dataset: str
    protocol: str
    method: str
    shots: int
    seed: int
    path: Path
    result: dict[str, Any]
    predictions: Predictions


@dataclass(frozen=True)
class Confusion:
    """Counts of one method x dataset x protocol x shots, summed over its seeds.

    Attributes:
        classnames: ``(C,)`` names of the class indices.
        counts: ``(C, C)`` int64, row = true class, column = predicted class.
        seeds: the seeds summed.
    """

    classnames: list[str]
    counts: np.ndarray
    seeds: list[int]


def collect_cells(run_dirs: Sequence[str | Path]) -> tuple[list[Cell], list[str]]:
    """Every finished cell with predictions under the folders, sorted; and warnings.

    A ``result.json`` that cannot be read is skipped with a warning (as by the tables); a cell
    without ``predictions.csv`` (written before the file existed, or an authors' Dassl run) is
    counted in a warning.
    """
    cells: list[Cell] = []
    warnings: list[str] = []
    without = 0
    for run_dir in run_dirs:
        for res_path in sorted(Path(run_dir).rglob("result.json")):
            try:
                res = json.loads(res_path.read_text())
                key = (str(res["dataset"]), str(res["trainer"]), str(res["method"]))
                shots, seed = int(res["shots"]), int(res["seed"])
            except (OSError, ValueError, KeyError, TypeError):
                warnings.append(f"unreadable result.json skipped: {res_path}")
                continue
            try:
                pred = read_predictions(res_path.parent)
            except SarjepaError as exc:
                warnings.append(str(exc))
                continue
            if pred is None:
                without += 1
                continue
            dataset, trainer, method = key
            protocol = PROTOCOL_OF_TRAINER.get(trainer, trainer)
            cells.append(Cell(dataset, protocol, method, shots, seed, res_path.parent, res, pred))
    if without:
        warnings.append(f"{without} finished cells have no predictions.csv (no per-class view)")
    cells.sort(key=lambda c: (c.dataset, c.protocol, c.method, c.shots, c.seed, str(c.path)))
    return cells, warnings


def confusions(cells: Sequence[Cell]) -> dict[tuple[str, str, str, int], Confusion]:
    """Confusion counts per (dataset, protocol, method, shots), summed over seeds.

    Seeds whose class names differ from the group's first are left out of the sum.
    """
    out: dict[tuple[str, str, str, int], Confusion] = {}
    for c in cells:
        key = (c.dataset, c.protocol, c.method, c.shots)
        p = c.predictions
        counts = confusion_matrix(p.labels, p.predictions, p.num_classes)
        if key not in out:
            out[key] = Confusion(list(p.classnames), counts, [c.seed])
        elif out[key].classnames == p.classnames:
            prev = out[key]
            out[key] = Confusion(prev.classnames, prev.counts + counts, [*prev.seeds, c.seed])
    return out
