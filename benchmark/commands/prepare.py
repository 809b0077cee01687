"""``sarjepa prepare mstar``: the authors' MSTAR layouts from the public MSTAR release."""

from __future__ import annotations

import argparse

from sarjepa.benchmark import flags
from sarjepa.benchmark.docs_lists import Listed, ListedChoices, mstar_layouts


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "prepare",
        help="build benchmark layouts from public dataset releases (mstar)",
        description="Build the benchmark's dataset layouts from the data as users download it.",
    )
    sub = p.add_subparsers(dest="what", metavar="DATASET")
    m = sub.add_parser(
        "mstar",
        help=Listed("{mstar_datasets} from the public MSTAR release"),
        description="Scan the MSTAR public release (the MSTAR_PUBLIC_* CD folders with chips "
        "converted to JPEG by the MSTAR tools), print what it holds, and build the chosen "
        "protocols' layouts under OUT (hard links, else copies; the source is only read), each "
        "with manifest.json (counts, sha256 and source path per file). SOC: 10 classes, 17 deg "
        "train, 15 deg test, BMP2 SN_9563, BTR70 SN_C71, T72 SN_132 (2,747 / 2,425 chips).",
    )
    flags.add(
        m, "--data", "--src", required=True, metavar="RELEASE", help="folder holding the CD folders"
    )
    m.add_argument("--out", required=True, metavar="ROOT", help="dataset root to write into")
    m.add_argument(
        "--protocol",
        nargs="+",
        default=["soc"],
        choices=ListedChoices(lambda: [*mstar_layouts(), "all"]),
        metavar="PROTOCOL",  # a metavar keeps argparse from listing the choices at start-up
        help=Listed("layouts to build, of: {mstar_protocols}, all (default soc)"),
    )
    m.add_argument(
        "--pool",
        metavar="DIR",
        help="also write every chip not in the (first) protocol's test set here, unlabeled, "
        "then check by decoded content (as `sarjepa pool-check`) that it holds none of that "
        "test set's images (exit status 1 if it does)",
    )
    m.add_argument("--copy", action="store_true", help="copy files instead of hard-linking")
    m.set_defaults(func=run_mstar)
    p.set_defaults(func=lambda _args: p.print_help() or 1)


def run_mstar(args: argparse.Namespace) -> int:
    from sarjepa.benchmark.datasets import mstar_release as mr

    protocols = list(mr.PROTOCOLS) if "all" in args.protocol else list(args.protocol)
    chips, unplaced = mr.scan_release(args.data)
    print(mr.summary_table(chips, unplaced))
    for protocol in protocols:
        manifest = mr.build_layout(args.data, args.out, protocol, args.copy, chips=chips)
        total = manifest["total"]
        print(f"{manifest['dataset']}: train {total['TRAIN']}, test {total['TEST']}")
        print("\n".join(mr.counts_report(manifest)))
        if manifest["duplicates_skipped"]:
            print(f"  ({manifest['duplicates_skipped']} duplicate chip names skipped)")
    if args.pool:
        mr.build_pool(args.data, args.pool, protocols[0], args.copy, chips=chips)
        datasets = [mr.PROTOCOLS[p]["dataset"] for p in protocols]
        return check_built_pool(args.pool, args.out, datasets)
    return 0


def check_built_pool(pool: str, out: str, datasets: list[str], log=print) -> int:
    """Pool check of a freshly built pool against the layouts just built under ``out``.

    The pool leaves out the test set of ``datasets[0]`` only: an overlap with it is an error
    (status 1); an overlap with another layout's test set is expected and said plainly.
    """
    import sys

    from sarjepa.benchmark.commands.pool_check import report
    from sarjepa.benchmark.datasets.pool_check import check_pool

    result = check_pool(pool, out, datasets=datasets, progress=sys.stderr.isatty())
    own = f"{datasets[0]}/TEST"
    bad = result.overlapping_files(own)
    if bad:
        report(result, log)
        return 1
    log(
        f"pool check: none of the {result.pool_files} pool images copies one of the "
        f"{next(len(s.files) for s in result.test_sets if s.name == own)} {own} images "
        f"(decoded content, {result.seconds:.1f} s)"
    )
    for s in result.test_sets:
        n = len(result.overlapping_files(s.name))
        if n and s.name != own:
            other = s.name.split("/")[0]
            flag = other.removeprefix("MSTAR_").lower()
            log(
                f"  note: the pool holds {n} of the {len(s.files)} {s.name} images (it leaves "
                f"out {own} only); for {other} results pretrain on a pool built with "
                f"--protocol {flag} first"
            )
    return 0
