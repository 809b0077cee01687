"""The pretraining loop: optimiser, lr schedule, accumulation, AMP, DDP, checkpoints, resume, logs.

Recipe (the paper's, MAE's): AdamW betas (0.9, 0.95), weight decay 0.05 except biases, 1-d
parameters and tokens; peak lr = BLR * effective batch / 256 with effective batch = batch per
process x ACCUM_ITER x world size; the lr is set at every optimiser step from the fractional epoch
``t = epoch + step / iters_per_epoch``: linear warm-up ``lr * t / WARMUP_EPOCHS``, then half-cycle
cosine to MIN_LR. bf16 autocast on CUDA, fp32 on CPU.

Reproducibility and resume: model init is seeded by SEED; at the start of every epoch the torch,
numpy and Python RNGs and the masking generator are re-seeded from (SEED, epoch, rank), the
sampler shuffles with (SEED, epoch) and each sample's augmentation is seeded by (SEED, epoch,
index) (see :mod:`pretrain.data`). Checkpoints are written at epoch ends, so resuming from
``checkpoint-<e>.pth`` (weights + optimiser state) reproduces the uninterrupted run exactly, with
any number of DataLoader workers. A non-finite loss stops the run before anything is saved.
"""

from __future__ import annotations

import contextlib
import json
import math
import random
import sys
import time
from pathlib import Path

import numpy as np
import torch

from benchmark.errors import SarjepaError
from pretrain import checkpoints as ck
from pretrain.data import build_pretrain_dataset, mix_seed, seed_worker
from pretrain.distributed import DistInfo, all_reduce_mean, cleanup, init_distributed, resolve_amp

SYNC_EVERY = 10  # optimiser steps between host syncs of the loss (finite check, progress bar)


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


def param_groups(
    model: torch.nn.Module, weight_decay: float, decay_tokens: bool = True
) -> list[dict]:
    """timm's groups: no decay on biases and 1-d parameters (norms).

    With ``decay_tokens`` (the default, as the authors' ``main_pretrain.py``: timm's helper with
    no skip list) tokens such as ``cls_token`` / ``mask_token`` are decayed like any weight;
    ``decay_tokens=False`` also exempts ``model.no_weight_decay()``.
    """
    from timm.optim import param_groups_weight_decay

    skip: tuple[str, ...] = ()
    if not decay_tokens and hasattr(model, "no_weight_decay"):
        skip = tuple(sorted(model.no_weight_decay()))
    return param_groups_weight_decay(model, weight_decay, no_weight_decay_list=skip)


def build_optimizer(model: torch.nn.Module, cfg, lr: float, device: torch.device):
    """AdamW over :func:`param_groups` (fused kernels on CUDA)."""
    groups = param_groups(model, cfg.TRAIN.WEIGHT_DECAY, bool(cfg.TRAIN.DECAY_TOKENS))
    kwargs = {"fused": True} if device.type == "cuda" else {}
    return torch.optim.AdamW(groups, lr=lr, betas=tuple(cfg.TRAIN.BETAS), **kwargs)


def seed_epoch(seed: int, epoch: int, rank: int) -> torch.Generator:
    """Re-seed torch / numpy / random for this epoch; return the masking generator."""
    torch.manual_seed(mix_seed(seed, epoch, rank, 1))
    np.random.seed(mix_seed(seed, epoch, rank, 2) % 2**32)
    random.seed(mix_seed(seed, epoch, rank, 3))
    return torch.Generator().manual_seed(mix_seed(seed, epoch, rank, 4))


def _say(info: DistInfo, msg: str) -> None:
    if info.is_main:
        print(msg, flush=True)


def _loader_error(exc: Exception) -> SarjepaError:
    """One line from an error raised inside a DataLoader worker (torch wraps the traceback)."""
    lines = [ln.strip() for ln in str(exc).splitlines() if ln.strip()]
    last = lines[-1] if lines else type(exc).__name__
    for prefix in ("benchmark.errors.SarjepaError:", "SarjepaError:"):
        if last.startswith(prefix):
            last = last[len(prefix) :].strip()
    return SarjepaError(last)


def _resolve_resume(out: Path, resume: str) -> Path | None:
    latest = ck.find_latest(out)
    if resume == "auto":
        return latest
    if resume:
        path = Path(resume)
        if not path.is_file():
            raise SarjepaError(f"--resume checkpoint '{resume}' does not exist")
        return path
    if latest is not None:
        raise SarjepaError(
            f"output folder '{out}' already holds {latest.name}; pass --resume auto to continue "
            "it or choose another --output"
        )
    return None


def _trim_log(log_path: Path, start_epoch: int) -> None:
    """Keep only the log lines of epochs before ``start_epoch`` (a restart rewrites the rest)."""
    if not log_path.exists():
        return
    keep = []
    for line in log_path.read_text(encoding="utf-8").splitlines():
        try:
            if int(json.loads(line).get("epoch", -1)) < start_epoch:
                keep.append(line)
        except (ValueError, AttributeError):
            continue
    ck.atomic_write_text("".join(ln + "\n" for ln in keep), log_path)


def _tensorboard(out: Path, enabled: bool):
    if not enabled:
        return None
    try:
        from torch.utils.tensorboard import SummaryWriter
    except Exception:  # tensorboard is optional
        return None
    return SummaryWriter(log_dir=str(out / "tb"))


def train(cfg, resume: str = "", progress: bool | None = None) -> dict:
    """Run (or resume) a pretraining job described by ``cfg``; return a summary dict.

    Args:
        cfg: pretraining config (:func:`pretrain.config.load_config`), with ``DATA_DIR`` and
            ``OUTPUT_DIR`` set.
        resume: "" (fresh run; refuses a folder that already has checkpoints), ``"auto"``
            (latest checkpoint in OUTPUT_DIR, fresh if none) or a checkpoint path.
        progress: tqdm bar; None = ``cfg.TRAIN.PROGRESS`` and only on a TTY.

    Returns:
        ``{"epochs_run", "last_epoch", "loss", "img_per_s", "checkpoint"}``.
    """
    info = init_distributed(cfg.DEVICE)
    try:
        return _train(cfg, info, resume, progress)
    finally:
        cleanup(info)


def _train(cfg, info: DistInfo, resume: str, progress: bool | None) -> dict:
    if not cfg.DATA_DIR:
        raise SarjepaError("no data folder given (--data DIR)")
    if not cfg.OUTPUT_DIR:
        raise SarjepaError("no output folder given (--output DIR)")
    out = Path(cfg.OUTPUT_DIR)
    if out.exists() and not out.is_dir():
        raise SarjepaError(f"--output '{out}' exists and is not a folder")
    if progress is None:
        progress = bool(cfg.TRAIN.PROGRESS) and sys.stderr.isatty()
    device = info.device
    amp = resolve_amp(cfg.TRAIN.AMP, device)
    resume_path = _resolve_resume(out, resume)

    from pretrain.methods import build_method

    torch.manual_seed(cfg.SEED)
    method = build_method(cfg).to(device)
    dataset = build_pretrain_dataset(cfg, cfg.DATA_DIR, progress=progress and info.is_main)
    batch, accum, world = cfg.TRAIN.BATCH_SIZE, cfg.TRAIN.ACCUM_ITER, info.world_size
    per_rank = -(-len(dataset) // world)
    if per_rank < batch:
        raise SarjepaError(
            f"data folder '{cfg.DATA_DIR}' has {len(dataset)} images, fewer than one batch of "
            f"{batch} per process x {world} process(es); lower TRAIN.BATCH_SIZE"
        )
    lr_peak = peak_lr(cfg.TRAIN.BLR, batch, accum, world, cfg.TRAIN.LR)
    optimizer = build_optimizer(method, cfg, lr_peak, device)

    start_epoch = 0
    if resume_path is not None:
        state = ck.load_checkpoint(resume_path)
        trained = (state.get("args") or {}).get("method")
        if trained and trained != method.name:
            raise SarjepaError(
                f"checkpoint '{resume_path}' was trained with method '{trained}', "
                f"the config says '{method.name}'"
            )
        method.load_checkpoint_state_dict(state["model"])
        if state.get("optimizer"):
            optimizer.load_state_dict(state["optimizer"])
        start_epoch = int(state["epoch"]) + 1
        _say(info, f"resuming from {resume_path} (epoch {start_epoch})")
        side = ck.read_sidecar(resume_path) or {}
        if side.get("data_fingerprint") not in (None, dataset.fingerprint):
            _say(info, "warning: the data folder differs from the one the checkpoint saw")

    model: torch.nn.Module = method
    if info.distributed:
        from torch.nn.parallel import DistributedDataParallel as DDP

        model = DDP(method, device_ids=[device.index] if device.type == "cuda" else None)
    if cfg.TRAIN.COMPILE:
        model = torch.compile(model)

    from torch.utils.data import DataLoader

    from pretrain.data import EpochSampler

    sampler = EpochSampler(len(dataset), world, info.rank, seed=cfg.SEED)
    workers = int(cfg.DATA.NUM_WORKERS)
    loader = DataLoader(
        dataset,
        batch_size=batch,
        sampler=sampler,
        num_workers=workers,
        pin_memory=bool(cfg.DATA.PIN_MEMORY) and device.type == "cuda",
        drop_last=True,
        worker_init_fn=seed_worker if workers else None,
        generator=torch.Generator().manual_seed(mix_seed(cfg.SEED, info.rank, 5)),
        persistent_workers=workers > 0,
    )
    iters = len(loader) if not cfg.TRAIN.MAX_ITERS else min(len(loader), cfg.TRAIN.MAX_ITERS)

    eff = batch * accum * world
    log_path = out / "log.txt"
    writer = None
    if info.is_main:
        out.mkdir(parents=True, exist_ok=True)
        ck.atomic_write_text(cfg.dump(), out / "config.yaml")
        _trim_log(log_path, start_epoch)
        writer = _tensorboard(out, bool(cfg.TRAIN.TENSORBOARD))
    _say(
        info,
        f"{method.name}: {len(dataset)} images, {iters} iterations/epoch, batch {batch} x accum "
        f"{accum} x {world} process(es) = {eff}, lr {lr_peak:.3g}, device {device}, "
        f"amp {'bf16' if amp else 'off'}, epochs {start_epoch}..{cfg.TRAIN.EPOCHS - 1}",
    )
    args = ck.checkpoint_args(cfg, method, world, eff, lr_peak)
    sidecar = ck.sidecar_meta(cfg, method, dataset, world, eff)
    summary = {
        "epochs_run": 0,
        "last_epoch": start_epoch - 1,
        "loss": None,
        "img_per_s": None,
        "checkpoint": str(resume_path) if resume_path else "",
    }
    for epoch in range(start_epoch, cfg.TRAIN.EPOCHS):
        sampler.set_epoch(epoch)
        mask_gen = seed_epoch(cfg.SEED, epoch, info.rank)
        stats = train_one_epoch(
            model, loader, optimizer, epoch, iters, cfg, info, amp, mask_gen, lr_peak, progress
        )
        summary.update(
            epochs_run=summary["epochs_run"] + 1,
            last_epoch=epoch,
            loss=stats["loss"],
            img_per_s=stats["img_per_s"],
        )
        _say(
            info,
            f"epoch {epoch}/{cfg.TRAIN.EPOCHS - 1}: loss {stats['loss']:.5f}, "
            f"lr {stats['lr']:.3g}, {stats['img_per_s']:.1f} img/s, {stats['time_s']:.1f} s",
        )
        if not info.is_main:
            continue
        with open(log_path, "a", encoding="utf-8") as f:
            f.write(json.dumps({"epoch": epoch, **stats}) + "\n")
        if writer is not None:
            for key in ("loss", "lr", "img_per_s"):
                writer.add_scalar(f"train/{key}", stats[key], epoch)
            writer.flush()
        last = epoch + 1 == cfg.TRAIN.EPOCHS
        if last or (cfg.TRAIN.SAVE_FREQ and epoch % cfg.TRAIN.SAVE_FREQ == 0):
            path = ck.save_checkpoint(
                out, epoch, method.checkpoint_state_dict(), optimizer.state_dict(), args, sidecar
            )
            summary["checkpoint"] = str(path)
            _say(info, f"saved {path}")
    if writer is not None:
        writer.close()
    return summary


def train_one_epoch(
    model, loader, optimizer, epoch, iters, cfg, info, amp, mask_gen, lr_peak, progress
) -> dict:
    """One epoch of ``iters`` micro-batches; returns ``{"loss", "lr", "img_per_s", "time_s"}``."""
    from tqdm import tqdm

    device = info.device
    accum = cfg.TRAIN.ACCUM_ITER
    model.train()
    optimizer.zero_grad(set_to_none=True)
    pending: list[tuple[int, torch.Tensor]] = []
    loss_sum, loss_n, lr, seen = 0.0, 0, 0.0, 0
    autocast = (
        torch.autocast(device.type, dtype=amp) if amp is not None else contextlib.nullcontext()
    )
    bar = tqdm(
        total=iters,
        desc=f"epoch {epoch}",
        disable=not (progress and info.is_main),
        unit="it",
        leave=False,
        dynamic_ncols=True,
    )
    start = time.perf_counter()
    it = iter(loader)
    for step in range(iters):
        try:
            images = next(it)
        except StopIteration:
            break
        except Exception as exc:  # errors from workers arrive wrapped, with a traceback text
            if isinstance(exc, SarjepaError) or "SarjepaError" in str(exc):
                raise _loader_error(exc) from None
            raise
        group_start = step - step % accum
        group_end = min(group_start + accum, iters)
        if step == group_start:
            lr = lr_at(
                epoch + step / iters,
                lr_peak,
                cfg.TRAIN.MIN_LR,
                cfg.TRAIN.WARMUP_EPOCHS,
                cfg.TRAIN.EPOCHS,
            )
            for group in optimizer.param_groups:
                group["lr"] = lr * group.get("lr_scale", 1.0)
        images = images.to(device, non_blocking=True)
        boundary = step + 1 == group_end
        no_sync = info.distributed and not boundary and hasattr(model, "no_sync")
        with model.no_sync() if no_sync else contextlib.nullcontext(), autocast:
            loss, _ = model(images, mask_gen)
        (loss / (group_end - group_start)).backward()
        pending.append((step, all_reduce_mean(loss.detach().float().clone(), info)))
        if boundary:
            if cfg.TRAIN.CLIP_GRAD:
                torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.TRAIN.CLIP_GRAD)
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
        seen += images.shape[0] * info.world_size
        if len(pending) >= SYNC_EVERY * accum or step + 1 == iters:
            values = torch.stack([v for _, v in pending]).cpu().tolist()
            for (s, _), v in zip(pending, values):
                if not math.isfinite(v):
                    bar.close()
                    raise SarjepaError(
                        f"non-finite loss ({v}) at epoch {epoch} step {s}: run stopped, "
                        "checkpoints on disk are untouched (try a lower TRAIN.BLR or "
                        "TRAIN.CLIP_GRAD 1.0)"
                    )
            loss_sum += sum(values)
            loss_n += len(values)
            pending.clear()
            rate = seen / max(time.perf_counter() - start, 1e-9)
            bar.set_postfix(loss=f"{values[-1]:.4f}", lr=f"{lr:.2e}", img_s=f"{rate:.1f}")
        bar.update(1)
    bar.close()
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
