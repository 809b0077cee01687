"""Read a run folder: every finished few-shot cell under it, as :class:`Run` rows.

A cell is found from its ``result.json`` (schema ``sarjepa-result/1``, written by ``sarjepa
train`` / ``sarjepa grid``) or, for the authors' Dassl pipeline, from
``<DATASET>/<TRAINER>/<CFG>_<K>shots/seed<S>/log.txt`` without a ``result.json`` (accuracy and
macro-F1 read from the evaluator block printed after ``Finish training``, the rule of Dassl's
``tools/parse_test_res.py``). A grid label ``NAME@K`` (the K-th pretraining run of method
``NAME``) becomes method ``NAME`` with ``pretrain_run`` ``K``. :mod:`benchmark.tables` turns the
rows into tables.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import pandas as pd
from sarjepa.benchmark.core.errors import SarjepaError

PROTOCOL_OF_TRAINER = {
    "MIM_linear": "linear",
    "MIM_finetune": "finetune",
    "MIM_knn": "knn",
    "MIM_logreg": "logreg",
}
RUN_FIELDS = [
    "method",
    "dataset",
    "shots",
    "seed",
    "protocol",
    "accuracy",
    "macro_f1",
    "wall_time_s",
    "checkpoint_sha256",
    "split_hash",
    "source",
    "path",
    "num_classes",
    "pretrain_run",
]
_RUN_LABEL = re.compile(r"^(?P<method>.+)@(?P<run>\d+)$")  # grid label of pretraining run k
_CELL_DIR = re.compile(r"^(?P<method>.+)_(?P<shots>\d+)shots$")
_SEED_DIR = re.compile(r"^seed(?P<seed>\d+)$")
_METRIC = {
    "accuracy": re.compile(r"\* accuracy: ([\.\deE+-]+)%"),
    "macro_f1": re.compile(r"\* macro_f1: ([\.\deE+-]+)%"),
}


@dataclass(frozen=True)
class Run:
    """One finished cell of a grid (or of an authors' Dassl run folder)."""

    method: str
    dataset: str
    shots: int
    seed: int
    protocol: str
    accuracy: float
    macro_f1: float | None
    wall_time_s: float | None
    checkpoint_sha256: str
    split_hash: str
    source: str
    path: str
    num_classes: int | None = None
    pretrain_run: str = ""


def _protocol(trainer: str) -> str:
    return PROTOCOL_OF_TRAINER.get(trainer, trainer)


def _parse_cell_path(seed_dir: Path) -> tuple[str, str, str, int, int] | None:
    """``.../<DATASET>/<TRAINER>/<METHOD>_<K>shots/seed<S>`` -> (dataset, trainer, method, K, S)."""
    parts = seed_dir.parts
    if len(parts) < 4:
        return None
    m_seed = _SEED_DIR.match(parts[-1])
    m_cell = _CELL_DIR.match(parts[-2])
    if not (m_seed and m_cell):
        return None
    return parts[-4], parts[-3], m_cell["method"], int(m_cell["shots"]), int(m_seed["seed"])


def parse_dassl_log(path: Path) -> dict[str, float]:
    """Read the metrics printed after ``Finish training`` in a Dassl ``log.txt``.

    Returns:
        ``{"accuracy": float, "macro_f1": float}`` (percentages; ``macro_f1`` only if printed),
        or ``{}`` when the run did not finish.
    """
    text = path.read_text(errors="replace")
    if "Finish training" not in text:
        return {}
    tail = text[text.rindex("Finish training") :]
    out: dict[str, float] = {}
    for key, rx in _METRIC.items():
        found = rx.findall(tail)
        if found:
            out[key] = float(found[-1])
    return out if "accuracy" in out else {}


def _run_from_result(path: Path, root: Path) -> Run | None:
    try:
        res = json.loads(path.read_text())
        metrics = res["metrics"]
        prov = res.get("provenance", {})
        return Run(
            method=str(res["method"]),
            dataset=str(res["dataset"]),
            shots=int(res["shots"]),
            seed=int(res["seed"]),
            protocol=_protocol(str(res["trainer"])),
            accuracy=float(metrics["accuracy"]),
            macro_f1=None if metrics.get("macro_f1") is None else float(metrics["macro_f1"]),
            wall_time_s=None if prov.get("wall_time_s") is None else float(prov["wall_time_s"]),
            checkpoint_sha256=str(prov.get("checkpoint_sha256", "")),
            split_hash=str(prov.get("split_hash", "")),
            source="sarjepa",
            path=path.parent.relative_to(root).as_posix(),
            num_classes=None if prov.get("num_classes") is None else int(prov["num_classes"]),
        )
    except (OSError, ValueError, KeyError, TypeError):
        return None


def collect_runs(run_dir: str | Path) -> tuple[list[Run], list[str]]:
    """Find every finished cell under ``run_dir``.

    Returns:
        (runs sorted by method, dataset, protocol, shots, seed, path; warnings about unreadable
        ``result.json`` files, which are skipped as unfinished).
    """
    root = Path(run_dir)
    if not root.is_dir():
        raise SarjepaError(f"run folder not found: {run_dir}")
    runs: list[Run] = []
    warnings: list[str] = []
    seen_dirs: set[Path] = set()
    for res_path in sorted(root.rglob("result.json")):
        run = _run_from_result(res_path, root)
        if run is None:
            warnings.append(f"corrupt result.json ignored (cell treated as unfinished): {res_path}")
            continue
        runs.append(run)
        seen_dirs.add(res_path.parent)
    for log_path in sorted(root.rglob("log.txt")):
        cell_dir = log_path.parent
        if cell_dir in seen_dirs or (cell_dir / "result.json").exists():
            continue
        parsed = _parse_cell_path(cell_dir)
        if parsed is None:
            continue
        metrics = parse_dassl_log(log_path)
        if not metrics:
            continue
        dataset, trainer, method, shots, seed = parsed
        runs.append(
            Run(
                method=method,
                dataset=dataset,
                shots=shots,
                seed=seed,
                protocol=_protocol(trainer),
                accuracy=metrics["accuracy"],
                macro_f1=metrics.get("macro_f1"),
                wall_time_s=None,
                checkpoint_sha256="",
                split_hash="",
                source="dassl_log",
                path=cell_dir.relative_to(root).as_posix(),
            )
        )
    runs = [_split_label(r) for r in runs]
    runs.sort(key=lambda r: (r.method, r.dataset, r.protocol, r.shots, int(r.pretrain_run or 0),
                             r.seed, r.path))  # fmt: skip
    return runs, warnings


def _split_label(run: Run) -> Run:
    """``sarjepa@2`` (the grid's label of a method's 2nd pretraining run) -> method ``sarjepa``,
    ``pretrain_run`` ``"2"``; other labels are one pretraining run (``pretrain_run`` empty)."""
    m = _RUN_LABEL.match(run.method)
    return replace(run, method=m["method"], pretrain_run=m["run"]) if m else run


def runs_frame(runs: list[Run]) -> pd.DataFrame:
    """The runs as a frame with one row per cell and the :data:`RUN_FIELDS` columns."""
    df = pd.DataFrame([asdict(r) for r in runs], columns=RUN_FIELDS)
    return df.astype({"accuracy": float, "macro_f1": float, "wall_time_s": float})


def frame_records(df: pd.DataFrame) -> list[dict[str, object]]:
    """Rows as plain Python dicts, ``None`` where a value is missing."""
    return df.astype(object).where(df.notna(), None).to_dict("records")


def collect_many(run_dirs: Sequence[str | Path]) -> tuple[list[Run], list[str]]:
    """:func:`collect_runs` of several run folders, merged (one folder: exactly its result).

    With several folders each run's ``path`` is prefixed with its folder as given.

    Raises:
        SarjepaError: no folder given, or one cell (dataset, protocol, method, shots, seed) is
            found in two folders.
    """
    if not run_dirs:
        raise SarjepaError("no run folder given")
    if len(run_dirs) == 1:
        return collect_runs(run_dirs[0])
    runs: list[Run] = []
    warnings: list[str] = []
    seen: dict[tuple[str, str, str, str, int, int], str] = {}
    for run_dir in run_dirs:
        found, warns = collect_runs(run_dir)
        warnings += warns
        prefix = Path(run_dir).as_posix().rstrip("/")
        for r in found:
            key = (r.dataset, r.protocol, r.method, r.pretrain_run, r.shots, r.seed)
            if key in seen:
                label = f"{r.method}@{r.pretrain_run}" if r.pretrain_run else r.method
                raise SarjepaError(
                    f"cell {r.dataset}/{r.protocol}/{label}_{r.shots}shots/seed{r.seed} is in "
                    f"both '{seen[key]}' and '{run_dir}'; give each cell once"
                )
            seen[key] = str(run_dir)
            runs.append(replace(r, path=f"{prefix}/{r.path}"))
    runs.sort(key=lambda r: (r.method, r.dataset, r.protocol, r.shots, r.seed, r.path))
    return runs, warnings


def chance_levels(runs: list[Run]) -> dict[str, float]:
    """Accuracy (%) of guessing per dataset, ``100 / classes``, where the runs record classes."""
    return {r.dataset: 100.0 / r.num_classes for r in runs if r.num_classes}
