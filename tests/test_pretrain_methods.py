"""Pretraining methods: masked loss, window/image pairing, checkpoint keys, registry, bad input."""

from __future__ import annotations

import pytest
import torch
from _pretrain_helpers import (
    tiny_cfg,
)
from sarjepa.benchmark.core.errors import SarjepaError
from sarjepa.pretrain.methods import build_method, masked_mse, method_class, method_names

pytestmark = pytest.mark.usefixtures("one_thread")


def test_masked_mse_equals_naive_loop():
    g = torch.Generator().manual_seed(0)
    pred = torch.randn(3, 5, 7, generator=g, dtype=torch.float64)
    target = torch.randn(3, 5, 7, generator=g, dtype=torch.float64)
    mask = torch.rand(3, 5, generator=g) > 0.4
    total, count = 0.0, 0
    for i in range(3):
        for j in range(5):
            if mask[i, j]:
                total += (
                    sum((float(pred[i, j, d]) - float(target[i, j, d])) ** 2 for d in range(7)) / 7
                )
                count += 1
    got = masked_mse(pred, target, mask)
    assert got.dtype == torch.float32
    assert float(got) == pytest.approx(total / count, rel=1e-6)
    # unmasked positions have no influence
    pred2 = pred.clone()
    pred2[~mask] = 1e6
    assert float(masked_mse(pred2, target, mask)) == pytest.approx(total / count, rel=1e-6)


SARJEPA_FAMILY = (
    "sarjepa",
    "sarjepa_gauss",
    "sarjepa_pixel",
    "sarjepa_hog",
    "sarjepa_sar_hog",
    "sarjepa_lowpass",
)


def test_registry_has_sarjepa_family_and_not_the_old_names():
    """(Every registered method builds, learns and resumes: tests/test_method_contract.py.)"""
    names = method_names()
    assert set(SARJEPA_FAMILY) <= set(names)
    # the old names of the target variants are gone ("lomar" is upstream LoMaR now)
    assert not {"lomar_hog", "lomar_sar_hog", "lomar_lowpass"} & set(names)
    for name in SARJEPA_FAMILY:
        assert method_class(name) is method_class("sarjepa")


def _method(**extra):
    torch.manual_seed(0)
    return build_method(tiny_cfg(**extra)).eval()


def test_every_image_gets_its_own_windows_whatever_the_batch():
    """Sequence i*num_window + k is window k of image i: batch rows are independent."""
    method = _method(**{"MASK.NUM_WINDOW": 2})
    g = torch.Generator().manual_seed(3)
    for batch in (1, 2, 3, 4):
        images = torch.rand(batch, 1, 64, 64, generator=g)
        win = method.draw_windows(batch, (4, 4), torch.Generator().manual_seed(batch))
        with torch.no_grad():
            pred = method.predict(images, win.patch_index, win.mask)
            tgt = method.compute_targets(images, win.patch_index)
        assert pred.shape == (batch * 2, 9, tgt.shape[-1])
        full = method.target(images)  # (B, 16, dim)
        for i in range(batch):
            with torch.no_grad():
                alone = method.predict(
                    images[i : i + 1], win.patch_index[i : i + 1], win.mask[i : i + 1]
                )
            torch.testing.assert_close(pred[2 * i : 2 * i + 2], alone, rtol=1e-5, atol=1e-6)
            for k in range(2):
                for j in range(9):
                    torch.testing.assert_close(tgt[2 * i + k, j], full[i, win.patch_index[i, k, j]])


def test_masked_tokens_do_not_leak_image_content():
    """A masked patch's pixels must not change the prediction (it is a mask token)."""
    method = _method()
    images = torch.rand(1, 1, 64, 64, generator=torch.Generator().manual_seed(5))
    win = method.draw_windows(1, (4, 4), torch.Generator().manual_seed(0))
    k = int(win.mask[0, 0].nonzero()[0])
    p = int(win.patch_index[0, 0, k])
    other = images.clone()
    r, c = divmod(p, 4)
    other[..., r * 16 : (r + 1) * 16, c * 16 : (c + 1) * 16] = 0.5
    with torch.no_grad():
        a = method.predict(images, win.patch_index, win.mask)
        b = method.predict(other, win.patch_index, win.mask)
    torch.testing.assert_close(a, b)
    # ... while a visible patch's pixels do
    kv = int((~win.mask[0, 0]).nonzero()[0])
    pv = int(win.patch_index[0, 0, kv])
    r, c = divmod(pv, 4)
    other = images.clone()
    other[..., r * 16 : (r + 1) * 16, c * 16 : (c + 1) * 16] = 0.5
    with torch.no_grad():
        assert not torch.allclose(a, method.predict(other, win.patch_index, win.mask))


def test_checkpoint_state_dict_round_trip():
    a = _method()
    torch.manual_seed(9)
    b = build_method(tiny_cfg())
    sd = a.checkpoint_state_dict()
    assert set(a.encoder.state_dict()) <= set(sd)
    assert "mask_token" in sd and not any(k.startswith("encoder.") for k in sd)
    b.load_checkpoint_state_dict({f"module.{k}": v for k, v in sd.items()})
    for k, v in b.checkpoint_state_dict().items():
        assert torch.equal(v, sd[k]), k
    bad = dict(sd)
    bad.pop("mask_token")
    bad["extra.weight"] = torch.zeros(1)
    with pytest.raises(SarjepaError, match="missing mask_token, unexpected extra.weight"):
        b.load_checkpoint_state_dict(bad)


@pytest.mark.parametrize(
    ("extra", "pattern"),
    [
        ({"METHOD.NAME": "sarjepaa"}, "unknown method 'sarjepaa' \\(did you mean 'sarjepa'\\?\\)"),
        ({"TARGET.NAME": "gff"}, "unknown target 'gff' \\(did you mean 'gf'\\?\\)"),
        ({"MASK.WINDOW_SIZE": 5}, "MASK.WINDOW_SIZE 5 is larger than the 4x4 patch grid"),
        ({"INPUT.SIZE": 72}, "INPUT.SIZE 72 is not a multiple of the patch size 16"),
        ({"PREDICTOR.NUM_HEADS": 3}, "PREDICTOR.EMBED_DIM 32 is not divisible"),
    ],
)
def test_bad_method_config_one_line_errors(extra, pattern):
    with pytest.raises(SarjepaError, match=pattern) as exc:
        build_method(tiny_cfg(**extra))
    assert "\n" not in str(exc.value)
