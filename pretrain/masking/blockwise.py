"""BEiT / MaskFeat block-wise masks (BEiT's ``MaskingGenerator``, used by MaskFeat)."""

from __future__ import annotations

import math

import torch
from sarjepa.benchmark.core.errors import SarjepaError


class _Uniforms:
    """Uniform [0, 1) float64 numbers from a generator, drawn 64 at a time and used in order (so
    the masks drawn for image i do not depend on the batch size)."""

    def __init__(self, generator: torch.Generator | None) -> None:
        self.generator = generator
        self.buffer: list[float] = []

    def __call__(self) -> float:
        if not self.buffer:
            draw = torch.rand(64, dtype=torch.float64, generator=self.generator)
            self.buffer = draw.tolist()[::-1]
        return self.buffer.pop()

    def uniform(self, a: float, b: float) -> float:
        """Python's ``random.uniform(a, b)``: ``a + (b - a) * u``."""
        return a + (b - a) * self()

    def randint(self, a: int, b: int) -> int:
        """Python's ``random.randint(a, b)``: uniform over a..b inclusive."""
        return a + min(int(self() * (b - a + 1)), b - a)


def _one_blockwise_mask(
    grid: tuple[int, int],
    num_mask: int,
    min_patches: int,
    max_patches: int,
    log_aspect: tuple[float, float],
    u: _Uniforms,
    exact: bool,
) -> torch.Tensor:
    """BEiT's ``MaskingGenerator.__call__`` for one image; (h * w,) bool (see blockwise_masks)."""
    gh, gw = grid
    mask = [[False] * gw for _ in range(gh)]
    count = 0
    while count < num_mask:
        budget = min(num_mask - count, max_patches)
        delta = 0
        for _ in range(10):  # BEiT's attempts per block
            area = u.uniform(min_patches, budget)
            aspect = math.exp(u.uniform(*log_aspect))
            bh = int(round(math.sqrt(area * aspect)))
            bw = int(round(math.sqrt(area / aspect)))
            if bw < gw and bh < gh:
                top, left = u.randint(0, gh - bh), u.randint(0, gw - bw)
                cells = [(r, c) for r in range(top, top + bh) for c in range(left, left + bw)]
                new = [(r, c) for r, c in cells if not mask[r][c]]
                if 0 < len(new) <= budget:
                    for r, c in new:
                        mask[r][c] = True
                    delta = len(new)
            if delta > 0:
                break
        if delta == 0:
            break
        count += delta
    flat = torch.tensor([v for row in mask for v in row], dtype=torch.bool)
    if exact and count < num_mask:
        free = (~flat).nonzero().flatten().tolist()
        for _ in range(num_mask - count):
            flat[free.pop(u.randint(0, len(free) - 1))] = True
    return flat


def blockwise_masks(
    batch_size: int,
    grid_hw: tuple[int, int] = (14, 14),
    num_mask: int = 78,
    min_patches: int = 16,
    max_patches: int | None = None,
    min_aspect: float = 0.3,
    max_aspect: float | None = None,
    exact: bool = True,
    generator: torch.Generator | None = None,
    device: torch.device | str | None = None,
) -> torch.Tensor:
    """BEiT / MaskFeat block-wise masking (BEiT's ``MaskingGenerator``, used by MaskFeat).

    Per image, rectangles are added until ``num_mask`` patches are masked. Each rectangle has an
    area ``uniform(min_patches, budget)`` (budget = patches still to mask, capped by
    ``max_patches``), an aspect ratio ``exp(uniform(log min_aspect, log max_aspect))``,
    ``h = round(sqrt(area * aspect))``, ``w = round(sqrt(area / aspect))``, must be strictly
    smaller than the grid, and sits at a uniform position (``randint(0, H - h)``,
    ``randint(0, W - w)``); it is accepted when it masks between 1 and ``budget`` new patches,
    otherwise redrawn, at most 10 times. BEiT stops when 10 draws in a row fail, which leaves
    some images a few patches short (at 14 x 14 with 78 masked and blocks of >= 15 patches,
    about 29% of images, mostly by one patch); with ``exact`` (our default) the missing patches
    are then masked uniformly at random among the free ones, so every image has exactly
    ``num_mask`` masked patches. ``exact=False`` is BEiT's behaviour. Images are drawn one after
    another from one stream of uniforms, so each image's mask is independent of the others and of
    the batch size.

    Args:
        batch_size: B.
        grid_hw: patch grid (h, w).
        num_mask: masked patches per image, 1 .. h * w - 1.
        min_patches: smallest rectangle area drawn (BEiT 16; MaskFeat ``num_mask // 5``).
        max_patches: largest rectangle area (None: ``num_mask``).
        min_aspect: smallest aspect ratio h / w (0.3); ``max_aspect`` defaults to its inverse.
        exact: top up to exactly ``num_mask`` (see above).
        generator: optional seeded CPU generator.
        device: where the result goes.

    Returns:
        (B, h * w) bool, True = masked, row-major.
    """
    gh, gw = (int(v) for v in grid_hw)
    b, n = int(batch_size), int(num_mask)
    max_patches = n if max_patches is None else int(max_patches)
    if b < 1 or not 0 < n < gh * gw:
        raise SarjepaError(
            f"block-wise masking needs batch_size >= 1 and 1 <= num_mask < {gh * gw} patches of "
            f"the {gh}x{gw} grid, got {batch_size}, {num_mask}"
        )
    if min_patches < 0 or max_patches < 1 or not 0 < min_aspect <= 1:
        raise SarjepaError(
            f"block-wise masking needs min_patches >= 0, max_patches >= 1 and min_aspect in "
            f"(0, 1], got {min_patches}, {max_patches}, {min_aspect}"
        )
    max_aspect = max_aspect or 1.0 / min_aspect
    log_aspect = (math.log(min_aspect), math.log(max_aspect))
    u = _Uniforms(generator)
    masks = [
        _one_blockwise_mask((gh, gw), n, int(min_patches), max_patches, log_aspect, u, exact)
        for _ in range(b)
    ]
    out = torch.stack(masks)
    return out.to(device) if device is not None else out
