"""Write upstream functions' outputs on fixed seeded inputs to tests/data/upstream_goldens.json.

Run it against checkouts kept OUTSIDE this repository (nothing of them is copied here; only the
numbers they produce are written)::

    python tests/upstream/make_goldens.py --mae PATH/TO/facebookresearch/mae \
        --ijepa PATH/TO/facebookresearch/ijepa

``tests/test_upstream_goldens.py`` then checks our functions against the JSON without upstream.
Covered: MAE's ``forward_loss`` (norm_pix) and ``random_masking``, MAE's ``adjust_learning_rate``,
I-JEPA's ``MaskCollator`` calls and its ``WarmupCosineSchedule`` / ``CosineWDSchedule``.

Shims applied at run time (upstream code untouched on disk): MAE's models call timm's ``Block``
with ``qk_scale``, which current timm no longer takes, so the keyword is dropped; MAE's
``util/pos_embed.py`` uses ``np.float``, removed from numpy 1.24, so it is set to ``float``.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import torch

OUT = Path(__file__).resolve().parents[1] / "data" / "upstream_goldens.json"
#: Seeds and sizes the test rebuilds its inputs from.
MAE_LOSS = {"seed": 7, "batch": 3, "channels": 3, "size": 64, "patch": 16, "mask_ratio": 0.75}
MAE_MASK = {"seeds": [0, 1, 2], "batch": 4, "patches": 196, "mask_ratio": 0.75}
MAE_LR = {"lr": 2.4e-3, "min_lr": 0.0, "warmup_epochs": 40, "epochs": 800, "points": 97}
IJEPA_MASKS = {
    "calls": 20,
    "batch": 4,
    "input": 224,
    "patch": 16,
    "enc_mask_scale": [0.85, 1.0],
    "pred_mask_scale": [0.15, 0.2],
    "aspect_ratio": [0.75, 1.5],
    "nenc": 1,
    "npred": 4,
    "min_keep": 10,
    "allow_overlap": False,
    "position_seed_base": 1000,
}
IJEPA_SCHED = {
    "warmup_steps": 37,
    "total_steps": 300,
    "start_lr": 2e-4,
    "ref_lr": 1e-3,
    "final_lr": 1e-6,
    "ref_wd": 0.04,
    "final_wd": 0.4,
}


def mae_loss_inputs(spec: dict) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(imgs (B, C, H, W), pred (B, N, p*p*C) in MAE's patch order, mask (B, N) float)."""
    g = torch.Generator().manual_seed(spec["seed"])
    b, c, s, p = spec["batch"], spec["channels"], spec["size"], spec["patch"]
    n = (s // p) ** 2
    imgs = torch.rand(b, c, s, s, generator=g)
    pred = torch.randn(b, n, p * p * c, generator=g)
    noise = torch.rand(b, n, generator=g)
    keep = int(n * (1 - spec["mask_ratio"]))
    mask = torch.ones(b, n)
    mask.scatter_(1, noise.argsort(1)[:, :keep], 0.0)
    return imgs, pred, mask


def _shim_timm() -> None:
    import timm.models.vision_transformer as tvit

    block = tvit.Block

    class Block(block):  # type: ignore[misc, valid-type]
        def __init__(self, *args, qk_scale=None, **kwargs):
            super().__init__(*args, **kwargs)

    tvit.Block = Block
    if not hasattr(np, "float"):
        np.float = float  # type: ignore[attr-defined]


def mae_goldens(root: Path) -> dict:
    _shim_timm()
    sys.path.insert(0, str(root))
    import models_mae
    from util import lr_sched

    spec = MAE_LOSS
    model = models_mae.MaskedAutoencoderViT(
        img_size=spec["size"], patch_size=spec["patch"], in_chans=spec["channels"], embed_dim=32,
        depth=1, num_heads=2, decoder_embed_dim=32, decoder_depth=1, decoder_num_heads=2,
        norm_pix_loss=True,
    )  # fmt: skip
    imgs, pred, mask = mae_loss_inputs(spec)
    loss = float(model.forward_loss(imgs, pred, mask))
    masks = []
    for seed in MAE_MASK["seeds"]:
        torch.manual_seed(seed)
        x = torch.zeros(MAE_MASK["batch"], MAE_MASK["patches"], 1)
        _, m, ids_restore = model.random_masking(x, MAE_MASK["mask_ratio"])
        masks.append({"mask": m.int().tolist(), "ids_restore": ids_restore.tolist()})
    lr = MAE_LR
    args = SimpleNamespace(**{k: lr[k] for k in ("lr", "min_lr", "warmup_epochs", "epochs")})
    opt = SimpleNamespace(param_groups=[{}])
    epochs = [lr["epochs"] * i / (lr["points"] - 1) for i in range(lr["points"])]
    lrs = [lr_sched.adjust_learning_rate(opt, e, args) for e in epochs]
    return {
        "mae_forward_loss": {"spec": spec, "loss": loss},
        "mae_random_masking": {"spec": MAE_MASK, "calls": masks},
        "mae_lr_sched": {"spec": lr, "epochs": epochs, "lr": lrs},
    }


def ijepa_goldens(root: Path) -> dict:
    sys.path.insert(0, str(root))
    from src.masks.multiblock import MaskCollator
    from src.utils.schedulers import CosineWDSchedule, WarmupCosineSchedule

    s = IJEPA_MASKS
    collator = MaskCollator(
        input_size=(s["input"], s["input"]), patch_size=s["patch"],
        enc_mask_scale=tuple(s["enc_mask_scale"]), pred_mask_scale=tuple(s["pred_mask_scale"]),
        aspect_ratio=tuple(s["aspect_ratio"]), nenc=s["nenc"], npred=s["npred"],
        min_keep=s["min_keep"], allow_overlap=s["allow_overlap"],
    )  # fmt: skip
    calls = []
    for i in range(s["calls"]):
        torch.manual_seed(s["position_seed_base"] + i)  # upstream draws positions globally
        _, enc, pred = collator([torch.zeros(1)] * s["batch"])
        calls.append({"context": [m.tolist() for m in enc], "targets": [m.tolist() for m in pred]})
    c = IJEPA_SCHED
    param = torch.nn.Parameter(torch.zeros(1))
    opt = torch.optim.AdamW([{"params": [param]}], lr=c["start_lr"])
    lr_sched = WarmupCosineSchedule(
        opt, warmup_steps=c["warmup_steps"], start_lr=c["start_lr"], ref_lr=c["ref_lr"],
        T_max=c["total_steps"], final_lr=c["final_lr"],
    )  # fmt: skip
    wd_sched = CosineWDSchedule(
        opt, ref_wd=c["ref_wd"], T_max=c["total_steps"], final_wd=c["final_wd"]
    )
    lrs, wds = [], []
    for _ in range(c["total_steps"] + 5):  # a few steps past T_max: the floors
        lrs.append(float(lr_sched.step()))
        wds.append(float(wd_sched.step()))
    return {
        "ijepa_mask_collator": {"spec": s, "calls": calls},
        "ijepa_schedules": {"spec": c, "lr": lrs, "wd": wds},
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--mae", type=Path, help="a facebookresearch/mae checkout")
    parser.add_argument("--ijepa", type=Path, help="a facebookresearch/ijepa checkout")
    parser.add_argument("--out", type=Path, default=OUT)
    args = parser.parse_args(argv)
    out = json.loads(args.out.read_text()) if args.out.is_file() else {}
    out["_note"] = "written by tests/upstream/make_goldens.py; upstream outputs, no upstream code"
    if args.mae:
        out.update(mae_goldens(args.mae))
    if args.ijepa:
        out.update(ijepa_goldens(args.ijepa))
    if not math.isfinite(out.get("mae_forward_loss", {}).get("loss", 0.0)):
        raise SystemExit("non-finite MAE loss")
    args.out.write_text(json.dumps(out, sort_keys=True) + "\n")
    print(f"wrote {args.out}: {', '.join(sorted(k for k in out if not k.startswith('_')))}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
