"""``sarjepa bench --only demo``: where a step of the demo's pretraining spends its time.

For every method of ``benchmark/configs/demo.yaml`` (its micro ViT, input size and batch; the
``--arch`` / ``--img-size`` / ``--pretrain-batch`` options do not apply), one optimiser step is
split into phases, each between two clocks:

- ``data``: the next batch from the training DataLoader on the demo's pool (only with
  ``--grid-data DIR`` holding ``pretrain/``, e.g. a ``sarjepa synth --scale demo`` root);
- ``target``: the method's regression target for the batch (GF, pixels, ...), called on its own
  (it is also inside ``forward``: the forward's own share is ``forward - target``);
- ``forward``, ``backward``, ``optimizer`` (AdamW step and ``zero_grad``).

Variants run interleaved (one step of each in turn, ``--iters`` rounds after ``--warmup``), so
a busy box slows them alike; each row is one method at one CPU thread count with AdamW's for-each
path (what ``sarjepa pretrain`` runs on a CPU) as "ours" and torch's single-tensor default (what
it ran before) as "reference". Img/s counts the step (forward + backward + optimiser); the
projected stage time is the demo's images (epochs x pool) at that rate. The OpenMP wait policy
and the load average are recorded, since both decide what 2 threads buy on a shared 2-core box.
"""

from __future__ import annotations

import os
import statistics
import time
from pathlib import Path

import torch
from sarjepa.benchmark.speed.timing import Result, Settings, Timing

PHASES = ("data", "target", "forward", "backward", "optimizer")


def demo_cfgs() -> dict:
    """``method label -> pretraining config`` of the demo config (CPU preset)."""
    from sarjepa.benchmark.demo import _flat, load_demo_config, method_specs
    from sarjepa.pretrain.config import load_config

    conf = load_demo_config()
    model = {f"MODEL.{k}": v for k, v in conf["model"].items()}
    common = _flat(model) + _flat(conf["pretrain"].get("overrides") or {})
    return {
        name: load_config(cfg_name, common + _flat(own) + ["DEVICE", "cpu"])
        for name, (cfg_name, own) in method_specs(conf).items()
    }


class _Variant:
    """One method with its own optimiser, at one thread count and AdamW path, in fp32 or under
    bf16 autocast (``bf16``; the method's target stays fp32, as in training)."""

    def __init__(self, cfg, threads: int, foreach: bool, batches, bf16: bool = False) -> None:
        from sarjepa.pretrain.methods import build_method
        from sarjepa.pretrain.train import build_optimizer

        torch.manual_seed(int(cfg.SEED))
        self.method = build_method(cfg).train()
        self.opt = build_optimizer(self.method, cfg, 1e-4, torch.device("cpu"))
        for g in self.opt.param_groups:
            g["foreach"] = foreach
        self.threads, self.batches, self.bf16 = threads, batches, bf16
        self.gen = torch.Generator().manual_seed(0)
        self.times: dict[str, list[float]] = {p: [] for p in PHASES}
        self.losses: list[float] = []
        self.last_batch = None

    def step(self, record: bool) -> None:
        torch.set_num_threads(self.threads)
        t = [time.perf_counter()]
        x = self.last_batch = self.batches()
        t.append(time.perf_counter())
        target = getattr(self.method, "target", None)
        if target is not None:
            with torch.no_grad():
                target(x)
        t.append(time.perf_counter())
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=self.bf16):
            loss, _ = self.method(x, self.gen)
        self.losses.append(float(loss.detach()))
        t.append(time.perf_counter())
        loss.backward()
        t.append(time.perf_counter())
        self.opt.step()
        self.opt.zero_grad(set_to_none=True)
        t.append(time.perf_counter())
        if record:
            for name, a, b in zip(PHASES, t, t[1:]):
                self.times[name].append(b - a)

    def medians_ms(self) -> dict[str, float]:
        return {p: statistics.median(v) * 1e3 for p, v in self.times.items()}

    def timing(self, batch: int) -> Timing:
        steps = [f + b + o for f, b, o in zip(*(self.times[p] for p in PHASES[2:]))]
        med = statistics.median(steps)
        return Timing(img_s=batch / med, median_ms=med * 1e3)


def _batches(cfg, data: str):
    """A callable giving the next (B, 1, H, W) batch: the demo pool's loader, else random."""
    batch, size = int(cfg.TRAIN.BATCH_SIZE), int(cfg.INPUT.SIZE)
    pool = Path(data) / "pretrain" if data else None
    if pool is None or not pool.is_dir():
        x = torch.rand(batch, 1, size, size, generator=torch.Generator().manual_seed(0))
        return (lambda: x), 0
    from sarjepa.pretrain.data import build_pretrain_dataset
    from sarjepa.pretrain.distributed import DistInfo
    from sarjepa.pretrain.train import _build_loader

    dataset = build_pretrain_dataset(cfg, pool)
    _, loader = _build_loader(cfg, dataset, DistInfo(), batch)
    state = {"it": iter(loader)}

    def next_batch():
        try:
            return next(state["it"])
        except StopIteration:
            state["it"] = iter(loader)
            return next(state["it"])

    return next_batch, len(dataset)


def measure_demo(s: Settings) -> list[Result]:
    """Rows ``demo <method> b<B> <T> thr``: for-each AdamW (ours) vs single-tensor (reference).

    A third arm per row runs the same steps as "ours" (same weights, batches and masks) under
    bf16 autocast: ``extra["bf16_img_s"]`` and ``extra["bf16_loss_rel_diff"]`` (the largest
    relative difference of its per-step losses from fp32's; not bitwise, so not what the demo
    runs).
    """
    cfgs = demo_cfgs()
    data = getattr(s.grid, "data", "") if s.grid is not None else ""
    default_threads = torch.get_num_threads()
    thread_counts = sorted({1, default_threads})
    load_before = os.getloadavg()
    variants: dict[tuple[str, int, bool | str], _Variant] = {}
    pool_size = 0
    for name, cfg in cfgs.items():
        batches, pool_size = _batches(cfg, data)
        for threads in thread_counts:
            for foreach in (True, False):
                variants[(name, threads, foreach)] = _Variant(cfg, threads, foreach, batches)
            ours = variants[(name, threads, True)]
            variants[(name, threads, "bf16")] = _Variant(
                cfg, threads, True, lambda v=ours: v.last_batch, bf16=True
            )
    try:
        for i in range(s.warmup + s.iters):
            for v in variants.values():
                v.step(record=i >= s.warmup)
    finally:
        torch.set_num_threads(default_threads)
    load_after = os.getloadavg()
    rows = []
    for name, cfg in cfgs.items():
        batch = int(cfg.TRAIN.BATCH_SIZE)
        images = int(cfg.TRAIN.EPOCHS) * pool_size
        for threads in thread_counts:
            ours, ref = variants[(name, threads, True)], variants[(name, threads, False)]
            r = Result(
                f"demo {name} b{batch} {threads} thr", batch, ours.timing(batch), ref.timing(batch)
            )
            phases = ours.medians_ms()
            half = variants[(name, threads, "bf16")]
            r.extra.update(
                bf16_img_s=half.timing(batch).img_s,
                bf16_loss_rel_diff=max(
                    abs(a - b) / abs(a) for a, b in zip(ours.losses, half.losses) if a
                ),
                method=str(cfg.METHOD.NAME),
                threads=threads,
                phases_ms=phases,
                phases_ms_reference=ref.medians_ms(),
                data="demo pool" if pool_size else "random tensors (no --grid-data)",
                omp_wait_policy=os.environ.get("OMP_WAIT_POLICY", ""),
                loadavg_before=list(load_before),
                loadavg_after=list(load_after),
            )
            note = ", ".join(f"{p} {phases[p]:.0f}" for p in PHASES if p != "data" or pool_size)
            r.note = (
                f"ms: {note}; bf16 autocast {r.extra['bf16_img_s']:.0f} img/s "
                f"(loss rel. diff <= {r.extra['bf16_loss_rel_diff']:.1e})"
            )
            if images and r.ours.img_s:
                r.extra["projected_stage_s"] = images / r.ours.img_s
                r.note += f"; {images} images ~{images / r.ours.img_s:.0f} s"
            rows.append(r)
    return rows
