"""ViT encoder: sizes, state-dict keys, sin-cos table, window/subset paths, pooling, building."""

from __future__ import annotations

import math

import pytest
import sarjepa.pretrain.models.attention as attention_mod
import sarjepa.pretrain.models.vit as vit_mod
import torch
from sarjepa.benchmark.core.errors import SarjepaError
from sarjepa.pretrain.models import (
    VisionTransformer,
    build_vit,
    vit_base,
    vit_large,
    vit_small,
    vit_tiny,
)
from sarjepa.pretrain.models.pos_embed import sincos_2d


def _tiny(**kw) -> VisionTransformer:
    arch = {"embed_dim": 32, "depth": 2, "num_heads": 4, **kw}
    return VisionTransformer(**arch)


def _randomise_rpe(model: VisionTransformer) -> None:
    with torch.no_grad():
        for blk in model.blocks:
            if blk.attn.rpe_k is not None:
                blk.attn.rpe_k.lookup_table_weight.normal_(0.0, 0.5)


def _expected_params(dim, depth, heads, patch=16, chans=1, irpe=True, tokens=0):
    """Parameter count written out by hand (no head); ``tokens`` = rows of a sin-cos table."""
    patch_embed = dim * chans * patch * patch + dim
    per_block = (
        2 * dim  # norm1
        + 3 * dim * dim
        + 3 * dim  # qkv
        + dim * dim
        + dim  # proj
        + (dim // heads) * 50 * irpe  # rpe_k table shared by the heads
        + 2 * dim  # norm2
        + dim * 4 * dim
        + 4 * dim  # fc1
        + 4 * dim * dim
        + dim  # fc2
    )
    return patch_embed + dim + depth * per_block + 2 * dim + tokens * dim


def _count(model: torch.nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def test_vit_base_irpe_count_from_issue():
    with torch.device("meta"):
        model = vit_base()
    assert _count(model) == 85_292_544
    assert _count(model) == _expected_params(768, 12, 12)


@pytest.mark.parametrize(
    "factory,dim,depth,heads",
    [(vit_tiny, 192, 12, 3), (vit_small, 384, 12, 6), (vit_large, 1024, 24, 16)],
)
def test_size_counts(factory, dim, depth, heads):
    with torch.device("meta"):
        irpe = factory()
        sincos = factory(pos_embed="sincos")
        plain = factory(pos_embed="none", class_token=False)
    assert (irpe.embed_dim, len(irpe.blocks), irpe.num_heads) == (dim, depth, heads)
    assert _count(irpe) == _expected_params(dim, depth, heads)
    assert _count(sincos) == _expected_params(dim, depth, heads, irpe=False, tokens=197)
    assert _count(plain) == _expected_params(dim, depth, heads, irpe=False) - dim


def _block_keys(i: int, rpe: bool) -> set[str]:
    names = ["norm1", "attn.qkv", "attn.proj", "norm2", "mlp.fc1", "mlp.fc2"]
    keys = {f"blocks.{i}.{n}.{p}" for n in names for p in ("weight", "bias")}
    return keys | ({f"blocks.{i}.attn.rpe_k.lookup_table_weight"} if rpe else set())


@pytest.mark.parametrize("pos", ["irpe", "sincos", "none"])
def test_state_dict_keys(pos):
    model = _tiny(pos_embed=pos, num_classes=3)
    want = {"cls_token", "patch_embed.proj.weight", "patch_embed.proj.bias"}
    want |= {"norm.weight", "norm.bias", "head.weight", "head.bias"}
    want |= _block_keys(0, pos == "irpe") | _block_keys(1, pos == "irpe")
    if pos == "sincos":
        want.add("pos_embed")
    sd = model.state_dict()
    assert set(sd) == want
    if pos == "irpe":
        assert sd["blocks.0.attn.rpe_k.lookup_table_weight"].shape == (1, 8, 50)
    no_cls = _tiny(pos_embed=pos, class_token=False)
    assert "cls_token" not in no_cls.state_dict()


def test_init():
    torch.manual_seed(0)
    model = VisionTransformer(embed_dim=192, depth=2, num_heads=3)
    for blk in model.blocks:
        assert torch.count_nonzero(blk.attn.rpe_k.lookup_table_weight) == 0
        assert torch.count_nonzero(blk.attn.qkv.bias) == 0
        assert torch.equal(blk.norm1.weight, torch.ones(192))
    w = model.blocks[0].mlp.fc1.weight
    assert abs(w.std().item() - 0.02) < 0.002  # timm trunc_normal_ (cut at +-2, i.e. ~normal)
    pw = model.patch_embed.proj.weight.flatten(1)  # MAE: xavier-uniform on the flat kernel
    bound = math.sqrt(6 / sum(pw.shape))
    assert pw.abs().max() <= bound and pw.abs().max() > 0.9 * bound
    assert abs(model.cls_token.std().item() - 0.02) < 0.006


def test_sincos_hand_computed():
    # dim 8 -> per axis 4 channels, omega = [1, 1/100]; first half columns, second half rows
    emb = sincos_2d(8, (2, 3), cls_token=True)
    assert emb.shape == (7, 8) and emb.dtype == torch.float32
    assert torch.count_nonzero(emb[0]) == 0

    def row(r, c):
        ax = [math.sin(c), math.sin(c / 100), math.cos(c), math.cos(c / 100)]
        return ax + [math.sin(r), math.sin(r / 100), math.cos(r), math.cos(r / 100)]

    want = torch.tensor([row(r, c) for r in range(2) for c in range(3)])
    assert torch.allclose(emb[1:], want, atol=1e-7)


def test_sincos_parameter_layout():
    model = _tiny(pos_embed="sincos", img_size=64)
    assert model.pos_embed.shape == (1, 17, 32) and not model.pos_embed.requires_grad
    assert torch.equal(model.pos_embed[0], sincos_2d(32, (4, 4), cls_token=True))
    ijepa = _tiny(pos_embed="sincos", img_size=64, class_token=False)
    assert ijepa.pos_embed.shape == (1, 16, 32) and ijepa.global_pool == "mean"


def _window(tokens_full, r0, c0, size=7, full_w=14):
    idx = torch.tensor([(r0 + i) * full_w + c0 + j for i in range(size) for j in range(size)])
    return tokens_full[:, idx], idx.expand(tokens_full.shape[0], -1)


@pytest.mark.parametrize("pos", ["irpe", "none", "sincos"])
def test_window_equals_small_image(pos):
    torch.manual_seed(0)
    model = _tiny(pos_embed=pos).eval()
    _randomise_rpe(model)
    img = torch.rand(2, 1, 224, 224)
    r0, c0 = 3, 5
    crop = img[:, :, r0 * 16 : (r0 + 7) * 16, c0 * 16 : (c0 + 7) * 16]
    with torch.no_grad():
        win, idx = _window(model.patch_embed(img), r0, c0)
        small = model.forward_features(crop)
        got = model.forward_blocks(win, grid=(7, 7))
        assert got.shape == (2, 50, 32)
        assert torch.allclose(got, small, atol=1e-5)
        if pos != "sincos":  # sincos + pos_index uses the full-grid positions instead
            assert torch.allclose(model.forward_blocks(win, (7, 7), idx), small, atol=1e-5)


def test_irpe_rejects_subsets():
    model = _tiny()
    tokens = torch.randn(2, 196, 32)
    keep = torch.randperm(196)[:49].sort().values.expand(2, -1)
    with pytest.raises(ValueError, match="subset"):
        model.forward_blocks(tokens[:, :49], grid=(7, 7), pos_index=keep)
    with pytest.raises(ValueError, match="subset"):
        model.forward_blocks(tokens[:, :20], grid=(14, 14), pos_index=keep[:, :20])
    with pytest.raises(ValueError, match="grid"):
        model.forward_blocks(tokens[:, :48], grid=(7, 7))


def test_sincos_subset_adds_full_grid_positions():
    torch.manual_seed(0)
    model = _tiny(pos_embed="sincos").eval()
    tokens = torch.randn(2, 196, 32)
    keep = torch.stack([torch.randperm(196)[:50] for _ in range(2)])
    picked = torch.gather(tokens, 1, keep[..., None].expand(-1, -1, 32))
    with torch.no_grad():
        got = model.forward_blocks(picked, pos_index=keep)
        table = sincos_2d(32, (14, 14))
        x = torch.cat([model.cls_token.expand(2, -1, -1), picked + table[keep]], 1)
        for blk in model.blocks:
            x = blk(x)
        assert torch.allclose(got, model.norm(x), atol=1e-6)
        full = model.forward_blocks(tokens)  # the whole grid in order = pos_index arange
        assert torch.allclose(
            full,
            model.forward_blocks(tokens, pos_index=torch.arange(196)[None].expand(2, -1)),
            atol=1e-6,
        )


def test_pool_head_and_sdpa(monkeypatch):
    calls = []
    real = attention_mod.F.scaled_dot_product_attention

    def spy(*args, **kwargs):
        calls.append(kwargs.get("attn_mask"))
        return real(*args, **kwargs)

    monkeypatch.setattr(attention_mod.F, "scaled_dot_product_attention", spy)
    model = _tiny(img_size=64, num_classes=5, global_pool="mean").eval()
    img = torch.rand(3, 1, 64, 64)
    feats = model.forward_features(img)
    assert feats.shape == (3, 17, 32) and len(calls) == 2
    assert calls[0].shape == (3, 4, 17, 17)  # the iRPE bias, per batch and head
    assert torch.allclose(model.pool(feats), feats[:, 1:].mean(1))
    assert model(img).shape == (3, 5)
    model.global_pool = "cls"
    assert torch.equal(model.pool(feats), feats[:, 0])


def test_build_vit_names_and_arch_roundtrip():
    with torch.device("meta"):
        model = build_vit("vit_base_patch16", pos_embed="sincos", class_token=False)
        again = build_vit(model.arch_dict())
        big = build_vit("vit_large_patch14_224")
    assert model.arch_dict() == again.arch_dict()
    assert model.arch_dict()["global_pool"] == "mean" and model.embed_dim == 768
    assert set(model.arch_dict()) == set(vit_mod.ARCH_KEYS)
    assert (big.embed_dim, big.patch_size, big.grid_size) == (1024, 14, (16, 16))
    with pytest.raises(SarjepaError, match="did you mean 'vit_base_patch16'"):
        build_vit("vit_bsae_patch16")
    with pytest.raises(SarjepaError, match="embed_dimm"):
        build_vit({"embed_dimm": 3})
    with pytest.raises(SarjepaError, match="class_token"):
        _tiny(class_token=False, global_pool="cls")
    with pytest.raises(SarjepaError, match="sin_cos"):
        _tiny(pos_embed="sin_cos")


def test_drop_path_and_training_grad():
    torch.manual_seed(0)
    model = _tiny(drop_path_rate=0.2, img_size=32)
    assert isinstance(model.blocks[0].drop_path, torch.nn.Identity)
    assert model.blocks[1].drop_path.drop_prob == pytest.approx(0.2)
    model(torch.rand(2, 1, 32, 32)).sum().backward()
    assert all(blk.attn.rpe_k.lookup_table_weight.grad is not None for blk in model.blocks)
