"""Web: `cdarec serve`, the chat in a browser (an interface over the chat service).

Stack: FastAPI (Starlette, like the LangGraph server itself) serving one static page
with plain JavaScript, and server-sent events for the live step trace. No front-end
build step, no Node toolchain: a LangGraph developer can read all of it in minutes, and
it runs the very same graph, settings and device memory as the terminal chat
(``ChatSession``), in the same process as the models.

Access. Every API call acts as one signed-in device user, never as a user the caller
names. A browser signs in with the one-off link the server prints at start (bound to
``--user``) or with a password (`cdarec access password`), and then holds an HttpOnly,
SameSite=Strict session cookie; every POST it makes also carries the session's CSRF
token in ``X-CSRF-Token`` (and a cross-site ``Origin`` is refused). A program sends
``Authorization: Bearer <token>`` (`cdarec access token`) and needs no CSRF token (it
holds no cookie). Host headers other than the bound name are refused (DNS rebinding).
A thread belongs to the user whose session created it; another user's thread is "not
found", whether or not it exists.

API (JSON):
  GET  /healthz                         public: {"ok": true}
  GET  /signin?token=T                  the printed link: sets the cookie, back to /
  POST /api/signin {user, password}     -> {user, csrf} and the cookie
  POST /api/signout
  GET  /api/me                          -> {user, csrf, dataset} (401 when signed out)
  GET  /api/sessions                    this user's sessions (threads)
  POST /api/sessions                    a new session -> {thread}
  POST /api/sessions/{thread}/turn      {message} -> text/event-stream: 'step' per
                                        finished node, 'first_items' (the fused list,
                                        before the device SLM's reasons), then 'result'
                                        or 'error'
  POST /api/sessions/{thread}/feedback  {kind: like|dislike|more, item_id} -> {message,
                                        request}: 'more' returns the request to run next
"""

from __future__ import annotations

import ipaddress
import json
import logging
import threading
import time
from collections import OrderedDict
from collections.abc import Iterator
from dataclasses import dataclass, field
from importlib import resources
from typing import Annotated, Any, Literal

from fastapi import Depends, FastAPI, HTTPException, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse, StreamingResponse
from pydantic import BaseModel, Field
from starlette.middleware.trustedhost import TrustedHostMiddleware

from cdarec.contract.request import MAX_REQUEST_CHARS
from cdarec.graph.checkpoint import CheckpointError, has_sessions, open_checkpointer
from cdarec.graph.runtime import UserNotFoundError, get_resources
from cdarec.service.access import (
    Access,
    AccessError,
    BrowserSessions,
    one_off_token,
    same_secret,
)
from cdarec.service.chat import ChatError, ChatSession, turn_result
from cdarec.service.sessions import list_sessions, thread_owner
from cdarec.settings import Settings

log = logging.getLogger(__name__)

COOKIE = "cdarec_session"
MAX_CHATS = 64  # live chat sessions kept in memory (least recently used dropped first)
MAX_SIGNINS = 256
MAX_FAILURES, FAILURE_WINDOW_S = 5, 300.0  # wrong passwords per user, then a pause


class SignIn(BaseModel):
    user: str = Field(min_length=1, max_length=100)
    password: str = Field(min_length=1, max_length=200)


class TurnRequest(BaseModel):
    # A little over the request bound: the service says "too long" in words, not a 422.
    message: str = Field(default="", max_length=4 * MAX_REQUEST_CHARS)
    # "more like this": the shown item's id (from the feedback reply), kept on the device.
    anchor: str | None = Field(default=None, min_length=1, max_length=200)


class FeedbackRequest(BaseModel):
    kind: Literal["like", "dislike", "more"]
    item_id: str = Field(min_length=1, max_length=200)


@dataclass
class Identity:
    user: str
    csrf: str = ""  # empty for a bearer token (no cookie: nothing to forge)
    via: Literal["cookie", "token"] = "cookie"


@dataclass
class WebAccess:
    """Who may sign in, and the signed-in browser sessions (``BrowserSessions``: a file of
    the home, shared by the workers of one server; `cdarec serve` clears it at start, so
    a restart signs everyone out, the safe default for a device-local server)."""

    access: Access
    signin_user: str
    signin_token: str = field(default_factory=one_off_token)
    lock: threading.Lock = field(default_factory=threading.Lock)
    failures: dict[str, list[float]] = field(default_factory=dict)  # user -> failed tries

    def throttled(self, user: str) -> float:
        """Seconds until ``user`` may try a password again (0: now): after
        ``MAX_FAILURES`` wrong passwords within ``FAILURE_WINDOW_S``, one window."""
        now = time.monotonic()
        with self.lock:
            recent = [t for t in self.failures.get(user, []) if now - t < FAILURE_WINDOW_S]
            self.failures[user] = recent
            if len(recent) < MAX_FAILURES:
                return 0.0
            return FAILURE_WINDOW_S - (now - recent[0])

    def failed(self, user: str) -> None:
        with self.lock:
            self.failures.setdefault(user, []).append(time.monotonic())
            while len(self.failures) > MAX_SIGNINS:  # bounded, whoever is tried
                self.failures.pop(next(iter(self.failures)))

    def __post_init__(self) -> None:
        self.sessions = BrowserSessions(self.access)

    def open(self, user: str) -> tuple[str, Identity]:
        sid, csrf = self.sessions.open(user)
        return sid, Identity(user, csrf=csrf)

    def of_cookie(self, sid: str) -> Identity | None:
        found = self.sessions.get(sid)
        return None if found is None else Identity(found.user, csrf=found.csrf)

    def close(self, sid: str) -> None:
        self.sessions.close(sid)


def _sse(event: str, data: Any) -> str:
    return f"event: {event}\ndata: {json.dumps(data)}\n\n"


def allowed_hosts(host: str) -> list[str]:
    """Host headers the server answers to: the loopback names, or the address it is bound
    to; bound to every interface, any (the caller has said --allow-remote)."""
    if host in ("0.0.0.0", "::"):
        return ["*"]
    names = {"127.0.0.1", "localhost", "::1", "[::1]", host}
    return sorted(names)


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def identity(request: Request) -> Identity:
    """The signed-in user of a request (a FastAPI dependency of every API route)."""
    web: WebAccess = request.app.state.web
    auth = request.headers.get("authorization", "")
    if auth.lower().startswith("bearer "):
        try:
            user = web.access.user_of_token(auth[7:].strip())
        except AccessError as err:  # the credentials file is unreadable: say how to fix it
            raise HTTPException(503, str(err)) from err
        if user is None:
            raise HTTPException(401, "the API token is not valid: `cdarec access token`")
        return Identity(user, via="token")
    ident = web.of_cookie(request.cookies.get(COOKIE, ""))
    if ident is None:
        raise HTTPException(401, "not signed in: open the link `cdarec serve` printed, or sign in")
    if request.method not in ("GET", "HEAD", "OPTIONS"):
        origin = request.headers.get("origin")
        if origin and origin.split("://", 1)[-1] != request.headers.get("host"):
            raise HTTPException(403, "a request from another site was refused")
        if not same_secret(request.headers.get("x-csrf-token", ""), ident.csrf):
            raise HTTPException(403, "missing or wrong CSRF token: reload the page")
    return ident


Me = Annotated[Identity, Depends(identity)]


def create_app(
    settings: Settings,
    *,
    host: str = "127.0.0.1",
    signin_user: str | None = None,
    signin_token: str | None = None,
) -> FastAPI:
    """The app. ``signin_user``: whom the printed one-off link signs in (default: the
    settings' user); ``signin_token``: that link's secret (default: a new random one,
    then in ``app.state.signin_token``)."""
    app = FastAPI(title="cdarec", description="Cloud-device collaborative recommender chat")
    app.add_middleware(TrustedHostMiddleware, allowed_hosts=allowed_hosts(host))
    res = get_resources(settings)
    first = settings.user_id or (res.dataset.users[0] if res.dataset.users else "")
    web = WebAccess(Access(settings.home), signin_user or first)
    if signin_token:
        web.signin_token = signin_token
    app.state.settings = settings
    app.state.web = web
    app.state.signin_token = web.signin_token
    app.state.signin_user = web.signin_user
    chats: OrderedDict[str, ChatSession] = OrderedDict()
    chats_lock = threading.Lock()
    opened: list[Any] = []  # the app's one checkpointer, opened once sessions exist

    def checkpoints() -> Any:
        """The sessions' checkpointer, or None while none can exist (no SQLite file yet)."""
        with chats_lock:
            if not opened and has_sessions(settings):
                opened.append(open_checkpointer(settings))
            return opened[0] if opened else None

    def chat_for(user: str, thread: str | None) -> ChatSession:
        """This user's chat session on ``thread`` (None: a new thread). Another user's
        thread is 404, exactly like one that does not exist."""
        with chats_lock:
            if thread is not None and thread in chats:
                chat = chats[thread]
                if chat.user != user:
                    raise HTTPException(404, "no such session")
                chats.move_to_end(thread)
                return chat
        if thread is not None:
            saver = checkpoints()
            owner = thread_owner(saver, thread) if saver is not None else None
            if owner != user:
                raise HTTPException(404, "no such session")
        try:
            chat = ChatSession(  # the person types the first message: prime meanwhile
                settings.model_copy(update={"user_id": user}), thread, warm_up="prime"
            )
        except UserNotFoundError as err:
            raise HTTPException(404, str(err)) from err
        with chats_lock:
            chats[chat.thread] = chat
            while len(chats) > MAX_CHATS:
                chats.popitem(last=False)  # its thread stays in the checkpointer
        return chat

    @app.exception_handler(CheckpointError)
    async def sessions_unavailable(request: Request, exc: CheckpointError) -> JSONResponse:
        # the session database is unreadable or its server is down: say so and how to fix it
        return JSONResponse({"detail": str(exc)}, status_code=503)

    @app.exception_handler(RequestValidationError)
    async def invalid_request(request: Request, exc: RequestValidationError) -> JSONResponse:
        # FastAPI's own handler echoes the input, and a lone surrogate in it (valid JSON
        # escape, invalid UTF-8) crashed the error response itself: say what, not echo.
        detail = [
            {"loc": list(e.get("loc", ())), "msg": str(e.get("msg", "")), "type": e.get("type")}
            for e in exc.errors()
        ]
        return JSONResponse({"detail": detail}, status_code=422)

    @app.get("/", response_class=HTMLResponse)
    def index() -> str:
        return resources.files("cdarec.web").joinpath("index.html").read_text("utf-8")

    @app.get("/healthz")
    def healthz() -> dict[str, bool]:
        return {"ok": True}

    def signed_in(user: str) -> JSONResponse:
        sid, ident = web.open(user)
        resp = JSONResponse({"user": user, "csrf": ident.csrf})
        resp.set_cookie(COOKIE, sid, httponly=True, samesite="strict", path="/")
        return resp

    @app.get("/signin")
    def signin_link(token: str = "") -> Any:
        if not token or not same_secret(token, web.signin_token):
            raise HTTPException(401, "this sign-in link is not valid: use the one printed at start")
        sid, _ = web.open(web.signin_user)
        resp = RedirectResponse("/", status_code=303)
        resp.set_cookie(COOKIE, sid, httponly=True, samesite="strict", path="/")
        return resp

    @app.post("/api/signin")
    def signin(body: SignIn, request: Request) -> JSONResponse:
        origin = request.headers.get("origin")
        if origin and origin.split("://", 1)[-1] != request.headers.get("host"):
            raise HTTPException(403, "a sign-in from another site was refused")  # login CSRF
        wait = web.throttled(body.user)
        if wait > 0:
            raise HTTPException(
                429, f"too many wrong passwords for this user; try again in {wait:.0f} s"
            )
        try:
            good = web.access.check_password(body.user, body.password)
        except AccessError as err:
            raise HTTPException(503, str(err)) from err
        if not good:
            web.failed(body.user)
            raise HTTPException(401, "wrong user or password")
        return signed_in(body.user)

    @app.post("/api/signout")
    def signout(request: Request, ident: Me) -> JSONResponse:
        web.close(request.cookies.get(COOKIE, ""))
        resp = JSONResponse({"signed_out": ident.user})
        resp.delete_cookie(COOKIE, path="/")
        return resp

    @app.get("/api/me")
    def me(ident: Me) -> dict[str, Any]:
        return {"user": ident.user, "csrf": ident.csrf, "dataset": res.dataset.name}

    @app.get("/api/sessions")
    def sessions_of(ident: Me) -> list[dict[str, Any]]:
        saver = checkpoints()
        if saver is None:
            return []
        return [s.model_dump() for s in list_sessions(saver, user=ident.user)]

    @app.post("/api/sessions")
    def new_session(ident: Me) -> dict[str, str]:
        chat = chat_for(ident.user, None)
        chat.claim()  # its owner on record: any worker of this server may take its turns
        return {"thread": chat.thread}

    @app.post("/api/sessions/{thread}/turn")
    def turn(thread: str, body: TurnRequest, ident: Me) -> StreamingResponse:
        chat = chat_for(ident.user, thread)

        def events() -> Iterator[str]:
            steps: list[Any] = []
            done = threading.Event()
            result: dict[str, Any] = {}

            def run() -> None:
                try:
                    result["values"] = chat.turn(
                        body.message,
                        steps.append,
                        lambda items: steps.append(items),
                        anchor=body.anchor,
                    )
                except ChatError as err:
                    result["error"] = str(err)
                except Exception as err:  # shown to the user, never swallowed silently
                    log.exception("turn failed")
                    result["error"] = (
                        f"the turn failed ({type(err).__name__}: {err}); the session and "
                        "your feedback are saved - try again"
                    )
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
    def feedback(thread: str, body: FeedbackRequest, ident: Me) -> dict[str, Any]:
        chat = chat_for(ident.user, thread)
        try:
            request, message = chat.feedback_on(body.kind, body.item_id)
        except ChatError as err:
            raise HTTPException(400, str(err)) from err
        # A "more like" turn to run next: no request words, the item on the device channel.
        anchor = body.item_id if body.kind == "more" else None
        return {"message": message, "request": request, "anchor": anchor}

    return app


# How the workers of `cdarec serve --workers N` learn what the parent chose (uvicorn
# spawns them and imports the app by name: its factory has no arguments).
WORKER_ENV = "CDAREC_SERVE_WORKER"


def worker_app() -> FastAPI:
    """The app of one worker of `cdarec serve --workers N` (uvicorn's factory, in a spawned
    process): the parent's settings, bound address, sign-in user and one-off link."""
    import os

    conf = json.loads(os.environ[WORKER_ENV])
    return create_app(
        Settings(**conf["settings"]),
        host=conf["host"],
        signin_user=conf["user"],
        signin_token=conf["token"],
    )


def serve(
    settings: Settings,
    host: str,
    port: int,
    *,
    user: str | None = None,
    announce: Any = print,
    workers: int = 1,
) -> None:
    """Serve the chat. ``workers`` > 1: that many processes behind the one port (uvicorn's
    workers; a worker that dies is started again). They share what lives in files and in
    the session database: credentials, browser sessions, device memory, threads - with
    PostgreSQL (``database_url``) or SQLite. Each worker loads its own device model and,
    for an ``embedded:`` cloud model, its own cloud server: point many workers at one
    OpenAI-compatible endpoint instead."""
    import os

    import uvicorn

    app = create_app(settings, host=host, signin_user=user)  # fails early on a bad data set
    BrowserSessions(app.state.web.access).clear()  # a restart signs everyone out
    shown = "127.0.0.1" if host in ("0.0.0.0", "::") else host
    announce(
        f"cdarec chat for user {app.state.signin_user}: open "
        f"http://{shown}:{port}/signin?token={app.state.signin_token}  (Ctrl-C stops it)"
    )
    if workers <= 1:
        uvicorn.run(app, host=host, port=port, log_level="warning")
        return
    os.environ[WORKER_ENV] = json.dumps(
        {
            "settings": settings.model_dump(mode="json"),
            "host": host,
            "user": app.state.signin_user,
            "token": app.state.signin_token,
        }
    )
    del app
    uvicorn.run(
        "cdarec.web.server:worker_app",
        factory=True,
        workers=workers,
        host=host,
        port=port,
        log_level="warning",
    )
