"""Web: `cdarec serve`, the chat in a browser (an interface over the chat service).

Stack: FastAPI (Starlette, like the LangGraph server itself) serving one static page
with plain JavaScript, and server-sent events for the live step trace. No front-end
build step, no Node toolchain: a LangGraph developer can read all of it in minutes, and
it runs the very same graph, settings and device memory as the terminal chat
(``ChatSession``), in the same process as the models.

API (JSON):
  GET  /api/users                       device users to act as
  GET  /api/sessions?user=U             that user's sessions (threads)
  POST /api/sessions {user}             a new session -> {thread}
  POST /api/sessions/{thread}/turn      {user, message} -> text/event-stream:
                                        'step' per finished node, 'first_items' (the fused
                                        list, before the device SLM's reasons), then
                                        'result' or 'error'
  POST /api/sessions/{thread}/feedback  {user, kind: like|dislike|more, n} -> {message,
                                        request}: 'more' returns the request to run next
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from importlib import resources
from typing import Any, Literal

from fastapi import FastAPI, HTTPException
from fastapi.responses import HTMLResponse, StreamingResponse
from pydantic import BaseModel, Field

from cdarec.graph.checkpoint import sqlite_checkpointer
from cdarec.graph.runtime import UserNotFoundError, get_resources
from cdarec.service.chat import ChatError, ChatSession, turn_result
from cdarec.service.sessions import list_sessions
from cdarec.settings import Settings


class NewSession(BaseModel):
    user: str = Field(min_length=1, max_length=100)


class TurnRequest(BaseModel):
    user: str = Field(min_length=1, max_length=100)
    message: str = Field(default="", max_length=1000)


class FeedbackRequest(BaseModel):
    user: str = Field(min_length=1, max_length=100)
    kind: Literal["like", "dislike", "more"]
    n: int = Field(ge=1, le=50)


def _sse(event: str, data: Any) -> str:
    return f"event: {event}\ndata: {json.dumps(data)}\n\n"


def create_app(settings: Settings) -> FastAPI:

    app = FastAPI(title="cdarec", description="Cloud-device collaborative recommender chat")
    sessions: dict[str, Any] = {}
    lock = threading.Lock()

    def session(user: str, thread: str | None) -> Any:
        key = f"{user}\x00{thread}"
        with lock:
            if thread is None or key not in sessions:
                try:
                    s = ChatSession(  # the person types the first message: prime meanwhile
                        settings.model_copy(update={"user_id": user}), thread, warm_up="prime"
                    )
                except UserNotFoundError as err:
                    raise HTTPException(404, str(err)) from err
                sessions[f"{user}\x00{s.thread}"] = s
                return s
            return sessions[key]

    @app.get("/", response_class=HTMLResponse)
    def index() -> str:
        return resources.files("cdarec.web").joinpath("index.html").read_text("utf-8")

    @app.get("/api/users")
    def users(limit: int = 20) -> dict[str, Any]:
        res = get_resources(settings)
        ds = res.dataset
        on_device = res.memory.users()
        first = [settings.user_id] if settings.user_id else []
        listed = list(dict.fromkeys([*first, *on_device, *ds.users[:limit]]))
        return {"dataset": ds.name, "users": listed, "default": settings.user_id or listed[0]}

    @app.get("/api/sessions")
    def sessions_of(user: str) -> list[dict[str, Any]]:
        if not settings.checkpoint_db.exists():
            return []
        saver = sqlite_checkpointer(settings.checkpoint_db)
        return [s.model_dump() for s in list_sessions(saver, user=user)]

    @app.post("/api/sessions")
    def new_session(body: NewSession) -> dict[str, str]:
        return {"thread": session(body.user, None).thread}

    @app.post("/api/sessions/{thread}/turn")
    def turn(thread: str, body: TurnRequest) -> StreamingResponse:
        chat = session(body.user, thread)

        def events() -> Iterator[str]:
            steps: list[Any] = []
            done = threading.Event()
            result: dict[str, Any] = {}

            def run() -> None:
                try:
                    result["values"] = chat.turn(
                        body.message, steps.append, lambda items: steps.append(items)
                    )
                except Exception as err:  # shown to the user, never swallowed silently
                    result["error"] = f"{type(err).__name__}: {err}"
                finally:
                    done.set()

            threading.Thread(target=run, daemon=True).start()
            sent = 0
            while not done.wait(0.05) or sent < len(steps):
                while sent < len(steps):
                    rec = steps[sent]
                    sent += 1
                    if isinstance(rec, list):  # the fused list, before the SLM's reasons
                        yield _sse("first_items", {"items": rec})
                    else:
                        yield _sse("step", {**rec.model_dump(mode="json"), "ms": rec.ms})
            if "error" in result:
                yield _sse("error", {"message": result["error"]})
                return
            yield _sse("result", turn_result(chat, result["values"]))

        return StreamingResponse(events(), media_type="text/event-stream")

    @app.post("/api/sessions/{thread}/feedback")
    def feedback(thread: str, body: FeedbackRequest) -> dict[str, Any]:
        chat = session(body.user, thread)
        command = {"like": "like", "dislike": "dislike", "more": "more like"}[body.kind]
        try:
            request, message = chat.feedback(f"{command} {body.n}")
        except ChatError as err:
            raise HTTPException(400, str(err)) from err
        return {"message": message, "request": request}

    return app


def serve(settings: Settings, host: str, port: int) -> None:
    import uvicorn

    _ = get_resources(settings).dataset  # fail early on a bad data set, before the server starts
    uvicorn.run(create_app(settings), host=host, port=port, log_level="warning")
