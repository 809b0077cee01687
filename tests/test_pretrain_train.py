"""The pretraining driver (pretrain.train, loop, schedules): lr schedule, optimiser groups,
checkpoint format and sidecar, non-finite stop, overwrite refusal, gradient accumulation
(learning and exact resume of every method: tests/test_method_contract.py)."""

from __future__ import annotations

import json
import math

import pytest
import torch
from _pretrain_helpers import (
    tiny_cfg,
    write_chips,
)
from sarjepa.benchmark.core.errors import SarjepaError
from sarjepa.pretrain import checkpoints as ck
from sarjepa.pretrain.train import lr_at, param_groups, peak_lr, train

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def chips(tmp_path_factory):
    folder = tmp_path_factory.mktemp("chips")
    write_chips(folder, n=16, size=72)
    return folder


def test_peak_lr_scales_with_effective_batch():
    assert peak_lr(1e-3, 75, 1, 4) == pytest.approx(1e-3 * 300 / 256)
    assert peak_lr(1e-3, 25, 3, 4) == pytest.approx(1e-3 * 300 / 256)
    assert peak_lr(1e-3, 75, 1, 4, lr=0.5) == 0.5


def test_lr_schedule_matches_hand_table():
    # peak 1.0, min 0.1, warm-up 2 epochs, 6 epochs in all
    table = {
        0.0: 0.0,
        0.5: 0.25,
        1.0: 0.5,
        1.5: 0.75,
        2.0: 1.0,  # cosine starts at the peak
        3.0: 0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi / 4)),  # 0.868198...
        4.0: 0.55,  # half-way: (peak + min) / 2
        5.0: 0.1 + 0.9 * 0.5 * (1 + math.cos(3 * math.pi / 4)),  # 0.231802...
        6.0: 0.1,
    }
    for t, want in table.items():
        assert lr_at(t, 1.0, 0.1, 2, 6) == pytest.approx(want, abs=1e-12), t
    assert lr_at(3.0, 1.0, 0.1, 2, 6) == pytest.approx(0.8681980515, abs=1e-9)


def test_param_groups_decay_tokens_like_the_authors_by_default():
    from sarjepa.pretrain.methods import build_method

    method = build_method(tiny_cfg())
    groups = param_groups(method, 0.05)
    decay = {n for g in groups if g["weight_decay"] > 0 for n, p in method.named_parameters()
             if any(p is q for q in g["params"])}  # fmt: skip
    assert {"mask_token", "encoder.cls_token", "encoder.blocks.0.attn.qkv.weight"} <= decay
    assert "encoder.norm.weight" not in decay and "encoder.blocks.0.attn.qkv.bias" not in decay


def test_param_groups_no_decay_on_bias_norm_tokens():
    from sarjepa.pretrain.methods import build_method

    method = build_method(tiny_cfg())
    groups = param_groups(method, 0.05, decay_tokens=False)
    names = {id(p): n for n, p in method.named_parameters()}
    decay = {names[id(p)] for g in groups if g["weight_decay"] > 0 for p in g["params"]}
    no_decay = {names[id(p)] for g in groups if g["weight_decay"] == 0 for p in g["params"]}
    assert all(g["weight_decay"] in (0.0, 0.05) for g in groups)
    assert decay | no_decay == set(names.values()) and not decay & no_decay
    for name in no_decay:
        assert name.endswith(".bias") or "norm" in name or name.endswith("_token"), name
    for name in (
        "mask_token",
        "encoder.cls_token",
        "encoder.norm.weight",
        "encoder.blocks.0.attn.qkv.bias",
        "decoder_norm.weight",
    ):
        assert name in no_decay
    for name in (
        "encoder.blocks.0.attn.qkv.weight",
        "encoder.patch_embed.proj.weight",
        "decoder_pred.weight",
        "encoder_pred.weight",
    ):
        assert name in decay


def _log(out):
    return [json.loads(x) for x in (out / "log.txt").read_text().splitlines()]


def test_checkpoint_format_and_sidecar(chips, tmp_path):
    from sarjepa.pretrain.models import build_vit

    out = tmp_path / "fmt"
    train(tiny_cfg(data=chips, out=out, **{"TRAIN.EPOCHS": 1}))
    obj = torch.load(out / "checkpoint-0.pth", map_location="cpu", weights_only=True)
    assert set(obj) == {"model", "optimizer", "epoch", "scaler", "args"}
    assert obj["epoch"] == 0 and obj["scaler"] is None and isinstance(obj["args"], dict)
    sd = obj["model"]
    for key in (
        "cls_token",
        "patch_embed.proj.weight",
        "blocks.0.attn.qkv.weight",
        "blocks.1.attn.rpe_k.lookup_table_weight",
        "norm.weight",
        "mask_token",
        "encoder_pred.weight",
        "decoder_blocks.0.attn.rpe_k.lookup_table_weight",
        "decoder_norm.weight",
        "decoder_pred.bias",
    ):
        assert key in sd, key
    assert not any(k.startswith(("encoder.", "module.")) for k in sd)
    assert sd["blocks.0.attn.rpe_k.lookup_table_weight"].shape == (1, 16, 50)
    assert sd["decoder_pred.weight"].shape == (4 * 256, 32)  # gf: 4 scales x 16 x 16
    # the benchmark's path: rebuild the encoder from args["arch"], load the encoder keys
    encoder = build_vit(obj["args"]["arch"])
    enc_keys = set(encoder.state_dict())
    encoder.load_state_dict({k: v for k, v in sd.items() if k in enc_keys}, strict=True)
    assert set(sd) - enc_keys == {
        k
        for k in sd
        if k.split(".")[0]
        in ("mask_token", "encoder_pred", "decoder_blocks", "decoder_norm", "decoder_pred")
    }
    meta = json.loads((out / "checkpoint-0.json").read_text())
    for key in (
        "format",
        "method",
        "target",
        "arch",
        "input_size",
        "in_chans",
        "preprocessing",
        "data_fingerprint",
        "code_version",
        "epoch",
    ):
        assert key in meta, key
    assert meta["format"] == "sarjepa-pretrain/1" and meta["method"] == "sarjepa"
    assert meta["target"] == "gf" and meta["arch"] == obj["args"]["arch"]
    assert meta["input_size"] == 64 and meta["in_chans"] == 1 and meta["epoch"] == 0
    assert meta["preprocessing"]["normalize"] is None
    assert not list(out.glob("*.tmp")) and not list(out.glob(".*.tmp"))


def test_nonfinite_loss_stops_and_keeps_checkpoint(chips, tmp_path, monkeypatch):
    from sarjepa.pretrain.methods.sarjepa import LocalWindowRegression

    out = tmp_path / "nan"
    train(tiny_cfg(data=chips, out=out, **{"TRAIN.EPOCHS": 3}))
    ck.checkpoint_path(out, 2).unlink()
    ck.checkpoint_path(out, 1).unlink()
    before = (out / "checkpoint-0.pth").read_bytes()
    original = LocalWindowRegression.forward

    def poisoned(self, images, generator=None):
        loss, stats = original(self, images, generator)
        return loss * float("nan"), stats

    monkeypatch.setattr(LocalWindowRegression, "forward", poisoned)
    with pytest.raises(SarjepaError, match="non-finite loss") as exc:
        train(tiny_cfg(data=chips, out=out, **{"TRAIN.EPOCHS": 3}), resume="auto")
    assert "\n" not in str(exc.value) and "epoch 1" in str(exc.value)
    assert (out / "checkpoint-0.pth").read_bytes() == before
    assert [e for e, _ in ck.list_checkpoints(out)] == [0]


def test_refuses_to_overwrite_and_resume_auto_starts_fresh(chips, tmp_path):
    out = tmp_path / "o"
    summary = train(tiny_cfg(data=chips, out=out, **{"TRAIN.EPOCHS": 1}), resume="auto")
    assert summary["epochs_run"] == 1
    with pytest.raises(SarjepaError, match="--resume auto"):
        train(tiny_cfg(data=chips, out=out, **{"TRAIN.EPOCHS": 1}))
    again = train(tiny_cfg(data=chips, out=out, **{"TRAIN.EPOCHS": 1}), resume="auto")
    assert again["epochs_run"] == 0
    with pytest.raises(SarjepaError, match="trained with method 'sarjepa'"):
        train(
            tiny_cfg("sarjepa_pixel_tiny", data=chips, out=out, **{"TRAIN.EPOCHS": 2}),
            resume="auto",
        )


class _Quadratic(torch.nn.Module):
    """A deterministic stand-in method: loss = mean over the batch of (w . x - 1)^2."""

    def __init__(self) -> None:
        super().__init__()
        self.w = torch.nn.Parameter(torch.linspace(-1, 1, 16))

    def forward(self, images, generator=None):
        loss = ((images.flatten(1) @ self.w - 1.0) ** 2).mean()
        return loss, {"loss": loss.detach()}

    def on_optimizer_step(self, progress: float) -> None:
        pass


def test_gradient_accumulation_equals_the_big_batch():
    from sarjepa.pretrain.distributed import DistInfo
    from sarjepa.pretrain.loop import EpochPlan, train_one_epoch
    from tqdm import tqdm

    images = torch.rand(16, 1, 4, 4, generator=torch.Generator().manual_seed(0))
    results = []
    for batch, accum in ((8, 1), (4, 2), (2, 4)):
        model = _Quadratic()
        opt = torch.optim.AdamW(model.parameters(), lr=0.1, betas=(0.9, 0.95))
        loader = list(images.split(batch))
        plan = EpochPlan(1, len(loader), accum, 4, 0.1, 0.0, 1, 0.0)
        with tqdm(disable=True) as bar:
            stats = train_one_epoch(model, model, loader, opt, plan, DistInfo(), None, None, bar)
        results.append((model.w.detach().clone(), stats))
    for w, stats in results[1:]:
        torch.testing.assert_close(w, results[0][0], rtol=1e-5, atol=1e-6)
        assert stats["lr"] == pytest.approx(results[0][1]["lr"])
    assert not torch.equal(results[0][0], _Quadratic().w.detach())


def test_a_partial_accumulation_group_at_the_epoch_end_is_dropped():
    """5 micro-batches at accum 2: two full steps; the 5th batch never reaches the model (upstream
    MAE drops it), so even a non-finite tail changes nothing. Fewer batches than one group still
    make the epoch's one step."""
    from sarjepa.pretrain.distributed import DistInfo
    from sarjepa.pretrain.loop import EpochPlan, train_one_epoch
    from tqdm import tqdm

    images = torch.rand(20, 1, 4, 4, generator=torch.Generator().manual_seed(0))
    out = []
    for tail in (images[16:], torch.full((4, 1, 4, 4), float("nan"))):
        model = _Quadratic()
        opt = torch.optim.AdamW(model.parameters(), lr=0.1, betas=(0.9, 0.95))
        loader = [*images[:16].split(4), tail]
        plan = EpochPlan(1, len(loader), 2, 4, 0.1, 0.0, 1, 0.0)
        assert (plan.used_iters, plan.steps_per_epoch) == (4, 2)
        with tqdm(disable=True) as bar:
            stats = train_one_epoch(model, model, loader, opt, plan, DistInfo(), None, None, bar)
        assert stats["iters"] == 4
        assert int(opt.state[model.w]["step"]) == 2
        out.append(model.w.detach().clone())
    assert torch.equal(out[0], out[1])
    short = EpochPlan(0, 1, 4, 4, 0.1, 0.0, 1, 0.0)
    assert (short.used_iters, short.steps_per_epoch) == (1, 1)


@pytest.mark.parametrize("config", ["sarjepa_tiny", "mae_tiny"])
def test_cpu_optimizer_takes_the_foreach_path_bitwise_equal_to_single_tensor(config):
    """build_optimizer asks for AdamW's for-each path on a CPU (fewer dispatches); three steps
    of a method give bitwise the parameters of torch's single-tensor default."""
    from sarjepa.pretrain.methods import build_method
    from sarjepa.pretrain.train import build_optimizer

    cfg = tiny_cfg(config)
    images = torch.rand(4, 1, 64, 64, generator=torch.Generator().manual_seed(1))
    params = []
    for foreach in (True, False):
        torch.manual_seed(0)
        method = build_method(cfg)
        opt = build_optimizer(method, cfg, 1e-3, torch.device("cpu"))
        assert all(g["foreach"] is True for g in opt.param_groups)
        for g in opt.param_groups:
            g["foreach"] = foreach
        gen = torch.Generator().manual_seed(0)
        for _ in range(3):
            loss, _ = method(images, gen)
            loss.backward()
            opt.step()
            opt.zero_grad(set_to_none=True)
        params.append([p.detach().clone() for p in method.parameters()])
    assert all(torch.equal(a, b) for a, b in zip(*params))
    assert not all(torch.equal(a, b) for a, b in zip(params[0], build_method(cfg).parameters()))
