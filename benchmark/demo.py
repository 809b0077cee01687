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

The pretraining in worker processes (and the grid cells a free worker runs meanwhile) lives
in :mod:`benchmark.demo_workers`; this module reads the config and runs the stages.

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
import shutil
import time
from pathlib import Path

import yaml
from sarjepa.benchmark.core.errors import SarjepaError
from sarjepa.benchmark.core.io import atomic_write_text
from sarjepa.benchmark.demo_workers import (
    EarlyGrid,
    on_gpu,
    pretrain_in_workers,
    pretrain_one,
    pretrain_parallelism,
)

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


def _pretrain_stage(
    conf: dict,
    pool: Path,
    out: Path,
    device: str | None,
    log,
    extra: dict | None = None,
    jobs: int = 1,
    early: EarlyGrid | None = None,
) -> dict[str, str]:
    """Pretrain every method on ``pool`` (resuming), with ``extra`` overrides after the
    config's, in parallel processes per :func:`pretrain_parallelism`; returns
    ``label -> checkpoint`` with ``random: none``.

    With worker processes and ``early``, a worker with no method left to pretrain runs the grid
    cells of random init and of the methods already pretrained
    (:class:`~benchmark.demo_workers.EarlyGrid`), instead
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
            report(name, pretrain_one(*task, threads=None, progress=None))
    else:
        pretrain_in_workers(tasks, procs, threads, report, done, log, early)
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
        jobs = 1 if on_gpu(device) else (os.cpu_count() or 1)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    t0 = time.time()
    data = out / "data"
    grid_dir = out / "grid"
    early = EarlyGrid(lambda methods: _grid_spec(conf, methods, data), grid_dir, device, jobs)
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
