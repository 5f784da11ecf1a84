"""Device side: device-only memory, each user's raw history and live feedback on the device's disk.

This is the one place raw behaviour lives. It is never put into graph state: device
nodes read it by user id through the run context. One JSON file per user under
``$CDAREC_HOME/device/<dataset>/``, written atomically (temp file + fsync + rename) with
the previous version kept as ``.bak``, so a crash or a corrupted file loses nothing that
was saved: a file that does not parse is moved aside and the backup is used.
"""

from __future__ import annotations

import os
import re
import threading
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, Field, ValidationError

FeedbackKind = Literal["like", "dislike", "more_like", "not_genre"]


class DeviceMemoryError(RuntimeError):
    """Device memory could not be read or written; the message says what to do."""


class UnknownUserError(LookupError):
    pass


class Interaction(BaseModel):
    item_id: str
    ts: float
    rating: float | None = None
    source: Literal["dataset", "like", "chat"] = "dataset"


class Feedback(BaseModel):
    kind: FeedbackKind
    ts: float
    item_id: str | None = None
    genre: str | None = None
    thread: str | None = None


class DeviceRecord(BaseModel):
    """Everything the device knows about its user. Private."""

    version: int = 1
    user_id: str
    dataset: str
    history: list[Interaction] = Field(default_factory=list)
    feedback: list[Feedback] = Field(default_factory=list)
    shown: dict[str, list[str]] = Field(default_factory=dict)  # thread -> item ids shown

    def history_ids(self) -> list[str]:
        """The behaviour sequence, oldest first, liked items included as latest events."""
        return [i.item_id for i in self.history]

    def liked(self) -> set[str]:
        return {f.item_id for f in self.feedback if f.kind == "like" and f.item_id}

    def disliked(self) -> set[str]:
        return {f.item_id for f in self.feedback if f.kind == "dislike" and f.item_id}

    def avoided_genres(self) -> list[str]:
        return list(
            dict.fromkeys(f.genre for f in self.feedback if f.kind == "not_genre" and f.genre)
        )

    def anchors(self) -> list[str]:
        """Items the user asked for 'more like', newest first."""
        return [f.item_id for f in reversed(self.feedback) if f.kind == "more_like" and f.item_id]


def _safe(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", name)[:120] or "_"


class DeviceMemory:
    """The store of one device folder (one data set's users)."""

    def __init__(self, root: Path, dataset: str) -> None:
        self.root = Path(root) / _safe(dataset)
        self.dataset = dataset
        self._lock = threading.RLock()

    def path(self, user_id: str) -> Path:
        return self.root / f"{_safe(user_id)}.json"

    def exists(self, user_id: str) -> bool:
        return self.path(user_id).exists() or self.path(user_id).with_suffix(".json.bak").exists()

    def users(self) -> list[str]:
        if not self.root.exists():
            return []
        return sorted(p.stem for p in self.root.glob("*.json"))

    def _read(self, path: Path) -> DeviceRecord:
        return DeviceRecord.model_validate_json(path.read_bytes())

    def load(self, user_id: str) -> DeviceRecord:
        path = self.path(user_id)
        bak = path.with_suffix(".json.bak")
        with self._lock:
            if not path.exists() and not bak.exists():
                raise UnknownUserError(user_id)
            try:
                return self._read(path)
            except (OSError, ValueError, ValidationError) as err:
                if path.exists():
                    aside = path.with_name(f"{path.name}.corrupt-{int(time.time())}")
                    os.replace(path, aside)
                else:
                    aside = None
                if bak.exists():
                    try:
                        rec = self._read(bak)
                    except (OSError, ValueError, ValidationError):
                        pass
                    else:
                        self._write(path, rec, keep_backup=False)
                        return rec
                raise DeviceMemoryError(
                    f"device memory for user '{user_id}' is unreadable ({type(err).__name__})"
                    f" and has no good backup; the bad file was kept as {aside}. "
                    f"Run `cdarec memory reset --user {user_id}` to re-seed it from the data set."
                ) from err

    def _write(self, path: Path, rec: DeviceRecord, keep_backup: bool = True) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident()}.tmp")
        data = rec.model_dump_json(indent=None).encode("utf-8")
        with tmp.open("wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        if keep_backup and path.exists():
            os.replace(path, path.with_suffix(".json.bak"))
        os.replace(tmp, path)

    def save(self, rec: DeviceRecord) -> None:
        with self._lock:
            self._write(self.path(rec.user_id), rec)

    def seed(
        self, user_id: str, history: Iterable[Interaction], overwrite: bool = False
    ) -> DeviceRecord:
        """Put a user's history onto the device (first use, or ``memory reset``)."""
        with self._lock:
            if self.exists(user_id) and not overwrite:
                return self.load(user_id)
            rec = DeviceRecord(user_id=user_id, dataset=self.dataset, history=list(history))
            self.save(rec)
            return rec

    def add_feedback(
        self,
        user_id: str,
        kind: FeedbackKind,
        *,
        item_id: str | None = None,
        genre: str | None = None,
        thread: str | None = None,
    ) -> DeviceRecord:
        with self._lock:
            rec = self.load(user_id)
            now = time.time()
            rec.feedback.append(
                Feedback(kind=kind, ts=now, item_id=item_id, genre=genre, thread=thread)
            )
            if kind == "like" and item_id:
                rec.history.append(Interaction(item_id=item_id, ts=now, rating=5.0, source="like"))
            self.save(rec)
            return rec

    def undo_feedback(self, user_id: str) -> Feedback | None:
        with self._lock:
            rec = self.load(user_id)
            if not rec.feedback:
                return None
            last = rec.feedback.pop()
            if (
                last.kind == "like"
                and rec.history
                and rec.history[-1].source == "like"
                and (rec.history[-1].item_id == last.item_id)
            ):
                rec.history.pop()
            self.save(rec)
            return last

    def record_shown(self, user_id: str, thread: str, item_ids: Iterable[str]) -> None:
        with self._lock:
            rec = self.load(user_id)
            seen = rec.shown.setdefault(thread, [])
            seen.extend(i for i in item_ids if i not in seen)
            self.save(rec)
