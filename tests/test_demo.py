"""`sarjepa demo` plumbing end to end on the tiny synthetic set (the real demo takes minutes)."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest
import yaml

from benchmark.cli import main
from benchmark.demo import DEMO_CONFIG, load_demo_config

pytestmark = pytest.mark.usefixtures("one_thread")


def _tiny_demo_config(tmp_path: Path) -> Path:
    conf = load_demo_config()
    conf["synth"]["scale"] = "tiny"
    conf["model"] = {"EMBED_DIM": 32, "DEPTH": 1, "NUM_HEADS": 2, "PATCH_SIZE": 16}
    conf["pretrain"]["overrides"].update(
        {
            "TRAIN.EPOCHS": 1,
            "TRAIN.BATCH_SIZE": 16,
            "PREDICTOR.EMBED_DIM": 32,
            "PREDICTOR.DEPTH": 1,
            "PREDICTOR.NUM_HEADS": 2,
        }
    )
    conf["benchmark"]["protocol_overrides"] = {
        "linear": {"OPTIM.MAX_EPOCH": 3},
        "finetune": {"OPTIM.MAX_EPOCH": 1},
    }
    conf["grid"].update({"shots": [2], "seeds": [0]})
    path = tmp_path / "demo_tiny.yaml"
    path.write_text(yaml.safe_dump(conf))
    return path


def test_bundled_demo_config_is_complete() -> None:
    conf = load_demo_config(DEMO_CONFIG)
    assert set(conf["pretrain"]["methods"]) == {"sarjepa", "sarjepa_pixel"}
    assert conf["grid"]["shots"] == [10, 20] and conf["grid"]["seeds"] == [0, 1, 2]
    assert set(conf["grid"]["protocols"]) == {"linear", "finetune"}


@pytest.mark.slow
def test_demo_runs_end_to_end_and_resumes(tmp_path: Path, capsys: pytest.CaptureFixture[str]):
    cfg = _tiny_demo_config(tmp_path)
    out = tmp_path / "demo"
    assert main(["demo", "--out", str(out), "--config", str(cfg), "--device", "cpu"]) == 0
    text = capsys.readouterr().out
    assert "paired comparison against random" in text
    rows = list(csv.DictReader((out / "summary.csv").open()))
    assert {(r["method"], r["protocol"]) for r in rows} == {
        (m, p) for m in ("random", "sarjepa_pixel", "sarjepa") for p in ("linear", "finetune")
    }
    assert (out / "accuracy_vs_shots.png").is_file()
    assert sorted(p.name for p in (out / "pretrain" / "sarjepa").glob("checkpoint-*.pth"))
    first = (out / "summary.csv").read_bytes()
    assert main(["demo", "--out", str(out), "--config", str(cfg), "--device", "cpu"]) == 0
    again = capsys.readouterr().out
    assert "synthetic data already in" in again and "6 already finished" in again
    assert (out / "summary.csv").read_bytes() == first
