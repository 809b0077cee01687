"""iRPE attention through torch's FlexAttention: the key term as a ``score_mod``.

FlexAttention (``torch.nn.attention.flex_attention``) compiles a flash-attention kernel (Triton,
through ``torch.compile``) around a user function of each logit. The iRPE key term of logit
``(b, h, i, j)`` is ``per_bucket[b, h, i, bucket_ids[i, j]]`` with ``per_bucket = q @ W``
``(B, H, T, buckets)``, so::

    score_mod(score, b, h, i, j) = score + per_bucket[b, h, i, bucket_ids[i, j]]

and the ``(B, H, T, T)`` bias is never written; torch computes the gradient of the captured
``per_bucket`` in the backward kernel. This is the attention implementation ``flex``
(:mod:`pretrain.models.attention`).

Where it runs:

- CUDA with Triton: the compiled kernel (compiled once per process and input shape; the first
  call of a shape takes seconds to tens of seconds).
- CPU without gradients: torch's eager FlexAttention, which materialises the scores (as slow as
  ``math``; a correctness path, used by the tests).
- CPU with gradients: FlexAttention has no CPU backward; :func:`flex_available` says so and the
  caller falls back to ``sdpa``.
"""

from __future__ import annotations

import importlib.util
import warnings

import torch
from torch import Tensor

_compiled = None


def _flex_attention():
    from torch.nn.attention.flex_attention import flex_attention

    return flex_attention


def flex_available(device: torch.device | str, needs_grad: bool) -> tuple[bool, str]:
    """Whether :func:`irpe_flex_attention` can run for tensors on ``device``.

    Args:
        device: where q, k, v live.
        needs_grad: the call must be differentiable (training).

    Returns:
        ``(True, "")`` or ``(False, one-line reason)``.
    """
    try:
        _flex_attention()
    except ImportError as exc:
        return False, f"this torch has no FlexAttention ({exc})".replace("\n", " ")
    dev = torch.device(device)
    if dev.type == "cuda":
        if importlib.util.find_spec("triton") is None:
            return False, "FlexAttention on CUDA needs triton, which does not import"
        return True, ""
    if dev.type == "cpu" and not needs_grad:
        return True, ""
    return False, f"FlexAttention has no backward on device '{dev}' (CUDA only)"


def _irpe_flex(q: Tensor, k: Tensor, v: Tensor, pb: Tensor, ids: Tensor) -> Tensor:
    """The FlexAttention call; the ``score_mod`` closure is made inside, so that under
    ``torch.compile`` ``pb`` and ``ids`` are plain inputs (one compiled graph per shape)."""

    def score_mod(score, b, h, i, j):
        return score + pb[b, h, i, ids[i, j]]

    return _flex_attention()(q, k, v, score_mod=score_mod)


def _kernel(device: torch.device, compiled: bool | None):
    """The compiled call (CUDA by default) or the eager one."""
    global _compiled
    if compiled is None:
        compiled = device.type == "cuda"
    if not compiled:
        return _irpe_flex
    if _compiled is None:
        _compiled = torch.compile(_irpe_flex)
    return _compiled


def irpe_flex_attention(
    q: Tensor,
    k: Tensor,
    v: Tensor,
    per_bucket: Tensor,
    bucket_ids: Tensor,
    compiled: bool | None = None,
) -> Tensor:
    """``softmax(q k^T / sqrt(hd) + gather(per_bucket, bucket_ids)) v`` with FlexAttention.

    Args:
        q, k, v: ``(B, H, T, hd)``, one dtype; ``q`` unscaled.
        per_bucket: ``(B, H, T, buckets)`` products ``q . W[:, n]`` (differentiable).
        bucket_ids: LongTensor ``(T, T)`` on ``q``'s device.
        compiled: use the compiled kernel (None: on CUDA only; eager elsewhere).

    Returns:
        ``(B, H, T, hd)`` in ``q``'s dtype.
    """
    ids = bucket_ids.to(device=q.device, dtype=torch.long)
    fn = _kernel(q.device, compiled)
    with warnings.catch_warnings():
        # the eager path says it is unfused: that is what it is for (a reference on the CPU)
        warnings.filterwarnings("ignore", message="flex_attention called without torch.compile")
        return fn(q, k, v, per_bucket.to(q.dtype), ids)
