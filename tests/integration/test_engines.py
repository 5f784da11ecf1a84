"""The same chat on every pair of backends (issue 18): the device's SQLite file with the
embedded Chroma, and a PostgreSQL server with a Chroma server, both real servers started
on loopback by the tests (tests/conftest.py). One test body, every backend — the pattern
of LangGraph's own checkpointer tests. Real small models."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from cdarec.graph.checkpoint import open_checkpointer
from cdarec.service.access import Access
from cdarec.service.chat import ChatSession
from cdarec.service.sessions import list_sessions
from cdarec.settings import Settings

pytestmark = pytest.mark.integration


@pytest.fixture(params=["device-files", "servers"])
def backends(request: pytest.FixtureRequest, smol_settings: Settings) -> Settings:
    if request.param == "device-files":
        return smol_settings
    return smol_settings.model_copy(
        update={
            "database_url": request.getfixturevalue("postgres_url"),
            "chroma_url": request.getfixturevalue("chroma_server").url,
        }
    )


def _steps(values: dict[str, Any]) -> dict[str, Any]:
    return {r.node: r for r in values["trace"]}


def test_a_session_runs_and_resumes_on_each_backend(backends: Settings) -> None:
    s = backends
    chat = ChatSession(s, None, warm_up="off")
    if s.chroma_url:
        assert chat.res.cloud.catalogue.count() == chat.res.dataset.n_items
    out = chat.turn("a funny animated film from the 1990s")
    retrieval = _steps(out)["retrieve_candidates"]
    assert retrieval.status == "ok" and not retrieval.detail.startswith("0 hits")
    first = [r.item_id for r in out["ranking"]]
    assert first and any("semantic" in r.sources for r in out["ranking"])
    # another process's view of the same store: a new session object on the thread
    again = ChatSession(s, chat.thread, warm_up="off")
    assert [r.item_id for r in again.last_ranking()] == first
    out2 = again.turn("something darker")
    assert out2["turn"] == 2 and out2["ranking"]
    mine = list_sessions(open_checkpointer(s), user=s.user_id)
    assert [(x.thread, x.turns) for x in mine if x.thread == chat.thread] == [(chat.thread, 2)]


def test_cdarec_index_against_each_backend(backends: Settings) -> None:
    env = {**os.environ, "CDAREC_HOME": str(backends.home), "CDAREC_DATASET": "ml-100k"}
    if backends.chroma_url:
        env["CDAREC_CHROMA_URL"] = backends.chroma_url
    cli = Path(sys.executable).with_name("cdarec")
    done = subprocess.run([str(cli), "index"], env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert "1682 items" in done.stdout


def test_two_serve_workers_share_threads_through_postgres(
    smol_settings: Settings, postgres_url: str, chroma_server: Any
) -> None:
    """Two `cdarec serve` apps (two workers behind one port) on one PostgreSQL: a thread
    begun on one is listed and continued on the other; another user still sees nothing."""
    from cdarec.web.server import create_app

    s = smol_settings.model_copy(
        update={"database_url": postgres_url, "chroma_url": chroma_server.url}
    )
    token = Access(s.home).new_token("196", name="workers")
    other = Access(s.home).new_token("1", name="workers")
    base = "http://127.0.0.1:8000"
    a = TestClient(create_app(s), base_url=base)
    b = TestClient(create_app(s), base_url=base)
    h = {"authorization": f"Bearer {token}"}
    thread = a.post("/api/sessions", headers=h).json()["thread"]
    r = a.post(f"/api/sessions/{thread}/turn", json={"message": "a comedy"}, headers=h)
    assert r.status_code == 200 and "event: result" in r.text, r.text[-500:]
    listed = b.get("/api/sessions", headers=h).json()
    assert [x["thread"] for x in listed if x["thread"] == thread] == [thread]
    r = b.post(f"/api/sessions/{thread}/turn", json={"message": "older ones"}, headers=h)
    assert r.status_code == 200 and '"turn": 2' in r.text, r.text[-500:]
    h1 = {"authorization": f"Bearer {other}"}
    assert (
        b.post(f"/api/sessions/{thread}/turn", json={"message": "x"}, headers=h1).status_code == 404
    )
    assert all(x["thread"] != thread for x in b.get("/api/sessions", headers=h1).json())
