"""The lists users see are written from their registries: help texts, the docs, error hints.

The expected names are read here straight from each registry, constant or config folder (not
through :mod:`benchmark.docs_lists`), so a help text or a docs block (README.md or docs/*.md)
that is kept by hand, or a registration without help, fails.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from sarjepa.benchmark import docs_lists
from sarjepa.benchmark.cli import main
from sarjepa.benchmark.core.errors import SarjepaError

ROOT = Path(__file__).resolve().parents[1]
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]


def _docs_text() -> str:
    """Every user doc, concatenated (each generated block lives in one of them)."""
    return "\n".join(path.read_text(encoding="utf-8") for path in DOCS)


def _holding(name: str) -> Path:
    """The doc file that holds the ``registry:NAME`` block."""
    found = [p for p in DOCS if f"<!-- registry:{name} -->" in p.read_text(encoding="utf-8")]
    assert len(found) == 1, f"registry:{name} should be in exactly one doc, found in {found}"
    return found[0]


def _trainers() -> list[str]:
    from sarjepa.benchmark.trainers import TRAINER_REGISTRY

    return TRAINER_REGISTRY.names()


def _datasets() -> list[str]:
    from sarjepa.benchmark.datasets import DATASET_REGISTRY

    return DATASET_REGISTRY.names()


def _methods() -> list[str]:
    from sarjepa.pretrain.methods import method_names

    return method_names()


def _targets() -> list[str]:
    from sarjepa.pretrain.targets import TARGETS

    return TARGETS.names()


def _extensions() -> list[str]:
    from sarjepa.benchmark.core.images import IMAGE_EXTENSIONS

    return [e.lstrip(".") for e in IMAGE_EXTENSIONS]


def _protocols() -> list[str]:
    from sarjepa.benchmark.grid import PROTOCOLS

    return list(PROTOCOLS)


def _mstar_layouts() -> list[str]:
    from sarjepa.benchmark.datasets.mstar_release import PROTOCOLS

    return [spec["dataset"] for spec in PROTOCOLS.values()]


def _demo_presets() -> list[str]:
    from sarjepa.benchmark.demo import PRESETS

    return list(PRESETS)


def _yaml_names(folder: Path) -> list[str]:
    return sorted(p.relative_to(folder).as_posix()[: -len(".yaml")] for p in folder.rglob("*.yaml"))


def _pretrain_configs() -> list[str]:
    return _yaml_names(ROOT / "pretrain" / "configs")


def _dataset_configs() -> list[str]:
    return _yaml_names(ROOT / "benchmark" / "configs" / "datasets")


def _trainer_configs() -> list[str]:
    return _yaml_names(ROOT / "benchmark" / "configs" / "trainers")


#: (command, what its help must list, the list from its source)
HELP_LISTS = [
    (("train",), "trainers", _trainers),
    (("train",), "bundled trainer configs", _trainer_configs),
    (("train",), "bundled dataset configs", _dataset_configs),
    (("pretrain",), "bundled pretraining configs", _pretrain_configs),
    (("pretrain",), "methods", _methods),
    (("pretrain",), "image extensions", _extensions),
    (("splits",), "datasets", _datasets),
    (("splits",), "bundled dataset configs", _dataset_configs),
    (("targets",), "targets", _targets),
    (("targets",), "image extensions", _extensions),
    (("features",), "image extensions", _extensions),
    (("grid",), "datasets", _datasets),
    (("grid",), "protocols", _protocols),
    (("prepare",), "MSTAR layouts", _mstar_layouts),
    (("demo",), "presets", _demo_presets),
]


def help_text(capsys, *command: str) -> str:
    """``sarjepa COMMAND --help`` as printed, whitespace collapsed (argparse wraps lines)."""
    with pytest.raises(SystemExit) as exc:
        main([*command, "--help"])
    assert exc.value.code == 0
    return " ".join(capsys.readouterr().out.split())


@pytest.mark.parametrize(
    ("command", "what", "source"),
    HELP_LISTS,
    ids=[f"{' '.join(c)}-{w.replace(' ', '_')}" for c, w, _ in HELP_LISTS],
)
def test_help_lists_every_registered_name(capsys, command, what, source):
    names = source()
    assert names, f"no {what} found: the check would be vacuous"
    text = help_text(capsys, *command)
    assert ", ".join(names) in text, f"`sarjepa {' '.join(command)} --help` misses {what}: {names}"


def test_a_new_registration_shows_in_help_and_readme(capsys, monkeypatch):
    from sarjepa.benchmark.datasets import DATASET_REGISTRY
    from sarjepa.benchmark.trainers import TRAINER_REGISTRY

    monkeypatch.setitem(TRAINER_REGISTRY._items, "MIM_zzprobe", object)
    monkeypatch.setitem(DATASET_REGISTRY._items, "ZZ_SET", object)
    assert "MIM_zzprobe" in help_text(capsys, "train")
    assert "ZZ_SET" in help_text(capsys, "splits")
    stale = {name: want for name, _, want in docs_lists.stale_blocks(_docs_text())}
    assert {"trainers", "protocols-table", "datasets-table"} <= set(stale)
    assert "`MIM_zzprobe` | - |" in stale["protocols-table"]  # no grid protocol runs it
    assert "`ZZ_SET` | - | - |" in stale["datasets-table"]


def test_a_new_bundled_config_shows_in_pretrain_help(capsys, monkeypatch, tmp_path):
    import sarjepa.pretrain.config as pconfig

    for path in pconfig.CONFIG_DIR.glob("*.yaml"):
        shutil.copy(path, tmp_path / path.name)
    shutil.copy(tmp_path / "mae_tiny.yaml", tmp_path / "zz_new_tiny.yaml")
    monkeypatch.setattr(pconfig, "CONFIG_DIR", tmp_path)
    assert "sarjepa_vit_b16, zz_new_tiny." in help_text(capsys, "pretrain")


def test_prepare_choices_come_from_the_release_protocols(capsys, tmp_path):
    from sarjepa.benchmark.datasets.mstar_release import PROTOCOLS

    text = help_text(capsys, "prepare", "mstar")
    assert ", ".join(f"{k} ({v['dataset']})" for k, v in PROTOCOLS.items()) + ", all" in text
    with pytest.raises(SystemExit):
        main(["prepare", "mstar", "--data", "s", "--out", "o", "--protocol", "eoc9"])
    assert "invalid choice: 'eoc9'" in capsys.readouterr().err
    for good in [*PROTOCOLS, "all"]:
        argv = ["--data", str(tmp_path / "none"), "--out", str(tmp_path / "o"), "--protocol", good]
        assert main(["prepare", "mstar", *argv]) == 2  # accepted; the missing release is the error


def test_help_templates_name_known_lists():
    assert docs_lists.Listed('{trainers} and {"train": [...]} {csv,md}').fields() == ["trainers"]
    with pytest.raises(KeyError, match="trainerz"):
        docs_lists.Listed("one of {trainerz}").render()


def test_plain_start_up_stays_torch_free():
    """Building the parser and ``sarjepa --help`` load no registry (and so no torch)."""
    code = (
        "import sys\n"
        "from sarjepa.benchmark.cli import main\n"
        "try:\n"
        "    main(['--help'])\n"
        "except SystemExit:\n"
        "    pass\n"
        "heavy = [m for m in ('torch', 'sarjepa.benchmark.trainers', 'sarjepa.benchmark.datasets',"
        " 'sarjepa.pretrain.methods', 'sarjepa.pretrain.config') if m in sys.modules]\n"
        "print('HEAVY', heavy)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert "HEAVY []" in out.stdout, out.stdout + out.stderr


# ------------------------------------------------------------------------------- docs


def test_the_updater_knows_the_doc_files():
    assert [p.resolve() for p in docs_lists.doc_files()] == [p.resolve() for p in DOCS]
    assert len(DOCS) > 1  # README.md and the docs/ pages


@pytest.mark.parametrize("doc", DOCS, ids=[p.name for p in DOCS])
def test_doc_blocks_equal_the_registries(doc):
    stale = docs_lists.stale_blocks(doc.read_text(encoding="utf-8"))
    fixed = "\n".join(f"<!-- registry:{n} -->{want}<!-- /registry -->" for n, _, want in stale)
    assert not stale, (
        f"{doc.name} lists differ from the registries; replace these blocks (or run "
        f"`python -m sarjepa.benchmark.docs_lists --write`):\n{fixed}"
    )


def test_the_docs_hold_every_generated_block_once():
    names = docs_lists.block_names(_docs_text())
    assert sorted(names) == sorted(docs_lists.BLOCKS)


def _block(text: str, name: str) -> str:
    m = re.search(rf"<!-- registry:{name} -->(.*?)<!-- /registry -->", text, re.S)
    assert m, f"no doc has a registry:{name} block"
    return m[1]


def _first_column(table: str) -> list[str]:
    rows = [r for r in table.strip().splitlines()[2:]]
    return [r.split("|")[1].strip().strip("`") for r in rows]


def test_doc_blocks_name_exactly_the_registered_things():
    text = _docs_text()
    assert re.findall(r"`([^`]+)`", _block(text, "trainers")) == _trainers()
    assert re.findall(r"`([^`]+)`", _block(text, "targets")) == _targets()
    assert _block(text, "image-extensions").split(", ") == _extensions()
    assert _first_column(_block(text, "protocols-table")) == _trainers()
    assert _first_column(_block(text, "datasets-table")) == _datasets()
    configs = _block(text, "pretrain-configs-table")
    assert _first_column(configs) == _methods()
    assert sorted(re.findall(r"`(\w+)`", configs.split("\n", 3)[3])) == sorted(
        _methods() + _pretrain_configs()
    )


def test_update_rewrites_only_marked_blocks():
    text = (
        "a <!-- registry:trainers -->`old`<!-- /registry --> b\n"
        "<!-- registry:protocols-table -->\n| stale |\n<!-- /registry -->\ntail\n"
    )
    new = docs_lists.update_readme(text)
    assert new.startswith("a <!-- registry:trainers -->`MIM_finetune`, ")
    assert "<!-- /registry --> b\n<!-- registry:protocols-table -->\n| trainer" in new
    assert new.endswith("|\n<!-- /registry -->\ntail\n") and "stale" not in new
    assert docs_lists.stale_blocks(new) == []
    assert docs_lists.update_readme(new) == new
    with pytest.raises(ValueError, match="registry:nope"):
        docs_lists.stale_blocks("<!-- registry:nope -->x<!-- /registry -->")


def test_the_updater_checks_and_writes(tmp_path, capsys):
    readme = tmp_path / "page.md"
    text = _holding("trainers").read_text(encoding="utf-8")
    readme.write_text(text.replace("`MIM_knn`, ", "", 1), encoding="utf-8")
    assert docs_lists.main([str(readme)]) == 1
    out = capsys.readouterr().out
    assert "<!-- registry:trainers -->`MIM_finetune`, `MIM_knn`," in out and "stale" in out
    assert docs_lists.main([str(readme), "--write"]) == 0
    assert readme.read_text(encoding="utf-8") == text
    assert docs_lists.main([str(readme)]) == 0


# ------------------------------------------------------------------------------- errors


def _resolve_trainer(name):
    from sarjepa.benchmark.trainers import TRAINER_REGISTRY

    TRAINER_REGISTRY.resolve(name)


def _resolve_dataset(name):
    from sarjepa.benchmark.datasets import DATASET_REGISTRY

    DATASET_REGISTRY.resolve(name)


def _resolve_method(name):
    from sarjepa.pretrain.methods import METHODS, method_names

    method_names()  # loads the method modules
    METHODS.resolve(name)


def _resolve_target(name):
    from sarjepa.pretrain.targets import TARGETS

    TARGETS.resolve(name)


def _resolve_pretrain_config(name):
    from sarjepa.pretrain.config import resolve_config_file

    resolve_config_file(name)


SUGGESTIONS = [
    ("trainer", _resolve_trainer, _trainers),
    ("dataset", _resolve_dataset, _datasets),
    ("method", _resolve_method, _methods),
    ("target", _resolve_target, _targets),
    ("pretraining config", _resolve_pretrain_config, _pretrain_configs),
]


@pytest.mark.parametrize(
    ("what", "resolve", "source"), SUGGESTIONS, ids=[s[0] for s in SUGGESTIONS]
)
def test_error_suggestions_come_from_the_registry(what, resolve, source):
    names = source()
    for name in names:
        with pytest.raises(SarjepaError) as exc:
            resolve(name + "x")
        message = str(exc.value)
        assert f"(did you mean '{name}'?)" in message, message
        assert message.endswith(", ".join(names)), message


def test_error_suggestions_include_a_new_registration(monkeypatch):
    from sarjepa.benchmark.trainers import TRAINER_REGISTRY

    monkeypatch.setitem(TRAINER_REGISTRY._items, "MIM_zzprobe", object)
    with pytest.raises(SarjepaError, match=r"did you mean 'MIM_zzprobe'.*MIM_zzprobe"):
        TRAINER_REGISTRY.resolve("MIM_zzprobx")
