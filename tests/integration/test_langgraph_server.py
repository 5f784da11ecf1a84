"""`langgraph dev` serves the graph unchanged; the official SDK drives it.

Starts `langgraph dev` (langgraph-cli[inmem]) on a free loopback port from the project
root, then with ``langgraph_sdk``: create a thread, run a turn with the runtime settings
as the run's context (the small test model on both sides), stream its events, and resume
the thread with a second turn.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest
from langgraph_sdk import get_sync_client

from cdarec.llm.server import free_port
from cdarec.settings import Settings
from tests.fixtures.serve import serving

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory):
    port = free_port()
    exe = Path(sys.executable).parent / "langgraph"
    log = tmp_path_factory.mktemp("lgdev") / "langgraph-dev.log"
    cmd = [
        str(exe), "dev", "--host", "127.0.0.1", "--port", str(port), "--no-browser",
        "--no-reload",
    ]  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    env = {**os.environ, "LANGSMITH_TRACING": "false"}
    with serving(cmd, f"{url}/ok", log, env=env, cwd=ROOT):
        yield url


def test_sdk_thread_run_stream_and_resume(server: str, smol_settings: Settings) -> None:
    client = get_sync_client(url=server)
    [assistant] = client.assistants.search(graph_id="cdarec")
    thread = client.threads.create()
    context = smol_settings.model_dump(mode="json")

    events = list(
        client.runs.stream(
            thread["thread_id"],
            assistant["assistant_id"],
            input={"request": "a funny animated movie"},
            context=context,
            stream_mode="updates",
        )
    )
    nodes = {k for e in events if e.event == "updates" for k in (e.data or {})}
    assert {"summarize_on_device", "plan_strategy", "rank_on_device", "respond"} <= nodes, events
    assert not [e for e in events if e.event == "error"], events

    state = client.threads.get_state(thread["thread_id"])["values"]
    assert state["turn"] == 1 and state["ranking"], state

    client.runs.wait(
        thread["thread_id"], assistant["assistant_id"], input={"request": ""}, context=context
    )
    state = client.threads.get_state(thread["thread_id"])["values"]
    assert state["turn"] == 2 and state["ranking"]
    history = client.threads.get_history(thread["thread_id"], limit=50)
    assert len(history) > 4  # both turns' checkpoints are on the server's thread
