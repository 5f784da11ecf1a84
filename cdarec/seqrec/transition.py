"""Shared: the transition model and the structured scorer's interface, run on the device.

``SequenceScorer`` is the interface the graph uses; the trained neural model of a
later issue drops in behind it. ``TransitionModel`` is the foundation's scorer: an
item-to-item transition matrix learned from the training split (each item votes for the
items that followed it within a short window, nearer followers weigh more), applied to
the user's recent history with recency decay and backed off to popularity. It is small
enough to ship to a device (a sparse matrix) and runs in milliseconds with NumPy.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Protocol

import numpy as np
import scipy.sparse as sp


class SequenceScorer(Protocol):
    name: str
    n_items: int

    def scores(self, history: np.ndarray) -> np.ndarray:
        """A score per catalogue item (higher = more likely next) for a history of item
        indices, oldest first."""
        ...


class TransitionModel:
    name = "transition"

    def __init__(
        self,
        trans: sp.csr_matrix,
        popularity: np.ndarray,
        *,
        decay: float = 0.7,
        history_len: int = 50,
        pop_weight: float = 0.05,
    ) -> None:
        self.trans = trans.tocsr()
        self.n_items = int(trans.shape[0])
        pop = popularity.astype(np.float64)
        self.pop = pop / pop.max() if pop.max() > 0 else pop
        self.decay = decay
        self.history_len = history_len
        self.pop_weight = pop_weight

    @classmethod
    def fit(
        cls,
        train: Mapping[str, np.ndarray],
        n_items: int,
        *,
        window: int = 3,
        smoothing: float = 5.0,
        **kwargs: float,
    ) -> TransitionModel:
        rows: list[np.ndarray] = []
        cols: list[np.ndarray] = []
        vals: list[np.ndarray] = []
        popularity = np.zeros(n_items, dtype=np.float64)
        for seq in train.values():
            seq = np.asarray(seq, dtype=np.int64)
            if seq.size:
                np.add.at(popularity, seq, 1.0)
            for gap in range(1, window + 1):
                if seq.size <= gap:
                    break
                rows.append(seq[:-gap])
                cols.append(seq[gap:])
                vals.append(np.full(seq.size - gap, 1.0 / gap))
        if rows:
            counts = sp.coo_matrix(
                (np.concatenate(vals), (np.concatenate(rows), np.concatenate(cols))),
                shape=(n_items, n_items),
            ).tocsr()
        else:
            counts = sp.csr_matrix((n_items, n_items))
        counts.setdiag(0)
        counts.eliminate_zeros()
        # Row-normalise with additive smoothing: rare items' transitions count for less.
        row_sum = np.asarray(counts.sum(axis=1)).ravel()
        denom = row_sum + smoothing
        inv = sp.diags(np.divide(1.0, denom, out=np.zeros_like(denom), where=denom > 0))
        return cls((inv @ counts).astype(np.float32).tocsr(), popularity, **kwargs)

    def scores(self, history: np.ndarray) -> np.ndarray:
        h = np.asarray(history, dtype=np.int64)[-self.history_len :]
        out = self.pop_weight * self.pop
        if h.size == 0:
            return out
        weights = self.decay ** np.arange(h.size - 1, -1, -1, dtype=np.float64)
        agg = sp.csr_matrix(
            (weights, (np.zeros(h.size, dtype=np.int64), h)), shape=(1, self.n_items)
        )
        return out + np.asarray((agg @ self.trans).todense()).ravel()

    # -- persistence: the artefact that is shipped to the device -------------------------
    def save(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(path.name + ".tmp.npz")
        np.savez_compressed(
            tmp,
            data=self.trans.data,
            indices=self.trans.indices,
            indptr=self.trans.indptr,
            shape=np.array(self.trans.shape),
            pop=self.pop,
            params=np.array([self.decay, self.history_len, self.pop_weight]),
        )
        tmp.replace(path)

    @classmethod
    def load(cls, path: Path) -> TransitionModel:
        with np.load(path) as z:
            trans = sp.csr_matrix((z["data"], z["indices"], z["indptr"]), shape=tuple(z["shape"]))
            decay, hist_len, pop_w = z["params"].tolist()
            return cls(trans, z["pop"], decay=decay, history_len=int(hist_len), pop_weight=pop_w)


class PopularityModel:
    """The baseline the structured model must beat."""

    name = "popularity"

    def __init__(self, popularity: np.ndarray) -> None:
        self.n_items = int(popularity.size)
        self.pop = popularity.astype(np.float64)

    def scores(self, history: np.ndarray) -> np.ndarray:
        return self.pop.copy()


def top_k(scores: np.ndarray, k: int, exclude: np.ndarray | None = None) -> np.ndarray:
    s = scores.astype(np.float64, copy=True)
    if exclude is not None and exclude.size:
        s[exclude] = -np.inf
    k = min(k, int(np.isfinite(s).sum()))
    if k <= 0:
        return np.zeros(0, dtype=np.int64)
    idx = np.argpartition(-s, k - 1)[:k]
    return idx[np.argsort(-s[idx], kind="stable")]
