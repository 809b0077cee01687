"""Synthetic SAR data: image-formation maths, layout, determinism, sizes, difficulty, CLI."""

from __future__ import annotations

import hashlib
import json
import warnings
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from sarjepa.benchmark.cli import main
from sarjepa.benchmark.core.errors import SarjepaError
from sarjepa.benchmark.synth import layout as L
from sarjepa.benchmark.synth import physics as S

MSTAR = ["BMP2", "BTR70", "T72", "BTR60", "2S1", "BRDM2", "D7", "T62", "ZIL131", "ZSU234"]
FUSAR = [
    "Bridges",
    "Cargo",
    "CoastalLands_island",
    "Fishing",
    "LandPatches",
    "OtherShip",
    "SeaClutterWaves",
    "SeaPatches",
    "StrongFalseAlarms",
    "Tanker",
]
ACD = ["A220", "A330", "ARJ21", "Boeing737", "Boeing787"]


@pytest.fixture(scope="module")
def tiny(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("synth") / "data"
    L.generate(out, seed=0, scale="tiny", workers=2, progress=False)
    return out


def _hashes(root: Path) -> dict[str, str]:
    return {
        p.relative_to(root).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


def _files(d: Path) -> list[Path]:
    return sorted(p for p in d.rglob("*") if p.is_file())


# --------------------------------------------------------------------------- maths, no files
def test_speckle_is_unit_mean_gamma_with_variance_one_over_looks():
    rng = np.random.default_rng(0)
    for looks in (1, 3):
        s = S.speckle(rng, np.full((400, 500), 2.0), looks) / 2.0
        assert abs(s.mean() - 1) < 0.01
        assert abs(s.var() - 1 / looks) < 0.03 / looks


def test_shadow_hand_computed():
    h = np.zeros((8, 3))
    h[2, 1] = 3.0  # 3 m high object, 1 m pixels, 45 deg: the ray loses 1 m per row
    sh = S.cast_shadow(h, px_m=1.0, depression_deg=45.0)
    expected = np.zeros((8, 3), bool)
    expected[3:5, 1] = True  # rows 3 and 4 (ray 2 m and 1 m), not row 5 (ray 0)
    np.testing.assert_array_equal(sh, expected)


def test_point_scatterer_lands_where_rotation_and_layover_put_it():
    b = S.Builder().points(2.0, 0.0, 1.0, 1.0)  # isotropic point 2 m ahead, 1 m up
    img, height = S.render_target(
        b.build(), (40, 40), px_m=0.5, aspect=np.pi / 2, centre=(20.0, 20.0), depression_deg=45.0
    )
    # aspect 90 deg turns +x into +row: row 20 + 2/0.5 = 24, layover -1*tan45/0.5 = -2 -> 22
    assert np.unravel_index(img.argmax(), img.shape) == (22, 20)
    assert height.max() == 0  # a bare point has no footprint
    assert img[22, 20] == pytest.approx(1.0, rel=1e-3)  # sinc^2 peak is the amplitude


def test_plate_flashes_only_when_its_normal_faces_the_radar():
    facing = S.specular_gain(np.array([S.FACING_RADAR]), np.array([0.1]), np.array([False]))
    away = S.specular_gain(np.array([S.FACING_RADAR + np.pi]), np.array([0.1]), np.array([False]))
    both = S.specular_gain(np.array([S.FACING_RADAR + np.pi]), np.array([0.1]), np.array([True]))
    iso = S.specular_gain(np.array([np.nan]), np.array([0.1]), np.array([False]))
    assert facing[0] == pytest.approx(1.0) and both[0] == pytest.approx(1.0)
    assert away[0] < 0.05 and iso[0] == 1.0


def test_inside_convex_square_either_orientation():
    sq = np.array([[0.0, 0.0], [2.0, 0.0], [2.0, 2.0], [0.0, 2.0]])
    x, y = np.array([1.0, 3.0, 1.9, -0.1]), np.array([1.0, 1.0, 0.1, 1.0])
    for poly in (sq, sq[::-1]):
        np.testing.assert_array_equal(S.inside_convex(poly, x, y), [True, False, True, False])


@pytest.mark.parametrize("mode,param", [("log", 30.0), ("power", 0.5)])
def test_uint8_mapping_hits_the_gain_set_point_and_keeps_order(mode, param):
    rng = np.random.default_rng(1)
    inten = rng.gamma(1.0, 1.0, (64, 64)) * np.exp(3 * rng.random((64, 64)))
    out = S.to_uint8(inten, mode, param, clip_pct=99.0, mean_level=0.3)
    assert out.dtype == np.uint8
    assert abs(out.mean() - 0.3 * 255) < 1.0
    order = np.argsort(inten, axis=None)
    assert np.all(np.diff(out.ravel()[order].astype(int)) >= 0)  # monotone in intensity


# ------------------------------------------------------------------------- files on disk
def test_layout_class_names_and_metadata(tiny):
    assert sorted(p.name for p in (tiny / "MSTAR_SOC").iterdir()) == ["TEST", "TRAIN"]
    assert sorted(p.name for p in (tiny / "New_FUSAR").iterdir()) == ["Train", "Val"]
    for split in ("TRAIN", "TEST"):
        assert sorted(p.name for p in (tiny / "MSTAR_SOC" / split).iterdir()) == sorted(MSTAR)
    for split in ("Train", "Val"):
        assert sorted(p.name for p in (tiny / "New_FUSAR" / split).iterdir()) == sorted(FUSAR)
    assert sorted(p.name for p in (tiny / "SAR_ACD" / "images").iterdir()) == sorted(ACD)
    assert {p.suffix for p in _files(tiny / "MSTAR_SOC")} == {".jpeg"}
    assert {p.suffix for p in _files(tiny / "New_FUSAR")} == {".png"}
    assert {p.suffix for p in _files(tiny / "SAR_ACD")} == {".jpg"}
    pool = [p.relative_to(tiny / "pretrain") for p in _files(tiny / "pretrain")]
    depths = {len(p.parts) for p in pool}
    assert {1, 2, 3} <= depths  # flat files and nested sub-folders
    meta = json.loads((tiny / "synth.json").read_text())
    assert meta["format"] == "sarjepa-synth/1" and meta["complete"] is True
    assert (meta["seed"], meta["scale"]) == (0, "tiny")
    assert "seed: 0" in (tiny / "README.txt").read_text()


def test_file_counts(tiny):
    for cls in MSTAR:
        assert len(_files(tiny / "MSTAR_SOC" / "TRAIN" / cls)) == 12
        assert len(_files(tiny / "MSTAR_SOC" / "TEST" / cls)) == 8
    for cls in FUSAR:
        assert len(_files(tiny / "New_FUSAR" / "Train" / cls)) == 12
        assert len(_files(tiny / "New_FUSAR" / "Val" / cls)) == 6
    for cls in ACD:
        assert len(_files(tiny / "SAR_ACD" / "images" / cls)) == 30
    assert len(_files(tiny / "pretrain")) == 60
    meta = json.loads((tiny / "synth.json").read_text())
    assert meta["total_files"] == 200 + 180 + 150 + 60
    assert meta["counts"]["MSTAR_SOC"]["TRAIN/T72"] == 12


def test_pool_mixes_all_kinds(tiny):
    names = [p.relative_to(tiny / "pretrain").as_posix() for p in _files(tiny / "pretrain")]
    for prefix in ("vehicles/", "ships/", "aircraft/", "scenes/", "clutter_"):
        assert any(n.startswith(prefix) for n in names), prefix


def test_chip_sizes(tiny):
    def sizes(d):
        return [Image.open(p).size for p in _files(d)]

    assert set(sizes(tiny / "MSTAR_SOC")) == {(128, 128)}
    for d in ("New_FUSAR", "SAR_ACD", "pretrain"):
        sides = np.array(sizes(tiny / d))
        assert (sides < 128).any() and (sides > 128).any(), d
        assert len({tuple(s) for s in sides}) > len(sides) // 2, d  # varied, also non-square
    for p in _files(tiny)[:50]:
        if p.suffix != ".txt" and p.suffix != ".json":
            assert Image.open(p).mode == "L"


@pytest.mark.slow
def test_same_seed_same_bytes_via_cli_other_seed_differs(tiny, tmp_path, capsys):
    out = tmp_path / "again"
    rc = main(
        [
            "synth",
            "--out",
            str(out),
            "--scale",
            "tiny",
            "--seed",
            "0",
            "--workers",
            "1",
            "--no-progress",
        ]
    )
    assert rc == 0 and "wrote 590 chips" in capsys.readouterr().out
    assert _hashes(out) == _hashes(tiny)  # one process vs two: order does not matter
    jobs = L.plan(1, "tiny")[::40]
    for job in jobs:
        other = L.render_job(1, job)
        assert not np.array_equal(other, L.render_job(0, job)), job[0]
        np.testing.assert_array_equal(other, L.render_job(1, job))


# ----------------------------------------------------------------------------- difficulty
def _centre_crop(a: np.ndarray, s: int = 128) -> np.ndarray:
    """CenterCrop(128) as torchvision does it: zero-pad smaller sides, then crop the middle."""
    h, w = a.shape
    ph, pw = max(s - h, 0), max(s - w, 0)
    a = np.pad(a, ((ph // 2, ph - ph // 2), (pw // 2, pw - pw // 2)))
    h, w = a.shape
    t, left = int(round((h - s) / 2)), int(round((w - s) / 2))
    return a[t : t + s, left : left + s]


def _load(d: Path, classes: list[str]):
    xs, ys = [], []
    for i, c in enumerate(classes):
        for p in _files(d / c):
            xs.append(_centre_crop(np.asarray(Image.open(p).convert("L"), np.float64) / 255))
            ys.append(i)
    return np.stack(xs), np.array(ys)


def _few_shot_scores(xtr, ytr, xte, yte, shots=10, seeds=2):
    from sklearn.linear_model import LogisticRegression
    from threadpoolctl import threadpool_limits

    n_cls = ytr.max() + 1
    pix_tr = xtr.reshape(len(xtr), 64, 2, 64, 2).mean((2, 4)).reshape(len(xtr), -1)
    pix_te = xte.reshape(len(xte), 64, 2, 64, 2).mean((2, 4)).reshape(len(xte), -1)
    m_tr, m_te = xtr.mean((1, 2)), xte.mean((1, 2))
    raw, mean_lr, mean_ncm = [], [], []
    for seed in range(seeds):
        rng = np.random.default_rng(seed)
        idx = np.concatenate(
            [rng.choice(np.flatnonzero(ytr == c), shots, replace=False) for c in range(n_cls)]
        )
        with warnings.catch_warnings(), threadpool_limits(1):  # BLAS threads contend on 2 cores
            warnings.simplefilter("ignore")
            clf = LogisticRegression(max_iter=2000).fit(pix_tr[idx], ytr[idx])
            raw.append(np.mean(clf.predict(pix_te) == yte))
            mu, sd = m_tr[idx].mean(), m_tr[idx].std()
            clf = LogisticRegression().fit(((m_tr[idx] - mu) / sd)[:, None], ytr[idx])
            mean_lr.append(np.mean(clf.predict(((m_te - mu) / sd)[:, None]) == yte))
        centres = np.array([m_tr[idx][ytr[idx] == c].mean() for c in range(n_cls)])
        mean_ncm.append(np.mean(np.abs(m_te[:, None] - centres).argmin(1) == yte))
    return np.mean(raw), np.mean(mean_lr), np.mean(mean_ncm)


def test_mstar_like_difficulty(tiny):
    raw, mean_lr, mean_ncm = _few_shot_scores(
        *_load(tiny / "MSTAR_SOC" / "TRAIN", MSTAR), *_load(tiny / "MSTAR_SOC" / "TEST", MSTAR)
    )
    chance = 0.1
    assert mean_lr < 2 * chance and mean_ncm < 2 * chance  # brightness carries no class
    assert 1.5 * chance < raw < 0.8  # shape is there, but far from solved by raw pixels


def test_fusar_and_acd_like_difficulty(tiny):
    raw, mean_lr, mean_ncm = _few_shot_scores(
        *_load(tiny / "New_FUSAR" / "Train", FUSAR), *_load(tiny / "New_FUSAR" / "Val", FUSAR)
    )
    assert mean_lr < 0.2 and mean_ncm < 0.2
    assert 0.12 < raw < 0.8
    x, y = _load(tiny / "SAR_ACD" / "images", ACD)
    first = np.concatenate([np.flatnonzero(y == c)[:10] for c in range(5)])
    rest = np.setdiff1d(np.arange(len(y)), first)
    raw, mean_lr, mean_ncm = _few_shot_scores(x[first], y[first], x[rest], y[rest], seeds=1)
    assert mean_lr < 0.4 and mean_ncm < 0.4 and raw < 0.8


# ---------------------------------------------------------------------------- folder rules
def test_refuses_foreign_folder_force_keeps_foreign_files(tmp_path, monkeypatch, capsys):
    real_plan = L.plan
    monkeypatch.setattr(L, "plan", lambda seed, scale: real_plan(seed, scale)[::60])
    out = tmp_path / "mine"
    out.mkdir()
    (out / "notes.txt").write_text("keep me")
    with pytest.raises(SarjepaError, match="mine.*--force"):
        L.generate(out, scale="tiny", workers=1, progress=False)
    assert main(["synth", "--out", str(out), "--scale", "tiny", "--no-progress"]) == 2
    assert "mine" in capsys.readouterr().err
    L.generate(out, scale="tiny", force=True, workers=1, progress=False)
    assert (out / "notes.txt").read_text() == "keep me"
    stale = out / "MSTAR_SOC" / "TRAIN" / "stale.jpeg"
    stale.write_bytes(b"x")
    L.generate(out, seed=3, scale="tiny", workers=1, progress=False)  # previous output: no --force
    assert not stale.exists() and json.loads((out / "synth.json").read_text())["seed"] == 3
    assert len(_files(out / "MSTAR_SOC")) == len(
        [j for j in L.plan(3, "tiny") if j[0].startswith("MSTAR")]
    )


def test_unknown_scale_and_help(capsys):
    with pytest.raises(SarjepaError, match="unknown synth scale 'tinny'.*tiny"):
        L.plan(0, "tinny")
    with pytest.raises(SystemExit) as exc:
        main(["synth", "--help"])
    assert exc.value.code == 0
    assert "--scale" in capsys.readouterr().out


def test_demo_scale_pool_holds_vehicles_only():
    jobs = L.plan(0, "demo")
    pool = [j for j in jobs if j[0].startswith("pretrain/")]
    assert len(pool) == L.SCALES["demo"]["pool"]
    assert {j[2] for j in pool} == {"vehicle"}
    assert all(j[0].startswith("pretrain/vehicles/") for j in pool)
    # the labelled MSTAR-like set is the small scale's, file for file, plus more test chips
    mstar = {j[0] for j in jobs if j[0].startswith("MSTAR_SOC/")}
    small = {j[0] for j in L.plan(0, "small") if j[0].startswith("MSTAR_SOC/")}
    assert small < mstar and all("/TEST/" in p for p in mstar - small)
    assert sum("/TEST/" in p for p in mstar) == 150 * 10
