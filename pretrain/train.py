"""A pretraining run, top to bottom: setup, resume, fit (the inner loop is :mod:`pretrain.loop`).

Recipe (the paper's, MAE's): AdamW betas (0.9, 0.95), weight decay 0.05 on weights (biases and
1-d parameters exempt; tokens decayed unless ``TRAIN.DECAY_TOKENS False``); peak lr = BLR x
effective batch / 256; per-iteration warm-up then half-cycle cosine; bf16 autocast on CUDA, fp32
on CPU.

Effective batch: ``TRAIN.EFFECTIVE_BATCH`` (the paper's, e.g. 4 GPUs x 75 = 300 for SAR-JEPA) is
reached on any number of processes by gradient accumulation, ``ACCUM_ITER = EFFECTIVE_BATCH /
(BATCH_SIZE x processes)``, printed at the start. An explicit ``TRAIN.ACCUM_ITER`` (> 0) wins.

Reproducibility and resume: model init is seeded by SEED; at the start of every epoch the torch,
numpy and Python RNGs and the masking generator are re-seeded from (SEED, epoch, rank), the
sampler shuffles with (SEED, epoch) and each sample's augmentation is seeded by (SEED, epoch,
index) (see :mod:`pretrain.data`). Checkpoints are written atomically at epoch ends, so a run
killed at any moment and resumed with ``--resume auto`` from its latest checkpoint reproduces the
uninterrupted run bit for bit on CPU, with any number of DataLoader workers. A non-finite loss
stops the run before anything is saved.

Size: just over 400 lines: the driver reads top to bottom (setup, restore, fit, train), with
the per-epoch loop in :mod:`pretrain.loop` and schedules in :mod:`pretrain.schedules`.
"""

from __future__ import annotations

import json
import random
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from sarjepa.benchmark.core.errors import SarjepaError, not_a_file
from sarjepa.benchmark.core.io import atomic_write_text, write_error
from sarjepa.benchmark.core.runtime import amp_dtype, mix_seed, resolve_amp
from sarjepa.pretrain import checkpoints as ck
from sarjepa.pretrain.data import build_pretrain_dataset, seed_worker
from sarjepa.pretrain.distributed import DistInfo, cleanup, init_distributed
from sarjepa.pretrain.loop import EpochPlan, train_one_epoch
from sarjepa.pretrain.schedules import lr_at, peak_lr

__all__ = ["train", "lr_at", "peak_lr", "param_groups", "resolve_accum"]


def param_groups(
    model: torch.nn.Module, weight_decay: float, decay_tokens: bool = True
) -> list[dict]:
    """timm's groups: no decay on biases and 1-d parameters (norms).

    With ``decay_tokens`` (the default, as the authors' ``main_pretrain.py``: timm's helper with
    no skip list) tokens such as ``cls_token`` / ``mask_token`` are decayed like any weight;
    ``decay_tokens=False`` also exempts ``model.no_weight_decay()``. A method whose
    ``optimizer_param_groups`` returns groups (I-JEPA: upstream's four) gets those instead.
    """
    from timm.optim import param_groups_weight_decay

    own = getattr(model, "optimizer_param_groups", None)
    groups = own(weight_decay, decay_tokens) if own is not None else None
    if groups is not None:  # the method's upstream groups (I-JEPA)
        return groups
    skip: tuple[str, ...] = ()
    if not decay_tokens and hasattr(model, "no_weight_decay"):
        skip = tuple(sorted(model.no_weight_decay()))
    return param_groups_weight_decay(model, weight_decay, no_weight_decay_list=skip)


def build_optimizer(model: torch.nn.Module, cfg, lr: float, device: torch.device):
    """AdamW over :func:`param_groups`: fused kernels on CUDA, the for-each path elsewhere.

    On a CPU torch's default is the single-tensor loop (~2 small ops per parameter and update
    term); the for-each path gives bitwise the same parameters (tests/test_pretrain_train.py)
    in fewer dispatches.
    """
    groups = param_groups(model, cfg.TRAIN.WEIGHT_DECAY, bool(cfg.TRAIN.DECAY_TOKENS))
    kwargs = {"fused": True} if device.type == "cuda" else {"foreach": True}
    return torch.optim.AdamW(groups, lr=lr, betas=tuple(cfg.TRAIN.BETAS), **kwargs)


def resolve_accum(batch: int, world: int, accum_iter: int, effective: int) -> tuple[int, str]:
    """Accumulation steps and a sentence saying how the effective batch is reached.

    Args:
        batch: images per process and micro-batch (``TRAIN.BATCH_SIZE``).
        world: number of processes.
        accum_iter: ``TRAIN.ACCUM_ITER``; > 0 is used as given.
        effective: ``TRAIN.EFFECTIVE_BATCH``; 0 = no target (accumulation 1).
    """
    if accum_iter > 0:
        how = "TRAIN.ACCUM_ITER"
        if effective and batch * world * accum_iter != effective:
            how += f", not the config's TRAIN.EFFECTIVE_BATCH {effective}"
        return accum_iter, how
    if not effective:
        return 1, "no TRAIN.EFFECTIVE_BATCH"
    accum = max(1, round(effective / (batch * world)))
    got = batch * world * accum
    how = f"accumulating {accum} to reach TRAIN.EFFECTIVE_BATCH {effective}"
    if got != effective:
        how += f" (not reachable exactly with batch {batch} x {world}; {got} instead)"
    return accum, how


def seed_epoch(seed: int, epoch: int, rank: int) -> torch.Generator:
    """Re-seed torch / numpy / random for this epoch; return the masking generator."""
    torch.manual_seed(mix_seed(seed, epoch, rank, 1))
    np.random.seed(mix_seed(seed, epoch, rank, 2) % 2**32)
    random.seed(mix_seed(seed, epoch, rank, 3))
    return torch.Generator().manual_seed(mix_seed(seed, epoch, rank, 4))


@dataclass
class Run:
    """Everything a pretraining run holds between setup and fit."""

    cfg: Any
    info: DistInfo
    out: Path
    method: Any
    model: torch.nn.Module
    dataset: Any
    sampler: Any
    loader: Any
    optimizer: torch.optim.Optimizer
    amp: torch.dtype | None
    accum: int
    eff: int
    lr_peak: float
    iters: int
    progress: bool
    summary: dict = field(default_factory=dict)


def _say(info: DistInfo, msg: str) -> None:
    if info.is_main:
        print(msg, flush=True)


def _resolve_resume(out: Path, resume: str) -> Path | None:
    latest = ck.find_latest(out)
    if resume == "auto":
        return latest
    if resume:
        path = Path(resume)
        if not path.is_file():
            raise not_a_file("--resume checkpoint", resume)
        return path
    if latest is not None:
        raise SarjepaError(
            f"output folder '{out}' already holds {latest.name}; pass --resume auto to continue "
            "it or choose another --out"
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
    atomic_write_text("".join(ln + "\n" for ln in keep), log_path)


def _tensorboard(out: Path, enabled: bool):
    if not enabled:
        return None
    try:
        from torch.utils.tensorboard import SummaryWriter
    except Exception:  # tensorboard is optional
        return None
    return SummaryWriter(log_dir=str(out / "tb"))


def _build_loader(cfg, dataset, info: DistInfo, batch: int):
    from sarjepa.pretrain.data import EpochSampler
    from torch.utils.data import DataLoader

    sampler = EpochSampler(len(dataset), info.world_size, info.rank, seed=cfg.SEED)
    workers = int(cfg.DATA.NUM_WORKERS)
    loader = DataLoader(
        dataset,
        batch_size=batch,
        sampler=sampler,
        num_workers=workers,
        pin_memory=bool(cfg.DATA.PIN_MEMORY) and info.device.type == "cuda",
        drop_last=True,
        worker_init_fn=seed_worker if workers else None,
        generator=torch.Generator().manual_seed(mix_seed(cfg.SEED, info.rank, 5)),
        persistent_workers=workers > 0,
    )
    return sampler, loader


def setup(cfg, info: DistInfo, progress: bool | None) -> Run:
    """Check the folders, build method, data, loader and optimiser (nothing written yet)."""
    if not cfg.DATA_DIR:
        raise SarjepaError("no data folder given (--data DIR)")
    if not cfg.OUTPUT_DIR:
        raise SarjepaError("no output folder given (--out DIR)")
    out = Path(cfg.OUTPUT_DIR)
    if out.exists() and not out.is_dir():
        raise SarjepaError(f"--out '{out}' exists and is not a folder")
    if progress is None:
        progress = bool(cfg.TRAIN.PROGRESS) and sys.stderr.isatty()
    device = info.device
    amp = amp_dtype(resolve_amp(cfg.TRAIN.AMP, device, "TRAIN.AMP"))

    from sarjepa.pretrain.methods import build_method

    torch.manual_seed(cfg.SEED)
    method = build_method(cfg).to(device)
    dataset = build_pretrain_dataset(cfg, cfg.DATA_DIR, progress=progress and info.is_main)
    batch, world = int(cfg.TRAIN.BATCH_SIZE), info.world_size
    if -(-len(dataset) // world) < batch:
        raise SarjepaError(
            f"data folder '{cfg.DATA_DIR}' has {len(dataset)} images, fewer than one batch of "
            f"{batch} per process x {world} process(es); lower TRAIN.BATCH_SIZE"
        )
    accum, how = resolve_accum(batch, world, int(cfg.TRAIN.ACCUM_ITER), cfg.TRAIN.EFFECTIVE_BATCH)
    lr = peak_lr(cfg.TRAIN.BLR, batch, accum, world, cfg.TRAIN.LR)
    optimizer = build_optimizer(method, cfg, lr, device)
    model: torch.nn.Module = method
    if info.distributed:
        from torch.nn.parallel import DistributedDataParallel as DDP

        model = DDP(method, device_ids=[device.index] if device.type == "cuda" else None)
    if cfg.TRAIN.COMPILE:
        model = torch.compile(model)
    sampler, loader = _build_loader(cfg, dataset, info, batch)
    iters = len(loader) if not cfg.TRAIN.MAX_ITERS else min(len(loader), cfg.TRAIN.MAX_ITERS)
    run = Run(
        cfg,
        info,
        out,
        method,
        model,
        dataset,
        sampler,
        loader,
        optimizer,
        amp,
        accum,
        batch * accum * world,
        lr,
        iters,
        progress,
    )
    _say(info, f"effective batch {batch} x {world} process(es) x accum {accum} = {run.eff} ({how})")
    return run


def restore(run: Run, resume_path: Path | None) -> int:
    """Load weights, optimiser and method state from ``resume_path``; return the start epoch."""
    if resume_path is None:
        return 0
    try:
        state = ck.load_checkpoint(resume_path)
    except SarjepaError as exc:
        earlier = [p for e, p in ck.list_checkpoints(resume_path.parent) if p != resume_path]
        hint = f" (move it away to resume from {earlier[-1].name})" if earlier else ""
        raise SarjepaError(f"{exc}{hint}") from None
    args = state.get("args") if isinstance(state.get("args"), dict) else {}
    trained = (ck.read_sidecar(resume_path) or {}).get("method") or args.get("method")
    if trained:
        from sarjepa.pretrain.methods import current_method_name

        model = state.get("model")
        trained = current_method_name(trained, model if isinstance(model, dict) else {})
    if trained and trained != run.method.name:
        raise SarjepaError(
            f"checkpoint '{resume_path}' was trained with method '{trained}', "
            f"the config says '{run.method.name}'"
        )
    opt_state = _restore_entries(run, state, resume_path)
    if opt_state:
        try:
            run.optimizer.load_state_dict(opt_state)
        except (ValueError, KeyError, TypeError) as exc:
            raise SarjepaError(
                f"checkpoint '{resume_path}': optimiser state does not fit this run ({exc})"
            ) from None
    start = run.method.start_epoch(state)
    _say(run.info, f"resuming from {resume_path} (epoch {start})")
    side = ck.read_sidecar(resume_path)
    if side.get("data_fingerprint") not in (None, run.dataset.fingerprint):
        _say(run.info, "warning: the data folder differs from the one the checkpoint saw")
    return start


def _restore_entries(run: Run, state: dict, path: Path) -> dict | None:
    """The method's restore, with any mismatch reported as one line naming the checkpoint."""
    try:
        return run.method.restore_checkpoint_entries(state, str(path))
    except SarjepaError as exc:
        if str(path) in str(exc):
            raise
        raise SarjepaError(f"checkpoint '{path}': {exc}") from None
    except (KeyError, TypeError, ValueError, AttributeError, RuntimeError) as exc:
        reason = " ".join(str(exc).split())[:200] or type(exc).__name__
        raise SarjepaError(
            f"checkpoint '{path}' does not fit method '{run.method.name}': {reason}"
        ) from None


def _log_epoch(run: Run, epoch: int, stats: dict, writer) -> None:
    log_path = run.out / "log.txt"
    try:  # appended, not atomic: a resumed run drops a torn last line (_trim_log)
        with open(log_path, "a", encoding="utf-8") as f:
            f.write(json.dumps({"epoch": epoch, **stats}) + "\n")
    except OSError as exc:
        raise write_error(log_path, exc) from exc
    if writer is not None:
        for key, value in stats.items():
            if isinstance(value, (int, float)):
                writer.add_scalar(f"train/{key}", value, epoch)
        writer.flush()


def fit(run: Run, start_epoch: int) -> dict:
    """Train epochs ``start_epoch .. EPOCHS-1``; log, save; return the run summary."""
    from tqdm import tqdm

    cfg, info, method = run.cfg, run.info, run.method
    writer = None
    if info.is_main:
        run.out.mkdir(parents=True, exist_ok=True)
        for name in ck.remove_stale_temps(run.out):
            _say(info, f"removed {name}, left by an interrupted write")
        atomic_write_text(cfg.dump(), run.out / "config.yaml")
        _trim_log(run.out / "log.txt", start_epoch)
        writer = _tensorboard(run.out, bool(cfg.TRAIN.TENSORBOARD))
    _say(
        info,
        f"{method.name}: {len(run.dataset)} images, {run.iters} iterations/epoch, lr "
        f"{run.lr_peak:.3g}, device {info.device}, amp {'bf16' if run.amp else 'off'}, "
        f"epochs {start_epoch}..{cfg.TRAIN.EPOCHS - 1}",
    )
    args = ck.checkpoint_args(cfg, method, info.world_size, run.eff, run.lr_peak)
    sidecar = ck.sidecar_meta(cfg, method, run.dataset, info.world_size, run.eff)
    summary = run.summary
    summary.update(
        epochs_run=0, last_epoch=start_epoch - 1, loss=None, img_per_s=None, rank=info.rank
    )
    summary.setdefault("checkpoint", "")
    for epoch in range(start_epoch, cfg.TRAIN.EPOCHS):
        run.sampler.set_epoch(epoch)
        mask_gen = seed_epoch(cfg.SEED, epoch, info.rank)
        plan = EpochPlan(
            epoch,
            run.iters,
            run.accum,
            cfg.TRAIN.EPOCHS,
            run.lr_peak,
            cfg.TRAIN.MIN_LR,
            cfg.TRAIN.WARMUP_EPOCHS,
            cfg.TRAIN.CLIP_GRAD,
        )
        with tqdm(
            total=run.iters,
            desc=f"epoch {epoch}",
            unit="it",
            leave=False,
            disable=not (run.progress and info.is_main),
            dynamic_ncols=True,
        ) as bar:
            stats = train_one_epoch(
                run.model, method, run.loader, run.optimizer, plan, info, run.amp, mask_gen, bar
            )
        stats.update(method.epoch_metrics())
        summary.update(
            epochs_run=summary["epochs_run"] + 1,
            last_epoch=epoch,
            loss=stats["loss"],
            img_per_s=stats["img_per_s"],
        )
        _say(
            info,
            f"epoch {epoch}/{cfg.TRAIN.EPOCHS - 1}: loss {stats['loss']:.5f}, lr "
            f"{stats['lr']:.3g}, {stats['img_per_s']:.1f} img/s, {stats['time_s']:.1f} s",
        )
        if not info.is_main:
            continue
        _log_epoch(run, epoch, stats, writer)
        last = epoch + 1 == cfg.TRAIN.EPOCHS
        if last or (cfg.TRAIN.SAVE_FREQ and epoch % cfg.TRAIN.SAVE_FREQ == 0):
            entries = method.checkpoint_entries(run.optimizer.state_dict(), epoch, args)
            summary["checkpoint"] = str(ck.save_checkpoint(run.out, epoch, entries, sidecar))
            _say(info, f"saved {summary['checkpoint']}")
    if writer is not None:
        writer.close()
    return summary


def train(cfg, resume: str = "", progress: bool | None = None) -> dict:
    """Run (or resume) a pretraining job described by ``cfg``; return a summary dict.

    Args:
        cfg: pretraining config (:func:`pretrain.config.load_config`), with ``DATA_DIR`` and
            ``OUTPUT_DIR`` set.
        resume: "" (fresh run; refuses a folder that already has checkpoints), ``"auto"``
            (latest checkpoint in OUTPUT_DIR, fresh if none) or a checkpoint path.
        progress: tqdm bar; None = ``cfg.TRAIN.PROGRESS`` and only on a TTY.

    Returns:
        ``{"epochs_run", "last_epoch", "loss", "img_per_s", "checkpoint", "rank"}`` (the
        checkpoint path is known to rank 0 only, the process that saves).
    """
    info = init_distributed(cfg.DEVICE)
    try:
        resume_path = _resolve_resume(Path(cfg.OUTPUT_DIR), resume) if cfg.OUTPUT_DIR else None
        run = setup(cfg, info, progress)
        start = restore(run, resume_path)
        run.summary["checkpoint"] = str(resume_path) if resume_path else ""
        return fit(run, start)
    finally:
        cleanup(info)
