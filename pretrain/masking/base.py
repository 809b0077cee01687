"""What every masking strategy shares: the random primitives, so each draw is one torch call.

Every strategy module of :mod:`pretrain.masking` exposes one pure function with the same
contract: sizes in, an optional seeded ``torch.Generator`` (random numbers are drawn on its device,
CPU when none is given) and an optional ``device`` for the results, index / boolean tensors out;
the same generator state gives the same masks. Patch indices are row-major into the (h, w) patch
grid: index = row * w + col. The helpers below are the only places random numbers are drawn
(besides the ``torch.randperm`` / ``torch.rand`` calls LoMaR's and BEiT's orders need), so the
random-call order of a strategy reads off its own file.
"""

from __future__ import annotations

import torch


def _rand(shape: tuple[int, ...], generator: torch.Generator | None) -> torch.Tensor:
    dev = generator.device if generator is not None else torch.device("cpu")
    return torch.rand(shape, generator=generator, device=dev)


def _first_k_of_permutations(
    batch: int, n: int, k: int, generator: torch.Generator | None
) -> torch.Tensor:
    """(batch, k): the first k entries of an independent random permutation of range(n) per row."""
    return _rand((batch, n), generator).argsort(dim=1)[:, :k]


def _randint(high: int, generator: torch.Generator | None) -> int:
    """Uniform integer in [0, high): one ``torch.randint(0, high, (1,))`` call."""
    dev = generator.device if generator is not None else torch.device("cpu")
    return int(torch.randint(0, high, (1,), generator=generator, device=dev))
