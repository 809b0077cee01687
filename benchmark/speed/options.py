"""Options of ``sarjepa bench --only grid`` (:mod:`benchmark.speed.grid_bench`).

Imports no torch, so that building the CLI parser (``--grid-*`` flags of ``sarjepa bench``) stays
light.
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass, field
from pathlib import Path

from sarjepa.benchmark.core.errors import SarjepaError

PAPER_DATASETS = ("MSTAR_SOC", "New_FUSAR", "SAR_ACD")
PAPER_SHOTS = (10, 20, 40)
PAPER_SEEDS = (0, 1, 2, 3, 4)
SYNTH_SCALES = ("tiny", "small", "demo", "full")


@dataclass
class GridBenchOptions:
    """What the grid measurement runs (see the module docstring).

    Attributes:
        scale: ``sarjepa synth`` scale of the generated data (ignored with ``data``).
        dataset: the dataset the grids run on, one of :data:`PAPER_DATASETS`.
        trainer_config: trainer config name (``vit_b16``: the paper's) or YAML path.
        shots: shots of the linear grid (its first one is the 1-cell grid's).
        seeds: seeds of the linear grid (its first one is the 1-cell grid's).
        finetune_shots: one fine-tune cell (seed 0) is timed per entry.
        jobs: worker processes for the ``--jobs`` measurement; 0 or 1 = not measured.
        data: an existing data root holding the three paper datasets ("" = generate).
        work: keep data, checkpoint and run folders here ("" = a temporary folder, removed).
        opts: ``KEY VALUE`` config overrides for every cell, after the arch's.
    """

    scale: str = "tiny"
    dataset: str = "MSTAR_SOC"
    trainer_config: str = "vit_tiny_cpu"
    shots: tuple[int, ...] = PAPER_SHOTS
    seeds: tuple[int, ...] = PAPER_SEEDS
    finetune_shots: tuple[int, ...] = (PAPER_SHOTS[0], PAPER_SHOTS[-1])
    jobs: int = 0
    data: str = ""
    work: str = ""
    opts: tuple[str, ...] = field(default_factory=tuple)

    def check(self) -> None:
        """Raise a one-line :class:`SarjepaError` naming the first bad option."""
        if self.dataset not in PAPER_DATASETS:
            raise SarjepaError(
                f"--grid-dataset must be one of {', '.join(PAPER_DATASETS)}, got '{self.dataset}'"
            )
        if self.scale not in SYNTH_SCALES:
            raise SarjepaError(
                f"--grid-scale must be one of {', '.join(SYNTH_SCALES)}, got '{self.scale}'"
            )
        for flag, values, low in (
            ("--grid-shots", self.shots, 1),
            ("--grid-seeds", self.seeds, 0),
            ("--grid-finetune-shots", self.finetune_shots, 1),
        ):
            if not values or min(values) < low or len(set(values)) < len(values):
                raise SarjepaError(
                    f"{flag} must be one or more different numbers >= {low}, got {list(values)}"
                )
        if self.jobs < 0:
            raise SarjepaError(f"--grid-jobs must be >= 0, got {self.jobs}")
        if len(self.opts) % 2:
            raise SarjepaError(f"--grid-opts must be KEY VALUE pairs, got {list(self.opts)}")
        if self.data and not Path(self.data).is_dir():
            raise SarjepaError(f"--grid-data: folder '{self.data}' does not exist")
        from sarjepa.benchmark.grid import PROTOCOLS, trainer_config_file

        for protocol in ("linear", "finetune"):
            try:
                trainer_config_file(self.trainer_config, PROTOCOLS[protocol])
            except SarjepaError as exc:
                raise SarjepaError(f"--grid-trainer-config: {exc}") from None


def default_options(device_type: str) -> GridBenchOptions:
    """The paper's trainer config and the real set sizes on CUDA; tiny ones elsewhere."""
    if device_type == "cuda":
        return GridBenchOptions(scale="full", trainer_config="vit_b16")
    return GridBenchOptions(scale="tiny", trainer_config="vit_tiny_cpu")


def add_arguments(p: argparse.ArgumentParser) -> None:
    """The ``--grid-*`` options of ``sarjepa bench`` (used by ``--only grid``)."""
    g = p.add_argument_group(
        "grid (--only grid)",
        "real few-shot grids on generated data with a seeded random-init checkpoint of --arch "
        "at --img-size (on a CPU e.g. --arch tiny --img-size 64)",
    )
    g.add_argument("--grid-scale", choices=SYNTH_SCALES, help="synth scale (CUDA full, CPU tiny)")
    g.add_argument("--grid-data", metavar="DIR", help="existing root with the 3 paper datasets")
    g.add_argument("--grid-work", metavar="DIR", help="keep data and run folders here")
    g.add_argument(
        "--grid-dataset", default="MSTAR_SOC", choices=PAPER_DATASETS, help="the grids' (MSTAR_SOC)"
    )
    g.add_argument("--grid-trainer-config", help="trainer config (CUDA vit_b16, CPU vit_tiny_cpu)")
    g.add_argument("--grid-shots", type=int, nargs="+", metavar="K", help="(10 20 40)")
    g.add_argument("--grid-seeds", type=int, nargs="+", metavar="S", help="(0 1 2 3 4)")
    g.add_argument(
        "--grid-finetune-shots", type=int, nargs="+", metavar="K", help="one cell each (10 40)"
    )
    g.add_argument("--grid-jobs", type=int, default=0, help="also time N cells at once (off)")
    g.add_argument("--grid-opts", nargs="+", metavar="KEY VALUE", help="overrides for every cell")


def options_from_args(args: argparse.Namespace, device_type: str) -> GridBenchOptions:
    """Device defaults overridden by the ``--grid-*`` flags given; checked."""
    o = default_options(device_type)
    given = {
        "scale": args.grid_scale,
        "data": args.grid_data,
        "work": args.grid_work,
        "dataset": args.grid_dataset,
        "trainer_config": args.grid_trainer_config,
        "shots": args.grid_shots,
        "seeds": args.grid_seeds,
        "finetune_shots": args.grid_finetune_shots,
        "jobs": args.grid_jobs,
        "opts": args.grid_opts,
    }
    for key, value in given.items():
        if value is not None:
            setattr(o, key, tuple(value) if isinstance(value, list) else value)
    o.check()
    return o
