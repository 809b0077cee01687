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
from dataclasses import asdict, dataclass, replace
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
    "pretrain_run",
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


def _records(df: pd.DataFrame) -> list[dict[str, object]]:
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
    return _records(_summary_frame(runs))


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
    return _records(comparison_frame(runs, refs))


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
        "summary": _records(summary),
        "comparison": [] if comparison is None else _records(comparison),
        "markdown": md,
        "warnings": warnings,
        "files": [str(out / n) for n in files],
    }
