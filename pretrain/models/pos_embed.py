"""Fixed 2-D sine-cosine position embeddings in the MAE / I-JEPA layout.

For a grid of ``h x w`` patches in row-major token order and width ``D`` (divisible by 4):
the first ``D/2`` channels encode the patch's *column* index and the last ``D/2`` its *row*
index (MAE builds its grid with ``meshgrid(w, h)``, so its "emb_h" half is in fact the column).
Each half is ``[sin(p * omega_k), cos(p * omega_k)]`` with ``omega_k = 10000 ** (-k / (D/4))``,
``k = 0 .. D/4 - 1``. MAE prepends an all-zero row for the CLS token; I-JEPA has none.
Values are computed in float64 and returned as float32, as in those codebases.
"""

from __future__ import annotations

import functools

import torch
from torch import Tensor


def sincos_1d(dim: int, positions: Tensor) -> Tensor:
    """1-D sin-cos embedding.

    Args:
        dim: output width (even).
        positions: ``(M,)`` positions (any real dtype).

    Returns:
        float64 ``(M, dim)``: ``[sin(p * omega), cos(p * omega)]``.
    """
    if dim % 2:
        raise ValueError(f"sin-cos embedding width must be even, got {dim}")
    omega = torch.arange(dim // 2, dtype=torch.float64) / (dim / 2.0)
    omega = 1.0 / (10000.0**omega)
    angles = positions.to(torch.float64).reshape(-1, 1) * omega.reshape(1, -1)
    return torch.cat([torch.sin(angles), torch.cos(angles)], dim=1)


def sincos_2d(dim: int, grid: tuple[int, int], cls_token: bool = False) -> Tensor:
    """2-D sin-cos embedding of an ``h x w`` grid (row-major tokens).

    Args:
        dim: embedding width, divisible by 4.
        grid: ``(h, w)`` in patches.
        cls_token: prepend a zero row (MAE convention).

    Returns:
        float32 ``([1 +] h*w, dim)``.
    """
    if dim % 4:
        raise ValueError(f"2-D sin-cos embedding width must be divisible by 4, got {dim}")
    h, w = grid
    rows = torch.arange(h).repeat_interleave(w)
    cols = torch.arange(w).repeat(h)
    emb = torch.cat([sincos_1d(dim // 2, cols), sincos_1d(dim // 2, rows)], dim=1)
    if cls_token:
        emb = torch.cat([torch.zeros(1, dim, dtype=emb.dtype), emb], dim=0)
    return emb.float()


@functools.lru_cache(maxsize=16)
def cached_sincos_2d(dim: int, h: int, w: int) -> Tensor:
    """:func:`sincos_2d` without CLS row, memoised (CPU float32); do not modify the result."""
    return sincos_2d(dim, (h, w))
