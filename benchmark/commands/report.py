"""``sarjepa report RUN_DIR``: one self-contained HTML page of a run folder."""

from __future__ import annotations

import argparse


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "report",
        help="one self-contained HTML report of a run folder (tables, per-class, t-SNE)",
        description="Write RUN_DIR/report.html: the summary tables with 95%% intervals and the "
        "paired comparisons, accuracy vs shots, per-class accuracy and a confusion matrix per "
        "method x dataset x shots (from the cells' predictions.csv), and a t-SNE map of each "
        "method's test features coloured by class. CSS and figures are inside the file; it "
        "needs no server and no network. Several RUN_DIRs are merged (then --out is needed).",
    )
    p.add_argument("run_dir", metavar="RUN_DIR", nargs="+")
    p.add_argument("--out", default=None, help="the HTML file (default: RUN_DIR/report.html)")
    p.add_argument(
        "--reference",
        action="append",
        default=None,
        metavar="METHOD",
        help="compare every other method with this one, paired over seeds; repeat for several "
        "(default: the references of RUN_DIR/comparison.csv)",
    )
    p.add_argument(
        "--max-points",
        type=int,
        default=600,
        metavar="N",
        help="test images per t-SNE map at most, drawn with a fixed seed (default: 600)",
    )
    p.add_argument(
        "--no-embedding", action="store_true", help="leave out the t-SNE maps (the slow part)"
    )
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    import sys

    from sarjepa.benchmark.core.errors import SarjepaError
    from sarjepa.benchmark.report import write_report

    if args.max_points < 5:
        raise SarjepaError(f"--max-points must be >= 5, got {args.max_points}")
    path = write_report(
        args.run_dir,
        args.out,
        references=args.reference,
        max_points=args.max_points,
        embeddings=not args.no_embedding,
        log=lambda msg: print(msg, file=sys.stderr),
    )
    print(f"wrote {path}")
    return 0
