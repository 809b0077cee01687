"""``sarjepa demo``: the whole pipeline on built-in synthetic SAR data, no downloads."""

from __future__ import annotations

import argparse

from sarjepa.benchmark.docs_lists import Listed, ListedChoices, demo_presets


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "demo",
        help="synthetic data -> pretrain SAR-JEPA and baselines -> few-shot grid -> verdict",
        description="Generate synthetic SAR data, pretrain SAR-JEPA and baselines on its "
        "unlabeled pool of vehicles, run a few-shot grid {random init, methods} x shots x seeds "
        "x protocols on the MSTAR-like set, and print the tables and a paired verdict (SAR-JEPA "
        "against random init and the pixel target). Preset cpu (benchmark/configs/demo.yaml): "
        "a 2-core CPU in under 5 minutes (11 epochs); cpu-long: the same at 30 epochs, about "
        "9 minutes; gpu (demo_gpu.yaml): every baseline at ViT-S scale in about 15 minutes on "
        "one H100/H200. Resumable: rerunning reuses finished stages.",
    )
    p.add_argument(
        "--out",
        default="results/demo",
        help="output folder (default: results/demo; results/demo-long and results/demo-gpu "
        "for --preset cpu-long and gpu; -mstar appended with --mstar)",
    )
    p.add_argument("--device", default=None, help="cpu, cuda, cuda:N (default: auto)")
    p.add_argument(
        "--preset",
        default="cpu",
        choices=ListedChoices(demo_presets),
        metavar="PRESET",  # a metavar keeps argparse from listing the choices at start-up
        help=Listed("bundled settings, of: {demo_presets} (default: cpu)"),
    )
    p.add_argument("--config", default=None, help="a demo YAML instead of the preset's")
    p.add_argument(
        "--jobs",
        type=int,
        default=None,
        help="processes: with more than 1 on a CPU, the methods pretrain in min(methods, this, "
        "cores) worker processes and the grid runs this many cells at a time (default: the "
        "CPU's core count; 1 on a GPU)",
    )
    p.add_argument(
        "--mstar",
        default=None,
        metavar="RELEASE",
        help="run on the public MSTAR release instead (the folder `sarjepa prepare mstar --data` "
        "reads): SOC layout and pretraining pool built under OUT/data (hard links), pool "
        "checked against the SOC test set; default output results/demo-mstar",
    )
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from sarjepa.benchmark.demo import PRESET_OUT, run_demo

    out = args.out
    if out == "results/demo":
        out = PRESET_OUT.get(args.preset, out) + ("-mstar" if args.mstar else "")
    run_demo(
        out,
        device=args.device,
        config=args.config,
        jobs=args.jobs,
        preset=args.preset,
        mstar=args.mstar,
    )
    return 0
