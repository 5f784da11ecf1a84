"""`cdarec bench latency` end to end on ML-100K with scripted fake LLMs (unit: the
fakes stand in for the models; the real models run it in
tests/integration/test_benchmarks.py). What it must show: the cloud-only agent
sends the raw history to the cloud, cdarec and device-only send none of it."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from langchain_core.messages import BaseMessage
from rich.console import Console

from cdarec.evaluation.bench import latency
from cdarec.graph.runtime import Resources
from cdarec.seqrec import artefacts as runtime
from cdarec.seqrec.config import TrainConfig
from cdarec.settings import Settings
from tests.fakes import JUDGE, PLAN, QUERIES, by_task, fake_llm

TINY = TrainConfig(hidden=16, max_len=50, epochs=2, time_budget_s=60, valid_users=0)
PROFILE = json.dumps({"genres": ["Drama"], "summary": "likes dramas"})
ORDER = json.dumps({"order": [2, 1], "reasons": ["fits", "also"]})


def script(messages: list[BaseMessage]) -> str:
    text = "\n".join(str(m.content) for m in messages)
    if "Task: describe this viewer" in text:
        return PROFILE
    if "Rank the numbered candidates" in text:
        return ORDER
    return by_task(PLAN, QUERIES, JUDGE)(messages)


def test_three_configurations_on_the_same_turns(
    home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(runtime, "train_config", lambda ds: TINY)
    s = Settings(home=home, dataset="ml-100k", judge_top=4)
    cloud = fake_llm(script, "cloud")
    res = Resources(s, device_llm=fake_llm(script, "device"), cloud_llm=cloud)
    console = Console(record=True, width=220)
    out = home / "results"
    results = latency.run(s, 2, seed=3, out_dir=out, console=console, resources=res)
    by = {r.config: r for r in results}
    assert list(by) == ["cloud-only", "cdarec", "device-only"]
    for r in results:
        assert len(r.turns) == 2 and all(1 <= t.rank <= 20 for t in r.turns)
        assert [t.user for t in r.turns] == [t.user for t in by["cdarec"].turns]  # same turns
    only, cd, dev = (by[c].summary() for c in ("cloud-only", "cdarec", "device-only"))
    assert only["history_bytes"] > 500  # titles of the history, verbatim, in cloud prompts
    assert cd["history_bytes"] == 0 and dev["history_bytes"] == 0
    assert only["cloud_tokens_in"] > 0 and dev["cloud_tokens_in"] == dev["cloud_bytes"] == 0
    assert cd["cloud_bytes"] > 0  # the user vector and the scope go to the cloud's tools
    # cdarec streams its fused list before the device SLM's reasons
    assert all(t.first_item_s <= t.wall_s for t in by["cdarec"].turns)
    assert {"rank_on_device", "plan_strategy"} <= set(by["cdarec"].turns[0].nodes)
    assert "rank_in_cloud" in by["cloud-only"].turns[0].nodes
    text = console.export_text()
    assert "raw history bytes to the cloud / turn" in text and "NDCG@10" in text
    data = json.loads((out / "latency-ml-100k.json").read_text())
    assert [c["config"] for c in data["configs"]] == ["cloud-only", "cdarec", "device-only"]
    assert (out / "latency-ml-100k.png").stat().st_size > 1000
    assert (out / "latency-ml-100k-timeline.png").stat().st_size > 1000


def test_a_failed_warm_up_does_not_silence_the_cloud_only_agent(
    home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The cloud's first call fails (a cold server past its timeout, as seen on a loaded
    machine): the measured turns of the cloud-only agent still ask the cloud - a turn
    forgets the last turn's failure - and send it the history."""
    monkeypatch.setattr(runtime, "train_config", lambda ds: TINY)
    calls = {"n": 0}

    def failing_first(messages: list[BaseMessage]) -> str:
        calls["n"] += 1
        if calls["n"] == 1:
            raise TimeoutError("cold server: timed out")
        return script(messages)

    s = Settings(home=home, dataset="ml-100k", judge_top=4)
    res = Resources(s, device_llm=fake_llm(script, "device"), cloud_llm=fake_llm(failing_first))
    results = latency.run(
        s,
        2,
        seed=3,
        out_dir=home / "results",
        console=Console(),
        resources=res,
        configs=("cloud-only",),
    )
    only = results[0].summary()
    assert calls["n"] > 1
    assert only["history_bytes"] > 500 and only["cloud_tokens_in"] > 0
