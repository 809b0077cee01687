"""The contract of every registered pretraining method, parametrised over the registry.

For each name of :func:`pretrain.methods.method_names` (a method added to ``pretrain/methods/``
is tested here without editing this file): it builds from its tiny config and backpropagates; a
tiny run lowers its loss; a run killed after an epoch and resumed ends bitwise equal to an
uninterrupted one (every tensor and number of the checkpoint, and the logged losses); its
checkpoint feeds ``sarjepa features`` through the benchmark's loader with the method's own
weights. And ``torchrun`` with 2 processes equals 1 process of the same effective batch, for
``sarjepa`` (the method whose masks ``tests/_ddp_fixed_masks.py`` can fix: each rank draws its
own masks, so runs with random masks differ by design).

A method's tiny config is its bundled ``<name>_tiny.yaml``; a registered name without one (the
SAR-JEPA target variants) runs with the tiny config of a method of the same class, its own name
and its own default target. Method-specific equalities (losses against naive references,
upstream keys, mask draw orders) stay in ``test_method_<name>.py``.
"""

from __future__ import annotations

import json
import math
import os
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from _pretrain_helpers import tiny_opts, write_chips
from PIL import Image
from sarjepa.benchmark.cli import main
from sarjepa.pretrain import checkpoints as ck
from sarjepa.pretrain.config import CONFIG_DIR, load_config
from sarjepa.pretrain.methods import build_method, method_class, method_names
from sarjepa.pretrain.train import train
from yacs.config import CfgNode as CN

pytestmark = pytest.mark.usefixtures("one_thread")

METHODS = method_names()
RUN = {  # small, CPU, quiet; the model, masking and target are the tiny config's
    "TRAIN.BATCH_SIZE": 4,
    "TRAIN.SAVE_FREQ": 1,
    "TRAIN.PROGRESS": False,
    "TRAIN.TENSORBOARD": False,
    "DATA.NUM_WORKERS": 0,
    "DEVICE": "cpu",
}


@pytest.fixture(scope="module")
def chips(tmp_path_factory):
    folder = tmp_path_factory.mktemp("chips")
    write_chips(folder, n=16, size=72)
    return folder


def _tiny_config_of(name: str) -> tuple[str, bool]:
    """``(bundled tiny config, whether it names another method)`` for method ``name``."""
    if (CONFIG_DIR / f"{name}_tiny.yaml").is_file():
        return f"{name}_tiny", False
    cls = method_class(name)
    for path in sorted(CONFIG_DIR.glob("*_tiny.yaml")):
        if method_class(load_config(path.stem).METHOD.NAME) is cls:
            return path.stem, True
    raise AssertionError(f"no bundled *_tiny.yaml runs a method of {cls.__name__} ('{name}')")


def tiny(name: str, data: Path | None = None, out: Path | None = None, **extra):
    """Method ``name``'s tiny config with :data:`RUN` and ``extra`` overrides."""
    config, other = _tiny_config_of(name)
    opts = {**RUN, **extra}
    if other:  # the variant's own name and default target
        opts.update({"METHOD.NAME": name, "TARGET.NAME": '""'})
    cfg = load_config(config, [str(v) for kv in opts.items() for v in kv])
    if other:
        cfg.TARGET.OPTIONS = CN(new_allowed=True)
    cfg.DATA_DIR, cfg.OUTPUT_DIR = str(data or ""), str(out or "")
    return cfg


def _log(out: Path) -> list[dict]:
    return [json.loads(x) for x in (out / "log.txt").read_text().splitlines()]


def _assert_same(a, b, where: str = "") -> None:
    """``a`` and ``b`` equal bitwise: tensors by ``torch.equal``, containers recursively."""
    if isinstance(a, torch.Tensor):
        assert isinstance(b, torch.Tensor) and a.dtype == b.dtype, where
        assert torch.equal(a, b), where
    elif isinstance(a, dict):
        assert isinstance(b, dict) and a.keys() == b.keys(), where
        for k in a:
            _assert_same(a[k], b[k], f"{where}.{k}")
    elif isinstance(a, (list, tuple)):
        assert type(a) is type(b) and len(a) == len(b), where
        for i, (x, y) in enumerate(zip(a, b)):
            _assert_same(x, y, f"{where}[{i}]")
    else:
        assert a == b, (where, a, b)


def test_every_method_is_tested_here():
    assert len(METHODS) >= 7 and len(set(METHODS)) == len(METHODS)


@pytest.mark.parametrize("name", METHODS)
def test_builds_from_its_tiny_config_and_backpropagates(name):
    torch.manual_seed(0)
    cfg = tiny(name)
    method = build_method(cfg)
    assert method.name == name and method.describe()["method"] == name
    size = int(cfg.INPUT.SIZE)
    images = torch.rand(2, 1, size, size, generator=torch.Generator().manual_seed(1))
    loss, stats = method(images, torch.Generator().manual_seed(0))
    assert loss.ndim == 0 and loss.dtype == torch.float32 and torch.isfinite(loss)
    assert torch.equal(stats["loss"], loss.detach())
    loss.backward()
    grads = [p.grad for p in method.encoder.parameters() if p.requires_grad]
    assert any(g is not None and g.abs().sum() > 0 for g in grads)


@pytest.mark.parametrize("name", METHODS)
def test_tiny_run_lowers_the_loss(name, chips, tmp_path):
    out = tmp_path / "run"
    opts = {"TRAIN.EPOCHS": 8, "TRAIN.WARMUP_EPOCHS": 1, "TRAIN.SAVE_FREQ": 0}
    summary = train(tiny(name, chips, out, **opts))
    losses = [r["loss"] for r in _log(out)]
    assert len(losses) == 8 and summary["last_epoch"] == 7
    assert all(math.isfinite(v) for v in losses)
    assert sum(losses[-2:]) / 2 < 0.9 * sum(losses[:2]) / 2, losses
    # SAVE_FREQ 0: only the final checkpoint
    assert [e for e, _ in ck.list_checkpoints(out)] == [7]


@pytest.mark.parametrize("name", METHODS)
def test_resume_is_bitwise_equal_to_an_uninterrupted_run(name, chips, tmp_path):
    opts = {"TRAIN.EPOCHS": 3, "TRAIN.WARMUP_EPOCHS": 1, "MODEL.DROP_PATH": 0.1}
    full, part = tmp_path / "full", tmp_path / "part"
    train(tiny(name, chips, full, **opts))
    train(tiny(name, chips, part, **opts))
    for epoch in (1, 2):  # "killed" after epoch 0, then resumed
        ck.sidecar_path(ck.checkpoint_path(part, epoch)).unlink()
        ck.checkpoint_path(part, epoch).unlink()
    summary = train(tiny(name, chips, part, **opts), resume="auto")
    assert summary["epochs_run"] == 2
    a = torch.load(full / "checkpoint-2.pth", weights_only=True)
    b = torch.load(part / "checkpoint-2.pth", weights_only=True)
    a.pop("args"), b.pop("args")  # they name the output folders
    _assert_same(a, b)
    assert [r["epoch"] for r in _log(part)] == [0, 1, 2]
    assert [r["loss"] for r in _log(part)] == [r["loss"] for r in _log(full)]
    side = ck.read_sidecar(part / "checkpoint-2.pth")
    assert side["method"] == name and side["epoch"] == 2


@pytest.mark.parametrize("name", METHODS)
def test_checkpoint_feeds_sarjepa_features_with_the_methods_weights(name, chips, tmp_path):
    """`sarjepa features` on the checkpoint of a 1-epoch run = the restored method's own encoder
    (the part the benchmark's loader reports as its source) pooled as the loader pools."""
    from sarjepa.pretrain.weights import load_encoder

    out = tmp_path / "run"
    cfg = tiny(name, chips, out, **{"TRAIN.EPOCHS": 1})
    train(cfg)
    path = out / "checkpoint-0.pth"
    size = int(cfg.INPUT.SIZE)
    x = torch.rand(3, 1, size, size, generator=torch.Generator().manual_seed(0))
    x = (x * 255).round() / 255
    folder = tmp_path / "imgs"
    folder.mkdir()
    for i in range(3):
        Image.fromarray((x[i, 0].numpy() * 255).round().astype(np.uint8)).save(folder / f"{i}.png")
    npz = tmp_path / "f.npz"
    argv = ["features", "--weights", str(path), "--images", str(folder), "--out", str(npz)]
    argv += ["INPUT.CROP_SIZE", "0", "INPUT.SIZE", f"({size}, {size})", "RUN.PROGRESS", "False"]
    assert main(argv) == 0
    loaded = load_encoder(path, log=lambda _: None)
    method = build_method(tiny(name))
    method.restore_checkpoint_entries(torch.load(path, weights_only=True), str(path))
    children = dict(method.named_children())
    own = children.get(loaded.source, method.encoder)
    for key, value in loaded.encoder.state_dict().items():
        assert torch.equal(value, own.state_dict()[key]), key
    with torch.no_grad():
        want = loaded.encoder.pool(own.eval().forward_features(x))
    with np.load(npz) as z:
        assert z["features"].shape == (3, method.encoder.embed_dim)
        np.testing.assert_allclose(z["features"], want.numpy(), rtol=0, atol=1e-5)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _max_abs_diff(a: dict, b: dict) -> float:
    assert a.keys() == b.keys()
    return max((a[k].float() - b[k].float()).abs().max().item() for k in a)


# 2 processes x batch 2 against 1 process x batch 4 and 1 process x batch 2 x accumulation 2: same
# images per optimiser step, same lr, gradients averaged over the same 4 images; only the fp32
# summation order differs (gloo all-reduce of two half-batch gradients vs one backward over 4
# images, or two accumulated halves). Measured: 1.2e-7 (1 x 4) and 1.4e-7 (accumulation), Adam
# amplifying rounding on near-zero gradient entries; a different effective batch moves weights by
# 2.7e-4. ATOL = 5e-6 (3% of the peak lr 1.56e-4, i.e. of one Adam step) separates the two by 40x
# either way.
DDP_ATOL = 5e-6


@pytest.mark.slow
def test_torchrun_two_processes_match_one_process_of_the_same_effective_batch(
    tmp_path, capsys, monkeypatch
):
    """torchrun, 2 CPU processes (gloo) = 1 process with the same effective batch (``sarjepa``).

    Each rank draws its windows from its own generator, so with random masks the same image is
    masked differently in a 2-process run (weights then differ by ~6e-4); the windows are fixed
    here (tests/_ddp_fixed_masks.py) for both runs. Everything else is the product's own code.
    """
    import _ddp_fixed_masks

    data = tmp_path / "chips"
    write_chips(data, n=8, size=64)
    out = tmp_path / "ddp"
    opts = {"TRAIN.EPOCHS": 2, "TRAIN.WARMUP_EPOCHS": 1}
    common = ["--config", "sarjepa_tiny", "--data", str(data)]
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2"]
    cmd += ["--master_addr", "127.0.0.1", "--master_port", str(_free_port())]
    cmd += [_ddp_fixed_masks.__file__, "pretrain", *common, "--output", str(out)]
    cmd += tiny_opts(**opts, **{"TRAIN.BATCH_SIZE": 2})
    root = str(Path(__file__).resolve().parents[1])
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": root}
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=240, env=env)
    if proc.returncode != 0 and "gloo" in proc.stderr.lower() and "not" in proc.stderr.lower():
        pytest.skip(f"torch.distributed gloo unavailable here: {proc.stderr[-300:]}")
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-3000:]
    obj = torch.load(out / "checkpoint-1.pth", weights_only=True)
    assert obj["args"]["world_size"] == 2 and obj["args"]["effective_batch_size"] == 4
    assert len((out / "log.txt").read_text().splitlines()) == 2  # only rank 0 writes
    # torchrun exits 0 only when both ranks finished; rank 0 alone reports, with the checkpoint
    assert proc.stdout.count("done:") == 1
    assert f"checkpoint {out / 'checkpoint-1.pth'}" in proc.stdout
    rec = json.loads((out / "log.txt").read_text().splitlines()[0])
    assert rec["iters"] == 2  # 8 images / (2 per process x 2 processes)

    _ddp_fixed_masks.install(monkeypatch)
    weights = {}
    for name, extra in {
        "1x4": {"TRAIN.BATCH_SIZE": 4},
        "1x2_accum2": {"TRAIN.BATCH_SIZE": 2, "TRAIN.ACCUM_ITER": 2},
        "1x2": {"TRAIN.BATCH_SIZE": 2},  # effective batch 2: must differ
    }.items():
        argv = ["pretrain", *common, "--output", str(tmp_path / name), *tiny_opts(**opts, **extra)]
        assert main(argv) == 0
        capsys.readouterr()
        weights[name] = torch.load(tmp_path / name / "checkpoint-1.pth", weights_only=True)
    assert weights["1x2_accum2"]["args"]["effective_batch_size"] == 4
    ddp = obj["model"]
    assert _max_abs_diff(ddp, weights["1x4"]["model"]) < DDP_ATOL
    assert _max_abs_diff(ddp, weights["1x2_accum2"]["model"]) < DDP_ATOL
    assert _max_abs_diff(ddp, weights["1x2"]["model"]) > 10 * DDP_ATOL
