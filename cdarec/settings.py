"""Shared: the one way cdarec loads its settings.

Priority, highest first (as in RecBole): explicit arguments (CLI flags, the graph's
run context) > environment variables (``CDAREC_*``) > the settings file
(``$CDAREC_HOME/settings.toml``, or ``CDAREC_SETTINGS``) > defaults.

The same model is the LangGraph *context schema*, so ``langgraph dev`` / Studio shows
every field with its description, and a run can override any of them.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, create_model, field_validator
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
)


def default_home() -> Path:
    return Path(os.environ.get("CDAREC_HOME", Path.home() / ".cache" / "cdarec")).expanduser()


def settings_file() -> Path:
    return Path(os.environ.get("CDAREC_SETTINGS", default_home() / "settings.toml")).expanduser()


class Settings(BaseSettings):
    """Runtime settings of one cdarec run (also the graph's context)."""

    model_config = SettingsConfigDict(env_prefix="CDAREC_", extra="ignore", frozen=True)

    home: Path = Field(
        default_factory=default_home,
        description="Data home: models, data sets, the Chroma catalogue and device memory.",
    )
    dataset: str = Field(
        default="ml-1m",
        description="Data set: 'ml-1m', 'ml-100k', or a directory of RecBole atomic files.",
    )
    user_id: str | None = Field(
        default=None,
        description="The device's user. Device nodes read this user's private memory.",
    )
    device_model: str = Field(
        default="llamacpp:qwen2.5-coder-0.5b",
        description="Device SLM: 'llamacpp:<alias|path.gguf>' (in process) or "
        "'ollama:<model>' (Ollama at OLLAMA_HOST).",
    )
    cloud_model: str = Field(
        default="embedded:qwen2.5-coder-1.5b",
        description="Cloud LLM: 'openai:<model>' (any OpenAI-compatible endpoint at "
        "OPENAI_BASE_URL) or 'embedded:<alias|path.gguf>' (cdarec starts a local "
        "llama.cpp OpenAI-compatible server and talks to it over HTTP).",
    )
    planner: Literal["auto", "llm", "fixed"] = Field(
        default="auto",
        description="'auto': the cloud LLM writes the plan when the request has words the "
        "code could not read, the rule decides otherwise (no request, a film named, a "
        "request read completely); 'llm': the cloud LLM writes every plan; 'fixed': the "
        "rule's plan always (ablation: no planner call).",
    )
    plan_cache: bool = Field(
        default=True,
        description="Reuse a plan the planner wrote for the same user state and request kind.",
    )
    sequence_model: Literal["auto", "sasrec", "transition"] = Field(
        default="auto",
        description="Structured user model on the device: 'sasrec' (trained by `cdarec "
        "train`), 'transition' (item-to-item transitions, fitted in seconds) or 'auto' "
        "(SASRec when it has been trained for the data set, else transitions).",
    )
    ablate: list[Literal["slm", "semantic", "sequence", "collab"]] = Field(
        default_factory=list,
        description="Ablations for experiments: switch off the device SLM's judgement, "
        "semantic retrieval, the sequence model or collaborative retrieval, whatever the "
        "plan says.",
    )
    # Privacy (issue 17; `cdarec bench privacy` measures each choice).
    collab_side: Literal["device", "cloud"] = Field(
        default="device",
        description="Where collaborative retrieval (the user vector against the model's "
        "item vectors) runs: 'device' (the vector never leaves it: the catalogue's item "
        "table fits every device here) or 'cloud' (the vector is sent, on turns whose plan "
        "runs collaborative retrieval only: for catalogues too large for the device).",
    )
    collab_noise: float = Field(
        default=0.0,
        ge=0.0,
        le=100.0,
        description="With collab_side='cloud': the Gaussian mechanism's sigma on the "
        "unit-length user vector before it is sent (0 = sent as computed); the epsilon "
        "for delta=1e-5 is printed by `cdarec bench privacy`.",
    )
    abstract_k: int = Field(
        default=0,
        ge=0,
        description="How much of the abstract the cloud sees: 0 (default) = the user's "
        "bucket alone (cold / light / heavy) and this session's feedback kind; k >= 2 = the "
        "most detailed generalisation at least k of the data set's users share "
        "(k-anonymity against the public population table); 1 = everything.",
    )
    # Placement (issue 20; `cdarec bench placement` measures each choice).
    placement: Literal["adaptive", "default", "device", "lean-device", "cloud-judge"] = Field(
        default="adaptive",
        description="Where the movable sub-tasks (planning, semantic modelling, retrieval, "
        "the judgement) run: 'adaptive' (chosen per turn from the measured link, cloud speed "
        "and device load; a model judges only where the plan weighs its order, else the "
        "reasons come from the items' facts), or a fixed placement: 'default' (the paper's "
        "sides), 'device' (planning, semantics and retrieval on the device), 'lean-device' "
        "(no device model call: reasons from the items' facts), 'cloud-judge' (the cloud "
        "LLM judges and explains the shortlist of a device with no private history; a "
        "device with one judges itself).",
    )
    privacy: Literal["standard", "strict"] = Field(
        default="standard",
        description="The user's privacy setting: 'strict' = the cloud gets nothing beyond "
        "the request and the abstract (no user vector, device-written queries from the "
        "request alone).",
    )
    low_power: bool | None = Field(
        default=None,
        description="Treat the device as on low power (no device model call when another "
        "way exists); None = from the battery (on battery below 20%).",
    )
    chroma_url: str | None = Field(
        default=None,
        description="A Chroma server (http://host:port) holding the catalogue and the "
        "collaborative index, instead of the embedded Chroma under the home; start one with "
        "`chroma run --path DIR --port N`.",
    )
    database_url: str | None = Field(
        default=None,
        description="A PostgreSQL server (postgresql://user:pass@host:port/db) for the chat "
        "sessions' checkpoints, shared by several `cdarec serve` workers, instead of the "
        "device's SQLite file. Device memory (history, feedback) never goes there.",
    )
    embedder: str = Field(default="minilm-l6-int8", description="Catalogue embedding model.")
    retrieval_k: int = Field(
        default=30, ge=1, le=500, description="Default number of candidates the cloud retrieves."
    )
    sequence_k: int = Field(
        default=30, ge=0, le=500, description="Candidates the device sequence model proposes."
    )
    judge_top: int = Field(
        default=5, ge=0, le=20, description="How many fused candidates the device SLM judges."
    )
    show_top: int = Field(default=5, ge=1, le=20, description="Items shown per turn.")
    llm_threads: int = Field(
        default=max(1, min(4, os.cpu_count() or 1)),
        description="CPU threads per llama.cpp model.",
    )
    llm_ctx: int = Field(default=2048, ge=512, description="Context window for local models.")
    llm_timeout_s: float = Field(
        default=30.0,
        gt=0,
        description="Timeout of one try of an LLM call; a failing cloud endpoint costs a "
        "turn at most two tries of one call (the client's one retry: 2 x this when it hangs), "
        "then later cloud calls of the turn fall back at once.",
    )
    seed: int = Field(default=0, description="Seed for sampling and local models.")

    @field_validator("home", mode="before")
    @classmethod
    def _expand(cls, v: Any) -> Any:
        return Path(v).expanduser() if isinstance(v, str | Path) else v

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        toml = TomlConfigSettingsSource(settings_cls, toml_file=settings_file())
        return (init_settings, env_settings, toml)

    # -- derived paths ------------------------------------------------------------------
    @property
    def chroma_dir(self) -> Path:
        return self.home / "chroma"

    @property
    def device_dir(self) -> Path:
        """Everything private lives below here: the device's own folder."""
        return self.home / "device"

    @property
    def checkpoint_db(self) -> Path:
        return self.device_dir / "checkpoints.sqlite"

    @property
    def prompts_override_dir(self) -> Path:
        return self.home / "prompts"

    @classmethod
    def coerce(cls, value: Settings | BaseModel | dict[str, Any] | None) -> Settings:
        """Accept what LangGraph hands a node as context: None, a dict, a Settings or a
        ``ServerContext`` (the LangGraph server's: its fields over the server's own
        settings, from its environment and settings file)."""
        if isinstance(value, Settings):
            return value
        if isinstance(value, BaseModel):
            value = value.model_dump(exclude_unset=True)
        return cls(**(value or {}))

    def fingerprint(self) -> str:
        """Key for caches of heavy resources built from these settings."""
        keys = (
            "home",
            "dataset",
            "chroma_url",
            "device_model",
            "cloud_model",
            "embedder",
            "sequence_model",
            "llm_threads",
            "llm_ctx",
            "seed",
        )
        return "|".join(str(getattr(self, k)) for k in keys)


def slug(name: str, limit: int = 60) -> str:
    """A file-name-safe form of a name (a data set, a user) for paths under the home."""
    return "".join(c if c.isalnum() or c in "-._" else "_" for c in name)[:limit] or "_"


# What a caller of the LangGraph server may set per run: bounded knobs of one turn. Not the
# home, the data set or model files (the server's operator chooses those, in its own
# environment), and ``user_id`` only as the server's auth sets it (from the caller's
# token; a value the caller sends is replaced).
SERVER_CONTEXT_FIELDS = (
    "user_id",
    "planner",
    "plan_cache",
    "ablate",
    "placement",
    "privacy",
    "retrieval_k",
    "sequence_k",
    "judge_top",
    "show_top",
)
ServerContext = create_model(  # the same field definitions (bounds, docs) as Settings'
    "ServerContext",
    __config__=ConfigDict(extra="forbid"),
    **{
        k: (Settings.model_fields[k].annotation, Settings.model_fields[k])
        for k in SERVER_CONTEXT_FIELDS
    },  # type: ignore[call-overload]
)
