"""Throughput of our training / evaluation paths against the authors' way, on the same card.

Every measurement times one *step* repeatedly (``warmup`` untimed, then ``iters`` timed, each
between two device synchronisations) and reports the median as images per second. "Ours" is what
this repository runs: bf16 autocast on CUDA (fp32 on CPU), attention through
``scaled_dot_product_attention`` with the iRPE term as an additive bias, GF targets from summed-area
tables. The "reference" is the same model and step computed the way the authors' released code
does: fp32, attention as ``softmax((q @ k^T) * scale + rpe) @ v`` with the iRPE term gathered from a
flattened per-bucket table, GF targets from conv2d with four (2r+1) x (2r+1) half-window kernels
per scale. Both run in one process, so their ratio is comparable across cards.

Measurements (images are random, labels random among 10 classes):

- ``finetune``: forward, cross-entropy on a Linear head, backward, AdamW step (few-shot trainer).
- ``eval``: forward under ``torch.inference_mode`` at each eval batch size.
- ``pretrain``: one SAR-JEPA step (``pretrain.methods`` method ``sarjepa``: window draw, GF targets,
  forward, masked MSE, backward, AdamW); skipped with a note when that package is missing.
- ``gf``: the GF per-patch targets of a batch (4 scales).
- ``methods``: one pretraining step of every method with a bundled ``<method>_vit_b16.yaml``
  (SAR-JEPA's target variants, LoMaR, MaskFeat, MAE, FG-MAE, I-JEPA, ...), ours only, each built
  from its own config at ``arch`` / ``img_size`` (window methods get windows that fit the grid):
  the baselines' cost beside SAR-JEPA's on the same card.
- ``grid`` (only on request): real few-shot grids on generated data, a linear grid of 1 cell vs
  shots x seeds, fine-tune seconds per cell, ``--jobs`` cells per hour, and the paper's 900-cell
  grid projected in device hours (:mod:`benchmark.speed.grid_bench`).
"""

from __future__ import annotations

import contextlib
import copy
import functools
import gc
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from sarjepa.benchmark.core.errors import SarjepaError
from sarjepa.benchmark.speed.reference import (
    PATCH,
    conv_gf_maps,
    conv_gf_target,
    reference_attention,
    set_reference_attention,
    to_patches,
)
from torch import Tensor, nn

NUM_CLASSES = 10


@dataclass
class Timing:
    """One variant of one measurement: median step time, throughput, peak memory or an error."""

    img_s: float | None = None
    median_ms: float | None = None
    peak_mb: float | None = None
    error: str = ""


@dataclass
class Result:
    """One table row: ``ours`` against ``ref`` (None where there is no reference)."""

    what: str
    batch: int
    ours: Timing
    ref: Timing | None = None
    note: str = ""
    extra: dict = field(default_factory=dict)

    @property
    def ratio(self) -> float | None:
        if self.ref is None or not self.ours.img_s or not self.ref.img_s:
            return None
        return self.ours.img_s / self.ref.img_s


@dataclass
class Settings:
    """What to run: encoder size, device, precision of ours, batch sizes and iteration counts."""

    arch: str = "base"
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))
    img_size: int = 224
    warmup: int = 5
    iters: int = 20
    train_batch: int = 50
    eval_batches: tuple[int, ...] = (50, 256)
    pretrain_batch: int = 75
    gf_batch: int = 75
    compile: bool = False
    amp_mode: str = "auto"  # ours: "auto" (bf16 on CUDA, fp32 on CPU) | "bf16" | "off"
    attn: str = "sdpa"  # ours: a pretrain.models.attention implementation
    attn_variants: tuple[str, ...] = ("sdpa", "aligned", "triton", "math")  # `attention` rows
    # SDPA backends forced one at a time for the sdpa / aligned rows (None: the CUDA default,
    # efficient and cuDNN, the two that take an additive bias; none on a CPU)
    sdpa_backends: tuple[str, ...] | None = None

    def backends(self) -> tuple[str, ...]:
        """The SDPA backends the `attention` measurement forces in turn."""
        if self.sdpa_backends is not None:
            return self.sdpa_backends
        return ("efficient", "cudnn") if self.device.type == "cuda" else ()

    grid: object | None = None  # `grid` rows: a GridBenchOptions (None: the device's defaults)

    @property
    def amp(self) -> torch.dtype | None:
        """Our autocast dtype (None = fp32); the reference is always fp32."""
        if self.amp_mode == "bf16" or (self.amp_mode == "auto" and self.device.type == "cuda"):
            return torch.bfloat16
        return None


# --------------------------------------------------------------------------- timing helpers
def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _free(device: torch.device) -> None:
    gc.collect()
    if device.type == "cuda":
        torch.cuda.empty_cache()


def one_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0] if text else ''}"[:120]


def time_variant(
    setup: Callable[[], Callable[[], object]], batch: int, s: Settings, warmup: int | None = None
) -> Timing:
    """Build a step with ``setup()``, run it ``warmup`` + ``s.iters`` times; errors are returned.

    The peak memory (CUDA) counts from just before ``setup`` (model, optimiser state, warm-up).
    """
    dev = s.device
    _free(dev)
    if dev.type == "cuda":
        torch.cuda.reset_peak_memory_stats(dev)
    try:
        step = setup()
        for _ in range(s.warmup if warmup is None else warmup):
            step()
        times = []
        for _ in range(s.iters):
            _sync(dev)
            t0 = time.perf_counter()
            step()
            _sync(dev)
            times.append(time.perf_counter() - t0)
    except Exception as exc:  # OOM, missing kernels, ...: report and carry on
        msg = one_line(exc)
        del exc
        step = None
        _free(dev)
        return Timing(error=msg)
    med = statistics.median(times)
    peak = torch.cuda.max_memory_allocated(dev) / 2**20 if dev.type == "cuda" else None
    del step
    _free(dev)
    return Timing(img_s=batch / med, median_ms=med * 1e3, peak_mb=peak)


def _autocast(s: Settings, enabled: bool):
    if enabled and s.amp is not None:
        return torch.autocast(s.device.type, dtype=s.amp)
    return contextlib.nullcontext()


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


# --------------------------------------------------------------------------- measurements
def _ours(model: nn.Module, s: Settings, ours: bool, impl: str | None) -> nn.Module:
    """``model`` with our attention (``impl``, default ``s.attn``) or the reference's."""
    if not ours:
        return set_reference_attention(model)
    from sarjepa.pretrain.models.attention import set_attention

    return set_attention(model, impl or s.attn)


def _finetune_setup(
    s: Settings, ours: bool, compiled: bool = False, impl: str | None = None, fused: bool = True
):
    """Ours: AdamW fused on CUDA as the few-shot trainer (``fused=False``: torch's for-each)."""

    def setup():
        model = _ours(build_encoder(s).train(), s, ours, impl)
        kw = {"fused": True} if ours and fused and s.device.type == "cuda" else {}
        opt = torch.optim.AdamW(model.parameters(), lr=1e-3, weight_decay=5e-4, **kw)
        fwd = torch.compile(model) if compiled else model
        x = torch.rand(s.train_batch, 1, s.img_size, s.img_size, device=s.device)
        y = torch.randint(0, NUM_CLASSES, (s.train_batch,), device=s.device)

        def step():
            with _autocast(s, ours):
                loss = F.cross_entropy(fwd(x).float(), y)
            loss.backward()
            opt.step()
            opt.zero_grad(set_to_none=True)

        return step

    return setup


def _eval_setup(
    s: Settings, batch: int, ours: bool, compiled: bool | str = False, impl: str | None = None
):
    """``compiled``: False, True (torch.compile default mode) or a torch.compile mode name."""

    def setup():
        model = _ours(build_encoder(s).eval(), s, ours, impl)
        if compiled:
            mode = compiled if isinstance(compiled, str) else None
            fwd = torch.compile(model, mode=mode)
        else:
            fwd = model
        x = torch.rand(batch, 1, s.img_size, s.img_size, device=s.device)

        def step():
            with torch.inference_mode(), _autocast(s, ours):
                fwd(x)

        return step

    return setup


def measure_finetune(s: Settings) -> list[Result]:
    """Full training step of the encoder + Linear head at ``s.train_batch``."""
    b = s.train_batch
    ref = time_variant(_finetune_setup(s, False), b, s)
    rows = [Result(f"finetune b{b}", b, time_variant(_finetune_setup(s, True), b, s), ref)]
    if s.compile:
        comp = time_variant(_finetune_setup(s, True, True), b, s, max(s.warmup, 2))
        rows.append(Result(f"finetune b{b} compiled", b, comp, ref))
    return rows


def measure_eval(s: Settings) -> list[Result]:
    """Inference forward at each of ``s.eval_batches``."""
    rows = []
    for b in s.eval_batches:
        ref = time_variant(_eval_setup(s, b, False), b, s)
        rows.append(Result(f"eval b{b}", b, time_variant(_eval_setup(s, b, True), b, s), ref))
        if s.compile:
            comp = time_variant(_eval_setup(s, b, True, True), b, s, max(s.warmup, 2))
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


def _pretrain_setup(s: Settings, ours: bool, compiled: bool = False):
    def setup():
        from sarjepa.pretrain.train import param_groups

        cfg = sarjepa_cfg(s.arch, s.img_size)
        method = copy.deepcopy(_cpu_method(s.arch, s.img_size)).to(s.device).train()
        if not ours:
            set_reference_attention(method)
            method.target = conv_gf_target
        else:
            _ours(method, s, True, None)
        groups = param_groups(method, cfg.TRAIN.WEIGHT_DECAY, bool(cfg.TRAIN.DECAY_TOKENS))
        fused = {"fused": True} if ours and s.device.type == "cuda" else {}
        opt = torch.optim.AdamW(groups, lr=1e-4, betas=tuple(cfg.TRAIN.BETAS), **fused)
        fwd = torch.compile(method) if compiled else method
        x = torch.rand(s.pretrain_batch, 1, s.img_size, s.img_size, device=s.device)
        gen = torch.Generator().manual_seed(0)

        def step():
            with _autocast(s, ours):
                loss, _ = fwd(x, gen)
            loss.backward()
            opt.step()
            opt.zero_grad(set_to_none=True)

        return step

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


def _agreement_model(s: Settings) -> tuple[nn.Module, Tensor]:
    """The first 2 blocks of ``s.arch`` with random iRPE tables (std 0.5) and 2 random images."""
    model = build_encoder(s).eval()
    model.blocks = model.blocks[:2]
    gen = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for blk in model.blocks:
            w = blk.attn.rpe_k.lookup_table_weight
            w.copy_(torch.randn(w.shape, generator=gen) * 0.5)
    x = torch.rand(2, 1, s.img_size, s.img_size, generator=gen).to(s.device)
    return model, x


def attention_check(s: Settings) -> dict:
    """fp32 forward of ours vs the explicit reference (:func:`_agreement_model`).

    Returns ``{"max_abs_diff", "max_abs_value"}`` over all output tokens ``(2, 1 + N, D)``.
    """
    model, x = _agreement_model(s)
    with torch.no_grad():
        ours = model.forward_features(x)
        with reference_attention(model):
            ref = model.forward_features(x)
    return {
        "max_abs_diff": (ours - ref).abs().max().item(),
        "max_abs_value": ref.abs().max().item(),
    }


def _features_and_grads(model: nn.Module, x: Tensor, amp: torch.dtype | None):
    model.zero_grad(set_to_none=True)
    ctx = torch.autocast(x.device.type, dtype=amp) if amp else contextlib.nullcontext()
    with ctx:
        feats = model.forward_features(x).float()
    feats.square().mean().backward()
    grads = {
        n: p.grad.detach().float().clone()
        for n, p in model.named_parameters()
        if p.grad is not None  # the head is not used by forward_features
    }
    return feats.detach(), grads


def attention_agreement(s: Settings, impl: str) -> dict:
    """``impl`` against ``math`` in float32 (2 blocks of ``s.arch``, random iRPE tables).

    Returns ``max_abs_diff_fp32`` (output tokens), ``max_grad_diff_fp32`` (every parameter's
    gradient of ``mean(features^2)``), ``max_abs_value`` (largest |output|), and
    ``max_abs_diff_bf16`` / ``rel_diff_bf16``: ``impl`` under bf16 autocast against ``math`` in
    float32 (relative to ``max_abs_value``): how far bf16 moves the features.
    """
    from sarjepa.pretrain.models.attention import set_attention

    model, x = _agreement_model(s)
    ref, ref_g = _features_and_grads(set_attention(model, "math"), x, None)
    ours, ours_g = _features_and_grads(set_attention(model, impl), x, None)
    low, _ = _features_and_grads(model, x, torch.bfloat16)
    scale = ref.abs().max().item()
    d16 = (low - ref).abs().max().item()
    return {
        "max_abs_diff_fp32": (ours - ref).abs().max().item(),
        "max_grad_diff_fp32": max((ours_g[n] - g).abs().max().item() for n, g in ref_g.items()),
        "max_abs_value": scale,
        "max_abs_diff_bf16": d16,
        "rel_diff_bf16": d16 / scale if scale else None,
    }


def _impl_unavailable(impl: str, device: torch.device) -> str:
    """Why ``impl`` cannot run on ``device`` ("" when it can)."""
    if impl != "triton":
        return ""
    try:
        from sarjepa.pretrain.models import irpe_triton
    except ImportError as exc:
        return f"skipped: no fused kernel module ({one_line(exc)})"
    ok, why = irpe_triton.triton_available(device)
    return "" if ok else f"skipped: {why}"


SDPA_BACKENDS = {
    "efficient": "EFFICIENT_ATTENTION",
    "cudnn": "CUDNN_ATTENTION",
    "flash": "FLASH_ATTENTION",
    "math": "MATH",
}


def _forced_backend(setup: Callable[[], Callable[[], object]], backend: str):
    """``setup`` whose steps run with SDPA restricted to ``backend`` (a :data:`SDPA_BACKENDS` key;
    a step the backend cannot run fails, and the row reports it)."""
    from torch.nn.attention import SDPBackend, sdpa_kernel

    which = getattr(SDPBackend, SDPA_BACKENDS[backend])

    def forced():
        step = setup()

        def run():
            with sdpa_kernel(which):
                return step()

        with sdpa_kernel(which):
            run()  # a backend that cannot take these inputs fails here, before timing
        return run

    return forced


def measure_attention(
    s: Settings, partial: Callable[[list[Result]], None] | None = None
) -> list[Result]:
    """Every attention implementation of ``s.attn_variants`` side by side.

    Per implementation: a fine-tune step at ``s.train_batch`` and an eval forward at the largest
    eval batch (ours: bf16 autocast on CUDA, fused AdamW on CUDA), each against the reference
    timed once in this measurement, with :func:`attention_agreement`'s numbers in the row. Then
    the fine-tune step of ``s.attn`` with torch's for-each AdamW instead of the fused one, and
    with ``s.compile`` the eval forward compiled in three modes (``reduce-overhead`` = CUDA
    graphs). With SDPA backends to force (:meth:`Settings.backends`; on CUDA efficient and cuDNN)
    the ``sdpa`` and ``aligned`` rows are repeated with each backend forced. ``partial`` gets the
    rows so far after each implementation (a run cut short keeps them).
    """
    b, be = s.train_batch, max(s.eval_batches)
    ref_ft = time_variant(_finetune_setup(s, False), b, s)
    ref_ev = time_variant(_eval_setup(s, be, False), be, s)
    rows: list[Result] = []
    report = partial or (lambda rows: None)
    for impl in s.attn_variants:
        report(rows)
        why = _impl_unavailable(impl, s.device)
        if why:
            rows.append(Result(f"attention {impl}", b, Timing(error=why), note="not timed"))
            continue
        try:
            agree = attention_agreement(s, impl)
            note = (
                f"fp32 vs math: out {agree['max_abs_diff_fp32']:.1e}, grads "
                f"{agree['max_grad_diff_fp32']:.1e}; bf16 vs fp32 math: rel "
                f"{agree['rel_diff_bf16']:.1e}"
            )
        except Exception as exc:  # report the failed check, still time the variant
            agree, note = {"agreement_error": one_line(exc)}, f"check failed: {one_line(exc)}"
        ft = time_variant(_finetune_setup(s, True, impl=impl), b, s)
        ev = time_variant(_eval_setup(s, be, True, impl=impl), be, s)
        rows.append(
            Result(f"attention {impl}: finetune b{b}", b, ft, ref_ft, note, {"attn": impl, **agree})
        )
        rows.append(Result(f"attention {impl}: eval b{be}", be, ev, ref_ev, "", {"attn": impl}))
        for backend in s.backends() if impl in ("sdpa", "aligned") else ():
            if backend not in SDPA_BACKENDS:
                raise SarjepaError(f"unknown SDPA backend '{backend}'")
            extra = {"attn": impl, "sdpa_backend": backend}
            ft = time_variant(_forced_backend(_finetune_setup(s, True, impl=impl), backend), b, s)
            ev = time_variant(_forced_backend(_eval_setup(s, be, True, impl=impl), backend), be, s)
            name = f"attention {impl} [{backend}]"
            rows.append(Result(f"{name}: finetune b{b}", b, ft, ref_ft, "", extra))
            rows.append(Result(f"{name}: eval b{be}", be, ev, ref_ev, "", dict(extra)))
    report(rows)
    if s.device.type == "cuda":
        ft = time_variant(_finetune_setup(s, True, fused=False), b, s)
        rows.append(Result(f"finetune b{b} {s.attn}, for-each AdamW", b, ft, ref_ft))
        report(rows)
    if s.compile:
        for mode in ("default", "reduce-overhead", "max-autotune-no-cudagraphs"):
            setup = _eval_setup(s, be, True, compiled=mode)
            ev = time_variant(setup, be, s, max(s.warmup, 3))
            rows.append(Result(f"eval b{be} {s.attn}, compile {mode}", be, ev, ref_ev))
    return rows


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
        from sarjepa.pretrain.train import param_groups

        cfg = method_cfg(name, s.arch, s.img_size)
        method = _ours(build_method(cfg).to(s.device).train(), s, True, None)
        groups = param_groups(method, cfg.TRAIN.WEIGHT_DECAY, bool(cfg.TRAIN.DECAY_TOKENS))
        fused = {"fused": True} if s.device.type == "cuda" else {}
        opt = torch.optim.AdamW(groups, lr=1e-4, betas=tuple(cfg.TRAIN.BETAS), **fused)
        x = torch.rand(s.pretrain_batch, 1, s.img_size, s.img_size, device=s.device)
        gen = torch.Generator().manual_seed(0)
        after_step = getattr(method, "on_optimizer_step", None)

        def step():
            with _autocast(s, True):
                loss, _ = method(x, gen)
            loss.backward()
            opt.step()
            opt.zero_grad(set_to_none=True)
            if after_step is not None:
                after_step(0.5)  # e.g. I-JEPA's EMA update of the target encoder

        return step

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


def measure_grid(
    s: Settings, partial: Callable[[list[Result]], None] | None = None
) -> list[Result]:
    """Few-shot grid throughput and the 900-cell projection (:mod:`benchmark.speed.grid_bench`).

    ``partial`` gets the rows measured so far after each stage of the grid measurement.
    """
    from sarjepa.benchmark.speed.grid_bench import measure_grid as run

    return run(s, partial)


MEASURES: dict[str, Callable[[Settings], list[Result]]] = {
    "finetune": measure_finetune,
    "eval": measure_eval,
    "pretrain": measure_pretrain,
    "gf": measure_gf,
    "methods": measure_methods,
    "attention": measure_attention,
    "grid": measure_grid,
}
STAGED: dict[str, Callable[[Settings, Callable[[list[Result]], None]], list[Result]]] = {
    "attention": measure_attention,
    "grid": measure_grid,
}


def run_all(
    names: list[str], s: Settings, on_rows: Callable[[list[Result]], None] | None = None
) -> list[Result]:
    """Run the named measurements in order; ``on_rows`` gets the rows so far after each one.

    Measurements of :data:`STAGED` (attention, grid) report their rows after each stage too, so
    that a run cut short keeps what it measured, and a stage that fails keeps the rows of the
    stages before it (then the error row).
    """
    rows: list[Result] = []
    for name in names:
        done: list[Result] = []

        def keep(part: list[Result], done: list[Result] = done) -> None:
            done[:] = part
            if on_rows is not None:
                on_rows(rows + part)

        try:
            new = STAGED[name](s, keep) if name in STAGED else MEASURES[name](s)
        except Exception as exc:  # a bug in one measurement must not lose the others
            new = [*done, Result(name, 0, Timing(error=one_line(exc)))]
        rows.extend(new)
        if on_rows is not None:
            on_rows(rows)
    clear_caches()
    return rows
