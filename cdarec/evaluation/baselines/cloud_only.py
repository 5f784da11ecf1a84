"""Evaluation: the cloud-only agent, the baseline cdarec is measured against (Protocol C,
ANCHORS.md).

This is how a plain cloud agent recommender works: every sub-task runs on the cloud
LLM, one after another, and the raw viewing history is sent to the cloud. It exists
for the benchmarks only (``cdarec bench latency``, ``cdarec bench accuracy --methods
cloud-only``); the product never runs it. It is a real LangGraph graph over the same
models, prompts, catalogue and retrieval tool as cdarec, so that the comparison is of
the split, not of the parts:

    START -> profile_user (cloud LLM reads the raw history, writes a profile)
          -> plan_strategy (cloud LLM, the same prompt as cdarec's, every turn: no cache)
          -> model_semantics (cloud LLM, cdarec's prompt; an empty request needs no call)
          -> retrieve_candidates (Chroma, cdarec's tool)
          -> rank_in_cloud (cloud LLM ranks the candidates with the raw recent history)
          -> END

There is no device model here: the sequence is "modelled" by the LLM reading it.
"""

from __future__ import annotations

import itertools
import operator
from collections.abc import Callable
from typing import Annotated, Any, TypedDict

from langchain_core.runnables import RunnableConfig
from langgraph.graph import END, START, StateGraph
from langgraph.runtime import Runtime
from langgraph.types import Checkpointer
from pydantic import BaseModel, Field, ValidationInfo, field_validator

from cdarec.cloud.nodes import PLAN_MAX_TOKENS, read_request
from cdarec.cloud.tools import RetrievalInput, make_retrieval_tool
from cdarec.contract.judgement import numbered_candidates
from cdarec.contract.plan import STRATEGIES, PlanDraft
from cdarec.contract.schemas import GenreName, Intent, RankedItem, StepRecord, intent_json_schema
from cdarec.contract.semantics import INTENT_MAX_TOKENS
from cdarec.contract.steps import Step
from cdarec.graph.runtime import get_resources
from cdarec.llm.structured import call_structured
from cdarec.settings import Settings

HISTORY_FOR_PROFILE = 50  # the LLMRank protocol's history length
RECENT_FOR_RANK = 20
RANK_TOP = 20  # candidates the cloud LLM ranks
ORDER_MAX = 10
PROFILE_MAX_TOKENS = 60
RANK_MAX_TOKENS = 80


class Profile(BaseModel):
    """What the cloud LLM writes about the user after reading the raw history."""

    genres: list[GenreName] = Field(default_factory=list, max_length=3)
    summary: str = Field(default="", max_length=200)


class CloudRanking(BaseModel):
    order: list[int] = Field(max_length=RANK_TOP)
    reasons: list[str] = Field(default_factory=list, max_length=3)

    @field_validator("order")
    @classmethod
    def _in_range(cls, v: list[int], info: ValidationInfo) -> list[int]:
        n = (info.context or {}).get("n")
        out: list[int] = []
        for i in v:
            if (n is None or 1 <= i <= n) and i not in out:
                out.append(i)
        if v and not out:
            raise ValueError(f"no number in order names a candidate (1..{n})")
        return out


def profile_schema(genres: list[str]) -> dict[str, Any]:
    return {
        "type": "object",
        "properties": {
            "genres": {"type": "array", "items": {"enum": genres}, "maxItems": 3},
            "summary": {"type": "string", "maxLength": 100},
        },
        "required": ["genres", "summary"],
    }


def ranking_schema(n: int) -> dict[str, Any]:
    return {
        "type": "object",
        "properties": {
            "order": {
                "type": "array",
                "items": {"type": "integer", "minimum": 1, "maximum": n},
                "minItems": 1,
                "maxItems": min(ORDER_MAX, n),
            },
            "reasons": {
                "type": "array",
                "items": {"type": "string", "maxLength": 50},
                "maxItems": 2,
            },
        },
        "required": ["order", "reasons"],
    }


class CloudOnlyState(TypedDict, total=False):
    request: str
    scope: list[str] | None
    # The raw history, as titles: what the cloud-only agent sends to the cloud.
    history: list[str]
    profile: Profile
    plan: PlanDraft | None
    intent: Intent
    candidates: list[dict[str, Any]]
    ranking: list[RankedItem]
    trace: Annotated[list[StepRecord], operator.add]


class CloudOnlyInput(TypedDict):
    request: str
    scope: list[str] | None


def _abstract_text(profile: Profile) -> str:
    genres = ", ".join(profile.genres) or "unknown"
    return f"favourite genres: {genres}; {profile.summary}".strip()


def load_history(state: CloudOnlyState, runtime: Runtime[Settings]) -> dict[str, Any]:
    """Reads the device's private history: in this baseline, it is then sent away."""
    res = get_resources(runtime.context)
    rec = res.device_record(res.settings.user_id)
    ds = res.dataset
    titles = [
        ds.items[ds.item_index[i]].label() if i in ds.item_index else i for i in rec.history_ids()
    ]
    return {"history": titles, "trace": []}


def profile_user(
    state: CloudOnlyState, runtime: Runtime[Settings], config: RunnableConfig
) -> dict[str, Any]:
    res = get_resources(runtime.context)
    # The baseline's first cloud step, as plan_strategy is cdarec's: a failure of the last
    # turn (a cold server past its timeout) must not skip every call of this one.
    res.cloud.revive_cloud_llm()
    step = Step("profile_user", "cloud", 1)
    history = state.get("history") or []
    if not history:
        return {"profile": Profile(), "trace": step.done(status="skipped", detail="no history")}
    lines = "\n".join(f"{n}. {t}" for n, t in enumerate(history[-HISTORY_FOR_PROFILE:], 1))
    genres = list(res.dataset.genres)
    out = call_structured(
        res.cloud.cloud_llm,
        Profile,
        res.cloud.prompts["cloud_only_profile"].messages(genres=", ".join(genres), history=lines),
        max_tokens=PROFILE_MAX_TOKENS,
        json_schema=profile_schema(genres),
        fallback=Profile,
        config=config,
    )
    return {
        "profile": out.value,
        "trace": step.done(
            model=res.cloud.cloud_llm.name,
            usage=out.usage,
            status=out.status,
            detail=out.error or _abstract_text(out.value),
        ),
    }


def _cloud_values(res: Any, state: CloudOnlyState) -> dict[str, Any]:
    return {
        "genres": ", ".join(res.dataset.genres),
        "retrieval_k": res.settings.retrieval_k,
        "abstract": _abstract_text(state.get("profile") or Profile()),
        "request": (state.get("request") or "").strip() or "(no request: recommend what fits)",
        "reading": read_request(res.cloud, state.get("request") or "").describe(),
        "suggested": "none (choose)",
    }


def plan_strategy(
    state: CloudOnlyState, runtime: Runtime[Settings], config: RunnableConfig
) -> dict[str, Any]:
    """The plain agent plans every turn (no plan reuse); only the strategy's ``k`` is used."""
    res = get_resources(runtime.context)
    step = Step("plan_strategy", "cloud", 1)
    out = call_structured(
        res.cloud.cloud_llm,
        PlanDraft,
        res.cloud.prompts["plan_strategy"].messages(**_cloud_values(res, state)),
        max_tokens=PLAN_MAX_TOKENS,
        fallback=lambda: None,  # type: ignore[arg-type,return-value]
        config=config,
    )
    return {
        "plan": out.value,
        "trace": step.done(
            model=res.cloud.cloud_llm.name,
            usage=out.usage,
            status=out.status,
            detail=out.error or "",
        ),
    }


def model_semantics(
    state: CloudOnlyState, runtime: Runtime[Settings], config: RunnableConfig
) -> dict[str, Any]:
    res = get_resources(runtime.context)
    step = Step("model_semantics", "cloud", 1)
    request = (state.get("request") or "").strip()
    profile = state.get("profile") or Profile()
    fallback = Intent(
        queries=[" ".join([request, *profile.genres, "movies"]).strip()[:200] or "popular movies"]
    )
    if not request:  # as in cdarec: nothing to interpret, no call
        return {"intent": fallback, "trace": step.done(status="skipped", detail="no request")}
    genres = res.dataset.genres
    out = call_structured(
        res.cloud.cloud_llm,
        Intent,
        res.cloud.prompts["model_semantics"].messages(**_cloud_values(res, state)),
        max_tokens=INTENT_MAX_TOKENS,
        json_schema=intent_json_schema(genres),
        context={"genres": set(genres)},
        fallback=lambda: fallback,
        config=config,
    )
    intent = out.value
    if request not in intent.queries:
        intent = intent.model_copy(update={"queries": [request, *intent.queries][:3]})
    return {
        "intent": intent,
        "trace": step.done(
            model=res.cloud.cloud_llm.name,
            usage=out.usage,
            status=out.status,
            detail=out.error or "",
        ),
    }


def retrieve_candidates(
    state: CloudOnlyState, runtime: Runtime[Settings], config: RunnableConfig
) -> dict[str, Any]:
    res = get_resources(runtime.context)
    step = Step("retrieve_candidates", "cloud", 1)
    scope = list(state.get("scope") or [])
    plan, intent = state.get("plan"), state["intent"]
    k = len(scope) if scope else (STRATEGIES[plan.strategy].k if plan else res.settings.retrieval_k)
    watched = set(res.device_record(res.settings.user_id).history_ids())
    searches = [
        RetrievalInput(
            query=q,
            k=k,
            genres=[] if scope else list(intent.genres),
            year_min=None if scope else intent.year_min,
            year_max=None if scope else intent.year_max,
            only_ids=scope,
        ).model_dump()
        for q in intent.queries
    ]
    results = make_retrieval_tool(res.cloud.catalogue).batch(searches, config=config)
    best: dict[str, dict[str, Any]] = {}
    for hits in results:
        for h in hits:
            if h["item_id"] in watched:
                continue
            if h["item_id"] not in best or h["similarity"] > best[h["item_id"]]["similarity"]:
                best[h["item_id"]] = h
    cands = sorted(best.values(), key=lambda h: -h["similarity"])
    return {"candidates": cands, "trace": step.done(detail=f"{len(cands)} candidates")}


def rank_in_cloud(
    state: CloudOnlyState, runtime: Runtime[Settings], config: RunnableConfig
) -> dict[str, Any]:
    res = get_resources(runtime.context)
    step = Step("rank_in_cloud", "cloud", 1)
    cands = state.get("candidates") or []
    top = cands[:RANK_TOP]
    out = None
    if top:
        numbered = numbered_candidates((h["label"], h["genres"]) for h in top)
        recent = "; ".join((state.get("history") or [])[-RECENT_FOR_RANK:]) or "nothing yet"
        out = call_structured(
            res.cloud.cloud_llm,
            CloudRanking,
            res.cloud.prompts["cloud_only_rank"].messages(
                recent=recent,
                request=(state.get("request") or "").strip() or "(none)",
                candidates=numbered,
            ),
            max_tokens=RANK_MAX_TOKENS,
            json_schema=ranking_schema(len(top)),
            context={"n": len(top)},
            fallback=lambda: CloudRanking(order=[]),
            config=config,
        )
    order = [n - 1 for n in out.value.order] if out else []
    order += [i for i in range(len(cands)) if i not in order]  # the rest by similarity
    reasons = out.value.reasons if out else []
    show = len(cands) if state.get("scope") else res.settings.show_top
    ranking = [
        RankedItem(
            rank=r,
            item_id=cands[i]["item_id"],
            label=cands[i]["label"],
            genres=tuple(cands[i]["genres"]),
            year=cands[i]["year"],
            score=float(len(order) - r),
            sources=("cloud",),
            reason=reasons[r - 1] if r - 1 < len(reasons) else "",
        )
        for r, i in enumerate(order[:show], 1)
    ]
    return {
        "ranking": ranking,
        "trace": step.done(
            model=res.cloud.cloud_llm.name if out else None,
            usage=out.usage if out else None,
            status=out.status if out else "skipped",
            detail=(out.error or "") if out else "nothing to rank",
        ),
    }


# The cloud-only agent's sub-tasks, in order: the history is read on the device and sent
# away; every other step runs in the cloud.
CHAIN: tuple[tuple[str, Callable[..., Any], str], ...] = (
    ("load_history", load_history, "device"),
    ("profile_user", profile_user, "cloud"),
    ("plan_strategy", plan_strategy, "cloud"),
    ("model_semantics", model_semantics, "cloud"),
    ("retrieve_candidates", retrieve_candidates, "cloud"),
    ("rank_in_cloud", rank_in_cloud, "cloud"),
)


def build_cloud_only_graph(checkpointer: Checkpointer = None) -> Any:
    g = StateGraph(CloudOnlyState, context_schema=Settings, input_schema=CloudOnlyInput)
    for name, fn, side in CHAIN:
        g.add_node(name, fn, metadata={"side": side})
    names = [START, *(name for name, _, _ in CHAIN), END]
    for a, b in itertools.pairwise(names):
        g.add_edge(a, b)
    return g.compile(checkpointer=checkpointer, name="cloud-only")
