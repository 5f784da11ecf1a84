"""Shared: schema-constrained calls with one repair attempt and a visible fallback.

Every structured output (plan, semantic query, ranking) goes through ``call_structured``:
the model is constrained to the JSON schema where the runtime supports it, the reply is
validated by pydantic, an invalid reply gets one repair round (the validation error is
shown to the model), and if that fails too - or the endpoint is down - the caller's
documented fallback is used and the result says so, so the trace can show it.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

from langchain_core.messages import AIMessage, BaseMessage, HumanMessage
from langchain_core.runnables import RunnableConfig
from pydantic import BaseModel, ValidationError

from cdarec.llm.factory import LLM
from cdarec.llm.linkstats import STATS

T = TypeVar("T", bound=BaseModel)

_FENCE = re.compile(r"```(?:json)?\s*(.*?)```", re.DOTALL)


@dataclass
class Usage:
    input_tokens: int = 0
    output_tokens: int = 0
    calls: int = 0

    def add(self, msg: BaseMessage) -> None:
        meta = getattr(msg, "usage_metadata", None) or {}
        self.input_tokens += int(meta.get("input_tokens", 0) or 0)
        self.output_tokens += int(meta.get("output_tokens", 0) or 0)
        self.calls += 1


@dataclass
class Structured(Generic[T]):
    value: T
    status: str  # "ok" | "repaired" | "fallback"
    error: str | None = None
    raw: str = ""
    usage: Usage = field(default_factory=Usage)

    @property
    def fallback(self) -> bool:
        return self.status == "fallback"


def extract_json(text: str) -> Any:
    """Parse the JSON object in a reply, tolerating code fences and chatter around it."""
    text = text.strip()
    m = _FENCE.search(text)
    if m:
        text = m.group(1).strip()
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        start, end = text.find("{"), text.rfind("}")
        if start != -1 and end > start:
            return json.loads(text[start : end + 1])
        raise


def parse_reply(text: str, schema: type[T], context: dict[str, Any] | None = None) -> T:
    return schema.model_validate(extract_json(text), context=context)


def _short(err: Exception) -> str:
    if isinstance(err, ValidationError):
        parts = [f"{'.'.join(map(str, e['loc'])) or 'root'}: {e['msg']}" for e in err.errors()[:4]]
        return "; ".join(parts)
    return f"{type(err).__name__}: {str(err)[:200]}"


def call_structured(
    llm: LLM,
    schema: type[T],
    messages: list[BaseMessage],
    *,
    max_tokens: int,
    fallback: Callable[[], T],
    json_schema: dict[str, Any] | None = None,
    context: dict[str, Any] | None = None,
    config: RunnableConfig | None = None,
    salvage: Callable[[str], T | None] | None = None,
) -> Structured[T]:
    usage = Usage()
    if llm.failed_at is not None:
        ago = time.monotonic() - llm.failed_at
        error = (
            f"model call skipped ({llm.spec}): it failed {ago:.0f} s ago in this turn "
            f"({llm.failure})"
        )
        return Structured(fallback(), "fallback", error=error, usage=usage)
    runnable = llm.json(json_schema or schema.model_json_schema(), max_tokens, schema.__name__)
    raw = ""
    t0 = time.perf_counter()
    try:
        reply = runnable.invoke(messages, config=config)
        STATS.record_call(llm.spec, time.perf_counter() - t0, ok=True)
        usage.add(reply)
        raw = str(reply.content)
        try:
            return Structured(parse_reply(raw, schema, context), "ok", raw=raw, usage=usage)
        except (ValueError, ValidationError) as err:
            first_error = _short(err)
        if salvage is not None and (saved := salvage(raw)) is not None:
            # e.g. a reply cut at its token budget whose complete parts are still usable
            return Structured(
                saved, "repaired", error=f"salvaged: {first_error}", raw=raw, usage=usage
            )
        repair = [
            *messages,
            AIMessage(content=raw),
            HumanMessage(
                content=f"That reply was invalid ({first_error}). Reply again with only the "
                "corrected JSON object."
            ),
        ]
        reply = runnable.invoke(repair, config=config)
        usage.add(reply)
        raw = str(reply.content)
        try:
            value = parse_reply(raw, schema, context)
            return Structured(value, "repaired", error=first_error, raw=raw, usage=usage)
        except (ValueError, ValidationError) as err:
            error = f"invalid after repair: {_short(err)}"
    except Exception as err:  # the endpoint itself failed: dead server, timeout, HTTP error
        STATS.record_call(llm.spec, time.perf_counter() - t0, ok=False)
        error = f"model call failed ({llm.spec}): {_short(err)}"
        llm.failed_at, llm.failure = time.monotonic(), _short(err)
    return Structured(fallback(), "fallback", error=error, raw=raw, usage=usage)
