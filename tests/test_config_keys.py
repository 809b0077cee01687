"""Config keys that do nothing are errors.

Every leaf key of the benchmark config (Dassl keys plus ours and registered extensions) and of the
pretraining config must have a reader in the code, unless it is listed in
``benchmark.config.UNUSED_DASSL_KEYS`` (refused at any value but the default) or
``benchmark.config.INERT_KEYS`` (accepted on purpose). A new key nobody reads fails here.

The reader scan walks the syntax tree of every module (docstrings and comments do not count) and
collects access chains: ``cfg.OPTIM.LR``, ``cfg.MODEL["PATCH_SIZE"]``, ``node.get("KEY")``. A key
``A.B.C`` is read when a chain holds ``A.B.C``, or - for code that reads through an alias such as
``o = cfg.OPTIM; o.LR`` or a table of key names - when a chain ends its known part with a tail of
``A.B.C`` (``o.LR``, ``dl.TRAIN_X.BATCH_SIZE``) or a string constant equals ``C``, in a file that
also names the parent ``B``.
"""

from __future__ import annotations

import ast
import re
from functools import cache
from pathlib import Path

import pytest
import sarjepa.benchmark.trainers  # noqa: F401  (registers the trainers' config extensions)
import yaml
from sarjepa.benchmark import config as bconfig
from sarjepa.benchmark.cli import main
from sarjepa.benchmark.core.configs import flat_keys
from sarjepa.pretrain import config as pconfig

ROOT = Path(__file__).resolve().parents[1]
SOURCES = ("benchmark", "pretrain", "dassl_patches")


def _chain(node: ast.AST) -> list[str]:
    """Key names along an access expression, outermost last (``cfg.A["B"].get("C")`` -> A B C)."""
    if isinstance(node, ast.Attribute):
        return [*_chain(node.value), node.attr]
    if isinstance(node, ast.Subscript):
        key = node.slice
        if isinstance(key, ast.Constant) and isinstance(key.value, str):
            return [*_chain(node.value), key.value]
        return []
    if (
        isinstance(node, ast.Call)
        and isinstance(node.func, ast.Attribute)
        and node.func.attr == "get"
        and node.args
        and isinstance(node.args[0], ast.Constant)
        and isinstance(node.args[0].value, str)
    ):
        return [*_chain(node.func.value), node.args[0].value]
    return []


def _docstrings(tree: ast.AST) -> set[int]:
    """ids of string constants that are whole expression statements (docstrings, notes)."""
    return {
        id(node.value)
        for node in ast.walk(tree)
        if isinstance(node, ast.Expr) and isinstance(node.value, ast.Constant)
    }


@cache
def scan(path: Path) -> tuple[frozenset[tuple[str, ...]], frozenset[str], frozenset[str]]:
    """``(chains, string constants, words)`` read in one file (stores and docstrings excluded)."""
    text = path.read_text(encoding="utf-8")
    tree = ast.parse(text)
    skip = _docstrings(tree)
    chains, strings = set(), set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Constant):
            if isinstance(node.value, str) and id(node) not in skip:
                strings.add(node.value)
            continue
        if isinstance(node, ast.Attribute | ast.Subscript) and not isinstance(node.ctx, ast.Load):
            continue
        if isinstance(node, ast.Attribute | ast.Subscript | ast.Call):
            chain = tuple(_chain(node))
            if chain:
                chains.add(chain)
    words = frozenset(re.findall(r"[A-Za-z_][A-Za-z0-9_]*", text))
    return frozenset(chains), frozenset(strings), words


def _source_files(exclude: str) -> list[Path]:
    return [p for top in SOURCES for p in sorted((ROOT / top).rglob("*.py")) if p != ROOT / exclude]


def _holds(chain: tuple[str, ...], key: tuple[str, ...]) -> bool:
    n = len(key)
    return any(chain[i : i + n] == key for i in range(len(chain) - n + 1))


def _tail_read(chain: tuple[str, ...], key: tuple[str, ...]) -> bool:
    """The chain reads the key's leaf after a (maybe empty) tail of the key's parents."""
    leaf, parents = key[-1], key[:-1]
    for i, name in enumerate(chain):
        if name == leaf and i <= len(parents) and parents[len(parents) - i :] == chain[:i]:
            return True
    return False


def readers(key: str, files: list[Path]) -> list[str]:
    """Files (repo-relative) that read ``key`` by the rules of the module docstring."""
    parts = tuple(key.split("."))
    found = []
    for path in files:
        chains, strings, words = scan(path)
        parent_named = len(parts) == 1 or parts[-2] in words
        if any(_holds(c, parts) for c in chains) or (
            parent_named and (any(_tail_read(c, parts) for c in chains) or parts[-1] in strings)
        ):
            found.append(path.relative_to(ROOT).as_posix())
    return found


def unread_keys(cfg, exclude: str) -> list[str]:
    files = _source_files(exclude)
    return [key for key in flat_keys(cfg) if not readers(key, files)]


def test_every_benchmark_key_is_read_refused_or_inert():
    unread = unread_keys(bconfig.get_cfg_default(), "benchmark/config.py")
    listed = set(bconfig.UNUSED_DASSL_KEYS) | set(bconfig.INERT_KEYS)
    assert sorted(set(unread) - listed) == [], "keys nothing reads: refuse them or read them"
    # the lists stay honest: only real keys, none of them read, none in both lists
    assert listed <= set(flat_keys(bconfig.get_cfg_default()))
    assert sorted(listed - set(unread)) == [], "listed as unused, but the code reads them"
    assert not set(bconfig.UNUSED_DASSL_KEYS) & set(bconfig.INERT_KEYS)
    assert len(bconfig.INERT_KEYS) <= 3  # tiny on purpose


def test_every_pretraining_key_is_read():
    assert unread_keys(pconfig.get_cfg_default(), "pretrain/config.py") == []


def test_the_scan_sees_an_unread_key():
    cfg = bconfig.get_cfg_default()
    cfg.defrost()
    cfg.RUN.NOBODY_READS_THIS = 1
    cfg.TEST.SAMPLER = "RandomSampler"  # TRAIN_X.SAMPLER is read; TEST.SAMPLER is not
    unread = unread_keys(cfg, "benchmark/config.py")
    assert {"RUN.NOBODY_READS_THIS", "TEST.SAMPLER", "OPTIM.STAGED_LR"} <= set(unread)
    assert "DATALOADER.TRAIN_X.SAMPLER" not in unread and "OPTIM.LR" not in unread


@pytest.mark.parametrize("key", bconfig.UNUSED_DASSL_KEYS)
def test_refused_keys_accept_their_default(key):
    default = bconfig.get_cfg_default()
    for part in key.split("."):
        default = default[part]
    cfg = bconfig.load_cfg(None, None, [key, repr(default)])
    assert cfg is not None


def _train(tmp_path, capsys, *extra: str, config: Path | None = None) -> tuple[int, str]:
    argv = ["train", "--data", str(tmp_path / "none"), "--dataset-config", "mstar_soc"]
    argv += ["--config", str(config or "MIM_linear/vit_tiny_cpu")]
    argv += ["--out", str(tmp_path / "out"), *extra]
    code = main(argv)
    return code, capsys.readouterr().err


@pytest.mark.parametrize(
    ("key", "value", "default"),
    [
        ("OPTIM.STAGED_LR", "True", "False"),
        ("RESUME", "output/old", "''"),
        ("TEST.EVALUATOR", "Precision", "'Classification'"),
        ("DATASET.SOURCE_DOMAINS", "['a']", "()"),
    ],
)
def test_cli_refuses_a_key_without_effect_in_one_line(key, value, default, tmp_path, capsys):
    code, err = _train(tmp_path, capsys, key, value)
    assert code == 2
    (line,) = err.strip().splitlines()
    assert line.startswith("sarjepa: error: override: ")
    assert f"config key '{key}' is accepted for Dassl compatibility but has no effect" in line
    assert f"leave it at its default {default}" in line
    assert not (tmp_path / "out").exists()


def test_cli_refuses_it_from_a_yaml_file_and_names_the_file(tmp_path, capsys):
    trainer = yaml.safe_load(bconfig.resolve_config_file("MIM_linear/vit_tiny_cpu").read_text())
    trainer.setdefault("OPTIM", {})["STAGED_LR"] = True
    path = tmp_path / "mine.yaml"
    path.write_text(yaml.safe_dump(trainer))
    code, err = _train(tmp_path, capsys, config=path)
    assert code == 2
    (line,) = err.strip().splitlines()
    assert f"config file '{path}'" in line and "'OPTIM.STAGED_LR'" in line


def test_cli_accepts_inert_keys_and_refused_keys_at_their_default(tmp_path, capsys):
    # gets past the config to the data: the error is then about the missing dataset folder
    code, err = _train(tmp_path, capsys, "VERBOSE", "False", "OPTIM.STAGED_LR", "False")
    assert code == 2 and "Dassl compatibility" not in err and "none" in err
