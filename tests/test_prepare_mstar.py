"""`sarjepa prepare mstar` on a generated fake release with the public CDs' folder structure."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from sarjepa.benchmark.cli import main
from sarjepa.benchmark.core.errors import SarjepaError
from sarjepa.benchmark.datasets import mstar_release as mr

TGT = "MSTAR_PUBLIC_TARGETS_CHIPS_T72_BMP2_BTR70_SLICY/TARGETS"
MIX1 = "MSTAR_PUBLIC_MIXED_TARGETS_CD1"
MIX2 = "MSTAR_PUBLIC_MIXED_TARGETS_CD2"
VAR = "MSTAR_PUBLIC_T_72_VARIANTS_CD1"

# (folder, number of chips): SOC vehicles with decoy serials, depressions and SLICY
LAYOUT = [
    (f"{TGT}/TRAIN/17_DEG/BMP2/SN_9563", 3),
    (f"{TGT}/TRAIN/17_DEG/BMP2/SN_9566", 2),  # decoy serial (EOC-2 version variant)
    (f"{TGT}/TRAIN/17_DEG/BTR70/SN_C71", 3),
    (f"{TGT}/TRAIN/17_DEG/T72/SN_132", 3),
    (f"{TGT}/TRAIN/17_DEG/T72/SN_812", 2),  # decoy serial
    (f"{TGT}/TEST/15_DEG/BMP2/SN_9563", 2),
    (f"{TGT}/TEST/15_DEG/BMP2/SN_C21", 1),  # decoy serial
    (f"{TGT}/TEST/15_DEG/BTR70/SN_C71", 2),
    (f"{TGT}/TEST/15_DEG/T72/SN_132", 2),
    ("MSTAR_PUBLIC_TARGETS_CHIPS_T72_BMP2_BTR70_SLICY/SLICY/15_DEG", 2),  # not a class folder
    (f"{MIX1}/15_DEG/COL2/SCENE1/BTR_60", 2),
    (f"{MIX1}/17_DEG/COL2/SCENE1/BTR_60", 3),
    (f"{MIX1}/15_DEG/COL2/SCENE1/SLICY", 1),  # excluded class
    (f"{MIX2}/30_DEG/COL2/SCENE1/2S1", 2),  # EOC-1 depression, not SOC
    (f"{VAR}/17_DEG/COL2/SCENE1/A64", 2),  # a T72 variant
]
for _cls in ("2S1", "BRDM_2", "D7", "T62", "ZIL131", "ZSU_23_4"):
    LAYOUT += [(f"{MIX1}/17_DEG/COL2/SCENE1/{_cls}", 3), (f"{MIX1}/15_DEG/COL2/SCENE1/{_cls}", 2)]

SOC_TRAIN = {"BMP2": 3, "BTR70": 3, "T72": 3, "BTR60": 3, "2S1": 3, "BRDM2": 3, "D7": 3, "T62": 3,
             "ZIL131": 3, "ZSU234": 3}  # fmt: skip
SOC_TEST = {"BMP2": 2, "BTR70": 2, "T72": 2, "BTR60": 2, "2S1": 2, "BRDM2": 2, "D7": 2, "T62": 2,
            "ZIL131": 2, "ZSU234": 2}  # fmt: skip


def make_release(root: Path, layout=LAYOUT) -> Path:
    g = np.random.default_rng(0)
    n = 0
    for folder, count in layout:
        d = root / folder
        d.mkdir(parents=True, exist_ok=True)
        for _ in range(count):
            arr = g.integers(0, 256, (20, 20), dtype=np.uint8)
            Image.fromarray(arr).save(d / f"HB{n:05d}.{n % 7:03d}.jpeg", quality=90)
            n += 1
        (d / "README.TXT").write_text("not a chip")
    return root


def _snapshot(root: Path) -> dict[str, tuple[int, int, bytes]]:
    out = {}
    for p in sorted(root.rglob("*")):
        if p.is_file():
            st = p.stat()
            out[p.relative_to(root).as_posix()] = (st.st_size, st.st_mtime_ns, p.read_bytes())
    return out


@pytest.fixture
def release(tmp_path: Path) -> Path:
    return make_release(tmp_path / "release")


def test_paths_describe_class_serial_and_depression():
    d = mr.describe_chip
    assert d(f"{TGT}/TRAIN/17_DEG/T72/SN_132/HB1.000.jpeg") == mr.Chip(
        f"{TGT}/TRAIN/17_DEG/T72/SN_132/HB1.000.jpeg", "T72", "132", 17
    )
    assert d(f"{MIX1}/15_DEG/COL2/SCENE1/ZSU_23_4/HB2.jpeg").cls == "ZSU234"
    assert d(f"{MIX1}/15_DEG/COL2/SCENE1/ZSU_23_4/HB2.jpeg").serial == ""
    v = d(f"{VAR}/17_DEG/COL2/SCENE1/A64/HB3.jpg")
    assert (v.cls, v.serial, v.depression) == ("T72", "A64", 17)
    assert d(f"{MIX1}/COL2/SCENE1/D7/HB4.jpeg") is None  # no depression folder
    assert d(f"{MIX1}/15_DEG/COL2/SCENE1/HB5.jpeg") is None  # no class folder
    assert d(f"{TGT}/TRAIN/17_DEG/T72/SN_132/HB1.000.jpeg").name == "HB1.000"


def test_soc_layout_counts_serials_links_and_manifest(release: Path, tmp_path: Path):
    before = _snapshot(release)
    out = tmp_path / "data"
    assert main(["prepare", "mstar", "--data", str(release), "--out", str(out)]) == 0
    soc = out / "MSTAR_SOC"
    for split, want in (("TRAIN", SOC_TRAIN), ("TEST", SOC_TEST)):
        got = {c.name: len(list(c.glob("*.jpeg"))) for c in (soc / split).iterdir()}
        assert got == want, split
    man = json.loads((soc / "manifest.json").read_text())
    assert man["total"] == {"TRAIN": 30, "TEST": 20} and man["dataset"] == "MSTAR_SOC"
    entry = next(f for f in man["files"] if f["path"].startswith("TRAIN/BMP2/"))
    assert "/SN_9563/" in entry["source"]  # decoy serials 9566 / C21 / 812 are not used
    assert all("SN_9566" not in f["source"] and "/SLICY/" not in f["source"] for f in man["files"])
    src = release / entry["source"]
    dst = soc / entry["path"]
    assert os.stat(src).st_ino == os.stat(dst).st_ino  # a hard link
    from sarjepa.benchmark.core.provenance import file_sha256

    assert entry["sha256"] == file_sha256(src)
    assert _snapshot(release) == before  # the source is untouched


def test_layout_feeds_the_splits_of_the_benchmark(release: Path, tmp_path: Path):
    out = tmp_path / "data"
    mr.build_layout(release, out, "soc", log=lambda _m: None)
    split = tmp_path / "split.json"
    argv = ["splits", "--dataset", "MSTAR_SOC", "--data", str(out), "--shots", "2"]
    argv += ["--seed", "1", "--out", str(split), "RUN.CACHE_DIR", str(tmp_path / "c")]
    assert main(argv) == 0
    lists = json.loads(split.read_text())
    assert len(lists["train"]) == 20 and len(lists["test"]) == 20


def test_rerun_is_idempotent_and_a_foreign_folder_is_refused(release: Path, tmp_path: Path):
    out = tmp_path / "data"
    first = mr.build_layout(release, out, "soc", log=lambda _m: None)
    again = mr.build_layout(release, out, "soc", log=lambda _m: None)
    assert again["files"] == first["files"]
    assert not list(out.glob(".MSTAR_SOC.partial-*"))
    (out / "MSTAR_SOC" / "manifest.json").unlink()
    with pytest.raises(SarjepaError, match="not built from these chips"):
        mr.build_layout(release, out, "soc", log=lambda _m: None)


def test_duplicates_are_counted_once(release: Path, tmp_path: Path):
    dup = release / "COPY_OF_CD" / "17_DEG" / "D7"
    dup.mkdir(parents=True)
    one = next((release / MIX1 / "17_DEG" / "COL2" / "SCENE1" / "D7").glob("*.jpeg"))
    (dup / one.name).write_bytes(one.read_bytes())
    man = mr.build_layout(release, tmp_path / "data", "soc", log=lambda _m: None)
    assert man["counts"]["TRAIN"]["D7"] == 3 and man["duplicates_skipped"] == 1


def test_incomplete_release_names_what_is_missing(tmp_path: Path):
    layout = [(f, n) for f, n in LAYOUT if "15_DEG/COL2/SCENE1/BTR_60" not in f]
    rel = make_release(tmp_path / "partial", layout)
    with pytest.raises(SarjepaError, match="lacks 15_DEG chips of BTR60 needed for MSTAR_SOC/TEST"):
        mr.build_layout(rel, tmp_path / "data", "soc", log=lambda _m: None)
    assert not (tmp_path / "data" / "MSTAR_SOC").exists()
    empty = tmp_path / "empty"
    empty.mkdir()
    assert main(["prepare", "mstar", "--data", str(empty), "--out", str(tmp_path / "d")]) == 2


def test_pool_holds_every_chip_outside_the_test_set(
    release: Path, tmp_path: Path, monkeypatch, capsys
):
    monkeypatch.setenv("SARJEPA_CACHE", str(tmp_path / "cache"))
    pool = tmp_path / "pool"
    out = tmp_path / "data"
    argv = ["prepare", "mstar", "--data", str(release), "--out", str(out), "--pool", str(pool)]
    assert main(argv) == 0
    man = json.loads((pool / "manifest.json").read_text())
    test_sources = {
        f["source"]
        for f in json.loads((out / "MSTAR_SOC" / "manifest.json").read_text())["files"]
        if f["path"].startswith("TEST/")
    }
    pool_sources = {f["source"] for f in man["files"]}
    assert not pool_sources & test_sources
    all_chips = {c.rel for c in mr.scan_release(release)[0]}
    assert pool_sources == all_chips - test_sources  # 15 deg decoys and SLICY included
    assert all((pool / f["path"]).is_file() for f in man["files"])
    printed = capsys.readouterr().out
    n = len(pool_sources)
    assert f"pool check: none of the {n} pool images copies one of the 20" in printed


def test_pool_check_catches_a_test_image_kept_under_another_chip_name(
    release: Path, tmp_path: Path, monkeypatch, capsys
):
    """The pool leaves out test chips by name; a copy under another name is caught by content."""
    monkeypatch.setenv("SARJEPA_CACHE", str(tmp_path / "cache"))
    test_chip = next((release / f"{TGT}/TEST/15_DEG/T72/SN_132").glob("*.jpeg"))
    twin = release / f"{TGT}/TRAIN/17_DEG/T72/SN_812/HB99999.016.jpeg"
    twin.write_bytes(test_chip.read_bytes())
    out, pool = tmp_path / "data", tmp_path / "pool"
    argv = ["prepare", "mstar", "--data", str(release), "--out", str(out), "--pool", str(pool)]
    assert main(argv) == 1
    printed = capsys.readouterr().out
    want = f"HB99999.016.jpeg: MSTAR_SOC/TEST/T72/{test_chip.name} (exact)"
    assert any(line.endswith(want) for line in printed.splitlines()), printed


def test_eoc1_layout_uses_30_degrees_and_the_a64_t72(release: Path, tmp_path: Path):
    extra = [(f"{MIX2}/30_DEG/COL2/SCENE1/{c}", 2) for c in ("BRDM_2", "ZSU_23_4")]
    extra += [(f"{VAR}/30_DEG/COL2/SCENE1/A64", 2), (f"{MIX1}/17_DEG/COL2/SCENE1/A_DECOY", 1)]
    make_release(release / "more", extra)
    man = mr.build_layout(release, tmp_path / "data", "eoc1", log=lambda _m: None)
    assert man["counts"]["TEST"] == {"2S1": 2, "BRDM2": 2, "T72": 2, "ZSU234": 2}
    assert man["counts"]["TRAIN"] == {"2S1": 3, "BRDM2": 3, "T72": 2, "ZSU234": 3}
    lines = mr.counts_report(man)
    assert any("! standard: 299 / 288" in x for x in lines)
