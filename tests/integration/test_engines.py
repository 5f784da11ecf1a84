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


def test_three_serve_workers_hold_thirty_sessions_and_lose_no_turn_to_a_kill(
    smol_settings: Settings, postgres_url: str, chroma_server: Any, tmp_path: Path
) -> None:
    """`cdarec serve --workers 3` (real processes behind one port) on PostgreSQL and a
    Chroma server: a browser sign-in made on one worker holds on every connection;
    30 signed-in sessions at once, 0 errors; a worker SIGKILLed while turns stream loses
    no completed turn (every thread lists at least the turns that answered), and the
    server answers every session again after it (uvicorn starts a new worker)."""
    import asyncio
    import re
    import signal
    import time

    import httpx
    import psutil

    from cdarec.graph.runtime import get_resources
    from cdarec.llm.server import free_port
    from tests.fixtures.serve import serving

    s = smol_settings
    users = get_resources(s).dataset.users[:30]
    access = Access(s.home)
    tokens = [access.new_token(u, name="three workers") for u in users]
    port = free_port()
    env = {
        **os.environ,
        "CDAREC_DATABASE_URL": postgres_url,
        "CDAREC_CHROMA_URL": chroma_server.url,
        "CDAREC_JUDGE_TOP": "4",
        "CDAREC_SHOW_TOP": "4",
        "CDAREC_PLACEMENT": "adaptive",  # the product's own: turns beyond the queue from facts
    }
    cmd = [
        sys.executable, "-m", "cdarec.cli", "serve", "--workers", "3", "--port", str(port),
        "--home", str(s.home), "--dataset", s.dataset, "--device-model", s.device_model,
        "--cloud-model", s.cloud_model, "--user", users[0],
    ]  # fmt: skip
    base = f"http://127.0.0.1:{port}"
    log = tmp_path / "serve.log"

    async def turn(client: httpx.AsyncClient, token: str, thread: str, message: str) -> bool:
        h = {"authorization": f"Bearer {token}"}
        try:
            async with client.stream(
                "POST", f"/api/sessions/{thread}/turn", json={"message": message}, headers=h
            ) as resp:
                return resp.status_code == 200 and any(
                    [line.startswith("event: result") async for line in resp.aiter_lines()]
                )
        except httpx.HTTPError:
            return False

    async def all_sessions(message: str, kill_after_s: float | None = None) -> list[bool]:
        # one connection per session: the kernel spreads them over the workers
        clients = [httpx.AsyncClient(base_url=base, timeout=600) for _ in tokens]
        try:
            jobs = [
                asyncio.create_task(turn(c, t, th, message))
                for c, t, th in zip(clients, tokens, threads, strict=True)
            ]
            if kill_after_s is not None:
                await asyncio.sleep(kill_after_s)
                os.kill(workers()[0], signal.SIGKILL)
            return list(await asyncio.gather(*jobs))
        finally:
            for c in clients:
                await c.aclose()

    def workers() -> list[int]:
        """uvicorn's live worker processes (spawned; not multiprocessing's resource tracker,
        not a killed one that is not reaped yet)."""
        out = []
        for p in psutil.Process(proc.pid).children():
            try:
                line = " ".join(p.cmdline())
                if "spawn_main" in line and p.status() != psutil.STATUS_ZOMBIE:
                    out.append(p.pid)
            except psutil.Error:
                continue
        return sorted(out)

    try:
        with serving(cmd, f"{base}/healthz", log, env=env, timeout_s=300) as proc:
            deadline = time.monotonic() + 120
            while len(workers()) < 3 and time.monotonic() < deadline:
                time.sleep(0.5)
            assert len(workers()) >= 3, log.read_text()[-2000:]
            # a browser sign-in on one connection, honoured on fresh ones (any worker)
            link = re.search(r"/signin\?token=(\S+)", log.read_text())
            assert link, log.read_text()[-2000:]
            first = httpx.Client(base_url=base)
            first.get(link.group(0), follow_redirects=False)
            cookie = first.cookies.get("cdarec_session")
            assert cookie
            for _ in range(9):
                with httpx.Client(base_url=base, cookies={"cdarec_session": cookie}) as fresh:
                    assert fresh.get("/api/me").json()["user"] == users[0]
            threads = []
            for t in tokens:  # each on a fresh connection: made on any worker
                r = httpx.post(f"{base}/api/sessions", headers={"authorization": f"Bearer {t}"})
                assert r.status_code == 200, r.text
                threads.append(r.json()["thread"])
            ok = asyncio.run(all_sessions("a comedy"))
            assert all(ok), f"{ok.count(False)} of 30 turns failed:\n{log.read_text()[-2000:]}"
            before = workers()
            killed = asyncio.run(all_sessions("something older", kill_after_s=1.0))
            assert before[0] not in workers()  # killed
            deadline = time.monotonic() + 60
            while len(workers()) < 3 and time.monotonic() < deadline:  # uvicorn starts one
                time.sleep(0.5)
            again = asyncio.run(all_sessions("a calm film"))
            assert all(again), f"after the kill {again.count(False)} of 30 turns failed"
            for t, th, answered in zip(tokens, threads, killed, strict=True):
                h = {"authorization": f"Bearer {t}"}
                [info] = [x for x in httpx.get(f"{base}/api/sessions", headers=h).json()]
                assert info["thread"] == th
                assert info["turns"] >= 2 + answered, (info, answered)
    finally:
        for u in users:
            access.revoke_tokens(u, "three workers")
