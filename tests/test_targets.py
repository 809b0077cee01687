"""Tests of pretrain.targets and ``sarjepa targets`` against independent references."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from _targets_helpers import gf_reference, naive_patches
from PIL import Image
from sarjepa.benchmark.cli import main
from sarjepa.benchmark.core.errors import SarjepaError
from sarjepa.pretrain.targets import TARGETS, build_target, patchify, unpatchify
from sarjepa.pretrain.targets.gf import gf_gauss_maps, gf_log_ratios, gf_maps


def _images(shape, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.rand(shape, generator=g)


def _assert_rel(ours: torch.Tensor, ref: torch.Tensor, rtol=1e-5, atol=1e-9) -> None:
    torch.testing.assert_close(ours.double(), ref.double(), rtol=rtol, atol=atol)


# --------------------------------------------------------------------------- gf exactness


@pytest.mark.parametrize(
    "shape,radii",
    [
        ((2, 1, 40, 56), (5, 9, 13, 17)),  # non-square, default scales
        ((1, 1, 19, 33), (1, 3, 5)),  # odd sizes
        ((1, 1, 64, 32), (7, 2)),  # tall, scales out of order
        ((1, 1, 224, 224), (5, 17)),  # the model size, smallest and largest default scale
    ],
)
def test_gf_integral_matches_conv_reference(shape, radii):
    x = _images(shape)
    _assert_rel(gf_maps(x, radii), gf_reference(x, radii))


@pytest.mark.parametrize("shape,radii", [((2, 1, 40, 56), (5, 9, 13, 17)), ((1, 1, 21, 18), (2,))])
def test_gf_gauss_matches_conv_reference(shape, radii):
    x = _images(shape, seed=1)
    _assert_rel(gf_gauss_maps(x, radii), gf_reference(x, radii, gauss=True))


def test_gf_constant_image_is_zero():
    x = torch.full((1, 1, 32, 32), 0.37)
    assert gf_maps(x, (1, 5)).abs().max() < 1e-9
    assert gf_gauss_maps(x, (1, 5)).abs().max() < 1e-9


def test_gf_step_edges_by_hand():
    # Left half 0, right half 1; r = 1: S sums 3 rows x 2 columns of x + 0.01.
    x = torch.zeros(1, 1, 8, 8)
    x[..., 4:] = 1.0
    gx, gy = gf_log_ratios(x, (1,))
    # Pixel (3, 3): left columns {2, 3} all 0, right columns {3, 4}: 3 x 0.01 + 3 x 1.01.
    assert gx[0, 0, 3, 3].item() == pytest.approx(math.log(0.06 / 3.06), rel=1e-6)
    # Pixel (3, 4): left {3, 4} = 3.06, right {4, 5} = 6.06.
    assert gx[0, 0, 3, 4].item() == pytest.approx(math.log(3.06 / 6.06), rel=1e-6)
    assert gx[0, 0, 3, 1].item() == pytest.approx(0.0, abs=1e-9)  # flat region
    assert gy.abs().max().item() < 1e-9  # rows are all alike
    gf = gf_maps(x, (1,))
    assert gf[0, 0, 5, 3].item() == pytest.approx(math.log(51.0), rel=1e-6)
    # Top half 0, bottom half 1: G_y = ln(S_top / S_bottom) < 0 at the edge.
    gx_t, gy_t = gf_log_ratios(x.transpose(2, 3), (1,))
    assert gy_t[0, 0, 3, 3].item() == pytest.approx(math.log(0.06 / 3.06), rel=1e-6)
    assert gx_t.abs().max().item() < 1e-9


def test_gf_scales_are_channels_in_given_order():
    x = _images((1, 1, 48, 48), seed=2)
    t = build_target("gf", patch_size=16, scales=(9, 3))
    maps = t.maps(x)
    assert maps.shape == (1, 2, 48, 48) and t.dim == 2 * 256
    _assert_rel(maps[:, 0], gf_reference(x, (9,))[:, 0])
    _assert_rel(maps[:, 1], gf_reference(x, (3,))[:, 0])


def test_gf_target_patch_order():
    x = _images((2, 1, 32, 48), seed=3)
    t = build_target("gf", patch_size=16)
    maps, tokens = t.maps(x), t(x)
    assert tokens.shape == (2, 6, 1024) and tokens.dtype == torch.float32
    for b in range(2):
        for n in range(6):
            pr, pc = divmod(n, 3)
            for s in range(4):
                block = maps[b, s, pr * 16 : pr * 16 + 16, pc * 16 : pc * 16 + 16]
                assert torch.equal(tokens[b, n, s * 256 : (s + 1) * 256], block.reshape(-1))
    assert torch.equal(unpatchify(tokens, 4, (2, 3)), maps)


# --------------------------------------------------------------------------- hog


def _vertical_edge(size=32, col=12):
    x = torch.full((1, 1, size, size), 0.2)
    x[..., col:] = 0.8  # dark left, bright right
    return x


@pytest.mark.parametrize("window", [0, 16])
@pytest.mark.parametrize("name,opts", [("hog", {}), ("sar_hog", {"radius": 2})])
def test_hog_edge_lands_in_its_bin(name, opts, window):
    t = build_target(name, patch_size=16, gaussian_window=window, **opts)
    x = _vertical_edge()
    hist = t.histograms(x)  # (1, 9, 4, 4) cells of 8 px; the edge lies in cell column 1
    assert hist.shape == (1, 9, 4, 4)
    # MaskFeat's convention: atan2(G_x, G_y) with G_x < 0, G_y = 0 -> -pi/2 -> bin 4 of 9.
    expected = torch.zeros(9)
    expected[4] = 1.0
    for row in range(4):
        torch.testing.assert_close(hist[0, :, row, 1], expected, atol=1e-6, rtol=0)
    assert hist[0, :, :, [0, 2, 3]].abs().max() == 0  # flat cells stay zero
    # A horizontal edge (dark top) goes to bin 0; the cells are unit vectors.
    hist_h = t.histograms(x.transpose(2, 3))
    assert hist_h[0, 0, 1].min() > 0.999
    torch.testing.assert_close(hist_h[0, :, 1].norm(dim=0), torch.ones(4))
    # Per patch: (9 bins, 2x2 cells) bin-major; patch 0 holds cells rows 0-1, cols 0-1.
    tokens = t(x)
    assert tokens.shape == (1, 4, 36) and t.dim == 36
    assert tokens[0, 0, 4 * 4 + 0 * 2 + 1] == pytest.approx(1.0, abs=1e-6)
    assert tokens[0, 0].abs().sum() == pytest.approx(2.0, abs=1e-5)  # two lit cells
    assert t.maps(x).shape == (1, 9, 32, 32)


def test_hog_cells_unit_norm_on_noise():
    x = _images((2, 1, 32, 32), seed=4)
    hist = build_target("hog").histograms(x)
    torch.testing.assert_close(hist.norm(dim=1), torch.ones(2, 4, 4))


# --------------------------------------------------------------------------- pixels


@pytest.mark.parametrize("norm", [False, True])
def test_pixel_against_naive_loop(norm):
    x = _images((2, 1, 8, 12), seed=5)
    t = build_target("pixel", patch_size=4, norm_pix=norm)
    tokens = t(x)
    assert tokens.shape == (2, 6, 16) and t.dim == 16
    torch.testing.assert_close(tokens.double(), naive_patches(x, 4, norm), rtol=1e-5, atol=1e-5)
    assert torch.equal(patchify(x, 4), build_target("pixel", patch_size=4)(x))


def test_lowpass_matches_scipy():
    from scipy.ndimage import gaussian_filter

    x = _images((1, 1, 32, 48), seed=6)
    t = build_target("lowpass", patch_size=16, sigma=2.0)
    ref = gaussian_filter(x[0, 0].double().numpy(), sigma=2.0, mode="mirror", truncate=3.0)
    torch.testing.assert_close(t.maps(x)[0, 0].double(), torch.from_numpy(ref), atol=1e-6, rtol=0)
    assert t(x).shape == (1, 6, 256)


# --------------------------------------------------------------------------- registry, errors


def test_registry_names_and_unknown_suggests():
    assert set(TARGETS.names()) == {"gf", "gf_gauss", "pixel", "lowpass", "hog", "sar_hog"}
    with pytest.raises(SarjepaError, match="did you mean 'gf'"):
        build_target("gff")
    with pytest.raises(SarjepaError, match="did you mean 'sar_hog'"):
        build_target("sarhog")
    with pytest.raises(SarjepaError, match="no option 'scale'.*did you mean 'scales'"):
        build_target("gf", scale=(5,))


def test_bad_inputs_are_one_line_errors():
    t = build_target("gf")
    with pytest.raises(SarjepaError, match="40x50 is not a multiple of the patch size 16"):
        t(torch.rand(1, 1, 40, 50))
    with pytest.raises(SarjepaError, match="half-width 17 needs images larger"):
        t.maps(torch.rand(1, 1, 16, 16))
    with pytest.raises(SarjepaError, match="scales must be positive integers"):
        build_target("gf", scales=(0, 3))
    with pytest.raises(SarjepaError, match=r"\(B, 1, H, W\)"):
        t(torch.rand(1, 3, 32, 32))


# --------------------------------------------------------------------------- CLI


def _write_images(folder):
    rng = np.random.default_rng(0)
    sub = folder / "sub"
    sub.mkdir(parents=True)
    a = (rng.random((224, 224)) * 255).astype(np.uint8)
    Image.fromarray(a).save(folder / "a.png")
    b = (rng.random((90, 70, 3)) * 255).astype(np.uint8)
    Image.fromarray(b).save(sub / "b.BMP")
    c = (rng.random((224, 224)) * 65535).astype(np.uint16)
    Image.fromarray(c).save(sub / "c.tif")
    (folder / "notes.txt").write_text("not an image")
    return a, b, c


def test_cli_writes_maps_without_resampling(tmp_path, capsys):
    a, b, c = _write_images(tmp_path / "imgs")
    out, png = tmp_path / "o" / "gf.npz", tmp_path / "o" / "gf.png"
    rc = main(
        ["targets", "--kind", "gf", "--data", str(tmp_path / "imgs"), "--out", str(out)]
        + ["--png", str(png)]
    )
    assert rc == 0
    data = np.load(out)
    files = [f.replace("\\", "/") for f in data["files"]]
    assert [f.split("imgs/")[1] for f in files] == ["a.png", "sub/b.BMP", "sub/c.tif"]
    maps = data["maps"]
    assert maps.shape == (3, 4, 224, 224) and maps.dtype == np.float32
    # The 224 x 224 8-bit image is used as is (no resampling): / 255 then gf.
    direct = gf_maps(torch.from_numpy(a.astype(np.float32) / 255)[None, None]).numpy()
    np.testing.assert_allclose(maps[0], direct[0], rtol=1e-6, atol=1e-7)
    # The 16-bit image: the project's grey policy (high byte, as OpenCV), not resampled either.
    direct = gf_maps(torch.from_numpy(((c >> 8) / 255.0).astype(np.float32))[None, None]).numpy()
    np.testing.assert_allclose(maps[2], direct[0], rtol=1e-6, atol=1e-7)
    # The small colour image: OpenCV's integer luma, bicubic resize to 224 as 8-bit.
    r, g, bl = (b[..., i].astype(np.int64) for i in range(3))
    luma = ((4899 * r + 9617 * g + 1868 * bl + 8192) >> 14).astype(np.uint8)
    gray = Image.fromarray(luma).resize((224, 224), Image.BICUBIC)
    direct = gf_maps(torch.from_numpy(np.asarray(gray, np.float32) / 255)[None, None]).numpy()
    np.testing.assert_allclose(maps[1], direct[0], rtol=1e-6, atol=1e-7)
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert Image.open(png).size[0] > 500
    assert "wrote" in capsys.readouterr().out


def test_cli_hog_and_scales(tmp_path):
    _write_images(tmp_path / "imgs")
    out = tmp_path / "hog.npz"
    one = str(tmp_path / "imgs" / "a.png")
    assert main(["targets", "--kind", "hog", "--data", one, "--out", str(out)]) == 0
    assert np.load(out)["maps"].shape == (1, 9, 224, 224)
    out2 = tmp_path / "gf2"  # no .npz suffix: written exactly there
    args = ["targets", "--kind", "gf", "--data", one, "--out", str(out2), "--scales", "3", "7"]
    assert main(args + ["--size", "64"]) == 0
    assert np.load(out2)["maps"].shape == (1, 2, 64, 64)


def test_cli_bad_input(tmp_path, capsys):
    _write_images(tmp_path / "imgs")
    out = str(tmp_path / "x.npz")
    assert main(["targets", "--kind", "gff", "--data", str(tmp_path), "--out", out]) == 2
    assert "did you mean 'gf'" in capsys.readouterr().err
    assert main(["targets", "--kind", "gf", "--data", str(tmp_path / "nope"), "--out", out]) == 2
    assert "'" + str(tmp_path / "nope") + "' does not exist" in capsys.readouterr().err
    empty = tmp_path / "empty"
    empty.mkdir()
    assert main(["targets", "--kind", "gf", "--data", str(empty), "--out", out]) == 2
    assert "no images" in capsys.readouterr().err
    bad = tmp_path / "bad.png"
    bad.write_bytes(b"not a png")
    assert main(["targets", "--kind", "gf", "--data", str(bad), "--out", out]) == 2
    err = capsys.readouterr().err
    assert "cannot read image" in err and "bad.png" in err and len(err.strip().splitlines()) == 1


def test_targets_ignore_autocast():
    x = _images((1, 1, 32, 32), seed=7)
    for name in TARGETS.names():
        t = build_target(name, **({"scales": (3, 5)} if name.startswith("gf") else {}))
        plain = t(x)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            cast = t(x)
        assert cast.dtype == torch.float32
        torch.testing.assert_close(cast, plain, rtol=0, atol=0)
