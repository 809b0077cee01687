"""Single-channel SAR image I/O and transforms (the authors patched Dassl for these).

Imports only ``benchmark.core`` from the harness; the bridge that registers the harness's readers
in a real Dassl reads the benchmark's config schema, so it lives in ``benchmark.dassl_bridge``.
"""
