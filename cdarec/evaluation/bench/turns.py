"""Evaluation: `cdarec bench turns`, wall time of chat turns on the configured models.

Runs a first (cold) turn, then N warm turns with varied requests for one user, and
prints a table: p50/p95 wall latency, per-node medians with their side, and the
process's peak memory (the app, including the in-process device model; the embedded
cloud server's own process is reported separately). With ``out`` it also writes the
turns as JSON and a plot: one bar per turn, split into its nodes, beside the budget.
"""

from __future__ import annotations

import json
import resource
import statistics
import time
from pathlib import Path
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


def rss_mb(pid: int, key: str = "VmHWM") -> float:
    """A process's memory in MB from /proc: its peak RSS (``VmHWM``) or current
    (``VmRSS``); NaN when the process is gone."""
    try:
        with open(f"/proc/{pid}/status") as fh:
            for line in fh:
                if line.startswith(f"{key}:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return float("nan")


def peak_rss_mb(pid: int) -> float:
    return rss_mb(pid, "VmHWM")


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


WARM_BUDGET_S = 8.0  # the foundation issue's warm-turn median budget


def plot_turns(
    records: list[dict[str, Any]], title: str, path: Path, budget_s: float = WARM_BUDGET_S
) -> None:
    """One horizontal bar per turn: its nodes' wall times stacked (cloud blue, device
    orange; parallel nodes overlap in wall time, so a bar can exceed the turn), the turn's
    wall time as a tick, and the warm-median budget as a line."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    palette = {
        "cloud": ["#1f5f99", "#2b7bb9", "#6baed6", "#9ecae1"],
        "device": ["#d95f02", "#fd8d3c", "#fdae6b", "#fdd0a2"],
    }
    nodes: dict[tuple[str, str], str] = {}
    for rec in records:
        for n in rec["nodes"]:
            key = (n["node"], n["side"])
            if key not in nodes:
                used = sum(1 for _, side in nodes if side == n["side"])
                nodes[key] = palette[n["side"]][used % 4]
    fig, ax = plt.subplots(figsize=(12, 0.32 * len(records) + 1.8))
    for i, rec in enumerate(records):
        left = 0.0
        for n in rec["nodes"]:
            if n["ms"] < 1:
                continue
            ax.barh(i, n["ms"] / 1000, left=left, color=nodes[(n["node"], n["side"])])
            left += n["ms"] / 1000
        ax.plot([rec["wall_s"]] * 2, [i - 0.4, i + 0.4], color="black", lw=1.5)
    ax.axvline(budget_s, color="#c0392b", ls="--", lw=1)
    ax.set_yticks(
        range(len(records)),
        [f"{r['label']}: {(r['request'] or '(no request)')[:40]}" for r in records],
        fontsize=7,
    )
    ax.invert_yaxis()
    ax.set_xlabel(
        f"seconds (black tick: the turn's wall time; red: {budget_s:g} s warm-median budget)"
    )
    handles = [
        plt.Rectangle((0, 0), 1, 1, color=c, label=f"{node} ({side})")
        for (node, side), c in nodes.items()
    ]
    ax.legend(handles=handles, fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    ax.set_title(title, fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def run(
    settings: Settings, turns: int, console: Console, out: Path | None = None
) -> dict[str, Any]:
    from cdarec.service.chat import ChatSession

    session = ChatSession(settings, thread=None)
    records: list[dict[str, Any]] = []

    def turn(label: str, request: str) -> float:
        t = time.perf_counter()
        values = session.turn(request)
        wall = time.perf_counter() - t
        nodes = [
            {"node": r.node, "side": r.side, "ms": r.ms, "status": r.status}
            for r in values.get("trace") or []
        ]
        records.append({"label": label, "request": request, "wall_s": wall, "nodes": nodes})
        return wall

    cold = turn("cold", "")
    walls: list[float] = []
    for i in range(turns):
        walls.append(turn(f"warm {i + 1}", REQUESTS[i % len(REQUESTS)]))
        console.print(f"[dim]turn {i + 1}/{turns}: {walls[-1]:.1f} s[/dim]")
    per_node: dict[tuple[str, str], list[float]] = {}
    for rec in records[1:]:  # the warm turns
        for n in rec["nodes"]:
            per_node.setdefault((n["node"], n["side"]), []).append(n["ms"])
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
    result = {
        "device_model": settings.device_model,
        "cloud_model": settings.cloud_model,
        "user": settings.user_id,
        "cold_s": cold,
        "walls_s": walls,
        "warm_p50_s": statistics.median(walls),
        "warm_p95_s": percentile(walls, 0.95),
        "peak_app_mb": peak_app,
        "servers_mb": servers,
        "turns": records,
    }
    if out is not None:
        out.mkdir(parents=True, exist_ok=True)
        (out / "turns.json").write_text(json.dumps(result, indent=2))
        title = (
            f"cdarec bench turns: {settings.device_model} / {settings.cloud_model}, "
            f"warm p50 {result['warm_p50_s']:.1f} s"
        )
        plot_turns(records, title, out / "turns.png")
        console.print(f"wrote {out / 'turns.json'} and {out / 'turns.png'}")
    return result
