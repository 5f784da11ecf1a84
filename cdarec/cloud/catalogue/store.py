"""Cloud side: the item catalogue in a persistent Chroma collection (the cloud's search space).

Every item is one document ("Title (Year). Genres: A, B.") with metadata (item id,
title, year, genres, one boolean flag per genre so that genre filters are plain Chroma
``where`` clauses, and a content hash). ``index_catalogue`` is idempotent: it upserts
only new or changed items and deletes items that left the data set.
"""

from __future__ import annotations

import hashlib
import logging
import os
import re
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import chromadb
from chromadb.config import Settings as ChromaSettings
from langchain_chroma import Chroma

from cdarec.cloud.catalogue.filters import FilterPlanner
from cdarec.data import Dataset, Item
from cdarec.llm.embeddings import MiniLMEmbeddings
from cdarec.llm.linkstats import STATS, catalogue_key
from cdarec.settings import Settings

log = logging.getLogger(__name__)

BATCH = 256


def collection_name(dataset_name: str, embedder: str) -> str:
    slug = re.sub(r"[^A-Za-z0-9._-]+", "-", f"catalogue-{dataset_name}-{embedder}")
    return slug.strip("-._")[:60]


def genre_key(genre: str) -> str:
    return "g_" + re.sub(r"[^A-Za-z0-9]+", "_", genre)


def item_document(item: Item) -> str:
    genres = ", ".join(item.genres) if item.genres else "unknown"
    return f"{item.label()}. Genres: {genres}."


def item_metadata(item: Item) -> dict[str, Any]:
    meta: dict[str, Any] = {
        "item_id": item.item_id,
        "title": item.title,
        "year": item.year if item.year is not None else -1,
        "genres": "|".join(item.genres),
    }
    for g in item.genres:
        meta[genre_key(g)] = True
    doc = item_document(item)
    meta["hash"] = hashlib.sha1((doc + repr(sorted(meta.items()))).encode("utf-8")).hexdigest()[:16]
    return meta


class CatalogueUnavailableError(RuntimeError):
    """The Chroma server cannot be reached: the message says where and how to start one."""


def open_client(path: Path, url: str | None = None) -> chromadb.ClientAPI:
    """The embedded persistent Chroma under ``path``, or the Chroma server at ``url``
    (``http://host:port``; started with `chroma run --path DIR --port N`)."""
    settings = ChromaSettings(anonymized_telemetry=False, allow_reset=False)
    if url:
        parsed = urlparse(url)
        STATS.register(catalogue_key(url), url, probe_path="/api/v2/heartbeat")
        try:
            return chromadb.HttpClient(
                host=parsed.hostname or "localhost",
                port=parsed.port or (443 if parsed.scheme == "https" else 8000),
                ssl=parsed.scheme == "https",
                settings=settings,
            )
        except Exception as err:  # chromadb raises ValueError / httpx errors on connect
            raise CatalogueUnavailableError(
                f"the Chroma server at {url} cannot be reached ({err}); start one with "
                "`chroma run --path DIR --port N`, or unset CDAREC_CHROMA_URL for the "
                "embedded catalogue"
            ) from err
    path.mkdir(parents=True, exist_ok=True)
    return chromadb.PersistentClient(path=str(path), settings=settings)


@dataclass
class IndexReport:
    added: int
    updated: int
    deleted: int
    unchanged: int

    def __str__(self) -> str:
        return (
            f"{self.added} added, {self.updated} updated, {self.deleted} deleted, "
            f"{self.unchanged} unchanged"
        )


@dataclass(frozen=True)
class Hit:
    item_id: str
    label: str
    genres: tuple[str, ...]
    year: int | None
    similarity: float  # cosine similarity in [-1, 1]


def hit_from_metadata(meta: dict[str, Any], similarity: float) -> Hit:
    """A search hit from an item's stored metadata (both collections store the same)."""
    year = int(meta.get("year", -1))
    title = str(meta.get("title", ""))
    # The label as ``Item.label`` writes it: no doubled year when the title carries one.
    label = title if year < 0 or title.rstrip().endswith(f"({year})") else f"{title} ({year})"
    return Hit(
        item_id=str(meta["item_id"]),
        label=label,
        genres=tuple(g for g in str(meta.get("genres", "")).split("|") if g),
        year=None if year < 0 else year,
        similarity=similarity,
    )


class Catalogue:
    """A data set's catalogue: Chroma collection + embedder, wrapped by langchain-chroma."""

    def __init__(
        self,
        chroma_dir: Path,
        dataset_name: str,
        embedder_name: str,
        embeddings: MiniLMEmbeddings,
        url: str | None = None,
    ) -> None:
        self.embeddings = embeddings
        self.client = open_client(chroma_dir, url)
        self._count: int | None = None
        self.filters = FilterPlanner("cosine")  # filtered search on a large catalogue
        self.name = collection_name(dataset_name, embedder_name)
        self.store = Chroma(
            collection_name=self.name,
            embedding_function=embeddings,
            client=self.client,
            collection_metadata={"hnsw:space": "cosine", "embedder": embedder_name},
        )

    @property
    def collection(self) -> Any:
        return self.store._collection

    def count(self) -> int:
        return int(self.collection.count())

    def size(self) -> int:
        """The item count, asked once (a search against a server would pay a round trip
        for it every time); ``index`` updates it."""
        if self._count is None:
            self._count = self.count()
        return self._count

    def index(
        self, items: Sequence[Item], progress: Callable[[int, int], None] | None = None
    ) -> IndexReport:
        self._count = None
        self.filters.reset()  # items may leave: the facts are read again when needed
        existing: dict[str, str] = {}
        got = self.collection.get(include=["metadatas"])
        for id_, meta in zip(got["ids"], got["metadatas"] or [], strict=False):
            existing[id_] = (meta or {}).get("hash", "")
        todo: list[Item] = []
        added = updated = 0
        wanted = set()
        for it in items:
            wanted.add(it.item_id)
            h = item_metadata(it)["hash"]
            if existing.get(it.item_id) != h:
                todo.append(it)
                if it.item_id in existing:
                    updated += 1
                else:
                    added += 1
        stale = [i for i in existing if i not in wanted]
        total = len(todo)
        done = 0
        if progress:
            progress(0, total)
        for start in range(0, total, BATCH):
            batch = todo[start : start + BATCH]
            self.write(batch, self.embeddings.embed_array([item_document(i) for i in batch]))
            done += len(batch)
            if progress:
                progress(done, total)
        for start in range(0, len(stale), BATCH):
            self.collection.delete(ids=stale[start : start + BATCH])
        return IndexReport(added, updated, len(stale), len(items) - added - updated)

    def write(self, items: Sequence[Item], vectors: Any) -> None:
        """Upsert ``items`` with their text embeddings (one row each): the one write path
        of ``index`` and of ``cdarec bench scale``'s generated catalogues."""
        self._count = None
        metadatas = [item_metadata(i) for i in items]
        self.collection.upsert(
            ids=[i.item_id for i in items],
            documents=[item_document(i) for i in items],
            metadatas=metadatas,  # type: ignore[arg-type]
            embeddings=vectors,
        )
        self.filters.written([i.item_id for i in items], metadatas, vectors)

    def search(
        self,
        query: str | Sequence[float],
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
        where = build_where(genres, year_min, year_max, exclude_ids, only_ids, genre_mode)
        vec = self.embeddings.embed_query(query) if isinstance(query, str) else list(query)
        planned = self.filters.search(
            self.collection, self.size(), vec, k, [genre_key(g) for g in genres],
            genre_mode, year_min, year_max, exclude_ids, only_ids,
        )  # fmt: skip
        if planned is not None:
            return [hit_from_metadata(meta, sim) for meta, sim in planned]
        n = min(k, max(self.size(), 1))
        results = self.store.similarity_search_by_vector_with_relevance_scores(
            vec, k=n, filter=where
        )
        return [hit_from_metadata(doc.metadata, 1.0 - float(distance)) for doc, distance in results]


def build_where(
    genres: Iterable[str],
    year_min: int | None,
    year_max: int | None,
    exclude_ids: Iterable[str],
    only_ids: Iterable[str] = (),
    genre_mode: str = "any",
) -> dict[str, Any] | None:
    """A Chroma ``where`` clause; ``genre_mode`` "all" keeps items with every genre."""
    clauses: list[dict[str, Any]] = []
    gs = [genre_key(g) for g in genres]
    if len(gs) == 1:
        clauses.append({gs[0]: True})
    elif gs and genre_mode == "all":
        clauses.extend({g: True} for g in gs)
    elif gs:
        clauses.append({"$or": [{g: True} for g in gs]})
    if year_min is not None:
        clauses.append({"year": {"$gte": int(year_min)}})
    if year_max is not None:
        clauses.append({"year": {"$lte": int(year_max)}})
    ex = list(exclude_ids)
    if ex:
        clauses.append({"item_id": {"$nin": ex}})
    only = list(only_ids)
    if only:
        clauses.append({"item_id": {"$in": only}})
    if not clauses:
        return None
    return clauses[0] if len(clauses) == 1 else {"$and": clauses}


def open_catalogue(settings: Settings, dataset: Dataset) -> Catalogue:
    """The data set's catalogue. A Chroma folder that cannot be opened (a corrupted
    database) is moved aside and rebuilt: the catalogue is public data derived from the
    data set, so a rebuild loses nothing (the caller indexes what is missing)."""
    emb = MiniLMEmbeddings.from_home(settings.home, settings.embedder, threads=settings.llm_threads)
    if settings.chroma_url:  # a server's storage is the server's: nothing to move aside
        return Catalogue(
            settings.chroma_dir, dataset.name, settings.embedder, emb, settings.chroma_url
        )
    try:
        cat = Catalogue(settings.chroma_dir, dataset.name, settings.embedder, emb)
        cat.count()
        return cat
    except Exception as err:  # chromadb raises its own InternalError, or sqlite's
        aside = settings.chroma_dir.with_name(
            f"{settings.chroma_dir.name}.corrupt-{int(time.time())}"
        )
        log.warning(
            "the Chroma catalogue at %s could not be opened (%s); moved aside to %s and "
            "rebuilt from the data set",
            settings.chroma_dir,
            err,
            aside,
        )
        from chromadb.api.client import SharedSystemClient

        SharedSystemClient.clear_system_cache()  # the failed client is cached by path
        os.replace(settings.chroma_dir, aside)
        return Catalogue(settings.chroma_dir, dataset.name, settings.embedder, emb)
