"""``sarjepa synth``: write synthetic SAR chips in the layouts of MSTAR, FUSAR-Ship and SAR-ACD."""

from __future__ import annotations

import argparse
import time

DESCRIPTION = """\
Write synthetic SAR chips in the real datasets' folder layouts, with no download:
  OUT/MSTAR_SOC/{TRAIN,TEST}/<class>/*.jpeg   10 vehicle classes, 128 x 128
  OUT/New_FUSAR/{Train,Val}/<class>/*.png     10 ship and scene classes, varied sizes
  OUT/SAR_ACD/images/<class>/*.jpg            5 aircraft types, varied sizes
  OUT/pretrain/                               unlabeled pool (all kinds + target-free clutter)
  OUT/synth.json, OUT/README.txt              seed, scale, counts, version, content digest
Each class is a fixed arrangement of point and extended scatterers, rotated to a random aspect,
on clutter with its radar shadow, with Gamma speckle and a random 8-bit mapping. The same seed
gives byte-identical files. Scales: tiny (tests, seconds), small, demo (the demo's), full (real
set sizes).
"""


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``synth`` sub-command."""
    p = subparsers.add_parser(
        "synth",
        help="write synthetic SAR datasets (MSTAR/FUSAR/SAR-ACD layouts + pretraining pool)",
        description=DESCRIPTION,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--out", required=True, metavar="DIR", help="output folder")
    p.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    p.add_argument(
        "--scale",
        default="small",
        choices=("tiny", "small", "full", "demo"),
        help="tiny: tests; small: a few thousand chips; full: real set sizes (~32,000); demo: "
        "small MSTAR-like set and a pool of vehicles only (the demo's)",
    )
    p.add_argument(
        "--force",
        action="store_true",
        help="write into a non-empty folder that is not a previous synth output (only our own "
        "sub-folders and metadata files there are replaced)",
    )
    p.add_argument(
        "--workers",
        type=int,
        default=0,
        help="worker processes (0 = one per CPU core); the output does not depend on it",
    )
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Generate the sets and print a one-line summary."""
    from sarjepa.benchmark.synth.layout import generate

    start = time.perf_counter()
    meta = generate(
        args.out,
        seed=args.seed,
        scale=args.scale,
        force=args.force,
        workers=args.workers,
        progress=False if args.no_progress else None,
    )
    print(
        f"wrote {meta['total_files']} chips to {args.out} (scale {args.scale}, seed {args.seed}) "
        f"in {time.perf_counter() - start:.1f} s; content sha256 {meta['content_sha256'][:16]}"
    )
    return 0
