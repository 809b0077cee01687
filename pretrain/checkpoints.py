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
Methods whose upstream code saves another layout (I-JEPA: ``encoder``, ``predictor``,
``target_encoder``, ``opt``, ``epoch``, ...) write that layout instead; the sidecar is the same.
Every file is written with :func:`benchmark.core.io.atomic_write`, so a crash never leaves a
truncated checkpoint. The ``.pth`` is written to a temporary file, then the sidecar, and only then
is the ``.pth`` renamed into place: a failure in either write (a full disk) leaves both previous
files as they were, and a ``.pth`` (what ``--resume auto`` looks for) always has its sidecar. A
kill during a write can leave a hidden ``.<name>.<random>.tmp`` file, removed by
:func:`remove_stale_temps` when the run restarts.
Loading for the benchmark (any format) lives in ``pretrain/weights.py``.
"""

from __future__ import annotations

import json
import os
import pickle
import re
import zipfile
from pathlib import Path

import torch
from sarjepa.benchmark.core.errors import SarjepaError, not_a_file
from sarjepa.benchmark.core.io import atomic_torch_save, atomic_write_json
from sarjepa.benchmark.core.provenance import code_version

SIDECAR_FORMAT = "sarjepa-pretrain/1"
_CKPT_RE = re.compile(r"^checkpoint-(\d+)\.pth$")
# temporary files of atomic_write (``.<name>.<mkstemp part>.tmp``) for the files a run writes
_TEMP_RE = re.compile(r"^\.(checkpoint-\d+\.(pth|json)|config\.yaml|log\.txt)\.\w+\.tmp$")


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


def save_checkpoint(out_dir: str | os.PathLike, epoch: int, entries: dict, sidecar: dict) -> Path:
    """Write ``checkpoint-<epoch>.pth`` and its sidecar atomically; return the .pth path.

    Order: the ``.pth``'s temporary file, the sidecar (atomically), the ``.pth``'s rename.

    Args:
        out_dir: output folder (created if needed).
        epoch: 0-based index of the last finished epoch.
        entries: the checkpoint dict (a method's :meth:`checkpoint_entries`).
        sidecar: the metadata dict; ``format`` and ``epoch`` are filled in here.
    """
    path = checkpoint_path(out_dir, epoch)
    meta = {"format": SIDECAR_FORMAT, **sidecar, "epoch": int(epoch)}
    atomic_torch_save(
        entries, path, before_replace=lambda: atomic_write_json(meta, sidecar_path(path), indent=2)
    )
    return path


def remove_stale_temps(out_dir: str | os.PathLike) -> list[str]:
    """Delete the temporary files a killed run left in ``out_dir``; return their names."""
    out = Path(out_dir)
    if not out.is_dir():
        return []
    stale = sorted(p.name for p in out.iterdir() if _TEMP_RE.match(p.name) and p.is_file())
    for name in stale:
        (out / name).unlink(missing_ok=True)
    return stale


def describe_load_error(path: str | os.PathLike, exc: BaseException) -> str:
    """What is wrong with a file ``torch.load`` refused, in a few words (for one-line errors)."""
    p = Path(path)
    try:
        size = p.stat().st_size
        with open(p, "rb") as f:
            head = f.read(4)
    except OSError as err:
        return err.strerror or type(err).__name__
    if size == 0:
        return "the file is empty"
    if head == b"PK\x03\x04" and not zipfile.is_zipfile(p):
        return f"truncated ({size} bytes, the end of its zip archive is missing)"
    if isinstance(exc, pickle.UnpicklingError):
        glob = re.search(r"Unsupported global: GLOBAL ([\w.]+)", str(exc))
        if glob:
            return f"it holds a '{glob.group(1)}' object, which safe (weights_only) loading refuses"
    if head[:1] != b"\x80" and head != b"PK\x03\x04":
        return "not a PyTorch file (neither a zip archive nor a pickle)"
    first = " ".join(str(exc).split()).split(". ")[0][:160] or type(exc).__name__
    return f"damaged or truncated ({first})"


def load_checkpoint(path: str | os.PathLike) -> dict:
    """Load a checkpoint dict (``weights_only=True``, on CPU).

    Raises:
        SarjepaError: missing, truncated or foreign file (the message names it and says what is
            wrong).
    """
    path = Path(path)
    if not path.is_file():
        raise not_a_file("checkpoint", path)
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise SarjepaError(
            f"cannot load checkpoint '{path}': {describe_load_error(path, exc)}"
        ) from None
    if not isinstance(obj, dict) or "epoch" not in obj:
        what = f"a {type(obj).__name__}" if not isinstance(obj, dict) else "a dict without 'epoch'"
        raise SarjepaError(
            f"checkpoint '{path}' is not a pretraining checkpoint of sarjepa pretrain (it holds "
            f"{what})"
        )
    epoch = obj["epoch"]
    if isinstance(epoch, bool) or not isinstance(epoch, int) or epoch < 0:
        raise SarjepaError(f"checkpoint '{path}': 'epoch' is {epoch!r}, not an epoch number")
    return obj


def read_sidecar(ckpt: str | os.PathLike) -> dict:
    """The sidecar dict of a checkpoint written by ``sarjepa pretrain``, or ``{}`` if it has none
    (a third-party file, or a JSON file of another kind beside it).

    Raises:
        SarjepaError: the sidecar exists but is not valid JSON (the message names it).
    """
    side = sidecar_path(ckpt)
    if not side.is_file():
        return {}
    try:
        meta = json.loads(side.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise SarjepaError(f"checkpoint metadata '{side}' is not valid JSON: {exc}") from None
    if not isinstance(meta, dict) or not str(meta.get("format", "")).startswith(
        SIDECAR_FORMAT.split("/")[0] + "/"
    ):
        return {}
    return meta


def checkpoint_args(cfg, method, world: int, eff: int, lr: float) -> dict:
    """``args`` of the checkpoint: plain dict with ``arch``, the authors' argument names and
    the full resolved config."""
    from sarjepa.benchmark.core.configs import cfg_to_dict

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
    from sarjepa.pretrain.data import preprocessing_dict

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
