"""One benchmark run (a grid cell): seed, data, trainer, train, evaluate, write the run folder.

Lifecycle of :func:`run` (Dassl's ``train.py`` + ``TrainerX``, restated):

1. Resolve the trainer (``TRAINER.NAME``), device (``RUN.DEVICE``) and numeric mode
   (``RUN.AMP``: ``auto`` = bf16 autocast on CUDA, fp32 on CPU).
2. Seed ``random``, ``numpy`` and ``torch`` with ``SEED`` (0 is a real seed; < 0 = unseeded).
3. Build the dataset (the K-shot split of the seed), then the trainer (backbone weights, head,
   optimiser). Any input error so far leaves nothing on disk.
4. Open the run folder ``OUTPUT_DIR``: a previous ``result.json`` is removed (the cell is being
   recomputed), a previous ``log.txt`` is kept as ``log.txt-<time>`` (Dassl), and everything
   printed since step 1 goes to ``log.txt`` and the terminal (the full config to ``log.txt``
   only).
5. Train for ``OPTIM.MAX_EPOCH`` epochs, print ``Finish training``, evaluate the last-epoch model
   on the test set (Dassl's ``=> result`` block), print ``Elapsed``.
6. Write ``result.json`` atomically (temporary file + rename) as the very last act, so its
   presence means the run finished. Schema ``sarjepa-result/1``::

    {"format", "dataset", "trainer", "method", "shots", "seed",
     "metrics": {"accuracy", "error", "macro_f1", "total", "correct", "per_class_accuracy"},
     "provenance": {"config", "split_hash", "checkpoint", "checkpoint_sha256", "code_version",
                    "torch_version", "versions": {"sarjepa", "torch", "timm", "numpy",
                    "scikit-learn"}, "device", "amp", "wall_time_s", "started", "finished", ...},
     "predictions": {"file", "split", "image_root", "classnames"}}

   ``predictions.csv`` (one row per evaluated image, see :mod:`benchmark.predictions`) is written
   just before it.
"""

from __future__ import annotations

import datetime
import logging
import sys
import time
import warnings
from pathlib import Path
from typing import Any, TextIO

import torch
from sarjepa.benchmark.core.errors import SarjepaError
from sarjepa.benchmark.core.io import atomic_write_json
from sarjepa.benchmark.core.runtime import resolve_amp, resolve_device, seed_everything
from sarjepa.pretrain.checkpoint_ref import CheckpointRef

RESULT_FORMAT = "sarjepa-result/1"


def device_and_amp(cfg: Any) -> tuple[torch.device, str]:
    """``RUN.DEVICE`` (``auto`` honours Dassl's ``USE_CUDA``) and ``RUN.AMP`` of a config."""
    use_cuda = bool(cfg.get("USE_CUDA", True))
    device = resolve_device(cfg.RUN.DEVICE, "RUN.DEVICE", allow_cuda=use_cuda)
    return device, resolve_amp(cfg.RUN.AMP, device, "RUN.AMP")


def method_label(cfg: Any) -> str:
    """``RUN.METHOD``, else the stem of ``MODEL.INIT_WEIGHTS``, else ``"random"``."""
    if cfg.RUN.METHOD:
        return str(cfg.RUN.METHOD)
    return Path(cfg.MODEL.INIT_WEIGHTS).stem if cfg.MODEL.INIT_WEIGHTS else "random"


class RunLog:
    """Tee of ``sys.stdout`` (and warnings / ``sarjepa`` log records) into a run's ``log.txt``.

    Text printed before :meth:`attach` is buffered and written when the file opens, so a run that
    fails on its input leaves no file behind.
    """

    def __init__(self) -> None:
        self._buffer: list[str] = []
        self._file: TextIO | None = None
        self._stdout: TextIO | None = None

    # file-like interface (installed as sys.stdout)
    def write(self, text: str) -> int:
        assert self._stdout is not None
        self._stdout.write(text)
        if self._file is not None:
            self._file.write(text)
        else:
            self._buffer.append(text)
        return len(text)

    def flush(self) -> None:
        if self._stdout is not None:
            self._stdout.flush()
        if self._file is not None:
            self._file.flush()

    def isatty(self) -> bool:
        return bool(self._stdout is not None and self._stdout.isatty())

    def print(self, msg: str) -> None:
        """Print a line into the tee; through tqdm on a terminal (keeps progress bars intact).

        Off a terminal (a log file, or a grid that silences its cells) the line is written
        directly: ``tqdm.write`` would redraw every live bar, e.g. a grid's, once per line.
        """
        if not self.isatty():
            self.write(f"{msg}\n")
            return
        from tqdm import tqdm

        tqdm.write(str(msg), file=self)

    def to_file(self, msg: str) -> None:
        """Write a line to ``log.txt`` only (buffered until :meth:`attach`), not the terminal."""
        if self._file is not None:
            self._file.write(f"{msg}\n")
        else:
            self._buffer.append(f"{msg}\n")

    def attach(self, path: Path) -> None:
        """Open ``path`` (an existing file is kept as ``<path>-<time>``) and flush the buffer."""
        if path.exists():
            path.rename(path.with_name(path.name + time.strftime("-%Y-%m-%d-%H-%M-%S")))
        self._file = open(path, "w", encoding="utf-8")  # noqa: SIM115 - closed in __exit__
        self._file.write("".join(self._buffer))
        self._buffer.clear()

    def __enter__(self) -> RunLog:
        self._stdout = sys.stdout
        sys.stdout = self  # type: ignore[assignment]
        self._handler = logging.StreamHandler(self)  # type: ignore[arg-type]
        self._handler.setFormatter(logging.Formatter("%(levelname)s: %(message)s"))
        self._logger = logging.getLogger("sarjepa")
        self._logger.addHandler(self._handler)
        self._old_level = self._logger.level
        if self._logger.getEffectiveLevel() > logging.INFO:
            self._logger.setLevel(logging.INFO)
        self._old_showwarning = warnings.showwarning

        def show(message, category, filename, lineno, file=None, line=None):  # noqa: ANN001
            self.print(f"Warning: {message}")

        warnings.showwarning = show
        return self

    def __exit__(self, exc_type, exc, tb) -> None:  # noqa: ANN001
        warnings.showwarning = self._old_showwarning
        self._logger.removeHandler(self._handler)
        self._logger.setLevel(self._old_level)
        if exc is not None and self._file is not None:
            self._file.write(f"Error: {' '.join(str(exc).split()) or type(exc).__name__}\n")
        sys.stdout = self._stdout  # type: ignore[assignment]
        if self._file is not None:
            self._file.close()


def _dataset_name(cfg: Any) -> str:
    from sarjepa.benchmark.datasets import DATASET_REGISTRY

    try:
        return DATASET_REGISTRY.resolve(str(cfg.DATASET.NAME))
    except SarjepaError:
        return str(cfg.DATASET.NAME)


def _write_predictions(out: Path, dataset: Any, evaluated: Any) -> dict[str, Any]:
    """``out/predictions.csv`` of the evaluated items; the ``predictions`` block of the result."""
    from sarjepa.benchmark.predictions import write_predictions

    root = str(getattr(dataset, "dataset_dir", "") or "")
    names = dict(dataset.lab2cname)  # the class of each index (labels may skip an index)
    images = [dataset.relpath(d) if root else str(d.impath) for d in evaluated.items]
    return write_predictions(
        out,
        images,
        evaluated.y_true,
        evaluated.y_pred,
        [str(names.get(i, i)) for i in range(int(dataset.num_classes))],
        evaluated.split,
        root,
    )


def run(cfg: Any, checkpoint: CheckpointRef | None = None) -> dict[str, Any]:
    """Run one cell and return the ``result.json`` dict (see the module docstring).

    ``checkpoint`` is ``MODEL.INIT_WEIGHTS`` as the caller resolved it
    (:func:`~benchmark.backbone.checkpoint_from_cfg`); None resolves it here, before anything is
    written.

    Raises:
        SarjepaError: bad input (nothing written when raised before training starts).
    """
    from sarjepa.benchmark.core.configs import cfg_to_dict, dump_cfg
    from sarjepa.benchmark.core.provenance import code_version, library_versions
    from sarjepa.benchmark.datasets import build_dataset
    from sarjepa.benchmark.trainers import TRAINER_REGISTRY

    started = datetime.datetime.now().astimezone()
    t0 = time.time()
    if not cfg.TRAINER.NAME:
        raise SarjepaError(
            f"TRAINER.NAME is not set (--trainer); known: {', '.join(TRAINER_REGISTRY.names())}"
        )
    trainer_cls = TRAINER_REGISTRY.get(str(cfg.TRAINER.NAME))
    if not cfg.OUTPUT_DIR:
        raise SarjepaError("OUTPUT_DIR is not set (--out)")
    if checkpoint is None:
        from sarjepa.benchmark.backbone import checkpoint_from_cfg

        checkpoint = checkpoint_from_cfg(cfg)
    if bool(cfg.TEST.NO_TEST):
        raise SarjepaError("TEST.NO_TEST True is not supported: a run ends with its test result")
    out = Path(cfg.OUTPUT_DIR)
    if out.exists() and not out.is_dir():
        raise SarjepaError(f"output folder '{out}' exists and is not a folder")
    device, amp = device_and_amp(cfg)
    progress = bool(cfg.RUN.PROGRESS) and sys.stderr.isatty()

    with RunLog() as runlog:
        log = runlog.print
        if int(cfg.SEED) >= 0:
            log(f"Setting fixed seed: {cfg.SEED}")
            seed_everything(int(cfg.SEED))
        # the full config goes to log.txt only: on the terminal it would bury a data error
        runlog.to_file("** Config **")
        runlog.to_file(dump_cfg(cfg).rstrip())
        dataset = build_dataset(cfg)
        log(
            f"Dataset {_dataset_name(cfg)}: {len(dataset.train_x)} train, {len(dataset.val)} "
            f"val, {len(dataset.test)} test, {dataset.num_classes} classes"
        )
        log(f"Device {device}, AMP {amp}")
        trainer = trainer_cls(
            cfg, dataset, device=device, amp=amp, log=log, progress=progress, checkpoint=checkpoint
        )

        out.mkdir(parents=True, exist_ok=True)
        (out / "result.json").unlink(missing_ok=True)
        (out / "predictions.csv").unlink(missing_ok=True)
        runlog.attach(out / "log.txt")
        trainer.train()
        log("Finish training")
        log("Deploy the last-epoch model")
        metrics = trainer.test()
        wall = time.time() - t0
        log(f"Elapsed: {datetime.timedelta(seconds=round(wall))}")
        finished = datetime.datetime.now().astimezone()
        info = getattr(dataset, "split_info", {}) or {}
        split_hash = info.get("split_hash", "")
        if not split_hash and hasattr(dataset, "split_lists"):
            from sarjepa.benchmark.datasets.splits import split_hash as _hash

            split_hash = _hash(dataset.split_lists())
        prov = {
            "config": cfg_to_dict(cfg),
            "split_hash": split_hash,
            **trainer.provenance(),
            "code_version": code_version(),
            "torch_version": torch.__version__,
            "versions": library_versions(),
            "device": str(device),
            "amp": amp,
            "num_train": len(dataset.train_x),
            "num_test": len(dataset.test),
            "num_classes": int(dataset.num_classes),
            "wall_time_s": round(wall, 3),
            "started": started.isoformat(timespec="seconds"),
            "finished": finished.isoformat(timespec="seconds"),
        }
        result = {
            "format": RESULT_FORMAT,
            "dataset": _dataset_name(cfg),
            "trainer": TRAINER_REGISTRY.resolve(str(cfg.TRAINER.NAME)),
            "method": method_label(cfg),
            "shots": int(cfg.DATASET.NUM_SHOTS),
            "seed": int(cfg.SEED),
            "metrics": metrics,
            "provenance": prov,
        }
        if trainer.evaluated is not None:
            result["predictions"] = _write_predictions(out, dataset, trainer.evaluated)
        atomic_write_json(result, out / "result.json")
    return result
