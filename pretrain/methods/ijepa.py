"""I-JEPA (Assran et al., CVPR 2023; facebookresearch/ijepa): predict an EMA target encoder's
features of masked blocks from one context block.

Forward pass, for images (B, 1, H, W), patch p, grid (h, w) = (H/p, W/p), N = h*w, width D:

1. :func:`pretrain.masking.multiblock_masks` draws upstream's multi-block masks (its
   ``MaskCollator``, upstream's random calls in upstream's order): per image 4 target blocks and
   1 context block without them; block sizes seeded with the run's batch counter, positions from
   the engine's masking generator (upstream: the DataLoader worker's global generator).
2. Target (no grad): the target encoder on the whole image (sin-cos positions, no CLS, all
   blocks, final norm), ``F.layer_norm`` over D without affine, the target blocks' tokens
   gathered: (4B, K_tgt, D) (repeated per context block as upstream).
3. Context: the encoder on the context tokens only (patch embedding + sin-cos positions, then
   gathered; blocks; norm): (B, K_ctx, D).
4. Predictor (:class:`pretrain.models.predictor.Predictor`, a narrow ViT of width P with
   ``PREDICTOR.DEPTH`` blocks): from the context tokens to the target blocks: (4B, K_tgt, D).
5. Loss: ``F.smooth_l1_loss`` (beta 1, mean over every element) of prediction vs target.

Before every optimiser step k (1, 2, ...), lr, weight decay (on the two decayed groups only) and
the coming EMA momentum follow upstream's ``WarmupCosineSchedule``, ``CosineWDSchedule`` and
``momentum_scheduler`` (:class:`pretrain.schedules.StepSchedules`: warm-up from ``START_LR``
over ``int(WARMUP_EPOCHS x steps_per_epoch)`` steps, cosines over ``int(IPE_SCALE x EPOCHS x
steps_per_epoch)``, momentum 0.996 -> 1.0); after it the target encoder moves towards the
encoder, ``t <- m t + (1 - m) e`` over ``parameters()`` in order (upstream's formula and order
of operations). The optimiser has upstream's four groups in upstream's order: encoder weights,
predictor weights (decayed), encoder and predictor biases and 1-d parameters (``WD_exclude``,
no decay); the frozen sin-cos tables sit in the decayed groups as upstream (no gradient).

Collapse monitor (:class:`pretrain.monitor.CollapseMonitor`): the population std over the batch
of the layer-normed target features, averaged over tokens and dims, logged per epoch as
``target_std``; a warning below ``TRAIN.COLLAPSE_STD`` (SAR-JEPA's authors saw it collapse).

Checkpoint: upstream ``save_checkpoint``'s dict: ``encoder``, ``predictor``,
``target_encoder`` (state dicts with DDP's ``module.`` prefix and upstream's names:
``pos_embed``, ``patch_embed.proj.*``, ``blocks.N.{norm1, attn.qkv, attn.proj, norm2, mlp.fc1,
mlp.fc2}.*``, ``norm.*``; ``mask_token``, ``predictor_pos_embed``, ``predictor_embed.*``,
``predictor_blocks.N.*``, ``predictor_norm.*``, ``predictor_proj.*``), ``opt`` (the four
groups, upstream's parameter order), ``scaler``, ``epoch`` (epochs finished, as upstream: the
file ``checkpoint-<e>.pth`` holds ``epoch`` e + 1), ``loss`` (the epoch's mean loss),
``batch_size``, ``world_size``, ``lr``; plus our ``args``. Upstream's ``load_checkpoint``
resumes from it.

Where ours differs from upstream: 1 input channel and no mean/std normalisation (the engine's
data); masks drawn in the training process; bf16 autocast without a GradScaler (``scaler``
holds GradScaler's initial state so upstream's loader, which loads it in bf16 runs, accepts the
file); a block size that cannot keep more than ``min_keep`` patches is a one-line error at build
time (upstream loops for ever); the peak lr is ``TRAIN.LR`` as upstream (not scaled by the
batch); schedules count optimiser steps, so with gradient accumulation a step is a group of
micro-batches. Init as upstream's effective one (``init_model`` re-initialises every Linear
after the models' own init, undoing their ``fix_init_weight``): Linear trunc-normal(0.02) with
zero bias, LayerNorm 1/0, patch embedding trunc-normal(0.02) with zero bias, ``mask_token``
trunc-normal(0.02); the target encoder starts as a copy of the encoder.

Size: just over 400 lines because a method is one file (its model wiring, loss, checkpoint
layout and config contract); its masks, predictor, schedules and collapse monitor live in their
own modules.
"""

from __future__ import annotations

import copy
import math

import torch
import torch.nn.functional as F
from sarjepa.benchmark.core.errors import SarjepaError
from sarjepa.pretrain.masking import (
    MultiBlockMasks,
    block_size_generator,
    gather_tokens,
    multiblock_masks,
    repeat_interleave_batch,
    smallest_block,
)
from sarjepa.pretrain.methods.base import PretrainMethod
from sarjepa.pretrain.methods.shared import DDP_PREFIX, jsonable, load_strict
from sarjepa.pretrain.models.predictor import Predictor
from sarjepa.pretrain.monitor import CollapseMonitor
from sarjepa.pretrain.schedules import StepSchedules
from timm.layers import trunc_normal_
from torch import Tensor, nn

# torch.amp.GradScaler().state_dict() of a fresh scaler (init_scale 2**16, growth 2, backoff 0.5,
# interval 2000): upstream's load_checkpoint loads 'scaler' whenever it trains in bf16.
GRAD_SCALER_STATE = {"scale": 65536.0, "growth_factor": 2.0, "backoff_factor": 0.5}
GRAD_SCALER_STATE |= {"growth_interval": 2000, "_growth_tracker": 0}


class IJEPA(PretrainMethod):
    """Context encoder, EMA target encoder and narrow predictor (see the module docstring).

    Args:
        encoder: the ViT (sin-cos ``pos_embed``, no CLS token); re-initialised as upstream.
        pred_dim, pred_depth, pred_heads, pred_mlp_ratio: the predictor.
        mask: :func:`pretrain.masking.multiblock_masks` keyword arguments (num_targets,
            target_scale, target_aspect, num_context, context_scale, min_keep, allow_overlap).
        schedules: lr / weight-decay / momentum schedules (None: start lr 0, weight decay
            0.04 -> 0.4, momentum 0.996 -> 1.0, ipe_scale 1).
        collapse_std: warn when the epoch's ``target_std`` is below this (0 = never).
    """

    name = "ijepa"
    target_name = "ema_features"

    def __init__(
        self,
        encoder: nn.Module,
        pred_dim: int = 384,
        pred_depth: int = 12,
        pred_heads: int = 12,
        pred_mlp_ratio: float = 4.0,
        mask: dict | None = None,
        schedules: StepSchedules | None = None,
        collapse_std: float = 0.01,
    ) -> None:
        super().__init__(encoder)
        proj = encoder.patch_embed.proj
        trunc_normal_(proj.weight, std=0.02)
        nn.init.zeros_(proj.bias)
        self.predictor = Predictor(
            encoder.grid_size, encoder.embed_dim, pred_dim, pred_depth, pred_heads, pred_mlp_ratio
        )
        self.target_encoder = copy.deepcopy(encoder)
        self.target_encoder.requires_grad_(False)
        self.mask = dict(mask or {})
        self.schedules = schedules or StepSchedules(0.0, 0.04, 0.4, (0.996, 1.0), 1.0)
        self.monitor = CollapseMonitor(collapse_std)
        self._momentum = self.schedules.ema[0]  # of the coming optimiser step
        self._batches = 0  # batches drawn so far in the run: the block-size generator's seed
        self._epoch = 0
        self.last_epoch_loss = 0.0

    # -------------------------------------------------------------------------- config
    @classmethod
    def extend_cfg(cls, cfg) -> None:
        """I-JEPA's multi-block masks (upstream ``MaskCollator``'s names in brackets), schedules
        (per optimiser step, as upstream's) and collapse monitor."""
        m, t = cfg.MASK, cfg.TRAIN
        m.NUM_TARGETS = 4  # target blocks per image [npred]
        m.TARGET_SCALE = (0.15, 0.2)  # target block area, fraction of the grid [pred_mask_scale]
        m.TARGET_ASPECT = (0.75, 1.5)  # target block height / width [aspect_ratio]
        m.NUM_CONTEXT = 1  # context blocks per image [nenc]
        m.CONTEXT_SCALE = (0.85, 1.0)  # context block area (aspect 1) [enc_mask_scale]
        m.MIN_KEEP = 10  # every block keeps more than this many patches [min_keep]
        m.ALLOW_OVERLAP = False  # keep target patches in the context [allow_overlap]
        t.START_LR = 0.0  # lr at the start of the warm-up (upstream start_lr)
        t.FINAL_WEIGHT_DECAY = -1.0  # cosine ramp WEIGHT_DECAY -> this; < 0 = constant
        t.EMA_MOMENTUM = (0.996, 1.0)  # target-encoder momentum, linear from first to last step
        t.IPE_SCALE = 1.0  # schedules span IPE_SCALE x the run's steps (upstream ipe_scale)
        t.COLLAPSE_STD = 0.01  # warn when the target features' std across the batch is lower

    @classmethod
    def small_grid_overrides(cls, cfg, grid: int) -> list[str]:
        """Lower ``MASK.MIN_KEEP`` below the smallest target block the grid allows."""
        bh, bw = smallest_block((grid, grid), cfg.MASK.TARGET_SCALE, cfg.MASK.TARGET_ASPECT)
        return ["MASK.MIN_KEEP", str(bh * bw - 1)] if bh * bw <= int(cfg.MASK.MIN_KEEP) else []

    @classmethod
    def from_cfg(cls, cfg, name: str = "ijepa") -> IJEPA:
        """Build I-JEPA from a pretraining config (see ``pretrain/configs/ijepa_vit_b16.yaml``)."""
        from sarjepa.pretrain.methods import build_encoder

        _check_ijepa_cfg(cfg)
        encoder, t = build_encoder(cfg), cfg.TRAIN
        return cls(
            encoder,
            pred_dim=int(cfg.PREDICTOR.EMBED_DIM),
            pred_depth=int(cfg.PREDICTOR.DEPTH),
            pred_heads=int(cfg.PREDICTOR.NUM_HEADS),
            pred_mlp_ratio=float(cfg.PREDICTOR.MLP_RATIO),
            mask=_mask_options(cfg, tuple(encoder.grid_size)),
            schedules=StepSchedules(
                float(t.START_LR),
                float(t.WEIGHT_DECAY),
                float(t.FINAL_WEIGHT_DECAY),
                (float(t.EMA_MOMENTUM[0]), float(t.EMA_MOMENTUM[1])),
                float(t.IPE_SCALE),
            ),  # fmt: skip
            collapse_std=float(t.COLLAPSE_STD),
        )

    # -------------------------------------------------------------------------- forward
    def draw_masks(self, batch: int, grid: tuple[int, int], generator) -> MultiBlockMasks:
        """This batch's masks (CPU); the block sizes come from the run's batch counter."""
        seed, self._batches = self._batches, self._batches + 1
        return multiblock_masks(
            batch, grid, generator=generator, size_generator=block_size_generator(seed), **self.mask
        )

    def encode_context(self, images: Tensor, context: list[Tensor]) -> Tensor:
        """Encoder on the context tokens: (n_ctx B, K_ctx, D) after the final norm."""
        tokens = self.encoder.patch_embed(images)  # (B, N, D)
        index = torch.cat(context, dim=0)
        return self.encoder.forward_blocks(gather_tokens(tokens, context), pos_index=index)

    @torch.no_grad()
    def target_features(self, images: Tensor) -> Tensor:
        """Target encoder on the whole image, layer-normed over D: (B, N, D) float32."""
        h = self.target_encoder.forward_features(images).float()
        return F.layer_norm(h, (h.shape[-1],))

    def forward(self, images: Tensor, generator: torch.Generator | None = None):
        """Loss of one batch.

        Args:
            images: (B, C, H, W) in [0, 1]; H, W give the encoder's patch grid.
            generator: CPU generator of the block positions (None: torch's global generator).

        Returns:
            ``(loss, stats)``: 0-d float32 smooth-L1 loss and ``{"loss", "target_std"}``.
        """
        b, p = images.shape[0], self.encoder.patch_size
        grid = (images.shape[-2] // p, images.shape[-1] // p)
        if grid != tuple(self.encoder.grid_size):
            raise ValueError(f"ijepa needs the {self.encoder.grid_size} grid, got {grid}")
        masks = self.draw_masks(b, grid, generator)
        context = [m.to(images.device, non_blocking=True) for m in masks.context]
        targets = [m.to(images.device, non_blocking=True) for m in masks.targets]
        h = self.target_features(images)
        std = h.std(dim=0, correction=0).mean() if b > 1 else None
        h = repeat_interleave_batch(gather_tokens(h, targets), b, len(context))
        z = self.predictor(self.encode_context(images, context), context, targets)
        loss = F.smooth_l1_loss(z.float(), h)
        if self.training and std is not None:
            self.monitor.add(std, loss.detach())
        stats = {"loss": loss.detach()}
        if std is not None:
            stats["target_std"] = std
        return loss, stats

    # -------------------------------------------------------------------------- training hooks
    def optimizer_param_groups(self, weight_decay: float, decay_tokens: bool) -> list[dict]:
        """Upstream ``init_opt``'s four groups: encoder then predictor weights (decayed), encoder
        then predictor biases and 1-d parameters (``WD_exclude``); ``decay_tokens`` is unused
        (upstream decays ``mask_token``; the builder refuses ``TRAIN.DECAY_TOKENS False``)."""

        def part(module: nn.Module, decayed: bool) -> list[nn.Parameter]:
            named = module.named_parameters()
            return [p for n, p in named if ("bias" not in n and p.ndim != 1) == decayed]

        return [
            {"params": part(self.encoder, True), "weight_decay": weight_decay},
            {"params": part(self.predictor, True), "weight_decay": weight_decay},
            {"params": part(self.encoder, False), "WD_exclude": True, "weight_decay": 0.0},
            {"params": part(self.predictor, False), "WD_exclude": True, "weight_decay": 0.0},
        ]

    def before_optimizer_step(self, optimizer, plan, micro_step: int) -> None:
        """Set lr, weight decay and the coming EMA momentum for optimiser step k (upstream's
        schedulers, see the module docstring) and the batch counter."""
        ipe = plan.steps_per_epoch
        k = plan.epoch * ipe + micro_step // plan.accum + 1
        lr, wd, self._momentum = self.schedules.at(
            k, ipe, plan.epochs, plan.warmup_epochs, plan.lr_peak, plan.min_lr
        )
        for group in optimizer.param_groups:
            group["lr"] = lr
            if not group.get("WD_exclude", False):
                group["weight_decay"] = wd
        self._batches = plan.epoch * plan.iters + micro_step
        self._epoch = plan.epoch

    @torch.no_grad()
    def update_target(self, momentum: float) -> None:
        """``t <- m t + (1 - m) e`` for every (encoder, target) parameter pair, in order."""
        for q, k in zip(self.encoder.parameters(), self.target_encoder.parameters()):
            k.mul_(momentum).add_((1.0 - momentum) * q.detach())

    def on_optimizer_step(self, progress: float) -> None:
        """EMA update of the target encoder with this step's momentum."""
        self.update_target(self._momentum)

    def epoch_metrics(self) -> dict[str, float]:
        """``target_std`` of the epoch (mean over batches and ranks); warns below the threshold."""
        means = self.monitor.end_epoch(self._epoch)
        if means is None:
            return {}
        std, self.last_epoch_loss = means
        return {"target_std": std}

    # -------------------------------------------------------------------------- checkpoint
    def checkpoint_entries(self, optimizer_state: dict | None, epoch: int, args: dict) -> dict:
        """Upstream ``save_checkpoint``'s dict (``epoch`` = epochs finished) plus our ``args``."""

        def ddp(module: nn.Module) -> dict[str, Tensor]:
            return {DDP_PREFIX + k: v.detach().cpu() for k, v in module.state_dict().items()}

        return {
            "encoder": ddp(self.encoder),
            "predictor": ddp(self.predictor),
            "target_encoder": ddp(self.target_encoder),
            "opt": optimizer_state,
            "scaler": dict(GRAD_SCALER_STATE),
            "epoch": int(epoch) + 1,
            "loss": float(self.last_epoch_loss),
            "batch_size": int(args.get("batch_size", 0)),
            "world_size": int(args.get("world_size", 1)),
            "lr": float(args.get("lr", 0.0)),
            "args": args,
        }

    def restore_checkpoint_entries(self, ckpt: dict, path: str) -> dict | None:
        """Load the three state dicts (``module.`` stripped, strict); return ``opt``.

        Raises:
            SarjepaError: an entry is missing, or its keys or shapes differ (names ``path``).
        """
        for key in ("encoder", "predictor", "target_encoder"):
            module = getattr(self, key)
            state = ckpt.get(key)
            if not isinstance(state, dict):
                raise SarjepaError(
                    f"checkpoint '{path}' has no '{key}' entry (not an I-JEPA checkpoint)"
                )
            load_strict(module, state, f"checkpoint '{path}' entry '{key}'")
        return ckpt.get("opt")

    def start_epoch(self, ckpt: dict) -> int:
        """Upstream's ``epoch`` counts finished epochs: the run goes on with that index."""
        return int(ckpt["epoch"])

    def describe(self) -> dict:
        return {
            "method": self.name,
            "target": self.target_name,
            "target_options": {"layer_norm": True, "affine": False},
            "masking": {"kind": "multiblock", **jsonable(self.mask)},
            "predictor": {
                "kind": "vit",
                "embed_dim": int(self.predictor.predictor_embed.out_features),
                "depth": len(self.predictor.predictor_blocks),
            },
            "ema": list(self.schedules.ema),
            "ipe_scale": self.schedules.ipe_scale,
            "start_lr": self.schedules.start_lr,
            "weight_decay": [self.schedules.weight_decay, self.schedules.final_weight_decay],
            "collapse_std": self.monitor.threshold,
            "pooling": "mean",
            "source": "facebookresearch/ijepa src/train.py (MaskCollator, vision_transformer.py)",
        }


def _mask_options(cfg, grid: tuple[int, int]) -> dict:
    """``multiblock_masks`` options from ``MASK.*``, checked against the patch grid."""
    m = cfg.MASK

    def pair(key: str) -> tuple[float, float]:
        return float(m[key][0]), float(m[key][1])

    opts = {  # upstream MaskCollator's argument order (also the sidecar's)
        "num_targets": int(m.NUM_TARGETS),
        "target_scale": pair("TARGET_SCALE"),
        "target_aspect": pair("TARGET_ASPECT"),
        "num_context": int(m.NUM_CONTEXT),
        "context_scale": pair("CONTEXT_SCALE"),
        "min_keep": int(m.MIN_KEEP),
        "allow_overlap": bool(m.ALLOW_OVERLAP),
    }
    if opts["num_targets"] < 1 or opts["num_context"] < 1 or opts["min_keep"] < 0:
        raise SarjepaError(
            "MASK.NUM_TARGETS and MASK.NUM_CONTEXT must be >= 1 and MASK.MIN_KEEP >= 0, got "
            f"{m.NUM_TARGETS}, {m.NUM_CONTEXT}, {m.MIN_KEEP}"
        )
    for key in ("TARGET_SCALE", "CONTEXT_SCALE", "TARGET_ASPECT"):
        lo, hi = (float(v) for v in m[key])
        top = 1.0 if key.endswith("SCALE") else math.inf
        if not 0.0 < lo <= hi <= top:
            raise SarjepaError(f"MASK.{key} must be (low, high) with 0 < low <= high, got {m[key]}")
    for what, scale, aspect in (
        ("target", opts["target_scale"], opts["target_aspect"]),
        ("context", opts["context_scale"], (1.0, 1.0)),
    ):
        bh, bw = smallest_block(grid, scale, aspect)
        if bh * bw <= opts["min_keep"]:
            raise SarjepaError(
                f"{what} blocks can be {bh}x{bw} patches on the {grid[0]}x{grid[1]} grid, not more "
                f"than MASK.MIN_KEEP {opts['min_keep']}: lower MASK.MIN_KEEP or raise the scale"
            )
    return opts


def _check_ijepa_cfg(cfg) -> None:
    """One-line errors for settings I-JEPA does not have."""
    if cfg.MODEL.POS_EMBED != "sincos" or bool(cfg.MODEL.CLASS_TOKEN):
        raise SarjepaError(
            "method 'ijepa' uses a fixed sin-cos position table and no CLS token (upstream's "
            f"ViT): set MODEL.POS_EMBED sincos and MODEL.CLASS_TOKEN False, got "
            f"{cfg.MODEL.POS_EMBED} and {cfg.MODEL.CLASS_TOKEN}"
        )
    if cfg.TARGET.NAME or len(cfg.TARGET.OPTIONS):
        raise SarjepaError(
            "method 'ijepa' predicts its EMA target encoder's features: TARGET.NAME and "
            f"TARGET.OPTIONS must be empty, got '{cfg.TARGET.NAME}'"
        )
    if not bool(cfg.TRAIN.DECAY_TOKENS):
        raise SarjepaError(
            "method 'ijepa' uses upstream's parameter groups (mask_token decayed): "
            "TRAIN.DECAY_TOKENS False is not supported"
        )
    lo, hi = (float(v) for v in cfg.TRAIN.EMA_MOMENTUM)
    if not 0.0 <= lo <= hi <= 1.0:
        raise SarjepaError(f"TRAIN.EMA_MOMENTUM must be (m0, m1), 0 <= m0 <= m1 <= 1, got {lo, hi}")
    if float(cfg.TRAIN.IPE_SCALE) < 1.0:
        raise SarjepaError(
            f"TRAIN.IPE_SCALE must be >= 1 (upstream's momentum schedule ends with the run "
            f"otherwise), got {cfg.TRAIN.IPE_SCALE}"
        )
    p = cfg.PREDICTOR
    if p.DEPTH < 1 or p.EMBED_DIM % 4 or p.EMBED_DIM % p.NUM_HEADS:
        raise SarjepaError(
            "method 'ijepa' needs PREDICTOR.DEPTH >= 1 and PREDICTOR.EMBED_DIM divisible by 4 and "
            f"by PREDICTOR.NUM_HEADS, got {p.DEPTH}, {p.EMBED_DIM}, {p.NUM_HEADS}"
        )


def register(registry) -> None:
    """Register ``ijepa``."""
    registry.add("ijepa", IJEPA)
