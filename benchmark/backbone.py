"""The benchmark's backbone: the Dassl config schema (``MODEL.BACKBONE.*``, ``MODEL.POOL``,
``MODEL.INIT_WEIGHTS``) turned into an encoder, via :mod:`pretrain.weights` for checkpoints."""

from __future__ import annotations

from typing import Any

from sarjepa.benchmark.core.errors import SarjepaError, unknown
from sarjepa.pretrain.checkpoint_ref import CheckpointRef, resolve_checkpoint
from sarjepa.pretrain.models import build_vit
from sarjepa.pretrain.models.vit import POS_EMBEDS
from sarjepa.pretrain.weights import LoadedEncoder, Log, arch_str, load_encoder


def parse_bool(value: Any, what: str) -> bool:
    """``True/False``, ``"true"/"false"/"1"/"0"/"yes"/"no"`` -> bool; anything else an error."""
    if isinstance(value, bool):
        return value
    s = str(value).strip().lower()
    if s in ("true", "1", "yes", "on"):
        return True
    if s in ("false", "0", "no", "off"):
        return False
    raise SarjepaError(f"{what} must be true or false, got '{value}'")


def backbone_overrides(cfg: Any) -> dict[str, Any]:
    """Explicit ``MODEL.BACKBONE.*`` / ``MODEL.POOL`` values as arch keys (0 / "" = unset)."""
    bb = cfg.MODEL.BACKBONE
    out: dict[str, Any] = {}
    for cfg_key, arch_key in (
        ("EMBED_DIM", "embed_dim"),
        ("DEPTH", "depth"),
        ("NUM_HEADS", "num_heads"),
        ("PATCH_SIZE", "patch_size"),
        ("IN_CHANS", "in_chans"),
    ):
        v = int(bb.get(cfg_key, 0) or 0)
        if v > 0:
            out[arch_key] = v
    pos = str(bb.get("POS_EMBED", "") or "").strip().lower()
    if pos:
        if pos not in POS_EMBEDS:
            raise unknown("MODEL.BACKBONE.POS_EMBED", pos, POS_EMBEDS)
        out["pos_embed"] = pos
    cls = bb.get("CLASS_TOKEN", "")
    if cls not in ("", None):
        out["class_token"] = parse_bool(cls, "MODEL.BACKBONE.CLASS_TOKEN")
    pool = str(cfg.MODEL.get("POOL", "") or "").strip().lower()
    if pool:
        if pool not in ("cls", "mean"):
            raise unknown("MODEL.POOL", pool, ("cls", "mean"))
        out["global_pool"] = pool
    return out


def checkpoint_from_cfg(cfg: Any) -> CheckpointRef | None:
    """``MODEL.INIT_WEIGHTS`` (with ``MODEL.WEIGHTS_KEY``) resolved and checked once; None for a
    random init (empty ``MODEL.INIT_WEIGHTS``).

    Raises:
        SarjepaError: the checkpoint is missing, unreadable or holds no encoder under the key.
    """
    if not cfg.MODEL.INIT_WEIGHTS:
        return None
    return resolve_checkpoint(cfg.MODEL.INIT_WEIGHTS, str(cfg.MODEL.get("WEIGHTS_KEY", "")))


def encoder_from_cfg(
    cfg: Any, log: Log = print, checkpoint: CheckpointRef | None = None, share: bool = False
) -> LoadedEncoder:
    """The benchmark backbone of a run config: ``MODEL.INIT_WEIGHTS`` or a random init.

    ``checkpoint`` is ``MODEL.INIT_WEIGHTS`` as resolved by the caller
    (:func:`checkpoint_from_cfg`); None resolves it here. ``share``: a checkpoint's encoder may
    be the one loaded before in this process (``load_encoder(share=True)``; for a frozen
    backbone that is not changed). Random init builds
    ``MODEL.BACKBONE.NAME`` at ``INPUT.SIZE`` with the explicit ``MODEL.BACKBONE.*`` overrides
    (the `random` baseline); its weights come from the global torch RNG, so seed first.
    """
    overrides = backbone_overrides(cfg)
    size = tuple(int(s) for s in cfg.INPUT.SIZE)
    img_size: int | tuple[int, int] = size[0] if size[0] == size[1] else size
    if cfg.MODEL.INIT_WEIGHTS:
        if checkpoint is None:
            checkpoint = checkpoint_from_cfg(cfg)
        elif checkpoint.path != str(cfg.MODEL.INIT_WEIGHTS):
            raise SarjepaError(
                f"checkpoint '{checkpoint.path}' was resolved for MODEL.INIT_WEIGHTS "
                f"'{cfg.MODEL.INIT_WEIGHTS}'"
            )
        return load_encoder(
            checkpoint,
            overrides,
            name_hint=cfg.MODEL.BACKBONE.NAME,
            default_img_size=img_size,
            log=log,
            share=share,
        )
    extra = {"img_size": img_size, **overrides}
    try:
        model = build_vit(cfg.MODEL.BACKBONE.NAME, **extra)
    except (ValueError, TypeError) as exc:
        raise SarjepaError(
            f"cannot build backbone '{cfg.MODEL.BACKBONE.NAME}' with {extra}: {exc}"
        ) from None
    model.eval()
    log(f"Random init (no MODEL.INIT_WEIGHTS): ViT {arch_str(model.arch_dict())}")
    return LoadedEncoder(encoder=model, arch=model.arch_dict(), format="random")
