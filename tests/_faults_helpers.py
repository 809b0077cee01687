"""Fault injection for tests/test_faults.py: a full disk, and a CLI run that dies at a chosen point.

Run as a script, this module is ``sarjepa`` with one fault armed by environment variables
(the production code has no test hooks; the patches below replace module attributes):

- ``SARJEPA_FAULT=mid_epoch`` and ``SARJEPA_FAULT_AT=N``: SIGKILL when the pretraining loop asks
  for its N-th batch (1-based, counted over the whole run).
- ``SARJEPA_FAULT=in_write`` and ``SARJEPA_FAULT_AT=NAME``: SIGKILL inside the atomic writer of
  the file called NAME, after part of it has been written to the temporary file.
- ``SARJEPA_FAULT=after_save`` and ``SARJEPA_FAULT_AT=E``: SIGKILL right after checkpoint E and
  its sidecar are on disk.
- ``SARJEPA_FAULT=record_cells`` and ``SARJEPA_FAULT_AT=FILE``: every grid cell that starts
  training appends ``<pid> <OUTPUT_DIR>`` to FILE and sleeps ``SARJEPA_FAULT_SLEEP`` seconds; the
  first cell of each process also waits (up to 120 s) until ``SARJEPA_FAULT_PEERS`` processes are
  inside a cell, so the processes surely overlap.
"""

from __future__ import annotations

import errno
import fnmatch
import os
import signal
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any


def _die() -> None:
    sys.stdout.flush()
    os.kill(os.getpid(), signal.SIGKILL)


class FullDisk:
    """A binary file object that accepts ``room`` bytes, then fails like a full disk.

    Other attributes (``flush``, ``tell``, ``fileno`` ...) are those of the wrapped file.

    Args:
        f: the real file object.
        room: bytes written before the failure.
        exc: raised instead of ``OSError(ENOSPC)`` (e.g. any other error in a writer).
    """

    def __init__(self, f: IO[bytes], room: int, exc: BaseException | None = None) -> None:
        self._f, self._room, self._exc = f, room, exc

    def write(self, data: Any) -> int:
        view = memoryview(data).cast("B")
        if len(view) <= self._room:
            self._room -= len(view)
            return self._f.write(view)
        self._f.write(view[: self._room])
        self._room = 0
        if self._exc is not None:
            raise self._exc
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    def __getattr__(self, name: str) -> Any:
        return getattr(self._f, name)


class KillOnWrite:
    """A binary file object whose first write puts 16 bytes on disk, then SIGKILLs the process."""

    def __init__(self, f: IO[bytes]) -> None:
        self._f = f

    def write(self, data: Any) -> int:
        self._f.write(memoryview(data).cast("B")[:16])
        self._f.flush()
        _die()
        return 0

    def __getattr__(self, name: str) -> Any:
        return getattr(self._f, name)


def patch_writer(
    pattern: str, wrap: Callable[[IO[bytes]], Any], setattr_=setattr, real: Any = None
) -> None:
    """Make :func:`benchmark.core.io.atomic_write` hand ``wrap(f)`` to the writer of every file
    whose name matches ``pattern`` (``fnmatch``); ``setattr_`` may be ``monkeypatch.setattr``,
    ``real`` the unpatched function (default: the current one)."""
    import sarjepa.benchmark.core.io as io

    real = real or io.atomic_write

    def atomic_write(
        path: str | os.PathLike, write: Callable[[IO[bytes]], Any], **kwargs: Any
    ) -> Path:
        if not fnmatch.fnmatch(Path(path).name, pattern):
            return real(path, write, **kwargs)
        return real(path, lambda f: write(wrap(f)), **kwargs)

    setattr_(io, "atomic_write", atomic_write)


def _arm(fault: str, at: str) -> None:
    if fault == "mid_epoch":
        import sarjepa.pretrain.loop as loop

        real_next, calls = loop.next_batch, [0]

        def next_batch(it):  # noqa: ANN001, ANN202
            calls[0] += 1
            if calls[0] == int(at):
                _die()
            return real_next(it)

        loop.next_batch = next_batch
    elif fault == "in_write":
        patch_writer(at, KillOnWrite)
    elif fault == "after_save":
        import sarjepa.pretrain.checkpoints as ck

        real_save = ck.save_checkpoint

        def save_checkpoint(out, epoch, entries, sidecar):  # noqa: ANN001, ANN202
            path = real_save(out, epoch, entries, sidecar)
            if int(epoch) == int(at):
                _die()
            return path

        ck.save_checkpoint = save_checkpoint
    elif fault == "record_cells":
        import sarjepa.benchmark.cell as cell

        real_run, pause = cell.run, float(os.environ.get("SARJEPA_FAULT_SLEEP", "0"))
        peers, first = int(os.environ.get("SARJEPA_FAULT_PEERS", "1")), [True]

        def run(cfg, **kw):  # noqa: ANN001, ANN003, ANN202
            with open(at, "a", encoding="utf-8") as f:
                f.write(f"{os.getpid()} {cfg.OUTPUT_DIR}\n")
            if first[0]:  # a barrier: every peer process is inside its first cell
                first[0] = False
                Path(f"{at}.{os.getpid()}.ready").touch()
                deadline = time.time() + 120
                while len(list(Path(at).parent.glob(f"{Path(at).name}.*.ready"))) < peers:
                    if time.time() > deadline:
                        break
                    time.sleep(0.05)
            time.sleep(pause)
            return real_run(cfg, **kw)

        cell.run = run
    elif fault:
        raise SystemExit(f"unknown SARJEPA_FAULT {fault!r}")


if __name__ == "__main__":
    _arm(os.environ.get("SARJEPA_FAULT", ""), os.environ.get("SARJEPA_FAULT_AT", ""))
    from sarjepa.benchmark.cli import main

    sys.exit(main(sys.argv[1:]))
