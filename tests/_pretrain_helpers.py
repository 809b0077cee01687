"""Shared fixtures of the pretraining tests: tiny synthetic SAR-like chips and a tiny config."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image


def write_chips(folder: Path, n: int = 16, seed: int = 0, size: int = 72) -> list[Path]:
    """Write ``n`` gray PNG chips (speckled background, a bright blob and a shadow)."""
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    yy, xx = np.mgrid[0:size, 0:size]
    paths = []
    for i in range(n):
        cy, cx = rng.uniform(size * 0.3, size * 0.7, 2)
        r = rng.uniform(size * 0.08, size * 0.2)
        blob = np.exp(-((yy - cy) ** 2 + (xx - cx) ** 2) / (2 * r * r))
        shadow = np.exp(-((yy - cy - 2 * r) ** 2 + (xx - cx) ** 2) / (2 * r * r))
        speckle = rng.gamma(4.0, 0.25, (size, size))
        img = (0.25 + 0.7 * blob - 0.2 * shadow) * speckle
        arr = np.clip(img * 200, 0, 255).astype(np.uint8)
        p = folder / f"sub{i % 2}" / f"chip_{i:03d}.png"
        p.parent.mkdir(exist_ok=True)
        Image.fromarray(arr).save(p)
        paths.append(p)
    return paths


def tiny_opts(**extra) -> list[str]:
    """KEY VALUE overrides for a very small model on 64 x 64 crops (4 x 4 patch grid)."""
    opts = {
        "MODEL.ARCH": "vit_tiny_patch16",
        "MODEL.EMBED_DIM": 32,
        "MODEL.DEPTH": 2,
        "MODEL.NUM_HEADS": 2,
        "PREDICTOR.EMBED_DIM": 32,
        "PREDICTOR.DEPTH": 1,
        "PREDICTOR.NUM_HEADS": 2,
        "INPUT.SIZE": 64,
        "MASK.WINDOW_SIZE": 3,
        "MASK.NUM_WINDOW": 2,
        "TRAIN.BATCH_SIZE": 8,
        "TRAIN.EPOCHS": 2,
        "TRAIN.WARMUP_EPOCHS": 1,
        "TRAIN.BLR": 0.01,
        "TRAIN.SAVE_FREQ": 1,
        "TRAIN.PROGRESS": False,
        "TRAIN.TENSORBOARD": False,
        "DATA.NUM_WORKERS": 0,
        "DEVICE": "cpu",
    }
    opts.update(extra)
    out: list[str] = []
    for k, v in opts.items():
        out += [k, str(v)]
    return out


def tiny_cfg(
    config: str = "sarjepa_tiny", data: Path | None = None, out: Path | None = None, **extra
):
    """A loaded tiny config with DATA_DIR / OUTPUT_DIR set."""
    from sarjepa.pretrain.config import load_config

    cfg = load_config(config, tiny_opts(**extra))
    cfg.DATA_DIR = str(data) if data else ""
    cfg.OUTPUT_DIR = str(out) if out else ""
    return cfg


def pretrain_then_features(config: str, chips: Path, tmp_path: Path, method_name: str):
    """`sarjepa pretrain --config <config>` for one epoch, then `sarjepa features` on two random
    112 x 112 8-bit images. Returns ``(checkpoint path, images (2, 1, 112, 112) in [0, 1],
    features array)``; checks the sidecar names ``method_name``."""
    import torch
    from sarjepa.benchmark.cli import main
    from sarjepa.pretrain import checkpoints as ck

    out = tmp_path / "run"
    argv = ["pretrain", "--config", config, "--data", str(chips), "--output", str(out)]
    argv += ["--no-progress", "TRAIN.EPOCHS", "1", "TRAIN.BATCH_SIZE", "8", "DEVICE", "cpu"]
    assert main(argv) == 0
    path = out / "checkpoint-0.pth"
    assert ck.read_sidecar(path)["method"] == method_name
    folder = tmp_path / "imgs"
    folder.mkdir()
    arrays = np.random.default_rng(0).integers(0, 256, (2, 112, 112), dtype=np.uint8)
    for i, a in enumerate(arrays):
        Image.fromarray(a).save(folder / f"{i}.png")
    npz = tmp_path / "f.npz"
    argv = ["features", "--weights", str(path), "--images", str(folder), "--out", str(npz)]
    argv += ["INPUT.CROP_SIZE", "0", "INPUT.SIZE", "(112, 112)", "RUN.PROGRESS", "False"]
    assert main(argv) == 0
    with np.load(npz) as z:
        feats = z["features"]
    return path, torch.from_numpy(arrays).float().div(255).unsqueeze(1), feats
