"""sarjepa few-shot benchmark harness (Dassl-compatible) and command-line interface."""

__version__ = "0.1.0"
