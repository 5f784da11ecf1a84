"""Device side: a small index of the catalogue items the cloud retrieved for this user lately,
searched on the device when retrieval is placed there (a slow or unreachable cloud).

It holds public catalogue items only (what the cloud's own retrieval returned), kept per
user, at most ``LIMIT`` of them, newest last; with a ``folder`` (the device's own, 0700)
each user's list is also kept on disk, one JSON file of catalogue ids (0600, written whole
and renamed into place), so that a device that restarts with the cloud unreachable still
has it. A file that cannot be read starts the list empty: it is a cache of public data,
nothing is lost. The vectors come from the device's own copy of the catalogue embedder,
computed on the first search that needs them and kept for the process. A new device with
the cloud unreachable has an empty index: the sequence model's proposals answer alone.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import threading
from collections import OrderedDict
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path

import numpy as np

from cdarec.settings import slug

log = logging.getLogger(__name__)

LIMIT = 2000


def item_text(label: str, genres: Sequence[str]) -> str:
    """How an item reads to the embedder (the catalogue's document, ``item_document``)."""
    return f"{label}. Genres: {', '.join(genres) or 'unknown'}."


class RecentIndex:
    def __init__(
        self,
        embed: Callable[[list[str]], np.ndarray],
        limit: int = LIMIT,
        *,
        folder: Path | None = None,
        ids: Sequence[str] = (),
    ) -> None:
        """``folder`` and ``ids`` (the catalogue's item ids by index): keep each user's
        list on disk there."""
        self._embed = embed
        self.limit = limit
        self.folder = folder
        self._ids = list(ids)
        self._index = {item: i for i, item in enumerate(self._ids)}
        self._items: dict[str, OrderedDict[int, None]] = {}
        self._vectors: dict[int, np.ndarray] = {}
        self._lock = threading.Lock()

    def _path(self, user: str) -> Path | None:
        return self.folder / f"{slug(user)}.json" if self.folder is not None else None

    def _seen(self, user: str) -> OrderedDict[int, None]:
        """The user's list (read from disk on first use); call with the lock held."""
        if user in self._items:
            return self._items[user]
        seen: OrderedDict[int, None] = OrderedDict()
        path = self._path(user)
        if path is not None and path.exists():
            try:
                for item in json.loads(path.read_text()):
                    if isinstance(item, str) and item in self._index:
                        seen[self._index[item]] = None
            except (OSError, ValueError) as err:
                log.warning("device index %s unreadable (%s): starting it empty", path, err)
        self._items[user] = seen
        return seen

    def _save(self, user: str, seen: OrderedDict[int, None]) -> None:
        path = self._path(user)
        if path is None:
            return
        tmp = path.with_suffix(f".{os.getpid()}.tmp")
        try:
            path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            with os.fdopen(fd, "w") as f:
                json.dump([self._ids[i] for i in seen], f)
            os.replace(tmp, path)
        except OSError as err:  # a cache: the turn goes on without it
            log.warning("device index %s not saved (%s)", path, err)
            with contextlib.suppress(OSError):
                tmp.unlink()

    def add(self, user: str, indices: Iterable[int]) -> None:
        with self._lock:
            seen = self._seen(user)
            before = list(seen)
            for i in indices:
                seen.pop(int(i), None)
                seen[int(i)] = None
            while len(seen) > self.limit:
                seen.popitem(last=False)
            if list(seen) != before:
                self._save(user, seen)

    def items(self, user: str) -> list[int]:
        with self._lock:
            return list(self._seen(user))

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
