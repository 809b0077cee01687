"""``sarjepa`` with one fixed local-window mask for every image, for the 1-vs-2-process test.

Masks are the one thing a 2-process run draws differently from a 1-process run of the same
effective batch: each rank draws its micro-batch's windows from its own generator (seeded by seed,
epoch and rank), so the same image gets another mask. Everything else (the sampler's global
batches, the per-sample augmentation, the gradient average, the lr) is the same by design. With
the windows fixed here - the same draw for every image, whatever the batch size, rank or step - the
two runs must reach the same weights up to fp32 summation order.

Run as a script (``torchrun ... tests/_ddp_fixed_masks.py pretrain ...``) it patches and calls
``benchmark.cli.main``; in-process tests patch with :func:`install`.
"""

from __future__ import annotations

import sys

import sarjepa.pretrain.masking
import torch

_real_local_windows = sarjepa.pretrain.masking.local_windows


def fixed_local_windows(batch_size: int, *args, generator=None, device=None, **kwargs):
    """:func:`sarjepa.pretrain.masking.local_windows` of one image from a seed-0 generator, repeated
    ``batch_size`` times (the method's ``generator`` is ignored)."""
    one = _real_local_windows(1, *args, generator=torch.Generator().manual_seed(0), **kwargs)
    out = type(one)(*(t.expand(batch_size, *t.shape[1:]).contiguous() for t in one))
    return out if device is None else type(out)(*(t.to(device) for t in out))


def install(monkeypatch=None) -> None:
    """Make every local-window draw :func:`fixed_local_windows`."""
    if monkeypatch is not None:
        monkeypatch.setattr(sarjepa.pretrain.masking, "local_windows", fixed_local_windows)
    else:
        sarjepa.pretrain.masking.local_windows = fixed_local_windows


if __name__ == "__main__":
    install()
    from sarjepa.benchmark.cli import main

    sys.exit(main(sys.argv[1:]))
