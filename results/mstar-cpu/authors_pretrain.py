"""Run the SAR-JEPA authors' own pretraining (github waterdisappear/SAR-JEPA, ``Pretraining/``) on a
CPU at this folder's micro budget, without editing their files.

    python results/mstar-cpu/authors_pretrain.py AUTHORS_DIR POOL OUT SEED ITERS STAGES

AUTHORS_DIR is their ``Pretraining/`` folder (kept outside this repository). Their ``main()`` runs
unchanged with their own model, GF target, masking, augmentation, optimiser, lr schedule and
checkpoint format; this file only supplies what a CPU box without their environment lacks and
sizes the run (authors.md lists every change and why):

* a micro model (ViT 96 x 4, 4 heads, patch 16, 112 px; their head of 2 blocks of width 96),
  registered under a new name in their model module;
* stand-ins for modules their imports need and this environment lacks (``cv2.imread`` in gray via
  PIL, ``easydict``, ``torch._six.inf``, ``numpy.float``, a no-op tensorboard writer);
* ``torch.cuda.synchronize`` as a no-op when there is no GPU;
* each epoch cut to ITERS iterations of their loader (their sampler reshuffled per epoch, as their
  multi-GPU runs do), and a checkpoint after every epoch (theirs: every 50th and the last).
"""

from __future__ import annotations

import itertools
import sys
import types
from functools import partial
from pathlib import Path

import upstream_shims  # this folder's (the script's folder is on sys.path)


def _stand_ins() -> None:
    import numpy as np
    from PIL import Image

    upstream_shims.install()
    cv2 = types.ModuleType("cv2")
    cv2.IMREAD_GRAYSCALE = 0
    cv2.IMREAD_COLOR = 1

    def imread(path: str, flag: int = 1):
        img = Image.open(path)
        return np.asarray(img.convert("L" if flag == 0 else "RGB"))

    cv2.imread = imread
    sys.modules.setdefault("cv2", cv2)

    easydict = types.ModuleType("easydict")

    class EasyDict(dict):
        def __getattr__(self, k):
            try:
                return self[k]
            except KeyError as e:
                raise AttributeError(k) from e

        def __setattr__(self, k, v):
            self[k] = v

    easydict.EasyDict = EasyDict
    sys.modules.setdefault("easydict", easydict)


def main(argv: list[str]) -> None:
    authors, pool, out, seed, iters, stages = argv
    iters_n, stages_n = int(iters), int(stages)
    _stand_ins()
    import torch

    # appended, not prepended: their profile.py would shadow the standard library's
    sys.path.append(str(Path(authors).resolve()))
    import main_pretrain
    import models_lomar
    import util.misc as misc

    def micro(**kwargs):
        return models_lomar.MaskedAutoencoderViT(
            img_size=112, patch_size=16, embed_dim=96, depth=4, num_heads=4,
            decoder_embed_dim=96, decoder_depth=2, decoder_num_heads=4, mlp_ratio=4,
            norm_layer=partial(torch.nn.LayerNorm, eps=1e-6), **kwargs,
        )  # fmt: skip

    models_lomar.sarjepa_micro = micro
    their_epoch = main_pretrain.train_one_epoch

    class _Cut:
        """The first ``iters_n`` batches of their loader (``len``: what their lr schedule reads)."""

        def __init__(self, loader, epoch):
            loader.sampler.set_epoch(epoch)
            self.loader = loader

        def __len__(self):
            return iters_n

        def __iter__(self):
            return itertools.islice(iter(self.loader), iters_n)

    def one_epoch(model, loader, optimizer, device, epoch, loss_scaler, log_writer=None, args=None):
        stats = their_epoch(
            model, _Cut(loader, epoch), optimizer, device, epoch, loss_scaler,
            log_writer=log_writer, args=args,
        )  # fmt: skip
        if not (epoch % 50 == 0 or epoch + 1 == args.epochs):  # theirs saves those
            misc.save_model(args=args, model=model, model_without_ddp=model,
                            optimizer=optimizer, loss_scaler=loss_scaler, epoch=epoch)  # fmt: skip
        return stats

    main_pretrain.train_one_epoch = one_epoch
    args = main_pretrain.get_args_parser().parse_args(
        [
            "--model", "sarjepa_micro", "--input_size", "112", "--batch_size", "32",
            "--epochs", str(stages_n), "--warmup_epochs", "1", "--blr", "5e-3",
            "--window_size", "5", "--num_window", "2", "--mask_ratio", "0.8",
            "--device", "cuda" if torch.cuda.is_available() else "cpu", "--num_workers", "0",
            "--seed", str(seed), "--data_path", pool, "--output_dir", out, "--log_dir", out,
        ]
    )  # fmt: skip
    Path(out).mkdir(parents=True, exist_ok=True)
    main_pretrain.main(args)


if __name__ == "__main__":
    main(sys.argv[1:])
