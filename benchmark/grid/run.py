"""Running a grid: plan, skip what is finished, run the rest on an executor, count, tables."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import asdict
from pathlib import Path

from sarjepa.benchmark.core.errors import SarjepaError
from sarjepa.benchmark.grid.cells import run_cell
from sarjepa.benchmark.grid.executors import run_pool, run_submitit
from sarjepa.benchmark.grid.plan import (
    Cell,
    GridSpec,
    cell_state,
    estimate_seconds,
    plan_grid,
    prepare_run_dir,
)


def run_grid(
    spec: GridSpec,
    run_dir: str | Path,
    *,
    jobs: int = 1,
    executor: str = "local",
    device: str | None = None,
    retry_failed: bool = False,
    fail_fast: bool = False,
    force: bool = False,
    slurm: dict | None = None,
    references: Sequence[str] = (),
    dry_run: bool = False,
    log: Callable[[str], None] | None = None,
) -> dict[str, int]:
    """Run every unfinished cell of ``spec`` under ``run_dir``; returns counts per state.

    Everything is checked before the first cell (:func:`~benchmark.grid.plan.plan_grid`), then
    the cell count and an estimated time (from this folder's finished cells) are logged.

    Args:
        jobs: local worker processes (``executor="local"``); GPUs are assigned round-robin.
        executor: ``"local"``, ``"slurm"`` or ``"submitit-local"`` (submitit's local executor).
        device: forced ``RUN.DEVICE`` for every cell (``None``: the config's ``auto``).
        slurm: submitit parameters for ``executor="slurm"`` (partition, timeout_min, gpus, ...).
        references: ``--reference`` methods of the tables, checked against the grid's methods.
        dry_run: check and count, then stop before writing anything.
        log: where progress lines go (default: printed above the progress bar).
    """
    from tqdm.auto import tqdm

    log = log or tqdm.write
    run_dir = Path(run_dir)
    plan = plan_grid(spec, references)
    cells = plan.cells
    ckpts = {c: None if r is None else asdict(r) for c, r in plan.checkpoints.items()}
    replaced = False if dry_run else prepare_run_dir(spec, run_dir, force)
    retry = retry_failed or replaced  # failed cells of the grid this folder held before
    states = {c: cell_state(run_dir, c) for c in cells}
    todo = [c for c in cells if states[c] == "todo" or (retry and states[c] == "failed")]
    counts = {
        "cells": len(cells),
        "skipped_done": sum(s == "done" for s in states.values()),
        "skipped_failed": 0 if retry else sum(s == "failed" for s in states.values()),
        "done": 0,
        "failed": 0,
        "running": 0,
    }
    if replaced:
        log(f"grid: {run_dir / 'grid.json'} updated; the cells that failed before run again")
    seconds = estimate_seconds(run_dir, cells, todo) if todo else 0.0
    log(
        f"grid: {len(cells)} cells, {counts['skipped_done']} already finished, "
        f"{len(todo)} to run"
        + (
            f", {counts['skipped_failed']} failed before (--retry-failed)"
            if counts["skipped_failed"]
            else ""
        )
        + "; estimated time "
        + (
            _duration(seconds / max(1, jobs if executor == "local" else 1))
            if seconds is not None
            else "unknown (no finished cell of every protocol in this folder yet)"
        )
    )
    if dry_run:
        return counts
    spec_dict = asdict(spec)
    bar = tqdm(total=len(todo), desc="grid", unit="cell", dynamic_ncols=True)

    def record(cell: Cell, res: dict) -> None:
        bar.update(1)
        if _skipped_elsewhere(cell, res, counts, log):
            return
        counts[res["state"]] += 1
        if res["state"] == "failed":
            log(f"grid: FAILED {cell.rel_dir()}: {res['error']}")
            if fail_fast:
                raise SarjepaError(f"cell {cell.rel_dir()} failed: {res['error']} (--fail-fast)")
        else:
            bar.set_postfix_str(
                f"{cell.method} {cell.dataset} {cell.shots}s: {res['accuracy']:.1f}%"
            )

    try:
        if executor == "local" and jobs <= 1:
            for c in todo:
                res = run_cell(
                    spec_dict, asdict(c), str(run_dir), device, False, states[c], ckpts[c]
                )
                record(c, res)
        elif executor == "local":
            run_pool(todo, spec_dict, run_dir, jobs, device, record, states, ckpts)
        elif executor in ("slurm", "submitit-local"):
            run_submitit(
                todo, spec_dict, run_dir, executor, device, slurm or {}, record, states, ckpts
            )
        else:
            from sarjepa.benchmark.core.errors import unknown

            raise unknown("executor", executor, ["local", "slurm", "submitit-local"])
    finally:
        bar.close()
    return counts


def _duration(seconds: float) -> str:
    """``"2 h 05 min"``, ``"7 min"`` or ``"40 s"``."""
    if seconds >= 3600:
        return f"{int(seconds // 3600)} h {int(seconds % 3600 // 60):02d} min"
    if seconds >= 60:
        return f"{round(seconds / 60)} min"
    return f"{round(seconds)} s"


def _skipped_elsewhere(cell: Cell, res: dict, counts: dict, log: Callable[[str], None]) -> bool:
    """Count and report a cell another process holds or finished; False for one run here."""
    state = res["state"]
    if state == "running":
        counts["running"] += 1
        log(
            f"grid: skipped {cell.rel_dir()}: running in another process "
            f"(pid {res.get('pid') or 'unknown'})"
        )
        return True
    if state in ("done_elsewhere", "failed_elsewhere"):
        what = state.split("_")[0]
        counts[f"skipped_{what}"] += 1
        how = "finished" if what == "done" else "failed"
        log(f"grid: skipped {cell.rel_dir()}: {how} by another process")
        return True
    return False


def write_outputs(run_dir: str | Path, reference: str | list[str] | None = None) -> dict:
    """Write a grid's tables and accuracy-vs-shots plot; returns :func:`write_tables`' result."""
    from sarjepa.benchmark.plots import plot_accuracy_vs_shots
    from sarjepa.benchmark.runs import chance_levels
    from sarjepa.benchmark.tables import write_tables

    res = write_tables(run_dir, reference=reference)
    res["files"] += plot_accuracy_vs_shots(
        res["summary"], Path(run_dir) / "accuracy_vs_shots", chance=chance_levels(res["runs"])
    )
    return res
