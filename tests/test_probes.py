"""Feature probes MIM_knn / MIM_logreg: votes and C search against naive references, cells, grid."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch
from _bench_run_helpers import (
    easy_data_with_checkpoint,
    grid_overrides,
    tiny_cfg,
)
from sarjepa.benchmark.core.errors import SarjepaError
from sarjepa.benchmark.grid import GridSpec, run_grid, write_outputs
from sarjepa.benchmark.trainers import TRAINER_REGISTRY
from sarjepa.benchmark.trainers.probes import choose_c, knn_scores, standardise

pytestmark = pytest.mark.usefixtures("one_thread")


def _naive_knn(train, labels, test, num_classes, k, t):
    """Loop version: sort every training item by cosine similarity, sum exp(s/T) of the top k."""
    out = np.zeros((len(test), num_classes))
    for i, q in enumerate(test):
        sims = [float(np.dot(q, x) / (np.linalg.norm(q) * np.linalg.norm(x))) for x in train]
        order = sorted(range(len(train)), key=lambda j: -sims[j])[:k]
        for j in order:
            out[i, labels[j]] += math.exp(sims[j] / t)
    return out


def test_knn_votes_equal_a_naive_loop():
    g = np.random.default_rng(0)
    train, test = g.normal(size=(23, 5)), g.normal(size=(7, 5))
    labels = g.integers(0, 4, 23)
    for k, t in ((1, 0.07), (5, 0.5), (50, 1.0)):  # k = 50 > N: capped at 23
        got = knn_scores(
            torch.tensor(train), torch.tensor(labels), torch.tensor(test), 4, k, t
        ).numpy()
        want = _naive_knn(train, labels, test, 4, min(k, 23), t)
        np.testing.assert_allclose(got, want, rtol=1e-10)


def test_knn_hand_case_and_bad_settings():
    # two training points on the axes; a query at 30 deg from the first: cos 0.866 vs 0.5
    train = torch.tensor([[1.0, 0.0], [0.0, 2.0]])
    q = torch.tensor([[math.cos(math.pi / 6), math.sin(math.pi / 6)]])
    v = knn_scores(train, torch.tensor([1, 0]), q, 2, 2, 0.5)
    assert v[0, 1].item() == pytest.approx(math.exp(math.cos(math.pi / 6) / 0.5))
    assert v[0, 0].item() == pytest.approx(math.exp(0.5 / 0.5))
    with pytest.raises(SarjepaError, match="TRAINER.KNN.K"):
        knn_scores(train, torch.tensor([1, 0]), q, 2, 0, 0.5)


def test_standardise_uses_training_statistics_only():
    tr = np.array([[1.0, 5.0], [3.0, 5.0]])
    te = np.array([[2.0, 7.0]])
    a, b = standardise(tr, te)
    np.testing.assert_allclose(a, [[-1.0, 0.0], [1.0, 0.0]])  # constant dim: centred only
    np.testing.assert_allclose(b, [[0.0, 2.0]])


def test_c_search_picks_the_best_val_accuracy_and_refines_in_log_space():
    from sklearn.linear_model import LogisticRegression

    g = np.random.default_rng(1)
    centres = g.normal(size=(3, 8)) * 0.6

    def sample(n):
        y = np.repeat(np.arange(3), n)
        return centres[y] + g.normal(size=(len(y), 8)), y

    train, val = sample(4), sample(30)
    grid = [1e-4, 1e-2, 1.0, 1e2]
    best, tried = choose_c(train, val, grid, refine_steps=2, max_iter=500)
    accs = dict(tried)
    # naive: every C tried gets the accuracy of a fresh fit on train
    for c, a in tried:
        clf = LogisticRegression(C=c, max_iter=500, random_state=0).fit(*train)
        assert a == pytest.approx(100 * (clf.predict(val[0]) == val[1]).mean())
    first = min(grid, key=lambda c: (-accs[c], c))  # best of the grid, smaller C on ties
    assert accs[best] >= accs[first] and accs[best] == max(accs.values())
    # refinement candidates are the peak times 10^(+-1), then 10^(+-1/2) around the new peak
    assert {first * 10.0, first / 10.0} <= set(accs)
    assert len(tried) <= len(grid) + 4
    # the search's own model for the chosen C is the final model: bitwise a fresh fit
    fitted = {}
    assert choose_c(train, val, grid, refine_steps=2, max_iter=500, fitted=fitted) == (best, tried)
    assert set(fitted) == set(accs)
    fresh = LogisticRegression(C=best, max_iter=500, random_state=0).fit(*train)
    np.testing.assert_array_equal(fitted[best].coef_, fresh.coef_)
    np.testing.assert_array_equal(fitted[best].intercept_, fresh.intercept_)


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    return easy_data_with_checkpoint(tmp_path_factory)


@pytest.mark.parametrize("trainer", ["MIM_knn", "MIM_logreg"])
def test_probe_cells_use_the_cached_features_of_the_linear_probe(data, tmp_path, trainer):
    root, ckpt = data
    cache = tmp_path / "cache"
    runs = []
    for name in ("linear", trainer, trainer):
        cfg = tiny_cfg(
            root,
            tmp_path / name,
            cache,
            name if name != "linear" else "MIM_linear",
            MODEL__INIT_WEIGHTS=str(ckpt),
            DATASET__NUM_SHOTS=5,
        )
        tr = TRAINER_REGISTRY.get(cfg.TRAINER.NAME)(
            cfg, _dataset(cfg), torch.device("cpu"), log=lambda _m: None
        )
        runs.append(tr)
        tr.train()
        metrics = tr.test()
        assert 0 <= metrics["accuracy"] <= 100
        assert metrics["total"] == 30
    lin, first, second = runs
    assert not hasattr(first, "optim")  # no optimiser, no schedule
    assert first.store is not None and first.store.key == lin.store.key  # one cache per checkpoint
    # deterministic: the second run (features from disk) gives the same scores
    feats = first._features(first.dataset.test, "t")
    assert torch.equal(first.scores(feats), second.scores(feats))
    # the easy set is separable: a probe on the tiny ViT's features beats chance (10%) by far
    assert metrics["accuracy"] > 30


def _dataset(cfg):
    from sarjepa.benchmark.datasets import build_dataset

    return build_dataset(cfg)


def test_bad_probe_settings_are_one_line_errors(data, tmp_path):
    root, ckpt = data
    cfg = tiny_cfg(
        root, tmp_path / "o", tmp_path / "c", "MIM_logreg", TRAINER__LOGREG__C_GRID="[0.0]"
    )
    tr = TRAINER_REGISTRY.get("MIM_logreg")(cfg, _dataset(cfg), torch.device("cpu"), log=print)
    with pytest.raises(SarjepaError, match="C_GRID"):
        tr.train()
    cfg = tiny_cfg(
        root, tmp_path / "o2", tmp_path / "c", "MIM_knn", INPUT__TRANSFORMS="['random_flip']"
    )
    with pytest.raises(SarjepaError, match="fixed features"):
        TRAINER_REGISTRY.get("MIM_knn")(cfg, _dataset(cfg), torch.device("cpu"), log=print)


def test_grid_with_probe_protocols_writes_tables(data, tmp_path: Path):
    root, ckpt = data
    spec = GridSpec(
        methods={"ours": str(ckpt), "random": "none"},
        datasets=["MSTAR_SOC"],
        root=str(root),
        shots=[3],
        seeds=[0, 1],
        protocols=["knn", "logreg"],
        trainer_config="vit_b16",
        overrides=grid_overrides(),
    )
    counts = run_grid(spec, tmp_path / "run", log=lambda _m: None)
    assert counts["failed"] == 0 and counts["done"] == 8
    res = write_outputs(tmp_path / "run", reference="random")
    assert "knn" in res["markdown"] and "logreg" in res["markdown"]
    result = next((tmp_path / "run").rglob("MIM_logreg/**/result.json"))
    prov = json.loads(result.read_text())["provenance"]
    assert "logreg_c" in prov and prov["num_classes"] == 10  # the plot's chance line: 10%
    assert prov["logreg_c_selection"] == "val"  # MSTAR: val (from TRAIN) shares no test image


def _every_layout(tmp_path: Path):
    """(name, cfg) for every registered dataset, and both SARFolder layouts, on tiny trees."""
    from _bench_data_helpers import ACD_CLASSES, FUSAR_CLASSES, make_class_tree
    from sarjepa.benchmark.config import load_cfg
    from sarjepa.benchmark.datasets import DATASET_REGISTRY

    def cfg(name: str, root: Path):
        opts = ["DATASET.NAME", name, "DATASET.ROOT", str(root), "DATASET.NUM_SHOTS", "3"]
        return load_cfg(None, None, [*opts, "SEED", "1", "RUN.CACHE_DIR", str(tmp_path / "c")])

    for name in DATASET_REGISTRY.names():
        root = tmp_path / name
        if name.startswith("MSTAR"):
            classes = sorted(DATASET_REGISTRY.get(name).labels)
            for split in ("TRAIN", "TEST"):
                make_class_tree(root / name, split, classes, [6] * len(classes), ".jpeg")
            yield name, cfg(name, root)
        elif name == "New_FUSAR":
            make_class_tree(root / name, "Train", FUSAR_CLASSES, [6] * 10, ".png")
            make_class_tree(root / name, "Val", FUSAR_CLASSES, [4] * 10, ".png")
            yield name, cfg(name, root)
        elif name == "SAR_ACD":
            make_class_tree(root / name, "images", ACD_CLASSES, [40] * 5, ".jpg")
            yield name, cfg(name, root)
        elif name == "SARFolder":
            make_class_tree(root / "split", "train", ["a", "b"], [8, 8], ".png")
            make_class_tree(root / "split", "test", ["a", "b"], [4, 4], ".png")
            make_class_tree(root / "single", "", ["a", "b"], [16, 16], ".png")
            yield "SARFolder split", cfg(name, root / "split")
            yield "SARFolder single", cfg(name, root / "single")
        else:  # a newly registered dataset must join this walk
            raise AssertionError(f"no tiny layout for dataset {name} in this test")


def test_no_test_image_chooses_c_on_any_dataset_or_layout(tmp_path: Path) -> None:
    import os

    from sarjepa.benchmark.datasets import build_dataset
    from sarjepa.benchmark.trainers.probes import c_selection_images

    rules = {}
    for name, cfg in _every_layout(tmp_path):
        ds = build_dataset(cfg)
        rule, images = c_selection_images(ds)
        test = {os.path.realpath(d.impath) for d in ds.test}
        assert images or rule == "config", name
        assert not test & {os.path.realpath(d.impath) for d in images}, name
        rules[name] = rule
    # the layouts whose val pool is the test set fall back to the training shots
    assert rules["SAR_ACD"] == rules["SARFolder single"] == "train"
    assert rules["MSTAR_SOC"] == "val"


def test_logreg_cross_validates_on_the_shots_when_val_is_test(tmp_path: Path) -> None:
    from sarjepa.benchmark.trainers.probes import choose_c_cv, cv_folds

    rng = np.random.default_rng(0)
    y = np.repeat(np.arange(3), 4)
    x = rng.normal(size=(12, 5)) + 2.0 * y[:, None]
    folds = cv_folds(y)
    assert len(folds) == 4  # min(5, 4 shots per class)
    assert all(set(np.bincount(y[h])) == {1} for _, h in folds)  # stratified: one per class
    c, tried = choose_c_cv((x, y), folds, [0.01, 1.0], 1, 200)
    assert c in dict(tried) and max(a for _, a in tried) == dict(tried)[c]
    assert cv_folds(np.array([0, 1, 1])) == []  # a class with one shot: no cross-validation


def test_logreg_on_one_blas_thread_is_bitwise_the_default():
    """The probes fit with BLAS on one thread (speed on small shared boxes); the C search and the
    fitted model are bitwise those of the library's default thread count."""
    from sarjepa.benchmark.trainers.probes import _fit, choose_c, one_blas_thread

    rng = np.random.default_rng(0)
    x, vx = rng.normal(size=(100, 96)), rng.normal(size=(60, 96))
    y, vy = np.repeat(np.arange(10), 10), np.repeat(np.arange(10), 6)
    x[np.arange(100), y] += 2.0  # learnable
    vx[np.arange(60), vy] += 2.0
    grid = [0.01, 0.1, 1.0, 10.0]
    default = choose_c((x, y), (vx, vy), grid, 2, 200), _fit(x, y, 1.0, 200)
    with one_blas_thread():
        single = choose_c((x, y), (vx, vy), grid, 2, 200), _fit(x, y, 1.0, 200)
    assert default[0] == single[0]
    assert np.array_equal(default[1].coef_, single[1].coef_)
    assert np.array_equal(default[1].predict_proba(vx), single[1].predict_proba(vx))
