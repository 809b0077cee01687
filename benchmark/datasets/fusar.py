"""FUSAR-Ship as re-arranged by the SAR-JEPA authors ("New_FUSAR"), 10 classes."""

from __future__ import annotations

from sarjepa.benchmark.datasets.base import DATASET_REGISTRY
from sarjepa.benchmark.datasets.fixed import FixedLabelDataset


@DATASET_REGISTRY.register("New_FUSAR", aliases=("new_fusar", "fusar", "fusar_ship"))
class New_FUSAR(FixedLabelDataset):  # noqa: N801 - Dassl registers datasets by class name
    """FUSAR-Ship ship and false-alarm chips as the SAR-JEPA authors arranged them.

    On disk (under ``DATASET.ROOT``)::

        New_FUSAR/Train/<class>/**/*.jpg|*.png    train-val pool
        New_FUSAR/Val/<class>/**/*.jpg|*.png      test set (the authors' "Val" folder)

    Classes and labels: Bridges 0, Cargo 1, CoastalLands_island 2, Fishing 3, LandPatches 4,
    OtherShip 5, SeaClutterWaves 6, SeaPatches 7, StrongFalseAlarms 8, Tanker 9.
    Split: 20% of each Train class forms the val pool; K-shot train, min(K, 10)-shot val.

    Cite: Hou et al., "FUSAR-Ship: building a high-resolution SAR-AIS matchup dataset of
    Gaofen-3 for ship detection and recognition", Sci. China Inf. Sci. 2020; the class setting
    follows the paper the SAR-JEPA authors cite (IEEE 9893301); and SAR-JEPA (ISPRS J. 2024).
    """

    folder = "New_FUSAR"
    trainval_split = "Train"
    test_split = "Val"
    labels = {
        "Bridges": 0,
        "Cargo": 1,
        "CoastalLands_island": 2,
        "Fishing": 3,
        "LandPatches": 4,
        "OtherShip": 5,
        "SeaClutterWaves": 6,
        "SeaPatches": 7,
        "StrongFalseAlarms": 8,
        "Tanker": 9,
    }
    extensions = (".jpg", ".png")
    p_val = 0.2
