"""``sarjepa bench``: runs on CPU without optional packages; references equal ours (fp32)."""

from __future__ import annotations

import json
import sys

import pytest
import torch
import torch.nn.functional as F
from sarjepa.benchmark.cli import main
from sarjepa.benchmark.speed import measure, run, timing
from sarjepa.benchmark.speed.reference import (
    _explicit_attention,
    conv_gf_maps,
    indexed_rpe,
    reference_attention,
    to_patches,
)
from sarjepa.pretrain.models import VisionTransformer

# packages the bench must not need (the GPU image has torch, timm, numpy, tqdm only)
BLOCKED = ("yacs", "pandas", "matplotlib", "sklearn", "scipy")


def _keeping_threads(entry, argv: list[str]) -> int:
    """Run a CLI entry point; restore torch's thread count (``--threads`` changes it)."""
    threads = torch.get_num_threads()
    try:
        return entry(argv)
    finally:
        torch.set_num_threads(threads)


@pytest.fixture
def fresh_imports_without_optional_packages():
    """Our packages re-imported from scratch with BLOCKED unimportable; all restored after."""
    tops = ("sarjepa", *BLOCKED)
    saved = {k: v for k, v in sys.modules.items() if k.split(".")[0] in tops}
    for k in saved:
        del sys.modules[k]
    sys.modules.update(dict.fromkeys(BLOCKED))  # None: "import yacs" raises ImportError
    try:
        yield
    finally:
        for k in [k for k in sys.modules if k.split(".")[0] in tops]:
            del sys.modules[k]
        sys.modules.update(saved)


@pytest.mark.slow
def test_cli_runs_without_optional_packages_and_writes_json(
    tmp_path, capsys, fresh_imports_without_optional_packages
):
    from sarjepa.benchmark.cli import main as fresh_main

    out = tmp_path / "x.json"
    argv = [
        "bench", "--arch", "tiny", "--device", "cpu", "--iters", "2", "--warmup", "1",
        "--only", "finetune", "eval", "gf", "--json", str(out), "--threads", "1",
        "--img-size", "32", "--train-batch", "2", "--eval-batch", "2", "3", "--gf-batch", "2",
    ]  # fmt: skip
    code = _keeping_threads(fresh_main, argv)
    stdout = capsys.readouterr().out
    assert code == 0
    report = json.loads(out.read_text())
    assert report["format"] == "sarjepa-bench/1"
    assert report["torch"] == torch.__version__ and report["device"] == "cpu" and report["date"]
    whats = [r["what"] for r in report["results"]]
    assert whats == ["finetune b2", "eval b2", "eval b3", "gf b2"]
    for r in report["results"]:
        for side in ("ours", "reference"):
            assert r[side]["error"] == "" and r[side]["img_s"] > 0 and r[side]["median_ms"] > 0
        assert r["ratio"] == pytest.approx(r["ours"]["img_s"] / r["reference"]["img_s"])
    gf = report["results"][-1]
    assert gf["max_rel_diff_fp64_conv"] < 1e-4 and gf["max_abs_diff_fp32_conv"] < 1e-4
    att = report["checks"]["attention_fp32"]
    assert att["max_abs_diff"] < 1e-4 * max(1.0, att["max_abs_value"])
    table = stdout.strip().splitlines()
    assert table[-6].startswith("| what | ours img/s | reference img/s | ratio | peak MB")
    assert table[-1].startswith("| gf b2 |")


def _tiny_vit(seed: int = 0) -> VisionTransformer:
    torch.manual_seed(seed)
    model = VisionTransformer(img_size=64, embed_dim=32, depth=2, num_heads=2, num_classes=3)
    with torch.no_grad():
        for blk in model.blocks:
            blk.attn.rpe_k.lookup_table_weight.normal_(std=0.5)
    return model


def test_reference_attention_equals_ours_forward_and_backward(one_thread):
    model = _tiny_vit()
    x = torch.rand(3, 1, 64, 64)
    y = torch.tensor([0, 2, 1])

    def run():
        model.zero_grad()
        out = model.forward_features(x)
        F.cross_entropy(model.head(model.pool(out)), y).backward()
        grads = {n: p.grad.clone() for n, p in model.named_parameters()}
        return out.detach(), grads

    ours, g_ours = run()
    with reference_attention(model):
        assert model.blocks[0].attn.forward.__func__ is _explicit_attention
        ref, g_ref = run()
    assert all("forward" not in m.__dict__ for m in model.modules())  # restored
    torch.testing.assert_close(ours, ref, atol=1e-5, rtol=1e-5)
    for name in g_ours:
        torch.testing.assert_close(g_ours[name], g_ref[name], atol=1e-5, rtol=1e-4, msg=name)
    # the iRPE term matters here, so equal outputs are not trivially equal
    with torch.no_grad():
        for blk in model.blocks:
            blk.attn.rpe_k.lookup_table_weight.zero_()
        assert (model.forward_features(x) - ours).abs().max() > 1e-3


def test_indexed_rpe_matches_a_naive_loop():
    gen = torch.Generator().manual_seed(1)
    b, h, t, hd, nb = 2, 3, 5, 4, 7
    q = torch.randn(b, h, t, hd, generator=gen, dtype=torch.float64)
    table = torch.randn(1, hd, nb, generator=gen, dtype=torch.float64)
    ids = torch.randint(0, nb, (t, t), generator=gen)
    want = torch.empty(b, h, t, t, dtype=torch.float64)
    for bi in range(b):
        for hi in range(h):
            for i in range(t):
                for j in range(t):
                    want[bi, hi, i, j] = sum(
                        q[bi, hi, i, d] * table[0, d, ids[i, j]] for d in range(hd)
                    )
    torch.testing.assert_close(indexed_rpe(q, table, ids), want, atol=1e-12, rtol=1e-12)


def _naive_gf(img: torch.Tensor, r: int) -> torch.Tensor:
    """fp64 loops over the half windows of one (H, W) image (reflect pad, + 0.01)."""
    h, w = img.shape
    xp = F.pad(img[None, None].double(), (r, r, r, r), mode="reflect")[0, 0] + 0.01
    out = torch.empty(h, w, dtype=torch.float64)
    for i in range(h):
        for j in range(w):
            ci, cj = i + r, j + r
            left = xp[ci - r : ci + r + 1, cj - r : cj + 1].sum()
            right = xp[ci - r : ci + r + 1, cj : cj + r + 1].sum()
            top = xp[ci - r : ci + 1, cj - r : cj + r + 1].sum()
            bottom = xp[ci : ci + r + 1, cj - r : cj + r + 1].sum()
            out[i, j] = torch.sqrt(torch.log(left / right) ** 2 + torch.log(top / bottom) ** 2)
    return out


def test_conv_gf_reference_matches_naive_loops_and_our_target():
    gen = torch.Generator().manual_seed(2)
    x = torch.rand(2, 1, 16, 16, generator=gen)
    got = conv_gf_maps(x, scales=(2, 5), dtype=torch.float64)
    for k, r in enumerate((2, 5)):
        for bi in range(2):
            torch.testing.assert_close(got[bi, k], _naive_gf(x[bi, 0], r), atol=1e-12, rtol=0)
    f32 = conv_gf_maps(x, scales=(2, 5))
    assert f32.dtype == torch.float32
    torch.testing.assert_close(f32.double(), got, atol=1e-5, rtol=1e-4)
    from sarjepa.pretrain.targets import build_target

    ours = build_target("gf", patch_size=8, scales=(2, 5)).maps(x).double()
    torch.testing.assert_close(ours, got, atol=1e-6, rtol=1e-4)


def test_to_patches_order_is_row_major_patches_channel_major_inside():
    maps = torch.arange(2 * 4 * 6, dtype=torch.float32).reshape(1, 2, 4, 6)
    got = to_patches(maps, p=2)  # grid 2 x 3
    assert got.shape == (1, 6, 8)
    for pr in range(2):
        for pc in range(3):
            want = [
                maps[0, c, pr * 2 + a, pc * 2 + bb].item()
                for c in range(2)
                for a in range(2)
                for bb in range(2)
            ]
            assert got[0, pr * 3 + pc].tolist() == want


def test_pretrain_config_is_the_bundled_recipe_with_fitting_windows():
    from sarjepa.pretrain.config import load_config

    cfg = measure.sarjepa_cfg("tiny", 64)
    recipe = load_config(measure.RECIPE)
    assert cfg.MODEL.ARCH == "vit_tiny_patch16" and cfg.INPUT.SIZE == 64
    assert (cfg.MASK.WINDOW_SIZE, cfg.MASK.NUM_WINDOW) == (3, 4)  # 4 x 4 grid: 4 origins
    for key in ("METHOD", "TARGET", "PREDICTOR", "TRAIN"):
        assert cfg[key] == recipe[key], key


def test_pretrain_row_without_yacs_is_a_one_line_skip(fresh_imports_without_optional_packages):
    from sarjepa.benchmark.speed import measure as fresh_measure
    from sarjepa.benchmark.speed import timing as fresh_timing

    s = fresh_timing.Settings(arch="tiny", img_size=32, iters=1, warmup=0, pretrain_batch=2)
    (row,) = fresh_measure.measure_pretrain(s)
    assert row.ours.error.startswith("skipped:") and "yacs" in row.ours.error
    assert "\n" not in row.ours.error and row.ref is None


def test_failures_are_reported_and_the_rest_continues(monkeypatch, capsys):
    s = timing.Settings(device=torch.device("cpu"), iters=1, warmup=0)

    def broken():
        raise RuntimeError("CUDA out of memory. Tried to allocate 2 GiB\nmore text")

    t = timing.time_variant(broken, 4, s)
    assert (
        t.img_s is None and t.error == "RuntimeError: CUDA out of memory. Tried to allocate 2 GiB"
    )
    ok = timing.Timing(img_s=10.0, median_ms=100.0)
    monkeypatch.setitem(run.MEASURES, "eval", lambda s: 1 / 0)
    monkeypatch.setitem(run.MEASURES, "gf", lambda s: [timing.Result("gf b4", 4, ok, ok)])
    rows = run.run_all(["eval", "gf"], s)
    assert [r.what for r in rows] == ["eval", "gf b4"]
    assert "ZeroDivisionError" in rows[0].ours.error and rows[1].ratio == 1.0
    from sarjepa.benchmark.speed.report import markdown_table

    table = markdown_table(rows).splitlines()
    assert table[2].startswith("| eval | error | - | - | - | ours: ZeroDivisionError")
    assert table[3] == "| gf b4 | 10.0 | 10.0 | 1.00x | - |  |"


@pytest.mark.parametrize(
    "extra, needle",
    [(["--img-size", "40"], "--img-size"), (["--iters", "0"], "--iters"),
     (["--device", "tpu"], "--device")],
)  # fmt: skip
def test_bad_options_are_one_line_errors(extra, needle, capsys):
    assert main(["bench", "--device", "cpu", *extra]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("sarjepa: error:") and needle in err and "\n" not in err


def test_pretrain_reference_mode_computes_the_same_loss(one_thread):
    from sarjepa.benchmark.speed.reference import conv_gf_target, set_reference_attention
    from sarjepa.pretrain.methods import build_method

    cfg = measure.sarjepa_cfg("tiny", 64)
    cfg.merge_from_list(["MODEL.EMBED_DIM", 32, "MODEL.DEPTH", 1, "MODEL.NUM_HEADS", 2])
    cfg.merge_from_list(["PREDICTOR.EMBED_DIM", 32, "PREDICTOR.DEPTH", 1, "PREDICTOR.NUM_HEADS", 2])
    torch.manual_seed(0)
    method = build_method(cfg)
    with torch.no_grad():
        for name, p in method.named_parameters():
            if name.endswith("lookup_table_weight"):
                p.normal_(std=0.5)
    x = torch.rand(2, 1, 64, 64)
    ours, _ = method(x, torch.Generator().manual_seed(3))
    set_reference_attention(method)
    method.target = conv_gf_target
    ref, _ = method(x, torch.Generator().manual_seed(3))
    torch.testing.assert_close(ours, ref, rtol=1e-5, atol=1e-6)


@pytest.mark.slow
def test_methods_row_times_every_bundled_recipe_and_records_the_command(tmp_path, capsys):
    from sarjepa.benchmark.cli import main
    from sarjepa.benchmark.speed.measure import method_recipes

    out = tmp_path / "m.json"
    argv = [
        "bench", "--arch", "tiny", "--device", "cpu", "--iters", "1", "--warmup", "1",
        "--only", "methods", "--json", str(out), "--threads", "1",
        "--img-size", "64", "--pretrain-batch", "2",
    ]  # fmt: skip
    code = _keeping_threads(main, argv)
    capsys.readouterr()
    report = json.loads(out.read_text())
    names = method_recipes()
    assert {"sarjepa", "lomar", "maskfeat"} <= set(names)
    rows = report["results"]
    assert [r["what"] for r in rows] == [f"pretrain {m} b2" for m in names]
    for r in rows:  # every method ran at this arch: a number, no reference side
        assert r["ours"]["error"] == "" and r["ours"]["img_s"] > 0, r
        assert r["reference"] is None and r["config"].endswith("_vit_b16.yaml")
    assert code == 0
    assert report["command"].startswith("sarjepa bench --arch tiny")
    assert torch.__version__.startswith(report["versions"]["torch"])


def test_attention_rows_time_every_impl_with_its_agreement_numbers(tmp_path, capsys, monkeypatch):
    monkeypatch.delenv("TRITON_INTERPRET", raising=False)  # the fused kernel cannot run here
    out = tmp_path / "a.json"
    argv = [
        "bench", "--arch", "tiny", "--device", "cpu", "--iters", "1", "--warmup", "0",
        "--only", "attention", "--json", str(out), "--threads", "1", "--img-size", "32",
        "--train-batch", "2", "--eval-batch", "2", "--attn", "aligned",
        "--attn-variants", "sdpa", "triton", "math", "--sdpa-backends", "math",
    ]  # fmt: skip
    from sarjepa.benchmark.commands import bench

    written, write = [], bench._write_json
    monkeypatch.setattr(
        bench,
        "_write_json",
        lambda path, data: (written.append(len(data["results"])), write(path, data)),
    )
    code = _keeping_threads(main, argv)
    capsys.readouterr()
    assert code == 0  # a skipped variant is not a failure
    # the JSON is rewritten after each implementation, so a run cut short keeps its rows
    assert list(dict.fromkeys(written)) == [0, 4, 5, 7]
    report = json.loads(out.read_text())
    assert report["settings"]["attention"] == "aligned"
    rows = {r["what"]: r for r in report["results"]}
    assert list(rows) == [
        "attention sdpa: finetune b2", "attention sdpa: eval b2",
        "attention sdpa [math]: finetune b2", "attention sdpa [math]: eval b2",
        "attention triton", "attention math: finetune b2", "attention math: eval b2",
    ]  # fmt: skip
    assert rows["attention sdpa [math]: eval b2"]["sdpa_backend"] == "math"
    assert rows["attention sdpa [math]: eval b2"]["ours"]["img_s"] > 0
    assert rows["attention triton"]["ours"]["error"].startswith("skipped: ")
    for name in ("sdpa", "math"):
        row = rows[f"attention {name}: finetune b2"]
        assert row["ours"]["img_s"] > 0 and row["reference"]["img_s"] > 0
        assert row["max_abs_diff_fp32"] < 1e-5 and row["max_grad_diff_fp32"] < 1e-5
        assert 0 < row["rel_diff_bf16"] < 0.05  # bf16 rounds, but stays close
    assert rows["attention math: finetune b2"]["max_abs_diff_fp32"] == 0.0


def test_bad_attention_names_are_one_line_errors(capsys):
    assert main(["bench", "--device", "cpu", "--attn-variants", "sdpa", "flash"]) == 2
    err = capsys.readouterr().err.strip()
    assert "--attn value 'flash'" in err and "\n" not in err
    assert main(["bench", "--device", "cpu", "--sdpa-backends", "cudnn", "xformers"]) == 2
    err = capsys.readouterr().err.strip()
    assert "--sdpa-backends: unknown backend 'xformers'" in err and "\n" not in err


def test_demo_bench_rows_time_each_method_and_its_bf16_arm(monkeypatch) -> None:
    """`bench --only demo` on tiny stand-ins of the demo's configs: one row per method and
    thread count, the step phases, and a bf16-autocast arm on the same batches and masks whose
    losses stay close to fp32's (not equal: bf16 rounds)."""
    from sarjepa.benchmark.speed import demo_bench
    from sarjepa.benchmark.speed.timing import Settings
    from sarjepa.pretrain.config import load_config

    tiny = ["MODEL.EMBED_DIM", 32, "MODEL.DEPTH", 1, "MODEL.NUM_HEADS", 2, "INPUT.SIZE", 64,
            "TRAIN.BATCH_SIZE", 4, "DEVICE", "cpu"]  # fmt: skip
    pred = ["PREDICTOR.EMBED_DIM", 32, "PREDICTOR.DEPTH", 1, "PREDICTOR.NUM_HEADS", 2]
    cfgs = {
        "sarjepa": load_config("sarjepa_tiny", tiny + pred + ["MASK.WINDOW_SIZE", 3]),
        "mae": load_config("mae_tiny", tiny + pred),
    }
    monkeypatch.setattr(demo_bench, "demo_cfgs", lambda: cfgs)
    rows = demo_bench.measure_demo(Settings(warmup=0, iters=2))
    threads = sorted({1, torch.get_num_threads()})
    assert [r.what for r in rows] == [
        f"demo {m} b4 {t} thr" for m in ("sarjepa", "mae") for t in threads
    ]
    for r in rows:
        assert r.ours.img_s > 0 and r.ref is not None and r.ref.img_s > 0
        assert set(r.extra["phases_ms"]) == set(demo_bench.PHASES)
        assert r.extra["bf16_img_s"] > 0
        assert 0 < r.extra["bf16_loss_rel_diff"] < 0.05
