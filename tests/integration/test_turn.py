"""Full turns through the graph on real components: SmolLM2-135M on both sides (the
device in process, the cloud behind a real llama.cpp OpenAI-compatible HTTP server),
a real Chroma catalogue of ML-100K, SQLite checkpoints, device memory on disk."""

from __future__ import annotations

import pytest

from cdarec.graph.builder import build_graph
from cdarec.graph.checkpoint import sqlite_checkpointer
from cdarec.runtime import get_resources
from cdarec.settings import Settings

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def graph(smol_settings: Settings):
    return build_graph(sqlite_checkpointer(smol_settings.checkpoint_db))


def test_turn_on_real_models(graph, smol_settings: Settings) -> None:
    cfg = {"configurable": {"thread_id": "real-1"}}
    out = graph.invoke({"request": "a funny animated film"}, cfg, context=smol_settings)
    res = get_resources(smol_settings)
    assert res.cloud_llm.provider == "embedded" and res.cloud_llm.chat.openai_api_base.startswith(
        "http://127.0.0.1:"
    )
    ranking = out["ranking"]
    assert len(ranking) == smol_settings.show_top
    assert all(r.label and r.reason for r in ranking)
    steps = {r.node: r for r in out["trace"]}
    assert {"summarize_on_device", "plan_strategy", "rank_on_device", "respond"} <= set(steps)
    assert steps["plan_strategy"].tokens_in > 0, "the planner really called the cloud model"
    assert steps["plan_strategy"].side == "cloud" and steps["rank_on_device"].side == "device"
    if out["plan"].semantic and out["plan"].sequence:
        sem, seq = steps["model_semantics"], steps["model_sequence_on_device"]
        assert seq.start < sem.end and sem.start < seq.end, "independent branches overlap"
    watched = set(res.device_record("196").history_ids())
    assert not watched & {r.item_id for r in ranking}


def test_thread_resumes_and_feedback_applies(graph, smol_settings: Settings) -> None:
    cfg = {"configurable": {"thread_id": "real-2"}}
    first = graph.invoke({"request": ""}, cfg, context=smol_settings)
    res = get_resources(smol_settings)
    disliked = first["ranking"][0].item_id
    res.memory.add_feedback("196", "dislike", item_id=disliked, thread="real-2")
    # a new graph object on the same SQLite file resumes the thread
    again = build_graph(sqlite_checkpointer(smol_settings.checkpoint_db))
    second = again.invoke({"request": ""}, cfg, context=smol_settings)
    assert second["turn"] == first["turn"] + 1
    assert disliked not in {r.item_id for r in second["ranking"]}
    res.memory.undo_feedback("196")


def test_cold_start_user_gets_recommendations(graph, smol_settings: Settings) -> None:
    res = get_resources(smol_settings)
    res.memory.seed("newcomer", [], overwrite=True)
    s = Settings(**{**smol_settings.model_dump(), "user_id": "newcomer"})
    out = graph.invoke(
        {"request": "a scary horror movie"}, {"configurable": {"thread_id": "c"}}, context=s
    )
    assert out["abstract"].state.bucket == "cold"
    assert len(out["ranking"]) == s.show_top
    assert out["plan"].semantic, "a cold user leans on semantic retrieval"
