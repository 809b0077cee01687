"""Tables and plots are a pure function of a run folder."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
from sarjepa.benchmark.cli import main
from sarjepa.benchmark.core.errors import SarjepaError
from sarjepa.benchmark.runs import collect_runs, parse_dassl_log
from sarjepa.benchmark.tables import write_tables

ACC = {  # (method, protocol, shots) -> accuracies for seeds 0, 1, 2
    ("random", "linear", 10): [20.0, 22.0, 27.0],
    ("sarjepa", "linear", 10): [30.0, 35.0, 31.0],
    ("random", "linear", 20): [25.0, 25.0, 28.0],
    ("sarjepa", "linear", 20): [40.0, 42.0, 47.0],
}


def _write_result(
    root: Path, method: str, protocol: str, shots: int, seed: int, acc: float
) -> None:
    trainer = {"linear": "MIM_linear", "finetune": "MIM_finetune"}[protocol]
    d = root / "output" / "MSTAR_SOC" / trainer / f"{method}_{shots}shots" / f"seed{seed}"
    d.mkdir(parents=True)
    res = {
        "format": "sarjepa-result/1",
        "dataset": "MSTAR_SOC",
        "trainer": trainer,
        "method": method,
        "shots": shots,
        "seed": seed,
        "metrics": {"accuracy": acc, "error": 100 - acc, "macro_f1": acc - 1, "total": 100},
        "provenance": {
            "wall_time_s": 1.5,
            "checkpoint_sha256": "ab",
            "split_hash": "cd",
            "num_classes": 10,
        },
    }
    (d / "result.json").write_text(json.dumps(res))


@pytest.fixture
def run_dir(tmp_path: Path) -> Path:
    for (method, protocol, shots), accs in ACC.items():
        for seed, acc in enumerate(accs):
            _write_result(tmp_path, method, protocol, shots, seed, acc)
    return tmp_path


def test_summary_statistics_match_hand_computation(run_dir: Path) -> None:
    res = write_tables(run_dir)
    row = next(s for s in res["summary"] if (s["method"], s["shots"]) == ("sarjepa", 10))
    xs = [30.0, 35.0, 31.0]
    mean = sum(xs) / 3
    std = math.sqrt(sum((x - mean) ** 2 for x in xs) / 3)  # ddof=0, as Dassl's parse_test_res
    assert row["n"] == 3
    assert row["accuracy_mean"] == pytest.approx(mean)
    assert row["accuracy_std"] == pytest.approx(std)
    assert row["accuracy_ci95"] == pytest.approx(1.96 * std / math.sqrt(3))
    assert row["macro_f1_mean"] == pytest.approx(mean - 1)
    md = (run_dir / "summary.md").read_text()
    assert f"**{mean:.1f} ± {std:.1f}**" in md  # sarjepa is best at 10 shots
    assert "| random | 23.0 ± 2.9 |" in md
    assert (run_dir / "summary.tex").read_text().count("\\textbf{") == 2
    lines = (run_dir / "runs.csv").read_text().splitlines()
    assert len(lines) == 1 + 12
    assert lines[0].startswith("method,dataset,shots,seed,protocol,accuracy,macro_f1")


def test_regeneration_is_byte_identical(run_dir: Path) -> None:
    write_tables(run_dir, reference="random")
    names = ["runs.csv", "summary.csv", "summary.md", "summary.tex", "comparison.csv"]
    first = {n: (run_dir / n).read_bytes() for n in names}
    write_tables(run_dir, reference="random")
    assert first == {n: (run_dir / n).read_bytes() for n in names}


def test_paired_comparison_against_reference(run_dir: Path) -> None:
    res = write_tables(run_dir, reference="random")
    row = next(c for c in res["comparison"] if c["shots"] == 10)
    d = [10.0, 13.0, 4.0]
    mean = sum(d) / 3
    sd1 = math.sqrt(sum((x - mean) ** 2 for x in d) / 2)
    t = mean / (sd1 / math.sqrt(3))
    from scipy import stats

    assert row["diff_mean"] == pytest.approx(mean)
    assert row["p_value"] == pytest.approx(2 * stats.t.sf(abs(t), df=2))
    with pytest.raises(SarjepaError, match="reference method 'nope'"):
        write_tables(run_dir, reference="nope")


def test_corrupt_result_is_skipped_with_warning(run_dir: Path) -> None:
    bad = (
        run_dir / "output" / "MSTAR_SOC" / "MIM_linear" / "random_10shots" / "seed0" / "result.json"
    )
    bad.write_text("{not json")
    runs, warnings = collect_runs(run_dir)
    assert len(runs) == 11
    assert len(warnings) == 1 and "seed0" in warnings[0]


DASSL_LOG = """epoch [40/40] batch [1/1] loss 0.1 acc 100.0 lr 1.0e-05
Finish training
Deploy the last-epoch model
Evaluate on the *test* set
=> result
* total: 2,425
* correct: 2,213
* accuracy: 91.3%
* error: 8.7%
* macro_f1: 90.5%
Elapsed: 0:01:02
"""


def test_reads_authors_dassl_run_folders(tmp_path: Path) -> None:
    for seed, acc in [(1, "91.3"), (2, "89.7")]:
        d = tmp_path / "MSTAR_SOC" / "MIM_finetune" / "vit_b16_10shots" / f"seed{seed}"
        d.mkdir(parents=True)
        (d / "log.txt").write_text(DASSL_LOG.replace("91.3", acc))
    unfinished = tmp_path / "MSTAR_SOC" / "MIM_finetune" / "vit_b16_10shots" / "seed3"
    unfinished.mkdir()
    (unfinished / "log.txt").write_text("epoch [1/40]\n")
    assert parse_dassl_log(unfinished / "log.txt") == {}
    runs, _ = collect_runs(tmp_path)
    assert [(r.method, r.protocol, r.shots, r.seed, r.accuracy) for r in runs] == [
        ("vit_b16", "finetune", 10, 1, 91.3),
        ("vit_b16", "finetune", 10, 2, 89.7),
    ]
    assert runs[0].macro_f1 == 90.5


def test_several_references_each_get_their_paired_table(run_dir: Path) -> None:
    for seed, acc in enumerate([26.0, 30.0, 33.0]):
        _write_result(run_dir, "pixel", "linear", 10, seed, acc)
    res = write_tables(run_dir, reference=["random", "pixel"])
    pairs = {(c["method"], c["reference"], c["shots"]) for c in res["comparison"]}
    assert ("sarjepa", "pixel", 10) in pairs and ("pixel", "random", 10) in pairs
    row = next(
        c for c in res["comparison"] if (c["method"], c["reference"]) == ("sarjepa", "pixel")
    )
    assert row["diff_mean"] == pytest.approx((4.0 + 5.0 - 2.0) / 3)  # sarjepa - pixel per seed
    md = res["markdown"]
    assert md.index("against random") < md.index("against pixel")
    assert main(["table", str(run_dir), "--reference", "random", "--reference", "pixel"]) == 0


def test_chance_level_comes_from_the_recorded_classes(run_dir: Path) -> None:
    from sarjepa.benchmark.runs import chance_levels

    runs, _ = collect_runs(run_dir)
    assert chance_levels(runs) == {"MSTAR_SOC": 10.0}
    assert all(r.num_classes == 10 for r in runs)


def test_cli_table_and_plot(run_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["table", str(run_dir)]) == 0
    assert "### linear" in capsys.readouterr().out
    assert main(["plot", str(run_dir)]) == 0
    png = run_dir / "accuracy_vs_shots.png"
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    first = png.read_bytes()
    assert main(["plot", str(run_dir)]) == 0
    assert png.read_bytes() == first
    assert main(["table", str(run_dir / "missing")]) == 2


def test_plot_pretrain(tmp_path: Path) -> None:
    log = tmp_path / "run" / "log.txt"
    log.parent.mkdir()
    log.write_text(
        "\n".join(json.dumps({"epoch": e, "loss": 1 / (e + 1), "lr": 1e-3}) for e in range(5))
    )
    assert main(["plot-pretrain", str(log), "--out", str(tmp_path / "curves")]) == 0
    assert (tmp_path / "curves.png").exists() and (tmp_path / "curves.pdf").exists()
    (tmp_path / "bad.txt").write_text("nope\n")
    assert main(["plot-pretrain", str(tmp_path / "bad.txt")]) == 2


def test_holm_adjustment_matches_hand_computation() -> None:
    from sarjepa.benchmark.tables import holm

    p = [0.01, float("nan"), 0.04, 0.03, 0.005]
    # sorted: 0.005*4=0.02, 0.01*3=0.03, 0.03*2=0.06, 0.04*1=0.04 -> monotone max: 0.06
    got = holm(p)
    assert got[4] == pytest.approx(0.02) and got[0] == pytest.approx(0.03)
    assert got[3] == pytest.approx(0.06) and got[2] == pytest.approx(0.06)
    assert math.isnan(got[1])
    assert holm([0.6, 0.7]).tolist() == [1.0, 1.0]


def test_summary_has_a_student_t_interval_beside_dassls(run_dir: Path) -> None:
    from scipy import stats

    row = next(
        s for s in write_tables(run_dir)["summary"] if (s["method"], s["shots"]) == ("sarjepa", 10)
    )
    xs = [30.0, 35.0, 31.0]
    mean = sum(xs) / 3
    sd1 = math.sqrt(sum((x - mean) ** 2 for x in xs) / 2)
    assert row["accuracy_t95"] == pytest.approx(stats.t.ppf(0.975, 2) * sd1 / math.sqrt(3))
    assert row["accuracy_t95"] > 2 * row["accuracy_ci95"]  # n = 3: Dassl's is far too narrow
    assert (row["t95_unit"], row["pretrain_runs"]) == ("split seed", 1)
    header = (run_dir / "summary.csv").read_text().splitlines()[0]
    assert "accuracy_ci95" in header and "accuracy_t95" in header


def test_several_pretraining_runs_are_the_unit_of_comparison(run_dir: Path) -> None:
    from scipy import stats

    runs = {  # grid labels NAME@K: K-th pretraining run of NAME; per-run accuracies over seeds
        "mae@1": [34.0, 36.0, 35.0], "mae@2": [38.0, 37.5, 40.0], "mae@3": [33.0, 35.5, 34.0],
        "ijepa@1": [28.0, 30.0, 29.0], "ijepa@2": [27.0, 31.0, 30.5],
    }  # fmt: skip
    for label, accs in runs.items():
        for seed, acc in enumerate(accs):
            _write_result(run_dir, label, "linear", 10, seed, acc)
    res = write_tables(run_dir, reference=["random", "mae"])
    mae = next(s for s in res["summary"] if (s["method"], s["shots"]) == ("mae", 10))
    means = [sum(v) / 3 for k, v in runs.items() if k.startswith("mae")]
    assert (mae["n"], mae["pretrain_runs"], mae["t95_unit"]) == (9, 3, "pretrain run")
    m = sum(means) / 3
    sd1 = math.sqrt(sum((x - m) ** 2 for x in means) / 2)
    assert mae["accuracy_t95"] == pytest.approx(stats.t.ppf(0.975, 2) * sd1 / math.sqrt(3))
    row = next(c for c in res["comparison"] if (c["method"], c["reference"]) == ("ijepa", "mae"))
    ij = [sum(v) / 3 for k, v in runs.items() if k.startswith("ijepa")]
    assert (row["unit"], row["n_method"], row["n_reference"]) == ("pretrain run", 2, 3)
    assert row["p_value"] == pytest.approx(stats.ttest_ind(ij, means, equal_var=False).pvalue)
    assert row["diff_mean"] == pytest.approx(sum(ij) / 2 - m)
    mixed = next(c for c in res["comparison"] if (c["method"], c["reference"]) == ("mae", "random"))
    assert mixed["p_value"] is None  # one checkpoint against three runs: no test across runs
    single = next(c for c in res["comparison"] if c["method"] == "sarjepa" and c["shots"] == 10)
    assert single["unit"] == "split seed (single checkpoints)"
    tested = [c for c in res["comparison"] if c["p_value"] is not None]
    from sarjepa.benchmark.tables import holm

    assert [c["p_holm"] for c in tested] == pytest.approx(holm([c["p_value"] for c in tested]))
    assert "p_holm" in (run_dir / "comparison.csv").read_text().splitlines()[0]


def test_methods_may_name_several_checkpoints(tmp_path: Path) -> None:
    from sarjepa.benchmark.grid import parse_methods

    comma = tmp_path / "a,b.pth"
    comma.write_bytes(b"")
    assert parse_methods(["random=none", "mae=r1.pth,r2.pth", f"x={comma}"]) == {
        "random": "none", "mae@1": "r1.pth", "mae@2": "r2.pth", "x": str(comma),
    }  # fmt: skip
    for bad in (["a@1=x.pth"], ["mae=r1.pth,"], ["mae=a.pth,b.pth", "mae=c.pth"]):
        with pytest.raises(SarjepaError):
            parse_methods(bad)


def test_several_run_folders_are_merged_and_a_cell_seen_twice_is_refused(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    a, b = tmp_path / "a", tmp_path / "b"
    for (method, protocol, shots), accs in ACC.items():
        for seed, acc in enumerate(accs):  # seeds 0 and 1 in one folder, seed 2 in the other
            _write_result(a if seed < 2 else b, method, protocol, shots, seed, acc)
    whole = tmp_path / "whole"
    for (method, protocol, shots), accs in ACC.items():
        for seed, acc in enumerate(accs):
            _write_result(whole, method, protocol, shots, seed, acc)
    merged = write_tables([a, b], tmp_path / "merged")
    assert merged["summary"] == write_tables(whole)["summary"]
    folders = [r.path.split("/output/")[0] for r in merged["runs"]]
    assert (folders.count(a.as_posix()), folders.count(b.as_posix())) == (8, 4)
    assert main(["table", str(a), str(b), "--out", str(tmp_path / "cli")]) == 0
    assert (tmp_path / "cli" / "summary.csv").read_text() == (whole / "summary.csv").read_text()
    capsys.readouterr()
    _write_result(b, "sarjepa", "linear", 10, 0, 99.0)  # seed 0 is in a too
    assert main(["table", str(a), str(b), "--out", str(tmp_path / "cli")]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1
    assert "sarjepa_10shots/seed0" in err and f"'{a}'" in err and f"'{b}'" in err
    assert main(["table", str(a), str(b)]) == 2  # where would the merged table go?
    assert "--out" in capsys.readouterr().err
