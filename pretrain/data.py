"""Unlabeled SAR image folders for pretraining: discovery, decoding, augmentation, sampling.

On disk: any folder tree of images (:data:`benchmark.core.images.IMAGE_EXTENSIONS`, any letter
case), found recursively in sorted order; labels and sub-folder names are ignored. Every image is
decoded to one 8-bit grey plane by the project's one policy (:mod:`benchmark.core.images`; the
decoding is the few-shot readers', the listing is not: they accept per-dataset extensions,
case-sensitively, and the authors' pretraining reader took every file, see
PROTOCOL.md#pretraining-input); ``DATA.HIGH_BIT`` chooses ``shift`` (OpenCV-equal, default) or
``minmax`` for 16-bit and float files.

Training transform (the paper's): ``RandomResizedCrop(size, scale=(0.2, 1.0), bicubic)``,
``RandomHorizontalFlip``, ``ColorJitter(contrast=0.5)`` on the gray image, ``ToTensor``
(1 x size x size in [0, 1]); no mean/std normalisation.

Reproducibility: the augmentation of sample ``i`` in epoch ``e`` is a pure function of
``(seed, e, i)`` (the sampler yields ``(epoch, index)`` pairs and the dataset seeds the torch CPU
generator from them), so results do not depend on the number of DataLoader workers and a resumed
run sees exactly the crops an uninterrupted run would have seen.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from sarjepa.benchmark.core.errors import SarjepaError
from sarjepa.benchmark.core.images import check_high_bit, find_images, read_gray
from sarjepa.benchmark.core.provenance import data_fingerprint
from sarjepa.benchmark.core.runtime import mix_seed
from torch.utils.data import Dataset, Sampler

log = logging.getLogger(__name__)


def build_train_transform(
    size: int,
    scale: Sequence[float] = (0.2, 1.0),
    ratio: Sequence[float] = (3 / 4, 4 / 3),
    hflip: float = 0.5,
    contrast: float = 0.5,
):
    """The paper's pretraining augmentation for a PIL ``"L"`` image -> (1, size, size) in [0, 1]."""
    from torchvision import transforms as T

    steps = [
        T.RandomResizedCrop(
            size,
            scale=tuple(scale),
            ratio=tuple(ratio),
            interpolation=T.InterpolationMode.BICUBIC,
        )
    ]
    if hflip > 0:
        steps.append(T.RandomHorizontalFlip(hflip))
    if contrast > 0:
        steps.append(T.ColorJitter(contrast=contrast))
    steps.append(T.ToTensor())
    return T.Compose(steps)


class UnlabeledImageFolder(Dataset):
    """All images under a folder, decoded to gray uint8 and augmented for pretraining.

    Args:
        root: data folder (searched recursively).
        transform: callable PIL ``"L"`` -> tensor (1, H, W).
        seed: base seed of the per-sample augmentation stream.
        cache: decode every image once at construction and keep the uint8 planes in one shared
            in-memory buffer (fast epochs; memory = sum of H*W bytes).
        high_bit: 16-bit / float scaling, ``"shift"`` or ``"minmax"`` (module doc).
        skip_corrupt: log and skip unreadable images instead of raising ``SarjepaError``.
        progress: show a tqdm bar while filling the cache.

    Items: ``dataset[(epoch, index)]`` (or ``dataset[index]``, epoch 0) -> tensor (1, H, W).
    """

    def __init__(
        self,
        root: str | os.PathLike,
        transform=None,
        seed: int = 0,
        cache: bool = False,
        high_bit: str = "shift",
        skip_corrupt: bool = False,
        progress: bool = False,
    ) -> None:
        self.root = Path(root)
        self.transform = transform
        self.seed = int(seed)
        self.high_bit = check_high_bit(high_bit, "DATA.HIGH_BIT")
        self.skip_corrupt = skip_corrupt
        files = find_images(self.root)
        self.skipped: list[str] = []
        files = [f for f in files if self._header_ok(f)]
        if not files:
            raise SarjepaError(f"no readable image under data folder '{self.root}'")
        self.files = files
        self.fingerprint = data_fingerprint(self.root, self.files)
        self._buffer: np.ndarray | None = None
        if cache:
            self._fill_cache(progress)

    def _header_ok(self, rel: str) -> bool:
        """Cheap check that PIL recognises the file (full decode happens later)."""
        try:
            with Image.open(self.root / rel):
                return True
        except Exception as exc:
            return self._corrupt(rel, exc)

    def _corrupt(self, rel: str, exc: Exception) -> bool:
        reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        if not self.skip_corrupt:
            raise SarjepaError(
                f"cannot read image '{rel}' in '{self.root}': {reason} "
                "(pass --skip-corrupt to skip unreadable images)"
            ) from None
        log.warning("skipping unreadable image %s: %s", rel, reason)
        self.skipped.append(rel)
        return False

    def _fill_cache(self, progress: bool) -> None:
        from tqdm import tqdm

        planes: list[np.ndarray] = []
        keep: list[str] = []
        for rel in tqdm(self.files, desc="decoding images", disable=not progress, unit="img"):
            try:
                planes.append(read_gray(self.root / rel, self.high_bit, rel))
                keep.append(rel)
            except SarjepaError as exc:
                self._corrupt(rel, exc)
        if not keep:
            raise SarjepaError(f"no readable image under data folder '{self.root}'")
        self.files = keep
        self.fingerprint = data_fingerprint(self.root, self.files)
        shapes = np.array([p.shape for p in planes], dtype=np.int64)
        sizes = shapes[:, 0] * shapes[:, 1]
        self._offsets = np.concatenate([[0], np.cumsum(sizes)])
        self._shapes = shapes
        # One flat buffer: forked DataLoader workers share it without copy-on-write churn.
        self._buffer = np.concatenate([p.ravel() for p in planes])

    @property
    def cached(self) -> bool:
        return self._buffer is not None

    def __len__(self) -> int:
        return len(self.files)

    def load(self, index: int) -> np.ndarray:
        """The (H, W) uint8 gray plane of image ``index`` (from the cache if enabled)."""
        if self._buffer is not None:
            a, b = self._offsets[index], self._offsets[index + 1]
            return self._buffer[a:b].reshape(tuple(self._shapes[index]))
        rel = self.files[index]
        return read_gray(self.root / rel, self.high_bit, rel)

    def _load_or_skip(self, index: int) -> np.ndarray:
        for k in range(len(self.files)):
            j = (index + k) % len(self.files)
            try:
                return self.load(j)
            except SarjepaError as exc:
                if not self.skip_corrupt:
                    raise SarjepaError(f"{exc} (pass --skip-corrupt to skip it)") from None
                log.warning("skipping unreadable image: %s", exc)
        raise SarjepaError(f"no readable image under data folder '{self.root}'")

    def __getitem__(self, key: int | tuple[int, int]) -> torch.Tensor:
        epoch, index = key if isinstance(key, tuple) else (0, key)
        img = Image.fromarray(self._load_or_skip(int(index)))
        if self.transform is None:
            return torch.from_numpy(np.asarray(img, dtype=np.float32) / 255.0)[None]
        with torch.random.fork_rng(devices=[]):
            torch.random.default_generator.manual_seed(mix_seed(self.seed, epoch, index))
            return self.transform(img)


class EpochSampler(Sampler):
    """Shuffled, rank-sharded indices that also carry the epoch: yields ``(epoch, index)``.

    Like ``DistributedSampler`` (shuffle with a generator seeded by ``seed`` and the epoch, pad
    by wrapping so every rank gets the same count, rank ``r`` takes positions ``r::world``), but
    the epoch travels with each index so the dataset can seed the augmentation per sample.

    Args:
        num_samples: dataset length.
        num_replicas: world size.
        rank: this process's rank.
        seed: base seed of the shuffle.
        shuffle: shuffle (True) or keep the dataset order.
    """

    def __init__(
        self,
        num_samples: int,
        num_replicas: int = 1,
        rank: int = 0,
        seed: int = 0,
        shuffle: bool = True,
    ) -> None:
        self.n = int(num_samples)
        self.num_replicas = int(num_replicas)
        self.rank = int(rank)
        self.seed = int(seed)
        self.shuffle = shuffle
        self.epoch = 0
        self.per_rank = -(-self.n // self.num_replicas)

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def indices(self) -> list[int]:
        """This rank's dataset indices for the current epoch."""
        if self.shuffle:
            g = torch.Generator().manual_seed(mix_seed(self.seed, self.epoch, 0x5A3D))
            order = torch.randperm(self.n, generator=g).tolist()
        else:
            order = list(range(self.n))
        total = self.per_rank * self.num_replicas
        while len(order) < total:
            order += order[: total - len(order)]
        return order[self.rank : total : self.num_replicas]

    def __iter__(self) -> Iterator[tuple[int, int]]:
        return iter([(self.epoch, i) for i in self.indices()])

    def __len__(self) -> int:
        return self.per_rank


def build_pretrain_dataset(cfg, data_dir: str | os.PathLike, progress: bool = False):
    """Build the :class:`UnlabeledImageFolder` described by a pretraining config."""
    transform = build_train_transform(
        cfg.INPUT.SIZE,
        scale=cfg.AUG.SCALE,
        ratio=cfg.AUG.RATIO,
        hflip=cfg.AUG.HFLIP,
        contrast=cfg.AUG.CONTRAST,
    )
    return UnlabeledImageFolder(
        data_dir,
        transform=transform,
        seed=cfg.SEED,
        cache=cfg.DATA.CACHE,
        high_bit=cfg.DATA.HIGH_BIT,
        skip_corrupt=cfg.DATA.SKIP_CORRUPT,
        progress=progress,
    )


def preprocessing_dict(cfg) -> dict:
    """What the sidecar records about input preprocessing (plain JSON types)."""
    return {
        "color": (
            "gray, OpenCV IMREAD_GRAYSCALE-equal (sarjepa.benchmark.core.images.read_gray: "
            "JPEG luma plane, PNG libpng weights, others OpenCV's 4899/9617/1868 >> 14)"
        ),
        "high_bit": cfg.DATA.HIGH_BIT,
        "scale": "ToTensor, [0, 1]",
        "normalize": None,
        "input_size": int(cfg.INPUT.SIZE),
        "train_augmentation": {
            "random_resized_crop": {
                "size": int(cfg.INPUT.SIZE),
                "scale": [float(v) for v in cfg.AUG.SCALE],
                "ratio": [float(v) for v in cfg.AUG.RATIO],
                "interpolation": "bicubic",
            },
            "hflip": float(cfg.AUG.HFLIP),
            "color_jitter_contrast": float(cfg.AUG.CONTRAST),
        },
    }


def seed_worker(worker_id: int) -> None:
    """DataLoader ``worker_init_fn``: seed numpy/random from torch's per-worker seed."""
    import random

    s = torch.initial_seed() % 2**32
    np.random.seed(s)
    random.seed(s)
