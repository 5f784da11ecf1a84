"""Faults on real components, as a user meets them: the embedded cloud server killed
between turns, a catalogue index cut short, an unreadable session database, a session
database locked by another process. Each ends in a working turn or a clear error that
names the fix; nothing saved is lost."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from cdarec.cli import main
from cdarec.cloud.resources import cloud_resources
from cdarec.graph.checkpoint import CheckpointError
from cdarec.graph.runtime import get_resources
from cdarec.service.chat import ChatSession
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
