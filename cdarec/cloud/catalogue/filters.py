"""Cloud side: filtered search that stays fast on a large catalogue.

Chroma applies a ``where`` clause by scanning its metadata (SQLite) before the vector
search, so a filtered search costs time in proportion to the catalogue: measured here
(`cdarec bench scale`, 2 cores) 45-100 ms at 20k items for any clause (one genre flag, a
year range, 20 excluded ids), against 4 ms without one. For a catalogue of
``INDEX_MIN`` items or more, this keeps the items' filterable facts in memory (a genre
bit mask and a year per item, its id and its vector) and plans each filtered search the
way filtered vector engines do:

- few items pass (``BRUTE_MAX`` or fewer): their vectors, kept in memory beside the facts
  (384 floats an item: 1.5 GB at 1M items, the cloud's memory), are ranked exactly (an
  exact top k, better than the graph search) and only the top k's metadata is fetched;
- many pass: the graph search is asked for more hits than k, ids only (cheap), the ones
  that pass are kept, and only their metadata is fetched;
- too few of those pass, or the clause cannot be expressed here: Chroma's own ``where``.

Every path returns what Chroma's ``where`` would (the same filter semantics, checked by
``tests/unit/test_catalogue_filters.py`` against it). Below ``INDEX_MIN`` items Chroma's
own filter is already fast and is used as it is. Written by hand because Chroma has no
query planner for filters; what it does is no more than a mask and a dot product.
"""

from __future__ import annotations

import math
import threading
from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np

INDEX_MIN = 5_000  # catalogues this large use the in-memory facts (ML-1M has 3,883)
BRUTE_MAX = 50_000  # at most this many passing items: rank them exactly, in memory
OVERFETCH = 3.0  # ask the graph search for this many times the expected hits
OVERFETCH_MAX = 3_000  # and never more than this many
PAGE = 5_000


class FilterIndex:
    """The catalogue's filterable facts, one row per item, in memory."""

    def __init__(self) -> None:
        self.ids: list[str] = []
        self.pos: dict[str, int] = {}
        self.bits = np.zeros(0, dtype=np.uint64)
        self.year = np.zeros(0, dtype=np.int32)
        self.vectors: np.ndarray | None = None  # (n, dim) float32, row i = ids[i]
        self.inv_norm = np.zeros(0, dtype=np.float32)  # 1 / |vectors[i]|, for cosine
        self.genre_bit: dict[str, int] = {}  # metadata genre key (g_Comedy) -> bit
        self.overflow = False  # more than 64 genres: the masks cannot say them all

    def __len__(self) -> int:
        return len(self.ids)

    @classmethod
    def load(cls, collection: Any) -> FilterIndex:
        """Read every item's facts from the collection, a page at a time."""
        idx = cls()
        ids: list[str] = []
        metas: list[dict[str, Any] | None] = []
        vecs: list[Any] = []
        while True:  # pages gathered, then added once (one copy of the vectors, not one a page)
            got = collection.get(include=["metadatas", "embeddings"], limit=PAGE, offset=len(ids))
            if not got["ids"]:
                break
            ids.extend(got["ids"])
            metas.extend(got["metadatas"] or [{}] * len(got["ids"]))
            vecs.append(np.asarray(got["embeddings"], dtype=np.float32))
        if ids:
            idx.add_rows(ids, metas, np.concatenate(vecs))
        return idx

    def _bit(self, key: str) -> int | None:
        if key not in self.genre_bit:
            if len(self.genre_bit) >= 64:
                self.overflow = True
                return None
            self.genre_bit[key] = len(self.genre_bit)
        return self.genre_bit[key]

    def add_rows(
        self, ids: Sequence[str], metadatas: Sequence[dict[str, Any] | None], vectors: Any
    ) -> None:
        """Add or update items from their stored metadata (what ``item_metadata`` writes)
        and vectors."""
        vecs = np.asarray(vectors, dtype=np.float32).reshape(len(ids), -1)
        inv = (1.0 / (np.linalg.norm(vecs, axis=1) + 1e-12)).astype(np.float32)
        if self.vectors is None:
            self.vectors = np.zeros((0, vecs.shape[1]), dtype=np.float32)
        new_bits = np.zeros(len(ids), dtype=np.uint64)
        new_year = np.full(len(ids), -1, dtype=np.int32)
        for j, meta in enumerate(metadatas):
            meta = meta or {}
            b = 0
            for key, value in meta.items():
                if key.startswith("g_") and value is True:
                    bit = self._bit(key)
                    if bit is not None:
                        b |= 1 << bit
            new_bits[j] = b
            new_year[j] = int(meta.get("year", -1))
        fresh = []
        for j, id_ in enumerate(ids):
            at = self.pos.get(id_)
            if at is None:
                self.pos[id_] = len(self.ids) + len(fresh)
                fresh.append(j)
            else:
                self.bits[at], self.year[at] = new_bits[j], new_year[j]
                self.vectors[at] = vecs[j]
                self.inv_norm[at] = inv[j]
        if fresh:
            self.ids.extend(ids[j] for j in fresh)
            self.bits = np.concatenate([self.bits, new_bits[fresh]])
            self.year = np.concatenate([self.year, new_year[fresh]])
            self.vectors = np.concatenate([self.vectors, vecs[fresh]])
            self.inv_norm = np.concatenate([self.inv_norm, inv[fresh]])

    def mask(
        self,
        genre_keys: Sequence[str],
        genre_mode: str,
        year_min: int | None,
        year_max: int | None,
        exclude_ids: Iterable[str],
        only_ids: Iterable[str],
    ) -> np.ndarray | None:
        """Which items pass, exactly as ``build_where``'s clause says; None: this index
        cannot say it (more than 64 genres), use Chroma's own filter."""
        if self.overflow:
            return None
        ok = np.ones(len(self.ids), dtype=bool)
        if genre_keys:
            want = 0
            for key in genre_keys:
                if key not in self.genre_bit:  # a genre no item has
                    if genre_mode == "all" or len(genre_keys) == 1:
                        return np.zeros(len(self.ids), dtype=bool)
                    continue
                want |= 1 << self.genre_bit[key]
            w = np.uint64(want)
            if genre_mode == "all" and len(genre_keys) > 1:
                ok &= (self.bits & w) == w
            else:
                ok &= (self.bits & w) != 0
        if year_min is not None:
            ok &= self.year >= int(year_min)
        if year_max is not None:
            ok &= self.year <= int(year_max)
        for id_ in exclude_ids:
            at = self.pos.get(id_)
            if at is not None:
                ok[at] = False
        only = list(only_ids)
        if only:  # as ``$in``: only these (unknown ids match nothing)
            keep = np.zeros(len(self.ids), dtype=bool)
            keep[[self.pos[i] for i in only if i in self.pos]] = True
            ok &= keep
        return ok


GATHER = 4_096  # rows copied at a time for the exact ranking


def _gathered_dot(vectors: np.ndarray, rows: np.ndarray, q: np.ndarray) -> np.ndarray:
    """``vectors[rows] @ q`` through one reused buffer of ``GATHER`` rows: at 50,000 rows
    the plain expression allocates and faults in a 77 MB copy first (measured here at 1M
    items: 40 -> 32 ms, with the norms kept and a partial sort)."""
    out = np.empty(len(rows), dtype=np.float32)
    buf = np.empty((min(GATHER, len(rows)), vectors.shape[1]), dtype=np.float32)
    for a in range(0, len(rows), GATHER):
        part = rows[a : a + GATHER]
        b = buf[: len(part)]
        np.take(vectors, part, axis=0, out=b)
        np.dot(b, q, out=out[a : a + len(part)])
    return out


def planned_search(
    collection: Any,
    index: FilterIndex,
    vector: Sequence[float],
    k: int,
    passing: np.ndarray,
    space: str,
) -> list[tuple[dict[str, Any], float]] | None:
    """The top ``k`` passing items as (metadata, similarity), best first; None: leave it
    to Chroma's ``where`` (too few passing hits in the over-fetched graph search)."""
    m = int(passing.sum())
    if m == 0:
        return []
    q = np.asarray(vector, dtype=np.float32)
    if m <= BRUTE_MAX and index.vectors is not None:
        rows = np.flatnonzero(passing)
        sims = _gathered_dot(index.vectors, rows, q)
        if space == "cosine":
            sims *= index.inv_norm[rows] / (np.linalg.norm(q) or 1.0)
        top = np.argpartition(-sims, k - 1)[:k] if m > k else np.arange(m)
        order = top[np.argsort(-sims[top], kind="stable")]
        keep = [(index.ids[rows[i]], float(sims[i])) for i in order]
        got = collection.get(ids=[i for i, _ in keep], include=["metadatas"])
        meta_of = dict(zip(got["ids"], got["metadatas"] or [], strict=True))
        return [(meta_of.get(i) or {}, s) for i, s in keep]
    n = min(OVERFETCH_MAX, len(index), math.ceil(k * len(index) / m * OVERFETCH))
    res = collection.query(query_embeddings=[q.tolist()], n_results=n, include=["distances"])
    keep = [
        (id_, 1.0 - float(d))
        for id_, d in zip(res["ids"][0], res["distances"][0], strict=True)
        if id_ in index.pos and passing[index.pos[id_]]
    ][:k]
    if len(keep) < min(k, m) and n < len(index):
        return None
    got = collection.get(ids=[i for i, _ in keep], include=["metadatas"])
    meta_of = dict(zip(got["ids"], got["metadatas"] or [], strict=True))
    return [(meta_of.get(i) or {}, s) for i, s in keep]


class FilterPlanner:
    """One collection's planned filtered search: its ``FilterIndex`` read on the first
    filtered search of a large catalogue and kept in step with every write."""

    def __init__(self, space: str) -> None:
        self.space = space
        self.index: FilterIndex | None = None
        self._lock = threading.Lock()  # one load, whoever asks first (warm-up or a search)

    def reset(self) -> None:
        self.index = None

    def prepare(self, collection: Any, size: int) -> FilterIndex | None:
        """Read the facts now if this catalogue is large enough to use them (the cloud's
        warm-up does, so that a first filtered search does not wait: ~33 s at 100k
        items here)."""
        if size < INDEX_MIN:
            return None
        with self._lock:
            if self.index is None:
                self.index = FilterIndex.load(collection)
            return self.index

    def written(
        self, ids: Sequence[str], metadatas: Sequence[dict[str, Any]], vectors: Any
    ) -> None:
        if self.index is not None:
            self.index.add_rows(ids, metadatas, vectors)

    def search(
        self,
        collection: Any,
        size: int,
        vector: Sequence[float],
        k: int,
        genre_keys: Sequence[str],
        genre_mode: str,
        year_min: int | None,
        year_max: int | None,
        exclude_ids: Iterable[str],
        only_ids: Iterable[str],
    ) -> list[tuple[dict[str, Any], float]] | None:
        """The planned search's hits, or None: Chroma's own ``where`` answers (a small
        catalogue, no filter, or a plan that found too few)."""
        exclude_ids, only_ids = list(exclude_ids), list(only_ids)
        filtered = genre_keys or year_min is not None or year_max is not None
        if size < INDEX_MIN or not (filtered or exclude_ids or only_ids):
            return None
        index = self.prepare(collection, size)
        assert index is not None
        passing = index.mask(genre_keys, genre_mode, year_min, year_max, exclude_ids, only_ids)
        if passing is None:
            return None
        return planned_search(collection, index, vector, k, passing, self.space)
