"""Interchangeable computations of the iRPE ViT's attention (one result, several speeds).

Every :class:`pretrain.models.vit.Attention` carries an ``attn_impl`` name, read from
``$SARJEPA_ATTN`` when the module is built (default ``sdpa``) and switched on a built model with
:func:`set_attention`. All four compute ``softmax(q k^T * head_dim**-0.5 + bias) v`` with
``bias[b, h, i, j] = q[b, h, i] . W[:, bucket(i, j)]`` (the iRPE key term); they differ only in
where the ``(B, H, T, T)`` bias lives and in rounding:

``sdpa`` (default)
    one ``(B, H, T, 50)`` matmul, a gather to ``(B, H, T, T)``, then
    ``F.scaled_dot_product_attention`` with the bias as ``attn_mask`` (flash / memory-efficient /
    cuDNN / math backend, whichever torch picks).
``aligned``
    as ``sdpa``, but the bias is gathered into a buffer whose last dimension is padded to a
    multiple of 8 and handed over as a slice of it. The memory-efficient CUDA kernel needs the
    bias rows 8-aligned; with ``T = 197`` torch otherwise pads (copies) the whole bias on every
    call. Same numbers as ``sdpa``.
``triton``
    a fused kernel (:mod:`pretrain.models.irpe_triton`) that reads ``W``'s per-bucket products
    inside the attention tiles and never writes the ``(B, H, T, T)`` bias. It needs Triton and
    a CUDA device (or ``TRITON_INTERPRET=1``); elsewhere it warns once and runs ``sdpa``.
``math``
    the reference written out: logits and softmax in float32, then ``@ v``.

Without iRPE (sin-cos or no positions) every name except ``math`` runs plain SDPA. Which one is
fastest depends on the card; ``sarjepa bench --only attention`` times them side by side and
checks each against ``math`` in float32.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Iterable

import torch
import torch.nn.functional as F
from sarjepa.benchmark.core.errors import unknown
from torch import Tensor, nn

ATTN_IMPLS = ("sdpa", "aligned", "triton", "math")
ENV_VAR = "SARJEPA_ATTN"
ALIGN = 8  # elements; the memory-efficient SDPA kernel's bias alignment
_warned: set[str] = set()


def check_impl(impl: str, where: str = "attention implementation") -> str:
    """Normalise ``impl`` (case, blanks) and refuse an unknown name with a one-line error."""
    name = str(impl).strip().lower()
    if name not in ATTN_IMPLS:
        raise unknown(where, str(impl), ATTN_IMPLS)
    return name


def default_impl() -> str:
    """``$SARJEPA_ATTN`` if set (checked), else ``"sdpa"``."""
    value = os.environ.get(ENV_VAR, "").strip()
    return check_impl(value, f"${ENV_VAR} value") if value else "sdpa"


def set_attention(model: nn.Module, impl: str) -> nn.Module:
    """Switch every attention module of ``model`` to ``impl`` (one of :data:`ATTN_IMPLS`).

    Returns ``model``; its weights, state dict and results (within rounding) are unchanged.
    """
    name = check_impl(impl)
    for m in model.modules():
        if hasattr(m, "attn_impl"):
            m.attn_impl = name
    return model


def impls_of(model: nn.Module) -> set[str]:
    """The ``attn_impl`` names found in ``model`` (empty for a model without our attention)."""
    return {m.attn_impl for m in model.modules() if hasattr(m, "attn_impl")}


def _warn_once(key: str, message: str) -> None:
    if key not in _warned:
        _warned.add(key)
        warnings.warn(message, RuntimeWarning, stacklevel=3)


def explicit_attention(q: Tensor, k: Tensor, v: Tensor, bias: Tensor | None) -> Tensor:
    """``softmax(q k^T / sqrt(head_dim) + bias)`` in float32, then ``@ v`` (in ``v``'s dtype).

    Args:
        q, k, v: ``(B, H, T, hd)``.
        bias: ``(B, H, T, T)`` additive logit bias or None.

    Returns:
        ``(B, H, T, hd)``.
    """
    logits = torch.matmul(q, k.transpose(-2, -1)).float() * q.shape[-1] ** -0.5
    if bias is not None:
        logits = logits + bias.float()
    return torch.matmul(logits.softmax(dim=-1).to(v.dtype), v)


def aligned_bias(per_bucket: Tensor, bucket_ids: Tensor, align: int = ALIGN) -> Tensor:
    """The gathered bias ``(B, H, T, T)`` as a view of a ``(B, H, T, ceil8(T))`` buffer.

    Args:
        per_bucket: ``(B, H, T, buckets)`` products ``q . W[:, n]``.
        bucket_ids: LongTensor ``(T, T)``.
        align: pad the last dimension of the buffer to a multiple of this.

    Returns:
        ``(B, H, T, T)`` with row stride a multiple of ``align`` (equal to the plain gather).
    """
    b, h, t, _ = per_bucket.shape
    pad = -t % align
    if pad:
        bucket_ids = F.pad(bucket_ids, (0, pad))  # padded columns read bucket 0, then are cut
    full = torch.gather(per_bucket, -1, bucket_ids.expand(b, h, t, t + pad))
    return full[..., :t] if pad else full


def attend(
    q: Tensor, k: Tensor, v: Tensor, rpe: nn.Module | None, bucket_ids: Tensor | None, impl: str
) -> Tensor:
    """Attention of ``q, k, v`` ``(B, H, T, hd)`` with the iRPE key term of ``rpe`` (or none).

    Args:
        q, k, v: ``(B, H, T, hd)``; ``q`` unscaled.
        rpe: a :class:`~pretrain.models.irpe.ContextualKeyRPE` or None (no relative term).
        bucket_ids: LongTensor ``(T, T)`` on ``q``'s device (needed when ``rpe`` is given).
        impl: one of :data:`ATTN_IMPLS`.

    Returns:
        ``(B, H, T, hd)`` in ``v``'s dtype.
    """
    if rpe is None:
        if impl == "math":
            return explicit_attention(q, k, v, None)
        return F.scaled_dot_product_attention(q, k, v)
    if impl == "triton":
        out = _triton(q, k, v, rpe, bucket_ids)
        if out is not None:
            return out
        impl = "sdpa"
    per_bucket = rpe.per_bucket(q, bucket_ids)
    if impl == "aligned":
        bias = aligned_bias(per_bucket, bucket_ids)
    else:
        bias = rpe.gather(per_bucket, bucket_ids)
    if impl == "math":
        return explicit_attention(q, k, v, bias)
    return F.scaled_dot_product_attention(q, k, v, attn_mask=bias)


def _triton(q: Tensor, k: Tensor, v: Tensor, rpe: nn.Module, bucket_ids: Tensor) -> Tensor | None:
    """The fused kernel's result, or None (after one warning) where it cannot run."""
    try:
        from sarjepa.pretrain.models import irpe_triton
    except ImportError as exc:  # the kernel module itself failed to import
        _warn_once("import", f"attention 'triton' unavailable ({exc}); using 'sdpa'")
        return None
    ok, why = irpe_triton.triton_available(q.device)
    if not ok:
        _warn_once(f"device:{why}", f"attention 'triton' unavailable ({why}); using 'sdpa'")
        return None
    per_bucket = rpe.per_bucket(q, bucket_ids)
    return irpe_triton.irpe_attention_triton(q, k, v, per_bucket, bucket_ids, q.shape[-1] ** -0.5)


def parse_impls(items: Iterable[str]) -> list[str]:
    """Check a list of names (e.g. from ``--attn``); order kept, duplicates dropped."""
    out: list[str] = []
    for item in items:
        name = check_impl(item, "--attn value")
        if name not in out:
            out.append(name)
    return out
