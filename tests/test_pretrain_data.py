"""Unlabeled image folders: discovery, decoding (8/16-bit, colour), errors, determinism."""

from __future__ import annotations

import os

import numpy as np
import pytest
import torch
from _pretrain_helpers import (
    write_chips,
)
from PIL import Image
from sarjepa.benchmark.core.errors import SarjepaError
from sarjepa.benchmark.core.images import read_gray as read_gray_uint8
from sarjepa.benchmark.core.provenance import data_fingerprint
from sarjepa.pretrain.data import (
    EpochSampler,
    UnlabeledImageFolder,
    build_train_transform,
    find_images,
)

pytestmark = pytest.mark.usefixtures("one_thread")


def test_find_images_recursive_any_case_sorted(tmp_path):
    arr = np.zeros((8, 8), np.uint8)
    for rel in ["b/x.PNG", "a/deep/y.jpeg", "c.TIF", "d.bmp", "e.Jpg", "f.tiff"]:
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        fmt = {
            "png": "PNG",
            "jpeg": "JPEG",
            "tif": "TIFF",
            "bmp": "BMP",
            "jpg": "JPEG",
            "tiff": "TIFF",
        }[rel.rsplit(".", 1)[1].lower()]
        Image.fromarray(arr).save(tmp_path / rel, format=fmt)
    (tmp_path / "notes.txt").write_text("not an image")
    (tmp_path / "b" / "label.csv").write_text("1,2")
    found = find_images(tmp_path)
    assert found == sorted(["b/x.PNG", "a/deep/y.jpeg", "c.TIF", "d.bmp", "e.Jpg", "f.tiff"])


def test_missing_and_empty_folder_errors(tmp_path):
    with pytest.raises(SarjepaError, match="does not exist"):
        find_images(tmp_path / "nope")
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "readme.txt").write_text("x")
    with pytest.raises(SarjepaError, match="no images") as exc:
        UnlabeledImageFolder(tmp_path / "empty")
    assert "\n" not in str(exc.value) and "empty" in str(exc.value)


def test_16bit_high_byte_and_minmax(tmp_path):
    values = np.array([[0, 257, 1000], [32768, 65535, 12345]], dtype=np.uint16)
    Image.fromarray(values).save(tmp_path / "a.png")
    Image.fromarray(values).save(tmp_path / "a.tif")
    want = (values >> 8).astype(np.uint8)  # OpenCV's IMREAD_GRAYSCALE
    for name in ("a.png", "a.tif"):
        assert Image.open(tmp_path / name).mode.startswith("I")
        np.testing.assert_array_equal(read_gray_uint8(tmp_path / name), want)
    lo, hi = values.min(), values.max()
    want_mm = np.rint((values - float(lo)) * 255.0 / (hi - lo)).astype(np.uint8)
    np.testing.assert_array_equal(read_gray_uint8(tmp_path / "a.png", "minmax"), want_mm)


def test_rgb_converted_with_luma(tmp_path):
    rgb = np.random.default_rng(0).integers(0, 256, (5, 7, 3), dtype=np.uint8)
    Image.fromarray(rgb).save(tmp_path / "c.png")
    r, g, b = (rgb[..., i].astype(np.float64) for i in range(3))
    luma = (r * 299 + g * 587 + b * 114) / 1000  # ITU-R 601-2 (libpng's integer form, 1 level)
    got = read_gray_uint8(tmp_path / "c.png").astype(np.float64)
    assert got.shape == (5, 7) and np.abs(got - luma).max() <= 1.0


def test_corrupt_image_named_or_skipped(tmp_path):
    write_chips(tmp_path, n=3)
    (tmp_path / "broken.png").write_bytes(b"this is not a png")
    with pytest.raises(SarjepaError, match="broken.png") as exc:
        UnlabeledImageFolder(tmp_path)
    assert "--skip-corrupt" in str(exc.value) and "\n" not in str(exc.value)
    ds = UnlabeledImageFolder(tmp_path, skip_corrupt=True)
    assert len(ds) == 3 and ds.skipped == ["broken.png"]


def test_truncated_image_fails_at_load_naming_file(tmp_path):
    write_chips(tmp_path, n=2)
    good = (tmp_path / "sub0" / "chip_000.png").read_bytes()
    (tmp_path / "trunc.png").write_bytes(good[: len(good) // 2])  # valid header, cut data
    ds = UnlabeledImageFolder(tmp_path)
    idx = ds.files.index("trunc.png")
    with pytest.raises(SarjepaError, match="trunc.png"):
        ds[idx]
    with pytest.raises(SarjepaError, match="trunc.png"):
        UnlabeledImageFolder(tmp_path, cache=True)
    cached = UnlabeledImageFolder(tmp_path, cache=True, skip_corrupt=True)
    assert "trunc.png" not in cached.files and len(cached) == 2
    lazy = UnlabeledImageFolder(tmp_path, skip_corrupt=True)
    assert lazy[idx].shape == (1, 72, 72)  # replaced by the next readable image


def test_augmentation_pure_function_of_seed_epoch_index_and_cache_equal(tmp_path):
    write_chips(tmp_path, n=4)
    t = build_train_transform(32)
    lazy = UnlabeledImageFolder(tmp_path, transform=t, seed=3)
    cached = UnlabeledImageFolder(tmp_path, transform=t, seed=3, cache=True)
    torch.manual_seed(0)
    a = lazy[(1, 2)]
    torch.manual_seed(123)  # the global stream must not matter ...
    b = cached[(1, 2)]
    assert a.shape == (1, 32, 32) and a.min() >= 0.0 and a.max() <= 1.0
    assert torch.equal(a, b)
    assert not torch.equal(a, lazy[(2, 2)])  # ... but the epoch does
    state = torch.get_rng_state()
    lazy[(0, 0)]
    assert torch.equal(state, torch.get_rng_state())  # and the global stream is left alone


def test_dataloader_workers_do_not_change_batches(tmp_path):
    from torch.utils.data import DataLoader

    write_chips(tmp_path, n=6)
    ds = UnlabeledImageFolder(tmp_path, transform=build_train_transform(32), seed=1)
    sampler = EpochSampler(len(ds), seed=1)
    sampler.set_epoch(5)
    b0 = torch.cat(list(DataLoader(ds, batch_size=3, sampler=sampler, num_workers=0)))
    b2 = torch.cat(list(DataLoader(ds, batch_size=3, sampler=sampler, num_workers=2)))
    assert torch.equal(b0, b2)


def test_epoch_sampler_shards_and_reshuffles():
    shards = []
    for rank in range(3):
        s = EpochSampler(10, num_replicas=3, rank=rank, seed=7)
        s.set_epoch(4)
        shards.append(s.indices())
        assert len(s) == 4 and all(e == 4 for e, _ in s)
    flat = sum(shards, [])
    assert len(flat) == 12 and set(flat) == set(range(10))  # padded by wrapping
    a = EpochSampler(10, seed=7)
    a.set_epoch(4)
    b = EpochSampler(10, seed=7)
    b.set_epoch(4)
    assert a.indices() == b.indices()
    b.set_epoch(5)
    assert a.indices() != b.indices()


def test_fingerprint_tracks_files(tmp_path):
    write_chips(tmp_path, n=2)
    files = find_images(tmp_path)
    fp = data_fingerprint(tmp_path, files)
    assert fp == data_fingerprint(tmp_path, list(reversed(files)))
    target = tmp_path / files[0]
    st = target.stat()
    os.utime(target, (st.st_atime, st.st_mtime + 10))
    assert data_fingerprint(tmp_path, files) != fp
