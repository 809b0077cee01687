"""``sarjepa grid``: run a few-shot grid across methods, datasets, shots, seeds and protocols."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from sarjepa.benchmark import flags
from sarjepa.benchmark.docs_lists import Listed

GRID_FILE_KEYS = (
    "methods",
    "datasets",
    "shots",
    "seeds",
    "protocols",
    "root",
    "trainer_config",
    "overrides",
)

_FLAG_OF = {"root": "data", "trainer_config": "config"}  # grid file key -> its flag's dest


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "grid",
        help="run a resumable few-shot grid and write its tables and plots",
        description="One cell = (method, dataset, shots, seed, protocol) in "
        "RUN_DIR/output/<DATASET>/<TRAINER>/<METHOD>_<K>shots/seed<S>/. Finished cells are "
        "skipped, unfinished ones redone, failed ones recorded (error.json). Everything "
        "(checkpoints, dataset folders, configs, overrides, --reference) is checked before the "
        "first cell. Ends by writing runs.csv, summary.{csv,md,tex} and "
        "accuracy_vs_shots.{png,pdf} in RUN_DIR. The grid file keys 'root' and "
        "'trainer_config' are --data and --config.",
    )
    p.add_argument("--grid-file", help="YAML with any of: " + ", ".join(GRID_FILE_KEYS))
    p.add_argument(
        "--methods",
        nargs="+",
        metavar="NAME=WEIGHTS",
        help="WEIGHTS: a checkpoint, several comma-separated (one per pretraining run), or none",
    )
    p.add_argument("--datasets", nargs="+", help=Listed("any of: {datasets}"))
    p.add_argument("--shots", nargs="+", type=int, help="default: 10 20 40")
    p.add_argument("--seeds", nargs="+", type=int, help="default: 0 1 2 3 4")
    p.add_argument(
        "--protocols",
        nargs="+",
        help=Listed("any of: {protocols} (default: {default_protocols})"),
    )
    flags.add(p, "--data", "--root", metavar="ROOT", help="folder holding the dataset folders")
    flags.add(
        p,
        "--config",
        "--trainer-config",
        help=Listed("a bundled name ({trainer_config_names}; default vit_b16) or a YAML path"),
    )
    p.add_argument("--out", required=True, metavar="RUN_DIR")
    p.add_argument("--jobs", type=int, default=1, help="local worker processes (GPUs round-robin)")
    p.add_argument("--executor", default="local", choices=["local", "slurm", "submitit-local"])
    p.add_argument(
        "--device", default=None, help="force RUN.DEVICE for every cell (cpu, cuda, ...)"
    )
    p.add_argument("--partition", default=None, help="SLURM partition")
    p.add_argument("--time", type=int, default=60, help="SLURM time limit per cell, minutes")
    p.add_argument("--gpus", type=int, default=1, help="GPUs per SLURM job")
    p.add_argument("--retry-failed", action="store_true", help="rerun cells that failed before")
    p.add_argument("--fail-fast", action="store_true", help="stop at the first failed cell")
    p.add_argument("--force", action="store_true", help="reuse a RUN_DIR holding a different grid")
    p.add_argument(
        "--dry-run",
        action="store_true",
        help="check everything, print the cell count and estimated time, run nothing",
    )
    p.add_argument(
        "--reference",
        action="append",
        default=None,
        metavar="METHOD",
        help="paired comparison in the tables; repeat for several",
    )
    p.add_argument("opts", nargs=argparse.REMAINDER, metavar="KEY VALUE", help="config overrides")
    p.set_defaults(func=run)


def spec_from_args(args: argparse.Namespace):
    """Merge a grid file (if any) with command-line values (the command line wins)."""
    import yaml
    from sarjepa.benchmark.core.errors import SarjepaError
    from sarjepa.benchmark.grid import GridSpec, parse_methods

    data: dict = {}
    if args.grid_file:
        path = Path(args.grid_file)
        if not path.is_file():
            raise SarjepaError(f"grid file not found: {args.grid_file}")
        try:
            data = yaml.safe_load(path.read_text()) or {}
        except yaml.YAMLError as exc:
            raise SarjepaError(f"grid file {args.grid_file}: not valid YAML ({exc})") from None
        if not isinstance(data, dict):
            raise SarjepaError(f"grid file {args.grid_file} must hold a mapping")
        bad = sorted(set(data) - set(GRID_FILE_KEYS))
        if bad:
            raise SarjepaError(f"grid file {args.grid_file}: unknown key(s) {', '.join(bad)}")
        if isinstance(data.get("methods"), dict):
            data["methods"] = [f"{k}={v}" for k, v in data["methods"].items()]
        if isinstance(data.get("overrides"), dict):
            data["overrides"] = [str(x) for kv in data["overrides"].items() for x in kv]
    for key in GRID_FILE_KEYS:
        value = getattr(args, _FLAG_OF.get(key, key), None)
        if key == "overrides":
            value = list(args.opts or []) or None
        if value is not None:
            data[key] = value
    if not data.get("methods"):
        raise SarjepaError("no methods: give --methods NAME=WEIGHTS ... or a grid file")
    if not data.get("datasets"):
        raise SarjepaError("no datasets: give --datasets NAME ... or a grid file")
    if not data.get("root"):
        raise SarjepaError("no dataset root: give --data ROOT or a grid file")
    if len(data.get("overrides") or []) % 2:
        raise SarjepaError(f"config overrides must be KEY VALUE pairs: {data['overrides']}")
    kwargs = {k: data[k] for k in GRID_FILE_KEYS if k in data and k != "methods"}
    kwargs["root"] = str(kwargs["root"])
    return GridSpec(methods=parse_methods(data["methods"]), **kwargs)


def finish(run_dir: Path, reference: list[str] | str | None) -> None:
    """Write tables and the plot for a run folder and print the Markdown summary."""
    from sarjepa.benchmark.core.errors import SarjepaError
    from sarjepa.benchmark.grid import write_outputs

    try:
        res = write_outputs(run_dir, reference)
    except SarjepaError as exc:
        print(f"no tables written: {exc}", file=sys.stderr)
        return
    for w in res["warnings"]:
        print(f"warning: {w}", file=sys.stderr)
    print(res["markdown"])
    print(f"tables and plots in {run_dir}")


def run(args: argparse.Namespace) -> int:
    from sarjepa.benchmark.core.errors import check_trailing_opts
    from sarjepa.benchmark.grid import run_grid

    check_trailing_opts(list(args.opts or []))
    spec = spec_from_args(args)
    run_dir = Path(args.out)
    counts = run_grid(
        spec,
        run_dir,
        jobs=args.jobs,
        executor=args.executor,
        device=args.device,
        retry_failed=args.retry_failed,
        fail_fast=args.fail_fast,
        force=args.force,
        slurm={"partition": args.partition, "timeout_min": args.time, "gpus": args.gpus},
        references=args.reference or (),
        dry_run=args.dry_run,
    )
    if args.dry_run:
        print("grid: --dry-run: nothing run")
        return 0
    finish(run_dir, args.reference)
    print(
        f"grid: {counts['done']} run, {counts['failed']} failed, "
        f"{counts['skipped_done']} were already finished"
        + (f", {counts['running']} running in another process" if counts.get("running") else "")
    )
    return 1 if counts["failed"] else 0
