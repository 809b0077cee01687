"""The Triton kernels of :mod:`pretrain.models.irpe_triton` (imported by it on first use).

Kept in their own module because Triton decides at decoration time whether a kernel is compiled
or run by its CPU interpreter (``TRITON_INTERPRET``), and the interpreter finds helper kernels
and ``triton.language`` through the module's globals; :func:`pretrain.models.irpe_triton.
_kernels` reloads this module when the variable has changed since it was imported. Importing
it needs Triton; nothing else imports it. What the kernels compute is described in
:mod:`pretrain.models.irpe_triton`.

Layout conventions: ``q, k, v, dO`` are addressed by (batch, head, token) strides with a unit
last stride; ``PB`` is ``(B, H, T, NB)`` with a unit last stride; the table ``IDS`` is a
contiguous int32 ``(T, T)``; ``LSE`` and ``DELTA`` are contiguous float32 ``(B, H, T)``; ``DQ``,
``DK``, ``DV`` are contiguous ``(B, H, T, D)`` and ``DPB`` contiguous float32 ``(B, H, T, NB)``.
Logits are kept in base 2 (``qk_scale = scale * log2(e)``, bias times ``log2(e)``), so the
softmax uses ``exp2`` and ``LSE`` is a base-2 log-sum-exp.
"""

import triton
import triton.language as tl
from triton import knobs

#: whether these kernels were decorated for the interpreter
INTERPRETED = bool(knobs.runtime.interpret)

LOG2E = tl.constexpr(1.4426950408889634)


# Reductions and zeros are spelled with tl.reduce / tl.full rather than tl.sum / tl.max /
# tl.zeros: those are jit functions of triton.language, decorated when triton was imported, so
# the interpreter cannot run them unless TRITON_INTERPRET was set before that import (the tests
# switch it per test). The combine functions are triton's own where it has them, because the
# interpreter recognises them and reduces with numpy (a custom one runs element by element in
# Python, ~20x slower); compiled, both give the same code.
@triton.jit
def _add_fallback(a, b):
    return a + b


@triton.jit
def _maximum_fallback(a, b):
    return tl.maximum(a, b)


_add = getattr(tl.standard, "_sum_combine", _add_fallback)
_maximum = getattr(tl.standard, "_elementwise_max", _maximum_fallback)


@triton.jit
def _dot(a, b, PREC: tl.constexpr, UPCAST: tl.constexpr):
    # (M, K) @ (K, N) -> float32; UPCAST: the interpreter cannot multiply bf16 blocks
    if UPCAST:
        out = tl.dot(a.to(tl.float32), b.to(tl.float32), input_precision="ieee")
    else:
        out = tl.dot(a, b, input_precision=PREC)
    return out


@triton.jit
def _load_rows(base, offs, stride, offs_d, mask):
    """The ``(len(offs), BLOCK_D)`` tile of rows ``offs`` of a (T, D) matrix, 0 where masked."""
    return tl.load(base + offs[:, None] * stride + offs_d[None, :], mask=mask, other=0.0)


@triton.jit
def _bias_source(pb_row, m_ok, NB: tl.constexpr, NB_PAD: tl.constexpr, GATHER: tl.constexpr):
    # GATHER: the rows' products as a float32 (BLOCK_M, NB_PAD) register tile; else the row
    # pointers, for an indexed global load per tile
    if GATHER:
        cols = tl.arange(0, NB_PAD)
        ok = m_ok[:, None] & (cols[None, :] < NB)
        src = tl.load(pb_row[:, None] + cols[None, :], mask=ok, other=0.0).to(tl.float32)
    else:
        src = pb_row
    return src


@triton.jit
def _logits2(
    q, kt, bias_src, ids, tile_ok, n_ok, qk_scale,
    PREC: tl.constexpr, UPCAST: tl.constexpr, GATHER: tl.constexpr,
):  # fmt: skip
    # base-2 logits of one (BLOCK_M, BLOCK_N) tile; columns past T are -inf
    if GATHER:
        bias = tl.gather(bias_src, ids, 1)
    else:
        bias = tl.load(bias_src[:, None] + ids, mask=tile_ok, other=0.0).to(tl.float32)
    s = _dot(q, kt, PREC, UPCAST) * qk_scale + bias * LOG2E
    return tl.where(n_ok[None, :], s, float("-inf"))


@triton.jit
def fwd(
    Q, K, V, PB, IDS, O, LSE,
    sq_b, sq_h, sq_t, sk_b, sk_h, sk_t, sv_b, sv_h, sv_t, so_b, so_h, so_t, sp_b, sp_h, sp_t,
    H, T, D, qk_scale,
    NB: tl.constexpr, NB_PAD: tl.constexpr, GATHER: tl.constexpr,
    BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_D: tl.constexpr,
    PREC: tl.constexpr, UPCAST: tl.constexpr,
):  # fmt: skip
    bh = tl.program_id(1).to(tl.int64)
    b = bh // H
    h = bh % H
    offs_m = tl.program_id(0) * BLOCK_M + tl.arange(0, BLOCK_M)
    offs_d = tl.arange(0, BLOCK_D)
    m_ok = offs_m < T
    d_ok = offs_d < D
    md_ok = m_ok[:, None] & d_ok[None, :]
    q = _load_rows(Q + b * sq_b + h * sq_h, offs_m, sq_t, offs_d, md_ok)
    pb_row = PB + b * sp_b + h * sp_h + offs_m * sp_t
    bias_src = _bias_source(pb_row, m_ok, NB, NB_PAD, GATHER)
    k_base = K + b * sk_b + h * sk_h
    v_base = V + b * sv_b + h * sv_h
    m_i = tl.full([BLOCK_M], float("-inf"), tl.float32)
    l_i = tl.full([BLOCK_M], 0.0, tl.float32)
    acc = tl.full([BLOCK_M, BLOCK_D], 0.0, tl.float32)
    for start_n in range(0, T, BLOCK_N):
        offs_n = start_n + tl.arange(0, BLOCK_N)
        n_ok = offs_n < T
        tile_ok = m_ok[:, None] & n_ok[None, :]
        kt = tl.load(
            k_base + offs_n[None, :] * sk_t + offs_d[:, None],
            mask=d_ok[:, None] & n_ok[None, :],
            other=0.0,
        )
        ids = tl.load(IDS + offs_m[:, None] * T + offs_n[None, :], mask=tile_ok, other=0)
        s = _logits2(q, kt, bias_src, ids, tile_ok, n_ok, qk_scale, PREC, UPCAST, GATHER)
        m_new = tl.maximum(m_i, tl.reduce(s, 1, _maximum))
        alpha = tl.exp2(m_i - m_new)
        p = tl.exp2(s - m_new[:, None])
        l_i = l_i * alpha + tl.reduce(p, 1, _add)
        v = tl.load(
            v_base + offs_n[:, None] * sv_t + offs_d[None, :],
            mask=n_ok[:, None] & d_ok[None, :],
            other=0.0,
        )
        acc = acc * alpha[:, None] + _dot(p.to(v.dtype), v, PREC, UPCAST)
        m_i = m_new
    acc = acc / l_i[:, None]
    o_ptr = O + b * so_b + h * so_h + offs_m[:, None] * so_t + offs_d[None, :]
    tl.store(o_ptr, acc.to(O.dtype.element_ty), mask=md_ok)
    tl.store(LSE + bh * T + offs_m, m_i + tl.log2(l_i), mask=m_ok)


@triton.jit
def bwd_kv(
    Q, K, V, PB, IDS, DO, LSE, DELTA, DK, DV,
    sq_b, sq_h, sq_t, sk_b, sk_h, sk_t, sv_b, sv_h, sv_t, sd_b, sd_h, sd_t, sp_b, sp_h, sp_t,
    H, T, D, qk_scale, sm_scale,
    NB: tl.constexpr, NB_PAD: tl.constexpr, GATHER: tl.constexpr,
    BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_D: tl.constexpr,
    PREC: tl.constexpr, UPCAST: tl.constexpr,
):  # fmt: skip
    # one program per BLOCK_N keys; DK, DV contiguous (B, H, T, D)
    bh = tl.program_id(1).to(tl.int64)
    b = bh // H
    h = bh % H
    offs_n = tl.program_id(0) * BLOCK_N + tl.arange(0, BLOCK_N)
    offs_d = tl.arange(0, BLOCK_D)
    n_ok = offs_n < T
    d_ok = offs_d < D
    dn_ok = d_ok[:, None] & n_ok[None, :]
    kt = tl.load(
        K + b * sk_b + h * sk_h + offs_n[None, :] * sk_t + offs_d[:, None],
        mask=dn_ok,
        other=0.0,
    )
    vt = tl.load(
        V + b * sv_b + h * sv_h + offs_n[None, :] * sv_t + offs_d[:, None],
        mask=dn_ok,
        other=0.0,
    )
    dk = tl.full([BLOCK_N, BLOCK_D], 0.0, tl.float32)
    dv = tl.full([BLOCK_N, BLOCK_D], 0.0, tl.float32)
    for start_m in range(0, T, BLOCK_M):
        offs_m = start_m + tl.arange(0, BLOCK_M)
        m_ok = offs_m < T
        md_ok = m_ok[:, None] & d_ok[None, :]
        tile_ok = m_ok[:, None] & n_ok[None, :]
        q = _load_rows(Q + b * sq_b + h * sq_h, offs_m, sq_t, offs_d, md_ok)
        do = _load_rows(DO + b * sd_b + h * sd_h, offs_m, sd_t, offs_d, md_ok)
        lse = tl.load(LSE + bh * T + offs_m, mask=m_ok, other=0.0)
        delta = tl.load(DELTA + bh * T + offs_m, mask=m_ok, other=0.0)
        ids = tl.load(IDS + offs_m[:, None] * T + offs_n[None, :], mask=tile_ok, other=0)
        pb_row = PB + b * sp_b + h * sp_h + offs_m * sp_t
        bias_src = _bias_source(pb_row, m_ok, NB, NB_PAD, GATHER)
        s = _logits2(q, kt, bias_src, ids, tile_ok, n_ok, qk_scale, PREC, UPCAST, GATHER)
        p = tl.where(m_ok[:, None], tl.exp2(s - lse[:, None]), 0.0)
        dv += _dot(tl.trans(p.to(do.dtype)), do, PREC, UPCAST)
        ds = p * (_dot(do, vt, PREC, UPCAST) - delta[:, None])
        dk += _dot(tl.trans(ds.to(q.dtype)), q, PREC, UPCAST)
    out = bh * T * D + offs_n[:, None] * D + offs_d[None, :]
    nd_ok = n_ok[:, None] & d_ok[None, :]
    tl.store(DK + out, (dk * sm_scale).to(DK.dtype.element_ty), mask=nd_ok)
    tl.store(DV + out, dv.to(DV.dtype.element_ty), mask=nd_ok)


@triton.jit
def bwd_q(
    Q, K, V, PB, IDS, DO, LSE, DELTA, DQ, DPB,
    sq_b, sq_h, sq_t, sk_b, sk_h, sk_t, sv_b, sv_h, sv_t, sd_b, sd_h, sd_t, sp_b, sp_h, sp_t,
    H, T, D, qk_scale, sm_scale,
    NB: tl.constexpr, NB_PAD: tl.constexpr, GATHER: tl.constexpr, ATOMIC: tl.constexpr,
    BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_D: tl.constexpr,
    PREC: tl.constexpr, UPCAST: tl.constexpr,
):  # fmt: skip
    # one program per BLOCK_M queries; DQ contiguous (B, H, T, D), DPB float32 (B, H, T, NB)
    bh = tl.program_id(1).to(tl.int64)
    b = bh // H
    h = bh % H
    offs_m = tl.program_id(0) * BLOCK_M + tl.arange(0, BLOCK_M)
    offs_d = tl.arange(0, BLOCK_D)
    m_ok = offs_m < T
    d_ok = offs_d < D
    md_ok = m_ok[:, None] & d_ok[None, :]
    q = _load_rows(Q + b * sq_b + h * sq_h, offs_m, sq_t, offs_d, md_ok)
    do = _load_rows(DO + b * sd_b + h * sd_h, offs_m, sd_t, offs_d, md_ok)
    lse = tl.load(LSE + bh * T + offs_m, mask=m_ok, other=0.0)
    delta = tl.load(DELTA + bh * T + offs_m, mask=m_ok, other=0.0)
    pb_row = PB + b * sp_b + h * sp_h + offs_m * sp_t
    bias_src = _bias_source(pb_row, m_ok, NB, NB_PAD, GATHER)
    dpb_row = DPB + bh * T * NB + offs_m * NB
    k_base = K + b * sk_b + h * sk_h
    v_base = V + b * sv_b + h * sv_h
    dq = tl.full([BLOCK_M, BLOCK_D], 0.0, tl.float32)
    cols = tl.arange(0, NB_PAD)
    dpb = tl.full([BLOCK_M, NB_PAD], 0.0, tl.float32)
    for start_n in range(0, T, BLOCK_N):
        offs_n = start_n + tl.arange(0, BLOCK_N)
        n_ok = offs_n < T
        tile_ok = m_ok[:, None] & n_ok[None, :]
        dn_ok = d_ok[:, None] & n_ok[None, :]
        kt = tl.load(k_base + offs_n[None, :] * sk_t + offs_d[:, None], mask=dn_ok, other=0.0)
        vt = tl.load(v_base + offs_n[None, :] * sv_t + offs_d[:, None], mask=dn_ok, other=0.0)
        ids = tl.load(IDS + offs_m[:, None] * T + offs_n[None, :], mask=tile_ok, other=0)
        s = _logits2(q, kt, bias_src, ids, tile_ok, n_ok, qk_scale, PREC, UPCAST, GATHER)
        p = tl.where(m_ok[:, None], tl.exp2(s - lse[:, None]), 0.0)
        ds = p * (_dot(do, vt, PREC, UPCAST) - delta[:, None])
        dq += _dot(ds.to(kt.dtype), tl.trans(kt), PREC, UPCAST)
        if ATOMIC:
            tl.atomic_add(dpb_row[:, None] + ids, ds, mask=tile_ok, sem="relaxed")
        else:
            for n in tl.static_range(NB):
                part = tl.reduce(tl.where(ids == n, ds, 0.0), 1, _add)
                dpb += tl.where(cols[None, :] == n, part[:, None], 0.0)
    tl.store(
        DQ + bh * T * D + offs_m[:, None] * D + offs_d[None, :],
        (dq * sm_scale).to(DQ.dtype.element_ty),
        mask=md_ok,
    )
    if not ATOMIC:
        tl.store(dpb_row[:, None] + cols[None, :], dpb, mask=m_ok[:, None] & (cols[None, :] < NB))
