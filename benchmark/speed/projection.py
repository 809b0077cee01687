"""The paper's grid projected in device hours from measured grid times: pure arithmetic.

:func:`finetune_fit` fits seconds per fine-tune cell against shots, :func:`scale_to_datasets`
carries the measured dataset's times to the others, :func:`project_grid` adds up the
:data:`PAPER_METHODS` x datasets x shots x seeds x 2 protocols grid.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from sarjepa.benchmark.core.errors import SarjepaError

PAPER_METHODS = 10
PROTOCOLS = ("finetune", "linear")  # the paper's two protocols per method and dataset
TARGET_RATIO = 1.5  # issue 11: a linear grid of 3 shots x 5 seeds costs <= 1.5x one cell
TARGET_HOURS = 1.0  # issue 11: the 900-cell grid in <= 1 GPU-hour


@dataclass(frozen=True)
class DatasetSize:
    """What scales a dataset's cells: classes, test images, all images (train pool + test)."""

    classes: int
    test: int
    chips: int


def finetune_fit(seconds: Mapping[int, float]) -> tuple[float, float]:
    """``(a, b)`` of ``t(k) = a + b k`` through the timed cells (seconds per cell at ``k`` shots).

    Two or more shots: least squares (the line through two points), the slope kept >= 0. One
    shot: the time is taken as proportional to ``k`` (``a = 0``), which overstates larger ``k``.
    """
    ks = sorted(seconds)
    if len(ks) == 1:
        return 0.0, seconds[ks[0]] / ks[0]
    mk = sum(ks) / len(ks)
    mt = sum(seconds[k] for k in ks) / len(ks)
    b = sum((k - mk) * (seconds[k] - mt) for k in ks) / sum((k - mk) ** 2 for k in ks)
    b = max(b, 0.0)
    return mt - b * mk, b


def scale_to_datasets(
    measured: str,
    sizes: Mapping[str, DatasetSize],
    linear_grid_s: float,
    fit: tuple[float, float],
    shots: Sequence[int],
) -> tuple[dict[str, float], dict[str, dict[int, float]]]:
    """Per dataset: its linear grid's seconds and a fine-tune cell's seconds per shot count.

    The linear grid (feature extraction of the images the cells touch, then a head per cell)
    scales with the dataset's chip count: ``L_d = L_m chips_d / chips_m``. A fine-tune cell
    ``t_m(k) = a + b k`` (:func:`finetune_fit` on the measured dataset ``m``) splits into a part
    that does not grow with the shots (loading, evaluating the test set), scaled by the test
    set's size, and the training part, ``k`` images per class each epoch, scaled by the number
    of classes: ``t_d(k) = a test_d / test_m + b k classes_d / classes_m``.
    """
    m = sizes[measured]
    a, b = fit
    linear = {d: linear_grid_s * s.chips / m.chips for d, s in sizes.items()}
    finetune = {
        d: {int(k): a * s.test / m.test + b * k * s.classes / m.classes for k in shots}
        for d, s in sizes.items()
    }
    return linear, finetune


def project_grid(
    linear_grid_s: Mapping[str, float],
    finetune_cell_s: Mapping[str, Mapping[int, float]],
    seeds: int,
    methods: int = PAPER_METHODS,
    finetune_speedup: float = 1.0,
) -> dict[str, float]:
    """Device hours of a grid of ``methods`` x datasets x shots x ``seeds`` x 2 protocols.

    Per method and dataset: one linear grid (all its shots x seeds, one process: seconds
    ``linear_grid_s[d]``) plus ``seeds`` fine-tune cells per shot count (seconds
    ``finetune_cell_s[d][k]`` each), the fine-tune part divided by ``finetune_speedup`` (several
    cells per device at once). Pure arithmetic.

    Returns:
        ``cells``, ``seconds_per_method``, ``linear_s`` and ``finetune_s`` (per method),
        ``seconds``, ``hours`` and ``cells_per_hour``.
    """
    if finetune_speedup <= 0 or seeds < 1 or methods < 1:
        raise SarjepaError(
            f"projection needs speed-up > 0, seeds >= 1, methods >= 1; got {finetune_speedup}, "
            f"{seeds}, {methods}"
        )
    lin = sum(linear_grid_s.values())
    ft = sum(seeds * t for per_shot in finetune_cell_s.values() for t in per_shot.values())
    ft /= finetune_speedup
    shots = {len(per_shot) for per_shot in finetune_cell_s.values()}
    cells = methods * len(finetune_cell_s) * max(shots, default=0) * seeds * len(PROTOCOLS)
    total = methods * (lin + ft)
    return {
        "cells": cells,
        "linear_s": lin,
        "finetune_s": ft,
        "seconds_per_method": lin + ft,
        "seconds": total,
        "hours": total / 3600,
        "cells_per_hour": cells / (total / 3600) if total > 0 else 0.0,
    }
