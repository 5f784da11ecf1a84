"""Cloud nodes: strategy planning, semantic modelling, candidate retrieval.

Each is registered with ``input_schema=CloudView``, so what it can read is fixed by the
state's type: the request, the device's coarse abstract, the plan, the intent and the
catalogue candidates. Nothing here can reach device memory;
``tests/integration/test_privacy.py`` checks every prompt and tool call.
"""

from __future__ import annotations

from typing import Any

from langchain_core.runnables import RunnableConfig
from langgraph.runtime import Runtime

from cdarec.graph.plan import (
    PlanDraft,
    ablated,
    default_plan,
    plan_cache_key,
    request_kind,
)
from cdarec.graph.schemas import COLLABORATIVE, Candidate, Intent, intent_json_schema
from cdarec.graph.state import CloudView
from cdarec.graph.steps import Step
from cdarec.llm.structured import call_structured
from cdarec.runtime import get_resources
from cdarec.settings import Settings
from cdarec.tools.retrieval import (
    CollabInput,
    RetrievalInput,
    make_collab_tool,
    make_retrieval_tool,
)

PLAN_MAX_TOKENS = 120
INTENT_MAX_TOKENS = 60


def _request(state: CloudView) -> str:
    return (state.get("request") or "").strip() or "(no request: recommend what fits)"


def _cloud_values(res: Any, state: CloudView) -> dict[str, Any]:
    """The variables of every cloud prompt. Both cloud prompts start with the same
    system text, abstract and request, so the second call reuses the first's prefix."""
    return {
        "genres": ", ".join(res.dataset.genres),
        "retrieval_k": res.settings.retrieval_k,
        "abstract": state["abstract"].describe(),
        "request": _request(state),
    }


def plan_strategy(
    state: CloudView, runtime: Runtime[Settings], config: RunnableConfig
) -> dict[str, Any]:
    out = _plan_strategy(state, runtime, config)
    ablate = get_resources(runtime.context).settings.ablate
    return {**out, "plan": ablated(out["plan"], ablate)} if ablate else out


def _plan_strategy(
    state: CloudView, runtime: Runtime[Settings], config: RunnableConfig
) -> dict[str, Any]:
    res = get_resources(runtime.context)
    turn, abstract = state["turn"], state["abstract"]
    step = Step("plan_strategy", "cloud", turn)
    request = state.get("request") or ""
    if res.settings.planner == "fixed":
        plan = default_plan(abstract, request, res.settings.retrieval_k)
        return {"plan": plan, "trace": step.done(status="skipped", detail="fixed plan")}
    kind = request_kind(request, res.dataset.genres)
    key = plan_cache_key(abstract, kind)
    if res.settings.plan_cache and (cached := res.plan_cache.get(key)) is not None:
        plan = cached.model_copy(update={"source": "cached"})
        return {"plan": plan, "trace": step.done(status="cached", detail=f"reused for {kind}")}
    messages = res.prompts["plan_strategy"].messages(**_cloud_values(res, state))
    out = call_structured(
        res.cloud_llm,
        PlanDraft,
        messages,
        max_tokens=PLAN_MAX_TOKENS,
        context={"bucket": abstract.state.bucket},
        fallback=lambda: None,  # type: ignore[arg-type, return-value]
        config=config,
    )
    if out.fallback or out.value is None:
        plan = default_plan(abstract, request, res.settings.retrieval_k)
        detail = f"fallback to default plan: {out.error}"
    else:
        plan = out.value.to_plan("repaired" if out.status == "repaired" else "planner")
        res.plan_cache[key] = plan  # only plans the planner wrote are reused
        detail = f"{kind} request; {plan.note}"
    return {
        "plan": plan,
        "trace": step.done(
            model=res.cloud_llm.name, usage=out.usage, status=out.status, detail=detail
        ),
    }


def fallback_intent(state: CloudView) -> Intent:
    """Documented fallback: the request itself, plus the abstract's genres, no filters."""
    abstract = state["abstract"]
    parts = [state.get("request") or ""]
    if abstract.top_genres:
        parts.append(" ".join(abstract.top_genres) + " movies")
    return Intent(queries=[" ".join(p for p in parts if p).strip() or "popular movies"])


def model_semantics(
    state: CloudView, runtime: Runtime[Settings], config: RunnableConfig
) -> dict[str, Any]:
    res = get_resources(runtime.context)
    step = Step("model_semantics", "cloud", state["turn"])
    if not (state.get("request") or "").strip():
        # Nothing to interpret: the query comes from the abstract, no LLM call is made.
        intent = fallback_intent(state)
        detail = "no request: query from the abstract; " + " | ".join(intent.queries)
        return {"intent": intent, "trace": step.done(status="skipped", detail=detail)}
    genres = res.dataset.genres
    messages = res.prompts["model_semantics"].messages(**_cloud_values(res, state))
    out = call_structured(
        res.cloud_llm,
        Intent,
        messages,
        max_tokens=INTENT_MAX_TOKENS,
        json_schema=intent_json_schema(genres),
        context={"genres": set(genres)},
        fallback=lambda: fallback_intent(state),
        config=config,
    )
    intent = out.value
    request = (state.get("request") or "").strip()
    if request and request not in intent.queries:
        # The user's own words are always searched too: small models paraphrase badly.
        intent = intent.model_copy(update={"queries": [request, *intent.queries][:3]})
    filters = ", ".join(intent.genres)
    return {
        "intent": intent,
        "trace": step.done(
            model=res.cloud_llm.name,
            usage=out.usage,
            status=out.status,
            detail=out.error or " | ".join(intent.queries) + (f" [{filters}]" if filters else ""),
        ),
    }


def retrieve_candidates(
    state: CloudView, runtime: Runtime[Settings], config: RunnableConfig
) -> dict[str, Any]:
    """One catalogue search per query, run in parallel (``tool.batch``), with the
    intent's filters; results are merged by the ``candidates`` reducer."""
    res = get_resources(runtime.context)
    turn, plan, intent = state["turn"], state["plan"], state.get("intent")
    step = Step("retrieve_candidates", "cloud", turn)
    scope = list(state.get("scope") or [])
    # Within a given scope, every scoped item is scored and the scope is the filter.
    searches = [
        RetrievalInput(
            query=q,
            k=len(scope) if scope else plan.retrieval.k,
            genres=[] if scope else list(intent.genres),
            year_min=None if scope else intent.year_min,
            year_max=None if scope else intent.year_max,
            only_ids=scope,
        )
        for q in (intent.queries if intent else [])
    ]
    tool = make_retrieval_tool(res.catalogue)
    results = tool.batch([s.model_dump() for s in searches], config=config) if searches else []
    hits_by_query = [(s.query, hits) for s, hits in zip(searches, results, strict=True)]
    vector, collab_k = state.get("user_vector"), plan.retrieval.collab_k
    collab = res.collab_index if vector and collab_k else None
    if collab is not None:
        args = CollabInput(
            vector=list(vector or []),
            k=len(scope) if scope else collab_k,
            genres=[] if scope or not intent else list(intent.genres),
            year_min=None if scope or not intent else intent.year_min,
            year_max=None if scope or not intent else intent.year_max,
            only_ids=scope,
        )
        hits = make_collab_tool(collab).invoke(args.model_dump(), config=config)
        hits_by_query.append((COLLABORATIVE, hits))
    candidates = [
        Candidate(
            turn=turn,
            item_id=h["item_id"],
            label=h["label"],
            genres=tuple(h["genres"]),
            year=h["year"],
            similarity=h["similarity"],
            query=query,
        )
        for query, hits in hits_by_query
        for h in hits
    ]
    n_collab = sum(len(h) for q, h in hits_by_query if q == COLLABORATIVE)
    detail = f"{len(candidates) - n_collab} hits for {len(searches)} queries"
    if collab is not None:
        detail += f" + {n_collab} collaborative"
    return {"candidates": candidates, "trace": step.done(detail=detail)}
