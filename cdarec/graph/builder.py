"""The CDA4Rec turn as a LangGraph ``StateGraph``.

    START -> summarize_on_device (device) -> plan_strategy (cloud)
          -> [Send per the plan, in parallel]
               model_semantics (cloud) -> retrieve_candidates (cloud, one search per query)
               model_sequence_on_device (device)
          -> rank_on_device (device; deferred until every branch is done) -> respond -> END

The plan decides which branches run (conditional edges returning ``Send``s); skipped
steps never run. ``rank_on_device`` is a deferred node: it runs once, after every
branch that was started has finished, whichever branches the plan chose.
``build_graph`` compiles without a checkpointer (the LangGraph server brings its own);
the CLI, the web app and the tests pass theirs.
"""

from __future__ import annotations

from typing import Any

from langgraph.graph import END, START, StateGraph
from langgraph.types import Checkpointer, Send

from cdarec.cloud.nodes import (
    model_semantics,
    plan_strategy,
    retrieve_candidates,
)
from cdarec.contract.state import CloudView, State, TurnInput, TurnOutput
from cdarec.device.nodes import (
    model_sequence_on_device,
    rank_on_device,
    respond,
    summarize_on_device,
)
from cdarec.settings import Settings
from cdarec.tracing import guard_tracing

CLOUD_NODES = ("plan_strategy", "model_semantics", "retrieve_candidates")
DEVICE_NODES = ("summarize_on_device", "model_sequence_on_device", "rank_on_device", "respond")


def route_plan(state: State) -> list[Send] | str:
    """Fan out to the branches the plan switched on; they run in the same superstep."""
    plan = state["plan"]
    sends: list[Send] = []
    if plan.semantic:
        sends.append(Send("model_semantics", _cloud_view(state)))
    if plan.sequence:
        sends.append(Send("model_sequence_on_device", state))
    return sends or "rank_on_device"


def _cloud_view(state: State) -> dict[str, Any]:
    return {k: state[k] for k in CloudView.__annotations__ if k in state}  # type: ignore[literal-required]


def build_graph(checkpointer: Checkpointer = None) -> Any:
    guard_tracing()  # before any LangSmith client exists
    g = StateGraph(State, context_schema=Settings, input_schema=TurnInput, output_schema=TurnOutput)
    side = {"side": "device"}
    g.add_node("summarize_on_device", summarize_on_device, metadata=side)
    g.add_node("plan_strategy", plan_strategy, input_schema=CloudView, metadata={"side": "cloud"})
    g.add_node(
        "model_semantics", model_semantics, input_schema=CloudView, metadata={"side": "cloud"}
    )
    g.add_node(
        "retrieve_candidates",
        retrieve_candidates,
        input_schema=CloudView,
        metadata={"side": "cloud"},
    )
    g.add_node("model_sequence_on_device", model_sequence_on_device, metadata=side)
    g.add_node("rank_on_device", rank_on_device, defer=True, metadata=side)
    g.add_node("respond", respond, metadata=side)

    g.add_edge(START, "summarize_on_device")
    g.add_edge("summarize_on_device", "plan_strategy")
    g.add_conditional_edges(
        "plan_strategy",
        route_plan,
        ["model_semantics", "model_sequence_on_device", "rank_on_device"],
    )
    g.add_edge("model_semantics", "retrieve_candidates")
    g.add_edge("retrieve_candidates", "rank_on_device")
    g.add_edge("model_sequence_on_device", "rank_on_device")
    g.add_edge("rank_on_device", "respond")
    g.add_edge("respond", END)
    return g.compile(checkpointer=checkpointer, name="cdarec")


# What `langgraph.json` serves: compiled without a checkpointer (the server brings one).
graph = build_graph()
