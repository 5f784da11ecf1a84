from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import pytest
import requests
from langgraph.checkpoint.memory import InMemorySaver
from langsmith import Client

from cdarec.device.memory import Interaction
from cdarec.graph.builder import CLOUD_NODES, DEVICE_NODES, build_graph
from cdarec.graph.runtime import Resources, use_resources
from cdarec.settings import Settings
from cdarec.tracing import MASKED, PrivacyClient, guard_tracing, redact_paths, run_callbacks
from tests.conftest import REAL_HOME
from tests.fakes import JUDGE, PLAN, QUERIES, by_task, fake_llm

CANARY = "Zqxv Canary Picture 7731 (1999)"


def test_tracing_on_forces_hidden_payloads(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LANGSMITH_TRACING", "true")
    monkeypatch.setenv("LANGSMITH_HIDE_INPUTS", "false")  # a user's setting is overridden
    for v in ("LANGSMITH_HIDE_OUTPUTS", "LANGCHAIN_HIDE_INPUTS", "LANGCHAIN_HIDE_OUTPUTS"):
        monkeypatch.delenv(v, raising=False)
    build_graph()
    client = Client(  # never contacted
        api_key="test-key", api_url="http://127.0.0.1:9", auto_batch_tracing=False, info={}
    )
    assert client._hide_run_inputs({"history": "Canary (1999)"}) == {}
    assert client._hide_run_outputs({"reply": "Canary (1999)"}) == {}


def test_tracing_off_changes_nothing(monkeypatch: pytest.MonkeyPatch) -> None:
    for v in (
        "LANGSMITH_TRACING",
        "LANGSMITH_TRACING_V2",
        "LANGCHAIN_TRACING_V2",
        "LANGCHAIN_TRACING",
    ):
        monkeypatch.delenv(v, raising=False)
    monkeypatch.delenv("LANGSMITH_HIDE_INPUTS", raising=False)
    assert guard_tracing() is False
    import os

    assert "LANGSMITH_HIDE_INPUTS" not in os.environ


# -- selective masking, checked on what the LangSmith client would send --------------------
class RecordingSession(requests.Session):
    """Captures every request the LangSmith client makes; answers 200 and sends nothing."""

    def __init__(self) -> None:
        super().__init__()
        self.bodies: list[str] = []

    def request(self, method: str, url: str, *args: Any, **kwargs: Any) -> requests.Response:
        body = kwargs.get("data") or kwargs.get("json") or b""
        if isinstance(body, bytes):
            body = body.decode("utf-8", "replace")
        self.bodies.append(f"{method} {url} {body if isinstance(body, str) else json.dumps(body)}")
        resp = requests.Response()
        resp.status_code = 200
        resp._content = b"{}"
        resp.url = url
        return resp


def test_langsmith_upload_masks_device_runs_and_keeps_the_tree(
    home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A canary title planted in device memory reaches the device SLM's prompt (checked
    through the fake model's own record) but nothing the LangSmith client sends; the
    uploaded run tree still has every node, tagged by side, and cloud payloads."""
    monkeypatch.setenv("LANGSMITH_TRACING", "true")
    monkeypatch.setenv("LANGSMITH_API_KEY", "test-key")
    if not (REAL_HOME / "datasets" / "ml-100k").exists():
        pytest.fail("ML-100K missing: run scripts/test.sh")
    s = Settings(home=home, dataset="ml-100k", user_id="canary-user", judge_top=4)
    script = by_task(PLAN, QUERIES, JUDGE)
    device = fake_llm(script, "device")
    res = use_resources(Resources(s, device_llm=device, cloud_llm=fake_llm(script, "cloud")))
    history = res.device.dataset_history("196")[-20:]
    history.append(Interaction(item_id=CANARY, ts=time.time(), rating=5.0, source="chat"))
    res.memory.seed("canary-user", history, overwrite=True)

    session = RecordingSession()
    client = PrivacyClient(
        api_key="test-key",
        api_url="http://127.0.0.1:9",
        session=session,
        auto_batch_tracing=False,
        info={},
    )
    [tracer] = run_callbacks(client)
    graph = build_graph(InMemorySaver())
    thread = "canary-user-3f9a2c1d"  # a thread id that names its user, as the chat's do
    cfg = {
        "configurable": {"thread_id": thread},
        "metadata": {"user_id": "canary-user"},  # as ChatSession sets it (for `sessions`)
        "callbacks": [tracer],
    }
    out = graph.invoke({"request": "something like my last film"}, cfg, context=s)
    tracer.wait_for_futures()
    client.flush()

    assert any(CANARY in str(p) for p in device.chat.prompts), "the device SLM must see it"
    sent = "\n".join(session.bodies)
    assert session.bodies and CANARY not in sent
    assert CANARY.split()[1] not in sent  # not even a fragment
    # Nothing device-derived either: the sequence model's proposals travel in the state
    # that the plan's edge reads (it used to be uploaded unmasked, inheriting the planner
    # node's "cloud" side); no user id, no thread id naming the user, no local path.
    assert "proposals" not in sent
    assert "canary-user" not in sent
    assert str(home) not in sent and str(REAL_HOME) not in sent
    ran = [step.task for step in out["plan"].steps()]  # one side of each movable sub-task
    assert set(ran) & set(CLOUD_NODES) and set(ran) & set(DEVICE_NODES)
    for node in ran:
        assert f'"name": "{node}"' in sent or f'"name":"{node}"' in sent, node
    assert "side:cloud" in sent and "side:device" in sent
    assert MASKED["masked"] in sent
    assert "light science fiction comedy" in sent  # cloud payloads stay readable
    assert '"bucket"' in sent and '"plan_weights"' in sent and '"tokens_out"' in sent


def test_paths_are_cut_to_file_names() -> None:
    assert redact_paths("/root/.cache/cdarec/models/x.gguf") == "x.gguf"
    assert redact_paths("llamacpp:/home/u/m/qwen.gguf failed") == "llamacpp:qwen.gguf failed"
    assert redact_paths("model_path='/a/b/c.gguf'") == "model_path='c.gguf'"
    assert redact_paths("a 1990s comedy / drama") == "a 1990s comedy / drama"


def test_the_readable_run_names_are_exactly_the_cloud_nodes() -> None:
    """``tracing`` names the cloud's nodes itself (it sits below the graph); they must be
    the layout's, or a renamed node would be masked and a new one go unlisted."""
    from cdarec.tracing import CLOUD_RUN_NAMES

    assert set(CLOUD_RUN_NAMES) == set(CLOUD_NODES)
