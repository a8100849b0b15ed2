"""Benchmarks for the registry: run ``make bench`` or ``python -m benchmarks.run --help``."""
