"""Full turns through the graph on real components: SmolLM2-135M on both sides (the
device in process, the cloud behind a real llama.cpp OpenAI-compatible HTTP server),
device memory on disk, and every pair of backends (``backends``, tests/conftest.py): a
real embedded Chroma catalogue of ML-100K with SQLite checkpoints, and a real Chroma
server with a real PostgreSQL."""

from __future__ import annotations

import pytest

from cdarec.graph.builder import build_graph
from cdarec.graph.checkpoint import open_checkpointer
from cdarec.graph.runtime import get_resources
from cdarec.settings import Settings

pytestmark = pytest.mark.integration


@pytest.fixture()
def graph(backends: Settings):
    return build_graph(open_checkpointer(backends))


def test_turn_on_real_models(graph, backends: Settings) -> None:
    cfg = {"configurable": {"thread_id": "real-1"}}
    # 'to cheer me up': words the parser leaves to the cloud LLM's semantic query
    request = {"request": "a funny animated film to cheer me up"}
    out = graph.invoke(request, cfg, context=backends)
    res = get_resources(backends)
    assert (
        res.cloud.cloud_llm.provider == "embedded"
        and res.cloud.cloud_llm.chat.openai_api_base.startswith("http://127.0.0.1:")
    )
    ranking = out["ranking"]
    assert len(ranking) == backends.show_top
    assert all(r.label and r.reason for r in ranking)
    steps = {r.node: r for r in out["trace"]}
    assert {"summarize_on_device", "plan_strategy", "rank_on_device", "respond"} <= set(steps)
    assert steps["plan_strategy"].tokens_in > 0, "the planner really called the cloud model"
    assert steps["plan_strategy"].side == "cloud" and steps["rank_on_device"].side == "device"
    if out["plan"].semantic and out["plan"].sequence:
        sem, seq = steps["model_semantics"], steps["model_sequence_on_device"]
        assert sem.tokens_in > 0, "the semantic query was written by the cloud model"
        cloud_end = steps["retrieve_candidates"].end
        assert seq.start < cloud_end and sem.start < seq.end, "independent branches overlap"
    assert all("Comedy" in r.genres and "Animation" in r.genres for r in ranking)
    watched = set(res.device_record("196").history_ids())
    assert not watched & {r.item_id for r in ranking}


def test_thread_resumes_and_feedback_applies(graph, backends: Settings) -> None:
    cfg = {"configurable": {"thread_id": "real-2"}}
    first = graph.invoke({"request": ""}, cfg, context=backends)
    res = get_resources(backends)
    disliked = first["ranking"][0].item_id
    res.memory.add_feedback("196", "dislike", item_id=disliked, thread="real-2")
    # a new graph object on the same store (the SQLite file, the database) resumes it
    again = build_graph(open_checkpointer(backends))
    second = again.invoke({"request": ""}, cfg, context=backends)
    assert second["turn"] == first["turn"] + 1
    assert disliked not in {r.item_id for r in second["ranking"]}
    res.memory.undo_feedback("196")


def test_cold_start_user_gets_recommendations(graph, backends: Settings) -> None:
    res = get_resources(backends)
    res.memory.seed("newcomer", [], overwrite=True)
    s = Settings(**{**backends.model_dump(), "user_id": "newcomer"})
    out = graph.invoke(
        {"request": "a scary horror movie"}, {"configurable": {"thread_id": "c"}}, context=s
    )
    assert out["abstract"].state.bucket == "cold"
    assert len(out["ranking"]) == s.show_top
    assert out["plan"].semantic, "a cold user leans on semantic retrieval"


def test_a_genre_and_decade_request_binds_the_list(graph, backends: Settings) -> None:
    """User 196's history points at comedies and dramas of the 1990s; the request asks
    for something else, and every shown item must meet it, with a true reason."""
    cfg = {"configurable": {"thread_id": "real-horror"}}
    out = graph.invoke({"request": "a scary movie from the 80s"}, cfg, context=backends)
    assert "Horror" not in out["abstract"].top_genres, "the history points elsewhere"
    assert out["constraints"].genres == ["Horror"]
    top = out["ranking"]
    assert len(top) == backends.show_top
    assert all("Horror" in r.genres and 1980 <= (r.year or 0) <= 1989 for r in top), top
    assert all(r.grounded for r in top)
    assert len({r.reason for r in top}) >= 4, "a reason for each item, not one template"
    assert out["plan"].strategy == "request-led" or out["plan"].source != "default"


def test_something_like_a_named_film(graph, backends: Settings) -> None:
    cfg = {"configurable": {"thread_id": "real-like"}}
    out = graph.invoke({"request": "something like Star Wars"}, cfg, context=backends)
    assert out["constraints"].like_labels == ["Star Wars (1977)"]
    assert out["plan"].strategy == "similar-to", "the guardrail holds for any planner"
    star_wars = {"Action", "Adventure", "Romance", "Sci-Fi", "War"}
    shared = [bool(star_wars & set(r.genres)) for r in out["ranking"]]
    assert sum(shared) >= 4, out["ranking"]


def test_a_request_nothing_meets_is_answered_honestly(graph, backends: Settings) -> None:
    cfg = {"configurable": {"thread_id": "real-none"}}
    out = graph.invoke({"request": "a 1920s sci-fi musical"}, cfg, context=backends)
    assert out["bound"].relaxed, "the constraints were relaxed"
    assert out["notes"] and "closest" in out["notes"][0]
    assert len(out["ranking"]) == backends.show_top
