"""``sarjepa table RUN_DIR [RUN_DIR ...]``: runs.csv / summary.{csv,md,tex} from run folders."""

from __future__ import annotations

import argparse
import sys


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "table",
        help="aggregate a run folder into CSV / Markdown / LaTeX tables",
        description="Collect every finished cell (result.json, or an authors' Dassl log.txt) "
        "under RUN_DIR and write runs.csv, summary.csv, summary.md and summary.tex. A pure "
        "function of the folder: regenerating gives byte-identical files. Several RUN_DIRs are "
        "merged into one table (written to --out); a cell found in two of them is refused.",
    )
    p.add_argument("run_dir", metavar="RUN_DIR", nargs="+")
    p.add_argument(
        "--out",
        default=None,
        help="where to write the tables (default: RUN_DIR; required with several RUN_DIRs)",
    )
    p.add_argument(
        "--reference",
        action="append",
        default=None,
        metavar="METHOD",
        help="add a paired comparison across seeds against this method (comparison.csv); "
        "repeat for several",
    )
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from sarjepa.benchmark.tables import write_tables

    res = write_tables(args.run_dir, args.out, reference=args.reference)
    for w in res["warnings"]:
        print(f"warning: {w}", file=sys.stderr)
    print(res["markdown"])
    print(f"{len(res['runs'])} runs; wrote " + ", ".join(res["files"]))
    return 0
