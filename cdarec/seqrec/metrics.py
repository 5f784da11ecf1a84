"""Shared: ranking metrics and Protocol A's candidates (the training's validation and every
protocol).

For each user: candidates = the test item + ``n_neg`` items drawn uniformly without
replacement from the whole item set except the test item (items the user has already
seen are *not* excluded), shuffled so that the label's position is random. A model is
scored by the 0-based rank of the label among the candidates, with ties broken
pessimistically (the label goes below every candidate with an equal score), and
NDCG@k = 1 / log2(rank + 2) if rank < k else 0.

Everything here is small, pure NumPy; the draws depend only on ``seed`` and the user id,
so a user's candidates do not change with which other users are evaluated.
"""

from __future__ import annotations

import zlib
from collections.abc import Iterable, Mapping

import numpy as np


def _user_rng(seed: int, user: str) -> np.random.Generator:
    return np.random.default_rng([int(seed), zlib.crc32(user.encode("utf-8"))])


def sample_candidates(
    targets: Mapping[str, int | None],
    n_items: int,
    users: Iterable[str] | None = None,
    *,
    n_neg: int = 19,
    seed: int = 0,
) -> dict[str, np.ndarray]:
    """``{user: int64[n_neg + 1]}``: each user's target (e.g. ``split.test[user]``) plus
    ``n_neg`` distinct uniform negatives, shuffled. Users whose target is None are
    skipped; ``users`` defaults to every user in ``targets``."""
    if n_neg < 0 or n_neg > n_items - 1:
        raise ValueError(f"n_neg must be in 0..{n_items - 1}, got {n_neg}")
    out: dict[str, np.ndarray] = {}
    for user in targets if users is None else users:
        label = targets[user]
        if label is None:
            continue
        label = int(label)
        if not 0 <= label < n_items:
            raise ValueError(f"user {user!r}: target {label} outside 0..{n_items - 1}")
        rng = _user_rng(seed, user)
        neg = rng.choice(n_items - 1, size=n_neg, replace=False)
        neg += neg >= label  # skip the label: uniform over the other n_items - 1 items
        cands = np.concatenate([[label], neg]).astype(np.int64)
        rng.shuffle(cands)
        out[user] = cands
    return out


def label_ranks(cand_scores: np.ndarray, label_pos: np.ndarray) -> np.ndarray:
    """0-based rank of each row's label among its candidates' scores (B, C); a tie
    counts against the label; a NaN label score ranks last."""
    s = np.asarray(cand_scores, dtype=np.float64)
    if s.ndim != 2:
        raise ValueError("cand_scores must be (users, candidates)")
    pos = np.asarray(label_pos, dtype=np.int64)
    lab = s[np.arange(s.shape[0]), pos][:, None]
    ge = (s >= lab) | np.isnan(lab)
    return ge.sum(axis=1) - 1


def ndcg_at(rank: np.ndarray, ks: Iterable[int] = (1, 5, 10, 20)) -> dict[int, float]:
    """Mean NDCG@k over users for 0-based label ranks (one relevant item)."""
    r = np.asarray(rank, dtype=np.float64)
    if r.size == 0:
        return {int(k): float("nan") for k in ks}
    gain = 1.0 / np.log2(r + 2.0)
    return {int(k): float(np.where(r < k, gain, 0.0).mean()) for k in ks}


def hit_at(rank: np.ndarray, ks: Iterable[int] = (1, 5, 10, 20)) -> dict[int, float]:
    """Mean HR@k (label ranked in the top k) over users."""
    r = np.asarray(rank)
    if r.size == 0:
        return {int(k): float("nan") for k in ks}
    return {int(k): float((r < k).mean()) for k in ks}


def demote_seen(scores: np.ndarray, history: np.ndarray) -> np.ndarray:
    """Move the scores of items in ``history`` below every other item, in place,
    keeping their relative order; returns ``scores``."""
    h = np.unique(np.asarray(history, dtype=np.int64))
    if h.size == 0 or scores.size == 0:
        return scores
    finite = scores[np.isfinite(scores)]
    if finite.size == 0:
        return scores
    span = float(finite.max() - finite.min()) + 1.0
    scores[h] -= scores.dtype.type(span)
    return scores
