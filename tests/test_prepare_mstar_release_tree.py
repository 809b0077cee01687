"""`sarjepa prepare mstar` on a fake release with the public release's real folder tree and counts.

``RELEASE_TREE`` lists every chip folder of the five target CDs with its number of chips and the
MSTAR target code of its file names, as in the authors' own converted copy of the release
(waterdisappear/Data-Bias-in-MSTAR, ``data/JPEG/``: 17,096 chips named ``HBnnnnn.ttt.jpeg``).
The CDs also hold the raw chips, per-chip browse images ``HBnnnnn.JPG`` and ``.HTM`` pages next
to them, and ``TARGETS_CHIPS.../SLICY/{15,30}_DEG``; the fake release adds those as decoys.

The expected counts are the literature's tables, written here independently of the code: SOC and
EOC-1 (Chen et al., A-ConvNets, IEEE TGRS 2016; the issue's SOC counts), EOC-2 configuration /
version variants (the same tables; the SAR-JEPA authors' HDANet layouts hold the same numbers).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from sarjepa.benchmark.cli import main
from sarjepa.benchmark.core.errors import SarjepaError
from sarjepa.benchmark.datasets import mstar_release as mr

TGT = "MSTAR_PUBLIC_TARGETS_CHIPS_T72_BMP2_BTR70_SLICY/TARGETS"
MIX = "MSTAR_PUBLIC_MIXED_TARGETS_CD"
VAR = "MSTAR_PUBLIC_T_72_VARIANTS_CD"

#: (chip folder, chips, target code) of the public release
RELEASE_TREE = [
    (f"{MIX}1/15_DEG/COL1/SCENE1/BTR_60", 195, "003"),
    (f"{MIX}1/15_DEG/COL2/SCENE1/2S1", 274, "000"),
    (f"{MIX}1/15_DEG/COL2/SCENE1/BRDM_2", 274, "001"),
    (f"{MIX}1/15_DEG/COL2/SCENE1/D7", 274, "005"),
    (f"{MIX}1/15_DEG/COL2/SCENE1/SLICY", 274, "015"),
    (f"{MIX}1/15_DEG/COL2/SCENE1/T62", 273, "016"),
    (f"{MIX}1/15_DEG/COL2/SCENE1/ZIL131", 274, "025"),
    (f"{MIX}1/15_DEG/COL2/SCENE1/ZSU_23_4", 274, "026"),
    (f"{MIX}1/16_DEG/COL2/SCENE1/SLICY", 286, "015"),
    (f"{MIX}1/29_DEG/COL2/SCENE1/SLICY", 210, "015"),
    (f"{MIX}1/31_DEG/COL2/SCENE1/SLICY", 313, "015"),
    (f"{MIX}1/43_DEG/COL2/SCENE1/SLICY", 255, "015"),
    (f"{MIX}1/44_DEG/COL2/SCENE1/SLICY", 312, "015"),
    (f"{MIX}1/45_DEG/COL2/SCENE1/2S1", 303, "000"),
    (f"{MIX}1/45_DEG/COL2/SCENE1/BRDM_2", 303, "001"),
    (f"{MIX}1/45_DEG/COL2/SCENE1/SLICY", 303, "015"),
    (f"{MIX}1/45_DEG/COL2/SCENE1/ZSU_23_4", 303, "026"),
    (f"{MIX}1/45_DEG/COL2/SCENE2/ZSU_23_4", 119, "023"),
    (f"{MIX}1/45_DEG/COL2/SCENE3/BRDM_2", 120, "001"),
    (f"{MIX}2/17_DEG/COL1/SCENE1/BTR_60", 256, "003"),
    (f"{MIX}2/17_DEG/COL2/SCENE1/2S1", 299, "000"),
    (f"{MIX}2/17_DEG/COL2/SCENE1/BRDM_2", 298, "001"),
    (f"{MIX}2/17_DEG/COL2/SCENE1/D7", 299, "005"),
    (f"{MIX}2/17_DEG/COL2/SCENE1/SLICY", 298, "015"),
    (f"{MIX}2/17_DEG/COL2/SCENE1/T62", 299, "016"),
    (f"{MIX}2/17_DEG/COL2/SCENE1/ZIL131", 299, "025"),
    (f"{MIX}2/17_DEG/COL2/SCENE1/ZSU_23_4", 299, "026"),
    (f"{MIX}2/30_DEG/COL2/SCENE1/2S1", 288, "000"),
    (f"{MIX}2/30_DEG/COL2/SCENE1/BRDM_2", 287, "001"),
    (f"{MIX}2/30_DEG/COL2/SCENE1/SLICY", 288, "015"),
    (f"{MIX}2/30_DEG/COL2/SCENE1/ZSU_23_4", 288, "026"),
    (f"{MIX}2/30_DEG/COL2/SCENE2/ZSU_23_4", 118, "023"),
    (f"{MIX}2/30_DEG/COL2/SCENE3/BRDM_2", 133, "001"),
    (f"{TGT}/TEST/15_DEG/BMP2/SN_9563", 195, "000"),
    (f"{TGT}/TEST/15_DEG/BMP2/SN_9566", 196, "001"),
    (f"{TGT}/TEST/15_DEG/BMP2/SN_C21", 196, "002"),
    (f"{TGT}/TEST/15_DEG/BTR70/SN_C71", 196, "004"),
    (f"{TGT}/TEST/15_DEG/T72/SN_132", 196, "015"),
    (f"{TGT}/TEST/15_DEG/T72/SN_812", 195, "016"),
    (f"{TGT}/TEST/15_DEG/T72/SN_S7", 191, "017"),
    (f"{TGT}/TRAIN/17_DEG/BMP2/SN_9563", 233, "000"),
    (f"{TGT}/TRAIN/17_DEG/BMP2/SN_9566", 232, "001"),
    (f"{TGT}/TRAIN/17_DEG/BMP2/SN_C21", 233, "002"),
    (f"{TGT}/TRAIN/17_DEG/BTR70/SN_C71", 233, "004"),
    (f"{TGT}/TRAIN/17_DEG/T72/SN_132", 232, "015"),
    (f"{TGT}/TRAIN/17_DEG/T72/SN_812", 231, "016"),
    (f"{TGT}/TRAIN/17_DEG/T72/SN_S7", 228, "017"),
    (f"{VAR}1/15_DEG/COL2/SCENE1/A04", 274, "017"),
    (f"{VAR}1/15_DEG/COL2/SCENE1/A05", 274, "018"),
    (f"{VAR}1/15_DEG/COL2/SCENE1/A07", 274, "019"),
    (f"{VAR}1/15_DEG/COL2/SCENE1/A10", 271, "020"),
    (f"{VAR}1/15_DEG/COL2/SCENE1/A32", 274, "021"),
    (f"{VAR}1/15_DEG/COL2/SCENE1/A62", 274, "022"),
    (f"{VAR}1/15_DEG/COL2/SCENE1/A63", 274, "023"),
    (f"{VAR}1/15_DEG/COL2/SCENE1/A64", 274, "024"),
    (f"{VAR}1/45_DEG/COL2/SCENE1/A64", 303, "024"),
    (f"{VAR}1/45_DEG/COL2/SCENE3/A64", 120, "021"),
    (f"{VAR}2/17_DEG/COL2/SCENE1/A04", 299, "017"),
    (f"{VAR}2/17_DEG/COL2/SCENE1/A05", 299, "018"),
    (f"{VAR}2/17_DEG/COL2/SCENE1/A07", 299, "019"),
    (f"{VAR}2/17_DEG/COL2/SCENE1/A10", 296, "020"),
    (f"{VAR}2/17_DEG/COL2/SCENE1/A32", 298, "021"),
    (f"{VAR}2/17_DEG/COL2/SCENE1/A62", 299, "022"),
    (f"{VAR}2/17_DEG/COL2/SCENE1/A63", 299, "023"),
    (f"{VAR}2/17_DEG/COL2/SCENE1/A64", 299, "024"),
    (f"{VAR}2/30_DEG/COL2/SCENE1/A64", 288, "024"),
    (f"{VAR}2/30_DEG/COL2/SCENE3/A64", 133, "021"),
]
#: not in the authors' converted copy, but on the Target Chips CD (counts made up: decoys)
SLICY_DECOYS = [(f"{TGT[: -len('/TARGETS')]}/SLICY/{d}_DEG", 3, "015") for d in (15, 30)]

# (train, test) per class, from the literature's tables
SOC = {"BMP2": (233, 195), "BTR70": (233, 196), "T72": (232, 196), "BTR60": (256, 195),
       "2S1": (299, 274), "BRDM2": (298, 274), "D7": (299, 274), "T62": (299, 273),
       "ZIL131": (299, 274), "ZSU234": (299, 274)}  # fmt: skip
EOC1 = {"2S1": (299, 288), "BRDM2": (298, 287), "T72": (299, 288), "ZSU234": (299, 288)}
# EOC-2 test: each variant at 15 and 17 deg (configuration: T72 S7 419, A32 572, A62 573,
# A63 573, A64 573; version: BMP2 9566 428, C21 429; T72 812 426, A04 / A05 / A07 573, A10 567)
EOC2C = {"BMP2": (233, 0), "BRDM2": (298, 0), "BTR70": (233, 0), "T72": (232, 2710)}
EOC2V = {"BMP2": (233, 857), "BRDM2": (298, 0), "BTR70": (233, 0), "T72": (232, 2712)}


def make_release_tree(root: Path, cap: int | None = None, skip: str = "") -> int:
    """Write the release tree under ``root`` (at most ``cap`` chips per folder; folders whose
    path contains ``skip`` left out), each chip as a tiny distinct ``HBnnnnn.ttt.jpeg`` beside
    its raw file, ``HBnnnnn.JPG`` browse image and ``.HTM`` page. Returns the number of chips."""
    n, g = 0, np.random.default_rng(0)
    for folder, count, code in RELEASE_TREE + SLICY_DECOYS:
        if skip and skip in folder:
            continue
        d = root / folder
        d.mkdir(parents=True, exist_ok=True)
        for _ in range(count if cap is None else min(cap, count)):
            n += 1
            # noise: distinct chips lie far apart, as the pool check (prepare --pool) expects
            im = Image.fromarray(g.integers(0, 256, (8, 8), dtype=np.uint8))
            im.save(d / f"HB{n:05d}.{code}.jpeg", quality=95)
            (d / f"HB{n:05d}.{code}").write_bytes(b"raw chip")
            Image.new("L", (4, 4), 9).save(d / f"HB{n:05d}.JPG")  # the CD's browse image
            (d / f"HB{n:05d}.HTM").write_text("<html></html>")
    return n


def _counts(manifest: dict) -> dict[str, tuple[int, int]]:
    c = manifest["counts"]
    return {k: (c["TRAIN"].get(k, 0), c["TEST"].get(k, 0)) for k in manifest["standard_counts"]}


@pytest.mark.slow  # ~17,000 chips plus browse images; ~15 s on a 2-core box
def test_the_real_release_tree_gives_the_standard_counts(tmp_path: Path, capsys, monkeypatch):
    monkeypatch.setenv("SARJEPA_CACHE", str(tmp_path / "cache"))
    rel = tmp_path / "release"
    n = make_release_tree(rel)
    out, pool = tmp_path / "data", tmp_path / "pool"
    argv = ["prepare", "mstar", "--data", str(rel), "--out", str(out), "--protocol", "all"]
    assert main(argv + ["--pool", str(pool)]) == 0
    printed = capsys.readouterr().out
    assert f"{n} JPEGs skipped: no MSTAR target code" in printed  # the browse images
    assert f"pool check: none of the {n - 2425} pool images copies one of the 2425" in printed
    assert "the pool holds 1151 of the 1151 MSTAR_EOC1/TEST images" in printed
    for name, want in (("SOC", SOC), ("EOC1", EOC1), ("EOC2C", EOC2C), ("EOC2V", EOC2V)):
        man = json.loads((out / f"MSTAR_{name}" / "manifest.json").read_text())
        assert _counts(man) == want, name
        assert not any(f["source"].endswith(".JPG") for f in man["files"])
    soc = json.loads((out / "MSTAR_SOC" / "manifest.json").read_text())
    assert soc["total"] == {"TRAIN": 2747, "TEST": 2425}
    assert json.loads((pool / "manifest.json").read_text())["total"] == n - 2425
    split = tmp_path / "split.json"
    argv = ["splits", "--dataset", "MSTAR_EOC2V", "--data", str(out), "--shots", "5"]
    assert main(argv + ["--seed", "0", "--out", str(split)]) == 0
    lists = json.loads(split.read_text())
    assert (len(lists["train"]), len(lists["test"])) == (20, 3569)


def test_scene2_and_scene3_chips_are_not_part_of_eoc1(tmp_path: Path):
    rel = tmp_path / "release"
    make_release_tree(rel, cap=2)
    man = mr.build_layout(rel, tmp_path / "data", "eoc1", log=lambda _m: None)
    assert _counts(man) == {c: (2, 2) for c in EOC1}
    assert all("SCENE1/" in f["source"] for f in man["files"])
    assert man["definition"]["TEST"]["scenes"] == [1]
    chips, _ = mr.scan_release(rel)
    scene3 = next(c for c in chips if "/30_DEG/COL2/SCENE3/BRDM_2/" in c.rel)
    assert (scene3.cls, scene3.depression, scene3.scene) == ("BRDM2", 30, 3)


def test_the_cds_browse_images_are_not_chips(tmp_path: Path, capsys):
    rel = tmp_path / "release"
    n = make_release_tree(rel, cap=1)
    chips, other = mr.scan_release(rel)
    assert len(chips) == n and len(other) == n
    assert all(mr.is_chip_file(c.rel.rsplit("/", 1)[-1]) for c in chips)
    assert mr.is_chip_file("HB03333.003.JPG") and not mr.is_chip_file("HB03333.JPG")
    assert "JPEGs skipped: no MSTAR target code" in mr.summary_table(chips, other)
    only_browse = tmp_path / "unconverted" / f"{MIX}1" / "15_DEG" / "COL2" / "SCENE1" / "D7"
    only_browse.mkdir(parents=True)
    Image.new("L", (4, 4)).save(only_browse / "HB14931.JPG")
    with pytest.raises(SarjepaError, match=r"no MSTAR JPEG chips .*only 1 other JPEGs"):
        mr.scan_release(tmp_path / "unconverted")


@pytest.mark.parametrize(
    ("skip", "message"),
    [
        (
            f"{MIX}1/15_DEG/COL1/SCENE1/BTR_60",
            f"lacks 15_DEG chips of BTR60 needed for MSTAR_SOC/TEST \\(expected under "
            f"{MIX}1/15_DEG/COL1/SCENE1/BTR_60/\\)",
        ),
        (
            f"{TGT}/TRAIN/17_DEG/BMP2/SN_9563",
            f"lacks 17_DEG chips of BMP2 serial 9563 needed for MSTAR_SOC/TRAIN \\(expected "
            f"under {TGT}/TRAIN/17_DEG/BMP2/SN_9563/\\)",
        ),
    ],
)
def test_a_missing_folder_is_named_with_its_release_location(tmp_path: Path, skip, message):
    rel = tmp_path / "release"
    make_release_tree(rel, cap=1, skip=skip)
    with pytest.raises(SarjepaError, match=message):
        mr.build_layout(rel, tmp_path / "data", "soc", log=lambda _m: None)
    assert not (tmp_path / "data" / "MSTAR_SOC").exists()


def test_release_locations_follow_the_cd_tree():
    where = mr.release_location
    assert where("ZSU234", [30], None) == f"{MIX}2/30_DEG/COL2/SCENE1/ZSU_23_4/"
    assert where("T72", [30], ("A64",)) == f"{VAR}2/30_DEG/COL2/SCENE1/A64/"
    assert where("T72", [15], ("S7", "A32")) == (
        f"{TGT}/TEST/15_DEG/T72/SN_S7/ or {VAR}1/15_DEG/COL2/SCENE1/A32/"
    )
    # every location named for the standard protocols exists in the real tree
    folders = {f + "/" for f, _n, _c in RELEASE_TREE}
    for protocol, spec in mr.PROTOCOLS.items():
        for split in ("TRAIN", "TEST"):
            for cls, serials in spec[split]["classes"].items():
                for loc in where(cls, spec[split]["depressions"], serials).split(" or "):
                    if "*" not in loc:
                        assert loc in folders, (protocol, split, cls, loc)


def test_an_interrupted_run_leaves_nothing_that_looks_built_and_reruns(tmp_path: Path, monkeypatch):
    rel = tmp_path / "release"
    make_release_tree(rel, cap=2)
    out, pool = tmp_path / "data", tmp_path / "pool"
    real_place, calls = mr._place, []

    def dying_place(src: Path, dst: Path, copy: bool) -> str:
        calls.append(dst)
        if len(calls) == 7:
            raise KeyboardInterrupt  # as a Ctrl-C half-way
        return real_place(src, dst, copy)

    monkeypatch.setattr(mr, "_place", dying_place)
    for build, target in ((mr.build_layout, out), (mr.build_pool, pool)):
        calls.clear()
        with pytest.raises(KeyboardInterrupt):
            build(rel, target, "soc", log=lambda _m: None)
    assert not (out / "MSTAR_SOC").exists() and not pool.exists()
    assert not list(tmp_path.glob(".pool.partial-*")) and not list(out.glob(".*partial*"))
    monkeypatch.setattr(mr, "_place", real_place)
    first = mr.build_pool(rel, pool, "soc", log=lambda _m: None)
    said = []
    again = mr.build_pool(rel, pool, "soc", log=said.append)
    assert again["files"] == first["files"] and "already built" in said[0]
    assert first["total"] == sum(min(2, n) for _f, n, _c in RELEASE_TREE + SLICY_DECOYS) - 20
    assert first["code_version"]


def test_png_or_tiff_chips_are_named_as_the_reason(tmp_path: Path):
    d = tmp_path / "release" / f"{MIX}1" / "15_DEG" / "COL2" / "SCENE1" / "D7"
    d.mkdir(parents=True)
    Image.new("L", (4, 4)).save(d / "HB14931.005.png")
    with pytest.raises(SarjepaError, match=r"not JPEGs \(1 such as HB14931.005.png\).*mstar2jpeg"):
        mr.scan_release(tmp_path / "release")
