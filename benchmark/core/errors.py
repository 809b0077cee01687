"""User-facing errors: one line, naming the file, folder, key or value at fault."""

from __future__ import annotations

import difflib
from collections.abc import Iterable


class SarjepaError(Exception):
    """An error caused by the user's input (paths, names, configs, data).

    The CLI prints ``sarjepa: error: <message>`` and exits with status 2 without a traceback
    (unless ``--debug``). Messages must be a single line and name what is at fault.
    """


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
