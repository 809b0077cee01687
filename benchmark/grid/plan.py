"""A grid's plan: what it runs (:class:`GridSpec`, its :class:`Cell` s), everything checked
before the first cell (:func:`validate`), each cell's state and config overrides, and the run
folder's ``grid.json`` (a folder holding another grid is refused unless ``--force``)."""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from pathlib import Path

from sarjepa.benchmark.core.errors import SarjepaError
from sarjepa.benchmark.core.io import atomic_write_json

PROTOCOLS = {
    "finetune": "MIM_finetune",
    "linear": "MIM_linear",
    "knn": "MIM_knn",
    "logreg": "MIM_logreg",
}
DEFAULT_PROTOCOLS = ("finetune", "linear")  # the paper's grid; knn / logreg on request
CONFIG_ROOT = Path(__file__).resolve().parents[1] / "configs"
DEFAULT_SHOTS = (10, 20, 40)
DEFAULT_SEEDS = (0, 1, 2, 3, 4)


@dataclass
class GridSpec:
    """What a grid runs. ``methods`` maps a label to a checkpoint path or ``"none"`` (random init).

    ``trainer_config`` is a config name under ``benchmark/configs/trainers/<TRAINER>/`` (e.g.
    ``vit_b16``) or a path to a YAML file used for every protocol. ``overrides`` are trailing
    ``KEY VALUE`` config overrides applied to every cell; ``protocol_overrides`` maps a
    protocol (``finetune``, ``linear``, ``knn``, ``logreg``) to overrides applied after them to
    its cells only.
    """

    methods: dict[str, str]
    datasets: list[str]
    root: str
    shots: list[int] = field(default_factory=lambda: list(DEFAULT_SHOTS))
    seeds: list[int] = field(default_factory=lambda: list(DEFAULT_SEEDS))
    protocols: list[str] = field(default_factory=lambda: list(DEFAULT_PROTOCOLS))
    trainer_config: str = "vit_b16"
    overrides: list[str] = field(default_factory=list)
    protocol_overrides: dict[str, list[str]] = field(default_factory=dict)

    def identity(self) -> dict[str, object]:
        """The parts that define what a cell computes (used to refuse mixing grids)."""
        return {
            "methods": dict(sorted(self.methods.items())),
            "root": self.root,
            "trainer_config": self.trainer_config,
            "overrides": list(self.overrides),
            "protocol_overrides": {k: list(v) for k, v in sorted(self.protocol_overrides.items())},
        }


@dataclass(frozen=True)
class Cell:
    """One (method, dataset, shots, seed, protocol) run."""

    method: str
    weights: str
    dataset: str
    shots: int
    seed: int
    protocol: str

    @property
    def trainer(self) -> str:
        return PROTOCOLS[self.protocol]

    def rel_dir(self) -> str:
        return (
            f"output/{self.dataset}/{self.trainer}/{self.method}_{self.shots}shots/seed{self.seed}"
        )


def parse_methods(items: Iterable[str]) -> dict[str, str]:
    """``["name=path", "random=none"]`` -> ``{"name": "path", "random": "none"}``."""
    methods: dict[str, str] = {}
    for item in items:
        name, sep, weights = item.partition("=")
        if not sep or not name or not weights:
            raise SarjepaError(f"--methods expects NAME=WEIGHTS (or NAME=none), got '{item}'")
        if "/" in name or name in methods:
            raise SarjepaError(f"bad or repeated method name '{name}'")
        methods[name] = weights
    return methods


def dataset_config_file(dataset: str) -> Path:
    """The shipped dataset YAML for a registered dataset name (any registered alias)."""
    from sarjepa.benchmark.datasets import DATASET_REGISTRY

    name = DATASET_REGISTRY.resolve(dataset)
    path = CONFIG_ROOT / "datasets" / f"{name.lower()}.yaml"
    if not path.is_file():
        raise SarjepaError(f"no shipped dataset config for '{name}' (expected {path.name})")
    return path


def trainer_config_file(trainer_config: str, trainer: str) -> Path:
    """Resolve a trainer config name (``vit_b16``) or YAML path for one trainer."""
    p = Path(trainer_config)
    if p.suffix in (".yaml", ".yml"):
        if not p.is_file():
            raise SarjepaError(f"trainer config not found: {trainer_config}")
        return p
    path = CONFIG_ROOT / "trainers" / trainer / f"{trainer_config}.yaml"
    if not path.is_file():
        known = sorted(q.stem for q in (CONFIG_ROOT / "trainers" / trainer).glob("*.yaml"))
        from sarjepa.benchmark.core.errors import unknown

        raise unknown(f"config for {trainer}", trainer_config, known)
    return path


def validate(spec: GridSpec) -> list[Cell]:
    """Check the whole grid before any cell starts; return its cells in run order."""
    from sarjepa.benchmark.datasets import DATASET_REGISTRY

    if not spec.methods:
        raise SarjepaError("the grid has no methods (--methods NAME=WEIGHTS ...)")
    for name, weights in spec.methods.items():
        if weights.lower() != "none" and not Path(weights).is_file():
            raise SarjepaError(f"weights of method '{name}' not found: {weights}")
    _check_weights(spec)
    for proto in spec.protocols:
        if proto not in PROTOCOLS:
            from sarjepa.benchmark.core.errors import unknown

            raise unknown("protocol", proto, PROTOCOLS)
    datasets = [DATASET_REGISTRY.resolve(d) for d in spec.datasets]
    for d in datasets:
        dataset_config_file(d)
    for proto in spec.protocols:
        trainer_config_file(spec.trainer_config, PROTOCOLS[proto])
    if not Path(spec.root).is_dir():
        raise SarjepaError(f"dataset root not found: {spec.root}")
    if any(k <= 0 for k in spec.shots):
        raise SarjepaError(f"shots must be positive, got {spec.shots}")
    cells = []
    for d in datasets:
        for proto in spec.protocols:
            for name, weights in spec.methods.items():
                for k in spec.shots:
                    for s in spec.seeds:
                        cells.append(Cell(name, weights, d, int(k), int(s), proto))
    return cells


def _check_weights(spec: GridSpec) -> None:
    """Refuse a truncated or foreign checkpoint before any cell (tensors memory-mapped, cheap)."""
    from sarjepa.pretrain.weights import check_checkpoint

    opts = list(spec.overrides)
    keys = [opts[i + 1] for i in range(0, len(opts) - 1, 2) if opts[i] == "MODEL.WEIGHTS_KEY"]
    for name, weights in spec.methods.items():
        if weights.lower() == "none":
            continue
        try:
            check_checkpoint(weights, keys[-1] if keys else "")
        except SarjepaError as exc:
            raise SarjepaError(f"method '{name}': {exc}") from None


def cell_state(run_dir: Path, cell: Cell) -> str:
    """``"done"``, ``"failed"`` or ``"todo"`` (a corrupt result.json counts as todo)."""
    d = run_dir / cell.rel_dir()
    res = d / "result.json"
    if res.is_file():
        try:
            data = json.loads(res.read_text())
            if data.get("format", "").startswith("sarjepa-result/") and "metrics" in data:
                return "done"
        except (OSError, ValueError, AttributeError):
            pass
        return "todo"
    return "failed" if (d / "error.json").is_file() else "todo"


def cell_opts(spec: GridSpec, cell: Cell, run_dir: Path, device: str | None) -> list[str]:
    """The trailing ``KEY VALUE`` list for one cell (grid overrides last win)."""
    opts = [
        "TRAINER.NAME", cell.trainer,
        "DATASET.ROOT", str(spec.root),
        "DATASET.NUM_SHOTS", str(cell.shots),
        "SEED", str(cell.seed),
        "OUTPUT_DIR", str(run_dir / cell.rel_dir()),
        "RUN.METHOD", cell.method,
        "RUN.CACHE_DIR", str(run_dir / "cache"),
        "MODEL.INIT_WEIGHTS", "" if cell.weights.lower() == "none" else cell.weights,
    ]  # fmt: skip
    if device:
        opts += ["RUN.DEVICE", device]
    return opts + list(spec.overrides) + list(spec.protocol_overrides.get(cell.protocol, []))


def prepare_run_dir(spec: GridSpec, run_dir: Path, force: bool) -> None:
    """Create RUN_DIR and write grid.json; refuse a folder that holds a different grid."""
    run_dir.mkdir(parents=True, exist_ok=True)
    grid_json = run_dir / "grid.json"
    if grid_json.is_file():
        try:
            old = json.loads(grid_json.read_text())
        except ValueError:
            old = None
        if old is not None and old.get("identity") != spec.identity() and not force:
            raise SarjepaError(
                f"{run_dir} holds a different grid (methods, root, trainer config or overrides "
                "differ from its grid.json); use another --out or --force"
            )
    elif (run_dir / "output").exists() and not force:
        raise SarjepaError(f"{run_dir} holds cells but no grid.json; use another --out or --force")
    data = {"format": "sarjepa-grid/1", "identity": spec.identity(), "spec": asdict(spec)}
    atomic_write_json(data, grid_json, indent=2)
