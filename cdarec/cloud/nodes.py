"""Cloud side: the cloud's nodes — strategy planning, semantic modelling, candidate
retrieval, and the judgement of a cold-start device's shortlist.

Each is registered with ``input_schema=CloudView``, so what it can read is fixed by the
state's type: the request, the device's coarse abstract, the plan, the intent and the
catalogue candidates. Nothing here can reach device memory;
``tests/integration/test_privacy.py`` checks every prompt and tool call.
"""

from __future__ import annotations

from typing import Any

from langchain_core.runnables import RunnableConfig
from langgraph.runtime import Runtime

from cdarec.cloud.resources import CloudResources, cloud_resources
from cdarec.cloud.tools import (
    CollabInput,
    RetrievalInput,
    make_collab_tool,
    make_retrieval_tool,
)
from cdarec.contract.judgement import (
    JUDGE_PICKS,
    CloudJudgement,
    Judgement,
    judge_max_tokens,
    judgement_schema,
    numbered_candidates,
    salvage_judgement,
)
from cdarec.contract.placement import Placement, proposed
from cdarec.contract.plan import (
    PlanDraft,
    ablated,
    choose_strategy,
    default_plan,
    plan_cache_key,
    plan_for,
    request_kind,
    rule_is_sure,
)
from cdarec.contract.request import MAX_REQUEST_CHARS, Constraints, parse_request
from cdarec.contract.schemas import COLLABORATIVE, Candidate
from cdarec.contract.semantics import (
    code_intent,
    describe,
    interpret,
    prompt_values,
)
from cdarec.contract.state import CloudView
from cdarec.contract.steps import Step
from cdarec.llm.structured import call_structured
from cdarec.settings import Settings

PLAN_MAX_TOKENS = 16  # '{"strategy": "request-led"}' is ~8 tokens


def _cloud_values(res: CloudResources, state: CloudView) -> dict[str, Any]:
    """The variables of every cloud prompt (``contract.semantics.prompt_values``)."""
    return prompt_values(
        res.dataset.genres,
        res.settings.retrieval_k,
        state["abstract"],
        state.get("request") or "",
        state.get("constraints"),
    )


def read_request(res: CloudResources, request: str) -> Constraints:
    """The request's constraints, read by code against the public catalogue."""
    return parse_request(request, res.vocabulary, res.latest_year)


def plan_strategy(
    state: CloudView, runtime: Runtime[Settings], config: RunnableConfig
) -> dict[str, Any]:
    res = cloud_resources(runtime.context)
    revived = res.revive_cloud_llm()  # the turn's first cloud step: is the server up?
    out = _plan_strategy(state, runtime, config)
    if revived:
        out["trace"] = [
            r.model_copy(update={"detail": f"the cloud server had stopped: restarted; {r.detail}"})
            for r in out["trace"]
        ]
    ablate = res.settings.ablate
    return {**out, "plan": ablated(out["plan"], ablate)} if ablate else out


def _plan_strategy(
    state: CloudView, runtime: Runtime[Settings], config: RunnableConfig
) -> dict[str, Any]:
    res = cloud_resources(runtime.context)
    turn, abstract = state["turn"], state["abstract"]
    step = Step("plan_strategy", "cloud", turn)
    request = state.get("request") or ""
    constraints = read_request(res, request)
    state = {**state, "constraints": constraints}
    reading = f"read: {constraints.describe()}"
    placement = placed(state)
    mode = res.settings.planner
    if mode == "fixed" or (mode == "auto" and rule_is_sure(constraints, request)):
        plan = default_plan(abstract, request, res.settings.retrieval_k, constraints, placement)
        why = "fixed plan" if mode == "fixed" else "the rule decided (nothing left unread)"
        return {
            "plan": plan,
            "constraints": constraints,
            "trace": step.done(
                status="skipped", detail=f"{why}: {plan.strategy} ({plan.note}); {reading}"
            ),
        }
    kind = request_kind(request, constraints)
    key = plan_cache_key(abstract, kind)
    fits = {"bucket": abstract.state.bucket, "like_items": bool(constraints.like_items)}
    cached = res.plan_cache.get(key) if res.settings.plan_cache else None
    if cached is not None and not _fits(cached.strategy, fits):
        cached = None  # a reused plan must fit this request as a fresh one would
    if cached is not None:
        # The note says why for this request, not for the one the plan was written for.
        rule, why = choose_strategy(abstract, constraints, request)
        note = f"as the planner chose for {kind} requests; the rule: {rule} ({why})"
        plan = cached.model_copy(
            update={
                "source": "cached",
                "placement": placement.for_weight(cached.weights.judge),
                "note": note[:200],
            }
        )
        return {
            "plan": plan,
            "constraints": constraints,
            "trace": step.done(
                status="cached", detail=f"{plan.strategy} reused for {kind}; {reading}"
            ),
        }
    messages = res.prompts["plan_strategy"].messages(**_cloud_values(res, state))
    out = call_structured(
        res.cloud_llm,
        PlanDraft,
        messages,
        max_tokens=PLAN_MAX_TOKENS,
        context=fits,
        fallback=lambda: None,  # type: ignore[arg-type, return-value]
        config=config,
    )
    if out.fallback or out.value is None:
        plan = default_plan(abstract, request, res.settings.retrieval_k, constraints, placement)
        detail = f"fallback to {plan.strategy} ({plan.note}): {out.error}"
    else:
        rule, why = choose_strategy(abstract, constraints, request)
        chosen = out.value.strategy
        note = f"the rule would take {rule} ({why})" if chosen != rule else f"as the rule: {why}"
        plan = plan_for(
            chosen,
            abstract,
            res.settings.retrieval_k,
            why=note,
            source="repaired" if out.status == "repaired" else "planner",
            placement=placement,
            request=request,
        )
        res.plan_cache[key] = plan  # only plans the planner wrote are reused
        detail = f"{kind} request: {chosen} ({note})"
    return {
        "plan": plan,
        "constraints": constraints,
        "trace": step.done(
            model=res.cloud_llm.name,
            usage=out.usage,
            status=out.status,
            detail=f"{detail}; {reading}",
        ),
    }


def placed(state: CloudView) -> Placement:
    """The placement the device measured and proposed for this turn, within the privacy
    constraints (``enforce``; the device checks it again before it acts on the plan)."""
    return proposed(state)


def _fits(strategy: str, context: dict[str, Any]) -> bool:
    try:
        PlanDraft.model_validate({"strategy": strategy}, context=context)
    except ValueError:
        return False
    return True


def model_semantics(
    state: CloudView, runtime: Runtime[Settings], config: RunnableConfig
) -> dict[str, Any]:
    """Semantic modelling in the cloud: the cloud LLM (``contract.semantics.interpret``)."""
    res = cloud_resources(runtime.context)
    if state["plan"].placement.planning == "device":
        res.revive_cloud_llm()  # the turn's first cloud step (the device planned)
    step = Step("model_semantics", "cloud", state["turn"])
    request = (state.get("request") or "").strip()
    abstract = state["abstract"]
    constraints = state.get("constraints") or read_request(res, request)
    if (coded := code_intent(request, abstract, constraints)) is not None:
        intent, detail = coded
        return {"intent": intent, "trace": step.done(status="skipped", detail=detail)}
    values = _cloud_values(res, {**state, "constraints": constraints})
    intent, out = interpret(
        res.cloud_llm,
        res.prompts["model_semantics"],
        values,
        res.dataset.genres,
        request,
        abstract,
        config,
    )
    return {
        "intent": intent,
        "trace": step.done(
            model=res.cloud_llm.name,
            usage=out.usage,
            status=out.status,
            detail=describe(intent, out),
        ),
    }


RELAX_MIN_HITS = 10  # a filter level that finds fewer is relaxed (Constraints.relaxations)


def filters_for(constraints: Constraints | None, scope: list[str], k: int) -> dict[str, Any]:
    """The catalogue filters of one search: the request's constraints, or, within a given
    scope (an evaluation's candidate list), every scoped item and the scope as the filter."""
    if scope:
        return {"k": len(scope), "only_ids": scope}
    c = constraints or Constraints()
    return {
        "k": k,
        "genres": list(c.genres),
        "genre_mode": c.genre_mode,
        "exclude_genres": [*c.exclude_genres, *c.avoid_genres],
        "year_min": c.year_min,
        "year_max": c.year_max,
    }


def retrieve_candidates(
    state: CloudView, runtime: Runtime[Settings], config: RunnableConfig
) -> dict[str, Any]:
    """One catalogue search per query, run in parallel (``tool.batch``), within the
    request's constraints (relaxed in their stated order while the first query finds
    fewer than ``RELAX_MIN_HITS``); results are merged by the ``candidates`` reducer."""
    step = Step("retrieve_candidates", "cloud", state["turn"])
    try:
        return _retrieve_candidates(state, runtime, config, step)
    except Exception as err:
        detail = f"the cloud's catalogue failed ({type(err).__name__}: {str(err)[:120]})"
        return {"candidates": [], "trace": step.done(status="error", detail=detail)}


def _retrieve_candidates(
    state: CloudView, runtime: Runtime[Settings], config: RunnableConfig, step: Step
) -> dict[str, Any]:
    res = cloud_resources(runtime.context)
    turn, plan, intent = state["turn"], state["plan"], state.get("intent")
    scope = list(state.get("scope") or [])
    # Each query within the search's bound (an LLM may write a long one); none empty.
    queries = [q.strip()[:MAX_REQUEST_CHARS] for q in (intent.queries if intent else [])]
    queries = [q for q in dict.fromkeys(queries) if q]
    tool = make_retrieval_tool(res.catalogue)
    levels = [None] if scope else (state.get("constraints") or Constraints()).relaxations()
    constraints = levels[0]
    results: list[Any] = []
    tried: list[dict[str, Any]] = []
    for constraints in levels:
        filters = filters_for(constraints, scope, plan.retrieval.k)
        if filters in tried:  # a level that relaxes only what the search does not filter
            continue
        tried.append(filters)
        searches = [RetrievalInput(query=q, **filters) for q in queries]
        results = tool.batch([x.model_dump() for x in searches], config=config) if searches else []
        if scope or not results or len(results[0]) >= min(RELAX_MIN_HITS, plan.retrieval.k):
            break
    hits_by_query = [(q, hits) for q, hits in zip(queries, results, strict=True)]
    vector, collab_k = state.get("user_vector"), plan.retrieval.collab_k
    collab = res.collab_index if vector and collab_k else None
    if collab is not None:
        args = CollabInput(vector=list(vector or []), **filters_for(constraints, scope, collab_k))
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
    detail = f"{len(candidates) - n_collab} hits for {len(queries)} queries"
    if collab is not None:
        detail += f" + {n_collab} collaborative"
    if constraints is not None and constraints.relaxed:
        detail += "; relaxed: " + ", ".join(constraints.relaxed)
    return {"candidates": candidates, "trace": step.done(detail=detail)}


def judge_on_cloud(
    state: CloudView, runtime: Runtime[Settings], config: RunnableConfig
) -> dict[str, Any]:
    """The judgement in the cloud, for a device that holds no private history (the device
    sends a ``shortlist`` only then): the cloud LLM picks the best fit of the shortlist
    for the request and writes its reason. It reads the catalogue's facts of the ids it
    was sent, the abstract and the request; the device checks each reason before it
    shows it (``device.nodes.respond``)."""
    res = cloud_resources(runtime.context)
    turn = state["turn"]
    step = Step("judge_on_cloud", "cloud", turn)
    ds = res.dataset
    ids = [i for i in dict.fromkeys(state.get("shortlist") or []) if i in ds.item_index][:20]
    if not ids:
        return {
            "cloud_judgement": None,
            "trace": step.done(status="skipped", detail="no shortlist"),
        }
    items = [ds.items[ds.item_index[i]] for i in ids]
    numbered = numbered_candidates((it.label(), it.genres) for it in items)
    values = _cloud_values(res, state)
    messages = res.prompts["judge_on_cloud"].messages(**values, candidates=numbered)
    picks = min(len(ids), JUDGE_PICKS)
    out = call_structured(
        res.cloud_llm,
        Judgement,
        messages,
        max_tokens=judge_max_tokens(picks),
        json_schema=judgement_schema(len(ids), picks),
        context={"n": len(ids)},
        fallback=lambda: Judgement(picks=[]),
        salvage=lambda raw: salvage_judgement(raw, len(ids)),
        config=config,
    )
    detail = f"picked {len(out.value.picks)} of {len(ids)} (a device with no private history)"
    if out.error:
        detail += f"; {out.error}"
    return {
        "cloud_judgement": CloudJudgement(turn=turn, ids=ids, picks=out.value.picks),
        "trace": step.done(
            model=res.cloud_llm.name, usage=out.usage, status=out.status, detail=detail
        ),
    }
