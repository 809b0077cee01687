"""Benchmark config: Dassl key names, merge order, bundled YAMLs, key typos and bad values."""

from __future__ import annotations

import pytest
from sarjepa.benchmark import config as bconfig
from sarjepa.benchmark.config import flat_keys, get_cfg_default, load_cfg, resolve_config_file
from sarjepa.benchmark.core.errors import SarjepaError
from yacs.config import CfgNode as CN

DASSL_KEYS = [
    "OUTPUT_DIR",
    "SEED",
    "DATASET.ROOT",
    "DATASET.NAME",
    "DATASET.NUM_SHOTS",
    "DATASET.SUBSAMPLE_CLASSES",
    "DATASET.VAL_PERCENT",
    "DATALOADER.NUM_WORKERS",
    "DATALOADER.TRAIN_X.BATCH_SIZE",
    "DATALOADER.TRAIN_X.SAMPLER",
    "DATALOADER.TEST.BATCH_SIZE",
    "INPUT.SIZE",
    "INPUT.INTERPOLATION",
    "INPUT.TRANSFORMS",
    "INPUT.PIXEL_MEAN",
    "INPUT.PIXEL_STD",
    "INPUT.CROP_SIZE",
    "OPTIM.NAME",
    "OPTIM.LR",
    "OPTIM.WEIGHT_DECAY",
    "OPTIM.MAX_EPOCH",
    "OPTIM.LR_SCHEDULER",
    "OPTIM.WARMUP_EPOCH",
    "OPTIM.WARMUP_TYPE",
    "OPTIM.WARMUP_CONS_LR",
    "OPTIM.ADAM_BETA1",
    "OPTIM.ADAM_BETA2",
    "TRAIN.PRINT_FREQ",
    "TRAIN.CHECKPOINT_FREQ",
    "TEST.FINAL_MODEL",
    "TEST.EVALUATOR",
    "TEST.PER_CLASS_RESULT",
    "MODEL.INIT_WEIGHTS",
    "MODEL.BACKBONE.NAME",
    "TRAINER.NAME",
    "RUN.METHOD",
    "RUN.CACHE_DIR",
    "RUN.DEVICE",
    "RUN.AMP",
    "RUN.STRICT_SHOTS",
    "RUN.PROGRESS",
    "MODEL.WEIGHTS_KEY",
    "MODEL.POOL",
    "MODEL.BACKBONE.EMBED_DIM",
    "MODEL.BACKBONE.DEPTH",
    "MODEL.BACKBONE.NUM_HEADS",
    "MODEL.BACKBONE.PATCH_SIZE",
    "MODEL.BACKBONE.IN_CHANS",
    "MODEL.BACKBONE.POS_EMBED",
    "MODEL.BACKBONE.CLASS_TOKEN",
]


def test_defaults_hold_the_shared_keys():
    cfg = get_cfg_default()
    assert set(DASSL_KEYS) <= set(flat_keys(cfg))
    assert cfg.INPUT.SIZE == (224, 224) and cfg.INPUT.CROP_SIZE == 128
    assert cfg.INPUT.INTERPOLATION == "bicubic" and list(cfg.INPUT.TRANSFORMS) == []
    assert cfg.MODEL.BACKBONE.NAME == "vit_base_patch16" and cfg.SEED == -1
    assert not cfg.is_frozen()
    cfg.SEED = 3
    assert get_cfg_default().SEED == -1  # a fresh copy each time


@pytest.mark.parametrize("trainer", ["MIM_finetune", "MIM_linear"])
def test_authors_settings(trainer):
    cfg = load_cfg(f"configs/trainers/{trainer}/vit_b16.yaml", "configs/datasets/MSTAR_SOC.yaml")
    assert cfg.is_frozen() and cfg.DATASET.NAME == "MSTAR_SOC" and trainer == cfg.TRAINER.NAME
    got = (
        cfg.OPTIM.NAME,
        cfg.OPTIM.LR,
        cfg.OPTIM.WEIGHT_DECAY,
        cfg.OPTIM.MAX_EPOCH,
        cfg.OPTIM.LR_SCHEDULER,
        cfg.OPTIM.WARMUP_EPOCH,
        cfg.OPTIM.WARMUP_TYPE,
        cfg.OPTIM.WARMUP_CONS_LR,
        (cfg.OPTIM.ADAM_BETA1, cfg.OPTIM.ADAM_BETA2),
        cfg.DATALOADER.TRAIN_X.BATCH_SIZE,
        cfg.DATALOADER.TEST.BATCH_SIZE,
        tuple(cfg.INPUT.SIZE),
        cfg.INPUT.CROP_SIZE,
        list(cfg.INPUT.TRANSFORMS),
    )
    expected = ("adamw", 1e-3, 5e-4, 40, "cosine", 2, "constant", 1e-5, (0.9, 0.999), 50, 50)
    assert got == expected + ((224, 224), 128, [])
    tiny = load_cfg(f"{trainer}/vit_tiny_cpu", "sar_acd")
    assert tiny.OPTIM.MAX_EPOCH <= 5 and tiny.MODEL.BACKBONE.DEPTH <= 2
    assert tiny.DATASET.NAME == "SAR_ACD" and tiny.OPTIM.WARMUP_TYPE == "constant"


def test_merge_order_dataset_then_trainer_then_overrides_then_opts(tmp_path):
    ds = tmp_path / "ds.yaml"
    ds.write_text("DATASET:\n  NAME: SAR_ACD\nOPTIM:\n  LR: 0.5\n  MAX_EPOCH: 7\n")
    tr = tmp_path / "tr.yaml"
    tr.write_text("OPTIM:\n  LR: 0.25\nSEED: 4\n")
    cfg = load_cfg(tr, ds, ["SEED", "9", "INPUT.SIZE", "(64, 64)"], overrides={"SEED": 0})
    assert (cfg.DATASET.NAME, cfg.OPTIM.LR, cfg.OPTIM.MAX_EPOCH) == ("SAR_ACD", 0.25, 7)
    assert cfg.SEED == 9 and cfg.INPUT.SIZE == (64, 64)
    assert load_cfg(tr, ds, overrides={"SEED": 0}).SEED == 0
    with pytest.raises(AttributeError):
        cfg.SEED = 1  # frozen


def test_typo_in_opts_and_file_names_key_and_suggests(tmp_path):
    with pytest.raises(
        SarjepaError, match=r"unknown config key 'OPTIM.LRR' \(did you mean 'OPTIM.LR'"
    ):
        load_cfg(None, None, ["OPTIM.LRR", "0.1"])
    bad = tmp_path / "bad.yaml"
    bad.write_text("DATALOADER:\n  TRAIN_X:\n    BATCH_SIZ: 8\n")
    with pytest.raises(SarjepaError) as exc:
        load_cfg(bad)
    msg = str(exc.value)
    assert "bad.yaml" in msg and "DATALOADER.TRAIN_X.BATCH_SIZ" in msg
    assert "did you mean 'DATALOADER.TRAIN_X.BATCH_SIZE'" in msg and "\n" not in msg


def test_bad_values_and_files():
    with pytest.raises(SarjepaError, match="OPTIM.MAX_EPOCH expects int"):
        load_cfg(None, None, ["OPTIM.MAX_EPOCH", "forty"])
    with pytest.raises(SarjepaError, match="KEY VALUE pairs"):
        load_cfg(None, None, ["SEED"])
    with pytest.raises(SarjepaError, match="'OPTIM' is a group"):
        load_cfg(None, None, ["OPTIM", "1"])
    with pytest.raises(SarjepaError, match="did you mean 'datasets/mstar_soc.yaml'"):
        load_cfg(None, "mstar_sco")
    with pytest.raises(SarjepaError, match="ambiguous"):
        resolve_config_file("vit_b16")


def test_friendly_coercions():
    cfg = load_cfg(None, None, ["OPTIM.LR", "1", "MODEL.BACKBONE.CLASS_TOKEN", "False"])
    assert cfg.OPTIM.LR == 1.0 and isinstance(cfg.OPTIM.LR, float)
    assert cfg.MODEL.BACKBONE.CLASS_TOKEN == "false"
    cfg = load_cfg(None, None, ["RUN.STRICT_SHOTS", "true", "INPUT.TRANSFORMS", "random_flip"])
    assert cfg.RUN.STRICT_SHOTS is True and list(cfg.INPUT.TRANSFORMS) == ["random_flip"]


def test_register_cfg_extension(monkeypatch):
    monkeypatch.setattr(bconfig, "_EXTENSIONS", [])

    @bconfig.register_cfg_extension
    def add(cfg):
        cfg.TRAINER.MY = CN()
        cfg.TRAINER.MY.ALPHA = 0.5

    assert load_cfg(None, None, ["TRAINER.MY.ALPHA", "0.25"]).TRAINER.MY.ALPHA == 0.25


def test_the_cells_config_dump_is_yacs_dump_text():
    """A cell's log holds its config as ``dump_cfg`` writes it (libyaml's emitter): the same
    text as yacs' ``cfg.dump()``, for the whole default config (tuples, lists, floats, bools,
    empty strings, nested nodes) and for odd values."""
    import sarjepa.benchmark.trainers  # noqa: F401  (registers the trainers' config keys)
    from sarjepa.benchmark.core.configs import dump_cfg

    cfg = get_cfg_default()
    cfg.INPUT.SIZE = (112, 112)
    cfg.DATASET.ROOT = "a path: with # and 'quotes'"
    cfg.OPTIM.LR = 1e-7
    cfg.extra = CN({"n": None, "x": [0.1, 2, "s"], "deep": CN({"b": True, "f": float("inf")})})
    assert dump_cfg(cfg) == cfg.dump()
