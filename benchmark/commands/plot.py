"""``sarjepa plot RUN_DIR`` and ``sarjepa plot-pretrain LOG...``."""

from __future__ import annotations

import argparse
from pathlib import Path


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "plot",
        help="accuracy vs shots per method, one panel per dataset and protocol",
        description="Plot mean accuracy vs shots with ±std bands from the finished cells under "
        "RUN_DIR; writes accuracy_vs_shots.png and .pdf.",
    )
    p.add_argument("run_dir", metavar="RUN_DIR")
    p.add_argument("--out", default=None, help="output stem (default: RUN_DIR/accuracy_vs_shots)")
    p.set_defaults(func=run_plot)

    q = subparsers.add_parser(
        "plot-pretrain",
        help="pretraining loss and learning-rate curves from log.txt files",
        description="Plot loss and learning rate per epoch from pretraining log.txt files "
        "(one JSON line per epoch, as `sarjepa pretrain` writes them).",
    )
    q.add_argument("logs", nargs="+", metavar="LOG")
    q.add_argument("--labels", nargs="+", default=None, help="legend labels, one per LOG")
    q.add_argument("--out", default="pretrain_curves", help="output stem (.png and .pdf)")
    q.set_defaults(func=run_plot_pretrain)


def run_plot(args: argparse.Namespace) -> int:
    from sarjepa.benchmark.plots import plot_accuracy_vs_shots
    from sarjepa.benchmark.runs import chance_levels, collect_runs
    from sarjepa.benchmark.tables import summarise

    runs, _ = collect_runs(args.run_dir)
    stem = Path(args.out) if args.out else Path(args.run_dir) / "accuracy_vs_shots"
    files = plot_accuracy_vs_shots(summarise(runs), stem, chance=chance_levels(runs))
    print("wrote " + ", ".join(files))
    return 0


def run_plot_pretrain(args: argparse.Namespace) -> int:
    from sarjepa.benchmark.core.errors import SarjepaError
    from sarjepa.benchmark.plots import plot_pretrain_logs

    if args.labels and len(args.labels) != len(args.logs):
        raise SarjepaError(f"--labels has {len(args.labels)} names for {len(args.logs)} logs")
    files = plot_pretrain_logs(args.logs, args.out, args.labels)
    print("wrote " + ", ".join(files))
    return 0
