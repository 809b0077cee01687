"""pretrain.weights: each checkpoint format loads into its source encoder; bad loads refuse."""

from __future__ import annotations

import argparse
import hashlib

import pytest
import torch
from _bench_run_helpers import (
    features_of,
    save_ijepa,
    save_lomar,
    save_mae,
    save_sarjepa,
    tiny_vit,
)
from sarjepa.benchmark.core.errors import SarjepaError
from sarjepa.pretrain.weights import infer_arch, load_encoder, resolve_arch

pytestmark = pytest.mark.usefixtures("one_thread")


def _x(n: int = 3) -> torch.Tensor:
    return torch.rand(n, 1, 32, 32, generator=torch.Generator().manual_seed(1))


def _same_weights(a: torch.nn.Module, b: torch.nn.Module) -> None:
    sa, sb = a.state_dict(), b.state_dict()
    assert sa.keys() == sb.keys()
    for k in sa:
        assert torch.equal(sa[k], sb[k]), k


def test_own_checkpoint_with_sidecar(tmp_path):
    src = tiny_vit(pos_embed="irpe", mlp_ratio=2.0)
    path = save_sarjepa(src, tmp_path / "checkpoint-3.pth")
    rng = torch.get_rng_state()
    got = load_encoder(path, log=lambda s: None)
    assert torch.equal(rng, torch.get_rng_state())  # no random init of weights that get loaded
    assert got.format == "sarjepa" and got.arch == src.arch_dict()
    assert got.sha256 == hashlib.sha256(path.read_bytes()).hexdigest()
    assert got.meta["method"] == "sarjepa" and got.unexpected == []
    assert set(got.dropped) == {
        "mask_token",
        "encoder_pred.weight",
        "encoder_pred.bias",
        "decoder_blocks.0.norm1.weight",
        "decoder_norm.weight",
        "decoder_pred.weight",
    }
    _same_weights(got.encoder, src)
    assert torch.equal(features_of(got.encoder, _x()), features_of(src, _x()))


def test_authors_lomar_format_infers_heads_from_irpe_table(tmp_path):
    # head_dim 16 -> 3 heads at width 48: no name or default could give that
    src = tiny_vit(embed_dim=48, num_heads=3)
    lines: list[str] = []
    got = load_encoder(save_lomar(src, tmp_path / "checkpoint-200.pth"), log=lines.append)
    assert got.format == "lomar" and got.source == "model"
    a = got.arch
    assert (a["embed_dim"], a["depth"], a["num_heads"], a["patch_size"]) == (48, 2, 3, 8)
    assert (a["pos_embed"], a["class_token"], a["global_pool"], a["in_chans"]) == (
        "irpe",
        True,
        "cls",
        1,
    )
    assert "pos_embed" in got.dropped and "mask_token" in got.dropped
    # the GF target buffers are not encoder weights: reported, ignored
    assert sorted(got.unexpected) == [f"sarfeature{s}.weight_x1" for s in range(1, 5)]
    assert any("unexpected" in ln and "sarfeature1.weight_x1" in ln for ln in lines)
    _same_weights(got.encoder, src)
    assert torch.equal(features_of(got.encoder, _x()), features_of(src, _x()))


def test_mae_format_sincos_cls(tmp_path):
    src = tiny_vit(pos_embed="sincos")
    with pytest.raises(SarjepaError, match="NUM_HEADS"):
        load_encoder(save_mae(src, tmp_path / "mae.pth"), log=lambda s: None)
    got = load_encoder(tmp_path / "mae.pth", overrides={"num_heads": 2}, log=lambda s: None)
    assert got.format == "mae" and got.arch["pos_embed"] == "sincos"
    assert got.arch["global_pool"] == "cls" and got.arch["img_size"] == 32
    assert {"mask_token", "decoder_embed.weight", "decoder_pos_embed"} <= set(got.dropped)
    assert got.unexpected == []
    _same_weights(got.encoder, src)
    assert torch.equal(features_of(got.encoder, _x()), features_of(src, _x()))


def test_ijepa_format_target_encoder_mean_pool(tmp_path):
    target = tiny_vit(seed=1, pos_embed="sincos", class_token=False)
    online = tiny_vit(seed=2, pos_embed="sincos", class_token=False)
    path = save_ijepa(target, online, tmp_path / "jepa-ep5.pth.tar")
    got = load_encoder(path, overrides={"num_heads": 2}, log=lambda s: None)
    assert got.format == "ijepa" and got.source == "target_encoder"
    assert got.arch["class_token"] is False and got.arch["global_pool"] == "mean"
    _same_weights(got.encoder, target)
    feats = features_of(got.encoder, _x())
    # independent pooling: mean over the final-norm tokens (no CLS)
    with torch.no_grad():
        ref = target.forward_features(_x()).mean(dim=1)
    torch.testing.assert_close(feats, ref, rtol=0, atol=1e-6)
    other = load_encoder(path, {"num_heads": 2}, weights_key="encoder", log=lambda s: None)
    _same_weights(other.encoder, online)


def test_bare_state_dict_and_prefix_key(tmp_path):
    src = tiny_vit()
    torch.save(
        {"state_dict": {f"backbone.{k}": v for k, v in src.state_dict().items()}},
        tmp_path / "sd.pth",
    )
    got = load_encoder(tmp_path / "sd.pth", log=lambda s: None)
    assert got.format == "state_dict" and got.source == "state_dict:backbone."
    _same_weights(got.encoder, src)


def test_refuses_missing_encoder_keys_and_lists_them(tmp_path):
    src = tiny_vit()
    sd = src.state_dict()
    del sd["blocks.1.attn.rpe_k.lookup_table_weight"], sd["norm.bias"]
    torch.save({"model": sd}, tmp_path / "bad.pth")
    with pytest.raises(SarjepaError) as exc:
        load_encoder(tmp_path / "bad.pth", log=lambda s: None)
    msg = str(exc.value)
    assert "\n" not in msg and "missing 2 encoder key(s)" in msg
    assert "blocks.1.attn.rpe_k.lookup_table_weight" in msg and "norm.bias" in msg


def test_refuses_shape_mismatch_and_depth_override(tmp_path):
    path = save_sarjepa(tiny_vit(), tmp_path / "checkpoint-1.pth")
    with pytest.raises(SarjepaError, match=r"shape mismatch.*patch_embed\.proj\.weight"):
        load_encoder(path, overrides={"embed_dim": 64, "num_heads": 2}, log=lambda s: None)
    with pytest.raises(SarjepaError, match=r"missing \d+ encoder key\(s\): blocks\.2\."):
        load_encoder(path, overrides={"depth": 3}, log=lambda s: None)
    short = load_encoder(path, overrides={"depth": 1}, log=lambda s: None)  # truncation: reported
    assert short.unexpected and all(k.startswith("blocks.1.") for k in short.unexpected)
    sd = {**tiny_vit().state_dict(), "blocks.0.ls1.gamma": torch.ones(32)}  # layer scale
    torch.save({"model": sd}, tmp_path / "ls.pth")
    with pytest.raises(
        SarjepaError, match=r"1 encoder key\(s\) with no place in it: blocks\.0\.ls1"
    ):
        load_encoder(tmp_path / "ls.pth", log=lambda s: None)


def test_refuses_unsafe_pickle_and_missing_file(tmp_path):
    torch.save(
        {"model": tiny_vit().state_dict(), "extra": argparse.ArgumentParser}, tmp_path / "u.pth"
    )
    with pytest.raises(SarjepaError, match="cannot be loaded safely"):
        load_encoder(tmp_path / "u.pth", log=lambda s: None)
    with pytest.raises(SarjepaError, match="does not exist"):
        load_encoder(tmp_path / "nope.pth", log=lambda s: None)
    (tmp_path / "junk.pth").write_bytes(b"not a checkpoint")
    with pytest.raises(SarjepaError, match="not a readable PyTorch file"):
        load_encoder(tmp_path / "junk.pth", log=lambda s: None)


def test_arch_inference_and_head_resolution():
    src = tiny_vit(
        embed_dim=64,
        num_heads=4,
        mlp_ratio=3.0,
        in_chans=3,
        patch_size=16,
        img_size=48,
        pos_embed="sincos",
    )
    arch = infer_arch(src.state_dict())
    assert arch == {
        "embed_dim": 64,
        "in_chans": 3,
        "patch_size": 16,
        "depth": 2,
        "mlp_ratio": 3.0,
        "qkv_bias": True,
        "class_token": True,
        "pos_embed": "sincos",
        "img_size": 48,
    }
    base = {"embed_dim": 768, "depth": 12}
    assert resolve_arch(base)["num_heads"] == 12  # standard width
    assert resolve_arch({"embed_dim": 384}, name_hints=("mae_vit_base_patch16",))["num_heads"] == 6
    assert resolve_arch({"embed_dim": 1024}, name_hints=("vit_large_patch16",))["num_heads"] == 16
    assert resolve_arch(base, {"num_heads": 4})["num_heads"] == 4
    no_cls = resolve_arch({"embed_dim": 192, "class_token": False})
    assert no_cls["global_pool"] == "mean" and no_cls["num_heads"] == 3


def test_a_checkpoint_is_read_once_per_process_until_the_file_changes(tmp_path, monkeypatch):
    import os

    import sarjepa.pretrain.weights as weights

    monkeypatch.setattr(weights, "_SELECTED", type(weights._SELECTED)())
    reads = []
    real = weights.read_checkpoint
    monkeypatch.setattr(weights, "read_checkpoint", lambda p, **k: reads.append(p) or real(p, **k))
    path = save_sarjepa(tiny_vit(seed=1), tmp_path / "checkpoint-3.pth")
    first = load_encoder(path, log=lambda *_: None)
    second = load_encoder(path, log=lambda *_: None)
    assert len(reads) == 1  # the second cell of a grid process reads nothing
    _same_weights(first.encoder, second.encoder)
    assert first.encoder is not second.encoder  # each load builds its own model
    with torch.no_grad():  # a cell that changes its copy must not change the next cell's
        first.encoder.cls_token.add_(1.0)
    third = load_encoder(path, log=lambda *_: None)
    _same_weights(second.encoder, third.encoder)
    st = path.stat()
    save_sarjepa(tiny_vit(seed=2), path)  # the file is replaced: read again, new weights
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))
    fourth = load_encoder(path, log=lambda *_: None)
    assert len(reads) == 2
    _same_weights(fourth.encoder, tiny_vit(seed=2))
    assert not torch.equal(fourth.encoder.cls_token, third.encoder.cls_token)


def test_a_shared_encoder_is_built_once_per_process_until_the_file_changes(tmp_path, monkeypatch):
    """``share=True`` (frozen-feature cells) gives the encoder loaded before with the same
    arguments, prints its report again and leaves the global RNG alone; other arguments, a
    changed file or ``share=False`` load anew."""
    import os

    import sarjepa.pretrain.weights as weights

    monkeypatch.setattr(weights, "_SHARED", type(weights._SHARED)())
    path = save_sarjepa(tiny_vit(seed=1), tmp_path / "checkpoint-3.pth")
    lines: list[str] = []
    first = load_encoder(path, log=lines.append, share=True)
    n = len(lines)
    torch.manual_seed(0)
    second = load_encoder(path, log=lines.append, share=True)
    after = torch.rand(3)
    assert second is first and lines[n:] == lines[:n] and n >= 2
    torch.manual_seed(0)
    assert torch.equal(after, torch.rand(3))  # the shared load drew nothing from the RNG
    assert load_encoder(path, log=lambda *_: None).encoder is not first.encoder  # not shared
    other = load_encoder(path, {"num_heads": 2}, log=lambda *_: None, share=True)
    assert other is not first
    st = path.stat()
    save_sarjepa(tiny_vit(seed=2), path)  # the file is replaced: loaded again, new weights
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))
    third = load_encoder(path, log=lambda *_: None, share=True)
    assert third is not first
    _same_weights(third.encoder, tiny_vit(seed=2))


def test_random_init_features_are_keyed_by_the_weights():
    """A random init is cached under the sha256 of its weights: the same seed gives the same
    key (the cells of one seed share features), another seed or one changed weight another."""
    from sarjepa.benchmark.features import FeatureStore, feature_spec
    from sarjepa.pretrain.models import build_vit
    from sarjepa.pretrain.weights import LoadedEncoder

    def random_weights(seed: int) -> LoadedEncoder:
        torch.manual_seed(seed)
        model = build_vit("vit_tiny_patch16", img_size=32, embed_dim=32, depth=1, num_heads=2)
        return LoadedEncoder(encoder=model, arch=model.arch_dict(), format="random")

    def key(w: LoadedEncoder) -> str:
        return FeatureStore("unused", feature_spec(w, {"size": 32}, "off")).key

    a, b, c = random_weights(0), random_weights(0), random_weights(1)
    assert key(a) == key(b) != key(c)
    with torch.no_grad():
        next(b.encoder.parameters()).view(-1)[0] += 1e-6
    assert key(a) != key(b)
    assert feature_spec(LoadedEncoder(encoder=None, arch={}, format="random"), {}, "off") is None
