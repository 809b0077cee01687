"""``sarjepa train``: run one few-shot cell Dassl-style (train, evaluate, write the run folder)."""

from __future__ import annotations

import argparse

from sarjepa.benchmark import flags
from sarjepa.benchmark.docs_lists import Listed


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "train",
        help="train and test one few-shot (dataset, shots, seed) cell with any trainer",
        description="Run one few-shot cell like Dassl's train.py: config = defaults <- "
        "--dataset-config <- --config <- flags <- trailing KEY VALUE overrides. Writes "
        "OUTPUT_DIR/log.txt (Dassl's log, ending with the '=> result' block) and, as its last "
        "act, OUTPUT_DIR/result.json. Example: sarjepa train --data data --seed 0 --trainer "
        "MIM_linear --dataset-config MSTAR_SOC --config MIM_linear/vit_b16 "
        "--out output/MSTAR_SOC/MIM_linear/sarjepa_10shots/seed0 DATASET.NUM_SHOTS 10 "
        "MODEL.INIT_WEIGHTS checkpoint-200.pth",
    )
    flags.add(
        p,
        "--data",
        "--root",
        default="",
        metavar="ROOT",
        help="folder holding the datasets (DATASET.ROOT)",
    )
    p.add_argument("--seed", type=int, default=None, help="run seed (SEED); 0 is a real seed")
    p.add_argument("--trainer", default="", help=Listed("TRAINER.NAME, one of: {trainers}"))
    flags.add(
        p,
        "--dataset-config",
        "--dataset-config-file",
        default="",
        help=Listed("dataset YAML: a path or a bundled name ({dataset_configs})"),
    )
    flags.add(
        p,
        "--config",
        "--config-file",
        default="",
        help=Listed("trainer YAML: a path or a bundled name ({trainer_configs})"),
    )
    flags.add(p, "--out", "--output-dir", default="", metavar="DIR", help="run folder (OUTPUT_DIR)")
    p.add_argument(
        "--strict-shots",
        action="store_true",
        help="a class with fewer than K training images is an error (RUN.STRICT_SHOTS)",
    )
    p.add_argument("opts", nargs=argparse.REMAINDER, metavar="KEY VALUE", help="config overrides")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    import sarjepa.benchmark.trainers  # noqa: F401 - registers the trainers' config keys
    from sarjepa.benchmark.backbone import checkpoint_from_cfg
    from sarjepa.benchmark.cell import run as run_cell
    from sarjepa.benchmark.config import load_cfg
    from sarjepa.benchmark.core.errors import check_trailing_opts

    overrides: dict = {}
    if args.data:
        overrides["DATASET.ROOT"] = args.data
    if args.out:
        overrides["OUTPUT_DIR"] = args.out
    if args.seed is not None:
        overrides["SEED"] = args.seed
    if args.trainer:
        overrides["TRAINER.NAME"] = args.trainer
    if args.strict_shots:
        overrides["RUN.STRICT_SHOTS"] = True
    check_trailing_opts(args.opts)
    cfg = load_cfg(args.config, args.dataset_config, args.opts, overrides)
    result = run_cell(cfg, checkpoint=checkpoint_from_cfg(cfg))  # checked once, here
    m = result["metrics"]
    print(
        f"{result['dataset']} {result['trainer']} {result['method']} K={result['shots']} "
        f"seed={result['seed']}: accuracy {m['accuracy']:.2f}%, macro-F1 {m['macro_f1']:.2f}% "
        f"-> {cfg.OUTPUT_DIR}"
    )
    return 0
