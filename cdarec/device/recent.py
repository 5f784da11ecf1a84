"""Device side: a small index of the catalogue items the cloud retrieved for this user lately,
searched on the device when retrieval is placed there (a slow or unreachable cloud).

It holds public catalogue items only (what the cloud's own retrieval returned), kept per
user, at most ``LIMIT`` of them, newest last, in this process's memory; their vectors come
from the device's own copy of the catalogue embedder, computed on the first search that
needs them and kept for the process. A device that starts with the cloud unreachable has
an empty index: the sequence model's proposals then answer alone.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable, Iterable, Sequence

import numpy as np

LIMIT = 2000


def item_text(label: str, genres: Sequence[str]) -> str:
    """How an item reads to the embedder (the catalogue's document, ``item_document``)."""
    return f"{label}. Genres: {', '.join(genres) or 'unknown'}."


class RecentIndex:
    def __init__(self, embed: Callable[[list[str]], np.ndarray], limit: int = LIMIT) -> None:
        self._embed = embed
        self.limit = limit
        self._items: dict[str, OrderedDict[int, None]] = {}
        self._vectors: dict[int, np.ndarray] = {}
        self._lock = threading.Lock()

    def add(self, user: str, indices: Iterable[int]) -> None:
        with self._lock:
            seen = self._items.setdefault(user, OrderedDict())
            for i in indices:
                seen.pop(int(i), None)
                seen[int(i)] = None
            while len(seen) > self.limit:
                seen.popitem(last=False)

    def items(self, user: str) -> list[int]:
        with self._lock:
            return list(self._items.get(user, ()))

    def search(
        self,
        user: str,
        queries: Sequence[str],
        allowed: np.ndarray,
        text: Callable[[int], str],
        k: int,
    ) -> list[tuple[int, float]]:
        """The ``k`` best items of the user's index for any of ``queries`` (cosine), among
        the ``allowed`` catalogue indices; (index, similarity), best first."""
        pool = [i for i in self.items(user) if allowed[i]]
        queries = [q for q in queries if q.strip()]
        if not pool or not queries:
            return []
        missing = [i for i in pool if i not in self._vectors]
        if missing:
            vecs = self._embed([text(i) for i in missing])
            with self._lock:
                self._vectors.update(zip(missing, vecs, strict=True))
        docs = np.stack([self._vectors[i] for i in pool])
        sims = (docs @ self._embed(list(queries)).T).max(axis=1)
        order = np.argsort(-sims)[:k]
        return [(pool[j], float(sims[j])) for j in order]
