"""The interchangeable attention computations (pretrain/models/attention.py) agree.

The reference is written here from the definition, in float64 with explicit loops over the
bucket table: ``softmax(q k^T / sqrt(hd) + q . W[:, ids])`` then ``@ v``.
"""

from __future__ import annotations

import warnings

import pytest
import torch
from sarjepa.benchmark.core.errors import SarjepaError
from sarjepa.pretrain.models import attention, build_vit
from sarjepa.pretrain.models.attention import (
    ATTN_IMPLS,
    aligned_bias,
    attend,
    default_impl,
    impls_of,
    parse_impls,
    set_attention,
)
from sarjepa.pretrain.models.irpe import ContextualKeyRPE, irpe_bucket_ids

FP32_TOL = 1e-5


def naive_attention(q, k, v, table, ids):
    """float64, one (i, j) logit at a time."""
    q, k, v, table = (t.double() for t in (q, k, v, table))
    b, h, t, hd = q.shape
    logits = torch.empty(b, h, t, t, dtype=torch.float64)
    for i in range(t):
        for j in range(t):
            w = table[0, :, int(ids[i, j])]
            logits[:, :, i, j] = (q[:, :, i] * k[:, :, j]).sum(-1) * hd**-0.5 + q[:, :, i] @ w
    return logits.softmax(-1) @ v


def _inputs(grid=(3, 4), hd=8, b=2, h=3, seed=0):
    g = torch.Generator().manual_seed(seed)
    ids = irpe_bucket_ids(*grid, skip=1)
    t = ids.shape[0]
    q, k, v = (torch.randn(b, h, t, hd, generator=g) for _ in range(3))
    rpe = ContextualKeyRPE(hd)
    with torch.no_grad():
        rpe.lookup_table_weight.normal_(0, 0.5, generator=g)
    return q, k, v, rpe, ids


@pytest.mark.parametrize("impl", ATTN_IMPLS)
def test_every_impl_matches_the_naive_reference_forward_and_grads(impl):
    q, k, v, rpe, ids = _inputs()  # T = 13: not a multiple of 8
    ref_in = [t.detach().double().requires_grad_() for t in (q, k, v)]
    table = rpe.lookup_table_weight.detach().double().requires_grad_()
    ref = naive_attention(*ref_in, table, ids)
    ref.pow(2).sum().backward()
    xs = [t.detach().clone().requires_grad_() for t in (q, k, v)]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # triton falls back on this CPU
        out = attend(*xs, rpe, ids, impl)
    out.pow(2).sum().backward()
    assert (out.double() - ref).abs().max() < FP32_TOL
    for ours, theirs in zip(xs, ref_in, strict=True):
        assert (ours.grad.double() - theirs.grad).abs().max() < FP32_TOL
    assert (rpe.lookup_table_weight.grad.double() - table.grad).abs().max() < FP32_TOL


def test_aligned_bias_is_the_gather_with_8_aligned_rows():
    q, _, _, rpe, ids = _inputs(grid=(3, 4))
    pb = rpe.per_bucket(q, ids)
    plain = rpe.gather(pb, ids)
    aligned = aligned_bias(pb, ids)
    assert torch.equal(aligned, plain)
    assert aligned.shape == plain.shape == (2, 3, 13, 13)
    assert all(s % 8 == 0 for s in aligned.stride()[:-1]) and aligned.stride(-1) == 1
    assert plain.stride(-2) == 13  # what torch's memory-efficient kernel would pad (copy)
    ids16 = irpe_bucket_ids(4, 4, skip=0)  # T = 16: already aligned, no padding
    pb16 = rpe.per_bucket(torch.randn(1, 1, 16, 8), ids16)
    assert aligned_bias(pb16, ids16).is_contiguous()


@pytest.mark.parametrize("interpret", [False, True])
def test_model_results_and_state_dict_do_not_depend_on_the_impl(interpret, monkeypatch):
    """With ``interpret`` the fused Triton kernel runs in Triton's CPU interpreter."""
    calls = []
    if interpret:
        from sarjepa.pretrain.models import irpe_triton

        monkeypatch.setenv("TRITON_INTERPRET", "1")
        real = irpe_triton.irpe_attention_triton
        monkeypatch.setattr(
            irpe_triton, "irpe_attention_triton", lambda *a: calls.append(1) or real(*a)
        )
    torch.manual_seed(0)
    model = build_vit({"embed_dim": 32, "depth": 2, "num_heads": 2, "img_size": 48})
    for blk in model.blocks:
        torch.nn.init.normal_(blk.attn.rpe_k.lookup_table_weight, std=0.5)
    keys = list(model.state_dict())
    x = torch.randn(2, 1, 48, 48)
    grads = {}
    impls = ("math", "triton") if interpret else ("math", "sdpa", "aligned")
    for impl in impls:
        set_attention(model, impl)
        assert impls_of(model) == {impl}
        model.zero_grad()
        model.forward_features(x).square().mean().backward()
        grads[impl] = {n: p.grad.clone() for n, p in model.named_parameters()}
    assert list(model.state_dict()) == keys
    assert len(calls) == (2 if interpret else 0)  # the fused kernel ran in both blocks
    for impl in impls[1:]:
        for name, g in grads[impl].items():
            assert (g - grads["math"][name]).abs().max() < FP32_TOL, (impl, name)


def test_triton_falls_back_to_sdpa_with_one_warning_where_it_cannot_run(monkeypatch):
    monkeypatch.delenv("TRITON_INTERPRET", raising=False)
    monkeypatch.setattr(attention, "_warned", set())
    q, k, v, rpe, ids = _inputs()
    with pytest.warns(RuntimeWarning, match="attention 'triton' unavailable"):
        out = attend(q, k, v, rpe, ids, "triton")
    assert torch.equal(out, attend(q, k, v, rpe, ids, "sdpa"))
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # once only
        attend(q, k, v, rpe, ids, "triton")


def test_env_var_sets_the_default_and_bad_names_are_one_line_errors(monkeypatch):
    monkeypatch.setenv("SARJEPA_ATTN", " Aligned ")
    assert default_impl() == "aligned"
    model = build_vit({"embed_dim": 16, "depth": 1, "num_heads": 2, "img_size": 32})
    assert impls_of(model) == {"aligned"}
    monkeypatch.setenv("SARJEPA_ATTN", "flash")
    with pytest.raises(SarjepaError, match=r"\$SARJEPA_ATTN value 'flash'.*known: aligned"):
        default_impl()
    monkeypatch.delenv("SARJEPA_ATTN")
    assert default_impl() == "sdpa"
    with pytest.raises(SarjepaError, match="unknown attention implementation 'sdpa2'"):
        set_attention(model, "sdpa2")
    assert parse_impls(["math", "SDPA", "math"]) == ["math", "sdpa"]
    with pytest.raises(SarjepaError, match="--attn value 'x'"):
        parse_impls(["x"])


def test_without_irpe_every_impl_is_plain_attention():
    torch.manual_seed(0)
    q, k, v = (torch.randn(1, 2, 10, 8) for _ in range(3))
    ref = torch.softmax(q @ k.transpose(-2, -1) / 8**0.5, -1) @ v
    for impl in ATTN_IMPLS:
        assert (attend(q, k, v, None, None, impl) - ref).abs().max() < FP32_TOL
