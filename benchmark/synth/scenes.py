"""Per-class target geometry of the synthetic SAR sets (metres, target frame).

Each builder adds the scatterers of one class to a :class:`benchmark.synth.physics.Builder`.
Classes of a
family share parts (hulls, road wheels, turrets; ship hulls and superstructures; fuselages, wings,
engines) and differ in their arrangement, proportions and the parts they carry, so that they are
told apart by shape. Dimensions follow the real vehicles, ships and aircraft loosely. ``r`` is the
chip's random generator (small articulations and size spread).
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
from sarjepa.benchmark.synth.physics import Builder

Rng = np.random.Generator


# ----------------------------------------------------------------------------- ground vehicles
def _hull(b: Builder, length, width, height, bow=0.0, bow_frac=0.45):
    hl, hw = length / 2, width / 2
    if bow <= 0:
        return b.box(0, 0, length, width, height, edge=0.5, area=0.015, corner=1.5, dihedral=1.2)
    fw = hw * bow_frac
    pts = [[-hl, -hw], [hl - bow, -hw], [hl, -fw], [hl, fw], [hl - bow, hw], [-hl, hw]]
    return b.polygon(pts, height, edge=0.5, area=0.015, corner=1.5, dihedral=1.2)


def _road_wheels(b: Builder, xs, width, z=0.45, amp=1.4):
    xs = np.asarray(xs, float)
    for side in (-1, 1):
        b.points(xs, side * width / 2, z, amp)


def _tracks(b: Builder, length, width, n):
    _road_wheels(b, np.linspace(-0.38 * length, 0.38 * length, n), width, amp=0.9)


def _turret(b: Builder, x, r, z, gun=0.0, yaw=0.0, amp=1.0):
    """Round turret of radius ``r`` at ``x`` with a gun of length ``gun`` turned by ``yaw``."""
    b.ring(x, 0.0, r, z, amp)
    b.points(x, 0.0, z, 0.3 * amp)
    if gun > 0:
        p0 = np.array([x + r * np.cos(yaw), r * np.sin(yaw)])
        _barrel(b, p0, p0 + gun * np.array([np.cos(yaw), np.sin(yaw)]), z - 0.3)


def _barrel(b: Builder, p0, p1, z, muzzle=1.6):
    """Gun barrel: specular flash when broadside, weak diffuse return at any aspect, muzzle."""
    b.segment(p0, p1, z, 0.7, 0.2, 0.06)
    b.segment(p0, p1, z, 0.12, 0.2, 0.0, normal=np.nan)
    b.points(p1[0], p1[1], z, muzzle)


def bmp2(b: Builder, r: Rng):
    _hull(b, 6.7, 3.15, 1.9, bow=1.6, bow_frac=0.8)
    _tracks(b, 6.7, 3.15, 6)
    _turret(b, 0.4, 0.95, 2.45, gun=2.6, yaw=r.normal(0, 0.05))


def btr70(b: Builder, r: Rng):
    _hull(b, 7.5, 2.8, 2.0, bow=2.0, bow_frac=0.3)
    _road_wheels(b, [-2.5, -1.1, 0.6, 2.0], 2.8, amp=2.0)
    _turret(b, 1.0, 0.5, 2.4, gun=1.0, yaw=r.normal(0, 0.1))


def t72(b: Builder, r: Rng):
    _hull(b, 6.9, 3.6, 1.7)
    _tracks(b, 6.9, 3.6, 6)
    _turret(b, -0.4, 1.5, 2.2, gun=6.0, yaw=r.normal(0, 0.04))
    b.points([-3.6, -3.6], [-0.8, 0.8], 1.2, 2.0)  # external fuel drums at the rear


def btr60(b: Builder, r: Rng):
    _hull(b, 7.6, 2.8, 2.3, bow=1.2, bow_frac=0.5)
    _road_wheels(b, [-2.8, -1.6, 0.4, 1.6], 2.8, amp=2.0)
    _turret(b, 1.8, 0.55, 2.7, gun=1.2, yaw=r.normal(0, 0.1))
    b.box(-2.6, 0.0, 1.6, 2.4, 2.45, edge=0.6, corner=1.2, dihedral=0.0)  # engine deck louvres


def sp2s1(b: Builder, r: Rng):
    _hull(b, 7.3, 2.85, 1.6, bow=0.8, bow_frac=0.8)
    _tracks(b, 7.3, 2.85, 7)
    b.box(-1.4, 0.0, 2.8, 2.5, 2.7, edge=0.7, corner=2.0, dihedral=0.0)
    yaw = r.normal(0, 0.04)
    p0 = np.array([0.0, 0.0])
    p1 = p0 + 4.3 * np.array([np.cos(yaw), np.sin(yaw)])
    _barrel(b, p0, p1, 2.3, muzzle=2.2)


def brdm2(b: Builder, r: Rng):
    _hull(b, 5.75, 2.35, 1.9, bow=1.5, bow_frac=0.6)
    _road_wheels(b, [-1.6, 1.6], 2.35, amp=2.4)
    _turret(b, 0.2, 0.55, 2.3, gun=1.0, yaw=r.normal(0, 0.1))


def d7(b: Builder, r: Rng):
    b.box(-0.4, 0.0, 4.2, 2.4, 2.0, edge=0.5, corner=1.5, dihedral=1.0)  # engine and body
    b.box(-1.3, 0.0, 1.6, 2.0, 3.1, edge=0.3, area=0.0, corner=2.5, dihedral=0.0)  # ROPS cab
    _road_wheels(b, np.linspace(-2.2, 1.4, 5), 3.3, z=0.3, amp=0.8)  # wide tracks
    b.segment((2.6, -1.9), (2.6, 1.9), 1.0, 3.0, 0.15, 0.05, False, normal=0.0)  # blade face
    b.segment((2.6, -1.9), (2.6, 1.9), 1.0, 1.5, 0.15, 0.05, False, normal=np.pi)
    b.footprints.append((np.array([[2.4, -1.9], [2.8, -1.9], [2.8, 1.9], [2.4, 1.9]]), 1.4))
    b.points([-3.0, -3.0], [-0.5, 0.5], 0.6, 1.8)  # ripper shanks


def t62(b: Builder, r: Rng):
    _hull(b, 6.6, 3.3, 1.6)
    _road_wheels(b, [-2.4, -1.5, -0.6, 0.6, 1.5], 3.3, amp=0.9)
    _turret(b, 0.4, 1.35, 2.3, gun=5.3, yaw=r.normal(0, 0.04))
    b.points(1.5, 1.0, 2.2, 2.2)  # searchlight


def zil131(b: Builder, r: Rng):
    b.box(2.4, 0.0, 2.2, 2.5, 2.5, edge=0.6, corner=1.8, dihedral=1.0)  # cab
    b.box(-1.1, 0.0, 4.0, 2.5, 2.7, edge=0.8, area=0.03, corner=2.5, dihedral=1.4)  # cargo box
    _road_wheels(b, [2.6, -0.7, -2.1], 2.5, z=0.55, amp=2.2)


def zsu234(b: Builder, r: Rng):
    _hull(b, 6.5, 3.1, 1.8)
    _tracks(b, 6.5, 3.1, 6)
    b.box(0.0, 0.0, 2.6, 2.9, 2.6, edge=0.6, corner=1.6, dihedral=0.0)
    yaw = r.normal(0, 0.05)
    for dy in (-1.0, -0.7, 0.7, 1.0):
        p0 = np.array([1.3, dy])
        p1 = p0 + 2.2 * np.array([np.cos(yaw), np.sin(yaw)])
        _barrel(b, p0, p1, 2.4, muzzle=0.8)
    b.ring(-1.0, 0.0, 0.6, 3.6, 1.2, n=10, footprint=False)  # radar dish
    b.points(-1.0, 0.0, 3.6, 2.5)


VEHICLES: dict[str, Callable[[Builder, Rng], None]] = {
    "BMP2": bmp2,
    "BTR70": btr70,
    "T72": t72,
    "BTR60": btr60,
    "2S1": sp2s1,
    "BRDM2": brdm2,
    "D7": d7,
    "T62": t62,
    "ZIL131": zil131,
    "ZSU234": zsu234,
}


# ----------------------------------------------------------------------------------- ships
def _ship_hull(b: Builder, length, beam, freeboard, bow=0.22, stern=0.0, spacing=1.0):
    hl, hb = length / 2, beam / 2
    xb = hl - bow * length
    pts = [[-hl, -hb * (1 - stern)], [xb, -hb], [hl, 0.0], [xb, hb], [-hl, hb * (1 - stern)]]
    b.polygon(pts, freeboard, edge=0.6, area=0.03, corner=2.0, dihedral=1.5, spacing=spacing)


def cargo(b: Builder, r: Rng):
    L = r.uniform(110, 170)
    B = L / 6.5
    _ship_hull(b, L, B, 10.0, spacing=1.5)
    b.box(-0.38 * L, 0, 0.1 * L, 0.85 * B, 28.0, edge=1.5, corner=6.0, dihedral=0, spacing=1.5)
    n = int(r.integers(5, 8))
    for x in np.linspace(-0.28 * L, 0.3 * L, n):  # hatch coamings
        b.segment((x, -0.4 * B), (x, 0.4 * B), 12.0, 1.2, 1.0, 0.1)
    b.points(np.linspace(-0.2 * L, 0.25 * L, n - 1), 0.0, 20.0, 2.5)  # cranes


def tanker(b: Builder, r: Rng):
    L = r.uniform(140, 210)
    B = L / 5.5
    _ship_hull(b, L, B, 9.0, bow=0.15, spacing=1.5)
    b.box(-0.42 * L, 0, 0.08 * L, 0.9 * B, 26.0, edge=1.5, corner=6.0, dihedral=0, spacing=1.5)
    b.segment((-0.35 * L, 0), (0.4 * L, 0), 11.0, 0.8, 1.0, 0.08)  # central pipeline
    b.segment((0.0, -0.45 * B), (0.0, 0.45 * B), 12.0, 2.0, 1.0, 0.1)  # manifold
    b.points(0.0, [-0.3 * B, 0.3 * B], 14.0, 4.0)
    b.points(0.45 * L, 0.0, 12.0, 3.0)  # forecastle


def fishing(b: Builder, r: Rng):
    L = r.uniform(22, 40)
    B = L / 4.0
    _ship_hull(b, L, B, 3.0, bow=0.3, spacing=0.8)
    b.box(0.1 * L, 0, 0.25 * L, 0.7 * B, 7.0, edge=1.0, corner=3.0, dihedral=0, spacing=0.8)
    b.points(-0.15 * L, 0.0, 10.0, 5.0)  # mast and gantry
    for side in (-1, 1):  # outriggers
        b.segment((-0.1 * L, side * 0.5 * B), (-0.1 * L, side * 1.6 * B), 6.0, 1.5, 0.8, 0.1)


def other_ship(b: Builder, r: Rng):
    L = r.uniform(45, 90)
    B = L / 5.0
    _ship_hull(b, L, B, 5.0, bow=0.25, stern=0.1, spacing=1.0)
    b.box(0.18 * L, 0, 0.3 * L, 0.8 * B, 15.0, edge=1.2, corner=4.0, dihedral=0, spacing=1.0)
    b.points([-0.3 * L, -0.42 * L], [0.25 * B, -0.25 * B], 6.0, 3.0)  # deck winches


SHIPS: dict[str, Callable[[Builder, Rng], None]] = {
    "Cargo": cargo,
    "Tanker": tanker,
    "Fishing": fishing,
    "OtherShip": other_ship,
}


def bridge(b: Builder, r: Rng, half_length: float):
    """Bridge deck crossing the whole chip: railings, piers and the deck's shadow on water."""
    w = r.uniform(12, 30)
    hl = half_length
    b.box(0, 0, 2 * hl, w, 12.0, edge=1.5, area=0.5, corner=0.0, dihedral=0.0, spacing=3.5)
    for side in (-1, 1):
        b.segment((-hl, side * w / 2), (hl, side * w / 2), 13.0, 2.0, 2.0, 0.2, True)
    gap = r.uniform(30, 60)
    xs = np.arange(-hl, hl, gap) + r.uniform(0, gap)
    for side in (-1, 1):
        b.points(xs, side * w / 2, 0.0, 6.0)  # pier-water double bounce


def false_alarms(b: Builder, r: Rng):
    """A few very strong isolated scatterers (platforms, buoys, ambiguities): no hull."""
    n = int(r.integers(1, 4))
    b.points(r.normal(0, 25, n), r.normal(0, 25, n), 0.0, r.uniform(0.5, 1.0, n) * 200.0)


# -------------------------------------------------------------------------------- aircraft
def _aircraft(
    b,
    r,
    fus_len,
    fus_w,
    span,
    sweep_deg,
    chord,
    wing_x,
    eng_frac,
    tail_span,
    winglet=0.0,
    rear_engines=False,
    t_tail=False,
    rake=0.0,
):
    L = fus_len * r.uniform(0.95, 1.05)
    hl = L / 2
    b.polygon(
        [[-hl, -fus_w / 2], [hl - 3, -fus_w / 2], [hl, 0], [hl - 3, fus_w / 2], [-hl, fus_w / 2]],
        4.0,
        edge=0.5,
        area=0.02,
        corner=0.0,
        dihedral=0.8,
        spacing=0.6,
    )
    b.points([hl - 1.0, -hl + 1.0], 0.0, 3.0, [3.0, 2.0])  # radome, tail cone
    sw = np.tan(np.deg2rad(sweep_deg))
    semi = span / 2
    for s in (-1, 1):
        root_le = np.array([wing_x, s * fus_w / 2])
        tip_le = np.array([wing_x - sw * semi, s * semi])
        tip_te = tip_le + [-0.3 * chord - rake, 0]
        root_te = root_le + [-chord, 0]
        pts = [root_te, tip_te, tip_le, root_le] if s > 0 else [root_le, tip_le, tip_te, root_te]
        b.polygon(pts, 3.0, edge=0.9, area=0.01, corner=0.5, dihedral=0.0, spacing=0.8)
        if winglet:
            b.points(tip_le[0] - 0.5, tip_le[1], 3.0 + winglet, 4.0)
        if rear_engines:
            ex, ey = -0.3 * L, s * (fus_w / 2 + 1.2)
        else:
            ex, ey = wing_x - sw * eng_frac * semi + 2.0, s * eng_frac * semi
        b.ring(ex, ey, 1.0, 2.0, 1.5, n=10)
        b.points(ex + 1.0, ey, 2.0, 6.0)  # intake cavity
        tz = 8.0 if t_tail else 5.0
        t0 = np.array([-hl + 4.0, s * fus_w / 4])
        t1 = t0 + [-0.7 * tail_span * sw, s * tail_span / 2]
        b.segment(t0, t1, tz, 1.2, 0.6, 0.1, False, normal=0.0)
        b.points(t1[0], t1[1], tz, 1.5)
    b.segment((-hl + 6, 0), (-hl + 1, 0), 6.5, 1.5, 0.5, 0.1, True)  # fin
    b.points([wing_x - chord, wing_x - chord, hl - 5], [-1.5, 1.5, 0], 0.5, 2.5)  # gear


AIRCRAFT: dict[str, Callable[[Builder, Rng], None]] = {
    "A220": lambda b, r: _aircraft(b, r, 35.0, 3.7, 35.1, 25, 5.5, 2.0, 0.36, 11.0),
    "A330": lambda b, r: _aircraft(b, r, 59.0, 5.6, 60.3, 30, 9.0, 6.0, 0.34, 19.0, winglet=2),
    "ARJ21": lambda b, r: _aircraft(
        b,
        r,
        33.5,
        3.3,
        27.3,
        25,
        4.5,
        1.5,
        0.0,
        12.0,
        winglet=1.5,
        rear_engines=True,
        t_tail=True,
    ),
    "Boeing737": lambda b, r: _aircraft(b, r, 38.0, 3.8, 34.3, 25, 5.0, 2.5, 0.28, 14.0, 1.5),
    "Boeing787": lambda b, r: _aircraft(
        b, r, 57.0, 5.8, 60.1, 32, 8.5, 4.0, 0.32, 19.5, 0.0, rake=4.0
    ),
}
