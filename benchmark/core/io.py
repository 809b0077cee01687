"""The one way files that mark completion are written: atomically.

:func:`atomic_write` writes to a uniquely named temporary file in the destination's folder,
flushes and ``fsync``s it, then renames it over the destination (``os.replace``, atomic on POSIX
and Windows within one file system). If anything fails on the way (an exception in the writer, a
full disk, a kill before the rename) the previous file at ``path`` is untouched and the temporary
file is removed (a SIGKILL can leave a ``.<name>.*.tmp`` file behind, never a half-written
destination). Every checkpoint, sidecar, split list, feature cache, ``result.json``, grid spec,
table and manifest the project writes goes through here. A failed write from the operating
system (full disk, no permission, ...) is raised as
:class:`~benchmark.core.errors.FileWriteError`, one line naming the file (also an ``OSError``).
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any

from sarjepa.benchmark.core.errors import FileWriteError, SarjepaError


def atomic_write(
    path: str | os.PathLike,
    write: Callable[[IO[bytes]], Any],
    *,
    before_replace: Callable[[], Any] | None = None,
) -> Path:
    """Call ``write(f)`` on a binary temp file beside ``path``, fsync it, rename it over ``path``.

    Args:
        path: destination file; its folder is created if missing.
        write: callable filling the open binary file object.
        before_replace: called once the temp file is complete, just before the rename (e.g. to
            write a companion file: if it fails, ``path`` is not replaced either).

    Returns:
        ``path`` as a :class:`~pathlib.Path`.

    Raises:
        FileWriteError: the operating system refused a step (``ENOSPC``, ``EACCES``, ...); the
            previous file at ``path``, if any, is unchanged.
    """
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    except OSError as exc:
        raise write_error(path, exc) from exc
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        if before_replace is not None:
            before_replace()
        os.replace(tmp, path)
    except BaseException as exc:
        Path(tmp).unlink(missing_ok=True)
        os_error = _os_error_in(exc)
        if os_error is not None:
            raise write_error(path, os_error) from exc
        raise
    return path


def _os_error_in(exc: BaseException) -> OSError | None:
    """The ``OSError`` behind ``exc`` (itself, or what it was raised from or while handling:
    ``torch.save`` turns a failed write into a ``RuntimeError`` of its own), else None."""
    seen: set[int] = set()
    cur: BaseException | None = exc
    while cur is not None and id(cur) not in seen:
        if isinstance(cur, SarjepaError):
            return None
        if isinstance(cur, OSError):
            return cur
        seen.add(id(cur))
        cur = cur.__cause__ or cur.__context__
    return None


def write_error(path: str | os.PathLike, exc: OSError) -> FileWriteError:
    """A one-line :class:`FileWriteError` for a failed write of ``path`` (keeps ``errno``)."""
    reason = exc.strerror or " ".join(str(exc).split()) or type(exc).__name__
    err = FileWriteError(f"cannot write '{path}': {reason} (any previous version is unchanged)")
    err.errno = exc.errno  # (strerror / filename would replace the message in str())
    return err


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


def atomic_torch_save(
    obj: Any, path: str | os.PathLike, before_replace: Callable[[], Any] | None = None
) -> Path:
    """``torch.save(obj)`` to ``path`` atomically (``before_replace``: see :func:`atomic_write`)."""
    import torch

    return atomic_write(path, lambda f: torch.save(obj, f), before_replace=before_replace)


def atomic_numpy_save(arrays: dict[str, Any], path: str | os.PathLike) -> Path:
    """``numpy.savez`` of ``arrays`` to ``path`` atomically (no pickled objects)."""
    import numpy as np

    return atomic_write(path, lambda f: np.savez(f, **arrays))
