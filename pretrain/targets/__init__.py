"""Registry of regression targets for masked prediction.

``build_target(name, patch_size=16, **options)`` returns a callable target ``t`` with
``t(images) -> (B, N, t.dim)``, ``t.maps(images) -> (B, C, H, W)`` and ``t.dim``; images are
(B, 1, H, W) floats in [0, 1], N = (H / p) * (W / p) in row-major patch order.

=============  =========================================================  =================
name           what (module)                                              dim at p = 16
=============  =========================================================  =================
``gf``         SAR-JEPA multi-scale gradient field, ``scales`` (targets.gf)    256 per scale
``gf_gauss``   Gaussian-weighted GF variant (targets.gf)                     256 per scale
``pixel``      raw pixels, ``norm_pix`` option (targets.pixel)               256
``lowpass``    Gaussian-blurred pixels, ``sigma`` (targets.pixel)            256
``hog``        MaskFeat HOG, Sobel gradients (targets.hog)                   36
``sar_hog``    the same histogram of the log-ratio gradient (targets.hog)    36
=============  =========================================================  =================
"""

from __future__ import annotations

import inspect

import sarjepa.pretrain.targets.gf  # noqa: F401  (registers gf, gf_gauss)
import sarjepa.pretrain.targets.hog  # noqa: F401  (registers hog, sar_hog)
import sarjepa.pretrain.targets.pixel  # noqa: F401  (registers pixel, lowpass)
from sarjepa.benchmark.core.errors import SarjepaError, closest
from sarjepa.pretrain.targets.base import TARGETS, Target, patchify, unpatchify

__all__ = ["TARGETS", "Target", "build_target", "target_options", "patchify", "unpatchify"]


def target_options(name: str) -> list[str]:
    """The option names the target ``name`` accepts besides ``patch_size``."""
    cls = TARGETS.get(name)
    params = inspect.signature(cls.__init__).parameters
    return [k for k in params if k not in ("self", "patch_size")]


def build_target(name: str, patch_size: int = 16, **options) -> Target:
    """Build the target registered as ``name``.

    Args:
        name: one of ``TARGETS.names()``; an unknown name raises ``SarjepaError`` suggesting the
            closest known one.
        patch_size: ViT patch side p in pixels.
        **options: target options, e.g. ``scales=(5, 9, 13, 17)`` for ``gf``, ``norm_pix=True``
            for ``pixel``; an option the target does not take raises ``SarjepaError``.
    """
    cls = TARGETS.get(name)
    accepted = target_options(name)
    for key in options:
        if key not in accepted:
            raise SarjepaError(
                f"target '{TARGETS.resolve(name)}' has no option '{key}'{closest(key, accepted)}; "
                f"options: {', '.join(accepted) or 'none'}"
            )
    return cls(patch_size=patch_size, **options)
