"""The comparison preset (``pretrain/configs/<method>_compare.yaml``): one budget for every method.

The counts come from the engine itself: :func:`pretrain.train.setup` builds each member's data
pipeline (dataset, sampler, loader, accumulation) on one pool, :class:`pretrain.loop.EpochPlan`
says how many micro-batches take part and how many optimiser steps they make, and the loader's
batch sampler says which images those micro-batches hold. Only the model is shrunk (its size
enters neither count).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from sarjepa.pretrain import compare
from sarjepa.pretrain.config import bundled_config_names, load_config
from sarjepa.pretrain.distributed import DistInfo
from sarjepa.pretrain.loop import EpochPlan
from sarjepa.pretrain.methods import method_names
from sarjepa.pretrain.schedules import lr_at

POOL = 5 * 75 + 13  # 5 full batches of 75 (accumulation 4: one step, one batch dropped) + a tail


@pytest.fixture(scope="module")
def pool(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("pool")
    rng = np.random.default_rng(0)
    for i in range(POOL):
        Image.fromarray(rng.integers(0, 255, (16, 16), dtype=np.uint8)).save(folder / f"{i}.png")
    return folder


def _small_model(cfg) -> list[str]:
    opts = ["MODEL.EMBED_DIM", "32", "MODEL.DEPTH", "1", "MODEL.NUM_HEADS", "2"]
    if int(cfg.PREDICTOR.DEPTH):
        opts += ["PREDICTOR.EMBED_DIM", "32", "PREDICTOR.DEPTH", "1", "PREDICTOR.NUM_HEADS", "2"]
    return opts + ["DATA.NUM_WORKERS", "0", "DEVICE", "cpu"]


def _engine_view(name: str, pool: Path, tmp_path: Path, epoch: int) -> dict:
    """What the engine does with preset ``name`` on ``pool`` in ``epoch``."""
    from sarjepa.pretrain.train import setup

    cfg = load_config(name)
    cfg = load_config(name, _small_model(cfg))
    cfg.defrost()
    cfg.DATA_DIR, cfg.OUTPUT_DIR = str(pool), str(tmp_path / name)
    cfg.freeze()
    run = setup(cfg, DistInfo(), progress=False)
    run.sampler.set_epoch(epoch)
    t = cfg.TRAIN
    plan = EpochPlan(
        epoch, run.iters, run.accum, t.EPOCHS, run.lr_peak, t.MIN_LR, t.WARMUP_EPOCHS, 0.0
    )
    batches = list(run.loader.batch_sampler)[: plan.used_iters]
    return {
        "method": cfg.METHOD.NAME,
        "images": [i for batch in batches for _, i in batch],
        "steps": plan.steps_per_epoch * t.EPOCHS,
        "effective_batch": run.eff,
        "plan": plan,
        "run": run,
    }


def test_every_method_has_an_up_to_date_preset_config():
    assert compare.preset_config_names() == sorted(compare.preset_name(m) for m in method_names())
    assert set(compare.preset_config_names()) <= set(bundled_config_names())
    assert compare.stale(method_names()) == []
    assert compare.main([]) == 0


@pytest.mark.parametrize("method", method_names())
def test_a_preset_is_the_method_recipe_with_the_shared_budget(method):
    own = load_config(compare.source_name(method))
    preset = load_config(compare.preset_name(method))
    reference = load_config(compare.BUDGET_SOURCE)
    for section, key in compare.BUDGET_KEYS:
        assert preset[section][key] == reference[section][key], (section, key)
        own[section][key] = reference[section][key]  # the only keys allowed to differ
    assert preset == own


def test_every_preset_member_sees_the_same_images_and_takes_the_same_steps(pool, tmp_path):
    names = compare.preset_config_names()
    views = [_engine_view(name, pool, tmp_path, epoch=3) for name in names]
    assert sorted(v["method"] for v in views) == method_names()
    first = views[0]
    # 5 micro-batches of 75, accumulation 4: one optimiser step per epoch on 300 images
    assert first["plan"].steps_per_epoch == 1 and len(first["images"]) == 300
    assert len(set(first["images"])) == 300 and max(first["images"]) < POOL
    for v in views[1:]:
        assert v["images"] == first["images"], v["method"]
        assert v["steps"] == first["steps"], v["method"]
        assert v["effective_batch"] == first["effective_batch"] == 300, v["method"]


def test_the_schedules_have_one_shape(pool, tmp_path):
    """Warm-up ends and the cosine reaches ``MIN_LR`` at the same optimiser steps for all (I-JEPA's
    own per-step schedule, set through its hook, one step earlier: upstream's 1-based count)."""
    for name in ("mae_compare", "ijepa_compare", "sarjepa_compare"):
        view = _engine_view(name, pool, tmp_path, epoch=0)
        run, plan = view["run"], view["plan"]
        cfg = run.cfg
        warm = int(cfg.TRAIN.WARMUP_EPOCHS * plan.steps_per_epoch)
        lrs = []
        for epoch in range(cfg.TRAIN.EPOCHS):
            plan.epoch = epoch
            t = epoch  # the engine's fractional epoch at a step's first micro-batch
            lr = lr_at(t, plan.lr_peak, plan.min_lr, plan.warmup_epochs, plan.epochs)
            for g in run.optimizer.param_groups:
                g["lr"] = lr
            run.method.before_optimizer_step(run.optimizer, plan, 0)
            lrs.append(run.optimizer.param_groups[0]["lr"])
        peak = max(lrs)
        # upstream I-JEPA counts steps from 1 (its schedulers step before the first update), so
        # it reaches the peak one optimiser step earlier; the span and the end are the same
        top = lrs.index(peak)
        assert top == warm - (name == "ijepa_compare"), name
        assert peak == pytest.approx(run.lr_peak), name
        assert lrs[-1] == pytest.approx(cfg.TRAIN.MIN_LR, abs=peak * 1e-4), name
        assert all(a <= b for a, b in zip(lrs[:top], lrs[1 : top + 1])), name
        assert all(a >= b for a, b in zip(lrs[top:], lrs[top + 1 :])), name
