"""Trainers: Dassl's lr schedule, heads, cached-feature equivalence, feature cache keys, metrics."""

from __future__ import annotations

import math
import os

import numpy as np
import pytest
import torch
from _bench_run_helpers import (
    easy_data_with_checkpoint,
    tiny_cfg,
)
from sarjepa.benchmark.core.runtime import seed_everything
from sarjepa.benchmark.datasets import build_dataset
from sarjepa.benchmark.evaluator import classification_metrics, result_block
from sarjepa.benchmark.features import FeatureStore, file_stamps
from sarjepa.benchmark.trainers import TRAINER_REGISTRY
from sarjepa.benchmark.trainers.optim import lr_per_epoch
from yacs.config import CfgNode as CN

pytestmark = pytest.mark.usefixtures("one_thread")


def _optim(**kw) -> CN:
    o = CN()
    o.LR, o.MAX_EPOCH, o.LR_SCHEDULER, o.STEPSIZE, o.GAMMA = 1e-3, 40, "cosine", (-1,), 0.1
    o.WARMUP_EPOCH, o.WARMUP_TYPE, o.WARMUP_CONS_LR, o.WARMUP_MIN_LR = 2, "constant", 1e-5, 1e-5
    o.WARMUP_RECOUNT = True
    for k, v in kw.items():
        o[k] = v
    return o


def test_lr_schedule_matches_hand_table_for_the_authors_settings():
    lrs = lr_per_epoch(_optim())
    assert len(lrs) == 40
    # hand table: constant 1e-5 for epochs 0-1; then 1e-3 * (1 + cos(pi * t / 40)) / 2, t = e - 2
    table = {
        0: 1e-5,
        1: 1e-5,
        2: 1e-3,
        12: 0.5e-3 * (1 + math.cos(math.pi / 4)),
        22: 0.5e-3,
        32: 0.5e-3 * (1 - math.cos(math.pi / 4)),
        39: 0.5e-3 * (1 + math.cos(math.pi * 37 / 40)),
    }
    for e, want in table.items():
        assert lrs[e] == pytest.approx(want, rel=1e-12, abs=0), e
    for e in range(2, 40):
        assert lrs[e] == pytest.approx(0.5e-3 * (1 + math.cos(math.pi * (e - 2) / 40)), rel=1e-12)
    assert lrs[39] > 1e-5  # the cosine never reaches its end (t stops at 37 of 40)


def test_lr_schedule_other_dassl_variants():
    # linear warm-up: WARMUP_MIN_LR at epoch 0, then LR * e / W
    lin = lr_per_epoch(_optim(WARMUP_TYPE="linear", WARMUP_EPOCH=4, MAX_EPOCH=6))
    assert lin[:4] == [1e-5, 2.5e-4, 5e-4, 7.5e-4] and lin[4] == 1e-3
    # WARMUP_RECOUNT False: the cosine continues from t = W + 1 relative to LR at epoch W
    nore = lr_per_epoch(_optim(WARMUP_RECOUNT=False, MAX_EPOCH=10))
    c = lambda t: 1 + math.cos(math.pi * t / 10)  # noqa: E731
    assert nore[2] == 1e-3 and nore[3] == pytest.approx(1e-3 * c(3) / c(2), rel=1e-12)
    # no warm-up, single step at epoch 3
    step = lr_per_epoch(
        _optim(WARMUP_EPOCH=-1, LR_SCHEDULER="single_step", STEPSIZE=(3,), MAX_EPOCH=7)
    )
    assert step == pytest.approx([1e-3] * 3 + [1e-4] * 3 + [1e-5], rel=1e-12)


def test_classification_metrics_against_hand_counts():
    y_true = [0, 0, 0, 1, 1, 2]
    y_pred = [0, 0, 1, 1, 2, 2]
    m = classification_metrics(y_true, y_pred, {0: "a", 1: "b", 2: "c", 3: "unused"})
    assert (m["total"], m["correct"]) == (6, 4)
    assert m["accuracy"] == pytest.approx(400 / 6) and m["error"] == pytest.approx(200 / 6)
    # per class: precision/recall a 1/(2/3), b (1/2)/(1/2), c (1/2)/1 -> F1 0.8, 0.5, 2/3
    assert m["macro_f1"] == pytest.approx(100 * (0.8 + 0.5 + 2 / 3) / 3)
    assert m["per_class_accuracy"] == pytest.approx({"a": 200 / 3, "b": 50.0, "c": 100.0})
    block = result_block(
        {**m, "total": 2425, "correct": 2213, "accuracy": 91.25, "error": 8.75, "macro_f1": 90.06}
    )
    assert block.splitlines() == [
        "=> result",
        "* total: 2,425",
        "* correct: 2,213",
        "* accuracy: 91.2%",
        "* error: 8.8%",
        "* macro_f1: 90.1%",
    ]


def _trainer(cfg):
    seed_everything(int(cfg.SEED))
    ds = build_dataset(cfg)
    cls = TRAINER_REGISTRY.get(cfg.TRAINER.NAME)
    return cls(cfg, ds, device=torch.device("cpu"), amp="off", log=lambda s: None)


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    return easy_data_with_checkpoint(tmp_path_factory)


def test_heads_initialisation_and_trainable_parameters(data, tmp_path):
    root, ckpt = data
    ft = _trainer(
        tiny_cfg(
            root, tmp_path / "ft", tmp_path / "c", "MIM_finetune", MODEL__INIT_WEIGHTS=str(ckpt)
        )
    )
    head = ft.model.head
    assert isinstance(head, torch.nn.Linear) and head.weight.shape == (10, 32)
    assert torch.all(head.bias == 0) and 0.5e-5 < head.weight.std().item() < 4e-5
    n_all = sum(p.numel() for p in ft.model.parameters())
    assert sum(p.numel() for g in ft.optim.param_groups for p in g["params"]) == n_all
    lin = _trainer(
        tiny_cfg(
            root, tmp_path / "lin", tmp_path / "c", "MIM_linear", MODEL__INIT_WEIGHTS=str(ckpt)
        )
    )
    bn, fc = lin.head
    assert isinstance(bn, torch.nn.BatchNorm1d) and not bn.affine and bn.eps == 1e-6
    assert torch.all(fc.bias == 0) and 0.004 < fc.weight.std().item() < 0.016
    params = [p for g in lin.optim.param_groups for p in g["params"]]
    assert len(params) == 2 and params[0] is fc.weight and params[1] is fc.bias
    assert not any(p.requires_grad for p in lin.backbone.parameters())


def _snapshot(trainer) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in trainer.head.state_dict().items()}


def test_linear_probe_on_cached_features_equals_image_path(data, tmp_path):
    root, ckpt = data
    common = dict(
        MODEL__INIT_WEIGHTS=str(ckpt),
        DATASET__NUM_SHOTS=5,
        DATALOADER__TRAIN_X__BATCH_SIZE=8,
        OPTIM__MAX_EPOCH=4,
    )
    runs = {}
    for name, cache in (("images", False), ("cached", True), ("from_disk", True)):
        cfg = tiny_cfg(
            root,
            tmp_path / name,
            tmp_path / "cache",
            "MIM_linear",
            TRAINER__LINEAR__CACHE_FEATURES=cache,
            **common,
        )
        tr = _trainer(cfg)
        assert tr.cached is cache
        tr.train()
        runs[name] = (_snapshot(tr), tr.test())
    (ref, ref_m), (got, got_m), (disk, disk_m) = runs["images"], runs["cached"], runs["from_disk"]
    assert ref.keys() == got.keys() == disk.keys()
    assert int(ref["0.num_batches_tracked"]) == 4 * 6  # 50 images, batch 8, drop_last
    for k in ref:  # bitwise equal: same batches, same features, same kernels
        assert torch.equal(got[k], ref[k]), k
        assert torch.equal(disk[k], got[k]), k
    assert got_m["correct"] == ref_m["correct"] and disk_m == got_m
    stores = list((tmp_path / "cache" / "features").glob("*.npz"))
    assert len(stores) == 1
    with np.load(stores[0]) as z:
        assert z["features"].shape == (50 + 30, 32) and z["features"].dtype == np.float32


def test_feature_cache_is_keyed_and_never_stale(tmp_path):
    spec = {
        "checkpoint_sha256": "a" * 64,
        "source": "model",
        "arch": {"embed_dim": 4},
        "preprocessing": {"size": [32, 32]},
        "amp": "off",
    }
    base = FeatureStore(tmp_path, spec)
    assert FeatureStore(tmp_path, dict(spec)).key == base.key
    for change in (
        {"checkpoint_sha256": "b" * 64},
        {"preprocessing": {"size": [64, 64]}},
        {"arch": {"embed_dim": 4, "global_pool": "mean"}},
        {"amp": "bf16"},
    ):
        assert FeatureStore(tmp_path, {**spec, **change}).key != base.key
    files = [tmp_path / f"{i}.png" for i in range(3)]
    for f in files:
        f.write_bytes(b"x")
    names, stamps = file_stamps([str(f) for f in files])
    base.add(names, stamps, np.arange(12, dtype=np.float32).reshape(3, 4))
    found, missing = base.lookup(names, stamps)
    assert missing == [] and np.array_equal(found[2], [8, 9, 10, 11])
    files[1].write_bytes(b"xy")  # edited image: its feature must be recomputed
    os.utime(files[2], ns=(1, 1))  # touched image too
    names, stamps = file_stamps([str(f) for f in files])
    found, missing = base.lookup(names, stamps)
    assert missing == [1, 2] and np.array_equal(found[0], [0, 1, 2, 3])
    other = FeatureStore(tmp_path, {**spec, "checkpoint_sha256": "b" * 64})
    assert other.lookup(names, stamps) == (None, [0, 1, 2])
