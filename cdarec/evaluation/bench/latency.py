"""Evaluation: `cdarec bench latency`, cdarec beside a cloud-only and a device-only agent (Protocol
C).

The same turns - Protocol A's users from the fixed LLM sample, each with its 20
candidates as the turn's scope (so NDCG@10 is measured on exactly these turns) - run
through three configurations in one process, one after another:

  cloud-only   every sub-task by the cloud LLM, one after another, the raw history sent
               to the cloud (``cdarec.evaluation.baselines.cloud_only``; no plan reuse)
  cdarec       the graph: planned (plans reused per user state and request kind),
               cloud and device branches in parallel, device model and SLM on the device
  device-only  the same graph with the device SLM doing the cloud LLM's work and a fixed
               plan: nothing leaves the device

What reaches the cloud is counted by callbacks on the cloud model and on the tools
(`CloudRecorder`): prompt and tool-input bytes, cloud tokens, and the bytes of raw
history in them (the user's watched titles found verbatim, except the turn's own
candidates, which are public ids the caller sends). Each configuration first
runs one warm-up turn (models loaded, caches filled; reported as "first turn"), then the
measured turns. The device's peak memory is the app process's peak RSS during the
configuration (the embedded cloud server is the cloud's, not counted); cloud-only runs
first so that the device model is not loaded yet while it runs.
"""

from __future__ import annotations

import contextlib
import os
import statistics
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
from langchain_core.callbacks import BaseCallbackHandler
from rich.console import Console
from rich.table import Table

from cdarec.evaluation.bench.turns import peak_rss_mb, percentile
from cdarec.evaluation.harness import ProtocolA, bench_resources, prepare_graph
from cdarec.evaluation.protocols.sampled import ranking_scores
from cdarec.evaluation.report import settings_summary, write_report
from cdarec.graph.runtime import Resources
from cdarec.seqrec.metrics import label_ranks, ndcg_at
from cdarec.settings import Settings, slug
from cdarec.tracing import run_callbacks

CONFIGS = ("cloud-only", "cdarec", "device-only")
COLOURS = {"cloud": "#2b7bb9", "device": "#9b2f8f"}


class CloudRecorder(BaseCallbackHandler):
    """Counts what is sent to the cloud. Attached to the cloud chat model (prompts,
    tokens) and to a run's callbacks for tool calls (the cloud's tools); the copy on a
    run ignores model events, so a device model's prompt is never counted."""

    def __init__(self, *, models: bool) -> None:
        self._models = models
        self.titles: list[str] = []
        self.reset()

    @property
    def ignore_llm(self) -> bool:
        return not self._models

    @property
    def ignore_chat_model(self) -> bool:
        return not self._models

    def reset(self, titles: list[str] | None = None) -> None:
        if titles is not None:
            self.titles = titles
        self.sent_bytes = self.history_bytes = 0
        self.tokens_in = self.tokens_out = self.calls = 0

    def _scan(self, text: str) -> None:
        self.sent_bytes += len(text.encode("utf-8"))
        self.history_bytes += sum(len(t.encode("utf-8")) for t in self.titles if t in text)

    def on_chat_model_start(self, serialized: Any, messages: Any, **kw: Any) -> None:
        for batch in messages:
            self._scan("\n".join(str(m.content) for m in batch))
            self.calls += 1

    def on_llm_end(self, response: Any, **kw: Any) -> None:
        for gens in response.generations:
            for g in gens:
                meta = getattr(getattr(g, "message", None), "usage_metadata", None) or {}
                self.tokens_in += int(meta.get("input_tokens", 0) or 0)
                self.tokens_out += int(meta.get("output_tokens", 0) or 0)

    def on_tool_start(self, serialized: Any, input_str: str, **kw: Any) -> None:
        self._scan(input_str)


@dataclass
class Turn:
    user: str
    wall_s: float
    first_item_s: float
    tokens_in: int
    tokens_out: int
    sent_bytes: int
    history_bytes: int
    rank: int  # the label's rank among the 20 (1 = top)
    nodes: dict[str, float]  # node -> ms
    trace: list[dict[str, Any]] = field(default_factory=list, repr=False)


@dataclass
class ConfigResult:
    config: str
    first_turn_s: float
    turns: list[Turn]
    peak_rss_mb: float
    models: str

    def walls(self) -> list[float]:
        return [t.wall_s for t in self.turns]

    def summary(self) -> dict[str, float]:
        n = max(len(self.turns), 1)
        ranks = np.array([t.rank - 1 for t in self.turns])  # ndcg_at takes 0-based ranks
        return {
            "p50_s": statistics.median(self.walls()) if self.turns else float("nan"),
            "p95_s": percentile(self.walls(), 0.95),
            "first_item_p50_s": statistics.median(t.first_item_s for t in self.turns)
            if self.turns
            else float("nan"),
            "cloud_tokens_in": sum(t.tokens_in for t in self.turns) / n,
            "cloud_tokens_out": sum(t.tokens_out for t in self.turns) / n,
            "cloud_bytes": sum(t.sent_bytes for t in self.turns) / n,
            "history_bytes": sum(t.history_bytes for t in self.turns) / n,
            "ndcg10": 100 * ndcg_at(ranks, (10,))[10] if len(ranks) else float("nan"),
            "peak_rss_mb": self.peak_rss_mb,
        }


def _reset_peak_rss() -> None:
    """Linux: writing 5 to clear_refs resets the peak RSS (VmHWM) of this process."""
    with contextlib.suppress(OSError):
        Path("/proc/self/clear_refs").write_text("5")


def _with_recorder(llm: Any, recorder: CloudRecorder) -> Any:
    """The same cloud model client, reporting to ``recorder`` (model-level callbacks)."""
    return replace(llm, chat=llm.chat.model_copy(update={"callbacks": [recorder]}))


def run_config(
    config: str,
    proto: ProtocolA,
    warmup: str,
    users: list[str],
    base: Resources,
    console: Console,
) -> ConfigResult:
    ds = proto.ds
    _reset_peak_rss()
    llm_rec, tool_rec = CloudRecorder(models=True), CloudRecorder(models=False)
    graph, settings, _ = prepare_graph(
        config, proto, [warmup, *users], base, wrap_cloud=lambda llm: _with_recorder(llm, llm_rec)
    )
    callbacks = [*run_callbacks(), *([tool_rec] if config != "device-only" else [])]
    first_turn = 0.0
    turns: list[Turn] = []
    for n, u in enumerate([warmup, *users]):
        cands = [ds.items[int(i)].item_id for i in proto.candidates[u]]
        # The raw history, minus the turn's own candidates: those the caller sends with
        # the turn as public catalogue ids (in ML-1M an id is the title), so finding one
        # in a tool call says nothing about what the user watched.
        scope = set(proto.candidates[u].tolist())
        titles = [ds.items[int(i)].label() for i in proto.histories[u] if int(i) not in scope]
        llm_rec.reset(titles)
        tool_rec.reset(titles)
        first, values = None, {}
        t0 = time.perf_counter()
        for mode, chunk in graph.stream(
            {"request": "", "scope": cands},
            {"configurable": {"thread_id": f"latency-{config}-{u}"}, "callbacks": callbacks},
            context=settings.model_copy(update={"user_id": u}),
            stream_mode=["custom", "values"],
        ):
            if mode == "values":
                values = chunk
            elif first is None and "first_items" in chunk:
                first = time.perf_counter() - t0
        wall = time.perf_counter() - t0
        if n == 0:
            first_turn = wall
            continue
        label = int(np.flatnonzero(proto.candidates[u] == int(ds.sequence(u)[-1]))[0])
        scores = ranking_scores(values, cands)
        rank = int(label_ranks(scores[None, :], np.array([label]))[0]) + 1
        trace = values.get("trace") or []
        turns.append(
            Turn(
                user=u,
                wall_s=wall,
                first_item_s=first if first is not None else wall,
                tokens_in=llm_rec.tokens_in,
                tokens_out=llm_rec.tokens_out,
                sent_bytes=llm_rec.sent_bytes + tool_rec.sent_bytes,
                history_bytes=llm_rec.history_bytes + tool_rec.history_bytes,
                rank=rank,
                nodes={r.node: float(r.ms) for r in trace},
                trace=[
                    {
                        "node": r.node,
                        "side": "device" if config == "device-only" else r.side,
                        "start": r.start,
                        "end": r.end,
                    }
                    for r in trace
                ],
            )
        )
        console.print(
            f"[dim]{config:11} turn {len(turns)}/{len(users)}: {wall:5.1f} s, first item "
            f"{turns[-1].first_item_s:4.1f} s, rank {rank}[/dim]"
        )
    models = (
        {base.cloud.cloud_llm.name} if config == "cloud-only" else {base.device.device_llm.name}
    )
    if config == "cdarec":
        models.add(base.cloud.cloud_llm.name)
    return ConfigResult(
        config, first_turn, turns, peak_rss_mb(os.getpid()), ", ".join(sorted(models))
    )


def run(
    settings: Settings,
    turns: int,
    seed: int,
    out_dir: Path,
    console: Console,
    configs: tuple[str, ...] = CONFIGS,
    resources: Resources | None = None,
) -> list[ConfigResult]:
    base = bench_resources(settings, console, resources)
    proto = ProtocolA.build(base.dataset, max(turns + 1, 200), seed)
    if len(proto.sample) < turns + 1:
        raise ValueError(f"{proto.ds.name} has {len(proto.sample)} test users; need {turns + 1}")
    warmup, users = proto.sample[turns], proto.sample[:turns]
    console.print(
        f"Protocol C on {proto.ds.name}: {turns} turns (Protocol A users from the "
        f"seed-{seed} sample, 20 candidates each, no request) + 1 warm-up turn per configuration"
    )
    results = [run_config(c, proto, warmup, users, base, console) for c in configs]
    console.print(table(results))
    write_results(results, proto, settings, seed, out_dir, console)
    return results


def table(results: list[ConfigResult]) -> Table:
    t = Table(title="cdarec bench latency (Protocol C): per turn, the same turns for each")
    t.add_column("measure")
    for r in results:
        t.add_column(r.config, justify="right")
    sums = [r.summary() for r in results]

    def row(name: str, fmt: str, key: str) -> None:
        t.add_row(name, *(fmt.format(s[key]) for s in sums))

    t.add_row("turns measured", *(str(len(r.turns)) for r in results))
    t.add_row("first turn (warm-up)", *(f"{r.first_turn_s:.1f} s" for r in results))
    row("wall p50", "{:.2f} s", "p50_s")
    row("wall p95", "{:.2f} s", "p95_s")
    row("first item on screen p50", "{:.2f} s", "first_item_p50_s")
    row("cloud prompt tokens / turn", "{:.0f}", "cloud_tokens_in")
    row("cloud completion tokens / turn", "{:.0f}", "cloud_tokens_out")
    row("bytes sent to the cloud / turn", "{:.0f}", "cloud_bytes")
    row("raw history bytes to the cloud / turn", "{:.0f}", "history_bytes")
    row("device peak RSS (app process)", "{:.0f} MB", "peak_rss_mb")
    row("NDCG@10 x100 (same turns)", "{:.2f}", "ndcg10")
    nodes = sorted({n for r in results for tr in r.turns for n in tr.nodes})
    for node in nodes:
        cells = []
        for r in results:
            ms = [tr.nodes[node] for tr in r.turns if node in tr.nodes]
            cells.append(f"{statistics.median(ms):.0f} ms" if ms else "-")
        t.add_row(f"  {node} median", *cells)
    t.add_row("models", *(r.models for r in results))
    base = {r.config: r.summary() for r in results}
    if "cdarec" in base and "cloud-only" in base:
        c, o = base["cdarec"], base["cloud-only"]
        tokens_c = c["cloud_tokens_in"] + c["cloud_tokens_out"]
        tokens_o = o["cloud_tokens_in"] + o["cloud_tokens_out"]
        t.caption = (
            f"cdarec vs cloud-only: {o['p50_s'] / max(c['p50_s'], 1e-9):.1f}x faster (p50); "
            f"cloud tokens {100 * tokens_c / max(tokens_o, 1):.0f}% of cloud-only's"
        )
    return t


def write_results(
    results: list[ConfigResult],
    proto: ProtocolA,
    settings: Settings,
    seed: int,
    out_dir: Path,
    console: Console,
) -> None:
    stem = out_dir / f"latency-{slug(proto.ds.name)}"
    payload = {
        "protocol": "C",
        "dataset": proto.ds.name,
        "seed": seed,
        "settings": settings_summary(
            settings, ("device_model", "cloud_model", "sequence_model", "judge_top", "llm_threads")
        ),
        "configs": [
            {
                **{k: v for k, v in asdict(r).items() if k != "turns"},
                "summary": r.summary(),
                "turns": [asdict(t) for t in r.turns],
            }
            for r in results
        ],
    }
    timeline = Path(f"{stem}-timeline.png")
    write_report(stem, None, payload, lambda png: plot(results, png, timeline), console)


def plot(results: list[ConfigResult], bars_png: Path, timeline_png: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    sums = [r.summary() for r in results]
    names = [r.config for r in results]
    panels = [
        ("wall p50 per turn (s)", [s["p50_s"] for s in sums]),
        ("cloud tokens per turn", [s["cloud_tokens_in"] + s["cloud_tokens_out"] for s in sums]),
        ("raw history bytes to the cloud", [s["history_bytes"] for s in sums]),
        ("NDCG@10 x100", [s["ndcg10"] for s in sums]),
    ]
    fig, axes = plt.subplots(1, len(panels), figsize=(13, 3.2))
    colours = {"cloud-only": "#2b7bb9", "cdarec": "#3a9d5d", "device-only": "#9b2f8f"}
    for ax, (title, vals) in zip(axes, panels, strict=True):
        ax.bar(names, vals, color=[colours.get(n, "#888") for n in names])
        ax.set_title(title, fontsize=10)
        ax.tick_params(axis="x", labelsize=8)
        for i, v in enumerate(vals):
            ax.text(
                i, v, f"{v:.1f}" if v < 100 else f"{v:.0f}", ha="center", va="bottom", fontsize=8
            )
    fig.tight_layout()
    fig.savefig(bars_png, dpi=120)
    plt.close(fig)

    cd = next((r for r in results if r.config == "cdarec" and r.turns), None)
    if cd is None:
        return
    turn = sorted(cd.turns, key=lambda t: t.wall_s)[len(cd.turns) // 2]  # the median turn
    t0 = min(x["start"] for x in turn.trace)
    rows = sorted(turn.trace, key=lambda x: x["start"])
    fig, ax = plt.subplots(figsize=(9, 0.45 * len(rows) + 1.2))
    for i, x in enumerate(rows):
        ax.barh(i, max(x["end"] - x["start"], 0.01), left=x["start"] - t0, color=COLOURS[x["side"]])
        ax.text(
            x["end"] - t0 + 0.02,
            i,
            f"{1000 * (x['end'] - x['start']):.0f} ms",
            va="center",
            fontsize=8,
        )
    ax.set_yticks(range(len(rows)), [f"{x['node']} ({x['side']})" for x in rows], fontsize=8)
    ax.invert_yaxis()
    ax.axvline(turn.first_item_s, color="#3a9d5d", linestyle="--", linewidth=1)
    ax.text(turn.first_item_s, -0.6, " first items shown", color="#3a9d5d", fontsize=8)
    ax.set_xlabel("seconds since the turn started (blue: cloud, purple: device)")
    ax.set_title(f"one cdarec turn (median of {len(cd.turns)}): {turn.wall_s:.2f} s")
    fig.tight_layout()
    fig.savefig(timeline_png, dpi=120)
    plt.close(fig)
