"""``sarjepa demo``: synthetic data -> pretraining -> few-shot grid -> tables, on a CPU.

Everything goes under one output folder (default ``results/demo``)::

    OUT/data/                      the synthetic datasets (``sarjepa synth``)
    OUT/pretrain/<method>/         checkpoints, log.txt (``sarjepa pretrain``)
    OUT/grid/                      the few-shot grid (``sarjepa grid``), its tables and plot
    OUT/summary.csv, summary.md, accuracy_vs_shots.png   copies of the grid's results

Each stage is resumable: finished data, checkpoints and cells are reused when the demo is run
again with the same settings. The reduced settings live in ``benchmark/configs/demo.yaml``, which
says how they differ from the paper's.
"""

from __future__ import annotations

import json
import shutil
import time
from pathlib import Path

import yaml

from benchmark.core.errors import SarjepaError

DEMO_CONFIG = Path(__file__).resolve().parent / "configs" / "demo.yaml"


def load_demo_config(path: str | Path | None = None) -> dict:
    """Read the demo YAML (default: the bundled ``benchmark/configs/demo.yaml``)."""
    p = Path(path) if path else DEMO_CONFIG
    if not p.is_file():
        raise SarjepaError(f"demo config not found: {p}")
    data = yaml.safe_load(p.read_text())
    for key in ("synth", "model", "pretrain", "benchmark", "grid"):
        if key not in data:
            raise SarjepaError(f"demo config {p}: missing section '{key}'")
    return data


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


def _pretrain_opts(conf: dict, device: str | None) -> list[str]:
    model = {f"MODEL.{k}": v for k, v in conf["model"].items()}
    opts = _flat(model) + _flat(conf["pretrain"].get("overrides", {}))
    if device:
        opts += ["DEVICE", device]
    return opts


def _backbone_opts(conf: dict) -> list[str]:
    return _flat({f"MODEL.BACKBONE.{k}": v for k, v in conf["model"].items()})


def run_demo(
    out: str | Path = "results/demo",
    device: str | None = None,
    config: str | Path | None = None,
    jobs: int = 1,
    log=print,
) -> dict:
    """Run the demo end to end; returns what :func:`benchmark.grid.write_outputs` returns."""
    from benchmark.grid import GridSpec, run_grid, write_outputs
    from benchmark.synth.layout import generate
    from pretrain.checkpoints import find_latest
    from pretrain.config import load_config
    from pretrain.train import train

    conf = load_demo_config(config)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    t0 = time.time()

    data = out / "data"
    if _synth_complete(data, conf["synth"]):
        log(f"[demo 1/3] synthetic data already in {data}")
    else:
        log(f"[demo 1/3] synthetic SAR data ({conf['synth']['scale']}) -> {data}")
        generate(
            data, seed=int(conf["synth"]["seed"]), scale=str(conf["synth"]["scale"]), force=True
        )

    weights: dict[str, str] = {"random": "none"}
    for name, cfg_name in conf["pretrain"]["methods"].items():
        t1 = time.time()
        pre_out = out / "pretrain" / name
        cfg = load_config(cfg_name, _pretrain_opts(conf, device))
        cfg.DATA_DIR = str(data / "pretrain")
        cfg.OUTPUT_DIR = str(pre_out)
        log(
            f"[demo 2/3] pretraining {name} ({cfg.METHOD.NAME}, {cfg.TRAIN.EPOCHS} epochs) "
            f"-> {pre_out}"
        )
        summary = train(cfg, resume="auto")
        ckpt = find_latest(pre_out)
        if ckpt is None:
            raise SarjepaError(f"pretraining {name} wrote no checkpoint in {pre_out}")
        weights[name] = str(ckpt)
        loss = summary.get("loss")
        log(
            f"           {name}: {ckpt.name}"
            + (f", final loss {loss:.4f}" if isinstance(loss, float) else "")
            + f" ({time.time() - t1:.0f} s)"
        )

    grid = conf["grid"]
    bench = conf["benchmark"]
    spec = GridSpec(
        methods=weights,
        datasets=list(grid["datasets"]),
        root=str(data),
        shots=[int(k) for k in grid["shots"]],
        seeds=[int(s) for s in grid["seeds"]],
        protocols=list(grid["protocols"]),
        trainer_config=str(bench["trainer_config"]),
        overrides=_backbone_opts(conf) + _flat(bench.get("overrides", {})),
        protocol_overrides={
            k: _flat(v or {}) for k, v in (bench.get("protocol_overrides") or {}).items()
        },
    )
    grid_dir = out / "grid"
    log(f"[demo 3/3] few-shot grid -> {grid_dir}")
    counts = run_grid(spec, grid_dir, jobs=jobs, device=device, log=log, force=True)
    if counts["failed"]:
        log(f"warning: {counts['failed']} cells failed; see error.json files under {grid_dir}")
    res = write_outputs(grid_dir, reference="random")
    for name in ("summary.csv", "summary.md", "comparison.csv", "accuracy_vs_shots.png"):
        if (grid_dir / name).is_file():
            shutil.copyfile(grid_dir / name, out / name)
    log(res["markdown"])
    log(f"demo finished in {time.time() - t0:.0f} s; results in {out}")
    return res
