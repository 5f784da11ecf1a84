from __future__ import annotations

import os
import stat
import threading
from pathlib import Path
from typing import Any

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


def test_files_are_owner_only(tmp_path: Path) -> None:
    m = seeded(tmp_path)
    m.add_feedback("u1", "like", item_id="c")
    assert stat.S_IMODE(m.root.stat().st_mode) == 0o700
    for f in (m.path("u1"), m.path("u1").with_suffix(".json.bak")):
        assert stat.S_IMODE(f.stat().st_mode) == 0o600, f


def test_a_read_error_is_not_corruption_and_keeps_every_file(tmp_path: Path) -> None:
    """Only a file that does not parse is moved aside; an OSError (here: the name is a
    folder) is an error that names the file and changes nothing."""
    m = seeded(tmp_path)
    m.add_feedback("u1", "like", item_id="c")
    backup = m.path("u1").with_suffix(".json.bak").read_bytes()
    m.path("u1").unlink()
    m.path("u1").mkdir()
    with pytest.raises(DeviceMemoryError, match="nothing was changed"):
        m.load("u1")
    assert m.path("u1").is_dir()
    assert m.path("u1").with_suffix(".json.bak").read_bytes() == backup
    assert not list(m.root.glob("*.corrupt-*"))


def test_a_crash_before_the_rename_recovers_from_the_temp_file(tmp_path: Path) -> None:
    """A write that died after its temp file was complete but before the rename, with the
    current file then lost: the temp file is the newest whole version and is used."""
    m = seeded(tmp_path)
    m.add_feedback("u1", "like", item_id="c")
    newest = m.path("u1").read_bytes()
    tmp = m.path("u1").with_name(".u1.json.999.1.tmp")
    tmp.write_bytes(newest)
    m.path("u1").unlink()
    assert m.load("u1").history_ids() == ["a", "b", "c"]
    assert not tmp.exists()  # folded back into the current file
    # a temp file a crash cut short does not parse: the backup is used instead
    m.path("u1").write_text("{ cut")
    tmp.write_text('{"user_id": "u1", "hist')
    assert m.load("u1").history_ids() == ["a", "b"]


def test_the_current_file_is_never_missing_during_a_write(tmp_path: Path) -> None:
    """The backup is linked, not renamed away: between any two steps of a write the
    current name holds a whole version (a reader in another process never finds none)."""
    m = seeded(tmp_path)
    seen: list[bool] = []
    real_replace = os.replace

    def watching(src: Any, dst: Any) -> None:
        seen.append(m.path("u1").exists())
        real_replace(src, dst)
        seen.append(m.path("u1").exists())

    import cdarec.device.memory as module

    module.os.replace = watching  # type: ignore[assignment]
    try:
        m.add_feedback("u1", "like", item_id="c")
    finally:
        module.os.replace = real_replace  # type: ignore[assignment]
    assert seen and all(seen)


def test_a_held_lock_is_a_clear_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import cdarec.device.memory as module

    m = seeded(tmp_path)
    monkeypatch.setattr(module, "LOCK_TIMEOUT_S", 0.2)
    other = DeviceMemory(tmp_path / "device", "ml-100k")  # its own lock objects
    ready, release = threading.Event(), threading.Event()

    def hold() -> None:
        with other.locked("u1"):
            ready.set()
            release.wait(5)

    t = threading.Thread(target=hold)
    t.start()
    ready.wait(5)
    try:
        with pytest.raises(DeviceMemoryError, match="locked by another process"):
            m.add_feedback("u1", "like", item_id="c")
    finally:
        release.set()
        t.join()
    assert m.add_feedback("u1", "like", item_id="c").liked() == {"c"}
