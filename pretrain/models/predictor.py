"""The JEPA predictor: a narrow ViT from context tokens to the features of target blocks.

I-JEPA's ``VisionTransformerPredictor`` (facebookresearch/ijepa
``src/models/vision_transformer.py``)
with its parameter names, order and shapes, so upstream's checkpoints load: context tokens are
projected to the predictor width and given fixed sin-cos positions, one mask token per target
patch (plus its position) is appended, and the outputs at the mask tokens are projected back to
the encoder width.
"""

from __future__ import annotations

import torch
from sarjepa.pretrain.masking import gather_tokens, repeat_interleave_batch
from sarjepa.pretrain.models.pos_embed import sincos_2d
from sarjepa.pretrain.models.vit import Block, init_weights
from timm.layers import trunc_normal_
from torch import Tensor, nn


class Predictor(nn.Module):
    """Upstream ``VisionTransformerPredictor`` (its parameter names, order and shapes).

    Args:
        grid: patch grid (h, w) of the fixed sin-cos table ``predictor_pos_embed`` (1, h*w, P).
        embed_dim: encoder width D.
        pred_dim: predictor width P (divisible by 4 and by ``num_heads``).
        depth: predictor blocks.
        num_heads: heads per block (upstream: the encoder's).
        mlp_ratio: MLP width / P.
    """

    def __init__(
        self,
        grid: tuple[int, int],
        embed_dim: int,
        pred_dim: int,
        depth: int,
        num_heads: int,
        mlp_ratio: float = 4.0,
    ) -> None:
        super().__init__()
        self.predictor_embed = nn.Linear(embed_dim, pred_dim)
        self.mask_token = nn.Parameter(torch.zeros(1, 1, pred_dim))
        table = sincos_2d(pred_dim, grid).unsqueeze(0)
        self.predictor_pos_embed = nn.Parameter(table, requires_grad=False)
        self.predictor_blocks = nn.ModuleList(
            Block(pred_dim, num_heads, mlp_ratio, qkv_bias=True, rpe=False, norm_eps=1e-6)
            for _ in range(depth)
        )
        self.predictor_norm = nn.LayerNorm(pred_dim, eps=1e-6)
        self.predictor_proj = nn.Linear(pred_dim, embed_dim)
        self.apply(init_weights)
        trunc_normal_(self.mask_token, std=0.02)

    def forward(self, x: Tensor, context: list[Tensor], targets: list[Tensor]) -> Tensor:
        """Predict the target blocks' features.

        Args:
            x: (n_ctx B, K_ctx, D) context-encoder output, context-block-major.
            context: n_ctx index tensors (B, K_ctx).
            targets: n_tgt index tensors (B, K_tgt).

        Returns:
            (n_tgt n_ctx B, K_tgt, D), target-block-major as upstream.
        """
        b = x.shape[0] // len(context)
        x = self.predictor_embed(x)
        table = self.predictor_pos_embed.expand(b, -1, -1)
        x = x + gather_tokens(table, context).to(x.dtype)
        n_ctx = x.shape[1]
        pos = repeat_interleave_batch(gather_tokens(table, targets), b, len(context))
        queries = (self.mask_token + pos).to(x.dtype)
        x = torch.cat([x.repeat(len(targets), 1, 1), queries], dim=1)
        for blk in self.predictor_blocks:
            x = blk(x)
        x = self.predictor_norm(x)
        return self.predictor_proj(x[:, n_ctx:])
