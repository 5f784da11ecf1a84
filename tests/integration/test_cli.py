"""The command line as people use it: a subprocess with a real environment."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from cdarec.settings import Settings

pytestmark = pytest.mark.integration


def cli(
    settings: Settings, *args: str, stdin: str | None = None, extra: dict[str, str] | None = None
) -> subprocess.CompletedProcess:
    env = {
        **os.environ,
        "CDAREC_HOME": str(settings.home),
        "CDAREC_DATASET": settings.dataset,
        "CDAREC_DEVICE_MODEL": settings.device_model,
        "CDAREC_CLOUD_MODEL": settings.cloud_model,
        "CDAREC_JUDGE_TOP": "3",
        "CDAREC_SHOW_TOP": "3",
        **(extra or {}),
    }
    return subprocess.run(
        [sys.executable, "-m", "cdarec.cli", *args],
        env=env,
        input=stdin,
        capture_output=True,
        text=True,
        timeout=600,
    )


def test_chat_once_json(smol_settings: Settings) -> None:
    p = cli(smol_settings, "chat", "--user", "196", "--message", "a comedy", "--once", "--json")
    assert p.returncode == 0, p.stderr
    out = json.loads(p.stdout)
    assert out["user"] == "196" and out["turn"] == 1 and len(out["ranking"]) == 3
    assert {s["side"] for s in out["trace"]} == {"cloud", "device"}
    # resume the same session: the turn counter continues
    p2 = cli(
        smol_settings,
        "chat",
        "--user",
        "196",
        "--thread",
        out["thread"],
        "--message",
        "",
        "--once",
        "--json",
    )
    assert p2.returncode == 0, p2.stderr
    assert json.loads(p2.stdout)["turn"] == 2


def test_a_one_message_chat_exits_cleanly_while_the_models_still_load(
    smol_settings: Settings,
) -> None:
    """A turn answered without the device model (reasons from facts) ends while the
    warm-up is still running llama.cpp in process; exiting then used to crash (SIGSEGV,
    exit code 139) after the answer was printed."""
    for _ in range(2):
        p = cli(
            smol_settings,
            "chat", "--user", "196", "--message", "a comedy", "--once",
            extra={"CDAREC_PLACEMENT": "lean-device"},
        )  # fmt: skip
        assert p.returncode == 0, (p.returncode, p.stderr[-2000:])
        assert "Comedy" in p.stdout


def test_feedback_commands_in_a_piped_chat(smol_settings: Settings, tmp_path: Path) -> None:
    p = cli(smol_settings, "chat", "--user", "305", "--planner-free", stdin="")  # bad flag
    assert p.returncode == 2 and "unrecognized arguments" in p.stderr
    script = "a drama\nlike 1\nnot Horror\nundo\nlike 9\nquit\n"
    p = cli(smol_settings, "chat", "--user", "305", stdin=script)
    assert p.returncode == 0, p.stderr
    assert "liked" in p.stdout and "will avoid Horror" in p.stdout and "undone" in p.stdout
    assert "there is no item 9" in p.stderr  # a bad item number is explained, not fatal


def test_unknown_user_gets_a_clear_error(smol_settings: Settings) -> None:
    p = cli(smol_settings, "chat", "--user", "no-such-user", "--message", "hi", "--once")
    assert p.returncode == 2
    assert "unknown user 'no-such-user'" in p.stderr and "cdarec users" in p.stderr


def test_help_explains_the_commands() -> None:
    p = subprocess.run(
        [sys.executable, "-m", "cdarec.cli", "--help"], capture_output=True, text=True
    )
    assert p.returncode == 0
    for word in ("setup", "chat", "index", "memory", "bench"):
        assert word in p.stdout


def test_dead_cloud_endpoint_still_answers_and_says_why(smol_settings: Settings) -> None:
    from cdarec.llm.server import free_port

    dead = f"http://127.0.0.1:{free_port()}/v1"  # nothing listens there
    env_settings = Settings(**{**smol_settings.model_dump(), "cloud_model": "openai:gpt-4o-mini"})
    p = cli(
        env_settings,
        "chat",
        "--user",
        "196",
        "--message",
        "a comedy to cheer me up",  # words only the cloud LLM reads: it is called
        "--once",
        extra={"OPENAI_BASE_URL": dead, "OPENAI_API_KEY": "not-used"},
    )
    assert p.returncode == 0, p.stderr
    assert "plan_strategy (cloud) used its fallback" in p.stderr
    assert "check that the endpoint is up" in p.stderr
