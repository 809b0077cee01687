"""Feature probes: ``MIM_knn`` and ``MIM_logreg``, fitted in seconds on cached features.

Both freeze the backbone and work on its pooled features (the pooling of the checkpoint's
family: CLS after the final norm for the MAE family and SAR-JEPA, mean of tokens for I-JEPA),
extracted once per image through :mod:`benchmark.features` (the disk cache of the linear probe,
so a grid's cells of one checkpoint share it). There is no optimiser and no epoch schedule.

``MIM_knn`` (weighted k-nearest neighbours, as the kNN monitor of DINO and solo-learn):
features are L2-normalised; for a test feature the ``k = min(TRAINER.KNN.K, N_train)`` training
features of highest cosine similarity ``s`` vote for their labels with weight
``exp(s / TRAINER.KNN.T)``; the class with the largest summed weight wins (ties: lowest label).

``MIM_logreg`` (logistic regression, as the ``lpclip`` linear probe of CoOp that the SAR-JEPA
authors use): features are standardised with the training set's mean and standard deviation
(population std; dimensions with std < 1e-6 are only centred); a multinomial L2-regularised
logistic regression (scikit-learn ``LogisticRegression``, lbfgs, ``TRAINER.LOGREG.MAX_ITER``
iterations) is fitted on the K-shot training set for each inverse regularisation ``C`` in
``TRAINER.LOGREG.C_GRID``; the ``C`` with the highest selection accuracy wins (ties: the
smaller ``C``), then ``TRAINER.LOGREG.REFINE_STEPS`` rounds of a log-space search
around it (factors ``10**(+-w)`` with ``w`` = 1, 1/2, 1/4, ...; a neighbour replaces the peak
only if strictly better). The model fitted on the training set with the chosen ``C`` is the one
tested. No test image takes part in the choice: the selection accuracy is that of the few-shot
*val* split when no val image is a test image (same file path); when the val split overlaps the
test set (SAR_ACD's and SARFolder's single-folder layouts draw val from the test pool) it is the
pooled accuracy of a stratified ``k``-fold cross-validation on the training shots (``k`` =
min(5, smallest class count), shuffled with seed 0, standardised within each fold). Without a
val split, or with one shot per class and an overlapping val split, ``TRAINER.LOGREG.C`` is used.
``result.json`` records the rule (``logreg_c_selection``: ``val``, ``cv<k>-train`` or ``config``).
"""

from __future__ import annotations

import functools
import math
import os
from collections.abc import Callable
from typing import Any

import numpy as np
import torch
from sarjepa.benchmark.config import register_cfg_extension
from sarjepa.benchmark.core.errors import SarjepaError
from sarjepa.benchmark.evaluator import Classification
from sarjepa.benchmark.trainers import TRAINER_REGISTRY
from sarjepa.benchmark.trainers.mim_linear import MIMLinear
from torch import Tensor, nn
from yacs.config import CfgNode as CN

STD_FLOOR = 1e-6


@register_cfg_extension
def _extend_cfg(cfg: CN) -> None:
    """``TRAINER.KNN.*`` and ``TRAINER.LOGREG.*``: options of the feature probes."""
    cfg.TRAINER.KNN = CN()
    cfg.TRAINER.KNN.K = 20  # neighbours (DINO's default); capped at the training-set size
    cfg.TRAINER.KNN.T = 0.07  # temperature of the vote weights exp(cos / T)
    cfg.TRAINER.LOGREG = CN()
    cfg.TRAINER.LOGREG.C_GRID = [1e-6, 1e-4, 1e-2, 1.0, 1e2, 1e4, 1e6]  # lpclip's first search
    cfg.TRAINER.LOGREG.REFINE_STEPS = 4  # log-space refinement rounds around the best C
    cfg.TRAINER.LOGREG.C = 1.0  # used when the dataset has no val split
    cfg.TRAINER.LOGREG.MAX_ITER = 1000


def knn_scores(
    train: Tensor, train_labels: Tensor, test: Tensor, num_classes: int, k: int, t: float
) -> Tensor:
    """Summed vote weights per class of each test feature (weighted cosine kNN).

    Args:
        train: ``(N, D)`` training features; train_labels: ``(N,)`` int64 in ``[0, C)``.
        test: ``(M, D)`` features to classify.
        num_classes: C.
        k: neighbours (``1 <= k``; capped at N).
        t: temperature (> 0).

    Returns:
        ``(M, C)`` float64 votes; ``argmax`` is the prediction.
    """
    if k < 1 or not t > 0:
        raise SarjepaError(f"kNN needs TRAINER.KNN.K >= 1 and TRAINER.KNN.T > 0, got {k}, {t}")
    a = nn.functional.normalize(train.double(), dim=1)
    b = nn.functional.normalize(test.double(), dim=1)
    sim = b @ a.T
    top, idx = sim.topk(min(k, a.shape[0]), dim=1)
    votes = torch.zeros(b.shape[0], num_classes, dtype=torch.float64)
    votes.scatter_add_(1, train_labels[idx], (top / t).exp())
    return votes


def feature_stats(train: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per-dimension mean and (population) std of ``(N, D)`` training features; a std below
    :data:`STD_FLOOR` becomes 1 (that dimension is only centred)."""
    std = train.std(0)
    return train.mean(0), np.where(std < STD_FLOOR, 1.0, std)


def standardise(train: np.ndarray, *others: np.ndarray) -> list[np.ndarray]:
    """Centre and scale every array with the training set's per-dimension mean and std."""
    mean, std = feature_stats(train)
    return [(x - mean) / std for x in (train, *others)]


CV_FOLDS = 5  # folds of the cross-validation on the training shots (fewer for tiny classes)


def one_blas_thread():
    """A context in which BLAS (scipy's / numpy's OpenBLAS) runs on one thread.

    The probes' arrays are small (K-shot x D, D x classes): a second BLAS thread buys nothing,
    and its spin-waiting made an lbfgs fit ~8x slower on a busy 2-core box (250 vs 31 ms); the
    fitted coefficients are bitwise the same (tests/test_probes.py).
    """
    from threadpoolctl import threadpool_limits

    return threadpool_limits(limits=1, user_api="blas")


def _fit(x: np.ndarray, y: np.ndarray, c: float, max_iter: int) -> Any:
    import warnings

    from sklearn.exceptions import ConvergenceWarning
    from sklearn.linear_model import LogisticRegression

    clf = LogisticRegression(C=c, max_iter=max_iter, random_state=0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        return clf.fit(x, y)


def _search(acc: Callable[[float], float], grid: list[float], refine_steps: int) -> float:
    """The C of highest ``acc`` on ``grid`` (ties: smaller C), refined in log space."""
    best = min(sorted(grid), key=lambda c: (-acc(c), c))
    width = 1.0
    for _ in range(refine_steps):
        for c in (best * 10.0**-width, best * 10.0**width):
            if acc(c) > acc(best):
                best = c
        width /= 2
    return best


def choose_c(
    train: tuple[np.ndarray, np.ndarray],
    val: tuple[np.ndarray, np.ndarray],
    grid: list[float],
    refine_steps: int,
    max_iter: int,
    fitted: dict[float, Any] | None = None,
) -> tuple[float, list[tuple[float, float]]]:
    """The inverse regularisation with the best val accuracy (see the module docstring).

    Args:
        fitted: if given, filled with ``C -> the model fitted on train`` for every C tried (the
            chosen C's model is then the final one: same data, same C, same deterministic fit).

    Returns:
        ``(best C, [(C, val accuracy %) in the order tried])``.
    """
    tried: dict[float, float] = {}

    def acc(c: float) -> float:
        if c not in tried:
            clf = _fit(train[0], train[1], c, max_iter)
            tried[c] = 100.0 * float((clf.predict(val[0]) == val[1]).mean())
            if fitted is not None:
                fitted[c] = clf
        return tried[c]

    return _search(acc, grid, refine_steps), list(tried.items())


def cv_folds(labels: np.ndarray, max_folds: int = CV_FOLDS) -> list[tuple[np.ndarray, np.ndarray]]:
    """Stratified, shuffled (seed 0) ``k``-fold splits of the training shots, ``k`` =
    min(``max_folds``, smallest class count); ``[]`` when a class has a single shot."""
    from sklearn.model_selection import StratifiedKFold

    k = min(max_folds, int(np.bincount(labels)[np.unique(labels)].min()))
    if k < 2:
        return []
    folds = StratifiedKFold(n_splits=k, shuffle=True, random_state=0)
    return list(folds.split(np.zeros(len(labels)), labels))


def choose_c_cv(
    train: tuple[np.ndarray, np.ndarray],
    folds: list[tuple[np.ndarray, np.ndarray]],
    grid: list[float],
    refine_steps: int,
    max_iter: int,
) -> tuple[float, list[tuple[float, float]]]:
    """As :func:`choose_c`, scored by the pooled held-out accuracy over ``folds`` of the raw
    (unstandardised) training features ``train``; each fold is standardised with its own part."""
    x, y = train
    tried: dict[float, float] = {}

    def acc(c: float) -> float:
        if c not in tried:
            right = 0
            for fit_idx, held_idx in folds:
                xf, xh = standardise(x[fit_idx], x[held_idx])
                right += int((_fit(xf, y[fit_idx], c, max_iter).predict(xh) == y[held_idx]).sum())
            tried[c] = 100.0 * right / len(y)
        return tried[c]

    return _search(acc, grid, refine_steps), list(tried.items())


@functools.lru_cache(maxsize=8)
def _real_paths(paths: tuple[str, ...]) -> frozenset[str]:
    """The resolved paths of ``paths``, kept per process: a grid's cells share one test set,
    whose ~1,500 ``realpath`` calls cost ~0.1 s a cell."""
    return frozenset(os.path.realpath(p) for p in paths)


def overlaps_test(items: list, test: list) -> bool:
    """Whether any Datum of ``items`` is an image of ``test`` (same normalised file path)."""
    keys = _real_paths(tuple(d.impath for d in test))
    return any(os.path.realpath(d.impath) in keys for d in items)


def c_selection_images(dataset: Any) -> tuple[str, list]:
    """Which images choose C: ``("val", val)`` when the val split shares no image with the test
    set, ``("train", train_x)`` (cross-validation on the shots) when it does, ``("config", [])``
    without a val split."""
    if not dataset.val:
        return "config", []
    if overlaps_test(dataset.val, dataset.test):
        return "train", list(dataset.train_x)
    return "val", list(dataset.val)


class _FeatureProbe(MIMLinear):
    """Shared part of the probes: frozen backbone, cached features, no optimiser."""

    gradient_trained = False

    def build_model(self) -> None:
        super().build_model()
        if not self.cached:
            raise SarjepaError(
                f"{self.cfg.TRAINER.NAME} needs fixed features: remove the random training "
                "augmentation (INPUT.TRANSFORMS) and keep TRAINER.LINEAR.CACHE_FEATURES True"
            )
        self.model = self.backbone

    def _split(self, items: list, desc: str) -> tuple[Tensor, Tensor]:
        labels = torch.tensor([d.label for d in items], dtype=torch.int64)
        return self._features(items, desc), labels

    def train(self) -> None:
        import time

        start = time.time()
        if not self.dataset.train_x:
            raise SarjepaError("the training set is empty")
        self.train_x = self._split(self.dataset.train_x, "train features")
        self.fit()
        self.train_seconds = time.time() - start

    def fit(self) -> None:
        raise NotImplementedError

    def scores(self, feats: Tensor) -> Tensor:
        """``(M, C)`` class scores of features (argmax = prediction)."""
        raise NotImplementedError

    @torch.no_grad()
    def test(self) -> dict[str, Any]:
        split, items = self.eval_items()
        feats, labels = self._split(items, f"{split} features")
        evaluator = Classification(self.lab2cname, bool(self.cfg.TEST.PER_CLASS_RESULT), self.log)
        self.log(f"Evaluate on the *{split}* set")
        evaluator.process(self.scores(feats).float(), labels)
        return self.finish_eval(split, items, evaluator)


@TRAINER_REGISTRY.register("MIM_knn")
class MIMKnn(_FeatureProbe):
    """Weighted cosine kNN on frozen features (``TRAINER.NAME MIM_knn``)."""

    def fit(self) -> None:
        opts = self.cfg.TRAINER.KNN
        self.k, self.t = int(opts.K), float(opts.T)
        if self.k < 1 or not self.t > 0:
            raise SarjepaError(
                f"kNN needs TRAINER.KNN.K >= 1 and TRAINER.KNN.T > 0, got {self.k}, {self.t}"
            )
        self.log(f"kNN: k = {min(self.k, len(self.train_x[1]))}, T = {self.t}")

    def scores(self, feats: Tensor) -> Tensor:
        x, y = self.train_x
        return knn_scores(x, y, feats, self.num_classes, self.k, self.t)

    def provenance(self) -> dict[str, Any]:
        return dict(super().provenance(), knn_k=self.k, knn_t=self.t)


@TRAINER_REGISTRY.register("MIM_logreg")
class MIMLogreg(_FeatureProbe):
    """Logistic regression on standardised frozen features (``TRAINER.NAME MIM_logreg``)."""

    def fit(self) -> None:
        with one_blas_thread():
            self._fit_logreg()

    def _fit_logreg(self) -> None:
        opts = self.cfg.TRAINER.LOGREG
        max_iter = int(opts.MAX_ITER)
        grid = [float(c) for c in opts.C_GRID]
        if not grid or any(not (c > 0 and math.isfinite(c)) for c in grid):
            raise SarjepaError(f"TRAINER.LOGREG.C_GRID must hold positive numbers, got {grid}")
        x, y = self.train_x
        xd, yn = x.double().numpy(), y.numpy()
        rule, items = c_selection_images(self.dataset)
        refine = int(opts.REFINE_STEPS)
        folds = cv_folds(yn) if rule == "train" else []
        self.stats = mean, std = feature_stats(xd)  # as standardise(xd, ...) uses them
        xs = (xd - mean) / std
        fitted: dict[float, Any] = {}  # models of the val search, fitted on (xs, yn)
        if rule == "val":
            vx, vy = self._split(items, "val features")
            vxs = (vx.double().numpy() - mean) / std
            self.c, self.tried = choose_c(
                (xs, yn), (vxs, vy.numpy()), grid, refine, max_iter, fitted
            )
            self.c_selection = "val"
        elif folds:
            self.c, self.tried = choose_c_cv((xd, yn), folds, grid, refine, max_iter)
            self.c_selection = f"cv{len(folds)}-train"
        else:
            self.c, self.tried, self.c_selection = float(opts.C), [], "config"
        if self.tried:
            best = dict(self.tried)[self.c]
            self.log(
                f"logreg: C = {self.c:.4g} ({self.c_selection} accuracy {best:.1f}%, "
                f"{len(self.tried)} fits)"
            )
        else:
            self.log(f"logreg: C = TRAINER.LOGREG.C = {self.c:.4g} (no test-free val split)")
        self.clf = fitted[self.c] if self.c in fitted else _fit(xs, yn, self.c, max_iter)

    def scores(self, feats: Tensor) -> Tensor:
        mean, std = self.stats
        xs = (feats.double().numpy() - mean) / std
        proba = np.zeros((xs.shape[0], self.num_classes))
        with one_blas_thread():
            proba[:, self.clf.classes_] = self.clf.predict_proba(xs)
        return torch.from_numpy(proba)

    def provenance(self) -> dict[str, Any]:
        return dict(
            super().provenance(),
            logreg_c=self.c,
            logreg_c_selection=self.c_selection,
            logreg_c_search=self.tried,
        )
