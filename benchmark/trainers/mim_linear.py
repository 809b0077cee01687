"""``MIM_linear``: linear probing of a frozen ViT (the authors' ``trainers/MIM_linear.py``).

Head: ``BatchNorm1d(D, affine=False, eps=1e-6)`` then ``Linear(D, C)`` (weight truncated normal,
std 0.01; bias zero). The backbone is frozen and runs in eval mode; only the linear layer is
optimised, while the BatchNorm running statistics update in training mode and are used at test
time. Optimiser and schedule as in ``OPTIM.*``.

With ``TRAINER.LINEAR.CACHE_FEATURES True`` (default) the backbone runs once per image: features of
the training and test items come from :mod:`benchmark.features` (disk cache under ``RUN.CACHE_DIR``
unless ``TRAINER.LINEAR.DISK_CACHE False``; a random-init backbone is keyed by its weights' hash),
and the head trains on them through the same ``DataLoader`` / sampler / batch size as the image
path, so the random stream, batch order, and hence the result are those of running the frozen
backbone on the images every epoch (``CACHE_FEATURES False``, kept as the reference path).
A training pipeline with random augmentation (``INPUT.TRANSFORMS`` ``random_flip``) makes features
differ per epoch, so then the image path is used.
"""

from __future__ import annotations

from typing import Any

import torch
from sarjepa.benchmark.config import register_cfg_extension
from sarjepa.benchmark.features import FeatureStore, cached_extract, feature_spec, resolve_cache_dir
from sarjepa.benchmark.trainers import TRAINER_REGISTRY
from sarjepa.benchmark.trainers.base import TrainerBase, init_linear
from sarjepa.benchmark.trainers.mim_finetune import _Classifier
from torch import Tensor, nn
from torch.utils.data import Dataset, TensorDataset
from yacs.config import CfgNode as CN

HEAD_STD = 0.01
BN_EPS = 1e-6


@register_cfg_extension
def _extend_cfg(cfg: CN) -> None:
    """``TRAINER.LINEAR.*``: options of the linear probe."""
    cfg.TRAINER.LINEAR = CN()
    cfg.TRAINER.LINEAR.CACHE_FEATURES = True  # train the head on features extracted once
    cfg.TRAINER.LINEAR.DISK_CACHE = True  # keep extracted features under RUN.CACHE_DIR


@TRAINER_REGISTRY.register("MIM_linear")
class MIMLinear(TrainerBase):
    """Frozen backbone + BatchNorm + linear head (``TRAINER.NAME MIM_linear``)."""

    frozen_backbone = True  # eval mode, no gradient: the encoder is never changed

    def build_model(self) -> None:
        from sarjepa.dassl_patches.transforms import preprocessing_dict

        for p in self.backbone.parameters():
            p.requires_grad_(False)
        fc = init_linear(nn.Linear(self.backbone.dim, self.num_classes), HEAD_STD)
        self.head = nn.Sequential(nn.BatchNorm1d(self.backbone.dim, affine=False, eps=BN_EPS), fc)
        self.model = _Classifier(self.backbone, self.head)
        opts = self.cfg.TRAINER.get("LINEAR", CN())
        self.preprocessing = preprocessing_dict(self.cfg, is_train=False)
        random_train = not self.deterministic_train
        self.cached = bool(opts.get("CACHE_FEATURES", True)) and not random_train
        if random_train and bool(opts.get("CACHE_FEATURES", True)):
            self.log("Training preprocessing is random: features are not cached")
        self.store = self._store() if bool(opts.get("DISK_CACHE", True)) and self.cached else None

    def _store(self) -> FeatureStore | None:
        spec = feature_spec(self.weights, self.preprocessing, self.amp)
        if spec is None:
            return None
        from sarjepa.benchmark.datasets.splits import check_cache_outside

        root = resolve_cache_dir(self.cfg)
        data_dir = getattr(self.dataset, "dataset_dir", "")
        if data_dir:
            check_cache_outside(root, data_dir)
        return FeatureStore(root / "features", spec)

    def set_train_mode(self) -> None:
        self.model.train()
        self.backbone.eval()

    def _features(self, items: list, desc: str) -> Tensor:
        dl = self.cfg.DATALOADER
        return cached_extract(
            self.backbone,
            [d.impath for d in items],
            self.tfm_test,
            self.device,
            self.store,
            log=self.log,
            amp=self.amp,
            batch_size=int(dl.TEST.BATCH_SIZE),
            num_workers=int(dl.NUM_WORKERS),
            progress=self.progress,
            desc=desc,
        )

    def _feature_set(self, items: list, desc: str) -> Dataset:
        labels = torch.tensor([d.label for d in items], dtype=torch.int64)
        return TensorDataset(self._features(items, desc), labels)

    def train_dataset(self) -> Dataset:
        if not self.cached:
            return super().train_dataset()
        return self._feature_set(self.dataset.train_x, "train features")

    def test_dataset(self, items: list) -> Dataset:
        if not self.cached:
            return super().test_dataset(items)
        return self._feature_set(items, "test features")

    def _logits(self, x: Tensor) -> Tensor:
        if not self.cached:
            with torch.no_grad():
                x = self.backbone(x)
        with torch.autocast(self.device.type, enabled=False):
            return self.head(x.float())

    def forward_train(self, x: Tensor) -> Tensor:
        return self._logits(x)

    def forward_test(self, x: Tensor) -> Tensor:
        return self._logits(x)

    def provenance(self) -> dict[str, Any]:
        out = super().provenance()
        out["cached_features"] = self.cached
        out["feature_cache_key"] = self.store.key if self.store is not None else ""
        return out
