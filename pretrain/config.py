"""yacs defaults for pretraining; the defaults are the paper's SAR-JEPA ViT-B/16 recipe.

A run's config = these defaults <- ``--config FILE`` (YAML) <- trailing ``KEY VALUE`` overrides.
Every key is documented where it is defined: the keys every method reads below, the keys only
some methods read in those methods' modules (``extend_cfg`` of each registered
:class:`~pretrain.methods.base.PretrainMethod`, added to the one tree by
:func:`get_cfg_default`, as Dassl trainers extend their config).
"""

from __future__ import annotations

from pathlib import Path

from sarjepa.benchmark.core.configs import flat_keys, one_line
from sarjepa.benchmark.core.errors import SarjepaError, closest
from yacs.config import CfgNode as CN

CONFIG_DIR = Path(__file__).resolve().parent / "configs"

_C = CN()
_C.SEED = 0  # model init, shuffling, augmentation and masking streams all derive from it
_C.DEVICE = "auto"  # "auto" (cuda if available) | "cpu" | "cuda" | "cuda:N"
_C.OUTPUT_DIR = ""  # set by --out
_C.DATA_DIR = ""  # set by --data

_C.METHOD = CN()
_C.METHOD.NAME = "sarjepa"  # a registered method: sarjepa, sarjepa_pixel, lomar, maskfeat, ...

_C.MODEL = CN()
_C.MODEL.ARCH = "vit_base_patch16"  # a pretrain.models.build_vit name
# 0 / "" = take the value from MODEL.ARCH
_C.MODEL.EMBED_DIM = 0
_C.MODEL.DEPTH = 0
_C.MODEL.NUM_HEADS = 0
_C.MODEL.PATCH_SIZE = 0
_C.MODEL.MLP_RATIO = 0.0
_C.MODEL.IN_CHANS = 1
_C.MODEL.POS_EMBED = "irpe"  # "irpe" | "sincos" | "none"
_C.MODEL.CLASS_TOKEN = True
_C.MODEL.DROP_PATH = 0.0

_C.PREDICTOR = CN()  # LoMaR-style predictor behind the encoder
_C.PREDICTOR.EMBED_DIM = 512
_C.PREDICTOR.DEPTH = 8
_C.PREDICTOR.NUM_HEADS = 16
_C.PREDICTOR.MLP_RATIO = 4.0

_C.MASK = CN()  # masking; the strategy's own keys come with the methods that use it
_C.MASK.RATIO = 0.8  # masked fraction: of each local window (int(ws**2 * ratio)), else of the grid

_C.TARGET = CN()
_C.TARGET.NAME = ""  # "" = the method's own (gf for sarjepa, pixel for lomar, hog for maskfeat)
# keyword options for pretrain.targets.build_target (lower-cased), e.g. SCALES: [5, 9, 13, 17];
# empty = the method's defaults. New keys are allowed here in YAML files.
_C.TARGET.OPTIONS = CN(new_allowed=True)

_C.INPUT = CN()
_C.INPUT.SIZE = 224  # square training crop, pixels; a multiple of the patch size

_C.DATA = CN()
_C.DATA.CACHE = False  # decode every image once into an in-memory uint8 buffer
_C.DATA.NUM_WORKERS = 8  # DataLoader workers per process
_C.DATA.PIN_MEMORY = True  # only used on CUDA
_C.DATA.HIGH_BIT = "shift"  # 16-bit/float: "shift" (v >> 8, OpenCV) | "minmax" (per image)
_C.DATA.SKIP_CORRUPT = False  # log and skip unreadable images (also --skip-corrupt)

_C.AUG = CN()
_C.AUG.SCALE = (0.2, 1.0)  # RandomResizedCrop area range
_C.AUG.RATIO = (0.75, 1.3333333333333333)  # RandomResizedCrop aspect range
_C.AUG.HFLIP = 0.5  # horizontal flip probability
_C.AUG.CONTRAST = 0.5  # ColorJitter contrast strength

_C.TRAIN = CN()
_C.TRAIN.EPOCHS = 300
_C.TRAIN.WARMUP_EPOCHS = 20  # linear warm-up per iteration, then half-cycle cosine
_C.TRAIN.BATCH_SIZE = 75  # per process
_C.TRAIN.ACCUM_ITER = 0  # gradient accumulation steps; 0 = reach EFFECTIVE_BATCH (else 1)
_C.TRAIN.EFFECTIVE_BATCH = 0  # the paper's batch over all GPUs, reached by accumulation; 0 = none
_C.TRAIN.BLR = 1e-3  # lr = BLR * effective batch / 256
_C.TRAIN.LR = 0.0  # absolute peak lr; 0 = derive from BLR
_C.TRAIN.MIN_LR = 0.0
_C.TRAIN.WEIGHT_DECAY = 0.05  # not on biases and 1-d parameters (norms)
_C.TRAIN.DECAY_TOKENS = True  # decay cls/mask tokens too, as the authors did; False exempts them
_C.TRAIN.BETAS = (0.9, 0.95)
_C.TRAIN.CLIP_GRAD = 0.0  # max grad norm; 0 = off
_C.TRAIN.AMP = "auto"  # "auto" = bf16 autocast on CUDA, fp32 on CPU | "bf16" | "off"
_C.TRAIN.COMPILE = False  # torch.compile the method
_C.TRAIN.SAVE_FREQ = 50  # save when epoch % SAVE_FREQ == 0 and at the last epoch (0-based)
_C.TRAIN.MAX_ITERS = 0  # cap on iterations per epoch (0 = whole epoch); for smoke tests
_C.TRAIN.PROGRESS = True  # tqdm bar (only on a TTY)
_C.TRAIN.TENSORBOARD = True  # write OUTPUT_DIR/tb if tensorboard is installed


def get_cfg_default() -> CN:
    """A fresh copy of the pretraining defaults, every registered method's keys included."""
    from sarjepa.pretrain.methods import extend_cfg

    cfg = _C.clone()
    extend_cfg(cfg)
    return cfg


def bundled_config_names() -> list[str]:
    """Sorted names of the bundled configs (``pretrain/configs/<name>.yaml``), e.g. ``mae_tiny``."""
    return sorted(f.stem for f in CONFIG_DIR.glob("*.yaml"))


def resolve_config_file(path: str) -> Path:
    """Accept a path, or the stem/name of a bundled config (e.g. ``sarjepa_tiny``)."""
    p = Path(path)
    if p.is_file():
        return p
    for cand in (CONFIG_DIR / p.name, CONFIG_DIR / f"{p.name}.yaml"):
        if not p.parent.name and cand.is_file():
            return cand
    known = bundled_config_names()
    raise SarjepaError(
        f"config file '{path}' not found{closest(p.stem, known)}; bundled: {', '.join(known)}"
    )


def load_config(config_file: str = "", opts: list[str] | None = None) -> CN:
    """Defaults <- YAML file <- ``KEY VALUE`` list; raise ``SarjepaError`` on bad keys/values."""
    cfg = get_cfg_default()
    if config_file:
        path = resolve_config_file(config_file)
        try:
            cfg.merge_from_file(str(path))
        except Exception as exc:
            raise SarjepaError(f"config file '{config_file}': {_key_msg(exc)}") from None
    if opts:
        if len(opts) % 2:
            raise SarjepaError(f"overrides must be KEY VALUE pairs; got an odd list: {opts}")
        opts = _add_target_options(cfg, list(opts))
        try:
            cfg.merge_from_list(opts)
        except Exception as exc:
            raise SarjepaError(f"override: {_key_msg(exc)}") from None
    check_config(cfg)
    return cfg


def _add_target_options(cfg: CN, opts: list[str]) -> list[str]:
    """Set ``TARGET.OPTIONS.<NAME> value`` pairs directly (yacs refuses keys it does not know);
    return the remaining pairs."""
    rest: list[str] = []
    for key, value in zip(opts[0::2], opts[1::2]):
        prefix = "TARGET.OPTIONS."
        if key.startswith(prefix) and "." not in key[len(prefix) :]:
            cfg.TARGET.OPTIONS[key[len(prefix) :]] = CN._decode_cfg_value(value)
        else:
            rest += [key, value]
    return rest


def check_config(cfg: CN) -> None:
    """Value checks that need no model or data; raise a one-line ``SarjepaError``."""
    positive = {
        "TRAIN.EPOCHS": cfg.TRAIN.EPOCHS,
        "TRAIN.BATCH_SIZE": cfg.TRAIN.BATCH_SIZE,
        "INPUT.SIZE": cfg.INPUT.SIZE,
    }
    for key, value in positive.items():
        if value <= 0:
            raise SarjepaError(f"{key} must be positive, got {value}")
    from sarjepa.pretrain.methods import check_cfg

    check_cfg(cfg)  # the keys the methods own
    for key, value in {
        "TRAIN.WARMUP_EPOCHS": cfg.TRAIN.WARMUP_EPOCHS,
        "TRAIN.ACCUM_ITER": cfg.TRAIN.ACCUM_ITER,
        "TRAIN.EFFECTIVE_BATCH": cfg.TRAIN.EFFECTIVE_BATCH,
        "TRAIN.SAVE_FREQ": cfg.TRAIN.SAVE_FREQ,
        "TRAIN.MAX_ITERS": cfg.TRAIN.MAX_ITERS,
        "DATA.NUM_WORKERS": cfg.DATA.NUM_WORKERS,
    }.items():
        if value < 0:
            raise SarjepaError(f"{key} must be >= 0, got {value}")
    if not 0.0 < cfg.MASK.RATIO < 1.0:
        raise SarjepaError(f"MASK.RATIO must be in (0, 1), got {cfg.MASK.RATIO}")
    if cfg.TRAIN.AMP not in ("auto", "bf16", "off"):
        raise SarjepaError(f"TRAIN.AMP must be auto, bf16 or off, got '{cfg.TRAIN.AMP}'")


def _key_msg(exc: Exception) -> str:
    """One-line message of a yacs merge error, with a suggestion for an unknown key."""
    msg = one_line(exc.args[0]) if exc.args else one_line(exc)
    for prefix in ("Non-existent config key: ", "Non-existent key: "):
        if not msg.startswith(prefix):
            continue
        key = msg[len(prefix) :].strip()
        return f"unknown config key '{key}'{closest(key, flat_keys(get_cfg_default()))}"
    return msg
