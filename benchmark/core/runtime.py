"""The one device / numeric-mode / seeding choice, shared by pretraining and the benchmark.

- Device names: ``auto`` (CUDA when available, else CPU), ``cpu``, ``cuda``, ``cuda:N``. Under
  torchrun ``cuda`` / ``auto`` mean this process's ``cuda:LOCAL_RANK``.
- Numeric modes: ``auto`` (bf16 autocast on CUDA, fp32 on CPU), ``bf16``, ``off`` (fp32). There is
  no fp16 mode (no loss scaling anywhere).
- DataLoaders are iterated through :func:`iterate`, which stops their worker processes as soon as
  an error (an unreadable image in a worker) passes through.
"""

from __future__ import annotations

import contextlib
import random
from collections.abc import Iterable, Iterator
from typing import TypeVar

import numpy as np
import torch
from sarjepa.benchmark.core.errors import SarjepaError, unknown

AMP_MODES = ("auto", "bf16", "off")
T = TypeVar("T")
_M1, _M2, _M3 = 0x9E3779B97F4A7C15, 0xBF58476D1CE4E5B9, 0x94D049BB133111EB


def resolve_device(
    name: str | None, key: str = "DEVICE", local_rank: int = 0, allow_cuda: bool = True
) -> torch.device:
    """Turn a device name into a :class:`torch.device`, checking that it exists here.

    Args:
        name: ``auto``, ``cpu``, ``cuda`` or ``cuda:N`` (None / "" = ``auto``).
        key: config key or option named in errors.
        local_rank: GPU used for ``cuda`` / ``auto`` (torchrun's ``LOCAL_RANK``).
        allow_cuda: False makes ``auto`` choose the CPU (Dassl's ``USE_CUDA False``).

    Raises:
        SarjepaError: the name is not a device, or names a GPU this machine lacks.
    """
    name = str(name or "auto").strip().lower()
    if name == "auto":
        if not (allow_cuda and torch.cuda.is_available()):
            return torch.device("cpu")
        name = "cuda"
    try:
        dev = torch.device(name)
    except RuntimeError:
        raise SarjepaError(f"{key} '{name}' is not a device (auto, cpu, cuda, cuda:N)") from None
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            raise SarjepaError(f"{key} '{name}': CUDA is not available on this machine")
        if dev.index is None:
            dev = torch.device("cuda", local_rank)
        if dev.index >= torch.cuda.device_count():
            raise SarjepaError(f"{key} '{name}': only {torch.cuda.device_count()} GPU(s)")
    elif dev.type != "cpu":
        raise SarjepaError(f"{key} '{name}' is not supported (auto, cpu, cuda, cuda:N)")
    return dev


def resolve_amp(mode: str | None, device: torch.device, key: str = "AMP") -> str:
    """``auto`` / ``bf16`` / ``off`` -> ``"bf16"`` or ``"off"`` for ``device``."""
    mode = str(mode or "auto").strip().lower()
    if mode not in AMP_MODES:
        raise unknown(f"{key} mode", mode, AMP_MODES)
    if mode == "auto":
        return "bf16" if device.type == "cuda" else "off"
    return mode


def amp_dtype(amp: str) -> torch.dtype | None:
    """``"bf16"`` -> ``torch.bfloat16``; ``"off"`` -> None."""
    return torch.bfloat16 if amp == "bf16" else None


def autocast(device: torch.device, amp: str) -> contextlib.AbstractContextManager:
    """bf16 autocast on ``device`` when ``amp == "bf16"``, else a no-op context."""
    if amp == "bf16":
        return torch.autocast(device_type=device.type, dtype=torch.bfloat16)
    return contextlib.nullcontext()


def seed_everything(seed: int) -> None:
    """Seed Python's ``random``, NumPy and torch (CPU and all GPUs) with ``seed``."""
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def mix_seed(*parts: int) -> int:
    """Combine integers into one 63-bit seed (deterministic, order-sensitive; splitmix64 rounds)."""
    h = 0x2545F4914F6CDD1D
    for p in parts:
        h = (h ^ (int(p) & 0xFFFFFFFFFFFFFFFF)) * _M1 & 0xFFFFFFFFFFFFFFFF
        h = (h ^ (h >> 31)) * _M2 & 0xFFFFFFFFFFFFFFFF
        h = (h ^ (h >> 29)) * _M3 & 0xFFFFFFFFFFFFFFFF
    return h & 0x7FFFFFFFFFFFFFFF


def stop_workers(iterator: object) -> None:
    """Stop the worker processes of a DataLoader iterator now (anything else: nothing).

    Left to the garbage collector (an iterator held by an exception's traceback is freed when the
    cycle is collected, often much later), torch's shutdown waits about 5 s per worker.
    """
    shutdown = getattr(iterator, "_shutdown_workers", None)
    if callable(shutdown):
        shutdown()


def iterate(loader: Iterable[T]) -> Iterator[T]:
    """Iterate ``loader``; if an error is raised (e.g. by a worker), stop its workers first.

    A normal end is left to torch (persistent workers stay up for the next epoch).
    """
    it = iter(loader)
    try:
        yield from it
    except Exception:
        stop_workers(it)
        raise
