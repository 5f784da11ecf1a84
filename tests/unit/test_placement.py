"""Placement (issue 20): the choice from the context buckets, the privacy constraints, the
device-written query check, the device's measures, and the graph running each side.

The graph tests use scripted fake models (tests/fakes.py) on real ML-100K and a real
Chroma; the link and load measures run against a real HTTP server and real processes.
The same sub-tasks run on the real small models in tests/integration/test_placement.py.
"""

from __future__ import annotations

import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import get_args

import numpy as np
import pytest

from cdarec.contract.placement import (
    FIXED,
    DeviceContext,
    Placement,
    PlacementName,
    choose_placement,
    enforce,
    placement_for,
)
from cdarec.contract.plan import default_plan
from cdarec.contract.schemas import UserAbstract
from cdarec.device.context import SLOW_LINK_MS, ContextMonitor
from cdarec.device.query_check import checked_queries, history_titles_in, title_forms
from cdarec.device.recent import RecentIndex
from cdarec.evaluation.bench.conditions import CpuHog, Link, LinkProxy
from cdarec.graph.builder import route_plan, route_planning, route_retrieval
from cdarec.llm.linkstats import LinkStats
from cdarec.settings import Settings
from tests.fakes import by_task

QUERIES = json.dumps({"queries": ["light science fiction comedy"]})
JUDGE = json.dumps({"picks": [{"n": 1, "reason": "a fine pick for a quiet night"}]})
PLAN = json.dumps({"strategy": "balanced"})
OPEN = "something to watch with my grandmother on a rainy evening"  # words left to a model


def abstract() -> UserAbstract:
    return UserAbstract.model_validate(
        {
            "state": {
                "bucket": "heavy",
                "live_feedback": "none",
                "history_size": "withheld",
                "recency": "withheld",
            },
            "top_genres": ["Comedy"],
        }
    )


# -- the choice ---------------------------------------------------------------------------


def test_normal_conditions_keep_the_default_sides() -> None:
    p = choose_placement(DeviceContext(link="fast", cloud_speed="fast"))
    assert p.sides() == FIXED["default"].sides()
    assert "normal" in p.why
    assert choose_placement(DeviceContext()).sides() == FIXED["default"].sides()  # unknown


def test_an_unreachable_cloud_puts_everything_on_the_device() -> None:
    p = choose_placement(DeviceContext(link="down"))
    assert (p.planning, p.semantics, p.retrieval) == ("device", "device", "device")
    assert "unreachable" in p.why


def test_a_slow_link_avoids_every_round_trip() -> None:
    p = choose_placement(DeviceContext(link="slow", cloud_speed="fast"))
    assert (p.planning, p.semantics, p.retrieval) == ("device", "device", "device")
    assert p.judge == "device-slm"


def test_a_slow_cloud_model_moves_the_model_calls_not_the_search() -> None:
    p = choose_placement(DeviceContext(link="fast", cloud_speed="slow"))
    assert (p.planning, p.semantics, p.retrieval) == ("device", "device", "cloud")


@pytest.mark.parametrize("ctx", [DeviceContext(load="busy"), DeviceContext(low_power=True)])
def test_a_busy_or_low_power_device_makes_no_model_call_of_its_own(ctx) -> None:
    p = choose_placement(ctx)
    assert p.judge == "device-facts"
    assert p.semantics == "cloud"  # the device SLM is not asked to write queries either
    assert not p.device_model


@pytest.mark.parametrize("link", ["slow", "down"])
def test_a_busy_device_cut_off_from_the_cloud_writes_no_query_with_its_model(link) -> None:
    """The semantics are the device's (slow link, no cloud) but the device is busy: the
    request's own words are searched, no model call; an idle device keeps its model."""
    busy = choose_placement(DeviceContext(link=link, load="busy"))
    assert busy.semantics == "device" and not busy.device_model
    idle = choose_placement(DeviceContext(link=link))
    assert idle.semantics == "device" and idle.device_model
    assert FIXED["device"].device_model and not FIXED["lean-device"].device_model


@pytest.mark.parametrize(
    ("request_", "judged"),
    [("", False), ("a comedy from the 1990s", False), (OPEN, True)],
)
def test_the_adaptive_plan_calls_a_model_to_judge_only_where_its_order_counts(
    request_, judged
) -> None:
    """history-led (no request) and request-led (read whole by code) give the model's order
    no weight: the adaptive plan judges from the items' facts and says so; an open request
    (balanced) weighs it, and the device model judges."""
    from cdarec.contract.request import Vocabulary, parse_request

    genres = ["Comedy", "Drama", "Romance"]
    vocab = Vocabulary.build(genres, [("1", "Heat", "Heat (1995)")], [1.0])
    constraints = parse_request(request_, vocab)
    for ctx in (DeviceContext(link="fast", cloud_speed="fast"), DeviceContext(link="slow")):
        placement = choose_placement(ctx)
        plan = default_plan(abstract(), request_, 30, constraints, placement)
        assert (plan.weights.judge > 0) == judged, plan.strategy
        assert plan.placement.judge == ("device-slm" if judged else "device-facts")
        assert ("no weight" in plan.placement.why) != judged
        assert plan.placement.sides()["planning"] == placement.planning  # nothing else moves
    # a fixed placement keeps the model's judgement wherever the plan puts it
    plan = default_plan(abstract(), request_, 30, constraints, FIXED["default"])
    assert plan.placement.judge == "device-slm"


def test_the_settings_name_every_placement() -> None:
    names = set(get_args(Settings.model_fields["placement"].annotation))
    assert names == {"adaptive", *FIXED} == set(get_args(PlacementName))


def test_a_fixed_placement_is_what_it_says() -> None:
    down = DeviceContext(link="down")
    assert placement_for("default", down) == FIXED["default"]  # fixed: no adaptation
    assert placement_for("adaptive", down).retrieval == "device"


# -- privacy: no plan can put a history-reading sub-task on the cloud -------------------


@pytest.mark.parametrize(
    "raw",
    [{"judge": "cloud-gpt"}, {"judge": "cloud"}, {"sequence": "cloud"}, {"ranking": "cloud"}],
)
def test_a_history_reading_task_on_the_cloud_is_refused_and_repaired(raw) -> None:
    # ("cloud-llm", the cloud judging a device with no history, is decided by the device
    # from its own memory: tests/unit/test_cloud_judge.py.)
    p = Placement.model_validate(raw)
    assert p.judge == "device-slm"
    assert "repaired" in p.why and "stay on the device" in p.why
    assert "cloud" not in {p.judge}


def test_a_plan_changed_without_validation_is_repaired_before_it_runs() -> None:
    tampered = Placement().model_copy(update={"judge": "cloud-gpt"})  # skips validation
    assert tampered.judge == "cloud-gpt"
    fixed = enforce(tampered)
    assert fixed.judge == "device-slm" and "repaired" in fixed.why
    # and the route the device follows reads the repaired one
    plan = default_plan(abstract(), "", 30).model_copy(update={"placement": tampered})
    from cdarec.device.nodes import placed

    assert placed({"plan": plan, "abstract": abstract()}).judge == "device-slm"


def test_the_plan_lists_the_side_each_movable_task_runs_on() -> None:
    a = abstract()
    cloud = [s.task for s in default_plan(a, "x", 30, placement=FIXED["default"]).steps()]
    device = [s.task for s in default_plan(a, "x", 30, placement=FIXED["device"]).steps()]
    assert {"plan_strategy", "model_semantics", "retrieve_candidates"} <= set(cloud)
    assert not {"plan_on_device", "model_semantics_on_device", "retrieve_on_device"} & set(cloud)
    assert {"plan_on_device", "model_semantics_on_device", "retrieve_on_device"} <= set(device)
    assert not {"plan_strategy", "model_semantics", "retrieve_candidates"} & set(device)


def test_the_routes_follow_the_placement() -> None:
    a = abstract()
    last_turn = default_plan(a, "x", 30, placement=FIXED["default"])
    state = {"abstract": a, "placement": FIXED["device"], "turn": 2, "plan": last_turn}
    assert route_planning(state) == "plan_on_device"  # this turn's proposal, not the old plan
    state["plan"] = default_plan(a, "x", 30, placement=FIXED["device"])
    assert [s.node for s in route_plan(state)] == [
        "model_semantics_on_device",
        "model_sequence_on_device",
    ]
    assert route_retrieval(state) == "retrieve_on_device"
    state["plan"] = default_plan(a, "x", 30, placement=FIXED["default"])
    sends = route_plan(state)
    assert sends[0].node == "model_semantics"
    assert "proposals" not in sends[0].arg  # the cloud node gets the cloud view only
    assert route_retrieval(state) == "retrieve_candidates"


# -- the device-written query check -----------------------------------------------------


def test_a_query_naming_a_watched_film_is_caught() -> None:
    titles = ["Matrix, The (1999)", "Toy Story (1995)", "Big (1988)"]
    assert history_titles_in("films like The Matrix with less violence", titles) == [
        "Matrix, The (1999)"
    ]
    assert history_titles_in("animated TOY-STORY sequel", titles) == ["Toy Story (1995)"]
    assert history_titles_in("a light comedy about friendship", titles) == []
    assert "the matrix" in title_forms("Matrix, The (1999)")
    # a title the user's own request names is not the device's leak
    assert history_titles_in("like Toy Story", titles, allowed="something like Toy Story") == []
    kept, caught = checked_queries(["big city drama", "quiet drama"], titles, "a drama")
    assert kept == ["quiet drama"] and caught == ["Big (1988)"]  # conservative on purpose


# -- the device's index of recent candidates -------------------------------------------


def test_the_recent_index_searches_only_allowed_recent_items() -> None:
    basis = np.eye(4)

    def embed(texts: list[str]) -> np.ndarray:
        return np.stack([basis[int(t[-1])] for t in texts])

    idx = RecentIndex(embed, limit=3)
    idx.add("u", [0, 1, 2])
    idx.add("u", [3])  # the oldest (0) falls out
    assert idx.items("u") == [1, 2, 3]
    allowed = np.array([True, True, False, True])
    hits = idx.search("u", ["q3"], allowed, lambda i: f"item{i}", k=5)
    assert hits[0] == (3, 1.0) and {i for i, _ in hits} == {1, 3}
    assert idx.search("other", ["q3"], allowed, lambda i: f"item{i}", k=5) == []


def test_the_recent_index_survives_a_restart_and_a_corrupted_file(tmp_path: Path) -> None:
    ids = ["a", "b", "c", "d"]

    def embed(texts: list[str]) -> np.ndarray:
        return np.ones((len(texts), 2)) / np.sqrt(2)

    first = RecentIndex(embed, folder=tmp_path, ids=ids)
    first.add("user/1", [2, 0])
    saved = next(tmp_path.iterdir())
    assert saved.stat().st_mode & 0o777 == 0o600
    assert json.loads(saved.read_text()) == ["c", "a"]  # catalogue ids, not positions
    again = RecentIndex(embed, folder=tmp_path, ids=ids)  # a restarted device
    assert again.items("user/1") == [2, 0]
    saved.write_text("{not json")
    broken = RecentIndex(embed, folder=tmp_path, ids=ids)
    assert broken.items("user/1") == []  # a cache of public items: starts empty
    broken.add("user/1", [3])
    assert json.loads(saved.read_text()) == ["d"]


# -- what the device measures ------------------------------------------------------------


class _Models(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.end_headers()
        self.wfile.write(b'{"data": []}')

    def log_message(self, *args: object) -> None:
        pass


def test_the_link_is_measured_fast_slow_and_down_on_a_real_server() -> None:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Models)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    proxy = LinkProxy(server.server_address[1])
    stats = LinkStats()
    try:
        stats.register("cloud", f"{proxy.url}/v1")
        fast = stats.snapshot("cloud")
        assert fast.rtt_ms is not None and fast.rtt_ms < SLOW_LINK_MS and not fast.down
        proxy.link = Link(delay_s=0.25)
        stats.reset()
        slow = stats.snapshot("cloud")
        assert slow.rtt_ms is not None and slow.rtt_ms >= 450  # 250 ms each way
        stats.record_call("cloud", 25.0, ok=True)  # a cold first call alone says nothing
        assert stats.snapshot("cloud").call_s is None
        stats.record_call("cloud", 9.0, ok=True)
        assert stats.snapshot("cloud").call_s == 9.0
    finally:
        proxy.close()
        server.shutdown()
    stats.reset()
    down = stats.snapshot("cloud")
    assert down.down and down.rtt_ms is None


def test_other_programs_load_makes_the_device_busy() -> None:
    monitor = ContextMonitor()
    monitor.other_load()
    with CpuHog(2):
        time.sleep(1.5)
        share = monitor.other_load()
    assert share > 0.3, share
    s = Settings(home=Path("/nonexistent"), cloud_model="fake:none", low_power=True)
    ctx, measured = monitor.snapshot(s)
    assert ctx.low_power and "other load" in measured


def test_other_turns_in_flight_make_the_device_busy(monkeypatch) -> None:
    monitor = ContextMonitor()
    monkeypatch.setattr(monitor, "other_load", lambda: 0.0)  # no other program: the queue alone
    s = Settings(home=Path("/nonexistent"), cloud_model="fake:none", low_power=False)
    assert monitor.turn_started("a#1") == 0
    assert monitor.turn_started("b#1") == 1
    ctx, _ = monitor.snapshot(s, others=1)
    assert ctx.load == "idle"  # one other turn: this one still waits for at most one
    assert monitor.turn_started("c#1") == 2
    ctx, measured = monitor.snapshot(s, others=2)
    assert ctx.load == "busy" and "2 other turns in flight" in measured
    assert choose_placement(ctx).judge == "device-facts"
    assert monitor.turn_started("c#1") == 2  # the same turn again is not another one
    monitor.turn_ended("a#1")
    monitor.turn_ended("b#1")
    assert monitor.turn_started(None) == 1  # a run with no thread is not counted
    monitor.turn_ended("c#1")
    assert monitor.turn_started("d#1") == 0


def test_a_turn_that_never_ended_stops_counting(monkeypatch) -> None:
    from cdarec.device import context

    monitor = ContextMonitor()
    monitor.turn_started("failed#1")  # an error ended it before respond
    now = time.monotonic()
    monkeypatch.setattr(context.time, "monotonic", lambda: now + context.TURN_TTL_S + 1)
    assert monitor.turn_started("next#1") == 0


# -- the graph on each side (fake models) -----------------------------------------------


@pytest.fixture()
def graph(fake_graph):
    """tests/unit/conftest.py's graph on every checkpointer, with a placement."""
    return lambda placement, queries=QUERIES: fake_graph(placement=placement, queries=queries)


def _nodes(out) -> list[str]:
    return [r.node for r in out["trace"]]


def test_device_placement_runs_the_device_implementations(graph) -> None:
    s, res, g = graph("device")
    out = g.invoke({"request": OPEN}, {"configurable": {"thread_id": "t"}}, context=s)
    ran = _nodes(out)
    assert {"plan_on_device", "model_semantics_on_device", "retrieve_on_device"} <= set(ran)
    assert not {"plan_strategy", "model_semantics", "retrieve_candidates"} & set(ran)
    assert res.cloud.cloud_llm.chat.prompts == []  # the cloud was not asked anything
    assert out["ranking"] and out["plan"].placement.retrieval == "device"
    assert "placement:" in out["trace"][0].detail  # the trace says where, and why
    assert next(r for r in out["trace"] if r.node == "model_semantics_on_device").tokens_in


def test_the_device_index_answers_after_the_cloud_retrieved_once(graph) -> None:
    s, res, g = graph("default")
    cfg = {"configurable": {"thread_id": "t"}}
    g.invoke({"request": "something light"}, cfg, context=s)
    assert len(res.device.recent_index.items("196")) > 0
    s2 = s.model_copy(update={"placement": "device"})
    out = g.invoke({"request": "something light"}, cfg, context=s2)
    step = next(r for r in out["trace"] if r.node == "retrieve_on_device")
    assert not step.detail.startswith("0 hits"), step.detail
    # the placement and the context survive the checkpoint as their own types
    saved = g.get_state(cfg).values
    assert isinstance(saved["plan"].placement, Placement)
    assert isinstance(saved["context"], DeviceContext)


def test_lean_device_placement_makes_no_device_model_call(graph) -> None:
    s, res, g = graph("lean-device")
    out = g.invoke({"request": "something light"}, {"configurable": {"thread_id": "t"}}, context=s)
    assert res.device.device_llm.chat.prompts == []
    assert all(r.reason_source == "facts" for r in out["ranking"])


def test_the_adaptive_plan_calls_the_device_model_only_where_it_ranks(graph, monkeypatch) -> None:
    """Normal conditions, adaptive: a turn with no request (history-led, the model's order
    weighs nothing) answers from the items' facts with no model call and says why; an
    open request (balanced) is judged by the device model."""
    s, res, g = graph("adaptive")
    s = s.model_copy(update={"planner": "auto"})  # the product's: the rule where it is sure
    monitor = res.device.context_monitor
    normal = DeviceContext(link="fast", cloud_speed="fast")
    monkeypatch.setattr(monitor, "snapshot", lambda settings, others=0: (normal, "measured"))
    cfg = {"configurable": {"thread_id": "t"}}
    out = g.invoke({"request": ""}, cfg, context=s)
    assert out["plan"].strategy == "history-led"
    assert out["plan"].placement.judge == "device-facts", out["plan"].placement
    rank = next(r for r in out["trace"] if r.node == "rank_on_device")
    assert "no model judgement" in rank.detail and "no weight" in rank.detail, rank.detail
    assert rank.model is None
    assert all(r.reason_source == "facts" for r in out["ranking"])
    assert res.device.device_llm.chat.prompts == []
    out = g.invoke({"request": OPEN}, cfg, context=s)
    assert out["plan"].weights.judge > 0 and out["plan"].placement.judge == "device-slm"
    assert next(r for r in out["trace"] if r.node == "rank_on_device").model
    assert res.device.device_llm.chat.prompts, "the device model judged the open request"


def test_a_busy_device_on_a_slow_link_answers_an_open_request_with_no_model_call(
    graph, monkeypatch
) -> None:
    """Slow link and a busy device, adaptive: planning, semantics and retrieval run on the
    device, and the device model is asked nothing - neither the query (the request's own
    words are searched) nor the judgement (reasons from facts); the trace says why."""
    s, res, g = graph("adaptive")
    monitor = res.device.context_monitor
    ctx = DeviceContext(link="slow", cloud_speed="fast", load="busy")
    monkeypatch.setattr(monitor, "snapshot", lambda settings, others=0: (ctx, "measured"))
    out = g.invoke({"request": OPEN}, {"configurable": {"thread_id": "t"}}, context=s)
    assert out["plan"].placement.semantics == "device"
    step = next(r for r in out["trace"] if r.node == "model_semantics_on_device")
    assert step.status == "skipped" and "no device model call" in step.detail, step.detail
    assert OPEN in step.detail  # the request's own words were searched
    assert res.device.device_llm.chat.prompts == []
    assert res.cloud.cloud_llm.chat.prompts == []
    assert out["ranking"] and all(r.reason_source == "facts" for r in out["ranking"])


def test_turns_at_once_answer_from_facts_beyond_the_queue(graph) -> None:
    """Sessions at once (threads, as `cdarec serve` runs them): a turn that starts while two
    others are in flight ranks without the device model, says why in its trace, and the
    device stops counting each turn when it answers."""
    s, res, g = graph("adaptive")
    monitor = res.device.context_monitor
    for k in ("other-a#1", "other-b#1"):  # two turns of other sessions, mid-flight
        monitor.turn_started(k)
    out = g.invoke({"request": "something light"}, {"configurable": {"thread_id": "t"}}, context=s)
    assert out["plan"].placement.judge == "device-facts", out["plan"].placement
    assert "2 other turns in flight" in out["trace"][0].detail
    assert all(r.reason_source == "facts" for r in out["ranking"])
    assert res.device.device_llm.chat.prompts == []
    for k in ("other-a#1", "other-b#1"):
        monitor.turn_ended(k)
    assert monitor.turn_started(None) == 0  # this turn ended too
    out = g.invoke({"request": "something light"}, {"configurable": {"thread_id": "t"}}, context=s)
    assert "in flight" not in out["trace"][0].detail  # alone again


def test_a_device_query_naming_a_watched_film_never_reaches_the_cloud(graph) -> None:
    s, res, g = graph("device")
    ds = res.dataset
    watched = ds.items[int(ds.sequence("196")[0])].title
    leak = json.dumps({"queries": [f"more films like {watched}"]})
    res.device.device_llm.chat.script = by_task(PLAN, leak, JUDGE)
    cfg = {"configurable": {"thread_id": "t"}}
    out = g.invoke({"request": OPEN}, cfg, context=s)
    step = next(r for r in out["trace"] if r.node == "model_semantics_on_device")
    assert "named a watched film" in step.detail
    sent = g.get_state(cfg).values["intent"].queries  # what the retrieval searched
    assert sent and all(watched not in q for q in sent)


# -- the benchmark's own arithmetic ----------------------------------------------------


def test_the_bench_summary_and_its_verdicts() -> None:
    from cdarec.evaluation.bench.placement import Turn, summarise, verdicts

    def turns(wall: float, answered: bool = True) -> list[Turn]:
        kinds = ("request", "open", "none")
        return [
            Turn("u", k, "", wall, wall / 4, answered, 10, 1, {"planning": "cloud"}, rank=0)
            for k in kinds
        ]

    slow, fast = summarise(turns(6.0)), summarise(turns(3.0))
    assert slow["p50_s"] == 6.0 and slow["request_hr10"] == 1.0 and slow["answered"] == 1.0
    assert slow["sides"] == {"planning": {"cloud": 3}}
    v = verdicts({"slow-link": {"default": slow, "device": fast, "adaptive": fast}})
    assert "2.00x faster than default (met)" in v["slow-link"]
    assert "1.00x (met)" in v["slow-link"]
    gone = summarise(turns(1.0, answered=False))
    assert gone["answered"] == 0.0
    assert "answered 0% (NOT met)" in verdicts({"unreachable": {"adaptive": gone}})["unreachable"]
