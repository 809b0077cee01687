"""Encoder architecture from a checkpoint's tensors, names and ``MODEL.BACKBONE.*`` overrides.

Read off the state dict: ``embed_dim``, ``in_chans`` and ``patch_size`` from
``patch_embed.proj.weight`` ``(D, C, P, P)``; ``depth`` from the ``blocks.N.`` indices;
``mlp_ratio`` from ``blocks.0.mlp.fc1.weight``; ``qkv_bias``; ``class_token`` from ``cls_token``;
the position encoding (``irpe`` if iRPE tables exist, else ``sincos`` if ``pos_embed`` exists,
else ``none``) and ``img_size`` from the ``pos_embed`` grid; ``num_heads`` from the iRPE table
``(1, head_dim, 50)`` as ``D / head_dim``. Weights cannot tell the head count of other models:
it then comes from a model name (the checkpoint's ``args.model``, ``MODEL.BACKBONE.NAME``) whose
width matches, or the standard widths (192/3, 384/6, 768/12, 1024/16, 1280/16).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from sarjepa.benchmark.core.errors import SarjepaError
from sarjepa.pretrain.models.vit import ARCH_KEYS, SIZES
from torch import Tensor

#: Heads of the standard ViT widths, used when nothing else tells the head count.
STANDARD_HEADS = {192: 3, 384: 6, 768: 12, 1024: 16, 1280: 16}
_SIZE_NAME = re.compile(r"vit_(tiny|small|base|large|huge)")
_HUGE = (1280, 32, 16)


def has_rpe(sd: Mapping[str, Any]) -> bool:
    """Whether a state dict holds iRPE key tables."""
    return any(k.endswith("attn.rpe_k.lookup_table_weight") for k in sd)


def block_index(key: str) -> int:
    """N of a ``blocks.N.`` key, else -1."""
    m = re.match(r"blocks\.(\d+)\.", key)
    return int(m.group(1)) if m else -1


def _depth(sd: Mapping[str, Tensor]) -> int:
    ids = [int(m.group(1)) for k in sd if (m := re.match(r"blocks\.(\d+)\.", k))]
    return max(ids) + 1 if ids else 0


def infer_arch(sd: Mapping[str, Tensor], fmt: str = "state_dict") -> dict[str, Any]:
    """Architecture read off the tensors; ``num_heads`` only if an iRPE table tells it.

    Args:
        sd: encoder state dict (prefixes stripped).
        fmt: checkpoint format; ``ijepa`` pools by the mean, and iRPE models ignore ``pos_embed``.

    Returns:
        A partial :meth:`~pretrain.models.VisionTransformer.arch_dict`.
    """
    w = sd["patch_embed.proj.weight"]
    if w.ndim != 4 or w.shape[2] != w.shape[3]:
        raise SarjepaError(
            f"patch_embed.proj.weight has shape {tuple(w.shape)}; expected (D, C, P, P)"
        )
    dim, in_chans, patch = int(w.shape[0]), int(w.shape[1]), int(w.shape[2])
    arch: dict[str, Any] = {"embed_dim": dim, "in_chans": in_chans, "patch_size": patch}
    arch["depth"] = _depth(sd)
    fc1 = sd.get("blocks.0.mlp.fc1.weight")
    if fc1 is not None:
        arch["mlp_ratio"] = float(fc1.shape[0]) / dim
    arch["qkv_bias"] = "blocks.0.attn.qkv.bias" in sd
    arch["class_token"] = "cls_token" in sd
    rpe = sd.get("blocks.0.attn.rpe_k.lookup_table_weight")
    if has_rpe(sd):
        arch["pos_embed"] = "irpe"
        if rpe is not None and rpe.ndim == 3 and rpe.shape[1] > 0 and dim % rpe.shape[1] == 0:
            arch["num_heads"] = dim // int(rpe.shape[1])
    elif "pos_embed" in sd:
        arch["pos_embed"] = "sincos"
    else:
        arch["pos_embed"] = "none"
    pe = sd.get("pos_embed")
    if pe is not None and pe.ndim == 3:
        n = int(pe.shape[1]) - (1 if arch["class_token"] else 0)
        side = int(round(n**0.5))
        if side * side == n and n > 0:
            arch["img_size"] = side * patch
    if fmt == "ijepa" or not arch["class_token"]:
        arch["global_pool"] = "mean"
    return arch


def _heads_from_name(name: str, dim: int) -> int | None:
    m = _SIZE_NAME.search(str(name))
    if not m:
        return None
    d, _, h = _HUGE if m.group(1) == "huge" else SIZES[m.group(1)]
    return h if d == dim else None


def resolve_arch(
    base: Mapping[str, Any],
    overrides: Mapping[str, Any] | None = None,
    name_hints: tuple[str, ...] = (),
) -> dict[str, Any]:
    """Complete an architecture: ``base`` <- ``overrides``, then fill ``num_heads`` and the pool.

    ``num_heads`` comes, in order, from the overrides, ``base`` (metadata or iRPE table), a model
    name in ``name_hints`` whose width matches (e.g. ``args.model`` of the checkpoint, then
    ``MODEL.BACKBONE.NAME``) and the standard ViT widths (192/3, 384/6, 768/12, 1024/16, 1280/16).
    """
    arch = {k: v for k, v in base.items() if k in ARCH_KEYS}
    arch.update(overrides or {})
    if "global_pool" not in (overrides or {}) and not arch.get("class_token", True):
        arch["global_pool"] = "mean"
    if not arch.get("num_heads"):
        dim = int(arch["embed_dim"])
        heads = next((h for n in name_hints if (h := _heads_from_name(n, dim))), None)
        heads = heads or STANDARD_HEADS.get(dim)
        if heads is None:
            raise SarjepaError(
                f"cannot infer the number of heads for embed_dim {dim} (no iRPE "
                "table, no model name); set MODEL.BACKBONE.NUM_HEADS"
            )
        arch["num_heads"] = heads
    return arch
