"""``sarjepa splits``: write the few-shot split a benchmark cell uses, as JSON."""

from __future__ import annotations

import argparse
import sys

from sarjepa.benchmark import flags
from sarjepa.benchmark.docs_lists import Listed

DESCRIPTION = Listed("""\
List the dataset, draw the K-shot split of one seed exactly as `sarjepa train` does, and write
{"train": [...], "val": [...], "test": [...]}: image paths relative to the dataset folder (with /
separators) in the order the harness uses them. The file's sha256 is the split_hash recorded in
result.json. Datasets (any letter case): {datasets}.
Trailing KEY VALUE pairs override the config (e.g. DATASET.SARFOLDER.TEST_FRACTION 0.8).""")


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "splits",
        help="write the train/val/test file lists of a K-shot split as JSON",
        description=DESCRIPTION,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--dataset", required=True, metavar="NAME", help="DATASET.NAME (listed above)")
    flags.add(
        p, "--data", "--root", required=True, metavar="ROOT", help="folder holding the dataset"
    )
    p.add_argument("--shots", type=int, required=True, metavar="K", help="images per class")
    p.add_argument("--seed", type=int, required=True, metavar="S", help="run seed (0 is a seed)")
    p.add_argument("--out", default="-", metavar="FILE", help="output JSON (default: stdout)")
    p.add_argument(
        "--strict-shots",
        action="store_true",
        help="fail if a class has fewer than K training images (default: keep all, warn)",
    )
    p.add_argument("--cache-dir", default="", metavar="DIR", help="split cache (RUN.CACHE_DIR)")
    flags.add(
        p,
        "--dataset-config",
        "--dataset-config-file",
        default="",
        metavar="FILE",
        help=Listed("optional dataset YAML: a path or a bundled name ({dataset_configs})"),
    )
    p.add_argument("opts", nargs=argparse.REMAINDER, help="KEY VALUE config overrides")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Build the dataset split and write its file lists; returns the exit status."""
    from sarjepa.benchmark.config import load_cfg
    from sarjepa.benchmark.datasets import build_dataset
    from sarjepa.benchmark.datasets.splits import split_json_bytes

    overrides = {
        "DATASET.NAME": args.dataset,
        "DATASET.ROOT": args.data,
        "DATASET.NUM_SHOTS": args.shots,
        "SEED": args.seed,
        "RUN.STRICT_SHOTS": bool(args.strict_shots),
    }
    if args.cache_dir:
        overrides["RUN.CACHE_DIR"] = args.cache_dir
    cfg = load_cfg(None, args.dataset_config or None, args.opts, overrides=overrides)
    dataset = build_dataset(cfg)
    lists = dataset.split_lists()
    data = split_json_bytes(lists)
    if args.out == "-":
        sys.stdout.write(data.decode("utf-8"))
    else:
        _write_atomic(args.out, data)
    print(
        f"{type(dataset).__name__} {args.shots}-shot seed {args.seed}: train {len(lists['train'])}"
        f", val {len(lists['val'])}, test {len(lists['test'])}, {dataset.num_classes} classes"
        f" -> {args.out} (sha256 {dataset.split_info['split_hash']})",
        file=sys.stderr,
    )
    return 0


def _write_atomic(path: str, data: bytes) -> None:
    from sarjepa.benchmark.core.io import atomic_write_bytes

    atomic_write_bytes(data, path)
