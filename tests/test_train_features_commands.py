"""`sarjepa train` / `sarjepa features` end to end: run folder contract, learning, bad input."""

from __future__ import annotations

import json
import re

import numpy as np
import pytest
import sklearn
import torch
from _bench_run_helpers import (
    features_of,
    make_easy_mstar,
    save_lomar,
    save_sarjepa,
    tiny_overrides,
    tiny_vit,
)
from PIL import Image
from sarjepa.benchmark.cli import main
from sarjepa.benchmark.predictions import confusion_matrix, per_class_accuracy, read_predictions

RESULT_KEYS = {"format", "dataset", "trainer", "method", "shots", "seed", "metrics", "provenance"}
RESULT_KEYS |= {"predictions"}
PROV_KEYS = {
    "config",
    "split_hash",
    "checkpoint",
    "checkpoint_sha256",
    "code_version",
    "torch_version",
    "versions",
    "device",
    "amp",
    "wall_time_s",
    "started",
    "finished",
}


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def root(tmp_path_factory):
    return make_easy_mstar(tmp_path_factory.mktemp("data"), n_train=10, n_test=3)


def _train(root, out, cache, trainer="MIM_finetune", *extra: str, seed: int = 0) -> int:
    config = "MIM_linear" if trainer not in ("MIM_finetune", "MIM_linear") else trainer
    args = (
        [
            "train",
            "--data",
            str(root),
            "--seed",
            str(seed),
            "--trainer",
            trainer,
            "--dataset-config",
            "MSTAR_SOC",
            "--config",
            f"{config}/vit_b16",
            "--out",
            str(out),
        ]
        + tiny_overrides()
        + ["RUN.CACHE_DIR", str(cache), *extra]
    )
    return main(args)


def test_finetune_cell_learns_and_writes_the_run_folder(root, tmp_path, capsys):
    out = tmp_path / "MSTAR_SOC" / "MIM_finetune" / "random_4shots" / "seed0"
    assert _train(root, out, tmp_path / "cache", "MIM_finetune", "RUN.METHOD", "random") == 0
    res = json.loads((out / "result.json").read_text())
    assert set(res) == RESULT_KEYS and set(res["provenance"]) >= PROV_KEYS
    assert res["format"] == "sarjepa-result/1" and res["dataset"] == "MSTAR_SOC"
    assert (res["trainer"], res["method"], res["shots"], res["seed"]) == (
        "MIM_finetune",
        "random",
        4,
        0,
    )
    m = res["metrics"]
    assert m["total"] == 30 and m["accuracy"] >= 60.0  # chance is 10%
    assert m["accuracy"] == pytest.approx(100 * m["correct"] / 30)
    assert m["error"] == pytest.approx(100 - m["accuracy"])
    assert list(m["per_class_accuracy"]) == [
        "BMP2",
        "BTR70",
        "T72",
        "BTR60",
        "2S1",
        "BRDM2",
        "D7",
        "T62",
        "ZIL131",
        "ZSU234",
    ]
    prov = res["provenance"]
    assert prov["device"] == "cpu" and prov["amp"] == "off" and prov["checkpoint"] == ""
    assert re.fullmatch(r"[0-9a-f]{64}", prov["split_hash"])
    assert prov["config"]["SEED"] == 0 and prov["config"]["DATASET"]["NUM_SHOTS"] == 4
    assert set(prov["versions"]) == {"sarjepa", "torch", "timm", "numpy", "scikit-learn"}
    assert prov["versions"]["torch"] == torch.__version__
    assert prov["versions"]["scikit-learn"] == sklearn.__version__
    # the predictions file gives back the metrics
    pred = read_predictions(out)
    assert pred is not None and pred.classnames == list(m["per_class_accuracy"])
    assert len(pred.images) == 30 and pred.split == "test"
    assert all((root / "MSTAR_SOC" / im).is_file() for im in pred.images)
    assert len(set(pred.images)) == 30
    conf = confusion_matrix(pred.labels, pred.predictions, pred.num_classes)
    assert conf.sum(axis=1).tolist() == [3] * 10 and int(conf.trace()) == m["correct"]
    expected = list(m["per_class_accuracy"].values())
    assert per_class_accuracy(conf).tolist() == pytest.approx(expected)
    lines = (out / "log.txt").read_text().splitlines()
    tail = lines[lines.index("Finish training") :]
    assert tail[3:9] == [
        "=> result",
        f"* total: {m['total']}",
        f"* correct: {m['correct']}",
        f"* accuracy: {m['accuracy']:.1f}%",
        f"* error: {m['error']:.1f}%",
        f"* macro_f1: {m['macro_f1']:.1f}%",
    ]
    assert re.fullmatch(r"Elapsed: \d+:\d\d:\d\d", tail[-1])
    assert any(ln.startswith("epoch [3/3] batch [") and " lr " in ln for ln in lines)
    # control: with a zero learning rate nothing is learnt
    ctl = tmp_path / "control"
    assert (
        _train(
            root,
            ctl,
            tmp_path / "cache",
            "MIM_finetune",
            "OPTIM.LR",
            "0.0",
            "OPTIM.WARMUP_CONS_LR",
            "0.0",
        )
        == 0
    )
    assert json.loads((ctl / "result.json").read_text())["metrics"]["accuracy"] <= 30.0


def test_linear_cell_with_authors_checkpoint_uses_the_feature_cache(root, tmp_path):
    ckpt = save_lomar(tiny_vit(seed=5), tmp_path / "checkpoint-200.pth")
    cache = tmp_path / "cache"
    for seed in (0, 1):
        out = tmp_path / f"seed{seed}"
        assert (
            _train(root, out, cache, "MIM_linear", "MODEL.INIT_WEIGHTS", str(ckpt), seed=seed) == 0
        )
        res = json.loads((out / "result.json").read_text())
        assert res["method"] == "checkpoint-200" and res["provenance"]["cached_features"]
        assert res["provenance"]["checkpoint_format"] == "lomar"
        log = (out / "log.txt").read_text()
        if seed == 1:  # the second cell re-uses the test features of the first
            assert "Features of 30 images from the cache" in log
    assert len(list((cache / "features").glob("*.npz"))) == 1


def test_features_command_writes_npz(tmp_path, capsys):
    src = tiny_vit(seed=7)
    ckpt = save_sarjepa(src, tmp_path / "checkpoint-9.pth")
    imgs = []
    for i in range(3):
        p = tmp_path / "imgs" / f"{i}.png"
        p.parent.mkdir(exist_ok=True)
        Image.fromarray((np.arange(32 * 32).reshape(32, 32) * (i + 1) % 256).astype(np.uint8)).save(
            p
        )
        imgs.append(p)
    out = tmp_path / "f.npz"
    argv = [
        "features",
        "--weights",
        str(ckpt),
        "--data",
        str(imgs[2]),
        str(tmp_path / "imgs"),
        "--out",
        str(out),
        "INPUT.CROP_SIZE",
        "0",
        "INPUT.SIZE",
        "(32, 32)",
        "RUN.PROGRESS",
        "False",
    ]
    assert main(argv) == 0
    with np.load(out) as z:
        files, feats = z["files"].tolist(), z["features"]
    assert files == [str(imgs[2])] + [str(p) for p in imgs]
    assert feats.shape == (4, 32) and feats.dtype == np.float32
    x = torch.stack(
        [
            torch.from_numpy(np.asarray(Image.open(p), dtype=np.float32) / 255)[None]
            for p in [imgs[2], *imgs]
        ]
    )
    np.testing.assert_allclose(feats, features_of(src, x).numpy(), rtol=0, atol=1e-5)
    assert main(argv[:6] + ["--pool", "mean"] + argv[6:]) == 0
    with np.load(out) as z:
        mean = z["features"]
    with torch.no_grad():
        ref = src.forward_features(x)[:, 1:].mean(1)
    np.testing.assert_allclose(mean, ref.numpy(), rtol=0, atol=1e-5)
    # an option after the KEY VALUE overrides is an error, not a silent override
    assert main(argv + ["--pool", "mean"]) == 2
    assert "must come before the KEY VALUE overrides" in capsys.readouterr().err


@pytest.mark.parametrize(
    "case, pattern",
    [
        ("missing_ckpt", r"checkpoint '.*nope\.pth' does not exist"),
        ("wrong_arch", r"does not match the encoder architecture.*shape mismatch"),
        ("unknown_trainer", r"unknown trainer 'MIM_lineer' \(did you mean 'MIM_linear'\?\)"),
        ("typo_key", r"unknown config key 'OPTIM.MAX_EPOHC' \(did you mean 'OPTIM.MAX_EPOCH'\?\)"),
    ],
)
def test_bad_input_is_one_line_and_leaves_nothing(root, tmp_path, capsys, case, pattern):
    ckpt = save_sarjepa(tiny_vit(embed_dim=48, num_heads=3), tmp_path / "checkpoint-1.pth")
    extra = {
        "missing_ckpt": ("MIM_linear", "MODEL.INIT_WEIGHTS", str(tmp_path / "nope.pth")),
        "wrong_arch": (
            "MIM_linear",
            "MODEL.INIT_WEIGHTS",
            str(ckpt),
            "MODEL.BACKBONE.EMBED_DIM",
            "32",
        ),
        "unknown_trainer": ("MIM_lineer",),
        "typo_key": ("MIM_linear", "OPTIM.MAX_EPOHC", "3"),
    }[case]
    out = tmp_path / "run"
    capsys.readouterr()
    assert _train(root, out, tmp_path / "cache", *extra) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and re.search(pattern, err), err
    assert not out.exists()


def test_failure_during_the_run_leaves_no_result(root, tmp_path):
    out = tmp_path / "run"
    assert _train(root, out, tmp_path / "cache", "MIM_finetune") == 0
    assert (out / "result.json").is_file()
    bad = tmp_path / "data2"
    make_easy_mstar(bad, n_train=10, n_test=2)
    (bad / "MSTAR_SOC" / "TEST" / "D7" / "D7_001.jpeg").write_bytes(b"\xff\xd8 truncated")
    assert _train(bad, out, tmp_path / "cache", "MIM_finetune") == 2  # fails when testing
    assert not (out / "result.json").exists()  # the stale result of the first run is gone too
    assert "D7_001.jpeg" in (out / "log.txt").read_text().splitlines()[-1]
    assert len(list(out.glob("log.txt-*"))) == 1
