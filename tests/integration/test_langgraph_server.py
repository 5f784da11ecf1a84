"""`langgraph dev` serves the graph unchanged; the official SDK drives it.

Starts `langgraph dev` (langgraph-cli[inmem]) on a free loopback port from the project
root, configured by its environment (the small test model on both sides, the test
home), with the project's ``auth``; then with ``langgraph_sdk``: create a thread, run a
turn, stream its events, and resume the thread with a second turn - and check that a
caller without a token gets nothing, that another user's token sees none of the thread,
and that a run's context cannot choose the home, the models or the user.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any

import httpx
import pytest
from langgraph_sdk import get_sync_client

from cdarec.llm.server import free_port
from cdarec.service.access import Access
from cdarec.settings import Settings
from tests.fixtures.serve import serving

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory, smol_settings: Settings):
    port = free_port()
    exe = Path(sys.executable).parent / "langgraph"
    log = tmp_path_factory.mktemp("lgdev") / "langgraph-dev.log"
    cmd = [
        str(exe), "dev", "--host", "127.0.0.1", "--port", str(port), "--no-browser",
        "--no-reload",
    ]  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    s = smol_settings
    env = {
        **os.environ,
        "LANGSMITH_TRACING": "false",
        # the server's own settings: its operator's, never a caller's
        "CDAREC_HOME": str(s.home),
        "CDAREC_DATASET": s.dataset,
        "CDAREC_DEVICE_MODEL": s.device_model,
        "CDAREC_CLOUD_MODEL": s.cloud_model,
        "CDAREC_LLM_THREADS": str(s.llm_threads),
    }
    tokens = {u: Access(s.home).new_token(u, name="langgraph test") for u in ("196", "1")}
    with serving(cmd, f"{url}/ok", log, env=env, cwd=ROOT):
        yield url, tokens


def client_of(server: tuple[str, dict[str, str]], user: str | None) -> Any:
    url, tokens = server
    headers = {"Authorization": f"Bearer {tokens[user]}"} if user else {}
    return get_sync_client(url=url, headers=headers)


def test_no_token_no_access_and_threads_are_their_owners(server: Any) -> None:
    with pytest.raises(httpx.HTTPStatusError) as err:
        client_of(server, None).assistants.search(graph_id="cdarec")
    assert err.value.response.status_code == 401
    a, b = client_of(server, "196"), client_of(server, "1")
    thread = a.threads.create()
    assert thread["metadata"]["owner"] == "196"
    with pytest.raises(httpx.HTTPStatusError) as err:
        b.threads.get(thread["thread_id"])
    assert err.value.response.status_code == 404
    assert thread["thread_id"] not in {t["thread_id"] for t in b.threads.search()}
    assert thread["thread_id"] in {t["thread_id"] for t in a.threads.search()}


def test_a_run_cannot_choose_the_home_the_models_or_the_user(server: Any) -> None:
    a = client_of(server, "196")
    [assistant] = a.assistants.search(graph_id="cdarec")
    thread = a.threads.create()
    with pytest.raises(httpx.HTTPStatusError) as err:
        a.runs.wait(
            thread["thread_id"],
            assistant["assistant_id"],
            input={"request": "x"},
            context={"home": "/etc", "device_model": "llamacpp:/tmp/evil.gguf"},
        )
    assert err.value.response.status_code == 422
    # a user id in the context is replaced by the token's (no such user: it would fail)
    a.runs.wait(
        thread["thread_id"],
        assistant["assistant_id"],
        input={"request": "a comedy"},
        context={"user_id": "no-such-user", "judge_top": 4, "show_top": 4},
    )
    state = a.threads.get_state(thread["thread_id"])["values"]
    assert state["turn"] == 1 and state["ranking"], state


def test_sdk_thread_run_stream_and_resume(server: Any) -> None:
    client = client_of(server, "196")
    [assistant] = client.assistants.search(graph_id="cdarec")
    thread = client.threads.create()
    context = {"judge_top": 4, "show_top": 4}

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


def test_the_production_image_takes_langgraph_json_unchanged(tmp_path: Path) -> None:
    """The production server (no Docker engine here to build or run it): `langgraph
    validate` accepts the configuration, and the image `langgraph dockerfile` writes from
    it serves this graph with this auth - the paths it names exist in the project."""
    import json
    import subprocess

    exe = str(Path(sys.executable).parent / "langgraph")
    ok = subprocess.run([exe, "validate"], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert ok.returncode == 0 and "is valid" in ok.stdout, ok.stdout + ok.stderr
    out = tmp_path / "Dockerfile"
    made = subprocess.run(
        [exe, "dockerfile", str(out)], cwd=ROOT, capture_output=True, text=True, timeout=120
    )
    assert made.returncode == 0, made.stdout + made.stderr
    env = {}
    for line in out.read_text().splitlines():
        if line.startswith("ENV ") and "=" in line:
            key, value = line[4:].split("=", 1)
            env[key] = json.loads(value.strip("'"))
    graphs, auth = env["LANGSERVE_GRAPHS"], env["LANGGRAPH_AUTH"]
    assert set(graphs) == {"cdarec"}
    for ref in (graphs["cdarec"], auth["path"]):
        path, _, name = ref.partition(":")
        # the image copies the project to /deps/<the project folder's name>/
        local = ROOT / Path(path).relative_to(Path("/deps") / ROOT.name)
        assert local.is_file() and name in local.read_text(), ref
