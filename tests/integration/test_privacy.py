"""Invariant 2: the private history never leaves the device side.

A unique canary title is planted as the most recent event of a user's device memory.
A real turn runs on real models. The canary must reach the device SLM's prompt (so the
test can fail: the history is really used) and must be absent from every cloud LLM
prompt, every cloud tool input, and every cloud-visible state channel of every
checkpoint of the thread.
"""

from __future__ import annotations

import json
import time
from typing import Any

import pytest
from langchain_core.callbacks import BaseCallbackHandler

from cdarec.contract.state import CloudView
from cdarec.device.memory import Interaction
from cdarec.graph.builder import CLOUD_NODES, DEVICE_NODES, build_graph
from cdarec.graph.checkpoint import sqlite_checkpointer
from cdarec.graph.runtime import get_resources
from cdarec.settings import Settings

pytestmark = pytest.mark.integration

CANARY = "Zqxv Canary Picture 7731 (1999)"


class Recorder(BaseCallbackHandler):
    """Records every chat-model prompt and tool input with the graph node that made it."""

    def __init__(self) -> None:
        self.prompts: list[tuple[str, str]] = []
        self.tools: list[tuple[str, str]] = []

    def on_chat_model_start(
        self, serialized: Any, messages: Any, *, metadata: Any = None, **kw: Any
    ) -> None:
        node = (metadata or {}).get("langgraph_node", "?")
        text = "\n".join(str(m.content) for batch in messages for m in batch)
        self.prompts.append((node, text))

    def on_tool_start(
        self,
        serialized: Any,
        input_str: str,
        *,
        metadata: Any = None,
        inputs: Any = None,
        **kw: Any,
    ) -> None:
        node = (metadata or {}).get("langgraph_node", "?")
        self.tools.append((node, f"{input_str} {json.dumps(inputs, default=str)}"))


def test_canary_never_reaches_the_cloud(smol_settings: Settings) -> None:
    s = Settings(**{**smol_settings.model_dump(), "user_id": "canary-user", "judge_top": 4})
    res = get_resources(s)
    history = res.device.dataset_history("196")[-30:]
    history.append(Interaction(item_id=CANARY, ts=time.time(), rating=5.0, source="chat"))
    res.memory.seed("canary-user", history, overwrite=True)

    graph = build_graph(sqlite_checkpointer(s.checkpoint_db))
    rec = Recorder()
    cfg = {"configurable": {"thread_id": "canary"}, "callbacks": [rec]}
    # One turn planned by the cloud LLM, one on the fixed plan (which always runs the
    # device SLM's judgement, so the device side is sure to use the history).
    graph.invoke({"request": "something like my last film"}, cfg, context=s)
    fixed = Settings(**{**s.model_dump(), "planner": "fixed"})
    graph.invoke({"request": ""}, cfg, context=fixed)

    cloud_prompts = [t for node, t in rec.prompts if node in CLOUD_NODES]
    device_prompts = [t for node, t in rec.prompts if node in DEVICE_NODES]
    assert cloud_prompts, "the cloud planner and query writer were called"
    assert any(CANARY in t for t in device_prompts), "the device SLM does see the history"
    assert not any(CANARY in t for t in cloud_prompts)
    assert rec.tools and all(node in CLOUD_NODES for node, _ in rec.tools)
    assert not any(CANARY in t for _, t in rec.tools)

    history_states = list(graph.get_state_history({"configurable": {"thread_id": "canary"}}))
    assert history_states
    for snap in history_states:
        for key in CloudView.__annotations__:
            if key in snap.values:
                value = snap.values[key]
                dumped = json.dumps(
                    value, default=lambda v: v.model_dump() if hasattr(v, "model_dump") else str(v)
                )
                assert CANARY not in dumped, f"canary in cloud-visible channel {key}"
