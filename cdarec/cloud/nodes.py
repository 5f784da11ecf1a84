"""Cloud nodes: strategy planning, semantic modelling, candidate retrieval.

Each is registered with ``input_schema=CloudView`` (or a ``RetrievalTask`` sent to it),
so what it can read is fixed by the state's type: the request, the device's coarse
abstract, the plan, the queries and the catalogue candidates. Nothing here can reach
device memory; ``tests/integration/test_privacy.py`` checks every prompt and tool call.
"""

from __future__ import annotations

from typing import Any

from langchain_core.runnables import RunnableConfig
from langgraph.runtime import Runtime
from pydantic import BaseModel, Field, field_validator

from cdarec.graph.plan import PlanDraft, default_plan, draft_json_schema
from cdarec.graph.schemas import Candidate
from cdarec.graph.state import CloudView
from cdarec.graph.steps import Step
from cdarec.llm.structured import call_structured
from cdarec.runtime import get_resources
from cdarec.settings import Settings
from cdarec.tools.retrieval import RetrievalInput, make_retrieval_tool

PLAN_MAX_TOKENS = 160
QUERY_MAX_TOKENS = 80


class SemanticQueries(BaseModel):
    """What the semantic-modelling LLM writes."""

    queries: list[str] = Field(min_length=1, max_length=3)

    @field_validator("queries")
    @classmethod
    def _clean(cls, v: list[str]) -> list[str]:
        out = [" ".join(q.split())[:160] for q in v if q and q.strip()]
        if not out:
            raise ValueError("no non-empty query")
        return list(dict.fromkeys(out))


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
    res = get_resources(runtime.context)
    turn, abstract = state["turn"], state["abstract"]
    step = Step("plan_strategy", "cloud", turn)
    if res.settings.planner == "fixed":
        plan = default_plan(abstract, state.get("request") or "", res.settings.retrieval_k)
        return {"plan": plan, "trace": step.done(status="skipped", detail="fixed plan")}
    genres = res.dataset.genres
    messages = res.prompts["plan_strategy"].messages(**_cloud_values(res, state))
    out = call_structured(
        res.cloud_llm,
        PlanDraft,
        messages,
        max_tokens=PLAN_MAX_TOKENS,
        json_schema=draft_json_schema(genres),
        context={"genres": set(genres), "bucket": abstract.state.bucket},
        fallback=lambda: None,
        config=config,  # type: ignore[arg-type, return-value]
    )
    if out.fallback or out.value is None:
        plan = default_plan(abstract, state.get("request") or "", res.settings.retrieval_k)
        detail = f"fallback to default plan: {out.error}"
    else:
        plan = out.value.to_plan("repaired" if out.status == "repaired" else "planner")
        detail = plan.note
    return {
        "plan": plan,
        "trace": step.done(
            model=res.cloud_llm.name, usage=out.usage, status=out.status, detail=detail
        ),
    }


def fallback_queries(state: CloudView) -> SemanticQueries:
    """Documented fallback: the request itself, plus the abstract's genres."""
    abstract = state["abstract"]
    parts = [state.get("request") or ""]
    if abstract.top_genres:
        parts.append(" ".join(abstract.top_genres) + " movies")
    return SemanticQueries(queries=[" ".join(p for p in parts if p).strip() or "popular movies"])


def model_semantics(
    state: CloudView, runtime: Runtime[Settings], config: RunnableConfig
) -> dict[str, Any]:
    res = get_resources(runtime.context)
    step = Step("model_semantics", "cloud", state["turn"])
    messages = res.prompts["model_semantics"].messages(**_cloud_values(res, state))
    out = call_structured(
        res.cloud_llm,
        SemanticQueries,
        messages,
        max_tokens=QUERY_MAX_TOKENS,
        fallback=lambda: fallback_queries(state),
        config=config,
    )
    queries = out.value.queries
    request = (state.get("request") or "").strip()
    if request and request not in queries:
        # The user's own words are always searched too: small models paraphrase badly.
        queries = [request, *queries][:3]
    return {
        "queries": queries,
        "trace": step.done(
            model=res.cloud_llm.name,
            usage=out.usage,
            status=out.status,
            detail=out.error or " | ".join(queries),
        ),
    }


def retrieve_candidates(
    state: CloudView, runtime: Runtime[Settings], config: RunnableConfig
) -> dict[str, Any]:
    """One catalogue search per semantic query, run in parallel (``tool.batch``), with
    the plan's filters; results are merged by the ``candidates`` reducer."""
    res = get_resources(runtime.context)
    turn, plan = state["turn"], state["plan"]
    step = Step("retrieve_candidates", "cloud", turn)
    r = plan.retrieval
    searches = [
        RetrievalInput(
            query=q, k=r.k, genres=list(r.genres), year_min=r.year_min, year_max=r.year_max
        )
        for q in state.get("queries") or []
    ]
    tool = make_retrieval_tool(res.catalogue)
    results = tool.batch([s.model_dump() for s in searches], config=config) if searches else []
    candidates = [
        Candidate(
            turn=turn,
            item_id=h["item_id"],
            label=h["label"],
            genres=tuple(h["genres"]),
            year=h["year"],
            similarity=h["similarity"],
            query=s.query,
        )
        for s, hits in zip(searches, results, strict=True)
        for h in hits
    ]
    return {
        "candidates": candidates,
        "trace": step.done(detail=f"{len(candidates)} hits for {len(searches)} queries"),
    }
