"""The benchmarks on real components: SmolLM2-135M on both sides (the cloud behind a
real llama.cpp HTTP server), a real Chroma catalogue of ML-100K, a (tiny) SASRec really
trained. Few users: the point is that every method's path runs on the real models; the
numbers come from `cdarec bench accuracy|latency` on the default models."""

from __future__ import annotations

from pathlib import Path

import pytest
from rich.console import Console

from cdarec.evaluation.bench import chat, latency, turns
from cdarec.evaluation.protocols import sampled as accuracy
from cdarec.seqrec import artefacts as runtime
from cdarec.seqrec.config import TrainConfig
from cdarec.settings import Settings

pytestmark = pytest.mark.integration

TINY = TrainConfig(hidden=16, max_len=50, epochs=2, time_budget_s=60, valid_users=0)


@pytest.fixture()
def bench_settings(smol_settings: Settings, home: Path) -> Settings:
    """The real models in a home of its own: a benchmark installs evaluation resources
    (fixed histories) for its settings, which must not leak into other tests' turns."""
    return smol_settings.model_copy(update={"home": home})


def test_accuracy_methods_with_llms_on_real_models(
    bench_settings: Settings, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(runtime, "train_config", lambda ds: TINY)
    methods = ["sasrec+device", "sasrec+transition", "llm-zero-shot", "cloud-only", "cdarec"]
    console = Console(record=True, width=200)
    rows = accuracy.run(bench_settings, methods, 2, seed=5, out_dir=tmp_path, console=console)
    by = {(r.method, r.users): r for r in rows}
    for m in ("llm-zero-shot", "cloud-only", "cdarec"):
        row = by[(m, 2)]
        assert len(row.ranks) == 2 and all(0 <= k < 20 for k in row.ranks)
        assert 0 <= row.fallback_rate <= 1
    assert "smollm2" in by[("cdarec", 2)].note.lower()
    assert "| **cloud-only** | 2 |" in console.export_text()


def test_request_protocol_on_real_models(
    bench_settings: Settings, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from cdarec.evaluation.protocols import request

    monkeypatch.setattr(runtime, "train_config", lambda ds: TINY)
    console = Console(record=True, width=200)
    rows = request.run(
        bench_settings, ["oracle-filter", "cdarec"], 3, seed=5, out_dir=tmp_path, console=console
    )
    graph = next(r for r in rows if r.method == "cdarec")
    assert len(graph.ranks) == 3 and graph.grounded is not None
    assert graph.satisfaction >= 0.5, "the request binds the list on the real models too"
    assert "smollm2" in graph.note.lower()


def test_latency_bench_on_real_models(
    bench_settings: Settings, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(runtime, "train_config", lambda ds: TINY)
    results = latency.run(bench_settings, 1, seed=5, out_dir=tmp_path, console=Console())
    by = {r.config: r.summary() for r in results}
    assert by["cloud-only"]["history_bytes"] > 0, "the cloud-only agent sends the history"
    assert by["cloud-only"]["cloud_tokens_in"] > 0
    assert by["cdarec"]["history_bytes"] == 0 and by["device-only"]["cloud_bytes"] == 0
    assert (tmp_path / "latency-ml-100k-timeline.png").exists()


def test_turns_bench_on_real_models(
    bench_settings: Settings, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(runtime, "train_config", lambda ds: TINY)
    result = turns.run(bench_settings, 2, Console(), out=tmp_path)
    assert len(result["walls_s"]) == 2 and result["warm_p50_s"] > 0
    assert [t["label"] for t in result["turns"]] == ["cold", "warm 1", "warm 2"]
    nodes = {n["node"] for n in result["turns"][1]["nodes"]}
    assert {"plan_strategy", "rank_on_device", "respond"} <= nodes
    assert result["peak_app_mb"] > 0 and result["servers_mb"]  # the embedded cloud server
    assert (tmp_path / "turns.json").exists() and (tmp_path / "turns.png").stat().st_size > 0


def test_chat_bench_on_real_models(
    bench_settings: Settings, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The structure of `bench chat`'s report on the real models (never its times)."""
    monkeypatch.setattr(runtime, "train_config", lambda ds: TINY)
    script = tmp_path / "session.txt"
    script.write_text("<empty>\na comedy from the 1990s\nlike 1\nsomething to cheer me up\nundo\n")
    payload = chat.run(bench_settings, 1, 5, Console(), tmp_path, script=script)
    steps, summary = payload["steps"], payload["summary"]
    assert [s["command"] for s in steps][:2] == ["", "a comedy from the 1990s"]
    assert summary["turns"] == 3 and summary["warm_turns"] == 2
    assert summary["feedback_commands"] == 2
    ran = [s for s in steps if s["reasons_s"] is not None]
    assert all(0 < s["first_items_s"] <= s["wall_s"] for s in ran)
    # the open words are the planner's (planner "auto"); the read request is the rule's
    assert [s["planner_called"] for s in ran] == [False, False, True]
    assert ran[2]["cloud_tokens_in"] > 0
    assert payload["servers_mb"], "the embedded cloud server's memory is reported"
    assert (tmp_path / "chat-ml-100k.png").stat().st_size > 1000


def test_load_bench_on_real_models(
    bench_settings: Settings, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The structure of `bench load`'s report: signed-in concurrent sessions over the
    real web API (never its times); the run's tokens are removed after."""
    from cdarec.evaluation.bench import load
    from cdarec.service.access import Access

    monkeypatch.setattr(runtime, "train_config", lambda ds: TINY)
    monkeypatch.setattr(load, "BASELINE_TURNS", 3)
    payload = load.run(bench_settings, 3, 2, Console(), tmp_path)
    assert payload["single"]["turns"] == 3 and payload["load"]["turns"] == 6
    assert payload["load"]["errors"] == 0 and payload["single"]["errors"] == 0
    assert payload["summary"]["memory_peak_mb"] > 0 and len(payload["memory"]) > 2
    assert payload["summary"]["verdict"] in ("met", "NOT met")
    rows = payload["single"]["rows"] + payload["load"]["rows"]
    assert {r["judge"] for r in rows} <= {"device-slm", "device-facts", "cloud-llm"}
    assert 0 <= payload["load"]["judged_by_model"] <= 6
    assert Access(bench_settings.home).users() == []  # the bench's tokens are gone
    assert (tmp_path / "load.png").stat().st_size > 1000
