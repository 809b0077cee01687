"""MSTAR standard operating conditions (SOC), 10 vehicle classes."""

from __future__ import annotations

from benchmark.datasets.base import DATASET_REGISTRY
from benchmark.datasets.fixed import FixedLabelDataset


@DATASET_REGISTRY.register("MSTAR_SOC", aliases=("mstar_soc", "mstar"))
class MSTAR_SOC(FixedLabelDataset):  # noqa: N801 - Dassl registers datasets by class name
    """MSTAR SOC chips as the SAR-JEPA authors arranged them.

    On disk (under ``DATASET.ROOT``)::

        MSTAR_SOC/TRAIN/<class>/**/*.jpeg     train-val pool (17 deg depression in the usual SOC)
        MSTAR_SOC/TEST/<class>/**/*.jpeg      test set (15 deg)

    Only files ending exactly in ``.jpeg`` are read (as the authors' reader). Classes and labels:
    BMP2 0, BTR70 1, T72 2, BTR60 3, 2S1 4, BRDM2 5, D7 6, T62 7, ZIL131 8, ZSU234 9.
    Split: 20% of each TRAIN class forms the val pool; K-shot train, min(K, 10)-shot val.

    Cite: the MSTAR public release (AFRL/DARPA, Sensor Data Management System) and, for the
    setting, Li et al., "Predicting Gradient is Better" (SAR-JEPA), ISPRS J. 2024.
    """

    folder = "MSTAR_SOC"
    trainval_split = "TRAIN"
    test_split = "TEST"
    labels = {
        "BMP2": 0,
        "BTR70": 1,
        "T72": 2,
        "BTR60": 3,
        "2S1": 4,
        "BRDM2": 5,
        "D7": 6,
        "T62": 7,
        "ZIL131": 8,
        "ZSU234": 9,
    }
    extensions = (".jpeg",)
    p_val = 0.2
