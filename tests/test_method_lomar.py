"""Upstream LoMaR (`lomar`): windows, loss, checkpoint keys, learning, resume, benchmark loading;
and the renamed SAR-JEPA pixel variant (`sarjepa_pixel`, formerly `lomar`)."""

from __future__ import annotations

import json

import pytest
import torch
from _pretrain_helpers import tiny_cfg, write_chips
from sarjepa.benchmark.core.errors import SarjepaError
from sarjepa.pretrain import checkpoints as ck
from sarjepa.pretrain.masking import shared_local_windows
from sarjepa.pretrain.methods import build_method
from sarjepa.pretrain.train import train
from sarjepa.pretrain.weights import load_encoder

pytestmark = pytest.mark.usefixtures("one_thread")

LOMAR = {"PREDICTOR.DEPTH": 0}  # tiny_opts set a 1-block predictor; upstream LoMaR has none


@pytest.fixture(scope="module")
def chips(tmp_path_factory):
    folder = tmp_path_factory.mktemp("chips")
    write_chips(folder, n=16, size=72)
    return folder


def _lomar(**extra):
    torch.manual_seed(0)
    return build_method(tiny_cfg("lomar_tiny", **{**LOMAR, **extra}))


# ---------------------------------------------------------------------------------- windows
def test_shared_windows_counts_positions_and_upstream_draw_order():
    g = torch.Generator().manual_seed(11)
    win = shared_local_windows(5, (9, 8), 4, 3, 0.8, generator=g, pairing="distinct")
    assert win.patch_index.shape == win.mask.shape == (5, 3, 16)
    assert (win.mask.sum(-1) == int(16 * 0.8)).all()  # exactly 12 per window and image
    # the positions are shared by the batch, with distinct rows and distinct columns
    assert (win.origins == win.origins[:1]).all()
    tops, lefts = win.origins[0, :, 0].tolist(), win.origins[0, :, 1].tolist()
    assert len(set(tops)) == 3 and len(set(lefts)) == 3
    assert max(tops) <= 9 - 4 and max(lefts) <= 8 - 4
    for k in range(3):  # row-major 4 x 4 window on the 9 x 8 grid
        want = [(tops[k] + r) * 8 + lefts[k] + c for r in range(4) for c in range(4)]
        assert win.patch_index[0, k].tolist() == want
    # upstream's calls, in upstream's order: randperm(rows), randperm(cols), rand(B, K, L)
    ref = torch.Generator().manual_seed(11)
    assert tops == torch.randperm(6, generator=ref)[:3].tolist()
    assert lefts == torch.randperm(5, generator=ref)[:3].tolist()
    noise = torch.rand(5, 3, 16, generator=ref)
    masked = torch.zeros(5, 3, 16, dtype=torch.bool)
    for b in range(5):
        for k in range(3):
            masked[b, k, noise[b, k].argsort()[:12]] = True
    assert torch.equal(win.mask, masked)
    # masks differ between images and windows (independent draws) ...
    flat = win.mask.reshape(15, 16)
    assert len({tuple(r.tolist()) for r in flat}) == 15
    # ... and image 0's masks do not depend on the batch size
    one = shared_local_windows(1, (9, 8), 4, 3, 0.8, generator=torch.Generator().manual_seed(11))
    assert torch.equal(one.mask[0], win.mask[0]) and torch.equal(one.origins, win.origins[:1])


#: Upstream's tiling by hand: sequence s = i + j*B shows image i (s mod B), window s mod K and
#: mask draw (s // K, s mod K). (image, slot) -> (window, mask draw).
UPSTREAM_PAIRS = {
    (3, 2): {0: [(0, (0, 0)), (1, (1, 1))], 1: [(1, (0, 1)), (0, (2, 0))],
             2: [(0, (1, 0)), (1, (2, 1))]},
    (4, 2): {0: [(0, (0, 0)), (0, (2, 0))], 1: [(1, (0, 1)), (1, (2, 1))],
             2: [(0, (1, 0)), (0, (3, 0))], 3: [(1, (1, 1)), (1, (3, 1))]},
}  # fmt: skip


@pytest.mark.parametrize(("batch", "k"), list(UPSTREAM_PAIRS))
def test_upstream_pairing_gives_image_i_upstreams_windows_and_masks(batch, k):
    """Same draws as ``distinct``; only which image gets which window and mask differs."""
    draw = lambda pairing: shared_local_windows(  # noqa: E731
        batch, (6, 6), 3, k, 0.5, generator=torch.Generator().manual_seed(3), pairing=pairing
    )
    up, distinct = draw("upstream"), draw("distinct")
    for i, slots in UPSTREAM_PAIRS[(batch, k)].items():
        for j, (w, (n, m)) in enumerate(slots):
            assert torch.equal(up.patch_index[i, j], distinct.patch_index[0, w])
            assert torch.equal(up.origins[i, j], distinct.origins[0, w])
            assert torch.equal(up.mask[i, j], distinct.mask[n, m])
    if batch % k == 0:  # each image trains on one window, k times, with k different masks
        for i in range(batch):
            assert len({tuple(x.tolist()) for x in up.patch_index[i]}) == 1
            assert len({tuple(x.tolist()) for x in up.mask[i]}) == k


def test_lomar_pairing_is_a_config_key_defaulting_to_upstream():
    assert _lomar().pairing == "upstream"
    assert _lomar(**{"MASK.LOMAR_PAIRING": "distinct"}).describe()["masking"]["pairing"] == (
        "distinct"
    )
    with pytest.raises(SarjepaError, match="MASK.LOMAR_PAIRING must be one of upstream, distinct"):
        tiny_cfg("lomar_tiny", **{**LOMAR, "MASK.LOMAR_PAIRING": "mixed"})


def test_shared_windows_refuse_impossible_geometry():
    with pytest.raises(SarjepaError, match="num_window 3 exceeds the 2 distinct"):
        shared_local_windows(1, (4, 4), window_size=3, num_window=3)
    with pytest.raises(SarjepaError, match="masks 0 of the 9"):
        shared_local_windows(1, (4, 4), window_size=3, num_window=1, mask_ratio=0.1)


# ---------------------------------------------------------------------------------- loss
def test_loss_equals_a_naive_reference_built_from_window_crops():
    """Each window is re-run as a small image of its own pixels; the target is computed by hand
    (float64 per-patch normalisation, unbiased variance, eps 1e-6)."""
    method = _lomar().eval()
    images = torch.rand(3, 1, 64, 64, generator=torch.Generator().manual_seed(2))
    loss, _ = method(images, torch.Generator().manual_seed(4))
    win = method.draw_windows(3, (4, 4), torch.Generator().manual_seed(4))
    enc, ws, p = method.encoder, 3, 16
    total, count = 0.0, 0
    with torch.no_grad():
        for b in range(3):
            for k in range(2):
                top, left = (int(v) for v in win.origins[b, k])
                crop = images[b : b + 1, :, top * p : (top + ws) * p, left * p : (left + ws) * p]
                tok = enc.patch_embed(crop)  # (1, 9, D)
                m = win.mask[b, k]
                tok = torch.where(m[None, :, None], method.mask_token, tok)
                pred = method.encoder_pred(enc.forward_blocks(tok, grid=(ws, ws)))[0, 1:]
                for j in range(ws * ws):
                    if not m[j]:
                        continue
                    r, c = divmod(j, ws)
                    pix = crop[0, 0, r * p : (r + 1) * p, c * p : (c + 1) * p].double().flatten()
                    tgt = (pix - pix.mean()) / (pix.var(unbiased=True) + 1e-6).sqrt()
                    total += float(((pred[j].double() - tgt) ** 2).mean())
                    count += 1
    assert count == 3 * 2 * int(9 * 0.8)
    assert float(loss.detach()) == pytest.approx(total / count, rel=1e-5)


def test_masked_patches_do_not_leak_and_mask_token_learns():
    method = _lomar(**{"MASK.NUM_WINDOW": 1})
    images = torch.rand(1, 1, 64, 64, generator=torch.Generator().manual_seed(5))
    win = method.draw_windows(1, (4, 4), torch.Generator().manual_seed(0))
    with torch.no_grad():
        a = method.predict(images, win.patch_index, win.mask)
    for masked, same in ((True, True), (False, False)):
        j = int((win.mask[0, 0] == masked).nonzero()[0])
        r, c = divmod(int(win.patch_index[0, 0, j]), 4)
        other = images.clone()
        other[..., r * 16 : (r + 1) * 16, c * 16 : (c + 1) * 16] = 0.5
        with torch.no_grad():
            b = method.predict(other, win.patch_index, win.mask)
        assert torch.allclose(a, b) is same
    loss, _ = method(images, torch.Generator().manual_seed(0))
    loss.backward()
    assert method.mask_token.grad.abs().sum() > 0 and method.encoder_pred.weight.grad is not None
    assert method.pos_embed.grad is None  # upstream's table is never used


# ---------------------------------------------------------------------------------- keys
def _upstream_lomar_keys(dim: int, depth: int, heads: int, patch: int, grid: int, chans: int):
    """models_lomar.MaskedAutoencoderViT state dict (junchen14/LoMaR), written from its code:
    PatchEmbed conv, CLS, fixed sin-cos pos_embed, iRPE blocks (rpe_on='k', shared head, 50
    buckets for ratio 1.9 / product), norm, encoder_pred Linear(D -> p*p*C), mask_token."""
    keys = {
        "cls_token": (1, 1, dim),
        "pos_embed": (1, grid * grid + 1, dim),
        "patch_embed.proj.weight": (dim, chans, patch, patch),
        "patch_embed.proj.bias": (dim,),
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
            b + "attn.rpe_k.lookup_table_weight": (1, dim // heads, 50),
            b + "norm2.weight": (dim,),
            b + "norm2.bias": (dim,),
            b + "mlp.fc1.weight": (4 * dim, dim),
            b + "mlp.fc1.bias": (4 * dim,),
            b + "mlp.fc2.weight": (dim, 4 * dim),
            b + "mlp.fc2.bias": (dim,),
        }
    keys |= {
        "norm.weight": (dim,),
        "norm.bias": (dim,),
        "encoder_pred.weight": (patch * patch * chans, dim),
        "encoder_pred.bias": (patch * patch * chans,),
        "mask_token": (1, 1, dim),
    }
    return keys


def test_checkpoint_keys_and_shapes_are_upstreams():
    method = _lomar()
    got = {k: tuple(v.shape) for k, v in method.checkpoint_state_dict().items()}
    assert got == _upstream_lomar_keys(32, 2, 2, 16, 4, 1)
    # ViT-B/16 at 224 px, as the released upstream checkpoint
    from sarjepa.pretrain.config import load_config

    big = build_method(load_config("lomar_vit_b16", ["DEVICE", "cpu"]))
    got = {k: tuple(v.shape) for k, v in big.checkpoint_state_dict().items()}
    assert got == _upstream_lomar_keys(768, 12, 12, 16, 14, 1)
    # the unused table is upstream's sin-cos with a zero CLS row
    from sarjepa.pretrain.models import sincos_2d

    assert torch.equal(method.pos_embed[0], sincos_2d(32, (4, 4), cls_token=True))


@pytest.mark.parametrize(
    ("extra", "pattern"),
    [
        ({"PREDICTOR.DEPTH": 1}, "method 'lomar' has no decoder .* set PREDICTOR.DEPTH 0, got 1"),
        ({"MODEL.POS_EMBED": "sincos"}, "MODEL.POS_EMBED must be irpe, got 'sincos'"),
        ({"MASK.NUM_WINDOW": 3}, "num_window 3 exceeds"),
    ],
)
def test_bad_lomar_config_one_line_errors(extra, pattern):
    with pytest.raises(SarjepaError, match=pattern) as exc:
        method = build_method(tiny_cfg("lomar_tiny", **{**LOMAR, **extra}))
        method(torch.rand(1, 1, 64, 64))
    assert "\n" not in str(exc.value)


# ---------------------------------------------------------------------------------- training
def _log(out):
    return [json.loads(x) for x in (out / "log.txt").read_text().splitlines()]


def test_sidecar_says_the_windows_are_shared_by_the_batch():
    details = _lomar().describe()
    assert details["method"] == "lomar" and details["masking"]["window_positions"] == (
        "shared by the batch"
    )


# ---------------------------------------------------------------------------------- rename
def test_checkpoints_named_lomar_before_the_rename_still_load_and_resume(chips, tmp_path):
    """A run of today's sarjepa_pixel whose sidecar and args say 'lomar' (the old name)."""
    out = tmp_path / "old"
    opts = {"TRAIN.EPOCHS": 1}
    train(tiny_cfg("sarjepa_pixel_tiny", data=chips, out=out, **opts))
    path = ck.checkpoint_path(out, 0)
    state = torch.load(path, weights_only=True)
    state["args"]["method"] = "lomar"
    torch.save(state, path)
    side = json.loads(ck.sidecar_path(path).read_text())
    side["method"] = side["method_details"]["method"] = "lomar"
    ck.sidecar_path(path).write_text(json.dumps(side))
    lines: list[str] = []
    enc = load_encoder(path, log=lines.append)
    assert enc.format == "sarjepa" and enc.meta["method"] == "lomar"
    assert enc.arch["pos_embed"] == "irpe" and not enc.unexpected
    # resuming it under the new name continues; under upstream LoMaR it is refused by name
    summary = train(
        tiny_cfg("sarjepa_pixel_tiny", data=chips, out=out, **{"TRAIN.EPOCHS": 2}), resume="auto"
    )
    assert summary["epochs_run"] == 1
    with pytest.raises(SarjepaError, match="trained with method 'sarjepa_pixel'"):
        train(
            tiny_cfg("lomar_tiny", data=chips, out=tmp_path / "x", **{**LOMAR, **opts}),
            resume=str(path),
        )
