"""Assemble one synthetic SAR chip: background clutter, target, shadow, speckle, 8-bit mapping.

Families follow the real sets: ``vehicle`` (MSTAR-like, 0.2 m pixels, X-band spotlight, 17 deg
depression for training chips and 15 deg for test chips), ``fusar`` (GF-3-like, 2.5 m pixels,
ships and sea/land scenes) and ``aircraft`` (SAR-ACD-like, 1 m pixels, airport apron), plus
``clutter`` (target-free scenes) for the pretraining pool. Every random choice comes from the
generator passed in, so a chip is a pure function of its seed.
"""

from __future__ import annotations

import numpy as np
from sarjepa.benchmark.synth import physics as S
from sarjepa.benchmark.synth.scenes import AIRCRAFT, SHIPS, VEHICLES, bridge, false_alarms

Rng = np.random.Generator


def _sea(rng: Rng, shape, rough: float) -> np.ndarray:
    swell = S.waves(shape, rng.uniform(6, 25), rng.uniform(0, np.pi), rough, rng.uniform(0, 6.3))
    return swell * S.texture(rng, shape, rng.uniform(1.5, 5), rng.uniform(0.1, 0.3))


def _grass(rng: Rng, shape) -> np.ndarray:
    return S.texture(rng, shape, rng.uniform(1.0, 3.0), rng.uniform(0.1, 0.3))


def _parcels(rng: Rng, shape, cell_px: float) -> np.ndarray:
    """Fields of different backscatter in a rotated grid, with texture (agricultural land)."""
    r, c = np.mgrid[0 : shape[0], 0 : shape[1]]
    a = rng.uniform(0, np.pi)
    u = np.floor((c * np.cos(a) + r * np.sin(a)) / cell_px).astype(int)
    v = np.floor((-c * np.sin(a) + r * np.cos(a)) / (cell_px * rng.uniform(0.5, 1.5))).astype(int)
    table = np.exp(rng.normal(0, 0.8, (64, 64)))
    return table[u % 64, v % 64] * S.texture(rng, shape, rng.uniform(1, 3), 0.4)


def _land_sea(rng: Rng, shape, land_level: float) -> np.ndarray:
    """Coastline (or island): bright textured land on one side of a wiggly boundary."""
    rows, cols = shape
    r, c = np.mgrid[0:rows, 0:cols]
    size = float(max(shape))
    wiggle = S.smooth_field(rng, shape, rng.uniform(8, 20)) * rng.uniform(0.05, 0.15) * size
    if rng.random() < 0.35:  # island
        d = rng.uniform(0.15, 0.35) * size - np.hypot(r - rows / 2, c - cols / 2) + wiggle
    else:
        a = rng.uniform(0, 2 * np.pi)
        d = (c - cols / 2) * np.cos(a) + (r - rows / 2) * np.sin(a)
        d = d + rng.uniform(-0.25, 0.25) * size + wiggle
    land = _parcels(rng, shape, rng.uniform(10, 30)) * land_level
    return np.where(d > 0, land, _sea(rng, shape, rng.uniform(0.0, 0.3)))


def _apron(rng: Rng, shape) -> np.ndarray:
    bg = S.texture(rng, shape, rng.uniform(2, 6), rng.uniform(0.1, 0.3))
    if rng.random() < 0.3:  # grass strip beside the concrete
        r, c = np.mgrid[0 : shape[0], 0 : shape[1]]
        a = rng.uniform(0, 2 * np.pi)
        d = (c - shape[1] / 2) * np.cos(a) + (r - shape[0] / 2) * np.sin(a)
        bg = np.where(d > rng.uniform(0.3, 0.5) * min(shape), bg * rng.uniform(1.5, 4), bg)
    return bg


def _render(
    rng: Rng,
    builder: S.Builder,
    shape: tuple[int, int],
    px_m: float,
    depression: float,
    res_px: float = 1.4,
    taper_px: float = 12.0,
    shift_px: float = 4.0,
    scale_spread: float = 0.04,
    key: str = "",
) -> tuple[np.ndarray, np.ndarray]:
    """Render the built target at a random aspect, shift and size (``(intensity, height)``).

    ``key`` (the class name) switches on the class's fixed aspect-glint pattern.
    """
    tgt = builder.build(rng, scint=0.1)
    k = rng.uniform(1 - scale_spread, 1 + scale_spread)
    tgt.x, tgt.y, tgt.z = tgt.x * k, tgt.y * k, tgt.z * k
    tgt.footprints = [(p * k, h * k) for p, h in tgt.footprints]
    centre = (
        shape[0] / 2 + rng.uniform(-shift_px, shift_px),
        shape[1] / 2 + rng.uniform(-shift_px, shift_px),
    )
    aspect = rng.uniform(0, 2 * np.pi)
    if key:
        tgt.amp = tgt.amp * S.aspect_glint(tgt.amp.size, aspect, key, depth=0.3)
    return S.render_target(tgt, shape, px_m, aspect, centre, depression, res_px, taper_px)


def _compose(rng: Rng, bg, target_img, height, px_m, depression, tcr_db):
    """Clutter under the target's shadow and footprint is darkened; target added at ``tcr_db``."""
    shadow = S.cast_shadow(height, px_m, depression)
    ground = bg * np.where(shadow, rng.uniform(0.02, 0.12), 1.0) * np.where(height > 0, 0.3, 1.0)
    return ground + target_img * 10 ** (tcr_db / 10)


def _vehicle(rng: Rng, cls: str, shape, depression: float) -> np.ndarray:
    b = S.Builder()
    VEHICLES[cls](b, rng)
    img, h = _render(rng, b, shape, 0.2, depression, shift_px=2.0, key=cls)
    return _compose(rng, _grass(rng, shape), img, h, 0.2, depression, rng.uniform(20, 30))


def _aircraft(rng: Rng, cls: str, shape, depression: float) -> np.ndarray:
    b = S.Builder()
    AIRCRAFT[cls](b, rng)
    img, h = _render(rng, b, shape, 1.0, depression, res_px=1.2, shift_px=3.0, key=cls)
    return _compose(rng, _apron(rng, shape), img, h, 1.0, depression, rng.uniform(14, 24))


def _clutter(rng: Rng, kind: str, shape, depression: float) -> np.ndarray:
    if kind == "sea":
        return _sea(rng, shape, rng.uniform(0, 1.0))
    if kind == "land":
        return _parcels(rng, shape, rng.uniform(8, 40))
    if kind == "coast":
        return _land_sea(rng, shape, rng.uniform(4, 20))
    if kind == "apron":
        return _apron(rng, shape)
    if kind == "grass":
        return _grass(rng, shape)
    raise ValueError(f"unknown clutter kind {kind!r}")


def _fusar(rng: Rng, cls: str, shape, depression: float) -> np.ndarray:
    px = 2.5
    b = S.Builder()
    if cls in SHIPS:
        SHIPS[cls](b, rng)
        img, h = _render(rng, b, shape, px, depression, 1.3, shift_px=3.0, scale_spread=0, key=cls)
        sea = _sea(rng, shape, rng.uniform(0.0, 0.4))
        return _compose(rng, sea, img, h, px, depression, rng.uniform(8, 18))
    if cls == "SeaPatches":
        return _sea(rng, shape, rng.uniform(0.0, 0.25))
    if cls == "SeaClutterWaves":  # a strong swell crossed by a second one
        second = S.waves(
            shape,
            rng.uniform(8, 30),
            rng.uniform(0, np.pi),
            rng.uniform(0.2, 0.6),
            rng.uniform(0, 6.3),
        )
        return _sea(rng, shape, rng.uniform(0.7, 1.3)) * second
    if cls == "LandPatches":
        land = _parcels(rng, shape, rng.uniform(8, 40))
        n = int(rng.integers(0, 12))  # isolated buildings
        if n:
            half = np.array(shape) * px / 2
            b.points(rng.uniform(-1, 1, n) * half[0], rng.uniform(-1, 1, n) * half[1], 0.0, 1.0)
            img, _ = _render(rng, b, shape, px, depression, shift_px=0, scale_spread=0)
            land = land + img * 10 ** (rng.uniform(10, 20) / 10)
        return land
    if cls == "CoastalLands_island":
        return _land_sea(rng, shape, rng.uniform(4, 20))
    if cls == "Bridges":
        bridge(b, rng, half_length=0.5 * np.hypot(*shape) * px + 20.0)
        img, h = _render(rng, b, shape, px, depression, shift_px=6.0, scale_spread=0)
        water = _sea(rng, shape, rng.uniform(0.0, 0.3))
        return _compose(rng, water, img, h, px, depression, rng.uniform(6, 14))
    if cls == "StrongFalseAlarms":  # untapered side lobes: long bright crosses
        false_alarms(b, rng)
        img, _ = _render(rng, b, shape, px, depression, taper_px=60.0, shift_px=6.0, scale_spread=0)
        shift = int(rng.integers(15, 40))  # azimuth ambiguities: faint copies along azimuth
        img = img + 0.02 * (np.roll(img, shift, axis=1) + np.roll(img, -shift, axis=1))
        return _sea(rng, shape, rng.uniform(0.0, 0.3)) + img * 10 ** (rng.uniform(5, 15) / 10)
    raise ValueError(f"unknown FUSAR class {cls!r}")


_FAMILIES = {"vehicle": _vehicle, "aircraft": _aircraft, "clutter": _clutter, "fusar": _fusar}


def scene_intensity(rng: Rng, family: str, cls: str, shape, depression: float) -> np.ndarray:
    """Noise-free intensity ``(rows, cols)`` (before speckle) of one chip of ``family``/``cls``."""
    if family not in _FAMILIES:
        raise ValueError(f"unknown chip family {family!r}")
    return _FAMILIES[family](rng, cls, tuple(shape), depression)


def make_chip(rng: Rng, family: str, cls: str, shape: tuple[int, int], depression: float):
    """One 8-bit chip ``(rows, cols)`` uint8: scene, Gamma speckle of L looks, random mapping.

    The scene gets a random overall gain, speckle with L in 2..6 looks (unit mean), then
    :func:`benchmark.synth.physics.to_uint8` with a random law (dB window of 25-45 dB, or amplitude
    to the
    power 0.3-0.8), clip percentile 97-99.9 and a random mean grey level (0.12-0.40), so neither
    gain nor clutter level nor dynamic range tells the class.
    """
    intensity = scene_intensity(rng, family, cls, shape, depression)
    looks = int(rng.integers(2, 7))
    intensity = S.speckle(rng, intensity * rng.uniform(0.1, 10.0), looks)
    mode = "log" if rng.random() < 0.5 else "power"
    param = rng.uniform(25, 45) if mode == "log" else rng.uniform(0.3, 0.8)
    return S.to_uint8(intensity, mode, param, rng.uniform(97.0, 99.9), rng.uniform(0.12, 0.4))
