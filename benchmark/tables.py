"""Aggregate a run folder into result tables: a pure function of the files under it.

Inputs, found recursively under ``RUN_DIR``:

* ``result.json`` files written by ``sarjepa train`` / ``sarjepa grid`` (schema
  ``sarjepa-result/1``), and
* run folders of the authors' Dassl pipeline: ``<DATASET>/<TRAINER>/<CFG>_<K>shots/seed<S>/log.txt``
  without a ``result.json``; accuracy and macro-F1 are read from the evaluator block printed after
  ``Finish training`` (the same rule as Dassl's ``tools/parse_test_res.py``).

Outputs (written by :func:`write_tables`):

* ``runs.csv``: one row per cell (method, dataset, shots, seed, protocol, accuracy, macro_f1,
  wall_time_s, checkpoint_sha256, split_hash, source, path);
* ``summary.csv``: mean, std, ci95 and n of accuracy (and macro-F1 mean/std) per
  method x dataset x shots x protocol. ``std`` is the population standard deviation (ddof=0) and
  ``ci95 = 1.96 * std / sqrt(n)``, as Dassl's ``parse_test_res.py`` computes them, so numbers are
  comparable with the authors' tables;
* ``summary.md`` and ``summary.tex``: paper-style tables, rows = methods, columns = dataset x
  shots, ``mean ± std``, best mean per column in bold; one table per protocol;
* ``comparison.csv`` (with ``reference=``): per method, the paired difference against the
  reference method over the seeds both have, and the p-value of a two-sided paired t-test.

Regenerating from the same folder gives byte-identical files (stable sorting, fixed formatting,
no timestamps).
"""

from __future__ import annotations

import csv
import io
import json
import math
import re
from collections.abc import Sequence
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import numpy as np
from sarjepa.benchmark.core.errors import SarjepaError
from sarjepa.benchmark.core.io import atomic_write_text

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
]
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
    runs.sort(key=lambda r: (r.method, r.dataset, r.protocol, r.shots, r.seed, r.path))
    return runs, warnings


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
    seen: dict[tuple[str, str, str, int, int], str] = {}
    for run_dir in run_dirs:
        found, warns = collect_runs(run_dir)
        warnings += warns
        prefix = Path(run_dir).as_posix().rstrip("/")
        for r in found:
            key = (r.dataset, r.protocol, r.method, r.shots, r.seed)
            if key in seen:
                raise SarjepaError(
                    f"cell {r.dataset}/{r.protocol}/{r.method}_{r.shots}shots/seed{r.seed} is in "
                    f"both '{seen[key]}' and '{run_dir}'; give each cell once"
                )
            seen[key] = str(run_dir)
            runs.append(replace(r, path=f"{prefix}/{r.path}"))
    runs.sort(key=lambda r: (r.method, r.dataset, r.protocol, r.shots, r.seed, r.path))
    return runs, warnings


def _fmt(x: float | None, nd: int = 4) -> str:
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return ""
    return f"{x:.{nd}f}"


def chance_levels(runs: list[Run]) -> dict[str, float]:
    """Accuracy (%) of guessing per dataset, ``100 / classes``, where the runs record classes."""
    return {r.dataset: 100.0 / r.num_classes for r in runs if r.num_classes}


def summarise(runs: list[Run]) -> list[dict[str, object]]:
    """Mean, std (ddof=0), ci95 and n of accuracy and macro-F1 per method/dataset/protocol/shots."""
    groups: dict[tuple[str, str, str, int], list[Run]] = {}
    for r in runs:
        groups.setdefault((r.method, r.dataset, r.protocol, r.shots), []).append(r)
    rows = []
    for (method, dataset, protocol, shots), rs in sorted(groups.items()):
        acc = np.array([r.accuracy for r in rs], dtype=np.float64)
        f1 = np.array([r.macro_f1 for r in rs if r.macro_f1 is not None], dtype=np.float64)
        std = float(np.std(acc))
        rows.append(
            {
                "method": method,
                "dataset": dataset,
                "protocol": protocol,
                "shots": shots,
                "n": len(rs),
                "seeds": " ".join(str(s) for s in sorted({r.seed for r in rs})),
                "accuracy_mean": float(np.mean(acc)),
                "accuracy_std": std,
                "accuracy_ci95": 1.96 * std / math.sqrt(len(acc)),
                "macro_f1_mean": float(np.mean(f1)) if len(f1) else None,
                "macro_f1_std": float(np.std(f1)) if len(f1) else None,
            }
        )
    return rows


def compare(runs: list[Run], reference: str) -> list[dict[str, object]]:
    """Paired comparison of every method against ``reference`` over shared seeds.

    For each (method, dataset, protocol, shots) the accuracy differences ``method - reference``
    are taken seed by seed over the seeds both have; ``p_value`` is the two-sided paired t-test
    (scipy ``ttest_rel``), empty when fewer than two pairs or all differences are equal.
    """
    from scipy import stats

    methods = {r.method for r in runs}
    if reference not in methods:
        raise SarjepaError(
            f"reference method '{reference}' has no runs; methods: {', '.join(sorted(methods))}"
        )
    by_key: dict[tuple[str, str, str, int, int], float] = {
        (r.method, r.dataset, r.protocol, r.shots, r.seed): r.accuracy for r in runs
    }
    rows = []
    cells = sorted(
        {(r.method, r.dataset, r.protocol, r.shots) for r in runs if r.method != reference}
    )
    for method, dataset, protocol, shots in cells:
        seeds = sorted(
            s
            for (m, d, p, k, s) in by_key
            if (m, d, p, k) == (method, dataset, protocol, shots)
            and (reference, d, p, k, s) in by_key
        )
        if not seeds:
            continue
        a = np.array([by_key[(method, dataset, protocol, shots, s)] for s in seeds])
        b = np.array([by_key[(reference, dataset, protocol, shots, s)] for s in seeds])
        diff = a - b
        p_value = None
        if len(seeds) >= 2 and np.ptp(diff) > 0:
            p_value = float(stats.ttest_rel(a, b).pvalue)
        rows.append(
            {
                "method": method,
                "reference": reference,
                "dataset": dataset,
                "protocol": protocol,
                "shots": shots,
                "n_pairs": len(seeds),
                "diff_mean": float(np.mean(diff)),
                "diff_std": float(np.std(diff)),
                "p_value": p_value,
            }
        )
    return rows


def _csv_text(rows: list[dict[str, object]], fields: list[str]) -> str:
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=fields, lineterminator="\n")
    writer.writeheader()
    for row in rows:
        writer.writerow(
            {k: _fmt(v) if isinstance(v, float) or v is None else v for k, v in row.items()}
        )
    return buf.getvalue()


def _pivot(summary: list[dict[str, object]], protocol: str):
    rows = [s for s in summary if s["protocol"] == protocol]
    columns = sorted({(str(s["dataset"]), int(s["shots"])) for s in rows})
    methods = sorted({str(s["method"]) for s in rows})
    cell = {(s["method"], s["dataset"], s["shots"]): s for s in rows}
    best = {}
    for col in columns:
        means = [float(cell[(m, *col)]["accuracy_mean"]) for m in methods if (m, *col) in cell]
        best[col] = max(means) if means else None
    return columns, methods, cell, best


def markdown_table(
    summary: list[dict[str, object]], comparison: list[dict[str, object]] | None = None
) -> str:
    """Paper-style Markdown: one table per protocol, ``mean ± std`` (accuracy, %), best in bold."""
    out = []
    for protocol in sorted({str(s["protocol"]) for s in summary}):
        columns, methods, cell, best = _pivot(summary, protocol)
        out.append(f"### {protocol} (accuracy %, mean ± std over seeds)\n")
        out.append("| method | " + " | ".join(f"{d} {k}-shot" for d, k in columns) + " |")
        out.append("|---|" + "---|" * len(columns))
        for m in methods:
            vals = []
            for col in columns:
                s = cell.get((m, *col))
                if s is None:
                    vals.append("–")
                    continue
                txt = f"{float(s['accuracy_mean']):.1f} ± {float(s['accuracy_std']):.1f}"
                if best[col] is not None and float(s["accuracy_mean"]) == best[col]:
                    txt = f"**{txt}**"
                vals.append(txt)
            out.append(f"| {m} | " + " | ".join(vals) + " |")
        out.append("")
    for ref in dict.fromkeys(str(c["reference"]) for c in comparison or []):
        out.append(f"### paired comparison against {ref} (accuracy difference, points)\n")
        out.append(
            "| method | dataset | protocol | shots | pairs | diff mean ± std | p (paired t) |"
        )
        out.append("|---|---|---|---|---|---|---|")
        for c in (c for c in comparison or [] if c["reference"] == ref):
            p = "–" if c["p_value"] is None else f"{float(c['p_value']):.3g}"
            out.append(
                f"| {c['method']} | {c['dataset']} | {c['protocol']} | {c['shots']} | "
                f"{c['n_pairs']} | {float(c['diff_mean']):+.1f} ± {float(c['diff_std']):.1f} "
                f"| {p} |"
            )
        out.append("")
    return "\n".join(out)


def _tex_escape(s: str) -> str:
    return re.sub(r"([_%&#$])", r"\\\1", s)


def latex_table(summary: list[dict[str, object]]) -> str:
    """LaTeX (booktabs) tables, one per protocol, ``mean $\\pm$ std``, best in bold."""
    out = []
    for protocol in sorted({str(s["protocol"]) for s in summary}):
        columns, methods, cell, best = _pivot(summary, protocol)
        out.append("\\begin{table}[t]\n\\centering")
        out.append(
            f"\\caption{{Few-shot accuracy (\\%), {_tex_escape(protocol)}, "
            "mean $\\pm$ std over seeds.}"
        )
        out.append("\\begin{tabular}{l" + "c" * len(columns) + "}\n\\toprule")
        out.append(
            "Method & " + " & ".join(f"{_tex_escape(d)} {k}-shot" for d, k in columns) + " \\\\"
        )
        out.append("\\midrule")
        for m in methods:
            vals = []
            for col in columns:
                s = cell.get((m, *col))
                if s is None:
                    vals.append("--")
                    continue
                txt = f"{float(s['accuracy_mean']):.1f} $\\pm$ {float(s['accuracy_std']):.1f}"
                if float(s["accuracy_mean"]) == best[col]:
                    txt = f"\\textbf{{{txt}}}"
                vals.append(txt)
            out.append(f"{_tex_escape(m)} & " + " & ".join(vals) + " \\\\")
        out.append("\\bottomrule\n\\end{tabular}\n\\end{table}\n")
    return "\n".join(out)


def _write_atomic(path: Path, text: str) -> None:
    atomic_write_text(text, path)


SUMMARY_FIELDS = [
    "method",
    "dataset",
    "protocol",
    "shots",
    "n",
    "seeds",
    "accuracy_mean",
    "accuracy_std",
    "accuracy_ci95",
    "macro_f1_mean",
    "macro_f1_std",
]
COMPARISON_FIELDS = [
    "method",
    "reference",
    "dataset",
    "protocol",
    "shots",
    "n_pairs",
    "diff_mean",
    "diff_std",
    "p_value",
]


def write_tables(
    run_dir: str | Path | Sequence[str | Path],
    out_dir: str | Path | None = None,
    reference: str | Sequence[str] | None = None,
) -> dict[str, object]:
    """Collect the runs under ``run_dir`` and write the tables into ``out_dir`` (default run_dir).

    ``run_dir``: one folder, or several merged by :func:`collect_many` (then ``out_dir`` is
    required).

    ``reference``: one method or several; every other method is compared with each (paired over
    seeds), in the order given.

    Returns:
        ``{"runs": [...], "summary": [...], "comparison": [...], "markdown": str,
        "warnings": [...], "files": [paths written]}``.
    """
    dirs = [run_dir] if isinstance(run_dir, (str, Path)) else list(run_dir)
    if len(dirs) > 1 and out_dir is None:
        raise SarjepaError("several run folders are merged into one table: name its folder (--out)")
    runs, warnings = collect_many(dirs)
    if not runs:
        where = ", ".join(str(d) for d in dirs)
        raise SarjepaError(f"no finished runs (result.json or Dassl log.txt) under {where}")
    out = Path(out_dir) if out_dir is not None else Path(dirs[0])
    out.mkdir(parents=True, exist_ok=True)
    summary = summarise(runs)
    refs = [reference] if isinstance(reference, str) else list(reference or [])
    comparison = [row for ref in refs for row in compare(runs, ref)]
    md = markdown_table(summary, comparison)
    files = {
        "runs.csv": _csv_text([asdict(r) for r in runs], RUN_FIELDS),
        "summary.csv": _csv_text(summary, SUMMARY_FIELDS),
        "summary.md": md,
        "summary.tex": latex_table(summary),
    }
    if comparison:
        files["comparison.csv"] = _csv_text(comparison, COMPARISON_FIELDS)
    for name, text in files.items():
        _write_atomic(out / name, text)
    return {
        "runs": runs,
        "summary": summary,
        "comparison": comparison,
        "markdown": md,
        "warnings": warnings,
        "files": [str(out / n) for n in files],
    }
