"""yacs defaults of the few-shot benchmark, with Dassl's key names, and the loader.

A run's config is built like Dassl's ``train.py``: defaults <- ``--dataset-config`` <-
``--config`` (trainer) <- command-line arguments (``--data``, ``--seed`` ...) <- trailing
``KEY VALUE`` overrides, then frozen. Keys not in the defaults are errors (with a suggestion of the
closest existing key). Dassl's domain-adaptation and semi-supervised trainer nodes are dropped;
the few remaining Dassl keys that nothing here reads are listed in :data:`UNUSED_DASSL_KEYS` and
refused at any value but their default, except the deliberately inert :data:`INERT_KEYS`. Keys of
our own are marked "ours".

Other modules may add keys of their own, as Dassl's ``extend_cfg`` does, with
:func:`register_cfg_extension` (called at import time, before :func:`get_cfg_default`).
"""

from __future__ import annotations

import ast
import difflib
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

from sarjepa.benchmark.core.configs import cfg_to_dict, flat_keys, one_line  # noqa: F401
from sarjepa.benchmark.core.errors import SarjepaError, closest
from yacs.config import CfgNode as CN

CONFIG_DIR = Path(__file__).resolve().parent / "configs"

_C = CN()
_C.VERSION = 1
_C.OUTPUT_DIR = "./output"  # run folder: log.txt, result.json
_C.RESUME = ""
_C.SEED = -1  # < 0: no fixed seed (Dassl); 0 is a real seed here (the authors' script skipped it)
_C.USE_CUDA = True
_C.VERBOSE = True

_C.INPUT = CN()
_C.INPUT.SIZE = (224, 224)  # (H, W) after resizing, pixels
_C.INPUT.INTERPOLATION = "bicubic"  # "bicubic" | "bilinear" | "nearest" (PIL resampling)
_C.INPUT.TRANSFORMS = []  # Dassl names; supported here: "random_flip", "normalize"
_C.INPUT.NO_TRANSFORM = False
_C.INPUT.PIXEL_MEAN = [0.5]  # one value per channel (images are single-channel)
_C.INPUT.PIXEL_STD = [0.5]
_C.INPUT.CROP_SIZE = 128  # ours: centre crop (zero-padded if larger than the image) before resizing

_C.DATASET = CN()
_C.DATASET.ROOT = ""  # folder that holds MSTAR_SOC/, New_FUSAR/, SAR_ACD/ (or the dataset itself)
_C.DATASET.NAME = ""  # MSTAR_SOC | New_FUSAR | SAR_ACD | SARFolder (lower-case aliases accepted)
_C.DATASET.SOURCE_DOMAINS = ()
_C.DATASET.TARGET_DOMAINS = ()
_C.DATASET.NUM_SHOTS = -1  # K images per class for training; < 1 = all
_C.DATASET.VAL_PERCENT = 0.1  # Dassl's semi-supervised key; unused by the fixed datasets
_C.DATASET.SUBSAMPLE_CLASSES = "all"  # "all" | "base" | "new" (CoOp's base/new halves)
_C.DATASET.IGNORE_CLASSES = []  # ours: class folder names to skip (e.g. unused SAR-ACD types)
_C.DATASET.SARFOLDER = CN()  # ours: options of the generic SARFolder dataset
_C.DATASET.SARFOLDER.TRAIN_DIR = ""  # "" = auto: train / Train / TRAIN if present
_C.DATASET.SARFOLDER.TEST_DIR = ""  # "" = auto: test / Test / TEST if present
_C.DATASET.SARFOLDER.P_VAL = 0.2  # fraction of the train split per class that forms the val pool
# single-folder layout (ROOT/<class>/...): fraction of each class used as test set and val pool
_C.DATASET.SARFOLDER.TEST_FRACTION = 0.5

_C.DATALOADER = CN()
_C.DATALOADER.NUM_WORKERS = 4
_C.DATALOADER.K_TRANSFORMS = 1
_C.DATALOADER.RETURN_IMG0 = False
_C.DATALOADER.TRAIN_X = CN()
_C.DATALOADER.TRAIN_X.SAMPLER = "RandomSampler"
_C.DATALOADER.TRAIN_X.BATCH_SIZE = 32
_C.DATALOADER.TRAIN_X.N_DOMAIN = 0
_C.DATALOADER.TRAIN_X.N_INS = 16
_C.DATALOADER.TEST = CN()
_C.DATALOADER.TEST.SAMPLER = "SequentialSampler"
_C.DATALOADER.TEST.BATCH_SIZE = 32

_C.MODEL = CN()
_C.MODEL.INIT_WEIGHTS = ""  # checkpoint path; "" = random init (the `random` baseline)
_C.MODEL.WEIGHTS_KEY = ""  # ours: "" = auto; e.g. "target_encoder", "model"
_C.MODEL.POOL = ""  # ours: "" = cls if the backbone has a CLS token else mean | "cls" | "mean"
_C.MODEL.BACKBONE = CN()
_C.MODEL.BACKBONE.NAME = "vit_base_patch16"
_C.MODEL.BACKBONE.PRETRAINED = True
# ours: 0 / "" = take the value from the checkpoint's metadata or from NAME
_C.MODEL.BACKBONE.EMBED_DIM = 0
_C.MODEL.BACKBONE.DEPTH = 0
_C.MODEL.BACKBONE.NUM_HEADS = 0
_C.MODEL.BACKBONE.PATCH_SIZE = 0
_C.MODEL.BACKBONE.IN_CHANS = 0
_C.MODEL.BACKBONE.POS_EMBED = ""  # "" | "irpe" | "sincos" | "none"
_C.MODEL.BACKBONE.CLASS_TOKEN = ""  # "" | "true" | "false" (YAML/CLI booleans are accepted)
_C.MODEL.HEAD = CN()
_C.MODEL.HEAD.NAME = ""

_C.OPTIM = CN()
_C.OPTIM.NAME = "adam"
_C.OPTIM.LR = 0.0003
_C.OPTIM.WEIGHT_DECAY = 5e-4
_C.OPTIM.MOMENTUM = 0.9
_C.OPTIM.SGD_DAMPNING = 0
_C.OPTIM.SGD_NESTEROV = False
_C.OPTIM.RMSPROP_ALPHA = 0.99
_C.OPTIM.ADAM_BETA1 = 0.9
_C.OPTIM.ADAM_BETA2 = 0.999
_C.OPTIM.STAGED_LR = False
_C.OPTIM.NEW_LAYERS = ()
_C.OPTIM.BASE_LR_MULT = 0.1
_C.OPTIM.LR_SCHEDULER = "single_step"  # "single_step" | "multi_step" | "cosine"
_C.OPTIM.STEPSIZE = (-1,)
_C.OPTIM.GAMMA = 0.1
_C.OPTIM.MAX_EPOCH = 10
_C.OPTIM.WARMUP_EPOCH = -1  # > 0 enables warm-up
_C.OPTIM.WARMUP_TYPE = "linear"  # "linear" | "constant"
_C.OPTIM.WARMUP_CONS_LR = 1e-5
_C.OPTIM.WARMUP_MIN_LR = 1e-5
_C.OPTIM.WARMUP_RECOUNT = True

_C.TRAIN = CN()
_C.TRAIN.CHECKPOINT_FREQ = 0
_C.TRAIN.PRINT_FREQ = 10
_C.TRAIN.COUNT_ITER = "train_x"

_C.TEST = CN()
_C.TEST.EVALUATOR = "Classification"
_C.TEST.PER_CLASS_RESULT = False
_C.TEST.COMPUTE_CMAT = False
_C.TEST.NO_TEST = False
_C.TEST.SPLIT = "test"
_C.TEST.FINAL_MODEL = "last_step"

_C.TRAINER = CN()
_C.TRAINER.NAME = ""

_C.RUN = CN()  # ours
_C.RUN.METHOD = ""  # label of the weights in tables; "" = stem of MODEL.INIT_WEIGHTS or "random"
_C.RUN.CACHE_DIR = ""  # split/feature cache; "" = $SARJEPA_CACHE or ~/.cache/sarjepa
_C.RUN.DEVICE = "auto"  # "auto" | "cpu" | "cuda" | "cuda:N"
_C.RUN.AMP = "auto"  # "auto" (bf16 on CUDA, fp32 on CPU) | "bf16" | "off"
_C.RUN.STRICT_SHOTS = False  # a class with fewer than NUM_SHOTS training images is an error
_C.RUN.PROGRESS = True

# Dassl keys that are accepted (a Dassl config file loads) but read by nothing in sarjepa: they
# drive Dassl features this harness does not have. Any value but the default is refused, so a
# setting never silently does nothing. ``tests/test_config_keys.py`` checks that every other key
# has a reader.
UNUSED_DASSL_KEYS: tuple[str, ...] = (
    "RESUME",  # a cell is re-run from the start, never resumed from a trainer checkpoint
    "DATASET.SOURCE_DOMAINS",  # domain adaptation
    "DATASET.TARGET_DOMAINS",
    "DATASET.VAL_PERCENT",  # semi-supervised splits
    "DATALOADER.K_TRANSFORMS",  # several augmented views per image
    "DATALOADER.RETURN_IMG0",
    "DATALOADER.TRAIN_X.N_DOMAIN",  # domain-balanced samplers
    "DATALOADER.TRAIN_X.N_INS",
    "DATALOADER.TEST.SAMPLER",  # the test loader is always sequential
    "MODEL.BACKBONE.PRETRAINED",  # weights come from MODEL.INIT_WEIGHTS only
    "MODEL.HEAD.NAME",  # the head is the trainer's linear layer
    "OPTIM.RMSPROP_ALPHA",  # no rmsprop optimiser
    "OPTIM.STAGED_LR",  # one learning rate for all trained parameters
    "OPTIM.NEW_LAYERS",
    "OPTIM.BASE_LR_MULT",
    "TRAIN.CHECKPOINT_FREQ",  # trainers write no checkpoints
    "TRAIN.COUNT_ITER",  # iterations are counted on train_x, the only training loader
    "TEST.EVALUATOR",  # Classification is the only evaluator
    "TEST.COMPUTE_CMAT",  # no confusion-matrix file
)

# Keys with no effect on purpose: any value is accepted. Keep this short; each needs a reason.
INERT_KEYS: dict[str, str] = {
    "VERSION": "a tag of the config schema; Dassl itself reads nothing from it",
    "VERBOSE": "in Dassl it only prints dataset and model summaries; our logs are fixed",
}


def _check_unused(key: str, value: Any, source: str) -> None:
    """Refuse a non-default value of a key in :data:`UNUSED_DASSL_KEYS` (one line)."""
    if key not in UNUSED_DASSL_KEYS:
        return
    node: Any = _C
    for part in key.split("."):
        node = node[part]
    if value != node:
        raise SarjepaError(
            f"{source}: config key '{key}' is accepted for Dassl compatibility but has no effect "
            f"in sarjepa; remove it or leave it at its default {node!r} (got {value!r})"
        )


_EXTENSIONS: list[Callable[[CN], None]] = []


def register_cfg_extension(fn: Callable[[CN], None]) -> Callable[[CN], None]:
    """Register ``fn(cfg)`` that adds keys to the defaults (Dassl's ``extend_cfg``); a decorator."""
    if fn not in _EXTENSIONS:
        _EXTENSIONS.append(fn)
    return fn


def get_cfg_default() -> CN:
    """A fresh, unfrozen copy of the defaults (plus registered extensions)."""
    cfg = _C.clone()
    for fn in _EXTENSIONS:
        fn(cfg)
    return cfg


def bundled_configs(folder: str = "") -> list[str]:
    """Sorted names of the bundled configs under ``benchmark/configs/<folder>/``.

    A name is the YAML's path relative to that folder without ``.yaml``, as ``--config``
    takes it: ``bundled_configs("trainers")`` gives ``MIM_finetune/vit_b16``, ...,
    ``bundled_configs("datasets")`` gives ``mstar_soc``, ....
    """
    base = CONFIG_DIR / folder
    return sorted(f.relative_to(base).as_posix()[: -len(".yaml")] for f in base.rglob("*.yaml"))


def resolve_config_file(path: str | Path) -> Path:
    """Return ``path`` if it is a file, else the bundled config it names.

    Bundled configs live in ``benchmark/configs/{datasets,trainers/<TRAINER>}/``. They may be named
    by a path tail as in the authors' scripts (``configs/datasets/MSTAR_SOC.yaml``,
    ``MIM_linear/vit_b16``) or by a unique stem (``mstar_soc``); matching ignores case.
    """
    p = Path(path)
    if p.is_file():
        return p
    tail = p.as_posix().lower().removesuffix(".yaml").removeprefix("configs/").strip("/")
    bundled = sorted(CONFIG_DIR.rglob("*.yaml"))
    rel = {f: f.relative_to(CONFIG_DIR).as_posix().lower().removesuffix(".yaml") for f in bundled}
    hits = [f for f, r in rel.items() if r == tail or r.endswith("/" + tail)]
    if len(hits) == 1:
        return hits[0]
    names = [f.relative_to(CONFIG_DIR).as_posix() for f in bundled]
    if len(hits) > 1:
        choices = ", ".join(f.relative_to(CONFIG_DIR).as_posix() for f in hits)
        raise SarjepaError(f"config '{path}' is ambiguous; bundled matches: {choices}")
    stems = {Path(n).stem.lower(): n for n in names}
    match = difflib.get_close_matches(p.stem.lower(), list(stems), n=1, cutoff=0.5)
    hint = f" (did you mean '{stems[match[0]]}'?)" if match else ""
    raise SarjepaError(f"config file '{path}' not found{hint}; bundled: {', '.join(names)}")


def load_cfg(
    config_file: str | Path | None = None,
    dataset_config_file: str | Path | None = None,
    opts: Sequence[str] | None = None,
    overrides: dict[str, Any] | None = None,
    freeze: bool = True,
) -> CN:
    """Build a run config in Dassl's ``train.py`` order.

    Args:
        config_file: trainer YAML (path or bundled name), merged second.
        dataset_config_file: dataset YAML (path or bundled name), merged first.
        opts: flat ``[KEY, VALUE, ...]`` list merged last (values parsed as Python literals).
        overrides: ``{"DATASET.ROOT": ..., "SEED": 0}`` from command-line flags, merged between the
            files and ``opts`` (Dassl's ``reset_cfg``).
        freeze: freeze the result (default).

    Returns:
        The config. Raises ``SarjepaError`` (one line) for unknown keys or ill-typed values.
    """
    cfg = get_cfg_default()
    for source in (dataset_config_file, config_file):
        if not source:
            continue
        path = resolve_config_file(source)
        try:
            with open(path, encoding="utf-8") as f:
                other = CN.load_cfg(f)
        except Exception as exc:
            raise SarjepaError(f"config file '{source}': cannot parse: {one_line(exc)}") from None
        if other is None:
            continue
        if not isinstance(other, CN):
            raise SarjepaError(f"config file '{source}' must hold a mapping of keys")
        _merge_pairs(cfg, _leaves(other), f"config file '{source}'")
    if overrides:
        _merge_pairs(cfg, list(overrides.items()), "argument")
    if opts:
        opts = list(opts)
        if len(opts) % 2:
            raise SarjepaError(f"overrides must be KEY VALUE pairs; got an odd number: {opts}")
        _merge_pairs(cfg, list(zip(opts[0::2], opts[1::2])), "override")
    if freeze:
        cfg.freeze()
    return cfg


def _leaves(node: CN, prefix: str = "") -> list[tuple[str, Any]]:
    out: list[tuple[str, Any]] = []
    for k, v in node.items():
        if isinstance(v, CN):
            out += _leaves(v, f"{prefix}{k}.")  # an empty group adds nothing
        else:
            out.append((f"{prefix}{k}", v))
    return out


def _merge_pairs(cfg: CN, pairs: Iterable[tuple[str, Any]], source: str) -> None:
    known = flat_keys(cfg)
    for key, raw in pairs:
        parts = str(key).split(".")
        node = cfg
        for i, part in enumerate(parts):
            if not isinstance(node, CN) or part not in node:
                raise SarjepaError(f"{source}: unknown config key '{key}'{closest(key, known)}")
            if i < len(parts) - 1:
                node = node[part]
        default = node[parts[-1]]
        if isinstance(default, CN):
            raise SarjepaError(f"{source}: '{key}' is a group of keys, not a value")
        value = _coerce(_decode(raw), default, key, source)
        _check_unused(key, value, source)
        node[parts[-1]] = value


def _decode(value: Any) -> Any:
    """Strings that read as Python literals become those values (as yacs does)."""
    if isinstance(value, str):
        try:
            return ast.literal_eval(value)
        except (ValueError, SyntaxError):
            return value
    return value


def _coerce(value: Any, default: Any, key: str, source: str) -> Any:
    if isinstance(value, CN):
        value = dict(value)
    if type(value) is type(default):
        return value
    if isinstance(default, (tuple, list)) and isinstance(value, (tuple, list)):
        return type(default)(value)
    if isinstance(default, str):
        if isinstance(value, bool):
            return "true" if value else "false"
        if isinstance(value, (int, float)):
            return str(value)
    if isinstance(default, float) and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if isinstance(default, bool):
        if isinstance(value, str) and value.lower() in _BOOL_WORDS:
            return _BOOL_WORDS[value.lower()]
        if isinstance(value, int) and value in (0, 1):
            return bool(value)
    if isinstance(default, (tuple, list)) and isinstance(value, str):
        return type(default)([value])
    raise SarjepaError(
        f"{source}: {key} expects {type(default).__name__} (default {default!r}), got {value!r}"
    )


_BOOL_WORDS = {"true": True, "false": False, "yes": True, "no": False, "on": True, "off": False}
