"""The ``sarjepa`` command. Subcommands live in :mod:`benchmark.commands`, one module each."""

from __future__ import annotations

import argparse
import errno
import importlib
import os
import pkgutil
import sys

from sarjepa.benchmark import __version__
from sarjepa.benchmark.core.errors import SarjepaError
from sarjepa.benchmark.docs_lists import fill_help
from sarjepa.benchmark.flags import hide_deprecated, restore

# Idle OpenMP threads sleep at once instead of spinning (libgomp's default spins ~300k times).
# Read when torch loads libgomp, so it is set here, before any command imports torch. On a
# 2-core box shared with other processes, spinning threads starve the one holding the work:
# a demo pretraining step at 2 threads ran 5-10x slower than at 1 thread (load 5 on 2 cores),
# and at parity with PASSIVE (results/bench/). Thread counts, hence results, are unchanged;
# a user's OMP_WAIT_POLICY or GOMP_SPINCOUNT wins.
if "OMP_WAIT_POLICY" not in os.environ and "GOMP_SPINCOUNT" not in os.environ:
    os.environ["OMP_WAIT_POLICY"] = "PASSIVE"


class Parser(argparse.ArgumentParser):
    """An ``ArgumentParser`` whose help fills in registry lists when it is printed.

    Help texts that name registered things (trainers, datasets, bundled configs, ...) are
    :class:`benchmark.docs_lists.Listed` templates; filling them only for ``--help`` keeps the
    registries (and torch) out of every other start-up. Sub-parsers inherit this class.
    """

    def format_help(self) -> str:
        fill_help(self)
        saved = hide_deprecated(self)  # old flag spellings work but are not shown
        try:
            return super().format_help()
        finally:
            restore(saved)

    def format_usage(self) -> str:
        saved = hide_deprecated(self)
        try:
            return super().format_usage()
        finally:
            restore(saved)


def build_parser() -> argparse.ArgumentParser:
    """Build the top-level parser with every subcommand found in ``benchmark.commands``."""
    parser = Parser(
        prog="sarjepa",
        description="Self-supervised pretraining (SAR-JEPA and baselines) and few-shot "
        "benchmarks for SAR target recognition.",
    )
    parser.add_argument("--version", action="version", version=f"sarjepa {__version__}")
    parser.add_argument(
        "--debug", action="store_true", help="show full tracebacks for input errors"
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    import sarjepa.benchmark.commands as commands

    for info in sorted(pkgutil.iter_modules(commands.__path__), key=lambda m: m.name):
        module = importlib.import_module(f"sarjepa.benchmark.commands.{info.name}")
        module.register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point of the console script; returns the process exit status."""
    argv = list(sys.argv[1:] if argv is None else argv)
    debug = "--debug" in argv
    argv = [a for a in argv if a != "--debug"]
    parser = build_parser()
    args = parser.parse_args(argv)
    args.argv = argv  # the command line as given, for provenance records
    if not getattr(args, "func", None):
        parser.print_help()
        return 1
    try:
        return int(args.func(args) or 0)
    except SarjepaError as exc:
        if debug:
            if exc.worker_traceback:  # the DataLoader worker's own traceback, as torch gave it
                print(exc.worker_traceback, file=sys.stderr)
            raise
        print(f"sarjepa: error: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:  # a full disk met outside the atomic writers (e.g. a log file)
        if debug or exc.errno not in (errno.ENOSPC, errno.EDQUOT):
            raise
        print(f"sarjepa: error: {' '.join(str(exc).split())}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("sarjepa: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
