"""Stand-ins that both upstream launchers (``authors_pretrain.py``, ``mae_upstream_pretrain.py``)
put in place before importing code written for PyTorch 1 / NumPy < 1.24 with tensorboard and a
GPU: ``numpy.float`` (their sin-cos tables), ``torch._six.inf`` (``math.inf``), a no-op
tensorboard ``SummaryWriter`` (tensorboard is not installed) and, without a GPU, a no-op
``torch.cuda.synchronize`` (called every iteration). Their files are not edited.
"""

from __future__ import annotations

import math
import sys
import types


def install() -> None:
    """Put the stand-ins in place (idempotent)."""
    import numpy as np
    import torch

    if not hasattr(np, "float"):  # removed in NumPy 1.24
        np.float = float
    six = types.ModuleType("torch._six")  # removed from PyTorch 2
    six.inf = math.inf
    sys.modules.setdefault("torch._six", six)

    tb = types.ModuleType("torch.utils.tensorboard")

    class SummaryWriter:
        def __init__(self, log_dir=None, **_):
            self.log_dir = log_dir

        def add_scalar(self, *a, **k):
            pass

        def flush(self):
            pass

    tb.SummaryWriter = SummaryWriter
    sys.modules["torch.utils.tensorboard"] = tb
    if not torch.cuda.is_available():
        torch.cuda.synchronize = lambda *a, **k: None
