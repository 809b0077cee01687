"""A grid's plan: what it runs (:class:`GridSpec`, its :class:`Cell` s), everything checked
before the first cell (:func:`validate`), each cell's state and config overrides, and the run
folder's ``grid.json`` (a folder holding another grid is refused unless ``--force``)."""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from pathlib import Path

from sarjepa.benchmark.core.errors import SarjepaError, not_a_file
from sarjepa.benchmark.core.io import atomic_write_json
from sarjepa.pretrain.checkpoint_ref import CheckpointRef

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
#: Config keys every cell sets from the grid itself (see :func:`cell_opts`); an override of one
#: would make a cell compute something other than its folder name says, so it is refused.
#: ``RUN.CACHE_DIR`` may be overridden (several run folders sharing one exact cache).
GRID_KEYS = (
    "TRAINER.NAME", "DATASET.ROOT", "DATASET.NUM_SHOTS", "SEED", "OUTPUT_DIR", "RUN.METHOD",
    "MODEL.INIT_WEIGHTS",
)  # fmt: skip
#: What sets each of :data:`GRID_KEYS` instead, for the refusal's message.
_GRID_KEY_FLAG = {
    "TRAINER.NAME": "--protocols", "DATASET.ROOT": "--data", "DATASET.NUM_SHOTS": "--shots",
    "SEED": "--seeds", "OUTPUT_DIR": "--out", "RUN.METHOD": "--methods",
    "MODEL.INIT_WEIGHTS": "--methods NAME=WEIGHTS",
}  # fmt: skip


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
    """``["name=path", "random=none"]`` -> ``{"name": "path", "random": "none"}``.

    A method pretrained several times names its checkpoints comma-separated,
    ``name=run1.pth,run2.pth``: each becomes its own label ``name@1``, ``name@2`` (the tables
    group them back into ``name``, one pretraining run per label). A value that is an existing
    file is one checkpoint even if its name holds a comma.
    """
    methods: dict[str, str] = {}
    for item in items:
        name, sep, weights = item.partition("=")
        if not sep or not name or not weights:
            raise SarjepaError(f"--methods expects NAME=WEIGHTS (or NAME=none), got '{item}'")
        if "/" in name or "@" in name or name in methods or f"{name}@1" in methods:
            raise SarjepaError(f"bad or repeated method name '{name}'")
        runs = [weights] if Path(weights).is_file() else weights.split(",")
        if len(runs) == 1:
            methods[name] = weights
            continue
        if not all(runs):
            raise SarjepaError(f"--methods {name}: empty checkpoint in '{weights}'")
        methods.update({f"{name}@{i}": w for i, w in enumerate(runs, 1)})
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


@dataclass
class Plan:
    """A checked grid: its cells in run order and each cell's checkpoint, resolved once.

    Attributes:
        cells: every cell of the grid.
        checkpoints: per cell, its method's checkpoint under the ``MODEL.WEIGHTS_KEY`` its
            config merges (None for a random init).
    """

    cells: list[Cell]
    checkpoints: dict[Cell, CheckpointRef | None]


def validate(spec: GridSpec) -> list[Cell]:
    """Check the whole grid before any cell starts; return its cells in run order."""
    return plan_grid(spec).cells


def method_groups(methods: Iterable[str]) -> list[str]:
    """Method names as the tables group them (``name@1``, ``name@2`` -> ``name``), in order."""
    return list(dict.fromkeys(m.partition("@")[0] for m in methods))


def check_references(spec: GridSpec, references: Iterable[str]) -> None:
    """Refuse a ``--reference`` that names no method of the grid (before any cell runs)."""
    from sarjepa.benchmark.core.errors import unknown

    known = method_groups(spec.methods)
    for ref in references:
        if ref not in known and ref not in spec.methods:
            raise unknown("--reference method", ref, known)


def check_overrides(spec: GridSpec) -> None:
    """Refuse overrides of the keys the grid sets per cell (:data:`GRID_KEYS`)."""
    lists = [("", spec.overrides)] + [
        (f" (protocol {p})", opts) for p, opts in sorted(spec.protocol_overrides.items())
    ]
    for where, opts in lists:
        if len(opts) % 2:
            raise SarjepaError(f"config overrides{where} must be KEY VALUE pairs: {list(opts)}")
        for key in opts[::2]:
            if str(key) in GRID_KEYS:
                raise SarjepaError(
                    f"config override {key}{where}: the grid sets it for every cell; "
                    f"use {_GRID_KEY_FLAG[str(key)]}"
                )


def check_dataset_folder(root: str, dataset: str) -> None:
    """Check that ``root`` holds ``dataset``'s split folders (no file is listed).

    Raises:
        SarjepaError: the folder or one of its split folders is missing, naming the layout.
    """
    import os

    from sarjepa.benchmark.datasets import DATASET_REGISTRY
    from sarjepa.benchmark.datasets.fixed import FixedLabelDataset, locate_dataset_dir

    cls = DATASET_REGISTRY.get(dataset)
    if not (isinstance(cls, type) and issubclass(cls, FixedLabelDataset)):
        return  # SARFolder: any layout under an existing root; checked when its cells list it
    splits = (cls.trainval_split,) + ((cls.test_split,) if cls.test_split else ())
    ddir = locate_dataset_dir(root, cls.folder, splits, cls.layout())
    for split in splits:
        if not os.path.isdir(os.path.join(ddir, split)):
            raise SarjepaError(
                f"dataset folder not found: '{os.path.join(ddir, split)}' "
                f"(expected layout: {cls.layout()} under the dataset root)"
            )


def plan_grid(spec: GridSpec, references: Iterable[str] = ()) -> Plan:
    """Check the whole grid before any cell starts; see :class:`Plan`.

    Checked, each failing with one line: methods and their checkpoints (loaded once per file
    and weights key, tensors memory-mapped), protocols, datasets and their folders under the
    root, the trainer config for every protocol, the overrides (refused for keys the grid sets
    itself; merged once per dataset x protocol, so a typo'd key or value stops here), and the
    ``references`` of the paired comparisons.
    """
    from sarjepa.benchmark.datasets import DATASET_REGISTRY

    if not spec.methods:
        raise SarjepaError("the grid has no methods (--methods NAME=WEIGHTS ...)")
    check_references(spec, references)
    check_overrides(spec)
    for name, weights in spec.methods.items():
        if weights.lower() != "none" and not Path(weights).is_file():
            raise SarjepaError(f"method '{name}': {not_a_file('checkpoint', weights)}")
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
    for d in datasets:
        check_dataset_folder(spec.root, d)
    if any(k <= 0 for k in spec.shots):
        raise SarjepaError(f"shots must be positive, got {spec.shots}")
    cells = []
    for d in datasets:
        for proto in spec.protocols:
            for name, weights in spec.methods.items():
                for k in spec.shots:
                    for s in spec.seeds:
                        cells.append(Cell(name, weights, d, int(k), int(s), proto))
    return Plan(cells, _resolve_checkpoints(spec, cells))


def _resolve_checkpoints(spec: GridSpec, cells: list[Cell]) -> dict[Cell, CheckpointRef | None]:
    """Each cell's checkpoint, checked once per (file, weights key) before any cell runs (the
    tensors memory-mapped, not read); the key is ``MODEL.WEIGHTS_KEY`` of the cell's merged
    config (trainer and dataset YAMLs, then the grid's overrides)."""
    from sarjepa.pretrain.checkpoint_ref import resolve_checkpoint

    keys: dict[tuple[str, str], str] = {}
    refs: dict[tuple[str, str], CheckpointRef] = {}
    out: dict[Cell, CheckpointRef | None] = {}
    for cell in cells:
        where = (cell.dataset, cell.protocol)
        if where not in keys:  # the config merged once per dataset x protocol: typos stop here
            keys[where] = str(cell_config(spec, cell, Path("."), None).MODEL.WEIGHTS_KEY)
        if cell.weights.lower() == "none":
            out[cell] = None
            continue
        key = (cell.weights, keys[where])
        if key not in refs:
            try:
                refs[key] = resolve_checkpoint(*key)
            except SarjepaError as exc:
                raise SarjepaError(f"method '{cell.method}': {exc}") from None
        out[cell] = refs[key]
    return out


def cell_config(spec: GridSpec, cell: Cell, run_dir: Path, device: str | None, extra=()):
    """The frozen config ``cell`` runs with (:func:`cell_opts`, then ``extra`` overrides)."""
    import sarjepa.benchmark.trainers  # noqa: F401  (registers the trainers' config keys)
    from sarjepa.benchmark.config import load_cfg

    return load_cfg(
        str(trainer_config_file(spec.trainer_config, cell.trainer)),
        str(dataset_config_file(cell.dataset)),
        [*cell_opts(spec, cell, run_dir, device), *extra],
    )


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


def estimate_seconds(run_dir: Path, cells: Iterable[Cell], todo: Iterable[Cell]) -> float | None:
    """Expected wall time of the ``todo`` cells from the finished ``cells`` of ``run_dir``.

    Each protocol's cells are priced at the mean ``wall_time_s`` of its finished cells (by shots
    where that shots value has finished cells). None when a protocol to run has no finished cell
    yet: the grid has nothing measured to go on.
    """
    times: dict[tuple[str, int | None], list[float]] = {}
    for cell in cells:
        if cell_state(run_dir, cell) != "done":
            continue
        try:
            data = json.loads((run_dir / cell.rel_dir() / "result.json").read_text())
            wall = float(data["provenance"]["wall_time_s"])
        except (OSError, ValueError, KeyError, TypeError):
            continue
        times.setdefault((cell.protocol, cell.shots), []).append(wall)
        times.setdefault((cell.protocol, None), []).append(wall)
    total = 0.0
    for cell in todo:
        walls = times.get((cell.protocol, cell.shots)) or times.get((cell.protocol, None))
        if not walls:
            return None
        total += sum(walls) / len(walls)
    return total


def prepare_run_dir(spec: GridSpec, run_dir: Path, force: bool) -> bool:
    """Create RUN_DIR and write grid.json; refuse a folder that holds a different grid.

    A folder whose grid differs but holds no finished cell (every cell it ran failed, e.g. on a
    typo since fixed) takes the new grid without ``force``.

    Returns:
        True when grid.json was replaced by a different grid: the failed cells of the old one
        must run again.
    """
    run_dir.mkdir(parents=True, exist_ok=True)
    grid_json = run_dir / "grid.json"
    replaced = False
    if grid_json.is_file():
        try:
            old = json.loads(grid_json.read_text())
        except ValueError:
            old = None
        if old is not None and old.get("identity") != spec.identity():
            if not force and any((run_dir / "output").rglob("result.json")):
                raise SarjepaError(
                    f"{run_dir} holds a different grid (methods, root, trainer config or "
                    "overrides differ from its grid.json) with finished cells; use another "
                    "--out or --force"
                )
            replaced = True
    elif (run_dir / "output").exists() and not force:
        raise SarjepaError(f"{run_dir} holds cells but no grid.json; use another --out or --force")
    data = {"format": "sarjepa-grid/1", "identity": spec.identity(), "spec": asdict(spec)}
    atomic_write_json(data, grid_json, indent=2)
    return replaced
