"""sarjepa few-shot benchmark harness (Dassl-compatible) and command-line interface."""

# The folder imported under its bare name (e.g. ``import benchmark`` from the repository root).
if __name__ != "sarjepa.benchmark":
    raise ImportError(f"import sarjepa.benchmark, not {__name__} (one namespace: sarjepa)")

from sarjepa import __version__  # noqa: E402, F401  (re-exported)
