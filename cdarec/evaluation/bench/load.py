"""`cdarec bench load`: concurrent signed-in sessions through the web API on loopback.

The app (`cdarec serve`'s, with its access control) runs in this process under uvicorn;
an httpx asyncio driver signs ``sessions`` device users in with API tokens of their own
(made for the run, removed after), and each drives ``turns`` turns over the streaming
turn endpoint, all at once. First, one session alone gives the baseline (at least
``BASELINE_TURNS`` turns). Reported: throughput, p50/p95 per turn, errors, memory over
time (this process, which holds the device model, plus the embedded cloud server), as a
table, JSON and a plot.

How turns queue: every session's turn runs in its own thread, but the device model is
one ``Llama`` behind a lock and the embedded cloud server answers one request at a
time, so K turns that all call the models wait for each other there (measured: 20
sessions at once, p50 41 s, 10x one session's p95). The device therefore counts its
turns in flight (``device.context``): a turn that starts while two others are still
running is placed as on a busy device, and ranks with its structured models and fact
reasons instead of queueing for the device model (``model judged`` in the table says
how many turns still had a model's judgement).
"""

from __future__ import annotations

import asyncio
import json
import threading
import time
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from cdarec.evaluation.bench.turns import percentile, rss_mb
from cdarec.evaluation.report import settings_summary, write_report
from cdarec.settings import Settings

REQUESTS = [
    "a comedy for tonight",
    "something like Toy Story",
    "a tense thriller from the 1990s",
    "",
    "a romantic film, nothing scary",
]
TOKEN_NAME = "cdarec bench load"
BASELINE_TURNS = 10


class MemorySampler(threading.Thread):
    """RSS of this process and of each embedded cloud server, every ``every_s``."""

    def __init__(self, every_s: float = 0.5) -> None:
        super().__init__(daemon=True)
        self.every_s = every_s
        self.samples: list[tuple[float, float, float]] = []  # (t, app MB, servers MB)
        self.stop = threading.Event()
        self.t0 = time.monotonic()

    def run(self) -> None:
        import os

        from cdarec.llm.server import EmbeddedServer

        while not self.stop.is_set():
            servers = sum(
                rss_mb(s.proc.pid, "VmRSS")
                for s in list(EmbeddedServer._instances.values())
                if s.proc is not None and s.alive()
            )
            app = rss_mb(os.getpid(), "VmRSS")
            self.samples.append((time.monotonic() - self.t0, app, servers))
            self.stop.wait(self.every_s)


async def _session(client: Any, token: str, turns: int, offset: int) -> list[dict[str, Any]]:
    headers = {"authorization": f"Bearer {token}"}
    out: list[dict[str, Any]] = []
    try:
        r = await client.post("/api/sessions", headers=headers)
        r.raise_for_status()
        thread = r.json()["thread"]
    except Exception as err:  # counted, not raised: the table reports errors
        return [{"ok": False, "error": f"new session: {err}", "s": float("nan")}]
    for i in range(turns):
        message = REQUESTS[(offset + i) % len(REQUESTS)]
        t0 = time.perf_counter()
        ok, error, judge, event = False, "", "", ""
        try:
            async with client.stream(
                "POST", f"/api/sessions/{thread}/turn", json={"message": message}, headers=headers
            ) as resp:
                resp.raise_for_status()
                async for line in resp.aiter_lines():
                    if line.startswith("event: "):
                        event = line[7:].strip()
                        ok = ok or event == "result"
                        error = "error event" if event == "error" else error
                    elif line.startswith("data: ") and event == "result":
                        judge = _judge(json.loads(line[6:]))
        except Exception as err:
            error = f"{type(err).__name__}: {err}"
        out.append(
            {
                "ok": ok,
                "error": error,
                "s": time.perf_counter() - t0,
                "request": message,
                "judge": judge,
            }
        )
    return out


def _judge(result: dict[str, Any]) -> str:
    """Who judged a turn's list, from its result: the plan's placement, and whether the
    device fell back to facts when its model was tried."""
    placement = ((result.get("plan") or {}).get("placement") or {}).get("judge") or "?"
    sources = {r.get("reason_source") for r in result.get("ranking") or []}
    return "device-facts" if placement == "device-slm" and sources == {"facts"} else placement


async def _drive(url: str, tokens: list[str], turns: int) -> tuple[list[dict[str, Any]], float]:
    import httpx

    limits = httpx.Limits(max_connections=len(tokens) + 4)
    async with httpx.AsyncClient(base_url=url, timeout=900, limits=limits) as client:
        t0 = time.perf_counter()
        results = await asyncio.gather(
            *(_session(client, tok, turns, i) for i, tok in enumerate(tokens))
        )
        wall = time.perf_counter() - t0
    return [r for rs in results for r in rs], wall


def _summary(rows: list[dict[str, Any]], wall: float, sessions: int) -> dict[str, Any]:
    ok = [r["s"] for r in rows if r["ok"]]
    return {
        "sessions": sessions,
        "turns": len(rows),
        "errors": sum(not r["ok"] for r in rows),
        "wall_s": round(wall, 2),
        "throughput_turns_per_min": round(60 * len(ok) / wall, 2) if wall else 0.0,
        "p50_s": round(percentile(ok, 0.5), 2),
        "p95_s": round(percentile(ok, 0.95), 2),
        "judged_by_model": sum(r.get("judge") in ("device-slm", "cloud-llm") for r in rows),
    }


def run(
    settings: Settings, sessions: int, turns: int, console: Console, out: Path
) -> dict[str, Any]:
    from cdarec.evaluation.bench.web import serve_in_thread
    from cdarec.graph.runtime import get_resources
    from cdarec.service.access import Access
    from cdarec.web.server import create_app

    res = get_resources(settings)
    users = res.dataset.users[:sessions]
    if len(users) < sessions:
        raise ValueError(f"the data set has {len(users)} users; --sessions {sessions} needs more")
    access = Access(settings.home)
    tokens = [access.new_token(u, name=TOKEN_NAME) for u in users]
    app = create_app(settings)
    server, url = serve_in_thread(app)
    sampler = MemorySampler()
    sampler.start()
    phases: dict[str, Any] = {}
    try:
        console.print("[dim]warm-up: one turn (loads the models)[/dim]")
        asyncio.run(_drive(url, tokens[:1], 1))
        # A p95 of at least 10 turns (of 3 it would be the slowest one).
        alone = max(turns, BASELINE_TURNS)
        console.print(f"[dim]baseline: 1 session x {alone} turns[/dim]")
        rows, wall = asyncio.run(_drive(url, tokens[:1], alone))
        phases["single"] = {**_summary(rows, wall, 1), "rows": rows}
        mark = time.monotonic() - sampler.t0
        console.print(f"[dim]load: {sessions} sessions x {turns} turns, all at once[/dim]")
        rows, wall = asyncio.run(_drive(url, tokens, turns))
        phases["load"] = {**_summary(rows, wall, sessions), "rows": rows, "started_s": mark}
    finally:
        sampler.stop.set()
        sampler.join(timeout=5)
        server.should_exit = True
        for u in users:
            access.revoke_tokens(u, TOKEN_NAME)
    single, load = phases["single"], phases["load"]
    ratio = load["p95_s"] / single["p95_s"] if single["p95_s"] else float("nan")
    mem = [a + s for _, a, s in sampler.samples]
    load_mem = [a + s for t, a, s in sampler.samples if t >= load["started_s"]] or mem
    table = Table(title=f"cdarec bench load: {settings.device_model} / {settings.cloud_model}")
    for col in ("", "sessions", "turns", "errors", "turns/min", "p50", "p95", "model judged"):
        table.add_column(col, justify="right" if col else "left")
    for name, ph in (("one session", single), ("concurrent", load)):
        table.add_row(
            name,
            str(ph["sessions"]),
            str(ph["turns"]),
            str(ph["errors"]),
            f"{ph['throughput_turns_per_min']:.1f}",
            f"{ph['p50_s']:.2f} s",
            f"{ph['p95_s']:.2f} s",
            f"{ph['judged_by_model']} of {ph['turns']}",
        )
    console.print(table)
    verdict = "met" if ratio <= 3 and load["errors"] == 0 else "NOT met"
    summary = {
        "p95_ratio": round(ratio, 2),
        "target": "0 errors, p95 within 3x of one session's, memory bounded",
        "verdict": verdict,
        "memory_start_mb": round(mem[0], 0) if mem else None,
        "memory_peak_mb": round(max(mem), 0) if mem else None,
        "memory_end_of_load_mb": round(load_mem[-1], 0) if load_mem else None,
    }
    console.print(
        f"p95 under load / alone: {ratio:.1f}x (target 3x: {verdict}); memory "
        f"{summary['memory_start_mb']} MB at start, peak {summary['memory_peak_mb']} MB, "
        f"{summary['memory_end_of_load_mb']} MB at the end (app + embedded cloud server)"
    )
    payload = {
        "settings": settings_summary(settings, ("dataset", "device_model", "cloud_model")),
        "single": single,
        "load": load,
        "summary": summary,
        "memory": [[round(t, 2), round(a, 1), round(s, 1)] for t, a, s in sampler.samples],
    }

    def plot(path: Path) -> None:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        fig, (left, right) = plt.subplots(1, 2, figsize=(11, 3.8))
        ts = [t for t, _, _ in sampler.samples]
        left.plot(ts, [a for _, a, _ in sampler.samples], label="app (device model)")
        left.plot(ts, mem, label="app + cloud server")
        left.axvline(load["started_s"], color="#999", ls="--", lw=1)
        left.set(xlabel="seconds", ylabel="RSS, MB", title="memory over the run")
        left.legend(fontsize=8)
        data = [[r["s"] for r in ph["rows"] if r["ok"]] for ph in (single, load)]
        right.boxplot(data, tick_labels=["one session", f"{sessions} at once"])
        right.set(ylabel="seconds per turn", title=f"turn latency (p95 ratio {ratio:.1f}x)")
        fig.tight_layout()
        fig.savefig(path, dpi=110)
        plt.close(fig)

    write_report(out / "load", None, payload, plot, console)
    return json.loads(json.dumps(payload, default=str))
