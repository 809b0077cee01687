"""I-JEPA (`ijepa`): multi-block masks and their random-call order, loss, EMA and schedules,
upstream's checkpoint layout, collapse monitor, training, resume, benchmark."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import sarjepa.pretrain.masking.multiblock as masking
import torch
from _pretrain_helpers import pretrain_then_features, tiny_cfg, write_chips
from sarjepa.benchmark.core.errors import SarjepaError
from sarjepa.pretrain import checkpoints as ck
from sarjepa.pretrain.loop import EpochPlan
from sarjepa.pretrain.masking import block_size_generator, multiblock_masks
from sarjepa.pretrain.methods import build_method
from sarjepa.pretrain.schedules import cosine_weight_decay, ema_momentum, warmup_cosine_lr
from sarjepa.pretrain.train import param_groups, train

pytestmark = pytest.mark.usefixtures("one_thread")

# 96 px -> a 6 x 6 grid: target blocks of at least 2 x 2 patches, so blocks keep more than 3
IJ = {"INPUT.SIZE": 96, "MASK.MIN_KEEP": 3}
# the top-level keys of upstream's checkpoint (src/train.py, save_checkpoint)
UPSTREAM_TOP = (
    "encoder", "predictor", "target_encoder", "opt", "scaler", "epoch", "loss", "batch_size",
    "world_size", "lr",
)  # fmt: skip


@pytest.fixture(scope="module")
def chips(tmp_path_factory):
    folder = tmp_path_factory.mktemp("chips")
    write_chips(folder, n=16, size=72)
    return folder


def _ijepa(**extra):
    torch.manual_seed(0)
    return build_method(tiny_cfg("ijepa_tiny", **{**IJ, **extra}))


def _log(out):
    return [json.loads(x) for x in (out / "log.txt").read_text().splitlines()]


# ---------------------------------------------------------------------------------- masks
def _rect(top: int, left: int, h: int, w: int, width: int = 6) -> list[int]:
    return [r * width + c for r in range(top, top + h) for c in range(left, left + w)]


def test_random_call_order_with_scripted_draws(monkeypatch):
    """Upstream's order, written out: two size draws (target, then context) from the size
    generator; then per image, per target block, randint top then left; then the context block,
    redrawn while it keeps <= min_keep patches, the last target dropped from the constraints
    after 20 failures; every mask cut to the batch minimum."""
    size_gen, pos_gen = torch.Generator(), torch.Generator()
    rands, ints = [0.3, 0.7], [0, 0, 2, 2] + [0] * 42 + [0, 3, 3, 0, 0, 0]
    seen_r, seen_i = [], []

    def fake_rand(shape, generator):
        seen_r.append((shape, generator))
        return torch.tensor([rands.pop(0)])

    def fake_randint(high, generator):
        seen_i.append((high, generator))
        return ints.pop(0)

    monkeypatch.setattr(masking, "_rand", fake_rand)
    monkeypatch.setattr(masking, "_randint", fake_randint)
    # targets: area int(36 * .25) = 9, aspect 1 -> 3 x 3; context: 36 -> 6 x 6, capped to 5 x 5
    m = multiblock_masks(
        2, (6, 6), num_targets=2, target_scale=(0.25, 0.25), target_aspect=(1.0, 1.0),
        context_scale=(1.0, 1.0), min_keep=8, generator=pos_gen, size_generator=size_gen,
    )  # fmt: skip
    assert seen_r == [((1,), size_gen), ((1,), size_gen)]
    # image 0: 4 target draws (high 6 - 3), then 21 context draws (high 6 - 5); image 1: 4 + 1
    highs = [3] * 4 + [1] * 42 + [3] * 4 + [1] * 2
    assert seen_i == [(h, pos_gen) for h in highs] and not ints
    # image 0: targets at (0, 0) and (2, 2); the 5 x 5 context at (0, 0) minus both keeps 8
    # (not > 8) 20 times, then minus the first only: 16. Image 1: targets at (0, 3) and (3, 0),
    # context minus both keeps 13 at once. K_ctx = min(16, 13) = 13.
    ctx0 = sorted(set(_rect(0, 0, 5, 5)) - set(_rect(0, 0, 3, 3)))
    ctx1 = sorted(set(_rect(0, 0, 5, 5)) - set(_rect(0, 3, 3, 3)) - set(_rect(3, 0, 3, 3)))
    assert len(ctx0) == 16 and len(ctx1) == 13
    assert m.context[0].tolist() == [ctx0[:13], ctx1]
    assert m.targets[0].tolist() == [_rect(0, 0, 3, 3), _rect(0, 3, 3, 3)]
    assert m.targets[1].tolist() == [_rect(2, 2, 3, 3), _rect(3, 0, 3, 3)]


def test_draws_are_single_torch_calls_and_sizes_seeded_by_the_counter():
    a, b = torch.Generator().manual_seed(3), torch.Generator().manual_seed(3)
    assert masking._randint(7, a) == int(torch.randint(0, 7, (1,), generator=b))
    assert float(masking._rand((1,), a)) == float(torch.rand(1, generator=b))
    assert torch.equal(a.get_state(), b.get_state())
    assert torch.equal(
        block_size_generator(5).get_state(), torch.Generator().manual_seed(5).get_state()
    )
    # the same counter gives the same block sizes whatever the position generator
    x = multiblock_masks(4, (14, 14), generator=a, size_generator=block_size_generator(2))
    y = multiblock_masks(
        4, (14, 14), generator=b.manual_seed(9), size_generator=block_size_generator(2)
    )
    assert x.targets[0].shape == y.targets[0].shape


@pytest.mark.parametrize(
    ("batch", "grid", "min_keep"),
    [(1, (14, 14), 10), (24, (14, 14), 10), (16, (7, 7), 4), (9, (8, 12), 4)],
)
def test_mask_properties(batch, grid, min_keep):
    """Counts, target blocks as full rectangles of the drawn size, context (a square minus the
    targets) disjoint from every target, more than min_keep patches, independence per image."""
    n = grid[0] * grid[1]
    m = multiblock_masks(
        batch,
        grid,
        min_keep=min_keep,
        generator=torch.Generator().manual_seed(batch),
        size_generator=block_size_generator(batch),
    )
    assert len(m.targets) == 4 and len(m.context) == 1
    k_t, k_c = m.targets[0].shape[1], m.context[0].shape[1]
    assert all(t.shape == (batch, k_t) and t.dtype == torch.long for t in m.targets)
    assert m.context[0].shape == (batch, k_c) and k_t > min_keep and k_c > min_keep
    # h*w = round(sqrt(k ar)) round(sqrt(k / ar)) with k = int(n * scale): about k
    assert 0.5 * int(n * 0.15) <= k_t <= 1.5 * int(n * 0.2)
    for i in range(batch):
        ctx = m.context[0][i].tolist()
        assert ctx == sorted(set(ctx)) and max(ctx) < n
        for t in m.targets:
            idx = t[i].tolist()
            rows, cols = {j // grid[1] for j in idx}, {j % grid[1] for j in idx}
            assert idx == sorted(_rect(min(rows), min(cols), len(rows), len(cols), grid[1]))
            # top = randint(0, gh - h): upstream's blocks never reach the last row / column
            assert max(rows) < grid[0] - 1 and max(cols) < grid[1] - 1
            assert not set(ctx) & set(idx)
        assert max(j // grid[1] for j in ctx) < grid[0] - 1
    if batch > 4:
        assert len({tuple(t.tolist()) for t in m.targets[0]}) > batch // 2


def test_masks_are_cut_to_the_batch_minimum(monkeypatch):
    full = []
    real = masking._sample_block

    def spy(*args, **kwargs):
        idx, rect = real(*args, **kwargs)
        full.append(idx)
        return idx, rect

    monkeypatch.setattr(masking, "_sample_block", spy)
    m = multiblock_masks(8, (14, 14), generator=torch.Generator().manual_seed(0))
    per_image = [full[i * 5 : (i + 1) * 5] for i in range(8)]  # 4 targets, then the context
    k_c = min(len(p[4]) for p in per_image)
    assert len({len(p[4]) for p in per_image}) > 1  # the cut matters in this draw
    for i, p in enumerate(per_image):
        assert m.context[0][i].tolist() == p[4][:k_c]
        for j in range(4):
            assert m.targets[j][i].tolist() == p[j][: m.targets[j].shape[1]]


# ---------------------------------------------------------------------------------- loss
def test_loss_equals_a_naive_reference():
    """Target encoder on the whole image, layer norm (float64, no affine), target blocks;
    encoder on the context patches; predictor on context + one target block's mask tokens;
    smooth-L1 (beta 1) averaged over every element, in float64 loops over images and blocks."""
    from sarjepa.pretrain.models import sincos_2d

    method = _ijepa().eval()
    images = torch.rand(3, 1, 96, 96, generator=torch.Generator().manual_seed(3))
    loss, stats = method(images, torch.Generator().manual_seed(5))
    masks = multiblock_masks(
        3, (6, 6), generator=torch.Generator().manual_seed(5),
        size_generator=block_size_generator(0), **method.mask,
    )  # fmt: skip
    enc, tgt, pr = method.encoder, method.target_encoder, method.predictor
    table, table_p = sincos_2d(32, (6, 6)), sincos_2d(32, (6, 6))
    total, count = 0.0, 0
    with torch.no_grad():
        for b in range(3):
            x = tgt.patch_embed(images[b : b + 1])[0] + table
            for blk in tgt.blocks:
                x = blk(x[None])[0]
            x = tgt.norm(x).double()
            h = (x - x.mean(-1, keepdim=True)) / (
                x.var(-1, unbiased=False, keepdim=True) + 1e-5
            ).sqrt()
            ctx = masks.context[0][b]
            c = (enc.patch_embed(images[b : b + 1])[0] + table)[ctx]
            for blk in enc.blocks:
                c = blk(c[None])[0]
            c = pr.predictor_embed(enc.norm(c)) + table_p[ctx]
            for t in masks.targets:
                y = torch.cat([c, pr.mask_token[0, 0] + table_p[t[b]]])
                for blk in pr.predictor_blocks:
                    y = blk(y[None])[0]
                d = pr.predictor_proj(pr.predictor_norm(y)[len(ctx) :]).double() - h[t[b]]
                total += float(torch.where(d.abs() < 1, 0.5 * d * d, d.abs() - 0.5).sum())
                count += d.numel()
    assert count == 3 * 4 * masks.targets[0].shape[1] * 32
    assert float(loss.detach()) == pytest.approx(total / count, rel=1e-5)
    assert float(stats["target_std"]) > 0


def test_predictions_see_context_patches_only():
    method = _ijepa().eval()
    images = torch.rand(1, 1, 96, 96, generator=torch.Generator().manual_seed(6))
    masks = multiblock_masks(1, (6, 6), generator=torch.Generator().manual_seed(1), **method.mask)

    def predict(x):
        with torch.no_grad():
            return method.predictor(
                method.encode_context(x, masks.context), masks.context, masks.targets
            )

    base = predict(images)
    ctx, tgt = set(masks.context[0][0].tolist()), set(masks.targets[0][0].tolist())
    for j, changes in ((min(tgt - ctx), False), (min(ctx), True)):
        r, c = divmod(j, 6)
        other = images.clone()
        other[..., r * 16 : (r + 1) * 16, c * 16 : (c + 1) * 16] = 0.5
        assert (not torch.allclose(base, predict(other))) is changes


# ---------------------------------------------------------------------------------- EMA, schedules
def test_ema_update_formula_against_a_hand_computation():
    method = _ijepa()
    with torch.no_grad():
        for i, (e, t) in enumerate(
            zip(method.encoder.parameters(), method.target_encoder.parameters())
        ):
            e.copy_(torch.full_like(e, 0.5 + i))
            t.copy_(torch.full_like(t, -1.0))
    before = [t.detach().clone() for t in method.target_encoder.parameters()]
    method.update_target(0.99)
    for i, (e, t, t0) in enumerate(
        zip(method.encoder.parameters(), method.target_encoder.parameters(), before)
    ):
        want = 0.99 * -1.0 + 0.01 * (0.5 + i)  # float64 by hand
        assert float((t.double() - want).abs().max()) < 1e-6
        assert torch.equal(t, t0 * 0.99 + (1 - 0.99) * e)  # upstream's float32 operations
        assert not t.requires_grad
    assert all(p.requires_grad for n, p in method.encoder.named_parameters() if n != "pos_embed")


def test_schedules_per_step_by_hand():
    """3 optimiser steps per epoch, 2 epochs, 1 warm-up epoch: W = 3, T = 6 (upstream's
    WarmupCosineSchedule, CosineWDSchedule and momentum_scheduler)."""
    method = _ijepa(**{"TRAIN.WEIGHT_DECAY": 0.04})
    opt = torch.optim.AdamW(param_groups(method, 0.04), lr=1.0)
    got = []
    for accum in (1, 2):
        for epoch in (0, 1):
            plan = EpochPlan(epoch, 3 * accum, accum, 2, 1e-3, 1e-6, 1, 0.0)
            for micro in range(0, 3 * accum, accum):
                method.before_optimizer_step(opt, plan, micro)
                groups = opt.param_groups
                got.append((groups[0]["lr"], groups[0]["weight_decay"], method._momentum))
                assert groups[1]["weight_decay"] == groups[0]["weight_decay"]
                assert groups[2]["weight_decay"] == groups[3]["weight_decay"] == 0.0
                assert all(g["lr"] == groups[0]["lr"] for g in groups)
                assert method._batches == epoch * 3 * accum + micro
    want = [
        (2e-4 + 8e-4 / 3, 0.4 - 0.18 * (1 + math.cos(math.pi / 6)), 0.996),
        (2e-4 + 8e-4 * 2 / 3, 0.4 - 0.18 * (1 + math.cos(math.pi / 3)), 0.996 + 0.004 / 6),
        (1e-3, 0.22, 0.996 + 0.008 / 6),
        (1e-6 + (1e-3 - 1e-6) * 0.75, 0.4 - 0.18 * (1 + math.cos(2 * math.pi / 3)), 0.998),
        (
            1e-6 + (1e-3 - 1e-6) * 0.25,
            0.4 - 0.18 * (1 + math.cos(5 * math.pi / 6)),
            0.996 + 0.016 / 6,
        ),
        (1e-6, 0.4, 0.996 + 0.02 / 6),
    ]
    assert len(got) == 12
    for (lr, wd, m), (lr2, wd2, m2) in zip(got, want + want):
        assert lr == pytest.approx(lr2, rel=1e-12) and wd == pytest.approx(wd2, rel=1e-12)
        assert m == pytest.approx(m2, rel=1e-12)
    # with IPE_SCALE 1.25 the run stops before the cosine's end, as upstream
    assert warmup_cosine_lr(6, 3, int(1.25 * 6), 2e-4, 1e-3, 1e-6) > 1e-4
    assert all(cosine_weight_decay(k, 6, 0.04, 0.4) <= 0.4 for k in range(20))  # clamped
    assert ema_momentum(8, 6 * 1.25, (0.996, 1.0)) == pytest.approx(0.996 + 7 * 0.004 / 7.5)


# ---------------------------------------------------------------------------------- checkpoint
def _upstream_encoder(dim: int, depth: int, n: int, chans: int, patch: int) -> list[tuple]:
    """src/models/vision_transformer.py VisionTransformer state dict (no CLS), in order."""
    keys = [("pos_embed", (1, n, dim)), ("patch_embed.proj.weight", (dim, chans, patch, patch))]
    keys.append(("patch_embed.proj.bias", (dim,)))
    keys += _upstream_blocks("blocks", dim, depth)
    return [*keys, ("norm.weight", (dim,)), ("norm.bias", (dim,))]


def _upstream_blocks(prefix: str, dim: int, depth: int) -> list[tuple]:
    out = []
    for i in range(depth):
        b = f"{prefix}.{i}."
        out += [
            (b + "norm1.weight", (dim,)), (b + "norm1.bias", (dim,)),
            (b + "attn.qkv.weight", (3 * dim, dim)), (b + "attn.qkv.bias", (3 * dim,)),
            (b + "attn.proj.weight", (dim, dim)), (b + "attn.proj.bias", (dim,)),
            (b + "norm2.weight", (dim,)), (b + "norm2.bias", (dim,)),
            (b + "mlp.fc1.weight", (4 * dim, dim)), (b + "mlp.fc1.bias", (4 * dim,)),
            (b + "mlp.fc2.weight", (dim, 4 * dim)), (b + "mlp.fc2.bias", (dim,)),
        ]  # fmt: skip
    return out


def _upstream_predictor(dim: int, pdim: int, depth: int, n: int) -> list[tuple]:
    """VisionTransformerPredictor: its own parameters first, then its modules in order."""
    keys = [("mask_token", (1, 1, pdim)), ("predictor_pos_embed", (1, n, pdim))]
    keys += [("predictor_embed.weight", (pdim, dim)), ("predictor_embed.bias", (pdim,))]
    keys += _upstream_blocks("predictor_blocks", pdim, depth)
    keys += [("predictor_norm.weight", (pdim,)), ("predictor_norm.bias", (pdim,))]
    return [*keys, ("predictor_proj.weight", (dim, pdim)), ("predictor_proj.bias", (dim,))]


def _ddp(keys):
    return [("module." + k, s) for k, s in keys]


def _layout(sd):
    return [(k, tuple(v.shape)) for k, v in sd.items()]


def test_checkpoint_holds_upstreams_keys_names_and_shapes():
    method = _ijepa()
    e = method.checkpoint_entries(
        {"state": {}, "param_groups": []}, 4, {"batch_size": 8, "lr": 0.1}
    )
    assert set(UPSTREAM_TOP) <= set(e) and set(e) - set(UPSTREAM_TOP) == {"args"}
    assert e["epoch"] == 5 and method.start_epoch(e) == 5  # upstream: epochs finished
    assert (e["batch_size"], e["world_size"], e["lr"]) == (8, 1, 0.1)
    assert set(e["scaler"]) == {
        "scale",
        "growth_factor",
        "backoff_factor",
        "growth_interval",
        "_growth_tracker",
    }
    assert _layout(e["encoder"]) == _ddp(_upstream_encoder(32, 2, 36, 1, 16))
    assert _layout(e["target_encoder"]) == _ddp(_upstream_encoder(32, 2, 36, 1, 16))
    assert _layout(e["predictor"]) == _ddp(_upstream_predictor(32, 32, 1, 36))
    from sarjepa.pretrain.config import load_config

    torch.manual_seed(0)
    big = build_method(load_config("ijepa_vit_b16", ["DEVICE", "cpu"]))
    e = big.checkpoint_entries(None, 0, {})
    assert _layout(e["encoder"]) == _ddp(_upstream_encoder(768, 12, 196, 1, 16))
    assert _layout(e["predictor"]) == _ddp(_upstream_predictor(768, 384, 12, 196))


def test_optimizer_groups_are_upstreams_four():
    """helper.init_opt: encoder weights, predictor weights, encoder biases / 1-d, predictor
    biases / 1-d ('WD_exclude'), each in named_parameters order, frozen tables included."""
    method = _ijepa()
    names = {id(p): n for n, p in method.named_parameters()}
    groups = param_groups(method, 0.04)
    got = [[names[id(p)] for p in g["params"]] for g in groups]
    blocks = lambda pre, d, ends: [f"{pre}.{i}.{e}" for i in range(d) for e in ends]  # noqa: E731
    weights = ("attn.qkv.weight", "attn.proj.weight", "mlp.fc1.weight", "mlp.fc2.weight")
    small = ("norm1.weight", "norm1.bias", "attn.qkv.bias", "attn.proj.bias", "norm2.weight",
             "norm2.bias", "mlp.fc1.bias", "mlp.fc2.bias")  # fmt: skip
    assert got[0] == [
        "encoder.pos_embed",
        "encoder.patch_embed.proj.weight",
        *blocks("encoder.blocks", 2, weights),
    ]
    assert got[1] == [
        "predictor.mask_token", "predictor.predictor_pos_embed", "predictor.predictor_embed.weight",
        *blocks("predictor.predictor_blocks", 1, weights), "predictor.predictor_proj.weight",
    ]  # fmt: skip
    assert got[2] == [
        "encoder.patch_embed.proj.bias", *blocks("encoder.blocks", 2, small), "encoder.norm.weight",
        "encoder.norm.bias",
    ]  # fmt: skip
    assert got[3] == [
        "predictor.predictor_embed.bias", *blocks("predictor.predictor_blocks", 1, small),
        "predictor.predictor_norm.weight", "predictor.predictor_norm.bias",
        "predictor.predictor_proj.bias",
    ]  # fmt: skip
    assert [g.get("WD_exclude", False) for g in groups] == [False, False, True, True]
    assert not any(n.startswith("target_encoder.") for g in got for n in g)


@pytest.mark.parametrize(
    ("extra", "pattern"),
    [
        ({"MODEL.POS_EMBED": "irpe"}, "set MODEL.POS_EMBED sincos and MODEL.CLASS_TOKEN False"),
        ({"MODEL.CLASS_TOKEN": True}, "no CLS token"),
        ({"TARGET.NAME": "hog"}, "TARGET.NAME and TARGET.OPTIONS must be empty, got 'hog'"),
        ({"TRAIN.DECAY_TOKENS": False}, "TRAIN.DECAY_TOKENS False is not supported"),
        (
            {"MASK.MIN_KEEP": 6},
            "target blocks can be 2x2 patches on the 6x6 grid, not more than MASK.MIN_KEEP 6",
        ),
        ({"MASK.TARGET_SCALE": "(0.3, 0.2)"}, "MASK.TARGET_SCALE must be \\(low, high\\)"),
        ({"TRAIN.EMA_MOMENTUM": "(0.999, 0.99)"}, "TRAIN.EMA_MOMENTUM must be"),
        ({"TRAIN.IPE_SCALE": 0.5}, "TRAIN.IPE_SCALE must be >= 1"),
        ({"PREDICTOR.DEPTH": 0}, "PREDICTOR.DEPTH >= 1"),
    ],
)
def test_bad_ijepa_config_one_line_errors(extra, pattern):
    with pytest.raises(SarjepaError, match=pattern) as exc:
        build_method(tiny_cfg("ijepa_tiny", **{**IJ, **extra}))
    assert "\n" not in str(exc.value)


# ---------------------------------------------------------------------------------- monitor
def test_collapse_monitor_warns_on_a_constant_target(capsys):
    method = _ijepa(**{"TRAIN.COLLAPSE_STD": 0.01}).train()
    images = torch.rand(4, 1, 96, 96, generator=torch.Generator().manual_seed(0))
    method(images, torch.Generator().manual_seed(0))
    healthy = method.epoch_metrics()["target_std"]
    assert healthy > 0.01 and "warning" not in capsys.readouterr().out
    with torch.no_grad():  # every image now has the same target features
        method.target_encoder.norm.weight.zero_()
        method.target_encoder.norm.bias.copy_(torch.linspace(-1, 1, 32))
    for _ in range(2):
        loss, _ = method(images, torch.Generator().manual_seed(0))
    assert math.isfinite(float(loss.detach()))
    assert method.epoch_metrics() == {"target_std": 0.0}
    out = capsys.readouterr().out
    assert (
        "warning: epoch 0: target features' std across the batch 0 < TRAIN.COLLAPSE_STD 0.01" in out
    )
    assert method.epoch_metrics() == {}  # reset after each epoch


# ---------------------------------------------------------------------------------- training
def test_tiny_run_is_finite_and_logs_the_monitor(chips, tmp_path, capsys):
    out = tmp_path / "r"
    train(tiny_cfg("ijepa_tiny", data=chips, out=out, **{**IJ, "TRAIN.EPOCHS": 3}))
    rows = _log(out)
    assert [r["epoch"] for r in rows] == [0, 1, 2]
    assert all(math.isfinite(r["loss"]) and 0.01 < r["target_std"] < 1 for r in rows)
    # 2 steps per epoch, W = 2, T = 6: the lr at each epoch's last step (upstream's schedule)
    assert [r["lr"] for r in rows] == pytest.approx([1e-3, 1e-6 + (1e-3 - 1e-6) * 0.5, 1e-6])
    assert "warning" not in capsys.readouterr().out
    last = torch.load(out / "checkpoint-2.pth", weights_only=True)
    assert last["epoch"] == 3 and last["loss"] == pytest.approx(rows[-1]["loss"])
    # a threshold above the std: one warning line per epoch, and the run goes on
    train(
        tiny_cfg("ijepa_tiny", data=chips, out=tmp_path / "w", **{**IJ, "TRAIN.COLLAPSE_STD": 5.0})
    )
    assert capsys.readouterr().out.count("the EMA target may be collapsing") == 2


def test_cli_pretrain_ijepa_tiny_then_features(chips, tmp_path):
    """`sarjepa pretrain --config ijepa_tiny`, then `sarjepa features` on its checkpoint: the
    target encoder's final-norm tokens, averaged; the same without the sidecar (upstream's
    format)."""
    from sarjepa.pretrain.config import load_config
    from sarjepa.pretrain.weights import load_encoder

    path, x, feats = pretrain_then_features("ijepa_tiny", chips, tmp_path, "ijepa")
    method = build_method(load_config("ijepa_tiny", ["DEVICE", "cpu"]))
    method.restore_checkpoint_entries(torch.load(path, weights_only=True), str(path))
    with torch.no_grad():
        want = method.target_encoder.eval().forward_features(x).mean(dim=1)
    assert feats.shape == (2, 64)
    np.testing.assert_allclose(feats, want.numpy(), rtol=0, atol=1e-5)
    ck.sidecar_path(path).unlink()  # as upstream saves it: no sidecar, no 'args'
    torch.save({k: v for k, v in torch.load(path, weights_only=True).items() if k != "args"}, path)
    loaded = load_encoder(path, overrides={"num_heads": 2}, log=lambda _: None)  # width 64
    assert (loaded.format, loaded.source) == ("ijepa", "target_encoder")
    with torch.no_grad():
        got = loaded.encoder.forward_features(x).mean(dim=1)
    torch.testing.assert_close(got, want, rtol=0, atol=1e-5)


def test_restore_refuses_a_checkpoint_without_an_entry(chips, tmp_path):
    method = _ijepa()
    e = method.checkpoint_entries(None, 0, {})
    del e["target_encoder"]
    with pytest.raises(SarjepaError, match="has no 'target_encoder' entry"):
        method.restore_checkpoint_entries(e, "x.pth")
    e = method.checkpoint_entries(None, 0, {})
    e["predictor"]["module.extra"] = torch.zeros(1)
    with pytest.raises(
        SarjepaError, match="entry 'predictor' does not fit: missing none, unexpected"
    ):
        method.restore_checkpoint_entries(e, "x.pth")
