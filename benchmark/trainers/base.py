"""The shared trainer loop (Dassl's ``TrainerX`` behaviour, restated).

Per run: build the backbone from ``MODEL.INIT_WEIGHTS`` (or a random init), the trainer's head and
optimiser; for each of ``OPTIM.MAX_EPOCH`` epochs set the epoch's learning rate
(:func:`~benchmark.trainers.optim.lr_per_epoch`), iterate a ``DataLoader`` over the training set
with ``DATALOADER.TRAIN_X.SAMPLER`` (``RandomSampler``: a fresh permutation per epoch from the
global torch RNG), ``TRAIN_X.BATCH_SIZE`` and ``drop_last`` only when the set holds at least one
batch, and take one optimiser step per batch on the cross-entropy loss. Dassl's progress line is
printed every ``TRAIN.PRINT_FREQ`` batches (every batch when an epoch has fewer). The last-epoch
model is then evaluated on ``TEST.SPLIT`` (test) in ``DATALOADER.TEST.BATCH_SIZE`` batches.
"""

from __future__ import annotations

import datetime
import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from sarjepa.benchmark.backbone import encoder_from_cfg
from sarjepa.benchmark.core.errors import SarjepaError, unknown
from sarjepa.benchmark.core.runtime import autocast, iterate
from sarjepa.benchmark.evaluator import Classification
from sarjepa.benchmark.features import Backbone, ImageDataset
from sarjepa.benchmark.trainers.optim import build_optimizer, lr_per_epoch, set_lr
from sarjepa.pretrain.checkpoint_ref import CheckpointRef
from sarjepa.pretrain.weights import LoadedEncoder
from torch import Tensor, nn
from torch.utils.data import DataLoader, Dataset, RandomSampler, SequentialSampler, TensorDataset

SAMPLERS = ("RandomSampler", "SequentialSampler")
PRELOAD_MAX_BYTES = 4 * 2**30


def preload(data: Dataset, num_workers: int = 0, batch_size: int = 64) -> TensorDataset:
    """Materialise a dataset of ``(tensor, int label)`` pairs as a :class:`TensorDataset`.

    The global RNG state is restored afterwards (a DataLoader draws a seed), so the training
    that follows consumes the same random stream as without preloading.
    """
    import os

    loader = DataLoader(
        data,
        batch_size=batch_size,
        shuffle=False,
        num_workers=min(num_workers, os.cpu_count() or 1),
    )
    xs, ys = [], []
    with torch.random.fork_rng(devices=[]):
        for x, y in iterate(loader):
            xs.append(x)
            ys.append(torch.as_tensor(y, dtype=torch.int64))
    return TensorDataset(torch.cat(xs), torch.cat(ys))


@dataclass(frozen=True)
class Evaluated:
    """What the last :meth:`TrainerBase.test` saw: the split, its items (``Datum``, in order),
    their true labels and the predicted labels, ``(N,)`` each."""

    split: str
    items: list
    y_true: list[int]
    y_pred: list[int]


class _Meter:
    """Current value and running mean (Dassl's AverageMeter)."""

    def __init__(self) -> None:
        self.val, self.sum, self.count = 0.0, 0.0, 0

    def update(self, v: float) -> None:
        self.val = v
        self.sum += v
        self.count += 1

    @property
    def avg(self) -> float:
        return self.sum / max(self.count, 1)


class TrainerBase:
    """Base few-shot trainer; subclasses define the head, the trainable parameters and the data.

    Args:
        cfg: frozen run config.
        dataset: a ``DatasetBase`` (``train_x``, ``val``, ``test``, ``num_classes``,
            ``lab2cname``).
        device: where the model runs.
        amp: ``"bf16"`` (autocast) or ``"off"``.
        log: printer for Dassl's log lines.
        progress: show a tqdm bar (stderr) over all training iterations.
        checkpoint: ``MODEL.INIT_WEIGHTS`` as resolved by the caller (None: resolved here).
    """

    def __init__(
        self,
        cfg: Any,
        dataset: Any,
        device: torch.device,
        amp: str = "off",
        log: Callable[[str], None] = print,
        progress: bool = False,
        checkpoint: CheckpointRef | None = None,
    ) -> None:
        from sarjepa.dassl_patches.transforms import build_transform, preprocessing_dict

        self.cfg = cfg
        self.dataset = dataset
        self.device = device
        self.amp = amp
        self.log = log
        self.progress = progress
        self.max_epoch = int(cfg.OPTIM.MAX_EPOCH)
        if self.max_epoch < 1:
            raise SarjepaError(f"OPTIM.MAX_EPOCH must be >= 1, got {self.max_epoch}")
        self._check_cfg()
        self.num_classes = int(dataset.num_classes)
        self.lab2cname = dict(dataset.lab2cname)
        self.tfm_train = build_transform(cfg, is_train=True)
        self.tfm_test = build_transform(cfg, is_train=False)
        # no random augmentation: every epoch sees the same tensors, which can be decoded once
        self.deterministic_train = preprocessing_dict(cfg, True) == preprocessing_dict(cfg, False)
        self.weights: LoadedEncoder = encoder_from_cfg(
            cfg, log=log, checkpoint=checkpoint, share=self.frozen_backbone
        )
        self.backbone = Backbone(self.weights.encoder)
        self.build_model()
        self.model.to(device)
        if self.gradient_trained:
            self.optim = build_optimizer(self.trainable_parameters(), cfg.OPTIM)
            self.lrs = lr_per_epoch(cfg.OPTIM)
        n_train = sum(p.numel() for p in self.trainable_parameters())
        log(f"# trainable params: {n_train:,}")

    # ----------------------------------------------------------------- subclass interface
    model: nn.Module
    #: Set by :meth:`test` (through :meth:`finish_eval`); None before.
    evaluated: Evaluated | None = None
    #: False for trainers fitted in closed form or by a solver (the probes): no optimiser,
    #: no ``OPTIM`` schedule; they override :meth:`train` and :meth:`test`.
    gradient_trained: bool = True
    #: True for trainers that never change the backbone (frozen, eval mode): the cells of one
    #: process then share one loaded encoder per checkpoint (``load_encoder(share=True)``)
    frozen_backbone: bool = False

    def build_model(self) -> None:
        """Create ``self.model`` (backbone + head) and freeze what does not train."""
        raise NotImplementedError

    def trainable_parameters(self) -> list[nn.Parameter]:
        """Parameters handed to the optimiser."""
        return [p for p in self.model.parameters() if p.requires_grad]

    def set_train_mode(self) -> None:
        """Module modes during training (default: everything in train mode)."""
        self.model.train()

    def train_dataset(self) -> Dataset:
        """``(input, label)`` pairs of the training set (images by default).

        With a deterministic training pipeline the images are decoded and transformed once and
        kept in memory (up to :data:`PRELOAD_MAX_BYTES`): the tensors, the sampler and hence the
        run are exactly those of decoding every epoch, without the per-epoch decoding cost.
        """
        items = self.dataset.train_x
        data = ImageDataset([d.impath for d in items], [d.label for d in items], self.tfm_train)
        if not self.deterministic_train or not len(data):
            return data
        nbytes = len(data) * data[0][0].numel() * 4
        if nbytes > PRELOAD_MAX_BYTES:
            self.log(f"Training images need {nbytes / 2**30:.1f} GiB: decoded every epoch")
            return data
        return preload(data, int(self.cfg.DATALOADER.NUM_WORKERS))

    def test_dataset(self, items: list) -> Dataset:
        """``(input, label)`` pairs of the evaluation items (images by default)."""
        return ImageDataset([d.impath for d in items], [d.label for d in items], self.tfm_test)

    def forward_train(self, x: Tensor) -> Tensor:
        """Logits ``(B, C)`` for a training batch (inside autocast when enabled)."""
        return self.model(x)

    def forward_test(self, x: Tensor) -> Tensor:
        """Logits ``(B, C)`` for an evaluation batch (eval mode, no grad)."""
        return self.model(x)

    def before_train(self) -> None:
        """Hook run once before the first epoch."""

    def provenance(self) -> dict[str, Any]:
        """Weights provenance for ``result.json``."""
        w = self.weights
        return {
            "checkpoint": w.path,
            "checkpoint_sha256": w.sha256,
            "checkpoint_format": w.format,
            "checkpoint_source": w.source,
            "arch": w.arch,
        }

    # ----------------------------------------------------------------- shared machinery
    def _check_cfg(self) -> None:
        cfg = self.cfg
        if str(cfg.DATALOADER.TRAIN_X.SAMPLER) not in SAMPLERS:
            raise unknown(
                "DATALOADER.TRAIN_X.SAMPLER", str(cfg.DATALOADER.TRAIN_X.SAMPLER), SAMPLERS
            )
        if str(cfg.TEST.FINAL_MODEL) != "last_step":
            raise SarjepaError(
                f"TEST.FINAL_MODEL '{cfg.TEST.FINAL_MODEL}' is not supported; "
                "the protocol evaluates the last-epoch model ('last_step')"
            )
        for key in ("TRAIN_X", "TEST"):
            if int(cfg.DATALOADER[key].BATCH_SIZE) < 1:
                raise SarjepaError(f"DATALOADER.{key}.BATCH_SIZE must be >= 1")

    def _loader(self, data: Dataset, train: bool) -> DataLoader:
        dl = self.cfg.DATALOADER
        bs = int(dl.TRAIN_X.BATCH_SIZE if train else dl.TEST.BATCH_SIZE)
        if train and str(dl.TRAIN_X.SAMPLER) == "RandomSampler":
            sampler: Any = RandomSampler(data)
        else:
            sampler = SequentialSampler(data)
        workers = int(dl.NUM_WORKERS) if isinstance(data, ImageDataset) else 0  # tensors: none
        return DataLoader(
            data,
            batch_size=bs,
            sampler=sampler,
            num_workers=workers,
            drop_last=train and len(data) >= bs,
            pin_memory=self.device.type == "cuda",
        )

    def train(self) -> None:
        """Run all epochs (Dassl's ``train`` / ``run_epoch``)."""
        from tqdm import tqdm

        self.before_train()
        data = self.train_dataset()
        if len(data) == 0:
            raise SarjepaError("the training set is empty")
        loader = self._loader(data, train=True)
        num_batches = len(loader)
        freq = int(self.cfg.TRAIN.PRINT_FREQ)
        bar = tqdm(
            total=self.max_epoch * num_batches,
            desc="train",
            disable=not self.progress,
            leave=False,
            dynamic_ncols=True,
        )
        batch_time = _Meter()
        start = time.time()
        for epoch in range(self.max_epoch):
            lr = self.lrs[epoch]
            set_lr(self.optim, lr)
            self.set_train_mode()
            data_time = _Meter()
            losses: list[Tensor] = []
            accs: list[Tensor] = []
            end = time.time()
            for i, (x, y) in enumerate(iterate(loader)):
                data_time.update(time.time() - end)
                loss, acc = self._step(x, y)
                losses.append(loss)
                accs.append(acc)
                batch_time.update(time.time() - end)
                bar.update(1)
                show = freq > 0 and ((i + 1) % freq == 0 or num_batches < freq)
                if show or i + 1 == num_batches:
                    # one device sync per printed line (and per epoch), not per batch
                    lv, av = torch.stack([torch.stack(losses), torch.stack(accs)]).tolist()
                    if not all(map(math.isfinite, lv)):
                        raise SarjepaError(f"the training loss became {lv[-1]} (diverged)")
                if show:
                    remain = (num_batches - i - 1) + (self.max_epoch - epoch - 1) * num_batches
                    eta = datetime.timedelta(seconds=int(batch_time.avg * remain))
                    self.log(
                        f"epoch [{epoch + 1}/{self.max_epoch}] batch [{i + 1}/{num_batches}] "
                        f"time {batch_time.val:.3f} ({batch_time.avg:.3f}) "
                        f"data {data_time.val:.3f} ({data_time.avg:.3f}) "
                        f"loss {lv[-1]:.4f} ({sum(lv) / len(lv):.4f}) "
                        f"acc {av[-1]:.4f} ({sum(av) / len(av):.4f}) lr {lr:.4e} eta {eta}"
                    )
                end = time.time()
        bar.close()
        self.train_seconds = time.time() - start

    def _step(self, x: Tensor, y: Tensor) -> tuple[Tensor, Tensor]:
        """One optimiser step; returns the batch's loss and accuracy (%) as 0-d tensors."""
        x = x.to(self.device, non_blocking=True)
        y = y.to(self.device, non_blocking=True)
        with autocast(self.device, self.amp):
            logits = self.forward_train(x)
        loss = F.cross_entropy(logits.float(), y)
        self.optim.zero_grad()
        loss.backward()
        self.optim.step()
        acc = 100.0 * (logits.argmax(1) == y).float().mean()
        return loss.detach(), acc.detach()

    def eval_items(self) -> tuple[str, list]:
        """``(split name, items)`` of ``TEST.SPLIT`` (the val set when asked and not empty).

        Raises:
            SarjepaError: the chosen set is empty.
        """
        split = str(self.cfg.TEST.SPLIT)
        items = self.dataset.val if split == "val" and self.dataset.val else self.dataset.test
        split = "val" if items is self.dataset.val else "test"
        if not items:
            raise SarjepaError(f"the {split} set is empty")
        return split, items

    @torch.no_grad()
    def test(self) -> dict[str, Any]:
        """Evaluate the current model on ``TEST.SPLIT``; prints Dassl's block; returns metrics."""
        split, items = self.eval_items()
        self.model.eval()
        evaluator = Classification(self.lab2cname, bool(self.cfg.TEST.PER_CLASS_RESULT), self.log)
        self.log(f"Evaluate on the *{split}* set")
        for x, y in iterate(self._loader(self.test_dataset(items), train=False)):
            with autocast(self.device, self.amp):
                logits = self.forward_test(x.to(self.device, non_blocking=True))
            evaluator.process(logits.float(), y)
        return self.finish_eval(split, items, evaluator)

    def finish_eval(self, split: str, items: list, evaluator: Classification) -> dict[str, Any]:
        """Report the evaluator's metrics and keep what was predicted in :attr:`evaluated`."""
        metrics = evaluator.evaluate()
        self.evaluated = Evaluated(split, list(items), list(evaluator.y_true), evaluator.y_pred)
        return metrics


def init_linear(layer: nn.Linear, std: float) -> nn.Linear:
    """Authors' head init: ``weight ~ trunc_normal(0, std, [-2, 2])`` (timm), ``bias = 0``."""
    from timm.layers import trunc_normal_

    trunc_normal_(layer.weight, std=std)
    nn.init.zeros_(layer.bias)
    return layer
