"""``sarjepa demo``: synthetic data -> pretraining -> few-shot grid -> tables and a verdict.

Everything goes under one output folder (default ``results/demo``)::

    OUT/data/                      the synthetic datasets (``sarjepa synth``)
    OUT/pretrain/<method>/         checkpoints, log.txt (``sarjepa pretrain``)
    OUT/grid/                      the few-shot grid (``sarjepa grid``), its tables and plot
    OUT/summary.csv, summary.md, comparison.csv, accuracy_vs_shots.png   copies of the results
    OUT/verdict.md                 the comparisons the demo is about, Holm-corrected

With ``--mstar RELEASE`` (the public MSTAR release as ``sarjepa prepare mstar`` reads it) the
data stage builds the MSTAR SOC layout and the pretraining pool of every other release chip
instead (hard links, kept between runs), checks the pool against the SOC test set by decoded
content, and the methods pretrain on that pool with the config's ``mstar.pretrain_overrides``
(default output ``results/demo-mstar``)::

    OUT/data/MSTAR_SOC/            the SOC layout (``sarjepa prepare mstar``)
    OUT/data/pool/                 every release chip outside the SOC test set, unlabeled

Each stage is resumable: finished data, checkpoints and cells are reused when the demo is run
again with the same settings. Three presets: ``cpu`` (``benchmark/configs/demo.yaml``, a 2-core
CPU in under 5 minutes), ``cpu-long`` (the same at 30 epochs instead of 11, about 9 minutes)
and ``gpu`` (``benchmark/configs/demo_gpu.yaml``, one H100/H200 in about 15 minutes); each file
says how its settings differ from the paper's.

Demo YAML sections: ``synth`` (scale, seed), ``model`` (``MODEL.*`` shared by every method and
the random-init baseline), ``pretrain`` (``overrides`` for every method; ``methods``: name ->
pretraining config name, or ``{config: NAME, overrides: {...}}`` for settings of that method
only), ``benchmark`` (trainer config, overrides, per-protocol overrides), ``grid`` (datasets,
shots, seeds, protocols), optional ``verdict`` (``method``, ``references``, ``alpha``) and
optional ``mstar`` (``pretrain_overrides``: applied after the others when pretraining on the
MSTAR pool, e.g. fewer epochs for the larger pool at the same sample budget).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import time
from contextlib import redirect_stdout
from pathlib import Path

import yaml
from sarjepa.benchmark.core.errors import SarjepaError
from sarjepa.benchmark.core.io import atomic_write_text

CONFIG_DIR = Path(__file__).resolve().parent / "configs"
PRESETS = {
    "cpu": CONFIG_DIR / "demo.yaml",
    "cpu-long": CONFIG_DIR / "demo.yaml",
    "gpu": CONFIG_DIR / "demo_gpu.yaml",
}
#: pretraining overrides a preset applies after its file's ``pretrain.overrides``: ``cpu-long``
#: is the ``cpu`` demo at the 30 epochs it had before it was cut to fit 5 minutes
PRESET_PRETRAIN = {"cpu-long": {"TRAIN.EPOCHS": 30}}
#: default output folder of each preset (``-mstar`` appended with ``--mstar``)
PRESET_OUT = {"cpu": "results/demo", "cpu-long": "results/demo-long", "gpu": "results/demo-gpu"}
DEMO_CONFIG = PRESETS["cpu"]
SECTIONS = ("synth", "model", "pretrain", "benchmark", "grid")


def load_demo_config(path: str | Path | None = None, preset: str = "cpu") -> dict:
    """Read a demo YAML: ``path`` if given, else the preset's bundled file with the preset's
    :data:`PRESET_PRETRAIN` overrides."""
    if path is None and preset not in PRESETS:
        raise SarjepaError(f"unknown demo preset '{preset}'; known: {', '.join(PRESETS)}")
    p = Path(path) if path else PRESETS[preset]
    if not p.is_file():
        raise SarjepaError(f"demo config not found: {p}")
    data = yaml.safe_load(p.read_text())
    if not isinstance(data, dict):
        raise SarjepaError(f"demo config {p}: not a mapping")
    for key in SECTIONS:
        if key not in data:
            raise SarjepaError(f"demo config {p}: missing section '{key}'")
    if path is None and preset in PRESET_PRETRAIN:
        data["pretrain"]["overrides"] = {
            **(data["pretrain"].get("overrides") or {}),
            **PRESET_PRETRAIN[preset],
        }
    method_specs(data, p)
    return data


def method_specs(conf: dict, where: str | Path = "demo config") -> dict[str, tuple[str, dict]]:
    """``pretrain.methods`` as ``name -> (pretraining config name, that method's overrides)``."""
    out = {}
    for name, spec in (conf["pretrain"].get("methods") or {}).items():
        if isinstance(spec, str):
            spec = {"config": spec}
        if not isinstance(spec, dict) or "config" not in spec:
            raise SarjepaError(
                f"{where}: pretrain.methods.{name} must be a config name or {{config: NAME, "
                "overrides: {...}}"
            )
        unknown = set(spec) - {"config", "overrides"}
        if unknown:
            raise SarjepaError(
                f"{where}: pretrain.methods.{name}: unknown key {sorted(unknown)[0]}"
            )
        out[str(name)] = (str(spec["config"]), dict(spec.get("overrides") or {}))
    if "random" in out:
        raise SarjepaError(f"{where}: 'random' is the random-init baseline, not a method name")
    return out


def _synth_complete(data: Path, synth: dict) -> bool:
    """True if ``data`` holds a finished synth output with the demo's seed and scale."""
    try:
        meta = json.loads((data / "synth.json").read_text())
    except (OSError, ValueError):
        return False
    return bool(meta.get("complete")) and (meta.get("seed"), meta.get("scale")) == (
        int(synth["seed"]),
        str(synth["scale"]),
    )


def _flat(mapping: dict) -> list[str]:
    return [str(x) for kv in mapping.items() for x in kv]


def _backbone_opts(conf: dict) -> list[str]:
    return _flat({f"MODEL.BACKBONE.{k}": v for k, v in conf["model"].items()})


def _synth_stage(conf: dict, data: Path, log) -> None:
    from sarjepa.benchmark.synth.layout import generate

    if _synth_complete(data, conf["synth"]):
        log(f"[demo 1/3] synthetic data already in {data}")
        return
    log(f"[demo 1/3] synthetic SAR data ({conf['synth']['scale']}) -> {data}")
    generate(data, seed=int(conf["synth"]["seed"]), scale=str(conf["synth"]["scale"]), force=True)


def _mstar_stage(conf: dict, release: str | Path, data: Path, log) -> Path:
    """Build ``data/MSTAR_SOC`` and ``data/pool`` from the MSTAR release (kept when already
    built from the same chips) and check the pool against the SOC test set; returns the pool.

    Raises:
        SarjepaError: the release lacks SOC chips, or the pool holds a SOC test image.
    """
    from sarjepa.benchmark.commands.prepare import check_built_pool
    from sarjepa.benchmark.datasets import mstar_release as mr

    log(f"[demo 1/3] MSTAR SOC and pretraining pool from {release} -> {data}")
    chips, _unplaced = mr.scan_release(release)
    mr.build_layout(release, data, "soc", chips=chips, log=log)
    pool = data / "pool"
    mr.build_pool(release, pool, "soc", chips=chips, log=log)
    if check_built_pool(str(pool), str(data), ["MSTAR_SOC"], log=log):
        raise SarjepaError(f"pool '{pool}' holds MSTAR_SOC test images (listed above)")
    return pool


def _pretrain_one(
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


def _on_gpu(device: str | None) -> bool:
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
    if jobs <= 1 or _on_gpu(device) or n_methods <= 1:
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


class _EarlyGrid:
    """The grid cells a pretraining worker can run while others still pretrain.

    Built from the demo config, the data root and the grid folder; :meth:`tasks` gives, for
    methods whose checkpoints are ready, the ``(spec dict, cells, ...)`` arguments of
    :func:`_early_cells` for their unfinished cells (random init first). The final grid stage
    then finds those cells finished and runs the rest.
    """

    def __init__(self, conf: dict, data: Path, grid_dir: Path, device: str | None, jobs: int):
        from sarjepa.benchmark.grid.executors import cell_threads

        self.conf, self.data, self.grid_dir = conf, data, grid_dir
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
            spec = _grid_spec(self.conf, {name: weights}, self.data)
            plan = plan_grid(spec)
            todo = [c for c in plan.cells if cell_state(self.grid_dir, c) == "todo"]
            if not todo:
                continue
            cells = [asdict(c) for c in todo]
            ckpts = [None if (r := plan.checkpoints[c]) is None else asdict(r) for c in todo]
            args = (asdict(spec), cells, str(self.grid_dir), self.device, ckpts, self.threads)
            out.append((name, args))
        return out


def _pretrain_stage(
    conf: dict,
    pool: Path,
    out: Path,
    device: str | None,
    log,
    extra: dict | None = None,
    jobs: int = 1,
    early: _EarlyGrid | None = None,
) -> dict[str, str]:
    """Pretrain every method on ``pool`` (resuming), with ``extra`` overrides after the
    config's, in parallel processes per :func:`pretrain_parallelism`; returns
    ``label -> checkpoint`` with ``random: none``.

    With worker processes and ``early``, a worker with no method left to pretrain runs the grid
    cells of random init and of the methods already pretrained (:class:`_EarlyGrid`), instead
    of waiting for the last method; failed cells are logged as the grid logs them."""
    specs = method_specs(conf)
    model = {f"MODEL.{k}": v for k, v in conf["model"].items()}
    common = _flat(model) + _flat(conf["pretrain"].get("overrides") or {})
    procs, threads = pretrain_parallelism(len(specs), jobs, device)
    tasks = {}
    for name, (cfg_name, own) in specs.items():
        opts = common + _flat(own) + _flat(extra or {}) + (["DEVICE", device] if device else [])
        tasks[name] = (name, cfg_name, opts, str(pool), str(out / "pretrain" / name))
    if procs > 1:
        log(
            f"[demo 2/3] pretraining {', '.join(tasks)} in {procs} processes x "
            f"{threads} thread{'s' if threads > 1 else ''} -> {out / 'pretrain'} "
            "(each method's console lines in its console.txt there)"
        )
    done: dict[str, dict] = {}

    def report(name: str, res: dict) -> None:
        loss = res["loss"]
        log(
            f"           {name}: {Path(res['checkpoint']).name}"
            + (f", final loss {loss:.4f}" if loss is not None else "")
            + f" ({res['seconds']:.0f} s, {res['threads']} thread"
            + ("s" if res["threads"] > 1 else "")
            + ")"
        )
        done[name] = res

    if procs == 1:
        for name, task in tasks.items():
            log(f"[demo 2/3] pretraining {name} -> {task[-1]}")
            report(name, _pretrain_one(*task, threads=None, progress=None))
    else:
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
                ex.submit(_pretrain_one, *task, threads=threads, progress=False): name
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
                for f in futures:
                    f.cancel()
                raise
    return {"random": "none", **{name: done[name]["checkpoint"] for name in tasks}}


def _grid_spec(conf: dict, weights: dict[str, str], data: Path):
    from sarjepa.benchmark.grid import GridSpec

    grid, bench = conf["grid"], conf["benchmark"]
    return GridSpec(
        methods=weights,
        datasets=list(grid["datasets"]),
        root=str(data),
        shots=[int(k) for k in grid["shots"]],
        seeds=[int(s) for s in grid["seeds"]],
        protocols=list(grid["protocols"]),
        trainer_config=str(bench["trainer_config"]),
        overrides=_backbone_opts(conf) + _flat(bench.get("overrides") or {}),
        protocol_overrides={
            k: _flat(v or {}) for k, v in (bench.get("protocol_overrides") or {}).items()
        },
    )


def verdict(comparison: list[dict], method: str, alpha: float) -> tuple[str, list[dict]]:
    """The comparisons of ``method`` against each reference, as Markdown and rows.

    The verdict's claims are its family of tests: the p-values of ``method``'s rows are
    Holm-corrected among themselves (``p_holm_verdict``; 12 tests for the demo's 3 references x
    2 protocols x 2 shots). A row is ``significant`` when ``method`` is ahead (positive mean
    difference) and that corrected p-value is below ``alpha``. ``p_holm`` (corrected over every
    test of the comparison table, :func:`benchmark.tables.comparison_frame`, a larger family that
    includes comparisons the verdict makes no claim about) is shown beside it. When a row's unit
    is the split seed of single checkpoints, the verdict says that it compares checkpoints, not
    methods.
    """
    from sarjepa.benchmark.tables import holm

    rows = [dict(c) for c in comparison if c["method"] == method]
    raw = [float("nan") if r["p_value"] is None else float(r["p_value"]) for r in rows]
    for r, q in zip(rows, holm(raw).tolist()):
        r["p_holm_verdict"] = None if q != q else q  # NaN: no test
        ahead = float(r["diff_mean"]) > 0
        r["significant"] = bool(ahead and r["p_holm_verdict"] is not None and q < alpha)
    n_tests = sum(r["p_holm_verdict"] is not None for r in rows)
    lines = [
        f"### verdict: {method} against each reference (Holm over these {n_tests} tests, "
        f"alpha {alpha})\n",
        "| reference | dataset | protocol | shots | unit | n | difference (points) | p | "
        f"p (Holm, these {n_tests}) | p (Holm, whole table) | {method} ahead, "
        f"p (Holm, these {n_tests}) < {alpha} |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]

    def fmt(x: object) -> str:
        return "–" if x is None else f"{float(x):.3g}"

    for r in rows:
        sd = "" if r.get("diff_std") is None else f" ± {float(r['diff_std']):.1f}"
        lines.append(
            f"| {r['reference']} | {r['dataset']} | {r['protocol']} | {r['shots']} | "
            f"{r.get('unit', '')} | {r.get('n_method', '')}/{r.get('n_reference', '')} | "
            f"{float(r['diff_mean']):+.1f}{sd} | {fmt(r['p_value'])} | "
            f"{fmt(r['p_holm_verdict'])} | {fmt(r.get('p_holm'))} | "
            f"{'yes' if r['significant'] else 'no'} |"
        )
    if any(str(r.get("unit", "")).startswith("split seed") for r in rows):
        lines.append(
            "\nEach method here is one pretrained checkpoint: rows whose unit is the split seed "
            "compare single checkpoints (few-shot split seeds paired), not methods; a claim about "
            "a method needs several pretraining runs per method (`--methods NAME=a.pth,b.pth`)."
        )
    return "\n".join(lines) + "\n", rows


def run_demo(
    out: str | Path = "results/demo",
    device: str | None = None,
    config: str | Path | None = None,
    jobs: int | None = None,
    log=print,
    preset: str = "cpu",
    mstar: str | Path | None = None,
) -> dict:
    """Run the demo end to end; returns :func:`benchmark.grid.write_outputs`' result plus
    ``verdict`` (rows of :func:`verdict`). ``mstar``: the public MSTAR release folder, to run
    on real chips instead of synthetic ones (see the module docstring). ``jobs``: processes
    for pretraining (:func:`pretrain_parallelism`) and grid cells; None = the core count on a
    CPU, 1 on a GPU."""
    from sarjepa.benchmark.grid import run_grid, write_outputs

    conf = load_demo_config(config, preset)
    if jobs is None:
        jobs = 1 if _on_gpu(device) else (os.cpu_count() or 1)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    t0 = time.time()
    data = out / "data"
    grid_dir = out / "grid"
    early = _EarlyGrid(conf, data, grid_dir, device, jobs)
    if mstar is None:
        _synth_stage(conf, data, log)
        weights = _pretrain_stage(conf, data / "pretrain", out, device, log, jobs=jobs, early=early)
    else:
        pool = _mstar_stage(conf, mstar, data, log)
        extra = (conf.get("mstar") or {}).get("pretrain_overrides") or {}
        weights = _pretrain_stage(conf, pool, out, device, log, extra, jobs=jobs, early=early)
    spec = _grid_spec(conf, weights, data)
    log(f"[demo 3/3] few-shot grid -> {grid_dir}")
    counts = run_grid(spec, grid_dir, jobs=jobs, device=device, log=log, force=True)
    failed = counts["failed"] + counts["skipped_failed"]  # skipped: failed in an early worker
    if failed:
        log(f"warning: {failed} cells failed; see error.json files under {grid_dir}")
    judge = conf.get("verdict") or {}
    method = str(judge.get("method", "sarjepa"))
    refs = [r for r in judge.get("references", ["random"]) if r in weights and r != method]
    res = write_outputs(grid_dir, reference=refs or None)
    for name in ("summary.csv", "summary.md", "comparison.csv", "accuracy_vs_shots.png"):
        if (grid_dir / name).is_file():
            shutil.copyfile(grid_dir / name, out / name)
    text, rows = verdict(res["comparison"], method, float(judge.get("alpha", 0.05)))
    atomic_write_text(text, out / "verdict.md")
    log(res["markdown"])
    log(text)
    log(f"demo finished in {time.time() - t0:.0f} s; results in {out}")
    res["verdict"] = rows
    return res
