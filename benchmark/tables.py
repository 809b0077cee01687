"""Aggregate a run folder into result tables: a pure function of the files under it.

Inputs: the finished cells under ``RUN_DIR`` (or several run folders), as
:mod:`benchmark.runs` reads them (``result.json`` files and the authors' Dassl ``log.txt`` folders).

Outputs (written by :func:`write_tables`):

* ``runs.csv``: one row per cell (method, pretrain_run, dataset, shots, seed, protocol, accuracy,
  macro_f1, wall_time_s, checkpoint_sha256, split_hash, source, path, num_classes);
* ``summary.csv``: per method x dataset x shots x protocol, mean, std, ci95 and n of accuracy (and
  macro-F1 mean/std), the number of pretraining runs and a Student-t 95% half-width
  (``accuracy_t95``, over pretraining runs when a method has two or more, else over split seeds;
  ``t95_unit`` says which). ``std`` is the population standard deviation (ddof=0) and
  ``ci95 = 1.96 * std / sqrt(n)``, as Dassl's ``parse_test_res.py`` computes them, kept so numbers
  stay comparable with the authors' tables (it is too narrow for small n; use ``accuracy_t95``);
* ``summary.md`` and ``summary.tex``: paper-style tables, rows = methods, columns = dataset x
  shots, ``mean ± std``, best mean per column in bold; one table per protocol;
* ``comparison.csv`` (with ``reference=``): per method, the difference against each reference, its
  test (the pretraining run as the unit when both have two or more runs, else paired over split
  seeds, labelled as single checkpoints) and Holm-corrected p-values over the whole table.

Regenerating from the same folder gives byte-identical files (stable sorting, fixed formatting,
no timestamps).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd
from sarjepa.benchmark.core.errors import SarjepaError
from sarjepa.benchmark.core.io import atomic_write_text
from sarjepa.benchmark.runs import Run, collect_many, frame_records, runs_frame

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
    "pretrain_runs",
    "t95_unit",
    "accuracy_t95",
    "macro_f1_mean",
    "macro_f1_std",
]
COMPARISON_FIELDS = [
    "method",
    "reference",
    "dataset",
    "protocol",
    "shots",
    "unit",
    "n_method",
    "n_reference",
    "n_pairs",
    "diff_mean",
    "diff_std",
    "p_value",
    "p_holm",
]
CELL = ["method", "dataset", "protocol", "shots"]


def t_halfwidth(x: np.ndarray) -> float:
    """Half-width of the two-sided Student-t 95% interval of the mean of ``x`` (NaN if n < 2)."""
    from scipy import stats

    n = len(x)
    if n < 2:
        return float("nan")
    return float(stats.t.ppf(0.975, n - 1) * np.std(x, ddof=1) / np.sqrt(n))


def holm(p: np.ndarray) -> np.ndarray:
    """Holm's step-down adjustment of the p-values ``p`` (NaN entries are not tests).

    The k-th smallest of m p-values becomes ``max_{j<=k} min(1, (m - j + 1) p_(j))``; reject
    where the adjusted value is below alpha, which holds the family-wise error rate at alpha.
    """
    p = np.asarray(p, dtype=np.float64)
    out = np.full_like(p, np.nan)
    idx = np.flatnonzero(~np.isnan(p))
    order = idx[np.argsort(p[idx], kind="stable")]
    m = len(order)
    out[order] = np.minimum(1.0, np.maximum.accumulate((m - np.arange(m)) * p[order]))
    return out


def _unit_values(df: pd.DataFrame) -> tuple[str, np.ndarray]:
    """The independent units of one method's cell: per-pretraining-run means over split seeds
    when it has two runs or more, else the split seeds of its single checkpoint."""
    if df["pretrain_run"].nunique() >= 2:
        return "pretrain run", df.groupby("pretrain_run")["accuracy"].mean().to_numpy()
    return "split seed", df["accuracy"].to_numpy()


def _summary_frame(runs: list[Run]) -> pd.DataFrame:
    g = runs_frame(runs).groupby(CELL)
    units = g[["pretrain_run", "accuracy"]].apply(_unit_values)
    out = pd.DataFrame(
        {
            "n": g.size(),
            "seeds": g["seed"].agg(lambda s: " ".join(str(x) for x in sorted(set(s)))),
            "accuracy_mean": g["accuracy"].mean(),
            "accuracy_std": g["accuracy"].std(ddof=0),
            "pretrain_runs": g["pretrain_run"].nunique(),
            "t95_unit": units.str[0],
            "accuracy_t95": units.str[1].map(t_halfwidth),
            "macro_f1_mean": g["macro_f1"].mean(),
            "macro_f1_std": g["macro_f1"].std(ddof=0),
        }
    ).reset_index()
    out["accuracy_ci95"] = 1.96 * out["accuracy_std"] / np.sqrt(out["n"])
    return out[SUMMARY_FIELDS]


def summarise(runs: list[Run]) -> list[dict[str, object]]:
    """Per method/dataset/protocol/shots over pretraining runs x split seeds: n, mean, std
    (ddof=0), Dassl's ``ci95``, and the Student-t 95% half-width ``accuracy_t95`` over
    ``t95_unit`` (pretraining runs when there are two or more, else split seeds)."""
    return frame_records(_summary_frame(runs))


def _paired_seeds(a: pd.DataFrame, b: pd.DataFrame) -> dict[str, object]:
    """Single checkpoints: paired t-test over the split seeds both have."""
    from scipy import stats

    pairs = a.merge(b, on="seed", suffixes=("", "_ref")).sort_values("seed")
    diff = (pairs["accuracy"] - pairs["accuracy_ref"]).to_numpy()
    p = np.nan
    if len(diff) >= 2 and np.ptp(diff) > 0:
        p = float(stats.ttest_rel(pairs["accuracy"], pairs["accuracy_ref"]).pvalue)
    unit = "split seed (single checkpoints)"
    n = len(diff)
    return dict(unit=unit, n_method=n, n_reference=n, n_pairs=n, diff_mean=diff.mean(),
                diff_std=diff.std(), p_value=p)  # fmt: skip


def _across_runs(a: pd.DataFrame, b: pd.DataFrame) -> dict[str, object]:
    """Several pretraining runs: each run's mean over its split seeds is one unit; Welch's
    two-sample t-test across the runs of the two methods (runs are not paired)."""
    from scipy import stats

    ma = a.groupby("pretrain_run")["accuracy"].mean().to_numpy()
    mb = b.groupby("pretrain_run")["accuracy"].mean().to_numpy()
    p = np.nan
    if min(len(ma), len(mb)) >= 2 and np.ptp(np.r_[ma, mb]) > 0:
        p = float(stats.ttest_ind(ma, mb, equal_var=False).pvalue)
    return dict(unit="pretrain run", n_method=len(ma), n_reference=len(mb), n_pairs=np.nan,
                diff_mean=ma.mean() - mb.mean(), diff_std=np.nan, p_value=p)  # fmt: skip


def _compare_frame(runs: list[Run], reference: str) -> pd.DataFrame:
    df = runs_frame(runs)
    if reference not in set(df["method"]):
        raise SarjepaError(
            f"reference method '{reference}' has no runs; methods: "
            f"{', '.join(sorted(set(df['method'])))}"
        )
    # one accuracy per (method, cell, run, seed): the last path wins, as runs are sorted by path
    df = df.drop_duplicates([*CELL, "pretrain_run", "seed"], keep="last")
    ref = {k: g for k, g in df[df["method"] == reference].groupby(CELL[1:])}
    rows = []
    for (method, *cell), a in df[df["method"] != reference].groupby(CELL):
        b = ref.get(tuple(cell))
        if b is None:
            continue
        single = a["pretrain_run"].nunique() == 1 and b["pretrain_run"].nunique() == 1
        if single and not set(a["seed"]) & set(b["seed"]):
            continue
        stat = _paired_seeds(a, b) if single else _across_runs(a, b)
        rows.append(dict(zip(CELL, [method, *cell], strict=True), reference=reference, **stat))
    out = pd.DataFrame(rows, columns=COMPARISON_FIELDS)
    return out.astype({"n_method": int, "n_reference": int, "n_pairs": "Int64"})


def comparison_frame(runs: list[Run], references: Sequence[str]) -> pd.DataFrame:
    """Every method against each reference (in the order given), Holm-corrected as one family.

    The unit of replication is the pretraining run: when both methods of a row have two
    pretraining runs or more, each run's mean over its split seeds is one observation and
    ``p_value`` is Welch's two-sided t-test across runs. When both have a single checkpoint the
    row compares checkpoints, not methods (``unit`` says so): the differences are paired split
    seed by split seed and ``p_value`` is the two-sided paired t-test. ``p_value`` is empty with
    fewer than two units a side or no spread. ``p_holm`` adjusts every p-value of the table
    together (Holm); decide on it.
    """
    out = pd.concat([_compare_frame(runs, ref) for ref in references], ignore_index=True)
    out["p_holm"] = holm(out["p_value"].to_numpy(dtype=np.float64))
    return out


def compare(runs: list[Run], reference: str | Sequence[str]) -> list[dict[str, object]]:
    """Rows of :func:`comparison_frame` as dicts (one reference or several)."""
    refs = [reference] if isinstance(reference, str) else list(reference)
    return frame_records(comparison_frame(runs, refs))


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
        out.append(f"### comparison against {ref} (accuracy difference, points)\n")
        out.append(
            "| method | dataset | protocol | shots | unit | n | diff mean ± std | p (t) "
            "| p (Holm) |"
        )
        out.append("|---|---|---|---|---|---|---|---|---|")
        for c in rows.itertuples():
            p, ph = ("–" if np.isnan(x) else f"{x:.3g}" for x in (c.p_value, c.p_holm))
            sd = "" if np.isnan(c.diff_std) else f" ± {c.diff_std:.1f}"
            out.append(
                f"| {c.method} | {c.dataset} | {c.protocol} | {c.shots} | {c.unit} | "
                f"{c.n_method}/{c.n_reference} | {c.diff_mean:+.1f}{sd} | {p} | {ph} |"
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
    summary = _summary_frame(runs)
    refs = [reference] if isinstance(reference, str) else list(reference or [])
    comparison = comparison_frame(runs, refs) if refs else None
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
        "summary": frame_records(summary),
        "comparison": [] if comparison is None else frame_records(comparison),
        "markdown": md,
        "warnings": warnings,
        "files": [str(out / n) for n in files],
    }
