""":func:`write_report`: gather a run folder's tables, predictions and features into one page."""

from __future__ import annotations

import csv
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

from sarjepa.benchmark.core.errors import SarjepaError
from sarjepa.benchmark.core.io import atomic_write_text
from sarjepa.benchmark.report import html as H
from sarjepa.benchmark.report.cells import collect_cells, confusions
from sarjepa.benchmark.report.embedding import embed, representative
from sarjepa.benchmark.report.figures import accuracy_vs_shots_png, data_uri, embedding_png

REPORT_FILE = "report.html"


def _check_dirs(run_dirs: Sequence[str | Path]) -> list[Path]:
    if not run_dirs:
        raise SarjepaError("no run folder given")
    for d in run_dirs:
        p = Path(d)
        if not p.exists():
            raise SarjepaError(f"run folder '{d}' not found")
        if not p.is_dir():
            raise SarjepaError(f"run folder '{d}' is not a folder")
    return [Path(d) for d in run_dirs]


def recorded_references(run_dir: Path) -> list[str]:
    """The references of ``run_dir/comparison.csv`` (as ``table``/``grid --reference`` wrote it),
    in order; none when the file is absent or unreadable."""
    try:
        with open(run_dir / "comparison.csv", newline="", encoding="utf-8") as f:
            return list(dict.fromkeys(row["reference"] for row in csv.DictReader(f)))
    except (OSError, KeyError, csv.Error):
        return []


def _versions(cells: list) -> str:
    for c in cells:
        v = c.result.get("provenance", {}).get("versions")
        if isinstance(v, dict) and v:
            return ", ".join(f"{H.esc(k)} {H.esc(x)}" for k, x in v.items())
    return ""


def write_report(
    run_dirs: str | Path | Sequence[str | Path],
    out: str | Path | None = None,
    references: Sequence[str] | None = None,
    max_points: int = 600,
    embeddings: bool = True,
    progress: bool | None = None,
    log: Callable[[str], None] = print,
) -> Path:
    """Write the HTML report of one run folder (or several, merged as by ``sarjepa table``).

    Args:
        run_dirs: the run folder(s).
        out: the HTML file (default ``RUN_DIR/report.html``; required with several folders).
        references: methods to compare the others with (paired over seeds); default: those of
            the folder's ``comparison.csv``.
        max_points: test images per t-SNE map at most (drawn with a fixed seed).
        embeddings: draw the t-SNE maps (the slow part: features and t-SNE per method x dataset).
        progress: tqdm bar over the maps (default: when stderr is a terminal).
        log: printer for warnings.

    Returns:
        The written file.

    Raises:
        SarjepaError: a folder is missing or holds no finished cell, a cell is in two folders,
            or a reference method has no runs.
    """
    from sarjepa.benchmark.runs import chance_levels, collect_many
    from sarjepa.benchmark.tables import compare, summarise

    dirs = _check_dirs([run_dirs] if isinstance(run_dirs, (str, Path)) else list(run_dirs))
    if out is None and len(dirs) > 1:
        raise SarjepaError("several run folders make one report: name its file (--out)")
    target = Path(out) if out is not None else dirs[0] / REPORT_FILE
    runs, warnings = collect_many(dirs)
    if not runs:
        where = ", ".join(str(d) for d in dirs)
        raise SarjepaError(f"no finished cells (result.json or Dassl log.txt) under {where}")
    refs = list(references) if references else recorded_references(dirs[0])
    summary = summarise(runs)
    comparison = [row for ref in refs for row in compare(runs, ref)]
    cells, cell_warnings = collect_cells(dirs)
    for w in warnings + cell_warnings:
        log(f"warning: {w}")

    nav = [("summary", "Summary")]
    sections = ['<section id="summary"><h2>Summary</h2>']
    sections.append(
        '<p class="note">Accuracy (%) per protocol: mean over seeds ± half-width of the 95 % '
        "interval (1.96 std / √n, std with ddof 0), n = seeds; best mean per column in bold.</p>"
    )
    for protocol in sorted({str(s["protocol"]) for s in summary}):
        sections.append(f"<h3>{H.esc(protocol)}</h3>" + H.summary_pivot(summary, protocol))
    sections.append("<details><summary>all statistics</summary>")
    sections.append(H.summary_details(summary) + "</details></section>")
    if comparison:
        nav.append(("comparison", "Comparisons"))
        sections.append(
            '<section id="comparison"><h2>Paired comparisons</h2><p class="note">Accuracy '
            "difference (points) against the reference over the seeds both have; two-sided "
            "paired t-test.</p>" + H.comparison_table(comparison) + "</section>"
        )
    nav.append(("shots", "Accuracy vs shots"))
    png = accuracy_vs_shots_png(summary, chance_levels(runs))
    sections.append(
        '<section id="shots"><h2>Accuracy vs shots</h2><p class="note">Mean ± std over seeds; '
        'dashed: chance.</p><img class="shots" alt="accuracy vs shots" '
        f'src="{data_uri(png)}"></section>'
    )

    if embeddings:
        nav.append(("embedding", "Embeddings"))
        show = progress if progress is not None else sys.stderr.isatty()
        sections.append(_embedding_section(cells, max_points, show, log))
    nav.append(("classes", "Per-class accuracy"))
    sections.append(_classes_section(confusions(cells)))

    versions = _versions(cells)
    meta = f"{len(runs)} finished cells from {H.esc(', '.join(str(d) for d in dirs))}" + (
        f"; {versions}" if versions else ""
    )
    text = H.page(
        "sarjepa report: " + ", ".join(d.name or str(d) for d in dirs), meta, nav, sections
    )
    atomic_write_text(text, target)
    return target


def _embedding_section(
    cells: list, max_points: int, progress: bool, log: Callable[[str], None]
) -> str:
    from tqdm import tqdm

    figs = []
    reps = sorted(representative(cells).items())
    for (dataset, method), cell in tqdm(reps, desc="t-SNE", disable=not progress, leave=False):
        emb = embed(cell, max_points=max_points)
        if emb.note:
            log(f"warning: no embedding of {method} on {dataset}: {emb.note}")
            figs.append(
                f'<figure class="embedding-missing"><p class="note">{H.esc(method)} - '
                f"{H.esc(dataset)}: {H.esc(emb.note)}</p></figure>"
            )
            continue
        figs.append(
            f'<figure><img class="embedding" alt="t-SNE of {H.esc(method)} on '
            f'{H.esc(dataset)}" src="{data_uri(embedding_png(emb))}">'
            f"<figcaption>{H.esc(emb.source)}</figcaption></figure>"
        )
    return (
        '<section id="embedding"><h2>Test-feature embeddings (t-SNE)</h2><p class="note">'
        "Pooled features of the frozen pretrained encoder (before any fine-tuning), "
        "L2-normalised, t-SNE with a fixed seed; colour = true class.</p>"
        f'<div class="grid">{"".join(figs)}</div></section>'
    )


def _classes_section(groups: dict) -> str:
    parts = [
        '<section id="classes"><h2>Per-class accuracy and confusion matrices</h2>'
        '<p class="note">From each cell\'s predictions.csv, counts summed over the seeds of a '
        "shots value; rows = true class, columns = predicted; shade = fraction of the row.</p>"
    ]
    if not groups:
        parts.append('<p class="note">No cell of this folder saved its predictions.</p>')
    by_panel: dict[tuple[str, str, str], dict] = {}
    for (dataset, protocol, method, shots), conf in groups.items():
        by_panel.setdefault((dataset, protocol, method), {})[shots] = conf
    for (dataset, protocol, method), by_shots in sorted(by_panel.items()):
        parts.append(f"<h3>{H.esc(method)} - {H.esc(dataset)} - {H.esc(protocol)}</h3>")
        mats = [f"<div><h4>per-class accuracy (%)</h4>{H.per_class_table(by_shots)}</div>"]
        mats += [
            f"<div><h4>{k}-shot, {len(c.seeds)} seed(s)</h4>{H.confusion_table(c)}</div>"
            for k, c in sorted(by_shots.items())
        ]
        parts.append(f'<div class="grid">{"".join(mats)}</div>')
    parts.append("</section>")
    return "".join(parts)
