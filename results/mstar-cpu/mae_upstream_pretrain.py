"""Run upstream MAE's pretraining (github facebookresearch/mae, ``main_pretrain.py``) on a CPU at
this folder's micro budget, at 1 channel, without editing their files.

    python results/mstar-cpu/mae_upstream_pretrain.py MAE_DIR POOL OUT SEED EPOCHS

MAE_DIR is their checkout (kept outside this repository). Their ``main()`` runs with their own
model class, masking, loss, optimiser (AdamW, betas 0.9 / 0.95, their weight-decay groups), lr
schedule (per-iteration warm-up then half-cycle cosine), sampler and checkpoint format; this file
only supplies what a CPU box with current libraries lacks and sizes the run (``mae_upstream.md``
lists every change and why):

* a micro model registered under a new name in their model module: their
  ``MaskedAutoencoderViT`` at 112 px, 1 input channel, width 96, depth 4, 4 heads, patch 16, a
  decoder of 2 blocks of width 96 with 4 heads (ours for ``mae`` in ``run.sh``: the same); its
  ``patchify`` hard-codes 3 channels, so the instance gets the same patch layout for its channel
  count (1);
* 1-channel data: their ``ImageFolder`` reads each chip in gray (``L``) instead of RGB, and their
  ImageNet ``Normalize`` (3 channels) is left out, as ours does (PROTOCOL.md); their
  ``RandomResizedCrop(scale 0.2-1, bicubic)``, flip and ``ToTensor`` are kept;
* stand-ins for what current libraries removed: ``timm.__version__`` reads "0.3.2" while their
  module imports (their version assert), ``optim_factory.add_weight_decay`` is timm's
  ``param_groups_weight_decay`` (the same rule: no decay on 1-d parameters and biases), timm's
  ``Block`` no longer takes ``qk_scale`` (dropped; they pass None), ``numpy.float`` (their sin-cos
  table), ``torch._six.inf`` (``math.inf``), a no-op tensorboard writer;
* their sampler reshuffled every epoch (``set_epoch``, as their multi-GPU runs do; in one process
  their loop does not call it, so every epoch would repeat the first one's order);
* a weights-only ``checkpoint-<epoch>.pth`` after every epoch for the learning curve (theirs saves
  every 20th and the last, in their own format, which overwrites ours for those epochs).
"""

from __future__ import annotations

import contextlib
import sys
import types
from functools import partial
from pathlib import Path

import upstream_shims  # this folder's (the script's folder is on sys.path)


def _stand_ins() -> None:
    import timm
    import timm.layers
    import timm.models.vision_transformer as tvit
    import timm.optim

    upstream_shims.install()
    sys.modules.setdefault("timm.optim.optim_factory", types.ModuleType("timm.optim.optim_factory"))
    factory = sys.modules["timm.optim.optim_factory"]
    factory.add_weight_decay = lambda model, weight_decay=1e-5, skip_list=(): (
        timm.optim.param_groups_weight_decay(model, weight_decay, skip_list)
    )
    timm.optim.optim_factory = factory

    their_block = tvit.Block

    def block(*args, qk_scale=None, **kwargs):  # current timm's Block has no qk_scale
        return their_block(*args, **kwargs)

    tvit.Block = block


@contextlib.contextmanager
def _timm_version(version: str):
    import timm

    real = timm.__version__
    timm.__version__ = version
    try:
        yield
    finally:
        timm.__version__ = real


def main(argv: list[str]) -> None:
    mae_dir, pool, out, seed, epochs = argv
    _stand_ins()
    import torch
    import torchvision.datasets as tv_datasets
    import torchvision.transforms as tv_transforms
    from PIL import Image

    sys.path.insert(0, str(Path(mae_dir).resolve()))
    with _timm_version("0.3.2"):
        import main_pretrain
    import models_mae

    def patchify(self, imgs):  # theirs hard-codes 3 channels: the same layout for C of them
        p = self.patch_embed.patch_size[0]
        n, c, h, w = imgs.shape[0], imgs.shape[1], imgs.shape[2] // p, imgs.shape[3] // p
        x = imgs.reshape(n, c, h, p, w, p).permute(0, 2, 4, 3, 5, 1)
        return x.reshape(n, h * w, p * p * c)

    def micro(**kwargs):
        model = models_mae.MaskedAutoencoderViT(
            img_size=112, patch_size=16, in_chans=1, embed_dim=96, depth=4, num_heads=4,
            decoder_embed_dim=96, decoder_depth=2, decoder_num_heads=4, mlp_ratio=4,
            norm_layer=partial(torch.nn.LayerNorm, eps=1e-6), **kwargs,
        )  # fmt: skip
        model.patchify = types.MethodType(patchify, model)
        return model

    models_mae.mae_vit_micro = micro

    class _Identity:
        def __init__(self, *a, **k):
            pass

        def __call__(self, x):
            return x

    tv_transforms.Normalize = _Identity  # ImageNet's 3-channel statistics: left out at 1 channel

    def gray(path):
        with open(path, "rb") as f:
            return Image.open(f).convert("L")

    their_folder = tv_datasets.ImageFolder
    tv_datasets.ImageFolder = partial(their_folder, loader=gray)

    # their ImageFolder wants DATA/train/<class>/...: the pool as the one "class" of a view folder
    view = Path(out) / "data_view"
    (view / "train").mkdir(parents=True, exist_ok=True)
    link = view / "train" / "pool"
    if not link.exists():
        link.symlink_to(Path(pool).resolve(), target_is_directory=True)

    their_epoch = main_pretrain.train_one_epoch

    def one_epoch(model, loader, optimizer, device, epoch, loss_scaler, log_writer=None, args=None):
        loader.sampler.set_epoch(epoch)
        stats = their_epoch(
            model, loader, optimizer, device, epoch, loss_scaler, log_writer=log_writer, args=args
        )
        torch.save(
            {"model": model.state_dict(), "epoch": epoch}, Path(out) / f"checkpoint-{epoch}.pth"
        )
        return stats

    main_pretrain.train_one_epoch = one_epoch
    args = main_pretrain.get_args_parser().parse_args(
        [
            "--model", "mae_vit_micro", "--input_size", "112", "--batch_size", "32",
            "--epochs", epochs, "--warmup_epochs", "1", "--blr", "5e-3", "--mask_ratio", "0.75",
            "--norm_pix_loss", "--weight_decay", "0.05",
            "--device", "cuda" if torch.cuda.is_available() else "cpu", "--num_workers", "0",
            "--seed", seed, "--data_path", str(view), "--output_dir", out,
        ]
    )  # fmt: skip
    args.log_dir = None
    Path(out).mkdir(parents=True, exist_ok=True)
    main_pretrain.main(args)


if __name__ == "__main__":
    main(sys.argv[1:])
