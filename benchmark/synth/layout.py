"""Write the synthetic SAR sets to disk in the real datasets' folder layouts.

``generate(out, seed, scale)`` writes::

    out/MSTAR_SOC/{TRAIN,TEST}/<class>/<class>_<i>.jpeg    10 classes, 128 x 128
    out/New_FUSAR/{Train,Val}/<class>/<class>_<i>.png       10 classes, 88..232 px a side
    out/SAR_ACD/images/<class>/<class>_<i>.jpg              5 classes, 72..200 px a side
    out/pretrain/...                                        unlabeled pool, flat and nested
    out/synth.json, out/README.txt                          seed, scale, counts, version, digest

Every file is drawn from its own ``numpy`` generator seeded by ``(seed, dataset, split, class,
index)``, so the output does not depend on the order (or the number of worker processes) in which
files are made, and the same seed gives byte-identical files.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import multiprocessing
import os
import shutil
import zlib
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np
from sarjepa.benchmark import __version__
from sarjepa.benchmark.core.errors import SarjepaError, unknown
from sarjepa.benchmark.core.io import atomic_write_json
from sarjepa.benchmark.datasets.fusar import New_FUSAR
from sarjepa.benchmark.datasets.mstar import MSTAR_SOC, SOC_COUNTS
from sarjepa.benchmark.datasets.sar_acd import SAR_ACD

#: Bump when the chips change for the same seed.
GENERATOR_VERSION = 1
FORMAT = "sarjepa-synth/1"

# The class names and their order are the readers' label maps (one source of truth).
MSTAR_CLASSES = tuple(sorted(MSTAR_SOC.labels, key=MSTAR_SOC.labels.get))
FUSAR_CLASSES = tuple(sorted(New_FUSAR.labels, key=New_FUSAR.labels.get))
ACD_CLASSES = tuple(sorted(SAR_ACD.labels, key=SAR_ACD.labels.get))
FUSAR_SCENES = (
    "Bridges",
    "CoastalLands_island",
    "LandPatches",
    "SeaClutterWaves",
    "SeaPatches",
    "StrongFalseAlarms",
)
CLUTTER_KINDS = ("grass", "sea", "land", "coast", "apron")
OUTPUTS = ("MSTAR_SOC", "New_FUSAR", "SAR_ACD", "pretrain", "synth.json", "README.txt")

# Real MSTAR SOC per-class counts (17 deg train / 15 deg test): 2747 / 2425 chips.
_MSTAR_FULL = SOC_COUNTS
#: Per scale: MSTAR (train, test) per class, FUSAR (train, val) per class, SAR-ACD per class,
#: pretraining pool size.
SCALES: dict[str, dict] = {
    "tiny": {"mstar": (12, 8), "fusar": (12, 6), "acd": 30, "pool": 60},
    "small": {"mstar": (50, 40), "fusar": (40, 30), "acd": 120, "pool": 1500},
    "full": {"mstar": _MSTAR_FULL, "fusar": (320, 80), "acd": 600, "pool": 20000},
    # `sarjepa demo`: the small MSTAR-like training set with a larger test set (150 per class:
    # with 40, one seed's accuracy had a binomial std of ~1.8 points, as large as the effects the
    # demo measures), token FUSAR / SAR-ACD sets, and a pool of vehicles only (the demo
    # benchmarks vehicles; a pool of mostly ships, scenes and clutter spends the CPU budget on
    # what the benchmark never asks about).
    "demo": {"mstar": (50, 150), "fusar": (12, 6), "acd": 30, "pool": 2000, "mix": "vehicles"},
}
# Pool composition: (kind, share, sub-folder, extension); clutter-only chips sit at the top level.
_POOL = (
    ("vehicle", 0.25, "vehicles", ".jpeg"),
    ("ship", 0.2, "ships", ".png"),
    ("scene", 0.15, "scenes", ".png"),
    ("aircraft", 0.2, "aircraft", ".jpg"),
    ("clutter", 0.2, "", ".png"),
)


#: Pool compositions by name; a scale's ``"mix"`` picks one (default ``"mixed"``).
POOL_MIXES = {"mixed": _POOL, "vehicles": (("vehicle", 1.0, "vehicles", ".jpeg"),)}


def _key(text: str) -> int:
    return zlib.crc32(text.encode())


def file_rng(seed: int, *parts: str | int) -> np.random.Generator:
    """Generator of one file, seeded by the run seed and the file's identity (order-free)."""
    ints = [p if isinstance(p, int) else _key(p) for p in parts]
    return np.random.default_rng([int(seed), *ints])


def plan(seed: int, scale: str) -> list[tuple]:
    """All files to write: ``(relpath, seed_parts, family, class, size, depression)``.

    ``size`` is ``(lo, hi)`` for random rows/columns or an exact ``(rows, cols)`` when
    ``lo == hi``; ``depression`` is a fixed angle or a ``(lo, hi)`` range (degrees).
    """
    if scale not in SCALES:
        raise unknown("synth scale", scale, SCALES)
    sc = SCALES[scale]
    jobs: list[tuple] = []
    for cls in MSTAR_CLASSES:
        n_tr, n_te = sc["mstar"][cls] if isinstance(sc["mstar"], dict) else sc["mstar"]
        for split, n, dep in (("TRAIN", n_tr, 17.0), ("TEST", n_te, 15.0)):
            for i in range(n):
                rel = f"MSTAR_SOC/{split}/{cls}/{cls}_{i:05d}.jpeg"
                jobs.append((rel, ("MSTAR_SOC", split, cls, i), "vehicle", cls, (128, 128), dep))
    for cls in FUSAR_CLASSES:
        for split, n in zip(("Train", "Val"), sc["fusar"]):
            for i in range(n):
                rel = f"New_FUSAR/{split}/{cls}/{cls}_{i:05d}.png"
                jobs.append((rel, ("New_FUSAR", split, cls, i), "fusar", cls, (88, 232), (35, 60)))
    for cls in ACD_CLASSES:
        for i in range(sc["acd"]):
            rel = f"SAR_ACD/images/{cls}/{cls}_{i:05d}.jpg"
            jobs.append((rel, ("SAR_ACD", "images", cls, i), "aircraft", cls, (72, 200), (35, 60)))
    jobs.extend(_pool_plan(sc["pool"], POOL_MIXES[sc.get("mix", "mixed")]))
    return jobs


def _pool_plan(total: int, mix: tuple = _POOL) -> list[tuple]:
    jobs = []
    counts = [int(round(share * total)) for _, share, _, _ in mix]
    counts[-1] = total - sum(counts[:-1])
    for (kind, _, folder, ext), n in zip(mix, counts):
        for i in range(n):
            ident = ("pretrain", kind, "", i)
            pick = file_rng(0, *ident).integers(0, 1 << 30)  # class choice, fixed across seeds
            if kind == "vehicle":
                cls = MSTAR_CLASSES[pick % 10]
                job = ("vehicle", cls, (128, 128) if pick % 3 else (96, 192), (15, 20))
            elif kind == "ship":
                cls = ("Cargo", "Fishing", "OtherShip", "Tanker")[pick % 4]
                job = ("fusar", cls, (88, 232), (35, 60))
            elif kind == "scene":
                cls = FUSAR_SCENES[pick % len(FUSAR_SCENES)]
                job = ("fusar", cls, (88, 232), (35, 60))
            elif kind == "aircraft":
                cls = ACD_CLASSES[pick % 5]
                job = ("aircraft", cls, (72, 200), (35, 60))
            else:
                cls = CLUTTER_KINDS[pick % len(CLUTTER_KINDS)]
                job = ("clutter", cls, (64, 256), 30.0)
            if kind == "scene":
                rel = f"pretrain/{folder}/{cls.lower()}/{kind}_{i:05d}{ext}"
            elif folder:
                rel = f"pretrain/{folder}/{kind}_{i:05d}{ext}"
            else:
                rel = f"pretrain/{kind}_{cls}_{i:05d}{ext}"
            jobs.append((rel, ident, *job))
    return jobs


def render_job(seed: int, job: tuple) -> np.ndarray:
    """The 8-bit chip of one planned file (pure function of ``seed`` and ``job``)."""
    from sarjepa.benchmark.synth.chips import make_chip

    _, ident, family, cls, size, dep = job
    rng = file_rng(seed, *ident)
    lo, hi = size
    shape = (lo, hi)
    if lo != hi:
        shape = (int(rng.integers(lo, hi + 1)), int(rng.integers(lo, hi + 1)))
    depression = float(dep) if np.isscalar(dep) else float(rng.uniform(*dep))
    return make_chip(rng, family, cls, shape, depression)


def save_chip(path: Path, chip: np.ndarray) -> None:
    """Write a uint8 chip with fixed encoder settings (JPEG quality 95, PNG level 6)."""
    from PIL import Image

    path.parent.mkdir(parents=True, exist_ok=True)
    img = Image.fromarray(chip)
    if path.suffix in (".jpg", ".jpeg"):
        img.save(path, format="JPEG", quality=95, subsampling=0, optimize=False)
    else:
        img.save(path, format="PNG", compress_level=6, optimize=False)


def _work(args: tuple) -> tuple[str, str, tuple[int, int]]:
    out, seed, job = args
    chip = render_job(seed, job)
    path = Path(out) / job[0]
    save_chip(path, chip)
    return job[0], hashlib.sha256(path.read_bytes()).hexdigest(), chip.shape


def _one_blas_thread():
    """Context limiting BLAS to one thread: the products are small, and threads contend."""
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:  # pragma: no cover - scikit-learn brings it
        return contextlib.nullcontext()
    return threadpool_limits(1)


def _init_worker() -> None:
    _one_blas_thread()  # stays in force for the worker's life


def check_out_dir(out: Path, force: bool) -> None:
    """Refuse a non-empty folder that is not a previous synth output (unless ``force``)."""
    if out.exists() and not out.is_dir():
        raise SarjepaError(f"synth output '{out}' exists and is not a folder")
    if not out.exists() or not any(out.iterdir()) or force:
        return
    meta = out / "synth.json"
    try:
        ok = json.loads(meta.read_text(encoding="utf-8")).get("format") == FORMAT
    except (OSError, ValueError, AttributeError):
        ok = False
    if not ok:
        raise SarjepaError(
            f"synth output folder '{out}' is not empty and holds no previous synth output "
            "(no valid synth.json); choose an empty folder or pass --force"
        )


def generate(
    out: str | os.PathLike,
    seed: int = 0,
    scale: str = "small",
    force: bool = False,
    workers: int = 0,
    progress: bool | None = None,
) -> dict:
    """Write all synthetic sets under ``out``; returns the metadata written to synth.json.

    Args:
        out: output folder (created). A non-empty folder must be a previous synth output unless
            ``force``; our own sub-folders and metadata files are replaced, nothing else is
            touched.
        seed: run seed (any non-negative int); the same seed gives byte-identical files.
        scale: ``tiny`` | ``small`` | ``full`` | ``demo`` (see :data:`SCALES`).
        workers: processes (0 = one per CPU core, 1 = in this process); the output does not
            depend on it.
        progress: tqdm bar; None = only on a terminal.
    """
    from tqdm import tqdm

    out = Path(out)
    if int(seed) < 0:
        raise SarjepaError(f"synth seed must be non-negative, got {seed}")
    jobs = plan(int(seed), scale)
    check_out_dir(out, force)
    out.mkdir(parents=True, exist_ok=True)
    for name in OUTPUTS:
        p = out / name
        if p.is_dir():
            shutil.rmtree(p)
        elif p.exists():
            p.unlink()
    meta = {"format": FORMAT, "complete": False, "seed": int(seed), "scale": scale}
    _write_json(out / "synth.json", meta)
    tasks = [(str(out), int(seed), job) for job in jobs]
    workers = workers if workers > 0 else (os.cpu_count() or 1)
    bar = tqdm(
        total=len(tasks),
        desc="synth",
        unit="chip",
        disable=None if progress is None else not progress,
    )
    results = []
    if workers <= 1:
        with _one_blas_thread():
            for t in tasks:
                results.append(_work(t))
                bar.update()
    else:
        # spawn, not fork: callers (the demo) may already run torch's threads
        ctx = multiprocessing.get_context("spawn")
        with ProcessPoolExecutor(workers, mp_context=ctx, initializer=_init_worker) as pool:
            for r in pool.map(_work, tasks, chunksize=16):
                results.append(r)
                bar.update()
    bar.close()
    meta = _metadata(int(seed), scale, results)
    (out / "README.txt").write_text(_readme(meta), encoding="utf-8")
    _write_json(out / "synth.json", meta)
    return meta


def _write_json(path: Path, obj: dict) -> None:
    atomic_write_json(dict(sorted(obj.items())), path, indent=2)


def _metadata(seed: int, scale: str, results: list[tuple]) -> dict:
    counts: dict = {}
    sizes: dict = {}
    digest = hashlib.sha256()
    for rel, sha, shape in sorted(results):
        parts = rel.split("/")
        ds = parts[0]
        key = "/".join(parts[1:-1]) if ds != "pretrain" else "pool"
        counts.setdefault(ds, {}).setdefault(key, 0)
        counts[ds][key] += 1
        lo, hi = sizes.get(ds, (10**9, 0))
        sizes[ds] = (min(lo, *shape), max(hi, *shape))
        digest.update(f"{rel}\0{sha}\n".encode())
    return {
        "format": FORMAT,
        "complete": True,
        "seed": seed,
        "scale": scale,
        "generator_version": GENERATOR_VERSION,
        "code_version": __version__,
        "total_files": len(results),
        "counts": counts,
        "chip_side_px": {k: {"min": v[0], "max": v[1]} for k, v in sizes.items()},
        "content_sha256": digest.hexdigest(),
    }


def _readme(meta: dict) -> str:
    lines = [
        "Synthetic SAR chips written by `sarjepa synth` (not real data).",
        "",
        f"seed: {meta['seed']}   scale: {meta['scale']}   files: {meta['total_files']}",
        f"generator version: {meta['generator_version']}   sarjepa {meta['code_version']}",
        f"content sha256: {meta['content_sha256']}",
        f"regenerate: sarjepa synth --out DIR --seed {meta['seed']} --scale {meta['scale']}",
        "",
        "Layouts match the real sets: MSTAR_SOC/{TRAIN,TEST}/<class>/*.jpeg (128 x 128),",
        "New_FUSAR/{Train,Val}/<class>/*.png and SAR_ACD/images/<class>/*.jpg (varied sizes),",
        "pretrain/ (unlabeled, nested folders). Per class a fixed arrangement of point and",
        "extended scatterers is rotated to a random aspect, shifted, placed on clutter with its",
        "radar shadow, multiplied by Gamma speckle and mapped to 8 bits with dynamic-range",
        "compression and a random gain. Counts per folder:",
        "",
    ]
    for ds, per in meta["counts"].items():
        for key, n in per.items():
            lines.append(f"  {ds}/{key}: {n}")
    return "\n".join(lines) + "\n"
