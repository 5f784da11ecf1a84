"""Graph: checkpointers, SQLite on the device by default, chosen by the caller.

Knows both sides' state (the graph's). The checkpoint holds device outputs (ranking,
reply), so it lives in the device's own folder. Only cdarec's own state types may be
revived from it (an allow-list, rather than LangGraph's permissive default).
"""

from __future__ import annotations

import os
import sqlite3
import sys
from pathlib import Path

from langgraph.checkpoint.serde.jsonplus import JsonPlusSerializer
from langgraph.checkpoint.sqlite import SqliteSaver

from cdarec.contract import placement, plan, request, schemas

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
    (placement.__name__, "Placement"),
    (placement.__name__, "DeviceContext"),
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


class CheckpointError(RuntimeError):
    """The checkpoint database cannot be used; the message says what to do."""


BUSY_TIMEOUT_S = 30.0  # another process's write transaction is waited for this long


def sqlite_checkpointer(path: Path) -> SqliteSaver:
    """A SQLite checkpointer at ``path`` (one thread per chat session), owner-only
    (0600; SQLite gives its -wal and -shm files the same mode). A file that is not a
    SQLite database is a ``CheckpointError`` naming the fix, never a traceback."""
    path.parent.mkdir(parents=True, exist_ok=True)
    if not path.exists():
        os.close(os.open(path, os.O_WRONLY | os.O_CREAT, 0o600))
    conn = sqlite3.connect(str(path), check_same_thread=False, timeout=BUSY_TIMEOUT_S)
    try:
        conn.execute("PRAGMA schema_version").fetchone()
    except sqlite3.DatabaseError as err:
        conn.close()
        raise CheckpointError(
            f"the session database {path} is unreadable ({err}); move it aside (for example "
            f"`mv {path} {path}.bad`) and start again: saved sessions are lost with it, the "
            "device memory (history and feedback) is kept apart and is not affected"
        ) from err
    return SqliteSaver(conn, serde=serializer())
