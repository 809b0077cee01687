"""Single-channel read and preprocessing vs. numpy / PIL references."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image
from sarjepa.benchmark.config import load_cfg
from sarjepa.benchmark.core.errors import SarjepaError
from sarjepa.dassl_patches.io import read_image_gray
from sarjepa.dassl_patches.transforms import build_transform, preprocessing_dict


def ref_center_crop(a: np.ndarray, c: int) -> np.ndarray:
    """Zero-pad (extra pixel after) to at least c, then take the centred c x c window."""
    h, w = a.shape
    ph, pw = max(c - h, 0), max(c - w, 0)
    a = np.pad(a, ((ph // 2, ph - ph // 2), (pw // 2, pw - pw // 2)))
    h, w = a.shape
    top, left = int(round((h - c) / 2)), int(round((w - c) / 2))
    return a[top : top + c, left : left + c]


def _img(h: int, w: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(1, 256, (h, w), dtype=np.uint8)


@pytest.mark.parametrize("hw", [(5, 7), (100, 140), (131, 129), (128, 128), (200, 90)])
def test_crop_pad_then_bicubic_resize_matches_references(hw):
    cfg = load_cfg(None, None, ["INPUT.SIZE", "(48, 48)", "INPUT.CROP_SIZE", "16"])
    arr = _img(*hw)
    crop = ref_center_crop(arr, 16)
    if hw[0] < 16:
        assert (crop[0] == 0).all() and (crop[-1] == 0).all()  # zero padding rows
    ref = Image.fromarray(crop).resize((48, 48), Image.Resampling.BICUBIC)
    out = build_transform(cfg, is_train=False)(Image.fromarray(arr))
    assert out.shape == (1, 48, 48) and out.dtype == torch.float32
    assert out.min() >= 0.0 and out.max() <= 1.0
    assert torch.equal(out[0], torch.from_numpy(np.array(ref)).float() / 255)


def test_default_pipeline_is_crop128_resize224_identical_train_test():
    cfg = load_cfg("MIM_linear/vit_b16", "mstar_soc")
    arr = _img(158, 171, seed=1)
    a = build_transform(cfg, is_train=True)(Image.fromarray(arr))
    b = build_transform(cfg, is_train=False)(Image.fromarray(arr))
    ref = Image.fromarray(ref_center_crop(arr, 128)).resize((224, 224), Image.Resampling.BICUBIC)
    assert a.shape == (1, 224, 224) and torch.equal(a, b)
    assert torch.equal(a[0], torch.from_numpy(np.array(ref)).float() / 255)
    assert preprocessing_dict(cfg)["crop_size"] == [128, 128]


def test_random_flip_flips_both_axes_in_train_only():
    small = ["INPUT.SIZE", "(8, 8)", "INPUT.CROP_SIZE", "8"]
    cfg = load_cfg(None, None, small + ["INPUT.TRANSFORMS", "['random_flip']"])
    arr = _img(8, 8, seed=2)
    base = torch.from_numpy(arr).float() / 255
    variants = {"none": base, "h": base.flip(-1), "v": base.flip(-2), "hv": base.flip((-1, -2))}
    train = build_transform(cfg, is_train=True)
    torch.manual_seed(0)
    seen = set()
    for _ in range(40):
        out = train(Image.fromarray(arr))[0]
        hit = [k for k, v in variants.items() if torch.equal(out, v)]
        assert len(hit) == 1
        seen.add(hit[0])
    assert seen == {"none", "h", "v", "hv"}
    test = build_transform(cfg, is_train=False)
    for _ in range(5):
        assert torch.equal(test(Image.fromarray(arr))[0], base)


def test_normalize_and_unsupported_names():
    opts = ["INPUT.TRANSFORMS", "['normalize']", "INPUT.PIXEL_MEAN", "[0.25]"]
    cfg = load_cfg(None, None, opts + ["INPUT.PIXEL_STD", "[0.5]", "INPUT.SIZE", "(16, 16)"])
    raw = load_cfg(None, None, ["INPUT.SIZE", "(16, 16)"])
    img = Image.fromarray(_img(30, 30))
    x = build_transform(raw, is_train=False)(img)
    y = build_transform(cfg, is_train=False)(img)
    assert torch.allclose(y, (x - 0.25) / 0.5)
    bad = load_cfg(
        None, None, ["INPUT.TRANSFORMS", "['normalize']", "INPUT.PIXEL_MEAN", "[0.1, 0.2, 0.3]"]
    )
    with pytest.raises(SarjepaError, match="PIXEL_MEAN"):
        build_transform(bad, is_train=False)(img)
    with pytest.raises(SarjepaError, match="not implemented"):
        build_transform(load_cfg(None, None, ["INPUT.TRANSFORMS", "['cutout']"]))
    with pytest.raises(SarjepaError, match="did you mean 'random_flip'"):
        build_transform(load_cfg(None, None, ["INPUT.TRANSFORMS", "['random_flp']"]))


def test_read_gray_8bit_16bit_and_rgb(tmp_path):
    g = _img(9, 11)
    Image.fromarray(g).save(tmp_path / "g.png")
    Image.fromarray(g).save(tmp_path / "g.jpg", quality=100)
    g16 = np.random.default_rng(3).integers(0, 65536, (9, 11), dtype=np.uint16)
    Image.fromarray(g16).save(tmp_path / "g16.png")
    Image.fromarray(g16).save(tmp_path / "g16.tif")
    rgb = np.random.default_rng(4).integers(0, 256, (9, 11, 3), dtype=np.uint8)
    rgb[0, 0] = (77, 77, 77)
    Image.fromarray(rgb).save(tmp_path / "rgb.png")
    Image.fromarray(rgb).save(tmp_path / "rgb.bmp")
    for name in ("g.png", "g16.png", "g16.tif", "rgb.png", "rgb.bmp", "g.jpg"):
        img = read_image_gray(tmp_path / name)
        assert img.mode == "L" and img.size == (11, 9), name
    assert np.array_equal(np.asarray(read_image_gray(tmp_path / "g.png")), g)
    for name in ("g16.png", "g16.tif"):  # OpenCV keeps the high byte
        assert np.array_equal(np.asarray(read_image_gray(tmp_path / name)), g16 >> 8)
    r, gg, b = (rgb[..., i].astype(np.int64) for i in range(3))
    png = np.where((r == gg) & (gg == b), r, (9797 * r + 19234 * gg + 3737 * b) >> 15)
    assert np.array_equal(np.asarray(read_image_gray(tmp_path / "rgb.png")), png)
    bmp = (4899 * r + 9617 * gg + 1868 * b + 8192) >> 14
    assert np.array_equal(np.asarray(read_image_gray(tmp_path / "rgb.bmp")), bmp)


def test_read_corrupt_and_missing_files_are_named(tmp_path):
    (tmp_path / "bad.jpeg").write_bytes(b"not an image at all")
    with pytest.raises(SarjepaError, match=r"cannot read image '.*bad\.jpeg'"):
        read_image_gray(tmp_path / "bad.jpeg")
    Image.fromarray(_img(64, 64)).save(tmp_path / "full.png")
    data = (tmp_path / "full.png").read_bytes()
    (tmp_path / "cut.png").write_bytes(data[: len(data) // 2])
    with pytest.raises(SarjepaError, match=r"cut\.png"):
        read_image_gray(tmp_path / "cut.png")
    with pytest.raises(SarjepaError, match=r"not found: '.*nope\.png'"):
        read_image_gray(tmp_path / "nope.png")
