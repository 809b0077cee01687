"""The one grey-decoding policy and the one list of image extensions.

Every image the project reads (pretraining pools, few-shot datasets, ``sarjepa targets``,
``sarjepa features``, ``sarjepa prepare``) becomes one 8-bit grey plane by :func:`read_gray`. The
policy reproduces ``cv2.imread(path, cv2.IMREAD_GRAYSCALE)``, which the SAR-JEPA authors patched
into Dassl's ``read_image``, with Pillow only (checked against OpenCV 4.14 and 5.0):

- 8-bit grey (any format): unchanged; 1-bit: 0 / 255.
- 16-bit grey (PNG ``I;16``, TIFF ``I;16`` / ``I``): the high byte, ``v >> 8``
  (``high_bit="shift"``, the default). ``high_bit="minmax"`` instead stretches each image's own
  min..max onto 0..255,
  which keeps the detail of 16-bit SAR amplitude files whose values use a small part of the range.
- 32-bit float: clipped to [0, 255] and rounded (``"shift"``) or stretched per image
  (``"minmax"``; non-finite values take the minimum).
- colour JPEG: libjpeg's own luma output (the Y plane), as OpenCV requests it.
- colour PNG (RGB, RGBA, palette): libpng's ``(9797 R + 19234 G + 3737 B) >> 15``, alpha dropped,
  grey pixels kept exactly.
- other colour files (BMP, TIFF, WebP, ...): OpenCV's ``(4899 R + 9617 G + 1868 B + 8192) >> 14``.
- EXIF orientation is applied (OpenCV does so by default).

Known difference from OpenCV: 16-bit colour PNGs may differ by one grey level.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError
from sarjepa.benchmark.core.errors import SarjepaError

#: File extensions (lower case, with the dot) the project treats as images, any letter case.
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".gif", ".webp", ".pgm")
#: How 16-bit and float images become 8-bit (see the module docstring).
HIGH_BIT_MODES = ("shift", "minmax")
_HIGH_BIT_PIL = ("I;16", "I;16L", "I;16B", "I;16N", "I")


def is_image_name(name: str) -> bool:
    """True for a non-hidden file name with one of :data:`IMAGE_EXTENSIONS` (any case)."""
    return name.lower().endswith(IMAGE_EXTENSIONS) and not name.startswith(".")


def find_images(root: str | os.PathLike) -> list[str]:
    """Sorted relative POSIX paths of every image under ``root`` (recursive, links followed).

    Raises:
        SarjepaError: ``root`` is missing, not a folder, or holds no image.
    """
    root = Path(root)
    if not root.exists():
        raise SarjepaError(f"data folder '{root}' does not exist")
    if not root.is_dir():
        raise SarjepaError(f"data path '{root}' is not a folder")
    found: list[str] = []
    for dirpath, dirnames, filenames in os.walk(root, followlinks=True):
        dirnames.sort()
        rel_dir = Path(dirpath).relative_to(root)
        found.extend((rel_dir / n).as_posix() for n in sorted(filenames) if is_image_name(n))
    if not found:
        exts = " ".join(IMAGE_EXTENSIONS)
        raise SarjepaError(f"no images ({exts}, any case) found under data folder '{root}'")
    return sorted(found)


def expand_image_paths(paths: list[str] | tuple[str, ...]) -> list[str]:
    """Files stay as given; folders become their images (recursive, sorted).

    Raises:
        SarjepaError: a path does not exist, or a folder holds no image.
    """
    files: list[str] = []
    for raw in paths:
        p = Path(raw)
        if p.is_dir():
            files.extend(str(p / rel) for rel in find_images(p))
        elif p.is_file():
            files.append(str(p))
        else:
            raise SarjepaError(f"image path '{raw}' does not exist")
    return files


def check_high_bit(high_bit: str, key: str = "high_bit") -> str:
    """Return ``high_bit`` if it is one of :data:`HIGH_BIT_MODES`, else raise naming ``key``."""
    if high_bit not in HIGH_BIT_MODES:
        raise SarjepaError(f"{key} '{high_bit}' is not one of {', '.join(HIGH_BIT_MODES)}")
    return high_bit


def read_gray(path: str | os.PathLike, high_bit: str = "shift", name: str = "") -> np.ndarray:
    """Decode an image file to an (H, W) uint8 grey array by the project's policy.

    Args:
        path: image file (JPEG, PNG, TIFF, BMP, ... as Pillow reads them).
        high_bit: ``"shift"`` (OpenCV-equal) or ``"minmax"`` for 16-bit and float images.
        name: how to name the file in errors (default: ``path``).

    Raises:
        SarjepaError: the file is missing, truncated or not an image (the message names it).
    """
    check_high_bit(high_bit)
    shown = name or os.fspath(path)
    try:
        with Image.open(path) as img:
            if img.format == "JPEG" and img.mode not in ("L", "1"):
                img.draft("L", img.size)  # decode straight to luma, no resampling
            img.load()
            fmt = img.format
            ImageOps.exif_transpose(img, in_place=True)
            return _to_gray(img, fmt, high_bit)
    except FileNotFoundError:
        raise SarjepaError(f"image file not found: '{shown}'") from None
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError, EOFError) as exc:
        reason = " ".join(str(exc).split()) or type(exc).__name__
        raise SarjepaError(f"cannot read image '{shown}': {reason}") from None


def read_gray_pil(path: str | os.PathLike, high_bit: str = "shift") -> Image.Image:
    """:func:`read_gray` as a PIL image of mode ``"L"`` (what Dassl's transforms expect)."""
    return Image.fromarray(read_gray(path, high_bit), "L")


def _stretch(a: np.ndarray) -> np.ndarray:
    """Map the finite min..max of ``a`` linearly onto 0..255 (constant images become 0)."""
    finite = np.isfinite(a)
    if not finite.any():
        return np.zeros(a.shape, dtype=np.uint8)
    lo, hi = float(a[finite].min()), float(a[finite].max())
    a = np.where(finite, a, lo)
    if hi <= lo:
        return np.zeros(a.shape, dtype=np.uint8)
    return np.rint((a - lo) * (255.0 / (hi - lo))).astype(np.uint8)


def _to_gray(img: Image.Image, fmt: str | None, high_bit: str) -> np.ndarray:
    mode = img.mode
    if mode == "L":
        return np.array(img, dtype=np.uint8)
    if mode in ("1", "LA", "La"):
        return np.array(img.convert("L"), dtype=np.uint8)
    if mode in _HIGH_BIT_PIL:
        arr = np.asarray(img).astype(np.int64)
        if high_bit == "minmax":
            return _stretch(arr.astype(np.float64))
        return (np.clip(arr, 0, 65535) >> 8).astype(np.uint8)
    if mode == "F":
        arr = np.asarray(img, dtype=np.float64)
        if high_bit == "minmax":
            return _stretch(arr)
        return np.clip(np.rint(np.nan_to_num(arr)), 0, 255).astype(np.uint8)
    rgb = np.asarray(img.convert("RGB")).astype(np.int64)
    r, g, b = rgb[..., 0], rgb[..., 1], rgb[..., 2]
    if fmt == "PNG":
        gray = (9797 * r + 19234 * g + 3737 * b) >> 15
        gray = np.where((r == g) & (g == b), r, gray)  # libpng keeps grey pixels exactly
    else:
        gray = (4899 * r + 9617 * g + 1868 * b + 8192) >> 14
    return gray.astype(np.uint8)
