"""Backbone features of image lists, with an on-disk cache that is never stale.

The few-shot protocol applies no augmentation, so a frozen backbone's feature of an image depends
only on the weights, the architecture and pooling, the preprocessing, the numeric mode and the
image file. The linear probe therefore extracts each image once and trains on stored features.

Cache layout (under ``RUN.CACHE_DIR``, default ``$SARJEPA_CACHE`` or ``~/.cache/sarjepa``)::

    features/<key>.npz    files (N,) str, stamps (N, 2) int64 [size, mtime_ns], features (N, D) f32
    features/<key>.json   what the key stands for (human-readable)

``key`` is the SHA-256 (first 32 hex digits) of the checkpoint file's SHA-256, the part of the file
used, the architecture with its pooling, the preprocessing (``preprocessing_dict``), the numeric
mode (fp32 / bf16) and :data:`FEATURE_CODE_VERSION` with the package version. Inside a store each
image is identified by its resolved path *and* its size and modification time, so an edited or
replaced file is re-extracted; the stamps of the requested files form the dataset file-list
fingerprint. A random-init backbone (seeded per cell) is keyed by the SHA-256 of its weights instead
of a file's, so the cells of one seed share its features. Stores are replaced atomically (temporary
file + rename); two processes updating one store concurrently may lose each other's additions (they
are recomputed later), never corrupt it. A store that cannot be read (damaged on disk, arrays that
do not fit together) is reported with a warning and rebuilt from the images.
"""

from __future__ import annotations

import functools
import hashlib
import json
import logging
import os
from collections import OrderedDict
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from sarjepa.benchmark import __version__
from sarjepa.benchmark.core.errors import SarjepaError
from sarjepa.benchmark.core.io import atomic_numpy_save, atomic_write_json
from sarjepa.benchmark.core.runtime import autocast, iterate
from torch import Tensor, nn
from torch.utils.data import DataLoader, Dataset

FEATURE_CODE_VERSION = "1"
logger = logging.getLogger("sarjepa.features")


class Backbone(nn.Module):
    """Encoder -> pooled feature: ``(B, C, H, W)`` images -> ``(B, D)``.

    A 1-channel batch is repeated to the encoder's ``in_chans`` (e.g. 3-channel MAE weights).
    """

    def __init__(self, encoder: nn.Module) -> None:
        super().__init__()
        self.encoder = encoder
        self.in_chans = int(encoder.in_chans)
        self.dim = int(encoder.embed_dim)

    def forward(self, x: Tensor) -> Tensor:
        if x.shape[1] == 1 and self.in_chans > 1:
            x = x.expand(-1, self.in_chans, -1, -1)
        # contiguous: a CLS slice is a strided view, and kernels round differently on those
        return self.encoder.pool(self.encoder.forward_features(x)).contiguous()


class ImageDataset(Dataset):
    """``(transform(read_image_gray(path)), label)`` for a list of paths (labels optional).

    With a :class:`~dassl_patches.transforms.SARTransform`, the decoded, cropped and resized
    8-bit chip comes from the process's :mod:`benchmark.decode_cache` (bitwise the same tensors).
    """

    def __init__(
        self, paths: Sequence[str], labels: Sequence[int] | None, transform: Callable
    ) -> None:
        self.paths = list(paths)
        self.labels = list(labels) if labels is not None else [-1] * len(self.paths)
        self.transform = transform

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, i: int) -> tuple[Tensor, int]:
        from sarjepa.benchmark.decode_cache import process_cache

        t = self.transform
        img = process_cache().prepared(self.paths[i], t)
        return (t.finish(img) if hasattr(t, "finish") else t(img)), self.labels[i]


def resolve_cache_dir(cfg: Any) -> Path:
    """``RUN.CACHE_DIR``, else ``$SARJEPA_CACHE``, else ``~/.cache/sarjepa``."""
    from sarjepa.benchmark.datasets.splits import resolve_cache_dir as _resolve

    return _resolve(str(cfg.RUN.CACHE_DIR or ""))


@torch.no_grad()
def extract(
    backbone: nn.Module,
    paths: Sequence[str],
    transform: Callable,
    device: torch.device,
    amp: str = "off",
    batch_size: int = 64,
    num_workers: int = 0,
    progress: bool = False,
    desc: str = "features",
) -> Tensor:
    """Run ``backbone`` (eval mode) on images, in order.

    The global RNG states are saved and restored around the pass (a DataLoader draws a seed), so
    extraction does not change the random stream of the training that follows.

    Returns:
        ``(N, D)`` float32 on the CPU.
    """
    from tqdm import tqdm

    if not paths:
        return torch.zeros(0, int(getattr(backbone, "dim", 0)))
    loader = DataLoader(
        ImageDataset(paths, None, transform),
        batch_size=batch_size,
        shuffle=False,
        num_workers=min(num_workers, os.cpu_count() or 1),
        pin_memory=device.type == "cuda",
    )
    was_training = backbone.training
    backbone.eval()
    out = []
    with torch.random.fork_rng(devices=[]):
        batches = iterate(loader)
        for x, _ in tqdm(batches, total=len(loader), desc=desc, disable=not progress, leave=False):
            with autocast(device, amp):
                f = backbone(x.to(device, non_blocking=True))
            out.append(f.float().cpu())
    backbone.train(was_training)
    return torch.cat(out)


def cache_key(spec: dict[str, Any]) -> str:
    """First 32 hex digits of the SHA-256 of ``spec`` as canonical JSON."""
    blob = json.dumps(spec, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:32]


@functools.lru_cache(maxsize=1 << 17)
def _resolved(cwd: str, path: str) -> str:
    """``Path(path).resolve()`` from ``cwd``, memoised per process: a grid's cells resolve the
    same thousands of image paths (a changed file is told by its stamps, not by its name)."""
    return str(Path(cwd, path).resolve())


def file_stamps(paths: Sequence[str]) -> tuple[list[str], np.ndarray]:
    """Resolved paths and ``(N, 2)`` int64 ``[size, mtime_ns]`` of each file."""
    resolved, stamps = [], []
    cwd = os.getcwd()
    for p in paths:
        try:
            st = os.stat(p)
        except OSError:
            raise SarjepaError(f"image file not found: '{p}'") from None
        resolved.append(_resolved(cwd, str(p)))
        stamps.append((st.st_size, st.st_mtime_ns))
    return resolved, np.asarray(stamps, dtype=np.int64).reshape(-1, 2)


_Stored = tuple[list[str], np.ndarray, np.ndarray, dict[str, int]]
#: The stores this process read or wrote last: ``str(path) -> ((inode, size, mtime_ns), arrays)``.
#: A grid's cells look up the same store twice per cell; a file replaced since (by this or
#: another process) has another signature and is read again.
_MEMO: OrderedDict[str, tuple[tuple[int, int, int], _Stored]] = OrderedDict()
_MEMO_STORES = 4


def _signature(path: Path) -> tuple[int, int, int] | None:
    try:
        st = os.stat(path)
    except OSError:
        return None
    return st.st_ino, st.st_size, st.st_mtime_ns


def _remember(path: Path, sig: tuple[int, int, int] | None, stored: _Stored) -> None:
    if sig is None:
        return
    for arr in stored[1:3]:
        arr.flags.writeable = False  # shared by every later lookup
    _MEMO[str(path)] = (sig, stored)
    _MEMO.move_to_end(str(path))
    while len(_MEMO) > _MEMO_STORES:
        _MEMO.popitem(last=False)


class FeatureStore:
    """One ``.npz`` of features for one cache key (see the module docstring).

    Args:
        directory: the ``features`` folder.
        spec: what the key stands for; hashed with :func:`cache_key`.
    """

    def __init__(self, directory: str | Path, spec: dict[str, Any]) -> None:
        self.directory = Path(directory)
        self.spec = dict(spec, code=f"{FEATURE_CODE_VERSION}/{__version__}")
        self.key = cache_key(self.spec)
        self.path = self.directory / f"{self.key}.npz"

    def _read(self, warn: bool = True) -> _Stored | None:
        """``(files, stamps (N, 2), features (N, D), file -> row)`` of the store (read-only,
        from this process's memo while the file is unchanged); None if absent or damaged (a
        damaged store is treated as absent, with a warning, and rewritten by :meth:`add`)."""
        if not self.path.is_file():
            return None
        sig = _signature(self.path)
        hit = _MEMO.get(str(self.path))
        if hit is not None and hit[0] == sig:
            return hit[1]
        try:
            with np.load(self.path, allow_pickle=False) as z:
                files, stamps, feats = z["files"].tolist(), z["stamps"], z["features"]
            n = len(files)
            if stamps.shape != (n, 2) or feats.ndim != 2 or feats.shape[0] != n:
                raise ValueError(f"arrays of {n} files, stamps {stamps.shape}, {feats.shape}")
            stored = (files, stamps, feats, {f: i for i, f in enumerate(files)})
            _remember(self.path, sig, stored)
            return stored
        except Exception as exc:  # zip, npy or shape errors: rebuild
            if warn:
                reason = " ".join(str(exc).split())[:160] or type(exc).__name__
                logger.warning(
                    "feature cache '%s' is unreadable (%s): rebuilding it", self.path, reason
                )
            return None

    def lookup(self, files: list[str], stamps: np.ndarray) -> tuple[np.ndarray | None, list[int]]:
        """Stored features of ``files`` whose stamps match.

        Returns:
            ``(features (N, D) float32 or None if nothing matched, indices still missing)``.
        """
        stored = self._read()
        if stored is None:
            return None, list(range(len(files)))
        _, s_stamps, s_feats, index = stored
        rows = np.asarray([index.get(f, -1) for f in files], dtype=np.int64)
        ok = rows >= 0
        ok[ok] = (s_stamps[rows[ok]] == stamps.reshape(-1, 2)[ok]).all(axis=1)
        out = np.zeros((len(files), s_feats.shape[1]), dtype=np.float32)
        out[ok] = s_feats[rows[ok]]
        missing = np.flatnonzero(~ok).tolist()
        return (out if len(missing) < len(files) else None), missing

    def add(self, files: list[str], stamps: np.ndarray, feats: np.ndarray) -> None:
        """Merge entries into the store (newer stamps win) and rewrite it atomically."""
        merged: dict[str, tuple[np.ndarray, np.ndarray]] = {}
        stored = self._read(warn=False)  # lookup() has warned about a damaged store
        if stored is not None and stored[2].shape[1] == feats.shape[1]:
            for f, s, v in zip(*stored[:3]):
                merged[f] = (s, v)
        for f, s, v in zip(files, stamps, feats):
            merged[f] = (s, v)
        names = sorted(merged)
        self.directory.mkdir(parents=True, exist_ok=True)
        arrays = {
            "files": np.asarray(names, dtype=str),
            "stamps": np.stack([merged[n][0] for n in names]).astype(np.int64),
            "features": np.stack([merged[n][1] for n in names]).astype(np.float32),
        }
        atomic_numpy_save(arrays, self.path)
        stored = (names, arrays["stamps"], arrays["features"], {f: i for i, f in enumerate(names)})
        _remember(self.path, _signature(self.path), stored)
        meta = self.path.with_suffix(".json")
        if not meta.is_file():
            spec = json.loads(json.dumps(self.spec, sort_keys=True, default=str))
            atomic_write_json(spec, meta)


def cached_extract(
    backbone: nn.Module,
    paths: Sequence[str],
    transform: Callable,
    device: torch.device,
    store: FeatureStore | None,
    log: Callable[[str], None] = print,
    **kwargs: Any,
) -> Tensor:
    """:func:`extract` through ``store``: only images without a valid stored feature are run.

    Returns:
        ``(N, D)`` float32 features on the CPU, in the order of ``paths``.
    """
    if store is None:
        return extract(backbone, paths, transform, device, **kwargs)
    files, stamps = file_stamps(paths)
    found, missing = store.lookup(files, stamps)
    if not missing:
        log(f"Features of {len(paths)} images from the cache ({store.key})")
        return torch.from_numpy(found)
    new = extract(backbone, [paths[i] for i in missing], transform, device, **kwargs)
    out = torch.zeros(len(paths), new.shape[1]) if found is None else torch.from_numpy(found)
    out[missing] = new
    try:
        store.add([files[i] for i in missing], stamps[missing], new.numpy())
    except OSError as exc:  # a cache that cannot be written (full disk): the run goes on
        logger.warning("feature cache not updated: %s", exc)
    log(
        f"Features of {len(paths)} images: {len(missing)} extracted, "
        f"{len(paths) - len(missing)} from the cache ({store.key})"
    )
    return out


def state_sha256(module: nn.Module) -> str:
    """Hex sha256 of ``module``'s state dict: names, dtypes, shapes and bytes, in name order."""
    h = hashlib.sha256()
    for name, t in sorted(module.state_dict().items()):
        t = t.detach().cpu().contiguous()
        h.update(f"{name}|{t.dtype}|{tuple(t.shape)}|".encode())
        h.update(t.view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    return h.hexdigest()


def feature_spec(weights: Any, preprocessing: dict[str, Any], amp: str) -> dict[str, Any] | None:
    """Cache-key ingredients for a :class:`~pretrain.weights.LoadedEncoder` (None: don't cache).

    A checkpoint is keyed by its file's sha256; a random init (``format`` "random", seeded per
    cell) by the sha256 of its weights, so the cells of one seed share its features instead of
    extracting them again (a demo grid has 4 such cells per seed).
    """
    if getattr(weights, "format", "") == "random" and getattr(weights, "encoder", None) is not None:
        return {
            "random_init_sha256": state_sha256(weights.encoder),
            "arch": weights.encoder.arch_dict(),
            "preprocessing": preprocessing,
            "amp": amp,
        }
    if not getattr(weights, "sha256", ""):
        return None
    return {
        "checkpoint_sha256": weights.sha256,
        "source": weights.source,
        "arch": weights.encoder.arch_dict(),
        "preprocessing": preprocessing,
        "amp": amp,
    }
