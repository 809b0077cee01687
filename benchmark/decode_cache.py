"""A per-process cache of decoded, cropped and resized chips (8-bit), shared by a grid's cells.

Every cell of a grid reads the same test images (MSTAR: 2,425 per cell) and the same few-shot
training images, and decodes, centre-crops and resizes each one again. The geometric part of the
protocol's preprocessing is deterministic and its output is still an 8-bit image
(:meth:`dassl_patches.transforms.SARTransform.prepare`), so this module keeps that output as a
``uint8`` array per (file, size, modification time, crop, size, interpolation) and hands the
rest of the pipeline (flips, ToTensor, normalisation) the very same pixels: results are bitwise
those of decoding every time.

The cache lives in the process that reads the images (the grid worker with the default
``DATALOADER.NUM_WORKERS 0``; DataLoader worker processes keep their own copy for their lifetime)
and is bounded by ``$SARJEPA_DECODE_CACHE_MB`` (default 2048; 0 disables it): when full, the
oldest entries go first. A 224 x 224 chip takes 49 KiB; the MSTAR SOC train + test sets 255 MiB.
"""

from __future__ import annotations

import os
from collections import OrderedDict
from typing import Any

import numpy as np
from PIL import Image

DEFAULT_MB = 2048


class DecodeCache:
    """LRU map ``key -> uint8 (H, W)`` bounded in bytes.

    Args:
        max_bytes: capacity; 0 disables caching.
    """

    def __init__(self, max_bytes: int) -> None:
        self.max_bytes = int(max_bytes)
        self.nbytes = 0
        self.hits = 0
        self.misses = 0
        self._data: OrderedDict[tuple, np.ndarray] = OrderedDict()

    def prepared(self, path: str, transform: Any) -> Image.Image:
        """``transform.prepare(read_image_gray(path))``, from the cache when possible."""
        from sarjepa.dassl_patches.io import read_image_gray

        if self.max_bytes <= 0 or not hasattr(transform, "prepare"):
            self.misses += 1
            img = read_image_gray(path)
            return transform.prepare(img) if hasattr(transform, "prepare") else img
        try:
            st = os.stat(path)
            key = (os.path.abspath(path), st.st_size, st.st_mtime_ns, transform.prepare_key)
        except OSError:
            key = None  # let the reader raise its one-line error
        arr = self._data.get(key) if key is not None else None
        if arr is not None:
            self.hits += 1
            self._data.move_to_end(key)
            return Image.fromarray(arr)
        self.misses += 1
        img = transform.prepare(read_image_gray(path))
        if key is not None and img.mode == "L":
            self._put(key, np.array(img, dtype=np.uint8))
        return img

    def _put(self, key: tuple, arr: np.ndarray) -> None:
        if arr.nbytes > self.max_bytes:
            return
        self._data[key] = arr
        self.nbytes += arr.nbytes
        while self.nbytes > self.max_bytes:
            _, old = self._data.popitem(last=False)
            self.nbytes -= old.nbytes

    def clear(self) -> None:
        self._data.clear()
        self.nbytes = self.hits = self.misses = 0


_CACHE: DecodeCache | None = None


def process_cache() -> DecodeCache:
    """This process's cache, sized from ``$SARJEPA_DECODE_CACHE_MB`` on first use."""
    global _CACHE
    if _CACHE is None:
        mb = os.environ.get("SARJEPA_DECODE_CACHE_MB", str(DEFAULT_MB))
        try:
            size = int(float(mb) * 2**20)
        except ValueError:
            from sarjepa.benchmark.core.errors import SarjepaError

            raise SarjepaError(f"SARJEPA_DECODE_CACHE_MB must be a number, got '{mb}'") from None
        _CACHE = DecodeCache(size)
    return _CACHE
