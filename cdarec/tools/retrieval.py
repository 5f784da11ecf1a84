"""The cloud's retrieval tool: a LangChain tool over the Chroma catalogue."""

from __future__ import annotations

from typing import Any

from langchain_core.tools import BaseTool, StructuredTool
from pydantic import BaseModel, Field

from cdarec.catalogue.store import Catalogue, Hit


class RetrievalInput(BaseModel):
    """Arguments of one catalogue search (what the cloud sends; never a history)."""

    query: str = Field(min_length=1, max_length=500, description="semantic search text")
    k: int = Field(default=30, ge=1, le=500, description="how many items to return")
    genres: list[str] = Field(default_factory=list, description="keep items with any of these")
    year_min: int | None = Field(default=None, description="earliest release year")
    year_max: int | None = Field(default=None, description="latest release year")
    exclude_ids: list[str] = Field(
        default_factory=list, max_length=500, description="catalogue ids not to return"
    )
    only_ids: list[str] = Field(
        default_factory=list, max_length=500, description="if given, search only these ids"
    )


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


def make_retrieval_tool(catalogue: Catalogue) -> BaseTool:
    def search_catalogue(
        query: str,
        k: int = 30,
        genres: list[str] | None = None,
        year_min: int | None = None,
        year_max: int | None = None,
        exclude_ids: list[str] | None = None,
        only_ids: list[str] | None = None,
    ) -> list[dict[str, Any]]:
        hits = catalogue.search(
            query,
            k,
            genres=genres or (),
            year_min=year_min,
            year_max=year_max,
            exclude_ids=exclude_ids or (),
            only_ids=only_ids or (),
        )
        return hits_json(hits)

    return StructuredTool.from_function(
        search_catalogue,
        name="search_catalogue",
        description="Search the movie catalogue by meaning, with optional genre, year and "
        "id filters. Returns items with their cosine similarity to the query.",
        args_schema=RetrievalInput,
    )


class CollabInput(BaseModel):
    """One collaborative search: the device's user vector (never the history)."""

    vector: list[float] = Field(min_length=1, max_length=1024, description="user vector")
    k: int = Field(default=20, ge=1, le=500)
    genres: list[str] = Field(default_factory=list)
    year_min: int | None = None
    year_max: int | None = None
    exclude_ids: list[str] = Field(default_factory=list, max_length=500)
    only_ids: list[str] = Field(default_factory=list, max_length=500)


def make_collab_tool(index: Any) -> BaseTool:
    def search_collaborative(
        vector: list[float],
        k: int = 20,
        genres: list[str] | None = None,
        year_min: int | None = None,
        year_max: int | None = None,
        exclude_ids: list[str] | None = None,
        only_ids: list[str] | None = None,
    ) -> list[dict[str, Any]]:
        hits = index.search(
            vector,
            k,
            genres=genres or (),
            year_min=year_min,
            year_max=year_max,
            exclude_ids=exclude_ids or (),
            only_ids=only_ids or (),
        )
        return hits_json(hits)

    return StructuredTool.from_function(
        search_collaborative,
        name="search_collaborative",
        description="Search the structured model's item vectors with a user vector (inner "
        "product), with the same genre, year and id filters as the catalogue search.",
        args_schema=CollabInput,
    )
