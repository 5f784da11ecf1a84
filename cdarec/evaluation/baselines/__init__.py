"""Baselines the benchmarks compare cdarec with (never used by the product)."""
