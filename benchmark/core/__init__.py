"""The shared base of the project: the only part of ``benchmark`` that ``pretrain`` and
``dassl_patches`` import.

errors (one-line user errors), registry (name -> object), io (the one atomic write), images (the
one grey-decoding policy and image-extension list), runtime (device, AMP, seeding, DataLoader
iteration), provenance (code version, file hashes, data fingerprints), configs (yacs helpers).
"""
