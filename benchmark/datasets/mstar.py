"""MSTAR standard operating conditions (SOC), 10 vehicle classes."""

from __future__ import annotations

from sarjepa.benchmark.datasets.base import DATASET_REGISTRY
from sarjepa.benchmark.datasets.fixed import FixedLabelDataset

#: The standard MSTAR SOC chips per class (17 deg train, 15 deg test): 2,747 / 2,425 in all.
SOC_COUNTS: dict[str, tuple[int, int]] = {
    "BMP2": (233, 195),
    "BTR70": (233, 196),
    "T72": (232, 196),
    "BTR60": (256, 195),
    "2S1": (299, 274),
    "BRDM2": (298, 274),
    "D7": (299, 274),
    "T62": (299, 273),
    "ZIL131": (299, 274),
    "ZSU234": (299, 274),
}


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


class _MSTARLayout(FixedLabelDataset):
    """Shared settings of the layouts ``sarjepa prepare mstar`` builds besides SOC."""

    trainval_split = "TRAIN"
    test_split = "TEST"
    extensions = (".jpeg",)
    p_val = 0.2


@DATASET_REGISTRY.register("MSTAR_EOC1", aliases=("mstar_eoc1",))
class MSTAR_EOC1(_MSTARLayout):  # noqa: N801
    """MSTAR EOC-1 (large depression change): ``MSTAR_EOC1/{TRAIN,TEST}/<class>/**/*.jpeg``,
    17 deg train, 30 deg test; 2S1 0, BRDM2 1, T72 2 (serial A64), ZSU234 3 (our label order)."""

    folder = "MSTAR_EOC1"
    labels = {"2S1": 0, "BRDM2": 1, "T72": 2, "ZSU234": 3}


@DATASET_REGISTRY.register("MSTAR_EOC2C", aliases=("mstar_eoc2c",))
class MSTAR_EOC2C(_MSTARLayout):  # noqa: N801
    """MSTAR EOC-2, configuration variants: train BMP2 / BRDM2 / BTR70 / T72 at 17 deg, test
    the T72 configuration variants at 15 and 17 deg; BMP2 0, BRDM2 1, BTR70 2, T72 3 (ours).
    The test set holds only T72 chips (classes without test chips are reported, not an error)."""

    folder = "MSTAR_EOC2C"
    labels = {"BMP2": 0, "BRDM2": 1, "BTR70": 2, "T72": 3}


@DATASET_REGISTRY.register("MSTAR_EOC2V", aliases=("mstar_eoc2v",))
class MSTAR_EOC2V(_MSTARLayout):  # noqa: N801
    """MSTAR EOC-2, version variants: train as EOC-2C, test the BMP2 and T72 version variants
    at 15 and 17 deg; BMP2 0, BRDM2 1, BTR70 2, T72 3 (ours)."""

    folder = "MSTAR_EOC2V"
    labels = {"BMP2": 0, "BRDM2": 1, "BTR70": 2, "T72": 3}
