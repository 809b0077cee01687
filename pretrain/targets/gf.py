"""Multi-scale SAR gradient targets of SAR-JEPA: ``gf`` (box half-windows) and ``gf_gauss``.

For a half-width r and an image x in [0, 1] (PROTOCOL.md#gf-target, checked against the
authors' ``GF`` module in ``Pretraining/models_lomar.py``):

1. x' = reflect-pad(x, r) + 0.01 (the offset is added after padding; it keeps the logs finite);
2. S_left, S_right: sums (not means) of x' over the (2r + 1) rows x (r + 1) columns to the left /
   right of the pixel, both including the pixel's own column; S_top, S_bottom likewise over
   (r + 1) rows x (2r + 1) columns, both including the pixel's own row;
3. G_x = ln(S_left / S_right), G_y = ln(S_top / S_bottom), GF_r = sqrt(G_x^2 + G_y^2).

The maps of the scales are stacked as channels in the order given (default r = 5, 9, 13, 17),
so a 16-px patch carries 4 x 256 = 1024 values: [scale 0 row-major, scale 1, ...].

The box sums use one summed-area table per image (float64, shared by every scale because a
reflect padding by max(r) contains the padding by each smaller r), so the cost is O(1) per pixel
and scale instead of O(r^2) for the authors' conv2d. Ratios and logs are taken in float64 and
only the results are rounded to float32, so the maps agree with a float64 conv2d to float32
rounding. On CPU the batch is processed in cache-sized chunks of images (see _chunks).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from sarjepa.benchmark.core.errors import SarjepaError
from sarjepa.pretrain.targets.base import TARGETS, Target, exact

GF_OFFSET = 0.01
DEFAULT_SCALES = (5, 9, 13, 17)


def _check_radii(radii: Sequence[int], name: str) -> tuple[int, ...]:
    try:
        out = tuple(int(r) for r in radii)
    except (TypeError, ValueError):
        raise SarjepaError(f"{name} scales must be positive integers, got {radii!r}") from None
    if not out or any(r < 1 for r in out) or any(float(r) != float(o) for r, o in zip(out, radii)):
        raise SarjepaError(f"{name} scales must be positive integers, got {list(radii)!r}")
    return out


def _check_size(images: torch.Tensor, radius: int, name: str) -> None:
    h, w = images.shape[-2:]
    if radius >= h or radius >= w:
        raise SarjepaError(
            f"{name} half-width {radius} needs images larger than {radius} px, got {h}x{w}"
        )


def _pad(images: torch.Tensor, radius: int) -> torch.Tensor:
    """(B, 1, H, W) -> float64 reflect-padded by ``radius`` plus the GF offset."""
    x = images.to(torch.float64)
    return F.pad(x, (radius, radius, radius, radius), mode="reflect") + GF_OFFSET


def _log_ratio(num: torch.Tensor, den: torch.Tensor) -> torch.Tensor:
    """ln(num / den) in float64 (so tiny gradients keep their relative precision)."""
    return torch.log(num / den)


# Images per chunk on CPU: a 224 x 224 image's float64 summed-area table is ~0.5 MB, so a few
# of them and their temporaries stay in cache, which makes the elementwise passes ~10x faster
# than streaming a batch of 75 through memory. The chunk grows with the thread count so each
# thread keeps enough work. On GPU the whole batch goes at once.
CPU_CHUNK_BYTES_PER_THREAD = 2**20


def _chunks(images: torch.Tensor, pad: int) -> int:
    if images.device.type != "cpu":
        return images.shape[0]
    h, w = images.shape[-2:]
    budget = CPU_CHUNK_BYTES_PER_THREAD * max(2, torch.get_num_threads())
    return max(1, budget // ((h + 2 * pad + 1) * (w + 2 * pad + 1) * 8))


def _box_log_ratios(images: torch.Tensor, radii: tuple[int, ...]):
    """Yield (G_x, G_y) float64 (B, H, W) per radius for one chunk of images (B, 1, H, W)."""
    h, w = images.shape[-2:]
    c = max(radii)  # pixel (i, j) sits at (i + c, j + c) in the padded image
    xp = _pad(images, c)[:, 0]  # (B, H + 2c, W + 2c), a fresh tensor
    # Summed-area table with a zero first row and column: sat[:, a, b] = xp[:, :a, :b].sum().
    sat = F.pad(xp.cumsum_(1).cumsum_(2), (1, 0, 1, 0))
    for r in radii:
        # Sums over rows [i + c - r, i + c + r] of every column prefix ...
        rows = sat[:, c + r + 1 : c + r + 1 + h, :] - sat[:, c - r : c - r + h, :]
        # ... then over image columns [q - r, q], q = 0 .. W + r - 1: box[:, :, j] is the left
        # half of pixel j (columns [j - r, j]) and box[:, :, j + r] its right half ([j, j + r]).
        box = rows[:, :, c + 1 : c + r + 1 + w] - rows[:, :, c - r : c + w]
        gx = _log_ratio(box[:, :, :w], box[:, :, r : r + w])
        cols = sat[:, :, c + r + 1 : c + r + 1 + w] - sat[:, :, c - r : c - r + w]
        box = cols[:, c + 1 : c + r + 1 + h, :] - cols[:, c - r : c + h, :]
        gy = _log_ratio(box[:, :h], box[:, r : r + h])
        yield gx, gy


def _run_chunks(images, radii, fn, magnitude: bool) -> tuple[torch.Tensor, ...]:
    """Apply ``fn(chunk, radii)`` (yielding float64 (G_x, G_y) per radius) over CPU chunks.

    Returns float32 (B, S, H, W) tensors: (magnitude,) or (G_x, G_y).
    """
    b, _, h, w = images.shape
    outs = tuple(
        torch.empty(b, len(radii), h, w, dtype=torch.float32, device=images.device)
        for _ in range(1 if magnitude else 2)
    )
    step = _chunks(images, max(radii))
    for s in range(0, b, step):
        for k, (gx, gy) in enumerate(fn(images[s : s + step], radii)):
            if magnitude:
                outs[0][s : s + step, k] = torch.hypot(gx, gy)
            else:
                outs[0][s : s + step, k] = gx
                outs[1][s : s + step, k] = gy
    return outs


def gf_log_ratios(images: torch.Tensor, radii: Sequence[int]) -> tuple[torch.Tensor, torch.Tensor]:
    """Log-ratio gradients of the box half-windows for several half-widths.

    Args:
        images: (B, 1, H, W) float in [0, 1]; every r must be < H and < W (reflect padding).
        radii: half-widths r (pixels).

    Returns:
        (G_x, G_y), each (B, len(radii), H, W) float32: ln(S_left / S_right) and
        ln(S_top / S_bottom) as in the module docstring.
    """
    radii = _check_radii(radii, "gf")
    _check_size(images, max(radii), "gf")
    gx, gy = _run_chunks(images, radii, _box_log_ratios, magnitude=False)
    return gx, gy


def gf_maps(images: torch.Tensor, radii: Sequence[int] = DEFAULT_SCALES) -> torch.Tensor:
    """Multi-scale GF magnitude maps.

    Args:
        images: (B, 1, H, W) float in [0, 1].
        radii: half-widths r in the channel order wanted.

    Returns:
        (B, len(radii), H, W) float32, GF_r = sqrt(G_x^2 + G_y^2).
    """
    radii = _check_radii(radii, "gf")
    _check_size(images, max(radii), "gf")
    return _run_chunks(images, radii, _box_log_ratios, magnitude=True)[0]


def gauss_sigma(radius: int) -> float:
    """The authors' Gaussian width for a (2r + 1)-tap kernel: 0.3 * ((2r + 1 - 1) * 0.5 - 1) + 0.8.

    (It is OpenCV's default sigma for that kernel size.)
    """
    return 0.3 * ((2 * radius + 1 - 1) * 0.5 - 1) + 0.8


def _gauss_1d(radius: int, dtype: torch.dtype, device: torch.device) -> torch.Tensor:
    offsets = torch.arange(-radius, radius + 1, dtype=dtype, device=device)
    return torch.exp(-(offsets**2) / (2 * gauss_sigma(radius) ** 2))


def _weighted_pass(x: torch.Tensor, weights: list[float], first: int, dim: int, n: int):
    """sum_t weights[t] * x.narrow(dim, first + t, n), skipping zero weights."""
    out = None
    for t, wt in enumerate(weights):
        if wt == 0.0:
            continue
        term = x.narrow(dim, first + t, n)
        out = term * wt if out is None else out.add_(term, alpha=wt)
    return out


def _gauss_log_ratios(images: torch.Tensor, radii: tuple[int, ...]):
    """Yield (G_x, G_y) float64 (B, H, W) of the Gaussian half-windows per radius."""
    h, w = images.shape[-2:]
    for r in radii:
        xp = _pad(images, r)[:, 0]  # (B, H + 2r, W + 2r)
        g = _gauss_1d(r, torch.float64, torch.device("cpu")).tolist()
        near = g[:r]  # offsets -r .. -1; by symmetry also the weights of offsets r .. 1
        horiz = _weighted_pass(xp, g, 0, 2, w)  # (B, H + 2r, W): full Gaussian along x
        top = _weighted_pass(horiz, near, 0, 1, h)  # rows i - r .. i - 1
        bottom = _weighted_pass(horiz, near[::-1], r + 1, 1, h)  # rows i + 1 .. i + r
        vert = _weighted_pass(xp, g, 0, 1, h)  # (B, H, W + 2r): full Gaussian along y
        left = _weighted_pass(vert, near, 0, 2, w)
        right = _weighted_pass(vert, near[::-1], r + 1, 2, w)
        yield _log_ratio(left, right), _log_ratio(top, bottom)


def gf_gauss_maps(images: torch.Tensor, radii: Sequence[int] = DEFAULT_SCALES) -> torch.Tensor:
    """Gaussian-weighted GF ("Gaussian kernel" variant of SAR-JEPA).

    Same reflect padding, offset, log ratios and magnitude as :func:`gf_maps`, but each half is
    weighted by the unnormalised 2-D Gaussian exp(-(dx^2 + dy^2) / (2 sigma^2)) with
    sigma = :func:`gauss_sigma`, and the halves are r rows (or columns) that EXCLUDE the centre
    line: S_top covers dy in [-r, -1], S_bottom dy in [1, r], both dx in [-r, r]; S_left /
    S_right likewise with columns. The authors' code builds these as full 2-D kernels (it is
    commented out in their release); the Gaussian is separable, so here each half is a 1-D
    full-width pass followed by a 1-D half pass, in float64, over cache-sized chunks of images.

    Args:
        images: (B, 1, H, W) float in [0, 1].
        radii: half-widths r in the channel order wanted.

    Returns:
        (B, len(radii), H, W) float32.
    """
    radii = _check_radii(radii, "gf_gauss")
    _check_size(images, max(radii), "gf_gauss")
    return _run_chunks(images, radii, _gauss_log_ratios, magnitude=True)[0]


@TARGETS.register("gf")
class GFTarget(Target):
    """SAR-JEPA's multi-scale gradient-field target (box half-windows, integral images).

    Args:
        patch_size: ViT patch side p.
        scales: half-widths r, one channel each, in this order (default 5, 9, 13, 17).
    """

    name = "gf"

    def __init__(self, patch_size: int = 16, scales: Sequence[int] = DEFAULT_SCALES) -> None:
        super().__init__(patch_size)
        self.scales = _check_radii(scales, self.name)
        self.channels = len(self.scales)

    def options(self) -> dict:
        return {**super().options(), "scales": list(self.scales)}

    @exact
    def maps(self, images: torch.Tensor) -> torch.Tensor:
        self.check_images(images, patches=False)
        return gf_maps(images, self.scales)


@TARGETS.register("gf_gauss")
class GaussGFTarget(GFTarget):
    """Gaussian-weighted variant of :class:`GFTarget` (see :func:`gf_gauss_maps`)."""

    name = "gf_gauss"

    @exact
    def maps(self, images: torch.Tensor) -> torch.Tensor:
        self.check_images(images, patches=False)
        return gf_gauss_maps(images, self.scales)
