"""A checkpoint is resolved once (path, format, weights key, sha256) and passed down so."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
import torch
from _bench_run_helpers import grid_overrides, make_easy_mstar, save_sarjepa, tiny_vit
from sarjepa.benchmark.core.errors import SarjepaError
from sarjepa.benchmark.core.provenance import file_sha256
from sarjepa.benchmark.grid import GridSpec, plan_grid, run_grid
from sarjepa.pretrain import weights as weights_mod
from sarjepa.pretrain.checkpoint_ref import CheckpointRef, resolve_checkpoint

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def data_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_easy_mstar(tmp_path_factory.mktemp("data"), n_train=6, n_test=2)


def _spec(root: Path, methods: dict[str, str], **kw) -> GridSpec:
    base = dict(
        methods=methods, datasets=["MSTAR_SOC"], root=str(root), shots=[2], seeds=[0, 1],
        protocols=["linear"], trainer_config="vit_b16",
        overrides=grid_overrides(**{"OPTIM.MAX_EPOCH": 1}),
    )  # fmt: skip
    base.update(kw)
    return GridSpec(**base)


def test_resolve_reads_format_key_and_digest(tmp_path: Path):
    path = save_sarjepa(tiny_vit(seed=1), tmp_path / "checkpoint-3.pth")
    ref = resolve_checkpoint(path, "")
    assert ref.path == str(path) and ref.format == "sarjepa" and ref.weights_key == ""
    assert ref.sha256 == file_sha256(path)
    with pytest.raises(SarjepaError, match="MODEL.WEIGHTS_KEY 'nope'") as err:
        resolve_checkpoint(path, "nope")
    assert str(path) in str(err.value) and "\n" not in str(err.value)


def test_a_replaced_checkpoint_is_refused_at_load(tmp_path: Path):
    path = tmp_path / "enc.pth"
    torch.save({"state_dict": tiny_vit(seed=1).state_dict()}, path)
    ref = resolve_checkpoint(path)
    torch.save({"state_dict": tiny_vit(seed=2).state_dict()}, path)
    st = path.stat()
    os.utime(path, ns=(st.st_atime_ns, ref.mtime_ns + 10**9))  # also on coarse-mtime file systems
    with pytest.raises(SarjepaError, match=r"enc\.pth' changed since it was checked") as err:
        weights_mod.load_encoder(ref, log=lambda _: None)
    assert "\n" not in str(err.value)
    path.unlink()
    with pytest.raises(SarjepaError, match=r"enc\.pth' does not exist"):
        weights_mod.load_encoder(ref, log=lambda _: None)


def test_grid_checks_each_checkpoint_once_and_records_its_digest(
    tmp_path: Path, data_root: Path, monkeypatch: pytest.MonkeyPatch
):
    path = tmp_path / "enc.pth"
    torch.save({"state_dict": tiny_vit(seed=3).state_dict()}, path)
    checks, reads, hashes = [], [], []
    check, read = weights_mod.check_checkpoint, weights_mod.read_checkpoint
    monkeypatch.setattr(weights_mod, "check_checkpoint", lambda *a: checks.append(a) or check(*a))
    monkeypatch.setattr(
        weights_mod, "read_checkpoint", lambda *a, **k: reads.append(k) or read(*a, **k)
    )
    import sarjepa.benchmark.core.provenance as prov

    sha = prov.file_sha256
    monkeypatch.setattr(prov, "file_sha256", lambda p, *a: hashes.append(p) or sha(p, *a))
    weights_mod._SELECTED.clear()
    prov._SHA_MEMO.clear()
    counts = run_grid(_spec(data_root, {"enc": str(path)}), tmp_path / "run", log=lambda _: None)
    assert counts["done"] == 2
    assert len(checks) == 1  # once for the grid, not per cell
    assert len(hashes) == 1
    assert [k.get("mmap", False) for k in reads] == [True, False]  # the check, then one load
    for res in (tmp_path / "run").glob("output/**/result.json"):
        prov_ = json.loads(res.read_text())["provenance"]
        assert prov_["checkpoint_sha256"] == file_sha256(path)
        assert prov_["checkpoint"] == str(path)


def test_grid_takes_the_weights_key_from_each_cells_config(tmp_path: Path, data_root: Path):
    path = save_sarjepa(tiny_vit(seed=1), tmp_path / "checkpoint-3.pth")
    spec = _spec(
        data_root, {"ours": str(path)}, protocols=["linear", "finetune"],
        protocol_overrides={"finetune": ["MODEL.WEIGHTS_KEY", "nope"]},
    )  # fmt: skip
    with pytest.raises(SarjepaError, match=r"method 'ours': .*MODEL.WEIGHTS_KEY 'nope'"):
        plan_grid(spec)
    plan = plan_grid(_spec(data_root, {"ours": str(path), "random": "none"}))
    refs = {c.method: r for c, r in plan.checkpoints.items()}
    assert refs["random"] is None
    assert isinstance(refs["ours"], CheckpointRef) and refs["ours"].format == "sarjepa"
