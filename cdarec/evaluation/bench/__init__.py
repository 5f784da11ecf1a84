"""Evaluation: the speed benchmarks (`cdarec bench latency|turns|web`)."""
