"""`sarjepa demo` plumbing end to end on the tiny synthetic set (the real demo takes minutes)."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest
import yaml
from sarjepa.benchmark.cli import main
from sarjepa.benchmark.core.errors import SarjepaError
from sarjepa.benchmark.demo import DEMO_CONFIG, load_demo_config, method_specs, verdict

# methods that are configurations of another (target variants of SAR-JEPA) need no demo row
RENAMED_OR_VARIANTS = ("sarjepa_hog", "sarjepa_sar_hog", "sarjepa_lowpass", "sarjepa_gauss")

pytestmark = pytest.mark.usefixtures("one_thread")


def _tiny_demo_config(tmp_path: Path) -> Path:
    conf = load_demo_config()
    conf["synth"]["scale"] = "tiny"
    conf["model"] = {"EMBED_DIM": 32, "DEPTH": 1, "NUM_HEADS": 2, "PATCH_SIZE": 16}
    conf["pretrain"]["overrides"].update({"TRAIN.EPOCHS": 1, "TRAIN.BATCH_SIZE": 16})
    small = {"PREDICTOR.EMBED_DIM": 32, "PREDICTOR.DEPTH": 1, "PREDICTOR.NUM_HEADS": 2}
    for spec in conf["pretrain"]["methods"].values():
        spec["overrides"] = {**spec.get("overrides", {}), **small}
    conf["grid"].update({"shots": [2], "seeds": [0, 1]})
    path = tmp_path / "demo_tiny.yaml"
    path.write_text(yaml.safe_dump(conf))
    return path


def test_bundled_demo_config_is_complete() -> None:
    conf = load_demo_config(DEMO_CONFIG)
    assert {"sarjepa", "sarjepa_pixel"} <= set(method_specs(conf))
    assert conf["synth"]["scale"] == "demo"
    assert conf["grid"]["shots"] == [10, 20] and conf["grid"]["seeds"] == [0, 1, 2, 3, 4]
    assert set(conf["grid"]["protocols"]) == {"logreg", "knn"}
    assert conf["verdict"]["references"] == ["random", "sarjepa_pixel", "mae"]
    # the target ablation holds everything else fixed: same budget, same windows and predictor
    specs = method_specs(conf)
    assert specs["sarjepa"][1] == specs["sarjepa_pixel"][1]


def test_long_cpu_preset_is_the_cpu_demo_at_30_epochs() -> None:
    short, long = load_demo_config(), load_demo_config(preset="cpu-long")
    assert long["pretrain"]["overrides"].pop("TRAIN.EPOCHS") == 30
    assert short["pretrain"]["overrides"].pop("TRAIN.EPOCHS") < 30
    assert short == long  # nothing else differs
    assert load_demo_config()["pretrain"]["overrides"]["TRAIN.EPOCHS"] < 30  # not mutated


def test_gpu_preset_names_every_registered_method() -> None:
    from sarjepa.pretrain.config import load_config
    from sarjepa.pretrain.methods import method_names

    conf = load_demo_config(preset="gpu")
    specs = method_specs(conf)
    common = {f"MODEL.{k}": v for k, v in conf["model"].items()}
    common.update(conf["pretrain"]["overrides"])
    used = set()
    for cfg_name, own in specs.values():
        flat = [str(x) for kv in {**common, **own}.items() for x in kv]
        used.add(load_config(cfg_name, flat).METHOD.NAME)  # every config and override is valid
    assert used >= set(method_names()) - set(RENAMED_OR_VARIANTS)
    assert "finetune" in conf["grid"]["protocols"]


def test_bad_demo_configs_are_one_line_errors(tmp_path: Path) -> None:
    conf = load_demo_config()
    conf["pretrain"]["methods"]["random"] = "sarjepa_tiny"
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump(conf))
    with pytest.raises(SarjepaError, match="random-init baseline"):
        load_demo_config(path)
    conf["pretrain"]["methods"] = {"x": {"cfg": "sarjepa_tiny"}}
    path.write_text(yaml.safe_dump(conf))
    with pytest.raises(SarjepaError, match="pretrain.methods.x"):
        load_demo_config(path)
    with pytest.raises(SarjepaError, match="unknown demo preset"):
        load_demo_config(preset="tpu")


def test_verdict_marks_only_significant_leads() -> None:
    rows = [
        {
            "method": "sarjepa",
            "reference": "random",
            "dataset": "D",
            "protocol": "logreg",
            "shots": 10,
            "n_pairs": 5,
            "diff_mean": 3.0,
            "diff_std": 1.0,
            "p_value": 0.01,
            "p_holm": 0.03,
            "unit": "split seed (single checkpoints)",
        },
        {
            "method": "sarjepa",
            "reference": "pix",
            "dataset": "D",
            "protocol": "logreg",
            "shots": 10,
            "n_pairs": 5,
            "diff_mean": -3.0,
            "diff_std": 1.0,
            "p_value": 0.01,
            "p_holm": 0.03,
            "unit": "split seed (single checkpoints)",
        },
        {
            "method": "sarjepa",
            "reference": "pix",
            "dataset": "D",
            "protocol": "knn",
            "shots": 10,
            "n_pairs": 5,
            "diff_mean": 1.0,
            "diff_std": 1.0,
            "p_value": 0.2,
            "p_holm": 0.2,
        },
        {
            "method": "pix",
            "reference": "random",
            "dataset": "D",
            "protocol": "knn",
            "shots": 10,
            "n_pairs": 5,
            "diff_mean": 9.0,
            "diff_std": 1.0,
            "p_value": 0.001,
            "p_holm": 0.004,
        },
    ]
    text, out = verdict(rows, "sarjepa", 0.05)
    # the verdict's family is sarjepa's 3 tests: p (0.01, 0.01, 0.2) -> Holm (0.03, 0.03, 0.2)
    assert [r["p_holm_verdict"] for r in out] == pytest.approx([0.03, 0.03, 0.2])
    assert [r["significant"] for r in out] == [True, False, False]  # the 2nd is behind
    assert text.count("| yes |") == 1 and "| pix |" in text and "these 3 tests" in text
    assert "compare single checkpoints" in text
    rows[0]["p_value"] = 0.03  # raw p 0.03 < 0.05; Holm: 3 x 0.01, then max(0.03, 2 x 0.03) = 0.06
    assert [r["significant"] for r in verdict(rows, "sarjepa", 0.05)[1]] == [False, False, False]
    rows[0]["p_value"], rows[3]["p_value"] = 0.01, 1e-9  # another method's test is no claim
    assert verdict(rows, "sarjepa", 0.05)[1][0]["p_holm_verdict"] == pytest.approx(0.03)


@pytest.mark.slow
def test_demo_runs_end_to_end_and_resumes(tmp_path: Path, capsys: pytest.CaptureFixture[str]):
    cfg = _tiny_demo_config(tmp_path)
    out = tmp_path / "demo"
    assert main(["demo", "--out", str(out), "--config", str(cfg), "--device", "cpu"]) == 0
    text = capsys.readouterr().out
    assert "comparison against random" in text and "verdict: sarjepa" in text
    rows = list(csv.DictReader((out / "summary.csv").open()))
    methods = ("random", *method_specs(load_demo_config(cfg)))
    assert {(r["method"], r["protocol"]) for r in rows} == {
        (m, p) for m in methods for p in ("logreg", "knn")
    }
    assert "| sarjepa_pixel |" in (out / "verdict.md").read_text()
    assert (out / "accuracy_vs_shots.png").is_file()
    assert sorted(p.name for p in (out / "pretrain" / "sarjepa").glob("checkpoint-*.pth"))
    _check_early_cells(cfg, out, text, tmp_path / "fresh")
    first = (out / "summary.csv").read_bytes()
    assert main(["demo", "--out", str(out), "--config", str(cfg), "--device", "cpu"]) == 0
    again = capsys.readouterr().out
    assert (
        "synthetic data already in" in again and f"{len(methods) * 2 * 2} already finished" in again
    )
    assert (out / "summary.csv").read_bytes() == first


def _check_early_cells(cfg: Path, out: Path, text: str, fresh: Path) -> None:
    """With 2 worker processes the demo ran its grid cells in a free pretraining worker (random
    init first, then each method as it finished): the grid stage found them finished, and every
    cell's result and predictions equal, file for file, those of a fresh grid run afterwards on
    the same checkpoints."""
    import json

    from sarjepa.benchmark import demo
    from sarjepa.benchmark.grid import run_grid
    from sarjepa.pretrain.checkpoints import find_latest

    conf = load_demo_config(cfg)
    names = ["random", *method_specs(conf)]
    if (demo.os.cpu_count() or 1) >= 2:  # the demo's default --jobs: the core count
        assert "random: grid cells start in a free worker" in text
        assert text.count("grid cells finished early") == len(names)
        assert f"{len(names) * 2 * 2} already finished, 0 to run" in text
    weights = {n: str(find_latest(out / "pretrain" / n)) for n in names[1:]}
    spec = demo._grid_spec(conf, {"random": "none", **weights}, out / "data")
    jobs = demo.os.cpu_count() or 1  # the demo's: so are the cells' thread counts
    run_grid(spec, fresh, jobs=jobs, device="cpu", log=lambda *_: None)
    results = sorted(fresh.glob("output/**/result.json"))
    assert len(results) == len(names) * 2 * 2
    for res in results:
        rel = res.relative_to(fresh)
        a, b = json.loads(res.read_text()), json.loads((out / "grid" / rel).read_text())
        assert a["metrics"] == b["metrics"], rel
        pred = res.with_name("predictions.csv")
        assert pred.read_bytes() == (out / "grid" / rel).with_name(pred.name).read_bytes()


def test_mstar_option_defaults_to_its_own_output_folder(monkeypatch, tmp_path: Path):
    import sarjepa.benchmark.demo as demo

    seen = {}
    monkeypatch.setattr(demo, "run_demo", lambda out, **kw: seen.update(out=out, **kw))
    assert main(["demo", "--mstar", str(tmp_path)]) == 0
    assert seen["out"] == "results/demo-mstar" and seen["mstar"] == str(tmp_path)
    assert main(["demo"]) == 0 and seen["out"] == "results/demo" and seen["mstar"] is None
    assert main(["demo", "--preset", "gpu", "--mstar", "r"]) == 0
    assert seen["out"] == "results/demo-gpu-mstar"
    assert main(["demo", "--preset", "cpu-long"]) == 0 and seen["out"] == "results/demo-long"
    assert seen["preset"] == "cpu-long"
    # the bundled preset pretrains on the real pool at the synthetic demo's sample budget
    assert load_demo_config()["mstar"]["pretrain_overrides"] == {"TRAIN.EPOCHS": 4}


@pytest.mark.slow
def test_demo_on_a_fake_mstar_release_runs_end_to_end_and_resumes(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch
):
    from test_prepare_mstar_release_tree import make_release_tree

    monkeypatch.setenv("SARJEPA_CACHE", str(tmp_path / "cache"))
    release = tmp_path / "release"
    n = make_release_tree(release, cap=5)
    cfg = _tiny_demo_config(tmp_path)
    conf = yaml.safe_load(cfg.read_text())
    conf["mstar"] = {"pretrain_overrides": {"TRAIN.EPOCHS": 2}}  # applied after the others
    cfg.write_text(yaml.safe_dump(conf))
    out = tmp_path / "demo"
    argv = ["demo", "--out", str(out), "--config", str(cfg), "--device", "cpu"]
    assert main(argv + ["--mstar", str(release)]) == 0
    text = capsys.readouterr().out
    assert f"pool check: none of the {n - 50} pool images copies one of the 50" in text
    assert not (out / "data" / "pretrain").exists()  # no synthetic data
    assert (out / "data" / "MSTAR_SOC" / "manifest.json").is_file()
    pool_chip = next((out / "data" / "pool").rglob("*.jpeg"))
    assert pool_chip.stat().st_nlink == 2  # a hard link into the release
    for method in method_specs(load_demo_config(cfg)):
        ckpts = sorted(p.name for p in (out / "pretrain" / method).glob("checkpoint-*.pth"))
        assert ckpts[-1] == "checkpoint-1.pth", ckpts  # 2 epochs: the mstar override
    rows = list(csv.DictReader((out / "summary.csv").open()))
    assert {r["dataset"] for r in rows} == {"MSTAR_SOC"}
    assert (out / "verdict.md").is_file() and (out / "accuracy_vs_shots.png").is_file()
    first = (out / "summary.csv").read_bytes()
    assert main(argv + ["--mstar", str(release)]) == 0
    again = capsys.readouterr().out
    assert "already built from the same" in again and "already finished" in again
    assert (out / "summary.csv").read_bytes() == first


def test_pretrain_parallelism_rule(monkeypatch) -> None:
    import sarjepa.benchmark.demo_workers as demo

    monkeypatch.setattr(demo.os, "cpu_count", lambda: 2)
    assert demo.pretrain_parallelism(3, 2, "cpu") == (2, 1)  # one process per core, 1 thread
    assert demo.pretrain_parallelism(3, 3, "cpu") == (2, 1)  # never more processes than cores
    assert demo.pretrain_parallelism(3, 1, "cpu") == (1, 0)  # --jobs 1: this process
    assert demo.pretrain_parallelism(1, 2, "cpu") == (1, 0)
    assert demo.pretrain_parallelism(3, 2, "cuda") == (1, 0)  # one GPU: one after the other
    monkeypatch.setattr(demo.os, "cpu_count", lambda: 16)
    assert demo.pretrain_parallelism(3, 16, "cpu") == (3, 5)
    assert demo.pretrain_parallelism(3, 2, "cpu") == (2, 8)


@pytest.mark.slow
def test_parallel_pretraining_equals_one_process_at_one_thread(tmp_path: Path) -> None:
    """The methods pretrained in 2 worker processes (1 thread each) write the same weights, bit
    for bit, as one process pretraining them one after the other at 1 thread."""
    import torch
    from sarjepa.benchmark import demo

    if (demo.os.cpu_count() or 1) < 2:
        pytest.skip("needs 2 cores for 2 worker processes")
    conf = load_demo_config(_tiny_demo_config(tmp_path))
    demo._synth_stage(conf, tmp_path / "data", lambda *_: None)
    pool = tmp_path / "data" / "pretrain"
    lines: list[str] = []
    seq = demo._pretrain_stage(conf, pool, tmp_path / "seq", "cpu", lines.append, jobs=1)
    par = demo._pretrain_stage(conf, pool, tmp_path / "par", "cpu", lines.append, jobs=2)
    assert any("in 2 processes x 1 thread" in line for line in lines)
    assert set(seq) == set(par) == {"random", *method_specs(conf)}
    for name in method_specs(conf):
        a = torch.load(seq[name], map_location="cpu", weights_only=True)["model"]
        b = torch.load(par[name], map_location="cpu", weights_only=True)["model"]
        assert a.keys() == b.keys()
        assert all(torch.equal(a[k], b[k]) for k in a), name
        assert (Path(par[name]).parent / "console.txt").stat().st_size > 0


def test_worker_progress_is_read_from_its_console_lines(tmp_path: Path) -> None:
    from sarjepa.benchmark.demo_workers import _epochs_logged

    console = tmp_path / "console.txt"
    assert _epochs_logged(console) == 0  # not started
    console.write_text("sarjepa: 60 images ...\nepoch 0/29: loss 0.2, lr 1e-4\n")
    assert _epochs_logged(console) == 1
    console.write_text(console.read_text() + "saved x\nepoch 1/29: loss 0.1\nsaved y\n")
    assert _epochs_logged(console) == 2
