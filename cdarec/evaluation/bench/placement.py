"""Evaluation: `cdarec bench placement`, every placement of the movable sub-tasks under every
condition of the network, the cloud and the device, made on loopback.

The cloud runs as servers, as it would across a network: the cloud LLM behind its
OpenAI-compatible llama.cpp server, the catalogue in a Chroma server (`chroma run`, started
here on a copy of the embedded catalogue), each reached through a ``LinkProxy``. Conditions
(``CONDITIONS``): a normal link; a slow link (each direction delayed, bandwidth capped); a
slow cloud (every model call held in the cloud's queue); the cloud unreachable (both
addresses refuse); a busy device (processes that keep the CPU busy beside cdarec; on this
one machine they slow the cloud's server too).

Each user of a Protocol R sample has three turns, through the real graph with their device
memory as it was before the held-out item: their Protocol R request, an open request in
plain words the code cannot read whole (the cloud LLM's work), and an empty turn (their
taste, no request, as in Protocols A/B). Per condition and placement: p50/p95 turn time,
first items (the fused list, streamed), cloud tokens and calls, share of turns answered,
HR@10/NDCG@10 and satisfaction on the requests, HR@10/NDCG@10 on the empty turns, and where
each sub-task ran. Every placement of a condition starts from a fresh device (its context
measurements, its index of recent candidates) and the same cloud.
"""

from __future__ import annotations

import shutil
import statistics
import tempfile
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from rich.console import Console
from rich.table import Table

from cdarec.evaluation.bench.conditions import CpuHog, Link, LinkProxy
from cdarec.evaluation.bench.turns import percentile
from cdarec.evaluation.harness import ProtocolA, bench_resources, eval_records
from cdarec.evaluation.protocols.full import metrics
from cdarec.evaluation.protocols.request import K, make_ask
from cdarec.evaluation.report import progress, settings_summary, write_report
from cdarec.graph.runtime import Resources, use_resources
from cdarec.llm.linkstats import STATS
from cdarec.llm.server import free_port
from cdarec.service import engines
from cdarec.service.engines import Engine
from cdarec.settings import Settings, slug


@dataclass(frozen=True)
class Condition:
    link: Link | None  # None: unreachable
    hogs: int = 0
    says: str = ""


CONDITIONS: dict[str, Condition] = {
    "normal": Condition(Link(), says="loopback through the proxy, no delay"),
    "slow-link": Condition(
        Link(delay_s=0.3, bytes_per_s=125_000), says="300 ms each way, 1 Mbit/s"
    ),
    "slow-cloud": Condition(Link(hold_s=6.0), says="every cloud model call queued 6 s"),
    "unreachable": Condition(None, says="both cloud addresses refuse connections"),
    "busy-device": Condition(Link(), hogs=2, says="2 busy processes beside cdarec"),
}
PLACEMENTS = ("default", "device", "lean-device", "adaptive")
# Open requests in the user's own words that leave words for a model to read.
OPEN_WORDS = (
    "something to cheer me up after a long week",
    "a film to watch with my parents on a quiet evening",
    "a slow, beautiful film that stays with you",
    "something with a great soundtrack and a big heart",
    "a clever film that makes me think",
)
SPEEDUP_TARGET = 1.5  # issue 20: slow link and busy device, adaptive vs default
WITHIN = 0.10  # adaptive p50 within 10% of the best fixed placement's


@dataclass
class Turn:
    user: str
    kind: str  # request | open | none
    text: str
    wall_s: float
    first_s: float
    answered: bool
    cloud_tokens: int
    cloud_calls: int
    sides: dict[str, str]
    rank: int  # of the held-out item in the top K (K = not in it)
    satisfied: float | None = None
    model_reasons: bool = False  # a model (the device's or the cloud's) wrote a shown reason
    nodes: list[dict[str, Any]] = field(default_factory=list)
    error: str = ""


def start_chroma(settings: Settings, ds: Any, workdir: Path, console: Console) -> Engine:
    """A Chroma server on loopback serving a copy of the embedded catalogue (completed if
    anything is missing), for the cloud to be reached over HTTP."""
    from cdarec.cloud.catalogue.store import Catalogue
    from cdarec.llm.embeddings import MiniLMEmbeddings

    path = workdir / "chroma"
    if settings.chroma_dir.exists():
        shutil.copytree(settings.chroma_dir, path)
    engine = engines.start_chroma(path)
    emb = MiniLMEmbeddings.from_home(settings.home, settings.embedder, threads=settings.llm_threads)
    cat = Catalogue(settings.chroma_dir, ds.name, settings.embedder, emb, engine.url)
    if cat.count() != ds.n_items:
        console.print(
            f"[dim]indexing the catalogue in the Chroma server ({ds.n_items} items)[/dim]"
        )
        cat.index(ds.items)
    return engine


def _stream_turn(
    graph: Any, request: str, cfg: dict[str, Any], context: Settings
) -> tuple[dict[str, Any], float, float]:
    """One turn, streamed: its values, wall time and time to the first items."""
    t0 = time.perf_counter()
    first: float | None = None
    values: dict[str, Any] = {}
    for mode, chunk in graph.stream(
        {"request": request}, cfg, context=context, stream_mode=["custom", "values"]
    ):
        if mode == "custom" and first is None and "first_items" in chunk:
            first = time.perf_counter() - t0
        elif mode == "values":
            values = chunk
    wall = time.perf_counter() - t0
    return values, wall, first if first is not None else wall


def run_placement(
    base: Resources,
    settings: Settings,
    proto: ProtocolA,
    users: list[str],
    asks: dict[str, Any],
    cloud_url: str,
    chroma_url: str,
    reachable: bool,
    tick: Callable[[], None],
) -> list[Turn]:
    """Every user's three turns under one placement, on a fresh device."""
    from langgraph.checkpoint.memory import InMemorySaver

    from cdarec.cloud.catalogue.store import Catalogue
    from cdarec.graph.builder import build_graph
    from cdarec.llm.factory import llama_server_client

    ds = base.dataset
    STATS.reset()
    cloud_llm = llama_server_client(
        settings.cloud_model, base.cloud.cloud_llm.name, f"{cloud_url}/v1", settings
    )
    catalogue = None
    if reachable:
        emb = base.cloud.catalogue.embeddings
        catalogue = Catalogue(settings.chroma_dir, ds.name, settings.embedder, emb, chroma_url)
    res = Resources(
        settings,
        device_llm=base.device.device_llm,
        cloud_llm=cloud_llm,
        records=eval_records(proto, users, base),
        dataset=ds,
        catalogue=catalogue,
        prompts=base.device.prompts,
        sequence_model=base.device.sequence_model,
    )
    use_resources(res)
    graph = build_graph(InMemorySaver())
    turns: list[Turn] = []
    for n, u in enumerate(users):
        label = int(ds.sequence(u)[-1])
        for kind, text in (
            ("request", asks[u].text),
            ("open", OPEN_WORDS[n % len(OPEN_WORDS)]),
            ("none", ""),
        ):
            cfg = {"configurable": {"thread_id": f"{settings.placement}-{u}-{kind}"}}
            error = ""
            try:
                values, wall, first = _stream_turn(
                    graph, text, cfg, settings.model_copy(update={"user_id": u})
                )
            except Exception as err:  # a turn that fails is counted as unanswered
                values, wall, first, error = {}, 0.0, 0.0, f"{type(err).__name__}: {err}"
            ranking = values.get("ranking") or []
            top = [ds.item_index[r.item_id] for r in ranking if r.item_id in ds.item_index]
            trace = values.get("trace") or []
            cloud = [r for r in trace if r.side == "cloud"]
            plan = values.get("plan")
            sat = None
            if kind == "request":
                a = asks[u]
                like = ds.items[a.like].genres if a.like is not None else ()
                want = [ds.items[i] for i in top[:K]]
                sat = (
                    float(np.mean([a.satisfied(it.genres, it.year, like) for it in want]))
                    if want
                    else 0.0
                )
            turns.append(
                Turn(
                    user=u,
                    kind=kind,
                    text=text,
                    wall_s=wall,
                    first_s=first,
                    answered=bool(ranking),
                    cloud_tokens=sum(r.tokens_in + r.tokens_out for r in cloud),
                    cloud_calls=sum(1 for r in cloud if r.model),
                    sides=plan.placement.sides() if plan is not None else {},
                    rank=top.index(label) if label in top[:K] else K,
                    satisfied=sat,
                    model_reasons=any(r.reason_source in ("slm", "cloud") for r in ranking),
                    nodes=[{"node": r.node, "side": r.side, "ms": r.ms} for r in trace],
                    error=error,
                )
            )
            tick()
    return turns


def summarise(turns: list[Turn]) -> dict[str, Any]:
    walls = [t.wall_s for t in turns if t.answered]
    req = [t for t in turns if t.kind == "request"]
    none = [t for t in turns if t.kind == "none"]
    hr_r, nd_r = metrics(np.array([t.rank for t in req])) if req else (float("nan"),) * 2
    hr_n, nd_n = metrics(np.array([t.rank for t in none])) if none else (float("nan"),) * 2
    sides: dict[str, dict[str, int]] = {}
    for t in turns:
        for task, side in t.sides.items():
            sides.setdefault(task, {}).setdefault(side, 0)
            sides[task][side] += 1

    def q(p: float) -> float:
        return percentile(walls, p) if walls else float("nan")

    return {
        "turns": len(turns),
        "answered": sum(t.answered for t in turns) / max(len(turns), 1),
        "p50_s": q(0.5),
        "p95_s": q(0.95),
        "first_p50_s": percentile([t.first_s for t in turns if t.answered], 0.5)
        if walls
        else float("nan"),
        "cloud_tokens_per_turn": statistics.fmean([t.cloud_tokens for t in turns]),
        "cloud_calls": sum(t.cloud_calls for t in turns),
        "request_hr10": hr_r,
        "request_ndcg10": nd_r,
        "satisfaction": statistics.fmean(sat)
        if (sat := [t.satisfied for t in req if t.satisfied is not None])
        else float("nan"),
        "empty_hr10": hr_n,
        "empty_ndcg10": nd_n,
        "model_reasons": sum(t.model_reasons for t in turns) / max(len(turns), 1),
        "sides": sides,
        "errors": sorted({t.error for t in turns if t.error}),
    }


def verdicts(results: dict[str, dict[str, dict[str, Any]]]) -> dict[str, str]:
    """Issue 20's targets, per condition, as measured."""
    out = {}
    for cond, by in results.items():
        if "adaptive" not in by:
            continue
        a = by["adaptive"]
        fixed = {p: s for p, s in by.items() if p != "adaptive" and s["answered"] == 1.0}
        says = []
        # Against the best fixed placement, and the best that keeps the device model's
        # judgement (lean-device writes no model reason: not the same product).
        for label, pool in (
            ("best fixed", fixed),
            (
                "best fixed with the judgement",
                {p: v for p, v in fixed.items() if p != "lean-device"},
            ),
        ):
            if not pool:
                continue
            best = min(pool, key=lambda p: pool[p]["p50_s"])
            ratio = a["p50_s"] / pool[best]["p50_s"]
            ok = ratio <= 1 + WITHIN
            says.append(
                f"p50 {a['p50_s']:.2f} s vs {label} ({best}) {pool[best]['p50_s']:.2f} s: "
                f"{ratio:.2f}x ({'met' if ok else 'NOT met'})"
            )
        if cond in ("slow-link", "busy-device") and "default" in by:
            speed = by["default"]["p50_s"] / a["p50_s"]
            ok = speed >= SPEEDUP_TARGET
            says.append(f"{speed:.2f}x faster than default ({'met' if ok else 'NOT met'})")
        if cond == "unreachable":
            says.append(
                f"answered {a['answered']:.0%} ({'met' if a['answered'] == 1.0 else 'NOT met'})"
            )
        out[cond] = "; ".join(says)
    return out


def _fmt(x: float, spec: str) -> str:
    return "-" if x != x else format(x, spec)  # NaN


def table(results: dict[str, dict[str, dict[str, Any]]], users: int) -> Table:
    t = Table(title=f"cdarec bench placement: {users} users x 3 turns per row")
    for col in (
        "condition",
        "placement",
        "p50",
        "p95",
        "first items p50",
        "answered",
        "cloud tok/turn",
        "R HR@10",
        "R NDCG@10",
        "satisf.",
        "empty HR@10",
        "model reasons",
    ):
        t.add_column(col, justify="left" if col in ("condition", "placement") else "right")
    for cond, by in results.items():
        for p, s in by.items():
            t.add_row(
                cond,
                p,
                f"{_fmt(s['p50_s'], '.2f')} s",
                f"{_fmt(s['p95_s'], '.2f')} s",
                f"{_fmt(s['first_p50_s'], '.2f')} s",
                f"{s['answered']:.0%}",
                f"{s['cloud_tokens_per_turn']:.0f}",
                _fmt(s["request_hr10"], ".3f"),
                _fmt(s["request_ndcg10"], ".3f"),
                _fmt(s["satisfaction"], ".2f"),
                _fmt(s["empty_hr10"], ".3f"),
                f"{s.get('model_reasons', float('nan')):.0%}",
            )
    return t


def plot(results: dict[str, dict[str, dict[str, Any]]], title: str, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    conds = list(results)
    places = sorted({p for by in results.values() for p in by}, key=PLACEMENTS.index)
    fig, axes = plt.subplots(1, 2, figsize=(12, 4.2))
    width = 0.8 / max(len(places), 1)
    for j, p in enumerate(places):
        xs = np.arange(len(conds)) + j * width
        p50 = [results[c].get(p, {}).get("p50_s", np.nan) for c in conds]
        p95 = [results[c].get(p, {}).get("p95_s", np.nan) for c in conds]
        axes[0].bar(xs, p50, width, label=p)
        axes[0].scatter(xs, p95, marker="_", color="black", s=60)
        hr = [results[c].get(p, {}).get("request_hr10", np.nan) for c in conds]
        axes[1].bar(xs, hr, width, label=p)
    for ax, ylabel in zip(
        axes, ("turn time p50 (bar), p95 (tick), s", "Protocol R HR@10"), strict=True
    ):
        ax.set_xticks(np.arange(len(conds)) + 0.4 - width / 2)
        ax.set_xticklabels(conds, rotation=15)
        ax.set_ylabel(ylabel)
    axes[0].legend(fontsize=8)
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def run(
    settings: Settings,
    users: int,
    conditions: tuple[str, ...],
    placements: tuple[str, ...],
    console: Console,
    out: Path,
    seed: int = 0,
) -> dict[str, Any]:
    settings = settings.model_copy(update={"show_top": max(settings.show_top, K)})
    base = bench_resources(settings, console, None)
    ds = base.dataset
    proto = ProtocolA.build(ds, users, seed)
    chosen = proto.sample
    asks = {u: make_ask(ds, u, int(ds.sequence(u)[-1]), proto.histories[u], seed) for u in chosen}
    llm = base.cloud.cloud_llm
    if llm.server is None:
        raise ValueError(
            "bench placement puts its link in front of the embedded cloud server: run it "
            "with an 'embedded:' cloud model"
        )
    base.cloud.warm_up(prime=True)
    _ = base.device.device_llm, base.device.device_embedder
    base.device.warm_up()
    results: dict[str, dict[str, dict[str, Any]]] = {}
    raw: dict[str, dict[str, list[dict[str, Any]]]] = {}
    with tempfile.TemporaryDirectory(prefix="cdarec-placement-") as tmp:
        chroma = start_chroma(settings, ds, Path(tmp), console)
        chroma_port = int(chroma.url.rsplit(":", 1)[1])
        llm_proxy, chroma_proxy = LinkProxy(llm.server.port), LinkProxy(chroma_port)
        dead = f"http://127.0.0.1:{free_port()}"  # nothing listens there
        try:
            with progress(console) as bar:
                for cond in conditions:
                    c = CONDITIONS[cond]
                    for proxy in (llm_proxy, chroma_proxy):
                        proxy.link = c.link or Link()
                    cloud_url = llm_proxy.url if c.link else dead
                    chroma_url = chroma_proxy.url if c.link else dead
                    hog = CpuHog(c.hogs)
                    try:
                        if c.hogs:
                            time.sleep(1.0)  # the load is there before the first turn
                        for p in placements:
                            task = bar.add_task(f"{cond:12} {p:12}", total=3 * len(chosen))
                            s = settings.model_copy(
                                update={"placement": p, "chroma_url": chroma_url}
                            )
                            turns = run_placement(
                                base,
                                s,
                                proto,
                                chosen,
                                asks,
                                cloud_url,
                                chroma_url,
                                c.link is not None,
                                lambda task=task: bar.advance(task),
                            )
                            results.setdefault(cond, {})[p] = summarise(turns)
                            raw.setdefault(cond, {})[p] = [asdict(t) for t in turns]
                    finally:
                        hog.stop()
        finally:
            llm_proxy.close()
            chroma_proxy.close()
            chroma.stop()
    use_resources(base)
    console.print(table(results, len(chosen)))
    verdict = verdicts(results)
    for cond, says in verdict.items():
        console.print(f"  {cond}: {says}")
    payload = {
        "benchmark": "placement",
        "dataset": ds.name,
        "users": chosen,
        "seed": seed,
        "conditions": {k: CONDITIONS[k].says for k in conditions},
        "settings": settings_summary(
            settings, ("device_model", "cloud_model", "sequence_model", "llm_threads")
        ),
        "results": results,
        "verdicts": verdict,
        "turns": raw,
    }
    write_report(
        out / f"placement-{slug(ds.name)}",
        None,
        payload,
        lambda path: plot(
            results, f"cdarec bench placement ({ds.name}, {len(chosen)} users x 3 turns)", path
        ),
        console,
    )
    return payload
