"""Learning-rate, weight-decay and momentum schedules, as pure functions of the step or epoch.

- :func:`peak_lr`, :func:`lr_at`: the MAE / SAR-JEPA recipe the engine applies to every method
  (peak = BLR x effective batch / 256; per optimiser step, from the fractional epoch: linear
  warm-up then half-cycle cosine; MAE's ``util/lr_sched.py``).
- :func:`warmup_cosine_lr`, :func:`cosine_weight_decay`, :func:`ema_momentum`: I-JEPA's
  ``WarmupCosineSchedule``, ``CosineWDSchedule`` and ``momentum_scheduler``
  (facebookresearch/ijepa ``src/utils/schedulers.py``, ``src/train.py``), per 1-based optimiser
  step, which that method applies through its ``before_optimizer_step`` hook; :class:`StepSchedules`
  evaluates the three at once.
"""

from __future__ import annotations

import math
from dataclasses import dataclass


def peak_lr(
    blr: float, batch_size: int, accum_iter: int, world_size: int, lr: float = 0.0
) -> float:
    """``lr`` if non-zero, else ``blr * batch_size * accum_iter * world_size / 256``."""
    return float(lr) if lr else blr * batch_size * accum_iter * world_size / 256.0


def lr_at(t: float, peak: float, min_lr: float, warmup_epochs: float, epochs: float) -> float:
    """Learning rate at fractional epoch ``t``: linear warm-up, then half-cycle cosine.

    ``t < warmup``: ``peak * t / warmup``; else
    ``min_lr + (peak - min_lr) * 0.5 * (1 + cos(pi * (t - warmup) / (epochs - warmup)))``.
    """
    if t < warmup_epochs:
        return peak * t / warmup_epochs
    span = max(epochs - warmup_epochs, 1e-12)
    return min_lr + (peak - min_lr) * 0.5 * (1.0 + math.cos(math.pi * (t - warmup_epochs) / span))


def warmup_cosine_lr(
    step: int, warmup_steps: int, total_steps: int, start_lr: float, ref_lr: float, final_lr: float
) -> float:
    """Upstream ``WarmupCosineSchedule`` after ``step`` calls (optimiser step ``step``, from 1).

    Args:
        step: 1-based optimiser step.
        warmup_steps: ``int(warmup_epochs x steps_per_epoch)``.
        total_steps: ``int(ipe_scale x epochs x steps_per_epoch)`` (upstream ``T_max``).
        start_lr, ref_lr, final_lr: lr at step 0, the peak, and the floor of the cosine.
    """
    if step < warmup_steps:
        return start_lr + step / max(1, warmup_steps) * (ref_lr - start_lr)
    progress = (step - warmup_steps) / max(1, total_steps - warmup_steps)
    return max(
        final_lr, final_lr + (ref_lr - final_lr) * 0.5 * (1.0 + math.cos(math.pi * progress))
    )


def cosine_weight_decay(step: int, total_steps: int, ref_wd: float, final_wd: float) -> float:
    """Upstream ``CosineWDSchedule`` at 1-based optimiser ``step``: a half cosine from ``ref_wd``
    to ``final_wd`` over ``total_steps``, never past ``final_wd``."""
    progress = step / total_steps
    wd = final_wd + (ref_wd - final_wd) * 0.5 * (1.0 + math.cos(math.pi * progress))
    return max(final_wd, wd) if final_wd <= ref_wd else min(final_wd, wd)


def ema_momentum(step: int, span: float, ema: tuple[float, float]) -> float:
    """Upstream ``momentum_scheduler``'s value for 1-based optimiser ``step``:
    ``ema0 + (step - 1) (ema1 - ema0) / span``, ``span = steps_per_epoch x epochs x ipe_scale``."""
    return ema[0] + (step - 1) * (ema[1] - ema[0]) / span


@dataclass(frozen=True)
class StepSchedules:
    """I-JEPA's three schedulers, evaluated together at one optimiser step.

    Attributes:
        start_lr: lr at the start of the warm-up.
        weight_decay, final_weight_decay: ends of the weight-decay cosine (final < 0: constant).
        ema: target momentum at the first and the last step.
        ipe_scale: the schedules span ``ipe_scale`` x the run's optimiser steps.
    """

    start_lr: float
    weight_decay: float
    final_weight_decay: float
    ema: tuple[float, float]
    ipe_scale: float

    def at(
        self, step: int, steps_per_epoch: int, epochs: int, warmup_epochs: float, peak: float,
        min_lr: float,
    ) -> tuple[float, float, float]:  # fmt: skip
        """``(lr, weight decay, EMA momentum)`` at 1-based optimiser ``step`` of a run of
        ``steps_per_epoch`` x ``epochs`` steps (upstream's ``T_max``, warm-up and momentum span,
        computed with upstream's rounding)."""
        total = int(self.ipe_scale * epochs * steps_per_epoch)
        warmup = int(warmup_epochs * steps_per_epoch)
        lr = warmup_cosine_lr(step, warmup, total, self.start_lr, peak, min_lr)
        wd = self.weight_decay
        if self.final_weight_decay >= 0:
            wd = cosine_weight_decay(step, total, self.weight_decay, self.final_weight_decay)
        momentum = ema_momentum(step, steps_per_epoch * epochs * self.ipe_scale, self.ema)
        return lr, wd, momentum
