"""The report page: HTML text with inline CSS, tables built from the summary rows."""

from __future__ import annotations

import html
import math
from collections.abc import Sequence

import numpy as np
from sarjepa.benchmark.predictions import per_class_accuracy
from sarjepa.benchmark.report.cells import Confusion
from sarjepa.benchmark.report.figures import colour

CSS = """
body{font:14px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;margin:24px;color:#222}
h1{font-size:22px;margin:0 0 4px}h2{font-size:18px;margin:28px 0 8px;border-bottom:1px solid #ccc}
h3{font-size:15px;margin:18px 0 6px}h4{font-size:13px;margin:10px 0 4px}
p.meta,p.note,figcaption{color:#555;font-size:12px}
table{border-collapse:collapse;margin:6px 0 12px}
th,td{border:1px solid #ddd;padding:3px 7px;text-align:right;white-space:nowrap}
th{background:#f3f3f3}td.name,th.name{text-align:left}
table.confusion td{min-width:22px;padding:1px 3px;text-align:center;font-size:11px}
table.confusion th{font-size:10px;padding:1px 3px}
.grid{display:flex;flex-wrap:wrap;gap:14px;align-items:flex-start}
figure{margin:0;max-width:440px}img{max-width:100%}
nav a{margin-right:12px}
"""


def esc(x: object) -> str:
    """HTML-escaped text of ``x``."""
    return html.escape(str(x), quote=True)


def _num(x: object, nd: int = 1, sign: bool = False) -> str:
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return "–"
    return f"{float(x):+.{nd}f}" if sign else f"{float(x):.{nd}f}"


def table(
    header: Sequence[str], rows: Sequence[Sequence[str]], cls: str, name_cols: int = 1
) -> str:
    """A ``<table class=cls>``; cells are HTML already (escape text first); the first
    ``name_cols`` columns are left-aligned names."""

    def cell(tag: str, i: int, v: str) -> str:
        return f'<{tag} class="name">{v}</{tag}>' if i < name_cols else f"<{tag}>{v}</{tag}>"

    head = "".join(cell("th", i, h) for i, h in enumerate(header))
    body = "".join(
        "<tr>" + "".join(cell("td", i, v) for i, v in enumerate(r)) + "</tr>" for r in rows
    )
    return f'<table class="{cls}"><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>'


def summary_pivot(summary: list[dict[str, object]], protocol: str) -> str:
    """Methods x (dataset, shots) of one protocol: ``mean ± ci95`` (n seeds), best mean bold."""
    rows = [s for s in summary if s["protocol"] == protocol]
    columns = sorted({(str(s["dataset"]), int(s["shots"])) for s in rows})
    methods = sorted({str(s["method"]) for s in rows})
    cell = {(str(s["method"]), str(s["dataset"]), int(s["shots"])): s for s in rows}
    best = {
        col: max(float(cell[(m, *col)]["accuracy_mean"]) for m in methods if (m, *col) in cell)
        for col in columns
    }
    body = []
    for m in methods:
        vals = [esc(m)]
        for col in columns:
            s = cell.get((m, *col))
            if s is None:
                vals.append("–")
                continue
            txt = (
                f"{_num(s['accuracy_mean'])} ± {_num(s['accuracy_ci95'])} "
                f"<small>(n={int(s['n'])})</small>"
            )
            vals.append(f"<b>{txt}</b>" if float(s["accuracy_mean"]) == best[col] else txt)
        body.append(vals)
    header = ["method"] + [f"{esc(d)} {k}-shot" for d, k in columns]
    return table(header, body, "summary")


def summary_details(summary: list[dict[str, object]]) -> str:
    """Every summary row: mean, std, 95 % interval half-width, n and seeds, macro-F1."""
    header = ["method", "dataset", "protocol", "shots", "n", "seeds", "accuracy mean", "std",
              "ci95 ±", "macro-F1 mean", "macro-F1 std"]  # fmt: skip
    rows = [
        [esc(s["method"]), esc(s["dataset"]), esc(s["protocol"]), str(s["shots"]), str(s["n"]),
         esc(s["seeds"]), _num(s["accuracy_mean"], 2), _num(s["accuracy_std"], 2),
         _num(s["accuracy_ci95"], 2), _num(s["macro_f1_mean"], 2), _num(s["macro_f1_std"], 2)]
        for s in summary
    ]  # fmt: skip
    return table(header, rows, "summary-details", name_cols=3)


def comparison_table(comparison: list[dict[str, object]]) -> str:
    """Paired differences against each reference (points) with the paired t-test p-value."""
    header = ["method", "reference", "dataset", "protocol", "shots", "pairs",
              "diff mean", "diff std", "p (paired t)"]  # fmt: skip
    rows = [
        [esc(c["method"]), esc(c["reference"]), esc(c["dataset"]), esc(c["protocol"]),
         str(c["shots"]), str(c["n_pairs"]), _num(c["diff_mean"], 2, sign=True),
         _num(c["diff_std"], 2), "–" if c["p_value"] is None else f"{float(c['p_value']):.3g}"]
        for c in comparison
    ]  # fmt: skip
    return table(header, rows, "comparison", name_cols=4)


def per_class_table(by_shots: dict[int, Confusion]) -> str:
    """Classes x shots: accuracy (%) of each class, from the confusion summed over seeds."""
    shots = sorted(by_shots)
    names = by_shots[shots[0]].classnames
    accs = {k: per_class_accuracy(by_shots[k].counts) for k in shots}
    rows = []
    for c, name in enumerate(names):
        vals = [_num(accs[k][c]) if c < len(accs[k]) else "–" for k in shots]
        rows.append([esc(name), *vals])
    header = ["class"] + [f"{k}-shot (n={len(by_shots[k].seeds)})" for k in shots]
    return table(header, rows, "per-class")


def confusion_table(conf: Confusion) -> str:
    """Confusion matrix: rows true, columns predicted; counts summed over seeds, shaded by the
    row fraction."""
    counts = conf.counts
    totals = np.maximum(counts.sum(axis=1, keepdims=True), 1)
    frac = counts / totals
    names = [esc(n) for n in conf.classnames]
    head = '<th class="name">true \\ predicted</th>' + "".join(f"<th>{n}</th>" for n in names)
    body = []
    for i, name in enumerate(names):
        tds = []
        for j in range(len(names)):
            fg = "#fff" if frac[i, j] > 0.55 else "#222"
            style = f"background:{colour(frac[i, j])};color:{fg}"
            tds.append(f'<td style="{style}" title="{frac[i, j]:.0%}">{int(counts[i, j])}</td>')
        body.append(f'<tr><th class="name">{name}</th>{"".join(tds)}</tr>')
    return (
        f'<table class="confusion"><thead><tr>{head}</tr></thead>'
        f"<tbody>{''.join(body)}</tbody></table>"
    )


def page(title: str, meta: str, nav: Sequence[tuple[str, str]], sections: Sequence[str]) -> str:
    """The whole document."""
    links = "".join(f'<a href="#{esc(a)}">{esc(t)}</a>' for a, t in nav)
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>{esc(title)}</title><style>{CSS}</style></head><body>"
        f'<h1>{esc(title)}</h1><p class="meta">{meta}</p><nav>{links}</nav>'
        + "".join(sections)
        + "</body></html>\n"
    )
