"""Evaluation: the conditions `cdarec bench placement` makes on loopback — a link with delay
and a bandwidth cap, a cloud whose model calls queue, an unreachable cloud, a busy device.

``LinkProxy`` is a TCP proxy in front of one cloud service (the cloud LLM's HTTP server, the
Chroma server): each chunk is forwarded ``delay_s`` after it arrived (both directions, so a
round trip costs twice that), at most ``bytes_per_s``, and with ``hold_s`` every model call
(a ``POST .../chat/completions``) waits that long in the cloud before its answer leaves, as
in an overloaded cloud's queue; probes (``GET /models``, the heartbeat) are not held.
Hand-written: no library here shapes loopback traffic without root (``tc netem`` needs
it), and the hold has to tell a model call from a probe.

``CpuHog`` starts busy processes that are not cdarec's children (the device's load
measure subtracts cdarec's own process tree), as another program on the device would be.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass


@dataclass(frozen=True)
class Link:
    """One condition's link and cloud: one-way delay, bandwidth cap, hold per model call."""

    delay_s: float = 0.0
    bytes_per_s: float | None = None
    hold_s: float = 0.0


class LinkProxy:
    def __init__(self, target_port: int, target_host: str = "127.0.0.1") -> None:
        self.target = (target_host, target_port)
        self.link = Link()
        self.loop = asyncio.new_event_loop()
        self._ready = threading.Event()
        self.port = 0
        self._thread = threading.Thread(target=self._run, daemon=True, name="link-proxy")
        self._thread.start()
        self._ready.wait(10)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def _run(self) -> None:
        asyncio.set_event_loop(self.loop)
        server = self.loop.run_until_complete(asyncio.start_server(self._handle, "127.0.0.1", 0))
        self._server = server
        self.port = server.sockets[0].getsockname()[1]
        self._ready.set()
        self.loop.run_forever()

    def close(self) -> None:
        """Stop serving: open connections are cancelled, then the loop ends."""

        async def shutdown() -> None:
            self._server.close()  # new connections are refused from now on
            tasks = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
            for t in tasks:
                t.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            self.loop.stop()

        asyncio.run_coroutine_threadsafe(shutdown(), self.loop)
        self._thread.join(10)

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            up_r, up_w = await asyncio.open_connection(*self.target)
        except OSError:
            writer.close()
            return
        held: list[float] = []  # model calls waiting for their answer's hold
        with contextlib.suppress(asyncio.CancelledError):  # closed by ``close``
            await asyncio.gather(
                self._pipe(reader, up_w, held, up=True),
                self._pipe(up_r, writer, held, up=False),
                return_exceptions=True,
            )

    async def _pipe(
        self,
        src: asyncio.StreamReader,
        dst: asyncio.StreamWriter,
        held: list[float],
        *,
        up: bool,
    ) -> None:
        queue: asyncio.Queue[tuple[float, bytes]] = asyncio.Queue()

        async def read() -> None:
            while data := await src.read(65536):
                link = self.link
                if up and link.hold_s and data.startswith(b"POST") and b"/chat/completions" in data:
                    held.append(link.hold_s)
                await queue.put((time.monotonic(), data))
            await queue.put((time.monotonic(), b""))

        reading = asyncio.ensure_future(read())
        try:
            while True:
                arrived, data = await queue.get()
                if not data:
                    break
                link = self.link
                if not up and held:
                    await asyncio.sleep(held.pop(0))
                wait = arrived + link.delay_s - time.monotonic()
                if wait > 0:
                    await asyncio.sleep(wait)
                if link.bytes_per_s:
                    await asyncio.sleep(len(data) / link.bytes_per_s)
                dst.write(data)
                await dst.drain()
        finally:
            reading.cancel()
            with contextlib.suppress(Exception):
                dst.close()


class CpuHog:
    """``n`` busy processes beside the app, detached from it (not its children)."""

    def __init__(self, n: int) -> None:
        self.pids: list[int] = []
        for _ in range(n):
            # sh starts the loop in the background and exits at once: the loop is then
            # nobody's child of ours, as another program on the device would be.
            out = subprocess.run(
                ["sh", "-c", f"'{sys.executable}' -c 'while True: pass' >/dev/null 2>&1 & echo $!"],
                capture_output=True,
                text=True,
                check=True,
            )
            self.pids.append(int(out.stdout.strip()))

    def stop(self) -> None:
        for pid in self.pids:
            with contextlib.suppress(OSError):
                os.kill(pid, signal.SIGKILL)
        self.pids.clear()

    def __enter__(self) -> CpuHog:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()
