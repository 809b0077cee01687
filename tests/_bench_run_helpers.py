"""Fixtures for the trainer/engine/weights tests: an easy MSTAR_SOC folder, tiny ViTs, and fake
third-party checkpoints.

The fake checkpoints reproduce the *formats* of the real ones (key names, prefixes, extra
method keys, ``argparse.Namespace`` args, ``pos_embed`` shapes) around the weights of one of our
own tiny encoders, so loading them must give back exactly that encoder.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image
from sarjepa.pretrain.models import VisionTransformer, build_vit

MSTAR_CLASSES = ["BMP2", "BTR70", "T72", "BTR60", "2S1", "BRDM2", "D7", "T62", "ZIL131", "ZSU234"]
TINY = {"embed_dim": 32, "depth": 2, "num_heads": 2, "patch_size": 8, "img_size": 32}


def make_easy_mstar(
    root: Path, n_train: int = 10, n_test: int = 3, size: int = 32, seed: int = 0
) -> Path:
    """Write ``root/MSTAR_SOC/{TRAIN,TEST}/<class>/*.jpeg``, an easy set: class ``c`` tiles a fixed
    random 8x8 pattern of its own over the image (aligned with 8-pixel patches), plus Gaussian
    noise (sigma 12). Returns ``root``."""
    rng = np.random.default_rng(seed)
    tiles = np.random.default_rng(1234).uniform(40, 215, (len(MSTAR_CLASSES), 8, 8))
    reps = -(-size // 8)
    for split, n in (("TRAIN", n_train), ("TEST", n_test)):
        for c, name in enumerate(MSTAR_CLASSES):
            d = root / "MSTAR_SOC" / split / name
            d.mkdir(parents=True, exist_ok=True)
            base = np.tile(tiles[c], (reps, reps))[:size, :size]
            for i in range(n):
                img = np.clip(base + rng.normal(0, 12, (size, size)), 0, 255)
                Image.fromarray(img.astype(np.uint8)).save(d / f"{name}_{i:03d}.jpeg", quality=95)
    return root


def tiny_vit(seed: int = 0, **overrides: Any) -> VisionTransformer:
    """A tiny encoder with non-trivial weights everywhere (iRPE tables and norms included)."""
    torch.manual_seed(seed)
    model = build_vit({**TINY, **overrides})
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name != "pos_embed":
                p.add_(torch.randn_like(p) * 0.05)
    return model.eval()


def features_of(model: VisionTransformer, x: torch.Tensor) -> torch.Tensor:
    """The model's own pooled feature ``(B, D)``."""
    with torch.no_grad():
        return model.pool(model.forward_features(x))


def prefixed(sd: dict[str, torch.Tensor], prefix: str) -> dict[str, torch.Tensor]:
    return {prefix + k: v.clone() for k, v in sd.items()}


def method_keys(dim: int, dec: int = 16) -> dict[str, torch.Tensor]:
    """Decoder / predictor keys of a LoMaR-style pretraining model (dropped when loading)."""
    return {
        "mask_token": torch.randn(1, 1, dim),
        "encoder_pred.weight": torch.randn(dec, dim),
        "encoder_pred.bias": torch.randn(dec),
        "decoder_blocks.0.norm1.weight": torch.randn(dec),
        "decoder_norm.weight": torch.randn(dec),
        "decoder_pred.weight": torch.randn(64, dec),
    }


def save_sarjepa(model: VisionTransformer, path: Path) -> Path:
    """Our own format: ``checkpoint-<epoch>.pth`` + JSON sidecar."""
    sd = {**model.state_dict(), **method_keys(model.embed_dim)}
    args = {"arch": model.arch_dict(), "method": "sarjepa"}
    torch.save({"model": sd, "optimizer": {}, "epoch": 3, "scaler": None, "args": args}, path)
    meta = {
        "format": "sarjepa-pretrain/1",
        "method": "sarjepa",
        "target": "gf",
        "arch": model.arch_dict(),
        "input_size": 32,
        "in_chans": 1,
        "preprocessing": {},
        "data_fingerprint": "",
        "code_version": "test",
        "epoch": 3,
    }
    path.with_suffix(".json").write_text(json.dumps(meta))
    return path


def save_lomar(model: VisionTransformer, path: Path) -> Path:
    """The SAR-JEPA / LoMaR authors' format (iRPE encoder, unused pos_embed, GF buffers)."""
    d = model.embed_dim
    n = (model.img_size // model.patch_size) ** 2
    sd = {**model.state_dict(), **method_keys(d)}
    sd["pos_embed"] = torch.randn(1, 1 + n, d)  # allocated, never used by the encoder
    for s in range(1, 5):
        sd[f"sarfeature{s}.weight_x1"] = torch.ones(1, 1, 3, 3)
    args = argparse.Namespace(model="mae_vit_base_patch16", input_size=model.img_size, lr=1e-3)
    ckpt = {
        "model": prefixed(sd, "module."),
        "optimizer": {},
        "epoch": 200,
        "scaler": {},
        "args": args,
    }
    torch.save(ckpt, path)
    return path


def save_mae(model: VisionTransformer, path: Path) -> Path:
    """facebookresearch/mae format (sin-cos pos_embed with a CLS row, decoder keys, args)."""
    d = model.embed_dim
    sd = {
        **model.state_dict(),
        "mask_token": torch.randn(1, 1, 16),
        "decoder_embed.weight": torch.randn(16, d),
        "decoder_pos_embed": torch.randn(1, 17, 16),
        "decoder_pred.bias": torch.randn(64),
    }
    args = argparse.Namespace(model="mae_vit_tiny", input_size=model.img_size, norm_pix_loss=True)
    torch.save({"model": sd, "optimizer": {}, "epoch": 1, "scaler": {}, "args": args}, path)
    return path


def save_ijepa(target: VisionTransformer, online: VisionTransformer, path: Path) -> Path:
    """facebookresearch/ijepa format (module.-prefixed encoder / predictor / target_encoder)."""
    pred = {
        "predictor_embed.weight": torch.randn(16, target.embed_dim),
        "mask_token": torch.randn(1, 1, 16),
        "predictor_blocks.0.norm1.weight": torch.ones(16),
    }
    ckpt = {
        "encoder": prefixed(online.state_dict(), "module."),
        "predictor": prefixed(pred, "module."),
        "target_encoder": prefixed(target.state_dict(), "module."),
        "opt": {},
        "scaler": None,
        "epoch": 5,
        "loss": 0.5,
        "batch_size": 8,
        "world_size": 1,
        "lr": 1e-3,
    }
    torch.save(ckpt, path)
    return path


def tiny_overrides(**extra: Any) -> list[str]:
    """``KEY VALUE`` list for a fast CPU run on :func:`make_easy_mstar` data."""
    opts = {
        "DATASET.NUM_SHOTS": 4,
        "INPUT.CROP_SIZE": 32,
        "INPUT.SIZE": "(32, 32)",
        "MODEL.BACKBONE.NAME": "vit_tiny_patch16",
        "MODEL.BACKBONE.EMBED_DIM": 32,
        "MODEL.BACKBONE.DEPTH": 2,
        "MODEL.BACKBONE.NUM_HEADS": 2,
        "MODEL.BACKBONE.PATCH_SIZE": 8,
        "DATALOADER.TRAIN_X.BATCH_SIZE": 16,
        "DATALOADER.TEST.BATCH_SIZE": 16,
        "DATALOADER.NUM_WORKERS": 0,
        "OPTIM.MAX_EPOCH": 3,
        "OPTIM.WARMUP_EPOCH": 1,
        "RUN.PROGRESS": False,
    }
    opts.update(extra)
    out: list[str] = []
    for k, v in opts.items():
        out += [k, str(v)]
    return out


def grid_overrides(**extra: Any) -> list[str]:
    """:func:`tiny_overrides` for a grid: without ``DATASET.NUM_SHOTS``, which a grid sets per
    cell (``--shots``) and refuses as an override."""
    opts = tiny_overrides(**extra)
    i = opts.index("DATASET.NUM_SHOTS")
    return opts[:i] + opts[i + 2 :]


def tiny_cfg(root: Path, out: Path, cache: Path, trainer: str, seed: int = 0, **extra: Any):
    """A frozen run config for :func:`make_easy_mstar` data (``extra``: ``KEY=value`` with the
    dots of the key written as ``__``)."""
    import sarjepa.benchmark.trainers  # noqa: F401 - registers TRAINER.LINEAR
    from sarjepa.benchmark.config import load_cfg

    overrides = {
        "DATASET.ROOT": str(root),
        "OUTPUT_DIR": str(out),
        "SEED": seed,
        "TRAINER.NAME": trainer,
        "RUN.CACHE_DIR": str(cache),
    }
    extra = {k.replace("__", "."): v for k, v in extra.items()}
    return load_cfg(
        config_file=f"{trainer}/vit_b16",
        dataset_config_file="MSTAR_SOC",
        opts=tiny_overrides(**extra),
        overrides=overrides,
    )


def easy_data_with_checkpoint(tmp_path_factory) -> tuple[Path, Path]:
    """:func:`make_easy_mstar` (10 train / 3 test per class) and our checkpoint of a tiny ViT."""
    root = tmp_path_factory.mktemp("data")
    make_easy_mstar(root, n_train=10, n_test=3)
    ckpt = save_sarjepa(tiny_vit(seed=3), tmp_path_factory.mktemp("ckpt") / "checkpoint-3.pth")
    return root, ckpt
