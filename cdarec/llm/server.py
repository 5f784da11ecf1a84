"""Shared: the embedded cloud endpoint, a real OpenAI-compatible HTTP server on loopback.

When no cloud endpoint is configured, cdarec starts ``python -m llama_cpp.server``
(llama-cpp-python's own OpenAI-compatible server) on a free loopback port, serving the
cloud model, and stops it when the process exits. The cloud path therefore always goes
over real HTTP through ``ChatOpenAI``, exactly as it would against OpenAI or vLLM.
"""

from __future__ import annotations

import atexit
import contextlib
import os
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import ClassVar

import httpx


class ServerError(RuntimeError):
    """The embedded server did not start; the message carries its log tail."""


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _tail(path: Path, n: int = 15) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-n:])
    except OSError:
        return "(no log)"


class EmbeddedServer:
    """One ``llama_cpp.server`` process serving one GGUF model under an alias."""

    _instances: ClassVar[dict[tuple[str, str, int, int], EmbeddedServer]] = {}
    _lock: ClassVar[threading.Lock] = threading.Lock()

    def __init__(self, model_path: Path, alias: str, n_ctx: int, threads: int, log_dir: Path):
        self.model_path = Path(model_path)
        self.alias = alias
        self.n_ctx = n_ctx
        self.threads = threads
        self.log_path = log_dir / f"llama-server-{alias}.log"
        self.port = 0
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    @classmethod
    def get(
        cls, model_path: Path, alias: str, n_ctx: int, threads: int, log_dir: Path
    ) -> EmbeddedServer:
        # By the real file: one server for a model however it is reached (a test home's
        # models are links to the real ones).
        key = (str(Path(model_path).resolve()), alias, n_ctx, threads)
        with cls._lock:
            srv = cls._instances.get(key)
            if srv is None or not srv.alive():
                srv = cls(model_path, alias, n_ctx, threads, log_dir)
                srv.start()
                cls._instances[key] = srv
            return srv

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def command(self) -> list[str]:
        """The server's command line (``self.port`` must be set)."""
        return [
            sys.executable,
            "-m",
            "cdarec.llm._child",  # llama_cpp.server, exiting when this process is gone
            str(os.getpid()),
            "--model",
            str(self.model_path),
            "--model_alias",
            self.alias,
            "--host",
            "127.0.0.1",
            "--port",
            str(self.port),
            "--n_ctx",
            str(self.n_ctx),
            "--n_threads",
            str(self.threads),
            "--n_threads_batch",
            str(self.threads),
            "--seed",
            "0",
            # llama_cpp.server defaults to logits_all=True: a float32 row of the whole
            # vocabulary kept for every prompt token (2048 x 151,936 x 4 B = 1.2 GB for
            # Qwen at n_ctx 2048). cdarec never asks for prompt logprobs.
            "--logits_all",
            "false",
            "--use_mmap",
            "false",
        ]

    def start(self, timeout_s: float = 180.0) -> None:
        if not self.model_path.exists():
            raise ServerError(
                f"cloud model file {self.model_path} is missing; run `cdarec models pull`."
            )
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        self.port = free_port()
        cmd = self.command()
        log = self.log_path.open("wb")
        self.proc = subprocess.Popen(
            cmd,
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )
        log.close()
        atexit.register(self.stop)
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise ServerError(
                    f"llama.cpp server for '{self.alias}' exited with code "
                    f"{self.proc.returncode}; log {self.log_path}:\n{_tail(self.log_path)}"
                )
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(f"{self.base_url}/models", timeout=2.0).status_code == 200:
                    return
            time.sleep(0.25)
        self.stop()
        raise ServerError(
            f"llama.cpp server for '{self.alias}' was not ready after {timeout_s:.0f} s; "
            f"log {self.log_path}:\n{_tail(self.log_path)}"
        )

    def stop(self) -> None:
        proc, self.proc = self.proc, None
        if proc is None or proc.poll() is not None:
            return
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=5)

    @classmethod
    def stop_all(cls) -> None:
        with cls._lock:
            for srv in cls._instances.values():
                srv.stop()
            cls._instances.clear()
