"""The step measurements: fine-tune, eval, SAR-JEPA pretrain, GF targets, every method's step.

"Ours" is what this repository runs: bf16 autocast on CUDA (fp32 on CPU), attention through
``scaled_dot_product_attention`` with the iRPE term as an additive bias, GF targets from summed-area
tables. The "reference" is the same model and step computed the way the authors' released code
does (:mod:`benchmark.speed.reference`). Images are random, labels random among
:data:`~benchmark.speed.timing.NUM_CLASSES` classes.
"""

from __future__ import annotations

import copy
import functools

import torch
import torch.nn.functional as F
from sarjepa.benchmark.speed.reference import (
    PATCH,
    conv_gf_maps,
    conv_gf_target,
    set_reference_attention,
    to_patches,
)
from sarjepa.benchmark.speed.timing import (
    NUM_CLASSES,
    Result,
    Settings,
    Timing,
    autocast,
    one_line,
    time_variant,
)
from torch import nn


@functools.lru_cache(maxsize=1)
def _cpu_encoder(arch: str, img_size: int) -> nn.Module:
    from sarjepa.pretrain.models import build_vit

    return build_vit(f"vit_{arch}_patch16", img_size=img_size, num_classes=NUM_CLASSES)


def build_encoder(s: Settings) -> nn.Module:
    """A fresh copy of the 1-channel iRPE ViT of ``s.arch`` with a Linear head, on ``s.device``.

    The model is initialised once (on the CPU) and deep-copied for every variant: same weights,
    and no repeated init cost.
    """
    return copy.deepcopy(_cpu_encoder(s.arch, s.img_size)).to(s.device)


@functools.lru_cache(maxsize=1)
def _cpu_method(arch: str, img_size: int) -> nn.Module:
    from sarjepa.pretrain.methods import build_method

    return build_method(sarjepa_cfg(arch, img_size))


def clear_caches() -> None:
    """Drop the cached CPU models."""
    _cpu_encoder.cache_clear()
    _cpu_method.cache_clear()


def with_attention(model: nn.Module, s: Settings, ours: bool, impl: str | None) -> nn.Module:
    """``model`` with our attention (``impl``, default ``s.attn``) or the reference's."""
    if not ours:
        return set_reference_attention(model)
    from sarjepa.pretrain.models.attention import set_attention

    return set_attention(model, impl or s.attn)


def finetune_setup(
    s: Settings, ours: bool, compiled: bool = False, impl: str | None = None, fused: bool = True
):
    """Ours: AdamW fused on CUDA as the few-shot trainer (``fused=False``: torch's for-each)."""

    def setup():
        model = with_attention(build_encoder(s).train(), s, ours, impl)
        kw = {"fused": True} if ours and fused and s.device.type == "cuda" else {}
        opt = torch.optim.AdamW(model.parameters(), lr=1e-3, weight_decay=5e-4, **kw)
        fwd = torch.compile(model) if compiled else model
        x = torch.rand(s.train_batch, 1, s.img_size, s.img_size, device=s.device)
        y = torch.randint(0, NUM_CLASSES, (s.train_batch,), device=s.device)

        def step():
            with autocast(s, ours):
                loss = F.cross_entropy(fwd(x).float(), y)
            loss.backward()
            opt.step()
            opt.zero_grad(set_to_none=True)

        return step

    return setup


def eval_setup(
    s: Settings, batch: int, ours: bool, compiled: bool | str = False, impl: str | None = None
):
    """``compiled``: False, True (torch.compile default mode) or a torch.compile mode name."""

    def setup():
        model = with_attention(build_encoder(s).eval(), s, ours, impl)
        if compiled:
            mode = compiled if isinstance(compiled, str) else None
            fwd = torch.compile(model, mode=mode)
        else:
            fwd = model
        x = torch.rand(batch, 1, s.img_size, s.img_size, device=s.device)

        def step():
            with torch.inference_mode(), autocast(s, ours):
                fwd(x)

        return step

    return setup


def measure_finetune(s: Settings) -> list[Result]:
    """Full training step of the encoder + Linear head at ``s.train_batch``."""
    b = s.train_batch
    ref = time_variant(finetune_setup(s, False), b, s)
    rows = [Result(f"finetune b{b}", b, time_variant(finetune_setup(s, True), b, s), ref)]
    if s.compile:
        comp = time_variant(finetune_setup(s, True, True), b, s, max(s.warmup, 2))
        rows.append(Result(f"finetune b{b} compiled", b, comp, ref))
    return rows


def measure_eval(s: Settings) -> list[Result]:
    """Inference forward at each of ``s.eval_batches``."""
    rows = []
    for b in s.eval_batches:
        ref = time_variant(eval_setup(s, b, False), b, s)
        rows.append(Result(f"eval b{b}", b, time_variant(eval_setup(s, b, True), b, s), ref))
        if s.compile:
            comp = time_variant(eval_setup(s, b, True, True), b, s, max(s.warmup, 2))
            rows.append(Result(f"eval b{b} compiled", b, comp, ref))
    return rows


def mask_geometry(img_size: int) -> tuple[int, int]:
    """``(window side, windows per image)``: the paper's (7, 4) on grids of >= 8 patches; on
    smaller test images windows of ``grid - 1`` (4 origins), at least 2 x 2 patches."""
    grid = img_size // PATCH
    if grid >= 8:
        return 7, 4
    window = max(2, grid - 1)
    return window, min(4, (grid - window + 1) ** 2)


RECIPE = "sarjepa_vit_b16"  # the bundled pretraining config the pretrain step is built from


def sarjepa_cfg(arch: str, img_size: int):
    """The bundled SAR-JEPA recipe (:data:`RECIPE`) with ``arch``, ``img_size`` and windows that
    fit the grid (:func:`mask_geometry`), loaded by :func:`pretrain.config.load_config`.

    Raises:
        ImportError: yacs (a dependency) is missing; :func:`measure_pretrain` reports the row as
            skipped then, the other measurements need no yacs.
    """
    from sarjepa.pretrain.config import load_config

    opts = ["MODEL.ARCH", f"vit_{arch}_patch16", "INPUT.SIZE", str(img_size)]
    window, num_window = mask_geometry(img_size)
    opts += ["MASK.WINDOW_SIZE", str(window), "MASK.NUM_WINDOW", str(num_window)]
    return load_config(RECIPE, opts)


def _train_step(method, cfg, s: Settings, ours: bool, fwd=None):
    """One timed pretraining step of ``method`` on a fixed random batch: forward (``fwd``, e.g. a
    compiled ``method``), backward, AdamW (fused on CUDA for ours), and the method's
    ``on_optimizer_step`` hook if it has one (e.g. I-JEPA's EMA of the target encoder)."""
    from sarjepa.pretrain.train import param_groups

    groups = param_groups(method, cfg.TRAIN.WEIGHT_DECAY, bool(cfg.TRAIN.DECAY_TOKENS))
    fused = {"fused": True} if ours and s.device.type == "cuda" else {}
    opt = torch.optim.AdamW(groups, lr=1e-4, betas=tuple(cfg.TRAIN.BETAS), **fused)
    fwd = method if fwd is None else fwd
    x = torch.rand(s.pretrain_batch, 1, s.img_size, s.img_size, device=s.device)
    gen = torch.Generator().manual_seed(0)
    after_step = getattr(method, "on_optimizer_step", None)

    def step():
        with autocast(s, ours):
            loss, _ = fwd(x, gen)
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
        if after_step is not None:
            after_step(0.5)

    return step


def _pretrain_setup(s: Settings, ours: bool, compiled: bool = False):
    def setup():
        cfg = sarjepa_cfg(s.arch, s.img_size)
        method = copy.deepcopy(_cpu_method(s.arch, s.img_size)).to(s.device).train()
        if not ours:
            set_reference_attention(method)
            method.target = conv_gf_target
        else:
            with_attention(method, s, True, None)
        return _train_step(method, cfg, s, ours, torch.compile(method) if compiled else None)

    return setup


def measure_pretrain(s: Settings) -> list[Result]:
    """One SAR-JEPA step (targets included); a note instead when pretrain.methods is missing."""
    b = s.pretrain_batch
    try:
        from sarjepa.pretrain.methods import method_names

        if "sarjepa" not in method_names():
            raise ImportError("method 'sarjepa' is not registered")
        sarjepa_cfg(s.arch, s.img_size)
    except ImportError as exc:
        return [Result(f"pretrain b{b}", b, Timing(error=f"skipped: {one_line(exc)}"))]
    ref = time_variant(_pretrain_setup(s, False), b, s)
    rows = [Result(f"pretrain b{b}", b, time_variant(_pretrain_setup(s, True), b, s), ref)]
    rows[0].extra["config"] = f"{RECIPE}.yaml"
    if s.compile:
        comp = time_variant(_pretrain_setup(s, True, True), b, s, max(s.warmup, 2))
        rows.append(Result(f"pretrain b{b} compiled", b, comp, ref))
    return rows


def measure_gf(s: Settings) -> list[Result]:
    """GF per-patch targets (4 scales) of ``s.gf_batch`` images: ours vs conv2d, and their gap."""
    b = s.gf_batch
    try:
        from sarjepa.pretrain.targets import build_target

        target = build_target("gf", patch_size=PATCH)
    except ImportError as exc:
        return [Result(f"gf b{b}", b, Timing(error=f"skipped: {one_line(exc)}"))]
    x = torch.rand(b, 1, s.img_size, s.img_size, device=s.device)

    def setup(fn):
        def step():
            with torch.no_grad():
                fn(x)

        return lambda: step

    ref = time_variant(setup(conv_gf_target), b, s)
    row = Result(f"gf b{b}", b, time_variant(setup(target), b, s), ref)
    with torch.no_grad():  # agreement on 2 images with the conv path in fp32 and in fp64
        ours_t = target(x[:2]).double()
        f32 = conv_gf_target(x[:2]).double()
        f64 = to_patches(conv_gf_maps(x[:2], dtype=torch.float64))
    d32, d64 = (ours_t - f32).abs(), (ours_t - f64).abs()
    rel64 = (d64 / f64.abs().clamp(min=1e-3)).max().item()
    row.extra.update(
        max_abs_diff_fp32_conv=d32.max().item(),
        max_abs_diff_fp64_conv=d64.max().item(),
        max_rel_diff_fp64_conv=rel64,
    )
    row.note = (
        f"max abs diff vs fp32 conv {d32.max().item():.1e}; vs fp64 conv {d64.max().item():.1e} "
        f"(rel {rel64:.1e} where |ref| >= 1e-3)"
    )
    return [row]


def method_recipes() -> list[str]:
    """Registered methods with a bundled ``<method>_vit_b16.yaml``, sorted."""
    from pathlib import Path

    from sarjepa.pretrain.methods import method_names

    root = Path(__file__).resolve().parents[2] / "pretrain" / "configs"
    return [m for m in method_names() if (root / f"{m}_vit_b16.yaml").is_file()]


def method_cfg(name: str, arch: str, img_size: int):
    """``<name>_vit_b16.yaml`` at ``arch`` and ``img_size`` (masking fitted to a small grid)."""
    from sarjepa.pretrain.config import load_config
    from sarjepa.pretrain.methods import small_grid_overrides
    from sarjepa.pretrain.models.vit import SIZES

    dim, depth, heads = SIZES[arch]
    opts = ["MODEL.ARCH", f"vit_{arch}_patch16", "INPUT.SIZE", str(img_size)]
    opts += ["MODEL.EMBED_DIM", str(dim), "MODEL.DEPTH", str(depth), "MODEL.NUM_HEADS", str(heads)]
    cfg = load_config(f"{name}_vit_b16", opts)
    fit = small_grid_overrides(cfg, img_size // PATCH)  # the method's own fit to a small grid
    return load_config(f"{name}_vit_b16", [*opts, *fit]) if fit else cfg


def _method_setup(s: Settings, name: str):
    def setup():
        from sarjepa.pretrain.methods import build_method

        cfg = method_cfg(name, s.arch, s.img_size)
        method = with_attention(build_method(cfg).to(s.device).train(), s, True, None)
        return _train_step(method, cfg, s, True)

    return setup


def measure_methods(s: Settings) -> list[Result]:
    """One pretraining step of every method with a ViT-B config (ours only, no reference)."""
    b = s.pretrain_batch
    rows = []
    for name in method_recipes():
        r = Result(f"pretrain {name} b{b}", b, time_variant(_method_setup(s, name), b, s))
        r.extra["config"] = f"{name}_vit_b16.yaml"
        rows.append(r)
    return rows
