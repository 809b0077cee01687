"""The HTML report of a run folder (``sarjepa report RUN_DIR``).

One self-contained file, ``RUN_DIR/report.html`` by default: CSS inline, figures embedded as
base64 PNG, no script, nothing fetched from a network, so it opens from a disk, a mail or an
archive. It shows

* the summary tables (mean ± std, the 95 % interval and n over seeds, per protocol) and the paired
  comparisons against reference methods, computed by :mod:`benchmark.tables`;
* accuracy against shots (:func:`benchmark.plots.plot_accuracy_vs_shots`);
* per method x dataset: a t-SNE map of the frozen encoder's test features, coloured by class
  (:mod:`benchmark.report.embedding`);
* per method x dataset x protocol: per-class accuracy against shots and one confusion matrix per
  shots, summed over seeds, from each cell's ``predictions.csv`` (:mod:`benchmark.predictions`).

Modules: :mod:`~benchmark.report.cells` (what the run folder holds),
:mod:`~benchmark.report.embedding` (features and t-SNE), :mod:`~benchmark.report.figures`
(PNG figures), :mod:`~benchmark.report.html` (the page), :mod:`~benchmark.report.build`
(:func:`write_report`, which ties them together).
"""

from __future__ import annotations

from sarjepa.benchmark.report.build import write_report

__all__ = ["write_report"]
