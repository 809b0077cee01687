"""Optional bridge into a real Dassl (KaiyangZhou/Dassl.pytorch), for users who run Dassl itself.

``install_into_dassl()`` does what the SAR-JEPA authors did by editing Dassl's files, without
editing them:

- registers ``MSTAR_SOC``, ``New_FUSAR``, ``SAR_ACD`` and ``SARFolder`` (this harness's readers,
  with sorted walks, seed-0 seeding and a JSON split cache) in Dassl's ``DATASET_REGISTRY``;
- replaces Dassl's ``read_image`` with :func:`dassl_patches.io.read_image_gray` and its
  ``build_transform`` with :func:`dassl_patches.transforms.build_transform` (single channel);

and ``add_sarjepa_keys(cfg)`` adds this harness's extra config keys (``RUN.*``,
``INPUT.CROP_SIZE``, ``DATASET.IGNORE_CLASSES``, ...) to a Dassl config, as Dassl's
``extend_cfg`` would. Typical use in a Dassl ``train.py``::

    from sarjepa.benchmark.dassl_bridge import add_sarjepa_keys, install_into_dassl
    install_into_dassl()
    cfg = get_cfg_default(); add_sarjepa_keys(cfg); ...
"""

from __future__ import annotations

import importlib
from typing import Any

from sarjepa.benchmark.config import get_cfg_default
from sarjepa.benchmark.core.errors import SarjepaError
from sarjepa.benchmark.datasets import DATASET_REGISTRY
from sarjepa.dassl_patches.io import read_image_gray
from sarjepa.dassl_patches.transforms import build_transform
from yacs.config import CfgNode as CN


def add_sarjepa_keys(cfg: Any) -> Any:
    """Add every key of this harness's defaults that ``cfg`` (a Dassl config) lacks; returns cfg."""

    def merge(dst: CN, src: CN) -> None:
        for key, value in src.items():
            if key not in dst:
                dst[key] = value.clone() if isinstance(value, CN) else value
            elif isinstance(value, CN) and isinstance(dst[key], CN):
                merge(dst[key], value)

    merge(cfg, get_cfg_default())
    return cfg


def install_into_dassl(overwrite: bool = False) -> list[str]:
    """Register this package's datasets and SAR I/O in an importable Dassl.

    Args:
        overwrite: replace datasets of the same name already in Dassl's registry (e.g. the
            authors' own ``MSTAR_SOC`` reader); otherwise those are left as they are.

    Returns:
        The dataset names registered.

    Raises:
        SarjepaError: Dassl cannot be imported.
    """
    try:
        datasets = importlib.import_module("dassl.data.datasets")
        tools = importlib.import_module("dassl.utils.tools")
        manager = importlib.import_module("dassl.data.data_manager")
        tfms = importlib.import_module("dassl.data.transforms")
    except ImportError as exc:
        raise SarjepaError(f"Dassl is not importable here ({exc})") from None

    def read_image(path: str):
        return read_image_gray(path)

    def dassl_build_transform(cfg, is_train=True, choices=None):
        if choices is not None:
            cfg = cfg.clone()
            cfg.defrost()
            cfg.INPUT.TRANSFORMS = list(choices)
        return build_transform(cfg, is_train=is_train)

    for module in (tools, manager, importlib.import_module("dassl.utils")):
        if hasattr(module, "read_image"):
            module.read_image = read_image
    for module in (tfms, manager):
        if hasattr(module, "build_transform"):
            module.build_transform = dassl_build_transform

    registry = datasets.DATASET_REGISTRY
    done = []
    for name in DATASET_REGISTRY.names():
        present = name in registry._obj_map  # Dassl's Registry keeps its map here
        if present and not overwrite:
            continue
        registry._obj_map[name] = DATASET_REGISTRY.get(name)
        done.append(name)
    return done
