"""Image relative position encoding (iRPE, Wu et al., ICCV 2021) as SAR-JEPA configures it.

Configuration (fixed here, see PROTOCOL.md#irpe): contextual mode, "product" method, on keys
only, one table shared by all heads, one skip token (CLS), ratio 1.9, so
``alpha = 1.9``, ``beta = 3.8``, ``gamma = 15.2``.

* The row and column offsets between a query patch ``i`` and a key patch ``j`` are
  ``d = pos_i - pos_j`` (query minus key), each mapped by :func:`piecewise_index` into
  ``[-3, 3]``; the bucket is ``(r + 3) * 7 + (c + 3)`` (49 buckets, 0..48).
* The CLS token's whole row and column use the extra bucket ``49`` (50 table columns in all).
* The attention logit gets ``q_i . W[:, bucket(i, j)]`` with the *unscaled* query ``q_i`` (the
  ``q.k`` term alone carries the ``head_dim ** -0.5`` factor), as the SAR-JEPA authors' copy of
  iRPE computes it. The reference iRPE code (microsoft/Cream) scales ``q`` first, so its key term
  is ``head_dim ** -0.5`` times this one. ``W`` is the parameter ``lookup_table_weight`` of shape
  ``(1, head_dim, 50)``, initialised to zeros.
"""

from __future__ import annotations

import functools
import math

import torch
from torch import Tensor, nn

ALPHA = 1.9
BETA = 3.8
GAMMA = 15.2
BETA_INT = int(BETA)
SIDE = 2 * BETA_INT + 1
NUM_SPATIAL_BUCKETS = SIDE * SIDE
SKIP_BUCKET = NUM_SPATIAL_BUCKETS
NUM_BUCKETS = NUM_SPATIAL_BUCKETS + 1


@torch.no_grad()
def piecewise_index(
    offset: Tensor, alpha: float = ALPHA, beta: float = BETA, gamma: float = GAMMA
) -> Tensor:
    """Map integer relative offsets to bucket offsets in ``[-int(beta), int(beta)]``.

    ``|d| <= alpha`` keeps ``d``; otherwise the magnitude is
    ``alpha + ln(|d| / alpha) / ln(gamma / alpha) * (beta - alpha)``, evaluated in float32,
    rounded half-to-even (``torch.round``), clipped at ``beta`` and truncated toward zero, then
    given the sign of ``d``. For integer offsets no value falls near a rounding tie, so the
    precision and tie rule do not change any bucket; they are kept as in the reference code.

    Args:
        offset: integer tensor of any shape (offsets in patch units).
        alpha, beta, gamma: the piecewise-index coefficients.

    Returns:
        Long tensor of the same shape.
    """
    offset = offset.long()
    mag = offset.abs()
    far = mag.clamp(min=1).float() / alpha  # the clamp only avoids log(0) on unused entries
    far = alpha + torch.log(far) / math.log(gamma / alpha) * (beta - alpha)
    far = torch.round(far).clamp(max=beta).long()
    return torch.where(mag <= alpha, offset, torch.sign(offset) * far)


@torch.no_grad()
def irpe_bucket_ids(h: int, w: int, skip: int = 1) -> Tensor:
    """Bucket ids of an ``h x w`` patch grid (row-major tokens), after ``skip`` leading tokens.

    Args:
        h, w: grid height and width in patches.
        skip: number of leading non-spatial tokens (1 for a CLS token, 0 without one). Their
            rows and columns all use bucket ``SKIP_BUCKET`` (49).

    Returns:
        LongTensor ``(skip + h*w, skip + h*w)`` on the CPU; entry ``[i, j]`` is the bucket of
        query token ``i`` attending to key token ``j``.
    """
    if h < 1 or w < 1 or skip < 0:
        raise ValueError(f"irpe_bucket_ids: need h, w >= 1 and skip >= 0, got {h}, {w}, {skip}")
    rows = torch.arange(h).repeat_interleave(w)
    cols = torch.arange(w).repeat(h)
    r = piecewise_index(rows[:, None] - rows[None, :]) + BETA_INT
    c = piecewise_index(cols[:, None] - cols[None, :]) + BETA_INT
    n = h * w
    ids = torch.full((skip + n, skip + n), SKIP_BUCKET, dtype=torch.long)
    ids[skip:, skip:] = r * SIDE + c
    return ids


@functools.lru_cache(maxsize=64)
def cached_bucket_ids(h: int, w: int, skip: int, device: torch.device) -> Tensor:
    """:func:`irpe_bucket_ids` memoised per ``(h, w, skip, device)``; do not modify the result."""
    return irpe_bucket_ids(h, w, skip).to(device)


def square_bucket_ids(seq_len: int, device: torch.device) -> Tensor:
    """Bucket ids inferred from a sequence length, as the reference code does.

    The grid is ``E x E`` with ``E = isqrt(seq_len)`` and ``seq_len - E*E`` skip tokens, which
    must be 0 or 1. Pass explicit ids for non-square grids.

    Args:
        seq_len: number of tokens ``T``.
        device: where the ids live.

    Returns:
        LongTensor ``(T, T)``.
    """
    side = math.isqrt(seq_len)
    skip = seq_len - side * side
    if skip not in (0, 1):
        raise ValueError(
            f"cannot infer a square iRPE grid from {seq_len} tokens; pass rpe_index explicitly"
        )
    return cached_bucket_ids(side, side, skip, torch.device(device))


class ContextualKeyRPE(nn.Module):
    """The iRPE key term: ``bias[b, h, i, j] = q[b, h, i] . W[0, :, bucket[i, j]]``.

    Registered as ``attn.rpe_k``; its one parameter ``lookup_table_weight`` has shape
    ``(1, head_dim, num_buckets)`` (shared by all heads) and starts at zero.

    Args:
        head_dim: per-head query width.
        num_buckets: table columns (49 spatial + 1 skip bucket).
    """

    def __init__(self, head_dim: int, num_buckets: int = NUM_BUCKETS) -> None:
        super().__init__()
        self.head_dim = head_dim
        self.num_buckets = num_buckets
        self.lookup_table_weight = nn.Parameter(torch.zeros(1, head_dim, num_buckets))

    def per_bucket(self, q: Tensor, bucket_ids: Tensor) -> Tensor:
        """Products ``q . W[0, :, n]`` for every bucket ``n``.

        Args:
            q: unscaled queries ``(B, H, T, head_dim)``.
            bucket_ids: LongTensor ``(T, T)`` (only its shape is checked here).

        Returns:
            ``(B, H, T, num_buckets)`` in ``q``'s dtype.
        """
        t = q.shape[-2]
        if bucket_ids.shape != (t, t):
            raise ValueError(f"rpe_index has shape {tuple(bucket_ids.shape)}, expected ({t}, {t})")
        return torch.matmul(q, self.lookup_table_weight.to(q.dtype))

    @staticmethod
    def gather(per_bucket: Tensor, bucket_ids: Tensor) -> Tensor:
        """``bias[b, h, i, j] = per_bucket[b, h, i, bucket_ids[i, j]]``, ``(B, H, T, T)``."""
        b, h, t, _ = per_bucket.shape
        return torch.gather(per_bucket, -1, bucket_ids.expand(b, h, t, t))

    def forward(self, q: Tensor, bucket_ids: Tensor) -> Tensor:
        """Additive attention bias.

        Args:
            q: unscaled queries ``(B, H, T, head_dim)``.
            bucket_ids: LongTensor ``(T, T)`` of bucket ids on ``q``'s device.

        Returns:
            ``(B, H, T, T)`` bias in ``q``'s dtype (one small matmul, then a gather).
        """
        return self.gather(self.per_bucket(q, bucket_ids), bucket_ids)

    def extra_repr(self) -> str:
        return f"head_dim={self.head_dim}, num_buckets={self.num_buckets}, shared_head=True"
