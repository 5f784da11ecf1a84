"""Contract: the graph state. The cloud-visible part is small, typed, and has no field for raw
history.

Three layers, from most to least visible:

- ``CloudView`` - the only channels cloud nodes may read (LangGraph ``input_schema``):
  the request, the coarse ``UserAbstract`` written on the device, the plan, the semantic
  intent (queries, filters) and the catalogue candidates the cloud itself retrieved. No
  field holds item ids from the private history; the abstract is enums, genre names and
  bucketed counts.
- device output channels - what device nodes produce for the user on the device: the
  sequence model's proposals, the final ranking and the reply (they may reflect the
  history; cloud nodes never get them as input).
- the raw history and live feedback - not in the state at all: they live in device
  memory on disk (``cdarec.device.memory``), read by device nodes through their own
  resources (``cdarec.device.resources``).
"""

from __future__ import annotations

from typing import Annotated, NotRequired, TypedDict, TypeVar

from cdarec.contract.judgement import CloudJudgement
from cdarec.contract.placement import DeviceContext, Placement
from cdarec.contract.plan import Plan
from cdarec.contract.request import Constraints
from cdarec.contract.schemas import (
    Candidate,
    Intent,
    Proposal,
    RankedItem,
    StepRecord,
    UserAbstract,
)

T = TypeVar("T", Candidate, Proposal, StepRecord)


def latest_turn(left: list[T] | None, right: list[T] | None) -> list[T]:
    """Reducer for per-turn lists written by parallel branches.

    Appends, then keeps only the newest turn's entries: a new turn's first write
    replaces the previous turn's list without a separate reset step.
    """
    merged = [*(left or []), *(right or [])]
    if not merged:
        return []
    newest = max(x.turn for x in merged)
    return [x for x in merged if x.turn == newest]


class CloudView(TypedDict, total=False):
    """Everything a cloud node can see."""

    turn: int
    request: str
    # Optional: rank only these catalogue ids this turn (an evaluation protocol's
    # candidate list, or an app's shortlist). Public catalogue ids, never history;
    # cleared by ``respond`` so it applies to the turn it came with.
    scope: list[str] | None
    abstract: UserAbstract
    # The structured model's user vector, computed on the device: what collaborative
    # retrieval searches with. A vector, not the history (None when there is no model
    # of the history: cold start, or the transition model).
    user_vector: list[float] | None
    # What the device measured of its context (coarse buckets: link, cloud speed, load,
    # power, privacy setting) and the placement of the movable sub-tasks it proposes from
    # it; the plan carries the placement that runs (``contract.placement``).
    context: DeviceContext | None
    placement: Placement | None
    plan: Plan
    # What the request asks for, read by code from the request and the public catalogue
    # (genres, years, exclusions, a named film): binds every candidate, cloud and device.
    constraints: Constraints | None
    intent: Intent | None
    candidates: Annotated[list[Candidate], latest_turn]
    # Only for a device that holds no private history (no watched item, no feedback, no
    # "more like" click this turn), with the judgement placed on the cloud: the catalogue
    # ids of the fused top items, for the cloud LLM to judge. None on every other turn;
    # the device decides it from its own memory (``device.nodes.cloud_shortlist``).
    shortlist: list[str] | None


class TurnInput(TypedDict):
    """What a caller sends for one chat turn."""

    request: str
    scope: NotRequired[list[str] | None]
    # "more like N": the catalogue id of a shown item the person asked for more like.
    # Private feedback, so a device-only channel (``State.anchor``): the cloud gets the
    # turn without a request and never learns which item it was.
    anchor: NotRequired[str | None]


class TurnOutput(TypedDict, total=False):
    turn: int
    request: str
    abstract: UserAbstract
    plan: Plan
    constraints: Constraints | None
    bound: Constraints | None
    ranking: list[RankedItem]
    notes: list[str]
    reply: str
    trace: list[StepRecord]


class State(CloudView, total=False):
    """The full graph state (checkpointed on the device)."""

    proposals: Annotated[list[Proposal], latest_turn]
    # This turn's "more like N" item (``TurnInput.anchor``): read by device nodes only,
    # cleared by ``respond`` so it applies to the turn it came with.
    anchor: str | None
    # The cloud LLM's judgement of ``shortlist`` (cloud output, read by ``respond``).
    cloud_judgement: CloudJudgement | None
    # The constraints the device applied (relaxed in their stated order when too few
    # unseen items met the request): device output, since the relaxation reflects the
    # history; the cloud never reads it.
    bound: Constraints | None
    ranking: list[RankedItem]
    # What the reply says before the list: a request that could not be met as asked.
    notes: list[str]
    reply: str
    trace: Annotated[list[StepRecord], latest_turn]
