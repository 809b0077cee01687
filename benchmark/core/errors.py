"""User-facing errors: one line, naming the file, folder, key or value at fault."""

from __future__ import annotations

import difflib
import os
import re
from collections.abc import Iterable
from pathlib import Path


class SarjepaError(Exception):
    """An error caused by the user's input (paths, names, configs, data).

    The CLI prints ``sarjepa: error: <message>`` and exits with status 2 without a traceback
    (unless ``--debug``). Messages must be a single line and name what is at fault.

    Raised inside a DataLoader worker, the error reaches the main process through torch, which
    re-creates it with its own text (``Caught SarjepaError in DataLoader worker process N.``, the
    worker's traceback, then the original line). The original line is kept as the message and
    torch's whole text as :attr:`worker_traceback` (``--debug`` prints it).
    """

    #: torch's text (worker traceback) when the error crossed from a DataLoader worker, else "".
    worker_traceback: str = ""

    def __init__(self, *args: object) -> None:
        if len(args) == 1 and isinstance(args[0], str) and _is_worker_text(args[0]):
            self.worker_traceback = args[0]
            args = (_original_line(args[0], type(self).__name__),)
        super().__init__(*args)


class FileWriteError(SarjepaError, OSError):
    """Writing a file failed (full disk, permissions, ...); nothing was replaced.

    An ``OSError`` too (``errno`` is the original one), so callers that tolerate failed writes
    (caches) keep catching ``OSError``; the CLI prints it as one line like any input error.
    """


def _is_worker_text(text: str) -> bool:
    """True for the message torch builds when it re-raises a DataLoader worker's exception."""
    return text.startswith("Caught ") and "\nOriginal Traceback" in text


def _original_line(text: str, cls_name: str) -> str:
    """The original message inside torch's worker text (the traceback's last exception line)."""
    pattern = re.compile(rf"^(?:[\w.]+\.)?{re.escape(cls_name)}: (.*)$", re.MULTILINE)
    found = pattern.findall(text)
    if found:
        return found[-1].strip()
    lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
    return lines[-1] if lines else cls_name


def closest(name: str, choices: Iterable[str]) -> str:
    """Return a ``" (did you mean 'x'?)"`` suffix for ``name``, or ``""`` if nothing is close."""
    choices = list(choices)
    lowered = {c.lower(): c for c in choices}
    match = difflib.get_close_matches(name.lower(), list(lowered), n=1, cutoff=0.5)
    return f" (did you mean '{lowered[match[0]]}'?)" if match else ""


def unknown(kind: str, name: str, choices: Iterable[str]) -> SarjepaError:
    """Build the error for an unknown registry name, suggesting the closest known one."""
    choices = sorted(choices)
    return SarjepaError(
        f"unknown {kind} '{name}'{closest(name, choices)}; known: {', '.join(choices)}"
    )


def check_trailing_opts(opts: list[str]) -> None:
    """Refuse a ``--flag`` among trailing ``KEY VALUE`` overrides.

    argparse hands everything after the first ``KEY`` to the overrides, so a flag placed there
    would otherwise be read as a config key.
    """
    flags = [o for o in opts if o.startswith("--")]
    if flags:
        raise SarjepaError(f"option '{flags[0]}' must come before the KEY VALUE overrides")


def not_a_file(what: str, path: str | os.PathLike[str]) -> SarjepaError:
    """The error for a file argument that is not a file: a folder (naming the ``.pth`` files it
    holds, if any) or nothing at all."""
    p = Path(path)
    if p.is_dir():
        held = sorted((q.name for q in p.glob("*.pth")), key=lambda n: (len(n), n))
        hint = f" (it holds {', '.join(held[-3:])}: name one)" if held else ""
        return SarjepaError(f"{what} '{path}' is a folder, not a file{hint}")
    return SarjepaError(f"{what} '{path}' does not exist")
