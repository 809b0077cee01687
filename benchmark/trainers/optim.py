"""Optimiser and per-epoch learning rates with Dassl's semantics (``OPTIM.*`` keys).

Dassl builds the base scheduler (``cosine``: ``CosineAnnealingLR(T_max=MAX_EPOCH)``,
``single_step``: ``StepLR``, ``multi_step``: ``MultiStepLR``) and, when ``WARMUP_EPOCH > 0``, wraps
it in a warm-up scheduler; the trainer steps it once per epoch, after the epoch's last batch.
The resulting rate used during epoch ``e`` (0-based) is, for the authors' settings (cosine,
``MAX_EPOCH`` 40, constant warm-up of ``WARMUP_EPOCH`` 2 at ``WARMUP_CONS_LR`` 1e-5, LR 1e-3)::

    lr(e) = 1e-5                                    for e < 2
    lr(e) = 0.5 * 1e-3 * (1 + cos(pi * (e - 2) / 40))   for e >= 2

i.e. the cosine restarts from its first value after the warm-up (``WARMUP_RECOUNT`` True) and
only reaches ``t = 37`` of its 40 steps by the last epoch. :func:`lr_per_epoch` reproduces the
wrapper and torch's chainable scheduler formulas step by step, so the values equal Dassl's to the
last bit (they differ from the closed form above by about 1e-19).
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import Any

import torch
from sarjepa.benchmark.core.errors import SarjepaError, unknown

SCHEDULERS = ("cosine", "single_step", "multi_step")
WARMUPS = ("constant", "linear")
OPTIMIZERS = ("adamw", "adam", "sgd")


def _successor_step(name: str, t: int, lr: float, base: float, o: Any) -> float:
    """torch's chainable ``get_lr`` at the new ``last_epoch = t`` from the group's current lr."""
    if name == "cosine":
        tmax = float(o.MAX_EPOCH)
        if t == 0:
            return base
        if (t - 1 - tmax) % (2 * tmax) == 0:
            return lr + base * (1 - math.cos(math.pi / tmax)) / 2
        return (1 + math.cos(math.pi * t / tmax)) / (1 + math.cos(math.pi * (t - 1) / tmax)) * lr
    if name == "single_step":
        step = o.STEPSIZE[-1] if isinstance(o.STEPSIZE, (list, tuple)) else o.STEPSIZE
        step = int(step) if int(step) > 0 else int(o.MAX_EPOCH)
        return lr * o.GAMMA if t > 0 and t % step == 0 else lr
    milestones = list(o.STEPSIZE)
    return lr * o.GAMMA ** milestones.count(t)


def lr_per_epoch(optim_cfg: Any, epochs: int | None = None) -> list[float]:
    """Learning rate used during each epoch, as Dassl's scheduler sets it.

    Args:
        optim_cfg: the ``OPTIM`` config node (``LR``, ``MAX_EPOCH``, ``LR_SCHEDULER``,
            ``STEPSIZE``, ``GAMMA``, ``WARMUP_EPOCH``, ``WARMUP_TYPE``, ``WARMUP_CONS_LR``,
            ``WARMUP_MIN_LR``, ``WARMUP_RECOUNT``).
        epochs: how many epochs to list (default ``MAX_EPOCH``).

    Returns:
        ``epochs`` floats; entry ``e`` is the rate of every iteration of epoch ``e``.
    """
    o = optim_cfg
    name = str(o.LR_SCHEDULER)
    if name not in SCHEDULERS:
        raise unknown("OPTIM.LR_SCHEDULER", name, SCHEDULERS)
    base = float(o.LR)
    warm = int(o.WARMUP_EPOCH)
    wtype = str(o.WARMUP_TYPE)
    if warm > 0 and wtype not in WARMUPS:
        raise unknown("OPTIM.WARMUP_TYPE", wtype, WARMUPS)
    n = int(o.MAX_EPOCH) if epochs is None else int(epochs)
    # the successor scheduler after its own initial step
    s_epoch, lr, s_last = 0, base, base
    if warm > 0 and not bool(o.get("WARMUP_RECOUNT", True)):
        s_epoch = warm

    def warm_lr(w: int) -> float:
        if w >= warm:
            return s_last
        if wtype == "constant":
            return float(o.WARMUP_CONS_LR)
        return float(o.WARMUP_MIN_LR) if w == 0 else base * w / warm

    w_epoch = 0
    if warm > 0:
        lr = warm_lr(0)  # the wrapper's initial step
    out = []
    for _ in range(n):
        out.append(lr)
        if warm > 0 and w_epoch < warm:
            w_epoch += 1
            lr = warm_lr(w_epoch)
        else:
            s_epoch += 1
            lr = _successor_step(name, s_epoch, lr, base, o)
            s_last = lr
    return out


def build_optimizer(params: Iterable[torch.nn.Parameter], optim_cfg: Any) -> torch.optim.Optimizer:
    """Dassl's optimiser on ``params`` (all in one group, weight decay on every tensor).

    ``adamw``: AdamW(lr, weight_decay, betas=(ADAM_BETA1, ADAM_BETA2)); ``adam``: Adam with
    ``eps=1e-4`` as in the authors' patched Dassl; ``sgd``: SGD with momentum, dampening and
    Nesterov from the config. Adam(W) uses torch's fused kernel when every parameter is on a
    CUDA device (one launch per step instead of several per tensor; same update up to rounding),
    its default for-each kernel elsewhere.
    """
    o = optim_cfg
    name = str(o.NAME).lower()
    params = [p for p in params if p.requires_grad]
    if not params:
        raise SarjepaError("the trainer has no trainable parameters")
    lr, wd = float(o.LR), float(o.WEIGHT_DECAY)
    betas = (float(o.ADAM_BETA1), float(o.ADAM_BETA2))
    fused = {"fused": True} if all(p.is_cuda for p in params) else {}
    if name == "adamw":
        return torch.optim.AdamW(params, lr=lr, weight_decay=wd, betas=betas, **fused)
    if name == "adam":
        return torch.optim.Adam(params, lr=lr, eps=1e-4, weight_decay=wd, betas=betas, **fused)
    if name == "sgd":
        return torch.optim.SGD(
            params,
            lr=lr,
            momentum=float(o.MOMENTUM),
            weight_decay=wd,
            dampening=float(o.SGD_DAMPNING),
            nesterov=bool(o.SGD_NESTEROV),
        )
    raise unknown("OPTIM.NAME", name, OPTIMIZERS)


def set_lr(optimizer: torch.optim.Optimizer, lr: float) -> None:
    """Set the rate of every parameter group."""
    for group in optimizer.param_groups:
        group["lr"] = lr
