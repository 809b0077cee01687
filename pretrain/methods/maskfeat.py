"""MaskFeat (Wei et al., CVPR 2022; facebookresearch/SlowFast ``MaskMViT``): predict the HOG of
masked patches.

Forward pass, for images (B, 1, H, W), patch p, grid (h, w) = (H/p, W/p), N = h*w:

1. :func:`pretrain.masking.blockwise_masks` draws, per image, ``round(N * MASK.RATIO)`` masked
   patches as rectangles (BEiT's generator, as MaskFeat's data loader: areas from
   ``MASK.BLOCK_MIN_PATCHES`` (0 = the masked count // 5, MaskFeat's rule) to the patches still
   to mask, aspect ratios log-uniform in [0.3, 1/0.3]); every image has exactly that many.
2. ``encoder.patch_embed`` embeds all N patches; masked ones are replaced by the learned
   ``mask_token`` **before** the position embedding is added (as MaskFeat), so every token goes
   through the encoder.
3. ``encoder.forward_blocks``: fixed 2-D sin-cos position embedding, CLS, all blocks, final
   LayerNorm; CLS is dropped.
4. ``pred_head.projections.0``: one Linear(D -> target dim) per token.
5. Target: HOG of the image (:mod:`pretrain.targets.hog`, ``hog``: Sobel gradients, 9 unsigned
   orientation bins, 8 x 8-pixel cells, each cell's histogram L2-normalised; 36 values per 16-px
   patch). MaskFeat's code (``HOGLayerC(nbins=9, pool=8)``) applies no Gaussian spatial window,
   so this method's default is ``gaussian_window=0`` (the ``hog`` target's own default, 16,
   follows MMSelfSup's reimplementation). Loss: MSE over the masked patches only.

Position embedding: fixed sin-cos (``MODEL.POS_EMBED sincos``), not MaskFeat's learned absolute
embedding (trunc-normal init). Why: it is what the MAE-family baselines here use, so the
baselines' encoders are the same ViT and a comparison isolates target and masking; it adds no
parameters to fit on small SAR pools; and the benchmark can run the encoder at other input sizes
without interpolating a learned table.

Checkpoint ``model`` keys, against SlowFast's ``MaskMViT`` (ViT-B config, ``PRED_HOG``) at the
same dimensions: ``cls_token``, ``pos_embed`` (1, 1+N, D), ``patch_embed.proj.*``, ``blocks.N.
{norm1, attn.qkv, attn.proj, norm2, mlp.fc1, mlp.fc2}.*``, ``mask_token`` and
``pred_head.projections.0.*`` are upstream's names and shapes (the head has 36 outputs for one
channel, upstream 108 for RGB); upstream's head LayerNorm ``pred_head.transforms.0.0.*`` (it
deletes the encoder's ``norm``) is our encoder's ``norm.*``, so the benchmark finds a complete
encoder; upstream's constant Sobel buffers ``hogs.0.weight_x`` / ``weight_y`` are not stored.

Init as MaskFeat: Linear trunc-normal(std 0.02) with zero bias, LayerNorm 1/0, ``cls_token`` and
``mask_token`` trunc-normal(0.02); the patch embedding is xavier-uniform on the flattened kernel
(MAE's) with a zero bias (upstream keeps PyTorch's Conv2d default for both).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
from sarjepa.benchmark.core.errors import SarjepaError
from sarjepa.pretrain.methods.base import PretrainMethod, masked_mse
from sarjepa.pretrain.methods.shared import build_cfg_target, target_facts
from timm.layers import trunc_normal_
from torch import Tensor, nn

DEFAULT_TARGET = ("hog", {"nbins": 9, "cell": 8, "gaussian_window": 0})


def blockwise_mask_count(num_patches: int, ratio: float) -> int:
    """Masked patches per image: ``round(num_patches * ratio)`` (MaskFeat's loader, Python's
    round)."""
    return int(round(num_patches * ratio))


class SeparateHead(nn.Module):
    """MaskFeat's prediction head reduced to its projection (``projections.0``: Linear D -> dim).

    The head's LayerNorm is the encoder's final ``norm`` here (see the module docstring).
    """

    def __init__(self, dim: int, out_dim: int) -> None:
        super().__init__()
        self.projections = nn.ModuleList([nn.Linear(dim, out_dim)])

    def forward(self, x: Tensor) -> Tensor:
        return self.projections[0](x)


class MaskFeat(PretrainMethod):
    """Block-wise masked HOG prediction with mask tokens in the encoder.

    Args:
        encoder: the ViT (any position scheme; MaskFeat's configs use sin-cos here).
        target: a ``pretrain.targets`` target (default HOG).
        target_name: the target's registry name.
        target_options: the options the target was built with (recorded in sidecars).
        mask_ratio: masked fraction of the patches (0.4).
        min_patches: smallest rectangle area; 0 = masked count // 5 (MaskFeat's rule).
        max_patches: largest rectangle area; 0 = the masked count.
        min_aspect: smallest rectangle aspect ratio (0.3).
    """

    name = "maskfeat"

    def __init__(
        self,
        encoder: nn.Module,
        target,
        target_name: str = "hog",
        target_options: Mapping[str, Any] | None = None,
        mask_ratio: float = 0.4,
        min_patches: int = 0,
        max_patches: int = 0,
        min_aspect: float = 0.3,
    ) -> None:
        super().__init__(encoder)
        self.target = target
        self.target_name = target_name
        self.target_options = dict(target_options or {})
        self.mask_ratio = float(mask_ratio)
        self.min_patches = int(min_patches)
        self.max_patches = int(max_patches)
        self.min_aspect = float(min_aspect)
        dim = encoder.embed_dim
        self.mask_token = nn.Parameter(torch.zeros(1, 1, dim))
        self.pred_head = SeparateHead(dim, int(target.dim))
        trunc_normal_(self.mask_token, std=0.02)
        trunc_normal_(self.pred_head.projections[0].weight, std=0.02)
        nn.init.zeros_(self.pred_head.projections[0].bias)

    @classmethod
    def extend_cfg(cls, cfg) -> None:
        """Block-wise masking keys (``round(N * MASK.RATIO)`` patches in rectangles, BEiT's
        generator)."""
        m = cfg.MASK
        m.BLOCK_MIN_PATCHES = 0  # smallest rectangle area; 0 = masked count // 5 (MaskFeat's rule)
        m.BLOCK_MAX_PATCHES = 0  # largest rectangle area; 0 = no cap besides the masked count
        m.BLOCK_MIN_ASPECT = 0.3  # rectangle aspect ratio drawn log-uniformly in [this, 1/this]

    @classmethod
    def from_cfg(cls, cfg, name: str = "maskfeat") -> MaskFeat:
        """Build MaskFeat from a pretraining config (``PREDICTOR.DEPTH`` must be 0)."""
        from sarjepa.pretrain.methods import build_encoder

        if int(cfg.PREDICTOR.DEPTH) != 0:
            raise SarjepaError(
                "method 'maskfeat' predicts with one linear layer (MaskFeat's 'separate' head): "
                f"set PREDICTOR.DEPTH 0, got {cfg.PREDICTOR.DEPTH}"
            )
        encoder = build_encoder(cfg)
        grid = encoder.grid_size
        n = blockwise_mask_count(grid[0] * grid[1], cfg.MASK.RATIO)
        if not 0 < n < grid[0] * grid[1]:
            raise SarjepaError(
                f"MASK.RATIO {cfg.MASK.RATIO} masks {n} of the {grid[0]}x{grid[1]} patches "
                f"(need 1..{grid[0] * grid[1] - 1})"
            )
        if cfg.MASK.BLOCK_MIN_PATCHES < 0 or cfg.MASK.BLOCK_MAX_PATCHES < 0:
            raise SarjepaError(
                "MASK.BLOCK_MIN_PATCHES and MASK.BLOCK_MAX_PATCHES must be >= 0, got "
                f"{cfg.MASK.BLOCK_MIN_PATCHES} and {cfg.MASK.BLOCK_MAX_PATCHES}"
            )
        if not 0.0 < cfg.MASK.BLOCK_MIN_ASPECT <= 1.0:
            raise SarjepaError(
                f"MASK.BLOCK_MIN_ASPECT must be in (0, 1], got {cfg.MASK.BLOCK_MIN_ASPECT}"
            )
        target, tname, toptions = build_cfg_target(cfg, encoder.patch_size, *DEFAULT_TARGET)
        return cls(
            encoder,
            target,
            target_name=tname,
            target_options=toptions,
            mask_ratio=cfg.MASK.RATIO,
            min_patches=cfg.MASK.BLOCK_MIN_PATCHES,
            max_patches=cfg.MASK.BLOCK_MAX_PATCHES,
            min_aspect=cfg.MASK.BLOCK_MIN_ASPECT,
        )

    def mask_sizes(self, num_patches: int) -> tuple[int, int, int]:
        """(masked count, smallest and largest rectangle area) for a grid of ``num_patches``."""
        n = blockwise_mask_count(num_patches, self.mask_ratio)
        lo = self.min_patches or n // 5
        hi = self.max_patches or n
        return n, lo, hi

    def draw_masks(self, batch: int, grid_hw: tuple[int, int], generator) -> Tensor:
        """Block-wise masks (B, h*w) bool on the CPU, True = masked."""
        from sarjepa.pretrain.masking import blockwise_masks

        n, lo, hi = self.mask_sizes(grid_hw[0] * grid_hw[1])
        return blockwise_masks(
            batch,
            grid_hw,
            num_mask=n,
            min_patches=lo,
            max_patches=hi,
            min_aspect=self.min_aspect,
            generator=generator,
        )

    def predict(self, images: Tensor, mask: Tensor) -> Tensor:
        """Predictions for every patch.

        Args:
            images: (B, C, H, W).
            mask: BoolTensor (B, N) on ``images``' device, True = replaced by the mask token.

        Returns:
            (B, N, target dim).
        """
        p = self.encoder.patch_size
        grid = (images.shape[-2] // p, images.shape[-1] // p)
        tokens = self.encoder.patch_embed(images)  # (B, N, D)
        x = torch.where(mask.unsqueeze(-1), self.mask_token.to(tokens.dtype), tokens)
        x = self.encoder.forward_blocks(x, grid=grid)[:, self.encoder.num_prefix_tokens :]
        return self.pred_head(x)

    def forward(self, images: Tensor, generator: torch.Generator | None = None):
        """Loss of one batch.

        Args:
            images: (B, C, H, W) in [0, 1]; H, W multiples of the patch size.
            generator: CPU generator for the masks (None: torch's default generator).

        Returns:
            ``(loss, stats)``: 0-d float32 MSE over the masked patches and ``{"loss": detached}``.
        """
        p = self.encoder.patch_size
        grid = (images.shape[-2] // p, images.shape[-1] // p)
        mask = self.draw_masks(images.shape[0], grid, generator).to(images.device)
        pred = self.predict(images, mask)
        with torch.no_grad(), torch.autocast(images.device.type, enabled=False):
            target = self.target(images.float())  # (B, N, dim) float32
        loss = masked_mse(pred, target, mask)
        return loss, {"loss": loss.detach()}

    def describe(self) -> dict:
        return {
            **target_facts(self),
            "masking": {
                "kind": "blockwise",
                "mask_ratio": self.mask_ratio,
                "min_patches": self.min_patches or "masked // 5",
                "max_patches": self.max_patches or "masked",
                "min_aspect": self.min_aspect,
                "exact_count": True,
            },
            "predictor": {"kind": "linear", "embed_dim": 0, "depth": 0, "num_heads": 0},
            "source": "facebookresearch/SlowFast slowfast/models/masked.py (MaskMViT)",
        }


def register(registry) -> None:
    """Register ``maskfeat``."""
    registry.add("maskfeat", MaskFeat)
