"""MAE's per-image random masking (``random_masking`` in facebookresearch/mae models_mae.py)."""

from __future__ import annotations

from typing import NamedTuple

import torch
from sarjepa.benchmark.core.errors import SarjepaError
from sarjepa.pretrain.masking.base import _rand


class RandomMask(NamedTuple):
    """MAE masking of :func:`random_masking`.

    Attributes:
        ids_keep: (B, n_keep) long, kept patch indices (in random order, as MAE).
        mask: (B, N) bool, True = masked (removed).
        ids_restore: (B, N) long, argsort of the shuffle: ``gather(cat(kept, masked), ids_restore)``
            puts tokens back in grid order.
    """

    ids_keep: torch.Tensor
    mask: torch.Tensor
    ids_restore: torch.Tensor


def random_masking(
    batch_size: int,
    num_patches: int,
    mask_ratio: float,
    generator: torch.Generator | None = None,
    device: torch.device | str | None = None,
) -> RandomMask:
    """MAE per-sample random masking: keep ``int(N * (1 - mask_ratio))`` patches per image.

    As MAE: uniform noise per patch, ``ids_shuffle = argsort(noise)`` (small noise = kept),
    ``ids_restore = argsort(ids_shuffle)``, ``ids_keep = ids_shuffle[:, :n_keep]``.

    Args:
        batch_size: B.
        num_patches: N.
        mask_ratio: fraction removed, in [0, 1); at least one patch must be kept.
        generator: optional seeded generator.
        device: where the results go.

    Returns:
        :class:`RandomMask` (ids_keep (B, n_keep), mask (B, N) bool True = masked,
        ids_restore (B, N)).
    """
    b, n = int(batch_size), int(num_patches)
    n_keep = int(n * (1 - mask_ratio))
    if b < 1 or n < 1 or not 0 <= mask_ratio < 1 or n_keep < 1:
        raise SarjepaError(
            f"random masking needs batch_size, num_patches >= 1 and a mask_ratio in [0, 1) that "
            f"keeps a patch, got {batch_size}, {num_patches}, {mask_ratio}"
        )
    ids_shuffle = _rand((b, n), generator).argsort(dim=1)
    ids_restore = ids_shuffle.argsort(dim=1)
    ids_keep = ids_shuffle[:, :n_keep]
    mask = ids_restore >= n_keep  # position in the shuffle decides kept / removed
    if device is not None:
        ids_keep, mask, ids_restore = (t.to(device) for t in (ids_keep, mask, ids_restore))
    return RandomMask(ids_keep, mask, ids_restore)
