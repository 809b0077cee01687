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

Modules: :mod:`~benchmark.grid.plan` (spec, cells, validation, ``grid.json``),
:mod:`~benchmark.grid.cells` (running one cell under its lock), :mod:`~benchmark.grid.executors`
(worker processes, submitit) and :mod:`~benchmark.grid.run` (:func:`run_grid`, the tables).
"""

from sarjepa.benchmark.grid.cells import LOCK_NAME, cell_lock, run_cell
from sarjepa.benchmark.grid.plan import (
    CONFIG_ROOT,
    DEFAULT_PROTOCOLS,
    DEFAULT_SEEDS,
    DEFAULT_SHOTS,
    PROTOCOLS,
    Cell,
    GridSpec,
    Plan,
    cell_config,
    cell_opts,
    cell_state,
    dataset_config_file,
    parse_methods,
    plan_grid,
    prepare_run_dir,
    trainer_config_file,
    validate,
)
from sarjepa.benchmark.grid.run import run_grid, write_outputs

__all__ = [
    "CONFIG_ROOT", "DEFAULT_PROTOCOLS", "DEFAULT_SEEDS", "DEFAULT_SHOTS", "LOCK_NAME", "PROTOCOLS",
    "Cell", "GridSpec", "Plan", "cell_config", "cell_lock", "cell_opts", "cell_state",
    "dataset_config_file", "parse_methods", "plan_grid", "prepare_run_dir", "run_cell", "run_grid",
    "trainer_config_file", "validate", "write_outputs",
]  # fmt: skip
