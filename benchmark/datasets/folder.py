"""``SARFolder``: a user's own labelled SAR chips in class folders."""

from __future__ import annotations

import os
from typing import Any

from sarjepa.benchmark.core.errors import SarjepaError
from sarjepa.benchmark.core.images import IMAGE_EXTENSIONS
from sarjepa.benchmark.datasets.base import DATASET_REGISTRY, DatasetBase, subsample_classes
from sarjepa.benchmark.datasets.fixed import locate_dataset_dir
from sarjepa.benchmark.datasets.listing import class_folders, list_split
from sarjepa.benchmark.datasets.splits import SplitSpec, make_split, resolve_cache_dir, split_hash

TRAIN_NAMES = ("train", "Train", "TRAIN")
TEST_NAMES = ("test", "Test", "TEST")


def _pick(root: str, explicit: str, names: tuple[str, ...]) -> str:
    if explicit:
        return explicit
    return next((n for n in names if os.path.isdir(os.path.join(root, n))), "")


@DATASET_REGISTRY.register("SARFolder", aliases=("sarfolder", "folder"))
class SARFolder(DatasetBase):
    """Labelled chips in class folders under ``DATASET.ROOT``, in one of two layouts.

    Split layout (``DATASET.SARFOLDER.TRAIN_DIR`` / ``TEST_DIR``, default ``train``/``test`` in
    any capitalisation)::

        ROOT/train/<class>/**/<image>    train-val pool; P_VAL (0.2) of each class -> val pool
        ROOT/test/<class>/**/<image>     test set

    Single-folder layout (no train/test folders)::

        ROOT/<class>/**/<image>          TEST_FRACTION (0.5) of each class -> test set and val pool

    Classes are the folder names (sorted; labels 0..C-1 in that order); test classes must also
    exist in the train split. Extensions: :data:`benchmark.core.images.IMAGE_EXTENSIONS` (any
    case). Sampling is the same protocol as the fixed datasets: K-shot train, min(K, 10)-shot val.
    """

    def __init__(self, cfg: Any) -> None:
        opt = cfg.DATASET.SARFOLDER
        root = str(cfg.DATASET.ROOT)
        layout = "ROOT/train/<class>/**/<image> + ROOT/test/<class>/**/<image>, or ROOT/<class>/..."
        ddir = locate_dataset_dir(root, "", (), layout)
        train_dir = _pick(ddir, str(opt.TRAIN_DIR), TRAIN_NAMES)
        test_dir = _pick(ddir, str(opt.TEST_DIR), TEST_NAMES)
        if bool(train_dir) != bool(test_dir):
            have = train_dir or test_dir
            raise SarjepaError(
                f"'{os.path.join(root, have)}' exists but its counterpart split folder does not "
                f"(expected layout: {layout}; set DATASET.SARFOLDER.TRAIN_DIR/TEST_DIR)"
            )
        ignore = set(cfg.DATASET.IGNORE_CLASSES)
        pool_split = train_dir
        split_root = os.path.join(ddir, pool_split) if pool_split else ddir
        if not os.path.isdir(split_root):
            raise SarjepaError(f"folder not found: '{split_root}' (expected layout: {layout})")
        classes = [c for c in class_folders(split_root) if c not in ignore]
        labels = {c: i for i, c in enumerate(classes)}
        kw = dict(
            extensions=IMAGE_EXTENSIONS,
            label_of=labels.get,
            case_sensitive=False,
            ignore=ignore,
            what=layout,
            known=classes,
        )
        trainval = list_split(ddir, pool_split, **kw)
        test = list_split(ddir, test_dir, **kw) if test_dir else None
        p_val = float(opt.P_VAL) if test_dir else float(opt.TEST_FRACTION)
        if not 0.0 < p_val < 1.0:
            key = "P_VAL" if test_dir else "TEST_FRACTION"
            raise SarjepaError(f"DATASET.SARFOLDER.{key} must be in (0, 1), got {p_val}")
        spec = SplitSpec(
            dataset="SARFolder",
            dataset_dir=ddir,
            num_shots=int(cfg.DATASET.NUM_SHOTS),
            seed=int(cfg.SEED),
            p_val=p_val,
            test_from_val=test is None,
            strict_shots=bool(cfg.RUN.STRICT_SHOTS),
        )
        train, val, test_items, info = make_split(
            spec, trainval, test, resolve_cache_dir(str(cfg.RUN.CACHE_DIR))
        )
        train, val, test_items = subsample_classes(
            train, val, test_items, subsample=str(cfg.DATASET.SUBSAMPLE_CLASSES)
        )
        lab2cname = {v: k for k, v in labels.items()}
        if cfg.DATASET.SUBSAMPLE_CLASSES != "all":
            lab2cname = {d.label: d.classname for d in train + val + test_items}
        super().__init__(
            train_x=train, val=val, test=test_items, lab2cname=lab2cname, dataset_dir=ddir
        )
        self.split_info = dict(info, split_hash=split_hash(self.split_lists()))
