"""`cdarec bench chat` end to end on ML-100K with scripted fake LLMs (unit: the fakes
stand in for the models; tests/integration/test_benchmarks.py runs it on the real small
models). Checks the report's structure and what is counted, never the times."""

from __future__ import annotations

import json
from pathlib import Path

from rich.console import Console

from cdarec.evaluation.bench import chat
from cdarec.graph.runtime import Resources
from cdarec.settings import Settings
from tests.fakes import JUDGE, PLAN, QUERIES, by_task, fake_llm


def _res(home: Path) -> tuple[Settings, Resources]:
    s = Settings(
        home=home,
        dataset="ml-100k",
        judge_top=4,
        show_top=4,
        sequence_model="transition",
        planner="llm",  # the planner LLM on every new (user state, request kind): counted
    )
    script = by_task(PLAN, QUERIES, JUDGE)
    return s, Resources(
        s, device_llm=fake_llm(script, "device"), cloud_llm=fake_llm(script, "cloud")
    )


def test_each_user_gets_their_own_session_of_every_kind(home: Path) -> None:
    _, res = _res(home)
    a = chat.user_script(res, "196", 12, seed=0)
    b = chat.user_script(res, "186", 12, seed=0)
    assert len(a) == 12 and a != b, "the requests are drawn per user"
    assert a == chat.user_script(res, "196", 12, seed=0), "and by seed"
    kinds = {chat._kind(c) for c in a}
    assert kinds == {"empty", "request", "feedback", "more like"}
    assert {c.split()[0] for c in a if chat._kind(c) == "feedback"} == {
        "like",
        "dislike",
        "not",
        "undo",
    }
    genres = {g.lower() for g in res.dataset.genres} | set(chat.PLAIN.values())
    assert any(g in a[1] for g in genres), a[1]
    assert (
        len(chat.user_script(res, "196", 30, seed=0)) == 30
    )  # longer sessions repeat the template


def test_a_script_of_ones_own(tmp_path: Path) -> None:
    (tmp_path / "s.txt").write_text("# my session\n<empty>\na western\n\nlike 1\n")
    assert chat.read_script(tmp_path / "s.txt") == ["", "a western", "like 1"]
    (tmp_path / "s.json").write_text(json.dumps(["", "more like 2"]))
    assert chat.read_script(tmp_path / "s.json") == ["", "more like 2"]


def test_the_report_counts_turns_feedback_and_the_planner(home: Path) -> None:
    s, res = _res(home)
    out = home / "results"
    console = Console(record=True, width=200)
    payload = chat.run(s, 2, 7, console, out, resources=res)
    steps, summary = payload["steps"], payload["summary"]
    assert len(steps) == 14 and {st["user"] for st in steps} == set(payload["users"])
    ran = [st for st in steps if st["reasons_s"] is not None]
    assert summary["turns"] == len(ran) == 2 * 4  # empty, request, like a film, more like
    assert summary["warm_turns"] == summary["turns"] - 2  # each session's first is cold
    assert summary["feedback_commands"] == 2 * 3  # like, dislike, not GENRE
    assert all(st["first_items_s"] <= st["wall_s"] for st in ran)
    assert 1 <= summary["planner_calls"] <= summary["turns"]
    assert all(
        {n["node"] for n in st["nodes"]} >= {"plan_strategy", "rank_on_device"} for st in ran
    )
    assert summary["cloud_tokens_in_per_turn"] > 0
    assert "rank_on_device (device)" in summary["node_median_ms"]
    text = console.export_text()
    assert "warm turn p50 / p95" in text and "planner calls" in text
    data = json.loads((out / "chat-ml-100k.json").read_text())
    assert data["summary"]["turns"] == summary["turns"]
    assert (out / "chat-ml-100k.png").stat().st_size > 1000
