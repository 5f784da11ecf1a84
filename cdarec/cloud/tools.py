"""Cloud side: the cloud's search tools (LangChain tools) over its catalogue and its
collaborative index; their arguments are what the cloud may send, never a history."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Literal

from langchain_core.tools import BaseTool, StructuredTool
from pydantic import BaseModel, Field

from cdarec.cloud.catalogue.store import Catalogue, Hit
from cdarec.contract.request import MAX_REQUEST_CHARS


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

    query: str = Field(
        min_length=1, max_length=MAX_REQUEST_CHARS, description="semantic search text"
    )


class CollabInput(Filters):
    """One collaborative search: the device's user vector (never the history)."""

    k: int = Field(default=20, ge=1, le=500, description="how many items to return")
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


def _search_tool(
    name: str,
    description: str,
    schema: type[Filters],
    target: str,
    search: Callable[..., list[Hit]],
) -> BaseTool:
    """A search tool: the arguments validated by ``schema`` (what the cloud may send),
    ``search(args.<target>, k=..., <filters>)`` run with genre exclusions applied after it,
    catalogue facts and a score returned."""

    def run(**kwargs: Any) -> list[dict[str, Any]]:
        args = schema(**kwargs)
        kw = args.search_kwargs()
        ex = kw.pop("exclude_genres")
        what = getattr(args, target)
        return hits_json(_filtered(lambda **a: search(what, **a), args.k, ex, **kw))

    return StructuredTool.from_function(run, name=name, description=description, args_schema=schema)


def make_retrieval_tool(catalogue: Catalogue) -> BaseTool:
    return _search_tool(
        "search_catalogue",
        "Search the movie catalogue by meaning, with optional genre, year and id filters. "
        "Returns items with their cosine similarity to the query.",
        RetrievalInput,
        "query",
        catalogue.search,
    )


def make_collab_tool(index: Any) -> BaseTool:
    return _search_tool(
        "search_collaborative",
        "Search the structured model's item vectors with a user vector (inner product), "
        "with the same genre, year and id filters as the catalogue search.",
        CollabInput,
        "vector",
        index.search,
    )
