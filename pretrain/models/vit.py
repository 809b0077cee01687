"""Vision Transformer encoder for 1-channel SAR chips, with iRPE, fixed sin-cos or no positions.

State-dict keys follow the SAR-JEPA authors' fine-tune ViT (``cls_token``, ``patch_embed.proj.*``,
``blocks.N.{norm1,attn.qkv,attn.proj,attn.rpe_k.lookup_table_weight,norm2,mlp.fc1,mlp.fc2}.*``,
``norm.*``, ``head.*``) and timm / MAE / I-JEPA for the sin-cos variant (``pos_embed``), so their
checkpoints load after stripping ``module.``.

Size: just over 400 lines: the encoder, its block and the positional-encoding variants share
one state-dict naming contract with the released checkpoints, kept in one file on purpose.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

import torch
from sarjepa.benchmark.core.errors import SarjepaError, unknown
from sarjepa.pretrain.models.attention import attend, default_impl
from sarjepa.pretrain.models.irpe import ContextualKeyRPE, cached_bucket_ids, square_bucket_ids
from sarjepa.pretrain.models.pos_embed import cached_sincos_2d, sincos_2d
from timm.layers import DropPath, Mlp, PatchEmbed, trunc_normal_
from torch import Tensor, nn

POS_EMBEDS = ("irpe", "sincos", "none")
POOLS = ("cls", "mean")
# name -> (embed_dim, depth, num_heads)
SIZES = {
    "tiny": (192, 12, 3),
    "small": (384, 12, 6),
    "base": (768, 12, 12),
    "large": (1024, 24, 16),
}
ARCH_KEYS = (
    "embed_dim", "depth", "num_heads", "mlp_ratio", "patch_size", "in_chans", "img_size",
    "pos_embed", "class_token", "global_pool", "qkv_bias", "norm_eps",
)  # fmt: skip


class Attention(nn.Module):
    """Multi-head self-attention, by default through ``scaled_dot_product_attention``.

    ``attn_impl`` picks how the same attention is computed (:mod:`pretrain.models.attention`:
    ``sdpa``, ``aligned``, ``triton``, ``math``); it starts as ``$SARJEPA_ATTN`` (default
    ``sdpa``) and is switched with :func:`pretrain.models.attention.set_attention`.
    Setting ``attn_hook`` to a callable switches this module to the explicit softmax
    (``softmax(q k^T / sqrt(head_dim) + bias)`` in float32, then ``@ v``) that hands the
    attention probabilities ``(B, H, T, T)`` to the hook on every forward (attention analyses);
    with ``attn_hook`` None (the default) nothing is kept.

    Args:
        dim: token width ``D``; must be divisible by ``num_heads``.
        num_heads: number of heads ``H``.
        qkv_bias: bias on the fused ``qkv`` projection.
        rpe: add the iRPE contextual key term (``rpe_k``) as an additive logit bias.
    """

    def __init__(self, dim: int, num_heads: int, qkv_bias: bool = True, rpe: bool = True) -> None:
        super().__init__()
        if dim % num_heads:
            raise ValueError(f"embed_dim {dim} is not divisible by num_heads {num_heads}")
        self.num_heads = num_heads
        self.head_dim = dim // num_heads
        self.qkv = nn.Linear(dim, dim * 3, bias=qkv_bias)
        self.proj = nn.Linear(dim, dim)
        self.rpe_k = ContextualKeyRPE(self.head_dim) if rpe else None
        self.attn_hook: Callable[[Tensor], None] | None = None
        self.attn_impl = default_impl()

    def forward(self, x: Tensor, rpe_index: Tensor | None = None) -> Tensor:
        """Args: x ``(B, T, D)``; rpe_index ``(T, T)`` bucket ids (inferred for a square grid
        plus at most one leading token when None). Returns ``(B, T, D)``."""
        b, t, d = x.shape
        qkv = self.qkv(x).reshape(b, t, 3, self.num_heads, self.head_dim).permute(2, 0, 3, 1, 4)
        q, k, v = qkv.unbind(0)  # each (B, H, T, hd)
        if self.rpe_k is not None and rpe_index is None:
            rpe_index = square_bucket_ids(t, x.device)
        # the iRPE term uses the unscaled q, as the authors' copy of iRPE (the reference iRPE
        # code scales q first)
        if self.attn_hook is None:
            out = attend(q, k, v, self.rpe_k, rpe_index, self.attn_impl)
        else:
            out = self._explicit_attention(q, k, v, rpe_index)
        return self.proj(out.transpose(1, 2).reshape(b, t, d))

    def _explicit_attention(self, q: Tensor, k: Tensor, v: Tensor, ids: Tensor | None) -> Tensor:
        """The ``math`` computation; ``attn_hook`` gets the float32 probabilities."""
        logits = torch.matmul(q, k.transpose(-2, -1)).float() * self.head_dim**-0.5
        if self.rpe_k is not None:
            logits = logits + self.rpe_k(q, ids).float()
        probs = logits.softmax(dim=-1)  # (B, H, T, T), float32
        assert self.attn_hook is not None
        self.attn_hook(probs)
        return torch.matmul(probs.to(v.dtype), v)

    def extra_repr(self) -> str:
        return f"heads={self.num_heads}, head_dim={self.head_dim}, attn_impl={self.attn_impl}"


class Block(nn.Module):
    """Pre-norm transformer block: ``x + attn(norm1(x))``, then ``x + mlp(norm2(x))``.

    Args:
        dim: token width.
        num_heads: attention heads.
        mlp_ratio: MLP hidden width as a multiple of ``dim``.
        qkv_bias: bias on ``qkv``.
        drop_path: stochastic-depth rate of this block.
        rpe: whether attention carries the iRPE key term.
        norm_eps: LayerNorm epsilon.
    """

    def __init__(
        self,
        dim: int,
        num_heads: int,
        mlp_ratio: float = 4.0,
        qkv_bias: bool = True,
        drop_path: float = 0.0,
        rpe: bool = True,
        norm_eps: float = 1e-6,
    ) -> None:
        super().__init__()
        self.norm1 = nn.LayerNorm(dim, eps=norm_eps)
        self.attn = Attention(dim, num_heads, qkv_bias=qkv_bias, rpe=rpe)
        self.drop_path = DropPath(drop_path) if drop_path > 0.0 else nn.Identity()
        self.norm2 = nn.LayerNorm(dim, eps=norm_eps)
        self.mlp = Mlp(dim, hidden_features=int(dim * mlp_ratio))

    def forward(self, x: Tensor, rpe_index: Tensor | None = None) -> Tensor:
        """Args: x ``(B, T, D)``; rpe_index ``(T, T)`` or None. Returns ``(B, T, D)``."""
        x = x + self.drop_path(self.attn(self.norm1(x), rpe_index))
        return x + self.drop_path(self.mlp(self.norm2(x)))


def init_weights(module: nn.Module) -> None:
    """timm / authors' ViT init: Linear trunc_normal(std .02) and zero bias, LayerNorm 1 / 0."""
    if isinstance(module, nn.Linear):
        trunc_normal_(module.weight, std=0.02)
        if module.bias is not None:
            nn.init.zeros_(module.bias)
    elif isinstance(module, nn.LayerNorm):
        nn.init.ones_(module.weight)
        nn.init.zeros_(module.bias)


def _pair(v: int | tuple[int, int] | list[int]) -> tuple[int, int]:
    return (int(v), int(v)) if isinstance(v, int) else (int(v[0]), int(v[1]))


class VisionTransformer(nn.Module):
    """ViT encoder: patch embedding, optional CLS, position scheme, blocks, final norm, head.

    Args:
        img_size: input size (int or ``(H, W)``) fixing the sin-cos table; other sizes that
            are multiples of ``patch_size`` also run.
        patch_size: square patch side in pixels.
        in_chans: input channels (1 for SAR).
        num_classes: head outputs; 0 gives an Identity head.
        embed_dim, depth, num_heads, mlp_ratio, qkv_bias: transformer shape.
        drop_path_rate: stochastic depth, linearly increasing over the blocks.
        pos_embed: ``"irpe"`` (every block has ``rpe_k``, no ``pos_embed`` key), ``"sincos"``
            (fixed ``pos_embed`` of shape ``(1, [1+]N, D)``, zero CLS row) or ``"none"``.
        class_token: prepend a learned CLS token.
        global_pool: ``"cls"`` or ``"mean"`` (of patch tokens); None picks cls if there is one.
        norm_eps: LayerNorm epsilon.
        initialise: run the weight init (False leaves every tensor as allocated, for a model
            whose weights are loaded next, e.g. built on the meta device).
    """

    def __init__(
        self,
        img_size: int | tuple[int, int] = 224,
        patch_size: int = 16,
        in_chans: int = 1,
        num_classes: int = 0,
        embed_dim: int = 768,
        depth: int = 12,
        num_heads: int = 12,
        mlp_ratio: float = 4.0,
        qkv_bias: bool = True,
        drop_path_rate: float = 0.0,
        pos_embed: str = "irpe",
        class_token: bool = True,
        global_pool: str | None = None,
        norm_eps: float = 1e-6,
        initialise: bool = True,
    ) -> None:
        super().__init__()
        if pos_embed not in POS_EMBEDS:
            raise unknown("position embedding", str(pos_embed), POS_EMBEDS)
        global_pool = global_pool or ("cls" if class_token else "mean")
        if global_pool not in POOLS:
            raise unknown("global pool", str(global_pool), POOLS)
        if global_pool == "cls" and not class_token:
            raise SarjepaError("global_pool 'cls' needs class_token=True (use 'mean')")
        self.img_size = img_size
        self.patch_size = patch_size
        self.in_chans = in_chans
        self.embed_dim = self.num_features = embed_dim
        self.depth = depth
        self.num_heads = num_heads
        self.mlp_ratio = mlp_ratio
        self.qkv_bias = qkv_bias
        self.norm_eps = norm_eps
        self.pos_embed_type = pos_embed
        self.has_class_token = class_token
        self.global_pool = global_pool
        self.num_prefix_tokens = 1 if class_token else 0
        self.num_classes = num_classes
        ih, iw = _pair(img_size)
        if ih % patch_size or iw % patch_size:
            raise SarjepaError(f"img_size {img_size} is not a multiple of patch_size {patch_size}")
        self.grid_size = (ih // patch_size, iw // patch_size)

        self.patch_embed = PatchEmbed(
            img_size=(ih, iw), patch_size=patch_size, in_chans=in_chans, embed_dim=embed_dim,
            strict_img_size=False,
        )  # fmt: skip
        self.cls_token = nn.Parameter(torch.zeros(1, 1, embed_dim)) if class_token else None
        if pos_embed == "sincos":
            table = sincos_2d(embed_dim, self.grid_size, cls_token=class_token).unsqueeze(0)
            self.pos_embed = nn.Parameter(table, requires_grad=False)
        else:
            self.pos_embed = None
        dpr = [drop_path_rate * i / max(depth - 1, 1) for i in range(depth)]  # linear decay rule
        self.blocks = nn.ModuleList(
            Block(embed_dim, num_heads, mlp_ratio, qkv_bias, dpr[i], pos_embed == "irpe", norm_eps)
            for i in range(depth)
        )
        self.norm = nn.LayerNorm(embed_dim, eps=norm_eps)
        self.head = nn.Linear(embed_dim, num_classes) if num_classes > 0 else nn.Identity()
        if initialise:  # False: every tensor is about to be loaded (saves ~0.2 s for ViT-B)
            self._init_weights()

    def _init_weights(self) -> None:
        # patch embedding: xavier on the flattened kernel as MAE, but a zero bias (MAE and the
        # authors keep Conv2d's default uniform bias); iRPE tables stay zero
        w = self.patch_embed.proj.weight
        nn.init.xavier_uniform_(w.view(w.shape[0], -1))
        nn.init.zeros_(self.patch_embed.proj.bias)
        if self.cls_token is not None:
            trunc_normal_(self.cls_token, std=0.02)
        self.apply(init_weights)

    @torch.jit.ignore
    def no_weight_decay(self) -> set[str]:
        """Names exempted from weight decay only under ``TRAIN.DECAY_TOKENS False`` (timm
        convention); by default they are decayed (:func:`pretrain.train.param_groups`)."""
        return {"cls_token", "pos_embed"}

    def arch_dict(self) -> dict[str, Any]:
        """Plain-JSON architecture description; ``build_vit(arch_dict())`` rebuilds the model."""
        img = self.img_size if isinstance(self.img_size, int) else list(_pair(self.img_size))
        return {
            "embed_dim": self.embed_dim, "depth": self.depth, "num_heads": self.num_heads,
            "mlp_ratio": self.mlp_ratio, "patch_size": self.patch_size, "in_chans": self.in_chans,
            "img_size": img, "pos_embed": self.pos_embed_type, "class_token": self.has_class_token,
            "global_pool": self.global_pool, "qkv_bias": self.qkv_bias, "norm_eps": self.norm_eps,
        }  # fmt: skip

    def _sincos(self, tokens: Tensor, grid: tuple[int, int], pos_index: Tensor | None) -> Tensor:
        """Sin-cos table for the tokens: ``(1, n, D)`` or ``(B, n, D)`` (gathered)."""
        assert self.pos_embed is not None
        table = self.pos_embed[:, self.num_prefix_tokens :]
        if pos_index is not None:
            if bool(((pos_index < 0) | (pos_index >= table.shape[1])).any()):
                raise ValueError(f"pos_index outside the {self.grid_size} grid of img_size")
            return table[0][pos_index]
        if grid == self.grid_size:
            return table
        # another grid (e.g. a 112x112 image): the same formula for that grid
        return cached_sincos_2d(self.embed_dim, *grid).to(tokens.device, tokens.dtype)[None]

    def _check_window(self, pos_index: Tensor, grid: tuple[int, int]) -> None:
        """iRPE needs a full ``h x w`` window in row-major order; anything else is rejected."""
        (h, w), dev = grid, pos_index.device
        rows, cols = pos_index // self.grid_size[1], pos_index % self.grid_size[1]
        ok = pos_index.shape[1] == h * w and bool(
            (rows - rows[:, :1] == torch.arange(h, device=dev).repeat_interleave(w)).all()
            & (cols - cols[:, :1] == torch.arange(w, device=dev).repeat(h)).all()
        )
        if not ok:
            raise ValueError(
                f"iRPE cannot encode a subset of a grid: pos_index must be a {h}x{w} window in "
                "row-major order (pass the window's tokens with grid=(h, w) instead)"
            )

    def rpe_index(self, grid: tuple[int, int], device: torch.device) -> Tensor | None:
        """Cached iRPE bucket ids for ``grid`` (None unless ``pos_embed == "irpe"``)."""
        if self.pos_embed_type != "irpe":
            return None
        return cached_bucket_ids(grid[0], grid[1], self.num_prefix_tokens, torch.device(device))

    def forward_blocks(
        self,
        tokens: Tensor,
        grid: tuple[int, int] | None = None,
        pos_index: Tensor | None = None,
    ) -> Tensor:
        """Run position encoding, CLS, all blocks and the final norm on patch tokens.

        Args:
            tokens: ``(B, n, D)`` patch tokens (no CLS). Without ``pos_index`` they are a full
                ``h x w`` grid in row-major order (``n = h*w``).
            grid: ``(h, w)`` of the tokens; default the ``img_size`` grid.
            pos_index: LongTensor ``(B, n)`` of row-major indices into the ``img_size`` grid.
                sincos: positions of an arbitrary subset (MAE). irpe: must describe an ``h x w``
                window (iRPE is translation invariant), else ValueError. none: ignored.

        Returns:
            ``(B, [1+] n, D)`` after the final LayerNorm.
        """
        b, n, _ = tokens.shape
        grid = self.grid_size if grid is None else (int(grid[0]), int(grid[1]))
        if pos_index is None:
            if n != grid[0] * grid[1]:
                raise ValueError(f"{n} tokens do not fill a {grid[0]}x{grid[1]} grid")
        elif pos_index.shape != (b, n):
            raise ValueError(f"pos_index shape {tuple(pos_index.shape)} != tokens' {(b, n)}")
        if self.pos_embed_type == "sincos":
            tokens = tokens + self._sincos(tokens, grid, pos_index)
        elif self.pos_embed_type == "irpe" and pos_index is not None:
            self._check_window(pos_index, grid)
        x = tokens
        if self.cls_token is not None:
            x = torch.cat([self.cls_token.expand(b, -1, -1).to(x.dtype), x], dim=1)
        rpe_index = self.rpe_index(grid, x.device)
        for blk in self.blocks:
            x = blk(x, rpe_index)
        return self.norm(x)

    def forward_features(self, x: Tensor) -> Tensor:
        """``(B, C, H, W)`` images (H, W multiples of the patch) -> ``(B, [1+]N, D)``."""
        grid = (x.shape[-2] // self.patch_size, x.shape[-1] // self.patch_size)
        return self.forward_blocks(self.patch_embed(x), grid)

    def pool(self, feats: Tensor) -> Tensor:
        """``(B, T, D)`` -> ``(B, D)``: the CLS token or the mean of the patch tokens."""
        if self.global_pool == "cls":
            return feats[:, 0]
        return feats[:, self.num_prefix_tokens :].mean(dim=1)

    def forward(self, x: Tensor) -> Tensor:
        """``(B, C, H, W)`` -> ``(B, num_classes)`` (or ``(B, D)`` with an Identity head)."""
        return self.head(self.pool(self.forward_features(x)))


def _sized(size: str, **kwargs: Any) -> VisionTransformer:
    embed_dim, depth, num_heads = SIZES[size]
    arch = {"embed_dim": embed_dim, "depth": depth, "num_heads": num_heads, **kwargs}
    return VisionTransformer(**arch)


def vit_tiny(**kwargs: Any) -> VisionTransformer:
    """ViT-Ti: width 192, depth 12, 3 heads (keyword overrides go to VisionTransformer)."""
    return _sized("tiny", **kwargs)


def vit_small(**kwargs: Any) -> VisionTransformer:
    """ViT-S: width 384, depth 12, 6 heads."""
    return _sized("small", **kwargs)


def vit_base(**kwargs: Any) -> VisionTransformer:
    """ViT-B: width 768, depth 12, 12 heads."""
    return _sized("base", **kwargs)


def vit_large(**kwargs: Any) -> VisionTransformer:
    """ViT-L: width 1024, depth 24, 16 heads."""
    return _sized("large", **kwargs)


_NAME = re.compile(r"^vit_(tiny|small|base|large)(?:_patch(\d+))?(?:_(\d+))?$")
_EXTRA_KEYS = ("num_classes", "drop_path_rate", "initialise")


def build_vit(name_or_arch: str | dict[str, Any], **overrides: Any) -> VisionTransformer:
    """Build an encoder from a name or an :meth:`VisionTransformer.arch_dict`.

    Args:
        name_or_arch: ``"vit_<tiny|small|base|large>[_patch<P>][_<img>]"`` (e.g.
            ``"vit_base_patch16"``) or an arch dict.
        **overrides: any arch key, ``num_classes`` or ``drop_path_rate``; they win over the
            name or dict.

    Returns:
        The model. Unknown names or keys raise ``SarjepaError``.
    """
    if isinstance(name_or_arch, str):
        m = _NAME.match(name_or_arch)
        if m is None:
            names = [f"vit_{s}_patch16" for s in SIZES]
            raise unknown("backbone", name_or_arch, names)
        embed_dim, depth, num_heads = SIZES[m.group(1)]
        arch: dict[str, Any] = {"embed_dim": embed_dim, "depth": depth, "num_heads": num_heads}
        if m.group(2):
            arch["patch_size"] = int(m.group(2))
        if m.group(3):
            arch["img_size"] = int(m.group(3))
    else:
        arch = dict(name_or_arch)
    arch.update(overrides)
    bad = sorted(set(arch) - set(ARCH_KEYS) - set(_EXTRA_KEYS))
    if bad:
        raise SarjepaError(f"unknown ViT arch key(s) {bad}; known: {', '.join(ARCH_KEYS)}")
    if isinstance(arch.get("img_size"), list):
        arch["img_size"] = tuple(arch["img_size"])
    return VisionTransformer(**arch)
