"""Shared reader for the authors' fixed-label datasets (MSTAR_SOC, New_FUSAR, SAR_ACD)."""

from __future__ import annotations

import logging
import os
from typing import Any, ClassVar

from sarjepa.benchmark.core.errors import SarjepaError
from sarjepa.benchmark.datasets.base import DatasetBase, subsample_classes
from sarjepa.benchmark.datasets.listing import class_folders, list_split
from sarjepa.benchmark.datasets.splits import SplitSpec, make_split, resolve_cache_dir, split_hash

log = logging.getLogger("sarjepa.datasets")


def locate_dataset_dir(root: str, folder: str, must_contain: tuple[str, ...], layout: str) -> str:
    """Return ``root/folder``, or ``root`` itself if it already is the dataset folder.

    Raises:
        SarjepaError: neither exists, naming the expected layout.
    """
    if not root:
        raise SarjepaError(f"DATASET.ROOT is not set (use --data); expected layout: {layout}")
    if not os.path.isdir(root):
        raise SarjepaError(f"dataset root not found: '{root}' (expected layout: {layout})")
    if not folder:
        return root
    candidate = os.path.join(root, folder)
    if os.path.isdir(candidate):
        return candidate
    if must_contain and all(os.path.isdir(os.path.join(root, d)) for d in must_contain):
        return root
    raise SarjepaError(
        f"dataset folder not found: '{candidate}' (expected layout: {layout} under DATASET.ROOT)"
    )


class FixedLabelDataset(DatasetBase):
    """A dataset with a fixed folder layout and label map (subclasses set the class attributes).

    The split comes from :func:`benchmark.datasets.splits.make_split`: ``SEED``,
    ``DATASET.NUM_SHOTS``,
    ``RUN.STRICT_SHOTS``, ``RUN.CACHE_DIR``; ``DATASET.SUBSAMPLE_CLASSES`` applies afterwards.
    """

    folder: ClassVar[str]  # folder under DATASET.ROOT
    trainval_split: ClassVar[str]  # split folder listed as the train-val pool
    test_split: ClassVar[str | None]  # split folder of the test set; None = the val pool
    labels: ClassVar[dict[str, int]]  # class folder name -> label
    extensions: ClassVar[tuple[str, ...]]  # accepted file extensions (case-sensitive)
    p_val: ClassVar[float]

    @classmethod
    def layout(cls) -> str:
        """The expected on-disk layout, for messages and docs."""
        ext = "|".join(f"*{e}" for e in cls.extensions)
        parts = [f"{cls.folder}/{cls.trainval_split}/<class>/**/{ext}"]
        if cls.test_split:
            parts.append(f"{cls.folder}/{cls.test_split}/<class>/**/{ext}")
        return " and ".join(parts)

    def __init__(self, cfg: Any) -> None:
        name = type(self).__name__
        splits = (self.trainval_split,) + ((self.test_split,) if self.test_split else ())
        ddir = locate_dataset_dir(str(cfg.DATASET.ROOT), self.folder, splits, self.layout())
        known = sorted(self.labels, key=self.labels.get)
        ignore = set(cfg.DATASET.IGNORE_CLASSES)

        def listing(split: str):
            out = list_split(
                ddir,
                split,
                self.extensions,
                self.labels.get,
                case_sensitive=True,
                ignore=ignore,
                what=self.layout(),
                known=known,
            )
            missing = [c for c in known if c not in class_folders(os.path.join(ddir, split))]
            if missing:
                log.warning("%s/%s lacks class folder(s): %s", name, split, ", ".join(missing))
            return out

        trainval = listing(self.trainval_split)
        test = listing(self.test_split) if self.test_split else None
        spec = SplitSpec(
            dataset=name,
            dataset_dir=ddir,
            num_shots=int(cfg.DATASET.NUM_SHOTS),
            seed=int(cfg.SEED),
            p_val=self.p_val,
            test_from_val=test is None,
            strict_shots=bool(cfg.RUN.STRICT_SHOTS),
        )
        cache = resolve_cache_dir(str(cfg.RUN.CACHE_DIR))
        train, val, test_items, info = make_split(spec, trainval, test, cache)
        train, val, test_items = subsample_classes(
            train, val, test_items, subsample=str(cfg.DATASET.SUBSAMPLE_CLASSES)
        )
        lab2cname = {v: k for k, v in self.labels.items()}
        if cfg.DATASET.SUBSAMPLE_CLASSES != "all":
            lab2cname = {d.label: d.classname for d in train + val + test_items}
        super().__init__(
            train_x=train, val=val, test=test_items, lab2cname=lab2cname, dataset_dir=ddir
        )
        self.split_info = dict(info, split_hash=split_hash(self.split_lists()))
