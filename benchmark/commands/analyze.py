"""``sarjepa analyze``: analyses of pretrained encoders.

``sarjepa analyze attention-distance``: mean attention distance in pixels per layer and head
(SAR-JEPA's Fig. 6), from any checkpoint the benchmark loads, on images preprocessed as the
few-shot protocol does. The definition is :mod:`benchmark.attention_distance`'s.
"""

from __future__ import annotations

import argparse

from sarjepa.benchmark import flags

DISTANCE_DESCRIPTION = """\
Load a checkpoint as `sarjepa features` does (ours, SAR-JEPA/LoMaR, MAE/FG-MAE, I-JEPA, a bare
state dict; `none` = a random init of MODEL.BACKBONE.NAME, seeded by SEED when SEED >= 0),
preprocess the images as the few-shot protocol (grey decode, INPUT.CROP_SIZE centre crop, resize
to --image-size), run the encoder in fp32 and record every block's attention probabilities.
For each layer and head: the attention of every query patch on the patch tokens (the CLS row and
column dropped, each row renormalised to sum 1) weighted by the distance between patch centres,
averaged over query patches and images, in pixels of the network input. Writes
OUT/attention_distance.csv (layer,head,distance_px; layer 1 = blocks.0) and
OUT/attention_distance.png (one dot per head, a line through the mean). Trailing KEY VALUE pairs
override the benchmark config (e.g. MODEL.WEIGHTS_KEY encoder, MODEL.BACKBONE.DEPTH 2).
"""


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``analyze`` subcommand and its analyses."""
    p = subparsers.add_parser(
        "analyze",
        help="analyses of pretrained encoders (attention distance)",
        description="Analyses of pretrained encoders. See `sarjepa analyze ANALYSIS --help`.",
    )
    p.set_defaults(func=lambda _args: p.print_help() or 1)
    sub = p.add_subparsers(dest="analysis", metavar="ANALYSIS")
    a = sub.add_parser(
        "attention-distance",
        help="mean attention distance per layer and head (CSV + plot)",
        description=DISTANCE_DESCRIPTION,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    a.add_argument("--weights", required=True, help="checkpoint file (MODEL.INIT_WEIGHTS) or none")
    flags.add(
        a, "--data", "--images", nargs="+", required=True, metavar="PATH", help="images or folders"
    )
    a.add_argument("--out", default=".", metavar="DIR", help="output folder (created; default .)")
    a.add_argument("--image-size", type=int, default=224, help="network input side in px (224)")
    a.add_argument("--device", default="auto", help="auto | cpu | cuda | cuda:N (auto)")
    a.add_argument(
        "--limit", type=int, default=0, metavar="N", help="first N images only (0 = all)"
    )
    a.add_argument("--batch-size", type=int, default=16, help="images per forward pass (16)")
    a.add_argument("opts", nargs=argparse.REMAINDER, metavar="KEY VALUE", help="config overrides")
    a.set_defaults(func=run_attention_distance)


def _checked_args(args: argparse.Namespace) -> None:
    from sarjepa.benchmark.core.errors import SarjepaError, check_trailing_opts

    for flag, value, low in (
        ("--image-size", args.image_size, 1),
        ("--batch-size", args.batch_size, 1),
        ("--limit", args.limit, 0),
    ):
        if value < low:
            raise SarjepaError(f"{flag} must be >= {low}, got {value}")
    check_trailing_opts(args.opts)


def _batches(files: list[str], transform, batch_size: int):
    """Preprocessed ``(B, 1, S, S)`` batches of ``files``, in order, decoded in this process."""
    import torch
    from sarjepa.benchmark.features import ImageDataset

    data = ImageDataset(files, None, transform)
    for start in range(0, len(files), batch_size):
        idx = range(start, min(start + batch_size, len(files)))
        yield torch.stack([data[i][0] for i in idx])


def run_attention_distance(args: argparse.Namespace) -> int:
    """Run ``sarjepa analyze attention-distance`` (see :data:`DISTANCE_DESCRIPTION`)."""
    from pathlib import Path

    from sarjepa.benchmark.attention_distance import (
        attention_distances,
        uniform_distance,
        write_outputs,
    )
    from sarjepa.benchmark.backbone import checkpoint_from_cfg, encoder_from_cfg
    from sarjepa.benchmark.commands.features import _expand
    from sarjepa.benchmark.config import load_cfg
    from sarjepa.benchmark.core.errors import SarjepaError
    from sarjepa.benchmark.core.runtime import resolve_device, seed_everything
    from sarjepa.dassl_patches.transforms import build_transform

    _checked_args(args)
    random_init = args.weights.strip().lower() == "none"
    overrides = {
        "MODEL.INIT_WEIGHTS": "" if random_init else args.weights,
        "INPUT.SIZE": (args.image_size, args.image_size),
    }
    cfg = load_cfg(opts=args.opts, overrides=overrides)
    checkpoint = checkpoint_from_cfg(cfg)  # checked once, here
    device = resolve_device(args.device, "--device")
    files = _expand(args.data)
    if args.limit:
        files = files[: args.limit]
    out = Path(args.out)
    if out.exists() and not out.is_dir():
        raise SarjepaError(f"--out '{args.out}' exists and is not a folder")
    if random_init and int(cfg.SEED) >= 0:
        seed_everything(int(cfg.SEED))
    weights = encoder_from_cfg(cfg, checkpoint=checkpoint)
    encoder = weights.encoder
    patch = int(encoder.patch_size)
    if args.image_size % patch:
        raise SarjepaError(f"--image-size {args.image_size} is not a multiple of the patch {patch}")
    batches = _batches(files, build_transform(cfg, is_train=False), args.batch_size)
    table, n = attention_distances(encoder, batches, device)
    out.mkdir(parents=True, exist_ok=True)
    name = "random init" if random_init else "/".join(Path(args.weights).parts[-2:])
    title = f"{name}: {n} image(s), {args.image_size} px input, patch {patch}"
    grid = (args.image_size // patch, args.image_size // patch)
    csv_path, png_path = write_outputs(table, out, title, uniform_distance(grid, patch))
    print(
        f"wrote {csv_path} ({table.shape[0]} layers x {table.shape[1]} heads, {n} images, "
        f"checkpoint format {weights.format}) and {png_path}; mean distance per layer (px): "
        + " ".join(f"{v:.1f}" for v in table.mean(axis=1))
    )
    return 0
