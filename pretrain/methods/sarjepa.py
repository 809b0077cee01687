"""SAR-JEPA's local-window masked prediction, and its target ablation.

One class, :class:`LocalWindowRegression`, parameterised by the regression target, registered as
below. The ``sarjepa_*`` variants keep SAR-JEPA's architecture (encoder + 8-block predictor) and
recipe and change only the target, so a comparison isolates the target. (Upstream LoMaR, with
its own linear head and recipe, is :mod:`pretrain.methods.lomar`; before that module existed,
``sarjepa_pixel`` / ``sarjepa_hog`` / ``sarjepa_sar_hog`` / ``sarjepa_lowpass`` were called
``lomar`` / ``lomar_hog`` / ``lomar_sar_hog`` / ``lomar_lowpass``: see :data:`RENAMED`.)

================ =========== ==========================================
method           target      default target options
================ =========== ==========================================
sarjepa          gf          (the target's: half-widths 5, 9, 13, 17)
sarjepa_gauss    gf_gauss    (the target's)
sarjepa_pixel    pixel       norm_pix=True
sarjepa_hog      hog         (the target's)
sarjepa_sar_hog  sar_hog     (the target's)
sarjepa_lowpass  lowpass     (the target's)
================ =========== ==========================================

Forward pass (PROTOCOL.md#sar-jepa-pretraining), for images (B, 1, H, W) and patch p, grid
(H/p, W/p):

1. ``encoder.patch_embed`` embeds the whole image once: (B, N, D).
2. :func:`pretrain.masking.local_windows` draws, **per image**, ``num_window`` windows of
   ``ws x ws`` patches, each with exactly ``int(ws*ws*ratio)`` masked patches. Window positions are
   per image (not shared by the batch). Image ``i``'s windows are the contiguous sequences
   ``i*num_window ... (i+1)*num_window - 1``; every image gets all of its windows (the authors'
   image/window pairing bug is not reproduced).
3. Each window's ``ws*ws`` tokens are gathered (row-major inside the window); masked ones are
   replaced by the learned ``mask_token`` (1, 1, D) - they stay in the sequence.
4. ``encoder.forward_blocks(tokens, grid=(ws, ws))`` (CLS prepended inside, iRPE for a ws x ws
   grid, final norm) -> ``encoder_pred`` Linear(D -> Dp) -> ``decoder_blocks`` (Dp wide, iRPE) ->
   ``decoder_norm`` -> ``decoder_pred`` Linear(Dp -> target dim). As in the authors' code the CLS
   token runs through the predictor too and is dropped at the end.
5. Targets ``build_target(...)(images)`` (B, N, dim) are computed once per image in float32
   (outside autocast), gathered with the same patch indices, and the loss is
   :func:`pretrain.methods.base.masked_mse` over the masked patches only.

Init as the authors (MAE) for xavier-uniform Linear layers (encoder included), LayerNorm 1/0 and
``mask_token`` normal(std 0.02); iRPE tables and the patch embedding keep the encoder's init,
which differs from the authors' in the patch embedding's bias (zero here, Conv2d's default
uniform init there) and the CLS token (trunc-normal here, normal there, both std 0.02). See
PROTOCOL.md#initialisation.
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

# method name -> (target name, default target options)
VARIANTS: dict[str, tuple[str, dict[str, Any]]] = {
    "sarjepa": ("gf", {}),
    "sarjepa_gauss": ("gf_gauss", {}),
    "sarjepa_pixel": ("pixel", {"norm_pix": True}),
    "sarjepa_hog": ("hog", {}),
    "sarjepa_sar_hog": ("sar_hog", {}),
    "sarjepa_lowpass": ("lowpass", {}),
}

# Names these variants had in checkpoints written before upstream LoMaR got its own module.
RENAMED: dict[str, str] = {
    "lomar": "sarjepa_pixel",
    "lomar_hog": "sarjepa_hog",
    "lomar_sar_hog": "sarjepa_sar_hog",
    "lomar_lowpass": "sarjepa_lowpass",
}


class LocalWindowRegression(LocalWindowMethod):
    """Local-window masked regression of a fixed per-patch target (SAR-JEPA and its ablation).

    Args:
        encoder: the ViT (any ``pos_embed``; the paper uses iRPE).
        target: a ``pretrain.targets`` target object (callable, with ``dim``).
        name: registered method name (for checkpoints and logs).
        target_name: the target's registry name.
        target_options: the options the target was built with (recorded in sidecars).
        window_size: window side in patches (7).
        num_window: windows per image (4).
        mask_ratio: masked fraction per window (0.8 -> 39 of 49).
        pred_dim, pred_depth, pred_heads, pred_mlp_ratio: predictor shape (512, 8, 16, 4).
    """

    def __init__(
        self,
        encoder: nn.Module,
        target,
        name: str = "sarjepa",
        target_name: str = "gf",
        target_options: Mapping[str, Any] | None = None,
        window_size: int = 7,
        num_window: int = 4,
        mask_ratio: float = 0.8,
        pred_dim: int = 512,
        pred_depth: int = 8,
        pred_heads: int = 16,
        pred_mlp_ratio: float = 4.0,
    ) -> None:
        from sarjepa.pretrain.models import Block

        super().__init__(encoder)
        self.name = name
        self.target_name = target_name
        self.target_options = dict(target_options or {})
        self.target = target
        self.window_size = int(window_size)
        self.num_window = int(num_window)
        self.mask_ratio = float(mask_ratio)
        if pred_dim % pred_heads:
            raise SarjepaError(
                f"PREDICTOR.EMBED_DIM {pred_dim} is not divisible by PREDICTOR.NUM_HEADS "
                f"{pred_heads}"
            )
        dim = encoder.embed_dim
        rpe = getattr(encoder, "pos_embed_type", "irpe") == "irpe"
        eps = getattr(encoder, "norm_eps", 1e-6)
        self.mask_token = nn.Parameter(torch.zeros(1, 1, dim))
        self.encoder_pred = nn.Linear(dim, pred_dim)
        self.decoder_blocks = nn.ModuleList(
            Block(pred_dim, pred_heads, pred_mlp_ratio, qkv_bias=True, rpe=rpe, norm_eps=eps)
            for _ in range(pred_depth)
        )
        self.decoder_norm = nn.LayerNorm(pred_dim, eps=eps)
        self.decoder_pred = nn.Linear(pred_dim, int(target.dim))
        self._rpe_cache: dict[tuple, Tensor] = {}
        self.apply(init_weights_mae)
        nn.init.normal_(self.mask_token, std=0.02)

    @classmethod
    def from_cfg(cls, cfg, name: str) -> LocalWindowRegression:
        """Build the registered SAR-JEPA-family method ``name`` from a pretraining config."""
        from sarjepa.pretrain.methods import build_encoder

        encoder = build_encoder(cfg)
        check_window_geometry(
            cfg.INPUT.SIZE, encoder.patch_size, cfg.MASK.WINDOW_SIZE, cfg.MASK.RATIO
        )
        target, tname, toptions = build_cfg_target(cfg, encoder.patch_size, *VARIANTS[name])
        return cls(
            encoder,
            target,
            name=name,
            target_name=tname,
            target_options=toptions,
            window_size=cfg.MASK.WINDOW_SIZE,
            num_window=cfg.MASK.NUM_WINDOW,
            mask_ratio=cfg.MASK.RATIO,
            pred_dim=cfg.PREDICTOR.EMBED_DIM,
            pred_depth=cfg.PREDICTOR.DEPTH,
            pred_heads=cfg.PREDICTOR.NUM_HEADS,
            pred_mlp_ratio=cfg.PREDICTOR.MLP_RATIO,
        )

    @classmethod
    def current_name(cls, name: str, model_keys) -> str | None:
        """Old names of the variants (:data:`RENAMED`); a ``lomar`` checkpoint is SAR-JEPA's pixel
        variant only when it has the predictor, ``decoder_pred.*``, which upstream LoMaR lacks."""
        new = RENAMED.get(name)
        if new is None or (name == "lomar" and "decoder_pred.weight" not in set(model_keys)):
            return None
        return new

    def _decoder_rpe(self, device: torch.device) -> Tensor | None:
        """iRPE bucket ids of a ws x ws window (+ CLS) for the predictor, cached per device."""
        if getattr(self.encoder, "pos_embed_type", "irpe") != "irpe":
            return None
        skip = 1 if getattr(self.encoder, "has_class_token", True) else 0
        key = (self.window_size, skip, str(device))
        if key not in self._rpe_cache:
            from sarjepa.pretrain.models import irpe_bucket_ids

            ids = irpe_bucket_ids(self.window_size, self.window_size, skip=skip)
            self._rpe_cache[key] = ids.to(device)
        return self._rpe_cache[key]

    def draw_windows(self, batch: int, grid_hw: tuple[int, int], generator):
        """Per-image windows: ``patch_index`` and ``mask`` (B, num_window, ws*ws) on the CPU."""
        from sarjepa.pretrain.masking import local_windows

        return local_windows(
            batch,
            grid_hw=grid_hw,
            window_size=self.window_size,
            num_window=self.num_window,
            mask_ratio=self.mask_ratio,
            generator=generator,
        )

    def predict(self, images: Tensor, patch_index: Tensor, mask: Tensor) -> Tensor:
        """Predictions for every window token.

        Args:
            images: (B, C, H, W).
            patch_index: LongTensor (B, W, L) row-major indices into the full patch grid
                (W windows of L = ws*ws patches each) on ``images``' device.
            mask: BoolTensor (B, W, L), True = replaced by the mask token.

        Returns:
            (B*W, L, target dim), sequence ``i*W + k`` = window ``k`` of image ``i``.
        """
        x = self.window_tokens(images, patch_index, mask)
        x = self.encoder.forward_blocks(x, grid=(self.window_size, self.window_size))
        x = self.encoder_pred(x)
        rpe_index = self._decoder_rpe(x.device)
        for blk in self.decoder_blocks:
            x = blk(x, rpe_index)
        x = self.decoder_pred(self.decoder_norm(x))
        if getattr(self.encoder, "has_class_token", True):
            x = x[:, 1:]
        return x

    def describe(self) -> dict:
        return {
            **target_facts(self),
            "masking": {
                "kind": "local_windows",
                "window_size": self.window_size,
                "num_window": self.num_window,
                "mask_ratio": self.mask_ratio,
                "window_positions": "per image",
            },
            "predictor": {
                "embed_dim": self.encoder_pred.out_features,
                "depth": len(self.decoder_blocks),
                "num_heads": self.decoder_blocks[0].attn.num_heads if self.decoder_blocks else 0,
                "cls_through_predictor": bool(getattr(self.encoder, "has_class_token", True)),
            },
        }


def register(registry) -> None:
    """Register SAR-JEPA and its target variants in the method registry."""
    for method_name in VARIANTS:
        registry.add(method_name, LocalWindowRegression)
