"""Slurm batch-script templates (``*.sh.j2``) and built-in cluster profiles, shipped in the wheel.

Rendered by :mod:`cryoglean.slurm`; this package holds data only.
"""
