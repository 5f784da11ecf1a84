from __future__ import annotations

import pytest
from pydantic import ValidationError

from cdarec.contract.plan import (
    STRATEGIES,
    PlanDraft,
    Weights,
    choose_strategy,
    default_plan,
    plan_cache_key,
    plan_for,
    request_kind,
)
from cdarec.contract.request import Constraints
from cdarec.contract.schemas import Intent, UserAbstract, UserState, intent_json_schema

GENRES = {"Comedy", "Horror", "Sci-Fi"}


def abstract(bucket: str, feedback: str = "none") -> UserAbstract:
    size = {"cold": "1-2", "light": "3-20", "heavy": "101-500"}[bucket]
    return UserAbstract(
        state=UserState(bucket=bucket, history_size=size, recency="active", live_feedback=feedback)
    )


def test_a_strategy_becomes_a_plan_with_its_weights() -> None:
    d = PlanDraft.model_validate({"strategy": "request-led"}, context={"bucket": "heavy"})
    plan = plan_for(d.strategy, abstract("heavy"), 30)
    spec = STRATEGIES["request-led"]
    assert plan.strategy == "request-led" and plan.source == "planner"
    assert plan.weights.sequence == pytest.approx(spec.weights[0] / sum(spec.weights))
    assert plan.judge is True  # the SLM still explains
    assert plan.sequence and plan.retrieval.collab_k == plan.retrieval.k // 2


@pytest.mark.parametrize(
    ("draft", "context", "message"),
    [
        ({"strategy": "whatever"}, {}, "Input should be"),
        ({"strategy": "similar-to"}, {"like_items": False}, "needs a film named"),
        ({"strategy": "request-led"}, {"like_items": True}, "must be similar-to"),
        ({"strategy": "history-led"}, {"bucket": "cold"}, "needs a history"),
    ],
)
def test_strategies_that_do_not_fit_are_rejected(draft: dict, context: dict, message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        PlanDraft.model_validate(draft, context=context)


def test_cold_users_get_no_collaborative_retrieval_until_they_give_feedback() -> None:
    """Under cold-start the device's structured signal (popularity with nothing watched)
    still runs, but no user vector is used; other strategies skip it for a cold user."""
    cold = plan_for("cold-start", abstract("cold"), 30)
    assert cold.sequence and cold.retrieval.collab_k == 0
    assert not plan_for("balanced", abstract("cold"), 30).sequence
    warm = plan_for("cold-start", abstract("cold", "positive"), 30)
    assert warm.sequence and warm.retrieval.collab_k > 0


def test_a_cold_user_with_no_request_is_shown_what_most_people_watch() -> None:
    quiet = plan_for("cold-start", abstract("cold"), 30, request="")
    asked = plan_for("cold-start", abstract("cold"), 30, request="a comedy")
    assert quiet.weights.sequence > quiet.weights.semantic  # popularity leads
    assert asked.weights.semantic > asked.weights.sequence  # the request leads
    assert plan_for("cold-start", abstract("cold"), 30).weights == asked.weights


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


def test_default_plans_follow_the_rule() -> None:
    cold = default_plan(abstract("cold"), "", 30)
    heavy = default_plan(abstract("heavy"), "", 30)
    assert cold.source == "default" and cold.semantic and not cold.retrieval.collab_k
    assert cold.strategy == "cold-start" and heavy.strategy == "history-led"
    assert heavy.sequence and heavy.weights.sequence > heavy.weights.semantic
    cold_asked = default_plan(abstract("cold"), "a comedy", 30, Constraints(genres=["Comedy"]))
    assert cold_asked.weights.semantic > cold_asked.weights.sequence
    # a request that names genres pulls weight to semantic relevance
    asked = default_plan(abstract("heavy"), "a comedy", 30, Constraints(genres=["Comedy"]))
    assert asked.strategy == "request-led"
    assert asked.weights.semantic > heavy.weights.semantic
    # live feedback switches the sequence model on even for a cold user
    assert default_plan(abstract("cold", "positive"), "", 30).sequence


@pytest.mark.parametrize(
    ("request_text", "constraints", "bucket", "strategy"),
    [
        ("", Constraints(), "heavy", "history-led"),
        ("", Constraints(), "cold", "cold-start"),
        ("a comedy", Constraints(genres=["Comedy"]), "heavy", "request-led"),
        ("like Alien", Constraints(like_items=["Alien (1979)"]), "cold", "similar-to"),
        ("surprise me with something different", Constraints(), "light", "explore"),
        ("something to cheer me up", Constraints(residual="cheer up"), "heavy", "balanced"),
    ],
)
def test_the_rule_picks_a_strategy_from_user_and_request(
    request_text: str, constraints: Constraints, bucket: str, strategy: str
) -> None:
    chosen, why = choose_strategy(abstract(bucket), constraints, request_text)
    assert chosen == strategy and why


def test_intent_schema_constrains_genres_to_the_catalogue() -> None:
    schema = intent_json_schema(sorted(GENRES))
    assert schema["properties"]["genres"]["items"]["enum"] == sorted(GENRES)


def test_plan_lists_steps_with_sides_and_parallel_groups() -> None:
    plan = default_plan(abstract("heavy"), "", 30)
    steps = {s.task: s for s in plan.steps()}
    assert steps["model_semantics"].side == "cloud"
    assert steps["model_sequence_on_device"].side == "device"
    assert steps["model_semantics"].group == steps["model_sequence_on_device"].group
    cold_steps = {s.task for s in plan_for("balanced", abstract("cold"), 30).steps()}
    assert "model_sequence_on_device" not in cold_steps


def test_request_kinds_and_plan_reuse_keys() -> None:
    assert request_kind("", Constraints()) == "none"
    assert request_kind("like Alien", Constraints(like_items=["Alien (1979)"])) == "similar"
    assert request_kind("a comedy please", Constraints(genres=["Comedy"])) == "specific"
    assert request_kind("films from the 1980s", Constraints(year_min=1980)) == "specific"
    assert request_kind("surprise me", Constraints(residual="surprise")) == "explore"
    assert request_kind("something to cheer me up", Constraints(residual="cheer")) == "open"
    # an unknown film is no 'like X': its plan must not be reused for a named film
    assert request_kind("like Zorblax", Constraints(unknown_title="Zorblax")) == "open"
    a, b = abstract("heavy"), abstract("heavy", "negative")
    assert plan_cache_key(a, "open") == plan_cache_key(abstract("heavy"), "open")
    assert plan_cache_key(a, "open") != plan_cache_key(a, "none")
    assert plan_cache_key(a, "open") != plan_cache_key(b, "open"), "first feedback re-plans"
    mixed = abstract("heavy", "mixed")
    assert plan_cache_key(b, "open") == plan_cache_key(mixed, "open"), "more feedback does not"


def test_judgement_drops_out_of_range_picks_but_not_all() -> None:
    from cdarec.contract.judgement import Judgement

    j = Judgement.model_validate(
        {"picks": [{"n": 9, "reason": "x"}, {"n": 2, "reason": "y"}, {"n": 2, "reason": "z"}]},
        context={"n": 4},
    )
    assert [(p.n, p.reason) for p in j.picks] == [(2, "y")]
    with pytest.raises(ValidationError, match="no pick"):
        Judgement.model_validate({"picks": [{"n": 9, "reason": "x"}]}, context={"n": 4})


def test_a_judgement_cut_at_its_budget_keeps_its_complete_picks() -> None:
    from langchain_core.messages import HumanMessage

    from cdarec.contract.judgement import Judgement, salvage_judgement
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
