"""torch.distributed set-up for ``torchrun`` launches, and device / precision choices.

``torchrun --nproc_per_node N ... sarjepa pretrain ...`` sets ``RANK``, ``WORLD_SIZE``,
``LOCAL_RANK``, ``MASTER_ADDR`` and ``MASTER_PORT``; :func:`init_distributed` then joins the
process group and pins each process to one GPU, ``cuda:(LOCAL_RANK mod #GPUs)``. Without those
variables (or with ``WORLD_SIZE=1``) everything runs in one process.

Backend: NCCL when every local process has a GPU of its own; gloo on the CPU and when more
processes than GPUs share a machine (NCCL refuses two ranks on one GPU; gloo all-reduces CUDA
tensors through the host, which is slower but lets ``--nproc_per_node 2`` run on one GPU, e.g. to
check a DDP set-up). ``$SARJEPA_DIST_BACKEND`` (``nccl`` / ``gloo``) overrides the choice.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist
from sarjepa.benchmark.core.errors import SarjepaError
from sarjepa.benchmark.core.runtime import resolve_device

DIST_BACKENDS = ("nccl", "gloo")


@dataclass
class DistInfo:
    """Where this process sits: rank, world size, local rank and its device."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    device: torch.device = torch.device("cpu")
    initialized_here: bool = False

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1


def choose_backend(
    device: torch.device, local_world: int, n_gpus: int, pinned: bool = False
) -> str:
    """The process-group backend for ``local_world`` processes per machine on ``device``.

    Args:
        device: this process's device.
        local_world: processes on this machine (torchrun's ``LOCAL_WORLD_SIZE``).
        n_gpus: GPUs visible on this machine.
        pinned: the config names one GPU (``cuda:N``) for every process.

    Returns:
        ``$SARJEPA_DIST_BACKEND`` when set; else ``"nccl"`` on CUDA with a GPU per process and
        ``"gloo"`` otherwise (CPU, or processes sharing GPUs).

    Raises:
        SarjepaError: ``$SARJEPA_DIST_BACKEND`` names no backend, or asks NCCL for shared GPUs.
    """
    shared = device.type == "cuda" and (local_world > n_gpus or (pinned and local_world > 1))
    forced = os.environ.get("SARJEPA_DIST_BACKEND", "").strip().lower()
    if forced:
        if forced not in DIST_BACKENDS:
            raise SarjepaError(
                f"$SARJEPA_DIST_BACKEND '{forced}' is not a backend ({', '.join(DIST_BACKENDS)})"
            )
        if forced == "nccl" and (device.type != "cuda" or shared):
            where = "on the CPU" if device.type != "cuda" else "processes that share a GPU"
            raise SarjepaError(f"$SARJEPA_DIST_BACKEND 'nccl' cannot run {where}; use gloo")
        return forced
    return "nccl" if device.type == "cuda" and not shared else "gloo"


def init_distributed(device_pref: str = "auto") -> DistInfo:
    """Join the process group if launched by torchrun; return this process's :class:`DistInfo`.

    With more processes than GPUs on a machine, process ``LOCAL_RANK`` uses GPU ``LOCAL_RANK mod
    #GPUs`` and the group runs on gloo (see :func:`choose_backend`), with a one-line notice.
    """
    world = int(os.environ.get("WORLD_SIZE", "1"))
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    local_world = int(os.environ.get("LOCAL_WORLD_SIZE", str(world)))
    n_gpus = torch.cuda.device_count() if torch.cuda.is_available() else 0
    gpu_slot = local_rank % n_gpus if n_gpus else local_rank
    device = resolve_device(device_pref, "DEVICE", gpu_slot)
    if world <= 1:
        return DistInfo(0, 1, 0, device, False)
    if device.type == "cuda":
        torch.cuda.set_device(device)
    here = False
    if not dist.is_initialized():
        pinned = ":" in str(device_pref or "")
        backend = choose_backend(device, local_world, n_gpus, pinned)
        if backend == "gloo" and device.type == "cuda" and local_rank == 0:
            print(
                f"sarjepa: {local_world} processes share GPUs ({n_gpus} visible); "
                "DDP runs on gloo (NCCL needs a GPU per process)",
                flush=True,
            )
        dist.init_process_group(backend=backend, init_method="env://")
        here = True
    return DistInfo(dist.get_rank(), dist.get_world_size(), local_rank, device, here)


def cleanup(info: DistInfo) -> None:
    """Leave the process group if :func:`init_distributed` joined it."""
    if info.initialized_here and dist.is_initialized():
        dist.destroy_process_group()


def all_reduce_mean(t: torch.Tensor, info: DistInfo) -> torch.Tensor:
    """Mean of ``t`` over ranks (in place; a no-op in one process)."""
    if info.distributed:
        dist.all_reduce(t, op=dist.ReduceOp.SUM)
        t /= info.world_size
    return t
