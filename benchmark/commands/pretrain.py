"""``sarjepa pretrain``: self-supervised pretraining (SAR-JEPA, LoMaR variants, ...)."""

from __future__ import annotations

import argparse

from sarjepa.benchmark import flags
from sarjepa.benchmark.docs_lists import Listed

DESCRIPTION = Listed("""\
Pretrain a ViT on a folder of unlabeled SAR images (searched recursively; 8- or 16-bit; colour is
converted to gray). Writes OUTPUT/checkpoint-<epoch>.pth (the authors' dict format) with a JSON
sidecar, log.txt (one JSON line per epoch) and config.yaml.
Trailing KEY VALUE pairs override the config (e.g. TRAIN.EPOCHS 100 TRAIN.BATCH_SIZE 64).
Several GPUs: torchrun --nproc_per_node N -m sarjepa pretrain ...
Image files (any case): {image_extensions}.
Methods (METHOD.NAME): {methods}.
Bundled configs (--config NAME; <method>_vit_b16 is a method's upstream recipe, sarjepa_vit_b16
the paper's, <method>_compare the comparison preset: every method on SAR-JEPA's data, epochs,
effective batch and schedule, PROTOCOL.md#comparison-preset; <method>_tiny a CPU smoke config):
{pretrain_configs}.""")


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "pretrain",
        help="self-supervised pretraining of a ViT on unlabeled SAR images",
        description=DESCRIPTION,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument(
        "--config",
        default="sarjepa_vit_b16",
        metavar="FILE",
        help="YAML config, or the name of a bundled one (default: sarjepa_vit_b16)",
    )
    p.add_argument("--data", required=True, metavar="DIR", help="folder of unlabeled images")
    flags.add(p, "--out", "--output", required=True, metavar="DIR", help="output folder")
    p.add_argument(
        "--resume",
        default="",
        metavar="auto|PATH",
        help="continue from the latest checkpoint in --out (auto) or from PATH",
    )
    p.add_argument("--skip-corrupt", action="store_true", help="log and skip unreadable images")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.add_argument(
        "--check-root",
        default="",
        metavar="DIR",
        help="before training, warn if --data holds a test image of a registered dataset under "
        "DIR (as `sarjepa pool-check`; off by default)",
    )
    p.add_argument("opts", nargs=argparse.REMAINDER, metavar="KEY VALUE", help="config overrides")
    p.set_defaults(func=run)


def run(args) -> int:
    from sarjepa.pretrain.config import load_config
    from sarjepa.pretrain.train import train

    cfg = load_config(args.config, args.opts)
    if args.check_root:
        warn_on_overlap(args.data, args.check_root, progress=not args.no_progress)
    cfg.DATA_DIR = args.data
    cfg.OUTPUT_DIR = args.out
    if args.skip_corrupt:
        cfg.DATA.SKIP_CORRUPT = True
    if args.no_progress:
        cfg.TRAIN.PROGRESS = False
    summary = train(cfg, resume=args.resume)
    if summary.get("rank", 0) != 0:  # under torchrun, rank 0 reports for all
        return 0
    if summary["epochs_run"] == 0:
        print(
            f"nothing to do: epoch {summary['last_epoch']} was the last ({summary['checkpoint']})"
        )
    else:
        print(
            f"done: epochs up to {summary['last_epoch']}, final loss {summary['loss']:.5f}, "
            f"{summary['img_per_s']:.1f} img/s, checkpoint {summary['checkpoint']}"
        )
    return 0


def warn_on_overlap(data: str, root: str, progress: bool = True) -> int:
    """Warn on stderr (rank 0 only) when ``data`` holds test images of the datasets under ``root``.

    Returns:
        The number of overlapping pool files (0 on ranks other than 0).
    """
    import os
    import sys

    from sarjepa.benchmark.datasets.pool_check import check_pool

    if int(os.environ.get("RANK", "0")) != 0:
        return 0
    result = check_pool(data, root, progress=progress and sys.stderr.isatty())
    for s in result.test_sets:
        files = result.overlapping_files(s.name)
        if files:
            print(
                f"warning: pretraining data '{data}' holds {len(files)} image(s) of the test set "
                f"{s.name} under '{root}' (e.g. {files[0]}); list them with: sarjepa pool-check "
                f"--data {data} --check-root {root}",
                file=sys.stderr,
            )
    return len(result.overlapping_files())
