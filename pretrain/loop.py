"""The inner pretraining loop: lr per step, accumulation, AMP, finite-loss checks.

Recipe (the paper's and MAE's; the schedule functions are in :mod:`pretrain.schedules`): peak lr
= BLR * effective batch / 256; the lr is set at every optimiser step from the fractional epoch
``t = epoch + step / iters_per_epoch``: linear warm-up ``lr * t / WARMUP_EPOCHS``, then
half-cycle cosine to MIN_LR. After every optimiser step the method's
:meth:`~pretrain.methods.base.PretrainMethod.on_optimizer_step` hook runs with the fraction of
training done (I-JEPA's EMA target and schedules live there).
"""

from __future__ import annotations

import contextlib
import math
import time
from dataclasses import dataclass

import torch
from sarjepa.benchmark.core.errors import SarjepaError
from sarjepa.benchmark.core.runtime import stop_workers
from sarjepa.pretrain.distributed import DistInfo, all_reduce_mean
from sarjepa.pretrain.schedules import lr_at

SYNC_EVERY = 10  # optimiser steps between host syncs of the loss (finite check, progress bar)


def loader_error(exc: Exception) -> SarjepaError:
    """One line from an error raised inside a DataLoader worker (torch wraps the traceback)."""
    lines = [ln.strip() for ln in str(exc).splitlines() if ln.strip()]
    last = lines[-1] if lines else type(exc).__name__
    for prefix in ("sarjepa.benchmark.core.errors.SarjepaError:", "SarjepaError:"):
        if last.startswith(prefix):
            last = last[len(prefix) :].strip()
    return SarjepaError(last)


def next_batch(it):
    """``next(it)`` with worker-side ``SarjepaError``s turned back into one-line errors.

    A ``SarjepaError`` from a worker arrives as one already (its constructor keeps the original
    line and the worker's traceback); any other class that carries one in its text (torch falls
    back to ``RuntimeError`` when it cannot rebuild a class) is turned into one.
    """
    try:
        return next(it)
    except StopIteration:
        raise
    except Exception as exc:  # errors from workers arrive wrapped, with a traceback text
        stop_workers(it)  # now, not when the garbage collector frees the iterator (~5 s)
        if isinstance(exc, SarjepaError) or "SarjepaError" not in str(exc):
            raise
        raise loader_error(exc) from None


@dataclass
class EpochPlan:
    """What one epoch runs: ``iters`` micro-batches, ``accum`` per optimiser step.

    Attributes:
        epoch: 0-based epoch index.
        iters: micro-batches in this epoch.
        accum: micro-batches per optimiser step. A partial group at the epoch's end is dropped
            (upstream MAE's rule: every step sees ``accum`` micro-batches at its scheduled lr),
            unless the epoch holds fewer than ``accum`` micro-batches: then they form its one
            step.
        epochs: total epochs of the run (for the schedules).
        lr_peak: peak learning rate.
        min_lr: final learning rate of the cosine.
        warmup_epochs: linear warm-up length in epochs.
        clip_grad: max gradient norm (0 = off).
    """

    epoch: int
    iters: int
    accum: int
    epochs: int
    lr_peak: float
    min_lr: float
    warmup_epochs: float
    clip_grad: float

    @property
    def used_iters(self) -> int:
        """Micro-batches that take part: ``iters`` less the partial group at the end."""
        return self.iters - self.iters % self.accum if self.iters >= self.accum else self.iters

    @property
    def steps_per_epoch(self) -> int:
        """Optimiser steps per epoch: ``iters // accum`` (at least 1)."""
        return -(-self.used_iters // self.accum)


def _set_lr(optimizer, lr: float) -> None:
    for group in optimizer.param_groups:
        group["lr"] = lr * group.get("lr_scale", 1.0)


def _check_finite(pending: list[tuple[int, torch.Tensor]], epoch: int) -> list[float]:
    values = torch.stack([v for _, v in pending]).cpu().tolist()
    for (s, _), v in zip(pending, values):
        if not math.isfinite(v):
            raise SarjepaError(
                f"non-finite loss ({v}) at epoch {epoch} step {s}: run stopped, checkpoints on "
                "disk are untouched (try a lower TRAIN.BLR or TRAIN.CLIP_GRAD 1.0)"
            )
    return values


def train_one_epoch(
    model, method, loader, optimizer, plan: EpochPlan, info: DistInfo, amp, mask_gen, bar
) -> dict:
    """One epoch; returns ``{"loss", "lr", "img_per_s", "time_s", "iters"}``.

    Args:
        model: what is called (the method, maybe wrapped by DDP / compile).
        method: the unwrapped :class:`~pretrain.methods.base.PretrainMethod` (hooks).
        loader: DataLoader of (B, 1, H, W) image batches.
        optimizer: the optimiser; its lr is set here per optimiser step.
        plan: the epoch's sizes and schedules.
        info: this process's distributed info.
        amp: autocast dtype or None (fp32).
        mask_gen: the masking generator of this epoch.
        bar: a tqdm progress bar (may be disabled).
    """
    device, accum, iters = info.device, plan.accum, plan.iters
    model.train()
    optimizer.zero_grad(set_to_none=True)
    pending: list[tuple[int, torch.Tensor]] = []
    loss_sum, loss_n, lr, seen = 0.0, 0, 0.0, 0
    autocast = torch.autocast(device.type, dtype=amp) if amp else contextlib.nullcontext()
    total_steps, used = plan.epochs * plan.steps_per_epoch, plan.used_iters
    before_step = getattr(method, "before_optimizer_step", None)
    start, it = time.perf_counter(), iter(loader)
    for step in range(used):
        try:
            images = next_batch(it)
        except StopIteration:
            break
        group_start = step - step % accum
        group_end = min(group_start + accum, used)
        if step == group_start:
            t = plan.epoch + step / iters
            lr = lr_at(t, plan.lr_peak, plan.min_lr, plan.warmup_epochs, plan.epochs)
            _set_lr(optimizer, lr)
            if before_step is not None:  # a method's own schedules (I-JEPA)
                before_step(optimizer, plan, step)
                lr = optimizer.param_groups[0]["lr"] / optimizer.param_groups[0].get("lr_scale", 1)
        images = images.to(device, non_blocking=True)
        boundary = step + 1 == group_end
        no_sync = info.distributed and not boundary and hasattr(model, "no_sync")
        with model.no_sync() if no_sync else contextlib.nullcontext(), autocast:
            loss, _ = model(images, mask_gen)
        (loss / (group_end - group_start)).backward()
        pending.append((step, all_reduce_mean(loss.detach().float().clone(), info)))
        if boundary:
            if plan.clip_grad:
                torch.nn.utils.clip_grad_norm_(model.parameters(), plan.clip_grad)
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
            done = plan.epoch * plan.steps_per_epoch + step // accum + 1
            method.on_optimizer_step(done / total_steps)
        seen += images.shape[0] * info.world_size
        if len(pending) >= SYNC_EVERY * accum or step + 1 == used:
            try:
                values = _check_finite(pending, plan.epoch)
            finally:
                pending.clear()
            loss_sum, loss_n = loss_sum + sum(values), loss_n + len(values)
            rate = seen / max(time.perf_counter() - start, 1e-9)
            bar.set_postfix(loss=f"{values[-1]:.4f}", lr=f"{lr:.2e}", img_s=f"{rate:.1f}")
        bar.update(1)
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    elapsed = time.perf_counter() - start
    return {
        "loss": loss_sum / max(loss_n, 1),
        "lr": lr,
        "img_per_s": seen / max(elapsed, 1e-9),
        "time_s": elapsed,
        "iters": loss_n,
    }
