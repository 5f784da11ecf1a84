"""Checkpointers: SQLite on the device by default, chosen by the caller.

The checkpoint holds device outputs (ranking, reply), so it lives in the device's own
folder. Only cdarec's own state types may be revived from it (an allow-list, rather
than LangGraph's permissive default).
"""

from __future__ import annotations

import sqlite3
from pathlib import Path

from langgraph.checkpoint.serde.jsonplus import JsonPlusSerializer
from langgraph.checkpoint.sqlite import SqliteSaver

from cdarec.graph import plan, schemas

STATE_TYPES = [
    (schemas.__name__, "UserAbstract"),
    (schemas.__name__, "UserState"),
    (schemas.__name__, "Candidate"),
    (schemas.__name__, "Proposal"),
    (schemas.__name__, "RankedItem"),
    (schemas.__name__, "StepRecord"),
    (schemas.__name__, "Intent"),
    (plan.__name__, "Plan"),
    (plan.__name__, "Retrieval"),
    (plan.__name__, "Weights"),
]


def serializer() -> JsonPlusSerializer:
    return JsonPlusSerializer(allowed_msgpack_modules=STATE_TYPES)


def sqlite_checkpointer(path: Path) -> SqliteSaver:
    """A SQLite checkpointer at ``path`` (one thread per chat session)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    conn = sqlite3.connect(str(path), check_same_thread=False)
    return SqliteSaver(conn, serde=serializer())
