"""Dev script: the numbers behind the request-led and similar-to strategies, on validation.

    nice -n 10 .venv/bin/python scripts/tune_strategies.py [--users 300] [--dataset ml-1m]

Protocol R's requests, written from each user's *validation* item (the test item is
never read), for users whose validation items the served SASRec did not train on
(``untrained_valid_users``). The whole graph runs once per user (fixed plan, so the
rule picks the strategy; no SLM judgement, whose weight is 0 in both strategies) with
each user's device memory as it was before the validation item; the device's fused pool
is captured (each item's structured, semantic and likeness signal), and every weight
setting of the grid re-ranks the same pool. Prints HR@10 / NDCG@10 / satisfaction per
setting and strategy; the chosen values go into ``cdarec.contract.plan.STRATEGIES``.
"""

from __future__ import annotations

import argparse
import itertools
import sys

import numpy as np
from langgraph.checkpoint.memory import InMemorySaver
from rich.console import Console

import cdarec.device.nodes as device_nodes
from cdarec.data import leave_one_out
from cdarec.device.memory import DeviceRecord
from cdarec.evaluation.harness import bench_resources
from cdarec.evaluation.protocols.full import K, metrics
from cdarec.evaluation.protocols.request import make_ask
from cdarec.graph.builder import build_graph
from cdarec.graph.runtime import use_resources
from cdarec.seqrec.config import untrained_valid_users
from cdarec.seqrec.structured import standardise
from cdarec.settings import Settings


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--dataset", default="ml-1m")
    ap.add_argument("--users", type=int, default=300)
    ap.add_argument("--seed", type=int, default=11)
    args = ap.parse_args()
    console = Console()
    settings = Settings(dataset=args.dataset, planner="fixed", ablate=["slm"], show_top=K)
    base = bench_resources(settings, console, None)
    ds = base.dataset
    split = leave_one_out(ds)
    clean = untrained_valid_users(
        getattr(base.sequence_model, "meta", {}), split.train, split.valid
    )
    users = [u for u in split.valid_users() if len(split.train[u]) >= 3 and u in clean]
    rng = np.random.default_rng(args.seed)
    users = [
        users[i] for i in sorted(rng.choice(len(users), min(args.users, len(users)), replace=False))
    ]
    records, asks, labels = {}, {}, {}
    for u in users:
        hist = base.device.dataset_history(u)[:-2]
        records[u] = DeviceRecord(user_id=u, dataset=ds.name, history=hist)
        labels[u] = int(ds.sequence(u)[-2])
        asks[u] = make_ask(ds, u, labels[u], ds.sequence(u)[:-2], args.seed)
    res = use_resources(base.derive(settings, records=records))
    graph = build_graph(InMemorySaver())
    pools: dict[str, list[tuple[str, float, float, float, tuple, int | None]]] = {}
    strategy: dict[str, str] = {}
    original = device_nodes.fuse

    def capture(pool, *a, **kw):  # the device's pool, before any weight is applied
        original(pool, *a, **kw)
        capture.last = [
            (p.item_id, p.sequence, p.semantic, p.similar, p.genres, p.year) for p in pool
        ]

    device_nodes.fuse = capture  # type: ignore[assignment]
    for n, u in enumerate(users, 1):
        values = graph.invoke(
            {"request": asks[u].text},
            {"configurable": {"thread_id": f"tune-{u}"}},
            context=settings.model_copy(update={"user_id": u}),
        )
        pools[u] = capture.last
        strategy[u] = values["plan"].strategy
        if n % 50 == 0:
            console.print(f"  {n}/{len(users)} turns")
    device_nodes.fuse = original  # type: ignore[assignment]
    _ = res
    grids = {
        "request-led": [(s, 1 - s, 0.0) for s in (0.5, 0.6, 0.7, 0.75, 0.8, 0.85, 0.9, 0.95, 1.0)],
        "similar-to": [
            (s, m, 1 - s - m)
            for s, m in itertools.product((0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8), (0.0, 0.1))
            if 1 - s - m > 0
        ],
    }
    for name, grid in grids.items():
        mine = [u for u in users if strategy[u] == name]
        if not mine:
            continue
        console.print(f"\n{name}: {len(mine)} validation users")
        console.print(
            "| seq | sem | like | HR@10 | NDCG@10 | satisfaction |\n|---|---|---|---|---|---|"
        )
        for ws, wm, wl in grid:
            ranks, sats = [], []
            for u in mine:
                pool = pools[u]
                if not pool:
                    ranks.append(K)
                    sats.append(0.0)
                    continue
                z = [standardise(np.array([p[i] for p in pool])) for i in (1, 2, 3)]
                fused = ws * z[0] + wm * z[1] + wl * z[2]
                order = np.argsort(-fused, kind="stable")[:K]
                top = [pool[i][0] for i in order]
                label = ds.items[labels[u]].item_id
                ranks.append(top.index(label) if label in top else K)
                ask = asks[u]
                like_g = ds.items[ask.like].genres if ask.like is not None else ()
                sats.append(np.mean([ask.satisfied(pool[i][4], pool[i][5], like_g) for i in order]))
            hr, nd = metrics(np.array(ranks))
            console.print(
                f"| {ws:.2f} | {wm:.2f} | {wl:.2f} | {hr:.4f} | {nd:.4f} | {np.mean(sats):.3f} |"
            )
    return 0


if __name__ == "__main__":
    sys.exit(main())
