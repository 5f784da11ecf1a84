"""`cdarec bench web`: the browser path's budget, measured over real HTTP.

Starts ``cdarec serve``'s app (uvicorn, loopback, in a thread of this process, so the
process's peak memory is the server's), then:

1. a terminal-style turn (``ChatSession.turn``, no HTTP) for a baseline, after one
   warm-up pass over the requests so that both paths reuse the same cached plans;
2. the same request over HTTP, timing the first 'step' event and the 'result' event
   (what the page shows as the first recommendation);
3. N sessions opened at once, one turn each, and the process's peak RSS after them
   (plus the embedded cloud server's).
"""

from __future__ import annotations

import resource
import statistics
import threading
import time
from typing import Any

import httpx
from rich.console import Console
from rich.table import Table

from cdarec.settings import Settings


def _turn_over_http(client: httpx.Client, thread: str, user: str, message: str) -> dict[str, float]:
    t0 = time.perf_counter()
    first_step = result = float("nan")
    with client.stream(
        "POST", f"/api/sessions/{thread}/turn", json={"user": user, "message": message}
    ) as r:
        r.raise_for_status()
        for line in r.iter_lines():
            if line.startswith("event: step") and first_step != first_step:
                first_step = time.perf_counter() - t0
            elif line.startswith("event: result"):
                result = time.perf_counter() - t0
            elif line.startswith("event: error"):
                raise RuntimeError(f"turn failed: {line}")
    return {"first_step_s": first_step, "result_s": result}


def run(settings: Settings, sessions: int, console: Console) -> dict[str, Any]:
    import uvicorn

    from cdarec.app import ChatSession
    from cdarec.bench.turns import _rss_mb
    from cdarec.llm.server import EmbeddedServer, free_port
    from cdarec.web.app import create_app

    user = settings.user_id or "1"
    port = free_port()
    server = uvicorn.Server(
        uvicorn.Config(create_app(settings), host="127.0.0.1", port=port, log_level="warning")
    )
    threading.Thread(target=server.run, daemon=True).start()
    while not server.started:
        time.sleep(0.05)
    requests = ["a comedy for tonight", "something like Alien but lighter", "a tense thriller"]
    try:
        terminal = ChatSession(settings, thread=None)
        terminal.turn("")  # cold: loads models, starts the cloud server
        for req in requests:  # warm-up: both paths then reuse the same cached plans
            terminal.turn(req)
        term_s = []
        for req in requests:
            t = time.perf_counter()
            terminal.turn(req)
            term_s.append(time.perf_counter() - t)
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=600) as client:
            thread = client.post("/api/sessions", json={"user": user}).json()["thread"]
            web = [_turn_over_http(client, thread, user, req) for req in requests]
            threads = [
                client.post("/api/sessions", json={"user": user}).json()["thread"]
                for _ in range(sessions)
            ]
            for i, th in enumerate(threads):
                _turn_over_http(client, th, user, requests[i % len(requests)])
                console.print(f"[dim]session {i + 1}/{sessions} answered[/dim]")
    finally:
        server.should_exit = True
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    servers = {s.alias: _rss_mb(s.proc.pid) for s in EmbeddedServer._instances.values() if s.proc}
    term = statistics.median(term_s)
    page = statistics.median(w["result_s"] for w in web)
    table = Table(title=f"cdarec bench web: {settings.device_model} / {settings.cloud_model}")
    table.add_column("measure")
    table.add_column("value", justify="right")
    table.add_row(f"terminal turn, median of {len(term_s)}", f"{term:.2f} s")
    table.add_row(
        "web: first step on the page, median",
        f"{statistics.median(w['first_step_s'] for w in web):.2f} s",
    )
    table.add_row("web: recommendations on the page, median", f"{page:.2f} s")
    table.add_row("web minus terminal (budget +0.5 s)", f"{page - term:+.2f} s")
    table.add_row("open sessions answered", str(sessions))
    table.add_row("peak RSS, app process (server)", f"{peak:.0f} MB")
    for alias, mb in servers.items():
        table.add_row(f"peak RSS, embedded cloud server ({alias})", f"{mb:.0f} MB")
    table.add_row("peak RSS, total (budget 4096 MB)", f"{peak + sum(servers.values()):.0f} MB")
    console.print(table)
    return {"terminal_s": term_s, "web": web, "peak_mb": peak, "servers_mb": servers}
