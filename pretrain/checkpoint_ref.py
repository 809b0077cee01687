"""A checkpoint resolved once: path, format, weights key and sha256, checked before any use.

The CLI commands and the grid resolve ``MODEL.INIT_WEIGHTS`` / ``MODEL.WEIGHTS_KEY`` into a
:class:`CheckpointRef` at their boundary (:func:`resolve_checkpoint`: the file exists, is a safe
PyTorch file holding a ViT encoder under that key, and its digest is taken) and pass that value
down to the cell, the trainer and the loader, which do not check or hash the file again. The
file's size and mtime are kept so that a load refuses a file replaced since it was resolved
(its recorded sha256 would no longer be the weights used).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from sarjepa.benchmark.core.errors import SarjepaError


@dataclass(frozen=True)
class CheckpointRef:
    """A checked checkpoint file.

    Attributes:
        path: the file, as the user gave it.
        format: its format (one of :data:`pretrain.weights.FORMATS`).
        weights_key: ``MODEL.WEIGHTS_KEY`` ("" = the format's default part).
        sha256: hex digest of the file.
        size: its size in bytes when resolved.
        mtime_ns: its modification time (ns) when resolved.
    """

    path: str
    format: str
    weights_key: str = ""
    sha256: str = ""
    size: int = -1
    mtime_ns: int = -1

    def check_unchanged(self) -> None:
        """Raise a one-line :class:`SarjepaError` if the file is gone or was replaced since."""
        try:
            st = os.stat(self.path)
        except OSError:
            raise SarjepaError(f"checkpoint '{self.path}' does not exist") from None
        if (st.st_size, st.st_mtime_ns) != (self.size, self.mtime_ns):
            raise SarjepaError(
                f"checkpoint '{self.path}' changed since it was checked (size or mtime differ); "
                "run again"
            )


def resolve_checkpoint(path: str | Path, weights_key: str = "") -> CheckpointRef:
    """Check ``path`` once (cheap: tensors memory-mapped) and take its sha256.

    Raises:
        SarjepaError: missing, truncated or foreign file, no ViT encoder under ``weights_key``
            (one line naming the file).
    """
    from sarjepa.benchmark.core.provenance import cached_file_sha256
    from sarjepa.pretrain.weights import check_checkpoint

    path = str(path)
    fmt = check_checkpoint(path, weights_key)
    st = os.stat(path)
    return CheckpointRef(
        path=path,
        format=fmt,
        weights_key=str(weights_key),
        sha256=cached_file_sha256(path),
        size=st.st_size,
        mtime_ns=st.st_mtime_ns,
    )
