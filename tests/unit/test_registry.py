"""The resource registry is bounded: a caller cannot make one process load configuration
after configuration (each with its models)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from cdarec.contract.resources import Registry
from cdarec.settings import Settings


class Loaded:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.closed = False

    def close(self) -> None:
        self.closed = True


def test_least_recently_used_configuration_is_dropped_and_closed(tmp_path: Path) -> None:
    built: list[Any] = []

    def build(s: Settings) -> Loaded:
        built.append(Loaded(s))
        return built[-1]

    reg: Registry[Any] = Registry(build, limit=2)
    a, b, c = (Settings(home=tmp_path, seed=i) for i in range(3))
    first = reg.get(a)
    reg.get(b)
    assert reg.get(a) is first  # used again: now the newest
    reg.get(c)  # b, the least recently used, goes
    assert len(reg) == 2 and built[1].closed and not first.closed
    assert reg.get(a) is first and len(built) == 3
    # a run's own knobs (the user, sizes) share one configuration
    assert reg.get(a.model_copy(update={"user_id": "u", "judge_top": 3})).settings.user_id == "u"
    assert len(built) == 3
