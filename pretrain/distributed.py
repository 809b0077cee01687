"""torch.distributed set-up for ``torchrun`` launches, and device / precision choices.

``torchrun --nproc_per_node N ... sarjepa pretrain ...`` sets ``RANK``, ``WORLD_SIZE``,
``LOCAL_RANK``, ``MASTER_ADDR`` and ``MASTER_PORT``; :func:`init_distributed` then joins the
process group (NCCL on CUDA, gloo on CPU) and pins each process to ``cuda:LOCAL_RANK``. Without
those variables (or with ``WORLD_SIZE=1``) everything runs in one process.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist

from benchmark.errors import SarjepaError


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


def resolve_device(pref: str, local_rank: int = 0) -> torch.device:
    """``"auto"``: ``cuda:LOCAL_RANK`` if CUDA is available, else CPU; ``"cuda"``: the local GPU."""
    pref = (pref or "auto").lower()
    if pref == "auto":
        pref = "cuda" if torch.cuda.is_available() else "cpu"
    if pref.startswith("cuda"):
        if not torch.cuda.is_available():
            raise SarjepaError(f"DEVICE '{pref}' requested but CUDA is not available")
        return torch.device(f"cuda:{local_rank}") if pref == "cuda" else torch.device(pref)
    if pref != "cpu":
        raise SarjepaError(f"DEVICE must be auto, cpu, cuda or cuda:N, got '{pref}'")
    return torch.device("cpu")


def resolve_amp(amp: str, device: torch.device) -> torch.dtype | None:
    """Autocast dtype: ``"auto"`` = bf16 on CUDA, none (fp32) on CPU; ``"bf16"``; ``"off"``."""
    if amp == "off" or (amp == "auto" and device.type != "cuda"):
        return None
    if amp in ("auto", "bf16"):
        return torch.bfloat16
    raise SarjepaError(f"TRAIN.AMP must be auto, bf16 or off, got '{amp}'")


def init_distributed(device_pref: str = "auto") -> DistInfo:
    """Join the process group if launched by torchrun; return this process's :class:`DistInfo`."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    device = resolve_device(device_pref, local_rank)
    if world <= 1:
        return DistInfo(0, 1, 0, device, False)
    if device.type == "cuda":
        torch.cuda.set_device(device)
    here = False
    if not dist.is_initialized():
        backend = "nccl" if device.type == "cuda" else "gloo"
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
