"""The fused iRPE Triton kernels (pretrain/models/irpe_triton.py) in Triton's CPU interpreter.

The reference is written here from the definition, in float64 with autograd:
``softmax(scale * q k^T + PB[b, h, i, ids[i, j]])`` (the bias by advanced indexing, the softmax
as exp / sum) then ``@ v``. Tolerances: float32 inputs 1e-5 absolute on the output and on all
four gradients (measured ~1e-6); bfloat16 2e-2 and float16 2e-3 of the largest reference
magnitude (measured ~0.8% and ~0.04%: the kernels round p and dS to the input dtype before the
tensor-core products, as flash attention does). ``TRITON_INTERPRET=1`` is set per test; the
kernel module is re-decorated when that changes. No GPU is used; the slow test compiles the
kernels for sm_90 with Triton's bundled ptxas, which needs no device.
"""

from __future__ import annotations

import importlib.util
import sys

import pytest
import torch
from sarjepa.benchmark.core.errors import SarjepaError
from sarjepa.pretrain.models import irpe_triton
from sarjepa.pretrain.models.attention import attend
from sarjepa.pretrain.models.irpe import ContextualKeyRPE, irpe_bucket_ids
from sarjepa.pretrain.models.irpe_triton import (
    TritonConfig,
    irpe_attention_triton,
    parse_config,
    triton_available,
)

pytest.importorskip("triton")

FP32_TOL = 1e-5
LOW_TOL = {torch.bfloat16: 2e-2, torch.float16: 2e-3}  # relative to the largest |reference|


@pytest.fixture
def interpret(monkeypatch):
    """Run the kernels in Triton's interpreter on CPU tensors, with the default config."""
    monkeypatch.setenv("TRITON_INTERPRET", "1")
    monkeypatch.delenv(irpe_triton.ENV_CONFIG, raising=False)


def reference(q, k, v, pb, ids, scale):
    """float64 attention with the gathered bias, written out."""
    t = q.shape[2]
    bias = pb[:, :, torch.arange(t)[:, None], ids]  # (B, H, T, T)
    logits = scale * (q @ k.transpose(-2, -1)) + bias
    e = torch.exp(logits - logits.amax(-1, keepdim=True))
    return (e / e.sum(-1, keepdim=True)) @ v


def make_case(b, h, ids, d, nb=50, seed=0):
    """float64 leaves q, k, v, PB and an output cotangent, all values ~ N(0, 1)."""
    g = torch.Generator().manual_seed(seed)
    t = ids.shape[0]
    xs = [torch.randn(b, h, t, d, generator=g, dtype=torch.float64) for _ in range(3)]
    xs.append(torch.randn(b, h, t, nb, generator=g, dtype=torch.float64))
    return xs, torch.randn(b, h, t, d, generator=g, dtype=torch.float64)


def ref_and_grads(xs, grad, ids, scale):
    leaves = [x.clone().requires_grad_() for x in xs]
    out = reference(*leaves, ids, scale)
    out.backward(grad)
    return out.detach(), [x.grad for x in leaves]


def kernel_and_grads(xs, grad, ids, scale, dtype, config=None):
    leaves = [x.to(dtype).requires_grad_() for x in xs]
    out = irpe_attention_triton(*leaves, ids, scale, config)
    out.backward(grad.to(dtype))
    return out.detach(), [x.grad for x in leaves]


def max_err(a, b):
    return (a.double() - b.double()).abs().max().item()


CASES = {  # name: (B, H, bucket table, D, BLOCK_M, BLOCK_N, dpb, bias)
    "T17_D16_atomic_gather": (1, 2, irpe_bucket_ids(4, 4, skip=1), 16, 16, 16, "atomic", "gather"),
    "T50_D32_loop_load": (2, 1, irpe_bucket_ids(7, 7, skip=1), 32, 32, 16, "loop", "load"),
    "T65_D48_atomic_load": (1, 2, irpe_bucket_ids(8, 8, skip=1), 48, 16, 32, "atomic", "load"),
    "T1_D16_loop_gather": (2, 2, irpe_bucket_ids(1, 1, skip=0), 16, 16, 16, "loop", "gather"),
    "T145_D32_atomic_gather": (1, 2, irpe_bucket_ids(12, 12, 1), 32, 64, 64, "atomic", "gather"),
}


@pytest.mark.parametrize("name", list(CASES))
def test_fp32_forward_and_grads_match_the_fp64_reference(interpret, name):
    b, h, ids, d, bm, bn, dpb, bias = CASES[name]
    xs, grad = make_case(b, h, ids, d)
    scale = d**-0.5
    ref, ref_grads = ref_and_grads(xs, grad, ids, scale)
    cfg = TritonConfig(block_m=bm, block_n=bn, dpb=dpb, bias=bias)
    out, grads = kernel_and_grads(xs, grad, ids, scale, torch.float32, cfg)
    assert out.dtype == torch.float32 and out.shape == ref.shape
    assert max_err(out, ref) < FP32_TOL
    for which, g, r in zip(("q", "k", "v", "per_bucket"), grads, ref_grads):
        assert g.dtype == torch.float32 and g.shape == r.shape, which
        assert max_err(g, r) < FP32_TOL, (which, max_err(g, r))


def test_any_bucket_count_head_dim_and_table(interpret):
    """NB = 3 buckets, D = 8 (padded to 16 inside), a random table with every bucket used."""
    g = torch.Generator().manual_seed(1)
    ids = torch.randint(0, 3, (20, 20), generator=g)
    xs, grad = make_case(1, 3, ids, 8, nb=3, seed=2)
    ref, ref_grads = ref_and_grads(xs, grad, ids, 0.3)
    out, grads = kernel_and_grads(xs, grad, ids, 0.3, torch.float32, TritonConfig(16, 16))
    assert max_err(out, ref) < FP32_TOL
    assert max(max_err(a, b) for a, b in zip(grads, ref_grads)) < FP32_TOL


def test_atomic_and_loop_scatter_give_the_same_bucket_gradient(interpret):
    ids = irpe_bucket_ids(5, 5, skip=1)
    xs, grad = make_case(1, 2, ids, 16, seed=3)
    got = [
        kernel_and_grads(xs, grad, ids, 0.25, torch.float32, TritonConfig(32, 16, dpb=mode))[1]
        for mode in ("atomic", "loop")
    ]
    for a, b in zip(*got):
        assert max_err(a, b) < 1e-6


def test_qkv_views_are_read_in_place_and_the_output_is_a_token_major_view(interpret):
    """q, k, v as the ViT makes them (unbind of a permuted qkv); output (B,T,H,D) underneath."""
    b, h, d = 2, 2, 16
    ids = irpe_bucket_ids(4, 4, skip=1)
    t = ids.shape[0]
    g = torch.Generator().manual_seed(4)
    qkv = torch.randn(b, t, 3, h, d, generator=g).permute(2, 0, 3, 1, 4)
    q, k, v = qkv.unbind(0)
    assert not q.is_contiguous()
    pb = torch.randn(b, h, t, 50, generator=g)
    out = irpe_attention_triton(q, k, v, pb, ids, d**-0.5, TritonConfig(16, 16))
    ref = reference(q.double(), k.double(), v.double(), pb.double(), ids, d**-0.5)
    assert max_err(out, ref) < FP32_TOL
    assert out.transpose(1, 2).is_contiguous()  # so transpose(1, 2).reshape copies nothing


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_low_precision_inputs_within_the_stated_tolerance(interpret, dtype):
    """Inputs rounded to ``dtype`` first, so only the kernels' own rounding is measured."""
    ids = irpe_bucket_ids(8, 8, skip=1)  # T = 65
    xs, grad = make_case(2, 2, ids, 32, seed=5)
    xs, grad = [x.to(dtype).double() for x in xs], grad.to(dtype).double()
    ref, ref_grads = ref_and_grads(xs, grad, ids, 32**-0.5)
    out, grads = kernel_and_grads(xs, grad, ids, 32**-0.5, dtype, TritonConfig(32, 32))
    assert out.dtype == dtype and all(g.dtype == dtype for g in grads)
    tol = LOW_TOL[dtype]
    assert max_err(out, ref) < tol * ref.abs().max().item()
    for which, g, r in zip(("q", "k", "v", "per_bucket"), grads, ref_grads):
        assert max_err(g, r) < tol * r.abs().max().item(), which


def test_attend_triton_matches_math_including_the_table_gradient(interpret):
    """The wiring in pretrain.models.attention: PB = q @ W outside, grads through both terms."""
    g = torch.Generator().manual_seed(6)
    ids = irpe_bucket_ids(3, 5, skip=1)
    q, k, v = (torch.randn(2, 3, ids.shape[0], 16, generator=g) for _ in range(3))
    grads = {}
    for impl in ("math", "triton"):
        rpe = ContextualKeyRPE(16)
        with torch.no_grad():
            rpe.lookup_table_weight.copy_(torch.randn(1, 16, 50, generator=g.manual_seed(7)))
        xs = [x.clone().requires_grad_() for x in (q, k, v)]
        out = attend(*xs, rpe, ids, impl)
        out.pow(2).sum().backward()
        grads[impl] = [out.detach()] + [x.grad for x in xs] + [rpe.lookup_table_weight.grad]
    for a, b in zip(grads["triton"], grads["math"]):
        assert max_err(a, b) < 1e-4 * max(1.0, b.abs().max().item())


def test_unavailable_without_cuda_or_interpreter(monkeypatch):
    monkeypatch.delenv("TRITON_INTERPRET", raising=False)
    ok, why = triton_available("cpu")
    assert not ok and why == "device 'cpu' is not CUDA and TRITON_INTERPRET=1 is not set"
    q = torch.zeros(1, 1, 2, 16)
    with pytest.raises(SarjepaError, match="irpe_attention_triton: device 'cpu' is not CUDA"):
        irpe_attention_triton(q, q, q, torch.zeros(1, 1, 2, 50), torch.zeros(2, 2).long(), 1.0)
    monkeypatch.setenv("TRITON_INTERPRET", "1")
    assert triton_available("cpu") == (True, "")


def test_module_imports_and_reports_cleanly_without_triton(monkeypatch):
    """A fresh copy of the module, loaded while ``import triton`` fails."""
    monkeypatch.setitem(sys.modules, "triton", None)  # makes ``import triton`` raise
    spec = importlib.util.spec_from_file_location("irpe_triton_copy", irpe_triton.__file__)
    copy = importlib.util.module_from_spec(spec)
    monkeypatch.setitem(sys.modules, "irpe_triton_copy", copy)  # dataclasses look it up
    spec.loader.exec_module(copy)
    ok, why = copy.triton_available("cuda")
    assert not ok and why.startswith("triton does not import (") and "\n" not in why
    q = torch.zeros(1, 1, 2, 16)
    with pytest.raises(SarjepaError, match="irpe_attention_triton: triton does not import"):
        copy.irpe_attention_triton(q, q, q, torch.zeros(1, 1, 2, 50), torch.zeros(2, 2).long(), 1)


def test_bad_inputs_are_one_line_errors(interpret):
    q = torch.zeros(1, 2, 5, 16)
    pb = torch.zeros(1, 2, 5, 50)
    ids = torch.zeros(5, 5, dtype=torch.long)
    with pytest.raises(SarjepaError, match=r"bucket_ids has shape \(4, 4\), expected \(5, 5\)"):
        irpe_attention_triton(q, q, q, pb, ids[:4, :4], 1.0)
    bad = ids.clone()
    bad[2, 3] = 50
    with pytest.raises(SarjepaError, match="bucket_ids hold values 0..50; per_bucket has 50"):
        irpe_attention_triton(q, q, q, pb, bad, 1.0)
    with pytest.raises(SarjepaError, match=r"per_bucket has shape \(1, 2, 4, 50\)"):
        irpe_attention_triton(q, q, q, pb[:, :, :4], ids, 1.0)
    with pytest.raises(SarjepaError, match="need one dtype"):
        irpe_attention_triton(q, q.double(), q, pb, ids, 1.0)


def test_config_from_the_environment(monkeypatch):
    monkeypatch.setenv(irpe_triton.ENV_CONFIG, "block_m=128, block_n=32,num_warps=8,dpb=LOOP")
    assert irpe_triton.config_from_env() == TritonConfig(128, 32, 8, 2, "loop")
    assert parse_config("") == TritonConfig()
    with pytest.raises(SarjepaError, match=r"\$SARJEPA_IRPE_TRITON: iRPE Triton block_m=48"):
        parse_config("block_m=48")
    with pytest.raises(SarjepaError, match="bad item 'blockm=64'"):
        parse_config("blockm=64")
    with pytest.raises(SarjepaError, match="num_warps='x' is not an integer"):
        parse_config("num_warps=x")
    with pytest.raises(SarjepaError, match="dpb='sort'"):
        parse_config("dpb=sort")
    assert parse_config("bias=load").bias == "load"
    with pytest.raises(SarjepaError, match="bias='smem'"):
        parse_config("bias=smem")


def test_kernels_are_redecorated_when_the_interpreter_switch_changes(monkeypatch):
    monkeypatch.setenv("TRITON_INTERPRET", "1")
    assert irpe_triton._kernels().INTERPRETED is True
    monkeypatch.setenv("TRITON_INTERPRET", "0")
    assert irpe_triton._kernels().INTERPRETED is False
    monkeypatch.setenv("TRITON_INTERPRET", "1")
    assert irpe_triton._kernels().INTERPRETED is True


def _signature(fn, dtype: str, const: dict) -> dict:
    """Triton types of a kernel's arguments, by the naming convention of the kernels."""
    data = {"Q", "K", "V", "PB", "O", "DO", "DQ", "DK", "DV"}
    f32 = {"LSE", "DELTA", "DPB"}
    sig = {}
    for name in fn.arg_names:
        if name in const:
            sig[name] = "constexpr"
        elif name in data:
            sig[name] = f"*{dtype}"
        else:
            sig[name] = "*fp32" if name in f32 else "*i32" if name == "IDS" else "i32"
        if name in ("qk_scale", "sm_scale"):
            sig[name] = "fp32"
    return sig


@pytest.mark.slow
def test_kernels_compile_for_sm90_without_a_gpu(monkeypatch, tmp_path):
    """The compiled (not interpreted) path lowers to PTX and ptxas accepts it (~20 s)."""
    import triton
    from triton.backends.compiler import GPUTarget
    from triton.compiler import ASTSource

    monkeypatch.setenv("TRITON_INTERPRET", "0")
    monkeypatch.setenv("TRITON_CACHE_DIR", str(tmp_path))
    kern = irpe_triton._kernels()
    base = {"BLOCK_M": 64, "BLOCK_N": 64, "BLOCK_D": 64, "PREC": "tf32", "UPCAST": False}
    base.update(NB=50, NB_PAD=64)
    jobs = []
    for gather in (True, False):
        const = {**base, "GATHER": gather}
        jobs += [("fwd", const), ("bwd_kv", const), ("bwd_q", {**const, "ATOMIC": gather})]
    jobs.append(("bwd_q", {**base, "GATHER": True, "ATOMIC": False}))
    for name, const in jobs:
        fn = getattr(kern, name)
        src = ASTSource(fn, _signature(fn, "bf16", const), const)
        compiled = triton.compile(src, target=GPUTarget("cuda", 90, 32), options={"num_warps": 4})
        assert compiled.asm["cubin"], name
