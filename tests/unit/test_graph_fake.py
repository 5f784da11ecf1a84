"""The whole graph with fake chat models (unit: no model is loaded).

Real data (ML-100K), real Chroma and the real embedder; only the LLMs are scripted, so
routing, fan-out, fallbacks and memory effects are checked fast and deterministically.
The same paths run on real models in tests/integration.
"""

from __future__ import annotations

import json

import pytest

from cdarec.contract.state import CloudView
from cdarec.graph.builder import CLOUD_NODES, build_graph
from cdarec.graph.runtime import UserNotFoundError
from tests.fakes import COLD_START, FITS


@pytest.fixture()
def setup(fake_graph):
    return fake_graph  # tests/unit/conftest.py: the graph on every checkpointer, fake models


def nodes(out) -> list[str]:
    return [r.node for r in out["trace"]]


def test_a_reason_that_only_repeats_the_title_is_replaced(setup) -> None:
    s, res, g = setup()
    res.device.device_llm.chat.script = lambda m: json.dumps({"picks": [{"n": 1, "reason": "x"}]})
    out = g.invoke({"request": ""}, {"configurable": {"thread_id": "t"}}, context=s)
    assert all(r.reason_source == "facts" and len(r.reason.split()) >= 3 for r in out["ranking"])


def test_full_turn_runs_every_planned_node_once(setup) -> None:
    s, res, g = setup()
    out = g.invoke({"request": "something light"}, {"configurable": {"thread_id": "t"}}, context=s)
    assert sorted(nodes(out)) == sorted(
        [
            "summarize_on_device",
            "plan_strategy",
            "model_semantics",
            "retrieve_candidates",
            "model_sequence_on_device",
            "rank_on_device",
            "respond",
        ]
    )
    assert out["plan"].source == "planner"
    assert len(out["ranking"]) == 4
    # the SLM's picks keep their reasons (true: they name no genre, year or title)
    by_reason = {r.reason: r for r in out["ranking"]}
    assert by_reason[FITS].reason_source == "slm" and by_reason[FITS].grounded
    assert out["plan"].weights.judge > 0 and by_reason[FITS].parts["judge"] == 1.0
    seen = set(res.device_record("196").history_ids())
    assert not seen & {r.item_id for r in out["ranking"]}, "watched items are never recommended"


def test_plan_without_sequence_skips_the_device_branch(setup) -> None:
    s, res, g = setup(plan=json.dumps({"strategy": "balanced"}), user="newbie")
    res.memory.seed("newbie", [])  # cold: a strategy other than cold-start leaves it out
    out = g.invoke({"request": "comedy"}, {"configurable": {"thread_id": "t"}}, context=s)
    assert "model_sequence_on_device" not in nodes(out)
    assert out["plan"].source == "planner" and out["plan"].strategy == "balanced"
    assert all("Comedy" in r.genres for r in out["ranking"]), "the request's genre binds"


def test_a_cold_start_turn_with_no_request_shows_popular_films(setup) -> None:
    """Nothing watched, no words: the device's structured signal is the catalogue's
    popularity, it leads, and the items are shown as popular, not as a viewing pattern."""
    s, res, g = setup(plan=COLD_START, user="newbie")
    res.memory.seed("newbie", [])
    out = g.invoke({"request": ""}, {"configurable": {"thread_id": "t"}}, context=s)
    assert "model_sequence_on_device" in nodes(out)
    step = next(r for r in out["trace"] if r.node == "model_sequence_on_device")
    assert step.model == "popularity (no history)"
    pop = res.dataset.popularity
    shown = [int(pop[res.dataset.item_index[r.item_id]]) for r in out["ranking"]]
    assert min(shown) >= sorted(pop)[-60], shown  # among the most watched films
    assert all("sequence" not in r.sources for r in out["ranking"])
    assert any("popularity" in r.sources for r in out["ranking"])


def test_a_strategy_the_request_cannot_have_falls_back_to_the_rule(setup) -> None:
    s, _res, g = setup(plan=json.dumps({"strategy": "similar-to"}))  # no film is named
    out = g.invoke({"request": "comedy"}, {"configurable": {"thread_id": "t"}}, context=s)
    step = next(r for r in out["trace"] if r.node == "plan_strategy")
    assert out["plan"].source == "default" and out["plan"].strategy == "request-led"
    assert out["plan"].sequence, "a user with history keeps the model of that history"
    assert "needs a film named" in step.detail


def test_invalid_plan_falls_back_to_the_rule(setup) -> None:
    s, _res, g = setup(plan='{"strategy": "maybe"}')
    out = g.invoke({"request": ""}, {"configurable": {"thread_id": "t"}}, context=s)
    assert out["plan"].source == "default" and out["plan"].strategy == "history-led"
    step = next(r for r in out["trace"] if r.node == "plan_strategy")
    assert step.status == "fallback" and "fallback to history-led" in step.detail


def test_dead_cloud_still_answers_with_visible_fallbacks(setup) -> None:
    s, _res, g = setup(cloud_fail=True)
    request = {"request": "a comedy for a rainy sunday"}  # "rainy sunday": words for the LLM
    out = g.invoke(request, {"configurable": {"thread_id": "t"}}, context=s)
    statuses = {r.node: r.status for r in out["trace"]}
    assert statuses["plan_strategy"] == "fallback" and statuses["model_semantics"] == "fallback"
    assert out["ranking"], "the device still ranks"
    assert all("Comedy" in r.genres for r in out["ranking"]), "code still read the request"


def test_feedback_changes_the_next_turn_and_turns_resume(setup) -> None:
    s, res, g = setup()
    cfg = {"configurable": {"thread_id": "t"}}
    first = g.invoke({"request": ""}, cfg, context=s)
    top = first["ranking"][0]
    res.memory.add_feedback("196", "dislike", item_id=top.item_id, thread="t")
    second = g.invoke({"request": ""}, cfg, context=s)
    assert second["turn"] == first["turn"] + 1
    assert top.item_id not in {r.item_id for r in second["ranking"]}
    assert second["abstract"].state.live_feedback == "negative"
    # items shown in this session are not repeated
    assert not {r.item_id for r in first["ranking"]} & {r.item_id for r in second["ranking"]}


def test_unknown_user_is_a_clear_error(setup) -> None:
    s, _res, g = setup(user="nobody-here")
    with pytest.raises(UserNotFoundError, match="cdarec users"):
        g.invoke({"request": "hi"}, {"configurable": {"thread_id": "t"}}, context=s)


def test_cloud_nodes_can_only_read_the_cloud_view() -> None:
    g = build_graph()
    for name in CLOUD_NODES:
        assert g.builder.nodes[name].input_schema is CloudView, name
    # the cloud view has no channel for history or device outputs
    assert set(CloudView.__annotations__) == {
        "turn",
        "request",
        "scope",
        "abstract",
        "user_vector",
        "context",
        "placement",
        "plan",
        "constraints",
        "intent",
        "candidates",
        # device output, written only by a device with no private history
        # (tests/unit/test_cloud_judge.py)
        "shortlist",
    }


def test_plan_is_reused_for_the_same_state_and_request_kind(setup) -> None:
    s, res, g = setup()
    cfg = {"configurable": {"thread_id": "t"}}
    g.invoke({"request": "a comedy"}, cfg, context=s)
    calls = len(res.cloud.cloud_llm.chat.prompts)
    out = g.invoke({"request": "a drama"}, cfg, context=s)  # same kind: "specific"
    step = next(r for r in out["trace"] if r.node == "plan_strategy")
    assert out["plan"].source == "cached" and step.status == "cached"
    # its note says why for this request, not for the one it was written for
    assert "Drama" in out["plan"].note and "Comedy" not in out["plan"].note
    # no cloud call at all: the plan is reused and code read the whole request
    assert len(res.cloud.cloud_llm.chat.prompts) == calls
    res.memory.add_feedback("196", "dislike", item_id=out["ranking"][0].item_id)
    out = g.invoke({"request": "a western"}, cfg, context=s)  # now there is live feedback
    assert out["plan"].source == "planner"
    res.memory.add_feedback("196", "dislike", item_id=out["ranking"][0].item_id)
    out = g.invoke({"request": "a thriller"}, cfg, context=s)  # more feedback: same strategy
    assert out["plan"].source == "cached", "each like or dislike does not re-plan"


def test_the_request_binds_every_source_of_the_pool(setup) -> None:
    """Device proposals, collaborative and semantic candidates alike meet the request:
    a genre, a decade and an exclusion, for a user whose history is mostly comedies."""
    s, _res, g = setup()
    out = g.invoke(
        {"request": "a drama from the 1990s, nothing romantic"},
        {"configurable": {"thread_id": "t"}},
        context=s.model_copy(update={"show_top": 10}),
    )
    c = out["constraints"]
    assert (c.genres, c.year_min, c.year_max, c.exclude_genres) == (
        ["Drama"],
        1990,
        1999,
        ["Romance"],
    )
    ranking = out["ranking"]
    assert len(ranking) == 10
    for r in ranking:
        assert "Drama" in r.genres and "Romance" not in r.genres and 1990 <= r.year <= 1999, r
    sources = {src for r in ranking for src in r.sources}
    assert "sequence" in sources, "the device's own proposals were bound, not dropped"
    assert all(r.grounded for r in ranking)
    assert len({r.reason for r in ranking}) >= 8


def test_something_like_a_film_ranks_by_likeness(setup) -> None:
    s, _res, g = setup(plan=json.dumps({"strategy": "similar-to"}))
    out = g.invoke(
        {"request": "something like Star Wars"}, {"configurable": {"thread_id": "t"}}, context=s
    )
    assert out["plan"].strategy == "similar-to" and out["plan"].weights.similar > 0
    assert "50" not in {r.item_id for r in out["ranking"]}, "not the named film itself"
    star_wars = {"Action", "Adventure", "Romance", "Sci-Fi", "War"}
    assert all(star_wars & set(r.genres) for r in out["ranking"])
    assert all("Star Wars (1977)" in r.reason for r in out["ranking"] if r.reason_source == "facts")


def test_auto_planner_asks_the_llm_only_for_words_the_code_left_unread(setup) -> None:
    s, res, g = setup(planner="auto")
    prompts = res.cloud.cloud_llm.chat.prompts

    def planner_calls() -> int:
        return sum("Task: choose the strategy" in str(m[-1].content) for m in prompts)

    cfg = {"configurable": {"thread_id": "auto"}}
    for request in ("", "a funny romantic comedy from the 1990s", "something like Star Wars"):
        out = g.invoke({"request": request}, cfg, context=s)
        step = next(r for r in out["trace"] if r.node == "plan_strategy")
        assert step.status == "skipped" and "the rule decided" in step.detail, request
        assert out["plan"].source == "default"
    assert planner_calls() == 0
    out = g.invoke({"request": "something to cheer me up after a long week"}, cfg, context=s)
    assert planner_calls() == 1 and out["plan"].source == "planner"
