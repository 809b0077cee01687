"""Listing labelled images in ``<split>/<class>/...`` folder trees, in the authors' order.

The authors' readers call ``os.walk`` on the split folder and sort the file names of each folder;
the class is the folder directly under the split folder, so deeper sub-folders belong to it.
They take directories in the file system's order (sorted on Windows NTFS, arbitrary on Linux);
here directories are sorted explicitly so the order does not depend on the file system, which
gives their lists only where their walk was sorted (see
PROTOCOL.md#comparability-with-the-published-runs). A folder's own files come before its
sub-folders' files (``os.walk`` is top-down).
"""

from __future__ import annotations

import hashlib
import logging
import os
from collections.abc import Callable, Collection, Iterable
from dataclasses import dataclass, field
from pathlib import PurePosixPath

from sarjepa.benchmark.core.errors import SarjepaError
from sarjepa.benchmark.core.images import IMAGE_EXTENSIONS
from sarjepa.benchmark.datasets.base import Datum

log = logging.getLogger("sarjepa.datasets")


@dataclass
class Listing:
    """Items found under one split folder.

    Attributes:
        items: labelled items in walk order.
        relpaths: item paths relative to the dataset folder, ``/`` separators (same order).
        sizes: file sizes in bytes (same order).
        skipped: relative paths of image-like files whose extension is not accepted.
    """

    items: list[Datum] = field(default_factory=list)
    relpaths: list[str] = field(default_factory=list)
    sizes: list[int] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)


def _accept(name: str, extensions: Collection[str], case_sensitive: bool) -> bool:
    ext = os.path.splitext(name)[1]
    return ext in extensions if case_sensitive else ext.lower() in extensions


def walk_files(folder: str) -> Iterable[tuple[str, list[str]]]:
    """Yield ``(dirpath, sorted file names)`` top-down with sorted sub-directories."""
    for root, dirs, files in os.walk(folder, followlinks=True):
        dirs.sort()
        yield root, sorted(files)


def class_folders(split_dir: str) -> list[str]:
    """Sorted names of the folders directly under ``split_dir``."""
    return sorted(e.name for e in os.scandir(split_dir) if e.is_dir())


def list_split(
    dataset_dir: str,
    split: str,
    extensions: Collection[str],
    label_of: Callable[[str], int | None],
    case_sensitive: bool = True,
    ignore: Collection[str] = (),
    what: str = "",
    known: Collection[str] = (),
) -> Listing:
    """List ``dataset_dir/split/<class>/**/<file>`` with an accepted extension.

    Args:
        dataset_dir: the dataset folder (as given by the user).
        split: split folder relative to ``dataset_dir`` ("" = the dataset folder itself).
        extensions: accepted extensions with the dot, e.g. ``(".jpeg",)``.
        label_of: class folder name -> label, or ``None`` for an unknown class: an error if the
            folder holds accepted images (as the authors' readers fail), else skipped.
        case_sensitive: compare extensions case-sensitively (the authors' readers do).
        ignore: class folder names to skip.
        what: how to name the expected layout in errors, e.g. ``"MSTAR_SOC/TRAIN/<class>/*.jpeg"``.
        known: the known class names, listed in the unknown-class error.

    Raises:
        SarjepaError: missing split folder, image directly in the split folder, unknown class
            folder, or a class folder without images.
    """
    exts = set(extensions) if case_sensitive else {e.lower() for e in extensions}
    split_dir = os.path.join(dataset_dir, split) if split else dataset_dir
    shown = PurePosixPath(split_dir.replace(os.sep, "/")).as_posix()
    if not os.path.isdir(split_dir):
        raise SarjepaError(f"folder not found: '{shown}' (expected layout: {what})")
    out = Listing()
    prefix = f"{split}/" if split else ""
    for name in sorted(os.listdir(split_dir)):
        path = os.path.join(split_dir, name)
        if not os.path.isdir(path):
            if _accept(name, exts, case_sensitive):
                raise SarjepaError(
                    f"image '{shown}/{name}' lies directly in the split folder; "
                    f"expected layout: {what}"
                )
            continue
        if name in ignore:
            continue
        label = label_of(name)
        if label is None:
            _reject_unknown(path, name, shown, exts, case_sensitive, known)
            continue
        before = len(out.items)
        for root, files in walk_files(path):
            sub = os.path.relpath(root, split_dir).replace(os.sep, "/")
            for f in files:
                rel = f"{prefix}{sub}/{f}"
                if not _accept(f, exts, case_sensitive):
                    if f.lower().endswith(IMAGE_EXTENSIONS):
                        out.skipped.append(rel)
                    continue
                full = os.path.join(root, f)
                out.items.append(Datum(impath=full, label=label, classname=name))
                out.relpaths.append(rel)
                out.sizes.append(_size(full))
        if len(out.items) == before:
            raise SarjepaError(
                f"class folder '{shown}/{name}' holds no images with extension "
                f"{'/'.join(sorted(extensions))} (expected layout: {what})"
            )
    if not out.items:
        raise SarjepaError(f"no images found under '{shown}' (expected layout: {what})")
    if out.skipped:
        log.warning(
            "%s: skipped %d image file(s) with other extensions than %s (e.g. '%s')",
            shown,
            len(out.skipped),
            "/".join(sorted(extensions)),
            out.skipped[0],
        )
    return out


def _reject_unknown(
    path: str,
    name: str,
    shown: str,
    exts: Collection[str],
    case_sensitive: bool,
    known: Collection[str],
) -> None:
    for _, files in walk_files(path):
        if any(_accept(f, exts, case_sensitive) for f in files):
            raise SarjepaError(
                f"unknown class folder '{shown}/{name}' (known: {', '.join(known)}); move it away "
                "or list it in DATASET.IGNORE_CLASSES"
            )
    log.debug("skipping folder '%s/%s' without images", shown, name)


def _size(path: str) -> int:
    try:
        return os.stat(path).st_size
    except OSError:
        return -1


def fingerprint(*listings: Listing) -> str:
    """sha256 over every listed ``relpath``, label and file size (order-sensitive)."""
    h = hashlib.sha256()
    for i, listing in enumerate(listings):
        h.update(f"#{i}\n".encode())
        for rel, item, size in zip(listing.relpaths, listing.items, listing.sizes):
            h.update(f"{rel}\t{item.label}\t{size}\n".encode())
    return h.hexdigest()
