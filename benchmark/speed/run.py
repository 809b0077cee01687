"""The run loop of ``sarjepa bench``: the measurements by name, run in order, rows kept."""

from __future__ import annotations

from collections.abc import Callable

from sarjepa.benchmark.speed.attention import measure_attention
from sarjepa.benchmark.speed.demo_bench import measure_demo
from sarjepa.benchmark.speed.measure import (
    clear_caches,
    measure_eval,
    measure_finetune,
    measure_gf,
    measure_methods,
    measure_pretrain,
)
from sarjepa.benchmark.speed.timing import Result, Settings, Timing, one_line


def measure_grid(
    s: Settings, partial: Callable[[list[Result]], None] | None = None
) -> list[Result]:
    """Few-shot grid throughput and the 900-cell projection (:mod:`benchmark.speed.grid_bench`).

    ``partial`` gets the rows measured so far after each stage of the grid measurement.
    """
    from sarjepa.benchmark.speed.grid_bench import measure_grid as run

    return run(s, partial)


MEASURES: dict[str, Callable[[Settings], list[Result]]] = {
    "finetune": measure_finetune,
    "eval": measure_eval,
    "pretrain": measure_pretrain,
    "gf": measure_gf,
    "methods": measure_methods,
    "attention": measure_attention,
    "grid": measure_grid,
    "demo": measure_demo,
}
STAGED: dict[str, Callable[[Settings, Callable[[list[Result]], None]], list[Result]]] = {
    "attention": measure_attention,
    "grid": measure_grid,
}


def run_all(
    names: list[str], s: Settings, on_rows: Callable[[list[Result]], None] | None = None
) -> list[Result]:
    """Run the named measurements in order; ``on_rows`` gets the rows so far after each one.

    Measurements of :data:`STAGED` (attention, grid) report their rows after each stage too, so
    that a run cut short keeps what it measured, and a stage that fails keeps the rows of the
    stages before it (then the error row).
    """
    rows: list[Result] = []
    for name in names:
        done: list[Result] = []

        def keep(part: list[Result], done: list[Result] = done) -> None:
            done[:] = part
            if on_rows is not None:
                on_rows(rows + part)

        try:
            new = STAGED[name](s, keep) if name in STAGED else MEASURES[name](s)
        except Exception as exc:  # a bug in one measurement must not lose the others
            new = [*done, Result(name, 0, Timing(error=one_line(exc)))]
        rows.extend(new)
        if on_rows is not None:
            on_rows(rows)
    clear_caches()
    return rows
