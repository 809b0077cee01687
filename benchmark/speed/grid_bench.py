"""``sarjepa bench --only grid``: few-shot grid throughput and the paper's 900-cell projection.

Runs real grids (:func:`benchmark.grid.run_grid` + :func:`benchmark.grid.write_outputs`, in this
process) on data of its own: a ``sarjepa synth`` folder generated into a temporary folder at
``--grid-scale`` (``full`` = the real set sizes; MSTAR SOC 2,747 / 2,425 chips) or an existing
root (``--grid-data``), and a checkpoint of its own: a seeded random-init encoder of ``--arch`` at
``--img-size``, saved in our checkpoint format (``checkpoint-0.pth`` + sidecar), so that the
linear cells use the per-image feature cache exactly as for a pretrained checkpoint. For one
dataset (``--grid-dataset``) it measures:

1. the linear-probe grid of 1 cell (smallest shots, first seed) and of all shots x seeds (the
   paper's 3 x 5 = 15 cells), each in a fresh run folder (cold feature cache) with this
   process's decode cache emptied first, and their ratio (issue target: <= 1.5x);
   Then the same two grids with the ``logreg`` and ``knn`` probes (fresh run folders too, so
   a cold feature cache; this process's decoded chips kept); the grid's marginal seconds per
   cell, (grid - 1 cell) / (cells - 1), is a cell on cached features in a warm process;
2. fine-tune cells at ``--grid-finetune-shots`` (seed 0, one grid): seconds per cell from each
   cell's ``result.json`` (``wall_time_s``);
3. with ``--grid-jobs N`` (N >= 2): N seeds per fine-tune shot run by N worker processes at once
   (several cells per GPU), against the same cells one after another (speed-up, cells / hour).

Wall times are of the grid call and its tables / plot in this process; the ``sarjepa`` process
start (imports, a few seconds) is in neither, which makes the 1-cell time smaller and the ratio
larger than for two ``sarjepa grid`` commands. Then :mod:`benchmark.speed.projection` projects
the paper's grid (:data:`PAPER_METHODS` methods x 3 datasets x shots x seeds x 2 protocols = 900
cells) in device hours from these inputs, scaling the other datasets as
:func:`~benchmark.speed.projection.scale_to_datasets` says.
Every input and the scaling are in each row's ``extra`` (``--json``) and in the printed note.

Size: just over 400 lines: the timed grid stages share one settings object and report format;
the projection arithmetic lives in :mod:`benchmark.speed.projection`.
"""

from __future__ import annotations

import contextlib
import io
import json
import shutil
import tempfile
import time
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass
from pathlib import Path

from sarjepa.benchmark.core.errors import SarjepaError
from sarjepa.benchmark.speed.options import PAPER_DATASETS, GridBenchOptions, default_options
from sarjepa.benchmark.speed.projection import (
    PAPER_METHODS,
    PROTOCOLS,
    TARGET_HOURS,
    TARGET_RATIO,
    DatasetSize,
    finetune_fit,
    project_grid,
    scale_to_datasets,
)
from sarjepa.benchmark.speed.timing import Result, Settings, Timing, one_line

CHECKPOINT_SEED = 0
METHOD = "seeded_init"  # the grid's method label for the checkpoint written here


def arch_opts(s: Settings) -> list[str]:
    """``KEY VALUE`` overrides for the backbone of ``s.arch`` (patch 16) at ``s.img_size`` and
    the precision of ``s.amp_mode``."""
    from sarjepa.pretrain.models.vit import SIZES

    dim, depth, heads = SIZES[s.arch]
    bb = "MODEL.BACKBONE."
    return [
        f"{bb}NAME", f"vit_{s.arch}_patch16", f"{bb}EMBED_DIM", str(dim), f"{bb}DEPTH",
        str(depth), f"{bb}NUM_HEADS", str(heads), f"{bb}PATCH_SIZE", "16",
        "INPUT.SIZE", f"({s.img_size}, {s.img_size})", "RUN.AMP", s.amp_mode,
    ]  # fmt: skip


def grid_spec(
    root: Path, weights: str, o: GridBenchOptions, s: Settings, protocol: str, shots, seeds
):
    """A one-method, one-dataset :class:`~benchmark.grid.GridSpec` with the bench's overrides."""
    from sarjepa.benchmark.grid import GridSpec

    return GridSpec(
        methods={METHOD: str(weights)},
        datasets=[o.dataset],
        root=str(root),
        shots=[int(k) for k in shots],
        seeds=[int(x) for x in seeds],
        protocols=[protocol],
        trainer_config=o.trainer_config,
        overrides=[*arch_opts(s), *o.opts],
    )


def cell_cfg(spec, dataset: str, protocol: str, shots: int, run_dir: Path, device: str):
    """The (unfrozen) config a grid cell of ``spec`` would run with, without weights."""
    import sarjepa.benchmark.trainers  # noqa: F401  (registers the trainers' config keys)
    from sarjepa.benchmark.config import load_cfg
    from sarjepa.benchmark.datasets import DATASET_REGISTRY
    from sarjepa.benchmark.grid import Cell, cell_opts, dataset_config_file, trainer_config_file

    cell = Cell(METHOD, "none", DATASET_REGISTRY.resolve(dataset), shots, 0, protocol)
    return load_cfg(
        str(trainer_config_file(spec.trainer_config, cell.trainer)),
        str(dataset_config_file(cell.dataset)),
        cell_opts(spec, cell, run_dir, device),
        freeze=False,
    )


def write_checkpoint(cfg, folder: Path, seed: int = CHECKPOINT_SEED) -> Path:
    """A random init of ``cfg``'s backbone, seeded by ``seed`` (the global RNG is left as it
    was), saved in our checkpoint format: ``folder/checkpoint-0.pth`` + its JSON sidecar."""
    import torch
    from sarjepa.benchmark.backbone import encoder_from_cfg
    from sarjepa.benchmark.core.provenance import code_version
    from sarjepa.pretrain.checkpoints import save_checkpoint

    cfg.MODEL.INIT_WEIGHTS = ""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        enc = encoder_from_cfg(cfg, log=lambda _: None).encoder
    arch = enc.arch_dict()
    args = {"arch": arch, "method": METHOD, "seed": seed}
    sidecar = {
        "method": METHOD,
        "target": "",
        "arch": arch,
        "input_size": int(cfg.INPUT.SIZE[0]),
        "in_chans": int(enc.in_chans),
        "preprocessing": {},
        "data_fingerprint": "",
        "code_version": code_version(),
        "seed": seed,
        "note": "seeded random init written by sarjepa bench --only grid",
    }
    entries = {"model": enc.state_dict(), "epoch": 0, "args": args}
    return save_checkpoint(folder, 0, entries, sidecar)


def prepare_data(o: GridBenchOptions, work: Path) -> tuple[Path, float]:
    """``(data root, seconds spent generating it)``: ``o.data``, a complete synth folder of
    ``o.scale`` already in ``work/data``, or one generated there."""
    if o.data:
        return Path(o.data), 0.0
    from sarjepa.benchmark.synth.layout import generate

    out = work / "data"
    with contextlib.suppress(OSError, ValueError):
        meta = json.loads((out / "synth.json").read_text())
        if meta.get("complete") and meta.get("scale") == o.scale:
            return out, 0.0
    t0 = time.perf_counter()
    generate(out, seed=0, scale=o.scale, workers=0, progress=False)
    return out, time.perf_counter() - t0


def dataset_sizes(spec, run_dir: Path, device: str) -> dict[str, DatasetSize]:
    """:class:`DatasetSize` of each paper dataset under ``spec.root``, as the readers list it."""
    from sarjepa.benchmark.datasets import build_dataset

    sizes = {}
    for d in PAPER_DATASETS:
        cfg = cell_cfg(spec, d, "linear", 0, run_dir, device)  # 0 shots: the whole pool
        try:
            ds = build_dataset(cfg)
        except SarjepaError as exc:
            raise SarjepaError(f"the projection needs {d} under '{spec.root}': {exc}") from None
        files = {x.impath for x in [*ds.train_x, *ds.val, *ds.test]}
        sizes[d] = DatasetSize(classes=int(ds.num_classes), test=len(ds.test), chips=len(files))
    return sizes


def timed_grid(
    spec, run_dir: Path, device: str, jobs: int = 1, clear: bool = True
) -> tuple[float, list[dict]]:
    """Run ``spec`` in a fresh ``run_dir`` and write its tables and plot; with ``clear`` this
    process's decode cache is emptied first (a cold start, as a new ``sarjepa grid``).

    Returns:
        ``(wall seconds, the cells' result.json dicts)``.

    Raises:
        SarjepaError: a cell failed (its error).
    """
    from sarjepa.benchmark.decode_cache import process_cache
    from sarjepa.benchmark.grid import run_grid, write_outputs

    if run_dir.exists():
        shutil.rmtree(run_dir)
    if clear:
        process_cache().clear()
    lines: list[str] = []
    t0 = time.perf_counter()
    with contextlib.redirect_stderr(io.StringIO()):  # the grid's progress bar
        counts = run_grid(spec, run_dir, jobs=jobs, device=device, log=lines.append)
        if counts["done"] == counts["cells"]:
            try:
                write_outputs(run_dir)
            except ImportError:  # no matplotlib (a bare device image): the tables alone
                from sarjepa.benchmark.tables import write_tables

                write_tables(run_dir)
    wall = time.perf_counter() - t0
    if counts["done"] != counts["cells"]:
        errors = sorted(run_dir.glob("output/**/error.json"))
        why = json.loads(errors[0].read_text())["error"] if errors else "; ".join(lines)
        raise SarjepaError(f"grid in {run_dir}: {counts['failed']} cell(s) failed: {why}")
    results = [json.loads(p.read_text()) for p in sorted(run_dir.glob("output/**/result.json"))]
    return wall, results


def _warm_up() -> None:
    """Import what the timed grids use (trainers, tables, plots), so the first timed grid does
    not pay for it alone."""
    import sarjepa.benchmark.cell  # noqa: F401
    import sarjepa.benchmark.tables  # noqa: F401
    import sarjepa.benchmark.trainers  # noqa: F401

    with contextlib.suppress(ImportError):
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot  # noqa: F401


@dataclass
class GridTimes:
    """The measured inputs of the projection (wall seconds unless named otherwise).

    Attributes:
        one_cell_s: the 1-cell linear grid.
        grid_s: the linear grid of all shots x seeds (``grid_cells`` cells).
        finetune_cell_s: seconds of one fine-tune cell per shot count (seed 0).
        jobs: worker processes of the ``--jobs`` measurement (0: not measured).
        jobs_cells / jobs_s: cells it ran and its wall time.
        speedup: its cells per hour over those of the same cells one after another.
        synth_s: generating the data (not part of any grid).
    """

    one_cell_s: float
    grid_s: float
    grid_cells: int
    finetune_cell_s: dict[int, float]
    jobs: int = 0
    jobs_cells: int = 0
    jobs_s: float = 0.0
    speedup: float = 1.0
    synth_s: float = 0.0


def measure_grid(
    s: Settings, partial: Callable[[list[Result]], None] | None = None
) -> list[Result]:
    """Time the grids of the module docstring and project the paper's grid; rows for bench.

    ``s.grid`` (a :class:`GridBenchOptions`) says what to run; None: :func:`default_options`.
    A missing optional package (yacs) gives one skipped row. ``partial`` gets the rows measured
    so far after each stage (linear grids, fine-tune cells, ``--jobs``), so that a run cut short
    (a device call's time limit) still records them; the projection row comes last.
    """
    o = getattr(s, "grid", None) or default_options(s.device.type)
    o.check()
    try:
        import yacs  # noqa: F401  (grid cells are built from YAML configs)
    except ImportError as exc:
        return [Result("grid", 0, Timing(error=f"skipped: {one_line(exc)}"))]
    work = Path(o.work) if o.work else Path(tempfile.mkdtemp(prefix="sarjepa-gridbench-"))
    try:
        return _measure(s, o, work, partial or (lambda rows: None))
    finally:
        if not o.work:
            shutil.rmtree(work, ignore_errors=True)


def _measure(
    s: Settings, o: GridBenchOptions, work: Path, partial: Callable[[list[Result]], None]
) -> list[Result]:
    _warm_up()
    dev = str(s.device)
    root, synth_s = prepare_data(o, work)
    base = grid_spec(root, "none", o, s, "linear", o.shots, o.seeds)
    cfg = cell_cfg(base, o.dataset, "linear", o.shots[0], work / "sizes", dev)
    ckpt = str(write_checkpoint(cfg, work / "checkpoint"))

    def spec(protocol: str, shots, seeds):
        return grid_spec(root, ckpt, o, s, protocol, shots, seeds)

    t1, _ = timed_grid(spec("linear", o.shots[:1], o.seeds[:1]), work / "linear_1", dev)
    tn, res = timed_grid(spec("linear", o.shots, o.seeds), work / "linear_grid", dev)
    times = GridTimes(t1, tn, len(res), {}, synth_s=synth_s)
    common = _common_extra(s, o)
    rows = linear_rows(o, times, common)
    partial(rows)
    # the cheap probes (fresh run folders: cold feature cache; decoded chips kept)
    for protocol in PROBES:
        one, grid = spec(protocol, o.shots[:1], o.seeds[:1]), spec(protocol, o.shots, o.seeds)
        p1, _ = timed_grid(one, work / f"{protocol}_1", dev, clear=False)
        pn, pres = timed_grid(grid, work / f"{protocol}_grid", dev, clear=False)
        rows += probe_rows(o, protocol, p1, pn, len(pres))
        partial(rows)
    # fine-tune cells right after the linear grid, with its decoded chips (as in one grid)
    _, ft = timed_grid(
        spec("finetune", o.finetune_shots, o.seeds[:1]), work / "finetune", dev, clear=False
    )
    times.finetune_cell_s = {int(r["shots"]): float(r["provenance"]["wall_time_s"]) for r in ft}
    rows += finetune_rows(o, times)
    partial(rows)
    if o.jobs >= 2:
        seeds = list(range(o.jobs))
        tj, rj = timed_grid(
            spec("finetune", o.finetune_shots, seeds), work / "finetune_jobs", dev, jobs=o.jobs
        )
        serial = len(seeds) * sum(times.finetune_cell_s.values())
        times.jobs, times.jobs_cells, times.jobs_s, times.speedup = o.jobs, len(rj), tj, serial / tj
        rows += jobs_rows(o, times)
        partial(rows)
    rows.append(projection_row(s, o, times, dataset_sizes(base, work / "sizes", dev)))
    return rows


def _common_extra(s: Settings, o: GridBenchOptions) -> dict:
    return {
        "options": {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(o).items()},
        "arch": f"vit_{s.arch}_patch16",
        "img_size": s.img_size,
        "amp": s.amp_mode,
    }


def linear_rows(o: GridBenchOptions, t: GridTimes, common: dict) -> list[Result]:
    """The 1-cell and the shots x seeds linear grid rows (``common`` goes in the first)."""
    d = o.dataset
    ratio = t.grid_s / t.one_cell_s
    per_h = t.grid_cells / t.grid_s * 3600
    return [
        Result(
            f"grid linear {d} 1 cell", 0, Timing(), note=f"{t.one_cell_s:.1f} s",
            extra={"wall_s": t.one_cell_s, "cells": 1, **common},
        ),
        Result(
            f"grid linear {d} {len(o.shots)} shots x {len(o.seeds)} seeds", 0, Timing(),
            note=f"{t.grid_cells} cells {t.grid_s:.1f} s = {ratio:.2f}x one cell (target <= "
            f"{TARGET_RATIO}x); {per_h:,.0f} cells/h",
            extra={"wall_s": t.grid_s, "cells": t.grid_cells, "ratio_to_one_cell": ratio,
                   "target_ratio": TARGET_RATIO, "cells_per_hour": per_h},
        ),
    ]  # fmt: skip


PROBES = ("logreg", "knn")  # feature-probe protocols timed after the linear grids


def probe_rows(
    o: GridBenchOptions, protocol: str, one_cell_s: float, grid_s: float, cells: int
) -> list[Result]:
    """The 1-cell and the shots x seeds grid rows of a feature probe."""
    d = o.dataset
    ratio = grid_s / one_cell_s
    marginal = (grid_s - one_cell_s) / max(cells - 1, 1)
    return [
        Result(
            f"grid {protocol} {d} 1 cell", 0, Timing(), note=f"{one_cell_s:.2f} s",
            extra={"wall_s": one_cell_s, "cells": 1, "protocol": protocol},
        ),
        Result(
            f"grid {protocol} {d} {len(o.shots)} shots x {len(o.seeds)} seeds", 0, Timing(),
            note=f"{cells} cells {grid_s:.2f} s = {ratio:.2f}x one cell (target <= "
            f"{TARGET_RATIO}x); {marginal:.2f} s per further cell",
            extra={"wall_s": grid_s, "cells": cells, "ratio_to_one_cell": ratio,
                   "target_ratio": TARGET_RATIO, "protocol": protocol,
                   "marginal_cell_s": marginal},
        ),
    ]  # fmt: skip


def finetune_rows(o: GridBenchOptions, t: GridTimes) -> list[Result]:
    """One row per timed fine-tune cell (seconds per cell, cells per hour)."""
    return [
        Result(
            f"grid finetune {o.dataset} {k}-shot cell", 0, Timing(),
            note=f"{sec:.1f} s/cell, {3600 / sec:,.0f} cells/h",
            extra={"seconds_per_cell": sec, "shots": k, "cells_per_hour": 3600 / sec},
        )
        for k, sec in sorted(t.finetune_cell_s.items())
    ]  # fmt: skip


def jobs_rows(o: GridBenchOptions, t: GridTimes) -> list[Result]:
    """The ``--jobs`` row (none when it was not measured)."""
    if not t.jobs:
        return []
    per_h = t.jobs_cells / t.jobs_s * 3600
    return [
        Result(
            f"grid finetune {o.dataset} --jobs {t.jobs}", 0, Timing(),
            note=f"{t.jobs_cells} cells {t.jobs_s:.1f} s = {per_h:,.0f} cells/h, "
            f"{t.speedup:.2f}x the same cells one at a time",
            extra={"wall_s": t.jobs_s, "cells": t.jobs_cells, "jobs": t.jobs,
                   "cells_per_hour": per_h, "speedup": t.speedup},
        )
    ]  # fmt: skip


def projection_row(
    s: Settings, o: GridBenchOptions, t: GridTimes, sizes: Mapping[str, DatasetSize]
) -> Result:
    """The paper's grid projected from ``t`` (:func:`scale_to_datasets`, :func:`project_grid`)."""
    fit = finetune_fit(t.finetune_cell_s)
    lin, ft = scale_to_datasets(o.dataset, sizes, t.grid_s, fit, o.shots)
    p = project_grid(lin, ft, len(o.seeds), PAPER_METHODS, t.speedup)
    unit = "GPU-hours" if s.device.type == "cuda" else f"{s.device.type.upper()}-hours"
    shape = f"{PAPER_METHODS} x {len(sizes)} x {len(o.shots)} x {len(o.seeds)} x {len(PROTOCOLS)}"
    note = (
        f"{p['hours']:.2f} {unit} for {p['cells']} cells ({shape}; target <= {TARGET_HOURS:g} "
        f"GPU-hour) = {p['cells_per_hour']:,.0f} cells/h: per method linear grids "
        f"{p['linear_s']:.0f} s (measured {t.grid_s:.1f} s on {o.dataset}, others x chips) + "
        f"fine-tune {p['finetune_s']:.0f} s (t(k) = {fit[0]:.2f} + {fit[1]:.3f} k s on "
        f"{o.dataset}; intercept x test images, slope x classes; / {t.speedup:.2f} for "
        f"--jobs {t.jobs or 1})"
    )
    extra = {
        "projection": p,
        "unit": unit,
        "methods": PAPER_METHODS,
        "measured_dataset": o.dataset,
        "linear_grid_s": t.grid_s,
        "one_cell_s": t.one_cell_s,
        "finetune_cell_s": {str(k): v for k, v in sorted(t.finetune_cell_s.items())},
        "finetune_fit_s": {"intercept": fit[0], "per_shot": fit[1]},
        "jobs": t.jobs,
        "finetune_speedup": t.speedup,
        "dataset_sizes": {k: asdict(v) for k, v in sizes.items()},
        "data": o.data or f"sarjepa synth --scale {o.scale} (seed 0)",
        "synth_s": t.synth_s,
        "scaled_linear_grid_s": lin,
        "scaled_finetune_cell_s": {k: {str(a): b for a, b in v.items()} for k, v in ft.items()},
        "scaling": "linear grid x chips_d / chips_m; fine-tune t_d(k) = a test_d / test_m + "
        "b k classes_d / classes_m from t_m(k) = a + b k",
    }
    return Result(f"grid projection {p['cells']} cells", 0, Timing(), note=note, extra=extra)
