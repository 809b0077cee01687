"""Histogram-of-oriented-gradient targets: MaskFeat ``hog`` and the ratio-based ``sar_hog``.

Both follow MaskFeat's HOG target (its ``HOGLayerC``, also used by MMSelfSup's
``HOGGenerator``), checked against that code; only the gradient operator differs:

* ``hog``: Sobel gradients on the reflect-padded (1 px) image, as cross-correlations with
  [[1, 0, -1], [2, 0, -2], [1, 0, -1]] (G_x = left minus right) and its transpose
  (G_y = top minus bottom).
* ``sar_hog``: the ratio-of-averages gradient of SAR-HOG (Song, Xu and Yang, Remote Sensing
  8(8):683, 2016), which replaces differences by log-ratios of local means to cope with
  multiplicative speckle. Our choices: the half-windows and the log-ratio are exactly SAR-JEPA's
  GF at one half-width (``radius``, default 5; halves of (2r + 1) x (r + 1) pixels that share
  the centre line, reflect padding, +0.01; equal-sized halves so sums and means give the same
  ratio): G_x = ln(S_left / S_right), G_y = ln(S_top / S_bottom), the same sign convention as the
  Sobel pair above, so the two targets differ only in the gradient. Song et al.'s block
  normalisation and dictionary stages are not used: the histogram below is MaskFeat's.

Histogram (both): magnitude m = sqrt(G_x^2 + G_y^2); orientation phi = atan2(G_x, G_y) (MaskFeat's
argument order) folded to [0, pi) - unsigned; **hard** binning into ``nbins`` = 9 bins of
pi / 9 (bin = floor(phi / pi * nbins) mod nbins; no bilinear interpolation between bins or
cells); each pixel votes its magnitude, weighted (as MaskFeat's images setting,
``gaussian_window=16``) by a normalised 16 x 16 Gaussian (std 8) tiled over the image
(``gaussian_window=0`` switches this off); votes are summed over ``cell`` x ``cell`` = 8 x 8
pixel cells and each cell's histogram is L2-normalised (eps 1e-12). Unlike MaskFeat, votes with
magnitude <= 1e-6 (rounding noise) are dropped, so an exactly flat cell stays all-zero instead of
becoming a noise-driven unit vector; elsewhere the two agree to float32 rounding.
Per 16-px patch the target is the (nbins, 2, 2) block of its 2 x 2 cells flattened bin-major
(MaskFeat's order): index = bin * 4 + cell_row * 2 + cell_col; 36 values.
``norm_pix=True`` then normalises each patch's 36 values to zero mean and unit (unbiased)
variance, eps 1e-6, as MAE's ``norm_pix_loss`` does to any target: FG-MAE trains its HOG
target with ``--norm_pix_loss`` on (default off, as MaskFeat).
Computation is float32, as MaskFeat.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from sarjepa.benchmark.core.errors import SarjepaError
from sarjepa.pretrain.targets.base import TARGETS, Target, as_float, exact, patchify
from sarjepa.pretrain.targets.gf import gf_log_ratios
from sarjepa.pretrain.targets.pixel import normalize_patches

# Votes of smaller gradient magnitude are dropped: on an exactly flat cell the gradients are
# rounding noise (~1e-7 from conv2d or the summed-area table) that the L2 normalisation would
# blow up into a random unit histogram; real gradients of [0, 1] images are far larger.
MIN_MAGNITUDE = 1e-6


def sobel_gradients(images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """MaskFeat's Sobel pair on (B, 1, H, W): (G_x, G_y) each (B, 1, H, W) float32.

    G_x = left minus right column sums (weights 1, 2, 1), G_y = top minus bottom; reflect pad 1.
    """
    x = F.pad(as_float(images).float(), (1, 1, 1, 1), mode="reflect")
    kx = torch.tensor([[1.0, 0.0, -1.0], [2.0, 0.0, -2.0], [1.0, 0.0, -1.0]], device=x.device)
    weight = torch.stack([kx, kx.t()]).unsqueeze(1)  # (2, 1, 3, 3)
    g = F.conv2d(x, weight)
    return g[:, :1], g[:, 1:]


def gaussian_window(size: int, device: torch.device | None = None) -> torch.Tensor:
    """MaskFeat's (size, size) Gaussian weights, std = size // 2, centred, normalised to sum 1."""
    n = torch.arange(size, dtype=torch.float32, device=device)
    n = (n - n.mean()) / (size // 2)
    g = torch.exp(-0.5 * n**2)
    k = torch.outer(g, g)
    return k / k.sum()


def orientation_histograms(
    gx: torch.Tensor, gy: torch.Tensor, nbins: int = 9, cell: int = 8, window: int = 16
) -> torch.Tensor:
    """Cell histograms of oriented gradients, L2-normalised per cell.

    Args:
        gx, gy: (B, 1, H, W) gradients (H, W multiples of ``cell`` and of ``window`` if > 0).
        nbins: orientation bins over [0, pi).
        cell: cell side in pixels.
        window: side of the tiled Gaussian magnitude weighting, 0 for none.

    Returns:
        (B, nbins, H / cell, W / cell) float32.
    """
    gx, gy = gx.float(), gy.float()
    b, _, h, w = gx.shape
    mag = torch.hypot(gx, gy)[:, 0]
    mag = torch.where(mag > MIN_MAGNITUDE, mag, torch.zeros_like(mag))
    if window:
        mag = mag * gaussian_window(window, mag.device).repeat(h // window, w // window)
    phase = torch.atan2(gx, gy)[:, 0]  # [-pi, pi]
    bins = torch.floor(phase / math.pi * nbins).long().remainder_(nbins)  # (B, H, W)
    hc, wc = h // cell, w // cell
    cell_index = (torch.arange(h, device=gx.device) // cell)[:, None] * wc + (
        torch.arange(w, device=gx.device) // cell
    )[None, :]  # (H, W)
    flat = (bins * (hc * wc) + cell_index).flatten(1)  # (B, H*W) index into (nbins, hc, wc)
    hist = mag.new_zeros(b, nbins * hc * wc).scatter_add_(1, flat, mag.flatten(1))
    hist = hist.view(b, nbins, hc, wc)
    return F.normalize(hist, p=2, dim=1, eps=1e-12)


class _HistTarget(Target):
    """Shared HOG-style target; subclasses provide :meth:`gradients`."""

    def __init__(
        self,
        patch_size: int = 16,
        nbins: int = 9,
        cell: int = 8,
        gaussian_window: int = 16,
        norm_pix: bool = False,
    ) -> None:
        super().__init__(patch_size)
        self.nbins, self.cell, self.window = int(nbins), int(cell), int(gaussian_window)
        self.norm_pix = bool(norm_pix)
        if self.nbins < 1 or self.cell < 1 or self.window < 0:
            raise SarjepaError(
                f"target '{self.name}': nbins and cell must be >= 1 and gaussian_window >= 0, "
                f"got nbins={nbins}, cell={cell}, gaussian_window={gaussian_window}"
            )
        if self.patch_size % self.cell:
            raise SarjepaError(
                f"target '{self.name}': patch size {self.patch_size} is not a multiple of the "
                f"cell size {self.cell}"
            )
        self.channels = self.nbins

    @property
    def dim(self) -> int:
        return self.nbins * (self.patch_size // self.cell) ** 2

    def options(self) -> dict:
        return {
            **super().options(),
            "nbins": self.nbins,
            "cell": self.cell,
            "gaussian_window": self.window,
            "norm_pix": self.norm_pix,
        }

    def gradients(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        raise NotImplementedError

    @exact
    def histograms(self, images: torch.Tensor) -> torch.Tensor:
        """(B, 1, H, W) -> (B, nbins, H / cell, W / cell) normalised cell histograms."""
        self.check_images(images)
        h, w = images.shape[-2:]
        if self.window and (h % self.window or w % self.window):
            raise SarjepaError(
                f"target '{self.name}': image size {h}x{w} is not a multiple of "
                f"gaussian_window {self.window}"
            )
        gx, gy = self.gradients(images)
        return orientation_histograms(gx, gy, self.nbins, self.cell, self.window)

    @exact
    def maps(self, images: torch.Tensor) -> torch.Tensor:
        """(B, nbins, H, W): each cell's normalised histogram repeated over its pixels."""
        hist = self.histograms(images)
        return hist.repeat_interleave(self.cell, 2).repeat_interleave(self.cell, 3)

    @exact
    def __call__(self, images: torch.Tensor) -> torch.Tensor:
        """(B, 1, H, W) -> (B, N, nbins * (p / cell)^2), bin-major then cell row, cell col;
        each patch normalised to zero mean, unit variance when ``norm_pix``."""
        tokens = patchify(self.histograms(images), self.patch_size // self.cell)
        return normalize_patches(tokens) if self.norm_pix else tokens


@TARGETS.register("hog")
class HOGTarget(_HistTarget):
    """MaskFeat HOG target (Sobel gradients); see the module docstring for every choice.

    Args:
        patch_size: ViT patch side p (a multiple of ``cell``).
        nbins: unsigned orientation bins over [0, pi) (9).
        cell: cell side in pixels (8): (p / cell)^2 cells per patch.
        gaussian_window: tiled Gaussian magnitude weighting (16 as MaskFeat; 0 = none).
        norm_pix: per-patch zero mean / unit variance of the 36 values (FG-MAE; MAE's eps 1e-6).
    """

    name = "hog"

    def gradients(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return sobel_gradients(images)


@TARGETS.register("sar_hog")
class SARHOGTarget(_HistTarget):
    """SAR-HOG target: the MaskFeat histogram of the log-ratio (ratio-of-averages) gradient.

    Args:
        patch_size, nbins, cell, gaussian_window, norm_pix: as :class:`HOGTarget`.
        radius: half-width r of the GF half-windows ((2r + 1) x (r + 1) pixels), default 5.
    """

    name = "sar_hog"

    def __init__(
        self,
        patch_size: int = 16,
        nbins: int = 9,
        cell: int = 8,
        gaussian_window: int = 16,
        radius: int = 5,
        norm_pix: bool = False,
    ) -> None:
        super().__init__(patch_size, nbins, cell, gaussian_window, norm_pix)
        if int(radius) != radius or int(radius) < 1:
            raise SarjepaError(f"target 'sar_hog': radius must be a positive integer, got {radius}")
        self.radius = int(radius)

    def options(self) -> dict:
        return {**super().options(), "radius": self.radius}

    def gradients(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return gf_log_ratios(images, (self.radius,))
