"""call_structured with fake models (unit; the real-model path is in integration)."""

from __future__ import annotations

from langchain_core.messages import HumanMessage
from pydantic import BaseModel

from cdarec.llm.structured import call_structured, extract_json
from tests.fakes import fake_llm


class Out(BaseModel):
    n: int


def replies(*texts: str):
    it = iter(texts)
    return lambda _m: next(it)


def test_extract_json_tolerates_fences_and_chatter() -> None:
    assert extract_json('```json\n{"n": 1}\n```') == {"n": 1}
    assert extract_json('Sure! {"n": 2} hope this helps') == {"n": 2}


def test_ok_first_time() -> None:
    out = call_structured(
        fake_llm(replies('{"n": 3}')),
        Out,
        [HumanMessage("x")],
        max_tokens=10,
        fallback=lambda: Out(n=0),
    )
    assert out.status == "ok" and out.value.n == 3 and out.usage.calls == 1


def test_one_repair_shows_the_error_to_the_model() -> None:
    llm = fake_llm(replies('{"n": "three"}', '{"n": 3}'))
    out = call_structured(llm, Out, [HumanMessage("x")], max_tokens=10, fallback=lambda: Out(n=0))
    assert out.status == "repaired" and out.value.n == 3
    repair_prompt = llm.chat.prompts[1][-1].content
    assert "invalid" in repair_prompt and "n" in repair_prompt


def test_fallback_after_failed_repair_is_visible() -> None:
    out = call_structured(
        fake_llm(replies("nonsense", "still nonsense")),
        Out,
        [HumanMessage("x")],
        max_tokens=10,
        fallback=lambda: Out(n=-1),
    )
    assert out.fallback and out.value.n == -1 and "invalid after repair" in out.error


def test_dead_endpoint_falls_back_with_a_clear_error() -> None:
    out = call_structured(
        fake_llm(replies(), fail=True),
        Out,
        [HumanMessage("x")],
        max_tokens=10,
        fallback=lambda: Out(n=-1),
    )
    assert out.fallback and "model call failed" in out.error and "down" in out.error
