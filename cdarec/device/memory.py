"""Device side: device-only memory, each user's raw history and live feedback on the device's disk.

This is the one place raw behaviour lives. It is never put into graph state: device
nodes read it by user id through the run context. One JSON file per user under
``$CDAREC_HOME/device/<dataset>/`` (folder 0700, files 0600: owner only).

Durability. Every read-modify-write (feedback, undo, shown items, seeding) holds a
cross-process lock (``filelock``, one lock file per user), so ``cdarec chat``,
``cdarec serve`` and ``langgraph dev`` on one home never lose each other's writes. A
write goes to a temp file (fsynced), the current file is hard-linked as ``.bak``, the
temp file is renamed over the current one and the folder is fsynced: at every instant
the current name holds a whole, valid version, so a crash at any point loses nothing
that was acknowledged (``save`` returned). A temp file a crash left behind is used when
the current file is gone or unreadable (it is the newest whole version), else removed.
Only a file that does not parse is corruption: it is moved aside and the newest good
version (temp file, then backup) is used. Any other ``OSError`` (permissions, a full
disk) is an error that keeps every file as it is.
"""

from __future__ import annotations

import contextlib
import os
import re
import threading
import time
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Literal

from filelock import FileLock, Timeout
from pydantic import BaseModel, Field, ValidationError

FeedbackKind = Literal["like", "dislike", "more_like", "not_genre"]

LOCK_TIMEOUT_S = 30.0  # another process holding a user's lock longer than this is stuck


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


def apply_feedback(
    rec: DeviceRecord,
    kind: FeedbackKind,
    *,
    item_id: str | None = None,
    genre: str | None = None,
    thread: str | None = None,
) -> DeviceRecord:
    """Feedback into a record (in memory): a like also joins the history as its newest
    event. ``DeviceMemory.add_feedback`` saves it; evaluation keeps records in memory."""
    now = time.time()
    rec.feedback.append(Feedback(kind=kind, ts=now, item_id=item_id, genre=genre, thread=thread))
    if kind == "like" and item_id:
        rec.history.append(Interaction(item_id=item_id, ts=now, rating=5.0, source="like"))
    return rec


def _safe(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", name)[:120] or "_"


def _fsync_dir(folder: Path) -> None:
    """Make a rename in ``folder`` durable (POSIX: the directory entry is data too)."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:  # pragma: no cover - platforms without directory handles
        return
    try:
        os.fsync(fd)
    except OSError:  # pragma: no cover - some file systems refuse; the rename still holds
        pass
    finally:
        os.close(fd)


class DeviceMemory:
    """The store of one device folder (one data set's users)."""

    def __init__(self, root: Path, dataset: str) -> None:
        self.root = Path(root) / _safe(dataset)
        self.dataset = dataset
        self._lock = threading.RLock()  # this process's threads; the file lock is for processes
        self._file_locks: dict[str, FileLock] = {}

    def path(self, user_id: str) -> Path:
        return self.root / f"{_safe(user_id)}.json"

    def _backup(self, path: Path) -> Path:
        return path.with_suffix(".json.bak")

    def _temps(self, path: Path) -> list[Path]:
        """Temp files a write of ``path`` left behind, newest first."""
        found = list(path.parent.glob(f".{path.name}.*.tmp")) if path.parent.exists() else []
        return sorted(found, key=lambda p: p.stat().st_mtime if p.exists() else 0, reverse=True)

    def exists(self, user_id: str) -> bool:
        path = self.path(user_id)
        return path.exists() or self._backup(path).exists() or bool(self._temps(path))

    def users(self) -> list[str]:
        if not self.root.exists():
            return []
        return sorted(p.stem for p in self.root.glob("*.json"))

    def _mkdir(self) -> None:
        self.root.mkdir(parents=True, exist_ok=True, mode=0o700)
        with contextlib.suppress(OSError):
            os.chmod(self.root, 0o700)

    @contextlib.contextmanager
    def locked(self, user_id: str) -> Iterator[None]:
        """Hold this user's memory against every other thread and process."""
        with self._lock:
            self._mkdir()
            key = _safe(user_id)
            lock = self._file_locks.get(key)
            if lock is None:
                lock = FileLock(self.root / f".{key}.lock", mode=0o600)
                self._file_locks[key] = lock
            try:
                with lock.acquire(timeout=LOCK_TIMEOUT_S):
                    yield
            except Timeout as err:
                raise DeviceMemoryError(
                    f"device memory for user '{user_id}' is locked by another process for over "
                    f"{LOCK_TIMEOUT_S:.0f} s ({lock.lock_file}); if no cdarec process is "
                    "running, delete that lock file and try again"
                ) from err

    def _read(self, path: Path) -> DeviceRecord:
        return DeviceRecord.model_validate_json(path.read_bytes())

    def load(self, user_id: str) -> DeviceRecord:
        path = self.path(user_id)
        try:
            return self._read(path)  # the common case: one whole version, no lock needed
        except FileNotFoundError:
            pass
        except (ValueError, ValidationError):
            pass
        except OSError as err:  # not corruption: keep every file, say what is wrong
            raise DeviceMemoryError(
                f"cannot read the device memory of user '{user_id}' at {path} "
                f"({type(err).__name__}: {err.strerror or err}); nothing was changed - fix the "
                "file's permissions or the disk and try again"
            ) from err
        with self.locked(user_id):
            return self._recover(user_id, path)

    def _recover(self, user_id: str, path: Path) -> DeviceRecord:
        """Under the lock: the current file is missing or does not parse."""
        err: Exception | None = None
        try:
            return self._read(path)  # another process may have repaired it meanwhile
        except FileNotFoundError:
            aside = None
        except (ValueError, ValidationError) as bad:
            err = bad
            aside = path.with_name(f"{path.name}.corrupt-{int(time.time() * 1000)}")
            os.replace(path, aside)
        for candidate in [*self._temps(path), self._backup(path)]:
            try:
                rec = self._read(candidate)
            except FileNotFoundError:
                continue
            except (ValueError, ValidationError):
                continue
            self._write(path, rec, keep_backup=False)
            self._clean_temps(path)
            return rec
        if err is None:
            raise UnknownUserError(user_id)
        raise DeviceMemoryError(
            f"device memory for user '{user_id}' is unreadable ({type(err).__name__})"
            f" and has no good backup; the bad file was kept as {aside}. "
            f"Run `cdarec memory reset --user {user_id}` to re-seed it from the data set."
        ) from err

    def _clean_temps(self, path: Path) -> None:
        for tmp in self._temps(path):
            with contextlib.suppress(OSError):
                tmp.unlink()

    def _write(self, path: Path, rec: DeviceRecord, keep_backup: bool = True) -> None:
        self._mkdir()
        tmp = path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident()}.tmp")
        data = rec.model_dump_json(indent=None).encode("utf-8")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        if keep_backup and path.exists():
            # The backup is a second name for the current version (no copy, no gap: the
            # current name never goes missing, unlike rename-to-.bak then rename-in).
            bak, link = self._backup(path), path.with_name(f".{path.name}.bak-link")
            with contextlib.suppress(FileNotFoundError):
                link.unlink()
            try:
                os.link(path, link)
                os.replace(link, bak)
            except OSError:  # a file system without hard links: a copy
                link.write_bytes(path.read_bytes())
                os.replace(link, bak)
        os.replace(tmp, path)
        _fsync_dir(path.parent)
        self._clean_temps(path)  # under the lock, any other temp file is a dead write's

    def save(self, rec: DeviceRecord) -> None:
        with self.locked(rec.user_id):
            self._write(self.path(rec.user_id), rec)

    def seed(
        self, user_id: str, history: Iterable[Interaction], overwrite: bool = False
    ) -> DeviceRecord:
        """Put a user's history onto the device (first use, or ``memory reset``)."""
        with self.locked(user_id):
            if self.exists(user_id) and not overwrite:
                return self.load(user_id)
            rec = DeviceRecord(user_id=user_id, dataset=self.dataset, history=list(history))
            self._write(self.path(user_id), rec)
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
        with self.locked(user_id):
            rec = self.load(user_id)
            apply_feedback(rec, kind, item_id=item_id, genre=genre, thread=thread)
            self._write(self.path(user_id), rec)
            return rec

    def undo_feedback(self, user_id: str) -> Feedback | None:
        with self.locked(user_id):
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
            self._write(self.path(user_id), rec)
            return last

    def record_shown(self, user_id: str, thread: str, item_ids: Iterable[str]) -> None:
        with self.locked(user_id):
            rec = self.load(user_id)
            seen = rec.shown.setdefault(thread, [])
            seen.extend(i for i in item_ids if i not in seen)
            self._write(self.path(user_id), rec)
