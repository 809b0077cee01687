"""Shared pieces of the regression targets: the registry, the base class and patchify.

Every target maps a batch of single-channel images in [0, 1], shape (B, 1, H, W), to per-patch
regression targets (B, N, dim) with N = (H / p) * (W / p) in row-major patch order, and to
per-pixel maps (B, C, H, W) for inspection. The builders live in the modules of this package
and are collected by :mod:`pretrain.targets`.
"""

from __future__ import annotations

import functools

import torch
from sarjepa.benchmark.core.errors import SarjepaError
from sarjepa.benchmark.core.registry import Registry

TARGETS: Registry[type[Target]] = Registry("target")


def exact(method):
    """Run a target method under ``no_grad`` with autocast off (targets are computed in fp32 /
    fp64 whatever autocast the training step uses)."""

    @functools.wraps(method)
    def wrapper(self, images: torch.Tensor, *args, **kwargs):
        with torch.no_grad(), torch.autocast(images.device.type, enabled=False):
            return method(self, images, *args, **kwargs)

    return wrapper


def patchify(maps: torch.Tensor, patch_size: int) -> torch.Tensor:
    """Cut per-pixel maps into per-patch vectors.

    Args:
        maps: (B, C, H, W) with H and W multiples of ``patch_size``.
        patch_size: patch side p in pixels.

    Returns:
        (B, N, C * p * p), N = (H / p) * (W / p) in row-major patch order; inside a patch the
        values are channel-major, then row-major over the p x p pixels (for C = 1 this is the
        MAE / LoMaR ``patchify`` order).
    """
    b, c, h, w = maps.shape
    p = patch_size
    x = maps.reshape(b, c, h // p, p, w // p, p)
    x = x.permute(0, 2, 4, 1, 3, 5)  # (B, h, w, C, p, p)
    return x.reshape(b, (h // p) * (w // p), c * p * p)


def unpatchify(tokens: torch.Tensor, channels: int, grid_hw: tuple[int, int]) -> torch.Tensor:
    """Inverse of :func:`patchify`: (B, N, C * p * p) -> (B, C, H, W)."""
    b, n, d = tokens.shape
    gh, gw = grid_hw
    p = int(round((d // channels) ** 0.5))
    x = tokens.reshape(b, gh, gw, channels, p, p).permute(0, 3, 1, 4, 2, 5)
    return x.reshape(b, channels, gh * p, gw * p)


class Target:
    """Base class of a regression target.

    Subclasses set ``name`` and ``channels`` and implement :meth:`maps`; the default
    :meth:`__call__` patchifies the maps (so ``dim = channels * p * p``). Targets hold no
    trainable state; they run under ``torch.no_grad`` on the images' device.

    Args:
        patch_size: ViT patch side p in pixels.
    """

    name: str = ""
    channels: int = 1

    def __init__(self, patch_size: int = 16) -> None:
        if int(patch_size) < 1:
            raise SarjepaError(f"target patch_size must be >= 1, got {patch_size}")
        self.patch_size = int(patch_size)

    @property
    def dim(self) -> int:
        """Target values per patch."""
        return self.channels * self.patch_size**2

    def options(self) -> dict:
        """The builder options, for checkpoint sidecars and logs."""
        return {"patch_size": self.patch_size}

    def check_images(self, images: torch.Tensor, patches: bool = True) -> None:
        """Raise ``SarjepaError`` unless ``images`` is (B, 1, H, W) (with H, W multiples of p
        when ``patches``)."""
        if images.ndim != 4 or images.shape[1] != 1:
            raise SarjepaError(
                f"target '{self.name}' expects images of shape (B, 1, H, W), "
                f"got {tuple(images.shape)}"
            )
        if not patches:
            return
        h, w = images.shape[-2:]
        p = self.patch_size
        if h % p or w % p:
            raise SarjepaError(
                f"image size {h}x{w} is not a multiple of the patch size {p} (target '{self.name}')"
            )

    def maps(self, images: torch.Tensor) -> torch.Tensor:
        """(B, 1, H, W) in [0, 1] -> (B, channels, H, W) float32 per-pixel maps."""
        raise NotImplementedError

    @exact
    def __call__(self, images: torch.Tensor) -> torch.Tensor:
        """(B, 1, H, W) in [0, 1] -> (B, N, dim) float32 per-patch targets."""
        self.check_images(images)
        return patchify(self.maps(images), self.patch_size)

    def __repr__(self) -> str:
        opts = ", ".join(f"{k}={v!r}" for k, v in self.options().items())
        return f"{type(self).__name__}({opts})"


def as_float(images: torch.Tensor) -> torch.Tensor:
    """Return ``images`` as a floating tensor (float32 unless already float64)."""
    return images if images.dtype in (torch.float32, torch.float64) else images.float()
