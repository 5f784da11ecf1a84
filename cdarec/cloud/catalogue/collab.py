"""Cloud side: collaborative retrieval, the structured model's item vectors in a second Chroma
collection, searched by a user vector the device computes.

The cloud holds this index (it trained the model) and gets from the device one vector
per turn - never the history. Scores are inner products, the same ``user @ item`` the
device's SASRec scores with, so a hit's score is comparable to the device's. The index
takes the same metadata filters as the text catalogue (genres, years, ids), which is
what it adds over the device's own top-k: "this user's taste, among 1990s comedies".
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from cdarec.cloud.catalogue.filters import FilterPlanner
from cdarec.cloud.catalogue.store import (
    BATCH,
    Hit,
    build_where,
    genre_key,
    hit_from_metadata,
    item_metadata,
    open_client,
)
from cdarec.data import Item


def collab_collection_name(dataset_name: str, model_key: str) -> str:
    slug = re.sub(r"[^A-Za-z0-9._-]+", "-", f"collab-{dataset_name}-{model_key}")
    return slug.strip("-._")[:60]


class CollabIndex:
    def __init__(
        self, chroma_dir: Path, dataset_name: str, model_key: str, url: str | None = None
    ) -> None:
        self.client = open_client(chroma_dir, url)
        self.name = collab_collection_name(dataset_name, model_key)
        self.collection = self.client.get_or_create_collection(
            self.name, metadata={"hnsw:space": "ip"}, embedding_function=None
        )
        self._count: int | None = None
        self.filters = FilterPlanner("ip")  # filtered search on a large catalogue

    def count(self) -> int:
        return int(self.collection.count())

    def size(self) -> int:
        """The item count, asked once (against a server every search paid a round trip
        for it); ``index`` updates it."""
        if self._count is None:
            self._count = self.count()
        return self._count

    def index(self, items: Sequence[Item], vectors: np.ndarray) -> int:
        """Store every item's vector once (the key names the model, so a retrained model
        gets a new collection); returns how many were added."""
        self._count = None
        if self.count() == len(items):
            return 0
        for start in range(0, len(items), BATCH):
            part = items[start : start + BATCH]
            self.write(part, vectors[start : start + len(part)])
        return len(items)

    def write(self, items: Sequence[Item], vectors: np.ndarray) -> None:
        """Upsert ``items`` with their model vectors (``index``'s and the scale bench's
        one write path)."""
        self._count = None
        metadatas = [item_metadata(i) for i in items]
        self.collection.upsert(
            ids=[i.item_id for i in items],
            embeddings=np.asarray(vectors, dtype=np.float32),
            metadatas=metadatas,  # type: ignore[arg-type]
        )
        self.filters.written([i.item_id for i in items], metadatas, vectors)

    def search(
        self,
        vector: Sequence[float],
        k: int,
        *,
        genres: Iterable[str] = (),
        genre_mode: str = "any",
        year_min: int | None = None,
        year_max: int | None = None,
        exclude_ids: Iterable[str] = (),
        only_ids: Iterable[str] = (),
    ) -> list[Hit]:
        exclude_ids, only_ids = list(exclude_ids), list(only_ids)
        planned = self.filters.search(
            self.collection, self.size(), vector, k, [genre_key(g) for g in genres],
            genre_mode, year_min, year_max, exclude_ids, only_ids,
        )  # fmt: skip
        if planned is not None:
            return [hit_from_metadata(meta, sim) for meta, sim in planned]
        where = build_where(genres, year_min, year_max, exclude_ids, only_ids, genre_mode)
        n = min(k, max(self.size(), 1))
        res: Any = self.collection.query(
            query_embeddings=[list(map(float, vector))],
            n_results=n,
            where=where,
            include=["metadatas", "distances"],
        )
        # Chroma's ip distance is 1 - dot: the similarity is the model's own score.
        return [
            hit_from_metadata(meta, 1.0 - float(dist))
            for meta, dist in zip(res["metadatas"][0], res["distances"][0], strict=True)
        ]
