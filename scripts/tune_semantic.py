"""Dev script: the semantic weight of request-less turns, chosen on the validation items.

    nice -n 10 .venv/bin/python scripts/tune_semantic.py [--users 500] \\
        [--weights 0,0.03,0.06,0.12] [--dataset ml-1m]

Runs cdarec's whole graph for a sample of Protocol B's users (ratings >= 3, 10-core)
with each user's device memory as it was before the validation item, no request and no
scope (the open catalogue), and reports HR@10 / NDCG@10 of the validation item for each
semantic weight (the rest on the structured signal). The plan is the bucket's default
with its weights replaced, and the SLM judgement is off: without a request the planner
gives the SLM's order no weight (bench accuracy: cdarec == cdarec-no-slm), and the
weight under study is the only difference between the rows. The test items are never
read, and only users whose validation items the served SASRec did not train on are
sampled (with ``fit_valid``, the 1,000 that its training watched).
"""

from __future__ import annotations

import argparse
import sys
import time

import numpy as np
from langgraph.checkpoint.memory import InMemorySaver
from rich.console import Console

import cdarec.cloud.nodes as cloud_nodes
from cdarec.contract.plan import Weights, default_plan
from cdarec.data import leave_one_out
from cdarec.data.derive import derive_seq_dataset
from cdarec.device.memory import DeviceRecord
from cdarec.evaluation.harness import bench_resources
from cdarec.evaluation.protocols.full import K, metrics
from cdarec.graph.builder import build_graph
from cdarec.graph.runtime import use_resources
from cdarec.seqrec.config import untrained_valid_users
from cdarec.settings import Settings


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--dataset", default="ml-1m")
    ap.add_argument("--users", type=int, default=500)
    ap.add_argument("--weights", default="0,0.03,0.06,0.12")
    ap.add_argument("--seed", type=int, default=7)
    args = ap.parse_args()
    console = Console()
    base_settings = Settings()
    path = derive_seq_dataset(args.dataset, base_settings.home)
    settings = base_settings.model_copy(update={"dataset": str(path)})
    base = bench_resources(settings, console, None)
    ds = base.dataset
    split = leave_one_out(ds)
    meta = getattr(base.sequence_model, "meta", {})  # the model the graph runs
    clean = untrained_valid_users(meta, split.train, split.valid)
    users = [u for u in split.valid_users() if len(split.train[u]) >= 3 and u in clean]
    rng = np.random.default_rng(args.seed)
    n = min(args.users, len(users))
    users = [users[i] for i in sorted(rng.choice(len(users), n, replace=False))]
    records = {
        u: DeviceRecord(user_id=u, dataset=ds.name, history=base.device.dataset_history(u)[:-2])
        for u in users
    }
    labels = {u: ds.items[int(split.valid[u])].item_id for u in users}  # type: ignore[arg-type]
    run_settings = settings.model_copy(update={"planner": "fixed", "ablate": ["slm"]})
    use_resources(base.derive(run_settings, records=records))
    graph = build_graph(InMemorySaver())
    print(f"{len(users)} validation users of {ds.name}; no request, open catalogue", flush=True)
    for w in [float(x) for x in args.weights.split(",")]:

        def plan_with(abstract, request, k, w=w):  # type: ignore[no-untyped-def]
            plan = default_plan(abstract, request, k)
            return plan.model_copy(update={"weights": Weights(sequence=1 - w, semantic=w, judge=0)})

        cloud_nodes.default_plan = plan_with  # type: ignore[assignment]
        t0, ranks = time.perf_counter(), []
        for u in users:
            values = graph.invoke(
                {"request": ""},
                {"configurable": {"thread_id": f"w{w}-{u}"}},
                context=run_settings.model_copy(update={"user_id": u, "show_top": K}),
            )
            ranked = [r.item_id for r in values.get("ranking") or []]
            ranks.append(ranked.index(labels[u]) if labels[u] in ranked else K)
        hr, nd = metrics(np.array(ranks))
        first = "".join(str(r) if r < K else "." for r in ranks[:60])
        print(
            f"w_semantic {w:.3f}: HR@10 {hr:.4f}  NDCG@10 {nd:.4f}  "
            f"({time.perf_counter() - t0:.0f} s) first ranks {first}",
            flush=True,
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
