"""`sarjepa pool-check`: a pretraining pool holding a test image is caught by decoded content."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from sarjepa.benchmark.cli import main
from sarjepa.benchmark.commands.pretrain import warn_on_overlap
from sarjepa.benchmark.datasets import pool_check as pc

CLASSES = ("BMP2", "T72")


def _chip(seed: int, size: int = 24) -> np.ndarray:
    """A speckle-like chip: distinct seeds lie tens of grey levels apart (RMS)."""
    g = np.random.default_rng(seed)
    return np.clip(g.gamma(2.0, 30.0, (size, size)), 0, 255).astype(np.uint8)


def _save(arr: np.ndarray, path: Path, **kw) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(arr).save(path, **kw)
    return path


@pytest.fixture
def root(tmp_path: Path, monkeypatch) -> Path:
    """A dataset root with MSTAR_SOC (3 train + 3 test chips per class) and SAR_ACD."""
    monkeypatch.setenv("SARJEPA_CACHE", str(tmp_path / "cache"))
    r = tmp_path / "datasets"
    seed = 0
    for split in ("TRAIN", "TEST"):
        for cls in CLASSES:
            for _ in range(3):
                seed += 1
                _save(_chip(seed), r / "MSTAR_SOC" / split / cls / f"HB{seed:05d}.000.jpeg")
    for k in range(2):
        _save(_chip(500 + k), r / "SAR_ACD" / "images" / "A220" / f"{k}.jpg")
    return r


@pytest.fixture
def clean_pool(tmp_path: Path) -> Path:
    pool = tmp_path / "pool"
    for k in range(12):
        _save(_chip(1000 + k), pool / "cd" / f"HB{k:05d}.001.jpeg", quality=90)
    return pool


def _test_chip(root: Path, cls: str = "T72", k: int = 0) -> Path:
    return sorted((root / "MSTAR_SOC" / "TEST" / cls).iterdir())[k]


def test_the_registered_test_sets_are_found(root: Path):
    sets = {s.name: s for s in pc.registered_test_sets(root)}
    assert set(sets) == {"MSTAR_SOC/TEST", "SAR_ACD/images"}  # SAR_ACD's test set is its pool
    assert len(sets["MSTAR_SOC/TEST"].files) == 6
    only = pc.registered_test_sets(root, ["mstar"])
    assert [s.name for s in only] == ["MSTAR_SOC/TEST"]


def test_a_clean_pool_passes(root: Path, clean_pool: Path, capsys):
    assert main(["pool-check", "--data", str(clean_pool), "--check-root", str(root)]) == 0
    out = capsys.readouterr().out
    assert "MSTAR_SOC/TEST: 0 of 12 pool images copy one of its 6 test images (none)" in out


def test_renamed_and_re_encoded_copies_are_caught(root: Path, clean_pool: Path, capsys):
    t72, bmp2, other = _test_chip(root), _test_chip(root, "BMP2", 1), _test_chip(root, "T72", 2)
    shutil.copyfile(t72, clean_pool / "cd" / "renamed.jpeg")
    (clean_pool / "sub").mkdir()
    shutil.copyfile(bmp2, clean_pool / "sub" / "HB99999.003.jpeg")
    # lossless re-encodes: the decoded JPEG as PNG, and as an RGB TIFF of equal channels
    _save(np.asarray(Image.open(t72)), clean_pool / "as_png.png")
    grey = np.asarray(Image.open(bmp2))
    _save(np.stack([grey] * 3, -1), clean_pool / "as_rgb.tif")
    # a lossy round trip (decoded and saved again as JPEG at its own quality): a near copy
    _save(np.asarray(Image.open(other)), clean_pool / "resaved.jpeg", quality=75)
    assert main(["pool-check", "--data", str(clean_pool), "--check-root", str(root)]) == 1
    out = capsys.readouterr().out
    lines = [ln for ln in out.splitlines() if "MSTAR_SOC/TEST/" in ln]
    assert len(lines) == 5, out
    want = {
        "renamed.jpeg": f"T72/{t72.name} (exact)",
        "HB99999.003.jpeg": f"BMP2/{bmp2.name} (exact)",
        "as_png.png": f"T72/{t72.name} (exact)",
        "as_rgb.tif": f"BMP2/{bmp2.name} (exact)",
        "resaved.jpeg": f"T72/{other.name} (near, rms ",
    }
    for name, what in want.items():
        assert any(name in ln and f"MSTAR_SOC/TEST/{what}" in ln for ln in lines), (name, out)
    assert "MSTAR_SOC/TEST: 5 of 17 pool images copy one of its 6 test images" in out
    # exact copies only: the re-save is no longer reported
    assert main(
        ["pool-check", "--data", str(clean_pool), "--check-root", str(root), "--near-rms", "0"]
    )
    assert "resaved.jpeg" not in capsys.readouterr().out


def test_what_the_near_check_does_not_catch(root: Path, clean_pool: Path):
    gray = np.asarray(Image.open(_test_chip(root)))
    brighter = np.clip(gray.astype(int) + 4, 0, 255).astype(np.uint8)
    _save(brighter, clean_pool / "brighter.png")  # 4 grey levels off everywhere
    _save(gray[:, ::-1].copy(), clean_pool / "flipped.png")
    assert pc.check_pool(clean_pool, root).overlaps == []


def test_fingerprints_are_cached_outside_the_folders_and_reused(
    root: Path, clean_pool: Path, tmp_path: Path, monkeypatch
):
    before = sorted(p for p in root.rglob("*"))
    pc.check_pool(clean_pool, root)
    assert sorted(p for p in root.rglob("*")) == before  # nothing written in the dataset
    assert list((tmp_path / "cache" / "pool-check").glob("*.npz"))
    calls = []
    real = pc.read_gray
    monkeypatch.setattr(pc, "read_gray", lambda *a, **k: calls.append(a) or real(*a, **k))
    assert pc.check_pool(clean_pool, root).overlaps == []
    assert calls == []  # every fingerprint came from the cache
    added = _save(_chip(7), clean_pool / "new.png")
    pc.check_pool(clean_pool, root)
    assert [Path(a[0]) for a in calls] == [added]  # only the new file is decoded


def test_a_cache_inside_the_dataset_is_refused(root: Path, clean_pool: Path):
    with pytest.raises(pc.SarjepaError, match="inside the dataset folder"):
        pc.check_pool(clean_pool, root, cache_dir=str(root / "MSTAR_SOC" / "TEST" / "c"))


def test_a_root_without_test_sets_is_one_line_error(tmp_path: Path, clean_pool: Path, capsys):
    (tmp_path / "empty").mkdir()
    argv = ["pool-check", "--data", str(clean_pool), "--check-root", str(tmp_path / "empty")]
    assert main(argv) == 2
    assert "no test set of a registered dataset" in capsys.readouterr().err


def test_pretrain_warns_when_its_data_overlaps_a_test_set(root: Path, clean_pool, capsys):
    assert warn_on_overlap(str(clean_pool), str(root)) == 0
    assert capsys.readouterr().err == ""
    shutil.copyfile(_test_chip(root), clean_pool / "leak.jpeg")
    assert warn_on_overlap(str(clean_pool), str(root)) == 1
    err = capsys.readouterr().err
    assert "warning: pretraining data" in err and "1 image(s) of the test set MSTAR_SOC/TEST" in err


def test_pretrain_checks_only_when_asked(root: Path, clean_pool: Path, tmp_path, monkeypatch):
    import sarjepa.pretrain.train as train_mod

    shutil.copyfile(_test_chip(root), clean_pool / "leak.jpeg")
    checked = []
    monkeypatch.setattr(pc, "check_pool", lambda *a, **k: checked.append(a) or _no_overlap())
    monkeypatch.setattr(train_mod, "train", lambda cfg, resume="": {"rank": 1})
    argv = ["pretrain", "--config", "sarjepa_tiny", "--data", str(clean_pool)]
    assert main(argv + ["--output", str(tmp_path / "o")]) == 0
    assert checked == []  # the default: no check, no extra time
    assert main(argv + ["--output", str(tmp_path / "o"), "--check-root", str(root)]) == 0
    assert len(checked) == 1


def _no_overlap():
    return pc.PoolCheck(Path("."), [], 0)
