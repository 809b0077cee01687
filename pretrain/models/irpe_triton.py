"""Fused iRPE attention in Triton: flash attention that gathers the iRPE key term per tile.

What it computes, for ``q, k, v`` ``(B, H, T, D)`` (``q`` unscaled), the per-bucket products
``PB = q @ W`` ``(B, H, T, NB)`` (computed outside, in PyTorch) and a bucket table ``ids``
``(T, T)``::

    logits[b, h, i, j] = scale * q[b, h, i] . k[b, h, j] + PB[b, h, i, ids[i, j]]
    out[b, h, i]       = sum_j softmax_j(logits[b, h, i, :]) * v[b, h, j]

The same numbers as ``F.scaled_dot_product_attention(q, k, v, attn_mask=gather(PB, ids))``
(:mod:`pretrain.models.attention`, ``sdpa``), but the ``(B, H, T, T)`` bias is never written:

* **Forward** (one program per ``BLOCK_M`` query rows of one ``(b, h)``): it loads the block's
  ``(BLOCK_M, NB)`` products ``PB`` once, then for each ``BLOCK_N`` key block computes
  ``q k^T`` on the tensor cores, loads the ``(BLOCK_M, BLOCK_N)`` tile of ``ids`` and takes
  ``PB[b, h, i, ids[i, j]]`` from the register tile with ``tl.gather`` (``bias=gather``,
  default) or by an indexed global load (``bias=load``; the ``T x NB`` products of one
  ``(b, h)`` are 20 KB in bf16, so those loads hit L1/L2); then the online softmax in float32
  (base 2) and ``p v`` accumulated in float32. It keeps the row log-sum-exp for the backward.
* **Backward**: ``delta = rowsum(dO * O)`` in PyTorch, then two kernels that both recompute
  the logits tile by tile: one per key block (``dK``, ``dV``), one per query block (``dQ`` and
  ``dPB``). ``dPB[b, h, i, n] = sum_{j: ids[i, j] = n} dS[b, h, i, j]`` is scattered either
  with float32 atomic adds into a zeroed ``(B, H, T, NB)`` buffer (``dpb=atomic``, default; one
  atomic per logit, all to rows the program owns, summation order not fixed) or with a static
  loop over the ``NB`` buckets of masked row sums kept in registers (``dpb=loop``;
  deterministic, ``NB`` extra passes over each tile). Autograd carries ``dPB`` back through
  ``PB = q @ W`` (the second ``dq`` term and ``dW``).

Memory traffic per attention call, beyond ``q, k, v`` and the output: the materialised path
writes and reads the ``(B, H, T, T)`` bias in the forward pass and its gradient in the backward
pass (23.3 M elements, 47 MB in bf16, per layer and pass for ViT-B/16 at batch 50); here the
extra reads are the ``T*T`` int32 table (L2-resident) and the ``B*H*T*NB`` products
(``NB = 50`` per row instead of ``T = 197``), the extra writes ``B*H*T`` log-sum-exps and the
``B*H*T*NB`` products' gradients. The output is written as a ``(B, T, H, D)`` buffer and
returned as its ``(B, H, T, D)`` view, so the caller's ``transpose(1, 2).reshape(B, T, H*D)``
copies nothing.

Block sizes are compile-time constants: defaults ``BLOCK_M = 64``, ``BLOCK_N = 32``,
``num_warps = 4``, ``num_stages = 2`` for H100/H200, the largest tiles whose sm_90 builds
(bf16, ``D = 64``) ptxas compiled without register spills in all three kernels (64 x 64 tiles
spill in the forward and ``dQ`` kernels with 4 warps, not with 8). ``D`` is padded to a power
of two (>= 16) with masks and ``T`` tails are masked, so any ``T >= 1`` and ``D <= 256`` run.
Pick others per call (``config=``) or for a whole run with ``$SARJEPA_IRPE_TRITON``, e.g.
``block_m=64,block_n=64,num_warps=8,num_stages=3,dpb=loop,bias=load``.

Checked (tests/test_irpe_triton.py) in Triton's CPU interpreter (``TRITON_INTERPRET=1``)
against an fp64 reference: float32 forward and all four gradients within 1e-5; bf16 / fp16
within 2e-2 / 2e-3 of the largest reference value. The interpreter cannot multiply bf16 blocks,
so there the bf16 dot operands are widened to float32 after rounding (the same products as
bf16 tensor cores with float32 accumulation). The compiled path is only checked to build for
sm_90 (slow test). **Untimed**: no GPU has run these kernels yet; ``sarjepa bench --only
attention`` is where a GPU session times them against ``sdpa``.
"""

from __future__ import annotations

import functools
import importlib
import os
from dataclasses import dataclass, fields
from types import ModuleType
from typing import Any

import torch
from sarjepa.benchmark.core.errors import SarjepaError
from torch import Tensor

ENV_CONFIG = "SARJEPA_IRPE_TRITON"
DPB_MODES = ("atomic", "loop")
BIAS_MODES = ("gather", "load")
MAX_HEAD_DIM = 256
_FLOAT_DTYPES = (torch.float32, torch.bfloat16, torch.float16)
_LOG2E = 1.4426950408889634


@dataclass(frozen=True)
class TritonConfig:
    """Launch settings of the three kernels.

    Attributes:
        block_m: query rows per tile (power of two >= 16).
        block_n: key columns per tile (power of two >= 16).
        num_warps: warps per program (1, 2, 4, 8 or 16).
        num_stages: software-pipelining stages of the key loop (>= 1).
        dpb: how ``dPB`` is scattered, ``"atomic"`` or ``"loop"`` (see the module docstring).
        bias: how the bias tile is read, ``"gather"`` (``tl.gather`` from the block's
            ``(BLOCK_M, NB)`` products held in registers) or ``"load"`` (an indexed global load).
    """

    block_m: int = 64
    block_n: int = 32
    num_warps: int = 4
    num_stages: int = 2
    dpb: str = "atomic"
    bias: str = "gather"

    def __post_init__(self) -> None:
        for name in ("block_m", "block_n"):
            value = getattr(self, name)
            if not isinstance(value, int) or value < 16 or value & (value - 1):
                raise SarjepaError(f"iRPE Triton {name}={value!r}: need a power of two >= 16")
        if self.num_warps not in (1, 2, 4, 8, 16):
            raise SarjepaError(f"iRPE Triton num_warps={self.num_warps!r}: need 1, 2, 4, 8 or 16")
        if not isinstance(self.num_stages, int) or self.num_stages < 1:
            raise SarjepaError(f"iRPE Triton num_stages={self.num_stages!r}: need an int >= 1")
        if self.dpb not in DPB_MODES:
            raise SarjepaError(f"iRPE Triton dpb={self.dpb!r}: need one of {', '.join(DPB_MODES)}")
        if self.bias not in BIAS_MODES:
            raise SarjepaError(
                f"iRPE Triton bias={self.bias!r}: need one of {', '.join(BIAS_MODES)}"
            )


@functools.lru_cache(maxsize=16)
def parse_config(text: str) -> TritonConfig:
    """A :class:`TritonConfig` from ``"key=value,..."`` (keys as its fields; empty = defaults).

    Raises:
        SarjepaError: naming ``$SARJEPA_IRPE_TRITON`` and the bad item.
    """
    kinds = {f.name: (str if f.name in ("dpb", "bias") else int) for f in fields(TritonConfig)}
    values: dict[str, Any] = {}
    for item in filter(None, (part.strip() for part in text.split(","))):
        key, sep, raw = (s.strip() for s in item.partition("="))
        if not sep or key not in kinds:
            known = ", ".join(kinds)
            raise SarjepaError(f"${ENV_CONFIG}: bad item {item!r} (want key=value; keys: {known})")
        try:
            values[key] = kinds[key](raw.lower())
        except ValueError:
            raise SarjepaError(f"${ENV_CONFIG}: {key}={raw!r} is not an integer") from None
    try:
        return TritonConfig(**values)
    except SarjepaError as exc:
        raise SarjepaError(f"${ENV_CONFIG}: {exc}") from None


def config_from_env() -> TritonConfig:
    """The settings in ``$SARJEPA_IRPE_TRITON`` (defaults where unset)."""
    return parse_config(os.environ.get(ENV_CONFIG, ""))


def _interpreting() -> bool:
    """Whether Triton would decorate a kernel for its interpreter now (``TRITON_INTERPRET``)."""
    try:
        from triton import knobs
    except Exception:
        return False
    return bool(knobs.runtime.interpret)


def triton_available(device: torch.device | str) -> tuple[bool, str]:
    """Whether the fused kernel can run for tensors on ``device``.

    Returns:
        ``(True, "")`` when Triton imports and ``device`` is CUDA or ``TRITON_INTERPRET=1`` is
        set; else ``(False, reason)`` with a one-line reason.
    """
    try:
        import triton  # noqa: F401
    except Exception as exc:  # ImportError, or a broken install raising anything
        return False, f"triton does not import ({type(exc).__name__}: {exc})".replace("\n", " ")
    if _interpreting():
        return True, ""
    dev = torch.device(device)
    if dev.type != "cuda":
        return False, f"device '{dev}' is not CUDA and TRITON_INTERPRET=1 is not set"
    if not torch.cuda.is_available():
        return False, "torch sees no CUDA device"
    return True, ""


def _kernels() -> ModuleType:
    """The kernels module, (re)imported so that its decoration matches ``TRITON_INTERPRET``."""
    mod = importlib.import_module("sarjepa.pretrain.models._irpe_triton_kernels")
    if _interpreting() != mod.INTERPRETED:
        mod = importlib.reload(mod)
    return mod


_ids_cache: dict[tuple[int, int, str], tuple[Tensor, int, Tensor]] = {}


def _table(bucket_ids: Tensor, t: int, nb: int, device: torch.device) -> Tensor:
    """``bucket_ids`` as contiguous int32 on ``device``, range-checked once per table.

    The int32 copy is cached by the identity and version of ``bucket_ids`` (callers reuse one
    memoised table per grid), so the range check's host sync happens once per table.
    """
    if bucket_ids.shape != (t, t):
        raise SarjepaError(f"bucket_ids has shape {tuple(bucket_ids.shape)}, expected ({t}, {t})")
    if bucket_ids.dtype.is_floating_point or bucket_ids.dtype == torch.bool:
        raise SarjepaError(f"bucket_ids must be an integer tensor, got {bucket_ids.dtype}")
    key = (id(bucket_ids), nb, str(device))
    hit = _ids_cache.get(key)
    if hit is not None and hit[0] is bucket_ids and hit[1] == bucket_ids._version:
        return hit[2]
    table = bucket_ids.to(device=device, dtype=torch.int32).contiguous()
    lo, hi = int(bucket_ids.min()), int(bucket_ids.max())
    if lo < 0 or hi >= nb:
        raise SarjepaError(f"bucket_ids hold values {lo}..{hi}; per_bucket has {nb} buckets")
    if len(_ids_cache) >= 16:
        _ids_cache.clear()
    _ids_cache[key] = (bucket_ids, bucket_ids._version, table)
    return table


def _check(q: Tensor, k: Tensor, v: Tensor, per_bucket: Tensor) -> None:
    """One-line errors for inputs the kernels cannot take."""
    if q.dim() != 4 or k.shape != q.shape or v.shape != q.shape:
        shapes = [tuple(x.shape) for x in (q, k, v)]
        raise SarjepaError(f"q, k, v must share one (B, H, T, D) shape, got {shapes}")
    b, h, t, d = q.shape
    if min(b, h, t, d) < 1 or d > MAX_HEAD_DIM:
        raise SarjepaError(f"q has shape {tuple(q.shape)}: need B, H, T >= 1, 1 <= D <= 256")
    if per_bucket.dim() != 4 or per_bucket.shape[:3] != q.shape[:3] or per_bucket.shape[3] < 1:
        raise SarjepaError(
            f"per_bucket has shape {tuple(per_bucket.shape)}, want ({b}, {h}, {t}, NB)"
        )
    if q.dtype not in _FLOAT_DTYPES or k.dtype != q.dtype or v.dtype != q.dtype:
        dtypes = [str(x.dtype) for x in (q, k, v)]
        raise SarjepaError(f"q, k, v need one dtype of float32/bfloat16/float16, got {dtypes}")
    if per_bucket.dtype not in _FLOAT_DTYPES:
        raise SarjepaError(f"per_bucket must be floating point, got {per_bucket.dtype}")
    if len({x.device for x in (q, k, v, per_bucket)}) != 1:
        raise SarjepaError("q, k, v and per_bucket must be on one device")


def _cdiv(a: int, b: int) -> int:
    """``ceil(a / b)`` for positive ints."""
    return -(-a // b)


def _rows(x: Tensor) -> Tensor:
    """``x`` with a unit stride on its last dimension (a copy only if it lacks one)."""
    return x if x.stride(-1) == 1 else x.contiguous()


def _strides(*xs: Tensor) -> list[int]:
    """The batch, head and token strides of each (B, H, T, D) tensor, in order."""
    return [s for x in xs for s in x.stride()[:3]]


def _pow2(n: int) -> int:
    """The power of two >= ``max(n, 16)`` (tile widths; ``tl.dot`` needs 16 or more)."""
    return max(16, 1 << (n - 1).bit_length())


def _launch_args(q: Tensor, nb: int, cfg: TritonConfig) -> dict[str, Any]:
    """Compile-time constants and launch options shared by the three kernels."""
    interp = _interpreting()
    return {
        "NB": nb,
        "NB_PAD": _pow2(nb),
        "GATHER": cfg.bias == "gather",
        "BLOCK_M": cfg.block_m,
        "BLOCK_N": cfg.block_n,
        "BLOCK_D": _pow2(q.shape[-1]),
        "PREC": "ieee" if q.dtype == torch.float32 else "tf32",
        "UPCAST": interp and q.dtype == torch.bfloat16,
        "num_warps": cfg.num_warps,
        "num_stages": cfg.num_stages,
    }


def _forward(
    q: Tensor, k: Tensor, v: Tensor, pb: Tensor, ids: Tensor, scale: float, cfg: TritonConfig
) -> tuple[Tensor, Tensor]:
    """Output ``(B, H, T, D)`` (view of a ``(B, T, H, D)`` buffer), base-2 LSE ``(B, H, T)``."""
    b, h, t, d = q.shape
    kern = _kernels()
    out = torch.empty(b, t, h, d, dtype=q.dtype, device=q.device).transpose(1, 2)
    lse = torch.empty(b, h, t, dtype=torch.float32, device=q.device)
    grid = (_cdiv(t, cfg.block_m), b * h)
    kern.fwd[grid](
        q, k, v, pb, ids, out, lse, *_strides(q, k, v, out, pb),
        h, t, d, scale * _LOG2E, **_launch_args(q, pb.shape[-1], cfg),
    )  # fmt: skip
    return out, lse


def _backward(
    saved: tuple[Tensor, ...], do: Tensor, scale: float, cfg: TritonConfig
) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """``dq, dk, dv`` (contiguous, inputs' dtype) and ``dPB`` (float32, ``(B, H, T, NB)``)."""
    q, k, v, pb, ids, out, lse = saved
    b, h, t, d = q.shape
    nb = pb.shape[-1]
    kern = _kernels()
    delta = (do.float() * out.float()).sum(-1)  # (B, H, T): rowsum(dO * O)
    dq, dk, dv = (torch.empty(b, h, t, d, dtype=q.dtype, device=q.device) for _ in range(3))
    alloc = torch.zeros if cfg.dpb == "atomic" else torch.empty
    dpb = alloc(b, h, t, nb, dtype=torch.float32, device=q.device)
    common = (*_strides(q, k, v, do, pb), h, t, d, scale * _LOG2E, scale)
    opts = _launch_args(q, nb, cfg)
    grid_kv = (_cdiv(t, cfg.block_n), b * h)
    kern.bwd_kv[grid_kv](q, k, v, pb, ids, do, lse, delta, dk, dv, *common, **opts)
    grid_q = (_cdiv(t, cfg.block_m), b * h)
    kern.bwd_q[grid_q](
        q, k, v, pb, ids, do, lse, delta, dq, dpb, *common,
        ATOMIC=cfg.dpb == "atomic", **opts,
    )  # fmt: skip
    return dq, dk, dv, dpb


class _IrpeAttention(torch.autograd.Function):
    """Autograd wrapper: gradients for ``q, k, v, per_bucket``; none for the table."""

    @staticmethod
    def forward(
        ctx: Any, q: Tensor, k: Tensor, v: Tensor, pb: Tensor, ids: Tensor, scale: float,
        cfg: TritonConfig,
    ) -> Tensor:  # fmt: skip
        out, lse = _forward(q, k, v, pb, ids, scale, cfg)
        ctx.save_for_backward(q, k, v, pb, ids, out, lse)
        ctx.scale = scale
        ctx.cfg = cfg
        return out

    @staticmethod
    def backward(ctx: Any, do: Tensor) -> tuple[Tensor | None, ...]:
        dq, dk, dv, dpb = _backward(ctx.saved_tensors, _rows(do), ctx.scale, ctx.cfg)
        pb_dtype = ctx.saved_tensors[3].dtype
        return dq, dk, dv, dpb.to(pb_dtype), None, None, None


def irpe_attention_triton(
    q: Tensor,
    k: Tensor,
    v: Tensor,
    per_bucket: Tensor,
    bucket_ids: Tensor,
    scale: float,
    config: TritonConfig | None = None,
) -> Tensor:
    """``softmax(scale * q k^T + gather(per_bucket, bucket_ids)) v`` by the fused kernels.

    Args:
        q: unscaled queries ``(B, H, T, D)``, float32 / bfloat16 / float16 (views with a unit
            last stride are used in place, e.g. the ``unbind`` of a permuted ``qkv``).
        k, v: keys and values, same shape and dtype as ``q``.
        per_bucket: ``(B, H, T, NB)`` products ``q . W[:, n]`` (any float dtype; gets a grad).
        bucket_ids: integer ``(T, T)`` with values in ``[0, NB)`` (no grad).
        scale: factor on ``q . k`` (``D ** -0.5``).
        config: block sizes etc.; default :func:`config_from_env`.

    Returns:
        ``(B, H, T, D)`` in ``q``'s dtype (a transposed view of a contiguous ``(B, T, H, D)``).

    Raises:
        SarjepaError: bad shapes, dtypes, devices or bucket values, or Triton unavailable.
    """
    _check(q, k, v, per_bucket)
    ok, why = triton_available(q.device)
    if not ok:
        raise SarjepaError(f"irpe_attention_triton: {why}")
    cfg = config if config is not None else config_from_env()
    t, nb = q.shape[2], per_bucket.shape[3]
    ids = _table(bucket_ids, t, nb, q.device)
    q, k, v, per_bucket = (_rows(x) for x in (q, k, v, per_bucket))
    if q.is_cuda:
        with torch.cuda.device(q.device):
            return _IrpeAttention.apply(q, k, v, per_bucket, ids, float(scale), cfg)
    return _IrpeAttention.apply(q, k, v, per_bucket, ids, float(scale), cfg)
