"""Write upstream functions' outputs on fixed seeded inputs to tests/data/upstream_goldens.json.

Run it against checkouts kept OUTSIDE this repository (nothing of them is copied here; only the
numbers they produce are written)::

    python tests/upstream/make_goldens.py --mae PATH/TO/facebookresearch/mae \
        --ijepa PATH/TO/facebookresearch/ijepa --lomar PATH/TO/junchen14/LoMaR \
        --hog PATH/TO/zhu-xlab/FGMAE

Each checkout is optional: only the sections of the checkouts given are (re)written, the others
are kept from the existing JSON. ``tests/test_upstream_goldens.py`` then checks our functions
against the JSON without upstream. Covered: MAE's ``forward_loss`` (norm_pix) and
``random_masking``, MAE's ``adjust_learning_rate``; I-JEPA's ``MaskCollator`` calls and its
``WarmupCosineSchedule`` / ``CosineWDSchedule``; LoMaR's whole forward loss (its model loaded with
our ``lomar`` checkpoint keys) and its window/mask draws; FG-MAE's ``HOGLayerC`` (the HOG target
of FG-MAE, with mmpretrain's HOG generator's 16-px Gaussian window).

Shims applied at run time (upstream code untouched on disk): MAE's models call timm's ``Block``
with ``qk_scale``, which current timm no longer takes, so the keyword is dropped; MAE's and
LoMaR's ``util/pos_embed.py`` use ``np.float``, removed from numpy 1.24, so it is set to
``float``. LoMaR: its ``irpe.py`` imports ``easydict`` (a dict with attribute access is put in
its place when the package is missing), its ``profile.py`` shadows the standard library's (which
is imported first), and its ``patchify`` hard-codes 3 channels, so it is replaced on the model
instance by the same patch layout for the model's channel count (1, as we train). FG-MAE: its
``models_mae.py`` imports ``kornia`` for an edge target the HOG layer does not use (an empty
module stands in when kornia is missing).
"""

from __future__ import annotations

import argparse
import importlib
import json
import math
import sys
from functools import partial
from pathlib import Path
from types import ModuleType, SimpleNamespace

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
#: Our ``lomar_tiny`` config (1 x 112 x 112, patch 16, width 64, depth 2, 2 windows of 5 x 5,
#: 20 of 25 masked); every parameter drawn from ``param_seed`` (normal x ``param_std``, iRPE tables
#: included, so they matter); images uniform from ``image_seed``; windows and masks from
#: ``draw_seed`` (upstream: torch.manual_seed; ours: a generator with that seed).
LOMAR_LOSS = {
    "config": "lomar_tiny",
    "param_seed": 5,
    "param_std": 0.1,
    "image_seed": 3,
    "draw_seed": 9,
    "batches": [1, 4],
}
#: Our ``ijepa_tiny`` config (1 x 112 x 112, patch 16, encoder width 64 depth 2, predictor width
#: 32 depth 1); every parameter of encoder, predictor and target encoder drawn from
#: ``param_seed``; images uniform from ``image_seed``; the masks of our first batch with a
#: generator of ``draw_seed`` (fed to upstream as its collator's output).
IJEPA_LOSS = {
    "config": "ijepa_tiny",
    "param_seed": 6,
    "param_std": 0.1,
    "image_seed": 4,
    "draw_seed": 12,
    "batch": 2,
}
#: Two 1 x 224 x 224 images (FG-MAE's HOG layer hard-codes a 14-patch grid): uniform noise, and
#: speckle (mean of 4 unit exponentials, / 3, clipped to 1), from ``image_seed``; ``patches``
#: patch indices per image drawn from ``patch_seed`` are stored (36 values each).
HOG = {
    "size": 224,
    "image_seed": 0,
    "patch_seed": 1,
    "patches": 16,
    "nbins": 9,
    "cell": 8,
    "gaussian_window": 16,
    "patch": 16,
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


def seeded_method(spec: dict):
    """Our method of ``spec["config"]`` in eval mode, every parameter and buffer seeded."""
    from sarjepa.pretrain.config import load_config
    from sarjepa.pretrain.methods import build_method

    method = build_method(load_config(spec["config"], ["DEVICE", "cpu"])).eval()
    g = torch.Generator().manual_seed(spec["param_seed"])
    with torch.no_grad():
        for value in method.state_dict().values():
            value.copy_(torch.randn(value.shape, generator=g) * spec["param_std"])
    return method


def seeded_images(spec: dict, batch: int, size: int) -> torch.Tensor:
    """(batch, 1, size, size) uniform images of ``spec["image_seed"]``."""
    g = torch.Generator().manual_seed(spec["image_seed"])
    return torch.rand(batch, 1, size, size, generator=g)


def hog_images(spec: dict) -> torch.Tensor:
    """(2, 1, S, S) in [0, 1]: uniform noise, then speckle."""
    g = torch.Generator().manual_seed(spec["image_seed"])
    s = spec["size"]
    uniform = torch.rand(1, 1, s, s, generator=g)
    speckle = (-torch.rand(4, 1, 1, s, s, generator=g).log()).mean(0) / 3
    return torch.cat([uniform, speckle.clamp(max=1.0)])


def hog_patch_index(spec: dict) -> torch.Tensor:
    """(2, patches) patch indices whose HOG values are stored."""
    n = (spec["size"] // spec["patch"]) ** 2
    g = torch.Generator().manual_seed(spec["patch_seed"])
    return torch.stack([torch.randperm(n, generator=g)[: spec["patches"]] for _ in range(2)])


def _f32(values) -> list[float]:
    """float32 values as the shortest decimals that read back to the same float32."""
    return [float(f"{v:.9g}") for v in values]


def _import_from(root: Path, module: str, clear: tuple[str, ...] = ("util",)) -> ModuleType:
    """``module`` imported from checkout ``root`` (earlier checkouts' ``util`` packages dropped)."""
    for name in list(sys.modules):
        if name.split(".")[0] in clear or name == module:
            del sys.modules[name]
    sys.path.insert(0, str(root))
    try:
        return importlib.import_module(module)
    finally:
        sys.path.remove(str(root))


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
        "ijepa_loss": ijepa_loss_golden(),
    }


def ijepa_loss_golden() -> dict:
    """Upstream's train-step loss on our seeded weights, images and masks.

    Its train step's forward is closures inside ``main()``, so they are composed here from its
    importable parts the way that step does: target encoder, ``F.layer_norm`` over the feature
    dim, ``apply_masks``, ``repeat_interleave_batch``; encoder on the context masks, predictor;
    ``F.smooth_l1_loss``.
    """
    import src.models.vision_transformer as vit
    import torch.nn.functional as F
    from sarjepa.pretrain.models.attention import set_attention
    from src.masks.utils import apply_masks
    from src.utils.tensors import repeat_interleave_batch

    spec = IJEPA_LOSS
    ours = seeded_method(spec)
    enc, pred = ours.encoder, ours.predictor
    size = enc.grid_size[0] * enc.patch_size
    entries = ours.checkpoint_entries(None, 0, {})
    strip = lambda sd: {k.removeprefix("module."): v for k, v in sd.items()}  # noqa: E731
    kwargs = dict(
        img_size=[size], patch_size=enc.patch_size, in_chans=1, embed_dim=enc.embed_dim,
        depth=len(enc.blocks), num_heads=enc.blocks[0].attn.num_heads, mlp_ratio=4,
        qkv_bias=True, norm_layer=partial(torch.nn.LayerNorm, eps=1e-6),
    )  # fmt: skip
    encoder, target_encoder = vit.VisionTransformer(**kwargs), vit.VisionTransformer(**kwargs)
    predictor = vit.vit_predictor(
        num_patches=enc.grid_size[0] * enc.grid_size[1], embed_dim=enc.embed_dim,
        predictor_embed_dim=pred.predictor_embed.out_features, depth=len(pred.predictor_blocks),
        num_heads=pred.predictor_blocks[0].attn.num_heads,
    )  # fmt: skip
    for module, key in (
        (encoder, "encoder"),
        (target_encoder, "target_encoder"),
        (predictor, "predictor"),
    ):
        module.load_state_dict(strip(entries[key]), strict=True)
        module.eval()
    b = spec["batch"]
    images = seeded_images(spec, b, size)
    masks = ours.draw_masks(
        b, tuple(enc.grid_size), torch.Generator().manual_seed(spec["draw_seed"])
    )
    masks_enc, masks_pred = masks.context, masks.targets
    with torch.no_grad():
        h = target_encoder(images)
        h = F.layer_norm(h, (h.size(-1),))
        h = repeat_interleave_batch(apply_masks(h, masks_pred), b, repeat=len(masks_enc))
        z = predictor(encoder(images, masks_enc), masks_enc, masks_pred)
        loss = float(F.smooth_l1_loss(z, h))
        gen = torch.Generator
        sdpa, _ = seeded_method(spec)(images, generator=gen().manual_seed(spec["draw_seed"]))
        math_attn = set_attention(seeded_method(spec), "math")
        own, _ = math_attn(images, generator=gen().manual_seed(spec["draw_seed"]))
    return {
        "spec": spec,
        "loss": loss,
        "ours_math_attention_bitwise_equal_when_written": float(own) == loss,
        "ours_sdpa_abs_diff_when_written": abs(float(sdpa) - loss),
        "context": [m.tolist() for m in masks_enc],
        "targets": [m.tolist() for m in masks_pred],
        "note": "facebookresearch/ijepa VisionTransformer(in_chans=1) x 2 and vit_predictor "
        "loaded strict with our ijepa checkpoint entries; its train step's loss (closures in "
        "main(), composed from its modules and functions) on the masks listed",
    }


def lomar_goldens(root: Path) -> dict:
    import cProfile  # noqa: F401 - the standard library's profile, before LoMaR's shadows it

    _shim_timm()
    try:
        import easydict  # noqa: F401
    except ImportError:
        shim = ModuleType("easydict")
        shim.EasyDict = type(  # type: ignore[attr-defined]
            "EasyDict", (dict,), {"__getattr__": dict.__getitem__, "__setattr__": dict.__setitem__}
        )
        sys.modules["easydict"] = shim
    models_lomar = _import_from(root, "models_lomar")
    spec = LOMAR_LOSS
    ours = seeded_method(spec)
    enc = ours.encoder
    size = enc.grid_size[0] * enc.patch_size
    model = models_lomar.MaskedAutoencoderViT(
        img_size=size, patch_size=enc.patch_size, in_chans=1, embed_dim=enc.embed_dim,
        depth=len(enc.blocks), num_heads=enc.blocks[0].attn.num_heads, mlp_ratio=4.0,
        norm_layer=partial(torch.nn.LayerNorm, eps=1e-6), norm_pix_loss=True,
    )  # fmt: skip
    model.load_state_dict(ours.checkpoint_state_dict(), strict=True)
    model.eval()
    p = enc.patch_size

    def patchify(imgs: torch.Tensor) -> torch.Tensor:  # upstream's layout, any channel count
        b, c, h, w = imgs.shape
        x = imgs.reshape(b, c, h // p, p, w // p, p).permute(0, 2, 4, 3, 5, 1)
        return x.reshape(b, (h // p) * (w // p), p * p * c)

    model.patchify = patchify
    runs = []
    for batch in spec["batches"]:
        imgs = seeded_images(spec, batch, size)
        torch.manual_seed(spec["draw_seed"])
        with torch.no_grad():
            loss, _, mask = model(
                imgs, window_size=ours.window_size, num_window=ours.num_window,
                mask_ratio=ours.mask_ratio,
            )  # fmt: skip
        # forward_encoder's window patch indices (sequence s = image s mod B), drawn again
        torch.manual_seed(spec["draw_seed"])
        with torch.no_grad():
            _, _, patches = model.forward_encoder(
                imgs, ours.window_size, ours.num_window, ours.mask_ratio
            )
        with torch.no_grad():
            own, _ = ours(imgs, generator=torch.Generator().manual_seed(spec["draw_seed"]))
        runs.append(
            {
                "batch": batch,
                "loss": float(loss),
                "ours_bitwise_equal_when_written": float(own) == float(loss),
                "mask": mask.int().tolist(),
                "patch_index": patches.tolist(),
            }
        )
    return {
        "lomar_loss": {
            "spec": spec,
            "runs": runs,
            "note": "junchen14/LoMaR MaskedAutoencoderViT(in_chans=1) loaded strict with our "
            "lomar checkpoint keys; its 3-channel patchify replaced by the same layout at 1 "
            "channel (we train 1-channel; a grey image replicated over 3 channels would change "
            "norm_pix's unbiased variance); rows of mask/patch_index are upstream's sequences "
            "(sequence s shows image s mod B)",
        }
    }


def hog_goldens(root: Path) -> dict:
    _shim_timm()
    sys.modules.setdefault("kornia", ModuleType("kornia"))
    mae = _import_from(
        root / "src" / "pretrain_ssl", "models.mae.models_mae", clear=("util", "models")
    )
    s = HOG
    layer = mae.HOGLayerC(
        nbins=s["nbins"], pool=s["cell"], gaussian_window=s["gaussian_window"], norm_out=True,
        in_channels=1,
    )  # fmt: skip
    from sarjepa.pretrain.targets import build_target

    images = hog_images(s)
    tokens, _ = layer(images)  # (2, 196, 36)
    ours = build_target(
        "hog", patch_size=s["patch"], nbins=s["nbins"], cell=s["cell"],
        gaussian_window=s["gaussian_window"],
    )(images)  # fmt: skip
    index = hog_patch_index(s)
    values = [_f32(tokens[i, index[i]].flatten().tolist()) for i in range(2)]
    return {
        "fgmae_hog": {
            "spec": s,
            "values": values,
            "ours_max_abs_diff_all_patches_when_written": float((ours - tokens).abs().max()),
            "note": "zhu-xlab/FGMAE HOGLayerC(nbins 9, pool 8, gaussian_window 16, norm_out "
            "True = --hog_norm, in_channels 1); its per-patch tokens at the stored patch "
            "indices, 9 significant digits (exact float32)",
        }
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--mae", type=Path, help="a facebookresearch/mae checkout")
    parser.add_argument("--ijepa", type=Path, help="a facebookresearch/ijepa checkout")
    parser.add_argument("--lomar", type=Path, help="a junchen14/LoMaR checkout")
    parser.add_argument(
        "--hog", type=Path, metavar="FGMAE", help="a zhu-xlab/FGMAE checkout (its HOG layer)"
    )
    parser.add_argument("--out", type=Path, default=OUT)
    args = parser.parse_args(argv)
    out = json.loads(args.out.read_text()) if args.out.is_file() else {}
    out["_note"] = "written by tests/upstream/make_goldens.py; upstream outputs, no upstream code"
    if args.mae:
        out.update(mae_goldens(args.mae))
    if args.ijepa:
        out.update(ijepa_goldens(args.ijepa))
    if args.lomar:
        out.update(lomar_goldens(args.lomar))
    if args.hog:
        out.update(hog_goldens(args.hog))
    if not math.isfinite(out.get("mae_forward_loss", {}).get("loss", 0.0)):
        raise SystemExit("non-finite MAE loss")
    args.out.write_text(json.dumps(out, sort_keys=True) + "\n")
    print(f"wrote {args.out}: {', '.join(sorted(k for k in out if not k.startswith('_')))}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
