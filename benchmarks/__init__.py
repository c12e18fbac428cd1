"""Benchmarks of sspcab-inspect: service load, per-stage cost floor, peers, detection quality.

Scripts, run from the repository root as modules (``python -m benchmarks.serve_load``); see
``benchmarks/README.md``. Nothing here is imported by ``models``, ``training`` or ``app``.
"""
