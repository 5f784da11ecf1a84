"""Graph: checkpointers, SQLite on the device by default, chosen by the caller.

Knows both sides' state (the graph's). The checkpoint holds device outputs (ranking,
reply), so it lives in the device's own folder. Only cdarec's own state types may be
revived from it (an allow-list, rather than LangGraph's permissive default).
"""

from __future__ import annotations

import sqlite3
import sys
from pathlib import Path

from langgraph.checkpoint.serde.jsonplus import JsonPlusSerializer
from langgraph.checkpoint.sqlite import SqliteSaver

from cdarec.contract import plan, request, schemas

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
    (request.__name__, "Constraints"),
]

# Checkpoints written before the state's types moved to ``cdarec.contract`` name them by
# their old modules; those names still revive, as the same types, so that saved sessions
# survive the move. (The serializer imports a type by its module name; LangGraph has no
# hook to rename one, hence the aliases.)
LEGACY_MODULES = {
    "cdarec.graph.schemas": schemas,
    "cdarec.graph.plan": plan,
    "cdarec.graph.request": request,
}
for _old, _module in LEGACY_MODULES.items():
    sys.modules.setdefault(_old, _module)
LEGACY_TYPES = [
    (old, name)
    for old, module in LEGACY_MODULES.items()
    for mod, name in STATE_TYPES
    if mod == module.__name__
]


def serializer() -> JsonPlusSerializer:
    return JsonPlusSerializer(allowed_msgpack_modules=[*STATE_TYPES, *LEGACY_TYPES])


def sqlite_checkpointer(path: Path) -> SqliteSaver:
    """A SQLite checkpointer at ``path`` (one thread per chat session)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    conn = sqlite3.connect(str(path), check_same_thread=False)
    return SqliteSaver(conn, serde=serializer())
