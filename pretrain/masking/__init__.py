"""Patch masking for masked prediction: one strategy per module, one contract.

============================ ======================= ==========================================
strategy (module)            function                used by
============================ ======================= ==========================================
per-image local windows      :func:`local_windows`   SAR-JEPA and its target variants
(``per_image_windows``)
batch-shared local windows   :func:`shared_local_windows`  upstream LoMaR
(``batch_windows``)
random patches               :func:`random_masking`  MAE, FG-MAE
(``random_patches``)
multi-block                  :func:`multiblock_masks` I-JEPA
(``multiblock``)
block-wise                   :func:`blockwise_masks` MaskFeat
(``blockwise``)
============================ ======================= ==========================================

The contract (:mod:`pretrain.masking.base`): a pure function of sizes, an optional seeded
``torch.Generator`` and an optional result ``device``; the same generator state gives the same
masks; patch indices are row-major into the (h, w) grid. Methods look strategies up here, at call
time (``from sarjepa.pretrain.masking import local_windows`` inside the method), so a test can
replace one strategy for every caller by patching this package's attribute.
"""

from __future__ import annotations

from sarjepa.pretrain.masking.batch_windows import shared_local_windows
from sarjepa.pretrain.masking.blockwise import blockwise_masks
from sarjepa.pretrain.masking.multiblock import (
    MultiBlockMasks,
    block_size_generator,
    gather_tokens,
    multiblock_masks,
    repeat_interleave_batch,
    smallest_block,
)
from sarjepa.pretrain.masking.per_image_windows import LocalWindows, local_windows
from sarjepa.pretrain.masking.random_patches import RandomMask, random_masking

__all__ = [
    "LocalWindows",
    "MultiBlockMasks",
    "RandomMask",
    "block_size_generator",
    "blockwise_masks",
    "gather_tokens",
    "local_windows",
    "multiblock_masks",
    "random_masking",
    "repeat_interleave_batch",
    "shared_local_windows",
    "smallest_block",
]
