"""`sarjepa report`: one self-contained HTML page of a tiny grid's run folder, checked by parsing
it and, where Chromium is installed, by rendering it in headless Chromium."""

from __future__ import annotations

import base64
import json
import re
import shutil
import subprocess
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pytest
import torch
from _bench_run_helpers import make_easy_mstar, tiny_overrides, tiny_vit
from sarjepa.benchmark.cli import main
from sarjepa.benchmark.core.errors import SarjepaError
from sarjepa.benchmark.grid import GridSpec, run_grid
from sarjepa.benchmark.report import write_report
from sarjepa.benchmark.report.cells import collect_cells
from sarjepa.benchmark.report.embedding import (
    _image_paths,
    cached_features,
    draw,
    recomputed_features,
    representative,
)

pytestmark = pytest.mark.usefixtures("one_thread")

# knn and linear: both ways a trainer evaluates (the probes' and the shared loop's)
METHODS, PROTOCOLS, SHOTS, SEEDS = ("enc", "random"), ("knn", "linear"), (1, 2), (0, 1)
N_TEST = 5  # per class, 10 classes
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


def tiny_grid(root: Path, weights: Path, out: Path, cache: Path, **kw) -> Path:
    """Run a tiny grid into ``out`` (2 methods x 2 protocols x 2 shots x 2 seeds by default)."""
    overrides = tiny_overrides(**{"OPTIM.MAX_EPOCH": 1, "RUN.CACHE_DIR": str(cache)})
    i = overrides.index("DATASET.NUM_SHOTS")  # the grid sets the shots of each cell
    del overrides[i : i + 2]
    base = dict(
        methods={"enc": str(weights), "random": "none"},
        datasets=["MSTAR_SOC"],
        root=str(root),
        shots=list(SHOTS),
        seeds=list(SEEDS),
        protocols=list(PROTOCOLS),
        trainer_config="vit_b16",
        overrides=overrides,
    )
    base.update(kw)
    counts = run_grid(GridSpec(**base), out, log=lambda _msg: None)
    assert counts["failed"] == 0
    return out


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    tmp = tmp_path_factory.mktemp("report")
    root = make_easy_mstar(tmp / "data", n_train=4, n_test=N_TEST)
    weights = tmp / "enc.pth"
    torch.save({"state_dict": tiny_vit(seed=3).state_dict()}, weights)
    return tiny_grid(root, weights, tmp / "run", tmp / "cache")


class Tables(HTMLParser):
    """Every ``<table>`` (class and rows of cell texts) and ``<img>`` (class, src) of a page."""

    def __init__(self) -> None:
        super().__init__()
        self.tables: list[tuple[str, list[list[str]]]] = []
        self.imgs: list[tuple[str, str]] = []
        self.urls: list[str] = []
        self.tags: set[str] = set()
        self._cell: list[str] | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = dict(attrs)
        self.tags.add(tag)
        self.urls += [str(a[k]) for k in ("src", "href") if k in a]
        if tag == "table":
            self.tables.append((str(a.get("class", "")), []))
        elif tag == "tr":
            self.tables[-1][1].append([])
        elif tag in ("td", "th"):
            self._cell = []
        elif tag == "img":
            self.imgs.append((str(a.get("class", "")), str(a.get("src", ""))))

    def handle_endtag(self, tag: str) -> None:
        if tag in ("td", "th") and self._cell is not None:
            self.tables[-1][1][-1].append("".join(self._cell).strip())
            self._cell = None

    def handle_data(self, data: str) -> None:
        if self._cell is not None:
            self._cell.append(data)


def parse(path: Path) -> Tables:
    p = Tables()
    p.feed(path.read_text(encoding="utf-8"))
    return p


def test_report_shows_tables_per_class_confusions_and_embeddings(run_dir: Path) -> None:
    path = write_report(run_dir, references=["random"], max_points=30, log=lambda _m: None)
    assert path == run_dir / "report.html"
    page = parse(path)
    # self-contained: no script, no stylesheet link, every URL an in-page anchor or a data URI
    assert "script" not in page.tags and "link" not in page.tags
    assert all(u.startswith(("#", "data:image/png;base64,")) for u in page.urls), page.urls
    kinds = [cls for cls, _ in page.tables]
    assert kinds.count("summary") == len(PROTOCOLS) and kinds.count("comparison") == 1
    n_panels = len(METHODS) * len(PROTOCOLS)
    assert kinds.count("per-class") == n_panels
    assert kinds.count("confusion") == n_panels * len(SHOTS)
    # the summary shows n = seeds per cell and one column per shots value
    linear = [rows for cls, rows in page.tables if cls == "summary"][1]
    assert linear[0] == ["method", *(f"MSTAR_SOC {k}-shot" for k in SHOTS)]
    assert all(f"(n={len(SEEDS)})" in v for row in linear[1:] for v in row[1:])
    # confusion matrices: every test image of every seed counted once in its true row
    results = {}
    for res in run_dir.rglob("result.json"):
        r = json.loads(res.read_text())
        results.setdefault((r["method"], r["trainer"], r["shots"]), []).append(r)
    confusions = [rows for cls, rows in page.tables if cls == "confusion"]
    for rows in confusions:
        counts = np.array([[int(v) for v in row[1:]] for row in rows[1:]])
        assert counts.shape == (10, 10)
        assert counts.sum(axis=1).tolist() == [N_TEST * len(SEEDS)] * 10
    # per-class accuracy = the mean over seeds of result.json's per-class accuracy (same test set)
    first = [rows for cls, rows in page.tables if cls == "per-class"][0]  # enc, knn
    for j, k in enumerate(SHOTS, start=1):
        runs = results[("enc", "MIM_knn", k)]
        for row in first[1:]:
            mean = np.mean([r["metrics"]["per_class_accuracy"][row[0]] for r in runs])
            assert float(row[j]) == pytest.approx(mean, abs=0.051)
    # one t-SNE map per method, a real PNG
    maps = [src for cls, src in page.imgs if cls == "embedding"]
    assert len(maps) == len(METHODS)
    for src in maps:
        assert base64.b64decode(src.split(",", 1)[1])[:8] == b"\x89PNG\r\n\x1a\n"
    text = path.read_text()
    assert "feature cache" in text  # every method's cells cached features (random init too)


@pytest.mark.parametrize(("method", "source_has"), [("enc", "enc.pth"), ("random", "seed")])
def test_cached_and_recomputed_features_agree(run_dir: Path, method: str, source_has: str) -> None:
    """A random init's features are cached under its weights' hash too, and agree with the
    encoder rebuilt from the cell's seed."""
    cells, _ = collect_cells([run_dir])
    cell = representative(cells)[("MSTAR_SOC", method)]
    assert cell.protocol in ("knn", "linear")
    paths = _image_paths(cell, draw(len(cell.predictions.images), 12, seed=0))
    found = cached_features(cell, paths)
    assert found is not None and found[1].startswith("feature cache ")
    again, source = recomputed_features(cell, paths)
    assert source_has in source
    np.testing.assert_allclose(found[0], again, rtol=1e-5, atol=1e-5)


def test_embedding_without_images_is_a_note_not_a_failure(run_dir: Path, tmp_path: Path) -> None:
    copy = tmp_path / "run"
    shutil.copytree(run_dir / "output", copy / "output")
    for res in copy.rglob("result.json"):  # data and caches gone (another machine)
        r = json.loads(res.read_text())
        r["predictions"]["image_root"] = str(tmp_path / "gone")
        r["provenance"]["config"]["RUN"]["CACHE_DIR"] = str(tmp_path / "nocache")
        res.write_text(json.dumps(r))
    notes: list[str] = []
    page = parse(write_report(copy, max_points=20, log=notes.append))
    assert not [c for c, _ in page.imgs if c == "embedding"]
    assert [c for c, _ in page.tables].count("confusion") == 8
    assert any("no embedding of enc on MSTAR_SOC" in n and "not found" in n for n in notes)


def test_report_input_errors_are_one_line(
    run_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    def fails(args: list[str], needle: str) -> None:
        assert main(["report", *args]) == 2
        err = capsys.readouterr().err.strip()
        assert len(err.splitlines()) == 1 and needle in err, err

    fails([str(tmp_path / "nope")], f"run folder '{tmp_path / 'nope'}' not found")
    (tmp_path / "empty").mkdir()
    fails([str(tmp_path / "empty")], "no finished cells")
    (tmp_path / "file").write_text("x")
    fails([str(tmp_path / "file")], "is not a folder")
    fails([str(run_dir), str(run_dir)], "--out")
    fails([str(run_dir), "--reference", "sarjepa"], "reference method 'sarjepa' has no runs")
    fails([str(run_dir), "--max-points", "2"], "--max-points")
    with pytest.raises(SarjepaError, match="is in both"):
        write_report([run_dir, run_dir], tmp_path / "r.html")


def test_cli_report_without_embedding_and_the_recorded_references(
    run_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (run_dir / "comparison.csv").write_text("method,reference\nenc,random\n")
    out = tmp_path / "r.html"
    assert main(["report", str(run_dir), "--out", str(out), "--no-embedding"]) == 0
    assert capsys.readouterr().out.strip() == f"wrote {out}"
    page = parse(out)
    assert not page.imgs[1:]  # accuracy vs shots only
    assert [c for c, _ in page.tables].count("comparison") == 1  # from comparison.csv
    (run_dir / "comparison.csv").unlink()


@pytest.mark.skipif(CHROMIUM is None, reason="Chromium is not installed")
def test_report_renders_in_headless_chromium(run_dir: Path, tmp_path: Path) -> None:
    report = write_report(run_dir, tmp_path / "report.html", max_points=30, log=lambda _m: None)
    flags = [
        "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
        "--disable-background-networking", "--disable-component-update", "--disable-sync",
        f"--user-data-dir={tmp_path / 'profile'}",
    ]  # fmt: skip
    dom = subprocess.run(
        [str(CHROMIUM), *flags, "--dump-dom", report.as_uri()],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    ).stdout
    # what the browser built, not the file: tables, a confusion matrix, an embedding image
    assert re.search(r'<table class="summary">.*?<td class="name">enc</td>', dom, re.S)
    assert re.search(r'<table class="confusion">.*?BMP2', dom, re.S)
    assert re.search(r'<img class="embedding" alt="t-SNE of enc on MSTAR_SOC" src="data:', dom)
    shot = tmp_path / "shot.png"
    subprocess.run(
        [str(CHROMIUM), *flags, f"--screenshot={shot}", "--window-size=1000,1400",
         report.as_uri()],
        capture_output=True,
        timeout=120,
        check=True,
    )  # fmt: skip
    from PIL import Image

    pixels = np.asarray(Image.open(shot).convert("L"))
    assert pixels.shape == (1400, 1000)
    assert (pixels < 128).mean() > 0.005  # text and tables were drawn, not a blank page
