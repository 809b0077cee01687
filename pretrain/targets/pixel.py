"""Pixel targets: raw patch pixels (LoMaR / MAE, optional ``norm_pix``) and Gaussian low-pass."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from sarjepa.benchmark.core.errors import SarjepaError
from sarjepa.pretrain.targets.base import TARGETS, Target, as_float, exact

NORM_PIX_EPS = 1e-6


def normalize_patches(tokens: torch.Tensor, eps: float = NORM_PIX_EPS) -> torch.Tensor:
    """MAE's ``norm_pix_loss``: per patch (x - mean) / sqrt(var + eps), unbiased variance.

    Args:
        tokens: (B, N, D) patch vectors.
    """
    mean = tokens.mean(dim=-1, keepdim=True)
    var = tokens.var(dim=-1, keepdim=True)
    return (tokens - mean) / (var + eps) ** 0.5


@TARGETS.register("pixel")
class PixelTarget(Target):
    """Raw pixels of each patch (p * p values, row-major), as LoMaR / MAE.

    Args:
        patch_size: ViT patch side p.
        norm_pix: normalise each patch to zero mean and unit (unbiased) variance with eps 1e-6,
            as MAE's ``norm_pix_loss``.
    """

    name = "pixel"

    def __init__(self, patch_size: int = 16, norm_pix: bool = False) -> None:
        super().__init__(patch_size)
        self.norm_pix = bool(norm_pix)

    def options(self) -> dict:
        return {**super().options(), "norm_pix": self.norm_pix}

    @exact
    def maps(self, images: torch.Tensor) -> torch.Tensor:
        """The images themselves as float32 (the per-patch normalisation is not a map)."""
        self.check_images(images, patches=False)
        return as_float(images).float()

    @exact
    def __call__(self, images: torch.Tensor) -> torch.Tensor:
        tokens = super().__call__(images)
        return normalize_patches(tokens) if self.norm_pix else tokens


def gaussian_kernel_1d(sigma: float, device: torch.device | None = None) -> torch.Tensor:
    """Normalised 1-D Gaussian with radius ceil(3 sigma): (2 * radius + 1,) float32."""
    radius = max(1, math.ceil(3.0 * sigma))
    d = torch.arange(-radius, radius + 1, dtype=torch.float32, device=device)
    g = torch.exp(-(d**2) / (2.0 * sigma**2))
    return g / g.sum()


def lowpass_maps(images: torch.Tensor, sigma: float) -> torch.Tensor:
    """Separable Gaussian blur with reflect padding: (B, 1, H, W) -> (B, 1, H, W) float32."""
    g = gaussian_kernel_1d(sigma, images.device)
    r = g.numel() // 2
    h, w = images.shape[-2:]
    if r >= h or r >= w:
        raise SarjepaError(
            f"lowpass sigma {sigma} needs images larger than {r} px (3 sigma), got {h}x{w}"
        )
    x = F.pad(as_float(images).float(), (r, r, r, r), mode="reflect")
    x = F.conv2d(x, g.view(1, 1, 1, -1))
    return F.conv2d(x, g.view(1, 1, -1, 1))


@TARGETS.register("lowpass")
class LowpassTarget(PixelTarget):
    """Gaussian low-pass filtered pixels (MaskFeat's low-pass pixel baseline).

    The blur is a normalised Gaussian of std ``sigma`` pixels (default 2.0: it suppresses
    pixel-scale speckle but keeps structures of a few pixels), truncated at 3 sigma, separable,
    with reflect padding. The per-patch target is the p * p filtered pixels, optionally
    per-patch normalised like ``pixel``.

    Args:
        patch_size: ViT patch side p.
        sigma: Gaussian std in pixels (> 0).
        norm_pix: per-patch normalisation as :class:`PixelTarget`.
    """

    name = "lowpass"

    def __init__(self, patch_size: int = 16, sigma: float = 2.0, norm_pix: bool = False) -> None:
        super().__init__(patch_size, norm_pix)
        if not float(sigma) > 0:
            raise SarjepaError(f"target 'lowpass': sigma must be > 0, got {sigma}")
        self.sigma = float(sigma)

    def options(self) -> dict:
        return {**super().options(), "sigma": self.sigma}

    @exact
    def maps(self, images: torch.Tensor) -> torch.Tensor:
        self.check_images(images, patches=False)
        return lowpass_maps(images, self.sigma)
