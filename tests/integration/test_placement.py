"""Placement on real components (issue 20): SmolLM2-135M on both sides (the cloud behind a
real llama.cpp HTTP server), a real Chroma catalogue of ML-100K, served embedded and by a
real `chroma run` server, and a real loopback link in between (``LinkProxy``).

Each movable sub-task runs its device implementation on the real device model; the
device measures a real slow link and a real dead cloud and moves the work; the catalogue
is searched through a Chroma server, and a turn still answers when that server is gone.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import pytest
from langgraph.checkpoint.memory import InMemorySaver

from cdarec.evaluation.bench.conditions import Link, LinkProxy
from cdarec.evaluation.bench.placement import start_chroma
from cdarec.graph.builder import build_graph
from cdarec.graph.checkpoint import serializer
from cdarec.graph.runtime import Resources, get_resources, use_resources
from cdarec.llm.factory import llama_server_client
from cdarec.llm.linkstats import STATS
from cdarec.settings import Settings
from tests.conftest import REAL_HOME

pytestmark = pytest.mark.integration

OPEN = "something to cheer me up after a long week"


def _steps(out) -> dict:
    return {r.node: r for r in out["trace"]}


def test_each_movable_task_runs_on_the_real_device_model(smol_settings: Settings) -> None:
    graph = build_graph(InMemorySaver(serde=serializer()))
    cfg = {"configurable": {"thread_id": "placement-1"}}
    s = smol_settings.model_copy(update={"placement": "default"})
    first = graph.invoke({"request": OPEN}, cfg, context=s)  # the cloud's turn
    assert "retrieve_candidates" in _steps(first)
    s = smol_settings.model_copy(update={"placement": "device"})
    out = graph.invoke({"request": "a film to watch with my parents"}, cfg, context=s)
    steps = _steps(out)
    assert {"plan_on_device", "model_semantics_on_device", "retrieve_on_device"} <= set(steps)
    assert not {r.node for r in out["trace"] if r.side == "cloud"}
    assert steps["model_semantics_on_device"].tokens_in > 0, "the device model wrote the query"
    assert not steps["retrieve_on_device"].detail.startswith("0 hits")
    assert out["ranking"] and all(r.reason for r in out["ranking"])


def test_the_real_cloud_model_judges_a_device_with_no_history(smol_settings: Settings) -> None:
    """The cloud judgement (``judge_on_cloud``) on the real cloud model behind its HTTP
    server, for a cold-start device; a device with a history keeps its own judgement."""
    get_resources(smol_settings).memory.seed("cold-judge", [], overwrite=True)
    graph = build_graph(InMemorySaver(serde=serializer()))
    s = smol_settings.model_copy(update={"placement": "cloud-judge", "user_id": "cold-judge"})
    out = graph.invoke({"request": "a comedy"}, {"configurable": {"thread_id": "cj"}}, context=s)
    steps = _steps(out)
    assert steps["judge_on_cloud"].side == "cloud" and steps["judge_on_cloud"].tokens_in > 0
    assert steps["judge_on_cloud"].status in ("ok", "repaired", "fallback")
    assert out["ranking"] and all(r.reason and r.grounded for r in out["ranking"])
    assert "the cloud's judgement" in steps["respond"].detail
    s = smol_settings.model_copy(update={"placement": "cloud-judge"})  # user 196: a history
    out = graph.invoke({"request": "a comedy"}, {"configurable": {"thread_id": "cj2"}}, context=s)
    assert "judge_on_cloud" not in _steps(out)
    assert _steps(out)["rank_on_device"].model, "the device model judged"


def test_a_real_slow_link_then_a_dead_cloud_move_the_work_to_the_device(
    smol_settings: Settings,
) -> None:
    base = get_resources(smol_settings)
    server = base.cloud.cloud_llm.server
    proxy = LinkProxy(server.port)
    proxy.link = Link(delay_s=0.25)
    s = smol_settings.model_copy(update={"placement": "adaptive"})
    llm = llama_server_client(s.cloud_model, base.cloud.cloud_llm.name, f"{proxy.url}/v1", s)
    STATS.reset()
    res = Resources(
        s,
        device_llm=base.device.device_llm,
        cloud_llm=llm,
        dataset=base.dataset,
        catalogue=base.cloud.catalogue,
        prompts=base.device.prompts,
        sequence_model=base.device.sequence_model,
    )
    use_resources(res)
    graph = build_graph(InMemorySaver(serde=serializer()))
    cfg = {"configurable": {"thread_id": "placement-2"}}
    try:
        out = graph.invoke({"request": OPEN}, cfg, context=s)
        assert out["plan"].placement.planning == "device", out["trace"][0].detail
        assert "link slow" in out["trace"][0].detail
        proxy.close()  # the cloud is gone
        STATS.reset()
        out = graph.invoke({"request": "a scary movie"}, cfg, context=s)
        assert "link down" in out["trace"][0].detail
        assert not {r.node for r in out["trace"] if r.side == "cloud"}
        assert out["ranking"], "a turn with the cloud unreachable still answers"
    finally:
        proxy.close()
        STATS.reset()
        use_resources(base)


def test_the_catalogue_served_by_a_chroma_server_and_a_turn_without_it(
    smol_settings: Settings,
) -> None:
    base = get_resources(smol_settings)
    _ = base.cloud.catalogue  # the embedded catalogue exists, to be served
    if not (REAL_HOME / "datasets" / "ml-100k").exists():
        pytest.fail("ML-100K missing: run scripts/test.sh")
    with tempfile.TemporaryDirectory() as tmp:
        chroma = start_chroma(smol_settings, base.dataset, Path(tmp), _Quiet())
        s = smol_settings.model_copy(update={"chroma_url": chroma.url, "placement": "default"})
        try:
            res = use_resources(
                Resources(
                    s,
                    device_llm=base.device.device_llm,
                    cloud_llm=base.cloud.cloud_llm,
                    dataset=base.dataset,
                    prompts=base.device.prompts,
                    sequence_model=base.device.sequence_model,
                )
            )
            assert res.cloud.catalogue.count() == base.dataset.n_items
            graph = build_graph(InMemorySaver(serde=serializer()))
            cfg = {"configurable": {"thread_id": "placement-3"}}
            out = graph.invoke({"request": "a funny animated film"}, cfg, context=s)
            step = _steps(out)["retrieve_candidates"]
            assert step.status == "ok" and not step.detail.startswith("0 hits"), step.detail
            assert any("semantic" in r.sources for r in out["ranking"])
            chroma.stop()
            out = graph.invoke({"request": "a funny animated film"}, cfg, context=s)
            step = _steps(out)["retrieve_candidates"]
            assert step.status == "error" and "catalogue failed" in step.detail
            assert out["ranking"], "the device's proposals answer without the catalogue"
        finally:
            chroma.stop()
            use_resources(base)


class _Quiet:
    def print(self, *args: object, **kwargs: object) -> None:
        pass
