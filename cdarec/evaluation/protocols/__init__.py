"""Evaluation: the accuracy protocols — A (sampled, LLMRank), B (full ranking, RecBole), R
(requests)."""
