"""Pretraining methods, registered by name.

``METHODS`` maps a method name to its :class:`~pretrain.methods.base.PretrainMethod` subclass (see
:mod:`pretrain.methods.base` for the contract the engine relies on, and the classmethods through
which a method owns its config keys). Every module of this package (other than ``base`` and
``shared``) that defines ``register(registry)`` is imported on first use and registers its
classes, so a new method is one new module here (plus its YAMLs in ``pretrain/configs/``); what
several methods share lives in :mod:`pretrain.methods.shared`.
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
    "check_cfg",
    "current_method_name",
    "extend_cfg",
    "masked_mse",
    "method_class",
    "method_names",
    "small_grid_overrides",
]
_NOT_METHODS = ("base", "shared")

METHODS: Registry = Registry("method")
_loaded = False


def _load_all() -> None:
    """Import the method modules once; each registers its names through ``register``."""
    global _loaded
    if _loaded:
        return
    _loaded = True
    for info in sorted(pkgutil.iter_modules(__path__), key=lambda m: m.name):
        if info.name in _NOT_METHODS or info.name.startswith("_"):
            continue
        module = importlib.import_module(f"{__name__}.{info.name}")
        register = getattr(module, "register", None)
        if register is not None:
            register(METHODS)


def method_names() -> list[str]:
    """Sorted names of all registered methods."""
    _load_all()
    return METHODS.names()


def method_class(name: str) -> type[PretrainMethod]:
    """The class registered as ``name`` (unknown names suggest the closest)."""
    _load_all()
    return METHODS.get(name)


def _classes() -> list[type[PretrainMethod]]:
    """Every registered class once, in name order."""
    _load_all()
    out: list[type[PretrainMethod]] = []
    for name in METHODS.names():
        cls = METHODS.get(name)
        if cls not in out:
            out.append(cls)
    return out


def extend_cfg(cfg) -> None:
    """Add every registered method's own config keys to ``cfg`` (the pretraining defaults)."""
    for cls in _classes():
        cls.extend_cfg(cfg)


def check_cfg(cfg) -> None:
    """Every registered method's checks of its own keys; one-line ``SarjepaError``."""
    for cls in _classes():
        cls.check_cfg(cfg)


def small_grid_overrides(cfg, grid: int) -> list[str]:
    """``KEY VALUE`` overrides fitting ``cfg``'s method to a ``grid x grid`` patch grid."""
    return method_class(cfg.METHOD.NAME).small_grid_overrides(cfg, grid)


def current_method_name(name: str, model_keys) -> str:
    """The present name of a method a checkpoint records as ``name`` (renamed methods)."""
    for cls in _classes():
        new = cls.current_name(name, model_keys)
        if new is not None:
            return new
    return name


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
    name = METHODS.resolve(cfg.METHOD.NAME)
    return METHODS.get(name).from_cfg(cfg, name)
