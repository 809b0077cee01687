"""One flag vocabulary for every ``sarjepa`` command, and the old spellings it replaced.

The rule (``docs/commands.md`` states it for users):

- ``--out``: what the command writes (a file or a folder). A second output is named after what
  it holds (``--png``, ``--json``, ``--pool``).
- ``--data``: what the command reads: a dataset root (``train``, ``splits``, ``grid``), a
  folder of unlabeled chips (``pretrain``, ``pool-check``), image files or folders
  (``features``, ``targets``, ``analyze``), the MSTAR release (``prepare mstar``). A second
  input is named after its role, the same in every command: ``--check-root`` (the dataset root
  whose test sets a pool is checked against), ``--weights`` (a checkpoint), ``--mstar`` (the
  demo's release).
- ``--config``: the command's YAML; a second YAML is ``--dataset-config``.
- ``random``: the random-init baseline's method name in examples, grids and tables.

Old spellings stay accepted: :func:`add` registers them as hidden aliases of the new flag, and
using one prints a one-line note on stderr. ``tests/test_flags.py`` walks every parser and fails
on a spelling that is neither in the vocabulary nor a registered alias.
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

#: Old spellings the vocabulary replaced (``pool-check --root`` became ``--check-root``, every
#: other ``--root`` became ``--data``).
DEPRECATED: frozenset[str] = frozenset(
    {
        "--output",
        "--output-dir",
        "--root",
        "--src",
        "--images",
        "--config-file",
        "--trainer-config",
        "--dataset-config-file",
    }
)


def _warn(old: str, new: str) -> None:
    print(f"sarjepa: note: {old} is deprecated; use {new}", file=sys.stderr)


def add(parser: argparse.ArgumentParser, flag: str, *old: str, **kwargs: Any) -> argparse.Action:
    """``parser.add_argument(flag, **kwargs)`` that also accepts the ``old`` spellings.

    The old spellings are hidden from ``--help`` and print a deprecation note when used; each must
    be one of :data:`DEPRECATED`.
    """
    for o in old:
        if o not in DEPRECATED:
            raise ValueError(f"{o} is not a registered old spelling")
    action = parser.add_argument(flag, *old, **kwargs)
    base = type(action)

    def __call__(self, parser, namespace, values, option_string=None):  # noqa: N807
        if option_string in old:
            _warn(option_string, flag)
        return base.__call__(self, parser, namespace, values, option_string)

    action.__class__ = type(f"Deprecating{base.__name__}", (base,), {"__call__": __call__})
    action.deprecated = tuple(old)  # type: ignore[attr-defined]
    return action


def hide_deprecated(parser: argparse.ArgumentParser) -> list[tuple[argparse.Action, list[str]]]:
    """Drop the old spellings from ``parser``'s actions for printing; returns what to restore."""
    saved = []
    for action in parser._actions:
        old = getattr(action, "deprecated", ())
        if old:
            saved.append((action, list(action.option_strings)))
            action.option_strings = [s for s in action.option_strings if s not in old]
    return saved


def restore(saved: list[tuple[argparse.Action, list[str]]]) -> None:
    """Undo :func:`hide_deprecated`."""
    for action, strings in saved:
        action.option_strings = strings
