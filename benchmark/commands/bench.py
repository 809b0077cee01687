"""``sarjepa bench``: images per second of our training / eval paths against the authors' way.

Runs every measurement of :mod:`benchmark.speed` in one process on one device, so the ratio
ours / reference is comparable across machines; prints a progress line per measurement and a
Markdown table last, and with ``--json`` writes every number plus torch version, device and date
(rewritten after each measurement, so a run cut short keeps what it measured).
"""

from __future__ import annotations

import argparse
import os

from sarjepa.benchmark.core.errors import SarjepaError

CHOICES = ("finetune", "eval", "pretrain", "gf", "methods", "attention", "grid", "demo")
# on request: grids take minutes; demo times the demo's CPU pretraining step (demo.yaml's model)
DEFAULT_CHOICES = tuple(c for c in CHOICES if c not in ("grid", "demo"))
ARCHES = ("tiny", "small", "base", "large")
# (CUDA, CPU) defaults: the paper's batch sizes on a GPU, small ones a 2-core CPU gets through.
DEFAULTS = {
    "iters": (20, 3),
    "warmup": (5, 1),
    "train_batch": (50, 8),
    "eval_batch": ([50, 256], [8, 32]),
    "pretrain_batch": (75, 8),
    "gf_batch": (75, 75),
}


def register(subparsers) -> None:
    """Add the ``bench`` subcommand."""
    p = subparsers.add_parser(
        "bench",
        help="throughput (img/s) of fine-tune, eval, pretrain steps and GF targets vs reference",
        description="Time our paths (bf16 autocast on CUDA, fp32 on CPU; SDPA with the iRPE "
        "bias; GF from integral images) against the authors' way in the same process (fp32, "
        "explicit softmax attention with indexed iRPE, GF by conv2d) on random 1-channel "
        "images. Each number is the median over --iters timed steps after --warmup steps. "
        "Batch defaults are the paper's on CUDA (50, 50/256, 75, 75) and small on CPU "
        "(8, 8/32, 8, 75). Exit status 1 if a measurement failed (its error is in the table).",
    )
    p.add_argument("--arch", default="base", choices=ARCHES, help="ViT size, patch 16 (base)")
    p.add_argument("--device", default="auto", help="auto | cpu | cuda | cuda:N (auto)")
    p.add_argument("--iters", type=int, help="timed steps per variant (CUDA 20, CPU 3)")
    p.add_argument("--warmup", type=int, help="untimed steps first (CUDA 5, CPU 1)")
    p.add_argument(
        "--only", nargs="+", choices=CHOICES, metavar="WHAT",
        help=f"measurements to run, of: {' '.join(CHOICES)} (all but grid and demo; demo: the "
        "demo's pretraining step per method and phase, on its pool with --grid-data)",
    )  # fmt: skip
    p.add_argument("--json", metavar="OUT.json", help="write all numbers here")
    p.add_argument("--compile", action="store_true", help="also time torch.compile'd variants")
    p.add_argument(
        "--amp", default="auto", choices=("auto", "bf16", "off"),
        help="precision of ours: auto = bf16 autocast on CUDA, fp32 on CPU (the reference is fp32)",
    )  # fmt: skip
    p.add_argument(
        "--attn", default=None, metavar="IMPL",
        help="attention implementation of ours: sdpa | aligned | triton | math "
        "(default: $SARJEPA_ATTN, else sdpa)",
    )  # fmt: skip
    p.add_argument(
        "--attn-variants", nargs="+", metavar="IMPL",
        help="implementations the `attention` measurement times side by side (all four)",
    )  # fmt: skip
    p.add_argument(
        "--sdpa-backends", nargs="*", metavar="NAME",
        help="SDPA backends forced in turn for the sdpa / aligned attention rows, of: efficient "
        "cudnn flash math (CUDA: efficient cudnn; CPU: none)",
    )  # fmt: skip
    p.add_argument("--img-size", type=int, default=224, help="square input size (224)")
    p.add_argument("--train-batch", type=int, help="fine-tune step batch (CUDA 50, CPU 8)")
    p.add_argument(
        "--eval-batch",
        type=int,
        nargs="+",
        metavar="B",
        help="eval batches (CUDA 50 256, CPU 8 32)",
    )
    p.add_argument("--pretrain-batch", type=int, help="SAR-JEPA step batch (CUDA 75, CPU 8)")
    p.add_argument("--gf-batch", type=int, help="GF target batch (75)")
    p.add_argument(
        "--threads", type=int, help="CPU threads for torch (default: torch's; 1 on a busy box)"
    )
    from sarjepa.benchmark.speed.options import add_arguments as add_grid_arguments

    add_grid_arguments(p)
    p.set_defaults(func=run)


def settings_from_args(args: argparse.Namespace):
    """Resolve device-dependent defaults and check the numbers; returns ``Settings``."""
    from sarjepa.benchmark.core.runtime import resolve_device
    from sarjepa.benchmark.speed.timing import Settings
    from sarjepa.pretrain.models.attention import ATTN_IMPLS, check_impl, default_impl, parse_impls

    device = resolve_device(args.device, "--device")
    k = 0 if device.type == "cuda" else 1

    def pick(name):
        value = getattr(args, name)
        return DEFAULTS[name][k] if value is None else value

    s = Settings(
        arch=args.arch, device=device, img_size=args.img_size, warmup=pick("warmup"),
        iters=pick("iters"), train_batch=pick("train_batch"),
        eval_batches=tuple(pick("eval_batch")), pretrain_batch=pick("pretrain_batch"),
        gf_batch=pick("gf_batch"), compile=args.compile, amp_mode=args.amp,
        attn=check_impl(args.attn, "--attn value") if args.attn else default_impl(),
        attn_variants=tuple(parse_impls(args.attn_variants or ATTN_IMPLS)),
        sdpa_backends=_backends(args.sdpa_backends),
    )  # fmt: skip
    checks = {"--iters": s.iters, "--train-batch": s.train_batch, "--gf-batch": s.gf_batch}
    checks |= {"--pretrain-batch": s.pretrain_batch, "--eval-batch": min(s.eval_batches)}
    for flag, value in checks.items():
        if value < 1:
            raise SarjepaError(f"{flag} must be >= 1, got {value}")
    if s.warmup < 0:
        raise SarjepaError(f"--warmup must be >= 0, got {s.warmup}")
    if args.threads is not None and args.threads < 1:
        raise SarjepaError(f"--threads must be >= 1, got {args.threads}")
    if s.img_size % 16 or s.img_size < 32:
        raise SarjepaError(f"--img-size must be a multiple of 16 and >= 32, got {s.img_size}")
    from sarjepa.benchmark.speed.options import options_from_args

    s.grid = options_from_args(args, device.type)
    return s


def _backends(names: list[str] | None) -> tuple[str, ...] | None:
    from sarjepa.benchmark.speed.attention import SDPA_BACKENDS

    if names is None:
        return None
    for n in names:
        if n not in SDPA_BACKENDS:
            raise SarjepaError(
                f"--sdpa-backends: unknown backend '{n}'; known: {', '.join(SDPA_BACKENDS)}"
            )
    return tuple(dict.fromkeys(names))


def _command(args: argparse.Namespace) -> str:
    import shlex

    return "sarjepa " + shlex.join(getattr(args, "argv", None) or ["bench"])


def _write_json(path: str, data: dict) -> None:
    folder = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(folder):
        raise SarjepaError(f"--json: folder '{os.path.dirname(path)}' does not exist")
    from sarjepa.benchmark.core.io import atomic_write_json

    atomic_write_json(data, path)


def run(args: argparse.Namespace) -> int:
    """Run the selected measurements; 0 if all ran (or were skipped), 1 if any failed."""
    import torch
    from sarjepa.benchmark.speed import attention, report
    from sarjepa.benchmark.speed.run import run_all

    s = settings_from_args(args)
    if args.threads:
        torch.set_num_threads(args.threads)
    names = [n for n in CHOICES if n in (args.only or DEFAULT_CHOICES)]
    if args.json:
        # fail early on a bad path
        _write_json(args.json, report.report_dict(s, [], {}, _command(args)))
    amp = "bf16 autocast" if s.amp else "fp32"
    where = torch.cuda.get_device_name(s.device) if s.device.type == "cuda" else "cpu"
    print(
        f"sarjepa bench: vit_{s.arch}_patch16 (iRPE, 1 x {s.img_size}^2) on {where}, torch "
        f"{torch.__version__}; ours = {amp} + attention '{s.attn}', reference = fp32 explicit "
        "attention; "
        f"{s.warmup} warm-up + {s.iters} timed steps each",
        flush=True,
    )
    checks: dict = {}
    try:
        checks["attention_fp32"] = c = attention.attention_check(s)
        print(
            f"  check: fp32 forward ours vs reference (2 blocks, random iRPE tables): max abs "
            f"diff {c['max_abs_diff']:.1e} of max |feature| {c['max_abs_value']:.2f}",
            flush=True,
        )
    except Exception as exc:  # report, keep timing
        checks["attention_fp32"] = {"error": f"{type(exc).__name__}: {exc}"[:200]}
        print(f"  check failed: {checks['attention_fp32']['error']}", flush=True)
    shown = 0

    def on_rows(rows):
        nonlocal shown
        for r in rows[shown:]:
            print(report.progress_line(r), flush=True)
        shown = len(rows)
        if args.json:
            _write_json(args.json, report.report_dict(s, rows, checks, _command(args)))

    rows = run_all(names, s, on_rows)
    print()
    print(report.markdown_table(rows))
    failed = any(
        t is not None and t.error and not t.error.startswith("skipped")
        for r in rows
        for t in (r.ours, r.ref)
    )
    return 1 if failed else 0
