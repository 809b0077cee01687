"""The few-shot split protocol and its JSON cache.

Protocol (the authors' dataset readers on Dassl; PROTOCOL.md#split-random-call-order), with one
random stream seeded by the run seed:

1. ``split_trainval(trainval, p_val)``: per class, ``round(n * p_val)`` shuffled items go to the
   val pool, the rest to train. For a dataset without a test split (SAR-ACD) the val pool is also
   the test set.
2. ``generate_fewshot_dataset(train, K)``; 3. ``generate_fewshot_dataset(val, min(K, 10))``.

The stream is a private ``random.Random(seed)``, which yields exactly what ``random.seed(seed)``
followed by the same calls on the global ``random`` module yields (what Dassl's ``train.py`` does),
without depending on, or disturbing, the global state. ``seed < 0`` means unseeded (Dassl) and
is never cached.

Splits are cached as JSON under ``<cache>/splits/`` (``RUN.CACHE_DIR``, else ``$SARJEPA_CACHE``,
else ``~/.cache/sarjepa``), keyed by dataset, dataset folder, a fingerprint of the listing
(relative paths, labels, file sizes), shots, seed and p_val. Nothing is written inside a dataset
folder and nothing is pickled.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import random
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from sarjepa.benchmark.core.errors import SarjepaError
from sarjepa.benchmark.core.io import atomic_write_json
from sarjepa.benchmark.datasets.base import Datum, generate_fewshot_dataset, split_trainval
from sarjepa.benchmark.datasets.listing import Listing, fingerprint

log = logging.getLogger("sarjepa.datasets")

SPLIT_FORMAT = "sarjepa-split/1"
VAL_SHOTS_CAP = 10  # the authors' readers: val few-shot = min(K, 10)


@dataclass(frozen=True)
class SplitSpec:
    """What determines a split.

    Attributes:
        dataset: registered dataset name.
        dataset_dir: the dataset folder (relative paths are relative to it).
        num_shots: K training images per class (< 1 = all).
        seed: run seed (< 0 = unseeded, not cached).
        p_val: fraction of each class of the train-val pool that becomes the val pool.
        test_from_val: no test split on disk: the val pool is the test set (SAR-ACD).
        strict_shots: a class with fewer than K training images is an error, not a warning.
        val_cap: cap on the val few-shot size, min(K, val_cap).
    """

    dataset: str
    dataset_dir: str
    num_shots: int
    seed: int
    p_val: float
    test_from_val: bool = False
    strict_shots: bool = False
    val_cap: int = VAL_SHOTS_CAP


def fewshot_protocol(
    trainval: Sequence[Datum],
    test: Sequence[Datum] | None,
    num_shots: int,
    p_val: float,
    rng: random.Random | None = None,
    val_cap: int = VAL_SHOTS_CAP,
) -> tuple[list[Datum], list[Datum], list[Datum]]:
    """Train/val split then few-shot sampling, in the authors' call order.

    Args:
        trainval: the listed train-val pool (walk order).
        test: the listed test set, or ``None`` when the val pool is the test set.
        num_shots: K (< 1 = keep everything).
        p_val: val fraction per class.
        rng: random stream; ``None`` = the global ``random`` module.
        val_cap: the val pool is reduced to min(K, val_cap) per class.

    Returns:
        ``(train, val, test)`` lists in harness order.
    """
    train, val_pool = split_trainval(trainval, p_val=p_val, rng=rng)
    test_out = list(val_pool) if test is None else list(test)
    train = generate_fewshot_dataset(train, num_shots=num_shots, rng=rng)
    val = generate_fewshot_dataset(val_pool, num_shots=min(num_shots, val_cap), rng=rng)
    return list(train), list(val), test_out


def split_json_bytes(lists: dict[str, list[str]]) -> bytes:
    """Canonical bytes of ``{"train": [...], "val": [...], "test": [...]}`` (the splits file)."""
    obj = {k: list(lists[k]) for k in ("train", "val", "test")}
    return (json.dumps(obj, indent=1, ensure_ascii=False) + "\n").encode("utf-8")


def split_hash(lists: dict[str, list[str]]) -> str:
    """sha256 hex of :func:`split_json_bytes` (equals ``sha256sum`` of a ``splits`` file)."""
    return hashlib.sha256(split_json_bytes(lists)).hexdigest()


def resolve_cache_dir(value: str = "") -> Path:
    """``value`` (``RUN.CACHE_DIR``), else ``$SARJEPA_CACHE``, else ``~/.cache/sarjepa``."""
    raw = value or os.environ.get("SARJEPA_CACHE", "") or "~/.cache/sarjepa"
    return Path(os.path.expanduser(raw))


def check_cache_outside(cache_dir: Path, dataset_dir: str) -> None:
    """Refuse a cache folder inside the dataset folder (the authors cached splits there)."""
    cache = cache_dir.resolve()
    data = Path(dataset_dir).resolve()
    if cache == data or data in cache.parents:
        raise SarjepaError(
            f"cache folder '{cache_dir}' is inside the dataset folder '{dataset_dir}'; "
            "set RUN.CACHE_DIR (or $SARJEPA_CACHE) elsewhere"
        )


def cache_file(cache_dir: Path, spec: SplitSpec, data_fingerprint: str) -> Path:
    """Path of the cached split for ``spec`` and a listing fingerprint."""
    key = {
        "format": SPLIT_FORMAT,
        "dataset": spec.dataset,
        "dataset_dir": os.path.abspath(spec.dataset_dir),
        "fingerprint": data_fingerprint,
        "num_shots": spec.num_shots,
        "seed": spec.seed,
        "p_val": spec.p_val,
        "val_cap": spec.val_cap,
        "test_from_val": spec.test_from_val,
    }
    digest = hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:16]
    shots = spec.num_shots if spec.num_shots >= 1 else "all"
    return cache_dir / "splits" / f"{spec.dataset}_{shots}shots_seed{spec.seed}_{digest}.json"


def make_split(
    spec: SplitSpec,
    trainval: Listing,
    test: Listing | None,
    cache_dir: Path | None,
) -> tuple[list[Datum], list[Datum], list[Datum], dict]:
    """Return ``(train, val, test, info)`` for ``spec``, from the cache when it matches.

    ``info`` holds ``cache_file`` ("" if not cached) and ``fingerprint``. Warns (or, with
    ``spec.strict_shots``, raises) for classes with fewer than K training images.
    """
    fp = fingerprint(trainval) if test is None else fingerprint(trainval, test)
    path = None
    if cache_dir is not None and spec.seed >= 0:
        check_cache_outside(cache_dir, spec.dataset_dir)
        path = cache_file(cache_dir, spec, fp)
    lists = _load(path, trainval, test) if path is not None else None
    if lists is None:
        rng = random.Random(spec.seed) if spec.seed >= 0 else random.Random()
        lists = fewshot_protocol(
            trainval.items,
            None if test is None else test.items,
            spec.num_shots,
            spec.p_val,
            rng=rng,
            val_cap=spec.val_cap,
        )
        if path is not None:
            _save(path, spec, fp, lists, trainval, test)
    _check_shots(spec, trainval.items, lists[0])
    info = {"cache_file": str(path) if path is not None else "", "fingerprint": fp}
    return lists[0], lists[1], lists[2], info


def _rel_index(trainval: Listing, test: Listing | None) -> dict[str, Datum]:
    index = dict(zip(trainval.relpaths, trainval.items))
    if test is not None:
        index.update(zip(test.relpaths, test.items))
    return index


def _save(
    path: Path,
    spec: SplitSpec,
    fp: str,
    lists: tuple[list[Datum], list[Datum], list[Datum]],
    trainval: Listing,
    test: Listing | None,
) -> None:
    rel = {d.impath: r for r, d in _rel_index(trainval, test).items()}
    named = {k: [rel[d.impath] for d in v] for k, v in zip(("train", "val", "test"), lists)}
    payload = {
        "format": SPLIT_FORMAT,
        "dataset": spec.dataset,
        "fingerprint": fp,
        "num_shots": spec.num_shots,
        "seed": spec.seed,
        "p_val": spec.p_val,
        "val_shots": min(spec.num_shots, spec.val_cap),
        "test_from_val": spec.test_from_val,
        "split_hash": split_hash(named),
        **named,
    }
    try:
        atomic_write_json(payload, path)
    except OSError as exc:
        log.warning("could not write the split cache '%s': %s", path, exc)


def _load(
    path: Path, trainval: Listing, test: Listing | None
) -> tuple[list[Datum], list[Datum], list[Datum]] | None:
    if not path.is_file():
        return None
    try:
        with open(path, encoding="utf-8") as f:
            payload = json.load(f)
        if payload.get("format") != SPLIT_FORMAT:
            raise ValueError(f"format {payload.get('format')!r}")
        index = _rel_index(trainval, test)
        train, val, test_items = ([index[r] for r in payload[k]] for k in ("train", "val", "test"))
        return train, val, test_items
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        log.warning("ignoring an unreadable or stale split cache file '%s': rebuilding it", path)
        return None


def _check_shots(spec: SplitSpec, trainval: Sequence[Datum], train: Sequence[Datum]) -> None:
    if spec.num_shots < 1:
        return
    names = {d.label: d.classname for d in trainval}
    counts = Counter(d.label for d in train)
    short = [(names[y], counts.get(y, 0)) for y in names if counts.get(y, 0) < spec.num_shots]
    if not short:
        return
    desc = ", ".join(f"'{n}' has {c}" for n, c in short)
    msg = f"{spec.dataset}: fewer training images than {spec.num_shots} shots: {desc}"
    if spec.strict_shots:
        raise SarjepaError(f"{msg} (strict shots)")
    log.warning("%s; keeping all of them", msg)
