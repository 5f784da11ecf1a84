from __future__ import annotations

import pytest
from langsmith import Client

from cdarec.graph.builder import build_graph
from cdarec.tracing import guard_tracing


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
