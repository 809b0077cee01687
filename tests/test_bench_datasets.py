"""Dataset readers: layouts, label maps, walk order, extensions, SARFolder and bad input."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from _bench_data_helpers import (
    ACD_CLASSES,
    FUSAR_CLASSES,
    MSTAR_CLASSES,
    make_class_tree,
    write_files,
)
from sarjepa.benchmark.config import load_cfg
from sarjepa.benchmark.core.errors import SarjepaError
from sarjepa.benchmark.datasets import DATASET_REGISTRY, build_dataset


def _cfg(tmp_path: Path, name: str, root: Path, shots: int = -1, seed: int = 0, extra=()):
    opts = ["DATASET.NAME", name, "DATASET.ROOT", str(root), "DATASET.NUM_SHOTS", str(shots)]
    opts += ["SEED", str(seed), "RUN.CACHE_DIR", str(tmp_path / "cache"), *extra]
    return load_cfg(None, None, opts)


def test_mstar_labels_walk_order_and_extensions(tmp_path, caplog):
    root = tmp_path / "data"
    base = root / "MSTAR_SOC"
    for split in ("TRAIN", "TEST"):
        make_class_tree(base, split, MSTAR_CLASSES, [5] * 10, ".jpeg", nested=False)
    deep = ["TRAIN/T72/z_top.jpeg", "TRAIN/T72/A/b/deep2.jpeg", "TRAIN/T72/A/deep1.jpeg"]
    deep += ["TRAIN/T72/B/deep3.jpeg"]
    ignored = ["TRAIN/T72/upper.JPEG", "TRAIN/T72/other.jpg", "TRAIN/T72/notes.txt"]
    write_files(base, deep + ignored)
    with caplog.at_level("WARNING", logger="sarjepa.datasets"):
        ds = build_dataset(_cfg(tmp_path, "mstar_soc", root))
    assert "skipped 2 image file(s)" in caplog.text
    assert ds.classnames == MSTAR_CLASSES and ds.num_classes == 10
    assert ds.lab2cname == dict(enumerate(MSTAR_CLASSES))
    rel = [ds.relpath(d) for d in ds.test]
    # classes in sorted folder order: 2S1 (label 4) first, ZSU234 (9) last
    assert [ds.test[0].label, ds.test[-1].label] == [4, 9]
    assert rel[0].startswith("TEST/2S1/") and rel == sorted(rel)
    t72 = [ds.relpath(d) for d in ds.train_x + ds.val if d.classname == "T72"]
    assert len(t72) == 9 and not any(r.endswith((".JPEG", ".jpg", ".txt")) for r in t72)
    assert {"TRAIN/T72/A/b/deep2.jpeg", "TRAIN/T72/B/deep3.jpeg"} <= set(t72)
    assert all(d.label == 2 for d in ds.train_x + ds.val if d.classname == "T72")


def test_walk_puts_folder_files_before_subfolders(tmp_path):
    root = tmp_path / "data"
    base = root / "MSTAR_SOC"
    write_files(base, [f"TEST/{c}/x.jpeg" for c in MSTAR_CLASSES])
    write_files(base, [f"TRAIN/{c}/{i}.jpeg" for c in MSTAR_CLASSES for i in range(5)])
    write_files(base, ["TEST/BMP2/A/a.jpeg", "TEST/BMP2/z.jpeg", "TEST/BMP2/A/B/b.jpeg"])
    write_files(base, ["TEST/BMP2/A/c.jpeg", "TEST/BMP2/AB/d.jpeg"])
    ds = build_dataset(_cfg(tmp_path, "MSTAR_SOC", root))
    bmp2 = [ds.relpath(d) for d in ds.test if d.classname == "BMP2"]
    assert bmp2 == [
        "TEST/BMP2/x.jpeg",
        "TEST/BMP2/z.jpeg",
        "TEST/BMP2/A/a.jpeg",
        "TEST/BMP2/A/c.jpeg",
        "TEST/BMP2/A/B/b.jpeg",
        "TEST/BMP2/AB/d.jpeg",
    ]


def test_fusar_layout_labels_and_png_jpg(tmp_path):
    root = tmp_path / "data"
    base = root / "New_FUSAR"
    make_class_tree(base, "Train", FUSAR_CLASSES, [6] * 10, ".png")
    make_class_tree(base, "Val", FUSAR_CLASSES, [2] * 10, ".jpg")
    write_files(base, ["Val/Tanker/extra.png", "Val/Tanker/skip.bmp"])
    ds = build_dataset(_cfg(tmp_path, "new_fusar", root, shots=2))
    assert ds.classnames == FUSAR_CLASSES
    assert len(ds.test) == 21 and len(ds.train_x) == 20 and len(ds.val) == 10
    assert {d.label for d in ds.test if d.classname == "Tanker"} == {9}
    assert all(ds.relpath(d).startswith("Val/") for d in ds.test)


def test_sar_acd_test_is_the_90_percent_part(tmp_path):
    root = tmp_path / "data"
    counts = [20, 31, 10, 45, 27]
    rels = make_class_tree(root / "SAR_ACD", "images", ACD_CLASSES, counts, ".jpg")
    ds = build_dataset(_cfg(tmp_path, "sar_acd", root, shots=1, seed=2))
    assert ds.classnames == ACD_CLASSES
    train = {ds.relpath(d) for d in ds.train_x}
    test = [ds.relpath(d) for d in ds.test]
    per_class = {c: sum(r.split("/")[1] == c for r in test) for c in ACD_CLASSES}
    assert per_class == {c: round(n * 0.9) for c, n in zip(ACD_CLASSES, counts)}
    assert train.isdisjoint(test) and len(train) == 5
    assert {ds.relpath(d) for d in ds.val} <= set(test) and len(ds.val) == 5
    assert len(set(test)) == len(test) and set(test) | set(rels) == set(rels)


def test_sar_acd_ignore_classes(tmp_path):
    root = tmp_path / "data"
    make_class_tree(root / "SAR_ACD", "images", ACD_CLASSES + ["A320"], [12] * 6, ".jpg")
    with pytest.raises(SarjepaError, match="unknown class folder '.*images/A320'"):
        build_dataset(_cfg(tmp_path, "SAR_ACD", root))
    ds = build_dataset(_cfg(tmp_path, "SAR_ACD", root, extra=["DATASET.IGNORE_CLASSES", "A320"]))
    assert ds.num_classes == 5 and all(d.classname != "A320" for d in ds.test)


def test_dataset_folder_may_be_the_root_itself(tmp_path):
    base = tmp_path / "my_mstar"
    for split in ("TRAIN", "TEST"):
        make_class_tree(base, split, MSTAR_CLASSES, [5] * 10, ".jpeg")
    ds = build_dataset(_cfg(tmp_path, "mstar", base))
    assert len(ds.test) == 50 and ds.relpath(ds.test[0]).startswith("TEST/2S1/")


def test_subsample_base_new(tmp_path):
    root = tmp_path / "data"
    make_class_tree(root / "SAR_ACD", "images", ACD_CLASSES, [20] * 5, ".jpg")
    base = build_dataset(
        _cfg(tmp_path, "SAR_ACD", root, extra=["DATASET.SUBSAMPLE_CLASSES", "base"])
    )
    new = build_dataset(_cfg(tmp_path, "SAR_ACD", root, extra=["DATASET.SUBSAMPLE_CLASSES", "new"]))
    assert base.classnames == ["A220", "A330", "ARJ21"]
    assert new.classnames == ["Boeing737", "Boeing787"]
    assert {d.label for d in new.test} == {0, 1}


@pytest.mark.parametrize("layout", ["split", "single"])
def test_sarfolder(tmp_path, layout):
    root = tmp_path / "mine"
    classes = ["ship", "Car", "tank"]
    if layout == "split":
        make_class_tree(root, "train", classes, [10, 12, 8], ".PNG")
        make_class_tree(root, "test", classes, [3, 3, 3], ".bmp")
    else:
        make_class_tree(root, "", classes, [10, 12, 8], ".jpg")
    ds = build_dataset(_cfg(tmp_path, "sarfolder", root, shots=4))
    assert ds.classnames == sorted(classes)  # ["Car", "ship", "tank"]
    assert len(ds.train_x) == 12
    if layout == "split":
        assert len(ds.test) == 9 and ds.relpath(ds.test[0]).startswith("test/Car/")
    else:
        assert len(ds.test) == 5 + 6 + 4  # TEST_FRACTION 0.5 of 10, 12, 8


def test_sarfolder_test_class_missing_from_train(tmp_path):
    root = tmp_path / "mine"
    make_class_tree(root, "train", ["a", "b"], [6, 6], ".png")
    make_class_tree(root, "test", ["a", "b", "c"], [2, 2, 2], ".png")
    with pytest.raises(SarjepaError, match="unknown class folder '.*test/c'"):
        build_dataset(_cfg(tmp_path, "SARFolder", root))


def test_registry_names_and_aliases(tmp_path):
    mstar = ["MSTAR_EOC1", "MSTAR_EOC2C", "MSTAR_EOC2V", "MSTAR_SOC"]
    assert DATASET_REGISTRY.names() == mstar + ["New_FUSAR", "SARFolder", "SAR_ACD"]
    for alias in [m.lower() for m in mstar] + ["new_fusar", "sar_acd", "sarfolder"]:
        assert DATASET_REGISTRY.resolve(alias).lower() == alias
    with pytest.raises(SarjepaError, match="did you mean 'SAR_ACD'"):
        build_dataset(_cfg(tmp_path, "SAR_ACDD", tmp_path))


def test_missing_root_names_expected_layout(tmp_path):
    with pytest.raises(SarjepaError, match=r"MSTAR_SOC/TRAIN/<class>/\*\*/\*\.jpeg"):
        build_dataset(_cfg(tmp_path, "MSTAR_SOC", tmp_path / "nowhere"))
    (tmp_path / "empty").mkdir()
    with pytest.raises(SarjepaError, match=r"dataset folder not found: .*New_FUSAR.*Train"):
        build_dataset(_cfg(tmp_path, "New_FUSAR", tmp_path / "empty"))
    with pytest.raises(SarjepaError, match="DATASET.ROOT is not set"):
        build_dataset(_cfg(tmp_path, "SAR_ACD", ""))
    make_class_tree(tmp_path / "d" / "MSTAR_SOC", "TRAIN", MSTAR_CLASSES, [5] * 10, ".jpeg")
    with pytest.raises(SarjepaError, match=r"folder not found: '.*MSTAR_SOC/TEST'"):
        build_dataset(_cfg(tmp_path, "MSTAR_SOC", tmp_path / "d"))


def test_bad_folders_are_named(tmp_path):
    root = tmp_path / "data"
    base = root / "MSTAR_SOC"
    for split in ("TRAIN", "TEST"):
        make_class_tree(base, split, MSTAR_CLASSES, [5] * 10, ".jpeg")
    write_files(base, ["TRAIN/Tiger/x.jpeg"])
    with pytest.raises(SarjepaError, match=r"unknown class folder '.*TRAIN/Tiger'.*BMP2"):
        build_dataset(_cfg(tmp_path, "MSTAR_SOC", root))
    (base / "TRAIN" / "Tiger" / "x.jpeg").unlink()  # an unknown folder without images is skipped
    build_dataset(_cfg(tmp_path, "MSTAR_SOC", root))
    shutil.rmtree(base / "TEST" / "D7")
    write_files(base, ["TEST/D7/readme.txt"])
    with pytest.raises(SarjepaError, match=r"class folder '.*TEST/D7' holds no images"):
        build_dataset(_cfg(tmp_path, "MSTAR_SOC", root))


def test_image_directly_in_split_folder(tmp_path):
    root = tmp_path / "data"
    make_class_tree(root / "SAR_ACD", "images", ACD_CLASSES, [10] * 5, ".jpg")
    write_files(root / "SAR_ACD", ["images/stray.jpg"])
    with pytest.raises(SarjepaError, match=r"'.*images/stray.jpg' lies directly in the split"):
        build_dataset(_cfg(tmp_path, "SAR_ACD", root))


def test_too_small_class_for_a_val_part(tmp_path):
    root = tmp_path / "data"
    counts = [5] * 10
    counts[3] = 2  # round(2 * 0.2) = 0 validation images (Dassl asserts)
    for split in ("TRAIN", "TEST"):
        make_class_tree(root / "MSTAR_SOC", split, MSTAR_CLASSES, counts, ".jpeg")
    with pytest.raises(SarjepaError, match="class 'BTR60' has 2 image"):
        build_dataset(_cfg(tmp_path, "MSTAR_SOC", root))


def test_posix_relpath_is_relpath_as_posix(tmp_path, monkeypatch):
    """The fast path (a normalised path inside the folder as given) and the fallback both give
    ``PurePath(os.path.relpath(path, start)).as_posix()``."""
    import os
    from pathlib import PurePath

    from sarjepa.benchmark.datasets.base import posix_relpath

    monkeypatch.chdir(tmp_path)
    cases = [
        ("data/MSTAR_SOC/TEST/2S1/a.jpeg", "data/MSTAR_SOC"),  # the readers' case: fast path
        (f"{tmp_path}/d/x/y.png", f"{tmp_path}/d"),
        ("data/X/a.jpeg", "data/X/"),  # a trailing separator: relpath's way
        ("data/X/../Y/a.jpeg", "data/X"),
        ("./data/X/a.jpeg", "data/X"),
        ("data//X/a.jpeg", "data/X"),
        ("data/XY/a.jpeg", "data/X"),  # a prefix of the name, not the folder
        ("data/X", "data/X"),
        ("other/a.jpeg", "data/X"),
        (f"{tmp_path}/data/X/a.jpeg", "data/X"),  # absolute inside a relative folder
        ("data/X/a.jpeg", f"{tmp_path}/data/X"),
        ("data/X/sub dir/ü.jpeg", "data/X"),
    ]
    for path, start in cases:
        assert posix_relpath(path, start) == PurePath(os.path.relpath(path, start)).as_posix()
