"""Datasets of the few-shot benchmark, registered by name (Dassl's ``DATASET_REGISTRY``).

``build_dataset(cfg)`` returns a :class:`DatasetBase` with ``train_x``, ``val`` and ``test`` lists
of :class:`Datum` (the K-shot split of ``cfg.SEED``), ``num_classes``, ``classnames``,
``lab2cname``, ``split_lists()`` (relative paths) and ``split_info`` (``split_hash``,
``fingerprint``, ``cache_file``).
"""

from __future__ import annotations

from typing import Any

from sarjepa.benchmark.core.errors import SarjepaError
from sarjepa.benchmark.datasets.base import (
    DATASET_REGISTRY,
    DatasetBase,
    Datum,
    generate_fewshot_dataset,
    split_dataset_by_label,
    split_trainval,
    subsample_classes,
)
from sarjepa.benchmark.datasets.folder import SARFolder
from sarjepa.benchmark.datasets.fusar import New_FUSAR
from sarjepa.benchmark.datasets.mstar import MSTAR_EOC1, MSTAR_EOC2C, MSTAR_EOC2V, MSTAR_SOC
from sarjepa.benchmark.datasets.sar_acd import SAR_ACD

__all__ = [
    "DATASET_REGISTRY",
    "DatasetBase",
    "Datum",
    "MSTAR_EOC1",
    "MSTAR_EOC2C",
    "MSTAR_EOC2V",
    "MSTAR_SOC",
    "New_FUSAR",
    "SAR_ACD",
    "SARFolder",
    "build_dataset",
    "generate_fewshot_dataset",
    "split_dataset_by_label",
    "split_trainval",
    "subsample_classes",
]


def build_dataset(cfg: Any) -> DatasetBase:
    """Build the dataset named by ``cfg.DATASET.NAME`` (a registered name or alias)."""
    name = str(cfg.DATASET.NAME)
    if not name:
        raise SarjepaError(
            "DATASET.NAME is not set (use a dataset config); known: "
            + ", ".join(DATASET_REGISTRY.names())
        )
    return DATASET_REGISTRY.get(name)(cfg)
