"""Single-channel image reading for SAR chips.

The authors patched Dassl's ``read_image`` to ``cv2.imread(path, cv2.IMREAD_GRAYSCALE)``. This
module gives the same 8-bit grey values with Pillow only (checked against OpenCV 4.14 and 5.0):

- 8-bit greyscale (any format): unchanged.
- 16-bit greyscale (PNG ``I;16``, TIFF ``I;16``/``I``): the high byte, ``v >> 8``.
- colour JPEG: libjpeg's own luma output (the Y plane), as OpenCV requests it.
- colour PNG (RGB, RGBA, palette): libpng's ``(9797 R + 19234 G + 3737 B) >> 15`` (alpha dropped).
- other colour files (BMP, TIFF, WebP ...): OpenCV's ``(4899 R + 9617 G + 1868 B + 8192) >> 14``.
- 32-bit float: clipped to [0, 255] and rounded.
- EXIF orientation is applied (OpenCV does so by default).

Known difference: 16-bit colour PNGs may differ from OpenCV by one grey level.
"""

from __future__ import annotations

import os

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from benchmark.errors import SarjepaError

_HIGH_BIT_MODES = ("I;16", "I;16L", "I;16B", "I;16N", "I")


def read_image_gray(path: str | os.PathLike) -> Image.Image:
    """Decode an image file to an 8-bit single-channel PIL image (mode ``"L"``).

    Args:
        path: image file (JPEG, PNG, TIFF, BMP, ... as Pillow reads them).

    Returns:
        PIL image of mode ``"L"``, size (W, H) of the file (after EXIF orientation).

    Raises:
        SarjepaError: the file is missing, truncated or not an image (the message names it).
    """
    try:
        with Image.open(path) as img:
            if img.format == "JPEG" and img.mode not in ("L", "1"):
                img.draft("L", img.size)  # decode straight to luma, no resampling
            img.load()
            fmt = img.format
            ImageOps.exif_transpose(img, in_place=True)
            return _to_gray(img, fmt)
    except FileNotFoundError:
        raise SarjepaError(f"image file not found: '{os.fspath(path)}'") from None
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as exc:
        reason = " ".join(str(exc).split()) or type(exc).__name__
        raise SarjepaError(f"cannot read image '{os.fspath(path)}': {reason}") from None


def _to_gray(img: Image.Image, fmt: str | None) -> Image.Image:
    mode = img.mode
    if mode == "L":
        return img
    if mode in ("1", "LA", "La"):
        return img.convert("L")
    if mode in _HIGH_BIT_MODES:
        arr = np.asarray(img).astype(np.int64)
        return Image.fromarray((np.clip(arr, 0, 65535) >> 8).astype(np.uint8), "L")
    if mode == "F":
        arr = np.asarray(img, dtype=np.float64)
        return Image.fromarray(np.clip(np.rint(arr), 0, 255).astype(np.uint8), "L")
    rgb = np.asarray(img.convert("RGB")).astype(np.int64)
    r, g, b = rgb[..., 0], rgb[..., 1], rgb[..., 2]
    if fmt == "PNG":
        gray = (9797 * r + 19234 * g + 3737 * b) >> 15
        gray = np.where((r == g) & (g == b), r, gray)  # libpng keeps grey pixels exactly
    else:
        gray = (4899 * r + 9617 * g + 1868 * b + 8192) >> 14
    return Image.fromarray(gray.astype(np.uint8), "L")
