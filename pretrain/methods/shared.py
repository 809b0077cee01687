"""What several pretraining methods share: their target, sidecar facts, local-window parts and
strict state-dict loading. No method imports another method's module; they all import this one.

- :func:`target_spec`, :func:`build_cfg_target`, :func:`target_facts`: a method's per-patch
  regression target from ``TARGET.NAME`` / ``TARGET.OPTIONS`` over the method's default, and the
  facts the checkpoint sidecar records about it (SAR-JEPA family, LoMaR, MAE / FG-MAE, MaskFeat).
- :class:`LocalWindowMethod`: the window-token gather, targets and loss of the local-window methods
  (SAR-JEPA family and upstream LoMaR), their config keys ``MASK.WINDOW_SIZE`` /
  ``MASK.NUM_WINDOW`` and their small-grid window fit.
- :func:`load_strict`: load a state dict saved with DDP's ``module.`` prefix, one-line errors.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
from sarjepa.benchmark.core.errors import SarjepaError
from sarjepa.pretrain.methods.base import PretrainMethod, masked_mse
from torch import Tensor, nn

DDP_PREFIX = "module."


# ------------------------------------------------------------------------------ targets
def jsonable(v: Any) -> Any:
    """``v`` with mappings as ``{str: ...}`` and tuples as lists (plain JSON types)."""
    if isinstance(v, Mapping):
        return {str(k): jsonable(x) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return [jsonable(x) for x in v]
    return v


def target_spec(cfg, default_target: str, default_options: Mapping[str, Any]):
    """(target name, options) from ``TARGET.NAME`` / ``TARGET.OPTIONS`` over a method default.

    The method's default options apply only when the target is the method's own target;
    ``TARGET.OPTIONS`` keys are lower-cased and win. Sequences become tuples.
    """
    name = cfg.TARGET.NAME or default_target
    options = dict(default_options) if name == default_target else {}
    for key, value in cfg.TARGET.OPTIONS.items():
        options[key.lower()] = tuple(value) if isinstance(value, list) else value
    return name, options


def build_cfg_target(
    cfg, patch_size: int, default_target: str, default_options: Mapping[str, Any]
) -> tuple[Any, str, dict[str, Any]]:
    """``(target, name, options)``: the ``pretrain.targets`` target :func:`target_spec` names.

    Raises:
        SarjepaError: an unknown target, or options the target does not take.
    """
    from sarjepa.pretrain.targets import build_target

    name, options = target_spec(cfg, default_target, default_options)
    try:
        target = build_target(name, patch_size=patch_size, **options)
    except TypeError as exc:
        raise SarjepaError(f"TARGET.OPTIONS for target '{name}': {exc}") from None
    return target, name, options


def target_facts(method: PretrainMethod) -> dict:
    """The sidecar's ``method`` / ``target`` / ``target_options`` / ``target_dim`` of a method
    with a fixed target (``method.target``, ``target_name``, ``target_options``)."""
    options = method.target_options
    if callable(getattr(method.target, "options", None)):
        options = {**method.target.options(), **options}
    return {
        "method": method.name,
        "target": method.target_name,
        "target_options": jsonable(options),
        "target_dim": int(method.target.dim),
    }


# ------------------------------------------------------------------------------ local windows
def check_window_geometry(img_size: int, patch_size: int, window_size: int, ratio: float) -> None:
    """Raise a one-line ``SarjepaError`` for an impossible image/patch/window combination."""
    if img_size % patch_size:
        raise SarjepaError(
            f"INPUT.SIZE {img_size} is not a multiple of the patch size {patch_size}"
        )
    grid = img_size // patch_size
    if window_size > grid:
        raise SarjepaError(
            f"MASK.WINDOW_SIZE {window_size} is larger than the {grid}x{grid} patch grid "
            f"(INPUT.SIZE {img_size} / patch {patch_size})"
        )
    if int(window_size * window_size * ratio) < 1:
        raise SarjepaError(
            f"MASK.RATIO {ratio} masks no patch of a {window_size}x{window_size} window"
        )


class LocalWindowMethod(PretrainMethod):
    """Base of the local-window methods: subclasses set ``target``, ``window_size`` and implement
    ``draw_windows(batch, grid_hw, generator) -> LocalWindows`` and
    ``predict(images, patch_index, mask) -> (B*W, L, dim)``; this class gathers the window
    targets and computes the masked-patch loss."""

    window_size: int

    @classmethod
    def extend_cfg(cls, cfg) -> None:
        """``MASK.WINDOW_SIZE`` and ``MASK.NUM_WINDOW`` (LoMaR local windows, patch units)."""
        if "WINDOW_SIZE" not in cfg.MASK:
            cfg.MASK.WINDOW_SIZE = 7
            cfg.MASK.NUM_WINDOW = 4

    @classmethod
    def check_cfg(cls, cfg) -> None:
        for key in ("WINDOW_SIZE", "NUM_WINDOW"):
            if cfg.MASK[key] <= 0:
                raise SarjepaError(f"MASK.{key} must be positive, got {cfg.MASK[key]}")

    @classmethod
    def small_grid_overrides(cls, cfg, grid: int) -> list[str]:
        """On grids under the paper's 14 x 14: windows of half the grid, at most as many as
        distinct origins per axis (LoMaR's batch-shared windows need distinct rows and
        columns); the paper's (7, 4) otherwise."""
        if grid >= 14:
            return []
        window = max(2, grid // 2)
        num_window = min(int(cfg.MASK.NUM_WINDOW), grid - window + 1)
        return ["MASK.WINDOW_SIZE", str(window), "MASK.NUM_WINDOW", str(num_window)]

    def compute_targets(self, images: Tensor, patch_index: Tensor) -> Tensor:
        """Targets of the window tokens: (B*W, L, dim) float32, same order as ``predict``."""
        with torch.no_grad(), torch.autocast(images.device.type, enabled=False):
            full = self.target(images.float())  # (B, N, dim)
        b, _, dim = full.shape
        nw, seq = patch_index.shape[1], patch_index.shape[2]
        idx = patch_index.reshape(b, nw * seq, 1).expand(-1, -1, dim)
        return torch.gather(full, 1, idx).reshape(b * nw, seq, dim)

    def forward(self, images: Tensor, generator: torch.Generator | None = None):
        """Loss of one batch.

        Args:
            images: (B, C, H, W) in [0, 1]; H, W multiples of the patch size.
            generator: CPU generator for the windows and masks (None: torch's default one).

        Returns:
            ``(loss, stats)``: 0-d float32 masked-patch MSE and ``{"loss": detached}``.
        """
        p = self.encoder.patch_size
        grid = (images.shape[-2] // p, images.shape[-1] // p)
        win = self.draw_windows(images.shape[0], grid, generator)
        patch_index = win.patch_index.to(images.device, non_blocking=True)
        mask = win.mask.to(images.device, non_blocking=True)
        pred = self.predict(images, patch_index, mask)
        target = self.compute_targets(images, patch_index)
        b, nw, seq = mask.shape
        loss = masked_mse(pred, target, mask.reshape(b * nw, seq))
        return loss, {"loss": loss.detach()}

    def window_tokens(self, images: Tensor, patch_index: Tensor, mask: Tensor) -> Tensor:
        """Embedded window tokens with masked ones replaced by ``mask_token``: (B*W, L, D)."""
        tokens = self.encoder.patch_embed(images)  # (B, N, D)
        b, _, d = tokens.shape
        nw, seq = patch_index.shape[1], patch_index.shape[2]
        idx = patch_index.reshape(b, nw * seq, 1).expand(-1, -1, d)
        x = torch.gather(tokens, 1, idx).reshape(b * nw, seq, d)
        return torch.where(mask.reshape(b * nw, seq, 1), self.mask_token.to(x.dtype), x)


# ------------------------------------------------------------------------------ loading
def load_strict(module: nn.Module, state: dict, what: str) -> None:
    """``module.load_state_dict(state)`` without ``module.`` prefixes, with one-line errors.

    Raises:
        SarjepaError: missing or unexpected keys, or shape mismatches (the message starts with
            ``what``).
    """
    state = {(k[len(DDP_PREFIX) :] if k.startswith(DDP_PREFIX) else k): v for k, v in state.items()}
    own = module.state_dict()
    missing, unexpected = sorted(set(own) - set(state)), sorted(set(state) - set(own))
    bad = [k for k in own if k in state and tuple(state[k].shape) != tuple(own[k].shape)]
    if missing or unexpected or bad:
        raise SarjepaError(
            f"{what} does not fit: missing {missing[:4] or 'none'}, unexpected "
            f"{unexpected[:4] or 'none'}, shape mismatch {bad[:4] or 'none'}"
        )
    module.load_state_dict(state, strict=True)
