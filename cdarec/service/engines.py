"""Service: the servers a deployment beyond one machine runs — started on loopback.

A PostgreSQL server (Debian's ``postgresql`` package: ``initdb`` and ``postgres``) for the
sessions' checkpoints, and a Chroma server (``chroma run``, from the chromadb package) for
the catalogue. The tests, ``cdarec bench scale`` and ``cdarec bench placement`` start them
here, each in a folder of its own, on a free port, and stop them when done; a team that
already runs these engines points cdarec at them instead (``CDAREC_DATABASE_URL``,
``CDAREC_CHROMA_URL``). Written by hand because no library starts a throwaway PostgreSQL
cluster from the system's own binaries (testing.postgresql is unmaintained since 2017).
"""

from __future__ import annotations

import contextlib
import glob
import os
import pwd
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from cdarec.llm.server import free_port

START_TIMEOUT_S = 60.0


class EngineError(RuntimeError):
    """A server could not be started; the message says why and what to do."""


@dataclass
class Engine:
    """A server this process started: its URL, its process and its folder."""

    name: str
    url: str
    proc: subprocess.Popen[bytes]
    folder: Path
    log: Path
    owned_folder: bool = False  # a folder made here (removed on stop)
    extra: dict[str, str] = field(default_factory=dict)

    def alive(self) -> bool:
        return self.proc.poll() is None

    def stop(self) -> None:
        if self.alive():
            # PostgreSQL: SIGINT is its "fast" shutdown; Chroma stops on it too.
            self.proc.send_signal(signal.SIGINT)
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)
        if self.owned_folder:
            shutil.rmtree(self.folder, ignore_errors=True)

    def __enter__(self) -> Engine:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def _tail(log: Path, n: int = 15) -> str:
    try:
        return "\n".join(log.read_text("utf-8", "replace").splitlines()[-n:])
    except OSError:
        return ""


# -- Chroma -------------------------------------------------------------------------------
def start_chroma(path: Path, port: int | None = None) -> Engine:
    """``chroma run`` serving the persistent Chroma folder ``path`` on 127.0.0.1."""
    exe = Path(sys.executable).with_name("chroma")
    if not exe.exists():
        found = shutil.which("chroma")
        if found is None:
            raise EngineError("`chroma` is not installed: run `bash scripts/setup.sh`")
        exe = Path(found)
    path.mkdir(parents=True, exist_ok=True)
    port = port or free_port()
    log = path.parent / f"{path.name}.chroma.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [str(exe), "run", "--path", str(path), "--host", "127.0.0.1", "--port", str(port)],
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    engine = Engine("chroma", f"http://127.0.0.1:{port}", proc, path, log)
    deadline = time.monotonic() + START_TIMEOUT_S
    while time.monotonic() < deadline:
        try:
            httpx.get(f"{engine.url}/api/v2/heartbeat", timeout=1).raise_for_status()
            return engine
        except httpx.HTTPError:
            if not engine.alive():
                raise EngineError(f"`chroma run` exited:\n{_tail(log)}") from None
            time.sleep(0.3)
    engine.stop()
    raise EngineError(f"the Chroma server did not answer in {START_TIMEOUT_S:.0f} s ({log})")


# -- PostgreSQL ---------------------------------------------------------------------------
def postgres_bin(name: str) -> Path:
    """A PostgreSQL server program (``initdb``, ``postgres``): from PATH, else Debian's
    versioned folder (newest version first)."""
    found = shutil.which(name)
    if found:
        return Path(found)
    for cand in sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}"), reverse=True):
        return Path(cand)
    raise EngineError(
        f"PostgreSQL's `{name}` is not installed: `bash scripts/test.sh` installs Debian's "
        "postgresql package, or `apt-get install postgresql`"
    )


def _server_user() -> tuple[int, int] | None:
    """PostgreSQL refuses to run as root: as root, run it as the ``postgres`` user that
    Debian's package creates. None: run as ourselves."""
    if os.geteuid() != 0:
        return None
    try:
        ent = pwd.getpwnam("postgres")
    except KeyError:
        raise EngineError(
            "PostgreSQL does not run as root and there is no `postgres` user: install "
            "Debian's postgresql package (it creates one) or run as another user"
        ) from None
    return ent.pw_uid, ent.pw_gid


def start_postgres(port: int | None = None, user: str = "cdarec") -> Engine:
    """A fresh PostgreSQL cluster in a new folder under the system's temporary directory
    (the server's own user must be able to reach it), on 127.0.0.1 only, with password
    (scram) authentication; ``url`` names its ``postgres`` database. Stopped and removed
    by ``stop()``."""
    initdb, postgres = postgres_bin("initdb"), postgres_bin("postgres")
    owner = _server_user()
    folder = Path(tempfile.mkdtemp(prefix="cdarec-pg-"))
    data, log, pwfile = folder / "data", folder / "postgres.log", folder / "pw"
    password = secrets.token_urlsafe(18)
    pwfile.write_text(password, "utf-8")
    pwfile.chmod(0o600)
    if owner is not None:
        for p in (folder, pwfile):
            os.chown(p, *owner)
    run_as = {"user": owner[0], "group": owner[1]} if owner else {}
    try:
        subprocess.run(
            [
                str(initdb),
                "-D",
                str(data),
                "-U",
                user,
                f"--pwfile={pwfile}",
                "--auth=scram-sha-256",
                "-E",
                "UTF8",
                "--no-sync",
            ],
            check=True,
            capture_output=True,
            **run_as,  # type: ignore[arg-type]
        )
    except subprocess.CalledProcessError as err:
        shutil.rmtree(folder, ignore_errors=True)
        raise EngineError(f"initdb failed: {err.stderr.decode(errors='replace')[-800:]}") from err
    pwfile.unlink()
    port = port or free_port()
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [
                str(postgres),
                "-D",
                str(data),
                "-p",
                str(port),
                "-k",
                str(folder),
                "-c",
                "listen_addresses=127.0.0.1",
                "-c",
                "max_connections=200",
            ],
            stdout=out,
            stderr=subprocess.STDOUT,
            **run_as,  # type: ignore[arg-type]
        )
    if owner is not None:
        with contextlib.suppress(OSError):
            os.chown(log, *owner)
    url = f"postgresql://{user}:{password}@127.0.0.1:{port}/postgres"
    engine = Engine("postgres", url, proc, folder, log, owned_folder=True)
    import psycopg

    deadline = time.monotonic() + START_TIMEOUT_S
    while time.monotonic() < deadline:
        try:
            with psycopg.connect(url, connect_timeout=2):
                return engine
        except psycopg.OperationalError:
            if not engine.alive():
                tail = _tail(log)
                engine.stop()
                raise EngineError(f"postgres exited:\n{tail}") from None
            time.sleep(0.2)
    engine.stop()
    raise EngineError(f"PostgreSQL did not accept connections in {START_TIMEOUT_S:.0f} s")


def create_database(url: str, name: str) -> str:
    """A new, empty database ``name`` on the server of ``url``; returns its URL."""
    import psycopg
    from psycopg import sql

    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    return url.rsplit("/", 1)[0] + f"/{name}"


def drop_database(url: str, name: str) -> None:
    import psycopg
    from psycopg import sql

    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(
            sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
        )
