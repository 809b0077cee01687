"""Load any supported pretrained checkpoint into a :class:`~pretrain.models.VisionTransformer`.

Supported formats (detected from the file's contents; ``module.`` prefixes are stripped):

* ``sarjepa`` - our own ``checkpoint-<epoch>.pth``: ``{"model": sd, "args": {"arch": ...}, ...}``,
  usually beside a ``checkpoint-<epoch>.json`` sidecar (``"format": "sarjepa-pretrain/1"``). The
  architecture is read from the sidecar (or ``args["arch"]``). Our ``ijepa`` runs save the
  ``ijepa`` layout below instead of ``model``; their ``target_encoder`` is loaded.
* ``lomar`` - the SAR-JEPA / LoMaR authors' pretraining checkpoints: ``model`` holds the whole
  pretraining model (encoder keys at top level, iRPE tables
  ``blocks.N.attn.rpe_k.lookup_table_weight`` of shape ``(1, head_dim, 50)``, plus
  ``mask_token``, an unused ``pos_embed``, ``encoder_pred.*``, ``decoder_*`` and the GF target
  buffers ``sarfeature*``), ``args`` is an ``argparse.Namespace``.
* ``mae`` - facebookresearch/mae (and FG-MAE): ``model`` holds timm ViT keys, a fixed sin-cos
  ``pos_embed`` ``(1, 1+N, D)`` and ``decoder_*``; features are the CLS token after ``norm``.
* ``ijepa`` - facebookresearch/ijepa: top-level ``encoder`` / ``predictor`` / ``target_encoder``
  state dicts (``module.``-prefixed), no CLS token, sin-cos ``pos_embed`` ``(1, N, D)``; the
  ``target_encoder`` is used by default, pooled by the mean of its final-norm tokens.
* ``state_dict`` - a bare state dict (or one under ``state_dict``) with the same key names.

Loading is safe (``torch.load(weights_only=True)``, allow-listing only ``argparse.Namespace``).
The architecture comes from our metadata when present, else it is inferred from the tensors
(:mod:`pretrain.weights_arch`), and explicit overrides win. Head / decoder / predictor /
mask-token / ``encoder_pred`` keys (and the unused ``pos_embed`` of iRPE models) are dropped
silently and any other extra key is reported. A load is refused with a one-line
:class:`~benchmark.core.errors.SarjepaError` naming the keys when it would leave an encoder
weight at its random init, when a shape differs, or when the checkpoint has weights inside the
encoder's
blocks or norms that the built model has no place for (layer scale, qk-norm ...). The model is
built without a random init (meta device, then every tensor loaded), so loading does not touch
the global RNG.

Size: about 500 lines because it is the one place that knows every checkpoint format (ours,
the authors', MAE, I-JEPA, plain state dicts) and maps each onto the encoder; splitting it by
format would spread the shared key-mapping rules over several files. The two per-process
memos (a checkpoint's selected weights; a frozen encoder shared by a grid's feature cells) sit
beside the loader they short-cut.
"""

from __future__ import annotations

import argparse
import collections
import contextlib
import json
import pickle
import re
import zipfile
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from sarjepa.benchmark.core.errors import SarjepaError, not_a_file
from sarjepa.benchmark.core.provenance import cached_file_sha256
from sarjepa.pretrain.checkpoint_ref import CheckpointRef
from sarjepa.pretrain.checkpoints import describe_load_error, read_sidecar
from sarjepa.pretrain.models import VisionTransformer, build_vit
from sarjepa.pretrain.weights_arch import (
    block_index,
    has_rpe,
    infer_arch,
    resolve_arch,
)
from torch import Tensor

FORMATS = ("sarjepa", "lomar", "mae", "ijepa", "state_dict")
#: Extra checkpoint keys dropped without a word (method-only parts of a pretraining model).
SILENT_DROP = re.compile(r"^(head\.|decoder|predictor|mask_token|encoder_pred|pred_head\.)")
_MAX_LISTED = 12
# (resolved path, inode, size, mtime_ns, weights key, sidecar) -> (format, state dict, source,
# args) of the last checkpoints this process loaded (only their encoder-side tensors stay held)
_SELECTED: collections.OrderedDict[tuple, tuple[str, dict[str, Tensor], str, dict]] = (
    collections.OrderedDict()
)
_SELECTED_MAX = 2
#: encoders loaded with ``load_encoder(..., share=True)``: key -> (LoadedEncoder, log lines).
#: One: a grid runs the cells of one method and protocol one after another, and an encoder
#: costs as much memory as its checkpoint's weights (~350 MB for ViT-B).
_SHARED: collections.OrderedDict[tuple, tuple[LoadedEncoder, list[str]]] = collections.OrderedDict()
_SHARED_MAX = 1
_ENCODER_PART = re.compile(
    r"^(blocks\.\d+\.|patch_embed\.|norm\.|fc_norm\.|cls_token|reg_token|pos_embed)"
)

Log = Callable[[str], None]


@dataclass
class LoadedEncoder:
    """An encoder with its weights and where they came from.

    Attributes:
        encoder: the model (``num_classes=0``), on CPU, in eval mode.
        arch: its :meth:`~pretrain.models.VisionTransformer.arch_dict`.
        format: one of :data:`FORMATS`, or ``"random"`` for a random init.
        path: the checkpoint path as given ("" for random init).
        sha256: hex digest of the checkpoint file ("" for random init).
        source: the part of the file the weights came from (e.g. ``"model"``,
            ``"target_encoder"``).
        dropped: extra keys dropped silently (decoder, predictor, ...).
        unexpected: other extra keys (reported, ignored).
        meta: the sidecar JSON of our own checkpoints, else ``{}``.
    """

    encoder: VisionTransformer
    arch: dict[str, Any]
    format: str
    path: str = ""
    sha256: str = ""
    source: str = ""
    dropped: list[str] = field(default_factory=list)
    unexpected: list[str] = field(default_factory=list)
    meta: dict[str, Any] = field(default_factory=dict)


def read_checkpoint(path: str | Path, mmap: bool = False) -> dict[str, Any]:
    """Load a checkpoint safely (``weights_only=True``; ``argparse.Namespace`` allowed).

    Args:
        path: the file.
        mmap: map the tensors' storage instead of reading it (zip-format files only; others
            are read): a cheap look at the structure.

    Raises:
        SarjepaError: the file is missing, truncated, not a PyTorch file, needs unsafe
            unpickling or is not a dict (one line naming it and what is wrong).
    """
    p = Path(path)
    if not p.is_file():
        raise not_a_file("checkpoint", path)
    try:
        with torch.serialization.safe_globals([argparse.Namespace]):
            obj = torch.load(
                p, map_location="cpu", weights_only=True, mmap=mmap and zipfile.is_zipfile(p)
            )
    except pickle.UnpicklingError as exc:
        glob = re.search(r"Unsupported global: GLOBAL ([\w.]+)", str(exc))
        if glob is None:
            what = describe_load_error(p, exc)
            raise SarjepaError(
                f"checkpoint '{path}' is not a readable PyTorch file: {what}"
            ) from None
        raise SarjepaError(
            f"checkpoint '{path}' cannot be loaded safely (weights_only): it holds a "
            f"'{glob.group(1)}' object; re-save its state dict with torch.save"
        ) from None
    except Exception as exc:  # corrupt zip, truncated file, not a torch file ...
        what = describe_load_error(p, exc)
        raise SarjepaError(f"checkpoint '{path}' is not a readable PyTorch file: {what}") from None
    if not isinstance(obj, dict):
        raise SarjepaError(f"checkpoint '{path}' holds a {type(obj).__name__}, not a dict")
    return obj


@contextlib.contextmanager
def _naming(path: str) -> Iterator[None]:
    """Errors about a checkpoint's contents become one line naming the file."""
    try:
        yield
    except SarjepaError as exc:
        if path in str(exc):
            raise
        raise SarjepaError(f"checkpoint '{path}': {exc}") from None
    except (KeyError, IndexError, TypeError, ValueError, AttributeError, RuntimeError) as exc:
        reason = " ".join(str(exc).split())[:200] or type(exc).__name__
        raise SarjepaError(
            f"checkpoint '{path}' has a layout this loader does not understand: {reason}"
        ) from exc


def check_checkpoint(path: str | Path, weights_key: str = "") -> str:
    """Cheaply check that ``path`` holds an encoder this module can load; return its format.

    The tensors are memory-mapped, not read (zip-format files), so a grid can check every
    checkpoint before its first cell. The architecture is checked when a cell loads it.

    Raises:
        SarjepaError: missing, truncated or foreign file, or no ViT encoder inside (one line).
    """
    path = str(path)
    ckpt = read_checkpoint(path, mmap=True)
    with _naming(path):
        fmt = detect_format(ckpt, read_sidecar(path))
        select_state_dict(ckpt, fmt, weights_key)
    return fmt


def strip_module(sd: Mapping[str, Any]) -> dict[str, Any]:
    """Drop leading ``module.`` prefixes (DDP / DataParallel) from every key."""
    out = {}
    for k, v in sd.items():
        while k.startswith("module."):
            k = k[len("module.") :]
        out[k] = v
    return out


def _is_state_dict(obj: Any) -> bool:
    return (
        isinstance(obj, Mapping)
        and len(obj) > 0
        and all(isinstance(v, Tensor) for v in obj.values())
    )


def _args_dict(ckpt: Mapping[str, Any]) -> dict[str, Any]:
    args = ckpt.get("args")
    if isinstance(args, argparse.Namespace):
        return vars(args)
    return dict(args) if isinstance(args, Mapping) else {}


def detect_format(ckpt: Mapping[str, Any], sidecar: Mapping[str, Any] | None = None) -> str:
    """Name the format of a loaded checkpoint dict (see the module docstring)."""
    args = ckpt.get("args")
    if sidecar or (isinstance(args, Mapping) and "arch" in args):
        return "sarjepa"
    if any(_is_state_dict(ckpt.get(k)) for k in ("target_encoder", "encoder")):
        return "ijepa"
    if _is_state_dict(ckpt.get("model")):
        return "lomar" if has_rpe(ckpt["model"]) else "mae"
    if _is_state_dict(ckpt.get("state_dict")) or _is_state_dict(ckpt):
        return "state_dict"
    raise SarjepaError(
        "unknown checkpoint format (top-level keys: "
        f"{', '.join(map(str, list(ckpt)[:10]))}); expected 'model', 'target_encoder'/'encoder', "
        "'state_dict' or a bare state dict"
    )


def select_state_dict(
    ckpt: Mapping[str, Any], fmt: str, key: str = ""
) -> tuple[dict[str, Tensor], str]:
    """Pick the encoder's state dict out of a checkpoint.

    Args:
        ckpt: the loaded checkpoint.
        fmt: its format (:func:`detect_format`).
        key: ``MODEL.WEIGHTS_KEY``: a top-level entry (``"encoder"``, ``"model"`` ...) or a key
            prefix inside it (``"target_encoder."``); "" picks the format's default.

    Returns:
        ``(state_dict with module. stripped and the prefix removed, source description)``.
    """
    tops = [k for k, v in ckpt.items() if _is_state_dict(v)]
    if fmt == "ijepa" or (fmt == "sarjepa" and "model" not in tops and "encoder" in tops):
        # our own ijepa runs save upstream's layout beside a sidecar
        top_key = "target_encoder" if "target_encoder" in tops else "encoder"
    elif fmt == "state_dict":
        top_key = "" if _is_state_dict(ckpt) else "state_dict"
    else:
        top_key = "model"
    prefix = ""
    if key in tops:
        top_key = key
    elif key:
        prefix = key.rstrip(".") + "."
    sd = strip_module(ckpt if top_key == "" else ckpt[top_key])
    source = top_key or "(top level)"
    if not prefix and "patch_embed.proj.weight" not in sd:
        prefixes = sorted(
            k[: -len("patch_embed.proj.weight")]
            for k in sd
            if k.endswith("patch_embed.proj.weight")
        )
        if len(prefixes) == 1:
            prefix = prefixes[0]
        elif "target_encoder." in prefixes:
            prefix = "target_encoder."
        elif prefixes:
            raise SarjepaError(
                f"the checkpoint holds several encoders ({', '.join(prefixes)}); "
                "choose one with MODEL.WEIGHTS_KEY"
            )
    if prefix:
        sub = {k[len(prefix) :]: v for k, v in sd.items() if k.startswith(prefix)}
        if not sub:
            raise SarjepaError(
                f"MODEL.WEIGHTS_KEY '{key}' is neither a state dict of the "
                f"checkpoint ({', '.join(tops) or 'none'}) nor a key prefix in "
                f"'{source}'"
            )
        sd, source = sub, f"{source}:{prefix}"
    if "patch_embed.proj.weight" not in sd:
        raise SarjepaError(
            f"the checkpoint's '{source}' has no ViT encoder (no patch_embed.proj.weight key)"
        )
    return sd, source


def _listing(keys: list[str]) -> str:
    shown = ", ".join(keys[:_MAX_LISTED])
    return shown + (f" (+{len(keys) - _MAX_LISTED} more)" if len(keys) > _MAX_LISTED else "")


def load_state_into(
    model: VisionTransformer, sd: Mapping[str, Tensor], what: str
) -> tuple[list[str], list[str]]:
    """Copy ``sd`` into ``model`` or refuse.

    Returns:
        ``(dropped, unexpected)`` extra keys of ``sd``.

    Raises:
        SarjepaError: an encoder key is missing from ``sd`` or has another shape, or ``sd`` holds
            weights inside the encoder's blocks or norms that this model has no place for (all
            listed). Extra blocks beyond the model's depth are only reported.
    """
    own = model.state_dict()
    missing = [k for k in own if k not in sd]
    mismatch = [
        f"{k} {tuple(sd[k].shape)} vs {tuple(own[k].shape)}"
        for k in own
        if k in sd and sd[k].shape != own[k].shape
    ]
    extra = [k for k in sd if k not in own]
    no_pos = model.pos_embed is None
    dropped = [k for k in extra if SILENT_DROP.match(k) or (k == "pos_embed" and no_pos)]
    unexpected = [k for k in extra if k not in set(dropped)]
    # extra weights inside the encoder's own blocks/norms (layer scale, qk-norm, a pos_embed the
    # model does not add ...) mean another architecture: ignoring them would change the features
    depth = len(model.blocks)
    foreign = [k for k in unexpected if _ENCODER_PART.match(k) and block_index(k) < depth]
    if missing or mismatch or foreign:
        parts = []
        if missing:
            parts.append(f"missing {len(missing)} encoder key(s): {_listing(missing)}")
        if mismatch:
            parts.append(
                f"shape mismatch (checkpoint vs model) for {len(mismatch)} key(s): "
                f"{_listing(mismatch)}"
            )
        if foreign:
            parts.append(f"{len(foreign)} encoder key(s) with no place in it: {_listing(foreign)}")
        raise SarjepaError(
            f"{what} does not match the encoder architecture "
            f"{arch_str(model.arch_dict())}: {'; '.join(parts)}"
        )
    model.load_state_dict({k: sd[k] for k in own}, strict=True)
    return dropped, unexpected


def arch_str(arch: Mapping[str, Any]) -> str:
    keys = ("embed_dim", "depth", "num_heads", "patch_size", "in_chans", "pos_embed", "class_token")
    return "(" + ", ".join(f"{k}={arch.get(k)}" for k in keys) + ")"


def _build_uninitialised(arch: Mapping[str, Any]) -> tuple[VisionTransformer, bool]:
    """Build on the meta device and allocate without initialising: every tensor is then loaded
    from the checkpoint. Skips the random init (seconds for ViT-B on a CPU) and leaves the global
    RNG untouched, so what follows (head init, sampler) depends on the seed only.

    Returns:
        ``(model, True)``, or ``(model, False)`` when the model has non-persistent buffers and
        was built with its random init instead (which draws from the global RNG).
    """
    with torch.device("meta"):
        model = build_vit(dict(arch), initialise=False)
    if set(dict(model.named_buffers())) - set(model.state_dict()):
        return build_vit(dict(arch)), False  # non-persistent buffers would stay uninitialised
    return model.to_empty(device="cpu"), True


def selected_weights(
    path: str, weights_key: str, meta: Mapping[str, Any]
) -> tuple[str, dict[str, Tensor], str, dict[str, Any]]:
    """``(format, state dict, source, args)`` of a checkpoint, remembered per file version.

    A grid process loads the same checkpoint for every cell; reading a ViT-B pretraining
    checkpoint (encoder, predictor, optimiser state) costs ~0.5 s on a CPU each time. The last
    :data:`_SELECTED_MAX` results are kept while the file's inode, size and mtime are
    unchanged; only the selected state dict's tensors stay in memory (never modified: loading
    copies them into the model). Errors are raised as one line naming the file, never cached.
    """
    p = Path(path).resolve()
    try:
        st = p.stat()
    except OSError:
        st = None  # read_checkpoint reports the missing file
    key = None
    if st is not None:
        side = json.dumps(dict(meta), sort_keys=True, default=str)
        key = (str(p), st.st_ino, st.st_size, st.st_mtime_ns, weights_key, side)
        if key in _SELECTED:
            _SELECTED.move_to_end(key)
            return _SELECTED[key]
    ckpt = read_checkpoint(path)
    with _naming(path):
        fmt = detect_format(ckpt, meta)
        sd, source = select_state_dict(ckpt, fmt, weights_key)
        args = _args_dict(ckpt)
    out = (fmt, sd, source, args)
    if key is not None:
        _SELECTED[key] = out
        while len(_SELECTED) > _SELECTED_MAX:
            _SELECTED.popitem(last=False)
    return out


def load_encoder(
    path: str | Path | CheckpointRef,
    overrides: Mapping[str, Any] | None = None,
    weights_key: str = "",
    name_hint: str = "",
    default_img_size: int | tuple[int, int] | None = None,
    log: Log = print,
    share: bool = False,
) -> LoadedEncoder:
    """Build an encoder for a checkpoint and load its weights (see the module docstring).

    Args:
        path: checkpoint file, or a :class:`~pretrain.checkpoint_ref.CheckpointRef` resolved
            earlier: its weights key and sha256 are used (``weights_key`` is ignored) and the
            file is not hashed again.
        overrides: arch keys that win over the metadata and the inference (e.g. from
            :func:`benchmark.backbone.backbone_overrides`); a value contradicting the tensors
            makes the load fail.
        weights_key: ``MODEL.WEIGHTS_KEY`` ("" = the format's default).
        name_hint: ``MODEL.BACKBONE.NAME``, used only to tell the head count.
        default_img_size: image size when neither metadata nor a ``pos_embed`` tells it.
        log: printer for the report (missing/unexpected keys).
        share: return the encoder this process loaded before with the same arguments from the
            same file version (one module object, its report printed again), as the grid's
            frozen-feature cells of one checkpoint do. The caller must not change it (weights,
            device aside). Shared only when built without a random init, so the global RNG is
            left as a fresh load leaves it.

    Returns:
        The loaded encoder (CPU, eval mode) and its provenance.
    """
    ref = path if isinstance(path, CheckpointRef) else None
    if ref is not None:
        ref.check_unchanged()
        path, weights_key = ref.path, ref.weights_key
    path = str(path)
    meta = read_sidecar(path)
    load_args = [weights_key, dict(overrides or {}), name_hint, default_img_size, meta]
    key = _share_key(path, load_args) if share else None
    if key is not None and key in _SHARED:
        _SHARED.move_to_end(key)
        loaded, lines = _SHARED[key]
        for line in lines:
            log(line)
        return loaded
    if key is not None:
        lines: list[str] = []
        outer = log

        def log(line: str) -> None:
            lines.append(line)
            outer(line)

    fmt, sd, source, args = selected_weights(path, weights_key, meta)
    with _naming(path):
        base = infer_arch(sd, fmt)
        if fmt == "sarjepa":
            base.update(meta.get("arch") or args.get("arch") or {})
        if "img_size" not in base:
            size = args.get("input_size") or default_img_size
            if size:
                base["img_size"] = tuple(size) if isinstance(size, (list, tuple)) else int(size)
        hints = tuple(str(h) for h in (args.get("model", ""), name_hint) if h)
        arch = resolve_arch(base, overrides, hints)
    try:
        model, rng_free = _build_uninitialised(arch)
    except (ValueError, TypeError) as exc:
        raise SarjepaError(
            f"checkpoint '{path}': cannot build the encoder {arch_str(arch)}: {exc}"
        ) from None
    dropped, unexpected = load_state_into(model, sd, f"checkpoint '{path}' ({fmt}, {source})")
    pe = sd.get("pos_embed")
    has_cls_row = model.pos_embed is not None and model.has_class_token and pe is not None
    if has_cls_row and float(pe[0, 0].abs().max()) > 0:
        log(
            "warning: the checkpoint's pos_embed has a non-zero CLS row; this encoder does "
            "not add it to the CLS token"
        )
    model.eval()
    log(f"Loaded {fmt} checkpoint '{path}' [{source}] into ViT {arch_str(model.arch_dict())}")
    log(f"  missing keys: none; dropped {len(dropped)} method-only key(s)")
    if unexpected:
        log(f"  unexpected keys (ignored): {_listing(unexpected)}")
    loaded = LoadedEncoder(
        encoder=model,
        arch=model.arch_dict(),
        format=fmt,
        path=path,
        sha256=ref.sha256 if ref is not None else cached_file_sha256(path),
        source=source,
        dropped=dropped,
        unexpected=unexpected,
        meta=meta,
    )
    if key is not None and rng_free:
        _SHARED[key] = (loaded, lines)
        while len(_SHARED) > _SHARED_MAX:
            _SHARED.popitem(last=False)
    return loaded


def _share_key(path: str, args: list) -> tuple | None:
    """What a shared encoder is remembered by: the file version and the load's arguments (the
    sidecar's metadata among them); None when the file cannot be stat'ed (the load reports it)."""
    p = Path(path).resolve()
    try:
        st = p.stat()
    except OSError:
        return None
    return (str(p), st.st_ino, st.st_size, st.st_mtime_ns, json.dumps(args, default=str))
