"""Graph: checkpointers, SQLite on the device by default, chosen by the caller.

Knows both sides' state (the graph's). The checkpoint holds device outputs (ranking,
reply), so it lives in the device's own folder — or, with ``database_url``, in a
PostgreSQL server that the device side's workers share (several ``cdarec serve``
processes continuing each other's threads); that database belongs with the device side,
never the cloud's (README, "Where things live"). Only cdarec's own state types may be
revived from either (an allow-list, rather than LangGraph's permissive default).

``open_checkpointer(settings)`` is the one way every caller (CLI, web app, tests) gets one.
"""

from __future__ import annotations

import os
import sqlite3
import sys
import threading
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit, urlunsplit

from langgraph.checkpoint.serde.jsonplus import JsonPlusSerializer
from langgraph.checkpoint.sqlite import SqliteSaver

from cdarec.contract import judgement, placement, plan, request, schemas

if TYPE_CHECKING:
    from langgraph.checkpoint.base import BaseCheckpointSaver

    from cdarec.settings import Settings

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
    (judgement.__name__, "CloudJudgement"),
    (judgement.__name__, "Pick"),
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


# -- PostgreSQL --------------------------------------------------------------------------
PG_POOL_MAX = 8  # connections per process; the saver itself serialises its cursors
PG_CONNECT_TIMEOUT_S = 10
_pg_savers: dict[str, Any] = {}
_pg_lock = threading.Lock()


def redact(url: str) -> str:
    """``url`` without its password, for messages and logs."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = parts.netloc.rsplit("@", 1)[-1]
    user = parts.username or ""
    return urlunsplit(parts._replace(netloc=f"{user}:***@{netloc}"))


def postgres_checkpointer(url: str) -> Any:
    """A PostgreSQL checkpointer (langgraph-checkpoint-postgres) on a pool of connections,
    one per process and URL; its tables are created or migrated once, under an advisory
    lock so that workers starting together do not race on the migrations. A server that
    cannot be reached is a ``CheckpointError`` naming the fix."""
    with _pg_lock:
        saver = _pg_savers.get(url)
        if saver is not None:
            return saver
        import psycopg
        from langgraph.checkpoint.postgres import PostgresSaver
        from psycopg.rows import dict_row
        from psycopg_pool import ConnectionPool

        kwargs = {"autocommit": True, "prepare_threshold": 0, "row_factory": dict_row}
        try:
            with psycopg.connect(url, connect_timeout=PG_CONNECT_TIMEOUT_S, **kwargs) as conn:
                conn.execute("SELECT pg_advisory_lock(hashtext('cdarec-checkpoint-setup'))")
                PostgresSaver(conn, serde=serializer()).setup()  # released on close
        except psycopg.Error as err:
            raise CheckpointError(
                f"the session database {redact(url)} cannot be used ({str(err).strip()}); "
                "start the server or fix CDAREC_DATABASE_URL — or unset it to keep sessions "
                "in the device's own SQLite file"
            ) from err
        pool = ConnectionPool(
            url,
            min_size=1,
            max_size=PG_POOL_MAX,
            kwargs={**kwargs, "connect_timeout": PG_CONNECT_TIMEOUT_S},
            open=True,
            name="cdarec-checkpoints",
        )
        saver = PostgresSaver(pool, serde=serializer())
        _pg_savers[url] = saver
        return saver


def close_postgres(url: str | None = None) -> None:
    """Close the pool of ``url`` (None: every pool this process opened)."""
    with _pg_lock:
        for key in [url] if url else list(_pg_savers):
            saver = _pg_savers.pop(key, None)
            if saver is not None:
                saver.conn.close()


def open_checkpointer(settings: Settings) -> BaseCheckpointSaver[Any]:
    """The checkpointer ``settings`` name: PostgreSQL at ``database_url``, else the
    device's SQLite file."""
    if settings.database_url:
        return postgres_checkpointer(settings.database_url)
    return sqlite_checkpointer(settings.checkpoint_db)


def has_sessions(settings: Settings) -> bool:
    """Whether any session may exist yet (no SQLite file: none; a server: ask it)."""
    return bool(settings.database_url) or settings.checkpoint_db.exists()


def where_sessions(settings: Settings) -> str:
    """Where the sessions are kept, for messages (a server's URL without its password)."""
    return redact(settings.database_url) if settings.database_url else str(settings.checkpoint_db)
