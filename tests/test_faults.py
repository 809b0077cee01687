"""Bad input and faults: worker errors, random-init features, SIGKILL + resume, full disks,
damaged checkpoints, two grid processes on one folder, damaged caches.

Each fault ends with one ``sarjepa: error: ...`` line (exit 2) or a warning, and nothing written
before is lost. Fault injection (a full disk, a kill at a chosen point) is in _faults_helpers.py.
"""

from __future__ import annotations

import errno
import json
import os
import pickle
import re
import signal
import subprocess
import sys
import types
from pathlib import Path

import numpy as np
import pytest
import torch
from _bench_run_helpers import (
    features_of,
    grid_overrides,
    make_easy_mstar,
    save_sarjepa,
    tiny_overrides,
    tiny_vit,
)
from _faults_helpers import FullDisk, patch_writer
from _pretrain_helpers import tiny_opts, write_chips
from PIL import Image
from sarjepa.benchmark.cli import main
from sarjepa.benchmark.core.errors import FileWriteError, SarjepaError
from sarjepa.pretrain import checkpoints as ck

pytestmark = pytest.mark.usefixtures("one_thread")
HELPERS = Path(__file__).with_name("_faults_helpers.py")


# ----------------------------------------------------------------------------- shared helpers
@pytest.fixture(scope="module")
def chips(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("chips")
    write_chips(folder, n=16, size=72)
    return folder


@pytest.fixture
def disk_full(monkeypatch: pytest.MonkeyPatch):
    """``disk_full(pattern, room=64, exc=None)``: writes of files matching ``pattern`` fail after
    ``room`` bytes with ``OSError(ENOSPC)`` (or ``exc``); arming again replaces the pattern."""
    import sarjepa.benchmark.core.io as io

    real = io.atomic_write

    def arm(pattern: str, room: int = 64, exc: BaseException | None = None) -> None:
        patch_writer(pattern, lambda f: FullDisk(f, room, exc), monkeypatch.setattr, real)

    return arm


def _one_error_line(err: str) -> str:
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("sarjepa: error: "), err
    return lines[0]


def _truncate(path: Path) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


def _no_temp_files(folder: Path) -> bool:
    return not [p for p in folder.rglob("*.tmp")]


def _train_argv(root: Path, out: Path, cache: Path, trainer: str, **extra) -> list[str]:
    opts = {"DATASET.NUM_SHOTS": 2, "OPTIM.MAX_EPOCH": 1, "RUN.CACHE_DIR": str(cache), **extra}
    return ["train", "--data", str(root), "--seed", "0", "--trainer", trainer,
            "--dataset-config", "MSTAR_SOC", "--config", f"{trainer}/vit_b16",
            "--out", str(out), *tiny_overrides(**opts)]  # fmt: skip


def _feature_argv(weights: str, images: Path, out: Path, **extra) -> list[str]:
    opts = {
        "INPUT.CROP_SIZE": 0,
        "INPUT.SIZE": "(32, 32)",
        "MODEL.BACKBONE.NAME": "vit_tiny_patch16",
        "MODEL.BACKBONE.EMBED_DIM": 32,
        "MODEL.BACKBONE.DEPTH": 2,
        "MODEL.BACKBONE.NUM_HEADS": 2,
        "MODEL.BACKBONE.PATCH_SIZE": 8,
        "RUN.PROGRESS": False,
        **extra,
    }
    flat = [str(x) for kv in opts.items() for x in kv]
    return ["features", "--weights", weights, "--data", str(images), "--out", str(out), *flat]


def _write_images(folder: Path, n: int = 3) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for i in range(n):
        p = folder / f"{i}.png"
        arr = (np.arange(32 * 32).reshape(32, 32) * (i + 1) % 256).astype(np.uint8)
        Image.fromarray(arr).save(p)
        paths.append(p)
    return paths


# ------------------------------------------------------------- 1. errors in DataLoader workers
class _Raises(torch.utils.data.Dataset):
    def __len__(self) -> int:
        return 4

    def __getitem__(self, i: int) -> torch.Tensor:
        if i == 2:
            raise SarjepaError("cannot read image 'x/bad.png': image file is truncated")
        return torch.zeros(1)


def test_worker_error_arrives_as_the_original_line_with_the_worker_traceback():
    import multiprocessing

    from sarjepa.benchmark.core.runtime import iterate

    loader = torch.utils.data.DataLoader(_Raises(), batch_size=1, num_workers=1)
    with pytest.raises(SarjepaError) as info:
        list(iterate(loader))
    # iterate() stopped the worker at once (left to the garbage collector: ~5 s, later)
    assert not multiprocessing.active_children()
    assert str(info.value) == "cannot read image 'x/bad.png': image file is truncated"
    tb = info.value.worker_traceback
    assert "DataLoader worker process 0" in tb and "Original Traceback" in tb
    assert "__getitem__" in tb  # the worker's own frames
    # made in the main process: unchanged, no worker text; pickling keeps the one line
    assert SarjepaError("a\nb").worker_traceback == "" and str(SarjepaError("a\nb")) == "a\nb"
    again = pickle.loads(pickle.dumps(info.value))
    assert str(again) == str(info.value)


@pytest.fixture
def bad_mstar(tmp_path: Path) -> tuple[Path, Path]:
    """An easy MSTAR_SOC folder whose first BMP2 test image is cut in half."""
    root = make_easy_mstar(tmp_path / "data", n_train=6, n_test=2)
    bad = root / "MSTAR_SOC" / "TEST" / "BMP2" / "BMP2_000.jpeg"
    _truncate(bad)
    return root, bad


@pytest.mark.parametrize("trainer", ["MIM_linear", "MIM_finetune"])
def test_train_worker_error_is_one_line_naming_the_file(trainer, bad_mstar, tmp_path, capsys):
    root, bad = bad_mstar
    argv = _train_argv(
        root, tmp_path / "o", tmp_path / "c", trainer, **{"DATALOADER.NUM_WORKERS": 1}
    )
    assert main(argv) == 2
    line = _one_error_line(capsys.readouterr().err)
    assert str(bad) in line and "truncated" in line
    assert not (tmp_path / "o" / "result.json").exists()


def test_debug_shows_the_worker_traceback(bad_mstar, tmp_path, capsys):
    root, bad = bad_mstar
    argv = _train_argv(
        root, tmp_path / "o", tmp_path / "c", "MIM_linear", **{"DATALOADER.NUM_WORKERS": 1}
    )
    with pytest.raises(SarjepaError, match="truncated"):
        main(["--debug", *argv])
    err = capsys.readouterr().err
    assert "Original Traceback" in err and "read_gray" in err and str(bad) in err


def test_features_worker_error_is_one_line(bad_mstar, tmp_path, capsys):
    _, bad = bad_mstar
    argv = _feature_argv("none", bad.parent, tmp_path / "f.npz", **{"DATALOADER.NUM_WORKERS": 1})
    assert main(argv) == 2
    line = _one_error_line(capsys.readouterr().err)
    assert str(bad) in line and "truncated" in line
    assert not (tmp_path / "f.npz").exists()


def test_pretrain_worker_error_debug_shows_the_worker_traceback(tmp_path, capsys):
    data = tmp_path / "chips"
    write_chips(data, n=3, size=64)
    _truncate(data / "sub0" / "chip_000.png")
    opts = tiny_opts(**{"DATA.NUM_WORKERS": 1, "TRAIN.BATCH_SIZE": 3, "DATA.CACHE": False})
    argv = ["pretrain", "--config", "sarjepa_tiny", "--data", str(data), "--out",
            str(tmp_path / "o"), *opts]  # fmt: skip
    assert main(argv) == 2
    assert "chip_000.png" in _one_error_line(capsys.readouterr().err)
    with pytest.raises(SarjepaError, match="chip_000.png"):
        main(["--debug", *argv[:6], str(tmp_path / "o2"), *opts])
    assert "Original Traceback" in capsys.readouterr().err


def test_grid_cell_worker_error_recorded_as_one_line(bad_mstar, tmp_path):
    from sarjepa.benchmark.grid import GridSpec, run_grid, validate

    root, bad = bad_mstar
    spec = GridSpec(methods={"random": "none"}, datasets=["MSTAR_SOC"], root=str(root),
                    shots=[2], seeds=[0], protocols=["linear"],
                    overrides=grid_overrides(**{"OPTIM.MAX_EPOCH": 1,
                                                "DATALOADER.NUM_WORKERS": 1}))  # fmt: skip
    said: list[str] = []
    counts = run_grid(spec, tmp_path / "run", log=said.append)
    assert counts["failed"] == 1
    (cell,) = validate(spec)
    err = json.loads((tmp_path / "run" / cell.rel_dir() / "error.json").read_text())
    assert "\n" not in err["error"] and str(bad) in err["error"]
    assert "Original Traceback" in err["traceback"]
    failed = [s for s in said if "FAILED" in s]
    assert len(failed) == 1 and "\n" not in failed[0] and str(bad) in failed[0]


# ------------------------------------------------------------------ 2. features --weights none
def test_features_weights_none_is_a_seeded_random_init(tmp_path, capsys):
    from sarjepa.pretrain.models import build_vit

    paths = _write_images(tmp_path / "imgs")
    out = tmp_path / "f.npz"
    assert main(_feature_argv("none", tmp_path / "imgs", out, SEED=3)) == 0
    assert main(_feature_argv("None", tmp_path / "imgs", tmp_path / "g.npz", SEED=3)) == 0
    assert "checkpoint format random" in capsys.readouterr().out
    with np.load(out) as z, np.load(tmp_path / "g.npz") as g:
        feats = z["features"]
        np.testing.assert_array_equal(feats, g["features"])  # same SEED, same weights
        assert z["files"].tolist() == [str(p) for p in paths]
    torch.manual_seed(3)
    ref = build_vit("vit_tiny_patch16", img_size=32, embed_dim=32, depth=2, num_heads=2,
                    patch_size=8).eval()  # fmt: skip
    x = torch.stack(
        [torch.from_numpy(np.asarray(Image.open(p), np.float32) / 255)[None] for p in paths]
    )
    np.testing.assert_allclose(feats, features_of(ref, x).numpy(), rtol=0, atol=1e-5)
    # unseeded (SEED -1, the default) still works
    assert main(_feature_argv("none", tmp_path / "imgs", tmp_path / "h.npz")) == 0


# --------------------------------------------------------------- 3. SIGKILL, then --resume auto
def _pretrain_cli(data: Path, out: Path, fault: str = "", at: str = "", resume: bool = False):
    env = {**os.environ, "OMP_NUM_THREADS": "1", "SARJEPA_FAULT": fault, "SARJEPA_FAULT_AT": at}
    opts = tiny_opts(**{"TRAIN.EPOCHS": 3, "TRAIN.BATCH_SIZE": 4, "DATA.NUM_WORKERS": 1,
                        "MODEL.DROP_PATH": 0.1})  # fmt: skip
    cmd = [sys.executable, str(HELPERS), "pretrain", "--config", "sarjepa_tiny", "--data",
           str(data), "--out", str(out), "--no-progress"]  # fmt: skip
    cmd += (["--resume", "auto"] if resume else []) + opts
    log = out.parent / f"{out.name}-{fault or 'run'}-{int(resume)}.txt"
    with open(log, "w") as f:  # a file, not a pipe: orphaned workers must not hold it open
        proc = subprocess.run(cmd, env=env, stdout=f, stderr=subprocess.STDOUT, timeout=300)
    return proc.returncode, log.read_text()


def _assert_same_run(a: Path, b: Path) -> None:
    x, y = (torch.load(p / "checkpoint-2.pth", weights_only=True) for p in (a, b))
    assert x["model"].keys() == y["model"].keys()
    for key, value in x["model"].items():
        assert torch.equal(value, y["model"][key]), key
    for idx, state in x["optimizer"]["state"].items():
        for k, v in state.items():
            assert torch.equal(v, y["optimizer"]["state"][idx][k]), (idx, k)
    logs = [[json.loads(ln) for ln in (p / "log.txt").read_text().splitlines()] for p in (a, b)]
    assert [r["epoch"] for r in logs[1]] == [0, 1, 2]
    assert [r["loss"] for r in logs[0]] == [r["loss"] for r in logs[1]]


@pytest.fixture(scope="module")
def uninterrupted(chips: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The output folder of the reference run (3 epochs, no fault)."""
    ref = tmp_path_factory.mktemp("uninterrupted") / "ref"
    code, text = _pretrain_cli(chips, ref)
    assert code == 0, text
    return ref


@pytest.mark.slow
@pytest.mark.parametrize(
    ("fault", "at", "latest"),
    [
        ("mid_epoch", "6", 0),  # batch 2 of 4 in epoch 1
        ("in_write", "checkpoint-1.pth", 0),  # 16 bytes of checkpoint-1 written, then killed
        ("after_save", "1", 1),  # checkpoint-1 complete, epoch 2 not started
    ],
)
def test_sigkill_then_resume_auto_equals_the_uninterrupted_run(
    fault, at, latest, chips, uninterrupted, tmp_path
):
    out = tmp_path / "killed"
    code, text = _pretrain_cli(chips, out, fault, at)
    assert code == -signal.SIGKILL, text
    assert [e for e, _ in ck.list_checkpoints(out)] == list(range(latest + 1))
    if fault == "in_write":
        assert [p.name for p in out.glob(".checkpoint-1.pth.*.tmp")], "the kill left a temp file"
    code, text = _pretrain_cli(chips, out, resume=True)
    assert code == 0, text
    assert f"checkpoint-{latest}.pth (epoch {latest + 1})" in text
    if fault == "in_write":
        assert "removed .checkpoint-1.pth." in text
    assert _no_temp_files(out)
    _assert_same_run(uninterrupted, out)


# ------------------------------------------------------------ 4. full disk / error while writing
def _entries(value: float) -> dict:
    return {"model": {"w": torch.full((64, 64), value)}, "optimizer": {}, "epoch": 0, "args": {}}


@pytest.mark.parametrize("exc", [None, RuntimeError("writer bug")])
def test_checkpoint_and_sidecar_survive_a_failed_rewrite(exc, disk_full, tmp_path):
    path = ck.save_checkpoint(tmp_path, 0, _entries(1.0), {"method": "a"})
    side = ck.sidecar_path(path).read_bytes()
    for pattern in ("checkpoint-0.pth", "checkpoint-0.json"):
        disk_full(pattern, exc=exc)
        with pytest.raises(FileWriteError if exc is None else RuntimeError) as info:
            ck.save_checkpoint(tmp_path, 0, _entries(2.0), {"method": "b"})
        if exc is None:
            assert info.value.errno == errno.ENOSPC and "\n" not in str(info.value)
            assert f"cannot write '{tmp_path / pattern}': No space left on device" in str(
                info.value
            )
        # both files of the pair are the previous ones, whichever write failed
        assert torch.equal(ck.load_checkpoint(path)["model"]["w"], torch.ones(64, 64))
        assert ck.sidecar_path(path).read_bytes() == side
        assert _no_temp_files(tmp_path)


def test_pretrain_full_disk_one_line_then_resume(chips, tmp_path, disk_full, capsys):
    out = tmp_path / "run"
    argv = ["pretrain", "--config", "sarjepa_tiny", "--data", str(chips), "--out", str(out)]
    assert main([*argv, *tiny_opts(**{"TRAIN.EPOCHS": 1})]) == 0
    before = (out / "checkpoint-0.pth").read_bytes()
    capsys.readouterr()
    disk_full("checkpoint-1.pth", room=1000)
    assert main([*argv, "--resume", "auto", *tiny_opts(**{"TRAIN.EPOCHS": 2})]) == 2
    line = _one_error_line(capsys.readouterr().err)
    assert "checkpoint-1.pth': No space left on device" in line
    assert (out / "checkpoint-0.pth").read_bytes() == before
    assert not (out / "checkpoint-1.pth").exists() and _no_temp_files(out)
    ck.load_checkpoint(out / "checkpoint-0.pth")


def test_split_files_survive_a_full_disk(tmp_path, disk_full, caplog, capsys):
    from sarjepa.benchmark.config import load_cfg
    from sarjepa.benchmark.datasets import build_dataset

    root = make_easy_mstar(tmp_path / "data", n_train=6, n_test=2)
    argv = ["splits", "--dataset", "MSTAR_SOC", "--data", str(root), "--shots", "2", "--seed",
            "0", "--cache-dir", str(tmp_path / "cache"), "--out",
            str(tmp_path / "s.json")]  # fmt: skip
    assert main(argv) == 0
    written = (tmp_path / "s.json").read_bytes()
    opts = ["DATASET.ROOT", str(root), "DATASET.NUM_SHOTS", "2", "SEED", "0",
            "RUN.CACHE_DIR", str(tmp_path / "cache")]  # fmt: skip
    first = build_dataset(load_cfg(None, "mstar_soc", opts))
    cached = Path(first.split_info["cache_file"])
    cached.write_bytes(b"{")  # damaged: the next build recomputes it and rewrites the file
    capsys.readouterr()
    disk_full("*.json")
    # the split file a user asked for: one line, the previous file unchanged
    assert main([*argv[:-1], str(tmp_path / "s.json")]) == 2
    assert "s.json': No space left on device" in _one_error_line(capsys.readouterr().err)
    assert (tmp_path / "s.json").read_bytes() == written
    # the split cache: a warning, the run goes on with the right split
    with caplog.at_level("WARNING", logger="sarjepa.datasets"):
        again = build_dataset(load_cfg(None, "mstar_soc", opts))
    assert "could not write the split cache" in caplog.text and "No space left" in caplog.text
    assert again.split_lists() == first.split_lists() and cached.read_bytes() == b"{"
    assert _no_temp_files(tmp_path)


def test_result_json_and_tables_survive_a_full_disk(tmp_path, disk_full, capsys):
    root = make_easy_mstar(tmp_path / "data", n_train=6, n_test=2)
    out = tmp_path / "run" / "output" / "MSTAR_SOC" / "MIM_linear" / "random_2shots" / "seed0"
    argv = _train_argv(root, out, tmp_path / "cache", "MIM_linear")
    assert main(argv) == 0
    assert main(["table", str(tmp_path / "run")]) == 0
    summary = (tmp_path / "run" / "summary.csv").read_bytes()
    capsys.readouterr()
    disk_full("summary.csv")
    assert main(["table", str(tmp_path / "run")]) == 2
    assert "summary.csv': No space left on device" in _one_error_line(capsys.readouterr().err)
    assert (tmp_path / "run" / "summary.csv").read_bytes() == summary
    disk_full("result.json")
    assert main(argv) == 2  # the cell is recomputed; its result cannot be written
    assert "result.json': No space left on device" in _one_error_line(capsys.readouterr().err)
    assert not (out / "result.json").exists(), "no half-written result marks the cell done"
    assert _no_temp_files(tmp_path / "run")


def test_grid_spec_and_feature_files_survive_a_full_disk(tmp_path, disk_full, capsys):
    from sarjepa.benchmark.grid import GridSpec, prepare_run_dir

    spec = GridSpec(methods={"random": "none"}, datasets=["MSTAR_SOC"], root=str(tmp_path))
    prepare_run_dir(spec, tmp_path / "run", force=False)
    grid_json = (tmp_path / "run" / "grid.json").read_bytes()
    _write_images(tmp_path / "imgs")
    out = tmp_path / "f.npz"
    assert main(_feature_argv("none", tmp_path / "imgs", out, SEED=0)) == 0
    feats = out.read_bytes()
    capsys.readouterr()
    disk_full("*")
    with pytest.raises(FileWriteError, match="grid.json': No space left on device"):
        prepare_run_dir(spec, tmp_path / "run", force=False)
    assert (tmp_path / "run" / "grid.json").read_bytes() == grid_json
    assert main(_feature_argv("none", tmp_path / "imgs", out, SEED=1)) == 2
    assert "f.npz': No space left on device" in _one_error_line(capsys.readouterr().err)
    assert out.read_bytes() == feats
    assert _no_temp_files(tmp_path)


def test_feature_cache_survives_a_full_disk(tmp_path, disk_full, caplog):
    from sarjepa.benchmark.features import Backbone, FeatureStore, cached_extract, file_stamps

    paths = [str(p) for p in _write_images(tmp_path / "imgs", n=4)]
    backbone = Backbone(tiny_vit(seed=1))
    store = FeatureStore(tmp_path / "features", {"test": 1})
    tfm = _plain_transform
    first = cached_extract(backbone, paths[:2], tfm, torch.device("cpu"), store, log=_quiet)
    saved = store.path.read_bytes()
    disk_full("*.npz")
    with caplog.at_level("WARNING", logger="sarjepa.features"):
        both = cached_extract(backbone, paths, tfm, torch.device("cpu"), store, log=_quiet)
    assert "feature cache not updated" in caplog.text and "No space left" in caplog.text
    assert torch.equal(both[:2], first) and store.path.read_bytes() == saved
    found, missing = store.lookup(*file_stamps(paths))
    assert missing == [2, 3] and np.array_equal(found[:2], first.numpy())


def _plain_transform(img: Image.Image) -> torch.Tensor:
    return torch.from_numpy(np.asarray(img, np.float32) / 255)[None]


def _quiet(_msg: str) -> None:
    pass


# ------------------------------------------------------------- 5. truncated or foreign .pth
def _bad_pth(kind: str, folder: Path) -> Path:
    """A checkpoint file that is wrong in one way; the name says how."""
    path = folder / f"{kind}.pth"
    good = folder / "good.pth"
    save_sarjepa(tiny_vit(seed=2), good)
    if kind == "truncated":
        path.write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    elif kind == "empty":
        path.write_bytes(b"")
    elif kind == "text":
        path.write_text("this is not a checkpoint\n")
    elif kind == "foreign_dict":
        torch.save({"weights": [1, 2, 3], "note": "not ours"}, path)
    elif kind == "list":
        torch.save([torch.zeros(2)], path)
    elif kind == "unsafe":
        torch.save({"model": {}, "args": types.SimpleNamespace(x=1)}, path)
    elif kind == "no_encoder":
        torch.save({"model": {"head.weight": torch.zeros(3, 3)}, "epoch": 1}, path)
    return path


BAD_PTH = {
    "truncated": "truncated",
    "empty": "the file is empty",
    "text": "not a PyTorch file",
    "foreign_dict": "unknown checkpoint format",
    "list": "holds a list, not a dict",
    "unsafe": "'types.SimpleNamespace' object",
    "no_encoder": "no ViT encoder",
}


@pytest.mark.parametrize("kind", sorted(BAD_PTH))
def test_load_encoder_names_the_file_and_the_fault(kind, tmp_path):
    from sarjepa.pretrain.weights import check_checkpoint, load_encoder

    path = _bad_pth(kind, tmp_path)
    for load in (load_encoder, check_checkpoint):
        with pytest.raises(SarjepaError) as info:
            load(path)
        msg = str(info.value)
        assert "\n" not in msg and f"'{path}'" in msg and BAD_PTH[kind] in msg, msg


@pytest.mark.parametrize("kind", ["truncated", "foreign_dict", "unsafe"])
def test_features_and_grid_refuse_a_bad_checkpoint_in_one_line(kind, tmp_path, capsys):
    path = _bad_pth(kind, tmp_path)
    _write_images(tmp_path / "imgs")
    assert main(_feature_argv(str(path), tmp_path / "imgs", tmp_path / "f.npz")) == 2
    line = _one_error_line(capsys.readouterr().err)
    assert f"'{path}'" in line and BAD_PTH[kind] in line
    root = make_easy_mstar(tmp_path / "data", n_train=2, n_test=1)
    argv = ["grid", "--methods", f"bad={path}", "--datasets", "MSTAR_SOC", "--data", str(root),
            "--out", str(tmp_path / "run"), "--shots", "1", "--seeds", "0"]  # fmt: skip
    assert main(argv) == 2
    line = _one_error_line(capsys.readouterr().err)
    assert "method 'bad'" in line and f"'{path}'" in line and BAD_PTH[kind] in line
    assert not (tmp_path / "run" / "output").exists(), "refused before any cell"


@pytest.mark.parametrize(
    ("kind", "needle"),
    [
        ("truncated", "truncated"),
        ("text", "not a PyTorch file"),
        ("foreign_dict", "not a pretraining checkpoint"),
        ("bad_epoch", "'epoch' is 'seven'"),
        ("other_method", "does not match method 'sarjepa'"),
    ],
)
def test_pretrain_resume_from_a_bad_checkpoint_is_one_line(kind, needle, chips, tmp_path, capsys):
    out = tmp_path / "run"
    argv = ["pretrain", "--config", "sarjepa_tiny", "--data", str(chips), "--out", str(out)]
    assert main([*argv, *tiny_opts(**{"TRAIN.EPOCHS": 1})]) == 0
    bad = out / "checkpoint-1.pth"
    if kind == "bad_epoch":
        torch.save(
            {**torch.load(out / "checkpoint-0.pth", weights_only=True), "epoch": "seven"}, bad
        )
    elif kind == "other_method":
        torch.save({"model": {"w": torch.zeros(2)}, "epoch": 1, "optimizer": None}, bad)
    else:
        bad.write_bytes(_bad_pth(kind, tmp_path).read_bytes())
    capsys.readouterr()
    assert main([*argv, "--resume", "auto", *tiny_opts(**{"TRAIN.EPOCHS": 3})]) == 2
    line = _one_error_line(capsys.readouterr().err)
    assert f"'{bad}'" in line and needle in line
    if kind in ("truncated", "text", "foreign_dict", "bad_epoch"):
        assert "move it away to resume from checkpoint-0.pth" in line


# ------------------------------------------------------------ 6. two grid processes, one RUN_DIR
@pytest.fixture(scope="module")
def grid_data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_easy_mstar(tmp_path_factory.mktemp("griddata"), n_train=6, n_test=2)


def _grid_spec(root: Path, seeds: list[int]):
    from sarjepa.benchmark.grid import GridSpec

    return GridSpec(methods={"random": "none"}, datasets=["MSTAR_SOC"], root=str(root),
                    shots=[2], seeds=seeds, protocols=["linear"],
                    overrides=grid_overrides(**{"OPTIM.MAX_EPOCH": 1}))  # fmt: skip


def test_a_held_cell_lock_skips_the_cell_and_names_the_holder(grid_data, tmp_path):
    import fcntl

    from sarjepa.benchmark.grid import (
        LOCK_NAME,
        cell_state,
        prepare_run_dir,
        run_cell,
        run_grid,
        validate,
    )

    spec = _grid_spec(grid_data, [0, 1])
    run = tmp_path / "run"
    prepare_run_dir(spec, run, force=False)
    held = validate(spec)[0]
    folder = run / held.rel_dir()
    folder.mkdir(parents=True)
    (folder / "partial.txt").write_text("work of the other process")
    fd = os.open(folder / LOCK_NAME, os.O_RDWR | os.O_CREAT)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        os.write(fd, b"4242\n")
        said: list[str] = []
        counts = run_grid(spec, run, log=said.append)
        assert counts["done"] == 1 and counts["running"] == 1
        assert f"grid: skipped {held.rel_dir()}: running in another process (pid 4242)" in said
        assert (folder / "partial.txt").is_file(), "a held cell's folder is left alone"
    finally:
        os.close(fd)
    assert run_grid(spec, run, log=_quiet)["done"] == 1 and cell_state(run, held) == "done"
    # listed as todo, finished meanwhile by another process: not run again
    from dataclasses import asdict

    res = run_cell(asdict(spec), asdict(held), str(run), "cpu", False, seen="todo")
    assert res["state"] == "done_elsewhere" and cell_state(run, held) == "done"


@pytest.mark.slow
def test_two_grid_processes_share_a_run_dir(grid_data, tmp_path):
    from sarjepa.benchmark.grid import cell_state, validate

    run, record = tmp_path / "run", tmp_path / "cells.txt"
    seeds = [0, 1, 2, 3]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "SARJEPA_FAULT": "record_cells",
           "SARJEPA_FAULT_AT": str(record), "SARJEPA_FAULT_SLEEP": "0.5",
           "SARJEPA_FAULT_PEERS": "2"}  # fmt: skip
    cmd = [sys.executable, str(HELPERS), "grid", "--methods", "random=none", "--datasets",
           "MSTAR_SOC", "--shots", "2", "--seeds", *map(str, seeds), "--protocols", "linear",
           "--data", str(grid_data), "--out", str(run),
           *grid_overrides(**{"OPTIM.MAX_EPOCH": 1})]  # fmt: skip
    logs = [tmp_path / f"p{i}.txt" for i in range(2)]
    procs = []
    for log in logs:
        with open(log, "w") as f:
            procs.append(subprocess.Popen(cmd, env=env, stdout=f, stderr=subprocess.STDOUT))
    for p in procs:
        assert p.wait(timeout=300) == 0, [log.read_text() for log in logs]
    started = [ln.split() for ln in record.read_text().splitlines()]
    cells = validate(_grid_spec(grid_data, seeds))
    # every cell started exactly once, and both processes ran cells
    assert sorted(d for _, d in started) == sorted(str(run / c.rel_dir()) for c in cells)
    pids = {pid for pid, _ in started}
    assert pids == {str(p.pid) for p in procs}
    for c in cells:
        assert cell_state(run, c) == "done"
        json.loads((run / c.rel_dir() / "result.json").read_text())
    text = "".join(log.read_text() for log in logs)
    # the first cell was held by one process while the other listed it
    skipped = re.findall(r"running in another process \(pid (\d+)\)", text)
    assert skipped and set(skipped) <= pids, text
    assert json.loads((run / "grid.json").read_text())["format"] == "sarjepa-grid/1"
    assert (run / "summary.csv").is_file() and _no_temp_files(run)


# -------------------------------------------------------------------- 7. damaged caches rebuilt
@pytest.mark.parametrize("damage", ["truncated", "garbage", "not_a_dict", "wrong_paths"])
def test_a_damaged_split_cache_is_rebuilt_with_a_warning(damage, grid_data, tmp_path, caplog):
    from sarjepa.benchmark.config import load_cfg
    from sarjepa.benchmark.datasets import build_dataset

    opts = ["DATASET.ROOT", str(grid_data), "DATASET.NUM_SHOTS", "2", "SEED", "0",
            "RUN.CACHE_DIR", str(tmp_path / "cache")]  # fmt: skip
    first = build_dataset(load_cfg(None, "mstar_soc", opts))
    path = Path(first.split_info["cache_file"])
    saved = path.read_bytes()
    payload = json.loads(saved)
    damaged = {
        "truncated": saved[: len(saved) // 2],
        "garbage": b"\x00\xff" * 10,
        "not_a_dict": b"[1, 2, 3]\n",
        "wrong_paths": json.dumps({**payload, "train": ["MSTAR_SOC/nowhere.jpeg"]}).encode(),
    }[damage]
    path.write_bytes(damaged)
    with caplog.at_level("WARNING", logger="sarjepa.datasets"):
        again = build_dataset(load_cfg(None, "mstar_soc", opts))
    assert "split cache file" in caplog.text and "rebuilding it" in caplog.text
    assert str(path) in caplog.text
    assert again.split_lists() == first.split_lists()
    assert path.read_bytes() == saved, "rewritten as it was"


@pytest.mark.parametrize("damage", ["truncated", "garbage", "inconsistent"])
def test_a_damaged_feature_cache_is_rebuilt_with_a_warning(damage, tmp_path, caplog):
    from sarjepa.benchmark.features import Backbone, FeatureStore, cached_extract

    paths = [str(p) for p in _write_images(tmp_path / "imgs", n=3)]
    backbone = Backbone(tiny_vit(seed=1))
    store = FeatureStore(tmp_path / "features", {"test": 2})
    cpu = torch.device("cpu")
    first = cached_extract(backbone, paths, _plain_transform, cpu, store, log=_quiet)
    saved = store.path.read_bytes()
    if damage == "inconsistent":
        with np.load(store.path) as z:
            arrays = {k: z[k] for k in z.files}
        arrays["features"] = arrays["features"][:1]
        np.savez(store.path, **arrays)
    else:
        store.path.write_bytes(saved[: len(saved) // 2] if damage == "truncated" else b"junk" * 9)
    said: list[str] = []
    with caplog.at_level("WARNING", logger="sarjepa.features"):
        again = cached_extract(backbone, paths, _plain_transform, cpu, store, log=said.append)
    assert caplog.text.count("is unreadable") == 1 and "rebuilding it" in caplog.text
    assert str(store.path) in caplog.text
    assert torch.equal(again, first) and "3 extracted" in said[0]
    cached = cached_extract(backbone, paths, _plain_transform, cpu, store, log=said.append)
    assert torch.equal(cached, first) and "from the cache" in said[-1]


def test_a_checkpoint_path_that_is_a_folder_says_so(tmp_path, capsys):
    (tmp_path / "ckpt").mkdir()
    (tmp_path / "ckpt" / "checkpoint-19.pth").write_bytes(b"")
    (tmp_path / "ckpt" / "checkpoint-9.pth").write_bytes(b"")
    assert main(["features", "--weights", str(tmp_path / "ckpt"), "--data", str(tmp_path),
                 "--out", str(tmp_path / "f.npz")]) == 2  # fmt: skip
    err = capsys.readouterr().err.strip()
    assert err.endswith(
        "ckpt' is a folder, not a file (it holds checkpoint-9.pth, checkpoint-19.pth: name one)"
    ), err
    assert main(["features", "--weights", str(tmp_path / "no.pth"), "--data", str(tmp_path),
                 "--out", str(tmp_path / "f.npz")]) == 2  # fmt: skip
    assert "no.pth' does not exist" in capsys.readouterr().err
