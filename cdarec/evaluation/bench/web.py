"""Evaluation: `cdarec bench web`, the browser path's budget measured over real HTTP.

Starts ``cdarec serve``'s app (uvicorn, loopback, in a thread of this process, so the
process's peak memory is the server's), then:

1. after one warm-up pass over the requests (so that both paths reuse the same cached
   plans), each request as a terminal turn (``ChatSession.turn``, no HTTP) and over HTTP,
   alternating, ``rounds`` times: on this noisy 2-core machine a drift in speed then
   hits both paths alike. Each path is timed to its first recommendations (the fused
   list, streamed before the device SLM's reasons: the CLI's ``on_first_items``, the
   page's 'first_items' event) and to the full result;
2. N sessions opened at once, one turn each, and the process's peak RSS after them
   (plus the embedded cloud server's).
"""

from __future__ import annotations

import statistics
import threading
import time
from typing import Any

import httpx
from rich.console import Console
from rich.table import Table

from cdarec.settings import Settings


def sign_in(client: httpx.Client, token: str) -> None:
    """Sign in as a browser does, with the printed link; every POST then carries the
    session's CSRF token."""
    client.get(f"/signin?token={token}", follow_redirects=False).raise_for_status()
    client.headers["x-csrf-token"] = client.get("/api/me").raise_for_status().json()["csrf"]


def _turn_over_http(client: httpx.Client, thread: str, message: str) -> dict[str, float]:
    t0 = time.perf_counter()
    first_step = first_items = result = float("nan")
    with client.stream("POST", f"/api/sessions/{thread}/turn", json={"message": message}) as r:
        r.raise_for_status()
        for line in r.iter_lines():
            if line.startswith("event: step") and first_step != first_step:
                first_step = time.perf_counter() - t0
            elif line.startswith("event: first_items") and first_items != first_items:
                first_items = time.perf_counter() - t0
            elif line.startswith("event: result"):
                result = time.perf_counter() - t0
            elif line.startswith("event: error"):
                raise RuntimeError(f"turn failed: {line}")
    return {"first_step_s": first_step, "first_items_s": first_items, "result_s": result}


def _terminal_turn(session: Any, message: str) -> dict[str, float]:
    t0 = time.perf_counter()
    first: list[float] = []
    session.turn(message, on_first_items=lambda _: first.append(time.perf_counter() - t0))
    return {
        "first_items_s": first[0] if first else float("nan"),
        "result_s": time.perf_counter() - t0,
    }


def _median(rows: list[dict[str, float]], key: str) -> float:
    vals = [r[key] for r in rows if r[key] == r[key]]
    return statistics.median(vals) if vals else float("nan")


def serve_in_thread(app: Any) -> tuple[Any, str]:
    """``app`` under uvicorn on a free loopback port, in a daemon thread, once it
    answers; returns the server (``should_exit = True`` stops it) and its URL."""
    import uvicorn

    from cdarec.llm.server import free_port

    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    threading.Thread(target=server.run, daemon=True).start()
    while not server.started:
        time.sleep(0.05)
    return server, f"http://127.0.0.1:{port}"


def run(settings: Settings, sessions: int, console: Console, rounds: int = 2) -> dict[str, Any]:
    from cdarec.evaluation.bench.turns import add_memory_rows, peak_memory
    from cdarec.service.chat import ChatSession
    from cdarec.web.server import create_app

    app = create_app(settings)
    server, url = serve_in_thread(app)
    requests = ["a comedy for tonight", "something like Alien but lighter", "a tense thriller"]
    try:
        terminal = ChatSession(settings, thread=None)
        terminal.turn("")  # cold: loads models, starts the cloud server
        for req in requests:  # warm-up: both paths then reuse the same cached plans
            terminal.turn(req)
        term: list[dict[str, float]] = []
        web: list[dict[str, float]] = []
        with httpx.Client(base_url=url, timeout=600) as client:
            sign_in(client, app.state.signin_token)
            thread = client.post("/api/sessions").json()["thread"]
            for r in range(rounds):
                for req in requests:
                    term.append(_terminal_turn(terminal, req))
                    web.append(_turn_over_http(client, thread, req))
                    console.print(
                        f"[dim]round {r + 1}/{rounds} {req!r}: terminal "
                        f"{term[-1]['result_s']:.1f} s, web {web[-1]['result_s']:.1f} s[/dim]"
                    )
            threads = [client.post("/api/sessions").json()["thread"] for _ in range(sessions)]
            for i, th in enumerate(threads):
                _turn_over_http(client, th, requests[i % len(requests)])
                console.print(f"[dim]session {i + 1}/{sessions} answered[/dim]")
    finally:
        server.should_exit = True
    peak, servers = peak_memory()
    term_first, term_full = _median(term, "first_items_s"), _median(term, "result_s")
    page_first, page_full = _median(web, "first_items_s"), _median(web, "result_s")
    # The same turn on both paths: the difference per pair, then its median.
    diff_first = statistics.median(
        w["first_items_s"] - t["first_items_s"] for t, w in zip(term, web, strict=True)
    )
    diff_full = statistics.median(
        w["result_s"] - t["result_s"] for t, w in zip(term, web, strict=True)
    )
    table = Table(title=f"cdarec bench web: {settings.device_model} / {settings.cloud_model}")
    table.add_column(f"median of {len(term)} paired turns")
    table.add_column("terminal", justify="right")
    table.add_column("web page", justify="right")
    table.add_column("web - terminal (paired)", justify="right")
    table.add_row("first step", "", f"{_median(web, 'first_step_s'):.2f} s", "")
    table.add_row(
        "first recommendations (fused list)",
        f"{term_first:.2f} s",
        f"{page_first:.2f} s",
        f"{diff_first:+.2f} s",
    )
    table.add_row(
        "recommendations with reasons",
        f"{term_full:.2f} s",
        f"{page_full:.2f} s",
        f"{diff_full:+.2f} s",
    )
    table.add_row("budget", "", "", "+0.50 s")
    console.print(table)
    mem = Table(title=f"{sessions} open sessions, one turn each")
    mem.add_column("measure")
    mem.add_column("value", justify="right")
    mem.add_row("open sessions answered", str(sessions))
    add_memory_rows(
        mem, "peak RSS, app process (server)", peak, servers, "peak RSS, total (budget 4096 MB)"
    )
    console.print(mem)
    return {"terminal": term, "web": web, "peak_mb": peak, "servers_mb": servers}
