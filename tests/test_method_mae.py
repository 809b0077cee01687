"""MAE and FG-MAE (`mae`, `fgmae`): masking, loss, upstream checkpoint keys, learning, resume,
benchmark."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch
from _pretrain_helpers import (
    pretrain_then_features,
    tiny_cfg,
    write_chips,
)
from sarjepa.benchmark.core.errors import SarjepaError
from sarjepa.pretrain.masking import random_masking
from sarjepa.pretrain.methods import build_method

pytestmark = pytest.mark.usefixtures("one_thread")

SINCOS = {"MODEL.POS_EMBED": "sincos"}


@pytest.fixture(scope="module")
def chips(tmp_path_factory):
    folder = tmp_path_factory.mktemp("chips")
    write_chips(folder, n=16, size=72)
    return folder


def _method(name="mae_tiny", **extra):
    torch.manual_seed(0)
    return build_method(tiny_cfg(name, **{**SINCOS, **extra}))


# ---------------------------------------------------------------------------------- masks
def test_random_masking_counts_inverse_and_independence():
    rm = random_masking(64, 196, 0.75, torch.Generator().manual_seed(0))
    assert rm.ids_keep.shape == (64, 49) and (rm.mask.sum(1) == 147).all()
    # ids_restore inverts the shuffle: kept tokens first, then removed, back in grid order
    shuffle = rm.ids_restore.argsort(1)
    assert torch.equal(shuffle[:, :49], rm.ids_keep)
    assert torch.equal(torch.gather(shuffle, 1, rm.ids_restore), torch.arange(196).expand(64, -1))
    assert not rm.mask.gather(1, rm.ids_keep).any()
    # per-image masks differ and every patch is kept about a quarter of the time
    assert len({tuple(r.tolist()) for r in rm.mask}) == 64
    freq = random_masking(4000, 16, 0.75, torch.Generator().manual_seed(1)).mask.float().mean(0)
    assert ((freq - 0.75).abs() < 0.04).all()


# ---------------------------------------------------------------------------------- loss
@pytest.mark.parametrize("name", ["mae_tiny", "fgmae_tiny"])
def test_loss_equals_a_naive_reference(name):
    """Encoder on kept patches with sin-cos positions, decoder with mask tokens put back in grid
    order, MSE on removed patches, computed patch by patch in float64 loops."""
    from sarjepa.pretrain.models import sincos_2d

    method = _method(name).eval()
    images = torch.rand(3, 1, 64, 64, generator=torch.Generator().manual_seed(3))
    loss, _ = method(images, torch.Generator().manual_seed(5))
    rm = random_masking(3, 16, method.mask_ratio, torch.Generator().manual_seed(5))
    enc = method.encoder
    target = method.target(images).double()
    total, count = 0.0, 0
    with torch.no_grad():
        for b in range(3):
            emb = enc.patch_embed(images[b : b + 1])[0] + sincos_2d(32, (4, 4))
            keep = rm.ids_keep[b].tolist()
            x = torch.cat([enc.cls_token[0], emb[keep]])[None]
            for blk in enc.blocks:
                x = blk(x)
            lat = method.decoder_embed(enc.norm(x))[0]
            tokens = [None] * 16
            for i, j in enumerate(keep):
                tokens[j] = lat[1 + i]
            tokens = [method.mask_token[0, 0] if t is None else t for t in tokens]
            y = torch.stack([lat[0], *tokens])[None] + sincos_2d(32, (4, 4), cls_token=True)
            for blk in method.decoder_blocks:
                y = blk(y)
            pred = method.decoder_pred(method.decoder_norm(y))[0, 1:].double()
            for j in range(16):
                if j not in keep:
                    total += float(((pred[j] - target[b, j]) ** 2).mean())
                    count += 1
    assert count == 3 * (16 - int(16 * (1 - method.mask_ratio)))
    assert float(loss.detach()) == pytest.approx(total / count, rel=1e-5)


def test_mae_target_is_per_patch_normalised_pixels():
    from sarjepa.pretrain.targets.base import patchify

    method = _method()
    x = torch.rand(2, 1, 64, 64, generator=torch.Generator().manual_seed(0))
    t = method.target(x)
    raw = patchify(x, 16).double()  # (B, N, 256), row-major pixels of each patch
    want = (raw - raw.mean(-1, keepdim=True)) / (raw.var(-1, keepdim=True) + 1e-6) ** 0.5
    torch.testing.assert_close(t.double(), want, rtol=1e-5, atol=1e-5)
    fg = _method("fgmae_tiny")
    assert fg.target_name == "hog" and fg.target.dim == 36 and fg.mask_ratio == 0.7
    assert fg.describe()["target_options"]["norm_pix"] is True


def _naive_hog_tokens(image: torch.Tensor, p: int = 16, cell: int = 8, window: int = 16):
    """FG-MAE's HOG target for one (H, W) image, pixel by pixel in float64 Python: Sobel on the
    reflect-padded image, phase atan2(G_x, G_y) in 9 bins of 20 degrees (mod 9), magnitude times
    the tiled 16 x 16 Gaussian (std 8, sum 1), summed per 8 x 8 cell, L2 per cell, each patch's
    (bin, cell row, cell col) vector normalised to zero mean / unit unbiased variance (eps 1e-6)."""
    img = image.double().tolist()
    h, w = len(img), len(img[0])

    def px(r, c):  # reflect padding by one pixel
        r = -r if r < 0 else (2 * h - 2 - r if r >= h else r)
        c = -c if c < 0 else (2 * w - 2 - c if c >= w else c)
        return img[r][c]

    g1 = [math.exp(-0.5 * ((i - (window - 1) / 2) / (window // 2)) ** 2) for i in range(window)]
    total = sum(g1) ** 2
    hc, wc = h // cell, w // cell
    hist = [[[0.0] * 9 for _ in range(wc)] for _ in range(hc)]
    for r in range(h):
        for c in range(w):
            gx = sum(
                k * (px(r + dr, c - 1) - px(r + dr, c + 1)) for dr, k in ((-1, 1), (0, 2), (1, 1))
            )
            gy = sum(
                k * (px(r - 1, c + dc) - px(r + 1, c + dc)) for dc, k in ((-1, 1), (0, 2), (1, 1))
            )
            weight = g1[r % window] * g1[c % window] / total
            b = math.floor(math.atan2(gx, gy) / math.pi * 9) % 9
            hist[r // cell][c // cell][b] += math.hypot(gx, gy) * weight
    for row in hist:
        for i, v in enumerate(row):
            n = math.sqrt(sum(x * x for x in v))
            row[i] = [x / max(n, 1e-12) for x in v]
    k = p // cell
    tokens = []
    for pr in range(h // p):
        for pc in range(w // p):
            t = [
                hist[pr * k + i][pc * k + j][b]
                for b in range(9)
                for i in range(k)
                for j in range(k)
            ]
            mean = sum(t) / len(t)
            var = sum((x - mean) ** 2 for x in t) / (len(t) - 1)
            tokens.append([(x - mean) / math.sqrt(var + 1e-6) for x in t])
    return torch.tensor(tokens, dtype=torch.float64)


def test_fgmae_hog_target_against_a_naive_loop():
    fg = _method("fgmae_tiny")
    # continuous values: with 8-bit levels an exactly zero G_x (phase pi, bin 0) comes out of the
    # float32 convolution as +-1e-8 (phase just under pi, bin 8) - a tie, not a disagreement
    x = torch.rand(2, 1, 32, 48, generator=torch.Generator().manual_seed(7))
    got = fg.target(x)
    assert got.shape == (2, 6, 36)
    for b in range(2):
        torch.testing.assert_close(got[b].double(), _naive_hog_tokens(x[b, 0]), rtol=0, atol=2e-5)


# ---------------------------------------------------------------------------------- keys
def _upstream_mae_keys(d, depth, dd, ddepth, n, out):
    """facebookresearch/mae MaskedAutoencoderViT(in_chans=1) state dict, written from its code:
    cls_token, pos_embed, mask_token, decoder_pos_embed, then patch_embed, blocks, norm,
    decoder_embed, decoder_blocks, decoder_norm, decoder_pred (timm Block names)."""

    def block(prefix, w):
        return {
            f"{prefix}.norm1.weight": (w,), f"{prefix}.norm1.bias": (w,),
            f"{prefix}.attn.qkv.weight": (3 * w, w), f"{prefix}.attn.qkv.bias": (3 * w,),
            f"{prefix}.attn.proj.weight": (w, w), f"{prefix}.attn.proj.bias": (w,),
            f"{prefix}.norm2.weight": (w,), f"{prefix}.norm2.bias": (w,),
            f"{prefix}.mlp.fc1.weight": (4 * w, w), f"{prefix}.mlp.fc1.bias": (4 * w,),
            f"{prefix}.mlp.fc2.weight": (w, 4 * w), f"{prefix}.mlp.fc2.bias": (w,),
        }  # fmt: skip

    keys = {
        "cls_token": (1, 1, d), "pos_embed": (1, 1 + n, d), "mask_token": (1, 1, dd),
        "decoder_pos_embed": (1, 1 + n, dd), "patch_embed.proj.weight": (d, 1, 16, 16),
        "patch_embed.proj.bias": (d,), "norm.weight": (d,), "norm.bias": (d,),
        "decoder_embed.weight": (dd, d), "decoder_embed.bias": (dd,),
        "decoder_norm.weight": (dd,), "decoder_norm.bias": (dd,),
        "decoder_pred.weight": (out, dd), "decoder_pred.bias": (out,),
    }  # fmt: skip
    for i in range(depth):
        keys.update(block(f"blocks.{i}", d))
    for i in range(ddepth):
        keys.update(block(f"decoder_blocks.{i}", dd))
    return keys


def test_checkpoint_keys_match_upstream_mae():
    from sarjepa.pretrain.config import load_config

    got = {k: tuple(v.shape) for k, v in _method().checkpoint_state_dict().items()}
    assert got == _upstream_mae_keys(32, 2, 32, 1, 16, 256)
    big = build_method(load_config("mae_vit_b16", ["DEVICE", "cpu"]))
    got = {k: tuple(v.shape) for k, v in big.checkpoint_state_dict().items()}
    assert got == _upstream_mae_keys(768, 12, 512, 8, 196, 256)
    fg = build_method(load_config("fgmae_vit_b16", ["DEVICE", "cpu"]))
    got = {k: tuple(v.shape) for k, v in fg.checkpoint_state_dict().items()}
    assert got == _upstream_mae_keys(768, 12, 512, 8, 196, 36)
    assert not big.decoder_pos_embed.requires_grad and not big.encoder.pos_embed.requires_grad


def test_init_is_maes_encoder_included():
    method = _method()
    for name, p in method.named_parameters():
        if name.endswith(".weight") and p.dim() == 2:  # every Linear: xavier-uniform
            bound = math.sqrt(6.0 / (p.shape[0] + p.shape[1]))
            assert p.abs().max() <= bound and p.abs().max() > 0.8 * bound, name
            assert p.std().item() == pytest.approx(bound / math.sqrt(3), rel=0.15), name
        if name.endswith(".bias") and "patch_embed" not in name:
            assert not p.any(), name
    assert method.encoder.cls_token.std().item() == pytest.approx(0.02, rel=0.5)


@pytest.mark.parametrize(
    ("extra", "pattern"),
    [
        ({"PREDICTOR.DEPTH": 0}, "needs a decoder"),
        ({"MASK.RATIO": 1.0}, "MASK.RATIO must be in"),
        ({"MODEL.POS_EMBED": "irpe"}, "needs MODEL.POS_EMBED sincos"),
        ({"PREDICTOR.EMBED_DIM": 30}, "PREDICTOR.EMBED_DIM 30 must be divisible"),
    ],
)
def test_bad_mae_config_one_line_errors(extra, pattern):
    with pytest.raises(SarjepaError, match=pattern) as exc:
        build_method(tiny_cfg("mae_tiny", **{**SINCOS, **extra}))
    assert "\n" not in str(exc.value)


# ---------------------------------------------------------------------------------- training
def _log(out):
    return [json.loads(x) for x in (out / "log.txt").read_text().splitlines()]


def test_cli_pretrain_mae_tiny_then_features(chips, tmp_path):
    """`sarjepa pretrain --config mae_tiny` writes a checkpoint that `sarjepa features` pools as
    the CLS token after the encoder's final norm (MAE's models_vit without global pooling)."""
    from sarjepa.pretrain.config import load_config

    ckpt, x, feats = pretrain_then_features("mae_tiny", chips, tmp_path, "mae")
    method = build_method(load_config("mae_tiny", ["DEVICE", "cpu"]))
    method.load_checkpoint_state_dict(torch.load(ckpt, weights_only=True)["model"])
    with torch.no_grad():
        want = method.encoder.eval().forward_features(x)[:, 0]
    assert feats.shape == (2, 64)
    np.testing.assert_allclose(feats, want.numpy(), rtol=0, atol=1e-5)


def test_model_dict_alone_reads_as_upstream_mae_format(tmp_path):
    """Our `model` entry saved the way upstream's main_pretrain saves it (no sidecar, no arch
    metadata) is detected as the 'mae' format and gives the same CLS features."""
    from sarjepa.pretrain.weights import load_encoder

    method = _method().eval()
    path = tmp_path / "checkpoint-0.pth"
    torch.save({"model": method.checkpoint_state_dict(), "epoch": 0}, path)
    got = load_encoder(path, overrides={"num_heads": 2}, log=lambda s: None)
    assert got.format == "mae" and got.arch["pos_embed"] == "sincos"
    x = torch.rand(2, 1, 64, 64, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        want = method.encoder.forward_features(x)[:, 0]
        torch.testing.assert_close(got.encoder.forward_features(x)[:, 0], want)
