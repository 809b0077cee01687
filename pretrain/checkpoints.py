"""Pretraining checkpoints on disk: atomic writes, JSON sidecars, finding the latest, loading.

Layout of an output folder written by ``sarjepa pretrain``::

    OUT/checkpoint-<epoch>.pth   {"model": state_dict, "optimizer": state_dict, "epoch": int,
                                  "scaler": None, "args": plain dict}   (the authors' dict format)
    OUT/checkpoint-<epoch>.json  sidecar: {"format": "sarjepa-pretrain/1", "method", "target",
                                  "arch", "input_size", "in_chans", "preprocessing",
                                  "data_fingerprint", "code_version", "epoch", ...}
    OUT/log.txt                  one JSON line per epoch
    OUT/config.yaml              the resolved config of the latest (re)start

``<epoch>`` is the 0-based index of the last finished epoch (as in MAE and the authors' code:
``checkpoint-200.pth`` has 201 epochs behind it). ``model`` holds the encoder keys unprefixed
(the fine-tune ViT's names) plus the method's own keys (``mask_token``, ``decoder_*``, ...).
Files are written to a temporary name in the same folder, flushed, then renamed with
``os.replace``, so a crash never leaves a truncated checkpoint. Loading of third-party formats
lives in ``pretrain/weights.py``.
"""

from __future__ import annotations

import functools
import json
import os
import re
import subprocess
import tempfile
from pathlib import Path
from typing import Any

import torch

from benchmark.errors import SarjepaError

SIDECAR_FORMAT = "sarjepa-pretrain/1"
_CKPT_RE = re.compile(r"^checkpoint-(\d+)\.pth$")


def checkpoint_path(out_dir: str | os.PathLike, epoch: int) -> Path:
    """``OUT/checkpoint-<epoch>.pth``."""
    return Path(out_dir) / f"checkpoint-{int(epoch)}.pth"


def sidecar_path(ckpt: str | os.PathLike) -> Path:
    """The JSON sidecar next to a checkpoint (same stem, ``.json``)."""
    return Path(ckpt).with_suffix(".json")


def list_checkpoints(out_dir: str | os.PathLike) -> list[tuple[int, Path]]:
    """``(epoch, path)`` of every ``checkpoint-<N>.pth`` in ``out_dir``, sorted by epoch."""
    out = Path(out_dir)
    if not out.is_dir():
        return []
    found = []
    for p in out.iterdir():
        m = _CKPT_RE.match(p.name)
        if m and p.is_file():
            found.append((int(m.group(1)), p))
    return sorted(found)


def find_latest(out_dir: str | os.PathLike) -> Path | None:
    """The checkpoint with the highest epoch in ``out_dir``, or None."""
    found = list_checkpoints(out_dir)
    return found[-1][1] if found else None


def _atomic_write(path: Path, write) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def atomic_torch_save(obj: Any, path: str | os.PathLike) -> None:
    """``torch.save`` to a temporary file in the same folder, then rename over ``path``."""
    _atomic_write(Path(path), lambda f: torch.save(obj, f))


def atomic_write_json(obj: Any, path: str | os.PathLike) -> None:
    """Write ``obj`` as indented JSON atomically."""
    data = (json.dumps(obj, indent=2, sort_keys=False) + "\n").encode()
    _atomic_write(Path(path), lambda f: f.write(data))


def atomic_write_text(text: str, path: str | os.PathLike) -> None:
    """Write a text file atomically."""
    _atomic_write(Path(path), lambda f: f.write(text.encode()))


def save_checkpoint(
    out_dir: str | os.PathLike,
    epoch: int,
    model_state: dict,
    optimizer_state: dict | None,
    args: dict,
    sidecar: dict,
    scaler_state: dict | None = None,
    extra: dict | None = None,
) -> Path:
    """Write ``checkpoint-<epoch>.pth`` then its sidecar, both atomically; return the .pth path.

    Args:
        out_dir: output folder (created if needed).
        epoch: 0-based index of the last finished epoch.
        model_state: encoder keys unprefixed + method keys (tensors on any device).
        optimizer_state: ``optimizer.state_dict()``.
        args: plain dict (must hold ``"arch"``).
        sidecar: the metadata dict; ``format`` and ``epoch`` are filled in here.
        scaler_state: grad-scaler state (None: bf16/fp32 need none).
        extra: further top-level entries (plain types / tensors only).
    """
    path = checkpoint_path(out_dir, epoch)
    obj = {
        "model": {k: v.detach().cpu() for k, v in model_state.items()},
        "optimizer": optimizer_state,
        "epoch": int(epoch),
        "scaler": scaler_state,
        "args": args,
    }
    if extra:
        obj.update(extra)
    atomic_torch_save(obj, path)
    meta = {"format": SIDECAR_FORMAT, **sidecar, "epoch": int(epoch)}
    atomic_write_json(meta, sidecar_path(path))
    return path


def load_checkpoint(path: str | os.PathLike) -> dict:
    """Load a checkpoint written by :func:`save_checkpoint` (``weights_only=True``, on CPU).

    Raises:
        SarjepaError: missing file, or a file that is not a loadable checkpoint dict.
    """
    path = Path(path)
    if not path.is_file():
        raise SarjepaError(f"checkpoint '{path}' does not exist")
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        reason = " ".join(str(exc).split())[:300]
        raise SarjepaError(f"cannot load checkpoint '{path}': {reason}") from None
    if not isinstance(obj, dict) or "model" not in obj:
        raise SarjepaError(
            f"checkpoint '{path}' has no 'model' entry (not a pretraining checkpoint)"
        )
    return obj


def read_sidecar(ckpt: str | os.PathLike) -> dict | None:
    """The sidecar dict of a checkpoint, or None if there is none."""
    p = sidecar_path(ckpt)
    if not p.is_file():
        return None
    with open(p, encoding="utf-8") as f:
        return json.load(f)


@functools.lru_cache(maxsize=1)
def code_version() -> str:
    """Package version plus the git commit of the source tree when available (``-dirty`` if so).

    Computed once per process (two ``git`` calls); every grid cell and feature-cache key asks.
    """
    from benchmark import __version__

    here = Path(__file__).resolve().parent
    try:
        sha = subprocess.run(
            ["git", "rev-parse", "--short=12", "HEAD"],
            cwd=here,
            capture_output=True,
            text=True,
            timeout=5,
        )
        if sha.returncode != 0:
            return __version__
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            cwd=here,
            capture_output=True,
            text=True,
            timeout=5,
        )
        suffix = "-dirty" if dirty.stdout.strip() else ""
        return f"{__version__}+g{sha.stdout.strip()}{suffix}"
    except (OSError, subprocess.SubprocessError):
        return __version__


def checkpoint_args(cfg, method, world: int, eff: int, lr: float) -> dict:
    """``args`` of the checkpoint: plain dict with ``arch``, the authors' argument names and
    the full resolved config."""
    from pretrain.config import cfg_to_dict

    desc = method.describe()
    return {
        "arch": method.encoder.arch_dict(),
        "method": method.name,
        "target": desc.get("target", ""),
        "target_options": desc.get("target_options", {}),
        "model": cfg.MODEL.ARCH,
        "input_size": int(cfg.INPUT.SIZE),
        "batch_size": int(cfg.TRAIN.BATCH_SIZE),
        "accum_iter": int(cfg.TRAIN.ACCUM_ITER),
        "world_size": world,
        "effective_batch_size": eff,
        "epochs": int(cfg.TRAIN.EPOCHS),
        "warmup_epochs": cfg.TRAIN.WARMUP_EPOCHS,
        "blr": float(cfg.TRAIN.BLR),
        "lr": lr,
        "min_lr": float(cfg.TRAIN.MIN_LR),
        "weight_decay": float(cfg.TRAIN.WEIGHT_DECAY),
        "window_size": int(cfg.MASK.WINDOW_SIZE),
        "num_window": int(cfg.MASK.NUM_WINDOW),
        "mask_ratio": float(cfg.MASK.RATIO),
        "norm_pix_loss": bool(desc.get("target_options", {}).get("norm_pix", False)),
        "seed": int(cfg.SEED),
        "config": cfg_to_dict(cfg),
    }


def sidecar_meta(cfg, method, dataset, world: int, eff: int) -> dict:
    """The sidecar fields of a run (``format`` and ``epoch`` are added when saving)."""
    from pretrain.data import preprocessing_dict

    desc = method.describe()
    return {
        "method": method.name,
        "target": desc.get("target", ""),
        "target_options": desc.get("target_options", {}),
        "arch": method.encoder.arch_dict(),
        "input_size": int(cfg.INPUT.SIZE),
        "in_chans": int(method.encoder.in_chans),
        "preprocessing": preprocessing_dict(cfg),
        "data_fingerprint": dataset.fingerprint,
        "num_images": len(dataset),
        "code_version": code_version(),
        "torch_version": torch.__version__,
        "world_size": world,
        "effective_batch_size": eff,
        "method_details": desc,
    }
