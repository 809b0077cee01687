"""Common base of the pretraining methods, and the losses they share.

A method is an ``nn.Module`` that owns an ``encoder`` (:class:`pretrain.models.VisionTransformer`)
plus its own parts (mask token, predictor/decoder, ...) and maps a batch of augmented images to a
scalar loss. The engine only relies on this contract:

- ``forward(images, generator) -> (loss, stats)``: ``images`` (B, C, H, W) float in [0, 1] on the
  model's device; ``generator`` a CPU ``torch.Generator`` for every random choice the method
  makes (masks), so runs are reproducible and resumable; ``loss`` a 0-d float32 tensor; ``stats``
  a dict of 0-d detached tensors for logging.
- ``checkpoint_state_dict()``: encoder keys unprefixed (the fine-tune ViT's names) plus the
  method's own keys; ``load_checkpoint_state_dict(sd)`` is its inverse.
- ``no_weight_decay()``: parameter names (as in ``named_parameters()``) that
  ``TRAIN.DECAY_TOKENS False`` exempts from weight decay besides biases and 1-d parameters (by
  default they are decayed, as in the authors' code).
- ``describe()``: the method/target facts recorded in the checkpoint sidecar.

A method is also its own config contract and registration (classmethods, Dassl's ``extend_cfg``
style): ``from_cfg(cfg, name)`` builds it, ``extend_cfg(cfg)`` adds the config keys only it reads
(to the one pretraining tree, :func:`pretrain.config.get_cfg_default`), ``check_cfg(cfg)`` checks
them when any config loads, ``small_grid_overrides(cfg, grid)`` fits its masking to a small patch
grid (the speed benchmark), ``current_name(name, model_keys)`` maps a name it had in older
checkpoints to its present one. The module registers the class under its names with
``register(registry)`` (:mod:`pretrain.methods`).
"""

from __future__ import annotations

import torch
from sarjepa.benchmark.core.errors import SarjepaError
from torch import Tensor, nn

ENCODER_PREFIX = "encoder."
# Tokens/embeddings that TRAIN.DECAY_TOKENS False exempts from weight decay whatever their shape
# (matched on the last name); by default they are decayed.
NO_DECAY_NAMES = ("cls_token", "mask_token", "pos_embed", "dist_token", "reg_token")


def masked_mse(pred: Tensor, target: Tensor, mask: Tensor) -> Tensor:
    """Mean squared error averaged over target dims, then over masked positions only.

    Args:
        pred: (..., L, D) predictions (any float dtype; computed in float32).
        target: (..., L, D) targets.
        mask: (..., L) bool or {0, 1}; True/1 = masked (counted).

    Returns:
        0-d float32 tensor: sum_masked(mean_D((pred - target)^2)) / number of masked positions.
    """
    per_patch = (pred.float() - target.float()).pow(2).mean(dim=-1)
    m = mask.to(per_patch.dtype)
    return (per_patch * m).sum() / m.sum().clamp(min=1.0)


def init_weights_mae(module: nn.Module) -> None:
    """MAE/LoMaR init for one module: xavier-uniform Linear (zero bias), LayerNorm (1, 0)."""
    if isinstance(module, nn.Linear):
        nn.init.xavier_uniform_(module.weight)
        if module.bias is not None:
            nn.init.zeros_(module.bias)
    elif isinstance(module, nn.LayerNorm):
        if module.weight is not None:
            nn.init.ones_(module.weight)
        if module.bias is not None:
            nn.init.zeros_(module.bias)


class PretrainMethod(nn.Module):
    """Base class: an encoder plus method parts; see the module docstring for the contract.

    Subclasses set ``name`` (the registered method name) and ``target_name`` (or "" if the method
    has no fixed target) and implement :meth:`forward`.

    Args:
        encoder: the ViT being pretrained (its state dict keys are the checkpoint's encoder keys).
    """

    name: str = ""
    target_name: str = ""

    def __init__(self, encoder: nn.Module) -> None:
        super().__init__()
        self.encoder = encoder

    def forward(self, images: Tensor, generator: torch.Generator | None = None):
        raise NotImplementedError

    # ------------------------------------------------------------------ config contract
    @classmethod
    def from_cfg(cls, cfg, name: str) -> PretrainMethod:
        """Build the method registered as ``name`` from a pretraining config."""
        raise NotImplementedError

    @classmethod
    def extend_cfg(cls, cfg) -> None:
        """Add this method's own config keys (with their defaults) to ``cfg`` if absent."""

    @classmethod
    def check_cfg(cls, cfg) -> None:
        """One-line ``SarjepaError`` for a bad value of a key :meth:`extend_cfg` added; runs on
        every loaded config, whichever method it names."""

    @classmethod
    def small_grid_overrides(cls, cfg, grid: int) -> list[str]:
        """``KEY VALUE`` overrides that fit ``cfg`` (a bundled recipe) to a ``grid x grid`` patch
        grid smaller than the recipe's; none by default."""
        return []

    @classmethod
    def current_name(cls, name: str, model_keys) -> str | None:
        """The present method name of a checkpoint recorded as ``name`` (with these ``model``
        keys) if this class knows it under an older name; None otherwise."""
        return None

    # ------------------------------------------------------------------ checkpoint keys
    def _ckpt_key(self, key: str) -> str:
        return key[len(ENCODER_PREFIX) :] if key.startswith(ENCODER_PREFIX) else key

    def checkpoint_state_dict(self) -> dict[str, Tensor]:
        """Encoder keys without the ``encoder.`` prefix, then the method's keys.

        Raises:
            RuntimeError: a method key collides with an encoder key (a coding error).
        """
        out: dict[str, Tensor] = {}
        state = self.state_dict()
        ordered = [k for k in state if k.startswith(ENCODER_PREFIX)]
        ordered += [k for k in state if not k.startswith(ENCODER_PREFIX)]
        for key in ordered:
            value = state[key]
            ck = self._ckpt_key(key)
            if ck in out:
                raise RuntimeError(f"checkpoint key '{ck}' is produced twice")
            out[ck] = value
        return out

    def load_checkpoint_state_dict(self, state: dict[str, Tensor], strict: bool = True) -> None:
        """Inverse of :meth:`checkpoint_state_dict` (strips a ``module.`` prefix if present).

        Raises:
            SarjepaError: missing or unexpected keys (strict), or shape mismatches.
        """
        if state and all(k.startswith("module.") for k in state):
            state = {k[len("module.") :]: v for k, v in state.items()}
        own = {self._ckpt_key(k): k for k in self.state_dict()}
        missing = sorted(set(own) - set(state))
        unexpected = sorted(set(state) - set(own))
        if strict and (missing or unexpected):
            raise SarjepaError(
                f"checkpoint does not match method '{self.name}': missing {_few(missing)}, "
                f"unexpected {_few(unexpected)}"
            )
        mapped = {own[k]: v for k, v in state.items() if k in own}
        current = self.state_dict()
        for k, v in mapped.items():
            if tuple(v.shape) != tuple(current[k].shape):
                raise SarjepaError(
                    f"checkpoint key '{self._ckpt_key(k)}' has shape {tuple(v.shape)}, "
                    f"the model expects {tuple(current[k].shape)}"
                )
        self.load_state_dict(mapped, strict=strict)

    # ------------------------------------------------------------------ checkpoint layout
    def checkpoint_entries(self, optimizer_state: dict | None, epoch: int, args: dict) -> dict:
        """The whole checkpoint dict to save. Default: the MAE / SAR-JEPA layout
        ``{"model", "optimizer", "epoch", "scaler", "args"}``; methods whose upstream code uses
        another layout (I-JEPA) override this and :meth:`restore_checkpoint_entries`."""
        model = {k: v.detach().cpu() for k, v in self.checkpoint_state_dict().items()}
        return {
            "model": model,
            "optimizer": optimizer_state,
            "epoch": int(epoch),
            "scaler": None,
            "args": args,
        }

    def restore_checkpoint_entries(self, ckpt: dict, path: str) -> dict | None:
        """Load weights (and any method state) from a checkpoint dict; return the optimiser state.

        Raises:
            SarjepaError: the dict lacks what this method saves (the message names ``path``).
        """
        if not isinstance(ckpt.get("model"), dict):
            raise SarjepaError(
                f"checkpoint '{path}' has no 'model' entry (not a '{self.name}' run)"
            )
        self.load_checkpoint_state_dict(ckpt["model"])
        return ckpt.get("optimizer")

    def start_epoch(self, ckpt: dict) -> int:
        """The epoch a run resumed from ``ckpt`` starts with. Default: ``ckpt["epoch"] + 1``
        (the MAE layout stores the last finished epoch, 0-based; I-JEPA's stores the count)."""
        return int(ckpt["epoch"]) + 1

    # ------------------------------------------------------------------ training hooks
    def optimizer_param_groups(self, weight_decay: float, decay_tokens: bool) -> list[dict] | None:
        """The optimiser's parameter groups, for methods whose upstream code builds its own
        (I-JEPA); None (the default) = the engine's (:func:`pretrain.train.param_groups`)."""
        return None

    def before_optimizer_step(self, optimizer, plan, micro_step: int) -> None:
        """Called before the first micro-batch of every optimiser step, after the engine set the
        lr (``plan``: the epoch's :class:`pretrain.loop.EpochPlan`; ``micro_step``: index of that
        micro-batch in the epoch). Methods with their own schedules set lr / weight decay here
        (I-JEPA). Default: nothing."""

    def on_optimizer_step(self, progress: float) -> None:
        """Called after every optimiser step with the fraction of training done, in (0, 1]
        (I-JEPA updates its EMA target here). Default: nothing."""

    def epoch_metrics(self) -> dict[str, float]:
        """Extra numbers for this epoch's ``log.txt`` line (e.g. a collapse monitor); reset here."""
        return {}

    # ------------------------------------------------------------------ optimiser / metadata
    def no_weight_decay(self) -> set[str]:
        """Token / embedding parameter names (not decayed under ``TRAIN.DECAY_TOKENS False``)."""
        return {n for n, _ in self.named_parameters() if n.rsplit(".", 1)[-1] in NO_DECAY_NAMES}

    def describe(self) -> dict:
        """Method facts for the checkpoint sidecar (plain JSON types)."""
        return {"method": self.name, "target": self.target_name, "target_options": {}}


def _few(keys: list[str], n: int = 5) -> str:
    if not keys:
        return "none"
    more = f" (+{len(keys) - n} more)" if len(keys) > n else ""
    return ", ".join(keys[:n]) + more
