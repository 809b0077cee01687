"""The tables of a committed run folder are byte-identical to committed golden outputs.

``tests/data/tables_run/`` holds a tiny run folder: ``result.json`` cells over two datasets,
three protocols and an underscore method name (LaTeX escaping), a missing macro-F1, missing wall
times, a tie for best, a one-pair and a constant-difference comparison (no p-value), and an
authors' Dassl ``log.txt`` folder (plus one unfinished), and two methods pretrained several
times (grid labels ``mae@1..3``, ``fgmae@1..2``). ``tests/data/tables_golden/`` holds what
``write_tables`` wrote for it. A change of any output is deliberate: regenerate the goldens with

    python -c "from sarjepa.benchmark.tables import write_tables; write_tables(
        'tests/data/tables_run', 'tests/data/tables_golden',
        reference=['random', 'sarjepa_pixel', 'mae'])"

and say so in the commit.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from sarjepa.benchmark.tables import write_tables

DATA = Path(__file__).parent / "data"
GOLDEN = DATA / "tables_golden"
NAMES = sorted(p.name for p in GOLDEN.iterdir())


def test_the_golden_set_is_complete() -> None:
    assert NAMES == ["comparison.csv", "runs.csv", "summary.csv", "summary.md", "summary.tex"]


@pytest.fixture(scope="module")
def written(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("tables")
    write_tables(DATA / "tables_run", out, reference=["random", "sarjepa_pixel", "mae"])
    return out


@pytest.mark.parametrize("name", NAMES)
def test_tables_match_the_committed_goldens_byte_for_byte(written: Path, name: str) -> None:
    assert (written / name).read_bytes() == (GOLDEN / name).read_bytes(), name
