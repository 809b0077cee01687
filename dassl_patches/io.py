"""Dassl's ``read_image`` for single-channel SAR chips.

The authors patched Dassl's ``read_image`` to ``cv2.imread(path, cv2.IMREAD_GRAYSCALE)``. The
project's one decoding policy (:mod:`benchmark.core.images`) reproduces it with Pillow; this is
that policy with Dassl's name and return type.
"""

from __future__ import annotations

import os

from PIL import Image
from sarjepa.benchmark.core.images import read_gray_pil


def read_image_gray(path: str | os.PathLike) -> Image.Image:
    """Decode an image file to an 8-bit single-channel PIL image (mode ``"L"``), OpenCV-equal.

    Raises:
        SarjepaError: the file is missing, truncated or not an image (the message names it).
    """
    return read_gray_pil(path)
