"""Few-shot split protocol: call order vs. an independent replica, split files, the JSON cache."""

from __future__ import annotations

import hashlib
import json
import random
import shutil
from pathlib import Path

import pytest
from _bench_data_helpers import (
    ACD_CLASSES,
    MSTAR_CLASSES,
    listing_snapshot,
    make_class_tree,
)
from sarjepa.benchmark.cli import main
from sarjepa.benchmark.config import load_cfg
from sarjepa.benchmark.core.errors import SarjepaError
from sarjepa.benchmark.datasets import Datum, build_dataset
from sarjepa.benchmark.datasets.splits import fewshot_protocol

MSTAR_LABELS = {c: i for i, c in enumerate(MSTAR_CLASSES)}
ACD_LABELS = {c: i for i, c in enumerate(ACD_CLASSES)}


def replica(groups: list[list[str]], shots: int, p_val: float, seed: int, test_is_val: bool):
    """Independent re-statement of the authors' call order on the global ``random`` module.

    ``groups``: per class (in walk order) the item names in walk order.
    """
    random.seed(seed)
    train_groups, val_groups = [], []
    for items in groups:
        order = list(range(len(items)))
        n_val = round(len(items) * p_val)
        random.shuffle(order)
        val_groups.append([items[i] for i in order[:n_val]])
        train_groups.append([items[i] for i in order[n_val:]])
    test = [x for g in val_groups for x in g] if test_is_val else None
    train, val = [], []
    for g in train_groups:
        train += random.sample(g, shots) if len(g) >= shots else g
    for g in val_groups:
        k = min(shots, 10)
        val += random.sample(g, k) if len(g) >= k else g
    return train, val, test


@pytest.mark.parametrize("seed", [0, 1, 7])
@pytest.mark.parametrize("shots", [1, 5, 40])
def test_protocol_matches_replica_on_hand_built_list(seed, shots):
    rng = random.Random(123)
    sizes = [rng.randint(3, 60) for _ in range(6)]
    labels = [4, 0, 5, 3, 1, 2]  # first-appearance order differs from label order
    groups = [[f"c{lab}_{i}" for i in range(n)] for lab, n in zip(labels, sizes)]
    items = [Datum(name, lab, f"c{lab}") for lab, g in zip(labels, groups) for name in g]
    for p_val, test_is_val in ((0.2, False), (0.9, True)):
        train, val, test = fewshot_protocol(
            items, None if test_is_val else [], shots, p_val, rng=random.Random(seed)
        )
        exp_train, exp_val, exp_test = replica(groups, shots, p_val, seed, test_is_val)
        assert [d.impath for d in train] == exp_train
        assert [d.impath for d in val] == exp_val
        if test_is_val:
            assert [d.impath for d in test] == exp_test


def test_protocol_global_random_is_dassl_stream():
    items = [Datum(f"x{i}", i % 3, str(i % 3)) for i in range(50)]
    random.seed(0)
    a = fewshot_protocol(items, [], 4, 0.2, rng=None)
    b = fewshot_protocol(items, [], 4, 0.2, rng=random.Random(0))
    assert a == b


def _mstar(tmp_path: Path, counts=None, seed: int = 0) -> tuple[Path, dict[str, list[str]]]:
    root = tmp_path / "data"
    counts = counts or [12 + 3 * i for i in range(10)]
    rels = {
        s: make_class_tree(root / "MSTAR_SOC", s, MSTAR_CLASSES, counts, ".jpeg", seed=seed + j)
        for j, s in enumerate(("TRAIN", "TEST"))
    }
    return root, rels


def _walk_groups(rels: list[str], split: str) -> list[list[str]]:
    """Class groups of relative paths in the sorted-walk order (files before sub-folders)."""
    by_class: dict[str, list[str]] = {}
    for rel in rels:
        by_class.setdefault(rel.split("/")[1], []).append(rel)

    def key(rel: str) -> tuple:
        parts = rel.split("/")[2:]
        # os.walk top-down: a folder's files sort before its sub-folders
        return tuple((1, p) for p in parts[:-1]) + ((0, parts[-1]),)

    return [sorted(by_class[c], key=key) for c in sorted(by_class)]


@pytest.mark.parametrize("seed", [0, 3])
def test_mstar_split_matches_replica(tmp_path, seed):
    root, rels = _mstar(tmp_path)
    cfg = load_cfg(
        None,
        "mstar_soc",
        ["DATASET.ROOT", str(root), "DATASET.NUM_SHOTS", "10", "SEED", str(seed)]
        + ["RUN.CACHE_DIR", str(tmp_path / "cache")],
    )
    ds = build_dataset(cfg)
    lists = ds.split_lists()
    exp_train, exp_val, _ = replica(_walk_groups(rels["TRAIN"], "TRAIN"), 10, 0.2, seed, False)
    assert lists["train"] == exp_train
    assert lists["val"] == exp_val
    test_groups = _walk_groups(rels["TEST"], "TEST")
    assert lists["test"] == [r for g in test_groups for r in g]
    assert [d.label for d in ds.train_x] == [MSTAR_LABELS[r.split("/")[1]] for r in exp_train]


def test_sar_acd_split_matches_replica(tmp_path):
    root = tmp_path / "data"
    rels = make_class_tree(root / "SAR_ACD", "images", ACD_CLASSES, [30, 41, 25, 50, 33], ".jpg")
    cfg = load_cfg(
        None,
        "sar_acd",
        ["DATASET.ROOT", str(root), "DATASET.NUM_SHOTS", "2", "SEED", "0"]
        + ["RUN.CACHE_DIR", str(tmp_path / "cache")],
    )
    lists = build_dataset(cfg).split_lists()
    exp_train, exp_val, exp_test = replica(_walk_groups(rels, "images"), 2, 0.9, 0, True)
    assert (lists["train"], lists["val"], lists["test"]) == (exp_train, exp_val, exp_test)


def test_seed_zero_is_a_real_seed(tmp_path):
    root, _ = _mstar(tmp_path)

    def lists(seed):
        opts = ["DATASET.ROOT", str(root), "DATASET.NUM_SHOTS", "5", "SEED", str(seed)]
        cfg = load_cfg(None, "mstar_soc", opts + ["RUN.CACHE_DIR", str(tmp_path / f"c{seed}")])
        return build_dataset(cfg).split_lists()

    random.seed(99)  # the global state must not matter
    first = lists(0)
    random.seed(5)
    assert lists(0) == first
    assert lists(1)["train"] != first["train"]


def test_splits_command_writes_relative_lists(tmp_path, capsys):
    root, rels = _mstar(tmp_path)
    out = tmp_path / "out" / "split.json"
    argv = ["splits", "--dataset", "mstar_soc", "--data", str(root), "--shots", "10"]
    argv += ["--seed", "0", "--out", str(out), "--cache-dir", str(tmp_path / "cache")]
    assert main(argv) == 0
    data = json.loads(out.read_text())
    assert list(data) == ["train", "val", "test"]
    assert len(data["train"]) == 100 and len(data["test"]) == len(rels["TEST"])
    for path in data["train"] + data["val"] + data["test"]:
        assert "\\" not in path and not path.startswith("/")
        assert (root / "MSTAR_SOC" / path).is_file()
    assert set(data["test"]) == set(rels["TEST"])
    assert set(data["train"]).isdisjoint(data["val"])
    digest = hashlib.sha256(out.read_bytes()).hexdigest()
    assert digest in capsys.readouterr().err
    cfg = load_cfg(
        None,
        "mstar_soc",
        ["DATASET.ROOT", str(root), "DATASET.NUM_SHOTS", "10", "SEED", "0"]
        + ["RUN.CACHE_DIR", str(tmp_path / "cache2")],
    )
    ds = build_dataset(cfg)
    assert ds.split_lists() == data and ds.split_info["split_hash"] == digest


def test_cache_keyed_and_dataset_folder_untouched(tmp_path):
    root_a, _ = _mstar(tmp_path / "a")
    root_b, _ = _mstar(tmp_path / "b", counts=[20] * 10)
    cache = tmp_path / "cache"
    before = listing_snapshot(root_a)

    def build(root, shots, seed):
        opts = ["DATASET.ROOT", str(root), "DATASET.NUM_SHOTS", str(shots), "SEED", str(seed)]
        ds = build_dataset(load_cfg(None, "mstar_soc", opts + ["RUN.CACHE_DIR", str(cache)]))
        return ds.split_info["cache_file"], ds.split_lists()

    files = {build(root_a, 10, 0)[0], build(root_a, 20, 0)[0], build(root_a, 10, 1)[0]}
    files.add(build(root_b, 10, 0)[0])
    assert len(files) == 4
    assert sorted(p.name for p in (cache / "splits").iterdir()) == sorted(
        Path(f).name for f in files
    )
    # a second build reuses the cache file: no new file, same lists
    path, lists = build(root_a, 10, 0)
    assert len(list((cache / "splits").iterdir())) == 4
    payload = json.loads(Path(path).read_text())
    assert payload["train"] == lists["train"] and payload["seed"] == 0
    # the cache is really read: a hand-edited (still valid) cache file is what comes back
    payload["train"] = payload["train"][::-1]
    Path(path).write_text(json.dumps(payload))
    assert build(root_a, 10, 0)[1]["train"] == lists["train"][::-1]
    assert listing_snapshot(root_a) == before


def test_cache_key_follows_the_data_of_the_same_folder(tmp_path):
    """Same folder and spec, one more image: another cache file and the split of the new data.

    Every cached path still exists after the addition, so a key without the data fingerprint
    would read the old split back without a warning; the other tests change the folder itself.
    """
    root, rels = _mstar(tmp_path)
    opts = ["DATASET.ROOT", str(root), "DATASET.NUM_SHOTS", "5", "SEED", "0"]

    def build(cache: Path):
        ds = build_dataset(load_cfg(None, "mstar_soc", opts + ["RUN.CACHE_DIR", str(cache)]))
        return ds.split_info["cache_file"], ds.split_lists()

    old_path, old = build(tmp_path / "cache")
    first = next(r for r in rels["TRAIN"] if r.split("/")[1] == MSTAR_CLASSES[0])
    src = root / "MSTAR_SOC" / first
    shutil.copyfile(src, src.with_name("zz_extra.jpeg"))
    new_path, new = build(tmp_path / "cache")
    assert new_path != old_path and Path(old_path).is_file()
    assert new == build(tmp_path / "fresh_cache")[1] and new != old


def test_cache_inside_dataset_folder_refused(tmp_path):
    root, _ = _mstar(tmp_path)
    opts = ["DATASET.ROOT", str(root), "DATASET.NUM_SHOTS", "5", "SEED", "0"]
    inside = root / "MSTAR_SOC" / "cache"
    with pytest.raises(SarjepaError, match="inside the dataset folder"):
        build_dataset(load_cfg(None, "mstar_soc", opts + ["RUN.CACHE_DIR", str(inside)]))
    assert not inside.exists()


def test_short_class_warns_or_fails_strictly(tmp_path, caplog):
    counts = [30] * 10
    counts[MSTAR_CLASSES.index("D7")] = 6  # 6 - round(1.2) = 5 training images < 10 shots
    root, _ = _mstar(tmp_path, counts=counts)
    opts = ["DATASET.ROOT", str(root), "DATASET.NUM_SHOTS", "10", "SEED", "0"]
    opts += ["RUN.CACHE_DIR", str(tmp_path / "cache")]
    with caplog.at_level("WARNING", logger="sarjepa.datasets"):
        ds = build_dataset(load_cfg(None, "mstar_soc", opts))
    assert "'D7' has 5" in caplog.text
    assert sum(d.classname == "D7" for d in ds.train_x) == 5
    with pytest.raises(SarjepaError, match="'D7' has 5"):
        build_dataset(load_cfg(None, "mstar_soc", opts + ["RUN.STRICT_SHOTS", "True"]))
    argv = ["splits", "--dataset", "MSTAR_SOC", "--data", str(root), "--shots", "10"]
    argv += ["--seed", "0", "--strict-shots", "--out", str(tmp_path / "s.json")]
    argv += ["--cache-dir", str(tmp_path / "cache")]
    assert main(argv) == 2
    assert not (tmp_path / "s.json").exists()
