"""SAR-ACD aircraft chips, the five types used by the SAR-JEPA authors."""

from __future__ import annotations

from sarjepa.benchmark.datasets.base import DATASET_REGISTRY
from sarjepa.benchmark.datasets.fixed import FixedLabelDataset


@DATASET_REGISTRY.register("SAR_ACD", aliases=("sar_acd", "sar-acd", "acd"))
class SAR_ACD(FixedLabelDataset):  # noqa: N801 - Dassl registers datasets by class name
    """SAR-ACD civil aircraft chips (Gaofen-3), five of the six types of the release.

    On disk (under ``DATASET.ROOT``)::

        SAR_ACD/images/<class>/**/*.jpg

    Classes and labels: A220 0, A330 1, ARJ21 2, Boeing737 3, Boeing787 4. A folder of the
    release's sixth type must be removed or listed in ``DATASET.IGNORE_CLASSES``.
    Split: there is no test folder. 90% of each class (``p_val = 0.9``) is drawn as the "val" part,
    which is both the test set and the pool of the min(K, 10)-shot val set; K training shots are
    drawn from the remaining 10%.

    Cite: the SAR-ACD release and its paper (see the AICyberTeam/SAR-ACD repository) and SAR-JEPA
    (Li et al., ISPRS J. 2024).
    """

    folder = "SAR_ACD"
    trainval_split = "images"
    test_split = None
    labels = {"A220": 0, "A330": 1, "ARJ21": 2, "Boeing737": 3, "Boeing787": 4}
    extensions = (".jpg",)
    p_val = 0.9
