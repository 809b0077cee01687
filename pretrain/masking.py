"""Patch masking for masked prediction: LoMaR local windows, MAE random masking, I-JEPA blocks.

All functions are pure: they take sizes and an optional seeded ``torch.Generator`` and return
index / boolean tensors; the same generator state gives the same masks. Random numbers are drawn
on the generator's device (CPU when none is given) and the results moved to ``device``.
Patch indices are row-major into the (h, w) patch grid: index = row * w + col.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import torch

from benchmark.core.errors import SarjepaError


class LocalWindows(NamedTuple):
    """Windows of :func:`local_windows`.

    Attributes:
        origins: (B, num_window, 2) long, (row, col) of each window's top-left patch.
        patch_index: (B, num_window, ws * ws) long, row-major grid indices of the window's
            patches in row-major order inside the window.
        mask: (B, num_window, ws * ws) bool, True = masked; exactly ``int(ws * ws * ratio)``
            True per window.
    """

    origins: torch.Tensor
    patch_index: torch.Tensor
    mask: torch.Tensor


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


def _rand(shape: tuple[int, ...], generator: torch.Generator | None) -> torch.Tensor:
    dev = generator.device if generator is not None else torch.device("cpu")
    return torch.rand(shape, generator=generator, device=dev)


def _first_k_of_permutations(
    batch: int, n: int, k: int, generator: torch.Generator | None
) -> torch.Tensor:
    """(batch, k): the first k entries of an independent random permutation of range(n) per row."""
    return _rand((batch, n), generator).argsort(dim=1)[:, :k]


def local_windows(
    batch_size: int,
    grid_hw: tuple[int, int] = (14, 14),
    window_size: int = 7,
    num_window: int = 4,
    mask_ratio: float = 0.8,
    generator: torch.Generator | None = None,
    device: torch.device | str | None = None,
) -> LocalWindows:
    """LoMaR / SAR-JEPA local windows, ``num_window`` per image, each with its own mask.

    Every image gets all of its ``num_window`` windows (the authors' code tiled images and
    windows in different orders, so with a batch divisible by 4 each image saw one window four
    times; that is not reproduced). Window positions are drawn **per image** with the authors'
    scheme: the top rows are the first ``num_window`` entries of a random permutation of the
    ``h - ws + 1`` valid rows and the left columns, independently, of the ``w - ws + 1`` valid
    columns, so an image's windows have distinct origins (no two share a top row or a left
    column). When ``num_window`` exceeds the valid rows or columns, the origins are instead the
    first ``num_window`` of a random permutation of all valid (row, col) positions. Inside each
    window ``int(ws * ws * mask_ratio)`` patches are masked uniformly at random, independently
    per window and image.

    Args:
        batch_size: B.
        grid_hw: patch grid (h, w).
        window_size: ws, window side in patches (ws <= h and ws <= w).
        num_window: windows per image.
        mask_ratio: fraction of each window to mask; at least one patch must be masked.
        generator: optional seeded generator; draws are the top rows, the left columns, then the
            in-window masks.
        device: where the results go (default: the generator's device, else CPU).

    Returns:
        :class:`LocalWindows` with origins (B, num_window, 2), patch_index and mask
        (B, num_window, ws * ws).
    """
    gh, gw = (int(v) for v in grid_hw)
    ws, k, b = int(window_size), int(num_window), int(batch_size)
    if b < 1 or ws < 1 or k < 1:
        raise SarjepaError(
            f"local windows need batch_size, window_size and num_window >= 1, "
            f"got {batch_size}, {window_size}, {num_window}"
        )
    if ws > gh or ws > gw:
        raise SarjepaError(f"window_size {ws} is larger than the patch grid {gh}x{gw}")
    nh, nw = gh - ws + 1, gw - ws + 1
    if k > nh * nw:
        raise SarjepaError(
            f"num_window {k} exceeds the {nh * nw} distinct positions of a {ws}x{ws} window "
            f"on the {gh}x{gw} patch grid"
        )
    n_mask = int(ws * ws * mask_ratio)
    if not 0 < n_mask <= ws * ws:
        raise SarjepaError(
            f"mask_ratio {mask_ratio} masks {n_mask} of the {ws * ws} patches of a window "
            f"(need 1..{ws * ws})"
        )
    if k <= min(nh, nw):
        tops = _first_k_of_permutations(b, nh, k, generator)
        lefts = _first_k_of_permutations(b, nw, k, generator)
    else:
        pos = _first_k_of_permutations(b, nh * nw, k, generator)
        tops, lefts = pos // nw, pos % nw
    origins = torch.stack([tops, lefts], dim=-1)  # (B, k, 2)
    steps = torch.arange(ws, device=origins.device)
    rows = tops[..., None] + steps  # (B, k, ws)
    cols = lefts[..., None] + steps
    patch_index = (rows[..., :, None] * gw + cols[..., None, :]).flatten(-2)  # (B, k, ws*ws)
    masked = _rand((b, k, ws * ws), generator).argsort(dim=-1)[..., :n_mask]
    mask = torch.zeros(b, k, ws * ws, dtype=torch.bool, device=masked.device)
    mask.scatter_(-1, masked, True)
    if device is not None:
        origins, patch_index, mask = (t.to(device) for t in (origins, patch_index, mask))
    return LocalWindows(origins, patch_index, mask)


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


def _randint(high: int, generator: torch.Generator | None) -> int:
    """Uniform integer in [0, high)."""
    dev = generator.device if generator is not None else torch.device("cpu")
    return int(torch.randint(0, high, (1,), generator=generator, device=dev))


def _sample_block(
    size: tuple[int, int],
    grid: tuple[int, int],
    min_keep: int,
    generator: torch.Generator | None,
    allowed: list[torch.Tensor] | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """One block (sorted indices, complement mask (h, w) bool) as I-JEPA's ``_sample_block_mask``.

    The block's top-left is uniform over [0, h - bh) x [0, w - bw); it is intersected with the
    ``allowed`` regions and redrawn until more than ``min_keep`` patches remain; after every 20
    failures the last allowed region is dropped (I-JEPA's relaxation).
    """
    (bh, bw), (gh, gw) = size, grid
    allowed = allowed or []
    tries, timeout = 0, 20
    while True:
        top, left = _randint(gh - bh, generator), _randint(gw - bw, generator)
        block = torch.zeros(gh, gw, dtype=torch.bool)
        block[top : top + bh, left : left + bw] = True
        for region in allowed[: max(len(allowed) - tries, 0)]:
            block &= region
        idx = torch.nonzero(block.flatten()).flatten()
        if idx.numel() > min_keep:
            break
        timeout -= 1
        if timeout == 0:
            tries, timeout = tries + 1, 20
    complement = torch.ones(gh, gw, dtype=torch.bool)
    complement[top : top + bh, left : left + bw] = False
    return idx, complement


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
) -> MultiBlockMasks:
    """I-JEPA multi-block masks (its ``MaskCollator``) for one batch.

    As I-JEPA: one target-block size and one context-block size per batch, each from a single
    uniform draw that sets both scale and aspect ratio (h = round(sqrt(k * ar)),
    w = round(sqrt(k / ar)), k = int(h * w * scale), capped below the grid size); per image,
    ``num_targets`` target blocks at uniform positions, then ``num_context`` context blocks with
    the target blocks removed (unless ``allow_overlap``), each keeping more than ``min_keep``
    patches (constraints relaxed after repeated failures, as I-JEPA). Every mask is a sorted
    index list, truncated to its first K entries, K = the batch minimum (the collator's
    behaviour). Unlike I-JEPA, all draws (sizes and positions) come from ``generator``.

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
    t_size = _block_size(float(_rand((1,), generator)), grid, target_scale, target_aspect)
    c_size = _block_size(float(_rand((1,), generator)), grid, context_scale, context_aspect)
    for what, (bh, bw) in (("target", t_size), ("context", c_size)):
        if bh * bw <= min_keep:
            raise SarjepaError(
                f"{what} blocks of {bh}x{bw} patches cannot keep more than min_keep={min_keep} "
                f"patches on the {grid[0]}x{grid[1]} grid"
            )
    targets, contexts = [], []
    for _ in range(b):
        per_t, allowed = [], []
        for _ in range(num_targets):
            idx, complement = _sample_block(t_size, grid, min_keep, generator)
            per_t.append(idx)
            allowed.append(complement)
        regions = None if allow_overlap else allowed
        per_c = [
            _sample_block(c_size, grid, min_keep, generator, regions)[0] for _ in range(num_context)
        ]
        targets.append(per_t)
        contexts.append(per_c)
    k_t = min(m.numel() for per in targets for m in per)
    k_c = min(m.numel() for per in contexts for m in per)
    dev = device if device is not None else "cpu"
    out_t = [torch.stack([per[j][:k_t] for per in targets]).to(dev) for j in range(num_targets)]
    out_c = [torch.stack([per[j][:k_c] for per in contexts]).to(dev) for j in range(num_context)]
    return MultiBlockMasks(out_c, out_t)
