"""Service: one chat session — the feedback grammar, a turn, and one serialisation of it.

Used by the CLI, the web app and the benchmarks alike; it imports none of them. A
session is a LangGraph thread on the device's SQLite checkpointer, for one user's device.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Callable
from typing import Any, Literal

from pydantic import BaseModel

from cdarec.contract.request import RequestError, clean_request
from cdarec.graph.runtime import get_resources
from cdarec.settings import Settings, slug
from cdarec.tracing import run_callbacks

CHAT_HELP = """Commands:
  <text>            ask for recommendations ("something like Alien but lighter")
  like N            thumbs up item N of the last list (goes into device memory)
  dislike N         thumbs down item N (never shown again; its genres weigh less)
  more like N       recommendations similar to item N
  not GENRE         avoid a genre from now on ("not Horror")
  undo              take back the last feedback
  help              this text
  quit              leave (the session resumes with --thread)"""


class ChatError(Exception):
    """A chat command that cannot be carried out (the message says why); ``code`` is the
    exit status a command line gives it."""

    def __init__(self, message: str, code: int = 1) -> None:
        super().__init__(message)
        self.code = code


_FEEDBACK = re.compile(r"^(like|dislike|more like|more)\s*#?(\d+)$", re.IGNORECASE)


class _Shown(BaseModel):
    item_id: str
    label: str


_NOT_GENRE = re.compile(r"^(?:not|no more)\s+(.+)$", re.IGNORECASE)


class ChatSession:
    """One chat session (a LangGraph thread) for one user's device."""

    def __init__(
        self,
        settings: Settings,
        thread: str | None,
        *,
        warm_up: Literal["prime", "load", "off"] = "load",
    ) -> None:
        """``warm_up``: load both sides' models in the background from now on ("load"), and
        also evaluate their fixed system prompts ("prime": for a session whose first
        message comes later, as when a person types it); "off" loads on first use."""
        from cdarec.graph.builder import build_graph
        from cdarec.graph.checkpoint import open_checkpointer

        self.settings = settings
        self.res = get_resources(settings)
        self.warming = None if warm_up == "off" else self.res.warm_up(prime=warm_up == "prime")
        self.user = settings.user_id or ""
        self.res.device_record(self.user)  # unknown user: clear error before anything runs
        self.graph = build_graph(open_checkpointer(settings))
        self.thread = thread or f"{slug(self.user, 40)}-{uuid.uuid4().hex[:8]}"
        self.notice = ""  # a one-off message for the next turn's output (model switched)
        # "more like N": the shown item the next turn is like, sent on the device-only
        # channel (``TurnInput.anchor``), never in the request the cloud reads.
        self.pending_anchor: str | None = None
        self.config = {
            "configurable": {"thread_id": self.thread},
            "metadata": {"user_id": self.user},  # lets `cdarec sessions` say whose it is
            "callbacks": run_callbacks(),  # LangSmith, device runs masked (if tracing is on)
        }

    def claim(self) -> None:
        """Write this new thread's owner to the checkpointer now, before its first turn (an
        empty input checkpoint whose metadata names the user): another process on the same
        database - a second worker of `cdarec serve --workers N` - then knows whose it is.
        A thread that already has a checkpoint is left as it is."""
        from langgraph.checkpoint.base import empty_checkpoint

        saver = self.graph.checkpointer
        config = {"configurable": {"thread_id": self.thread, "checkpoint_ns": ""}}
        if saver.get_tuple(config) is None:
            meta = {"source": "input", "step": -1, "parents": {}, "user_id": self.user}
            saver.put(config, empty_checkpoint(), meta, {})

    def ready(self) -> bool:
        """Whether the background loading is done (the next turn is then a warm one)."""
        return self.warming is None or not self.warming.is_alive()

    def last_ranking(self) -> list[Any]:
        return list(self.graph.get_state(self.config).values.get("ranking") or [])

    def item(self, n: int) -> Any:
        ranking = self.last_ranking()
        if not ranking:
            raise ChatError("there is no list yet: ask for something first", 2)
        if not 1 <= n <= len(ranking):
            raise ChatError(f"there is no item {n} in the last list (1..{len(ranking)})", 2)
        return ranking[n - 1]

    def item_by_id(self, item_id: str) -> Any:
        """An item this session has shown, in any of its lists (the web page's buttons
        name the item, not its rank: a click on an older list means that older item)."""
        for r in self.last_ranking():
            if r.item_id == item_id:
                return r
        rec = self.res.device_record(self.user)
        if item_id in rec.shown.get(self.thread, []) and item_id in self.res.dataset.item_index:
            label = self.res.dataset.item(item_id).label()
            return _Shown(item_id=item_id, label=label)
        raise ChatError(f"item {item_id!r} was not shown in this session", 2)

    def feedback_on(
        self, kind: Literal["like", "dislike", "more"], item_id: str
    ) -> tuple[str | None, str]:
        """Feedback on a shown item named by id; returns (request to run or None, message)."""
        item = self.item_by_id(item_id)
        return self._apply(kind, item)

    def _apply(self, kind: str, item: Any) -> tuple[str | None, str]:
        mem = self.res.memory
        if kind in ("more like", "more"):
            mem.add_feedback(self.user, "more_like", item_id=item.item_id, thread=self.thread)
            # The turn to run has no request: which item it is like stays on the device.
            self.pending_anchor = item.item_id
            return "", f"more like {item.label}"
        mem.add_feedback(self.user, kind, item_id=item.item_id, thread=self.thread)  # type: ignore[arg-type]
        return None, f"{kind}d {item.label} (saved on the device)"

    def feedback(self, text: str) -> tuple[str | None, str]:
        """Apply a feedback command; returns (request to run or None, message)."""
        text = text.strip()
        mem = self.res.memory
        if text.lower() == "undo":
            last = mem.undo_feedback(self.user)
            return (
                None,
                f"undone: {last.kind} {last.item_id or last.genre}" if last else "nothing to undo",
            )
        m = _FEEDBACK.match(text)
        if m:
            return self._apply(m.group(1).lower(), self.item(int(m.group(2)[:6])))
        m = _NOT_GENRE.match(text)
        if m:
            wanted = m.group(1).strip().lower()
            genre = next((g for g in self.res.dataset.genres if g.lower() == wanted), None)
            if genre is not None:  # otherwise it is a request ("not too scary please")
                mem.add_feedback(self.user, "not_genre", genre=genre, thread=self.thread)
                return None, f"will avoid {genre}"
        try:
            return clean_request(text), ""
        except RequestError as err:
            raise ChatError(str(err), 2) from err

    def turn(
        self,
        request: str,
        on_step: Callable[[Any], None] | None = None,
        on_first_items: Callable[[list[dict[str, Any]]], None] | None = None,
        *,
        anchor: str | None = None,
    ) -> dict[str, Any]:
        """Run one turn, reporting each step as it finishes and the fused list as soon as
        the device has it (before the SLM's reasons); returns the thread's state.
        ``anchor``: a shown item's id for "more like" (default, for a turn without
        request words: the one the last ``more like N`` command set)."""
        try:
            request = clean_request(request)
        except RequestError as err:
            raise ChatError(str(err), 2) from err
        if anchor is not None:
            self.item_by_id(anchor)  # only an item this session showed
        elif not request:  # a typed request is its own turn, not the click's
            anchor = self.pending_anchor
        self.pending_anchor = None
        if self.res.refresh_sequence_model():
            self.notice = "The trained SASRec is ready: the device uses it from this turn on."
        if self.res.cloud.revive_cloud_llm():
            self.notice = "The embedded cloud server had stopped; it was started again."
        for mode, chunk in self.graph.stream(
            {"request": request, "anchor": anchor},
            self.config,
            context=self.settings,
            stream_mode=["updates", "custom"],
        ):
            if mode == "custom":
                if on_first_items and isinstance(chunk, dict) and "first_items" in chunk:
                    on_first_items(chunk["first_items"])
                continue
            for values in chunk.values():
                if on_step and isinstance(values, dict):
                    for rec in values.get("trace", []):
                        on_step(rec)
        return dict(self.graph.get_state(self.config).values)


def turn_warnings(values: dict[str, Any]) -> list[str]:
    """What went wrong in a turn that still answered: fallbacks, with what to do."""
    out = []
    for r in values.get("trace") or []:
        if r.status != "fallback":
            continue
        hint = ""
        if "model call failed" in r.detail or "model call skipped" in r.detail:
            hint = (
                " - check that the endpoint is up (OPENAI_BASE_URL / OLLAMA_HOST) or "
                "choose another model with --cloud-model / --device-model"
            )
        out.append(f"{r.node} ({r.side}) used its fallback: {r.detail}{hint}")
    return out


def turn_result(session: ChatSession, values: dict[str, Any]) -> dict[str, Any]:
    """One turn as plain JSON data: what `cdarec chat --json` prints and the web page
    receives (one serialisation for both)."""

    def dump(v: Any) -> Any:
        return v.model_dump(mode="json") if hasattr(v, "model_dump") else v

    return {
        "thread": session.thread,
        "user": session.user,
        "turn": values.get("turn"),
        "request": values.get("request"),
        "abstract": dump(values.get("abstract")),
        "plan": dump(values.get("plan")),
        "constraints": dump(values.get("constraints")),
        "bound": dump(values.get("bound")),
        "notes": list(values.get("notes") or []),
        "reply": values.get("reply") or "",
        "steps": [dump(st) for st in values["plan"].steps()] if values.get("plan") else [],
        "ranking": [dump(r) for r in values.get("ranking") or []],
        "trace": [{**dump(r), "ms": r.ms} for r in values.get("trace") or []],
        "warnings": turn_warnings(values),
    }
