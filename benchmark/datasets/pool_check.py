"""Pool check: does a pretraining pool hold an image of a registered dataset's test set?

Two fingerprints per chip, both taken from the DECODED grey chip (:func:`read_gray`, the
project's one decoding policy), never from the file's bytes or name:

- **exact**: sha256 of the decoded ``(H, W)`` uint8 array and its shape. It catches renamed,
  moved and hard-linked copies and lossless re-encodes (a JPEG re-saved as PNG, BMP or TIFF, a
  colour copy of a grey chip, a 16-bit copy whose high byte is the chip), and nothing else: a
  single changed grey level gives another hash.
- **near** (lossy re-encodes): a pool chip of the same shape as a test chip whose pixels differ
  from it by less than :data:`NEAR_RMS` grey levels (root mean square over the chip) is a near
  copy. Candidates come from 16 x 16 box thumbnails (at most :data:`MAX_CANDIDATES` per pool
  chip), then both chips are decoded and compared pixel by pixel. On the public MSTAR release
  (SOC test set against its 14,671-chip pool) distinct chips of the same shape lie at least 1.31
  grey levels apart (median nearest 5.7), while a chip re-saved as JPEG at quality 95 or 75 lies
  within 0.51 (200 test chips tried). So it catches re-saves at high JPEG quality and any other
  sub-grey-level change; it does NOT catch heavier recompression (quality 50: up to 6 grey
  levels, as far as distinct chips), blur, brightness or contrast changes, resizing, crops,
  flips or rotations.

Test sets are found under a dataset root as the registered datasets read them: each folder
dataset's test split (``MSTAR_SOC/TEST``, ``New_FUSAR/Val``, ...), the whole image folder of a
dataset whose test set is drawn from its pool (``SAR_ACD/images``), and ``ROOT/test`` when the
root itself is a split ``SARFolder``. Every image file under those folders counts, whatever the
reader's extension filter.

Fingerprints are cached under the cache folder (``$SARJEPA_CACHE``, else ``~/.cache/sarjepa``;
never inside a dataset folder), keyed by each file's path, size and modification time.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image
from sarjepa.benchmark.core.errors import SarjepaError
from sarjepa.benchmark.core.images import check_high_bit, find_images, read_gray
from sarjepa.benchmark.datasets.base import DATASET_REGISTRY
from sarjepa.benchmark.datasets.fixed import FixedLabelDataset
from sarjepa.benchmark.datasets.folder import TEST_NAMES
from sarjepa.benchmark.datasets.splits import check_cache_outside, resolve_cache_dir

#: thumbnail side (cells) of the near-copy check
THUMB = 16
#: near-copy threshold: RMS pixel difference of two same-shape chips, in grey levels (0..255)
NEAR_RMS = 1.0
#: thumbnails nearer than this (grey levels RMS) are verified at full resolution: the box mean of
#: a difference is no larger than the difference, plus 0.5 for the thumbnails' rounding each
_CANDIDATE_SLACK = 1.0
#: most candidates verified per pool chip (nearest thumbnails first)
MAX_CANDIDATES = 50
_CACHE_FORMAT = "sarjepa-pool-fingerprints/1"


@dataclass(frozen=True)
class ChipSet:
    """Image files of one folder: ``name`` (e.g. ``MSTAR_SOC/TEST``), ``folder``, ``files``
    (paths relative to ``folder``, ``/`` separators, sorted)."""

    name: str
    folder: Path
    files: list[str]


@dataclass(frozen=True)
class Fingerprints:
    """Per file of a :class:`ChipSet`: ``digests`` (N,) of 32-byte sha256 values of the decoded
    chip and its shape, ``thumbs`` (N, THUMB * THUMB) float32 grey levels."""

    digests: np.ndarray
    thumbs: np.ndarray


@dataclass(frozen=True)
class Overlap:
    """A pool file holding a test image: ``kind`` is ``"exact"`` or ``"near"``; ``rms`` the
    pixel difference in grey levels (0.0 for exact)."""

    pool_file: str
    test_set: str
    test_file: str
    kind: str
    rms: float


@dataclass
class PoolCheck:
    """Result of :func:`check_pool`: the test sets compared, the pool size, the overlaps (sorted
    by pool file) and the wall time in seconds."""

    pool: Path
    test_sets: list[ChipSet]
    pool_files: int
    overlaps: list[Overlap] = field(default_factory=list)
    seconds: float = 0.0

    def overlapping_files(self, test_set: str | None = None) -> list[str]:
        """Sorted pool files with an overlap (with ``test_set`` only, if given)."""
        return sorted(
            {o.pool_file for o in self.overlaps if test_set is None or o.test_set == test_set}
        )

    def lines(self) -> list[str]:
        """One line per overlapping pool file, naming every test image it copies."""
        by: dict[str, list[Overlap]] = {}
        for o in self.overlaps:
            by.setdefault(o.pool_file, []).append(o)
        out = []
        for f in sorted(by):
            what = "; ".join(
                f"{o.test_set}/{o.test_file} ("
                + ("exact" if o.kind == "exact" else f"near, rms {o.rms:.2f}")
                + ")"
                for o in by[f]
            )
            out.append(f"{self.pool / f}: {what}")
        return out


def registered_test_sets(
    root: str | os.PathLike, datasets: list[str] | None = None
) -> list[ChipSet]:
    """The test sets of the registered datasets present under ``root``.

    Args:
        root: a dataset root (``DATASET.ROOT``), or one dataset folder with a test split.
        datasets: registered names or aliases to look for (default: all).

    Raises:
        SarjepaError: ``root`` is not a folder, a name is unknown, or a named dataset is absent.
    """
    root_p = Path(root)
    if not root_p.is_dir():
        raise SarjepaError(f"dataset root '{root}' is not a folder")
    wanted = None if datasets is None else {DATASET_REGISTRY.resolve(d) for d in datasets}
    found: list[ChipSet] = []
    for name in DATASET_REGISTRY.names():
        if wanted is not None and name not in wanted:
            continue
        cls = DATASET_REGISTRY.get(name)
        if isinstance(cls, type) and issubclass(cls, FixedLabelDataset):
            split = cls.test_split or cls.trainval_split  # no test folder: drawn from the pool
            folder = root_p / cls.folder / split
            if folder.is_dir():
                found.append(ChipSet(f"{cls.folder}/{split}", folder, _images(folder)))
            elif wanted is not None:
                raise SarjepaError(f"{name}: test folder '{folder}' not found under '{root}'")
    if wanted is None or DATASET_REGISTRY.resolve("SARFolder") in wanted:
        test = next((root_p / n for n in TEST_NAMES if (root_p / n).is_dir()), None)
        if test is not None:
            found.append(ChipSet(test.name, test, _images(test)))
    return [s for s in found if s.files]


def _images(folder: Path) -> list[str]:
    try:
        return find_images(folder)
    except SarjepaError:  # an empty test folder holds nothing to leak
        return []


def _file_key(path: Path) -> tuple[int, int]:
    st = path.stat()
    return st.st_size, st.st_mtime_ns


def fingerprint_array(gray: np.ndarray) -> tuple[bytes, np.ndarray]:
    """The two fingerprints of one decoded chip.

    Args:
        gray: (H, W) uint8 grey chip.

    Returns:
        ``(sha256 of shape and pixels, 32 bytes; (THUMB * THUMB,) float32 thumbnail)``.
    """
    h = hashlib.sha256(f"{gray.shape[0]}x{gray.shape[1]}:".encode())
    h.update(np.ascontiguousarray(gray, dtype=np.uint8).tobytes())
    thumb = Image.fromarray(gray, "L").resize((THUMB, THUMB), Image.Resampling.BOX)
    return h.digest(), np.asarray(thumb, dtype=np.float32).reshape(-1)


def _cache_path(cache_dir: Path, folder: Path, high_bit: str) -> Path:
    key = hashlib.sha256(f"{folder.resolve()}|{high_bit}|{THUMB}".encode()).hexdigest()[:20]
    return cache_dir / "pool-check" / f"{key}.npz"


def _load_cache(path: Path) -> dict[str, tuple[int, int, bytes, np.ndarray]]:
    try:
        with np.load(path, allow_pickle=False) as z:
            if str(z["format"]) != _CACHE_FORMAT:
                return {}
            return {
                str(f): (int(s), int(m), bytes(d), t)
                for f, s, m, d, t in zip(
                    z["files"], z["sizes"], z["mtimes"], z["digests"], z["thumbs"], strict=True
                )
            }
    except (OSError, ValueError, KeyError):
        return {}  # no cache or an unreadable one: recompute


def fingerprints(
    chips: ChipSet,
    high_bit: str = "shift",
    cache_dir: Path | None = None,
    progress: bool = False,
) -> Fingerprints:
    """Fingerprints of every file of ``chips``, reusing and refreshing the cache.

    Raises:
        SarjepaError: a file cannot be decoded (named), or the cache folder lies inside
            ``chips.folder``.
    """
    check_high_bit(high_bit)
    n = len(chips.files)
    digests = np.zeros(n, dtype="S32")
    thumbs = np.zeros((n, THUMB * THUMB), dtype=np.float32)
    sizes = np.zeros(n, dtype=np.int64)
    mtimes = np.zeros(n, dtype=np.int64)
    cached: dict = {}
    cache = None
    if cache_dir is not None:
        check_cache_outside(cache_dir, str(chips.folder))
        cache = _cache_path(cache_dir, chips.folder, high_bit)
        cached = _load_cache(cache)
    todo = []
    for i, rel in enumerate(chips.files):
        sizes[i], mtimes[i] = _file_key(chips.folder / rel)
        hit = cached.get(rel)
        if hit is not None and hit[:2] == (sizes[i], mtimes[i]):
            digests[i], thumbs[i] = hit[2], hit[3]
        else:
            todo.append(i)
    if todo:
        from tqdm import tqdm

        for i in tqdm(todo, desc=f"hashing {chips.name}", unit="img", disable=not progress):
            rel = chips.files[i]
            digests[i], thumbs[i] = fingerprint_array(read_gray(chips.folder / rel, high_bit))
        if cache is not None:
            from sarjepa.benchmark.core.io import atomic_numpy_save

            cache.parent.mkdir(parents=True, exist_ok=True)
            atomic_numpy_save(
                {
                    "format": np.array(_CACHE_FORMAT),
                    "files": np.array(chips.files, dtype=str),
                    "sizes": sizes,
                    "mtimes": mtimes,
                    "digests": digests,
                    "thumbs": thumbs,
                },
                cache,
            )
    return Fingerprints(digests, thumbs)


def near_pairs(
    pool: np.ndarray, test: np.ndarray, rms: float, block: int = 2048
) -> Iterator[tuple[int, np.ndarray, np.ndarray]]:
    """Per pool row, the test rows whose thumbnail lies within ``rms`` grey levels, nearest first.

    Args:
        pool: (N, D) float32 thumbnails; test: (M, D).
        rms: threshold in grey levels (root mean square over the D cells).
        block: pool rows per distance block (memory: block * M float64).

    Yields:
        ``(pool index, test indices (K,), rms distances (K,))`` for pool rows with K >= 1,
        pool index ascending, at most :data:`MAX_CANDIDATES` per row.
    """
    if not len(pool) or not len(test):
        return
    t = test.astype(np.float64)
    t2 = (t * t).sum(1)
    limit = rms * rms * t.shape[1]
    for start in range(0, len(pool), block):
        p = pool[start : start + block].astype(np.float64)
        d2 = (p * p).sum(1)[:, None] + t2[None, :] - 2.0 * p @ t.T
        for r in np.flatnonzero((d2 < limit).any(1)):
            j = np.flatnonzero(d2[r] < limit)
            order = np.argsort(d2[r, j], kind="stable")[:MAX_CANDIDATES]
            j = j[order]
            yield start + int(r), j, np.sqrt(np.maximum(d2[r, j], 0.0) / t.shape[1])


def _near_copy(
    pool_file: Path, test_files: list[Path], rms: float, high_bit: str, decoded: dict
) -> tuple[int, float] | None:
    """The first of ``test_files`` (nearest thumbnails first) of the same shape as
    ``pool_file`` within ``rms`` grey levels, as ``(index, rms)``; ``decoded`` caches arrays."""

    def gray(path: Path) -> np.ndarray:
        if path not in decoded:
            decoded[path] = read_gray(path, high_bit).astype(np.float32)
        return decoded[path]

    a = gray(pool_file)
    for k, f in enumerate(test_files):
        b = gray(f)
        if b.shape == a.shape:
            d = float(np.sqrt(np.mean((a - b) ** 2)))
            if d < rms:
                return k, d
    return None


def check_pool(
    pool: str | os.PathLike,
    root: str | os.PathLike,
    datasets: list[str] | None = None,
    near_rms: float | None = NEAR_RMS,
    high_bit: str = "shift",
    cache_dir: str | os.PathLike | None = "",
    progress: bool = False,
) -> PoolCheck:
    """Compare the chips under ``pool`` with the registered test sets under ``root``.

    Args:
        pool: the pretraining folder (searched recursively).
        root: the dataset root holding the test sets (see :func:`registered_test_sets`).
        datasets: only these registered datasets (default: every one found).
        near_rms: near-copy threshold (RMS pixel difference, grey levels); ``None`` checks exact
            copies only.
        high_bit: decoding of 16-bit / float files (see :mod:`benchmark.core.images`).
        cache_dir: fingerprint cache (``""``: ``$SARJEPA_CACHE`` or ``~/.cache/sarjepa``;
            ``None``: no cache).
        progress: tqdm bars on stderr while decoding.

    Raises:
        SarjepaError: no test set under ``root``, an unreadable image (named), a bad folder.
    """
    import time

    t0 = time.perf_counter()
    pool_p = Path(pool)
    sets = registered_test_sets(root, datasets)
    if not sets:
        names = ", ".join(DATASET_REGISTRY.names())
        raise SarjepaError(f"no test set of a registered dataset ({names}) found under '{root}'")
    cache = None if cache_dir is None else resolve_cache_dir(str(cache_dir))
    if cache is not None:
        check_cache_outside(cache, str(pool_p))
    pool_set = ChipSet(pool_p.name or str(pool_p), pool_p, find_images(pool_p))
    pf = fingerprints(pool_set, high_bit, cache, progress)
    result = PoolCheck(pool_p, sets, len(pool_set.files))
    for s in sets:
        tf = fingerprints(s, high_bit, cache, progress)
        index: dict[bytes, int] = {}
        for j, d in enumerate(tf.digests.tolist()):
            index.setdefault(d, j)
        exact = set()
        for i, d in enumerate(pf.digests.tolist()):
            j = index.get(d)
            if j is not None:
                exact.add(i)
                result.overlaps.append(Overlap(pool_set.files[i], s.name, s.files[j], "exact", 0.0))
        if near_rms is not None:
            decoded: dict[Path, np.ndarray] = {}
            cands = near_pairs(pf.thumbs, tf.thumbs, float(near_rms) + _CANDIDATE_SLACK)
            for i, js, _d in cands:
                if i in exact:
                    continue
                paths = [s.folder / s.files[j] for j in js]
                hit = _near_copy(pool_p / pool_set.files[i], paths, near_rms, high_bit, decoded)
                if hit is not None:
                    k, dist = hit
                    result.overlaps.append(
                        Overlap(pool_set.files[i], s.name, s.files[js[k]], "near", dist)
                    )
                if len(decoded) > 4096:
                    decoded.clear()
    result.overlaps.sort(key=lambda o: (o.pool_file, o.test_set))
    result.seconds = time.perf_counter() - t0
    return result
