"""Synthetic SAR chips in the real datasets' folder layouts (``sarjepa synth``).

physics (scatterers, projection, PSF, shadow, clutter, speckle, 8-bit mapping), scenes (target
geometry: vehicles, ships, aircraft, scenes), chips (one chip of a class), layout (the folder
trees, counts and the writer).
"""
