"""Faults on real components, as a user meets them: the embedded cloud server killed
between turns, a catalogue index cut short, an unreadable session database, a session
database locked by another process. Each ends in a working turn or a clear error that
names the fix; nothing saved is lost."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import pytest
import uvicorn
from fastapi import FastAPI, Request, Response

from cdarec.cli import main
from cdarec.cloud.resources import cloud_resources
from cdarec.graph.checkpoint import CheckpointError
from cdarec.graph.runtime import get_resources
from cdarec.llm.server import free_port
from cdarec.service.chat import ChatSession, turn_warnings
from cdarec.settings import Settings

pytestmark = pytest.mark.integration


def test_a_killed_embedded_cloud_server_is_restarted_on_the_next_turn(
    smol_settings: Settings,
) -> None:
    # its own server (another context size), so the other tests' server is not touched
    s = smol_settings.model_copy(update={"llm_ctx": 1536, "planner": "llm", "plan_cache": False})
    session = ChatSession(s, None, warm_up="off")
    first = session.turn("a funny animated film")
    plan_step = next(r for r in first["trace"] if r.node == "plan_strategy")
    assert plan_step.tokens_in > 0 and plan_step.status != "fallback"
    server = get_resources(s).cloud.cloud_llm.server
    assert server.alive()
    os.kill(server.proc.pid, signal.SIGKILL)
    server.proc.wait(timeout=10)
    assert not server.alive()

    second = session.turn("a scary film from the 1980s")
    assert "started again" in session.notice
    llm = get_resources(s).cloud.cloud_llm
    assert llm.server.alive() and llm.server is not server
    plan_step = next(r for r in second["trace"] if r.node == "plan_strategy")
    assert plan_step.status != "fallback" and plan_step.tokens_in > 0, plan_step
    assert second["ranking"]


def test_a_catalogue_index_cut_short_is_completed(home: Path) -> None:
    s = Settings(home=home, dataset="ml-100k")
    cat = cloud_resources(s).catalogue
    n = cat.count()
    ids = cat.collection.get(limit=300)["ids"]
    cat.collection.delete(ids=ids)  # as if `cdarec index` had been killed part way
    assert cat.count() == n - 300
    fresh = cloud_resources(Settings(home=home, dataset="ml-100k", llm_threads=1))
    assert fresh.catalogue.count() == n


def test_an_unreadable_session_database_is_a_clear_error(
    smol_settings: Settings, tmp_path: Path
) -> None:
    s = smol_settings.model_copy(update={"home": tmp_path})
    (tmp_path / "device").mkdir()
    s.checkpoint_db.write_bytes(b"this is not a database " * 100)
    with pytest.raises(CheckpointError, match="move it aside"):
        ChatSession(s, None, warm_up="off")


def test_a_session_database_locked_by_another_process_is_waited_for(
    smol_settings: Settings, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Another process holds a write transaction for 6 s: the turn waits (the busy
    timeout), then runs; the session is saved."""
    home = smol_settings.home
    db = smol_settings.checkpoint_db
    ChatSession(smol_settings, "locked-1", warm_up="off")  # the database exists
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import sqlite3, sys, time; c = sqlite3.connect(sys.argv[1]); "
            "c.execute('BEGIN IMMEDIATE'); print('held', flush=True); time.sleep(6); c.rollback()",
            str(db),
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert holder.stdout is not None and holder.stdout.readline().strip() == "held"
    t0 = time.monotonic()
    code = main(
        ["chat", "--home", str(home), "--dataset", smol_settings.dataset,
         "--device-model", smol_settings.device_model, "--cloud-model", smol_settings.cloud_model,
         "--user", "196", "--thread", "locked-1", "--message", "a comedy", "--once"]
    )  # fmt: skip
    holder.wait(timeout=10)
    assert code == 0, capsys.readouterr().err
    assert time.monotonic() - t0 >= 5.5  # it waited past sqlite's default 5 s
    conn = sqlite3.connect(db)
    n = conn.execute("select count(*) from checkpoints where thread_id='locked-1'").fetchone()[0]
    assert n > 0


class FaultyEndpoint:
    """An OpenAI-compatible endpoint that fails as remote endpoints do: HTTP 500, a body
    that is not an answer, or no answer at all (hung)."""

    def __init__(self) -> None:
        self.mode = "500"
        self.calls = 0
        app = FastAPI()

        @app.get("/v1/models")
        async def models() -> dict[str, Any]:
            return {"object": "list", "data": [{"id": "faulty", "object": "model"}]}

        @app.post("/v1/chat/completions")
        async def chat(request: Request) -> Response:
            self.calls += 1
            await request.body()
            if self.mode == "500":
                return Response('{"error": "internal"}', 500, media_type="application/json")
            if self.mode == "garbage":
                return Response("<html>gateway oops</html>", 200, media_type="text/html")
            await asyncio.sleep(3600)  # hung
            return Response("", 200)

        self.app = app


@pytest.fixture(scope="module")
def faulty() -> Any:
    endpoint = FaultyEndpoint()
    port = free_port()
    server = uvicorn.Server(
        uvicorn.Config(endpoint.app, host="127.0.0.1", port=port, log_level="error")
    )
    threading.Thread(target=server.run, daemon=True).start()
    while not server.started:
        time.sleep(0.05)
    endpoint.url = f"http://127.0.0.1:{port}/v1"  # type: ignore[attr-defined]
    yield endpoint
    server.should_exit = True


@pytest.mark.parametrize("mode", ["500", "garbage", "hung"])
def test_a_failing_cloud_endpoint_costs_one_timeout_and_is_said(
    mode: str, faulty: Any, smol_settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The turn ends in a device-only answer that says the cloud failed, within the
    stated deadline: one ``llm_timeout_s`` of waiting for the cloud (later cloud calls
    of the turn are not sent) plus the device's own work; the next turn tries the
    endpoint again."""
    monkeypatch.setenv("OPENAI_BASE_URL", faulty.url)
    monkeypatch.setenv("OPENAI_API_KEY", "local")
    timeout = 4.0
    s = smol_settings.model_copy(
        update={
            "cloud_model": "openai:faulty",
            "planner": "llm",
            "plan_cache": False,
            "llm_timeout_s": timeout,
        }
    )
    faulty.mode = mode
    session = ChatSession(s, None, warm_up="off")
    session.turn("something to cheer me up")  # loads the device model (not timed)
    faulty.calls = 0
    t0 = time.monotonic()
    values = session.turn("a warm film to cheer me up")
    wall = time.monotonic() - t0
    warnings = turn_warnings(values)
    assert values["ranking"], "a device-only answer"
    assert any("plan_strategy" in w and "model call failed" in w for w in warnings), warnings
    assert any("check that the endpoint is up" in w for w in warnings)
    # at most two requests reach it (the client's one retry), then the turn stops asking
    assert faulty.calls <= 2, faulty.calls
    # the cloud's steps waited for the endpoint once: two tries of one call, no more
    cloud_s = sum(r.ms for r in values["trace"] if r.side == "cloud") / 1000
    assert cloud_s < 2 * timeout + 3, f"cloud steps took {cloud_s:.1f} s (turn {wall:.1f} s)"
    faulty.calls = 0
    session.turn("a calm film for a rainy evening")
    assert faulty.calls >= 1  # the next turn tried the endpoint again


def test_the_chat_killed_mid_turn_resumes_with_every_completed_turn_and_feedback(
    smol_settings: Settings, tmp_path: Path
) -> None:
    """`cdarec chat` as a person runs it (a process reading typed lines), SIGKILLed in the
    middle of its third turn: resuming the thread shows both completed turns and the
    feedback given between them."""
    s = smol_settings
    thread = "killed-mid-turn"
    cmd = [
        sys.executable, "-m", "cdarec.cli", "chat", "--home", str(s.home), "--dataset",
        s.dataset, "--device-model", s.device_model, "--cloud-model", s.cloud_model,
        "--user", "196", "--thread", thread,
    ]  # fmt: skip
    env = {**os.environ, "CDAREC_JUDGE_TOP": "4", "CDAREC_SHOW_TOP": "4"}
    proc = subprocess.Popen(
        cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
        text=True, env=env,
    )  # fmt: skip
    assert proc.stdin is not None and proc.stdout is not None

    def until(marker: str, timeout_s: float = 240) -> str:
        seen, deadline = [], time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            line = proc.stdout.readline()
            assert line, "the chat exited:\n" + "".join(seen)
            seen.append(line)
            if marker in line:
                return "".join(seen)
        raise AssertionError(f"no {marker!r} in:\n{''.join(seen)}")

    for text, marker in [
        ("a funny animated film", "plan:"),
        ("dislike 1", "disliked"),
        ("a tense thriller", "plan:"),
        ("like 2", "liked"),
    ]:
        proc.stdin.write(text + "\n")
        proc.stdin.flush()
        until(marker)
    proc.stdin.write("a western from the 1960s\n")
    proc.stdin.flush()
    until("summarize_on_device")  # the third turn is under way
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait(timeout=10)

    graph_out = subprocess.run(
        [sys.executable, "-m", "cdarec.cli", "trace", thread, "--home", str(s.home),
         "--dataset", s.dataset, "--json"],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert graph_out.returncode == 0, graph_out.stderr
    turns = json.loads(graph_out.stdout)
    assert [t["request"] for t in turns][:2] == ["a funny animated film", "a tense thriller"]
    rec = get_resources(s).memory.load("196")
    kinds = [(f.kind, f.thread) for f in rec.feedback if f.thread == thread]
    assert kinds == [("dislike", thread), ("like", thread)]


def test_a_corrupted_catalogue_is_moved_aside_and_rebuilt(home: Path) -> None:
    s = Settings(home=home, dataset="ml-100k")
    db = s.chroma_dir / "chroma.sqlite3"
    db.write_bytes(b"not a database " * 1000)
    cat = cloud_resources(s).catalogue
    assert cat.count() == cloud_resources(s).dataset.n_items
    assert list(home.glob("chroma.corrupt-*")), "the bad folder is kept for inspection"


def test_the_web_server_killed_mid_turn_keeps_completed_turns_and_feedback(
    smol_settings: Settings, tmp_path: Path
) -> None:
    """`cdarec serve` SIGKILLed while a turn streams: a restarted server shows the user's
    session with its completed turn, and the feedback given before the kill is kept."""
    import httpx

    from tests.fixtures.serve import serving

    s = smol_settings
    env = {**os.environ, "CDAREC_JUDGE_TOP": "4", "CDAREC_SHOW_TOP": "4"}

    def start(log: Path) -> Any:
        port = free_port()
        cmd = [
            sys.executable, "-m", "cdarec.cli", "serve", "--port", str(port), "--home",
            str(s.home), "--dataset", s.dataset, "--device-model", s.device_model,
            "--cloud-model", s.cloud_model, "--user", "196",
        ]  # fmt: skip
        return serving(cmd, f"http://127.0.0.1:{port}/healthz", log, env=env), port

    def signed_in(log: Path, port: int) -> httpx.Client:
        import re

        link = re.search(r"(http://\S+/signin\?token=\S+)", log.read_text())
        assert link, log.read_text()[-2000:]
        c = httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=300)
        c.get(link.group(1).split(f":{port}", 1)[1], follow_redirects=False)
        c.headers["x-csrf-token"] = c.get("/api/me").json()["csrf"]
        return c

    log1 = tmp_path / "serve-1.log"
    ctx, port = start(log1)
    with ctx as proc:
        c = signed_in(log1, port)
        thread = c.post("/api/sessions").json()["thread"]
        body = c.post(f"/api/sessions/{thread}/turn", json={"message": "a funny film"}).text
        ranking = json.loads(body.strip().split("\n\n")[-1].split("data: ", 1)[1])["ranking"]
        liked = ranking[0]["item_id"]
        r = c.post(f"/api/sessions/{thread}/feedback", json={"kind": "like", "item_id": liked})
        assert r.status_code == 200
        with c.stream(
            "POST", f"/api/sessions/{thread}/turn", json={"message": "a tense thriller"}
        ) as resp:
            for line in resp.iter_lines():
                if line.startswith("event: step"):  # the second turn is under way
                    os.kill(proc.pid, signal.SIGKILL)
                    break
        proc.wait(timeout=10)

    log2 = tmp_path / "serve-2.log"
    ctx, port = start(log2)
    with ctx:
        c = signed_in(log2, port)
        [info] = [x for x in c.get("/api/sessions").json() if x["thread"] == thread]
        assert info["turns"] >= 1 and info["last_request"] in ("a funny film", "a tense thriller")
    rec = get_resources(s).memory.load("196")
    assert ("like", liked) in [(f.kind, f.item_id) for f in rec.feedback if f.thread == thread]


def test_a_damaged_embedder_file_is_fetched_again(tmp_path: Path) -> None:
    """Cut short (a killed download), then replaced by bytes of the same size (the size
    check alone would pass): each time the pinned sha256 catches it and the file is
    fetched again through the hashed requirements, and the embedder works."""
    from cdarec.assets import ensure_asset
    from cdarec.llm.embeddings import MiniLMEmbeddings
    from tests.conftest import REAL_HOME

    shutil.copytree(REAL_HOME / "embedders", tmp_path / "embedders")  # a copy: damaged here
    model = ensure_asset(tmp_path, "embedders", "minilm-l6-int8")[0]
    size = model.stat().st_size
    model.write_bytes(model.read_bytes()[:1000])
    said: list[str] = []
    ensure_asset(tmp_path, "embedders", "minilm-l6-int8", log=said.append)
    assert model.stat().st_size == size and any("does not match" in m for m in said)
    tokenizer = model.with_name("tokenizer.json")
    tokenizer.write_bytes(b"x" * tokenizer.stat().st_size)
    emb = MiniLMEmbeddings.from_home(tmp_path)
    assert json.loads(tokenizer.read_text())  # the real tokenizer again
    assert emb.embed_array(["a comedy"]).shape == (1, 384)


def test_a_damaged_model_that_cannot_be_fetched_is_a_clear_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The device model cut short and no registry reachable (pip pointed at a closed
    port, its cache and config off): `cdarec chat` ends with one error naming the file,
    what is wrong and the command that fixes it - no traceback; the damaged file is left
    for the next pull to replace."""
    from tests.conftest import REAL_HOME, SMOL, need_asset

    real = REAL_HOME / "models" / "SmolLM2-135M-Instruct.Q4_1.gguf"
    need_asset(real)
    (tmp_path / "models").mkdir()
    for sub in ("datasets", "embedders"):
        (tmp_path / sub).symlink_to(REAL_HOME / sub, target_is_directory=True)
    with real.open("rb") as f:
        (tmp_path / "models" / real.name).write_bytes(f.read(1_000_000))
    for k, v in {
        "PIP_CONFIG_FILE": os.devnull,
        "PIP_INDEX_URL": f"http://127.0.0.1:{free_port()}/simple",
        "PIP_NO_CACHE_DIR": "1",
        "PIP_RETRIES": "0",
        "PIP_TIMEOUT": "2",
    }.items():
        monkeypatch.setenv(k, v)
    base = ["--home", str(tmp_path), "--dataset", "ml-100k", "--user", "196"]
    models = ["--device-model", f"llamacpp:{SMOL}", "--cloud-model", f"embedded:{SMOL}"]
    code = main(["chat", *base, *models, "--message", "a comedy", "--once"])
    err = capsys.readouterr().err
    assert code == 1
    assert "does not match its pinned sha256" in err and "cdarec models pull" in err
    assert "Traceback" not in err
    assert (tmp_path / "models" / real.name).stat().st_size == 1_000_000
