"""Fake chat models for unit tests (say so: these never stand in for a capability test).

``ScriptedChat`` answers with a function of the prompt and records every prompt, so a
unit test can drive the whole graph without loading a model.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from langchain_core.callbacks import CallbackManagerForLLMRun
from langchain_core.language_models.chat_models import BaseChatModel
from langchain_core.messages import AIMessage, BaseMessage
from langchain_core.outputs import ChatGeneration, ChatResult
from pydantic import ConfigDict, Field

from cdarec.llm.factory import LLM


class ScriptedChat(BaseChatModel):
    model_config = ConfigDict(arbitrary_types_allowed=True)

    script: Callable[[list[BaseMessage]], str]
    prompts: list[list[BaseMessage]] = Field(default_factory=list)
    fail: bool = False

    @property
    def _llm_type(self) -> str:
        return "scripted-fake"

    def _generate(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: CallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> ChatResult:
        self.prompts.append(list(messages))
        if self.fail:
            raise ConnectionError("fake endpoint is down")
        text = self.script(messages)
        msg = AIMessage(
            content=text,
            usage_metadata={
                "input_tokens": sum(len(str(m.content).split()) for m in messages),
                "output_tokens": len(text.split()),
                "total_tokens": 0,
            },
        )
        return ChatResult(generations=[ChatGeneration(message=msg)])


def fake_llm(
    script: Callable[[list[BaseMessage]], str], name: str = "fake", fail: bool = False
) -> LLM:
    return LLM(
        spec=f"fake:{name}",
        provider="llamacpp",
        name=name,
        chat=ScriptedChat(script=script, prompts=[], fail=fail),
    )


def by_task(plan: str, queries: str, judge: str) -> Callable[[list[BaseMessage]], str]:
    """Answer each sub-task's prompt (recognised by its task line) with fixed JSON."""

    def script(messages: list[BaseMessage]) -> str:
        text = "\n".join(str(m.content) for m in messages)
        if "Task: choose the strategy" in text:
            return plan
        if "Task: write one short search query" in text:
            return queries
        return judge

    return script


# The scripted answers most fake-model tests give (one per sub-task's prompt).
PLAN = json.dumps({"strategy": "balanced"})
COLD_START = json.dumps({"strategy": "cold-start"})
QUERIES = json.dumps({"queries": ["light science fiction comedy"]})
FITS, ALSO = "a fine pick for tonight", "also worth a look"
JUDGE = json.dumps({"picks": [{"n": 2, "reason": FITS}, {"n": 1, "reason": ALSO}]})
