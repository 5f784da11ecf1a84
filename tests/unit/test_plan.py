from __future__ import annotations

import pytest
from pydantic import ValidationError

from cdarec.graph.plan import (
    PlanDraft,
    Weights,
    default_plan,
    plan_cache_key,
    request_kind,
)
from cdarec.graph.schemas import Intent, UserAbstract, UserState, intent_json_schema

GENRES = {"Comedy", "Horror", "Sci-Fi"}


def abstract(bucket: str, feedback: str = "none") -> UserAbstract:
    size = {"cold": "1-2", "light": "3-20", "heavy": "101-500"}[bucket]
    return UserAbstract(
        state=UserState(bucket=bucket, history_size=size, recency="active", live_feedback=feedback)
    )


def draft(**kw: object) -> dict:
    base = {
        "semantic_retrieval": True,
        "sequence_model": True,
        "k": 30,
        "genres": [],
        "w_sequence": 0.5,
        "w_semantic": 0.3,
        "w_judge": 0.2,
    }
    return {**base, **kw}


def test_valid_draft_becomes_plan_with_normalised_weights() -> None:
    d = PlanDraft.model_validate(
        draft(w_sequence=1, w_semantic=1, w_judge=0), context={"genres": GENRES}
    )
    plan = d.to_plan()
    assert plan.weights.sequence == pytest.approx(0.5)
    assert plan.weights.judge == 0 and plan.judge is True  # the SLM still explains
    assert plan.source == "planner"


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"semantic_retrieval": False, "sequence_model": False}, "at least one"),
        ({"w_sequence": 1.5}, "less than or equal"),
        ({"k": 0}, "greater than or equal"),
        ({"sequence_model": False}, "sequence_model must be true"),  # heavy user
    ],
)
def test_invalid_drafts_are_rejected(change: dict, message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        PlanDraft.model_validate(draft(**change), context={"bucket": "heavy"})


def test_cold_users_may_skip_the_sequence_model() -> None:
    d = PlanDraft.model_validate(draft(sequence_model=False), context={"bucket": "cold"})
    assert not d.to_plan().sequence


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ({"queries": ["x"], "genres": ["Spaceships"]}, "unknown genres"),
        ({"queries": ["x"], "genres": ["Alien (1979)"]}, "should match pattern"),
        ({"queries": []}, "at least 1"),
        ({"queries": ["x"], "year_min": 2000, "year_max": 1990}, "year_min"),
    ],
)
def test_invalid_intents_are_rejected(value: dict, message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        Intent.model_validate(value, context={"genres": GENRES})


def test_weights_must_not_all_be_zero() -> None:
    with pytest.raises(ValidationError):
        Weights(sequence=0, semantic=0, judge=0)


def test_default_plans_follow_the_bucket() -> None:
    cold = default_plan(abstract("cold"), "", 30)
    heavy = default_plan(abstract("heavy"), "", 30)
    assert cold.source == "default" and not cold.sequence and cold.semantic
    assert heavy.sequence and heavy.weights.sequence > heavy.weights.semantic
    assert cold.weights.semantic > cold.weights.sequence
    # a clear request pulls weight to semantic relevance
    asked = default_plan(abstract("heavy"), "a light space comedy please", 30)
    assert asked.weights.semantic > heavy.weights.semantic
    # live feedback switches the sequence model on even for a cold user
    assert default_plan(abstract("cold", "positive"), "", 30).sequence


def test_intent_schema_constrains_genres_to_the_catalogue() -> None:
    schema = intent_json_schema(sorted(GENRES))
    assert schema["properties"]["genres"]["items"]["enum"] == sorted(GENRES)


def test_plan_lists_steps_with_sides_and_parallel_groups() -> None:
    plan = default_plan(abstract("heavy"), "", 30)
    steps = {s.task: s for s in plan.steps()}
    assert steps["model_semantics"].side == "cloud"
    assert steps["model_sequence_on_device"].side == "device"
    assert steps["model_semantics"].group == steps["model_sequence_on_device"].group
    cold_steps = {s.task for s in default_plan(abstract("cold"), "", 30).steps()}
    assert "model_sequence_on_device" not in cold_steps


def test_request_kinds_and_plan_reuse_keys() -> None:
    assert request_kind("") == "none"
    assert request_kind("something like Alien") == "similar"
    assert request_kind("a comedy please", GENRES) == "specific"
    assert request_kind("films from the 1980s") == "specific"
    assert request_kind("surprise me") == "open"
    a, b = abstract("heavy"), abstract("heavy", "negative")
    assert plan_cache_key(a, "open") == plan_cache_key(abstract("heavy"), "open")
    assert plan_cache_key(a, "open") != plan_cache_key(a, "none")
    assert plan_cache_key(a, "open") != plan_cache_key(b, "open"), "feedback invalidates"


def test_judgement_drops_out_of_range_picks_but_not_all() -> None:
    from cdarec.device.ranking import Judgement

    j = Judgement.model_validate(
        {"picks": [{"n": 9, "reason": "x"}, {"n": 2, "reason": "y"}, {"n": 2, "reason": "z"}]},
        context={"n": 4},
    )
    assert [(p.n, p.reason) for p in j.picks] == [(2, "y")]
    with pytest.raises(ValidationError, match="no pick"):
        Judgement.model_validate({"picks": [{"n": 9, "reason": "x"}]}, context={"n": 4})


def test_a_judgement_cut_at_its_budget_keeps_its_complete_picks() -> None:
    from langchain_core.messages import HumanMessage

    from cdarec.device.ranking import Judgement, salvage_judgement
    from cdarec.llm.structured import call_structured
    from tests.fakes import fake_llm

    cut = '{"picks": [{"n": 2, "reason": "A \\"fun\\" one"}, {"n": 1, "reason": "cut off he'
    assert salvage_judgement(cut, 4).picks[0].reason == 'A "fun" one'
    assert salvage_judgement("nonsense", 4) is None
    llm = fake_llm(lambda _m: cut)
    out = call_structured(
        llm,
        Judgement,
        [HumanMessage("x")],
        max_tokens=10,
        fallback=lambda: Judgement(picks=[]),
        context={"n": 4},
        salvage=lambda raw: salvage_judgement(raw, 4),
    )
    assert out.status == "repaired" and "salvaged" in out.error
    assert [p.n for p in out.value.picks] == [2] and len(llm.chat.prompts) == 1
