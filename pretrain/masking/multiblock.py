"""I-JEPA's multi-block masks (its ``MaskCollator``, facebookresearch/ijepa src/masks/)."""

from __future__ import annotations

import math
from typing import NamedTuple

import torch
from sarjepa.benchmark.core.errors import SarjepaError
from sarjepa.pretrain.masking.base import _rand, _randint


class MultiBlockMasks(NamedTuple):
    """I-JEPA masks of :func:`multiblock_masks` (the collator's ``masks_enc``, ``masks_pred``).

    Attributes:
        context: ``num_context`` long tensors (B, K_ctx): sorted patch indices each image's
            context encoder sees, truncated to the batch minimum K_ctx.
        targets: ``num_targets`` long tensors (B, K_tgt): sorted patch indices of each target
            block, truncated to the batch minimum K_tgt.
    """

    context: list[torch.Tensor]
    targets: list[torch.Tensor]


def _block_size(
    u: float, grid: tuple[int, int], scale: tuple[float, float], aspect: tuple[float, float]
) -> tuple[int, int]:
    """I-JEPA's block (h, w) from one uniform draw u (used for both scale and aspect)."""
    gh, gw = grid
    s = scale[0] + u * (scale[1] - scale[0])
    max_keep = int(gh * gw * s)
    ar = aspect[0] + u * (aspect[1] - aspect[0])
    h = int(round(math.sqrt(max_keep * ar)))
    w = int(round(math.sqrt(max_keep / ar)))
    return min(h, gh - 1), min(w, gw - 1)


def smallest_block(
    grid: tuple[int, int],
    scale: tuple[float, float],
    aspect: tuple[float, float],
    points: int = 4097,
) -> tuple[int, int]:
    """The smallest-area (h, w) :func:`multiblock_masks` can draw for these ranges, found on
    ``points`` evenly spaced draws in [0, 1] (the size is piecewise constant in the draw)."""
    sizes = [_block_size(i / (points - 1), grid, scale, aspect) for i in range(points)]
    return min(sizes, key=lambda hw: hw[0] * hw[1])


# I-JEPA redraws a block this many times before it drops one overlap constraint.
_RELAX_AFTER = 20


def _sample_block(
    size: tuple[int, int],
    grid: tuple[int, int],
    min_keep: int,
    generator: torch.Generator | None,
    avoid: list[tuple[int, int, int, int]] | None = None,
) -> tuple[list[int], tuple[int, int, int, int]]:
    """One block as I-JEPA's ``_sample_block_mask``: (sorted indices, its rectangle).

    The top-left corner is ``randint(0, gh - bh)`` then ``randint(0, gw - bw)`` (so a block never
    touches the last row / column, as upstream). Patches inside the rectangles ``avoid``
    (top, left, h, w) are removed; the block is redrawn until more than ``min_keep`` patches
    remain, and after every 20 failures the last remaining ``avoid`` rectangle is no longer
    avoided (upstream's relaxation). Pure Python on the patch grid (upstream builds (gh, gw)
    tensors); the random calls and their order are upstream's.
    """
    (bh, bw), (gh, gw) = size, grid
    avoid = avoid or []
    tries, timeout = 0, _RELAX_AFTER
    blocked: set[int] | None = None
    while True:
        top, left = _randint(gh - bh, generator), _randint(gw - bw, generator)
        if blocked is None:
            blocked = {
                r * gw + c
                for (t, lf, h, w) in avoid[: max(len(avoid) - tries, 0)]
                for r in range(t, t + h)
                for c in range(lf, lf + w)
            }
        idx = [
            r * gw + c
            for r in range(top, top + bh)
            for c in range(left, left + bw)
            if r * gw + c not in blocked
        ]
        if len(idx) > min_keep:
            return idx, (top, left, bh, bw)
        timeout -= 1
        if timeout == 0:
            tries, timeout, blocked = tries + 1, _RELAX_AFTER, None


def block_size_generator(counter: int) -> torch.Generator:
    """I-JEPA's generator for one batch's block sizes: a fresh CPU generator seeded with the
    collator's call counter (0 for the first batch of a run, 1 for the next, ...)."""
    return torch.Generator().manual_seed(int(counter))


def multiblock_masks(
    batch_size: int,
    grid_hw: tuple[int, int] = (14, 14),
    num_targets: int = 4,
    target_scale: tuple[float, float] = (0.15, 0.2),
    target_aspect: tuple[float, float] = (0.75, 1.5),
    num_context: int = 1,
    context_scale: tuple[float, float] = (0.85, 1.0),
    context_aspect: tuple[float, float] = (1.0, 1.0),
    min_keep: int = 4,
    allow_overlap: bool = False,
    generator: torch.Generator | None = None,
    device: torch.device | str | None = None,
    size_generator: torch.Generator | None = None,
) -> MultiBlockMasks:
    """I-JEPA multi-block masks (its ``MaskCollator``) for one batch.

    As I-JEPA: one target-block size and one context-block size per batch, each from a single
    uniform draw that sets both scale and aspect ratio (h = round(sqrt(k * ar)),
    w = round(sqrt(k / ar)), k = int(h * w * scale), capped below the grid size); per image,
    ``num_targets`` target blocks at uniform positions, then ``num_context`` context blocks with
    the target blocks removed (unless ``allow_overlap``), each keeping more than ``min_keep``
    patches (constraints relaxed after repeated failures, as I-JEPA). Every mask is a sorted
    index list, truncated to its first K entries, K = the batch minimum (the collator's
    behaviour).

    Random calls, in upstream's order: the target then the context size (one ``torch.rand(1)``
    each) from ``size_generator``; then per image, per block, ``randint`` top then left from
    ``generator``. Upstream seeds the size generator with its call counter
    (:func:`block_size_generator`) and draws positions from torch's global generator, so with
    ``size_generator=block_size_generator(i)`` and ``generator`` in the global generator's state
    this returns exactly upstream's ``(masks_enc, masks_pred)`` of call ``i``.

    Args:
        batch_size: B.
        grid_hw: patch grid (h, w).
        num_targets: target blocks per image (upstream ``npred``).
        target_scale, target_aspect: target block area fraction and aspect (h / w) ranges.
        num_context: context blocks per image (upstream ``nenc``).
        context_scale, context_aspect: the same for the context block.
        min_keep: every block keeps more than this many patches.
        allow_overlap: keep target patches in the context.
        generator: generator of the block positions (None: torch's global generator).
        device: where the results go (default CPU).
        size_generator: generator of the two block sizes; None = ``generator``.

    Returns:
        :class:`MultiBlockMasks` (context: list of (B, K_ctx), targets: list of (B, K_tgt)).
    """
    grid = (int(grid_hw[0]), int(grid_hw[1]))
    b = int(batch_size)
    if b < 1 or num_targets < 1 or num_context < 1 or min(grid) < 2:
        raise SarjepaError(
            f"multi-block masks need batch_size, num_targets, num_context >= 1 and a grid of at "
            f"least 2x2, got {batch_size}, {num_targets}, {num_context}, {grid[0]}x{grid[1]}"
        )
    sizes = size_generator if size_generator is not None else generator
    t_size = _block_size(float(_rand((1,), sizes)), grid, target_scale, target_aspect)
    c_size = _block_size(float(_rand((1,), sizes)), grid, context_scale, context_aspect)
    for what, (bh, bw) in (("target", t_size), ("context", c_size)):
        if bh * bw <= min_keep:
            raise SarjepaError(
                f"{what} blocks of {bh}x{bw} patches cannot keep more than min_keep={min_keep} "
                f"patches on the {grid[0]}x{grid[1]} grid"
            )
    targets, contexts = [], []
    for _ in range(b):
        per_t, rects = [], []
        for _ in range(num_targets):
            idx, rect = _sample_block(t_size, grid, min_keep, generator)
            per_t.append(idx)
            rects.append(rect)
        avoid = None if allow_overlap else rects
        per_c = [
            _sample_block(c_size, grid, min_keep, generator, avoid)[0] for _ in range(num_context)
        ]
        targets.append(per_t)
        contexts.append(per_c)
    k_t = min(len(m) for per in targets for m in per)
    k_c = min(len(m) for per in contexts for m in per)
    dev = device if device is not None else "cpu"

    def stack(masks: list[list[list[int]]], j: int, k: int) -> torch.Tensor:
        return torch.tensor([per[j][:k] for per in masks], dtype=torch.long).to(dev)

    out_t = [stack(targets, j, k_t) for j in range(num_targets)]
    out_c = [stack(contexts, j, k_c) for j in range(num_context)]
    return MultiBlockMasks(out_c, out_t)


def gather_tokens(x: torch.Tensor, masks: list[torch.Tensor]) -> torch.Tensor:
    """Upstream ``apply_masks``: ``x`` (B, N, C), masks of (B, K) indices -> (len(masks) B, K, C),
    mask-major."""
    return torch.cat(
        [torch.gather(x, 1, m.unsqueeze(-1).expand(-1, -1, x.shape[-1])) for m in masks], dim=0
    )


def repeat_interleave_batch(x: torch.Tensor, batch: int, repeat: int) -> torch.Tensor:
    """Upstream ``repeat_interleave_batch``: each consecutive chunk of ``batch`` rows repeated
    ``repeat`` times in place."""
    chunks = [x[i * batch : (i + 1) * batch] for i in range(len(x) // batch)]
    return torch.cat([c for c in chunks for _ in range(repeat)], dim=0)
