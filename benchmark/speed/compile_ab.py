"""Eager against ``torch.compile`` for one method of the demo's pretraining, in one process.

``OMP_WAIT_POLICY=PASSIVE python -m sarjepa.benchmark.speed.compile_ab METHOD [--rounds N]
[--dynamic-false] [--threads T]`` (PASSIVE is what ``python -m sarjepa`` sets; it must be set
before torch loads).

Builds the method of ``benchmark/configs/demo.yaml`` twice from the same seed (its micro ViT,
input size and batch, on the CPU), one eager and one wrapped in ``torch.compile`` as
``TRAIN.COMPILE`` does, each with its own AdamW and mask generator (same seeds). Both see the same
8 fixed random batches (B, 1, H, W) in turn; data loading is left out, it is the same for both.
Steps (forward + backward + AdamW step) alternate between the two, so a busy box slows them
alike. The first 3 steps hold the compilation; their extra time over eager is the compile cost.
Prints one JSON object: median img/s of each after those steps, the speedup, the compile cost
(seconds), dynamo's graph count after warm-up and at the end (equal = no recompiles), its graph
breaks, the largest relative difference of the per-step losses, and the load average.
Set ``TORCHINDUCTOR_CACHE_DIR`` to an empty folder to measure a cold compile.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time

import torch

WARMUP = 3


def _arm(cfg, compiled: bool, dynamic_false: bool) -> dict:
    from sarjepa.pretrain.methods import build_method
    from sarjepa.pretrain.train import build_optimizer

    torch.manual_seed(int(cfg.SEED))
    method = build_method(cfg).train()
    opt = build_optimizer(method, cfg, 1e-4, torch.device("cpu"))
    kwargs = {"dynamic": False} if dynamic_false else {}
    model = torch.compile(method, **kwargs) if compiled else method
    gen = torch.Generator().manual_seed(7)
    return {"model": model, "opt": opt, "gen": gen, "losses": [], "times": []}


def _step(arm: dict, x: torch.Tensor) -> float:
    t0 = time.perf_counter()
    loss, _ = arm["model"](x, arm["gen"])
    loss.backward()
    arm["opt"].step()
    arm["opt"].zero_grad(set_to_none=True)
    dt = time.perf_counter() - t0
    arm["losses"].append(loss.item())
    arm["times"].append(dt)
    return dt


def compare(name: str, rounds: int, dynamic_false: bool) -> dict:
    """Interleaved eager / compiled steps of demo method ``name``; returns the measured dict."""
    from sarjepa.benchmark.speed.demo_bench import demo_cfgs
    from torch._dynamo.utils import counters

    cfg = demo_cfgs()[name]
    batch, size = int(cfg.TRAIN.BATCH_SIZE), int(cfg.INPUT.SIZE)
    g = torch.Generator().manual_seed(123)
    batches = [torch.rand(batch, 1, size, size, generator=g) for _ in range(8)]
    load_before = os.getloadavg()
    eager, comp = _arm(cfg, False, dynamic_false), _arm(cfg, True, dynamic_false)
    first = []
    for i in range(WARMUP):
        x = batches[i % len(batches)]
        first.append((_step(eager, x), _step(comp, x)))
    graphs_warm = counters["stats"]["unique_graphs"]
    for i in range(WARMUP, WARMUP + rounds):
        x = batches[i % len(batches)]
        _step(eager, x)
        _step(comp, x)
    t_e = statistics.median(eager["times"][WARMUP:])
    t_c = statistics.median(comp["times"][WARMUP:])
    rel = max(abs(a - b) / abs(a) for a, b in zip(eager["losses"], comp["losses"]))
    return {
        "method": name,
        "threads": torch.get_num_threads(),
        "dynamic": "False" if dynamic_false else "None",
        "rounds": rounds,
        "eager_img_s": batch / t_e,
        "compiled_img_s": batch / t_c,
        "speedup": t_e / t_c,
        "first_steps_s": first,
        "compile_overhead_s": sum(c - e for e, c in first),
        "unique_graphs_after_warmup": graphs_warm,
        "unique_graphs_end": counters["stats"]["unique_graphs"],
        "graph_breaks": {k.splitlines()[0]: v for k, v in counters["graph_break"].items()},
        "max_rel_loss_diff": rel,
        "steps_compared": len(eager["losses"]),
        "loadavg_before": load_before,
        "loadavg_after": os.getloadavg(),
        "torch": torch.__version__,
    }


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("method", help="a method label of the demo config (sarjepa, mae, ...)")
    p.add_argument("--rounds", type=int, default=10, help="timed steps per arm after warm-up")
    p.add_argument("--dynamic-false", action="store_true", help="torch.compile(dynamic=False)")
    p.add_argument("--threads", type=int, default=0, help="intra-op threads (0: torch's default)")
    args = p.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    print(json.dumps(compare(args.method, args.rounds, args.dynamic_false), indent=1))


if __name__ == "__main__":
    main()
