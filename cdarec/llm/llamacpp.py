"""Shared: llama.cpp in process as a LangChain chat model, the embedded device runtime.

Why by hand: langchain-community's ``ChatLlamaCpp`` routes structured output through
tool calling (unreliable on sub-1B models) and fixes its grammar at construction; the
device needs a per-call JSON-schema constraint (llama.cpp turns ``response_format``
with a schema into a grammar) and an enforced token budget. This is a thin
``BaseChatModel`` over ``Llama.create_chat_completion`` with exactly that. llama.cpp
reuses the KV cache of the longest common prompt prefix between calls on its own, so
fixed prompt headers are evaluated once.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from langchain_core.callbacks import CallbackManagerForLLMRun
from langchain_core.language_models.chat_models import BaseChatModel
from langchain_core.messages import (
    AIMessage,
    AIMessageChunk,
    BaseMessage,
    HumanMessage,
    SystemMessage,
)
from langchain_core.messages.ai import UsageMetadata
from langchain_core.outputs import ChatGeneration, ChatGenerationChunk, ChatResult
from pydantic import ConfigDict, Field

_MODELS: dict[tuple[str, int, int, int], tuple[Any, threading.Lock]] = {}
_MODELS_LOCK = threading.Lock()


def load_llama(path: Path, n_ctx: int, threads: int, seed: int) -> tuple[Any, threading.Lock]:
    """One shared ``Llama`` per (file, context, threads, seed), with its own lock.

    A ``Llama`` object is not thread-safe; parallel graph branches share it serially.
    """
    key = (str(path), n_ctx, threads, seed)
    with _MODELS_LOCK:
        if key not in _MODELS:
            from cdarec.llm.sampling import GrammarCheckedLlama

            llm = GrammarCheckedLlama(
                model_path=str(path),
                n_ctx=n_ctx,
                n_threads=threads,
                n_threads_batch=threads,
                seed=seed,
                # Read the weights instead of mapping them: llama.cpp repacks most
                # quantised matrices into its own buffer for the CPU kernels, so with
                # mmap the file's pages stayed resident beside their repacked copy.
                use_mmap=False,
                verbose=False,
            )
            _MODELS[key] = (llm, threading.Lock())
        return _MODELS[key]


def _role(m: BaseMessage) -> str:
    if isinstance(m, SystemMessage):
        return "system"
    if isinstance(m, HumanMessage):
        return "user"
    if isinstance(m, AIMessage):
        return "assistant"
    return "user"


class ChatLlamaCppLocal(BaseChatModel):
    """A GGUF model run in this process by llama.cpp."""

    model_config = ConfigDict(arbitrary_types_allowed=True)

    model_path: Path
    model_name: str = Field(default="local")
    n_ctx: int = 2048
    n_threads: int = 2
    seed: int = 0
    temperature: float = 0.0
    max_tokens: int = 256

    @property
    def _llm_type(self) -> str:
        return "llamacpp-inprocess"

    @property
    def _identifying_params(self) -> dict[str, Any]:
        return {"model_name": self.model_name, "n_ctx": self.n_ctx}

    def _params(self, stop: list[str] | None, kwargs: dict[str, Any]) -> dict[str, Any]:
        params: dict[str, Any] = {
            "temperature": kwargs.get("temperature", self.temperature),
            "max_tokens": kwargs.get("max_tokens", self.max_tokens),
            "seed": self.seed,
        }
        if stop:
            params["stop"] = stop
        if kwargs.get("response_format") is not None:
            params["response_format"] = kwargs["response_format"]
        return params

    def _messages(self, messages: list[BaseMessage]) -> list[dict[str, str]]:
        return [{"role": _role(m), "content": str(m.content)} for m in messages]

    def _generate(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: CallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> ChatResult:
        llm, lock = load_llama(self.model_path, self.n_ctx, self.n_threads, self.seed)
        with lock:
            out = llm.create_chat_completion(
                messages=self._messages(messages), **self._params(stop, kwargs)
            )
        choice = out["choices"][0]
        usage = out.get("usage") or {}
        msg = AIMessage(
            content=choice["message"].get("content") or "",
            usage_metadata=UsageMetadata(
                input_tokens=usage.get("prompt_tokens", 0),
                output_tokens=usage.get("completion_tokens", 0),
                total_tokens=usage.get("total_tokens", 0),
            ),
            response_metadata={
                "finish_reason": choice.get("finish_reason"),
                "model_name": self.model_name,
            },
        )
        return ChatResult(generations=[ChatGeneration(message=msg)])

    def _stream(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: CallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> Iterator[ChatGenerationChunk]:
        llm, lock = load_llama(self.model_path, self.n_ctx, self.n_threads, self.seed)
        with lock:
            for part in llm.create_chat_completion(
                messages=self._messages(messages), stream=True, **self._params(stop, kwargs)
            ):
                delta = part["choices"][0].get("delta", {}).get("content") or ""
                if not delta:
                    continue
                chunk = ChatGenerationChunk(message=AIMessageChunk(content=delta))
                if run_manager:
                    run_manager.on_llm_new_token(delta, chunk=chunk)
                yield chunk
