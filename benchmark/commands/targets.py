"""``sarjepa targets``: compute a pretraining target's per-pixel maps for image files.

Writes an ``.npz`` with ``maps`` (N, C, H, W) float32, ``files`` (N,) the image paths, ``kind``
and ``options`` (JSON); ``--png`` draws each image beside its maps.
"""

from __future__ import annotations

import argparse
import json
import os
import sys

import numpy as np
from sarjepa.benchmark import flags
from sarjepa.benchmark.core.errors import SarjepaError
from sarjepa.benchmark.core.images import expand_image_paths
from sarjepa.benchmark.core.io import atomic_numpy_save, atomic_write
from sarjepa.benchmark.docs_lists import IMAGE_PATHS, Listed


def register(subparsers) -> None:
    """Add the ``targets`` subcommand."""
    p = subparsers.add_parser(
        "targets",
        help="compute a target's per-pixel maps (gf, hog, ...) for images",
        description="Decode images to grayscale in [0, 1] (8-bit / 255, 16-bit / 65535), resize "
        "them (bicubic) to SIZE x SIZE unless they already are, and write the per-pixel maps of "
        "a pretraining target: OUT.npz with 'maps' (N, C, H, W) float32 and 'files' (N,). For "
        "gf, C is the number of scales in the order given.",
    )
    p.add_argument("--kind", required=True, help=Listed("target name, one of: {targets}"))
    flags.add(
        p,
        "--data",
        "--images",
        required=True,
        nargs="+",
        metavar="PATH",
        help=IMAGE_PATHS,
    )
    p.add_argument("--out", required=True, metavar="OUT.npz", help="output .npz file")
    p.add_argument("--png", metavar="OUT.png", help="also draw each image beside its maps")
    p.add_argument(
        "--png-max", type=int, default=16, metavar="N", help="images drawn in the PNG (16)"
    )
    p.add_argument("--size", type=int, default=224, help="model input size in pixels (224)")
    p.add_argument(
        "--scales",
        type=int,
        nargs="+",
        metavar="R",
        help="half-widths for gf / gf_gauss (default 5 9 13 17)",
    )
    p.add_argument("--patch-size", type=int, default=16, help="ViT patch size (16)")
    p.add_argument("--batch-size", type=int, default=16, help="images per computation batch")
    p.add_argument("--device", default="cpu", help="torch device for the maps (cpu)")
    p.set_defaults(func=run)


def load_gray01(path: str, size: int) -> np.ndarray:
    """Decode ``path`` by the project's grey policy and return a (size, size) float32 in [0, 1].

    The 8-bit grey plane (:func:`benchmark.core.images.read_gray`) is resized with PIL bicubic
    (as torchvision ``Resize((size, size))`` does) only if it is not already size x size, then
    divided by 255.
    """
    from PIL import Image
    from sarjepa.benchmark.core.images import read_gray

    gray = Image.fromarray(read_gray(path), "L")
    if gray.size != (size, size):
        gray = gray.resize((size, size), Image.BICUBIC)
    return np.asarray(gray, dtype=np.float32) / np.float32(255.0)


def channel_labels(target) -> list[str]:
    """Short titles of the target's map channels, for the PNG."""
    name = target.name
    if name in ("gf", "gf_gauss"):
        return [f"{name} r={r}" for r in target.scales]
    if name in ("hog", "sar_hog"):
        width = 180 / target.nbins
        return [f"{name} {k * width:.0f}-{(k + 1) * width:.0f} deg" for k in range(target.nbins)]
    if name == "lowpass":
        return [f"lowpass sigma={target.sigma:g}"]
    return [name] * target.channels


def draw_png(path: str, images: np.ndarray, maps: np.ndarray, files: list[str], labels) -> None:
    """One row per image: the image (gray, 0..1) then each map channel (own colour scale)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    n, c = maps.shape[:2]
    fig, axes = plt.subplots(n, c + 1, figsize=(2.2 * (c + 1), 2.4 * n), squeeze=False)
    for i in range(n):
        axes[i, 0].imshow(images[i], cmap="gray", vmin=0.0, vmax=1.0)
        axes[i, 0].set_title(os.path.basename(files[i])[:28], fontsize=7)
        for k in range(c):
            axes[i, k + 1].imshow(maps[i, k], cmap="viridis")
            axes[i, k + 1].set_title(labels[k], fontsize=7)
    for ax in axes.flat:
        ax.set_axis_off()
    fig.tight_layout()
    atomic_write(path, lambda f: fig.savefig(f, dpi=100, format="png"))
    plt.close(fig)


def run(args: argparse.Namespace) -> int:
    """Compute and write the maps; returns the exit status."""
    import torch
    from sarjepa.pretrain.targets import TARGETS, build_target

    kind = TARGETS.resolve(args.kind)
    if args.size < 1 or args.batch_size < 1 or args.png_max < 0:
        raise SarjepaError("--size and --batch-size must be >= 1 and --png-max >= 0")
    options = {}
    if args.scales:
        if kind not in ("gf", "gf_gauss"):
            raise SarjepaError(f"--scales applies to gf and gf_gauss, not to '{kind}'")
        options["scales"] = tuple(args.scales)
    target = build_target(kind, patch_size=args.patch_size, **options)
    try:
        device = torch.device(args.device)
    except RuntimeError:
        raise SarjepaError(f"unknown --device '{args.device}'") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise SarjepaError(f"--device '{args.device}' requested but CUDA is not available")
    files = expand_image_paths(args.data)

    from tqdm import tqdm

    images = np.empty((len(files), args.size, args.size), dtype=np.float32)
    maps = np.empty((len(files), target.channels, args.size, args.size), dtype=np.float32)
    bar = tqdm(total=len(files), unit="img", disable=not sys.stderr.isatty(), desc=kind)
    for start in range(0, len(files), args.batch_size):
        chunk = files[start : start + args.batch_size]
        batch = np.stack([load_gray01(f, args.size) for f in chunk])
        images[start : start + len(chunk)] = batch
        x = torch.from_numpy(batch)[:, None].to(device)
        with torch.no_grad():
            maps[start : start + len(chunk)] = target.maps(x).float().cpu().numpy()
        bar.update(len(chunk))
    bar.close()

    arrays = {
        "maps": maps,
        "files": np.array(files, dtype=str),
        "kind": np.array(kind),
        "options": np.array(json.dumps(target.options())),
    }
    atomic_numpy_save(arrays, args.out)
    print(f"wrote {args.out}: maps {tuple(maps.shape)} float32 ({kind}, {target.options()})")
    if args.png:
        n = min(len(files), args.png_max)
        if n:
            draw_png(args.png, images[:n], maps[:n], files[:n], channel_labels(target))
            more = f" (first {n} of {len(files)})" if n < len(files) else ""
            print(f"wrote {args.png}{more}")
    return 0
