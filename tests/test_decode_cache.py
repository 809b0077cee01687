"""The per-process decode cache: bitwise the same tensors, one decode per file, bounded, fresh."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from sarjepa.benchmark.decode_cache import DecodeCache
from sarjepa.benchmark.features import ImageDataset
from sarjepa.dassl_patches.transforms import build_transform
from yacs.config import CfgNode as CN


def _cfg(size: int, crop: int, transforms: list[str]) -> CN:
    c = CN()
    c.INPUT = CN()
    c.INPUT.SIZE, c.INPUT.CROP_SIZE, c.INPUT.INTERPOLATION = (size, size), crop, "bicubic"
    c.INPUT.TRANSFORMS, c.INPUT.NO_TRANSFORM = transforms, False
    c.INPUT.PIXEL_MEAN, c.INPUT.PIXEL_STD = [0.5], [0.25]
    return c


@pytest.fixture
def images(tmp_path: Path) -> list[str]:
    g = np.random.default_rng(0)
    paths = []
    for i, shape in enumerate([(90, 70), (140, 160), (128, 128)]):  # smaller and larger than 128
        p = tmp_path / f"c{i}.png"
        Image.fromarray(g.integers(0, 256, shape, dtype=np.uint8)).save(p)
        paths.append(str(p))
    return paths


@pytest.mark.parametrize("transforms", [[], ["normalize"]])
def test_cached_tensors_are_bitwise_those_of_decoding_every_time(images, monkeypatch, transforms):
    import sarjepa.benchmark.decode_cache as dc

    tfm = build_transform(_cfg(64, 128, transforms), is_train=False)
    reference = [tfm(Image.open(p).convert("L")) for p in images]
    monkeypatch.setattr(dc, "_CACHE", DecodeCache(2**30))
    ds = ImageDataset(images, None, tfm)
    first = [ds[i][0] for i in range(3)]
    second = [ds[i][0] for i in range(3)]
    for r, a, b in zip(reference, first, second):
        assert torch.equal(r, a) and torch.equal(r, b)
    assert (dc._CACHE.misses, dc._CACHE.hits) == (3, 3)


def test_random_flips_still_apply_after_the_cache(images, monkeypatch):
    import sarjepa.benchmark.decode_cache as dc

    monkeypatch.setattr(dc, "_CACHE", DecodeCache(2**30))
    tfm = build_transform(_cfg(64, 128, ["random_flip"]), is_train=True)
    ds = ImageDataset(images[:1], None, tfm)
    torch.manual_seed(0)
    got = [ds[0][0] for _ in range(8)]
    torch.manual_seed(0)
    want = [tfm(Image.open(images[0]).convert("L")) for _ in range(8)]
    assert all(torch.equal(a, b) for a, b in zip(got, want))
    assert len({a.sum().item() for a in got} | {a[0, 0, 0].item() for a in got}) > 1


def test_a_changed_file_or_other_preprocessing_is_decoded_again(images):
    cache = DecodeCache(2**30)
    t64 = build_transform(_cfg(64, 128, []), is_train=False)
    t32 = build_transform(_cfg(32, 128, []), is_train=False)
    cache.prepared(images[0], t64)
    cache.prepared(images[0], t32)
    assert cache.misses == 2
    Image.fromarray(np.zeros((50, 50), np.uint8)).save(images[0])
    st = os.stat(images[0])
    os.utime(images[0], ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))
    img = cache.prepared(images[0], t64)
    assert cache.misses == 3 and np.asarray(img).max() == 0


def test_the_cache_is_bounded_and_can_be_disabled(images):
    t64 = build_transform(_cfg(64, 128, []), is_train=False)
    cache = DecodeCache(2 * 64 * 64)  # room for two chips
    for p in images:
        cache.prepared(p, t64)
    assert cache.nbytes == 2 * 64 * 64 and len(cache._data) == 2
    cache.prepared(images[0], t64)  # evicted first
    assert cache.misses == 4
    off = DecodeCache(0)
    off.prepared(images[0], t64)
    off.prepared(images[0], t64)
    assert off.misses == 2 and off.nbytes == 0


def test_a_bad_size_setting_is_a_one_line_error(monkeypatch):
    import sarjepa.benchmark.decode_cache as dc
    from sarjepa.benchmark.core.errors import SarjepaError

    monkeypatch.setattr(dc, "_CACHE", None)
    monkeypatch.setenv("SARJEPA_DECODE_CACHE_MB", "lots")
    with pytest.raises(SarjepaError, match="SARJEPA_DECODE_CACHE_MB"):
        dc.process_cache()
