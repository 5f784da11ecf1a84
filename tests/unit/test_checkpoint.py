"""The checkpoint serializer: cdarec's state types revive as themselves, other types do
not revive as objects, and sessions saved before the state moved to ``cdarec.contract``
(their types named by the old modules) still revive."""

from __future__ import annotations

import pytest

from cdarec.contract.request import Constraints
from cdarec.contract.schemas import RankedItem
from cdarec.graph.checkpoint import serializer

ITEM = RankedItem(
    rank=1, item_id="1", label="Toy Story (1995)", genres=["Animation"], year=1995, score=1.0
)


def test_state_types_round_trip_as_themselves() -> None:
    serde = serializer()
    for value in (ITEM, Constraints(genres=["Comedy"], year_min=1990)):
        back = serde.loads_typed(serde.dumps_typed(value))
        assert type(back) is type(value) and back == value


@pytest.mark.parametrize(
    ("cls", "old"),
    [(RankedItem, "cdarec.graph.schemas"), (Constraints, "cdarec.graph.request")],
)
def test_a_session_saved_under_the_old_module_names_still_revives(
    monkeypatch: pytest.MonkeyPatch, cls: type, old: str
) -> None:
    value = ITEM if cls is RankedItem else Constraints(genres=["Drama"])
    monkeypatch.setattr(cls, "__module__", old)  # as the old code wrote it
    blob = serializer().dumps_typed(value)
    monkeypatch.undo()
    assert old.encode() in blob[1]
    back = serializer().loads_typed(blob)
    assert type(back) is cls and back == value


def test_a_type_outside_the_allow_list_does_not_revive_as_an_object() -> None:
    from pydantic import BaseModel

    class Stranger(BaseModel):
        x: int = 1

    back = serializer().loads_typed(serializer().dumps_typed(Stranger()))
    assert not isinstance(back, Stranger)


# -- the checkpointer chosen by settings --------------------------------------------------


def test_redact_hides_the_password_only() -> None:
    from cdarec.graph.checkpoint import redact

    assert redact("postgresql://u:s3cret@h:5432/db") == "postgresql://u:***@h:5432/db"
    assert redact("postgresql://h/db") == "postgresql://h/db"


def test_an_unreachable_database_is_a_clear_error() -> None:
    from cdarec.graph.checkpoint import CheckpointError, postgres_checkpointer
    from cdarec.llm.server import free_port

    url = f"postgresql://cdarec:hunter2@127.0.0.1:{free_port()}/none"
    with pytest.raises(CheckpointError) as err:
        postgres_checkpointer(url)
    msg = str(err.value)
    assert "hunter2" not in msg and "CDAREC_DATABASE_URL" in msg and "SQLite" in msg


def test_settings_choose_the_backend_and_two_processes_share_postgres_threads(
    tmp_path, postgres_url: str
) -> None:
    """The one factory: SQLite under the device folder by default, PostgreSQL with a URL;
    a thread one worker wrote is read by another worker's own pool (a separate process)."""
    import subprocess
    import sys

    from langgraph.checkpoint.postgres import PostgresSaver
    from langgraph.checkpoint.sqlite import SqliteSaver

    from cdarec.graph.checkpoint import has_sessions, open_checkpointer
    from cdarec.service.sessions import list_sessions
    from cdarec.settings import Settings

    local = Settings(home=tmp_path)
    assert not has_sessions(local)
    assert isinstance(open_checkpointer(local), SqliteSaver) and local.checkpoint_db.exists()
    shared = Settings(home=tmp_path, database_url=postgres_url)
    assert has_sessions(shared) and isinstance(open_checkpointer(shared), PostgresSaver)
    writer = f"""
from langgraph.graph import StateGraph, START, END
from typing import TypedDict
from cdarec.graph.checkpoint import open_checkpointer
from cdarec.settings import Settings
class S(TypedDict):
    request: str
    turn: int
g = StateGraph(S)
g.add_node("n", lambda s: {{"turn": s.get("turn", 0) + 1}})
g.add_edge(START, "n"); g.add_edge("n", END)
graph = g.compile(checkpointer=open_checkpointer(Settings(home={str(tmp_path)!r},
    database_url={postgres_url!r})))
graph.invoke({{"request": "a comedy"}}, {{"configurable": {{"thread_id": "w1"}},
    "metadata": {{"user_id": "196"}}}})
"""
    subprocess.run([sys.executable, "-c", writer], check=True, timeout=120)
    (info,) = list_sessions(open_checkpointer(shared), user="196")
    assert (info.thread, info.turns, info.last_request) == ("w1", 1, "a comedy")
    assert list_sessions(open_checkpointer(shared), user="someone-else") == []
