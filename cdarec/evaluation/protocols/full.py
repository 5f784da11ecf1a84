"""Evaluation: `cdarec bench accuracy --protocol full`, Protocol B, full ranking over the catalogue.

As RecBole's ml-1m_seq benchmark (ANCHORS.md): ratings >= 3, 10-core (the filtered copy
is written once as an atomic data set, ``cdarec.data.derive``), leave-one-out by time,
the test item ranked against every item the user has not interacted with (RecBole's
full-sort evaluation masks the user's history), HR@10 and NDCG@10. Methods without an
LLM run on every test user and on the fixed sample; cdarec runs its whole graph on the
sample, with no request and no scope: its own retrieval (semantic + collaborative) and
the device's proposals form the pool, the device ranks it, and its top 10 is the list.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from rich.console import Console

from cdarec.data.derive import derive_seq_dataset
from cdarec.evaluation import harness
from cdarec.evaluation.harness import GRAPH, Protocol, ProtocolA, graph_turns
from cdarec.evaluation.protocols.sampled import HISTORY_LEN
from cdarec.evaluation.report import MEASURED, PUBLISHED, bar_panels
from cdarec.graph.runtime import Resources
from cdarec.seqrec.metrics import hit_at, ndcg_at
from cdarec.seqrec.structured import catalogue_structured, structured_blend
from cdarec.settings import Settings

K = 10
NO_LLM = ("pop", "transition", "sasrec", "sasrec+device", "sasrec+transition")
METHODS = (*NO_LLM, *(m for m in GRAPH if m != "cloud-only"))
DEFAULT_METHODS = (*NO_LLM, "cdarec")

# ANCHORS.md, Protocol B: RecBole's benchmark (tuned models), HR@10 and NDCG@10.
ANCHOR_ROWS: list[tuple[str, float, float]] = [
    ("SASRec (RecBole, tuned)", 0.2468, 0.1286),
    ("GRU4Rec (RecBole, tuned)", 0.2776, 0.1545),
    ("BERT4Rec (RecBole, under-tuned)", 0.0791, 0.0381),
]


@dataclass
class FullRow:
    method: str
    users: int
    hr: float
    ndcg: float
    seconds: float
    fallback_rate: float = 0.0
    note: str = ""
    ranks: list[int] = field(default_factory=list, repr=False)


def metrics(ranks: np.ndarray) -> tuple[float, float]:
    """HR@10 and NDCG@10 from 0-based ranks (a miss is any rank >= 10)."""
    return hit_at(ranks, (K,))[K], ndcg_at(ranks, (K,))[K]


def _rank_of_label(scores: np.ndarray, history: np.ndarray, label: int) -> int:
    """0-based rank of ``label`` among the items outside ``history`` (ties count
    against the label)."""
    s = np.asarray(scores, dtype=np.float64).copy()
    s[np.unique(history)] = -np.inf
    s[label] = scores[label]
    return int((s >= s[label]).sum() - 1)


def structured_row(
    seq: np.ndarray, trans: np.ndarray, history: np.ndarray, blend: float
) -> np.ndarray:
    """The device's structured signal over the catalogue (SASRec + ``blend`` x transition),
    with the history's items left out of the standardisation and ranked last."""
    unseen = np.ones(len(seq), dtype=bool)
    unseen[np.unique(history)] = False
    return catalogue_structured(seq, trans, unseen, blend)


def full_scores(method: str, proto: ProtocolA, users: list[str], res: Resources) -> np.ndarray:
    """0-based full-ranking ranks of each user's test item."""
    ds = proto.ds
    labels = {u: int(ds.sequence(u)[-1]) for u in users}
    if method == "pop":
        return np.array(
            [_rank_of_label(proto.train_pop, proto.histories[u], labels[u]) for u in users]
        )
    if method == "transition":
        tm = res.device.transition_model
        return np.array(
            [
                _rank_of_label(tm.scores(proto.histories[u]), proto.histories[u], labels[u])
                for u in users
            ]
        )
    model, tm = res.sasrec_model(), res.device.transition_model
    blend = structured_blend(model)
    out = []
    for start in range(0, len(users), 256):
        part = users[start : start + 256]
        full = method != "sasrec"
        hist = [proto.histories[u] if full else proto.histories[u][-HISTORY_LEN:] for u in part]
        batch = model.scores_batch(hist)
        for u, row in zip(part, batch, strict=True):
            h = proto.histories[u]
            if method == "sasrec+transition":
                row = structured_row(row, tm.scores(h), h, blend)
            out.append(_rank_of_label(row, h, labels[u]))
    return np.array(out)


def graph_ranks(
    method: str, proto: ProtocolA, users: list[str], base: Resources, tick: Any
) -> tuple[np.ndarray, float, str]:
    """cdarec's top 10 per user: no request, no scope (its own retrieval)."""
    ds = proto.ds
    turns, fallback_rate, note = graph_turns(
        method, proto, users, base, tick, lambda u: {"request": ""}, {"show_top": K}
    )
    ranks = []
    for u, values in zip(users, turns, strict=True):
        ranked = [r.item_id for r in values.get("ranking") or []]
        label = ds.items[int(ds.sequence(u)[-1])].item_id
        ranks.append(ranked.index(label) if label in ranked else K)  # beyond the list: a miss
    return np.array(ranks), fallback_rate, note


def markdown_table(rows: list[FullRow], name: str) -> str:
    lines = [
        f"Protocol B (RecBole ml-1m_seq), {name}: full ranking over all items",
        "",
        "| method | users | HR@10 | NDCG@10 | fallback | time |",
        "|---|---|---|---|---|---|",
    ]
    for n, h, d in ANCHOR_ROWS:
        lines.append(f"| *published: {n}* | all | {h:.4f} | {d:.4f} | | |")
    for r in rows:
        fb = f"{100 * r.fallback_rate:.0f}%" if r.method not in NO_LLM else ""
        lines.append(
            f"| **{r.method}** | {r.users} | {r.hr:.4f} | {r.ndcg:.4f} | {fb} | {r.seconds:.0f} s |"
        )
    notes = [f"- {r.method}: {r.note}" for r in rows if r.note]
    return "\n".join([*lines, *(["", *notes] if notes else [])])


def plot(rows: list[FullRow], name: str, path: Path) -> None:
    labels = [n for n, _, _ in ANCHOR_ROWS] + [f"{r.method} ({r.users})" for r in rows]
    bar_panels(
        path,
        labels,
        [
            ("HR@10", [h for _, h, _ in ANCHOR_ROWS] + [r.hr for r in rows]),
            ("NDCG@10", [d for _, _, d in ANCHOR_ROWS] + [r.ndcg for r in rows]),
        ],
        f"Protocol B on {name} (grey: published, blue: measured here)",
        [PUBLISHED] * len(ANCHOR_ROWS) + [MEASURED] * len(rows),
    )


class FullRanking(Protocol):
    """Protocol B: the test item ranked against every unseen item, HR@10 and NDCG@10."""

    name = "full"
    methods = METHODS
    no_llm = NO_LLM

    def prepare(self, settings: Settings, console: Console, given: bool) -> Settings:
        if given:  # the caller's resources bring their own data set
            return settings
        path = derive_seq_dataset(settings.dataset, settings.home)
        console.print(f"Protocol B data set (ratings >= 3, 10-core): {path}")
        return settings.model_copy(update={"dataset": str(path)})

    def begin(self, proto: ProtocolA, seed: int, console: Console, drawn_s: float) -> None:
        ds = proto.ds
        console.print(
            f"Protocol B on {ds.name}: {ds.n_users} users, {ds.n_items} items, "
            f"{ds.n_interactions} interactions; full ranking; LLM sample {len(proto.sample)}"
        )

    def structured_row(
        self,
        method: str,
        proto: ProtocolA,
        users: list[str],
        base: Resources,
        seed: int,
        started: float,
    ) -> FullRow:
        ranks = full_scores(method, proto, users, base)
        hr, nd = metrics(ranks)
        return FullRow(
            method, len(users), hr, nd, time.perf_counter() - started, ranks=ranks.tolist()
        )

    def describe(self, row: FullRow) -> str:
        return f"{row.method:22} {row.users:5d} users  HR@10 {row.hr:.4f}  NDCG@10 {row.ndcg:.4f}"

    def graph_row(
        self,
        method: str,
        proto: ProtocolA,
        base: Resources,
        tick: Callable[[], None],
        started: float,
    ) -> FullRow:
        ranks, fb, note = graph_ranks(method, proto, proto.sample, base, tick)
        hr, nd = metrics(ranks)
        n = len(proto.sample)
        return FullRow(method, n, hr, nd, time.perf_counter() - started, fb, note, ranks.tolist())

    def report(
        self, rows: list[FullRow], proto: ProtocolA, settings: Settings, seed: int
    ) -> tuple[str, dict[str, Any], Callable[[Path], None]]:
        ds = proto.ds
        payload = {
            "protocol": self.name,
            "dataset": ds.name,
            "users": ds.n_users,
            "items": ds.n_items,
            "interactions": ds.n_interactions,
            "seed": seed,
            "anchors": [{"method": n, "hr10": h, "ndcg10": d} for n, h, d in ANCHOR_ROWS],
            "rows": [asdict(r) for r in rows],
        }
        return markdown_table(rows, ds.name), payload, lambda p: plot(rows, ds.name, p)


# ``run(settings, methods, sample_size, seed, out_dir, console, resources=None)``
run = harness.runner(FullRanking)
