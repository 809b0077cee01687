"""Encoders: the 1-channel ViT with iRPE, fixed sin-cos or no position encoding."""

from sarjepa.pretrain.models.irpe import ContextualKeyRPE, irpe_bucket_ids, piecewise_index
from sarjepa.pretrain.models.pos_embed import sincos_2d
from sarjepa.pretrain.models.vit import (
    Attention,
    Block,
    VisionTransformer,
    build_vit,
    vit_base,
    vit_large,
    vit_small,
    vit_tiny,
)

__all__ = [
    "Attention",
    "Block",
    "ContextualKeyRPE",
    "VisionTransformer",
    "build_vit",
    "irpe_bucket_ids",
    "piecewise_index",
    "sincos_2d",
    "vit_base",
    "vit_large",
    "vit_small",
    "vit_tiny",
]
