"""The judgement placed on the cloud: only a device with no private history sends its
shortlist, the cloud LLM's reasons are checked on the device, and a device with a
history (watched items, feedback, a "more like" click) or a strict privacy setting
judges itself whatever the plan says (scripted fake models; real data, real Chroma,
the real graph and checkpointer)."""

from __future__ import annotations

import json

import pytest

from cdarec.contract.placement import DeviceContext, Placement, choose_placement
from cdarec.contract.plan import default_plan
from cdarec.contract.request import Constraints
from cdarec.contract.schemas import UserAbstract
from cdarec.settings import Settings
from tests.unit.test_more_like import CloudInputs

CLOUD_REASON = "bright and breezy, a good first pick"


def _graph(fake_graph, user: str, cloud_judge: str, **overrides: object):
    """The graph on scripted models (``fake_graph``, every checkpointer), the judgement
    placed on the cloud; also the cloud's and the device's fake chats (their prompts)."""
    s, res, g = fake_graph(
        user=user, planner="auto", cloud_judge=cloud_judge, placement="cloud-judge", **overrides
    )
    return s, res, g, res.cloud.cloud_llm.chat, res.device.device_llm.chat


def _judge(n: int, reason: str) -> str:
    return json.dumps({"picks": [{"n": n, "reason": reason}]})


def _prompts(chat) -> list[str]:
    return ["\n".join(str(m.content) for m in p) for p in chat.prompts]


def _run(g, s: Settings, request: str = "a comedy", thread: str = "t") -> tuple[dict, CloudInputs]:
    spy = CloudInputs()
    cfg = {"configurable": {"thread_id": thread}, "callbacks": [spy]}
    return g.invoke({"request": request}, cfg, context=s), spy


def test_a_device_with_no_history_lets_the_cloud_judge_its_shortlist(fake_graph) -> None:
    s, res, g, cloud, device = _graph(fake_graph, "newbie", _judge(2, CLOUD_REASON))
    res.memory.seed("newbie", [])
    out, spy = _run(g, s)
    nodes = [r.node for r in out["trace"]]
    assert "judge_on_cloud" in nodes and nodes.index("judge_on_cloud") < nodes.index("respond")
    judged = [i for n, i in spy.nodes if n == "judge_on_cloud"]
    assert judged and judged[0]["shortlist"], "the cloud node got the shortlist"
    assert set(judged[0]["shortlist"]) == {r.item_id for r in out["ranking"]}
    assert any("Task: judge the shortlist" in p for p in _prompts(cloud))
    assert not any("Recently watched" in p for p in _prompts(device)), "no device judgement"
    picked = [r for r in out["ranking"] if r.reason_source == "cloud"]
    assert [r.reason for r in picked] == [CLOUD_REASON]
    assert picked[0].item_id == judged[0]["shortlist"][1], "the reason is the pick's"
    assert [r.rank for r in out["ranking"]] == list(range(1, len(out["ranking"]) + 1))
    assert all(r.grounded for r in out["ranking"])
    saved = g.get_state({"configurable": {"thread_id": "t"}}).values
    assert saved["shortlist"] is None, "cleared with the turn"


@pytest.mark.parametrize("history", ["watched", "liked", "strict", "more-like"])
def test_a_device_with_a_history_judges_itself_whatever_the_plan_says(
    fake_graph, history: str
) -> None:
    user = "196" if history == "watched" else "newbie"
    extra = {"privacy": "strict"} if history == "strict" else {}
    s, res, g, cloud, device = _graph(fake_graph, user, _judge(1, CLOUD_REASON), **extra)
    if user == "newbie":
        res.memory.seed("newbie", [])
    request: dict = {"request": "a comedy"}
    if history == "liked":
        first, _ = _run(g, s, thread="t0")
        res.memory.add_feedback("newbie", "like", item_id=first["ranking"][0].item_id)
    if history == "more-like":
        request = {"request": "", "anchor": res.dataset.items[0].item_id}
    spy = CloudInputs()
    cfg = {"configurable": {"thread_id": "t"}, "callbacks": [spy]}
    before = len(cloud.prompts)
    out = g.invoke(request, cfg, context=s)
    assert "judge_on_cloud" not in [r.node for r in out["trace"]]
    assert not any(i.get("shortlist") for _, i in spy.nodes), "no cloud node got a shortlist"
    assert not any("Task: judge the shortlist" in p for p in _prompts(cloud)[before:])
    assert any("Recently watched" in p for p in _prompts(device)), "the device judged"
    assert not any(r.reason_source == "cloud" for r in out["ranking"])
    rank = next(t for t in out["trace"] if t.node == "rank_on_device")
    assert "stays on the device" in rank.detail


def test_a_false_cloud_reason_is_not_shown(fake_graph) -> None:
    # Every ML-100K comedy the request binds is not a Western: the claim is false.
    s, res, g, _cloud, _device = _graph(
        fake_graph, "newbie", _judge(1, "a classic Western shootout")
    )
    res.memory.seed("newbie", [])
    out, _ = _run(g, s)
    top = out["ranking"]
    assert top and not any(r.reason_source == "cloud" for r in top)
    assert all(r.grounded for r in top)
    reply = next(t for t in out["trace"] if t.node == "respond")
    assert "failed the fact check" in reply.detail


def test_a_busy_cold_device_lets_a_cloud_measured_fast_judge() -> None:
    busy = DeviceContext(load="busy", link="fast", cloud_speed="fast")
    assert choose_placement(busy, cold=True).judge == "cloud-llm"
    assert choose_placement(busy, cold=False).judge == "device-facts", "a history stays"
    strict = busy.model_copy(update={"privacy": "strict"})
    assert choose_placement(strict, cold=True).judge == "device-facts"
    gone = busy.model_copy(update={"link": "down"})
    assert choose_placement(gone, cold=True).judge == "device-facts"
    slow = busy.model_copy(update={"cloud_speed": "slow"})
    assert choose_placement(slow, cold=True).judge == "device-facts"
    unmeasured = busy.model_copy(update={"cloud_speed": "unknown"})
    assert choose_placement(unmeasured, cold=True).judge == "device-facts"
    assert choose_placement(DeviceContext(), cold=True).judge == "device-slm"


def test_only_the_named_cloud_judge_survives_validation_and_plans_its_node() -> None:
    assert Placement(judge="cloud-llm").judge == "cloud-llm"  # type: ignore[arg-type]
    repaired = Placement.model_validate({"judge": "cloud-other"})
    assert repaired.judge == "device-slm" and "repaired" in repaired.why
    abstract = UserAbstract.model_validate(
        {
            "state": {
                "bucket": "cold",
                "history_size": "0",
                "recency": "unknown",
                "live_feedback": "none",
            }
        }
    )
    cloud = default_plan(abstract, "a comedy", 10, Constraints(), Placement(judge="cloud-llm"))
    device = default_plan(abstract, "a comedy", 10, Constraints(), Placement())
    assert "judge_on_cloud" in [x.task for x in cloud.steps()]
    assert "judge_on_cloud" not in [x.task for x in device.steps()]
