"""Grids: cells, resumability, failures, refusal of mixed grids, executors, SIGKILL + rerun."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from _bench_run_helpers import grid_overrides, make_easy_mstar, tiny_vit
from sarjepa.benchmark.cli import main
from sarjepa.benchmark.core.errors import SarjepaError
from sarjepa.benchmark.grid import GridSpec, cell_state, run_grid, validate

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def data_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_easy_mstar(tmp_path_factory.mktemp("data"), n_train=6, n_test=2)


@pytest.fixture(scope="module")
def weights(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("w") / "enc.pth"
    torch.save({"state_dict": tiny_vit(seed=3).state_dict()}, path)
    return path


def _spec(root: Path, methods: dict[str, str], **kw) -> GridSpec:
    base = dict(
        methods=methods,
        datasets=["MSTAR_SOC"],
        root=str(root),
        shots=[2],
        seeds=[0, 1],
        protocols=["linear", "finetune"],
        trainer_config="vit_b16",
        overrides=grid_overrides(**{"OPTIM.MAX_EPOCH": 2}),
    )
    base.update(kw)
    return GridSpec(**base)


def _quiet(_msg: str) -> None:
    pass


def test_grid_runs_resumes_and_redoes_unfinished(tmp_path: Path, data_root: Path, weights: Path):
    spec = _spec(data_root, {"random": "none", "enc": str(weights)})
    out = tmp_path / "run"
    counts = run_grid(spec, out, log=_quiet)
    assert counts == {
        "cells": 8, "skipped_done": 0, "skipped_failed": 0, "done": 8, "failed": 0, "running": 0
    }  # fmt: skip
    cells = validate(spec)
    for c in cells:
        assert cell_state(out, c) == "done"
        assert (out / c.rel_dir() / "log.txt").read_text().count("* accuracy:") == 1
    assert (
        (out / cells[0].rel_dir())
        .as_posix()
        .endswith("output/MSTAR_SOC/MIM_linear/random_2shots/seed0")
    )
    summary = (out / "summary.csv").read_bytes() if (out / "summary.csv").exists() else None
    assert summary is None  # tables are written by the CLI / finish(), not by run_grid

    # a corrupt result.json and a half-written cell are both redone; the rest is skipped
    (out / cells[0].rel_dir() / "result.json").write_text("{")
    (out / cells[1].rel_dir() / "result.json").unlink()
    (out / cells[1].rel_dir() / "partial.tmp").write_text("junk")
    counts = run_grid(spec, out, log=_quiet)
    assert counts["done"] == 2 and counts["skipped_done"] == 6
    assert not (out / cells[1].rel_dir() / "partial.tmp").exists()


def test_failed_cell_is_recorded_and_others_continue(tmp_path: Path, data_root: Path):
    bad = tmp_path / "bad.pth"  # a readable checkpoint the cells' backbone does not fit
    torch.save({"state_dict": tiny_vit(seed=0, embed_dim=48).state_dict()}, bad)
    spec = _spec(data_root, {"random": "none", "bad": str(bad)}, protocols=["linear"], seeds=[0])
    out = tmp_path / "run"
    counts = run_grid(spec, out, log=_quiet)
    assert counts["done"] == 1 and counts["failed"] == 1
    err = json.loads((out / "output/MSTAR_SOC/MIM_linear/bad_2shots/seed0/error.json").read_text())
    assert "bad.pth" in err["error"]
    counts = run_grid(spec, out, log=_quiet)
    assert counts["skipped_failed"] == 1 and counts["done"] == 0
    with pytest.raises(SarjepaError, match="fail-fast"):
        run_grid(spec, out, log=_quiet, retry_failed=True, fail_fast=True)


def test_bad_grids_are_refused_before_any_cell(tmp_path: Path, data_root: Path, weights: Path):
    out = tmp_path / "run"
    with pytest.raises(SarjepaError, match="method 'x': checkpoint .*nope.pth' does not exist"):
        run_grid(_spec(data_root, {"x": str(tmp_path / "nope.pth")}), out, log=_quiet)
    with pytest.raises(SarjepaError, match="unknown protocol 'linaer'.*did you mean 'linear'"):
        run_grid(_spec(data_root, {"r": "none"}, protocols=["linaer"]), out, log=_quiet)
    with pytest.raises(SarjepaError, match="unknown dataset 'MSTR_SOC'"):
        run_grid(_spec(data_root, {"r": "none"}, datasets=["MSTR_SOC"]), out, log=_quiet)
    assert not out.exists()
    one = _spec(data_root, {"r": "none"}, seeds=[0], protocols=["linear"])
    run_grid(one, out, log=_quiet)
    other = _spec(data_root, {"r": "none", "enc": str(weights)}, seeds=[0], protocols=["linear"])
    with pytest.raises(SarjepaError, match="holds a different grid"):
        run_grid(other, out, log=_quiet)
    assert run_grid(other, out, log=_quiet, force=True)["done"] == 1


def test_cli_grid_writes_tables(
    tmp_path: Path, data_root: Path, capsys: pytest.CaptureFixture[str]
):
    out = tmp_path / "run"
    args = ["grid", "--methods", "random=none", "--datasets", "mstar_soc", "--shots", "2",
            "--seeds", "0", "--protocols", "linear", "--data", str(data_root), "--out", str(out),
            *grid_overrides(**{"OPTIM.MAX_EPOCH": 1})]  # fmt: skip
    assert main(args) == 0
    text = capsys.readouterr().out
    assert "| random |" in text
    for name in ("runs.csv", "summary.csv", "summary.md", "summary.tex", "accuracy_vs_shots.png"):
        assert (out / name).is_file(), name
    assert main(["grid", "--methods", "random", "--datasets", "MSTAR_SOC", "--data",
                 str(data_root), "--out", str(out)]) == 2  # fmt: skip


def _grid_cli(root: Path, out: Path, *extra: str) -> list[str]:
    return ["grid", "--methods", "random=none", "--datasets", "MSTAR_SOC", "--shots", "2",
            "--seeds", "0", "--protocols", "linear", "--data", str(root), "--out", str(out),
            *extra]  # fmt: skip


def test_each_bad_input_stops_before_any_cell_with_one_line(
    tmp_path: Path, data_root: Path, capsys: pytest.CaptureFixture[str]
):
    out = tmp_path / "run"
    bad_yaml = tmp_path / "typo.yaml"
    bad_yaml.write_text("OPTIM:\n  MAX_EPOHC: 3\n")
    tiny = grid_overrides(**{"OPTIM.MAX_EPOCH": 1})
    cases = {
        "bad override": (_grid_cli(data_root, out, *tiny, "OPTIM.MAX_EPOHC", "2"), "MAX_EPOHC"),
        "grid-owned override": (_grid_cli(data_root, out, *tiny, "SEED", "3"), "use --seeds"),
        "missing dataset folder": (_grid_cli(tmp_path, out, *tiny), "MSTAR_SOC"),
        "typo'd trainer config": (
            [*_grid_cli(data_root, out, "--config", "vit_b61", *tiny)],
            "did you mean 'vit_b16'",
        ),
        "bad key in a trainer YAML": (
            [*_grid_cli(data_root, out, "--config", str(bad_yaml), *tiny)],
            "MAX_EPOHC",
        ),
        "unknown reference": (
            [*_grid_cli(data_root, out, "--reference", "radnom", *tiny)],
            "did you mean 'random'",
        ),
        "missing checkpoint": (
            [*_grid_cli(data_root, out, *tiny)][:2]
            + ["random=none", f"enc={tmp_path / 'nope.pth'}"]
            + _grid_cli(data_root, out, *tiny)[3:],
            "nope.pth",
        ),
    }
    for what, (argv, needle) in cases.items():
        assert main(argv) == 2, what
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and err[0].startswith("sarjepa: error:"), (what, err)
        assert needle in err[0], (what, err)
        assert not out.exists(), what  # no cell, not even the run folder


def test_dry_run_counts_and_estimates_without_running(
    tmp_path: Path, data_root: Path, capsys: pytest.CaptureFixture[str]
):
    out = tmp_path / "run"
    argv = _grid_cli(data_root, out, *grid_overrides(**{"OPTIM.MAX_EPOCH": 1}))
    argv[argv.index("--seeds") + 1 : argv.index("--seeds") + 2] = ["0", "1"]
    assert main([*argv[:1], "--dry-run", *argv[1:]]) == 0
    text = capsys.readouterr().out
    assert "grid: 2 cells, 0 already finished, 2 to run; estimated time unknown" in text
    assert not out.exists()
    spec = _spec(data_root, {"random": "none"}, seeds=[0], protocols=["linear"])
    run_grid(spec, out, log=_quiet)  # one finished cell to price the other by
    said: list[str] = []
    counts = run_grid(_spec(data_root, {"random": "none"}, seeds=[0, 1], protocols=["linear"]),
                      out, dry_run=True, log=said.append)  # fmt: skip
    wall = json.loads((out / validate(spec)[0].rel_dir() / "result.json").read_text())
    assert counts["done"] == 0 and "1 to run; estimated time " in said[-1]
    assert wall["provenance"]["wall_time_s"] > 0 and "unknown" not in said[-1]
    assert not (out / "output/MSTAR_SOC/MIM_linear/random_2shots/seed1").exists()


def test_a_fixed_typo_reruns_the_failed_cells_without_force(tmp_path: Path, data_root: Path):
    out = tmp_path / "run"
    typo = _spec(data_root, {"random": "none"}, protocols=["linear"],
                 overrides=grid_overrides(**{"MODEL.BACKBONE.EMBED_DIM": 33}))  # fmt: skip
    assert run_grid(typo, out, log=_quiet)["failed"] == 2  # 33 is not a multiple of 2 heads
    fixed = _spec(data_root, {"random": "none"}, protocols=["linear"])
    said: list[str] = []
    counts = run_grid(fixed, out, log=said.append)
    assert counts["done"] == 2 and counts["skipped_failed"] == 0
    assert any("grid.json updated" in line for line in said)
    assert json.loads((out / "grid.json").read_text())["identity"] == fixed.identity()
    # a folder with finished cells still refuses a different grid
    with pytest.raises(SarjepaError, match="holds a different grid"):
        run_grid(typo, out, log=_quiet)


@pytest.mark.slow
def test_submitit_local_executor(tmp_path: Path, data_root: Path):
    spec = _spec(data_root, {"random": "none"}, protocols=["linear"], seeds=[0])
    counts = run_grid(spec, tmp_path / "run", executor="submitit-local", log=_quiet)
    assert counts["done"] == 1


def _grid_cmd(root: Path, out: Path, weights: Path) -> list[str]:
    return [sys.executable, "-m", "sarjepa", "grid", "--methods", "random=none",
            f"enc={weights}", "--datasets", "MSTAR_SOC", "--shots", "2", "3", "--seeds", "0", "1",
            "--protocols", "linear", "finetune", "--data", str(root), "--out", str(out),
            *grid_overrides(**{"OPTIM.MAX_EPOCH": 2})]  # fmt: skip


@pytest.mark.slow
def test_sigkill_midway_then_rerun_gives_the_same_summary(
    tmp_path: Path, data_root: Path, weights: Path
):
    env = {**os.environ, "OMP_NUM_THREADS": "1", "SARJEPA_CACHE": str(tmp_path / "cache")}
    ref = tmp_path / "ref"
    subprocess.run(_grid_cmd(data_root, ref, weights), env=env, check=True, capture_output=True)

    out = tmp_path / "killed"
    proc = subprocess.Popen(_grid_cmd(data_root, out, weights), env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # fmt: skip
    deadline = time.time() + 120
    while time.time() < deadline and len(list(out.rglob("result.json"))) < 5:
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    finished = len(list(out.rglob("result.json")))
    assert 0 < finished < 16, "the kill must land mid-grid"
    subprocess.run(_grid_cmd(data_root, out, weights), env=env, check=True, capture_output=True)
    assert (out / "summary.csv").read_bytes() == (ref / "summary.csv").read_bytes()
    assert len(list(out.rglob("result.json"))) == 16


@pytest.mark.slow
def test_local_worker_processes_give_the_same_results(tmp_path: Path, data_root: Path):
    spec = _spec(data_root, {"random": "none"}, protocols=["linear"])
    one, two = tmp_path / "one", tmp_path / "two"
    run_grid(spec, one, log=_quiet)
    assert run_grid(spec, two, jobs=2, log=_quiet)["done"] == 2
    for c in validate(spec):
        a = json.loads((one / c.rel_dir() / "result.json").read_text())["metrics"]
        b = json.loads((two / c.rel_dir() / "result.json").read_text())["metrics"]
        assert a == b
