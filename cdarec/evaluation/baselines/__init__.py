"""Evaluation: baselines the benchmarks compare cdarec with (never used by the product)."""
