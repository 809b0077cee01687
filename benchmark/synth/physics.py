"""Synthetic SAR image formation: scatterer models, projection, clutter, speckle, 8-bit mapping.

Pure numpy. Geometry is built in a target's own frame (metres; ``x`` forward along the hull,
``y`` to the side, ``z`` up) as a cloud of scatterers: isotropic points (corners, wheels, engine
intakes) and specular ones (plate edges, ground dihedrals, barrels) whose return flashes when
their normal faces the radar. :func:`render_target` rotates the cloud to an aspect angle, applies
layover (higher scatterers move towards the radar), sums the intensities through a separable
sinc-squared point-spread function aligned with range and azimuth, and rasterises the footprint
so that :func:`cast_shadow` can darken the ground behind the target. The radar looks from the
top of the image (row 0): shadows fall towards larger rows.

Images are ``float64`` arrays of shape ``(rows, cols)`` holding intensities (power, linear
units) until :func:`to_uint8` maps them to grey levels.
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass, field
from functools import lru_cache

import numpy as np

#: Direction (in image ``(col, row)`` coordinates) from a scatterer towards the radar.
FACING_RADAR = -np.pi / 2


@dataclass
class Target:
    """Scatterers of one target in its own frame.

    Attributes:
        x, y, z: ``(N,)`` positions in metres.
        amp: ``(N,)`` peak intensity of each scatterer (relative units).
        normal: ``(N,)`` direction of the surface normal in the x-y plane (radians); NaN marks an
            isotropic scatterer.
        lobe: ``(N,)`` angular width (radians, Gaussian sigma) of the specular flash.
        two_sided: ``(N,)`` bool; the scatterer flashes for either sign of its normal (thin
            cylinders such as gun barrels).
        footprints: convex polygons ``(K, 2)`` in metres with their height, used for shadows.
    """

    x: np.ndarray
    y: np.ndarray
    z: np.ndarray
    amp: np.ndarray
    normal: np.ndarray
    lobe: np.ndarray
    two_sided: np.ndarray
    footprints: list[tuple[np.ndarray, float]] = field(default_factory=list)


class Builder:
    """Accumulates scatterers; every method works in metres in the target frame."""

    def __init__(self) -> None:
        self._cols: list[tuple[np.ndarray, ...]] = []
        self.footprints: list[tuple[np.ndarray, float]] = []

    def points(self, x, y, z, amp, normal=np.nan, lobe=0.15, two_sided=False) -> Builder:
        """Add scatterers; scalars broadcast against the longest array argument."""
        x, y, z, amp, normal, lobe, two = np.broadcast_arrays(
            *(np.atleast_1d(np.asarray(v, dtype=float)) for v in (x, y, z, amp, normal, lobe)),
            np.atleast_1d(np.asarray(two_sided, dtype=bool)),
        )
        self._cols.append((x, y, z, amp, normal, lobe, two))
        return self

    def segment(self, p0, p1, z, amp, spacing=0.25, lobe=0.12, two_sided=True, normal=None):
        """Specular line from ``p0`` to ``p1`` (barrel, railing, wing edge)."""
        p0, p1 = np.asarray(p0, float), np.asarray(p1, float)
        n = max(2, int(np.hypot(*(p1 - p0)) / spacing) + 1)
        t = np.linspace(0.0, 1.0, n)
        d = p1 - p0
        nrm = np.arctan2(d[1], d[0]) + np.pi / 2 if normal is None else normal
        return self.points(p0[0] + t * d[0], p0[1] + t * d[1], z, amp, nrm, lobe, two_sided)

    def polygon(self, pts, height, edge=0.4, area=0.06, corner=1.0, dihedral=1.0, spacing=0.3):
        """Convex flat-topped solid: top edges, ground dihedrals, corners, diffuse top, footprint.

        Args:
            pts: ``(K, 2)`` corners in order, either orientation (metres).
            height: top height in metres.
            edge, area, corner, dihedral: peak intensities of the respective scatterers.
            spacing: sampling distance of edges and top surface (metres).
        """
        pts = np.asarray(pts, float)
        x0, y0 = pts[:, 0], pts[:, 1]
        if np.sum(x0 * np.roll(y0, -1) - np.roll(x0, -1) * y0) < 0:  # make it counter-clockwise
            pts = pts[::-1]
        for a, b in zip(pts, np.roll(pts, -1, axis=0)):
            d = b - a
            out = np.arctan2(d[1], d[0]) - np.pi / 2  # outward normal of a CCW polygon
            self.segment(a, b, height, edge, spacing, 0.15, False, out)
            if dihedral > 0:
                self.segment(a, b, 0.0, dihedral, spacing, 0.08, False, out)
        self.points(pts[:, 0], pts[:, 1], height, corner)
        lo, hi = pts.min(0), pts.max(0)
        gx, gy = np.meshgrid(np.arange(lo[0], hi[0], spacing), np.arange(lo[1], hi[1], spacing))
        gx, gy = gx.ravel(), gy.ravel()
        inside = inside_convex(pts, gx, gy)
        self.points(gx[inside], gy[inside], height, area)
        self.footprints.append((pts, float(height)))
        return self

    def box(self, cx, cy, length, width, height, heading=0.0, **kw) -> Builder:
        """Rectangular solid centred at ``(cx, cy)``, long axis rotated by ``heading``."""
        hl, hw = length / 2, width / 2
        c, s = np.cos(heading), np.sin(heading)
        corners = np.array([[-hl, -hw], [hl, -hw], [hl, hw], [-hl, hw]])
        pts = corners @ np.array([[c, s], [-s, c]]) + [cx, cy]
        return self.polygon(pts, height, **kw)

    def ring(self, cx, cy, r, z, amp, n=16, footprint=True) -> Builder:
        """Cylinder of radius ``r`` (turret, radome): a ring of specular points plus footprint."""
        a = np.linspace(0, 2 * np.pi, n, endpoint=False)
        self.points(cx + r * np.cos(a), cy + r * np.sin(a), z, amp, a, 0.35)
        if footprint:
            self.footprints.append((np.c_[cx + r * np.cos(a), cy + r * np.sin(a)], float(z)))
        return self

    def build(self, rng: np.random.Generator | None = None, scint: float = 0.0) -> Target:
        """Concatenate; ``scint`` > 0 multiplies amplitudes by log-normal scintillation."""
        x, y, z, amp, normal, lobe, two = (np.concatenate(c) for c in zip(*self._cols))
        if rng is not None and scint > 0:
            amp = amp * np.exp(scint * rng.standard_normal(amp.shape) - scint**2 / 2)
        return Target(x, y, z, amp, normal, lobe, two, list(self.footprints))


@lru_cache(maxsize=64)
def _glint_table(key: str, size: int = 8192) -> tuple[np.ndarray, np.ndarray]:
    g = np.random.default_rng(zlib.crc32(key.encode()))
    return g.integers(1, 5, size), g.uniform(0, 2 * np.pi, size)


def aspect_glint(n: int, aspect: float, key: str, depth: float = 0.5) -> np.ndarray:
    """Smooth, deterministic aspect dependence of each scatterer's intensity.

    One physical object per ``key`` (a class): scatterer ``j`` is modulated by
    ``exp(depth * sin(m_j * aspect + phi_j))`` with ``m_j`` in 1..4 and ``phi_j`` fixed by the
    key, so the same object seen at the same aspect glints the same way. Returns ``(n,)``.
    """
    m, phi = _glint_table(key)
    j = np.arange(n) % m.size
    return np.exp(depth * np.sin(m[j] * aspect + phi[j]) - depth**2 / 4)


def inside_convex(pts: np.ndarray, x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Boolean mask of points ``(x, y)`` inside the convex polygon ``pts`` (either orientation)."""
    a, b = pts, np.roll(pts, -1, axis=0)
    cross = (b[:, 0, None] - a[:, 0, None]) * (y[None] - a[:, 1, None]) - (
        b[:, 1, None] - a[:, 1, None]
    ) * (x[None] - a[:, 0, None])
    return np.all(cross >= 0, axis=0) | np.all(cross <= 0, axis=0)


def specular_gain(normal_world: np.ndarray, lobe: np.ndarray, two_sided: np.ndarray, floor=0.02):
    """Aspect gain of each scatterer: 1 for isotropic ones, a Gaussian flash for specular ones."""
    d = np.angle(np.exp(1j * (normal_world - FACING_RADAR)))
    d = np.where(two_sided, np.minimum(np.abs(d), np.pi - np.abs(d)), d)
    g = floor + (1 - floor) * np.exp(-0.5 * (d / np.maximum(lobe, 1e-6)) ** 2)
    return np.where(np.isnan(normal_world), 1.0, g)


def psf_1d(d: np.ndarray, res_px: float, taper_px: float) -> np.ndarray:
    """Intensity impulse response along one axis: ``sinc^2(d/res)`` with a Gaussian taper."""
    x = np.pi * d / res_px + 1e-6  # offset avoids 0/0; changes sinc by < 1e-12
    return (np.sin(x) / x) ** 2 * np.exp(-((d / taper_px) ** 2))


def render_target(
    tgt: Target,
    shape: tuple[int, int],
    px_m: float,
    aspect: float,
    centre: tuple[float, float],
    depression_deg: float,
    res_px: float = 1.4,
    taper_px: float = 12.0,
) -> tuple[np.ndarray, np.ndarray]:
    """Image of the target's scatterers and a ground-height map of its footprint.

    Args:
        tgt: scatterers in metres.
        shape: ``(rows, cols)`` of the chip.
        px_m: ground pixel spacing in metres.
        aspect: rotation of the target frame in the image (radians).
        centre: ``(row, col)`` position of the target origin (pixels, sub-pixel allowed).
        depression_deg: radar depression angle; sets layover (``z tan``) and shadow length.
        res_px, taper_px: PSF main-lobe width and side-lobe taper (pixels).

    Returns:
        ``(intensity, height)``: both ``(rows, cols)``; ``height`` in metres (0 = bare ground).
    """
    rows, cols = shape
    c, s = np.cos(aspect), np.sin(aspect)
    tan_d = np.tan(np.deg2rad(depression_deg))
    col = centre[1] + (c * tgt.x - s * tgt.y) / px_m
    row = centre[0] + (s * tgt.x + c * tgt.y - tgt.z * tan_d) / px_m
    amp = tgt.amp * specular_gain(tgt.normal + aspect, tgt.lobe, tgt.two_sided)
    py = psf_1d(
        np.arange(rows, dtype=np.float32)[:, None] - row.astype(np.float32), res_px, taper_px
    )
    px = psf_1d(
        np.arange(cols, dtype=np.float32)[None, :] - col[:, None].astype(np.float32),
        res_px,
        taper_px,
    )
    image = (py @ (amp[:, None].astype(np.float32) * px)).astype(np.float64)
    height = np.zeros(shape)
    rr, cc = np.mgrid[0:rows, 0:cols]
    for poly, h in tgt.footprints:
        pc = centre[1] + (c * poly[:, 0] - s * poly[:, 1]) / px_m
        pr = centre[0] + (s * poly[:, 0] + c * poly[:, 1]) / px_m
        r0, r1 = max(int(pr.min()), 0), min(int(np.ceil(pr.max())) + 1, rows)
        c0, c1 = max(int(pc.min()), 0), min(int(np.ceil(pc.max())) + 1, cols)
        if r0 >= r1 or c0 >= c1:
            continue
        sub_r, sub_c = rr[r0:r1, c0:c1].ravel(), cc[r0:r1, c0:c1].ravel()
        inside = inside_convex(np.c_[pc, pr], sub_c.astype(float), sub_r.astype(float))
        win = height[r0:r1, c0:c1]
        win[inside.reshape(win.shape)] = np.maximum(win[inside.reshape(win.shape)], h)
    return np.maximum(image, 0.0), height


def cast_shadow(height: np.ndarray, px_m: float, depression_deg: float) -> np.ndarray:
    """Radar shadow behind raised ground (away from the radar, i.e. towards larger rows).

    A ray grazing an object of height ``h`` reaches the ground ``h / tan(depression)`` metres
    further on; per row it loses ``px_m * tan(depression)`` metres of height.

    Returns:
        ``(rows, cols)`` bool: True where the bare ground is hidden from the radar.
    """
    drop = px_m * np.tan(np.deg2rad(depression_deg))
    ray = np.zeros(height.shape[1])
    shadow = np.zeros(height.shape, bool)
    for r in range(height.shape[0]):
        ray = np.maximum(height[r], ray - drop)
        shadow[r] = (ray > 1e-9) & (height[r] <= 0)
    return shadow


def smooth_field(rng: np.random.Generator, shape: tuple[int, int], sigma_px: float) -> np.ndarray:
    """Zero-mean, unit-variance Gaussian random field with Gaussian correlation ``sigma_px``."""
    noise = rng.standard_normal(shape)
    fy = np.fft.fftfreq(shape[0])[:, None]
    fx = np.fft.rfftfreq(shape[1])[None, :]
    transfer = np.exp(-2 * (np.pi * sigma_px) ** 2 * (fx**2 + fy**2))
    out = np.fft.irfft2(np.fft.rfft2(noise) * transfer, s=shape)
    return (out - out.mean()) / (out.std() + 1e-12)


def texture(rng: np.random.Generator, shape, sigma_px: float, strength: float) -> np.ndarray:
    """Unit-mean log-normal clutter texture (heterogeneous backscatter, K-like statistics)."""
    return np.exp(strength * smooth_field(rng, shape, sigma_px) - strength**2 / 2)


def waves(shape, wavelength_px: float, direction: float, depth: float, phase: float):
    """Unit-mean intensity modulation by a sinusoidal swell (tilt modulation of sea clutter)."""
    r, c = np.mgrid[0 : shape[0], 0 : shape[1]]
    k = 2 * np.pi / wavelength_px
    arg = k * (c * np.cos(direction) + r * np.sin(direction)) + phase
    m = np.exp(depth * np.sin(arg) + 0.3 * depth * np.sin(2 * arg + 1.0))
    return m / m.mean()


def speckle(rng: np.random.Generator, intensity: np.ndarray, looks: float) -> np.ndarray:
    """Multiply by fully developed speckle: Gamma(shape=L, scale=1/L), unit mean."""
    return intensity * rng.gamma(looks, 1.0 / looks, intensity.shape)


def to_uint8(
    intensity: np.ndarray,
    mode: str,
    param: float,
    clip_pct: float,
    mean_level: float,
    iters: int = 24,
) -> np.ndarray:
    """Map intensity to 8-bit grey levels with dynamic-range compression and automatic gain.

    ``mode="log"``: a window of ``param`` dB (``y = (dB - top)/param + 1``).
    ``mode="power"``: amplitude normalised by its ``clip_pct`` percentile, raised to ``param``
    (< 1 compresses). In both, the display gain (window top / multiplier) is chosen by bisection
    so that the mean grey level equals ``mean_level`` (in [0, 1]); this automatic gain control
    with a random set point removes brightness as a class cue. Values are clipped to [0, 1].

    Returns:
        ``uint8`` array of the same shape.
    """
    amp = np.sqrt(np.maximum(intensity, 0.0))
    ref = np.percentile(amp, clip_pct) + 1e-12
    if mode == "log":
        v = 20 * np.log10(amp / ref + 1e-6) / param  # 0 at the clip percentile

        def mapped(t: float) -> np.ndarray:
            return np.clip(v + t, 0.0, 1.0)

        lo, hi = -float(v.max()), 1.0 - float(v.min())
    elif mode == "power":
        v = (amp / ref) ** param

        def mapped(t: float) -> np.ndarray:
            return np.clip(v * np.exp(t), 0.0, 1.0)

        lo, hi = -30.0, 30.0
    else:
        raise ValueError(f"unknown mapping mode {mode!r}")
    for _ in range(iters):
        mid = 0.5 * (lo + hi)
        lo, hi = (mid, hi) if mapped(mid).mean() < mean_level else (lo, mid)
    return np.round(mapped(0.5 * (lo + hi)) * 255).astype(np.uint8)
