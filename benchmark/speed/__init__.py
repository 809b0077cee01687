"""Throughput of our training / evaluation paths against the authors' way, on the same card.

Every measurement times one *step* repeatedly (``warmup`` untimed, then ``iters`` timed, each
between two device synchronisations) and reports the median as images per second. "Ours" is what
this repository runs: bf16 autocast on CUDA (fp32 on CPU), attention through
``scaled_dot_product_attention`` with the iRPE term as an additive bias, GF targets from summed-area
tables. The "reference" is the same model and step computed the way the authors' released code
does: fp32, attention as ``softmax((q @ k^T) * scale + rpe) @ v`` with the iRPE term gathered from a
flattened per-bucket table, GF targets from conv2d with four (2r+1) x (2r+1) half-window kernels
per scale. Both run in one process, so their ratio is comparable across cards.

Measurements (images are random, labels random among 10 classes):

- ``finetune``: forward, cross-entropy on a Linear head, backward, AdamW step (few-shot trainer).
- ``eval``: forward under ``torch.inference_mode`` at each eval batch size.
- ``pretrain``: one SAR-JEPA step (``pretrain.methods`` method ``sarjepa``: window draw, GF targets,
  forward, masked MSE, backward, AdamW); skipped with a note when that package is missing.
- ``gf``: the GF per-patch targets of a batch (4 scales).
- ``methods``: one pretraining step of every method with a bundled ``<method>_vit_b16.yaml``
  (SAR-JEPA's target variants, LoMaR, MaskFeat, MAE, FG-MAE, I-JEPA, ...), ours only, each built
  from its own config at ``arch`` / ``img_size`` (window methods get windows that fit the grid):
  the baselines' cost beside SAR-JEPA's on the same card.
- ``grid`` (only on request): real few-shot grids on generated data, a linear grid of 1 cell vs
  shots x seeds, fine-tune seconds per cell, ``--jobs`` cells per hour, and the paper's 900-cell
  grid projected in device hours (:mod:`benchmark.speed.grid_bench`).

Modules, one concern each: :mod:`~benchmark.speed.timing` (settings, rows, the timing loop),
:mod:`~benchmark.speed.reference` (the authors' way), :mod:`~benchmark.speed.measure` (the step
measurements), :mod:`~benchmark.speed.attention` (attention implementations side by side),
:mod:`~benchmark.speed.grid_bench` and :mod:`~benchmark.speed.projection` (grid throughput and the
paper grid's projection), :mod:`~benchmark.speed.run` (the run loop),
:mod:`~benchmark.speed.report` (table, progress lines, JSON report) and
:mod:`~benchmark.speed.options` (the ``--grid-*`` options). This package module imports no torch,
so that building the CLI parser (:mod:`~benchmark.speed.options`) stays light.
"""
