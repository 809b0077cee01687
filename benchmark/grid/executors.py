"""Where a grid's cells run: worker processes on this machine (GPUs round-robin) or submitit
(SLURM, or submitit's local executor). Each calls :func:`benchmark.grid.cells.run_cell` per cell
and hands its result to ``record`` as it comes. ``seen`` maps a cell to its state when listed,
``ckpts`` to its resolved checkpoint (a dict, or None for a random init)."""

from __future__ import annotations

import os
from dataclasses import asdict
from pathlib import Path

from sarjepa.benchmark.grid.cells import run_cell


def _gpu_count() -> int:
    try:
        import torch

        return torch.cuda.device_count()
    except Exception:
        return 0


def _worker_init(gpu_queue, threads: int) -> None:
    import torch

    torch.set_num_threads(threads)
    if gpu_queue is not None:
        os.environ["CUDA_VISIBLE_DEVICES"] = str(gpu_queue.get())


def cell_threads(jobs: int) -> int:
    """Torch threads of a cell run by one of ``jobs`` local worker processes: the cores shared
    out (at least 1). A cell's numbers depend on it, so whoever runs a grid's cells uses it."""
    return max(1, (os.cpu_count() or 1) // max(1, jobs))


def run_pool(todo, spec_dict, run_dir, jobs, device, record, seen, ckpts) -> None:
    """Run ``todo`` in ``jobs`` spawned worker processes (GPUs assigned round-robin)."""
    import multiprocessing as mp
    from concurrent.futures import ProcessPoolExecutor, as_completed

    ctx = mp.get_context("spawn")
    n_gpu = _gpu_count() if device in (None, "auto", "cuda") else 0
    queue = None
    if n_gpu:
        queue = ctx.Manager().Queue()
        for i in range(jobs):
            queue.put(i % n_gpu)
    threads = cell_threads(jobs)
    with ProcessPoolExecutor(
        jobs, mp_context=ctx, initializer=_worker_init, initargs=(queue, threads)
    ) as pool:
        futures = {
            pool.submit(
                run_cell, spec_dict, asdict(c), str(run_dir), device, False, seen[c], ckpts[c]
            ): c
            for c in todo
        }
        try:
            for fut in as_completed(futures):
                record(futures[fut], fut.result())
        except BaseException:
            for f in futures:
                f.cancel()
            raise


def run_submitit(todo, spec_dict, run_dir, executor, device, slurm, record, seen, ckpts) -> None:
    """Run ``todo`` as a submitit job array (``executor`` ``"slurm"`` or ``"submitit-local"``)."""
    import submitit

    folder = Path(run_dir) / "submitit"
    if executor == "slurm":
        ex = submitit.AutoExecutor(folder=folder, cluster="slurm")
        params = {
            "slurm_partition": slurm.get("partition"),
            "timeout_min": int(slurm.get("timeout_min", 60)),
            "gpus_per_node": int(slurm.get("gpus", 1)),
            "cpus_per_task": int(slurm.get("cpus", 8)),
            "slurm_array_parallelism": int(slurm.get("array_parallelism", 64)),
        }
        ex.update_parameters(**{k: v for k, v in params.items() if v is not None})
    else:
        ex = submitit.LocalExecutor(folder=folder)
        ex.update_parameters(timeout_min=int(slurm.get("timeout_min", 60)))
    jobs = ex.map_array(
        run_cell,
        [spec_dict] * len(todo),
        [asdict(c) for c in todo],
        [str(run_dir)] * len(todo),
        [device] * len(todo),
        [False] * len(todo),
        [seen[c] for c in todo],
        [ckpts[c] for c in todo],
    )
    for cell, job in zip(todo, jobs):
        try:
            res = job.result()
        except Exception as exc:  # the job itself died (time limit, node failure)
            res = {"state": "failed", "error": f"submitit job {job.job_id}: {exc}".splitlines()[0]}
        record(cell, res)
