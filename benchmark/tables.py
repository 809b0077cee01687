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

import json
import re
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import pandas as pd
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


def runs_frame(runs: list[Run]) -> pd.DataFrame:
    """The runs as a frame with one row per cell and the :data:`RUN_FIELDS` columns."""
    df = pd.DataFrame([asdict(r) for r in runs], columns=RUN_FIELDS)
    return df.astype({"accuracy": float, "macro_f1": float, "wall_time_s": float})


def _records(df: pd.DataFrame) -> list[dict[str, object]]:
    """Rows as plain Python dicts, ``None`` where a value is missing."""
    return df.astype(object).where(df.notna(), None).to_dict("records")


def chance_levels(runs: list[Run]) -> dict[str, float]:
    """Accuracy (%) of guessing per dataset, ``100 / classes``, where the runs record classes."""
    return {r.dataset: 100.0 / r.num_classes for r in runs if r.num_classes}


def _summary_frame(runs: list[Run]) -> pd.DataFrame:
    g = runs_frame(runs).groupby(["method", "dataset", "protocol", "shots"])
    out = pd.DataFrame(
        {
            "n": g.size(),
            "seeds": g["seed"].agg(lambda s: " ".join(str(x) for x in sorted(set(s)))),
            "accuracy_mean": g["accuracy"].mean(),
            "accuracy_std": g["accuracy"].std(ddof=0),
            "macro_f1_mean": g["macro_f1"].mean(),
            "macro_f1_std": g["macro_f1"].std(ddof=0),
        }
    ).reset_index()
    out["accuracy_ci95"] = 1.96 * out["accuracy_std"] / np.sqrt(out["n"])
    return out[SUMMARY_FIELDS]


def summarise(runs: list[Run]) -> list[dict[str, object]]:
    """Mean, std (ddof=0), ci95 and n of accuracy and macro-F1 per method/dataset/protocol/shots."""
    return _records(_summary_frame(runs))


def _compare_frame(runs: list[Run], reference: str) -> pd.DataFrame:
    from scipy import stats

    df = runs_frame(runs)
    if reference not in set(df["method"]):
        raise SarjepaError(
            f"reference method '{reference}' has no runs; methods: "
            f"{', '.join(sorted(set(df['method'])))}"
        )
    keys = ["dataset", "protocol", "shots", "seed"]
    # one accuracy per (method, cell, seed): the last path wins, as the runs are sorted by path
    df = df.drop_duplicates(["method", *keys], keep="last")
    ref = df.loc[df["method"] == reference, [*keys, "accuracy"]]
    pairs = df[df["method"] != reference].merge(ref, on=keys, suffixes=("", "_ref"))
    if pairs.empty:
        return pd.DataFrame(columns=COMPARISON_FIELDS)
    pairs["diff"] = pairs["accuracy"] - pairs["accuracy_ref"]

    def paired(g: pd.DataFrame) -> pd.Series:
        diff = g["diff"].to_numpy()
        p = np.nan
        if len(diff) >= 2 and np.ptp(diff) > 0:
            p = float(stats.ttest_rel(g["accuracy"], g["accuracy_ref"]).pvalue)
        return pd.Series(
            {"n_pairs": len(diff), "diff_mean": diff.mean(), "diff_std": diff.std(), "p_value": p}
        )

    by = ["method", "dataset", "protocol", "shots"]
    out = pairs.sort_values([*by, "seed"]).groupby(by).apply(paired, include_groups=False)
    out = out.reset_index().assign(reference=reference)
    return out.astype({"n_pairs": int})[COMPARISON_FIELDS]


def compare(runs: list[Run], reference: str) -> list[dict[str, object]]:
    """Paired comparison of every method against ``reference`` over shared seeds.

    For each (method, dataset, protocol, shots) the accuracy differences ``method - reference``
    are taken seed by seed over the seeds both have; ``p_value`` is the two-sided paired t-test
    (scipy ``ttest_rel``), empty when fewer than two pairs or all differences are equal.
    """
    return _records(_compare_frame(runs, reference))


def _csv_text(df: pd.DataFrame) -> str:
    return df.to_csv(index=False, float_format="%.4f", lineterminator="\n")


def _pivot(summary: pd.DataFrame, protocol: str) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Methods x (dataset, shots) frames of mean and std for one protocol (NaN: no runs)."""
    sub = summary[summary["protocol"] == protocol]
    mean, std = (
        sub.pivot(index="method", columns=["dataset", "shots"], values=v)
        .sort_index()
        .sort_index(axis=1)
        for v in ("accuracy_mean", "accuracy_std")
    )
    return mean, std


def _paper_cells(summary: pd.DataFrame, protocol: str, pm: str, bold: str, empty: str):
    """``(columns, {method: [cell text]})``: ``mean pm std`` (1 decimal), best mean per column
    wrapped by the ``bold`` format, ``empty`` where a method has no runs."""
    mean, std = _pivot(summary, protocol)
    best = mean.max()
    rows = {}
    for m in mean.index:
        rows[m] = [
            empty
            if np.isnan(mean.at[m, c])
            else (bold if mean.at[m, c] == best[c] else "{}").format(
                f"{mean.at[m, c]:.1f} {pm} {std.at[m, c]:.1f}"
            )
            for c in mean.columns
        ]
    return list(mean.columns), rows


def markdown_table(summary: pd.DataFrame, comparison: pd.DataFrame | None = None) -> str:
    """Paper-style Markdown: one table per protocol, ``mean ± std`` (accuracy, %), best in bold."""
    out = []
    for protocol in sorted(set(summary["protocol"])):
        columns, rows = _paper_cells(summary, protocol, "±", "**{}**", "–")
        out.append(f"### {protocol} (accuracy %, mean ± std over seeds)\n")
        out.append("| method | " + " | ".join(f"{d} {k}-shot" for d, k in columns) + " |")
        out.append("|---|" + "---|" * len(columns))
        out += [f"| {m} | " + " | ".join(vals) + " |" for m, vals in rows.items()]
        out.append("")
    comparison = comparison if comparison is not None else pd.DataFrame(columns=COMPARISON_FIELDS)
    for ref, rows in comparison.groupby("reference", sort=False):
        out.append(f"### paired comparison against {ref} (accuracy difference, points)\n")
        out.append(
            "| method | dataset | protocol | shots | pairs | diff mean ± std | p (paired t) |"
        )
        out.append("|---|---|---|---|---|---|---|")
        for c in rows.itertuples():
            p = "–" if np.isnan(c.p_value) else f"{c.p_value:.3g}"
            out.append(
                f"| {c.method} | {c.dataset} | {c.protocol} | {c.shots} | {c.n_pairs} | "
                f"{c.diff_mean:+.1f} ± {c.diff_std:.1f} | {p} |"
            )
        out.append("")
    return "\n".join(out)


def _tex_escape(s: str) -> str:
    return re.sub(r"([_%&#$])", r"\\\1", s)


def latex_table(summary: pd.DataFrame) -> str:
    """LaTeX (booktabs) tables, one per protocol, ``mean $\\pm$ std``, best in bold."""
    out = []
    for protocol in sorted(set(summary["protocol"])):
        columns, rows = _paper_cells(summary, protocol, "$\\pm$", "\\textbf{{{}}}", "--")
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
        out += [f"{_tex_escape(m)} & " + " & ".join(v) + " \\\\" for m, v in rows.items()]
        out.append("\\bottomrule\n\\end{tabular}\n\\end{table}\n")
    return "\n".join(out)


def write_tables(
    run_dir: str | Path,
    out_dir: str | Path | None = None,
    reference: str | Sequence[str] | None = None,
) -> dict[str, object]:
    """Collect the runs under ``run_dir`` and write the tables into ``out_dir`` (default run_dir).

    ``reference``: one method or several; every other method is compared with each (paired over
    seeds), in the order given.

    Returns:
        ``{"runs": [...], "summary": [...], "comparison": [...], "markdown": str,
        "warnings": [...], "files": [paths written]}``.
    """
    runs, warnings = collect_runs(run_dir)
    if not runs:
        raise SarjepaError(f"no finished runs (result.json or Dassl log.txt) under {run_dir}")
    out = Path(out_dir) if out_dir is not None else Path(run_dir)
    out.mkdir(parents=True, exist_ok=True)
    summary = _summary_frame(runs)
    refs = [reference] if isinstance(reference, str) else list(reference or [])
    comparison = pd.concat([_compare_frame(runs, ref) for ref in refs]) if refs else None
    md = markdown_table(summary, comparison)
    files = {
        "runs.csv": _csv_text(runs_frame(runs).astype({"num_classes": "Int64"})),
        "summary.csv": _csv_text(summary),
        "summary.md": md,
        "summary.tex": latex_table(summary),
    }
    if comparison is not None and len(comparison):
        files["comparison.csv"] = _csv_text(comparison)
    for name, text in files.items():
        atomic_write_text(text, out / name)
    return {
        "runs": runs,
        "summary": _records(summary),
        "comparison": [] if comparison is None else _records(comparison),
        "markdown": md,
        "warnings": warnings,
        "files": [str(out / n) for n in files],
    }
