"""``sarjepa bench --only grid``: real grids end to end at the tiniest scale, and the projection's
arithmetic checked by hand."""

from __future__ import annotations

import json
import math

import pytest
import torch
from sarjepa.benchmark.cli import main
from sarjepa.benchmark.speed.grid_bench import GridTimes, measure_grid, projection_row
from sarjepa.benchmark.speed.options import GridBenchOptions
from sarjepa.benchmark.speed.projection import (
    DatasetSize,
    finetune_fit,
    project_grid,
    scale_to_datasets,
)
from sarjepa.benchmark.speed.timing import Settings
from sarjepa.pretrain.weights import load_encoder

# a 2-block ViT of width 32 on 32 x 32 inputs (patch 8), 2 epochs: a cell takes a fraction of a s
TINY_OPTS = (
    "MODEL.BACKBONE.EMBED_DIM", "32", "MODEL.BACKBONE.DEPTH", "2", "MODEL.BACKBONE.NUM_HEADS",
    "2", "MODEL.BACKBONE.PATCH_SIZE", "8", "OPTIM.MAX_EPOCH", "2", "OPTIM.WARMUP_EPOCH", "1",
)  # fmt: skip


@pytest.fixture(scope="module")
def synth_tiny(tmp_path_factory):
    """``sarjepa synth --scale tiny``: the three paper datasets, 590 chips (~5 s)."""
    from sarjepa.benchmark.synth.layout import generate

    root = tmp_path_factory.mktemp("synth")
    generate(root, seed=0, scale="tiny", workers=1, progress=False)
    return root


def tiny_settings(data, work, **options) -> Settings:
    s = Settings(arch="tiny", device=torch.device("cpu"), img_size=32)
    s.grid = GridBenchOptions(data=str(data), work=str(work), opts=TINY_OPTS, **options)
    return s


# ----------------------------------------------------------------------------- arithmetic
def test_project_grid_by_hand():
    linear = {"A": 100.0, "B": 50.0}
    finetune = {"A": {10: 2.0, 40: 5.0}, "B": {10: 1.0, 40: 3.0}}
    p = project_grid(linear, finetune, seeds=5, methods=10, finetune_speedup=2.0)
    # per method: linear 100 + 50 = 150 s; fine-tune 5 seeds x (2 + 5 + 1 + 3) = 55 s, / 2
    assert p["linear_s"] == 150.0
    assert p["finetune_s"] == 27.5
    assert p["seconds_per_method"] == 177.5
    assert p["seconds"] == 1775.0
    assert p["hours"] == pytest.approx(1775 / 3600)
    assert p["cells"] == 10 * 2 * 2 * 5 * 2  # methods x datasets x shots x seeds x protocols
    assert p["cells_per_hour"] == pytest.approx(400 / (1775 / 3600))


def test_paper_shape_is_900_cells():
    ds = ("MSTAR_SOC", "New_FUSAR", "SAR_ACD")
    p = project_grid(dict.fromkeys(ds, 36.0), {d: {10: 1.0, 20: 1.0, 40: 1.0} for d in ds}, 5)
    # 10 methods x (3 x 36 s + 3 datasets x 3 shots x 5 seeds x 1 s) = 10 x 153 s
    assert p["cells"] == 900
    assert p["seconds"] == 1530.0
    assert p["hours"] == pytest.approx(0.425)


def test_finetune_fit_by_hand():
    assert finetune_fit({10: 3.0, 40: 6.0}) == pytest.approx((2.0, 0.1))
    # least squares through (10, 2), (20, 4), (40, 6): slope 60 / (1400 / 3), line through means
    a, b = finetune_fit({10: 2.0, 20: 4.0, 40: 6.0})
    assert b == pytest.approx(60 / (1400 / 3))
    assert a == pytest.approx(4.0 - b * 70 / 3)
    assert finetune_fit({10: 4.0}) == (0.0, 0.4)  # one shot: proportional to k
    assert finetune_fit({10: 5.0, 40: 3.0}) == (4.0, 0.0)  # noise: slope kept >= 0


def test_scale_to_datasets_by_hand():
    sizes = {"M": DatasetSize(10, 100, 300), "D": DatasetSize(5, 200, 150)}
    linear, finetune = scale_to_datasets("M", sizes, 30.0, (2.0, 0.1), (10, 40))
    assert linear == {"M": 30.0, "D": 15.0}  # x chips 150 / 300
    assert finetune["M"] == pytest.approx({10: 3.0, 40: 6.0})
    # D: intercept 2 x test 200 / 100 = 4; slope 0.1 x k x classes 5 / 10
    assert finetune["D"] == pytest.approx({10: 4.5, 40: 6.0})


def test_projection_row_states_its_inputs():
    s = Settings(arch="tiny", device=torch.device("cpu"), img_size=32)
    o = GridBenchOptions(shots=(10, 40), seeds=(0, 1))
    sizes = {
        "MSTAR_SOC": DatasetSize(10, 100, 300),
        "New_FUSAR": DatasetSize(10, 50, 150),
        "SAR_ACD": DatasetSize(5, 100, 100),
    }
    t = GridTimes(1.0, 3.0, 4, {10: 3.0, 40: 6.0}, jobs=2, jobs_cells=4, jobs_s=10.0, speedup=1.5)
    row = projection_row(s, o, t, sizes)
    x = row.extra
    # linear: 3 x (300 + 150 + 100) / 300 = 5.5 s; fine-tune t(k) = 2 + 0.1 k on MSTAR_SOC:
    # MSTAR (3, 6), FUSAR (1 + 1, 1 + 4), ACD (2 + 0.5, 2 + 2); x 2 seeds / 1.5
    ft = 2 * (3 + 6 + 2 + 5 + 2.5 + 4) / 1.5
    assert x["projection"]["linear_s"] == pytest.approx(5.5)
    assert x["projection"]["finetune_s"] == pytest.approx(ft)
    assert x["projection"]["seconds"] == pytest.approx(10 * (5.5 + ft))
    assert x["projection"]["cells"] == 10 * 3 * 2 * 2 * 2
    assert x["finetune_fit_s"] == pytest.approx({"intercept": 2.0, "per_shot": 0.1})
    assert x["dataset_sizes"]["SAR_ACD"] == {"classes": 5, "test": 100, "chips": 100}
    assert x["linear_grid_s"] == 3.0 and x["finetune_speedup"] == 1.5 and x["jobs"] == 2
    assert "CPU-hours" in row.note and "t(k) = 2.00 + 0.100 k" in row.note
    json.dumps(x)  # plain JSON types only


# ----------------------------------------------------------------------------- end to end
def _by_what(rows):
    return {r.what: r for r in rows}


def test_measure_grid_end_to_end(synth_tiny, tmp_path, one_thread):
    work = tmp_path / "work"
    s = tiny_settings(synth_tiny, work, shots=(10, 20), seeds=(0, 1), finetune_shots=(10, 40))
    stages = []
    rows = measure_grid(s, partial=lambda part: stages.append([r.what for r in part]))
    assert all(not r.ours.error for r in rows), [r.ours.error for r in rows]
    whats = [r.what for r in rows]
    # each stage's rows are reported as soon as measured; the projection only at the end
    assert stages == [whats[:2], whats[:4], whats[:6], whats[:8]] and len(whats) == 9
    assert whats[-1].startswith("grid projection")
    by = _by_what(rows)
    one = by["grid linear MSTAR_SOC 1 cell"].extra
    grid = by["grid linear MSTAR_SOC 2 shots x 2 seeds"].extra
    assert one["cells"] == 1 and grid["cells"] == 4
    assert grid["ratio_to_one_cell"] == pytest.approx(grid["wall_s"] / one["wall_s"])
    assert grid["cells_per_hour"] == pytest.approx(4 / grid["wall_s"] * 3600)
    for protocol in ("logreg", "knn"):
        p1 = by[f"grid {protocol} MSTAR_SOC 1 cell"].extra
        pn = by[f"grid {protocol} MSTAR_SOC 2 shots x 2 seeds"].extra
        assert p1["cells"] == 1 and pn["cells"] == 4
        assert pn["ratio_to_one_cell"] == pytest.approx(pn["wall_s"] / p1["wall_s"])
        assert pn["marginal_cell_s"] == pytest.approx((pn["wall_s"] - p1["wall_s"]) / 3)
        done = sorted((work / f"{protocol}_grid").glob("output/**/result.json"))
        assert len(done) == 4
    for k in (10, 40):
        ft = by[f"grid finetune MSTAR_SOC {k}-shot cell"].extra
        assert ft["cells_per_hour"] == pytest.approx(3600 / ft["seconds_per_cell"])
    proj = by["grid projection 240 cells"].extra  # 10 methods x 3 datasets x 2 x 2 x 2
    assert proj["linear_grid_s"] == grid["wall_s"] and proj["one_cell_s"] == one["wall_s"]
    assert proj["dataset_sizes"]["MSTAR_SOC"] == {"classes": 10, "test": 80, "chips": 200}
    assert proj["dataset_sizes"]["SAR_ACD"]["classes"] == 5
    expect = project_grid(
        proj["scaled_linear_grid_s"],
        {
            d: {int(k): v for k, v in per.items()}
            for d, per in proj["scaled_finetune_cell_s"].items()
        },
        seeds=2,
    )
    assert proj["projection"] == pytest.approx(expect)
    assert math.isclose(proj["projection"]["hours"], proj["projection"]["seconds"] / 3600)
    json.dumps([r.extra for r in rows])

    # real grids: every cell finished, the linear cells used the feature cache of the checkpoint
    results = sorted((work / "linear_grid").glob("output/**/result.json"))
    assert len(results) == 4
    keys = {json.loads(p.read_text())["provenance"]["feature_cache_key"] for p in results}
    assert len(keys) == 1 and "" not in keys
    assert list((work / "linear_grid" / "cache" / "features").glob("*.npz"))
    assert (work / "linear_grid" / "summary.md").is_file()
    # the 1-cell grid's cell is the same computation as that cell in the larger grid
    acc = [
        json.loads(next(run.glob("output/**/seed0/result.json")).read_text())["metrics"]
        for run in (work / "linear_1", work / "linear_grid")
    ]
    grid_10 = json.loads(
        next((work / "linear_grid").glob("output/**/*_10shots/seed0/result.json")).read_text()
    )["metrics"]
    assert acc[0] == grid_10
    # the checkpoint is ours, of the cells' architecture
    enc = load_encoder(work / "checkpoint" / "checkpoint-0.pth", log=lambda _: None)
    assert enc.format == "sarjepa" and enc.arch["embed_dim"] == 32 and enc.arch["patch_size"] == 8


def test_temporary_work_folder_is_removed(synth_tiny, tmp_path, monkeypatch, one_thread):
    import tempfile

    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    s = tiny_settings(synth_tiny, "", shots=(10,), seeds=(0,), finetune_shots=(10,))
    rows = measure_grid(s)
    assert rows[0].what == "grid linear MSTAR_SOC 1 cell" and not rows[0].ours.error
    assert list(tmp_path.iterdir()) == []


def test_a_failing_stage_keeps_the_rows_measured_before_it(
    synth_tiny, tmp_path, monkeypatch, one_thread
):
    """A device run cut or broken during the fine-tune cells still records its linear and probe
    grids, in the bench JSON while it runs and in the rows returned, followed by the error."""
    from sarjepa.benchmark.speed import grid_bench, run

    real = grid_bench.timed_grid

    def broken_finetune(spec, run_dir, *args, **kwargs):
        if run_dir.name == "finetune":
            raise RuntimeError("CUDA out of memory (simulated)")
        return real(spec, run_dir, *args, **kwargs)

    monkeypatch.setattr(grid_bench, "timed_grid", broken_finetune)
    s = tiny_settings(synth_tiny, tmp_path, shots=(10,), seeds=(0, 1), finetune_shots=(10,))
    seen = []
    rows = run.run_all(["grid"], s, lambda so_far: seen.append([r.what for r in so_far]))
    linear = ["grid linear MSTAR_SOC 1 cell", "grid linear MSTAR_SOC 1 shots x 2 seeds"]
    probes = [
        f"grid {p} MSTAR_SOC {n}"
        for p in ("logreg", "knn")
        for n in ("1 cell", "1 shots x 2 seeds")
    ]
    assert seen[0] == linear
    assert [r.what for r in rows] == seen[-1] == [*linear, *probes, "grid"]
    assert "CUDA out of memory (simulated)" in rows[-1].ours.error
    assert not rows[0].ours.error and rows[1].extra["cells"] == 2


@pytest.mark.slow
def test_jobs_row(synth_tiny, tmp_path, one_thread):
    s = tiny_settings(
        synth_tiny, tmp_path, shots=(10,), seeds=(0,), finetune_shots=(10, 40), jobs=2
    )
    row = _by_what(measure_grid(s))["grid finetune MSTAR_SOC --jobs 2"]
    x = row.extra
    assert x["cells"] == 4 and x["jobs"] == 2  # 2 seeds x 2 shots, 2 processes
    assert x["cells_per_hour"] == pytest.approx(4 / x["wall_s"] * 3600)
    ft = [
        json.loads(p.read_text())["provenance"]["wall_time_s"]
        for p in (tmp_path / "finetune").glob("output/**/result.json")
    ]
    assert x["speedup"] == pytest.approx(2 * sum(ft) / x["wall_s"], rel=1e-3)


# ----------------------------------------------------------------------------- bad input
BASE = ["bench", "--only", "grid", "--device", "cpu"]


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--grid-jobs", "-1"], "--grid-jobs must be >= 0, got -1"),
        (["--grid-shots", "0", "10"], "--grid-shots must be one or more different numbers >= 1"),
        (["--grid-seeds", "1", "1"], "--grid-seeds must be one or more different numbers >= 0"),
        (["--grid-finetune-shots", "-5"], "--grid-finetune-shots must be one or more"),
        (["--grid-opts", "OPTIM.MAX_EPOCH"], "--grid-opts must be KEY VALUE pairs"),
        (["--grid-data", "no/such/folder"], "--grid-data: folder 'no/such/folder' does not"),
        (["--grid-trainer-config", "vit_h99"], "--grid-trainer-config: unknown config"),
    ],
)
def test_bad_options_are_one_line_errors(argv, message, capsys):
    assert main(BASE + argv) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("sarjepa: error: ") and message in err, err
    assert "\n" not in err


def test_bad_options_in_settings_are_refused():
    from sarjepa.benchmark.core.errors import SarjepaError

    for bad, message in (
        ({"scale": "huge"}, "--grid-scale must be one of tiny, small, demo, full, got 'huge'"),
        ({"dataset": "mstar"}, "--grid-dataset must be one of MSTAR_SOC, New_FUSAR, SAR_ACD"),
    ):
        s = Settings(device=torch.device("cpu"))
        s.grid = GridBenchOptions(**bad)
        with pytest.raises(SarjepaError, match=message):
            measure_grid(s)
    with pytest.raises(SarjepaError, match="speed-up > 0"):
        project_grid({"A": 1.0}, {"A": {10: 1.0}}, seeds=5, finetune_speedup=0.0)


# ----------------------------------------------------------------------------- feature store memo
def test_feature_store_memo_is_never_stale(tmp_path):
    """The per-process memo of read stores (shared by a grid's cells) serves exactly what the
    file holds: a store replaced behind its back is read again, and lookups equal a naive loop
    over the stored rows."""
    import numpy as np
    from sarjepa.benchmark.core.io import atomic_numpy_save
    from sarjepa.benchmark.features import FeatureStore, file_stamps

    imgs = []
    for i in range(5):
        (tmp_path / f"{i}.png").write_bytes(b"x" * (i + 1))
        imgs.append(str(tmp_path / f"{i}.png"))
    files, stamps = file_stamps(imgs)
    store = FeatureStore(tmp_path / "features", {"k": 1})
    feats = np.arange(15, dtype=np.float32).reshape(5, 3)
    store.add(files[:3], stamps[:3], feats[:3])
    found, missing = store.lookup(files, stamps)
    assert missing == [3, 4] and np.array_equal(found[:3], feats[:3])
    # another process rewrites the store (new file, other values): the memo must not answer
    other = {"files": np.asarray(files, dtype=str), "stamps": stamps, "features": feats + 100}
    atomic_numpy_save(other, store.path)
    found, missing = FeatureStore(tmp_path / "features", {"k": 1}).lookup(files, stamps)
    assert missing == [] and np.array_equal(found, feats + 100)
    # a changed image (other size) is missing; the others come from the store
    (tmp_path / "1.png").write_bytes(b"changed")
    files2, stamps2 = file_stamps(imgs)
    found, missing = store.lookup(files2, stamps2)
    naive = [i for i in range(5) if not np.array_equal(stamps2[i], stamps[i])]
    assert missing == naive == [1]
    assert np.array_equal(np.delete(found, 1, axis=0), np.delete(feats + 100, 1, axis=0))
    found[0] += 1  # lookups hand out their own arrays
    assert np.array_equal(store.lookup(files, stamps)[0], feats + 100)
