"""Graph: the CDA4Rec turn as a LangGraph ``StateGraph`` (the one module that wires
both sides' nodes together).

    START -> summarize_on_device (device: abstract, measured context, proposed placement)
          -> plan_strategy (cloud) | plan_on_device (device)            [placement]
          -> [Send per the plan, in parallel]
               model_semantics (cloud) | model_semantics_on_device (device)  [placement]
                 -> retrieve_candidates (cloud) | retrieve_on_device (device) [placement]
               model_sequence_on_device (device)
          -> rank_on_device (device; deferred until every branch is done)
          -> [judge_on_cloud (cloud): only with a shortlist, from a device with no history]
          -> respond (device) -> END

The plan decides which branches run and on which side each movable sub-task runs
(conditional edges returning ``Send``s or a node name; ``contract.placement``); skipped
steps never run. Every route reads the placement through ``placed`` (``enforce``), so a
plan that puts a history-reading sub-task on the cloud is repaired before anything runs.
``rank_on_device`` is a deferred node: it runs once, after every branch that was started
has finished, whichever branches the plan chose.
``build_graph`` compiles without a checkpointer (the LangGraph server brings its own);
the CLI, the web app and the tests pass theirs.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from langgraph.graph import END, START, StateGraph
from langgraph.types import Checkpointer, Send

from cdarec.cloud.nodes import (
    judge_on_cloud,
    model_semantics,
    plan_strategy,
    retrieve_candidates,
)
from cdarec.contract.placement import proposed
from cdarec.contract.plan import LAYOUT, node_for
from cdarec.contract.state import CloudView, State, TurnInput, TurnOutput
from cdarec.device.nodes import (
    model_semantics_on_device,
    model_sequence_on_device,
    placed,
    plan_on_device,
    rank_on_device,
    respond,
    retrieve_on_device,
    summarize_on_device,
)
from cdarec.settings import ServerContext, Settings
from cdarec.tracing import guard_tracing

# What each node of ``LAYOUT`` runs.
FUNCTIONS: dict[str, Callable[..., Any]] = {
    "summarize_on_device": summarize_on_device,
    "plan_strategy": plan_strategy,
    "plan_on_device": plan_on_device,
    "model_semantics": model_semantics,
    "model_semantics_on_device": model_semantics_on_device,
    "retrieve_candidates": retrieve_candidates,
    "retrieve_on_device": retrieve_on_device,
    "model_sequence_on_device": model_sequence_on_device,
    "rank_on_device": rank_on_device,
    "judge_on_cloud": judge_on_cloud,
    "respond": respond,
}
CLOUD_NODES = tuple(n.task for n in LAYOUT if n.side == "cloud")
DEVICE_NODES = tuple(n.task for n in LAYOUT if n.side == "device")


def route_planning(state: State) -> str:
    """Who plans: the cloud planner, or the device's rule when the cloud is slow or gone."""
    # Before planning, the state still holds the last turn's plan: this turn's proposal
    # (written by summarize_on_device) decides who plans.
    return node_for("planning", proposed(state).planning)


def route_plan(state: State) -> list[Send] | str:
    """Fan out to the branches the plan switched on, each on its placed side; they run in
    the same superstep. A cloud node gets the cloud view only."""
    plan, placement = state["plan"], placed(state)
    sends: list[Send] = []
    if plan.semantic:
        node = node_for("semantics", placement.semantics)
        sends.append(Send(node, _cloud_view(state) if node in CLOUD_NODES else state))
    if plan.sequence:
        sends.append(Send("model_sequence_on_device", state))
    return sends or "rank_on_device"


def route_retrieval(state: State) -> str:
    """Where the intent's queries are searched: the cloud's catalogue or the device's index."""
    return node_for("retrieval", placed(state).retrieval)


def route_judgement(state: State) -> str:
    """After the ranking: the cloud judges only a shortlist the device wrote this turn
    (it writes one only when it holds no private history and the plan places the
    judgement on the cloud); otherwise straight to the reply."""
    return "judge_on_cloud" if state.get("shortlist") else "respond"


def _cloud_view(state: State) -> dict[str, Any]:
    return {k: state[k] for k in CloudView.__annotations__ if k in state}  # type: ignore[literal-required]


def build_graph(checkpointer: Checkpointer = None, context_schema: type[Any] = Settings) -> Any:
    """``context_schema``: what a run's context is - the full ``Settings`` for cdarec's own
    entry points, ``ServerContext`` (bounded per-turn knobs, the user from auth) for the
    LangGraph server."""
    guard_tracing()  # before any LangSmith client exists
    g = StateGraph(
        State, context_schema=context_schema, input_schema=TurnInput, output_schema=TurnOutput
    )
    for node in LAYOUT:
        # A cloud node's input schema is the cloud view: it cannot read another channel.
        extra: dict[str, Any] = {"input_schema": CloudView} if node.side == "cloud" else {}
        if node.task == "rank_on_device":
            extra["defer"] = True  # once, after every branch the plan started has finished
        g.add_node(node.task, FUNCTIONS[node.task], metadata={"side": node.side}, **extra)

    g.add_edge(START, "summarize_on_device")
    g.add_conditional_edges(
        "summarize_on_device", route_planning, ["plan_strategy", "plan_on_device"]
    )
    branches = [
        "model_semantics",
        "model_semantics_on_device",
        "model_sequence_on_device",
        "rank_on_device",
    ]
    for planner in ("plan_strategy", "plan_on_device"):
        g.add_conditional_edges(planner, route_plan, branches)
    for semantics in ("model_semantics", "model_semantics_on_device"):
        g.add_conditional_edges(
            semantics, route_retrieval, ["retrieve_candidates", "retrieve_on_device"]
        )
    for node in ("retrieve_candidates", "retrieve_on_device", "model_sequence_on_device"):
        g.add_edge(node, "rank_on_device")
    g.add_conditional_edges("rank_on_device", route_judgement, ["judge_on_cloud", "respond"])
    g.add_edge("judge_on_cloud", "respond")
    g.add_edge("respond", END)
    return g.compile(checkpointer=checkpointer, name="cdarec")


# What `langgraph.json` serves: compiled without a checkpointer (the server brings one),
# its callers' context limited to ``ServerContext`` (the server's auth, in
# ``cdarec.service.server_auth``, sets the user from the caller's token).
graph = build_graph(context_schema=ServerContext)
