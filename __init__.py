"""sarjepa: self-supervised pretraining (SAR-JEPA and baselines) and few-shot SAR ATR benchmarks.

The distribution installs one import namespace. The repository's top-level folders are its
subpackages (``setup.cfg`` maps them): ``benchmark/`` is :mod:`sarjepa.benchmark` (the harness
and the command line), ``pretrain/`` is :mod:`sarjepa.pretrain` (models, targets, masking, methods,
the training engine), ``dassl_patches/`` is :mod:`sarjepa.dassl_patches` (single-channel SAR I/O
for a real Dassl). ``python -m sarjepa`` runs the ``sarjepa`` command.
"""

__version__ = "0.1.0"
