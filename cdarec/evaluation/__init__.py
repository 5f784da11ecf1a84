"""Evaluation: protocols (A, B, R), one harness, reports, benchmarks and baselines; it plays the
researcher and may read both sides."""
