"""Reference computations for ``sarjepa bench``: the authors' way, written independently.

- :func:`set_reference_attention` / :func:`reference_attention` switch the Attention modules of a
  ``pretrain.models`` ViT (or of a pretraining method) to explicit attention:
  ``softmax((q @ k^T) * head_dim**-0.5 + rpe) @ v``, the iRPE term ``rpe[b, h, i, j] =
  q[b, h, i] . W[:, bucket(i, j)]`` (unscaled q) read from a row-flattened per-bucket table by
  advanced indexing, as the authors' pure-PyTorch iRPE does (no fused kernel).
- :func:`conv_gf_maps` / :func:`conv_gf_target`: SAR-JEPA's GF target with four conv2d calls per
  half-width r, each a (2r+1) x (2r+1) kernel of ones on one half (centre line included) and zeros
  on the other, on the reflect-padded image + 0.01, in fp32 (the cost of the authors' module).
"""

from __future__ import annotations

import contextlib
import functools
import types
from collections.abc import Iterator

import torch
import torch.nn.functional as F
from torch import Tensor, nn

GF_SCALES = (5, 9, 13, 17)
GF_OFFSET = 0.01
PATCH = 16


# (address, shape, buckets, device) -> (ids, flat ids); holding ``ids`` keeps its address unique
_FLAT_IDS: dict[tuple, tuple[Tensor, Tensor]] = {}


def _flat_bucket_ids(ids: Tensor, num_buckets: int) -> Tensor:
    """Flat indices ``i * num_buckets + ids[i, j]`` into a row-flattened (T * buckets) table.

    Cached per bucket-id tensor, as the authors cache theirs per grid.
    """
    key = (ids.data_ptr(), tuple(ids.shape), num_buckets, str(ids.device))
    if key not in _FLAT_IDS:
        rows = torch.arange(ids.shape[0], device=ids.device)[:, None] * num_buckets
        _FLAT_IDS[key] = (ids, (ids + rows).flatten())
    return _FLAT_IDS[key][1]


def indexed_rpe(q: Tensor, table: Tensor, ids: Tensor) -> Tensor:
    """iRPE key term as the authors' pure-PyTorch path computes it.

    Args:
        q: unscaled queries ``(B, H, T, hd)``.
        table: ``lookup_table_weight`` ``(1, hd, buckets)``.
        ids: bucket ids ``(T, T)``.

    Returns:
        ``(B, H, T, T)``: ``q[b, h, i] . table[0, :, ids[i, j]]``.
    """
    b, h, t, hd = q.shape
    nb = table.shape[-1]
    per_bucket = (q.reshape(b * h * t, hd) @ table[0]).view(b, h, t * nb)
    return per_bucket[:, :, _flat_bucket_ids(ids, nb)].view(b, h, t, t)


def _explicit_attention(self: nn.Module, x: Tensor, rpe_index: Tensor | None = None) -> Tensor:
    """Drop-in ``Attention.forward``: explicit logits, + iRPE, softmax, @ v (authors' order)."""
    from sarjepa.pretrain.models.irpe import square_bucket_ids

    b, t, d = x.shape
    qkv = self.qkv(x).reshape(b, t, 3, self.num_heads, self.head_dim).permute(2, 0, 3, 1, 4)
    q, k, v = qkv[0], qkv[1], qkv[2]
    attn = (q @ k.transpose(-2, -1)) * self.head_dim**-0.5
    if self.rpe_k is not None:
        ids = square_bucket_ids(t, x.device) if rpe_index is None else rpe_index
        attn += indexed_rpe(q, self.rpe_k.lookup_table_weight, ids)
    attn = attn.softmax(dim=-1)
    return self.proj((attn @ v).transpose(1, 2).reshape(b, t, d))


def set_reference_attention(model: nn.Module, on: bool = True) -> nn.Module:
    """Switch every ``pretrain.models`` Attention of ``model`` to (or back from) the explicit path.

    Only these module instances change (an instance-level ``forward`` shadows the class's).
    """
    from sarjepa.pretrain.models.vit import Attention

    for m in model.modules():
        if isinstance(m, Attention):
            if on:
                m.forward = types.MethodType(_explicit_attention, m)
            elif "forward" in m.__dict__:
                del m.forward
    return model


@contextlib.contextmanager
def reference_attention(model: nn.Module) -> Iterator[nn.Module]:
    """Context manager form of :func:`set_reference_attention`."""
    set_reference_attention(model, True)
    try:
        yield model
    finally:
        set_reference_attention(model, False)


# --------------------------------------------------------------------------- reference GF (conv2d)
@functools.lru_cache(maxsize=32)
def _half_kernels(r: int, device: str, dtype: torch.dtype) -> tuple[Tensor, ...]:
    """Left, right, top, bottom half-window kernels ``(1, 1, 2r+1, 2r+1)`` (centre line in both)."""
    n = 2 * r + 1
    out = []
    for rows, cols in (
        (slice(None), slice(0, r + 1)),
        (slice(None), slice(r, n)),
        (slice(0, r + 1), slice(None)),
        (slice(r, n), slice(None)),
    ):
        k = torch.zeros(1, 1, n, n, device=device, dtype=dtype)
        k[0, 0, rows, cols] = 1.0
        out.append(k)
    return tuple(out)


def conv_gf_maps(
    images: Tensor, scales: tuple[int, ...] = GF_SCALES, dtype: torch.dtype = torch.float32
) -> Tensor:
    """GF magnitude maps with conv2d box sums, fp32: ``(B, 1, H, W) -> (B, len(scales), H, W)``."""
    maps = []
    for r in scales:
        xp = F.pad(images.to(dtype), (r, r, r, r), mode="reflect") + GF_OFFSET
        kernels = _half_kernels(r, str(xp.device), dtype)
        left, right, top, bottom = (F.conv2d(xp, k) for k in kernels)
        gx, gy = torch.log(left / right), torch.log(top / bottom)
        maps.append(torch.sqrt(gx * gx + gy * gy))
    return torch.cat(maps, dim=1)


def to_patches(maps: Tensor, p: int = PATCH) -> Tensor:
    """``(B, C, H, W) -> (B, (H/p)(W/p), C*p*p)``: row-major patches, channel-major inside."""
    b, c, h, w = maps.shape
    x = maps.reshape(b, c, h // p, p, w // p, p).permute(0, 2, 4, 1, 3, 5)
    return x.reshape(b, (h // p) * (w // p), c * p * p)


def conv_gf_target(images: Tensor) -> Tensor:
    """Reference GF per-patch targets ``(B, N, 4 * 256)`` (the authors' conv2d cost)."""
    return to_patches(conv_gf_maps(images))
