"""MaskFeat (`maskfeat`): block-wise masks, loss, checkpoint keys, learning, resume, benchmark."""

from __future__ import annotations

import json

import pytest
import sarjepa.pretrain.masking.blockwise as masking
import torch
from _pretrain_helpers import tiny_cfg, write_chips
from sarjepa.benchmark.core.errors import SarjepaError
from sarjepa.pretrain.masking import blockwise_masks
from sarjepa.pretrain.methods import build_method

pytestmark = pytest.mark.usefixtures("one_thread")

MF = {"PREDICTOR.DEPTH": 0}  # tiny_opts set a 1-block predictor; MaskFeat has a linear head


@pytest.fixture(scope="module")
def chips(tmp_path_factory):
    folder = tmp_path_factory.mktemp("chips")
    write_chips(folder, n=16, size=72)
    return folder


def _maskfeat(**extra):
    torch.manual_seed(0)
    return build_method(tiny_cfg("maskfeat_tiny", **{**MF, **extra}))


# ---------------------------------------------------------------------------------- masks
@pytest.mark.parametrize(
    ("grid", "num", "lo"), [((14, 14), 78, 15), ((14, 14), 75, 16), ((7, 7), 20, 4), ((4, 6), 9, 1)]
)
def test_blockwise_masks_have_exact_counts(grid, num, lo):
    g = torch.Generator().manual_seed(1)
    m = blockwise_masks(40, grid, num, lo, generator=g)
    assert m.shape == (40, grid[0] * grid[1]) and m.dtype == torch.bool
    assert (m.sum(1) == num).all()
    # BEiT's own behaviour (no top-up) never overshoots and mostly hits the count
    raw = blockwise_masks(
        40, grid, num, lo, exact=False, generator=torch.Generator().manual_seed(1)
    )
    assert (raw.sum(1) <= num).all() and (raw.sum(1) == num).float().mean() > 0.5


def _fixed_uniforms(monkeypatch, values):
    stream = list(values)
    monkeypatch.setattr(masking._Uniforms, "__call__", lambda self: stream.pop(0))


def test_block_shape_and_position_from_hand_picked_draws(monkeypatch):
    # area uniform(4, 4) = 4; aspect exp(log .3 + .5 * (log(1/.3) - log .3)) = 1 -> 2 x 2;
    # top = randint(0, 6 - 2) = int(.45 * 5) = 2; left = int(.9 * 5) = 4
    _fixed_uniforms(monkeypatch, [0.3, 0.5, 0.45, 0.9])
    m = blockwise_masks(1, (6, 6), num_mask=4, min_patches=4)[0].view(6, 6)
    want = torch.zeros(6, 6, dtype=torch.bool)
    want[2:4, 4:6] = True
    assert torch.equal(m, want)
    # the most elongated aspect (u -> 1: 1/0.3): h = round(sqrt(4 / .3)) = 4, w = 1 at (0, 0)
    _fixed_uniforms(monkeypatch, [0.7, 0.999999, 0.0, 0.0])
    m = blockwise_masks(1, (6, 6), num_mask=4, min_patches=4)[0].view(6, 6)
    want = torch.zeros(6, 6, dtype=torch.bool)
    want[0:4, 0:1] = True
    assert torch.equal(m, want)
    # a block as high as the grid is refused (h < H), the next draw is used: 2 x 2 at (0, 0)
    _fixed_uniforms(monkeypatch, [0.0, 0.999999, 0.0, 0.5, 0.0, 0.0])
    m = blockwise_masks(1, (3, 6), num_mask=4, min_patches=4)[0].view(3, 6)
    want = torch.zeros(3, 6, dtype=torch.bool)
    want[0:2, 0:2] = True
    assert torch.equal(m, want)


def test_blockwise_masks_are_blocky_and_independent_per_image():
    g = torch.Generator().manual_seed(2)
    m = blockwise_masks(16, (14, 14), 78, 15, generator=g)
    assert len({tuple(r.tolist()) for r in m}) == 16
    grid = m.view(16, 14, 14)
    pad = torch.nn.functional.pad(grid.float(), (1, 1, 1, 1))
    neighbours = pad[:, :-2, 1:-1] + pad[:, 2:, 1:-1] + pad[:, 1:-1, :-2] + pad[:, 1:-1, 2:]
    with_neighbour = ((neighbours > 0) & grid).sum() / grid.sum()
    assert with_neighbour > 0.95  # random 40% masking gives about 1 - 0.6^4 = 0.87
    # image 0 does not depend on the batch size; the same seed gives the same masks
    one = blockwise_masks(1, (14, 14), 78, 15, generator=torch.Generator().manual_seed(2))
    assert torch.equal(one[0], m[0])
    again = blockwise_masks(16, (14, 14), 78, 15, generator=torch.Generator().manual_seed(2))
    assert torch.equal(again, m)


def test_blockwise_masks_refuse_bad_sizes():
    with pytest.raises(SarjepaError, match="1 <= num_mask < 16"):
        blockwise_masks(1, (4, 4), 16, 1)
    with pytest.raises(SarjepaError, match="min_aspect in"):
        blockwise_masks(1, (4, 4), 4, 1, min_aspect=2.0)


# ---------------------------------------------------------------------------------- loss
def test_loss_equals_a_naive_reference():
    """Mask tokens replace the embedded patches, then sin-cos positions, CLS, blocks, norm,
    linear head; MSE against the HOG target over the masked patches (float64 loops)."""
    from sarjepa.pretrain.models import sincos_2d
    from sarjepa.pretrain.targets import build_target

    method = _maskfeat().eval()
    images = torch.rand(3, 1, 64, 64, generator=torch.Generator().manual_seed(3))
    loss, _ = method(images, torch.Generator().manual_seed(5))
    mask = method.draw_masks(3, (4, 4), torch.Generator().manual_seed(5))
    assert (mask.sum(1) == round(16 * 0.4)).all()
    enc = method.encoder
    hog = build_target("hog", patch_size=16, nbins=9, cell=8, gaussian_window=0)
    target = hog(images).double()
    total, count = 0.0, 0
    with torch.no_grad():
        for b in range(3):
            x = enc.patch_embed(images[b : b + 1])[0]  # (16, D)
            x = torch.stack([method.mask_token[0, 0] if mask[b, j] else x[j] for j in range(16)])
            x = x + sincos_2d(32, (4, 4))
            x = torch.cat([enc.cls_token[0], x])[None]
            for blk in enc.blocks:
                x = blk(x)
            x = enc.norm(x)[0, 1:]
            head = method.pred_head.projections[0]
            for j in range(16):
                if mask[b, j]:
                    pred = (head.weight @ x[j] + head.bias).double()
                    total += float(((pred - target[b, j]) ** 2).mean())
                    count += 1
    assert count == 3 * 6
    assert float(loss.detach()) == pytest.approx(total / count, rel=1e-5)


def test_masked_pixels_do_not_leak_and_mask_tokens_get_positions():
    method = _maskfeat().eval()
    images = torch.rand(1, 1, 64, 64, generator=torch.Generator().manual_seed(6))
    mask = method.draw_masks(1, (4, 4), torch.Generator().manual_seed(0))
    with torch.no_grad():
        a = method.predict(images, mask)
        for masked, same in ((True, True), (False, False)):
            j = int((mask[0] == masked).nonzero()[0])
            r, c = divmod(j, 4)
            other = images.clone()
            other[..., r * 16 : (r + 1) * 16, c * 16 : (c + 1) * 16] = 0.5
            assert torch.allclose(a, method.predict(other, mask)) is same
    # identical mask tokens at different places predict different things (positions added)
    i, j = (int(v) for v in mask[0].nonzero()[:2, 0])
    assert not torch.allclose(a[0, i], a[0, j])
    assert method.describe()["target_options"]["gaussian_window"] == 0
    assert method.target.dim == 36


# ---------------------------------------------------------------------------------- keys
def _slowfast_maskmvit_keys(dim: int, depth: int, patch: int, grid: int, chans: int):
    """SlowFast MaskMViT (ViT-B MaskFeat config: 2-D patches, CLS, abs pos embed, no pooling,
    HEAD_TYPE separate, PRED_HOG) state dict, written from slowfast/models/masked.py,
    video_model_builder.py (MViT), attention.py and head_helper.py (MSSeparateHead)."""
    keys = {
        "patch_embed.proj.weight": (dim, chans, patch, patch),
        "patch_embed.proj.bias": (dim,),
        "cls_token": (1, 1, dim),
        "pos_embed": (1, grid * grid + 1, dim),
    }
    for i in range(depth):
        b = f"blocks.{i}."
        keys |= {
            b + "norm1.weight": (dim,),
            b + "norm1.bias": (dim,),
            b + "attn.qkv.weight": (3 * dim, dim),
            b + "attn.qkv.bias": (3 * dim,),
            b + "attn.proj.weight": (dim, dim),
            b + "attn.proj.bias": (dim,),
            b + "norm2.weight": (dim,),
            b + "norm2.bias": (dim,),
            b + "mlp.fc1.weight": (4 * dim, dim),
            b + "mlp.fc1.bias": (4 * dim,),
            b + "mlp.fc2.weight": (dim, 4 * dim),
            b + "mlp.fc2.bias": (dim,),
        }
    hog_dim = 9 * (patch // 8) ** 2 * chans
    keys |= {
        "mask_token": (1, 1, dim),
        "hogs.0.weight_x": (chans, 1, 3, 3),
        "hogs.0.weight_y": (chans, 1, 3, 3),
        "pred_head.transforms.0.0.weight": (dim,),
        "pred_head.transforms.0.0.bias": (dim,),
        "pred_head.projections.0.weight": (hog_dim, dim),
        "pred_head.projections.0.bias": (hog_dim,),
    }
    return keys


def _as_ours(upstream: dict) -> dict:
    """The documented mapping: the head's LayerNorm is our encoder's final norm; the constant
    Sobel buffers are not stored."""
    out = {}
    for k, v in upstream.items():
        if k.startswith("hogs."):
            continue
        out[k.replace("pred_head.transforms.0.0.", "norm.")] = v
    return out


def test_checkpoint_keys_match_slowfast_maskmvit():
    method = _maskfeat()
    got = {k: tuple(v.shape) for k, v in method.checkpoint_state_dict().items()}
    assert got == _as_ours(_slowfast_maskmvit_keys(32, 2, 16, 4, 1))
    from sarjepa.pretrain.config import load_config

    big = build_method(load_config("maskfeat_vit_b16", ["DEVICE", "cpu"]))
    got = {k: tuple(v.shape) for k, v in big.checkpoint_state_dict().items()}
    assert got == _as_ours(_slowfast_maskmvit_keys(768, 12, 16, 14, 1))
    assert big.mask_sizes(196) == (78, 15, 78)


@pytest.mark.parametrize(
    ("extra", "pattern"),
    [
        ({"PREDICTOR.DEPTH": 2}, "set PREDICTOR.DEPTH 0, got 2"),
        ({"MASK.RATIO": 0.01}, "MASK.RATIO 0.01 masks 0 of the 4x4 patches"),
        ({"MASK.BLOCK_MIN_ASPECT": 1.5}, "MASK.BLOCK_MIN_ASPECT must be in \\(0, 1\\], got 1.5"),
        ({"TARGET.OPTIONS.CELL": 5}, "patch size 16 is not a multiple of the cell size 5"),
    ],
)
def test_bad_maskfeat_config_one_line_errors(extra, pattern):
    with pytest.raises(SarjepaError, match=pattern) as exc:
        build_method(tiny_cfg("maskfeat_tiny", **{**MF, **extra}))
    assert "\n" not in str(exc.value)


# ---------------------------------------------------------------------------------- training
def _log(out):
    return [json.loads(x) for x in (out / "log.txt").read_text().splitlines()]
