"""Attention implementations side by side: agreement with the ``math`` path, and timed rows.

Also the fp32 check of ours against the authors' explicit attention that ``sarjepa bench`` prints
first (:func:`attention_check`).
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable

import torch
from sarjepa.benchmark.core.errors import SarjepaError
from sarjepa.benchmark.speed.measure import build_encoder, eval_setup, finetune_setup
from sarjepa.benchmark.speed.reference import reference_attention
from sarjepa.benchmark.speed.timing import Result, Settings, Timing, one_line, time_variant
from torch import Tensor, nn


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
    ref_ft = time_variant(finetune_setup(s, False), b, s)
    ref_ev = time_variant(eval_setup(s, be, False), be, s)
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
        ft = time_variant(finetune_setup(s, True, impl=impl), b, s)
        ev = time_variant(eval_setup(s, be, True, impl=impl), be, s)
        rows.append(
            Result(f"attention {impl}: finetune b{b}", b, ft, ref_ft, note, {"attn": impl, **agree})
        )
        rows.append(Result(f"attention {impl}: eval b{be}", be, ev, ref_ev, "", {"attn": impl}))
        for backend in s.backends() if impl in ("sdpa", "aligned") else ():
            if backend not in SDPA_BACKENDS:
                raise SarjepaError(f"unknown SDPA backend '{backend}'")
            extra = {"attn": impl, "sdpa_backend": backend}
            ft = time_variant(_forced_backend(finetune_setup(s, True, impl=impl), backend), b, s)
            ev = time_variant(_forced_backend(eval_setup(s, be, True, impl=impl), backend), be, s)
            name = f"attention {impl} [{backend}]"
            rows.append(Result(f"{name}: finetune b{b}", b, ft, ref_ft, "", extra))
            rows.append(Result(f"{name}: eval b{be}", be, ev, ref_ev, "", dict(extra)))
    report(rows)
    if s.device.type == "cuda":
        ft = time_variant(finetune_setup(s, True, fused=False), b, s)
        rows.append(Result(f"finetune b{b} {s.attn}, for-each AdamW", b, ft, ref_ft))
        report(rows)
    if s.compile:
        for mode in ("default", "reduce-overhead", "max-autotune-no-cudagraphs"):
            setup = eval_setup(s, be, True, compiled=mode)
            ev = time_variant(setup, be, s, max(s.warmup, 3))
            rows.append(Result(f"eval b{be} {s.attn}, compile {mode}", be, ev, ref_ev))
    return rows
