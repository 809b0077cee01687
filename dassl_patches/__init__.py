"""Single-channel SAR image I/O and transforms (the authors patched Dassl for these).

Imports only ``benchmark.core`` from the harness; the bridge that registers the harness's readers
in a real Dassl reads the benchmark's config schema, so it lives in ``benchmark.dassl_bridge``.
"""

# The folder imported under its bare name (e.g. ``import dassl_patches`` from the repository root).
if __name__ != "sarjepa.dassl_patches":
    raise ImportError(f"import sarjepa.dassl_patches, not {__name__} (one namespace: sarjepa)")
