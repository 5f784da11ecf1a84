"""The execution plan: what the cloud planner decides, and the default plan per bucket.

The planner LLM writes a small ``PlanDraft`` (JSON, schema-constrained): the strategy
of the turn, reused for later turns with the same user state and kind of request.
``Plan`` is the validated, normalised form the graph routes on: which sub-tasks run, on
which side, with which parameters and fusion weights. An invalid draft is repaired
once, then replaced by ``default_plan(bucket)``.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationInfo,
    model_validator,
)

from cdarec.graph.schemas import Bucket, UserAbstract

PlanSource = Literal["planner", "repaired", "default", "cached"]


class Weights(BaseModel):
    """Fusion weights of the final ranking; normalised to sum to 1."""

    model_config = ConfigDict(frozen=True)

    sequence: float = Field(ge=0, le=1, description="structured (sequence) model score")
    semantic: float = Field(ge=0, le=1, description="semantic relevance to the request")
    judge: float = Field(ge=0, le=1, description="the device SLM's judgement")

    @model_validator(mode="after")
    def _normalise(self) -> Weights:
        total = self.sequence + self.semantic + self.judge
        if total <= 0:
            raise ValueError("at least one fusion weight must be positive")
        if abs(total - 1.0) > 1e-6:
            object.__setattr__(self, "sequence", self.sequence / total)
            object.__setattr__(self, "semantic", self.semantic / total)
            object.__setattr__(self, "judge", self.judge / total)
        return self


class Retrieval(BaseModel):
    model_config = ConfigDict(frozen=True)

    k: int = Field(ge=1, le=500, description="candidates to retrieve per query")
    collab_k: int = Field(
        default=0,
        ge=0,
        le=500,
        description="candidates from collaborative retrieval (the device's user vector "
        "searched in the model's item vectors, with the intent's filters); 0 = off",
    )


class PlannedStep(BaseModel):
    model_config = ConfigDict(frozen=True)

    task: str
    side: Literal["cloud", "device"]
    group: int = Field(description="steps with the same group run in parallel")


class Plan(BaseModel):
    """The validated plan; the graph's conditional edges follow it."""

    model_config = ConfigDict(frozen=True)

    semantic: bool = Field(description="run model_semantics + retrieve_candidates (cloud)")
    sequence: bool = Field(description="run model_sequence_on_device (device)")
    judge: bool = Field(description="let the device SLM judge and explain the top items")
    retrieval: Retrieval
    weights: Weights
    note: str = Field(default="", max_length=200)
    source: PlanSource = "planner"

    def steps(self) -> list[PlannedStep]:
        out = [
            PlannedStep(task="summarize_on_device", side="device", group=0),
            PlannedStep(task="plan_strategy", side="cloud", group=1),
        ]
        if self.semantic:
            out.append(PlannedStep(task="model_semantics", side="cloud", group=2))
            out.append(PlannedStep(task="retrieve_candidates", side="cloud", group=3))
        if self.sequence:
            out.append(PlannedStep(task="model_sequence_on_device", side="device", group=2))
        out.append(PlannedStep(task="rank_on_device", side="device", group=4))
        out.append(PlannedStep(task="respond", side="device", group=5))
        return out


class PlanDraft(BaseModel):
    """What the planner LLM writes (flat, so that small models can fill it)."""

    semantic_retrieval: bool
    sequence_model: bool
    k: int = Field(ge=5, le=200)
    w_sequence: float = Field(ge=0, le=1)
    w_semantic: float = Field(ge=0, le=1)
    w_judge: float = Field(ge=0, le=1)
    note: str = Field(default="", max_length=200)

    @model_validator(mode="after")
    def _something_runs(self, info: ValidationInfo) -> PlanDraft:
        if not (self.semantic_retrieval or self.sequence_model):
            raise ValueError("at least one of semantic_retrieval, sequence_model must be true")
        bucket = (info.context or {}).get("bucket")
        if bucket in ("light", "heavy") and not self.sequence_model:
            # A guardrail, not a preference: a user with history always gets the model
            # of that history; the planner decides how much it weighs.
            raise ValueError(f"a {bucket} user has history: sequence_model must be true")
        return self

    def to_plan(self, source: PlanSource = "planner") -> Plan:
        if self.w_sequence + self.w_semantic + self.w_judge > 0:
            weights = Weights(
                sequence=self.w_sequence, semantic=self.w_semantic, judge=self.w_judge
            )
        else:  # all zero: no preference expressed
            weights = Weights(sequence=0.5, semantic=0.5, judge=0.0)
        return Plan(
            semantic=self.semantic_retrieval,
            sequence=self.sequence_model,
            judge=True,  # the device SLM always explains; w_judge sets how much its order counts
            # A user with history also gets collaborative candidates, half as many as
            # semantic ones: the sequence model's taste within the request's filters.
            retrieval=Retrieval(k=self.k, collab_k=self.k // 2 if self.sequence_model else 0),
            weights=weights,
            note=self.note,
            source=source,
        )


def ablated(plan: Plan, ablate: Iterable[str]) -> Plan:
    """The plan with the named parts switched off (experiments: ``Settings.ablate``)."""
    off = set(ablate)
    if not off:
        return plan
    w = plan.weights
    seq = 0.0 if "sequence" in off else w.sequence
    sem = 0.0 if "semantic" in off else w.semantic
    judge = 0.0 if "slm" in off else w.judge
    if seq + sem + judge <= 0:
        sem = 1.0
    retrieval = plan.retrieval
    if "collab" in off:
        retrieval = retrieval.model_copy(update={"collab_k": 0})
    return plan.model_copy(
        update={
            "retrieval": retrieval,
            "semantic": plan.semantic and "semantic" not in off,
            "sequence": plan.sequence and "sequence" not in off,
            "judge": plan.judge and "slm" not in off,
            "weights": Weights(sequence=seq, semantic=sem, judge=judge),
            "note": f"{plan.note} [ablated: {', '.join(sorted(off))}]",
        }
    )


RequestKind = Literal["none", "similar", "specific", "open"]
_SIMILAR = re.compile(r"\b(like|similar|more of)\b", re.IGNORECASE)
_SPECIFIC = re.compile(r"\b(1[89]\d0s|19\d\d|20\d\d|\d0s)\b", re.IGNORECASE)


def request_kind(request: str, genres: Iterable[str] = ()) -> RequestKind:
    """A coarse class of the request: the plan is reused across requests of one kind.

    The strategy (which steps, how many candidates, how the signals weigh) depends on
    the kind of request; its content (queries, genre and year filters) is read every
    turn by ``model_semantics``.
    """
    text = request.strip()
    if not text:
        return "none"
    if _SIMILAR.search(text):
        return "similar"
    lowered = text.lower()
    if _SPECIFIC.search(text) or any(g.lower() in lowered for g in genres):
        return "specific"
    return "open"


def plan_cache_key(abstract: UserAbstract, kind: RequestKind) -> str:
    """Same user state (bucket, size, recency, live feedback) and request kind: same plan.
    Feedback that changes the user state changes the key, so a stale plan is not used."""
    return f"{abstract.state.model_dump_json()}|{kind}"


def default_plan(abstract: UserAbstract, request: str, retrieval_k: int) -> Plan:
    """The documented fallback: a fixed plan per user-state bucket.

    cold: no usable sequence, so semantic retrieval leads; heavy: the sequence model
    leads; a clear request (several words) pulls weight toward semantic relevance; no
    request at all leaves the semantic match to an abstract profile a small say (the
    signals are z-scores in the pool: on Protocol A, semantic weights of 0.25-0.35 beside
    the sequence model cost 6-9 NDCG@10 points, 0.05 cost nothing).
    """
    bucket: Bucket = abstract.state.bucket
    table = {
        "cold": (0.15, 0.65, 0.20),
        "light": (0.45, 0.35, 0.20),
        "heavy": (0.60, 0.25, 0.15),
    }
    w_seq, w_sem, w_judge = table[bucket]
    if not request.strip() and bucket != "cold":
        w_seq, w_sem = w_seq + w_sem - 0.05, 0.05
    elif len(request.split()) >= 3:
        w_seq, w_sem = w_seq * 0.6, w_sem + w_seq * 0.4
    sequence = bucket != "cold" or abstract.state.live_feedback != "none"
    return Plan(
        semantic=True,
        sequence=sequence,
        judge=True,
        retrieval=Retrieval(k=retrieval_k, collab_k=retrieval_k // 2 if sequence else 0),
        weights=Weights(sequence=w_seq, semantic=w_sem, judge=w_judge),
        note=f"default plan for a {bucket} user",
        source="default",
    )
