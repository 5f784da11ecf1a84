"""`cdarec bench turns`: wall time of chat turns on the configured models.

Runs a first (cold) turn, then N warm turns with varied requests for one user, and
prints a table: p50/p95 wall latency, per-node medians with their side, and the
process's peak memory (the app, including the in-process device model; the embedded
cloud server's own process is reported separately).
"""

from __future__ import annotations

import resource
import statistics
import time
from typing import Any

from rich.console import Console
from rich.table import Table

from cdarec.settings import Settings

REQUESTS = [
    "something like Alien but lighter",
    "",
    "a comedy for tonight",
    "more classic films please",
    "an animated movie for the family",
    "",
    "a tense thriller",
    "something romantic",
]


def peak_rss_mb(pid: int) -> float:
    try:
        with open(f"/proc/{pid}/status") as fh:
            for line in fh:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return float("nan")


def peak_memory() -> tuple[float, dict[str, float]]:
    """Peak RSS in MB of this process and of each embedded cloud server's process."""
    from cdarec.llm.server import EmbeddedServer

    app = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    servers = {
        s.alias: peak_rss_mb(s.proc.pid)
        for s in EmbeddedServer._instances.values()
        if s.proc is not None
    }
    return app, servers


def add_memory_rows(
    table: Table, app_label: str, app_mb: float, servers: dict[str, float], total_label: str
) -> None:
    """The app's peak, each embedded server's, and their sum, as rows of ``table``."""
    table.add_row(app_label, f"{app_mb:.0f} MB")
    for alias, mb in servers.items():
        table.add_row(f"peak RSS, embedded cloud server ({alias})", f"{mb:.0f} MB")
    table.add_row(total_label, f"{app_mb + sum(servers.values()):.0f} MB")


def percentile(values: list[float], q: float) -> float:
    s = sorted(values)
    if not s:
        return float("nan")
    k = (len(s) - 1) * q
    lo, hi = int(k), min(int(k) + 1, len(s) - 1)
    return s[lo] + (s[hi] - s[lo]) * (k - lo)


def run(settings: Settings, turns: int, console: Console) -> dict[str, Any]:
    from cdarec.app import ChatSession

    session = ChatSession(settings, thread=None)
    t0 = time.perf_counter()
    session.turn("")
    cold = time.perf_counter() - t0
    walls: list[float] = []
    per_node: dict[tuple[str, str], list[float]] = {}
    for i in range(turns):
        t = time.perf_counter()
        values = session.turn(REQUESTS[i % len(REQUESTS)])
        walls.append(time.perf_counter() - t)
        for r in values.get("trace") or []:
            per_node.setdefault((r.node, r.side), []).append(r.ms)
        console.print(f"[dim]turn {i + 1}/{turns}: {walls[-1]:.1f} s[/dim]")
    peak_app, servers = peak_memory()
    table = Table(
        title=f"cdarec bench turns: {settings.device_model} (device) / "
        f"{settings.cloud_model} (cloud), user {settings.user_id}"
    )
    table.add_column("measure")
    table.add_column("value", justify="right")
    table.add_row("first turn (cold: loads models)", f"{cold:.1f} s")
    table.add_row(f"warm turn p50 ({turns} turns)", f"{statistics.median(walls):.1f} s")
    table.add_row("warm turn p95", f"{percentile(walls, 0.95):.1f} s")
    for (node, side), ms in sorted(per_node.items(), key=lambda kv: -statistics.median(kv[1])):
        table.add_row(f"  {node} ({side}) median", f"{statistics.median(ms):.0f} ms")
    add_memory_rows(table, "peak RSS, app process", peak_app, servers, "peak RSS, app + servers")
    console.print(table)
    return {"cold_s": cold, "walls_s": walls, "peak_app_mb": peak_app, "servers_mb": servers}
