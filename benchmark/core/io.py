"""The one way files that mark completion are written: atomically.

:func:`atomic_write` writes to a uniquely named temporary file in the destination's folder,
flushes and ``fsync``s it, then renames it over the destination (``os.replace``, atomic on POSIX
and Windows within one file system). If anything fails on the way (an exception in the writer, a
full disk, a kill before the rename) the previous file at ``path`` is untouched and the temporary
file is removed (a SIGKILL can leave a ``.<name>.*.tmp`` file behind, never a half-written
destination). Every checkpoint, sidecar, split list, feature cache, ``result.json``, grid spec,
table and manifest the project writes goes through here.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any


def atomic_write(path: str | os.PathLike, write: Callable[[IO[bytes]], Any]) -> Path:
    """Call ``write(f)`` on a binary temp file beside ``path``, fsync it, rename it over ``path``.

    Args:
        path: destination file; its folder is created if missing.
        write: callable filling the open binary file object.

    Returns:
        ``path`` as a :class:`~pathlib.Path`.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def atomic_write_bytes(data: bytes, path: str | os.PathLike) -> Path:
    """Write ``data`` to ``path`` atomically."""
    return atomic_write(path, lambda f: f.write(data))


def atomic_write_text(text: str, path: str | os.PathLike) -> Path:
    """Write ``text`` (UTF-8) to ``path`` atomically."""
    return atomic_write_bytes(text.encode("utf-8"), path)


def atomic_write_json(obj: Any, path: str | os.PathLike, indent: int | None = 1) -> Path:
    """Write ``obj`` as JSON (UTF-8, trailing newline) to ``path`` atomically."""
    text = json.dumps(obj, indent=indent, ensure_ascii=False, allow_nan=True) + "\n"
    return atomic_write_text(text, path)


def atomic_torch_save(obj: Any, path: str | os.PathLike) -> Path:
    """``torch.save(obj)`` to ``path`` atomically."""
    import torch

    return atomic_write(path, lambda f: torch.save(obj, f))


def atomic_numpy_save(arrays: dict[str, Any], path: str | os.PathLike) -> Path:
    """``numpy.savez`` of ``arrays`` to ``path`` atomically (no pickled objects)."""
    import numpy as np

    return atomic_write(path, lambda f: np.savez(f, **arrays))
