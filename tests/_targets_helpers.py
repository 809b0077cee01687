"""Independent references for the target tests: direct conv2d GF maps and naive loops."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F


def _half_kernels(r: int, include_centre: bool, dtype: torch.dtype, device=None) -> torch.Tensor:
    """(4, 1, 2r+1, 2r+1) 0/1 masks: left, right, top, bottom half-windows."""
    k = 2 * r + 1
    m = torch.zeros(4, 1, k, k, dtype=dtype, device=device)
    edge = r + 1 if include_centre else r
    m[0, 0, :, :edge] = 1  # left columns
    m[1, 0, :, k - edge :] = 1  # right columns
    m[2, 0, :edge, :] = 1  # top rows
    m[3, 0, k - edge :, :] = 1  # bottom rows
    return m


def gf_reference(
    images: torch.Tensor,
    radii=(5, 9, 13, 17),
    gauss: bool = False,
    dtype: torch.dtype = torch.float64,
) -> torch.Tensor:
    """GF maps by direct 2-D convolution with the full (2r+1)^2 half-window kernels.

    Box variant: halves include the centre line (r + 1 columns / rows). Gaussian variant: halves
    of r lines excluding the centre, weighted by exp(-(dx^2+dy^2) / (2 sigma^2)) with
    sigma = 0.3 * (r - 1) + 0.8. Returns (B, len(radii), H, W) in ``dtype``.
    """
    out = []
    for r in radii:
        x = F.pad(images.to(dtype), (r, r, r, r), mode="reflect") + 0.01
        w = _half_kernels(r, include_centre=not gauss, dtype=dtype, device=images.device)
        if gauss:
            sigma = 0.3 * ((2 * r + 1 - 1) * 0.5 - 1) + 0.8
            d = torch.arange(-r, r + 1, dtype=dtype, device=images.device)
            g = torch.exp(-(d[:, None] ** 2 + d[None, :] ** 2) / (2 * sigma**2))
            w = w * g
        s = F.conv2d(x, w)
        gx = torch.log(s[:, 0] / s[:, 1])
        gy = torch.log(s[:, 2] / s[:, 3])
        out.append(torch.sqrt(gx**2 + gy**2))
    return torch.stack(out, 1)


def naive_patches(images: torch.Tensor, p: int, norm: bool = False) -> torch.Tensor:
    """Loop over patches and pixels: (B, 1, H, W) -> (B, N, p*p), optionally per-patch normed."""
    b, _, h, w = images.shape
    rows = []
    for i in range(b):
        patches = []
        for pr in range(h // p):
            for pc in range(w // p):
                vals = [
                    float(images[i, 0, pr * p + y, pc * p + x]) for y in range(p) for x in range(p)
                ]
                if norm:
                    mean = sum(vals) / len(vals)
                    var = sum((v - mean) ** 2 for v in vals) / (len(vals) - 1)
                    vals = [(v - mean) / math.sqrt(var + 1e-6) for v in vals]
                patches.append(vals)
        rows.append(patches)
    return torch.tensor(rows, dtype=torch.float64)
