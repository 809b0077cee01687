"""Tests of pretrain.masking: LoMaR local windows, MAE random masking, I-JEPA multi-block."""

from __future__ import annotations

import pytest
import torch
from sarjepa.benchmark.core.errors import SarjepaError
from sarjepa.pretrain.masking import local_windows, multiblock_masks, random_masking


def _gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


# --------------------------------------------------------------------------- local windows


@pytest.mark.parametrize("batch", [4, 8, 75])
def test_local_windows_properties(batch):
    gh, gw, ws, k = 14, 14, 7, 4
    w = local_windows(batch, (gh, gw), ws, k, 0.8, generator=_gen(batch))
    assert w.origins.shape == (batch, k, 2)
    assert w.patch_index.shape == w.mask.shape == (batch, k, ws * ws)
    assert w.mask.dtype == torch.bool
    assert (w.mask.sum(-1) == int(ws * ws * 0.8)).all()  # 39 per window, every window
    rows, cols = w.origins[..., 0], w.origins[..., 1]
    assert rows.min() >= 0 and cols.min() >= 0
    assert rows.max() <= gh - ws and cols.max() <= gw - ws
    for b in range(batch):
        assert len({tuple(o) for o in w.origins[b].tolist()}) == k  # distinct windows
        for j in range(k):
            r0, c0 = w.origins[b, j].tolist()
            expected = [(r0 + dr) * gw + (c0 + dc) for dr in range(ws) for dc in range(ws)]
            assert w.patch_index[b, j].tolist() == expected
    # Positions are per image: not every image has the same windows.
    assert not (w.origins == w.origins[:1]).all()


def test_local_windows_deterministic_and_seed_dependent():
    a = local_windows(8, generator=_gen(0))
    b = local_windows(8, generator=_gen(0))
    c = local_windows(8, generator=_gen(1))
    for x, y in zip(a, b):
        assert torch.equal(x, y)
    assert not torch.equal(a.mask, c.mask) or not torch.equal(a.origins, c.origins)


def test_local_windows_non_square_and_dense_grid():
    w = local_windows(5, (10, 16), 5, 3, 0.5, generator=_gen(2))
    assert (w.mask.sum(-1) == 12).all()
    assert w.origins[..., 0].max() <= 5 and w.origins[..., 1].max() <= 11
    assert w.patch_index.max() < 160
    # More windows than valid rows: origins from all (row, col) positions, still distinct.
    w = local_windows(6, (8, 8), 7, 4, 0.8, generator=_gen(3))
    for b in range(6):
        assert sorted(tuple(o) for o in w.origins[b].tolist()) == [(0, 0), (0, 1), (1, 0), (1, 1)]


def test_local_windows_masks_are_uniform_over_positions():
    w = local_windows(400, (14, 14), 7, 4, 0.8, generator=_gen(4))
    freq = w.mask.float().mean(dim=(0, 1))  # per in-window position, expected 39 / 49
    assert (freq - 39 / 49).abs().max() < 0.05


def test_local_windows_bad_input():
    with pytest.raises(SarjepaError, match="window_size 15 is larger than the patch grid 14x14"):
        local_windows(4, (14, 14), 15)
    with pytest.raises(SarjepaError, match="num_window 5 exceeds the 4 distinct positions"):
        local_windows(4, (8, 8), 7, 5)
    with pytest.raises(SarjepaError, match="mask_ratio 0.01"):
        local_windows(4, (14, 14), 7, 4, 0.01)


# --------------------------------------------------------------------------- MAE


def test_random_masking():
    n, ratio = 196, 0.75
    m = random_masking(6, n, ratio, generator=_gen(5))
    n_keep = int(n * (1 - ratio))
    assert m.ids_keep.shape == (6, n_keep) and m.mask.shape == m.ids_restore.shape == (6, n)
    assert (m.mask.sum(1) == n - n_keep).all()
    assert not m.mask.gather(1, m.ids_keep).any()  # kept patches are not masked
    for b in range(6):
        assert sorted(m.ids_restore[b].tolist()) == list(range(n))
        kept = set(m.ids_keep[b].tolist())
        assert kept == {i for i in range(n) if not m.mask[b, i]}
    # ids_restore undoes the shuffle whose first n_keep entries are ids_keep.
    ids_shuffle = m.ids_restore.argsort(1)
    assert torch.equal(ids_shuffle[:, :n_keep], m.ids_keep)
    again = random_masking(6, n, ratio, generator=_gen(5))
    assert torch.equal(again.ids_keep, m.ids_keep)
    with pytest.raises(SarjepaError):
        random_masking(2, 4, 0.9)


# --------------------------------------------------------------------------- I-JEPA


def test_multiblock_masks():
    b, grid = 12, (14, 14)
    m = multiblock_masks(b, grid, generator=_gen(6))
    assert len(m.targets) == 4 and len(m.context) == 1
    k_t, k_c = m.targets[0].shape[1], m.context[0].shape[1]
    assert all(t.shape == (b, k_t) for t in m.targets) and m.context[0].shape == (b, k_c)
    assert k_t > 4 and k_c > 4
    # Target blocks: scale 0.15-0.2 of 196 patches -> at most 39 patches each.
    assert k_t <= int(196 * 0.2)
    for i in range(b):
        ctx = set(m.context[0][i].tolist())
        assert m.context[0][i].tolist() == sorted(ctx)
        for t in m.targets:
            idx = t[i].tolist()
            assert idx == sorted(set(idx)) and max(idx) < 196
            assert not ctx & set(idx)  # the context excludes the target blocks
    again = multiblock_masks(b, grid, generator=_gen(6))
    for x, y in zip(m.targets + m.context, again.targets + again.context):
        assert torch.equal(x, y)
    with pytest.raises(SarjepaError, match="cannot keep more than min_keep"):
        multiblock_masks(2, (3, 3), min_keep=4, generator=_gen(0))
