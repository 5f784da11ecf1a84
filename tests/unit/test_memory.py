from __future__ import annotations

from pathlib import Path

import pytest

from cdarec.device.memory import (
    DeviceMemory,
    DeviceMemoryError,
    Interaction,
    UnknownUserError,
)


def mem(tmp_path: Path) -> DeviceMemory:
    return DeviceMemory(tmp_path / "device", "ml-100k")


def seeded(tmp_path: Path) -> DeviceMemory:
    m = mem(tmp_path)
    m.seed("u1", [Interaction(item_id="a", ts=1.0), Interaction(item_id="b", ts=2.0)])
    return m


def test_unknown_user(tmp_path: Path) -> None:
    with pytest.raises(UnknownUserError):
        mem(tmp_path).load("nobody")


def test_feedback_is_saved_and_undoable(tmp_path: Path) -> None:
    m = seeded(tmp_path)
    m.add_feedback("u1", "like", item_id="c")
    m.add_feedback("u1", "dislike", item_id="d")
    rec = DeviceMemory(tmp_path / "device", "ml-100k").load("u1")  # a fresh reader sees it
    assert rec.history_ids() == ["a", "b", "c"] and rec.disliked() == {"d"}
    assert m.undo_feedback("u1").kind == "dislike"
    assert m.undo_feedback("u1").kind == "like"
    assert m.load("u1").history_ids() == ["a", "b"]
    assert m.undo_feedback("u1") is None


def test_corrupted_file_recovers_from_backup(tmp_path: Path) -> None:
    m = seeded(tmp_path)
    m.add_feedback("u1", "like", item_id="c")  # the seed version is now the backup
    m.path("u1").write_text("{ not json")
    rec = m.load("u1")
    assert rec.history_ids() == ["a", "b"]  # the last good version
    assert list(m.root.glob("u1.json.corrupt-*")), "the bad file is kept for inspection"
    assert m.load("u1").history_ids() == ["a", "b"]


def test_corrupted_without_backup_says_what_to_do(tmp_path: Path) -> None:
    m = seeded(tmp_path)
    m.path("u1").write_text("garbage")
    with pytest.raises(DeviceMemoryError, match="memory reset --user u1"):
        m.load("u1")


def test_shown_items_per_session(tmp_path: Path) -> None:
    m = seeded(tmp_path)
    m.record_shown("u1", "t1", ["x", "y"])
    m.record_shown("u1", "t1", ["y", "z"])
    assert m.load("u1").shown == {"t1": ["x", "y", "z"]}
