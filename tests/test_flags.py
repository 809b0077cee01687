"""One flag vocabulary: every command's parser uses it, old spellings still work with a note."""

from __future__ import annotations

import argparse
import re

import pytest
from sarjepa.benchmark import flags
from sarjepa.benchmark.cli import build_parser, main

# A spelling outside the vocabulary: other words for an output, an input or a YAML.
OFF_VOCABULARY = re.compile(
    r"^--(output(-dir|-file)?|out-dir|outdir|root|src|source|images?|input|in|data-dir"
    r"|config-file|cfg|trainer-config|dataset-config-file)$"
)


def _parsers() -> list[tuple[str, argparse.ArgumentParser]]:
    """``(command, parser)`` for the top level and every (nested) subcommand."""
    out: list[tuple[str, argparse.ArgumentParser]] = []

    def walk(name: str, parser: argparse.ArgumentParser) -> None:
        out.append((name, parser))
        for action in parser._actions:
            if isinstance(action, argparse._SubParsersAction):
                for sub, child in action.choices.items():
                    walk(f"{name} {sub}", child)

    walk("sarjepa", build_parser())
    return out


def test_every_command_uses_the_vocabulary():
    parsers = _parsers()
    assert len(parsers) > 15  # every command was walked
    bad = []
    for name, parser in parsers:
        for action in parser._actions:
            old = set(getattr(action, "deprecated", ()))
            for spelling in action.option_strings:
                if spelling in old:
                    assert spelling in flags.DEPRECATED, (name, spelling)
                elif spelling in flags.DEPRECATED or OFF_VOCABULARY.match(spelling):
                    bad.append(f"{name}: {spelling}")
    assert not bad, "spellings outside the flag vocabulary (see benchmark/flags.py):\n" + "\n".join(
        bad
    )


def test_the_check_catches_an_off_vocabulary_flag(monkeypatch):
    real = build_parser

    def with_stray() -> argparse.ArgumentParser:
        parser = real()
        sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
        sub.choices["synth"].add_argument("--output-dir")
        return parser

    monkeypatch.setattr(f"{__name__}.build_parser", with_stray)
    with pytest.raises(AssertionError, match="sarjepa synth: --output-dir"):
        test_every_command_uses_the_vocabulary()


def test_the_shared_names_are_used_where_they_apply():
    by_name = dict(_parsers())

    def strings(command: str) -> set[str]:
        return {s for a in by_name[command]._actions for s in a.option_strings}

    for command in ("sarjepa train", "sarjepa splits", "sarjepa grid", "sarjepa pretrain",
                    "sarjepa features", "sarjepa targets", "sarjepa prepare mstar",
                    "sarjepa pool-check", "sarjepa analyze attention-distance"):  # fmt: skip
        assert "--data" in strings(command), command
    for command in ("sarjepa train", "sarjepa grid", "sarjepa pretrain", "sarjepa demo"):
        assert "--config" in strings(command), command
    for command in ("sarjepa train", "sarjepa pretrain", "sarjepa grid", "sarjepa synth"):
        assert "--out" in strings(command), command
    assert "--check-root" in strings("sarjepa pool-check") & strings("sarjepa pretrain")


def test_old_spellings_work_with_a_one_line_note(tmp_path, capsys):
    missing = str(tmp_path / "none")
    assert main(["splits", "--dataset", "mstar_soc", "--root", missing, "--shots", "1",
                 "--seed", "0"]) == 2  # fmt: skip
    err = capsys.readouterr().err.splitlines()
    assert err[0] == "sarjepa: note: --root is deprecated; use --data"
    assert missing in err[1] and len(err) == 2  # the value reached --data's destination
    assert main(["splits", "--dataset", "mstar_soc", "--data", missing, "--shots", "1",
                 "--seed", "0"]) == 2  # fmt: skip
    assert "deprecated" not in capsys.readouterr().err


def test_help_shows_only_the_new_spellings(capsys):
    with pytest.raises(SystemExit):
        main(["train", "--help"])
    text = capsys.readouterr().out
    assert "--data ROOT" in text and "--out DIR" in text and "--config CONFIG" in text
    for old in ("--root", "--output-dir", "--config-file", "--dataset-config-file"):
        assert old not in text, old


def test_an_unregistered_old_spelling_is_refused_at_definition():
    parser = argparse.ArgumentParser()
    with pytest.raises(ValueError, match="--outpt"):
        flags.add(parser, "--out", "--outpt")
