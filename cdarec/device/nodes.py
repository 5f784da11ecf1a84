"""Device nodes: user abstract, structured user modelling, final ranking, reply.

They read the private history from device memory through the run context (never from
the graph state) and write back only what the state's types allow: the coarse
abstract for the cloud, and proposals / ranking / reply for the user on the device.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from langchain_core.runnables import RunnableConfig
from langgraph.runtime import Runtime

from cdarec.device.abstract import summarize
from cdarec.device.ranking import (
    REASON_MAX_CHARS,
    Judgement,
    PoolItem,
    apply_judgement,
    catalogue_structured,
    fuse,
    judgement_schema,
    salvage_judgement,
    structured_blend,
    template_reason,
)
from cdarec.device.sequence import top_k
from cdarec.graph.schemas import COLLABORATIVE, Proposal, RankedItem
from cdarec.graph.state import State
from cdarec.graph.steps import Step
from cdarec.llm.structured import Usage, call_structured
from cdarec.memory.device_memory import DeviceRecord
from cdarec.runtime import Resources, get_resources
from cdarec.settings import Settings

RECENT_FOR_JUDGE = 5
# The SLM picks (and explains) its top one; the rest get template reasons. A pick costs
# about 24 tokens ('{"n": 3, "reason": "..."}', reason <= 50 characters); under the JSON
# grammar the 0.5B device model decodes ~14 tokens/s here, so the judgement took 3.5 s
# with two picks and 1.9 s with one (48 vs 27 tokens, same 218-token prompt) - the
# difference between a 4.8 s and a ~3 s turn (bench latency). On Protocol A the planner
# gave the SLM's order no weight anyway (bench accuracy: cdarec == cdarec-no-slm).
JUDGE_PICKS = 1
# The token budget bounds what the grammar allows, not the typical reply: a reason of
# REASON_MAX_CHARS characters may take a token per character (digits, punctuation) or
# more (accented letters), and a reply cut at a typical-size budget (32 tokens) failed
# to parse in 8% of Protocol B turns, each costing a repair call and then the fallback.
# Unused budget costs nothing.
JUDGE_BASE_TOKENS = 16  # '{"picks": [' ... ']}' and whitespace
TOKENS_PER_PICK = 16 + 2 * REASON_MAX_CHARS  # '{"n": 3, "reason": "..."}'


def judge_max_tokens(picks: int) -> int:
    return JUDGE_BASE_TOKENS + TOKENS_PER_PICK * picks


def _thread(config: RunnableConfig | None) -> str | None:
    return ((config or {}).get("configurable") or {}).get("thread_id")


def summarize_on_device(
    state: State, runtime: Runtime[Settings], config: RunnableConfig
) -> dict[str, Any]:
    res = get_resources(runtime.context)
    turn = int(state.get("turn") or 0) + 1
    step = Step("summarize_on_device", "device", turn)
    rec = res.device_record(res.settings.user_id)
    abstract = summarize(rec, res.dataset, res.dataset_end)
    vector = None
    model = res.sequence_model
    if rec.history and hasattr(model, "user_vector"):
        # For collaborative retrieval: the cloud gets this vector, never the sequence.
        vector = [round(float(x), 5) for x in model.user_vector(sequence_input(res, rec))]
    return {
        "turn": turn,
        "abstract": abstract,
        "user_vector": vector,
        "intent": None,
        "ranking": [],
        "reply": "",
        "trace": step.done(detail=abstract.describe()),
    }


def excluded_indices(
    res: Resources, rec: DeviceRecord, thread: str | None, scope: list[str] | None = None
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


def sequence_input(res: Resources, rec: DeviceRecord) -> np.ndarray:
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
    res: Resources, rec: DeviceRecord, excluded: np.ndarray
) -> tuple[np.ndarray, str]:
    """The device's structured signal for every catalogue item (``-inf`` for excluded
    ones), over the full private history: the trained model, with the transition model
    blended in as the ensemble's second member when SASRec leads (at the weight chosen
    for the model on validation, ``structured_blend``). Proposals and the
    pool's ``sequence`` scores both come from it."""
    seq_in = sequence_input(res, rec)
    model = res.sequence_model
    scores = model.scores(seq_in)
    second = None
    name = model.name
    if model is not res.transition_model and len(seq_in):
        second, name = res.transition_model.scores(seq_in), f"{model.name}+transition"
    eligible = np.ones(res.dataset.n_items, dtype=bool)
    eligible[excluded] = False
    return catalogue_structured(scores, second, eligible, structured_blend(model)), name


def model_sequence_on_device(
    state: State, runtime: Runtime[Settings], config: RunnableConfig
) -> dict[str, Any]:
    res = get_resources(runtime.context)
    turn = state["turn"]
    step = Step("model_sequence_on_device", "device", turn)
    rec = res.device_record(res.settings.user_id)
    scope = state.get("scope")
    excluded = excluded_indices(res, rec, _thread(config), scope)
    scores, name = structured_scores(res, rec, excluded)
    idx = top_k(scores, len(scope) if scope else res.settings.sequence_k, excluded)
    proposals = [
        Proposal(turn=turn, item_id=res.dataset.items[int(i)].item_id, score=float(scores[i]))
        for i in idx
    ]
    return {
        "proposals": proposals,
        "trace": step.done(
            model=name, detail=f"{len(proposals)} proposals from {len(rec.history)} events"
        ),
    }


def _pool(res: Resources, state: State, rec: DeviceRecord, excluded: np.ndarray) -> list[PoolItem]:
    turn = state["turn"]
    ds = res.dataset
    banned = set(excluded.tolist())
    avoid = set(rec.avoided_genres())
    pool: dict[str, PoolItem] = {}

    def add(item_id: str, source: str) -> PoolItem | None:
        idx = ds.item_index.get(item_id)
        if idx is None or idx in banned:
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
        if pr.turn == turn:
            add(pr.item_id, "sequence")
    if not pool:  # nothing retrieved or proposed: popularity keeps the turn useful
        for i in top_k(
            ds.popularity.astype(np.float64), 30, np.array(sorted(banned), dtype=np.int64)
        ):
            add(ds.items[int(i)].item_id, "popularity")
    return list(pool.values())


def _semantic_on_device(res: Resources, pool: list[PoolItem], texts: list[str]) -> None:
    """Cosine similarity to the request/queries for items the cloud did not retrieve,
    computed with the device's own copy of the embedder."""
    missing = [p for p in pool if "semantic" not in p.sources]
    texts = [t for t in texts if t.strip()]
    if not missing or not texts:
        return
    emb = res.device_embedder
    q = emb.embed_array(texts)
    docs = emb.embed_array([f"{p.label}. Genres: {', '.join(p.genres)}." for p in missing])
    sims = (docs @ q.T).max(axis=1)
    for p, s in zip(missing, sims, strict=True):
        p.semantic = float(s)


def rank_on_device(
    state: State, runtime: Runtime[Settings], config: RunnableConfig
) -> dict[str, Any]:
    res = get_resources(runtime.context)
    turn, plan = state["turn"], state["plan"]
    step = Step("rank_on_device", "device", turn)
    rec = res.device_record(res.settings.user_id)
    thread = _thread(config)
    excluded = excluded_indices(res, rec, thread, state.get("scope"))
    pool = _pool(res, state, rec, excluded)
    ds = res.dataset
    # Structured scores for every pool item: the catalogue-level signal the proposals
    # came from (pool items are never excluded ones). Recomputed here rather than
    # carried in the state: a catalogue-sized array per turn, a few ms to compute.
    scores, _ = structured_scores(res, rec, excluded)
    for p in pool:
        p.sequence = float(scores[ds.item_index[p.item_id]])
    request = (state.get("request") or "").strip()
    intent = state.get("intent")
    queries = list(intent.queries) if intent else []
    _semantic_on_device(res, pool, [request, *queries])
    w = plan.weights
    fuse(pool, w.sequence, w.semantic)
    pool.sort(key=lambda p: -p.fused)
    usage, status, detail = Usage(), "ok", f"{len(pool)} candidates"
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
    m = min(res.settings.judge_top, len(pool))
    if plan.judge and m > 0:
        judged = pool[:m]
        # Items watched outside the catalogue stay in the history under their own name.
        recent = [
            ds.items[ds.item_index[i]].label() if i in ds.item_index else i
            for i in rec.history_ids()[-RECENT_FOR_JUDGE:]
        ]
        numbered = "\n".join(
            f"{n}. {p.label} ({', '.join(p.genres[:2]) or 'unknown genre'})"
            for n, p in enumerate(judged, 1)
        )
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
        pool.sort(key=lambda p: -p.fused)
    last = rec.history_ids()[-1] if rec.history else None
    last_label = ds.items[ds.item_index[last]].label() if last in ds.item_index else None
    abstract = state.get("abstract")
    top_genres = abstract.top_genres if abstract else []
    ranking = [
        RankedItem(
            rank=r,
            item_id=p.item_id,
            label=p.label,
            genres=p.genres,
            year=p.year,
            score=round(p.fused, 4),
            parts=p.parts,
            sources=tuple(sorted(p.sources)),
            reason=p.reason
            or template_reason(
                p, last_label, request or (queries[0] if queries else None), top_genres
            ),
        )
        for r, p in enumerate(pool[:show], 1)
    ]
    return {
        "ranking": ranking,
        "trace": step.done(
            model=res.device_llm.name if plan.judge else None,
            usage=usage,
            status=status,
            detail=detail,
        ),
    }


def respond(state: State, runtime: Runtime[Settings], config: RunnableConfig) -> dict[str, Any]:
    res = get_resources(runtime.context)
    step = Step("respond", "device", state["turn"])
    ranking = state.get("ranking") or []
    thread = _thread(config)
    if thread and ranking and res.records is None:
        res.memory.record_shown(res.settings.user_id or "", thread, [r.item_id for r in ranking])
    lines = [f"{r.rank}. {r.label} - {', '.join(r.genres)}\n   {r.reason}" for r in ranking]
    reply = "\n".join(lines) if lines else "I found nothing to recommend; try another request."
    return {"reply": reply, "scope": None, "trace": step.done(detail=f"{len(ranking)} items")}
