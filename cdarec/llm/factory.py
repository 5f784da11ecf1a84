"""Shared: the one way cdarec builds a model client, for either side.

Spec strings (``provider:model``):

- ``llamacpp:<alias|path.gguf>`` - llama.cpp in this process (embedded device default)
- ``ollama:<model>`` - ``ChatOllama`` against Ollama at ``OLLAMA_HOST`` (device)
- ``openai:<model>`` - ``ChatOpenAI`` against any OpenAI-compatible endpoint
  (``OPENAI_BASE_URL``, ``OPENAI_API_KEY``): OpenAI, vLLM, Ollama's /v1, llama.cpp server
- ``embedded:<alias|path.gguf>`` - cdarec starts a llama.cpp OpenAI-compatible server on
  loopback and talks to it with ``ChatOpenAI`` over HTTP (embedded cloud default)

Aliases are the model names of ``cdarec/assets/manifest.toml``; a missing file is pulled.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from langchain_core.language_models.chat_models import BaseChatModel
from langchain_core.runnables import Runnable

from cdarec.assets import AssetError, catalog, ensure_asset
from cdarec.llm.linkstats import STATS
from cdarec.settings import Settings

Provider = Literal["llamacpp", "ollama", "openai", "embedded"]
PROVIDERS: tuple[str, ...] = ("llamacpp", "ollama", "openai", "embedded")


class ModelSpecError(ValueError):
    pass


def parse_spec(spec: str) -> tuple[Provider, str]:
    provider, sep, name = spec.partition(":")
    if not sep or provider not in PROVIDERS or not name:
        raise ModelSpecError(
            f"model spec '{spec}' is not 'provider:model' with provider one of "
            f"{', '.join(PROVIDERS)} (e.g. 'ollama:qwen2.5:0.5b', 'openai:gpt-4o-mini')"
        )
    return provider, name  # type: ignore[return-value]


def resolve_gguf(name: str, home: Path) -> Path:
    """An alias from the manifest (pulled if missing) or a path to a .gguf file."""
    if ("models", name) in catalog():
        return ensure_asset(home, "models", name)[0]
    path = Path(name).expanduser()
    if path.suffix == ".gguf":
        if not path.exists():
            raise AssetError(f"model file {path} does not exist")
        return path
    known = sorted(n for k, n in catalog() if k == "models")
    raise ModelSpecError(f"unknown local model '{name}': use a .gguf path or one of {known}")


@dataclass
class LLM:
    """A chat model plus what cdarec needs to constrain it per call."""

    spec: str
    provider: Provider
    name: str
    chat: BaseChatModel
    json_mode: str = "json_object_schema"
    # An embedded model's server and how to point a new client at it (None otherwise).
    server: Any = None
    reconnect: Callable[[str], BaseChatModel] | None = None
    # Once the endpoint itself fails (dead, hung past the timeout, HTTP 500, a body that
    # is not an answer), later calls of the same turn are not sent: a turn waits for a
    # failing cloud once, not once per call. The next turn tries again (``new_turn``).
    failed_at: float | None = None
    failure: str = ""

    def new_turn(self) -> None:
        self.failed_at, self.failure = None, ""

    def revive(self) -> bool:
        """An embedded server that died (killed, crashed) is started again and this
        model's client pointed at it; returns whether that happened. A remote endpoint
        needs nothing: its next call simply tries it again."""
        if self.server is None or self.reconnect is None or self.server.alive():
            return False
        from cdarec.llm.server import EmbeddedServer

        srv = self.server
        self.server = EmbeddedServer.get(
            srv.model_path, srv.alias, srv.n_ctx, srv.threads, srv.log_path.parent
        )
        self.chat = self.reconnect(self.server.base_url)
        STATS.register(self.spec, self.server.base_url)
        return True

    def json(self, schema: dict[str, Any], max_tokens: int, name: str = "output") -> Runnable:
        """Bound so that the reply is JSON for ``schema`` and at most ``max_tokens`` long."""
        kw = self._limit(max_tokens)
        if self.provider == "ollama":
            kw["format"] = schema
        elif self.provider == "llamacpp" or self.json_mode == "json_object_schema":
            kw["response_format"] = {"type": "json_object", "schema": schema}
        elif self.json_mode == "json_schema":
            kw["response_format"] = {
                "type": "json_schema",
                "json_schema": {"name": name, "schema": schema, "strict": False},
            }
        else:
            kw["response_format"] = {"type": "json_object"}
        return self.chat.bind(**kw)

    def text(self, max_tokens: int) -> Runnable:
        """Bound for a free-text reply of at most ``max_tokens``."""
        return self.chat.bind(**self._limit(max_tokens))

    def _limit(self, max_tokens: int) -> dict[str, Any]:
        # Token budgets must really be enforced: each provider names the limit differently.
        if self.provider == "llamacpp":
            return {"max_tokens": max_tokens}
        if self.provider == "ollama":
            return {"options": {"num_predict": max_tokens, "temperature": 0, "seed": 0}}
        if self.provider == "embedded":
            # llama.cpp's server ignores max_completion_tokens, which langchain-openai sends.
            return {"extra_body": {"max_tokens": max_tokens}}
        return {"max_completion_tokens": max_tokens}


def build_llm(spec: str, settings: Settings) -> LLM:
    provider, name = parse_spec(spec)
    if provider == "llamacpp":
        from cdarec.llm.llamacpp import ChatLlamaCppLocal

        path = resolve_gguf(name, settings.home)
        chat: BaseChatModel = ChatLlamaCppLocal(
            model_path=path,
            model_name=name,
            n_ctx=settings.llm_ctx,
            n_threads=settings.llm_threads,
            seed=settings.seed,
        )
        return LLM(spec, provider, name, chat)
    if provider == "ollama":
        from langchain_ollama import ChatOllama

        chat = ChatOllama(
            model=name,
            temperature=0,
            seed=settings.seed,
            base_url=os.environ.get("OLLAMA_HOST") or None,
            client_kwargs={"timeout": settings.llm_timeout_s},
        )
        return LLM(spec, provider, name, chat)
    from langchain_openai import ChatOpenAI

    if provider == "openai":
        chat = ChatOpenAI(
            model=name,
            temperature=0,
            timeout=settings.llm_timeout_s,
            max_retries=1,
            seed=settings.seed,
        )
        mode = os.environ.get("CDAREC_OPENAI_JSON_MODE", "json_schema")
        STATS.register(spec, os.environ.get("OPENAI_BASE_URL") or "https://api.openai.com/v1")
        return LLM(spec, provider, name, chat, json_mode=mode)
    from cdarec.llm.server import EmbeddedServer

    path = resolve_gguf(name, settings.home)
    alias = Path(name).stem if name.endswith(".gguf") else name
    server = EmbeddedServer.get(
        path, alias, settings.llm_ctx, settings.llm_threads, settings.home / "logs"
    )
    return llama_server_client(spec, alias, server.base_url, settings, server)


def llama_server_client(
    spec: str, alias: str, base_url: str, settings: Settings, server: Any = None
) -> LLM:
    """A client of a llama.cpp OpenAI-compatible server at ``base_url`` (the embedded one,
    or the same reached through another address: a benchmark's link in between)."""
    from langchain_openai import ChatOpenAI

    def connect(url: str) -> BaseChatModel:
        return ChatOpenAI(
            model=alias,
            base_url=url,
            api_key="embedded-local",  # type: ignore[arg-type]
            temperature=0,
            timeout=settings.llm_timeout_s,
            max_retries=0,
            seed=settings.seed,
        )

    llm = LLM(spec, "embedded", alias, connect(base_url), server=server, reconnect=connect)
    STATS.register(spec, base_url, on_down=llm.revive if server is not None else None)
    return llm
