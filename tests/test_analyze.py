"""``sarjepa analyze attention-distance``: the distance against hand-computed cases and a naive
loop, the attention hook against the fused kernel, and the command end to end."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from PIL import Image
from sarjepa.benchmark.attention_distance import (
    DistanceAccumulator,
    attention_distances,
    capture_attention,
    mean_attention_distance,
    patch_distances,
    read_csv,
    uniform_distance,
)
from sarjepa.benchmark.cli import main
from sarjepa.pretrain.models import build_vit

TINY = {"embed_dim": 32, "depth": 2, "num_heads": 2, "patch_size": 16, "in_chans": 1}


def _probs_from_rows(rows: list[list[float]], heads: int = 1) -> torch.Tensor:
    """(1, heads, T, T) attention with the given rows in every head."""
    return torch.tensor(rows, dtype=torch.float64)[None, None].repeat(1, heads, 1, 1)


def test_patch_distances_are_centre_distances_in_pixels():
    d = patch_distances((2, 3), 16)
    assert d.shape == (6, 6)
    assert d[0, 1] == 16 and d[0, 2] == 32 and d[0, 3] == 16  # right, right x2, below
    assert d[0, 5] == pytest.approx(16 * math.sqrt(1 + 4))
    assert torch.equal(d, d.T) and torch.all(d.diagonal() == 0)


def test_attention_to_self_has_distance_zero():
    eye = torch.eye(1 + 9, dtype=torch.float64)[None, None]
    assert mean_attention_distance(eye, (3, 3), 16, 1).item() == 0.0


def test_uniform_attention_on_a_2x2_grid():
    # every query sees itself (0), two neighbours (16) and the diagonal (16 sqrt 2), equally
    u = torch.full((1, 2, 4, 4), 0.25, dtype=torch.float64)
    got = mean_attention_distance(u, (2, 2), 16, num_prefix_tokens=0)
    assert got.shape == (1, 2)
    assert torch.allclose(got, torch.full((1, 2), 8 + 4 * math.sqrt(2), dtype=torch.float64))
    assert uniform_distance((2, 2), 16) == pytest.approx(8 + 4 * math.sqrt(2))


def test_one_hot_attention_to_a_known_patch():
    # 1 x 3 grid, every patch attends only to patch 0: distances 0, 16, 32 -> mean 16 px
    rows = [[1.0, 0, 0], [1.0, 0, 0], [1.0, 0, 0]]
    got = mean_attention_distance(_probs_from_rows(rows), (1, 3), 16, num_prefix_tokens=0)
    assert got.item() == pytest.approx(16.0)
    # with patch size 8 the same pattern is half as far
    got8 = mean_attention_distance(_probs_from_rows(rows), (1, 3), 8, num_prefix_tokens=0)
    assert got8.item() == pytest.approx(8.0)


def test_cls_row_and_column_are_dropped_and_rows_renormalised():
    # CLS + 1 x 2 grid; each patch puts 0.6 on CLS and 0.4 on the *other* patch: after dropping
    # the CLS column and renormalising, all of a patch's attention is 16 px away
    rows = [
        [0.0, 0.0, 1.0],  # the CLS row: ignored, whatever it holds
        [0.6, 0.0, 0.4],
        [0.6, 0.4, 0.0],
    ]
    got = mean_attention_distance(_probs_from_rows(rows, heads=3), (1, 2), 16, 1)
    assert torch.allclose(got, torch.full((1, 3), 16.0, dtype=torch.float64))
    with pytest.raises(ValueError, match="does not fit"):
        mean_attention_distance(_probs_from_rows(rows), (2, 2), 16, 1)


@pytest.mark.parametrize("pos_embed", ["irpe", "sincos"])
def test_hooked_attention_equals_the_fused_kernel(pos_embed):
    torch.manual_seed(0)
    model = build_vit({**TINY, "img_size": 64, "pos_embed": pos_embed}).eval()
    with torch.no_grad():  # non-zero iRPE tables, so the bias term is exercised
        for blk in model.blocks:
            if blk.attn.rpe_k is not None:
                blk.attn.rpe_k.lookup_table_weight.normal_(std=0.5)
    x = torch.rand(3, 1, 64, 64)
    with torch.no_grad():
        fused = model.forward_features(x)
        seen: list[torch.Tensor] = []
        for blk in model.blocks:
            blk.attn.attn_hook = seen.append
        try:
            explicit = model.forward_features(x)
        finally:
            for blk in model.blocks:
                blk.attn.attn_hook = None
    assert torch.allclose(fused, explicit, atol=1e-5, rtol=0)
    assert len(seen) == TINY["depth"]
    for probs in seen:
        assert probs.shape == (3, 2, 17, 17) and probs.dtype == torch.float32
        assert torch.allclose(probs.sum(-1), torch.ones(3, 2, 17), atol=1e-6)


def _naive_distances(model, images: torch.Tensor) -> np.ndarray:
    """Python loops over the recorded probabilities: the definition, written out."""
    grid = images.shape[-1] // 16
    per_layer: list[list[torch.Tensor]] = [[] for _ in model.blocks]
    for i, blk in enumerate(model.blocks):
        blk.attn.attn_hook = per_layer[i].append
    try:
        with torch.no_grad():
            model.forward_features(images)
    finally:
        for blk in model.blocks:
            blk.attn.attn_hook = None
    out = np.zeros((len(model.blocks), model.num_heads))
    n_img, n_pat = images.shape[0], grid * grid
    for layer, (probs,) in enumerate(per_layer):
        for h in range(model.num_heads):
            total = 0.0
            for b in range(n_img):
                for q in range(n_pat):
                    row = [float(probs[b, h, 1 + q, 1 + k]) for k in range(n_pat)]
                    dist = 0.0
                    for k, a in enumerate(row):
                        dr, dc = q // grid - k // grid, q % grid - k % grid
                        dist += a / sum(row) * 16 * math.hypot(dr, dc)
                    total += dist / n_pat
            out[layer, h] = total / n_img
    return out


def test_attention_distances_match_a_naive_loop():
    torch.manual_seed(1)
    model = build_vit({**TINY, "img_size": 48}).eval()
    with torch.no_grad():
        for blk in model.blocks:
            blk.attn.rpe_k.lookup_table_weight.normal_(std=1.0)
    images = torch.rand(3, 1, 48, 48)
    got, n = attention_distances(model, [images[:2], images[2:]], torch.device("cpu"))
    assert n == 3 and got.shape == (2, 2)
    assert np.allclose(got, _naive_distances(model, images), atol=1e-4, rtol=0)
    assert all(blk.attn.attn_hook is None for blk in model.blocks)  # hooks removed


def test_capture_removes_hooks_after_an_error():
    model = build_vit({**TINY, "img_size": 32}).eval()
    with pytest.raises(RuntimeError), capture_attention(model, DistanceAccumulator(2, 2)):
        raise RuntimeError("boom")
    assert all(blk.attn.attn_hook is None for blk in model.blocks)


@pytest.fixture()
def image_dir(tmp_path):
    rng = np.random.default_rng(0)
    folder = tmp_path / "imgs"
    folder.mkdir()
    for i in range(3):
        Image.fromarray(rng.integers(0, 256, (40, 52), dtype=np.uint8)).save(folder / f"c{i}.png")
    return folder


TINY_OPTS = [
    "MODEL.BACKBONE.EMBED_DIM", "32", "MODEL.BACKBONE.DEPTH", "3",
    "MODEL.BACKBONE.NUM_HEADS", "2", "SEED", "0",
]  # fmt: skip


def test_cli_random_init_writes_layers_x_heads_rows(image_dir, tmp_path, capsys):
    out = tmp_path / "ad"
    argv = ["analyze", "attention-distance", "--weights", "none", "--data", str(image_dir)]
    argv += ["--out", str(out), "--image-size", "64", "--device", "cpu", *TINY_OPTS]
    assert main(argv) == 0
    assert "3 layers x 2 heads, 3 images" in capsys.readouterr().out
    lines = (out / "attention_distance.csv").read_text().splitlines()
    assert lines[0] == "layer,head,distance_px" and len(lines) == 1 + 3 * 2
    assert [tuple(r.split(",")[:2]) for r in lines[1:]] == [
        (str(layer), str(head)) for layer in (1, 2, 3) for head in (0, 1)
    ]
    table = read_csv(out / "attention_distance.csv")
    far = float(patch_distances((4, 4), 16).max())
    assert table.shape == (3, 2) and np.all((table > 0) & (table < far))
    assert (out / "attention_distance.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_cli_loads_a_checkpoint_and_limits_images(image_dir, tmp_path, capsys):
    torch.manual_seed(2)
    model = build_vit({**TINY, "num_heads": 4, "img_size": 64})
    ckpt = tmp_path / "enc.pth"
    torch.save(model.state_dict(), ckpt)
    out = tmp_path / "ad2"
    argv = ["analyze", "attention-distance", "--weights", str(ckpt), "--data", str(image_dir)]
    argv += ["--out", str(out), "--image-size", "64", "--limit", "2", "--device", "cpu"]
    assert main(argv) == 0
    printed = capsys.readouterr().out
    assert "2 layers x 4 heads, 2 images" in printed and "state_dict" in printed
    assert read_csv(out / "attention_distance.csv").shape == (2, 4)


@pytest.mark.parametrize(
    "extra, message",
    [
        (["--data", "no/such/dir"], "image path 'no/such/dir' does not exist"),
        (["--data", "IMG", "--image-size", "0"], "--image-size must be >= 1"),
        (["--data", "IMG", "--image-size", "40"], "not a multiple of"),
    ],
)
def test_cli_bad_input_is_one_line(image_dir, tmp_path, capsys, extra, message):
    extra = [str(image_dir) if e == "IMG" else e for e in extra]
    argv = ["analyze", "attention-distance", "--weights", "none", *extra]
    argv += ["--out", str(tmp_path / "o"), "--device", "cpu", *TINY_OPTS]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith("sarjepa: error: ") and message in err and err.count("\n") == 1
    assert not (tmp_path / "o").exists()
