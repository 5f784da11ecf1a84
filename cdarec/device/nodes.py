"""Device side: the device's nodes — user abstract, structured user modelling, final ranking, reply.

They read the private history from device memory through the run context (never from
the graph state) and write back only what the state's types allow: the coarse
abstract for the cloud, and proposals / ranking / reply for the user on the device.
"""

from __future__ import annotations

import re
from collections.abc import Collection, Sequence
from typing import Any

import numpy as np
from langchain_core.runnables import RunnableConfig
from langgraph.runtime import Runtime

from cdarec.contract.judgement import (
    JUDGE_PICKS,
    Judgement,
    judge_max_tokens,
    judgement_schema,
    numbered_candidates,
    salvage_judgement,
)
from cdarec.contract.placement import CLOUD_JUDGE, Placement, enforce, placement_for, proposed
from cdarec.contract.plan import Weights, ablated, default_plan, plan_for, runs_collab
from cdarec.contract.request import Constraints, clean_request, parse_request
from cdarec.contract.schemas import COLLABORATIVE, Intent, Proposal, RankedItem, UserAbstract
from cdarec.contract.semantics import (
    code_intent,
    describe,
    fallback_intent,
    interpret,
    prompt_values,
)
from cdarec.contract.state import State
from cdarec.contract.steps import Step
from cdarec.device.abstract import release, summarize
from cdarec.device.memory import DeviceRecord
from cdarec.device.query_check import checked_queries
from cdarec.device.ranking import PoolItem, apply_judgement, fuse
from cdarec.device.reasons import ItemFacts, ReasonFacts, check_reason, fact_reason
from cdarec.device.recent import item_text
from cdarec.device.resources import DeviceResources, device_resources
from cdarec.device.sharing import device_key, shared_vector
from cdarec.llm.structured import Usage, call_structured
from cdarec.seqrec.structured import catalogue_structured, structured_blend
from cdarec.seqrec.transition import top_k
from cdarec.settings import Settings

RECENT_FOR_JUDGE = 5
RECENT_FOR_REASONS = 50  # a reason may point to any of the last 50 films watched


def _thread(config: RunnableConfig | None) -> str | None:
    return ((config or {}).get("configurable") or {}).get("thread_id")


def _turn_key(config: RunnableConfig | None, turn: int) -> str | None:
    """This turn among the device's turns in flight (``ContextMonitor.turn_started``)."""
    thread = _thread(config)
    return f"{thread}#{turn}" if thread else None


def summarize_on_device(
    state: State, runtime: Runtime[Settings], config: RunnableConfig
) -> dict[str, Any]:
    res = device_resources(runtime.context)
    res.new_turn()
    turn = int(state.get("turn") or 0) + 1
    step = Step("summarize_on_device", "device", turn)
    rec = res.device_record(res.settings.user_id)
    s = res.settings
    abstract, level, vector = shared_with_cloud(res, rec)
    detail = abstract.describe()
    if level:
        shared = f"shared by >= {s.abstract_k} users" if s.abstract_k else "the bucket alone"
        detail += f" (generalised to level {level}: {shared})"
    if vector is not None:
        detail += "; user vector sent" + (f" (sigma {s.collab_noise:g})" if s.collab_noise else "")
    others = res.context_monitor.turn_started(_turn_key(config, turn))
    context, measured = res.context_monitor.snapshot(s, others)
    placement = placement_for(s.placement, context, cold=holds_no_history(rec))
    detail += f"; context: {context.describe()} ({measured}); placement: {placement.describe()}"
    anchor = state.get("anchor")
    if anchor not in res.dataset.item_index:
        anchor = None
    elif anchor is not None:
        detail += "; more like a shown item (bound here; the cloud is not told which)"
    return {
        "turn": turn,
        "anchor": anchor,
        "context": context,
        "placement": placement,
        # What every later node reads: control characters out, bounded (a request over the
        # bound ends the turn with RequestError's message, whoever called the graph).
        "request": clean_request(state.get("request") or ""),
        "abstract": abstract,
        "user_vector": vector,
        "intent": None,
        "shortlist": None,
        "cloud_judgement": None,
        "ranking": [],
        "bound": None,
        "notes": [],
        "reply": "",
        "trace": step.done(detail=detail),
    }


def shared_with_cloud(
    res: DeviceResources, rec: DeviceRecord, key: bytes | None = None
) -> tuple[UserAbstract, int, list[float] | None]:
    """What a turn tells the cloud about the user: the released abstract (and its level)
    and, with collaborative retrieval in the cloud on a turn that searches with it, the
    unit (noised) user vector - never the sequence. ``key``: the noise key (default:
    this device's own)."""
    s = res.settings
    table = res.abstract_table if s.abstract_k >= 2 else None  # only k-anonymity counts
    abstract, level = release(summarize(rec, res.dataset, res.dataset_end), table, s.abstract_k)
    model = res.sequence_model
    if not (
        s.collab_side == "cloud"
        and s.privacy != "strict"  # strict: the cloud gets the request and the abstract only
        and rec.history
        and hasattr(model, "user_vector")
        and runs_collab(abstract, s.ablate)
    ):
        return abstract, level, None
    raw = model.user_vector(sequence_input(res, rec))
    return abstract, level, shared_vector(raw, s.collab_noise, key or device_key(s.device_dir))


def holds_no_history(rec: DeviceRecord) -> bool:
    """A cold-start device: nothing watched, no feedback (likes, dislikes, avoided genres)."""
    return not rec.history and not rec.feedback


def cloud_shortlist(
    res: DeviceResources, rec: DeviceRecord, state: State, pool: Sequence[PoolItem], m: int
) -> tuple[list[str] | None, str]:
    """The shortlist the device sends for the cloud's judgement, and what it says of it:
    the catalogue ids of the fused top ``m`` - only when the plan places the judgement on
    the cloud *and* this device holds no private history (checked here, from its own
    memory, whatever the plan says), no "more like" click is bound this turn, the user's
    privacy is standard, and the list is not an evaluation's scope. Otherwise None: the
    device judges itself."""
    if placed(state).judge != CLOUD_JUDGE:
        return None, ""
    why = (
        "it reads this user's history"
        if not holds_no_history(rec)
        else "a 'more like' click is private feedback"
        if state.get("anchor")
        else "privacy strict"
        if res.settings.privacy == "strict"
        else ""
    )
    if why:
        return None, f"; the judgement stays on the device ({why})"
    if state.get("scope") or not pool or m <= 0:
        return None, "; nothing for the cloud to judge"
    return [p.item_id for p in pool[:m]], "; the cloud LLM judges (a device with no history)"


def with_cloud_judgement(
    res: DeviceResources, state: State, ranking: list[RankedItem]
) -> tuple[list[RankedItem], str]:
    """The cloud's judgement of this turn's shortlist applied on the device, as the SLM's
    is in ``rank_on_device``: its order one signal (the plan's judge weight), each
    reason checked against the catalogue's facts and shown only if true."""
    j = state.get("cloud_judgement")
    if j is None or j.turn != state.get("turn") or not ranking:
        return ranking, ""
    weight = state["plan"].weights.judge
    k = len(j.picks)
    bonus = {
        j.ids[pick.n - 1]: 1.0 - pos / max(k, 1) * 0.5
        for pos, pick in enumerate(j.picks)
        if pick.n <= len(j.ids)
    }
    reasons = {j.ids[pick.n - 1]: pick.reason for pick in j.picks if pick.n <= len(j.ids)}
    bound = state.get("bound")
    allowed = list(bound.like_labels) if bound else []
    out, used, rejected = [], 0, 0
    for r in ranking:
        update: dict[str, Any] = {}
        if r.item_id in bonus:
            update["score"] = round(r.score + weight * bonus[r.item_id], 4)
            update["parts"] = {**r.parts, "judge": round(bonus[r.item_id], 4)}
        reason = reasons.get(r.item_id, "")
        facts = ItemFacts(r.label, r.genres, r.year)
        if reason and not check_reason(reason, facts, res.vocabulary, allowed):
            if len(_words(reason) - _words(r.label)) >= 3:
                update |= {"reason": reason, "reason_source": "cloud", "grounded": True}
                used += 1
        elif reason:
            rejected += 1
        out.append(r.model_copy(update=update))
    if not (bound is not None and bound.relaxed):  # after a relaxation the closest lead
        out.sort(key=lambda r: -r.score)
        out = [r.model_copy(update={"rank": n}) for n, r in enumerate(out, 1)]
    detail = f"; the cloud's judgement: {k} pick(s), {used} reason(s) shown"
    if rejected:
        detail += f", {rejected} failed the fact check (kept the device's)"
    return out, detail


def placed(state: State) -> Placement:
    """The placement the device acts on after planning: this turn's plan's (whoever wrote
    it), re-checked (``contract.placement.enforce``)."""
    plan = state.get("plan")
    return enforce(plan.placement) if plan is not None else proposed(state)


def plan_on_device(
    state: State, runtime: Runtime[Settings], config: RunnableConfig
) -> dict[str, Any]:
    """Planning on the device (the cloud is slow or unreachable): the rule's strategy
    (``choose_strategy``, the planner's own fallback) for the request as the public
    parser reads it; no model call."""
    res = device_resources(runtime.context)
    step = Step("plan_on_device", "device", state["turn"])
    request = state.get("request") or ""
    constraints = parse_request(request, res.vocabulary, res.latest_year)
    placement = proposed(state)  # this turn's proposal
    plan = default_plan(
        state["abstract"], request, res.settings.retrieval_k, constraints, placement
    )
    if res.settings.ablate:
        plan = ablated(plan, res.settings.ablate)
    detail = f"{plan.strategy} ({plan.note}); read: {constraints.describe()}; {placement.why}"
    return {"plan": plan, "constraints": constraints, "trace": step.done(detail=detail)}


def model_semantics_on_device(
    state: State, runtime: Runtime[Settings], config: RunnableConfig
) -> dict[str, Any]:
    """Semantic modelling on the device: the device SLM with the same schema and code paths
    as the cloud (``contract.semantics.interpret``) and a short prompt of its own that
    gives it the request alone; every query it writes is checked by code to name no film
    of the history before it reaches the cloud's retrieval (``device.query_check``)."""
    res = device_resources(runtime.context)
    step = Step("model_semantics_on_device", "device", state["turn"])
    request = (state.get("request") or "").strip()
    abstract = state["abstract"]
    constraints = state.get("constraints") or Constraints()
    if (coded := code_intent(request, abstract, constraints)) is not None:
        intent, detail = coded
        return {"intent": intent, "trace": step.done(status="skipped", detail=detail)}
    if not placed(state).device_model:
        intent = fallback_intent(request, abstract)
        detail = "no device model call (device busy or on low power), the request's words: "
        return {
            "intent": intent,
            "trace": step.done(status="skipped", detail=detail + " | ".join(intent.queries)),
        }
    values = prompt_values(
        res.dataset.genres, res.settings.retrieval_k, abstract, request, constraints
    )
    intent, out = interpret(
        res.device_llm,
        res.prompts["model_semantics_device"],
        values,
        res.dataset.genres,
        request,
        abstract,
        config,
    )
    rec = res.device_record(res.settings.user_id)
    titles = [res.dataset.items[int(i)].title for i in res.history_indices(rec)]
    kept, caught = checked_queries(intent.queries, titles, request)
    detail = describe(intent.model_copy(update={"queries": kept}), out)
    if caught:
        kept = kept or [request]
        detail += f"; {len(caught)} quer(ies) named a watched film: dropped"
    return {
        "intent": Intent(queries=kept or [request], genres=intent.genres),
        "trace": step.done(
            model=res.device_llm.name, usage=out.usage, status=out.status, detail=detail
        ),
    }


def retrieve_on_device(
    state: State, runtime: Runtime[Settings], config: RunnableConfig
) -> dict[str, Any]:
    """Retrieval on the device: the intent's queries searched in the device's index of
    what the cloud retrieved for this user lately (``device.recent``), within the
    request's constraints; the hits join the pool as semantic candidates."""
    res = device_resources(runtime.context)
    turn, plan, intent = state["turn"], state["plan"], state.get("intent")
    step = Step("retrieve_on_device", "device", turn)
    user = res.settings.user_id or ""
    rec = res.device_record(user)
    excluded = excluded_indices(res, rec, _thread(config), state.get("scope"))
    _, eligible = bound_eligible(res, state, excluded)
    ds = res.dataset
    queries = list(intent.queries) if intent else []
    hits = res.recent_index.search(
        user,
        queries,
        eligible,
        lambda i: item_text(ds.items[i].label(), ds.items[i].genres),
        plan.retrieval.k,
    )
    proposals = [
        Proposal(turn=turn, item_id=ds.items[i].item_id, score=sim, source="semantic")
        for i, sim in hits
    ]
    size = len(res.recent_index.items(user))
    detail = f"{len(hits)} hits for {len(queries)} queries in the device's index of {size} items"
    return {"proposals": proposals, "trace": step.done(detail=detail)}


def excluded_indices(
    res: DeviceResources, rec: DeviceRecord, thread: str | None, scope: list[str] | None = None
) -> np.ndarray:
    """Items not to recommend: already watched, disliked, or shown in this session, and
    with a scope, everything outside it."""
    index = res.dataset.item_index
    ids = set(rec.history_ids()) | rec.disliked()
    if thread:
        ids |= set(rec.shown.get(thread, []))
    banned = {index[i] for i in ids if i in index}
    if scope:
        inside = np.zeros(res.dataset.n_items, dtype=bool)
        inside[[index[i] for i in scope if i in index]] = True
        banned |= set(np.flatnonzero(~inside).tolist())
    return np.array(sorted(banned), dtype=np.int64)


def sequence_input(res: DeviceResources, rec: DeviceRecord) -> np.ndarray:
    """The behaviour sequence the structured model reads: the full private history, with
    'more like' anchors appended as the most recent events (live feedback)."""
    hist = res.history_indices(rec)
    anchors = [
        res.dataset.item_index[i]
        for i in reversed(rec.anchors()[:2])
        if i in res.dataset.item_index
    ]
    return np.concatenate([hist, np.array(anchors, dtype=np.int64)]) if anchors else hist


def structured_scores(
    res: DeviceResources, rec: DeviceRecord, excluded: np.ndarray
) -> tuple[np.ndarray, str]:
    """The device's structured signal for every catalogue item (``-inf`` for excluded
    ones), over the full private history: the trained model, with the transition model
    blended in as the ensemble's second member when SASRec leads (at the weight chosen
    for the model on validation, ``structured_blend``). Proposals and the
    pool's ``sequence`` scores both come from it."""
    seq_in = sequence_input(res, rec)
    model = res.sequence_model
    if not len(seq_in):  # nothing watched: the catalogue's popularity (its back-off)
        model = res.transition_model
    scores = model.scores(seq_in)
    second = None
    name = model.name if len(seq_in) else "popularity (no history)"
    if model is not res.transition_model and len(seq_in):
        second, name = res.transition_model.scores(seq_in), f"{model.name}+transition"
    eligible = np.ones(res.dataset.n_items, dtype=bool)
    eligible[excluded] = False
    return catalogue_structured(scores, second, eligible, structured_blend(model)), name


def anchored(
    res: DeviceResources, state: State, constraints: Constraints | None
) -> Constraints | None:
    """The constraints with this turn's private "more like N" item (``State.anchor``)
    as the film the request names: the device binds it itself, so the cloud, sent the
    turn without it, never learns which shown item the person wanted more of."""
    anchor = state.get("anchor")
    if not anchor or anchor not in res.dataset.item_index:
        return constraints
    base = constraints or Constraints()
    if anchor in base.like_items:
        return base
    label = res.dataset.item(anchor).label()
    return base.model_copy(
        update={
            "like_items": [anchor, *base.like_items][:3],
            "like_labels": [label, *base.like_labels][:3],
        }
    )


def anchor_weights(res: DeviceResources, state: State) -> Weights:
    """The fusion weights of a "more like N" turn: the similar-to strategy's (chosen on
    validation, ``contract.plan.STRATEGIES``), which the cloud's plan for a turn without
    a request cannot have chosen."""
    plan = plan_for("similar-to", state["abstract"], res.settings.retrieval_k)
    return ablated(plan, res.settings.ablate).weights


def bound_eligible(
    res: DeviceResources, state: State, excluded: np.ndarray
) -> tuple[Constraints | None, np.ndarray]:
    """The request's constraints at the strictest level that leaves enough unseen items
    (``CatalogueFacts.bind``), and the mask of items that may be shown. The device reads
    the cloud's reading of the request; the cloud never reads the history."""
    eligible = np.ones(res.dataset.n_items, dtype=bool)
    eligible[excluded] = False
    constraints = state.get("constraints")
    if constraints is None or not constraints.binding or state.get("scope"):
        return constraints, eligible
    level, mask = res.catalogue_facts.bind(constraints, eligible, res.settings.show_top)
    return level, mask


def model_sequence_on_device(
    state: State, runtime: Runtime[Settings], config: RunnableConfig
) -> dict[str, Any]:
    res = device_resources(runtime.context)
    turn = state["turn"]
    step = Step("model_sequence_on_device", "device", turn)
    rec = res.device_record(res.settings.user_id)
    scope = state.get("scope")
    excluded = excluded_indices(res, rec, _thread(config), scope)
    scores, name = structured_scores(res, rec, excluded)
    constraints, eligible = bound_eligible(res, state, excluded)
    k = len(scope) if scope else res.settings.sequence_k
    idx = top_k(np.where(eligible, scores, -np.inf), k, np.flatnonzero(~eligible))
    proposals = [
        Proposal(turn=turn, item_id=res.dataset.items[int(i)].item_id, score=float(scores[i]))
        for i in idx
    ]
    collab = device_collab(res, rec, state, eligible, set(idx.tolist()))
    proposals += [
        Proposal(
            turn=turn,
            item_id=res.dataset.items[i].item_id,
            score=float(scores[i]),
            source=COLLABORATIVE,
        )
        for i in collab
    ]
    within = f" within {constraints.describe()}" if constraints and constraints.binding else ""
    detail = f"{len(idx)} proposals{within} from {len(rec.history)} events"
    if collab:
        detail += f" + {len(collab)} collaborative (on the device)"
    return {"proposals": proposals, "trace": step.done(model=name, detail=detail)}


def device_collab(
    res: DeviceResources,
    rec: DeviceRecord,
    state: State,
    eligible: np.ndarray,
    taken: set[int],
) -> list[int]:
    """Collaborative retrieval on the device (``collab_side = "device"``, the default):
    the model's own user vector against its item table - the search the cloud would run
    with the vector (``cloud/catalogue/collab.py``) - within the request's constraints,
    among unseen items the proposals do not already hold. The vector never leaves."""
    k = state["plan"].retrieval.collab_k if state.get("plan") else 0
    model = res.sequence_model
    if res.settings.collab_side != "device" or not k or not hasattr(model, "user_vector"):
        return []
    if not rec.history:
        return []
    raw = model.scores(sequence_input(res, rec))
    free = eligible.copy()
    free[list(taken)] = False
    return [int(i) for i in top_k(np.where(free, raw, -np.inf), k, np.flatnonzero(~free))]


def _pool(
    res: DeviceResources,
    state: State,
    rec: DeviceRecord,
    eligible: np.ndarray,
    extra: Sequence[int],
) -> list[PoolItem]:
    """Every candidate the cloud retrieved and the device proposed that may be shown
    (``eligible``: unseen, not disliked, within the request's constraints), plus the
    device's own ``extra`` items (the named film's neighbours)."""
    turn = state["turn"]
    ds = res.dataset
    avoid = set(rec.avoided_genres())
    pool: dict[str, PoolItem] = {}

    def add(item_id: str, source: str) -> PoolItem | None:
        idx = ds.item_index.get(item_id)
        if idx is None or not eligible[idx]:
            return None
        item = ds.items[idx]
        if avoid and avoid & set(item.genres):
            return None
        p = pool.get(item_id)
        if p is None:
            p = pool[item_id] = PoolItem(item_id, item.label(), item.genres, item.year)
        p.sources.add(source)
        return p

    for c in state.get("candidates") or []:
        if c.turn != turn:
            continue
        if c.query == COLLABORATIVE:  # scored by the sequence model below, like proposals
            add(c.item_id, "collaborative")
        elif (p := add(c.item_id, "semantic")) is not None:
            p.semantic = max(p.semantic, c.similarity)
    for pr in state.get("proposals") or []:
        if pr.turn != turn:
            continue
        if pr.source == "semantic":  # retrieved on the device (``retrieve_on_device``)
            if (p := add(pr.item_id, "semantic")) is not None:
                p.semantic = max(p.semantic, pr.score)
        else:
            add(pr.item_id, "collaborative" if pr.source == COLLABORATIVE else "sequence")
    for i in extra:
        add(ds.items[int(i)].item_id, "similar")
    if not pool:  # nothing retrieved or proposed: popularity keeps the turn useful
        for i in top_k(ds.popularity.astype(np.float64), 30, np.flatnonzero(~eligible)):
            add(ds.items[int(i)].item_id, "popularity")
    return list(pool.values())


def _words(text: str) -> set[str]:
    return set(re.findall(r"[a-z0-9']+", text.lower()))


def _mask_of(indices: Sequence[int], n: int) -> np.ndarray:
    out = np.zeros(n, dtype=bool)
    out[list(indices)] = True
    return out


def strictness(
    asked: Constraints | None,
    bound: Constraints | None,
    pool: Sequence[PoolItem],
) -> dict[str, int]:
    """For each pool item, how many relaxation steps it needs: 0 meets the request as
    asked. Empty when nothing was relaxed (every item meets it)."""
    if asked is None or bound is None or not bound.relaxed:
        return {}
    levels = asked.relaxations()
    out = {}
    for p in pool:
        out[p.item_id] = next(
            (n for n, c in enumerate(levels) if c.satisfied_by(p.genres, p.year)), len(levels)
        )
    return out


def unit_item_vectors(model: object) -> np.ndarray | None:
    """The structured model's item vectors scaled to length 1 (None without vectors)."""
    if not hasattr(model, "item_vectors"):
        return None
    vecs = model.item_vectors()
    return vecs / np.maximum(np.linalg.norm(vecs, axis=1, keepdims=True), 1e-9)


def likeness(res: DeviceResources, anchors: Sequence[int]) -> np.ndarray:
    """How like the named films each catalogue item is: cosine in the structured model's
    item space (its neighbours; the transition model's rows without one), averaged with
    the share of genres in common (Jaccard)."""
    ds, model = res.dataset, res.sequence_model
    if (unit := unit_item_vectors(model)) is not None:
        near = (unit @ unit[list(anchors)].T).max(axis=1)
    else:
        rows = [res.transition_model.scores(np.array([a], dtype=np.int64)) for a in anchors]
        near = np.max(rows, axis=0)
        near = near / max(float(near.max()), 1e-9)
    has = res.catalogue_facts.has_genre
    a = has[list(anchors)].any(axis=0)
    inter = (has & a).sum(axis=1)
    union = (has | a).sum(axis=1)
    jaccard = np.divide(inter, union, out=np.zeros(ds.n_items), where=union > 0)
    return 0.5 * near + 0.5 * jaccard


def nearest_in_history(
    res: DeviceResources, history: np.ndarray, items: Sequence[int]
) -> list[int]:
    """For each item, the film of the recent history most like it: closeness in the
    structured model's item space (the transition model's predecessor strength without
    one) plus the share of genres in common; only films that share a genre count, so a
    reason never links a thriller to a cartoon. -1 where none qualifies."""
    recent = np.unique(history[-RECENT_FOR_REASONS:])
    if not len(recent) or not len(items):
        return [-1] * len(items)
    model = res.sequence_model
    cand = list(items)
    if (unit := unit_item_vectors(model)) is not None:
        near = unit[cand] @ unit[recent].T
    else:
        near = res.transition_model.trans[recent][:, cand].toarray().T
        near = near / max(float(near.max()), 1e-9)
    has = res.catalogue_facts.has_genre.astype(np.float64)
    inter = has[cand] @ has[recent].T
    union = has[cand].sum(axis=1)[:, None] + has[recent].sum(axis=1)[None, :] - inter
    jaccard = np.divide(inter, union, out=np.zeros_like(inter), where=union > 0)
    score = np.where(inter > 0, near + jaccard, -np.inf)
    best = score.argmax(axis=1)
    return [int(recent[j]) if np.isfinite(score[i, j]) else -1 for i, j in enumerate(best)]


RECENT_FOR_AFTER = 10  # "often watched soon after X": X among the last 10 films
AFTER_TOP = 10  # ... and the item among X's 10 strongest successors


def reason_facts(
    res: DeviceResources,
    history: np.ndarray,
    shown: Sequence[PoolItem],
    asked: Constraints | None,
) -> list[ReasonFacts]:
    """The facts each shown item's reason may state, each computed here so that it is
    true: the history film it is closest to (``nearest_in_history``); a recent film it
    often follows (it is among that film's ``AFTER_TOP`` strongest successors in the
    transition model, counted over every user's sequence); its rank by views among the
    catalogue's films of the asked genres (and decade) it has; how many films of its
    genre the history holds; whether people with this user's taste were its source."""
    ds = res.dataset
    idx = [ds.item_index[p.item_id] for p in shown]
    neighbours = nearest_in_history(res, history, idx)
    recent = [int(h) for h in history[-RECENT_FOR_AFTER:][::-1]]  # newest first
    successors: dict[int, set[int]] = {}
    trans = res.transition_model.trans
    for h in dict.fromkeys(recent):
        row = trans.getrow(h)
        if row.nnz:
            top = row.indices[np.argsort(-row.data)[:AFTER_TOP]]
            successors[h] = {int(j) for j in top}
    facts_ = res.catalogue_facts
    has: np.ndarray = facts_.has_genre  # type: ignore[assignment]
    hist_genres = has[np.asarray(history, dtype=np.int64)].sum(axis=0) if len(history) else None
    c = asked or Constraints()
    out = []
    for p, j, nb in zip(shown, idx, neighbours, strict=True):
        after = next((h for h in recent if j in successors.get(h, ())), None)
        # Ranked among the films of the genres asked that it has (its own two first
        # without a request), in the decade asked if it is from it.
        kind = [g for g in p.genres if g in c.genres] or list(p.genres[:2])
        years = Constraints(year_min=c.year_min, year_max=c.year_max)
        in_years = p.year is not None and years.binding and years.satisfied_by((), p.year)
        decade = p.year // 10 * 10 if in_years and p.year else None
        among = Constraints(
            genres=kind,
            year_min=decade,
            year_max=None if decade is None else decade + 9,
        )
        mask = facts_.mask(among, soft=False) if kind else None
        rank = of = None
        if mask is not None and mask[j]:
            pops = ds.popularity[mask]
            rank, of = 1 + int((pops > ds.popularity[j]).sum()), int(mask.sum())
        label = (f"{decade}s " if decade else "") + "/".join(kind[:3])
        count = None
        if hist_genres is not None and p.genres:
            cols = [
                (g, int(hist_genres[facts_.genre_col[g]]))
                for g in p.genres
                if g in facts_.genre_col
            ]
            if cols:
                count = max(cols, key=lambda gc: gc[1])
        out.append(
            ReasonFacts(
                neighbour=ds.items[nb].label() if nb >= 0 else None,
                after=ds.items[after].label() if after is not None else None,
                popular_rank=rank,
                popular_among=label if rank is not None else "",
                popular_of=of or 0,
                genre_count=count,
                collaborative=COLLABORATIVE in p.sources,
                history=len(history) > 0,
            )
        )
    return out


def _semantic_on_device(res: DeviceResources, pool: list[PoolItem], texts: list[str]) -> None:
    """Cosine similarity to the request/queries for items the cloud did not retrieve,
    computed with the device's own copy of the embedder."""
    missing = [p for p in pool if "semantic" not in p.sources]
    texts = [t for t in texts if t.strip()]
    if not missing or not texts:
        return
    emb = res.device_embedder
    q = emb.embed_array(texts)
    docs = emb.embed_cached([item_text(p.label, p.genres) for p in missing])
    sims = (docs @ q.T).max(axis=1)
    for p, s in zip(missing, sims, strict=True):
        p.semantic = float(s)


def _shown_sources(sources: Collection[str], cold_sequence: bool) -> tuple[str, ...]:
    """What put an item on the list, as the person is told: with no sequence to read (no
    history, no "more like" click) the structured model's top items are the most watched
    ones, so they are named as popular, not as this person's viewing pattern."""
    if cold_sequence:
        sources = {"popularity" if s == "sequence" else s for s in sources}
    return tuple(sorted(sources))


def rank_on_device(
    state: State, runtime: Runtime[Settings], config: RunnableConfig
) -> dict[str, Any]:
    res = device_resources(runtime.context)
    turn, plan = state["turn"], state["plan"]
    step = Step("rank_on_device", "device", turn)
    rec = res.device_record(res.settings.user_id)
    thread = _thread(config)
    excluded = excluded_indices(res, rec, thread, state.get("scope"))
    constraints, eligible = bound_eligible(res, state, excluded)
    private = state.get("anchor") in res.dataset.item_index
    constraints = anchored(res, state, constraints)
    ds = res.dataset
    anchors = [
        ds.item_index[i]
        for i in (constraints.like_items if constraints else [])
        if i in ds.item_index
    ]
    like = likeness(res, anchors) if anchors else None
    extra: list[int] = []
    # Structured scores for every pool item: the catalogue-level signal the proposals
    # came from (pool items are never excluded ones). Recomputed here rather than
    # carried in the state: a catalogue-sized array per turn, a few ms to compute.
    scores, _ = structured_scores(res, rec, excluded)
    cold_sequence = len(sequence_input(res, rec)) == 0  # its "sequence" is popularity then
    if like is not None:
        eligible[anchors] = False  # the named film itself is known to the user
        extra = top_k(np.where(eligible, like, -np.inf), 30, np.flatnonzero(~eligible)).tolist()
    asked = state.get("constraints")
    if asked is not None and constraints is not None and constraints.relaxed:
        # The few unseen items that meet stricter levels than the bound one go in too,
        # best first by the structured signal: the closest matches lead the list.
        unseen = np.ones(ds.n_items, dtype=bool)
        unseen[excluded] = False
        for level in asked.relaxations()[: len(constraints.relaxed)]:
            near = res.catalogue_facts.mask(level) & unseen
            extra += top_k(np.where(near, scores, -np.inf), 10, np.flatnonzero(~near)).tolist()
    allowed = eligible | _mask_of(extra, ds.n_items)
    allowed[anchors] = False
    pool = _pool(res, state, rec, allowed, extra)
    res.recent_index.add(  # what the cloud retrieved, for a turn that cannot reach it
        res.settings.user_id or "",
        [
            ds.item_index[c.item_id]
            for c in state.get("candidates") or []
            if c.turn == turn and c.query != COLLABORATIVE and c.item_id in ds.item_index
        ],
    )
    for p in pool:
        i = ds.item_index[p.item_id]
        p.sequence = float(scores[i])
        p.similar = float(like[i]) if like is not None else 0.0
    request = (state.get("request") or "").strip()
    intent = state.get("intent")
    queries = list(intent.queries) if intent else []
    w = plan.weights
    if private and constraints is not None:
        # What the device's own prompts and scoring read: the anchor by name, here only.
        request = request or f"more like {constraints.like_labels[0]}"
        w = anchor_weights(res, state)
    _semantic_on_device(res, pool, [request, *queries])
    fuse(pool, w.sequence, w.semantic, w.similar)
    # After a relaxation, items that meet more of the request come first (the closest).
    tier = strictness(state.get("constraints"), constraints, pool)
    pool.sort(key=lambda p: (tier.get(p.item_id, 0), -p.fused))
    usage, status, detail = Usage(), "ok", f"{len(pool)} candidates"
    if private and constraints is not None:
        detail += f"; more like {constraints.like_labels[0]} (similar-to weights, on the device)"
    if constraints is not None and constraints.binding:
        detail += f" within {constraints.describe()}"
        if constraints.relaxed:
            detail += f" (relaxed: {', '.join(constraints.relaxed)})"
    show = len(pool) if state.get("scope") else res.settings.show_top  # a scope is ranked whole
    # Stream the fused list before the SLM's judgement (seconds): the first items show
    # while the reasons are written (stream_mode="custom"; a no-op for plain invoke).
    runtime.stream_writer(
        {
            "first_items": [
                {"item_id": p.item_id, "label": p.label, "genres": list(p.genres)}
                for p in pool[:show]
            ]
        }
    )
    history = res.history_indices(rec)
    history_labels = [ds.items[int(i)].label() for i in history]
    m = min(res.settings.judge_top, len(pool))
    judge = placed(state).judge
    shortlist, said = (
        cloud_shortlist(res, rec, state, pool, min(m, show)) if plan.judge else (None, "")
    )
    detail += said
    if judge == CLOUD_JUDGE and shortlist is None:
        judge = "device-slm"  # the device judges: it holds a history (or nothing to judge)
    if plan.judge and judge == "device-facts":
        why = placed(state).why.rsplit("; ", 1)[-1] or "placement"
        detail += f"; no model judgement ({why})"
    if plan.judge and judge == "device-slm" and m > 0:
        judged = pool[:m]
        # Items watched outside the catalogue stay in the history under their own name.
        recent = [
            ds.items[ds.item_index[i]].label() if i in ds.item_index else i
            for i in rec.history_ids()[-RECENT_FOR_JUDGE:]
        ]
        numbered = numbered_candidates((p.label, p.genres) for p in judged)
        messages = res.prompts["rank_on_device"].messages(
            recent="; ".join(recent) or "nothing yet",
            request=request or "(none)",
            candidates=numbered,
        )
        picks = min(m, show, JUDGE_PICKS)
        out = call_structured(
            res.device_llm,
            Judgement,
            messages,
            max_tokens=judge_max_tokens(picks),
            json_schema=judgement_schema(m, picks),
            context={"n": m},
            fallback=lambda: Judgement(picks=[]),
            salvage=lambda raw: salvage_judgement(raw, m),
            config=config,
        )
        apply_judgement(pool, judged, out.value.picks, w.judge)
        usage, status = out.usage, out.status
        detail += f"; SLM picked {len(out.value.picks)} of {m}"
        if out.error:
            detail += f"; {out.error}"
        pool.sort(key=lambda p: (tier.get(p.item_id, 0), -p.fused))
    shown = pool[:show]
    like_label = constraints.like_labels[0] if constraints and constraints.like_labels else None
    like_genres = ds.items[anchors[0]].genres if anchors else ()
    known = reason_facts(res, history, shown, state.get("constraints"))
    allowed = [*history_labels, *(constraints.like_labels if constraints else [])]
    ranking, replaced = [], 0
    used: dict[str, int] = {}
    for r, (p, rf) in enumerate(zip(shown, known, strict=True), 1):
        facts = ItemFacts(p.label, p.genres, p.year)
        reason, source = p.reason, "slm"
        if reason and check_reason(reason, facts, res.vocabulary, allowed):
            reason, replaced = "", replaced + 1  # a false claim: replaced by a true one
        elif reason and len(_words(reason) - _words(p.label)) < 3:
            reason = ""  # the title and little else says nothing: facts say more
        if not reason:
            reason, source = (
                fact_reason(
                    facts,
                    state.get("constraints"),
                    like_label=like_label,
                    like_genres=like_genres,
                    rank=r,
                    facts=rf,
                    used=used,
                ),
                "facts",
            )
        grounded = not check_reason(reason, facts, res.vocabulary, allowed)
        ranking.append(
            RankedItem(
                rank=r,
                item_id=p.item_id,
                label=p.label,
                genres=p.genres,
                year=p.year,
                score=round(p.fused, 4),
                parts=p.parts,
                sources=_shown_sources(p.sources, cold_sequence),
                reason=reason,
                reason_source=source,
                grounded=grounded,
            )
        )
    if replaced:
        detail += f"; {replaced} SLM reason(s) failed the fact check and were rewritten"
    return {
        "ranking": ranking,
        "shortlist": shortlist,
        "bound": constraints,
        "trace": step.done(
            model=res.device_llm.name if plan.judge and judge == "device-slm" else None,
            usage=usage,
            status=status,
            detail=detail,
        ),
    }


def answer_notes(request: str, bound: Constraints | None) -> list[str]:
    """What the reply must say before the list: what could not be met, and how the
    request was relaxed to find the closest items."""
    notes = []
    if bound is not None and bound.conflicts:
        notes.append(
            "Parts of the request contradict each other ("
            + "; ".join(bound.conflicts)
            + "): I kept the exclusion and dropped the contradicting years."
        )
    if bound is not None and bound.unknown_title:
        notes.append(
            f"I don't know \u201c{bound.unknown_title}\u201d in this catalogue, so these follow "
            "your taste" + (f" within {bound.describe()}" if bound.binding else "") + "."
        )
    if bound is not None and bound.relaxed:
        notes.append(
            f"Nothing you have not seen is quite what you asked ({request.strip()[:80]}). "
            f"The closest come first: I {', then '.join(bound.relaxed)}."
        )
    return notes


def respond(state: State, runtime: Runtime[Settings], config: RunnableConfig) -> dict[str, Any]:
    res = device_resources(runtime.context)
    step = Step("respond", "device", state["turn"])
    res.context_monitor.turn_ended(_turn_key(config, state["turn"]))
    ranking, judged = with_cloud_judgement(res, state, state.get("ranking") or [])
    thread = _thread(config)
    if thread and ranking and res.records is None:
        res.memory.record_shown(res.settings.user_id or "", thread, [r.item_id for r in ranking])
    notes = answer_notes(state.get("request") or "", state.get("bound"))
    lines = [f"{r.rank}. {r.label} - {', '.join(r.genres)}\n   {r.reason}" for r in ranking]
    reply = (
        "\n".join([*notes, *lines])
        if lines
        else "I found nothing to recommend; try another request."
    )
    return {
        "ranking": ranking,
        "reply": reply,
        "notes": notes,
        "scope": None,
        "anchor": None,
        "shortlist": None,
        "trace": step.done(detail=f"{len(ranking)} items{judged}"),
    }
