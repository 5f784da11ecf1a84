"""Service: the LangGraph server's ``auth`` (``langgraph.json``), LangGraph's own custom
authentication.

- Authentication: ``Authorization: Bearer <token>``, a token from `cdarec access token
  --user U` in the server's home (``CDAREC_HOME``); the identity is that device user.
- Authorization: every thread, run and cron is stamped with its owner and visible only to
  them (the metadata filter LangGraph applies on read and search); the graph's
  assistants are readable by any signed-in caller and changed by none.
- A run's context: only ``ServerContext``'s bounded fields pass, and ``user_id`` is the
  caller's identity whatever the caller sent; the home, data set and model files are
  the server's own settings.
"""

from __future__ import annotations

from typing import Any

from langgraph_sdk import Auth
from pydantic import ValidationError

from cdarec.service.access import Access, AccessError
from cdarec.settings import SERVER_CONTEXT_FIELDS, ServerContext, Settings

auth = Auth()


@auth.authenticate
async def authenticate(authorization: str | None) -> Auth.types.MinimalUserDict:
    scheme, _, token = (authorization or "").partition(" ")
    try:
        user = (
            Access(Settings().home).user_of_token(token.strip())
            if scheme.lower() == "bearer"
            else None
        )
    except AccessError as err:  # an unreadable credentials file: say how to fix it
        raise Auth.exceptions.HTTPException(status_code=503, detail=str(err)) from err
    if user is None:
        raise Auth.exceptions.HTTPException(
            status_code=401,
            detail="send Authorization: Bearer <token>; create one with "
            "`cdarec access token --user ID` on the server's home",
        )
    return {"identity": user}


def server_context(context: dict[str, Any] | None, user: str) -> dict[str, Any]:
    """The context a run gets: the caller's bounded fields (others are refused), the user
    from auth."""
    given = dict(context or {})
    unknown = sorted(k for k in given if k not in SERVER_CONTEXT_FIELDS)
    if unknown:
        raise Auth.exceptions.HTTPException(
            status_code=422,
            detail=f"context fields {unknown} are the server's own settings; a run may set "
            f"only {list(SERVER_CONTEXT_FIELDS[1:])}",
        )
    given["user_id"] = user
    try:
        return ServerContext(**given).model_dump(exclude_unset=True)
    except ValidationError as err:
        raise Auth.exceptions.HTTPException(status_code=422, detail=str(err)) from err


@auth.on.threads.create_run
async def on_run(ctx: Auth.types.AuthContext, value: Auth.types.RunsCreate) -> dict[str, str]:
    owner = {"owner": ctx.user.identity}
    value.setdefault("metadata", {}).update(owner)  # type: ignore[union-attr]
    kwargs = value.get("kwargs") or {}
    kwargs["context"] = server_context(kwargs.get("context"), ctx.user.identity)
    return owner


@auth.on.store
async def on_store(ctx: Auth.types.AuthContext, value: Any) -> None:
    raise Auth.exceptions.HTTPException(status_code=403, detail="the graph uses no store")


@auth.on.assistants
async def on_assistants(ctx: Auth.types.AuthContext, value: Any) -> None:
    if ctx.action not in ("read", "search"):
        raise Auth.exceptions.HTTPException(
            status_code=403, detail="the graph's assistants are the server's own"
        )


@auth.on
async def owner_only(ctx: Auth.types.AuthContext, value: Any) -> dict[str, str]:
    """Threads, runs, crons and the store: stamped with the owner on create, filtered by
    it on every read, search, update and delete."""
    owner = {"owner": ctx.user.identity}
    if isinstance(value, dict) and ctx.action in ("create", "update"):
        if value.get("metadata") is None:
            value["metadata"] = {}
        value["metadata"].update(owner)  # in place: the server holds this very dict
    return owner
