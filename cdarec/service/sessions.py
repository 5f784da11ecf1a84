"""Service: chat sessions and their local traces, read back from the checkpointer.

A session is a LangGraph thread. Its checkpoints already hold everything a trace needs
(each turn's ``trace`` channel: node, side, start, end, tokens, status), so
``cdarec sessions`` and ``cdarec trace THREAD`` work without any account or server,
through the checkpointer's public API (``list``, ``get_state_history``).
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import UTC, datetime
from typing import Any

from langgraph.checkpoint.base import BaseCheckpointSaver
from pydantic import BaseModel

from cdarec.contract.schemas import StepRecord


class SessionInfo(BaseModel):
    thread: str
    user: str | None
    turns: int
    last_request: str
    updated: str  # ISO time of the newest checkpoint


class TurnTrace(BaseModel):
    turn: int
    request: str
    start: float
    wall_ms: int
    steps: list[StepRecord]


def list_sessions(saver: BaseCheckpointSaver[Any], user: str | None = None) -> list[SessionInfo]:
    """Every thread in the checkpointer, newest first (one entry per thread)."""
    seen: dict[str, SessionInfo] = {}
    for tup in saver.list(None):
        conf = tup.config.get("configurable", {})
        thread = conf.get("thread_id")
        if not thread or thread in seen or conf.get("checkpoint_ns"):
            continue
        values = tup.checkpoint.get("channel_values", {})
        owner = (tup.metadata or {}).get("user_id")
        if user is not None and owner != user:
            seen[thread] = None  # type: ignore[assignment]  # newest says: not this user's
            continue
        seen[thread] = SessionInfo(
            thread=thread,
            user=owner,
            turns=int(values.get("turn") or 0),
            last_request=str(values.get("request") or ""),
            updated=tup.checkpoint.get("ts", ""),
        )
    sessions = [s for s in seen.values() if s is not None]
    return sorted(sessions, key=lambda s: s.updated, reverse=True)


def turn_traces(snapshots: Iterable[Any]) -> list[TurnTrace]:
    """Per-turn step traces from a thread's state history (any order of snapshots).

    The ``trace`` channel keeps only the newest turn, so each turn's complete trace is the
    longest one seen among that turn's snapshots; of equally long ones the oldest is kept
    (the next turn's input checkpoint still carries the old trace beside the new request).
    """
    best: dict[int, tuple[list[StepRecord], str]] = {}
    for snap in sorted(snapshots, key=lambda s: getattr(s, "created_at", None) or ""):
        values = snap.values if hasattr(snap, "values") else snap
        steps = [s for s in values.get("trace") or [] if isinstance(s, StepRecord)]
        if not steps:
            continue
        turn = steps[0].turn
        if len(steps) > len(best.get(turn, ([], ""))[0]):
            best[turn] = (steps, str(values.get("request") or ""))
    out = []
    for turn in sorted(best):
        steps, request = best[turn]
        steps = sorted(steps, key=lambda s: s.start)
        start = steps[0].start
        wall = round((max(s.end for s in steps) - start) * 1000)
        out.append(TurnTrace(turn=turn, request=request, start=start, wall_ms=wall, steps=steps))
    return out


def iso(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).isoformat(timespec="seconds")


def thread_owner(saver: BaseCheckpointSaver[Any], thread: str) -> str | None:
    """The device user a thread belongs to (from its newest checkpoint), or None if the
    thread has no checkpoint yet."""
    tup = saver.get_tuple({"configurable": {"thread_id": thread, "checkpoint_ns": ""}})
    if tup is None:
        return None
    owner = (tup.metadata or {}).get("user_id")
    return str(owner) if owner is not None else ""
