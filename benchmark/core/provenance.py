"""Where a result came from: the code version, file hashes and data-folder fingerprints."""

from __future__ import annotations

import functools
import hashlib
import os
import subprocess
from collections.abc import Sequence
from pathlib import Path


@functools.lru_cache(maxsize=1)
def code_version() -> str:
    """Package version plus the git commit of the source tree when available (``-dirty`` if so).

    Computed once per process (two ``git`` calls); every grid cell and feature-cache key asks.
    """
    from sarjepa.benchmark import __version__

    here = Path(__file__).resolve().parent
    try:
        sha = subprocess.run(
            ["git", "rev-parse", "--short=12", "HEAD"],
            cwd=here,
            capture_output=True,
            text=True,
            timeout=5,
        )
        if sha.returncode != 0:
            return __version__
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            cwd=here,
            capture_output=True,
            text=True,
            timeout=5,
        )
        suffix = "-dirty" if dirty.stdout.strip() else ""
        return f"{__version__}+g{sha.stdout.strip()}{suffix}"
    except (OSError, subprocess.SubprocessError):
        return __version__


def file_sha256(path: str | os.PathLike, chunk: int = 1 << 20) -> str:
    """Hex SHA-256 of a file's bytes."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


_SHA_MEMO: dict[tuple[str, int, int], str] = {}


def cached_file_sha256(path: str | os.PathLike) -> str:
    """:func:`file_sha256`, remembered in this process per (resolved path, size, mtime)."""
    p = Path(path).resolve()
    st = p.stat()
    key = (str(p), st.st_size, st.st_mtime_ns)
    if key not in _SHA_MEMO:
        _SHA_MEMO[key] = file_sha256(p)
    return _SHA_MEMO[key]


def data_fingerprint(root: str | os.PathLike, files: Sequence[str]) -> str:
    """SHA-256 (hex) of the sorted relative paths with their sizes and mtimes (whole seconds)."""
    h = hashlib.sha256()
    for rel in sorted(files):
        st = os.stat(Path(root) / rel)
        h.update(f"{rel}\t{st.st_size}\t{int(st.st_mtime)}\n".encode())
    return h.hexdigest()


#: Distributions whose versions change results, with their import names: torch and timm (the
#: features), numpy and scikit-learn (the probes and metrics).
VERSIONED = {"torch": "torch", "timm": "timm", "numpy": "numpy", "scikit-learn": "sklearn"}


def library_versions() -> dict[str, str]:
    """Versions of the project (:func:`code_version`) and of :data:`VERSIONED`, for provenance.

    An imported module's ``__version__`` is preferred (it carries torch's local build tag, e.g.
    ``+cu130``); otherwise the installed distribution's metadata is read; a missing one is ``""``.

    Returns:
        ``{"sarjepa": ..., "torch": ..., "timm": ..., "numpy": ..., "scikit-learn": ...}``.
    """
    import sys
    from importlib import metadata

    out = {"sarjepa": code_version()}
    for dist, module in VERSIONED.items():
        version = getattr(sys.modules.get(module), "__version__", None)
        if version is None:
            try:
                version = metadata.version(dist)
            except metadata.PackageNotFoundError:
                version = ""
        out[dist] = str(version)
    return out
