"""MAE (He et al., CVPR 2022; facebookresearch/mae ``models_mae.py``) and FG-MAE (Wang et al.,
zhu-xlab/FGMAE): masked autoencoders that drop masked patches from the encoder.

Forward pass, for images (B, 1, H, W), patch p, grid (h, w) = (H/p, W/p), N = h*w:

1. :func:`pretrain.masking.random_masking`: per image, uniform noise per patch, ``ids_shuffle =
   argsort(noise)``, the first ``int(N * (1 - MASK.RATIO))`` are kept (MAE's ``random_masking``:
   one ``rand(B, N)`` per batch, drawn from the method's CPU generator).
2. Encoder on the kept patches only: patch embedding, plus the fixed 2-D sin-cos table at their
   positions, CLS (whose table row is zero) prepended, all blocks, final LayerNorm.
3. Decoder: ``decoder_embed`` Linear(D -> D_dec); ``mask_token`` appended for the removed patches
   and everything put back in grid order with ``ids_restore``; plus the decoder's fixed sin-cos
   table (zero CLS row); ``PREDICTOR.DEPTH`` blocks of width ``PREDICTOR.EMBED_DIM`` with
   ``PREDICTOR.NUM_HEADS`` heads (no iRPE); ``decoder_norm``; ``decoder_pred`` Linear(D_dec ->
   target dim); CLS dropped.
4. Loss: MSE averaged over the target dims, then over the removed patches only.

Targets: ``mae`` predicts pixels normalised per patch (``pixel`` with ``norm_pix``: zero mean, unit
unbiased variance, eps 1e-6, as upstream's ``norm_pix_loss``); ``fgmae`` predicts HOG
(:mod:`pretrain.targets.hog`: 9 bins, 8 px cells, the 16 px Gaussian window, per-cell L2
normalisation; FG-MAE's SAR setting), 36 values per 16 px patch, then normalised per patch in the
same way (``norm_pix``: FG-MAE's SAR command passes ``--norm_pix_loss``, which its loss applies to
the HOG target).

Checkpoint ``model`` keys are upstream's ``MaskedAutoencoderViT`` names and shapes at the same
dimensions with ``in_chans=1``: ``cls_token``, ``pos_embed`` (1, 1+N, D), ``mask_token``
(1, 1, D_dec), ``decoder_pos_embed`` (1, 1+N, D_dec), ``patch_embed.proj.*``, ``blocks.N.{norm1,
attn.qkv, attn.proj, norm2, mlp.fc1, mlp.fc2}.*``, ``norm.*``, ``decoder_embed.*``,
``decoder_blocks.N.*``, ``decoder_norm.*``, ``decoder_pred.*`` (p*p outputs for pixels, as
upstream; 36 for FG-MAE's HOG). Upstream's ``models_vit.VisionTransformer`` (global_pool off)
finds every encoder key in it.

Init as MAE: sin-cos tables fixed; patch embedding xavier-uniform on the flattened kernel (its
bias zero here, Conv2d's default uniform init in MAE); CLS and mask token normal(0, 0.02); every
Linear, encoder and decoder, xavier-uniform with zero bias; LayerNorm 1 / 0.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
from sarjepa.benchmark.core.errors import SarjepaError
from sarjepa.pretrain.methods.base import PretrainMethod, init_weights_mae, masked_mse
from sarjepa.pretrain.methods.shared import build_cfg_target, target_facts
from torch import Tensor, nn

DEFAULT_TARGETS = {
    "mae": ("pixel", {"norm_pix": True}),
    "fgmae": ("hog", {"nbins": 9, "cell": 8, "gaussian_window": 16, "norm_pix": True}),
}
SOURCES = {
    "mae": "facebookresearch/mae models_mae.py (MaskedAutoencoderViT)",
    "fgmae": "zhu-xlab/FGMAE (MAE with HOG targets, SAR setting)",
}


class MaskedAutoencoder(PretrainMethod):
    """MAE-style masked autoencoder with any per-patch target.

    Args:
        encoder: the ViT (``pos_embed="sincos"``, CLS token).
        target: a ``pretrain.targets`` target.
        name: ``"mae"`` or ``"fgmae"`` (recorded in sidecars).
        target_name / target_options: the target's registry name and options.
        mask_ratio: removed fraction of the patches (MAE 0.75, FG-MAE 0.7).
        decoder_dim / decoder_depth / decoder_heads: decoder width, blocks and heads.
        mlp_ratio: decoder MLP width as a multiple of ``decoder_dim``.
    """

    def __init__(
        self,
        encoder: nn.Module,
        target,
        name: str = "mae",
        target_name: str = "pixel",
        target_options: Mapping[str, Any] | None = None,
        mask_ratio: float = 0.75,
        decoder_dim: int = 512,
        decoder_depth: int = 8,
        decoder_heads: int = 16,
        mlp_ratio: float = 4.0,
    ) -> None:
        from sarjepa.pretrain.models.pos_embed import sincos_2d
        from sarjepa.pretrain.models.vit import Block

        super().__init__(encoder)
        if encoder.pos_embed_type != "sincos" or encoder.cls_token is None:
            raise SarjepaError(
                f"method '{name}' needs MODEL.POS_EMBED sincos and MODEL.CLASS_TOKEN True "
                f"(got {encoder.pos_embed_type}, class token {encoder.cls_token is not None})"
            )
        self.name = name
        self.target = target
        self.target_name = target_name
        self.target_options = dict(target_options or {})
        self.mask_ratio = float(mask_ratio)
        self.decoder_shape = (int(decoder_dim), int(decoder_depth), int(decoder_heads))
        dim, grid = encoder.embed_dim, encoder.grid_size
        self.decoder_embed = nn.Linear(dim, decoder_dim)
        self.mask_token = nn.Parameter(torch.zeros(1, 1, decoder_dim))
        table = sincos_2d(decoder_dim, grid, cls_token=True).unsqueeze(0)
        self.decoder_pos_embed = nn.Parameter(table, requires_grad=False)
        self.decoder_blocks = nn.ModuleList(
            Block(decoder_dim, decoder_heads, mlp_ratio, True, 0.0, False, encoder.norm_eps)
            for _ in range(decoder_depth)
        )
        self.decoder_norm = nn.LayerNorm(decoder_dim, eps=encoder.norm_eps)
        self.decoder_pred = nn.Linear(decoder_dim, int(target.dim))
        # MAE's initialize_weights: every Linear (encoder included) xavier-uniform with zero bias,
        # LayerNorm 1 / 0, CLS and mask token normal(0, 0.02); the patch embedding is already
        # xavier-uniform on its flattened kernel (the shared ViT's init)
        self.apply(init_weights_mae)
        nn.init.normal_(encoder.cls_token, std=0.02)
        nn.init.normal_(self.mask_token, std=0.02)

    @classmethod
    def from_cfg(cls, cfg, name: str) -> MaskedAutoencoder:
        """Build ``mae`` or ``fgmae`` from a pretraining config."""
        from sarjepa.pretrain.methods import build_encoder

        if int(cfg.PREDICTOR.DEPTH) < 1:
            raise SarjepaError(
                f"method '{name}' needs a decoder: PREDICTOR.DEPTH >= 1, got {cfg.PREDICTOR.DEPTH}"
            )
        if not 0.0 < float(cfg.MASK.RATIO) < 1.0:
            raise SarjepaError(f"MASK.RATIO must be in (0, 1) for '{name}', got {cfg.MASK.RATIO}")
        encoder = build_encoder(cfg)
        target, tname, toptions = build_cfg_target(cfg, encoder.patch_size, *DEFAULT_TARGETS[name])
        dim, heads = int(cfg.PREDICTOR.EMBED_DIM), int(cfg.PREDICTOR.NUM_HEADS)
        if heads < 1 or dim % heads or dim % 4:
            raise SarjepaError(
                f"PREDICTOR.EMBED_DIM {dim} must be divisible by PREDICTOR.NUM_HEADS {heads} and "
                "by 4 (the decoder's sin-cos table)"
            )
        return cls(
            encoder,
            target,
            name=name,
            target_name=tname,
            target_options=toptions,
            mask_ratio=cfg.MASK.RATIO,
            decoder_dim=dim,
            decoder_depth=int(cfg.PREDICTOR.DEPTH),
            decoder_heads=heads,
            mlp_ratio=float(cfg.PREDICTOR.MLP_RATIO),
        )

    def encode(self, images: Tensor, ids_keep: Tensor) -> Tensor:
        """Encoder on the kept patches: (B, 1 + n_keep, D) after the final norm."""
        tokens = self.encoder.patch_embed(images)  # (B, N, D)
        kept = torch.gather(tokens, 1, ids_keep.unsqueeze(-1).expand(-1, -1, tokens.shape[-1]))
        return self.encoder.forward_blocks(kept, pos_index=ids_keep)

    def decode(self, latent: Tensor, ids_restore: Tensor) -> Tensor:
        """Decoder: (B, 1 + n_keep, D) latent -> (B, N, target dim) predictions in grid order."""
        x = self.decoder_embed(latent)
        b, n = ids_restore.shape
        fill = self.mask_token.to(x.dtype).expand(b, n + 1 - x.shape[1], -1)
        patches = torch.cat([x[:, 1:], fill], dim=1)
        patches = torch.gather(patches, 1, ids_restore.unsqueeze(-1).expand(-1, -1, x.shape[-1]))
        x = torch.cat([x[:, :1], patches], dim=1) + self.decoder_pos_embed.to(x.dtype)
        for blk in self.decoder_blocks:
            x = blk(x)
        return self.decoder_pred(self.decoder_norm(x))[:, 1:]

    def forward(self, images: Tensor, generator: torch.Generator | None = None):
        """Loss of one batch.

        Args:
            images: (B, C, H, W) in [0, 1] at the encoder's input size.
            generator: CPU generator for the masks (None: torch's default generator).

        Returns:
            ``(loss, stats)``: 0-d float32 MSE over the removed patches and ``{"loss": detached}``.
        """
        from sarjepa.pretrain.masking import random_masking

        grid = self.encoder.grid_size
        p = self.encoder.patch_size
        if tuple(images.shape[-2:]) != (grid[0] * p, grid[1] * p):
            raise SarjepaError(
                f"method '{self.name}' was built for {grid[0] * p}x{grid[1] * p} images "
                f"(INPUT.SIZE), got {images.shape[-2]}x{images.shape[-1]}"
            )
        rm = random_masking(
            images.shape[0], grid[0] * grid[1], self.mask_ratio, generator, images.device
        )
        pred = self.decode(self.encode(images, rm.ids_keep), rm.ids_restore)
        with torch.no_grad(), torch.autocast(images.device.type, enabled=False):
            target = self.target(images.float())  # (B, N, dim) float32
        loss = masked_mse(pred, target, rm.mask)
        return loss, {"loss": loss.detach()}

    def describe(self) -> dict:
        dim, depth, heads = self.decoder_shape
        return {
            **target_facts(self),
            "masking": {"kind": "random", "mask_ratio": self.mask_ratio},
            "predictor": {"kind": "decoder", "embed_dim": dim, "depth": depth, "num_heads": heads},
            "source": SOURCES.get(self.name, ""),
        }


def register(registry) -> None:
    """Register ``mae`` and ``fgmae``."""
    registry.add("mae", MaskedAutoencoder)
    registry.add("fgmae", MaskedAutoencoder)
