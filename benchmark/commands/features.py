"""``sarjepa features``: backbone features of images with the benchmark preprocessing."""

from __future__ import annotations

import argparse

from sarjepa.benchmark import flags
from sarjepa.benchmark.docs_lists import IMAGE_PATHS


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "features",
        help="extract pooled backbone features of images into an .npz",
        description="Load any supported checkpoint (ours, SAR-JEPA/LoMaR, MAE/FG-MAE, I-JEPA), "
        "preprocess each image as the benchmark does (grey decode, INPUT.CROP_SIZE centre crop, "
        "resize to INPUT.SIZE) and write OUT.npz with 'files' (N,) and 'features' (N, D) "
        "float32. Folders given to --data are walked (sorted) for image files. Trailing KEY "
        "VALUE pairs override the benchmark config (e.g. MODEL.WEIGHTS_KEY encoder, RUN.DEVICE "
        "cpu, RUN.AMP off).",
    )
    p.add_argument(
        "--weights",
        required=True,
        help="checkpoint file (MODEL.INIT_WEIGHTS), or none for a random init of "
        "MODEL.BACKBONE.NAME (as in grid; seeded by SEED when SEED >= 0)",
    )
    flags.add(p, "--data", "--images", nargs="+", required=True, metavar="PATH", help=IMAGE_PATHS)
    p.add_argument("--out", required=True, help="output .npz file")
    p.add_argument("--pool", choices=("cls", "mean"), default=None, help="default: the model's")
    p.add_argument("--batch-size", type=int, default=64, help="images per forward pass")
    p.add_argument("opts", nargs=argparse.REMAINDER, metavar="KEY VALUE", help="config overrides")
    p.set_defaults(func=run)


def _expand(paths: list[str]) -> list[str]:
    import re
    from pathlib import Path

    from sarjepa.benchmark.core.errors import SarjepaError
    from sarjepa.benchmark.core.images import expand_image_paths

    for raw in paths:
        if not Path(raw).exists() and re.fullmatch(r"[A-Z][A-Z0-9_]*(\.[A-Z0-9_]+)+", raw):
            raise SarjepaError(
                f"'{raw}' looks like a config key, not an image: put the KEY VALUE overrides "
                "after all options (e.g. after --out)"
            )
    return expand_image_paths(paths)


def run(args: argparse.Namespace) -> int:
    import sys
    from pathlib import Path

    import numpy as np
    from sarjepa.benchmark.backbone import checkpoint_from_cfg, encoder_from_cfg
    from sarjepa.benchmark.cell import device_and_amp
    from sarjepa.benchmark.config import load_cfg
    from sarjepa.benchmark.core.errors import SarjepaError, check_trailing_opts
    from sarjepa.benchmark.features import Backbone, extract
    from sarjepa.dassl_patches.transforms import build_transform

    if args.batch_size < 1:
        raise SarjepaError("--batch-size must be >= 1")
    random_init = args.weights.strip().lower() == "none"
    overrides = {"MODEL.INIT_WEIGHTS": "" if random_init else args.weights}
    if args.pool:
        overrides["MODEL.POOL"] = args.pool
    check_trailing_opts(args.opts)
    cfg = load_cfg(opts=args.opts, overrides=overrides)
    checkpoint = checkpoint_from_cfg(cfg)  # checked once, here
    files = _expand(args.data)
    out = Path(args.out)
    if out.suffix != ".npz":
        raise SarjepaError(f"--out '{args.out}' must end with .npz")
    if out.parent and not out.parent.is_dir():
        raise SarjepaError(f"output folder '{out.parent}' does not exist")
    device, amp = device_and_amp(cfg)
    if random_init and int(cfg.SEED) >= 0:
        from sarjepa.benchmark.core.runtime import seed_everything

        seed_everything(int(cfg.SEED))  # the random weights of a grid cell with this seed
    weights = encoder_from_cfg(cfg, checkpoint=checkpoint)
    backbone = Backbone(weights.encoder).to(device)
    feats = extract(
        backbone,
        files,
        build_transform(cfg, is_train=False),
        device,
        amp=amp,
        batch_size=args.batch_size,
        num_workers=int(cfg.DATALOADER.NUM_WORKERS),
        progress=bool(cfg.RUN.PROGRESS) and sys.stderr.isatty(),
    )
    from sarjepa.benchmark.core.io import atomic_numpy_save

    atomic_numpy_save({"files": np.asarray(files, dtype=str), "features": feats.numpy()}, out)
    print(
        f"wrote {out}: {len(files)} x {feats.shape[1]} features "
        f"(checkpoint format {weights.format}, amp {amp})"
    )
    return 0
