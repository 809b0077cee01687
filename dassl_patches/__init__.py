"""Single-channel SAR image I/O and transforms (the authors patched Dassl for these)."""
