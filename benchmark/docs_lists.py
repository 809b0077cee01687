"""The lists a user sees, each read from its one registry or constant.

Trainers, grid protocols, pretraining methods, targets, datasets, bundled configs and image
extensions appear in ``--help`` texts, in error messages and in the user docs (``README.md`` and
``docs/*.md``, :func:`doc_files`). None of those places keeps a copy: help texts are
:class:`Listed` templates (``"one of: {trainers}"``) filled from :data:`LISTS` when the help is
printed, and the docs' lists sit between markers::

    <!-- registry:trainers -->`MIM_finetune`, ...<!-- /registry -->

that :func:`update_readme` rewrites from :data:`BLOCKS`; each block lives in one of the doc files.
``tests/test_registry_docs.py`` fails when a block differs;
``python -m sarjepa.benchmark.docs_lists --write`` rewrites them all.

Importing this module costs nothing (the registries pull in torch): every list is computed on
first use, so ``sarjepa --help`` and commands that do not print help stay torch-free.
"""

from __future__ import annotations

import argparse
import re
import sys
import textwrap
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

# -------------------------------------------------------------------------------- the lists


def trainers() -> list[str]:
    """Registered few-shot trainers (``TRAINER.NAME``), sorted."""
    from sarjepa.benchmark.trainers import TRAINER_REGISTRY

    return TRAINER_REGISTRY.names()


def protocols() -> dict[str, str]:
    """Grid protocol (``--protocols``) -> the trainer it runs, in the grid's order."""
    from sarjepa.benchmark.grid import PROTOCOLS

    return dict(PROTOCOLS)


def default_protocols() -> list[str]:
    """The protocols a grid runs when ``--protocols`` is not given."""
    from sarjepa.benchmark.grid import DEFAULT_PROTOCOLS

    return list(DEFAULT_PROTOCOLS)


def methods() -> list[str]:
    """Registered pretraining methods (``METHOD.NAME``), sorted."""
    from sarjepa.pretrain.methods import method_names

    return method_names()


def targets() -> list[str]:
    """Registered regression targets (``TARGET.NAME``, ``targets --kind``), sorted."""
    from sarjepa.pretrain.targets import TARGETS

    return TARGETS.names()


def datasets() -> list[str]:
    """Registered few-shot datasets (``DATASET.NAME``), sorted."""
    from sarjepa.benchmark.datasets import DATASET_REGISTRY

    return DATASET_REGISTRY.names()


def dataset_aliases(name: str) -> list[str]:
    """Other names the dataset registry accepts for ``name`` (any case works besides)."""
    from sarjepa.benchmark.datasets import DATASET_REGISTRY

    return DATASET_REGISTRY.aliases(name)


def mstar_layouts() -> dict[str, str]:
    """``prepare mstar --protocol`` value -> the dataset layout it builds."""
    from sarjepa.benchmark.datasets.mstar_release import PROTOCOLS

    return {key: spec["dataset"] for key, spec in PROTOCOLS.items()}


def demo_presets() -> list[str]:
    """``demo --preset`` values."""
    from sarjepa.benchmark.demo import PRESETS

    return list(PRESETS)


def image_extensions() -> list[str]:
    """File extensions read as images (without the dot), in the constant's order."""
    from sarjepa.benchmark.core.images import IMAGE_EXTENSIONS

    return [ext.lstrip(".") for ext in IMAGE_EXTENSIONS]


def pretrain_configs() -> list[str]:
    """Bundled pretraining configs (``pretrain --config NAME``), sorted."""
    from sarjepa.pretrain.config import bundled_config_names

    return bundled_config_names()


def dataset_configs() -> list[str]:
    """Bundled dataset configs (``--dataset-config NAME``), sorted."""
    from sarjepa.benchmark.config import bundled_configs

    return bundled_configs("datasets")


def trainer_configs() -> list[str]:
    """Bundled trainer configs (``--config TRAINER/NAME``), sorted."""
    from sarjepa.benchmark.config import bundled_configs

    return bundled_configs("trainers")


def trainer_config_names() -> list[str]:
    """Names of bundled trainer configs across trainers (``grid --config NAME``)."""
    return sorted({name.rpartition("/")[2] for name in trainer_configs()})


#: Template field -> the list it stands for (see :class:`Listed`).
LISTS: dict[str, Callable[[], Sequence[str]]] = {
    "trainers": trainers,
    "protocols": lambda: list(protocols()),
    "default_protocols": default_protocols,
    "methods": methods,
    "targets": targets,
    "datasets": datasets,
    "mstar_datasets": lambda: list(mstar_layouts().values()),
    "mstar_protocols": lambda: [f"{key} ({name})" for key, name in mstar_layouts().items()],
    "image_extensions": image_extensions,
    "demo_presets": demo_presets,
    "pretrain_configs": pretrain_configs,
    "dataset_configs": dataset_configs,
    "trainer_configs": trainer_configs,
    "trainer_config_names": trainer_config_names,
}

# -------------------------------------------------------------------------------- help texts

_WIDTH = 99  # help lines stay under ruff's 100 columns when pasted into docs
# a field is a bare identifier in braces; other braces ({"train": ...}, {csv,md}) are text
_FIELD = re.compile(r"\{([A-Za-z_]\w*)\}")


class Listed(str):
    """A help or description text whose ``{field}`` names are lists of :data:`LISTS`.

    It is the template itself until :meth:`render` fills each field with its list joined by
    ``", "``; the CLI's parser renders it when it prints help (see :func:`fill_help`). Lines the
    lists make longer than 99 characters are wrapped, so raw-formatted descriptions stay tidy.
    """

    __slots__ = ()

    def fields(self) -> list[str]:
        """The list names the template uses, in order of appearance.

        Raises:
            KeyError: a ``{name}`` is not a list of :data:`LISTS`.
        """
        names = _FIELD.findall(self)
        for name in names:
            if name not in LISTS:
                raise KeyError(f"help template names an unknown list {{{name}}}")
        return names

    def render(self) -> str:
        """The text with every field replaced by its current list."""
        values = {name: ", ".join(LISTS[name]()) for name in set(self.fields())}
        text = _FIELD.sub(lambda m: values[m[1]], self)
        lines = []
        for line in text.split("\n"):
            indent = line[: len(line) - len(line.lstrip())]
            lines.extend(textwrap.wrap(line, _WIDTH, subsequent_indent=indent) or [""])
        return "\n".join(lines)


class ListedChoices(Sequence[str]):
    """argparse ``choices`` computed on first use (``"x" in choices``, iteration, usage).

    Give the argument a ``metavar``: without one argparse lists the choices when the argument is
    added, which would load them at every start-up.
    """

    def __init__(self, compute: Callable[[], Sequence[str]]) -> None:
        self._compute = compute
        self._items: list[str] | None = None

    def _list(self) -> list[str]:
        if self._items is None:
            self._items = list(self._compute())
        return self._items

    def __getitem__(self, index):  # type: ignore[override]
        return self._list()[index]

    def __len__(self) -> int:
        return len(self._list())

    def __iter__(self) -> Iterator[str]:
        return iter(self._list())


#: Help of an argument taking image files or folders.
IMAGE_PATHS = Listed(
    "image files or folders (searched recursively for {image_extensions}, any case)"
)


def fill_help(parser: argparse.ArgumentParser) -> None:
    """Render every :class:`Listed` help and description of ``parser`` in place.

    Covers the parser's description, its arguments' help texts and the one-line help of its
    subcommands (shown in its own help).
    """
    if isinstance(parser.description, Listed):
        parser.description = parser.description.render()
    for action in parser._actions:
        if isinstance(action.help, Listed):
            action.help = action.help.render()
        for choice in getattr(action, "_choices_actions", ()):  # subcommands' one-line help
            if isinstance(choice.help, Listed):
                choice.help = choice.help.render()


# -------------------------------------------------------------------------------- README blocks


def _codes(names: Sequence[str]) -> str:
    return ", ".join(f"`{n}`" for n in names)


def _pretrain_configs_table() -> str:
    from sarjepa.pretrain.config import load_config

    by_method: dict[str, list[str]] = {m: [] for m in methods()}
    for name in pretrain_configs():
        by_method.setdefault(str(load_config(name).METHOD.NAME), []).append(name)
    rows = ["| method (`METHOD.NAME`) | bundled configs (`pretrain --config NAME`) |", "|---|---|"]
    rows += [f"| `{m}` | {_codes(cfgs) or '-'} |" for m, cfgs in by_method.items()]
    return "\n".join(rows)


def _datasets_table() -> str:
    from sarjepa.benchmark.config import load_cfg

    config_of: dict[str, list[str]] = {}
    for name in dataset_configs():
        config_of.setdefault(str(load_cfg(None, name).DATASET.NAME), []).append(name)
    rows = [
        "| dataset (`DATASET.NAME`, `splits --dataset`) | also accepted (and any letter case) "
        "| bundled config (`--dataset-config`) |",
        "|---|---|---|",
    ]
    for name in datasets():
        aliases = _codes([a for a in dataset_aliases(name) if a.lower() != name.lower()]) or "-"
        rows.append(f"| `{name}` | {aliases} | {_codes(config_of.get(name, [])) or '-'} |")
    return "\n".join(rows)


def _protocols_table() -> str:
    protocol_of = {trainer: proto for proto, trainer in protocols().items()}
    configs = trainer_configs()
    rows = [
        "| trainer (`TRAINER.NAME`, `train --trainer`) | grid protocol (`grid --protocols`) "
        "| bundled configs (`--config`) |",
        "|---|---|---|",
    ]
    for name in trainers():
        own = [c for c in configs if c.startswith(name + "/")]
        proto = f"`{protocol_of[name]}`" if name in protocol_of else "-"
        rows.append(f"| `{name}` | {proto} | {_codes(own) or '-'} |")
    return "\n".join(rows)


#: README block name -> its text. Inline blocks are one line; tables sit on lines of their own.
BLOCKS: dict[str, Callable[[], str]] = {
    "trainers": lambda: _codes(trainers()),
    "targets": lambda: _codes(targets()),
    "image-extensions": lambda: ", ".join(image_extensions()),
    "protocols-table": _protocols_table,
    "datasets-table": _datasets_table,
    "pretrain-configs-table": _pretrain_configs_table,
}

_BLOCK = re.compile(r"<!-- registry:(?P<name>[\w-]+) -->(?P<body>.*?)<!-- /registry -->", re.S)


def _expected(name: str, body: str, cache: dict[str, str]) -> str:
    if name not in BLOCKS:
        raise ValueError(f"unknown README block 'registry:{name}'; known: {', '.join(BLOCKS)}")
    if name not in cache:
        cache[name] = BLOCKS[name]()
    text = cache[name]
    return f"\n{text}\n" if "\n" in text or body.startswith("\n") else text


def stale_blocks(text: str) -> list[tuple[str, str, str]]:
    """``(name, found, expected)`` for every marked block of ``text`` that differs."""
    cache: dict[str, str] = {}
    out = []
    for m in _BLOCK.finditer(text):
        want = _expected(m["name"], m["body"], cache)
        if m["body"] != want:
            out.append((m["name"], m["body"], want))
    return out


def block_names(text: str) -> list[str]:
    """Names of the marked blocks in ``text``, in order."""
    return [m["name"] for m in _BLOCK.finditer(text)]


def update_readme(text: str) -> str:
    """``text`` with every marked block rewritten from its registry."""
    cache: dict[str, str] = {}

    def sub(m: re.Match[str]) -> str:
        want = _expected(m["name"], m["body"], cache)
        return f"<!-- registry:{m['name']} -->{want}<!-- /registry -->"

    return _BLOCK.sub(sub, text)


def doc_files() -> list[Path]:
    """The user docs that may hold generated blocks: ``README.md`` and ``docs/*.md``."""
    root = Path(__file__).parents[1]
    return [root / "README.md", *sorted((root / "docs").glob("*.md"))]


def main(argv: list[str] | None = None) -> int:
    """Check (default) or ``--write`` the docs' generated blocks; 1 when any is stale."""
    parser = argparse.ArgumentParser(
        prog="python -m sarjepa.benchmark.docs_lists",
        description="Compare the docs' <!-- registry:NAME --> blocks with the registries.",
    )
    parser.add_argument(
        "docs", nargs="*", metavar="FILE", help="Markdown files (default: README.md, docs/*.md)"
    )
    parser.add_argument("--write", action="store_true", help="rewrite the stale blocks in place")
    args = parser.parse_args(argv)
    status = 0
    for path in [Path(d) for d in args.docs] or doc_files():
        text = path.read_text(encoding="utf-8")
        stale = stale_blocks(text)
        if not stale:
            if block_names(text):
                print(f"{path}: {len(block_names(text))} generated blocks up to date")
            continue
        if args.write:
            path.write_text(update_readme(text), encoding="utf-8")
            print(f"{path}: rewrote {', '.join(name for name, _, _ in stale)}")
            continue
        for name, _, want in stale:
            print(f"<!-- registry:{name} -->{want}<!-- /registry -->")
        print(f"{path}: stale blocks: {', '.join(n for n, _, _ in stale)} (--write to fix)")
        status = 1
    return status


if __name__ == "__main__":
    sys.exit(main())
