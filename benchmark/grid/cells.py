"""Executing one grid cell: its lock, a clean folder, the run, and ``error.json`` on failure.

:func:`run_cell` is module-level and argument-plain so that process pools and submitit can pickle
it; every executor (:mod:`benchmark.grid.executors`) calls it.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import time
import traceback
from collections.abc import Iterator
from dataclasses import asdict
from pathlib import Path

from sarjepa.benchmark.core.io import atomic_write_json
from sarjepa.benchmark.grid.plan import Cell, GridSpec, cell_config, cell_state
from sarjepa.pretrain.checkpoint_ref import CheckpointRef

LOCK_NAME = ".lock"  # in each cell folder; held (flock) by the process running the cell


@contextlib.contextmanager
def cell_lock(folder: Path) -> Iterator[int | None]:
    """Try to take the cell's lock without waiting: yields None when this process holds it,
    else the pid of the holder (0 if it has not written it yet).

    The lock is an exclusive ``fcntl.flock`` on ``folder/.lock``, released when the file is
    closed (also when the process dies). Where the file system or the platform has no flock the
    cell runs unlocked.
    """
    folder.mkdir(parents=True, exist_ok=True)
    try:
        import fcntl
    except ImportError:  # no flock on this platform: run unlocked
        yield None
        return
    fd = os.open(folder / LOCK_NAME, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        holder: int | None = None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            text = os.pread(fd, 32, 0).decode("ascii", "replace").strip()
            holder = int(text) if text.isdigit() else 0
        except OSError:
            pass  # a file system without locks: run unlocked
        else:
            os.ftruncate(fd, 0)
            os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        yield holder
    finally:
        os.close(fd)


def _clear_cell(folder: Path) -> None:
    """Remove everything in a cell folder but its lock file (an unfinished or retried cell)."""
    for entry in folder.iterdir():
        if entry.name == LOCK_NAME:
            continue
        if entry.is_dir() and not entry.is_symlink():
            shutil.rmtree(entry)
        else:
            entry.unlink()


def run_cell(
    spec_dict: dict,
    cell_dict: dict,
    run_dir: str,
    device: str | None,
    progress: bool,
    seen: str = "",
    checkpoint: dict | None = None,
) -> dict:
    """Run one cell in this process; returns ``{"state": ..., ...}``.

    States: ``"done"`` / ``"failed"`` (run here), ``"running"`` (its lock is held by process
    ``pid``), ``"done_elsewhere"`` / ``"failed_elsewhere"`` (its state changed from ``seen``,
    what the caller listed, while it waited: another process ran it). ``checkpoint`` is the
    cell's :class:`~pretrain.checkpoint_ref.CheckpointRef` as a dict (None: resolved in the
    cell). Module-level and argument-plain so that process pools and submitit can pickle it.
    """
    spec, cell, root = GridSpec(**spec_dict), Cell(**cell_dict), Path(run_dir)
    out = root / cell.rel_dir()
    with cell_lock(out) as holder:
        if holder is not None:
            return {"state": "running", "pid": holder, "time": 0.0}
        now = cell_state(root, cell)
        if seen and now != seen and now in ("done", "failed"):
            return {"state": f"{now}_elsewhere", "time": 0.0}
        _clear_cell(out)  # unfinished or retried: redo from scratch
        ref = CheckpointRef(**checkpoint) if checkpoint else None
        return _run_locked_cell(spec, cell, root, device, progress, ref)


def _run_locked_cell(
    spec: GridSpec,
    cell: Cell,
    root: Path,
    device: str | None,
    progress: bool,
    checkpoint: CheckpointRef | None,
) -> dict:
    from sarjepa.benchmark.cell import run as run_training

    out = root / cell.rel_dir()
    t0 = time.time()
    try:
        cfg = cell_config(spec, cell, root, device, [] if progress else ["RUN.PROGRESS", "False"])
        # the cell's full log goes to its log.txt; the terminal shows the grid's progress bar
        with open(os.devnull, "w") as null, contextlib.redirect_stdout(null):
            result = run_training(cfg, checkpoint=checkpoint)
        return {
            "state": "done",
            "accuracy": result["metrics"]["accuracy"],
            "time": time.time() - t0,
        }
    except Exception as exc:  # a failed cell is recorded, the grid goes on
        err = {
            "error": f"{type(exc).__name__}: {exc}",
            "traceback": traceback.format_exc() + getattr(exc, "worker_traceback", ""),
            "cell": asdict(cell),
        }
        atomic_write_json(err, out / "error.json", indent=2)
        return {"state": "failed", "error": err["error"], "time": time.time() - t0}
