"""Tiny fake dataset trees in the authors' on-disk layouts, for the benchmark tests."""

from __future__ import annotations

import io
import os
import random
from pathlib import Path

import numpy as np
from PIL import Image

MSTAR_CLASSES = ["BMP2", "BTR70", "T72", "BTR60", "2S1", "BRDM2", "D7", "T62", "ZIL131", "ZSU234"]
FUSAR_CLASSES = [
    "Bridges",
    "Cargo",
    "CoastalLands_island",
    "Fishing",
    "LandPatches",
    "OtherShip",
    "SeaClutterWaves",
    "SeaPatches",
    "StrongFalseAlarms",
    "Tanker",
]
ACD_CLASSES = ["A220", "A330", "ARJ21", "Boeing737", "Boeing787"]

_BYTES: dict[str, bytes] = {}


def image_bytes(ext: str) -> bytes:
    """Bytes of a valid 8x8 grey image for the extension (encoded once)."""
    fmt = {".png": "PNG", ".jpg": "JPEG", ".jpeg": "JPEG", ".bmp": "BMP"}[ext.lower()]
    if fmt not in _BYTES:
        buf = io.BytesIO()
        Image.fromarray(np.full((8, 8), 128, np.uint8)).save(buf, format=fmt)
        _BYTES[fmt] = buf.getvalue()
    return _BYTES[fmt]


def write_files(base: Path, relpaths: list[str]) -> None:
    """Create each ``base/relpath`` as a tiny valid image (by extension) or a text file."""
    for rel in relpaths:
        path = base / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        ext = path.suffix.lower()
        data = image_bytes(ext) if ext in (".png", ".jpg", ".jpeg", ".bmp") else b"x"
        path.write_bytes(data)


def make_class_tree(
    base: Path,
    split: str,
    classes: list[str],
    counts: list[int],
    ext: str,
    seed: int = 0,
    nested: bool = True,
) -> list[str]:
    """Write ``counts[i]`` images per class under ``base/split/<class>/`` (some in sub-folders;
    ``split`` "" writes ``base/<class>/``).

    Returns:
        The relative paths written (relative to ``base``), in creation order.
    """
    rng = random.Random(seed)
    prefix = f"{split}/" if split else ""
    rels = []
    for cls, n in zip(classes, counts):
        for i in range(n):
            depth = rng.choice([0, 0, 1, 2]) if nested else 0
            sub = "".join(f"s{rng.choice('ab')}{k}/" for k in range(depth))
            rels.append(f"{prefix}{cls}/{sub}{rng.choice(['a', 'B', 'c', '_'])}{i:03d}{ext}")
    write_files(base, rels)
    return rels


def listing_snapshot(folder: Path) -> list[tuple[str, int, int]]:
    """Sorted (relative path, size, mtime_ns) of every file and folder under ``folder``."""
    out = []
    for root, dirs, files in os.walk(folder):
        for name in dirs + files:
            p = Path(root) / name
            st = p.stat()
            out.append((p.relative_to(folder).as_posix(), st.st_size, st.st_mtime_ns))
    return sorted(out)
