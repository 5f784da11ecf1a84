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


def _side(kwargs: dict[str, Any]) -> str | None:
    meta = (kwargs.get("extra") or {}).get("metadata") or {}
    side = meta.get("side")
    return str(side) if side in ("cloud", "device") else None


class PrivacyClient(Client):
    """A LangSmith client that masks every run not known to be cloud-side.

    Node runs carry ``metadata.side`` (set on the graph's nodes; LangChain passes it on
    to their child runs: the LLM and tool calls inside a node). Runs on the cloud side
    are uploaded as they are: by the state's types they hold no history. Every other run
    (device nodes, the device SLM's prompts, the graph's root whose output is the
    ranking) is uploaded with its inputs and outputs replaced by ``MASKED``, while its
    name, timing, tags (``side:cloud`` / ``side:device``) and metadata (model, tokens,
    status, lifted from the step trace before masking) still complete the run tree.

    Masking happens in ``create_run``/``update_run``, the two calls every LangChain
    tracer makes, so nothing reaches the transport unmasked.
    """

    def __init__(self, **kwargs: Any) -> None:
        kwargs.setdefault("hide_inputs", False)  # this class decides, not the env switch
        kwargs.setdefault("hide_outputs", False)
        super().__init__(**kwargs)
        self._private: set[str] = set()
        self._private_lock = threading.Lock()

    def create_run(self, name: str, inputs: dict[str, Any], run_type: Any, **kwargs: Any) -> None:
        side = _side(kwargs)
        if side:
            kwargs["tags"] = sorted({*(kwargs.get("tags") or []), f"side:{side}"})
        kwargs["extra"] = _lift(kwargs.get("extra"), inputs, kwargs.get("outputs"))
        if side != "cloud":
            with self._private_lock:
                self._private.add(str(kwargs.get("id")))
            inputs = dict(MASKED)
            if kwargs.get("outputs") is not None:
                kwargs["outputs"] = dict(MASKED)
        super().create_run(name, inputs, run_type, **kwargs)

    def update_run(self, run_id: Any, **kwargs: Any) -> None:
        with self._private_lock:
            private = str(run_id) in self._private
        if kwargs.get("outputs") is not None:
            kwargs["extra"] = _lift(kwargs.get("extra"), kwargs.get("inputs"), kwargs["outputs"])
        if private:
            if kwargs.get("inputs") is not None:
                kwargs["inputs"] = dict(MASKED)
            if kwargs.get("outputs") is not None:
                kwargs["outputs"] = dict(MASKED)
        super().update_run(run_id, **kwargs)


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
