"""Shared: LangSmith safety, nothing history-derived may be uploaded.

Device runs (and the graph's final output, whose reasons may name watched films) carry
private data. Two layers:

- ``run_callbacks()``: what cdarec's own entry points (chat, web app, benchmarks) trace
  with - a tracer on a ``PrivacyClient`` that uploads cloud runs as they are and masks
  every other run's payload (selective masking by side).
- ``guard_tracing()``: for any other caller of the graph (``langgraph dev``, a user's
  script with LangChain's default tracer), LangSmith is forced to hide every run's
  inputs and outputs whenever tracing is on. Forced, not defaulted, so a stray
  ``LANGSMITH_HIDE_INPUTS=false`` cannot leak a history; ``PrivacyClient`` does its own
  masking and is not affected.
"""

from __future__ import annotations

import logging
import os
import re
import threading
from typing import Any

from langsmith import Client

log = logging.getLogger(__name__)

_TRACING_VARS = (
    "LANGSMITH_TRACING",
    "LANGSMITH_TRACING_V2",
    "LANGCHAIN_TRACING_V2",
    "LANGCHAIN_TRACING",
)
_HIDE_VARS = (
    "LANGSMITH_HIDE_INPUTS",
    "LANGSMITH_HIDE_OUTPUTS",
    "LANGSMITH_HIDE_METADATA",  # LangGraph copies thread and user ids into run metadata
    "LANGCHAIN_HIDE_INPUTS",
    "LANGCHAIN_HIDE_OUTPUTS",
)


def tracing_requested() -> bool:
    return any(os.environ.get(v, "").strip().lower() == "true" for v in _TRACING_VARS)


def guard_tracing() -> bool:
    """Force hidden payloads when LangSmith tracing is on; returns whether it is on."""
    if not tracing_requested():
        return False
    changed = [v for v in _HIDE_VARS if os.environ.get(v) != "true"]
    for v in _HIDE_VARS:
        os.environ[v] = "true"
    if changed:
        log.warning(
            "LangSmith tracing is on: run inputs and outputs are hidden so that no "
            "private history leaves the device"
        )
    return True


# -- selective masking: cloud runs readable, device runs masked -----------------------------
MASKED = {"masked": "device-side run: its payload stays on the device"}
MASKED_ERROR = "error on the device side (its details stay on the device)"

# The cloud's graph nodes: their runs (and the model and tool calls inside them) are the
# only runs uploaded readable. By name, not by inherited metadata: LangGraph runs a node's
# conditional edge inside the node's context, so the plan's edge (``route_plan``), whose
# input is the whole state, device proposals included, inherits the planner's
# ``side: cloud``; it must not count as cloud.
CLOUD_RUN_NAMES = frozenset(
    {"plan_strategy", "model_semantics", "retrieve_candidates", "judge_on_cloud"}
)
# What may run inside a cloud node and be uploaded readable (chains are not: an edge or
# a writer is a chain).
CLOUD_CHILD_TYPES = frozenset({"llm", "tool", "retriever", "embedding", "prompt", "parser"})
# Metadata keys uploaded; everything else is dropped (LangGraph copies the configurable
# keys, thread_id among them, and the caller's metadata, user_id among them, into every
# run's metadata).
METADATA_KEYS = frozenset(
    {
        "side",
        "langgraph_step",
        "langgraph_node",
        "langgraph_triggers",
        "ls_provider",
        "ls_model_type",
        "ls_model_name",
        "ls_temperature",
        "ls_max_tokens",
        "ls_run_depth",
        "model",
        "tokens_in",
        "tokens_out",
        "status",
        "bucket",
        "plan",
        "plan_weights",
    }
)
_PATH = re.compile(r"(?:(?<=[\s'\"(=:])|^)(?:~|/)[^\s'\"(),:]*/([^\s'\"(),:/]+)")


def redact_paths(text: str) -> str:
    """'/root/.cache/cdarec/models/x.gguf' -> 'x.gguf': a file's name, not where it lives."""
    return _PATH.sub(lambda m: m.group(1), text)


def _clean(value: Any) -> Any:
    if isinstance(value, str):
        return redact_paths(value)
    if isinstance(value, dict):
        return {k: _clean(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_clean(v) for v in value]
    return value


def _side(kwargs: dict[str, Any]) -> str | None:
    meta = (kwargs.get("extra") or {}).get("metadata") or {}
    side = meta.get("side")
    return str(side) if side in ("cloud", "device") else None


class PrivacyClient(Client):
    """A LangSmith client that uploads only cloud runs readable.

    A run is a cloud run when it is one of the cloud's graph nodes (by name), or a model,
    tool or retriever call inside one. Every other run (device nodes, the device SLM's
    prompts, the graph's root whose output is the ranking, edges and writers, which read
    the whole state) is uploaded with its inputs, outputs and events replaced by
    ``MASKED`` and its error by a fixed text, while its name, timing, tags
    (``side:cloud`` / ``side:device``) and allow-listed metadata (model, tokens, status,
    lifted from the step trace before masking) still complete the run tree. Of every run,
    the metadata keeps only ``METADATA_KEYS`` (no user id, no thread id), the serialized
    constructor (which names local model files) is dropped and file paths are cut to
    their names.

    Masking happens in ``create_run``/``update_run``, the two calls every LangChain
    tracer makes, so nothing reaches the transport unmasked.
    """

    def __init__(self, **kwargs: Any) -> None:
        kwargs.setdefault("hide_inputs", False)  # this class decides, not the env switch
        kwargs.setdefault("hide_outputs", False)
        kwargs.setdefault("hide_metadata", False)  # scrubbed to METADATA_KEYS instead
        super().__init__(**kwargs)
        self._cloud: set[str] = set()  # open cloud runs (their children may be cloud runs)
        self._private: set[str] = set()  # open masked runs
        self._private_lock = threading.Lock()

    def _is_cloud(self, name: str, run_type: Any, kwargs: dict[str, Any]) -> bool:
        if _side(kwargs) != "cloud":
            return False
        if name in CLOUD_RUN_NAMES:
            return True
        parent = str(kwargs.get("parent_run_id") or "")
        with self._private_lock:
            return parent in self._cloud and str(run_type) in CLOUD_CHILD_TYPES

    def create_run(self, name: str, inputs: dict[str, Any], run_type: Any, **kwargs: Any) -> None:
        side = _side(kwargs)
        if side:
            kwargs["tags"] = sorted({*(kwargs.get("tags") or []), f"side:{side}"})
        kwargs["extra"] = _scrub(_lift(kwargs.get("extra"), inputs, kwargs.get("outputs")))
        kwargs.pop("serialized", None)
        run_id = str(kwargs.get("id"))
        if self._is_cloud(name, run_type, kwargs):
            with self._private_lock:
                self._cloud.add(run_id)
            inputs = _clean(inputs)
            if kwargs.get("outputs") is not None:
                kwargs["outputs"] = _clean(kwargs["outputs"])
            if kwargs.get("error"):
                kwargs["error"] = redact_paths(str(kwargs["error"]))
        else:
            with self._private_lock:
                self._private.add(run_id)
            inputs = dict(MASKED)
            _mask(kwargs)
        super().create_run(name, inputs, run_type, **kwargs)

    def update_run(self, run_id: Any, **kwargs: Any) -> None:
        key = str(run_id)
        with self._private_lock:
            private = key in self._private or key not in self._cloud
            if kwargs.get("end_time") is not None:  # children end first: forget it now
                self._private.discard(key)
                self._cloud.discard(key)
        if kwargs.get("outputs") is not None:
            kwargs["extra"] = _lift(kwargs.get("extra"), kwargs.get("inputs"), kwargs["outputs"])
        if kwargs.get("extra") is not None:
            kwargs["extra"] = _scrub(kwargs["extra"])
        kwargs.pop("serialized", None)
        if private:
            if kwargs.get("inputs") is not None:
                kwargs["inputs"] = dict(MASKED)
            _mask(kwargs)
        else:
            for k in ("inputs", "outputs"):
                if kwargs.get(k) is not None:
                    kwargs[k] = _clean(kwargs[k])
            if kwargs.get("error"):
                kwargs["error"] = redact_paths(str(kwargs["error"]))
        super().update_run(run_id, **kwargs)


def _mask(kwargs: dict[str, Any]) -> None:
    if kwargs.get("outputs") is not None:
        kwargs["outputs"] = dict(MASKED)
    if kwargs.get("error"):
        kwargs["error"] = MASKED_ERROR
    if kwargs.get("events"):
        kwargs["events"] = []  # streamed tokens of a device model's answer


def _scrub(extra: dict[str, Any]) -> dict[str, Any]:
    """Of a run's ``extra``: the allow-listed metadata (paths cut) and the runtime facts."""
    extra = dict(extra or {})
    meta = extra.get("metadata") or {}
    extra["metadata"] = {k: _clean(v) for k, v in meta.items() if k in METADATA_KEYS}
    extra.pop("invocation_params", None)  # a local model's constructor arguments
    if isinstance(extra.get("runtime"), dict):
        extra["runtime"] = _clean(extra["runtime"])
    return extra


def _lift(extra: dict[str, Any] | None, inputs: Any, outputs: Any) -> dict[str, Any]:
    """Non-private facts of a step into the run's metadata, before any masking: model,
    tokens and status (from the step trace), the user-state bucket (from the abstract,
    which the cloud sees anyway) and the plan's switches and weights."""
    extra = dict(extra or {})
    meta = dict(extra.get("metadata") or {})
    for payload in (inputs, outputs):
        if not isinstance(payload, dict):
            continue
        abstract = payload.get("abstract")
        state = getattr(abstract, "state", None) or (
            abstract.get("state") if isinstance(abstract, dict) else None
        )
        bucket = getattr(state, "bucket", None) or (
            state.get("bucket") if isinstance(state, dict) else None
        )
        if bucket:
            meta["bucket"] = bucket
        plan = payload.get("plan")
        if plan is not None and hasattr(plan, "model_dump"):
            plan = plan.model_dump(mode="json")
        if isinstance(plan, dict):
            meta["plan"] = {k: plan.get(k) for k in ("semantic", "sequence", "judge", "source")}
            meta["plan_weights"] = plan.get("weights")
    trace = outputs.get("trace") if isinstance(outputs, dict) else None
    for rec in trace or []:
        get = rec.get if isinstance(rec, dict) else lambda k, r=rec: getattr(r, k, None)
        for key in ("model", "tokens_in", "tokens_out", "status"):
            if get(key) not in (None, ""):
                meta[key] = get(key)
    extra["metadata"] = meta
    return extra


def run_callbacks(client: Client | None = None) -> list[Any]:
    """Callbacks for one graph run: a LangSmith tracer on a ``PrivacyClient`` when
    tracing is switched on (LangChain then adds no tracer of its own), else none."""
    if not tracing_requested():
        return []
    from langchain_core.tracers.langchain import LangChainTracer

    return [LangChainTracer(client=client or _privacy_client())]


_CLIENT: PrivacyClient | None = None


def _privacy_client() -> PrivacyClient:
    global _CLIENT
    if _CLIENT is None:
        _CLIENT = PrivacyClient()
    return _CLIENT
