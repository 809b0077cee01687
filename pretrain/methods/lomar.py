"""Upstream LoMaR (Chen et al., WACV 2025; junchen14/LoMaR): local masked reconstruction.

LoMaR has **no decoder**: the encoder itself sees a window with mask tokens and a linear layer
on its output predicts the masked patches' pixels. Forward pass, for images (B, 1, H, W), patch
p, grid (H/p, W/p):

1. ``encoder.patch_embed`` embeds the whole image: (B, N, D).
2. :func:`pretrain.masking.shared_local_windows` draws ``num_window`` windows of ``ws x ws``
   patches **shared by the batch** and ``B x num_window`` masks of ``int(ws*ws*ratio)`` patches
   (upstream's random calls in upstream's order), and pairs them with the images as upstream's
   ``generate_window_patches`` does (``MASK.LOMAR_PAIRING upstream``: at a batch divisible by
   ``num_window`` image i trains on window ``i mod num_window`` only, with ``num_window`` mask
   draws) or gives every image all the windows (``distinct``).
3. Each window's tokens are gathered row-major; masked ones are replaced by ``mask_token``.
4. CLS is prepended, the encoder blocks run with iRPE for a ws x ws grid (+ CLS), then the final
   ``norm`` and ``encoder_pred`` Linear(D -> p*p*C); CLS is dropped.
5. The target is the patch pixels, per-patch normalised with ``norm_pix`` (upstream's
   ``--norm_pix_loss``, unbiased variance, eps 1e-6); the loss is the MSE averaged over the
   masked patches only (:func:`pretrain.methods.base.masked_mse`).

How this differs from SAR-JEPA's local-window regression (:mod:`pretrain.methods.sarjepa`, the
``sarjepa_*`` methods): SAR-JEPA adds a predictor (``encoder_pred`` D -> 512, 8 blocks of width
512 / 16 heads with iRPE, ``decoder_norm``, ``decoder_pred``) and draws window positions per
image; LoMaR maps the encoder output straight to the target and shares the positions across the
batch. Both keep masked tokens in the sequence as mask tokens, use the same iRPE (contextual,
product method, ratio 1.9, key-only, head-shared, CLS skipped) and the same window defaults
(7 x 7, 4 windows, 80% masked).

Checkpoint: ``model`` has upstream's ``MaskedAutoencoderViT`` keys and shapes at the same
dimensions: ``cls_token``, ``pos_embed`` (1, 1+N, D), ``patch_embed.proj.*``, ``blocks.N.*``
(with ``attn.rpe_k.lookup_table_weight``), ``norm.*``, ``encoder_pred.*``, ``mask_token``.
Upstream keeps a fixed 2-D sin-cos ``pos_embed`` that its forward never adds (positions come from
iRPE only); it is kept here too, unused, so upstream's model loads our checkpoint with
``strict=True``. Upstream's unused ``decoder_*`` constructor arguments create no weights.

Deviations, all deliberate: 1-channel input (upstream patchifies 3 channels) without ImageNet
mean/std normalisation; bf16 autocast instead of fp16 with loss scaling.
Init as upstream: xavier-uniform Linear layers, LayerNorm 1/0, patch embedding xavier on the
flattened kernel, ``cls_token`` / ``mask_token`` normal(std 0.02), iRPE tables zero; except the
patch embedding's bias, zero here and Conv2d's default uniform init upstream.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
from sarjepa.benchmark.core.errors import SarjepaError
from sarjepa.pretrain.methods.base import init_weights_mae
from sarjepa.pretrain.methods.shared import (
    LocalWindowMethod,
    build_cfg_target,
    check_window_geometry,
    target_facts,
)
from torch import Tensor, nn

DEFAULT_TARGET = ("pixel", {"norm_pix": True})


class LoMaR(LocalWindowMethod):
    """Upstream LoMaR: local windows with mask tokens, encoder, linear pixel head.

    Args:
        encoder: the ViT (``pos_embed="irpe"``, as upstream).
        target: a ``pretrain.targets`` target (upstream: normalised pixels).
        target_name: the target's registry name.
        target_options: the options the target was built with (recorded in sidecars).
        window_size: window side in patches (7).
        num_window: windows per batch (4).
        mask_ratio: masked fraction per window (0.8 -> 39 of 49).
        pairing: images and windows paired as upstream (``"upstream"``) or every image with
            every window (``"distinct"``); see :func:`pretrain.masking.shared_local_windows`.
    """

    name = "lomar"

    def __init__(
        self,
        encoder: nn.Module,
        target,
        target_name: str = "pixel",
        target_options: Mapping[str, Any] | None = None,
        window_size: int = 7,
        num_window: int = 4,
        mask_ratio: float = 0.8,
        pairing: str = "upstream",
    ) -> None:
        from sarjepa.pretrain.models import sincos_2d

        super().__init__(encoder)
        if getattr(encoder, "pos_embed_type", "") != "irpe":
            raise SarjepaError(
                "method 'lomar' encodes positions with iRPE only (upstream LoMaR); "
                f"MODEL.POS_EMBED must be irpe, got '{getattr(encoder, 'pos_embed_type', '?')}'"
            )
        if not getattr(encoder, "has_class_token", False):
            raise SarjepaError("method 'lomar' needs MODEL.CLASS_TOKEN True (upstream LoMaR)")
        self.target = target
        self.target_name = target_name
        self.target_options = dict(target_options or {})
        self.window_size = int(window_size)
        self.num_window = int(num_window)
        self.mask_ratio = float(mask_ratio)
        self.pairing = str(pairing)
        dim = encoder.embed_dim
        table = sincos_2d(dim, encoder.grid_size, cls_token=True).unsqueeze(0)
        self.pos_embed = nn.Parameter(table, requires_grad=False)  # upstream's, never added
        self.encoder_pred = nn.Linear(dim, int(target.dim))
        self.mask_token = nn.Parameter(torch.zeros(1, 1, dim))
        self.apply(init_weights_mae)
        nn.init.normal_(self.encoder.cls_token, std=0.02)
        nn.init.normal_(self.mask_token, std=0.02)

    @classmethod
    def extend_cfg(cls, cfg) -> None:
        """The window keys, plus ``MASK.LOMAR_PAIRING``."""
        super().extend_cfg(cfg)
        # "upstream": LoMaR's image/window tiling (a batch divisible by NUM_WINDOW gives each image
        # one window NUM_WINDOW times); "distinct": every image gets all NUM_WINDOW windows
        cfg.MASK.LOMAR_PAIRING = "upstream"

    @classmethod
    def check_cfg(cls, cfg) -> None:
        from sarjepa.pretrain.masking.batch_windows import PAIRINGS

        super().check_cfg(cfg)
        if cfg.MASK.LOMAR_PAIRING not in PAIRINGS:
            raise SarjepaError(
                f"MASK.LOMAR_PAIRING must be one of {', '.join(PAIRINGS)}, "
                f"got '{cfg.MASK.LOMAR_PAIRING}'"
            )

    @classmethod
    def from_cfg(cls, cfg, name: str = "lomar") -> LoMaR:
        """Build upstream LoMaR from a pretraining config (``PREDICTOR.DEPTH`` must be 0)."""
        from sarjepa.pretrain.methods import build_encoder

        if int(cfg.PREDICTOR.DEPTH) != 0:
            raise SarjepaError(
                "method 'lomar' has no decoder (upstream LoMaR predicts with one linear layer): "
                f"set PREDICTOR.DEPTH 0, got {cfg.PREDICTOR.DEPTH} (sarjepa_pixel is the variant "
                "with SAR-JEPA's predictor)"
            )
        encoder = build_encoder(cfg)
        check_window_geometry(
            cfg.INPUT.SIZE, encoder.patch_size, cfg.MASK.WINDOW_SIZE, cfg.MASK.RATIO
        )
        target, tname, toptions = build_cfg_target(cfg, encoder.patch_size, *DEFAULT_TARGET)
        return cls(
            encoder,
            target,
            target_name=tname,
            target_options=toptions,
            window_size=cfg.MASK.WINDOW_SIZE,
            num_window=cfg.MASK.NUM_WINDOW,
            mask_ratio=cfg.MASK.RATIO,
            pairing=cfg.MASK.LOMAR_PAIRING,
        )

    def draw_windows(self, batch: int, grid_hw: tuple[int, int], generator):
        """Upstream's windows (shared by the batch) and masks, paired by ``pairing``, on the CPU."""
        from sarjepa.pretrain.masking import shared_local_windows

        return shared_local_windows(
            batch,
            grid_hw=grid_hw,
            window_size=self.window_size,
            num_window=self.num_window,
            mask_ratio=self.mask_ratio,
            generator=generator,
            pairing=self.pairing,
        )

    def predict(self, images: Tensor, patch_index: Tensor, mask: Tensor) -> Tensor:
        """Predictions for every window token.

        Args:
            images: (B, C, H, W).
            patch_index: LongTensor (B, W, L), row-major grid indices of W windows of
                L = ws*ws patches, on ``images``' device.
            mask: BoolTensor (B, W, L), True = replaced by the mask token.

        Returns:
            (B*W, L, target dim); sequence ``i*W + k`` is window ``k`` of image ``i``.
        """
        x = self.window_tokens(images, patch_index, mask)
        x = self.encoder.forward_blocks(x, grid=(self.window_size, self.window_size))
        return self.encoder_pred(x)[:, 1:]

    def describe(self) -> dict:
        return {
            **target_facts(self),
            "masking": {
                "kind": "local_windows",
                "window_size": self.window_size,
                "num_window": self.num_window,
                "mask_ratio": self.mask_ratio,
                "window_positions": "shared by the batch",
                "pairing": self.pairing,
            },
            "predictor": {"kind": "linear", "embed_dim": 0, "depth": 0, "num_heads": 0},
            "source": "junchen14/LoMaR models_lomar.py",
        }


def register(registry) -> None:
    """Register ``lomar``."""
    registry.add("lomar", LoMaR)
