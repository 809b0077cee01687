"""Mean attention distance per layer and head (SAR-JEPA's Fig. 6; ViT's Fig. 7, MAE's analyses).

See PROTOCOL.md#attention-distance.

Definition (what this module computes). For one image, one block (layer) and one head, let
``a[i, j]`` be the attention probability of query token ``i`` on key token ``j`` (after the
softmax, iRPE term included). Only patch tokens count: the rows and columns of the leading
tokens (CLS) are dropped, and each remaining row is **renormalised** to sum to 1, so the
distance is that of the attention spent on patches::

    a'[i, j] = a[i, j] / sum_j' a[i, j']                (i, j, j' patch tokens)
    d_i      = sum_j a'[i, j] * ||c_i - c_j||           (pixels)

where ``c_i`` is the centre of patch ``i`` on the model's input grid, so
``||c_i - c_j|| = patch_size * sqrt(dr^2 + dc^2)`` for row / column offsets ``dr, dc`` in
patches. The reported value of a (layer, head) is the mean of ``d_i`` over the query patches and
then over the images, in **pixels of the network input** (``--image-size``). For the few-shot
preprocessing (a 128-px centre crop resized to 224) one input pixel is 128/224 of a chip pixel.

Encoders without a CLS token (I-JEPA) have nothing to drop. Renormalising makes the value
independent of how much attention the CLS token draws; without it a head that attends mostly to
CLS would look local whatever its pattern on the patches.

The probabilities come from :class:`pretrain.models.vit.Attention`'s ``attn_hook`` (an explicit
float32 softmax that matches the fused kernel); they are reduced per batch as they arrive, so
memory does not grow with depth.
"""

from __future__ import annotations

import contextlib
import functools
from collections.abc import Iterable, Iterator
from pathlib import Path

import numpy as np
import torch
from sarjepa.benchmark.core.errors import SarjepaError
from sarjepa.benchmark.core.io import atomic_write, atomic_write_text
from torch import Tensor, nn

CSV_HEADER = "layer,head,distance_px"
_PNG_META = {"Software": "sarjepa"}


def patch_distances(grid_hw: tuple[int, int], patch_size: int) -> Tensor:
    """Distances between patch centres of a row-major ``h x w`` grid.

    Args:
        grid_hw: ``(h, w)`` in patches.
        patch_size: patch side in pixels.

    Returns:
        ``(h*w, h*w)`` float64, pixels: ``patch_size * sqrt(dr^2 + dc^2)``.
    """
    h, w = (int(v) for v in grid_hw)
    rows = torch.arange(h, dtype=torch.float64).repeat_interleave(w)
    cols = torch.arange(w, dtype=torch.float64).repeat(h)
    dr = rows[:, None] - rows[None, :]
    dc = cols[:, None] - cols[None, :]
    return float(patch_size) * torch.sqrt(dr * dr + dc * dc)


def mean_attention_distance(
    probs: Tensor, grid_hw: tuple[int, int], patch_size: int, num_prefix_tokens: int = 1
) -> Tensor:
    """Mean attention distance of each image and head (see the module docstring).

    Args:
        probs: attention probabilities ``(B, H, T, T)``, ``T = num_prefix_tokens + h*w``.
        grid_hw: ``(h, w)`` patch grid of the tokens after the prefix.
        patch_size: patch side in pixels.
        num_prefix_tokens: leading non-patch tokens (1 for CLS, 0 without).

    Returns:
        ``(B, H)`` float64, pixels: the mean over query patches of the renormalised
        patch-to-patch distance.
    """
    n = int(grid_hw[0]) * int(grid_hw[1])
    if (
        probs.ndim != 4
        or probs.shape[-1] != probs.shape[-2]
        or probs.shape[-1] != n + int(num_prefix_tokens)
    ):
        raise ValueError(
            f"attention of shape {tuple(probs.shape)} does not fit {num_prefix_tokens} prefix "
            f"token(s) + a {grid_hw[0]}x{grid_hw[1]} grid"
        )
    s = int(num_prefix_tokens)
    a = probs[:, :, s:, s:].to(torch.float64)
    a = a / a.sum(dim=-1, keepdim=True).clamp_min(torch.finfo(torch.float64).tiny)
    dist = patch_distances(grid_hw, patch_size).to(a.device)
    return (a * dist).sum(dim=-1).mean(dim=-1)


class DistanceAccumulator:
    """Sums of per-image distances per (layer, head), filled by attention hooks.

    Args:
        depth: number of blocks L.
        heads: heads per block H.
    """

    def __init__(self, depth: int, heads: int) -> None:
        self.sums = np.zeros((depth, heads), dtype=np.float64)
        self.counts = np.zeros(depth, dtype=np.int64)
        self.grid: tuple[int, int] = (0, 0)
        self.patch_size = 0
        self.prefix = 0

    def add(self, layer: int, probs: Tensor) -> None:
        """Reduce one block's probabilities ``(B, H, T, T)`` of the current batch."""
        d = mean_attention_distance(probs, self.grid, self.patch_size, self.prefix)
        self.sums[layer] += d.sum(dim=0).cpu().numpy()
        self.counts[layer] += d.shape[0]

    def means(self) -> np.ndarray:
        """``(L, H)`` float64: mean distance in pixels over all images seen."""
        if not self.counts.all():
            raise SarjepaError("no image reached every attention block")
        return self.sums / self.counts[:, None]


@contextlib.contextmanager
def capture_attention(encoder: nn.Module, acc: DistanceAccumulator) -> Iterator[None]:
    """Route every block's attention probabilities into ``acc`` while the context is open."""
    attns = [blk.attn for blk in encoder.blocks]
    try:
        for i, attn in enumerate(attns):
            attn.attn_hook = functools.partial(acc.add, i)
        yield
    finally:
        for attn in attns:
            attn.attn_hook = None


@torch.no_grad()
def attention_distances(
    encoder: nn.Module, batches: Iterable[Tensor], device: torch.device
) -> tuple[np.ndarray, int]:
    """Mean attention distance of ``encoder`` over image batches, in fp32.

    Args:
        encoder: a :class:`pretrain.models.VisionTransformer` (eval mode is set here).
        batches: ``(B, C, H, W)`` image tensors (C = 1 is repeated to the encoder's channels);
            H and W multiples of the patch size.
        device: where to run.

    Returns:
        ``((L, H) float64 distances in pixels, number of images)``.
    """
    heads = int(encoder.blocks[0].attn.num_heads) if len(encoder.blocks) else 0
    if not heads:
        raise SarjepaError("the encoder has no attention blocks")
    acc = DistanceAccumulator(len(encoder.blocks), heads)
    acc.patch_size = int(encoder.patch_size)
    acc.prefix = int(encoder.num_prefix_tokens)
    encoder.eval().to(device)
    in_chans = int(encoder.in_chans)
    with capture_attention(encoder, acc):
        for x in batches:
            if x.shape[1] == 1 and in_chans > 1:
                x = x.expand(-1, in_chans, -1, -1)
            acc.grid = (x.shape[-2] // acc.patch_size, x.shape[-1] // acc.patch_size)
            encoder.forward_features(x.to(device, torch.float32))
    return acc.means(), int(acc.counts[0])


def csv_text(table: np.ndarray) -> str:
    """``layer,head,distance_px`` rows (layer 1 = ``blocks.0``, heads from 0), 4 decimals."""
    lines = [CSV_HEADER]
    for layer in range(table.shape[0]):
        for head in range(table.shape[1]):
            lines.append(f"{layer + 1},{head},{table[layer, head]:.4f}")
    return "\n".join(lines) + "\n"


def read_csv(path: str | Path) -> np.ndarray:
    """Inverse of :func:`csv_text`: the ``(L, H)`` table of a written CSV."""
    rows = Path(path).read_text(encoding="utf-8").splitlines()
    if not rows or rows[0] != CSV_HEADER:
        raise SarjepaError(f"'{path}' is not an attention-distance CSV (header {CSV_HEADER})")
    vals = [(int(a), int(b), float(c)) for a, b, c in (r.split(",") for r in rows[1:])]
    table = np.full((max(v[0] for v in vals), max(v[1] for v in vals) + 1), np.nan)
    for layer, head, d in vals:
        table[layer - 1, head] = d
    return table


def uniform_distance(grid_hw: tuple[int, int], patch_size: int) -> float:
    """The distance of a head that attends uniformly to all patches (pixels): a reference."""
    return float(patch_distances(grid_hw, patch_size).mean())


def plot(
    table: np.ndarray, path: str | Path, title: str = "", uniform_px: float | None = None
) -> None:
    """Distance per layer: one dot per head, a line through the per-layer mean (PNG, Agg).

    Args:
        table: ``(L, H)`` distances in pixels.
        path: the PNG to write (atomically).
        title: figure title.
        uniform_px: drawn as a dashed line, the distance of uniform attention.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    layers = np.arange(1, table.shape[0] + 1)
    fig, ax = plt.subplots(figsize=(5.0, 3.6))
    for head in range(table.shape[1]):
        ax.scatter(layers, table[:, head], s=14, color="tab:blue", alpha=0.6, linewidths=0)
    ax.plot(layers, table.mean(axis=1), color="black", lw=1.5, label="mean over heads")
    top = float(np.nanmax(table)) if table.size else 1.0
    if uniform_px is not None:
        ax.axhline(uniform_px, color="grey", ls="--", lw=1, label="uniform attention")
        top = max(top, uniform_px)
    ax.set_xlabel("layer (block)")
    ax.set_ylabel("mean attention distance (px)")
    ax.set_xticks(layers)
    ax.set_ylim(0, max(top * 1.1, 1.0))
    ax.grid(alpha=0.3)
    ax.legend(loc="lower right", fontsize=8)
    if title:
        ax.set_title(title, fontsize=9)
    try:
        atomic_write(
            path,
            lambda f: fig.savefig(
                f, format="png", dpi=150, bbox_inches="tight", metadata=_PNG_META
            ),
        )
    finally:
        plt.close(fig)


def write_outputs(
    table: np.ndarray, out_dir: str | Path, title: str = "", uniform_px: float | None = None
) -> tuple[Path, Path]:
    """Write ``attention_distance.csv`` and ``attention_distance.png`` atomically in ``out_dir``."""
    out = Path(out_dir)
    csv_path = atomic_write_text(csv_text(table), out / "attention_distance.csv")
    png_path = out / "attention_distance.png"
    plot(table, png_path, title, uniform_px)
    return Path(csv_path), png_path
