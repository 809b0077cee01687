"""``sarjepa train``: run one few-shot cell Dassl-style (train, evaluate, write the run folder)."""

from __future__ import annotations

import argparse

from sarjepa.benchmark.docs_lists import Listed


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "train",
        help="train and test one few-shot (dataset, shots, seed) cell with any trainer",
        description="Run one few-shot cell like Dassl's train.py: config = defaults <- "
        "--dataset-config-file <- --config-file <- flags <- trailing KEY VALUE overrides. Writes "
        "OUTPUT_DIR/log.txt (Dassl's log, ending with the '=> result' block) and, as its last "
        "act, OUTPUT_DIR/result.json. Example: sarjepa train --root data --seed 0 --trainer "
        "MIM_linear --dataset-config-file MSTAR_SOC --config-file MIM_linear/vit_b16 "
        "--output-dir output/MSTAR_SOC/MIM_linear/sarjepa_10shots/seed0 DATASET.NUM_SHOTS 10 "
        "MODEL.INIT_WEIGHTS checkpoint-200.pth",
    )
    p.add_argument("--root", default="", help="folder holding the datasets (DATASET.ROOT)")
    p.add_argument("--seed", type=int, default=None, help="run seed (SEED); 0 is a real seed")
    p.add_argument("--trainer", default="", help=Listed("TRAINER.NAME, one of: {trainers}"))
    p.add_argument(
        "--dataset-config-file",
        default="",
        help=Listed("dataset YAML: a path or a bundled name ({dataset_configs})"),
    )
    p.add_argument(
        "--config-file",
        default="",
        help=Listed("trainer YAML: a path or a bundled name ({trainer_configs})"),
    )
    p.add_argument("--output-dir", default="", help="run folder (OUTPUT_DIR)")
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
    if args.root:
        overrides["DATASET.ROOT"] = args.root
    if args.output_dir:
        overrides["OUTPUT_DIR"] = args.output_dir
    if args.seed is not None:
        overrides["SEED"] = args.seed
    if args.trainer:
        overrides["TRAINER.NAME"] = args.trainer
    if args.strict_shots:
        overrides["RUN.STRICT_SHOTS"] = True
    check_trailing_opts(args.opts)
    cfg = load_cfg(args.config_file, args.dataset_config_file, args.opts, overrides)
    result = run_cell(cfg, checkpoint=checkpoint_from_cfg(cfg))  # checked once, here
    m = result["metrics"]
    print(
        f"{result['dataset']} {result['trainer']} {result['method']} K={result['shots']} "
        f"seed={result['seed']}: accuracy {m['accuracy']:.2f}%, macro-F1 {m['macro_f1']:.2f}% "
        f"-> {cfg.OUTPUT_DIR}"
    )
    return 0
