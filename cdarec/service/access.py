"""Service: who may act as which device user - passwords and API tokens, on the device.

Shared by ``cdarec serve`` (a person signs in with a password, or with the one-off
sign-in link the server prints) and the LangGraph server's ``auth`` handler (a program
sends ``Authorization: Bearer <token>``). Credentials live in ``$CDAREC_HOME/auth/``
(folder 0700, file 0600), only as salted hashes: a password with scrypt (hashlib's, the
standard library's memory-hard KDF), an API token (256 random bits, so one SHA-256 is
enough) by its digest. Comparisons are constant-time (``hmac.compare_digest``).

Why by hand: a password file and two KDF calls are all a single-device app needs; an
identity provider (OAuth, an LDAP) would be a server for one person.
"""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import os
import secrets
import time
from pathlib import Path
from typing import Literal

from filelock import FileLock
from pydantic import BaseModel, Field, ValidationError

SCRYPT = {"n": 2**14, "r": 8, "p": 1, "dklen": 32}  # ~50 ms here; OWASP's minimum for scrypt
TOKEN_PREFIX = "cdarec_"
MIN_PASSWORD = 8


class AccessError(Exception):
    """Credentials could not be set or read; the message says what to do."""


class Credential(BaseModel):
    kind: Literal["password", "token"]
    salt: str = ""
    digest: str
    created: float = Field(default_factory=time.time)
    name: str = ""  # a token's label ("langgraph", "load bench")


class UserCredentials(BaseModel):
    password: Credential | None = None
    tokens: list[Credential] = Field(default_factory=list)


class CredentialStore(BaseModel):
    version: int = 1
    users: dict[str, UserCredentials] = Field(default_factory=dict)


def _scrypt(password: str, salt: bytes) -> str:
    return hashlib.scrypt(password.encode("utf-8"), salt=salt, **SCRYPT).hex()


def _token_digest(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


def write_private(path: Path, data: bytes) -> None:
    """Replace ``path`` with ``data``, owner-only (0600): a whole temp file, fsynced, then
    renamed over it, so a reader sees the old file or the new one, never a part."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as fh:
        fh.write(data)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)


class Access:
    """The credentials of one cdarec home."""

    def __init__(self, home: Path) -> None:
        self.folder = Path(home) / "auth"
        self.path = self.folder / "credentials.json"

    def _lock(self) -> FileLock:
        self.folder.mkdir(parents=True, exist_ok=True, mode=0o700)
        with contextlib.suppress(OSError):
            os.chmod(self.folder, 0o700)
        return FileLock(self.folder / ".credentials.lock", mode=0o600, timeout=30)

    def _load(self) -> CredentialStore:
        try:
            return CredentialStore.model_validate_json(self.path.read_bytes())
        except FileNotFoundError:
            return CredentialStore()
        except (ValueError, ValidationError) as err:
            raise AccessError(
                f"the credentials file {self.path} is unreadable ({type(err).__name__}); "
                "move it aside and set the passwords and tokens again "
                "(`cdarec access password --user U`, `cdarec access token --user U`)"
            ) from err

    def _save(self, store: CredentialStore) -> None:
        write_private(self.path, store.model_dump_json(indent=1).encode("utf-8"))

    def users(self) -> list[str]:
        return sorted(self._load().users)

    def set_password(self, user: str, password: str) -> None:
        if len(password) < MIN_PASSWORD:
            raise AccessError(f"a password needs at least {MIN_PASSWORD} characters")
        salt = secrets.token_bytes(16)
        cred = Credential(kind="password", salt=salt.hex(), digest=_scrypt(password, salt))
        with self._lock():
            store = self._load()
            store.users.setdefault(user, UserCredentials()).password = cred
            self._save(store)

    def new_token(self, user: str, name: str = "") -> str:
        """A new API token for ``user``; it is shown once, only its digest is kept."""
        token = TOKEN_PREFIX + secrets.token_urlsafe(32)
        cred = Credential(kind="token", digest=_token_digest(token), name=name[:40])
        with self._lock():
            store = self._load()
            store.users.setdefault(user, UserCredentials()).tokens.append(cred)
            self._save(store)
        return token

    def revoke(self, user: str) -> int:
        """Remove every credential of ``user``; returns how many there were."""
        with self._lock():
            store = self._load()
            creds = store.users.pop(user, None)
            self._save(store)
        if creds is None:
            return 0
        return len(creds.tokens) + (creds.password is not None)

    def revoke_tokens(self, user: str, name: str) -> int:
        """Remove ``user``'s tokens labelled ``name`` (a benchmark's own); returns how many."""
        with self._lock():
            store = self._load()
            creds = store.users.get(user)
            if creds is None:
                return 0
            before = len(creds.tokens)
            creds.tokens = [t for t in creds.tokens if t.name != name]
            if creds.password is None and not creds.tokens:
                del store.users[user]
            self._save(store)
        return before - len(creds.tokens)

    def check_password(self, user: str, password: str) -> bool:
        creds = self._load().users.get(user)
        if creds is None or creds.password is None:
            _scrypt(password, b"0" * 16)  # the same cost either way: no user enumeration
            return False
        cred = creds.password
        return hmac.compare_digest(_scrypt(password, bytes.fromhex(cred.salt)), cred.digest)

    def user_of_token(self, token: str) -> str | None:
        """The user an API token belongs to, or None."""
        if not token.startswith(TOKEN_PREFIX):
            return None
        digest = _token_digest(token)
        found = None
        for user, creds in self._load().users.items():
            for cred in creds.tokens:
                if hmac.compare_digest(cred.digest, digest):
                    found = user
        return found


class BrowserSession(BaseModel):
    user: str
    csrf: str
    at: float  # when it was opened (seconds since the epoch)


class BrowserSessionStore(BaseModel):
    sessions: dict[str, BrowserSession] = {}  # digest of the cookie's value -> session


MAX_BROWSER_SESSIONS = 256


class BrowserSessions:
    """Signed-in browser sessions of one home, in a file (0600) beside the credentials, so
    that every worker of one `cdarec serve --workers N` knows them (a cookie set by one
    worker is honoured by the others). Only digests of the cookie values are kept; the
    CSRF token is the session's own. `cdarec serve` clears them at start: a restart signs
    everyone out. At most ``MAX_BROWSER_SESSIONS``, oldest dropped."""

    def __init__(self, access: Access) -> None:
        self.access = access
        self.path = access.folder / "browser-sessions.json"
        self._cache: tuple[tuple[int, int, int], BrowserSessionStore] | None = None

    def _load(self) -> BrowserSessionStore:
        try:
            st = self.path.stat()
            stamp = (st.st_ino, st.st_mtime_ns, st.st_size)  # each save is a new file
            if self._cache is not None and self._cache[0] == stamp:
                return self._cache[1]
            store = BrowserSessionStore.model_validate_json(self.path.read_bytes())
        except FileNotFoundError:
            return BrowserSessionStore()
        except (ValueError, ValidationError):
            return BrowserSessionStore()  # unreadable: everyone signs in again, nothing else lost
        self._cache = (stamp, store)
        return store

    def _save(self, store: BrowserSessionStore) -> None:
        write_private(self.path, store.model_dump_json().encode("utf-8"))

    def open(self, user: str) -> tuple[str, str]:
        """A new session for ``user``: (the cookie's value, its CSRF token)."""
        sid, csrf = secrets.token_urlsafe(32), secrets.token_urlsafe(32)
        with self.access._lock():
            store = self._load().model_copy(deep=True)
            session = BrowserSession(user=user, csrf=csrf, at=time.time())
            store.sessions[_token_digest(sid)] = session
            while len(store.sessions) > MAX_BROWSER_SESSIONS:
                oldest = min(store.sessions, key=lambda k: store.sessions[k].at)
                del store.sessions[oldest]
            self._save(store)
        return sid, csrf

    def get(self, sid: str) -> BrowserSession | None:
        if not sid:
            return None
        return self._load().sessions.get(_token_digest(sid))

    def close(self, sid: str) -> None:
        with self.access._lock():
            store = self._load().model_copy(deep=True)
            if store.sessions.pop(_token_digest(sid), None) is not None:
                self._save(store)

    def clear(self) -> None:
        with self.access._lock():
            self.path.unlink(missing_ok=True)
            self._cache = None


def one_off_token() -> str:
    """The sign-in secret ``cdarec serve`` prints at start (kept in memory; with
    ``--workers`` also in the workers' environment, readable only by their user)."""
    return secrets.token_urlsafe(32)


def same_secret(a: str, b: str) -> bool:
    return hmac.compare_digest(a.encode("utf-8"), b.encode("utf-8"))
