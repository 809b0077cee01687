"""Process-group set-up: which backend, which GPU, when processes outnumber GPUs."""

from __future__ import annotations

import pytest
import torch
from sarjepa.benchmark.core.errors import SarjepaError
from sarjepa.pretrain import distributed
from sarjepa.pretrain.distributed import choose_backend

CUDA0 = torch.device("cuda", 0)
CPU = torch.device("cpu")


@pytest.mark.parametrize(
    ("device", "local_world", "n_gpus", "pinned", "want"),
    [
        (CUDA0, 2, 2, False, "nccl"),  # a GPU per process
        (CUDA0, 8, 8, False, "nccl"),
        (CUDA0, 2, 1, False, "gloo"),  # two processes on one GPU: NCCL would refuse
        (CUDA0, 4, 2, False, "gloo"),
        (CUDA0, 2, 4, True, "gloo"),  # DEVICE cuda:0 pins every process to one GPU
        (CUDA0, 1, 1, True, "nccl"),
        (CPU, 2, 0, False, "gloo"),
        (CPU, 2, 4, False, "gloo"),
    ],
)
def test_backend_choice(monkeypatch, device, local_world, n_gpus, pinned, want):
    monkeypatch.delenv("SARJEPA_DIST_BACKEND", raising=False)
    assert choose_backend(device, local_world, n_gpus, pinned) == want


def test_backend_override_and_its_errors(monkeypatch):
    monkeypatch.setenv("SARJEPA_DIST_BACKEND", "GLOO")
    assert choose_backend(CUDA0, 2, 2) == "gloo"
    monkeypatch.setenv("SARJEPA_DIST_BACKEND", "mpi")
    with pytest.raises(SarjepaError, match=r"SARJEPA_DIST_BACKEND 'mpi'.*nccl, gloo"):
        choose_backend(CUDA0, 2, 2)
    monkeypatch.setenv("SARJEPA_DIST_BACKEND", "nccl")
    with pytest.raises(SarjepaError, match="share a GPU"):
        choose_backend(CUDA0, 2, 1)
    with pytest.raises(SarjepaError, match="on the CPU"):
        choose_backend(CPU, 2, 0)


class _FakeGroup:
    """Stands in for torch.distributed and a 1-GPU CUDA runtime; records what init asked for."""

    def __init__(self, monkeypatch, n_gpus: int):
        self.backend = None
        self.set_device = None
        monkeypatch.setattr(torch.cuda, "is_available", lambda: n_gpus > 0)
        monkeypatch.setattr(torch.cuda, "device_count", lambda: n_gpus)
        monkeypatch.setattr(torch.cuda, "set_device", self._set_device)
        monkeypatch.setattr(distributed.dist, "is_initialized", lambda: False)
        monkeypatch.setattr(distributed.dist, "init_process_group", self._init)
        monkeypatch.setattr(distributed.dist, "get_rank", lambda: 1)
        monkeypatch.setattr(distributed.dist, "get_world_size", lambda: 2)

    def _set_device(self, device):
        self.set_device = torch.device(device)

    def _init(self, backend, init_method):
        self.backend = backend


@pytest.mark.parametrize(
    ("n_gpus", "pref", "want_device", "want_backend"),
    [
        (1, "cuda", CUDA0, "gloo"),  # rank 1 of 2 shares GPU 0 with rank 0
        (1, "auto", CUDA0, "gloo"),
        (2, "cuda", torch.device("cuda", 1), "nccl"),  # its own GPU
        (2, "cuda:0", CUDA0, "gloo"),  # both pinned to GPU 0
        (0, "auto", CPU, "gloo"),
    ],
)
def test_second_local_process_gets_a_gpu_and_a_backend_that_can_run(
    monkeypatch, n_gpus, pref, want_device, want_backend
):
    monkeypatch.delenv("SARJEPA_DIST_BACKEND", raising=False)
    for key, value in {"WORLD_SIZE": "2", "LOCAL_RANK": "1", "LOCAL_WORLD_SIZE": "2"}.items():
        monkeypatch.setenv(key, value)
    fake = _FakeGroup(monkeypatch, n_gpus)
    info = distributed.init_distributed(pref)
    assert (info.rank, info.world_size, info.local_rank) == (1, 2, 1)
    assert info.device == want_device
    assert fake.backend == want_backend
    assert fake.set_device == (want_device if want_device.type == "cuda" else None)
    assert info.initialized_here


def test_shared_gpu_notice_is_printed_once_by_local_rank_0(monkeypatch, capsys):
    monkeypatch.delenv("SARJEPA_DIST_BACKEND", raising=False)
    for key, value in {"WORLD_SIZE": "2", "LOCAL_RANK": "0", "LOCAL_WORLD_SIZE": "2"}.items():
        monkeypatch.setenv(key, value)
    _FakeGroup(monkeypatch, 1)
    distributed.init_distributed("cuda")
    assert "2 processes share GPUs (1 visible); DDP runs on gloo" in capsys.readouterr().out
