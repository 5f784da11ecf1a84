"""LangSmith safety: nothing history-derived may be uploaded.

Device runs (and the graph's final output, whose reasons may name watched films) carry
private data. Until runs are masked selectively by side, cdarec makes LangSmith hide
every run's inputs and outputs whenever tracing is switched on: the run tree, names,
timings and metadata still arrive, payloads do not. This is forced, not defaulted, so
that a stray ``LANGSMITH_HIDE_INPUTS=false`` cannot leak a history.
"""

from __future__ import annotations

import logging
import os

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
