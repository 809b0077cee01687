"""A representation-collapse monitor: the epoch mean of a per-batch feature spread, with a warning.

Methods that regress onto features of a moving (EMA) target can collapse to a constant target;
the spread of the target features across the batch falls towards zero first. A method feeds
:meth:`CollapseMonitor.add` one spread (and its loss) per training batch and reads the epoch's
means, averaged over the ranks of a distributed run, at the end of the epoch.
"""

from __future__ import annotations

import torch
from torch import Tensor


class CollapseMonitor:
    """Epoch means of ``(spread, loss)`` over batches and ranks; warns when the spread is low.

    Args:
        threshold: warn (rank 0, one line per epoch) when the epoch's spread is below this
            (0 = never).
        key: the config key that sets ``threshold`` (named in the warning).
    """

    def __init__(self, threshold: float, key: str = "TRAIN.COLLAPSE_STD") -> None:
        self.threshold = float(threshold)
        self.key = key
        self._sums: Tensor | None = None  # (spread, loss) summed over the epoch's batches
        self._count = 0

    def add(self, spread: Tensor, loss: Tensor) -> None:
        """Count one batch: 0-d tensors (kept on their device; no host sync)."""
        pair = torch.stack([spread, loss])
        self._sums = pair if self._sums is None else self._sums + pair
        self._count += 1

    def end_epoch(self, epoch: int) -> tuple[float, float] | None:
        """``(spread, loss)`` means of the epoch (None if no batch was counted), then reset."""
        if self._sums is None:
            return None
        sums = self._sums.detach().float() / self._count
        dist = torch.distributed
        if dist.is_available() and dist.is_initialized():
            dist.all_reduce(sums)
            sums /= dist.get_world_size()
        spread, loss = (float(v) for v in sums.tolist())
        self._sums, self._count = None, 0
        main = not (dist.is_available() and dist.is_initialized()) or dist.get_rank() == 0
        if main and spread < self.threshold:
            print(
                f"warning: epoch {epoch}: target features' std across the batch {spread:.3g} "
                f"< {self.key} {self.threshold:g}: the EMA target may be collapsing",
                flush=True,
            )
        return spread, loss
