"""``sarjepa pool-check``: does a pretraining pool hold a test image of a registered dataset?"""

from __future__ import annotations

import argparse
import sys

from sarjepa.benchmark import flags


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "pool-check",
        help="check that a pretraining folder holds no test image of the datasets under a root",
        description="Compare every image under --data (a pretraining pool) with the test sets "
        "of the registered datasets found under --check-root (MSTAR_SOC/TEST, New_FUSAR/Val, "
        "SAR_ACD/images, ROOT/test of a SARFolder, ...). Images are compared as decoded grey "
        "chips, not as files: exact copies (renamed, moved, re-encoded losslessly, e.g. a JPEG "
        "re-saved as PNG) by a hash of the pixels and shape; near copies (a JPEG re-saved at "
        "high quality) by the pixel difference of same-shape chips, below --near-rms grey "
        "levels. Not caught: heavy recompression, blur, brightness changes, resizing, crops, "
        "flips. Prints one line per overlapping pool file; exit status 1 on any overlap. "
        "Fingerprints are cached under $SARJEPA_CACHE (default ~/.cache/sarjepa), never inside "
        "a dataset folder.",
    )
    p.add_argument("--data", required=True, metavar="POOL", help="pretraining folder to check")
    flags.add(
        p,
        "--check-root",
        "--root",
        required=True,
        metavar="ROOT",
        help="dataset root holding test sets",
    )
    p.add_argument(
        "--dataset",
        nargs="+",
        default=None,
        metavar="NAME",
        help="only these registered datasets (default: every one found under --check-root)",
    )
    p.add_argument(
        "--near-rms",
        type=float,
        default=None,
        metavar="GREY",
        help="near-copy threshold, RMS pixel difference in grey levels (default 1.0; 0: exact "
        "copies only)",
    )
    p.add_argument(
        "--high-bit",
        default="shift",
        choices=["shift", "minmax"],
        help="decoding of 16-bit and float images (default shift, as the readers)",
    )
    p.add_argument("--cache-dir", default="", metavar="DIR", help="fingerprint cache folder")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    p.set_defaults(func=run)


def report(result, log=print) -> None:
    """Print the overlap lines, then one summary line per test set."""
    for line in result.lines():
        log(line)
    for s in result.test_sets:
        n = len(result.overlapping_files(s.name))
        log(
            f"{s.name}: {n} of {result.pool_files} pool images copy one of its "
            f"{len(s.files)} test images" + ("" if n else " (none)")
        )


def run(args: argparse.Namespace) -> int:
    from sarjepa.benchmark.datasets.pool_check import NEAR_RMS, check_pool

    near = NEAR_RMS if args.near_rms is None else (args.near_rms or None)
    result = check_pool(
        args.data,
        args.check_root,
        datasets=args.dataset,
        near_rms=near,
        high_bit=args.high_bit,
        cache_dir=args.cache_dir,
        progress=not args.no_progress and sys.stderr.isatty(),
    )
    report(result)
    print(f"checked in {result.seconds:.1f} s")
    return 1 if result.overlaps else 0
