"""The demo's pretraining in worker processes: one process per method (up to the core count),
their progress on a terminal, and grid cells run by a worker that has no method left to start.

:mod:`benchmark.demo` builds the tasks and calls :func:`pretrain_in_workers`; a run's numbers
depend on the thread count of its process only (``tests/test_demo.py``).
"""

from __future__ import annotations

import os
import re
import time
from collections.abc import Callable
from contextlib import redirect_stdout
from pathlib import Path
from typing import Any

from sarjepa.benchmark.core.errors import SarjepaError


def pretrain_one(
    name: str,
    cfg_name: str,
    opts: list[str],
    pool: str,
    pre_out: str,
    threads: int | None,
    progress: bool | None,
) -> dict:
    """Pretrain one method (resuming); run in a worker process when methods run in parallel.

    Args:
        name: the method's label in the demo; cfg_name, opts: its pretraining config and
            overrides; pool: the unlabeled chips; pre_out: its output folder.
        threads: torch threads for this process (None: leave as is).
        progress: the tqdm bar (None: on a TTY); False also sends the console lines to
            ``pre_out/console.txt`` (a worker beside others).

    Returns:
        ``{"checkpoint", "loss", "seconds", "threads"}``.
    """
    import torch
    from sarjepa.pretrain.checkpoints import find_latest
    from sarjepa.pretrain.config import load_config
    from sarjepa.pretrain.train import train

    if threads:
        torch.set_num_threads(threads)
    t1 = time.time()
    cfg = load_config(cfg_name, opts)
    cfg.DATA_DIR = pool
    cfg.OUTPUT_DIR = pre_out
    if progress is False:  # a worker beside others: its console lines go to a file of its own
        Path(pre_out).mkdir(parents=True, exist_ok=True)
        with open(Path(pre_out) / "console.txt", "a", buffering=1) as f, redirect_stdout(f):
            summary = train(cfg, resume="auto", progress=False)
    else:
        summary = train(cfg, resume="auto", progress=progress)
    ckpt = find_latest(Path(pre_out))
    if ckpt is None:
        raise SarjepaError(f"pretraining {name} wrote no checkpoint in {pre_out}")
    loss = summary.get("loss")
    return {
        "checkpoint": str(ckpt),
        "loss": loss if isinstance(loss, float) else None,
        "seconds": time.time() - t1,
        "threads": torch.get_num_threads(),
    }


def _epochs_of(task: tuple) -> int:
    """The number of epochs a pretraining task will run (its config's ``TRAIN.EPOCHS``)."""
    from sarjepa.pretrain.config import load_config

    return int(load_config(task[1], task[2]).TRAIN.EPOCHS)


def _epochs_logged(console: Path) -> int:
    """Epochs a worker has finished, from the last ``epoch N/M`` line of its console file."""
    try:
        found = re.findall(r"^epoch (\d+)/\d+", console.read_text(), re.M)
    except OSError:
        return 0
    return int(found[-1]) + 1 if found else 0


def on_gpu(device: str | None) -> bool:
    """Whether ``device`` (None = auto: CUDA when available) is a GPU."""
    if device is None:
        import torch

        return torch.cuda.is_available()
    return not str(device).startswith("cpu")


def pretrain_parallelism(n_methods: int, jobs: int, device: str | None) -> tuple[int, int]:
    """``(processes, threads per process)`` for the pretraining stage.

    On a CPU with ``jobs > 1``, ``min(n_methods, jobs, cores)`` worker processes pretrain the
    methods, each with ``max(1, cores // processes)`` threads, the methods taken in the
    config's order as workers free up. Measured on the 2-core box
    (``results/bench/cpu_2core.md``): a micro ViT's step gains 3-14% from a second thread, two
    single-thread processes run at 73-83% of one process's rate each (1.56 cores' worth), three
    on 2 cores at 43-47% each (1.34). With one job, or on a GPU (one device, methods one after
    the other), ``(1, 0)``: this process, its threads. A run's numbers depend on its thread count
    only, not on what runs beside it.
    """
    if jobs <= 1 or on_gpu(device) or n_methods <= 1:
        return 1, 0
    cores = os.cpu_count() or 1
    procs = max(1, min(n_methods, jobs, cores))
    return (1, 0) if procs == 1 else (procs, max(1, cores // procs))


def _early_cells(
    spec_dict: dict, cells: list[dict], run_dir: str, device: str | None, ckpts: list, threads: int
) -> list[tuple[str, str, str]]:
    """Run grid cells in a pretraining worker that has no method left to pretrain.

    The cells run as the grid's own workers run them (:func:`benchmark.grid.cells.run_cell`,
    ``threads`` torch threads, each cell seeding itself), so their results are those of the
    grid stage that would otherwise run them after every method has pretrained.

    Returns:
        ``[(cell folder, state, error)]`` in order.
    """
    import torch
    from sarjepa.benchmark.grid.cells import run_cell
    from sarjepa.benchmark.grid.plan import Cell

    torch.set_num_threads(threads)
    out = []
    for cell, ck in zip(cells, ckpts):
        res = run_cell(spec_dict, cell, run_dir, device, False, "todo", ck)
        out.append((Cell(**cell).rel_dir(), res["state"], str(res.get("error", ""))))
    return out


def _report_cells(name: str, states: list[tuple[str, str, str]], log) -> None:
    """Log what an early-cells task ran: a count, and each failed cell as the grid logs it."""
    done = sum(state == "done" for _, state, _ in states)
    log(f"           {name}: {done} of {len(states)} grid cells finished early")
    for rel, state, err in states:
        if state == "failed":
            log(f"grid: FAILED {rel}: {err}")


class EarlyGrid:
    """The grid cells a pretraining worker can run while others still pretrain.

    Args:
        spec_of: ``{label: weights}`` -> the demo's :class:`~benchmark.grid.GridSpec` for those
            methods (the same settings as the whole grid's).
        grid_dir: the grid folder; device, jobs: the grid stage's (cells' thread count).

    :meth:`tasks` gives, for methods whose checkpoints are ready, the ``(spec dict, cells, ...)``
    arguments of :func:`_early_cells` for their unfinished cells (random init first). The final
    grid stage then finds those cells finished and runs the rest.
    """

    def __init__(
        self,
        spec_of: Callable[[dict[str, str]], Any],
        grid_dir: Path,
        device: str | None,
        jobs: int,
    ) -> None:
        from sarjepa.benchmark.grid.executors import cell_threads

        self.spec_of, self.grid_dir = spec_of, grid_dir
        self.device, self.threads = device, cell_threads(jobs)
        self.submitted: set[str] = set()

    def tasks(self, ready: dict[str, str]) -> list[tuple[str, tuple]]:
        """``[(method, _early_cells arguments)]`` for the methods of ``ready`` (label ->
        checkpoint) not handed out before, random init first; methods without an unfinished
        cell are left out."""
        from dataclasses import asdict

        from sarjepa.benchmark.grid.plan import cell_state, plan_grid

        out = []
        for name, weights in {"random": "none", **ready}.items():
            if name in self.submitted:
                continue
            self.submitted.add(name)
            spec = self.spec_of({name: weights})
            plan = plan_grid(spec)
            todo = [c for c in plan.cells if cell_state(self.grid_dir, c) == "todo"]
            if not todo:
                continue
            cells = [asdict(c) for c in todo]
            ckpts = [None if (r := plan.checkpoints[c]) is None else asdict(r) for c in todo]
            args = (asdict(spec), cells, str(self.grid_dir), self.device, ckpts, self.threads)
            out.append((name, args))
        return out


def pretrain_in_workers(
    tasks: dict[str, tuple],
    procs: int,
    threads: int,
    report: Callable[[str, dict], None],
    done: dict[str, dict],
    log: Callable[[str], None],
    early: EarlyGrid | None = None,
) -> None:
    """Pretrain ``tasks`` (label -> :func:`pretrain_one` arguments) in ``procs`` spawned worker
    processes of ``threads`` threads, taken in order as workers free up; ``report(label,
    result)`` is called as each finishes (and fills ``done``). On a terminal a bar counts the
    workers' epochs (read from their ``console.txt``). With ``early``, once no method is left to
    start, free workers run the grid cells of random init and of the methods in ``done``.
    """
    import multiprocessing as mp
    from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait

    from tqdm.auto import tqdm

    totals = {name: _epochs_of(task) for name, task in tasks.items()}
    bar = tqdm(
        total=sum(totals.values()), desc="pretrain", unit="epoch", dynamic_ncols=True,
        disable=None,  # a bar on a terminal only; the finish lines below always
    )  # fmt: skip
    with bar, ProcessPoolExecutor(procs, mp_context=mp.get_context("spawn")) as ex:
        futures = {
            ex.submit(pretrain_one, *task, threads=threads, progress=False): name
            for name, task in tasks.items()
        }
        cell_jobs: dict = {}  # future -> method, for early grid cells
        pending = set(futures)
        try:
            while pending:
                finished, pending = wait(pending, timeout=2.0, return_when=FIRST_COMPLETED)
                for fut in finished:
                    bar.clear()
                    if fut in cell_jobs:
                        try:
                            _report_cells(cell_jobs[fut], fut.result(), log)
                        except Exception as exc:  # the grid stage runs them instead
                            log(f"           {cell_jobs[fut]}: early grid cells stopped: {exc}")
                    else:
                        report(futures[fut], fut.result())
                left = sum(f in futures for f in pending)  # methods still pretraining
                if early is not None and finished and left < procs:
                    ready = {n: done[n]["checkpoint"] for n in done}
                    try:
                        started = early.tasks(ready)
                    except SarjepaError as exc:  # the grid stage reports it
                        log(f"           no early grid cells: {exc}")
                        started, early = [], None
                    for name, args in started:
                        bar.clear()
                        log(f"           {name}: grid cells start in a free worker")
                        fut = ex.submit(_early_cells, *args)
                        cell_jobs[fut] = name
                        pending.add(fut)
                epochs = {
                    n: totals[n] if n in done else _epochs_logged(Path(t[-1]) / "console.txt")
                    for n, t in tasks.items()
                }
                bar.n = sum(epochs.values())
                bar.set_postfix_str(", ".join(f"{n} {epochs[n]}/{totals[n]}" for n in tasks))
        except BaseException:
            for f in (*futures, *cell_jobs):
                f.cancel()
            raise
