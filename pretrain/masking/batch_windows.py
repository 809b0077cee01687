"""Upstream LoMaR's local windows: ``num_window`` positions shared by the whole batch."""

from __future__ import annotations

import torch
from sarjepa.benchmark.core.errors import SarjepaError
from sarjepa.pretrain.masking.per_image_windows import LocalWindows, window_args

#: How images meet the batch's windows: ``upstream`` (LoMaR's tiling) or ``distinct``.
PAIRINGS = ("upstream", "distinct")


def shared_local_windows(
    batch_size: int,
    grid_hw: tuple[int, int] = (14, 14),
    window_size: int = 7,
    num_window: int = 4,
    mask_ratio: float = 0.8,
    generator: torch.Generator | None = None,
    device: torch.device | str | None = None,
    pairing: str = "upstream",
) -> LocalWindows:
    """Upstream LoMaR's windows: ``num_window`` positions shared by the whole batch.

    The draws and their order are those of LoMaR's ``forward_encoder`` (junchen14/LoMaR):
    ``randperm(h - ws + 1)[:num_window]`` gives the top rows, then ``randperm(w - ws + 1)`` the
    left columns (window k = (top_k, left_k) for every image), then one
    ``rand(B, num_window, ws * ws)`` whose per-window argsort picks the
    ``int(ws * ws * mask_ratio)`` masked patches. With the same generator state the windows and
    the mask draws are upstream's.

    Pairing (``pairing``): upstream's ``generate_window_patches`` builds B x K sequences by
    repeating the batch window-major (sequence s shows image ``s mod B``) while it lays the windows
    and mask draws out image-major (sequence s gets window ``s mod K`` and mask draw
    ``(s // K, s mod K)``). ``"upstream"`` reproduces that: image i's slot j is sequence
    ``s = i + j B``, so at a batch divisible by K image i sees one window, ``i mod K``, K times with
    K different masks. ``"distinct"`` gives image i window k with mask draw ``(i, k)``: K distinct
    windows per image, for any batch. The random draws are the same in both.

    Args:
        batch_size: B.
        grid_hw: patch grid (h, w).
        window_size: ws, window side in patches.
        num_window: windows per image; at most ``min(h, w) - ws + 1`` (distinct rows and columns).
        mask_ratio: fraction of each window to mask; at least one patch must be masked.
        generator: optional seeded CPU generator.
        device: where the results go.
        pairing: ``"upstream"`` or ``"distinct"`` (above).

    Returns:
        :class:`LocalWindows` with origins (B, num_window, 2) (the same for every image),
        patch_index and mask (B, num_window, ws * ws).
    """
    gh, gw, ws, k, b = window_args(grid_hw, window_size, num_window, batch_size)
    nh, nw = gh - ws + 1, gw - ws + 1
    if k > min(nh, nw):
        raise SarjepaError(
            f"num_window {k} exceeds the {min(nh, nw)} distinct window rows/columns of a "
            f"{ws}x{ws} window on the {gh}x{gw} patch grid"
        )
    if pairing not in PAIRINGS:
        raise SarjepaError(f"window pairing must be one of {', '.join(PAIRINGS)}, got '{pairing}'")
    n_mask = int(ws * ws * mask_ratio)
    if not 0 < n_mask <= ws * ws:
        raise SarjepaError(
            f"mask_ratio {mask_ratio} masks {n_mask} of the {ws * ws} patches of a window "
            f"(need 1..{ws * ws})"
        )
    tops = torch.randperm(nh, generator=generator)[:k]
    lefts = torch.randperm(nw, generator=generator)[:k]
    steps = torch.arange(ws)
    one = ((tops[:, None, None] + steps[:, None]) * gw + lefts[:, None, None] + steps).flatten(1)
    masked = torch.rand((b, k, ws * ws), generator=generator).argsort(dim=-1)[..., :n_mask]
    mask = torch.zeros(b, k, ws * ws, dtype=torch.bool).scatter_(-1, masked, True)
    window = torch.arange(k).expand(b, k)
    if pairing == "upstream":
        seq = torch.arange(b)[:, None] + torch.arange(k)[None, :] * b  # (B, K): slot j of image i
        window = seq % k
        mask = mask[seq // k, window]
    patch_index = one[window]
    origins = torch.stack([tops, lefts], dim=-1)[window]
    if device is not None:
        origins, patch_index, mask = (t.to(device) for t in (origins, patch_index, mask))
    return LocalWindows(origins, patch_index, mask)
