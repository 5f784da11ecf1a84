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
