"""`cdarec sessions` and `cdarec trace` read chat sessions back from the SQLite
checkpointer (unit: scripted fake models, real data, real Chroma, real SQLite)."""

from __future__ import annotations

import json

import pytest

from cdarec import cli as app
from cdarec.service.chat import ChatSession
from cdarec.settings import Settings


def _cli(settings: Settings, *argv: str, capsys: pytest.CaptureFixture[str]) -> tuple[int, str]:
    code = app.main([*argv, "--home", str(settings.home), "--dataset", "ml-100k"])
    return code, capsys.readouterr().out


def test_sessions_and_trace_read_back_two_turns(
    settings: Settings, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out = _cli(settings, "sessions", capsys=capsys)
    assert code == 0 and "no sessions yet" in out

    session = ChatSession(settings, thread="t-196")
    session.turn("a comedy")
    session.turn("")
    code, out = _cli(settings, "sessions", "--json", capsys=capsys)
    assert code == 0
    [info] = json.loads(out)
    assert info["thread"] == "t-196" and info["user"] == "196" and info["turns"] == 2

    code, out = _cli(settings, "sessions", "--user", "someone-else", "--json", capsys=capsys)
    assert json.loads(out) == []

    code, out = _cli(settings, "trace", "t-196", "--json", capsys=capsys)
    assert code == 0
    turns = json.loads(out)
    assert [t["turn"] for t in turns] == [1, 2]
    assert turns[0]["request"] == "a comedy"
    nodes = {s["node"] for s in turns[0]["steps"]}
    assert {"summarize_on_device", "plan_strategy", "rank_on_device", "respond"} <= nodes
    assert {s["side"] for s in turns[0]["steps"]} == {"cloud", "device"}

    code, out = _cli(settings, "trace", "t-196", capsys=capsys)
    assert code == 0 and "turn 2" in out and "rank_on_device" in out


def test_trace_of_an_unknown_thread_says_what_to_do(
    settings: Settings, capsys: pytest.CaptureFixture[str]
) -> None:
    code = app.main(["trace", "nope", "--home", str(settings.home)])
    assert code == 2
    assert "cdarec sessions" in capsys.readouterr().err
