"""Timing one step: the settings of a bench run, the row types, and the timing loop.

Every measurement times one *step* repeatedly (``warmup`` untimed, then ``iters`` timed, each
between two device synchronisations) and reports the median as images per second.
"""

from __future__ import annotations

import contextlib
import gc
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import torch

NUM_CLASSES = 10


@dataclass
class Timing:
    """One variant of one measurement: median step time, throughput, peak memory or an error."""

    img_s: float | None = None
    median_ms: float | None = None
    peak_mb: float | None = None
    error: str = ""


@dataclass
class Result:
    """One table row: ``ours`` against ``ref`` (None where there is no reference)."""

    what: str
    batch: int
    ours: Timing
    ref: Timing | None = None
    note: str = ""
    extra: dict = field(default_factory=dict)

    @property
    def ratio(self) -> float | None:
        if self.ref is None or not self.ours.img_s or not self.ref.img_s:
            return None
        return self.ours.img_s / self.ref.img_s


@dataclass
class Settings:
    """What to run: encoder size, device, precision of ours, batch sizes and iteration counts."""

    arch: str = "base"
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))
    img_size: int = 224
    warmup: int = 5
    iters: int = 20
    train_batch: int = 50
    eval_batches: tuple[int, ...] = (50, 256)
    pretrain_batch: int = 75
    gf_batch: int = 75
    compile: bool = False
    amp_mode: str = "auto"  # ours: "auto" (bf16 on CUDA, fp32 on CPU) | "bf16" | "off"
    attn: str = "sdpa"  # ours: a pretrain.models.attention implementation
    attn_variants: tuple[str, ...] = ("sdpa", "aligned", "triton", "math")  # `attention` rows
    # SDPA backends forced one at a time for the sdpa / aligned rows (None: the CUDA default,
    # efficient and cuDNN, the two that take an additive bias; none on a CPU)
    sdpa_backends: tuple[str, ...] | None = None

    def backends(self) -> tuple[str, ...]:
        """The SDPA backends the `attention` measurement forces in turn."""
        if self.sdpa_backends is not None:
            return self.sdpa_backends
        return ("efficient", "cudnn") if self.device.type == "cuda" else ()

    grid: object | None = None  # `grid` rows: a GridBenchOptions (None: the device's defaults)

    @property
    def amp(self) -> torch.dtype | None:
        """Our autocast dtype (None = fp32); the reference is always fp32."""
        if self.amp_mode == "bf16" or (self.amp_mode == "auto" and self.device.type == "cuda"):
            return torch.bfloat16
        return None


def sync(device: torch.device) -> None:
    """Wait for ``device``'s queued work (a no-op off CUDA)."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def free(device: torch.device) -> None:
    """Collect garbage and release ``device``'s cached memory before the next variant."""
    gc.collect()
    if device.type == "cuda":
        torch.cuda.empty_cache()


def one_line(exc: BaseException) -> str:
    """``Type: first line`` of ``exc``, at most 120 characters (a table cell)."""
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0] if text else ''}"[:120]


def time_variant(
    setup: Callable[[], Callable[[], object]], batch: int, s: Settings, warmup: int | None = None
) -> Timing:
    """Build a step with ``setup()``, run it ``warmup`` + ``s.iters`` times; errors are returned.

    The peak memory (CUDA) counts from just before ``setup`` (model, optimiser state, warm-up).
    """
    dev = s.device
    free(dev)
    if dev.type == "cuda":
        torch.cuda.reset_peak_memory_stats(dev)
    try:
        step = setup()
        for _ in range(s.warmup if warmup is None else warmup):
            step()
        times = []
        for _ in range(s.iters):
            sync(dev)
            t0 = time.perf_counter()
            step()
            sync(dev)
            times.append(time.perf_counter() - t0)
    except Exception as exc:  # OOM, missing kernels, ...: report and carry on
        msg = one_line(exc)
        del exc
        step = None
        free(dev)
        return Timing(error=msg)
    med = statistics.median(times)
    peak = torch.cuda.max_memory_allocated(dev) / 2**20 if dev.type == "cuda" else None
    del step
    free(dev)
    return Timing(img_s=batch / med, median_ms=med * 1e3, peak_mb=peak)


def autocast(s: Settings, enabled: bool):
    """``s.amp`` autocast on ``s.device`` when ``enabled`` (ours), else no autocast."""
    if enabled and s.amp is not None:
        return torch.autocast(s.device.type, dtype=s.amp)
    return contextlib.nullcontext()
