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
from sarjepa.benchmark.core.errors import SarjepaError


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


def _randint(high: int, generator: torch.Generator | None) -> int:
    """Uniform integer in [0, high): one ``torch.randint(0, high, (1,))`` call."""
    dev = generator.device if generator is not None else torch.device("cpu")
    return int(torch.randint(0, high, (1,), generator=generator, device=dev))


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


def shared_local_windows(
    batch_size: int,
    grid_hw: tuple[int, int] = (14, 14),
    window_size: int = 7,
    num_window: int = 4,
    mask_ratio: float = 0.8,
    generator: torch.Generator | None = None,
    device: torch.device | str | None = None,
) -> LocalWindows:
    """Upstream LoMaR's windows: ``num_window`` positions shared by the whole batch.

    The draws and their order are those of LoMaR's ``forward_encoder`` (junchen14/LoMaR):
    ``randperm(h - ws + 1)[:num_window]`` gives the top rows, then ``randperm(w - ws + 1)`` the
    left columns (window k = (top_k, left_k) for every image), then one
    ``rand(B, num_window, ws * ws)`` whose per-window argsort picks the
    ``int(ws * ws * mask_ratio)`` masked patches, independently per image and window. With the
    same generator state the windows and masks are upstream's. Upstream pairs image ``n`` with
    the windows in another order than its masks (a batch divisible by ``num_window`` shows each
    image one window ``num_window`` times); here image ``n`` gets window ``k`` with mask row
    ``(n, k)``, as in :func:`local_windows`.

    Args:
        batch_size: B.
        grid_hw: patch grid (h, w).
        window_size: ws, window side in patches.
        num_window: windows per image; at most ``min(h, w) - ws + 1`` (distinct rows and columns).
        mask_ratio: fraction of each window to mask; at least one patch must be masked.
        generator: optional seeded CPU generator.
        device: where the results go.

    Returns:
        :class:`LocalWindows` with origins (B, num_window, 2) (the same for every image),
        patch_index and mask (B, num_window, ws * ws).
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
    if k > min(nh, nw):
        raise SarjepaError(
            f"num_window {k} exceeds the {min(nh, nw)} distinct window rows/columns of a "
            f"{ws}x{ws} window on the {gh}x{gw} patch grid"
        )
    n_mask = int(ws * ws * mask_ratio)
    if not 0 < n_mask <= ws * ws:
        raise SarjepaError(
            f"mask_ratio {mask_ratio} masks {n_mask} of the {ws * ws} patches of a window "
            f"(need 1..{ws * ws})"
        )
    tops = torch.randperm(nh, generator=generator)[:k]
    lefts = torch.randperm(nw, generator=generator)[:k]
    steps = torch.arange(ws)
    one = ((tops[:, None, None] + steps[:, None]) * gw + lefts[:, None, None] + steps).flatten(1)
    patch_index = one.unsqueeze(0).expand(b, k, ws * ws).contiguous()
    origins = torch.stack([tops, lefts], dim=-1).unsqueeze(0).expand(b, k, 2).contiguous()
    masked = torch.rand((b, k, ws * ws), generator=generator).argsort(dim=-1)[..., :n_mask]
    mask = torch.zeros(b, k, ws * ws, dtype=torch.bool).scatter_(-1, masked, True)
    if device is not None:
        origins, patch_index, mask = (t.to(device) for t in (origins, patch_index, mask))
    return LocalWindows(origins, patch_index, mask)


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
