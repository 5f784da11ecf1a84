""" "more like N" is private feedback: the device binds the shown item itself and the
cloud gets the turn without it (scripted fake models; real data, real Chroma, the real
graph and checkpointer)."""

from __future__ import annotations

import json
from typing import Any

from langchain_core.callbacks import BaseCallbackHandler

from cdarec.graph.builder import CLOUD_NODES
from cdarec.service.chat import ChatError, ChatSession
from cdarec.settings import Settings


class CloudInputs(BaseCallbackHandler):
    """What every cloud node received as input, and every prompt and tool input made
    inside a cloud node."""

    def __init__(self) -> None:
        self.nodes: list[tuple[str, dict[str, Any]]] = []
        self.text: list[str] = []

    def on_chain_start(self, serialized: Any, inputs: Any, **kw: Any) -> None:
        node = (kw.get("metadata") or {}).get("langgraph_node")
        if node in CLOUD_NODES and kw.get("name") == node and isinstance(inputs, dict):
            self.nodes.append((node, inputs))
            self.text.append(json.dumps(inputs, default=str))

    def on_chat_model_start(self, serialized: Any, messages: Any, **kw: Any) -> None:
        if (kw.get("metadata") or {}).get("langgraph_node") in CLOUD_NODES:
            self.text.extend(str(m.content) for batch in messages for m in batch)

    def on_tool_start(self, serialized: Any, input_str: str, **kw: Any) -> None:
        if (kw.get("metadata") or {}).get("langgraph_node") in CLOUD_NODES:
            self.text.append(f"{input_str} {json.dumps(kw.get('inputs'), default=str)}")


def test_more_like_binds_the_item_on_the_device_and_never_tells_the_cloud(
    settings: Settings,
) -> None:
    session = ChatSession(settings, thread="t-more", warm_up="off")
    first = session.turn("a comedy")
    item = first["ranking"][1]

    request, message = session.feedback("more like 2")
    assert request == "" and item.label in message
    spy = CloudInputs()
    session.config["callbacks"] = [*(session.config.get("callbacks") or []), spy]
    values = session.turn(request)

    # The device used it: the film it bound, similar items, the strategy's weights.
    assert values["bound"] is not None and values["bound"].like_items[0] == item.item_id
    shown = [r.item_id for r in values["ranking"]]
    assert shown and item.item_id not in shown
    rank = next(t for t in values["trace"] if t.node == "rank_on_device")
    assert f"more like {item.label}" in rank.detail
    assert any(item.label in r.reason for r in values["ranking"]), "a reason says it is like it"
    assert values.get("anchor") is None, "cleared with the turn"

    # The cloud did not learn which item: not in any input, prompt or tool call.
    assert spy.nodes, "the cloud nodes ran"
    for node, inputs in spy.nodes:
        assert "anchor" not in inputs, node
        assert inputs.get("request") == "", node
        constraints = inputs.get("constraints")
        assert constraints is None or not constraints.like_items, node
    assert not any(item.label in t for t in spy.text)

    # The next turn is not "more like" any more.
    again = session.turn("")
    assert again["bound"] is None or not again["bound"].like_items


def test_more_like_names_only_an_item_the_session_showed(settings: Settings) -> None:
    session = ChatSession(settings, thread="t-more-2", warm_up="off")
    session.turn("a comedy")
    session.feedback("more like 1")
    typed = session.turn("a drama")  # typed words instead: their own turn, not the click's
    assert typed["bound"] is None or not typed["bound"].like_items
    try:
        session.turn("", anchor="no-such-item")
    except ChatError as err:
        assert "was not shown" in str(err)
    else:
        raise AssertionError("an anchor the session never showed must be refused")
