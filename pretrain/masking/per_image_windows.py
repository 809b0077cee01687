"""SAR-JEPA's local windows: ``num_window`` windows per image, positions drawn per image."""

from __future__ import annotations

from typing import NamedTuple

import torch
from sarjepa.benchmark.core.errors import SarjepaError
from sarjepa.pretrain.masking.base import _first_k_of_permutations, _rand


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


def window_args(
    grid_hw: tuple[int, int], window_size: int, num_window: int, batch_size: int
) -> tuple[int, int, int, int, int]:
    """The local-window arguments as ints ``(gh, gw, ws, k, b)``, checked.

    Raises:
        SarjepaError: a count below 1, or a window larger than the patch grid.
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
    return gh, gw, ws, k, b


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
    gh, gw, ws, k, b = window_args(grid_hw, window_size, num_window, batch_size)
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
