"""Single-channel SAR preprocessing, as the authors patched Dassl's ``build_transform``.

Pipeline (train and test alike, ``INPUT.TRANSFORMS: []``)::

    CenterCrop(INPUT.CROP_SIZE)   # zero-pads an image smaller than the crop (torchvision rules)
    Resize(INPUT.SIZE)            # PIL resampling, INPUT.INTERPOLATION (bicubic)
    [random_flip]                 # train only: RandomVerticalFlip then RandomHorizontalFlip, p=0.5
    ToTensor                      # (1, H, W) float32 in [0, 1]
    [normalize]                   # (x - PIXEL_MEAN) / PIXEL_STD, one value per channel

The authors hard-coded the 128-pixel crop; here it is ``INPUT.CROP_SIZE`` (0 disables it). For a
non-square ``INPUT.SIZE`` Dassl's test path resizes the short side and centre-crops; here both
paths resize to exactly ``INPUT.SIZE`` (identical for the square sizes the protocol uses).
"""

from __future__ import annotations

from typing import Any

import torch
import torchvision.transforms.functional as TF
from PIL import Image
from sarjepa.benchmark.core.errors import SarjepaError, unknown
from torchvision.transforms import RandomHorizontalFlip, RandomVerticalFlip

SUPPORTED = ("random_flip", "normalize")
# Dassl's AVAI_CHOICES: accepted names that this harness does not implement.
DASSL_CHOICES = (
    "random_flip",
    "random_resized_crop",
    "normalize",
    "instance_norm",
    "random_crop",
    "random_translation",
    "center_crop",
    "cutout",
    "imagenet_policy",
    "cifar10_policy",
    "svhn_policy",
    "randaugment",
    "randaugment_fixmatch",
    "randaugment2",
    "gaussian_noise",
    "colorjitter",
    "randomgrayscale",
    "gaussian_blur",
)
INTERPOLATION = {
    "bicubic": Image.Resampling.BICUBIC,
    "bilinear": Image.Resampling.BILINEAR,
    "nearest": Image.Resampling.NEAREST,
}


def _pair(value: Any, key: str) -> tuple[int, int]:
    if isinstance(value, int):
        return int(value), int(value)
    if isinstance(value, (list, tuple)) and len(value) == 2:
        return int(value[0]), int(value[1])
    raise SarjepaError(f"{key} must be an int or (height, width), got {value!r}")


def preprocessing_dict(cfg: Any, is_train: bool = False) -> dict:
    """A JSON-able description of the preprocessing, for cache keys and provenance.

    Args:
        cfg: run config (uses the ``INPUT`` keys).
        is_train: describe the training pipeline (adds ``random_flip`` if configured).
    """
    choices = _check_choices(list(cfg.INPUT.TRANSFORMS))
    steps = [c for c in choices if is_train or c != "random_flip"]
    out = {
        "reader": "gray8-opencv-compatible/1",
        "no_transform": bool(cfg.INPUT.NO_TRANSFORM),
        "crop_size": list(_pair(cfg.INPUT.CROP_SIZE, "INPUT.CROP_SIZE")),
        "size": list(_pair(cfg.INPUT.SIZE, "INPUT.SIZE")),
        "interpolation": str(cfg.INPUT.INTERPOLATION),
        "transforms": steps,
    }
    if "normalize" in steps:
        out["pixel_mean"] = [float(v) for v in cfg.INPUT.PIXEL_MEAN]
        out["pixel_std"] = [float(v) for v in cfg.INPUT.PIXEL_STD]
    return out


class SARTransform:
    """Callable ``PIL image -> Tensor (C, H, W)`` built by :func:`build_transform`.

    Attributes:
        steps: names of the steps in order (for logs).
    """

    def __init__(
        self,
        crop_size: tuple[int, int] | None,
        size: tuple[int, int] | None,
        interpolation: Image.Resampling,
        flip: bool,
        mean: list[float] | None,
        std: list[float] | None,
    ) -> None:
        self.crop_size = crop_size
        self.size = size
        self.interpolation = interpolation
        self.flips = [RandomVerticalFlip(), RandomHorizontalFlip()] if flip else []
        self.mean = mean
        self.std = std
        self.steps = (
            ([f"center_crop{crop_size}"] if crop_size else [])
            + ([f"resize{size}:{interpolation.name.lower()}"] if size else [])
            + (["random_vflip", "random_hflip"] if flip else [])
            + ["to_tensor"]
            + ([f"normalize(mean={mean}, std={std})"] if mean is not None else [])
        )

    def __call__(self, img: Image.Image) -> torch.Tensor:
        """Apply the pipeline to a PIL image (mode ``"L"``, size (W, H)) -> (C, H', W') float32."""
        return self.finish(self.prepare(img))

    @property
    def prepare_key(self) -> tuple:
        """What :meth:`prepare` depends on (a cache key part for its output)."""
        return (self.crop_size, self.size, self.interpolation.name)

    def prepare(self, img: Image.Image) -> Image.Image:
        """The deterministic geometric part: centre crop and resize; still 8-bit PIL.

        Its output is the input of :meth:`finish`, so it can be cached per image as uint8
        without changing any result.
        """
        if self.crop_size:
            img = TF.center_crop(img, list(self.crop_size))
        if self.size and img.size != (self.size[1], self.size[0]):
            img = img.resize((self.size[1], self.size[0]), self.interpolation)
        return img

    def finish(self, img: Image.Image) -> torch.Tensor:
        """The rest: random flips (train), ToTensor, normalisation -> (C, H, W) float32."""
        for flip in self.flips:
            img = flip(img)
        x = TF.to_tensor(img)
        if self.mean is not None:
            if len(self.mean) != x.shape[0] or len(self.std) != x.shape[0]:
                raise SarjepaError(
                    f"INPUT.PIXEL_MEAN/PIXEL_STD have {len(self.mean)}/{len(self.std)} values but "
                    f"the images have {x.shape[0]} channel(s)"
                )
            x = TF.normalize(x, self.mean, self.std)
        return x

    def __repr__(self) -> str:
        return f"SARTransform({' -> '.join(self.steps)})"


def _check_choices(choices: list[str]) -> list[str]:
    for name in choices:
        if name not in DASSL_CHOICES:
            raise unknown("transform (INPUT.TRANSFORMS)", name, DASSL_CHOICES)
        if name not in SUPPORTED:
            raise SarjepaError(
                f"INPUT.TRANSFORMS '{name}' is a Dassl augmentation not implemented for SAR "
                f"chips here; supported: {', '.join(SUPPORTED)}"
            )
    return choices


def build_transform(cfg: Any, is_train: bool = True) -> SARTransform:
    """Build the train or test preprocessing from ``cfg.INPUT`` (Dassl's signature).

    Args:
        cfg: run config.
        is_train: training pipeline (random augmentations named in ``INPUT.TRANSFORMS`` apply).

    Returns:
        ``SARTransform``: ``PIL image "L" -> Tensor (1, H, W)`` with ``(H, W) = INPUT.SIZE``.
    """
    choices = _check_choices(list(cfg.INPUT.TRANSFORMS))
    interp = str(cfg.INPUT.INTERPOLATION)
    if interp not in INTERPOLATION:
        raise unknown("interpolation (INPUT.INTERPOLATION)", interp, INTERPOLATION)
    crop = _pair(cfg.INPUT.CROP_SIZE, "INPUT.CROP_SIZE")
    size = _pair(cfg.INPUT.SIZE, "INPUT.SIZE")
    if min(size) <= 0 or min(crop) < 0:
        raise SarjepaError(f"INPUT.SIZE must be > 0 and INPUT.CROP_SIZE >= 0, got {size}/{crop}")
    if cfg.INPUT.NO_TRANSFORM:
        return SARTransform(None, None, INTERPOLATION[interp], False, None, None)
    norm = "normalize" in choices
    return SARTransform(
        crop_size=crop if min(crop) > 0 else None,
        size=size,
        interpolation=INTERPOLATION[interp],
        flip=is_train and "random_flip" in choices,
        mean=[float(v) for v in cfg.INPUT.PIXEL_MEAN] if norm else None,
        std=[float(v) for v in cfg.INPUT.PIXEL_STD] if norm else None,
    )
