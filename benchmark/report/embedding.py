"""2-D maps of each method's test features: frozen-encoder features, t-SNE, coloured by class.

Per method x dataset one cell stands for the method (a linear-probe, kNN or logreg cell first:
their features are in the feature cache). Its test images (from ``predictions.csv``, at most
``max_points`` of them, drawn with a fixed seed) get their pooled encoder features

1. from the feature cache the cell recorded (``feature_cache_key`` under its ``RUN.CACHE_DIR``,
   see :mod:`benchmark.features`), when every drawn image is in it; else
2. recomputed on the CPU from the checkpoint the cell recorded (``MODEL.INIT_WEIGHTS``, checked
   against ``checkpoint_sha256``; a random-init method is rebuilt with the cell's seed) with the
   cell's test preprocessing.

Features are L2-normalised (the cosine geometry of the kNN probe) and mapped by scikit-learn's
``TSNE`` (PCA initialisation, ``random_state`` fixed, perplexity ``min(30, (N - 1) / 3)``). A
method whose images or checkpoint are not at hand gets a note instead of a map.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from sarjepa.benchmark.core.errors import SarjepaError
from sarjepa.benchmark.report.cells import Cell

#: Cells whose features the protocol caches, preferred as a method's representative.
CACHED_PROTOCOLS = ("linear", "knn", "logreg")


@dataclass(frozen=True)
class Embedding:
    """A method's test features on one dataset, mapped to 2-D.

    Attributes:
        dataset, method: what is shown.
        points: ``(N, 2)`` t-SNE coordinates (empty when ``note`` says why there are none).
        labels: ``(N,)`` true class indices.
        classnames: ``(C,)`` names.
        source: where the features came from (one line).
        note: why there is no map ("" when there is one).
    """

    dataset: str
    method: str
    points: np.ndarray
    labels: np.ndarray
    classnames: list[str]
    source: str = ""
    note: str = ""


def representative(cells: Sequence[Cell]) -> dict[tuple[str, str], Cell]:
    """One cell per (dataset, method): a cached-feature protocol first, then the lowest shots
    and seed."""
    best: dict[tuple[str, str], Cell] = {}
    for c in cells:
        rank = (c.protocol not in CACHED_PROTOCOLS, c.shots, c.seed, c.protocol)
        key = (c.dataset, c.method)
        old = best.get(key)
        if old is None or rank < (
            old.protocol not in CACHED_PROTOCOLS,
            old.shots,
            old.seed,
            old.protocol,
        ):
            best[key] = c
    return best


def draw(n: int, max_points: int, seed: int = 0) -> np.ndarray:
    """Sorted indices of at most ``max_points`` of ``n`` items (all when ``n <= max_points``)."""
    if n <= max_points:
        return np.arange(n)
    return np.sort(np.random.default_rng(seed).choice(n, size=max_points, replace=False))


def _image_paths(cell: Cell, idx: np.ndarray) -> list[str]:
    p = cell.predictions
    root = p.image_root
    return [str(Path(root, p.images[i])) if root else p.images[i] for i in idx]


def cached_features(cell: Cell, paths: list[str]) -> tuple[np.ndarray, str] | None:
    """Features of ``paths`` from the cell's feature cache, or None if any is missing."""
    from sarjepa.benchmark.features import resolve_cache_dir
    from yacs.config import CfgNode as CN

    prov = cell.result.get("provenance", {})
    key = str(prov.get("feature_cache_key", ""))
    if not key:
        return None
    store = resolve_cache_dir(CN(prov.get("config", {}))) / "features" / f"{key}.npz"
    try:
        with np.load(store, allow_pickle=False) as z:
            files, feats = z["files"].tolist(), z["features"]
    except (OSError, ValueError, KeyError):
        return None
    row = {f: i for i, f in enumerate(files)}
    rows = [row.get(str(Path(p).resolve()), -1) for p in paths]
    if min(rows, default=-1) < 0:
        return None
    return np.asarray(feats[rows], dtype=np.float32), f"feature cache {key}"


def recomputed_features(cell: Cell, paths: list[str]) -> tuple[np.ndarray, str]:
    """Features of ``paths`` from the cell's checkpoint, on the CPU.

    Raises:
        SarjepaError: the checkpoint or an image is missing, or the checkpoint has changed.
    """
    import torch
    from sarjepa.benchmark.backbone import encoder_from_cfg
    from sarjepa.benchmark.features import Backbone, extract
    from sarjepa.dassl_patches.transforms import build_transform
    from yacs.config import CfgNode as CN

    prov = cell.result.get("provenance", {})
    cfg = CN(prov.get("config", {}))
    ckpt = str(cfg.MODEL.INIT_WEIGHTS or "")
    if ckpt and not Path(ckpt).is_file():
        raise SarjepaError(f"checkpoint '{ckpt}' not found")
    for p in paths:
        if not Path(p).is_file():
            raise SarjepaError(f"test image '{p}' not found")
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(max(int(cell.seed), 0))  # a random init: the cell's seed
        weights = encoder_from_cfg(cfg, log=lambda _msg: None)
    recorded = str(prov.get("checkpoint_sha256", ""))
    if ckpt and recorded and weights.sha256 and weights.sha256 != recorded:
        raise SarjepaError(f"checkpoint '{ckpt}' has changed since the run (SHA-256 differs)")
    backbone = Backbone(weights.encoder)
    feats = extract(backbone, paths, build_transform(cfg, is_train=False), torch.device("cpu"))
    what = f"checkpoint {Path(ckpt).name}" if ckpt else f"random init, seed {cell.seed}"
    return feats.numpy(), f"recomputed on the CPU from the {what}"


def tsne_2d(features: np.ndarray, seed: int = 0) -> np.ndarray:
    """t-SNE of L2-normalised ``(N, D)`` features -> ``(N, 2)`` (see the module docstring)."""
    from sklearn.manifold import TSNE

    x = np.asarray(features, dtype=np.float64)
    x = x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)
    perplexity = min(30.0, (len(x) - 1) / 3.0)
    tsne = TSNE(n_components=2, perplexity=perplexity, init="pca", random_state=seed)
    return tsne.fit_transform(x)


def embed(cell: Cell, max_points: int = 600, seed: int = 0) -> Embedding:
    """The :class:`Embedding` of a representative cell (a note instead when it cannot be made)."""
    p = cell.predictions
    idx = draw(len(p.images), max_points, seed)
    labels = p.labels[idx]
    empty = np.zeros((0, 2))
    base = dict(dataset=cell.dataset, method=cell.method, classnames=p.classnames)
    if len(idx) < 5:
        return Embedding(points=empty, labels=labels, note="fewer than 5 test images", **base)
    paths = _image_paths(cell, idx)
    found = cached_features(cell, paths)
    try:
        feats, source = found if found is not None else recomputed_features(cell, paths)
    except SarjepaError as exc:
        return Embedding(points=empty, labels=labels, note=f"no features: {exc}", **base)
    source += (
        f"; {len(idx)} of {len(p.images)} {p.split} images of the {cell.protocol} "
        f"{cell.shots}-shot seed-{cell.seed} cell"
    )
    return Embedding(points=tsne_2d(feats, seed), labels=labels, source=source, **base)
