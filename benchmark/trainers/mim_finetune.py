"""``MIM_finetune``: end-to-end fine-tuning of the pretrained ViT with a linear head.

As in the authors' ``trainers/MIM_finetune.py``: the feature (CLS token after the final norm, or
the pooled tokens for encoders without CLS) goes through ``Linear(D, C)`` whose weight is drawn
from a truncated normal with std 2e-5 and whose bias is zero; every parameter of the backbone and
the head is trained (the fixed sin-cos table of sin-cos encoders excepted) with the optimiser and
schedule of ``OPTIM.*`` (AdamW, lr 1e-3, weight decay 5e-4 on all parameters, constant warm-up then
cosine, 40 epochs in ``vit_b16.yaml``).
"""

from __future__ import annotations

from sarjepa.benchmark.trainers import TRAINER_REGISTRY
from sarjepa.benchmark.trainers.base import TrainerBase, init_linear
from torch import Tensor, nn

HEAD_STD = 2e-5


class _Classifier(nn.Module):
    def __init__(self, backbone: nn.Module, head: nn.Module) -> None:
        super().__init__()
        self.backbone = backbone
        self.head = head

    def forward(self, x: Tensor) -> Tensor:
        return self.head(self.backbone(x))


@TRAINER_REGISTRY.register("MIM_finetune")
class MIMFinetune(TrainerBase):
    """Fine-tune all backbone parameters and a linear head (``TRAINER.NAME MIM_finetune``)."""

    def build_model(self) -> None:
        head = init_linear(nn.Linear(self.backbone.dim, self.num_classes), HEAD_STD)
        for p in self.backbone.parameters():
            p.requires_grad_(p is not getattr(self.backbone.encoder, "pos_embed", None))
        self.model = _Classifier(self.backbone, head)
