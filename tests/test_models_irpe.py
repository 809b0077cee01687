"""iRPE: bucket ids against a plain-Python construction, attention against an fp64 reference."""

from __future__ import annotations

import math

import pytest
import torch
from sarjepa.pretrain.models import Attention, irpe_bucket_ids, piecewise_index
from sarjepa.pretrain.models.irpe import cached_bucket_ids, square_bucket_ids

ALPHA, BETA, GAMMA = 1.9, 3.8, 15.2  # ratio 1.9


def _py_piecewise(d: int) -> int:
    """The piecewise index written out with math.log and Python's (half-to-even) round()."""
    if abs(d) <= ALPHA:
        return d
    mag = ALPHA + math.log(abs(d) / ALPHA) / math.log(GAMMA / ALPHA) * (BETA - ALPHA)
    mag = min(float(round(mag)), BETA)  # clip at beta, then truncate toward zero
    return int(math.copysign(1, d)) * int(mag)


def _py_bucket_ids(h: int, w: int, skip: int) -> list[list[int]]:
    n = skip + h * w
    ids = [[49] * n for _ in range(n)]
    for qi in range(h * w):
        for kj in range(h * w):
            dr = qi // w - kj // w  # query row minus key row
            dc = qi % w - kj % w
            ids[skip + qi][skip + kj] = (_py_piecewise(dr) + 3) * 7 + (_py_piecewise(dc) + 3)
    return ids


def test_piecewise_index_known_values():
    d = torch.tensor([0, 1, -1, 2, -2, 3, -3, 4, -4, 10, 11, -13, 200])
    want = [0, 1, -1, 2, -2, 2, -2, 3, -3, 3, 3, -3, 3]
    assert piecewise_index(d).tolist() == want
    big = torch.arange(-300, 301)
    assert piecewise_index(big).tolist() == [_py_piecewise(int(v)) for v in big]


@pytest.mark.parametrize("grid", [(7, 7), (14, 14), (3, 5)])
@pytest.mark.parametrize("skip", [1, 0])
def test_bucket_ids_match_hand_construction(grid, skip):
    h, w = grid
    ids = irpe_bucket_ids(h, w, skip)
    assert ids.dtype == torch.long
    assert ids.tolist() == _py_bucket_ids(h, w, skip)
    if skip:
        assert (ids[0] == 49).all() and (ids[:, 0] == 49).all()
        assert int(ids[1:, 1:].max()) <= 48
    # the diagonal is the zero offset bucket (3 * 7 + 3)
    assert (ids[skip:, skip:].diagonal() == 24).all()


def test_bucket_id_direction_is_query_minus_key():
    ids = irpe_bucket_ids(7, 7, skip=1)
    # query at (row 0, col 0) = token 1, key at (row 1, col 2) = token 1 + 7 + 2
    assert int(ids[1, 10]) == (-1 + 3) * 7 + (-2 + 3)
    assert int(ids[10, 1]) == (1 + 3) * 7 + (2 + 3)


def test_bucket_cache_and_square_inference():
    a = cached_bucket_ids(7, 7, 1, torch.device("cpu"))
    assert a is cached_bucket_ids(7, 7, 1, torch.device("cpu"))
    assert torch.equal(square_bucket_ids(50, torch.device("cpu")), irpe_bucket_ids(7, 7, 1))
    assert torch.equal(square_bucket_ids(196, torch.device("cpu")), irpe_bucket_ids(14, 14, 0))
    with pytest.raises(ValueError, match="rpe_index"):
        square_bucket_ids(48, torch.device("cpu"))


def _reference_attention(attn: Attention, x: torch.Tensor, ids: torch.Tensor, scaled_q=False):
    """Explicit fp64 softmax attention with the iRPE key term (plain formula, no SDPA)."""
    x = x.double()
    wq = attn.qkv.weight.double()
    bq = attn.qkv.bias.double()
    b, t, d = x.shape
    nh, hd = attn.num_heads, attn.head_dim
    qkv = (x @ wq.T + bq).reshape(b, t, 3, nh, hd)
    q, k, v = (qkv[:, :, i].permute(0, 2, 1, 3) for i in range(3))
    table = attn.rpe_k.lookup_table_weight.double()[0]  # (hd, 50)
    per_pair = table[:, ids]  # (hd, T, T)
    qr = q * hd**-0.5 if scaled_q else q
    logits = (q @ k.transpose(-1, -2)) * hd**-0.5 + torch.einsum("bhid,dij->bhij", qr, per_pair)
    logits = logits - logits.amax(-1, keepdim=True)
    p = logits.exp() / logits.exp().sum(-1, keepdim=True)
    out = (p @ v).transpose(1, 2).reshape(b, t, d)
    return out @ attn.proj.weight.double().T + attn.proj.bias.double()


@pytest.mark.parametrize("grid,skip", [((7, 7), 1), ((3, 5), 0)])
def test_attention_matches_fp64_reference(grid, skip):
    torch.manual_seed(0)
    attn = Attention(32, 4, qkv_bias=True, rpe=True)
    with torch.no_grad():
        attn.rpe_k.lookup_table_weight.normal_(0.0, 0.5)  # zero at init: make it matter
    ids = irpe_bucket_ids(*grid, skip=skip)
    x = torch.randn(2, ids.shape[0], 32)
    out = attn(x, ids)
    ref = _reference_attention(attn, x, ids)
    assert torch.allclose(out.double(), ref, atol=1e-6, rtol=0)
    # the test tells the unscaled query (the SAR-JEPA authors' copy) from a scaled one (the
    # reference iRPE code's choice)
    wrong = _reference_attention(attn, x, ids, scaled_q=True)
    assert (out.double() - wrong).abs().max() > 1e-3
    # and the table really enters: zeroing it changes the output
    with torch.no_grad():
        attn.rpe_k.lookup_table_weight.zero_()
    assert (attn(x, ids).double() - ref).abs().max() > 1e-3


def test_gradients_reach_table_and_match_reference():
    torch.manual_seed(1)
    attn = Attention(24, 3).double()
    with torch.no_grad():
        attn.rpe_k.lookup_table_weight.normal_(0.0, 0.3)
    ids = irpe_bucket_ids(7, 7, skip=1)
    x = torch.randn(2, 50, 24, dtype=torch.float64)
    g = torch.randn(2, 50, 24, dtype=torch.float64)
    (attn(x, ids) * g).sum().backward()
    got = attn.rpe_k.lookup_table_weight.grad.clone()
    assert got.abs().sum() > 0 and got[0, :, 49].abs().sum() > 0  # the CLS bucket too
    attn.zero_grad()
    (_reference_attention(attn, x, ids) * g).sum().backward()
    assert torch.allclose(got, attn.rpe_k.lookup_table_weight.grad, atol=1e-10)


def test_attention_infers_square_grid_like_reference():
    torch.manual_seed(2)
    attn = Attention(16, 2)
    with torch.no_grad():
        attn.rpe_k.lookup_table_weight.normal_()
    x = torch.randn(1, 50, 16)
    assert torch.allclose(attn(x), attn(x, irpe_bucket_ids(7, 7, 1)))
    with pytest.raises(ValueError, match=r"\(50, 50\)"):
        attn(x, irpe_bucket_ids(6, 6, 1))
