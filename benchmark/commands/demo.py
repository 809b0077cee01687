"""``sarjepa demo``: the whole pipeline on built-in synthetic SAR data, no downloads."""

from __future__ import annotations

import argparse


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "demo",
        help="synthetic data -> pretrain sarjepa and sarjepa_pixel -> few-shot grid -> tables",
        description="Generate the small synthetic SAR set, pretrain tiny SAR-JEPA models with "
        "gradient (sarjepa) and normalised-pixel (sarjepa_pixel) targets on its unlabeled pool, "
        "run a few-shot grid {random init, sarjepa_pixel, sarjepa} x shots x "
        "seeds x {linear, finetune} on the MSTAR-like set and print the summary table. "
        "Reduced settings (benchmark/configs/demo.yaml) fit a 2-core CPU in about 10 minutes. "
        "Resumable: rerunning reuses finished stages.",
    )
    p.add_argument("--out", default="results/demo", help="output folder (default: results/demo)")
    p.add_argument("--device", default=None, help="cpu, cuda, cuda:N (default: auto)")
    p.add_argument("--config", default=None, help="demo YAML (default: the bundled demo.yaml)")
    p.add_argument("--jobs", type=int, default=1, help="parallel grid cells (processes)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from benchmark.demo import run_demo

    run_demo(args.out, device=args.device, config=args.config, jobs=args.jobs)
    return 0
