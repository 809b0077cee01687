"""What ``sarjepa bench`` shows and writes: progress lines, the Markdown table, the JSON report."""

from __future__ import annotations


def _rate(t) -> str:
    """A rate cell: img/s, ``error`` or ``-`` (no rate)."""
    if t is None or (t.img_s is None and not t.error):  # rows without a rate (grid)
        return "-"
    return "error" if t.error else f"{t.img_s:,.1f}"


def _peak(r) -> str:
    vals = [t.peak_mb for t in (r.ours, r.ref) if t is not None]
    if all(v is None for v in vals):
        return "-"
    return " / ".join("-" if v is None else f"{v:,.0f}" for v in vals)


def _notes(r) -> str:
    notes = [f"{k}: {t.error}" for k, t in (("ours", r.ours), ("ref", r.ref)) if t and t.error]
    return "; ".join(notes + ([r.note] if r.note else []))


def markdown_table(rows) -> str:
    """``what | ours img/s | reference img/s | ratio | peak MB (ours / ref) | note``."""
    out = [
        "| what | ours img/s | reference img/s | ratio | peak MB (ours / ref) | note |",
        "|---|---:|---:|---:|---:|---|",
    ]
    for r in rows:
        ratio = f"{r.ratio:.2f}x" if r.ratio else "-"
        cells = [r.what, _rate(r.ours), _rate(r.ref), ratio, _peak(r), _notes(r)]
        out.append("| " + " | ".join(cells) + " |")
    return "\n".join(out)


def report_dict(s, rows, checks: dict, command: str = "") -> dict:
    """Everything measured plus the environment, as plain JSON types."""
    import datetime
    import platform

    import torch

    dev = s.device
    if dev.type == "cuda":
        name = torch.cuda.get_device_name(dev)
    else:
        name = platform.processor() or platform.machine() or "cpu"
    return {
        "format": "sarjepa-bench/1",
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "command": command,
        "versions": _versions(),
        "torch": torch.__version__,
        "cuda": torch.version.cuda,
        "device": str(dev),
        "device_name": name,
        "cpu_threads": torch.get_num_threads(),
        "tf32": {
            "matmul": bool(torch.backends.cuda.matmul.allow_tf32),
            "cudnn": bool(torch.backends.cudnn.allow_tf32),
        },
        "settings": {
            "arch": s.arch,
            "img_size": s.img_size,
            "warmup": s.warmup,
            "iters": s.iters,
            "train_batch": s.train_batch,
            "eval_batches": list(s.eval_batches),
            "pretrain_batch": s.pretrain_batch,
            "gf_batch": s.gf_batch,
            "compile": s.compile,
            "ours": f"{'bf16 autocast' if s.amp else 'fp32'}, attention '{s.attn}' (iRPE), "
            "fused AdamW on CUDA, GF integral images",
            "attention": s.attn,
            "attention_variants": list(s.attn_variants),
            "reference": "fp32, explicit softmax attention + indexed iRPE, GF conv2d",
        },  # fmt: skip
        "checks": checks,
        "results": [
            {
                "what": r.what,
                "batch": r.batch,
                "ratio": r.ratio,
                "note": r.note,
                "ours": None if r.ours is None else dict(r.ours.__dict__),
                "reference": None if r.ref is None else dict(r.ref.__dict__),
                **r.extra,
            }
            for r in rows
        ],  # fmt: skip
    }


def _versions() -> dict:
    """Versions of what the numbers depend on (missing packages are left out)."""
    import contextlib
    import platform
    from importlib import metadata

    from sarjepa.benchmark.core.provenance import code_version

    out = {"python": platform.python_version(), "sarjepa": code_version()}
    for pkg in ("torch", "timm", "numpy", "triton"):
        with contextlib.suppress(metadata.PackageNotFoundError):
            out[pkg] = metadata.version(pkg)
    return out


def progress_line(r) -> str:
    """The line ``sarjepa bench`` prints for row ``r`` as it is measured."""
    if r.ref is None and r.ours.img_s is None and not r.ours.error:  # no rate (grid): its note
        return f"  {r.what}: {r.note}"
    msg = f"  {r.what}: ours {_rate(r.ours)} img/s"
    if r.ref is not None:
        msg += f", reference {_rate(r.ref)} img/s"
    if r.ratio:
        msg += f" ({r.ratio:.2f}x)"
    notes = _notes(r)
    return msg + (f"  [{notes}]" if notes else "")
