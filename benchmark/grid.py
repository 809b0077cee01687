"""Few-shot grids: methods x datasets x shots x seeds x protocols, resumable, local or SLURM.

A grid lives in one run folder::

    RUN_DIR/grid.json                                     the grid's definition (what it runs)
    RUN_DIR/output/<DATASET>/<TRAINER>/<METHOD>_<K>shots/seed<S>/
        log.txt, result.json                              a finished cell
        error.json                                        a failed cell (message + traceback)
    RUN_DIR/cache/                                        splits and cached linear-probe features
    RUN_DIR/runs.csv, summary.{csv,md,tex}, accuracy_vs_shots.{png,pdf}

A cell is finished when its ``result.json`` is valid (it is written last, atomically). A cell
without one is redone from scratch (its folder is emptied first); a failed cell keeps its
``error.json`` and is skipped on the next run unless ``retry_failed``. Each cell seeds
``random``, numpy and torch from its own seed, so the order or process it runs in does not
change its result.

Several ``sarjepa grid`` processes may share one RUN_DIR: a cell runs only while its process
holds an exclusive ``flock`` on the cell folder's ``.lock`` file (taken without waiting; the
file holds the holder's pid and is never removed). A cell whose lock is held elsewhere is
skipped and reported as running in another process; a cell that another process finished or
failed since this one listed it is skipped too. Files are only replaced atomically, so no
process sees a half-written one.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import time
import traceback
from collections.abc import Callable, Iterable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path

from sarjepa.benchmark.core.errors import SarjepaError
from sarjepa.benchmark.core.io import atomic_write_json

PROTOCOLS = {
    "finetune": "MIM_finetune",
    "linear": "MIM_linear",
    "knn": "MIM_knn",
    "logreg": "MIM_logreg",
}
DEFAULT_PROTOCOLS = ("finetune", "linear")  # the paper's grid; knn / logreg on request
CONFIG_ROOT = Path(__file__).resolve().parent / "configs"
DEFAULT_SHOTS = (10, 20, 40)
DEFAULT_SEEDS = (0, 1, 2, 3, 4)
LOCK_NAME = ".lock"  # in each cell folder; held (flock) by the process running the cell


@dataclass
class GridSpec:
    """What a grid runs. ``methods`` maps a label to a checkpoint path or ``"none"`` (random init).

    ``trainer_config`` is a config name under ``benchmark/configs/trainers/<TRAINER>/`` (e.g.
    ``vit_b16``) or a path to a YAML file used for every protocol. ``overrides`` are trailing
    ``KEY VALUE`` config overrides applied to every cell; ``protocol_overrides`` maps a
    protocol (``finetune``, ``linear``, ``knn``, ``logreg``) to overrides applied after them to
    its cells only.
    """

    methods: dict[str, str]
    datasets: list[str]
    root: str
    shots: list[int] = field(default_factory=lambda: list(DEFAULT_SHOTS))
    seeds: list[int] = field(default_factory=lambda: list(DEFAULT_SEEDS))
    protocols: list[str] = field(default_factory=lambda: list(DEFAULT_PROTOCOLS))
    trainer_config: str = "vit_b16"
    overrides: list[str] = field(default_factory=list)
    protocol_overrides: dict[str, list[str]] = field(default_factory=dict)

    def identity(self) -> dict[str, object]:
        """The parts that define what a cell computes (used to refuse mixing grids)."""
        return {
            "methods": dict(sorted(self.methods.items())),
            "root": self.root,
            "trainer_config": self.trainer_config,
            "overrides": list(self.overrides),
            "protocol_overrides": {k: list(v) for k, v in sorted(self.protocol_overrides.items())},
        }


@dataclass(frozen=True)
class Cell:
    """One (method, dataset, shots, seed, protocol) run."""

    method: str
    weights: str
    dataset: str
    shots: int
    seed: int
    protocol: str

    @property
    def trainer(self) -> str:
        return PROTOCOLS[self.protocol]

    def rel_dir(self) -> str:
        return (
            f"output/{self.dataset}/{self.trainer}/{self.method}_{self.shots}shots/seed{self.seed}"
        )


def parse_methods(items: Iterable[str]) -> dict[str, str]:
    """``["name=path", "random=none"]`` -> ``{"name": "path", "random": "none"}``.

    A method pretrained several times names its checkpoints comma-separated,
    ``name=run1.pth,run2.pth``: each becomes its own label ``name@1``, ``name@2`` (the tables
    group them back into ``name``, one pretraining run per label). A value that is an existing
    file is one checkpoint even if its name holds a comma.
    """
    methods: dict[str, str] = {}
    for item in items:
        name, sep, weights = item.partition("=")
        if not sep or not name or not weights:
            raise SarjepaError(f"--methods expects NAME=WEIGHTS (or NAME=none), got '{item}'")
        if "/" in name or "@" in name or name in methods or f"{name}@1" in methods:
            raise SarjepaError(f"bad or repeated method name '{name}'")
        runs = [weights] if Path(weights).is_file() else weights.split(",")
        if len(runs) == 1:
            methods[name] = weights
            continue
        if not all(runs):
            raise SarjepaError(f"--methods {name}: empty checkpoint in '{weights}'")
        methods.update({f"{name}@{i}": w for i, w in enumerate(runs, 1)})
    return methods


def dataset_config_file(dataset: str) -> Path:
    """The shipped dataset YAML for a registered dataset name (any registered alias)."""
    from sarjepa.benchmark.datasets import DATASET_REGISTRY

    name = DATASET_REGISTRY.resolve(dataset)
    path = CONFIG_ROOT / "datasets" / f"{name.lower()}.yaml"
    if not path.is_file():
        raise SarjepaError(f"no shipped dataset config for '{name}' (expected {path.name})")
    return path


def trainer_config_file(trainer_config: str, trainer: str) -> Path:
    """Resolve a trainer config name (``vit_b16``) or YAML path for one trainer."""
    p = Path(trainer_config)
    if p.suffix in (".yaml", ".yml"):
        if not p.is_file():
            raise SarjepaError(f"trainer config not found: {trainer_config}")
        return p
    path = CONFIG_ROOT / "trainers" / trainer / f"{trainer_config}.yaml"
    if not path.is_file():
        known = sorted(q.stem for q in (CONFIG_ROOT / "trainers" / trainer).glob("*.yaml"))
        from sarjepa.benchmark.core.errors import unknown

        raise unknown(f"config for {trainer}", trainer_config, known)
    return path


def validate(spec: GridSpec) -> list[Cell]:
    """Check the whole grid before any cell starts; return its cells in run order."""
    from sarjepa.benchmark.datasets import DATASET_REGISTRY

    if not spec.methods:
        raise SarjepaError("the grid has no methods (--methods NAME=WEIGHTS ...)")
    for name, weights in spec.methods.items():
        if weights.lower() != "none" and not Path(weights).is_file():
            raise SarjepaError(f"weights of method '{name}' not found: {weights}")
    _check_weights(spec)
    for proto in spec.protocols:
        if proto not in PROTOCOLS:
            from sarjepa.benchmark.core.errors import unknown

            raise unknown("protocol", proto, PROTOCOLS)
    datasets = [DATASET_REGISTRY.resolve(d) for d in spec.datasets]
    for d in datasets:
        dataset_config_file(d)
    for proto in spec.protocols:
        trainer_config_file(spec.trainer_config, PROTOCOLS[proto])
    if not Path(spec.root).is_dir():
        raise SarjepaError(f"dataset root not found: {spec.root}")
    if any(k <= 0 for k in spec.shots):
        raise SarjepaError(f"shots must be positive, got {spec.shots}")
    cells = []
    for d in datasets:
        for proto in spec.protocols:
            for name, weights in spec.methods.items():
                for k in spec.shots:
                    for s in spec.seeds:
                        cells.append(Cell(name, weights, d, int(k), int(s), proto))
    return cells


def _check_weights(spec: GridSpec) -> None:
    """Refuse a truncated or foreign checkpoint before any cell (tensors memory-mapped, cheap)."""
    from sarjepa.pretrain.weights import check_checkpoint

    opts = list(spec.overrides)
    keys = [opts[i + 1] for i in range(0, len(opts) - 1, 2) if opts[i] == "MODEL.WEIGHTS_KEY"]
    for name, weights in spec.methods.items():
        if weights.lower() == "none":
            continue
        try:
            check_checkpoint(weights, keys[-1] if keys else "")
        except SarjepaError as exc:
            raise SarjepaError(f"method '{name}': {exc}") from None


def cell_state(run_dir: Path, cell: Cell) -> str:
    """``"done"``, ``"failed"`` or ``"todo"`` (a corrupt result.json counts as todo)."""
    d = run_dir / cell.rel_dir()
    res = d / "result.json"
    if res.is_file():
        try:
            data = json.loads(res.read_text())
            if data.get("format", "").startswith("sarjepa-result/") and "metrics" in data:
                return "done"
        except (OSError, ValueError, AttributeError):
            pass
        return "todo"
    return "failed" if (d / "error.json").is_file() else "todo"


def cell_opts(spec: GridSpec, cell: Cell, run_dir: Path, device: str | None) -> list[str]:
    """The trailing ``KEY VALUE`` list for one cell (grid overrides last win)."""
    opts = [
        "TRAINER.NAME", cell.trainer,
        "DATASET.ROOT", str(spec.root),
        "DATASET.NUM_SHOTS", str(cell.shots),
        "SEED", str(cell.seed),
        "OUTPUT_DIR", str(run_dir / cell.rel_dir()),
        "RUN.METHOD", cell.method,
        "RUN.CACHE_DIR", str(run_dir / "cache"),
        "MODEL.INIT_WEIGHTS", "" if cell.weights.lower() == "none" else cell.weights,
    ]  # fmt: skip
    if device:
        opts += ["RUN.DEVICE", device]
    return opts + list(spec.overrides) + list(spec.protocol_overrides.get(cell.protocol, []))


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
) -> dict:
    """Run one cell in this process; returns ``{"state": ..., ...}``.

    States: ``"done"`` / ``"failed"`` (run here), ``"running"`` (its lock is held by process
    ``pid``), ``"done_elsewhere"`` / ``"failed_elsewhere"`` (its state changed from ``seen``,
    what the caller listed, while it waited: another process ran it). Module-level and
    argument-plain so that process pools and submitit can pickle it.
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
        return _run_locked_cell(spec, cell, root, device, progress)


def _run_locked_cell(
    spec: GridSpec, cell: Cell, root: Path, device: str | None, progress: bool
) -> dict:
    import sarjepa.benchmark.trainers  # noqa: F401  (registers trainer config keys)
    from sarjepa.benchmark.cell import run as run_training
    from sarjepa.benchmark.config import load_cfg

    out = root / cell.rel_dir()
    t0 = time.time()
    try:
        opts = cell_opts(spec, cell, root, device)
        if not progress:
            opts += ["RUN.PROGRESS", "False"]
        cfg = load_cfg(
            str(trainer_config_file(spec.trainer_config, cell.trainer)),
            str(dataset_config_file(cell.dataset)),
            opts,
        )
        # the cell's full log goes to its log.txt; the terminal shows the grid's progress bar
        with open(os.devnull, "w") as null, contextlib.redirect_stdout(null):
            result = run_training(cfg)
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


def prepare_run_dir(spec: GridSpec, run_dir: Path, force: bool) -> None:
    """Create RUN_DIR and write grid.json; refuse a folder that holds a different grid."""
    run_dir.mkdir(parents=True, exist_ok=True)
    grid_json = run_dir / "grid.json"
    if grid_json.is_file():
        try:
            old = json.loads(grid_json.read_text())
        except ValueError:
            old = None
        if old is not None and old.get("identity") != spec.identity() and not force:
            raise SarjepaError(
                f"{run_dir} holds a different grid (methods, root, trainer config or overrides "
                "differ from its grid.json); use another --out or --force"
            )
    elif (run_dir / "output").exists() and not force:
        raise SarjepaError(f"{run_dir} holds cells but no grid.json; use another --out or --force")
    data = {"format": "sarjepa-grid/1", "identity": spec.identity(), "spec": asdict(spec)}
    atomic_write_json(data, grid_json, indent=2)


def _gpu_count() -> int:
    try:
        import torch

        return torch.cuda.device_count()
    except Exception:
        return 0


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
    log: Callable[[str], None] = print,
) -> dict[str, int]:
    """Run every unfinished cell of ``spec`` under ``run_dir``; returns counts per state.

    Args:
        jobs: local worker processes (``executor="local"``); GPUs are assigned round-robin.
        executor: ``"local"``, ``"slurm"`` or ``"submitit-local"`` (submitit's local executor).
        device: forced ``RUN.DEVICE`` for every cell (``None``: the config's ``auto``).
        slurm: submitit parameters for ``executor="slurm"`` (partition, timeout_min, gpus, ...).
    """
    from tqdm.auto import tqdm

    run_dir = Path(run_dir)
    cells = validate(spec)
    prepare_run_dir(spec, run_dir, force)
    states = {c: cell_state(run_dir, c) for c in cells}
    todo = [c for c in cells if states[c] == "todo" or (retry_failed and states[c] == "failed")]
    counts = {
        "cells": len(cells),
        "skipped_done": sum(s == "done" for s in states.values()),
        "skipped_failed": 0 if retry_failed else sum(s == "failed" for s in states.values()),
        "done": 0,
        "failed": 0,
        "running": 0,
    }
    log(
        f"grid: {len(cells)} cells, {counts['skipped_done']} already finished, "
        f"{len(todo)} to run"
        + (
            f", {counts['skipped_failed']} failed before (--retry-failed)"
            if counts["skipped_failed"]
            else ""
        )
    )
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
                record(c, run_cell(spec_dict, asdict(c), str(run_dir), device, False, states[c]))
        elif executor == "local":
            _run_pool(todo, spec_dict, run_dir, jobs, device, record, states)
        elif executor in ("slurm", "submitit-local"):
            _run_submitit(todo, spec_dict, run_dir, executor, device, slurm or {}, record, states)
        else:
            from sarjepa.benchmark.core.errors import unknown

            raise unknown("executor", executor, ["local", "slurm", "submitit-local"])
    finally:
        bar.close()
    return counts


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
    from sarjepa.benchmark.tables import chance_levels, write_tables

    res = write_tables(run_dir, reference=reference)
    res["files"] += plot_accuracy_vs_shots(
        res["summary"], Path(run_dir) / "accuracy_vs_shots", chance=chance_levels(res["runs"])
    )
    return res


def _worker_init(gpu_queue, threads: int) -> None:
    import torch

    torch.set_num_threads(threads)
    if gpu_queue is not None:
        os.environ["CUDA_VISIBLE_DEVICES"] = str(gpu_queue.get())


def _run_pool(todo, spec_dict, run_dir, jobs, device, record, seen) -> None:
    import multiprocessing as mp
    from concurrent.futures import ProcessPoolExecutor, as_completed

    ctx = mp.get_context("spawn")
    n_gpu = _gpu_count() if device in (None, "auto", "cuda") else 0
    queue = None
    if n_gpu:
        queue = ctx.Manager().Queue()
        for i in range(jobs):
            queue.put(i % n_gpu)
    threads = max(1, (os.cpu_count() or 1) // jobs)
    with ProcessPoolExecutor(
        jobs, mp_context=ctx, initializer=_worker_init, initargs=(queue, threads)
    ) as pool:
        futures = {
            pool.submit(run_cell, spec_dict, asdict(c), str(run_dir), device, False, seen[c]): c
            for c in todo
        }
        try:
            for fut in as_completed(futures):
                record(futures[fut], fut.result())
        except BaseException:
            for f in futures:
                f.cancel()
            raise


def _run_submitit(todo, spec_dict, run_dir, executor, device, slurm, record, seen) -> None:
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
    )
    for cell, job in zip(todo, jobs):
        try:
            res = job.result()
        except Exception as exc:  # the job itself died (time limit, node failure)
            res = {"state": "failed", "error": f"submitit job {job.job_id}: {exc}".splitlines()[0]}
        record(cell, res)
