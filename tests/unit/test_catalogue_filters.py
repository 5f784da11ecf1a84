"""Planned filtered search (cdarec/cloud/catalogue/filters.py) returns what Chroma's own
``where`` returns: on the real ML-100K catalogue in real Chroma, with the size threshold
lowered so that its plans run (exact ranking of few passing items, an over-fetched graph
search of many, Chroma's filter when the plan finds too few)."""

from __future__ import annotations

from pathlib import Path

import pytest

from cdarec.cloud.catalogue import filters
from cdarec.cloud.resources import cloud_resources
from cdarec.settings import Settings
from tests.conftest import REAL_HOME

CASES = [
    {"genres": ["Comedy"]},
    {"genres": ["Comedy", "Romance"]},
    {"genres": ["Comedy", "Romance"], "genre_mode": "all"},
    {"year_min": 1990, "year_max": 1994},
    {"genres": ["Horror"], "year_min": 1980, "year_max": 1989},
    {"genres": ["Film-Noir"]},
    {"genres": ["No Such Genre"]},
    {"genres": ["Drama"], "exclude_ids": None},  # ids filled below
    {"only_ids": None},
]


@pytest.fixture()
def catalogue(home: Path):
    if not (REAL_HOME / "datasets" / "ml-100k").exists():
        pytest.fail("ML-100K missing: run scripts/test.sh")
    cat = cloud_resources(Settings(home=home, dataset="ml-100k")).catalogue
    assert cat.count() == 1682
    return cat


def _case(case: dict, ids: list[str]) -> dict:
    out = dict(case)
    if "exclude_ids" in out:
        out["exclude_ids"] = ids[:40]
    if "only_ids" in out:
        out["only_ids"] = ids[100:400]
    return out


def _passes(hit, case: dict) -> bool:
    gs = case.get("genres") or []
    if gs and case.get("genre_mode") == "all" and not set(gs) <= set(hit.genres):
        return False
    if gs and not set(gs) & set(hit.genres):
        return False
    if case.get("year_min") is not None and (hit.year or -1) < case["year_min"]:
        return False
    if case.get("year_max") is not None and (hit.year or 10**6) > case["year_max"]:
        return False
    if hit.item_id in (case.get("exclude_ids") or []):
        return False
    return not case.get("only_ids") or hit.item_id in case["only_ids"]


@pytest.mark.parametrize("plan", ["exact", "overfetch", "fallback"])
def test_planned_filtered_search_agrees_with_chromas_filter(
    catalogue, monkeypatch: pytest.MonkeyPatch, plan: str
) -> None:
    ids = [i for i in catalogue.collection.get(include=[])["ids"]]
    queries = ["a funny romantic comedy", "dark crime story in the city", "space adventure"]
    for case in CASES:
        case = _case(case, ids)
        for q in queries:
            monkeypatch.setattr(filters, "INDEX_MIN", 10**9)  # Chroma's own where
            want = catalogue.search(q, 10, **case)
            monkeypatch.setattr(filters, "INDEX_MIN", 0)
            monkeypatch.setattr(filters, "BRUTE_MAX", 10**6 if plan == "exact" else 0)
            monkeypatch.setattr(filters, "OVERFETCH_MAX", 5 if plan == "fallback" else 3000)
            got = catalogue.search(q, 10, **case)
            assert all(_passes(h, case) for h in got), (case, got)
            assert len(got) == len(want), (case, q)
            overlap = len({h.item_id for h in got} & {h.item_id for h in want})
            assert overlap >= len(want) - 1, (case, q, got, want)  # HNSW is approximate
            for h in got:
                assert h.label and h.similarity <= 1.0 + 1e-5


def test_the_facts_follow_writes(catalogue, monkeypatch: pytest.MonkeyPatch) -> None:
    from cdarec.data import Item

    monkeypatch.setattr(filters, "INDEX_MIN", 0)
    assert catalogue.search("a western", 5, genres=["Western"])  # the index is read now
    vec = catalogue.embeddings.embed_array(["A Western Test Film (2031). Genres: Western."])
    catalogue.write([Item("test-west", "A Western Test Film", 2031, ("Western",))], vec)
    got = catalogue.search("a western", 5, genres=["Western"], year_min=2030)
    assert [h.item_id for h in got] == ["test-west"]
