"""Dassl-compatible dataset core: ``Datum``, ``DatasetBase``, the registry and the samplers.

The sampling functions reproduce Dassl's (``DatasetBase.generate_fewshot_dataset``,
``split_dataset_by_label``) and CoOp's ``OxfordPets.split_trainval`` call for call, so that the
same ``random`` state gives the same lists. They take an optional ``rng`` (a ``random.Random``);
``None`` means the global ``random`` module, as in Dassl.
"""

from __future__ import annotations

import functools
import math
import os
import random
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import PurePath
from typing import Any

from sarjepa.benchmark.core.errors import SarjepaError
from sarjepa.benchmark.core.registry import Registry

DATASET_REGISTRY: Registry[Any] = Registry("dataset", case_insensitive=True)


@dataclass(frozen=True, slots=True)
class Datum:
    """One labelled image.

    Attributes:
        impath: image file path (the dataset folder as given, joined with the relative path).
        label: class index, 0-based.
        classname: class name (the class folder's name).
        domain: domain index (always 0 here; kept for Dassl compatibility).
    """

    impath: str
    label: int = 0
    classname: str = ""
    domain: int = 0


def _rand(rng: random.Random | None) -> Any:
    return random if rng is None else rng


def split_dataset_by_label(data_source: Sequence[Datum]) -> dict[int, list[Datum]]:
    """Group items by label; labels keep their order of first appearance."""
    output: dict[int, list[Datum]] = defaultdict(list)
    for item in data_source:
        output[item.label].append(item)
    return output


def split_dataset_by_domain(data_source: Sequence[Datum]) -> dict[int, list[Datum]]:
    """Group items by domain; domains keep their order of first appearance."""
    output: dict[int, list[Datum]] = defaultdict(list)
    for item in data_source:
        output[item.domain].append(item)
    return output


def generate_fewshot_dataset(
    *data_sources: Sequence[Datum],
    num_shots: int = -1,
    repeat: bool = False,
    rng: random.Random | None = None,
) -> Any:
    """Keep ``num_shots`` random items per label of each data source (Dassl's sampler).

    Per label (first-appearance order): ``sample(items, num_shots)`` if there are enough items,
    else all items with no random call (or ``choices(items, k=num_shots)`` if ``repeat``).

    Returns:
        The sampled list for one source, a list of lists for several; the sources unchanged if
        ``num_shots < 1``.
    """
    if num_shots < 1:
        return data_sources[0] if len(data_sources) == 1 else data_sources
    r = _rand(rng)
    output = []
    for data_source in data_sources:
        dataset: list[Datum] = []
        for items in split_dataset_by_label(data_source).values():
            if len(items) >= num_shots:
                dataset.extend(r.sample(items, num_shots))
            elif repeat:
                dataset.extend(r.choices(items, k=num_shots))
            else:
                dataset.extend(items)
        output.append(dataset)
    return output[0] if len(output) == 1 else output


def split_trainval(
    trainval: Sequence[Datum], p_val: float = 0.2, rng: random.Random | None = None
) -> tuple[list[Datum], list[Datum]]:
    """Split items per label into train and val (CoOp's ``OxfordPets.split_trainval``).

    Per label (first-appearance order): ``n_val = round(n * p_val)`` (Python rounding), one
    ``shuffle`` of the label's index list; the first ``n_val`` shuffled items go to val.

    Raises:
        SarjepaError: a class would get no validation item (Dassl asserts ``n_val > 0``).
    """
    r = _rand(rng)
    tracker: dict[int, list[int]] = defaultdict(list)
    for idx, item in enumerate(trainval):
        tracker[item.label].append(idx)
    train: list[Datum] = []
    val: list[Datum] = []
    for idxs in tracker.values():
        n_val = round(len(idxs) * p_val)
        if n_val <= 0:
            name = trainval[idxs[0]].classname or str(trainval[idxs[0]].label)
            raise SarjepaError(
                f"class '{name}' has {len(idxs)} image(s): too few to split off a validation part "
                f"(p_val={p_val})"
            )
        r.shuffle(idxs)
        for n, idx in enumerate(idxs):
            (val if n < n_val else train).append(trainval[idx])
    return train, val


def subsample_classes(*args: Sequence[Datum], subsample: str = "all") -> list[list[Datum]]:
    """Keep the base (first ceil(C/2) labels of the first source) or new half, relabelled from 0.

    CoOp's ``subsample_classes``; ``"all"`` returns the sources unchanged.
    """
    if subsample not in ("all", "base", "new"):
        raise SarjepaError(f"DATASET.SUBSAMPLE_CLASSES must be all, base or new, got '{subsample}'")
    if subsample == "all":
        return [list(a) for a in args]
    labels = sorted({item.label for item in args[0]})
    m = math.ceil(len(labels) / 2)
    selected = labels[:m] if subsample == "base" else labels[m:]
    relabel = {y: i for i, y in enumerate(selected)}
    return [
        [
            Datum(it.impath, relabel[it.label], it.classname, it.domain)
            for it in data
            if it.label in relabel
        ]
        for data in args
    ]


def posix_relpath(path: str, start: str) -> str:
    """``PurePath(os.path.relpath(path, start)).as_posix()``, without ``relpath``'s two
    ``abspath`` calls when ``path`` is a normalised path inside the normalised folder ``start``
    as given (the usual case: the readers join ``start`` and the names they list), where the
    answer is the rest of the string. A grid cell calls this for every test image twice."""
    n = len(start)
    if (
        path.startswith(start)
        and path[n : n + 1] == os.sep
        and _normalised(start)
        and os.path.normpath(path) == path
    ):
        rel = path[n + 1 :]
    else:
        rel = os.path.relpath(path, start)
    return rel if os.sep == "/" else PurePath(rel).as_posix()


@functools.lru_cache(maxsize=16)
def _normalised(folder: str) -> bool:
    return bool(folder) and os.path.normpath(folder) == folder


class DatasetBase:
    """A labelled dataset split into ``train_x``, ``val`` and ``test`` lists of ``Datum``.

    Args:
        train_x: labelled training items.
        val: validation items (may be empty).
        test: test items.
        train_u: unlabelled items (unused; Dassl compatibility).
        lab2cname: label -> class name for all classes; default: from ``train_x`` as Dassl does
            (then ``num_classes`` = max train label + 1).
        dataset_dir: folder the items' relative paths are relative to.
    """

    dataset_dir: str = ""

    def __init__(
        self,
        train_x: Sequence[Datum] | None = None,
        val: Sequence[Datum] | None = None,
        test: Sequence[Datum] | None = None,
        train_u: Sequence[Datum] | None = None,
        lab2cname: dict[int, str] | None = None,
        dataset_dir: str | PurePath | None = None,
    ) -> None:
        self._train_x = list(train_x or [])
        self._train_u = None if train_u is None else list(train_u)
        self._val = list(val or [])
        self._test = list(test or [])
        if dataset_dir is not None:
            self.dataset_dir = str(dataset_dir)
        if lab2cname is None:
            if not self._train_x:
                raise SarjepaError("the training set is empty")
            lab2cname, _ = self.get_lab2cname(self._train_x)
            self._num_classes = self.get_num_classes(self._train_x)
        else:
            self._num_classes = max(lab2cname) + 1 if lab2cname else 0
        self._lab2cname = dict(sorted(lab2cname.items()))
        self._classnames = [self._lab2cname[k] for k in sorted(self._lab2cname)]

    train_x = property(lambda self: self._train_x, doc="labelled training items")
    train_u = property(lambda self: self._train_u, doc="unlabelled items (None)")
    val = property(lambda self: self._val, doc="validation items")
    test = property(lambda self: self._test, doc="test items")
    lab2cname = property(lambda self: self._lab2cname, doc="label -> class name")
    classnames = property(lambda self: self._classnames, doc="class names in label order")
    num_classes = property(lambda self: self._num_classes, doc="number of classes")

    @staticmethod
    def get_num_classes(data_source: Sequence[Datum]) -> int:
        """Max label + 1 (Dassl)."""
        return max(item.label for item in data_source) + 1

    @staticmethod
    def get_lab2cname(data_source: Sequence[Datum]) -> tuple[dict[int, str], list[str]]:
        """Label -> class name map and the names in label order (Dassl)."""
        mapping = {item.label: item.classname for item in data_source}
        labels = sorted(mapping)
        return {k: mapping[k] for k in labels}, [mapping[k] for k in labels]

    def relpath(self, item: Datum) -> str:
        """``item.impath`` relative to ``dataset_dir`` with ``/`` separators."""
        return posix_relpath(item.impath, self.dataset_dir)

    def split_lists(self) -> dict[str, list[str]]:
        """``{"train": [...], "val": [...], "test": [...]}`` relative paths, in harness order."""
        return {
            "train": [self.relpath(d) for d in self._train_x],
            "val": [self.relpath(d) for d in self._val],
            "test": [self.relpath(d) for d in self._test],
        }

    # Dassl's instance-method spellings of the samplers.
    def generate_fewshot_dataset(self, *data_sources, num_shots=-1, repeat=False, rng=None):
        """See :func:`generate_fewshot_dataset`."""
        return generate_fewshot_dataset(*data_sources, num_shots=num_shots, repeat=repeat, rng=rng)

    def split_dataset_by_label(self, data_source):
        """See :func:`split_dataset_by_label`."""
        return split_dataset_by_label(data_source)

    def split_dataset_by_domain(self, data_source):
        """See :func:`split_dataset_by_domain`."""
        return split_dataset_by_domain(data_source)
