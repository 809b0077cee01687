"""Few-shot trainers, registered by name in :data:`TRAINER_REGISTRY` (``TRAINER.NAME``).

* ``MIM_finetune`` (:mod:`benchmark.trainers.mim_finetune`): the whole ViT plus a linear head.
* ``MIM_linear`` (:mod:`benchmark.trainers.mim_linear`): a frozen ViT, BatchNorm (no affine) and a
  linear head, trained on cached features.
* ``MIM_knn`` / ``MIM_logreg`` (:mod:`benchmark.trainers.probes`): weighted cosine kNN and
  logistic regression (C chosen on the val split) on cached frozen features; no optimiser.

A trainer class takes ``(cfg, dataset, device, amp, log, progress)`` and offers ``train()``,
``test() -> metrics`` (keeping what it predicted in ``evaluated``) and ``provenance()`` (see
:class:`benchmark.trainers.base.TrainerBase`).
"""

from __future__ import annotations

from typing import Any

from sarjepa.benchmark.core.registry import Registry

TRAINER_REGISTRY: Registry[Any] = Registry("trainer")


# register the built-in trainers (imported for their side effect)
from sarjepa.benchmark.trainers import mim_finetune, mim_linear, probes  # noqa: E402, F401
