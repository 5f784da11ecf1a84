"""Contract: context-aware placement — on which side each movable sub-task of a turn runs.

CDA4Rec allocates sub-tasks "to cloud or device based on computational demands and
privacy sensitivity". Here four sub-tasks have an implementation on each side, behind one
interface (the same state channels in, the same out):

- ``planning``: the cloud planner (``plan_strategy``) or the device's own choice of
  strategy by the rule (``plan_on_device``) when the cloud is slow or gone;
- ``semantics``: the cloud LLM from the abstract and request (``model_semantics``) or the
  device SLM (``model_semantics_on_device``; it may read the recent history, and its
  queries are checked by code to name no history item before they reach the cloud);
- ``retrieval``: the cloud's catalogue (``retrieve_candidates``) or the device's small
  index of the candidates it was shown recently (``retrieve_on_device``) for a device
  that cannot reach the cloud or should not wait for it;
- ``judge``: the device SLM with the history (``device-slm``), the device's code alone
  (``device-facts``: true reasons from the item's facts, no model call) when the device
  is busy or on battery, or the cloud LLM (``cloud-llm``, node ``judge_on_cloud``) for a
  device that holds no private history (cold start: no watched item, no feedback, no
  "more like" click): it sees the abstract, the request and the catalogue ids of the
  shortlist, nothing else. The judgement reads the history wherever there is one, so the
  device decides this from its own memory when it would write the shortlist
  (``device.nodes.cloud_shortlist``): a plan that names ``cloud-llm`` for a device with a
  history is repaired there, and the device judges.

The device measures its context (``DeviceContext``: coarse buckets of the cloud link, the
cloud model's speed, the device's load and power, the user's privacy setting) and the plan
carries the placement chosen from it (``choose_placement``). Privacy is a hard constraint
no plan can break: the sub-tasks that read the history (the summary, the sequence model,
the judgement, the ranking) have no cloud side, a placement that names one for them is
repaired, with the repair said, and ``enforce`` re-checks every plan the device acts on,
whoever wrote it.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

Side = Literal["cloud", "device"]
Judge = Literal["device-slm", "device-facts", "cloud-llm"]
Link = Literal["fast", "slow", "down", "unknown"]
CloudSpeed = Literal["fast", "slow", "unknown"]
Load = Literal["idle", "busy"]
Privacy = Literal["standard", "strict"]
MOVABLE = ("planning", "semantics", "retrieval", "judge")
# Sub-tasks that read the raw history: no placement may put them on the cloud (the
# judgement only as ``cloud-llm``, which the device runs only when it holds no history).
READS_HISTORY = ("summary", "sequence", "judge", "ranking")
CLOUD_JUDGE = "cloud-llm"


class DeviceContext(BaseModel):
    """What the device measured before the turn, in coarse buckets (the planner's input;
    it says nothing about the user's history)."""

    model_config = ConfigDict(frozen=True)

    link: Link = Field(default="unknown", description="the cloud endpoint's round trip")
    cloud_speed: CloudSpeed = Field(
        default="unknown", description="the cloud model's recent speed (seconds per call)"
    )
    load: Load = Field(
        default="idle", description="the device busy: its CPU with other work, or other turns"
    )
    low_power: bool = Field(default=False, description="on battery and low, or set by the user")
    privacy: Privacy = Field(default="standard", description="the user's privacy setting")

    def describe(self) -> str:
        power = ", low power" if self.low_power else ""
        return (
            f"link {self.link}, cloud {self.cloud_speed}, device {self.load}{power}, "
            f"privacy {self.privacy}"
        )


class Placement(BaseModel):
    """The side of each movable sub-task this turn, and why."""

    model_config = ConfigDict(frozen=True)

    planning: Side = "cloud"
    semantics: Side = "cloud"
    retrieval: Side = "cloud"
    judge: Judge = "device-slm"
    device_model: bool = Field(
        default=True,
        description="the device may call its own model this turn; not when it is busy or on "
        "low power: it then writes no query (the request's own words are searched) and "
        "judges from the items' facts",
    )
    judge_if_weighted: bool = Field(
        default=False,
        description="a model judges only where the plan gives its order weight; a plan "
        "whose ranking does not use it gets reasons from the items' facts (no model call)",
    )
    why: str = Field(default="", max_length=300)

    @model_validator(mode="before")
    @classmethod
    def _history_stays(cls, data: object) -> object:
        """A placement (from a planner, a caller, a saved plan) that puts a history-reading
        sub-task on the cloud is refused and repaired: that sub-task runs on the device,
        and ``why`` says what was repaired."""
        if not isinstance(data, dict):
            return data
        data = dict(data)
        moved = []
        for task in READS_HISTORY:
            side = data.get(task)
            if isinstance(side, str) and side.startswith("cloud") and side != CLOUD_JUDGE:
                moved.append(task)
                if task == "judge":
                    data[task] = "device-slm"
                else:
                    data.pop(task)  # always on the device: not a field that can be set
        if moved:
            note = f"repaired: {', '.join(moved)} read(s) the history and stay on the device"
            data["why"] = f"{data.get('why') or ''}; {note}".strip("; ")[:300]
        return data

    def for_weight(self, judge_weight: float) -> Placement:
        """This placement for a plan whose judgement order weighs ``judge_weight``: with
        ``judge_if_weighted`` and a weight of 0 the model's pick would move nothing (the
        history-led, request-led and similar-to strategies: measured on Protocols A, B and
        R, cdarec and cdarec-no-slm rank every user alike), so the judgement is the
        device's facts and the turn saves the model call (~2.6 s on two cores)."""
        if not self.judge_if_weighted or judge_weight > 0 or self.judge == "device-facts":
            return self
        note = "the plan gives a model's order no weight: reasons from the items' facts"
        return self.model_copy(
            update={"judge": "device-facts", "why": f"{self.why}; {note}".strip("; ")[:300]}
        )

    def sides(self) -> dict[str, str]:
        return {k: getattr(self, k) for k in MOVABLE}

    def describe(self) -> str:
        s = ", ".join(f"{k} {v}" for k, v in self.sides().items())
        return f"{s} ({self.why})" if self.why else s


# The fixed placements `cdarec bench placement` compares with the adaptive one, and that
# `Settings.placement` can pin for experiments. "default" is what cdarec ran before
# placement was measured: every movable sub-task where the paper's figure puts it.
FIXED: dict[str, Placement] = {
    "default": Placement(why="fixed: the default sides"),
    "device": Placement(
        planning="device", semantics="device", retrieval="device", why="fixed: all on the device"
    ),
    "lean-device": Placement(
        judge="device-facts", device_model=False, why="fixed: no device model call"
    ),
    "cloud-judge": Placement(
        judge="cloud-llm", why="fixed: the cloud LLM judges (a device with no history only)"
    ),
}
PlacementName = Literal["adaptive", "default", "device", "lean-device", "cloud-judge"]


def choose_placement(context: DeviceContext, cold: bool = False) -> Placement:
    """The adaptive rule: each sub-task on the side that answers sooner in this context
    (measured by `cdarec bench placement`, docs/results/placement.md, which also holds
    the thresholds of the buckets). ``cold``: the device holds no private history (no
    watched item, no feedback): a busy or low-powered device then lets a cloud measured
    fast judge instead of answering without a model."""
    reasons: list[str] = []
    p = Placement()
    if context.link == "down":
        p = Placement(planning="device", semantics="device", retrieval="device")
        reasons.append("the cloud is unreachable: everything on the device")
    elif context.link == "slow":
        # Each cloud round trip costs the link's delay: plan and interpret on the device,
        # retrieve on the device from what it was shown before.
        p = Placement(planning="device", semantics="device", retrieval="device")
        reasons.append("slow link: no cloud round trip")
    elif context.cloud_speed == "slow":
        # The catalogue search does not wait on the cloud model; the two model calls do.
        p = Placement(planning="device", semantics="device")
        reasons.append("slow cloud model: the device plans and writes the queries")
    busy = context.load == "busy" or context.low_power
    if busy:
        why = "device on low power" if context.low_power else "device busy"
        # Only a cloud measured fast: an unmeasured one may share this busy machine (the
        # embedded server does), where its judgement took 40 s beside a busy CPU here.
        cloud_ok = p.retrieval == "cloud" and context.cloud_speed == "fast"
        if cold and context.privacy == "standard" and cloud_ok:
            p = p.model_copy(update={"judge": CLOUD_JUDGE})
            reasons.append(f"{why}, no private history: the cloud LLM judges the shortlist")
        else:
            p = p.model_copy(update={"judge": "device-facts"})
            reasons.append(f"{why}: reasons from the items' facts, no device model call")
        # Nor does it write the queries when the semantics are its own (the cloud being
        # slow or out of reach): the request's own words are searched as they are.
        p = p.model_copy(update={"device_model": False})
    if not reasons:
        reasons.append("normal conditions: the default sides")
    # Wherever it is placed, a model judges only when the plan weighs its order
    # (``Placement.for_weight``, applied by the plan); its reasons alone are not worth a
    # model call when the items' facts give true ones at once.
    return p.model_copy(update={"why": "; ".join(reasons), "judge_if_weighted": True})


def enforce(placement: Placement) -> Placement:
    """The placement as it may run. The history-reading sub-tasks have no cloud side
    (``Placement`` refuses one and repairs it, saying so in ``why``); this validates the
    placement again from its fields, because ``model_copy(update=...)`` and
    ``model_construct`` skip validation: a plan changed that way (by a planner, a
    caller, a saved checkpoint) is repaired here before anything acts on it."""
    return Placement.model_validate(placement.model_dump())


def proposed(state: Mapping[str, Any]) -> Placement:
    """This turn's proposal (written by the device's summary into the ``placement``
    channel; none yet: the default sides), as it may run (``enforce``). Both sides and
    the graph's routes read it through here, before the plan exists."""
    return enforce(state.get("placement") or Placement())


def placement_for(name: str, context: DeviceContext, cold: bool = False) -> Placement:
    """The turn's placement: the adaptive rule, or a fixed one (``FIXED``) within the
    constraints."""
    if name == "adaptive":
        return choose_placement(context, cold)
    return FIXED[name]
