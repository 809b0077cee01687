"""Pretraining methods, registered by name.

``METHODS`` maps a method name to a builder ``builder(cfg) -> PretrainMethod`` (see
:mod:`pretrain.methods.base` for the contract the engine relies on). Every module of this package
(other than ``base``) that defines ``register(registry)`` is imported on first use and registers
its methods, so a new method (MAE, I-JEPA, FG-MAE, MaskFeat, ...) is one new module here.
"""

from __future__ import annotations

import importlib
import pkgutil
import re

from sarjepa.benchmark.core.errors import SarjepaError
from sarjepa.benchmark.core.registry import Registry
from sarjepa.pretrain.methods.base import PretrainMethod, masked_mse

__all__ = [
    "METHODS",
    "PretrainMethod",
    "build_encoder",
    "build_method",
    "masked_mse",
    "method_names",
]

METHODS: Registry = Registry("method")
_loaded = False


def _load_all() -> None:
    """Import the method modules once; each registers its names through ``register``."""
    global _loaded
    if _loaded:
        return
    _loaded = True
    for info in sorted(pkgutil.iter_modules(__path__), key=lambda m: m.name):
        if info.name == "base" or info.name.startswith("_"):
            continue
        module = importlib.import_module(f"{__name__}.{info.name}")
        register = getattr(module, "register", None)
        if register is not None:
            register(METHODS)


def method_names() -> list[str]:
    """Sorted names of all registered methods."""
    _load_all()
    return METHODS.names()


def build_encoder(cfg):
    """The ViT described by ``MODEL.*`` and ``INPUT.SIZE`` (0 / "" keys keep the arch's value)."""
    from sarjepa.pretrain.models import build_vit

    overrides = {
        "img_size": int(cfg.INPUT.SIZE),
        "in_chans": int(cfg.MODEL.IN_CHANS),
        "pos_embed": cfg.MODEL.POS_EMBED,
        "class_token": bool(cfg.MODEL.CLASS_TOKEN),
        "drop_path_rate": float(cfg.MODEL.DROP_PATH),
    }
    for key in ("EMBED_DIM", "DEPTH", "NUM_HEADS", "PATCH_SIZE", "MLP_RATIO"):
        value = cfg.MODEL[key]
        if value:
            overrides[key.lower()] = value
    patch = overrides.get("patch_size")
    if not patch:
        m = re.search(r"_patch(\d+)", str(cfg.MODEL.ARCH))
        patch = int(m.group(1)) if m else 16
    if int(cfg.INPUT.SIZE) % int(patch):
        raise SarjepaError(
            f"INPUT.SIZE {cfg.INPUT.SIZE} is not a multiple of the patch size {patch}"
        )
    return build_vit(cfg.MODEL.ARCH, **overrides)


def build_method(cfg) -> PretrainMethod:
    """Build the method named by ``cfg.METHOD.NAME`` (unknown names suggest the closest)."""
    _load_all()
    return METHODS.get(cfg.METHOD.NAME)(cfg)
