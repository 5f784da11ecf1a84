"""The cloud's retrieval tool: a LangChain tool over the Chroma catalogue."""

from __future__ import annotations

from typing import Any, Literal

from langchain_core.tools import BaseTool, StructuredTool
from pydantic import BaseModel, Field

from cdarec.cloud.catalogue.store import Catalogue, Hit


class Filters(BaseModel):
    """Catalogue filters shared by both searches (public catalogue facts only)."""

    k: int = Field(default=30, ge=1, le=500, description="how many items to return")
    genres: list[str] = Field(default_factory=list, description="genres to keep")
    genre_mode: Literal["any", "all"] = Field(
        default="any", description="keep items with any of ``genres``, or with all of them"
    )
    exclude_genres: list[str] = Field(default_factory=list, description="genres never returned")
    year_min: int | None = Field(default=None, description="earliest release year")
    year_max: int | None = Field(default=None, description="latest release year")
    exclude_ids: list[str] = Field(
        default_factory=list, max_length=500, description="catalogue ids not to return"
    )
    only_ids: list[str] = Field(
        default_factory=list, max_length=500, description="if given, search only these ids"
    )

    def search_kwargs(self) -> dict[str, Any]:
        return self.model_dump(exclude={"query", "vector", "k"})


class RetrievalInput(Filters):
    """Arguments of one catalogue search (what the cloud sends; never a history)."""

    query: str = Field(min_length=1, max_length=500, description="semantic search text")


class CollabInput(Filters):
    """One collaborative search: the device's user vector (never the history)."""

    vector: list[float] = Field(min_length=1, max_length=1024, description="user vector")


def hits_json(hits: list[Hit]) -> list[dict[str, Any]]:
    """What both search tools return to the cloud: catalogue facts and a score."""
    return [
        {
            "item_id": h.item_id,
            "label": h.label,
            "genres": list(h.genres),
            "year": h.year,
            "similarity": round(h.similarity, 4),
        }
        for h in hits
    ]


def _filtered(search: Any, k: int, exclude_genres: list[str], **kwargs: Any) -> list[Hit]:
    """``search`` with genre exclusions applied after the vector search (Chroma's ``$ne``
    does not match items that lack the flag): over-fetches, then drops and cuts to k."""
    if not exclude_genres:
        return list(search(k=k, **kwargs))
    banned = set(exclude_genres)
    hits = search(k=min(500, 2 * k + 20), **kwargs)
    return [h for h in hits if not banned & set(h.genres)][:k]


def make_retrieval_tool(catalogue: Catalogue) -> BaseTool:
    def search_catalogue(query: str, k: int = 30, **filters: Any) -> list[dict[str, Any]]:
        args = RetrievalInput(query=query, k=k, **filters)
        kw = args.search_kwargs()
        ex = kw.pop("exclude_genres")
        return hits_json(_filtered(lambda **a: catalogue.search(query, **a), k, ex, **kw))

    return StructuredTool.from_function(
        search_catalogue,
        name="search_catalogue",
        description="Search the movie catalogue by meaning, with optional genre, year and "
        "id filters. Returns items with their cosine similarity to the query.",
        args_schema=RetrievalInput,
    )


def make_collab_tool(index: Any) -> BaseTool:
    def search_collaborative(
        vector: list[float], k: int = 20, **filters: Any
    ) -> list[dict[str, Any]]:
        args = CollabInput(vector=vector, k=k, **filters)
        kw = args.search_kwargs()
        ex = kw.pop("exclude_genres")
        return hits_json(_filtered(lambda **a: index.search(vector, **a), k, ex, **kw))

    return StructuredTool.from_function(
        search_collaborative,
        name="search_collaborative",
        description="Search the structured model's item vectors with a user vector (inner "
        "product), with the same genre, year and id filters as the catalogue search.",
        args_schema=CollabInput,
    )
