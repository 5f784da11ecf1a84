"""Evaluation: `cdarec bench accuracy`, Protocol A — our rows beside the published ones, on the
same candidates.

Protocol A ("llmrank", ANCHORS.md): leave-one-out by time; for each user the test item
plus 19 items drawn uniformly from the whole catalogue (seeded per user, see
``cdarec.seqrec.metrics``), shuffled; the label's rank among the 20 gives NDCG@1/5/10/20
(x100). Methods without an LLM run on every test user *and* on the fixed LLM sample;
methods with an LLM run on the sample only (default 200 users). Every method sees the
same candidates. Parsing never looks at the label: an item a method leaves out of its
ranking is ranked below every item it did rank (the label too, pessimistically), and
the share of turns with a fallback or an unparseable reply is reported.

Methods:
  random, pop             - baselines (popularity of the training split)
  transition              - the foundation's item-to-item transition scorer
  sasrec                  - the trained SASRec network alone, 50-item history (protocol)
  structured              - the device's structured user model alone: SASRec blended with
                            the transition model as the device blends them
                            (``blend_structured``), on the protocol's 50-item history
  sasrec+device           - the same model on the device: the full private history, and
                            items the user has already watched ranked last
  sasrec+transition       - sasrec+device blended with the transition model as the
                            device's ranking blends them (no LLM): what the ensemble alone
                            adds, so that the agents' own share can be read off
  llm-zero-shot           - LLMRank's recency-focused prompt, cloud model, free text
  cloud-only              - the cloud-only agent (cdarec.evaluation.baselines.cloud_only): every
                            sub-task by the cloud LLM, raw history sent to the cloud
  cdarec                  - the whole graph (plan, semantics, retrieval in the scope of the
                            20 candidates, device sequence model, device SLM, fusion)
  cdarec-fixed-plan, cdarec-no-slm, cdarec-no-semantic, cdarec-no-collab - ablations
"""

from __future__ import annotations

import difflib
import re
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from rich.console import Console

from cdarec.evaluation import harness
from cdarec.evaluation.harness import GRAPH, Protocol, ProtocolA, graph_turns
from cdarec.evaluation.report import (
    ACCURACY_SETTINGS,
    MEASURED,
    PUBLISHED,
    bar_panels,
    settings_summary,
)
from cdarec.graph.runtime import Resources
from cdarec.seqrec.metrics import demote_seen, label_ranks, ndcg_at
from cdarec.seqrec.structured import blend_structured, catalogue_structured, structured_blend
from cdarec.settings import Settings

KS = (1, 5, 10, 20)
HISTORY_LEN = 50  # the protocol's history (the device may use more: sasrec+device)
NO_LLM = (
    "random",
    "pop",
    "transition",
    "sasrec",
    "structured",
    "sasrec+device",
    "sasrec+transition",
)
WITH_LLM = ("llm-zero-shot", *GRAPH)
ALL_METHODS = (*NO_LLM, *WITH_LLM)
DEFAULT_METHODS = (*NO_LLM, "cdarec")

# ANCHORS.md, Protocol A: LLMRank (Hou et al., ECIR 2024), Tables 2 (all users) and 3
# (200 users, recency-focused prompt); NDCG x100 at 1/5/10/20.
ANCHOR_ROWS: list[tuple[str, str, tuple[float, float, float, float]]] = [
    ("random order (expected)", "all", (5.00, 14.74, 22.72, 35.20)),
    ("Pop (trained)", "all", (22.91, 45.16, 52.33, 55.36)),
    ("BPRMF (trained)", "all", (34.60, 59.87, 64.29, 65.39)),
    ("SASRec (trained)", "all", (61.39, 76.39, 78.89, 79.79)),
    ("UniSRec (zero-shot)", "all", (7.37, 18.80, 26.67, 37.93)),
    ("ChatGPT, recency-focused", "all", (19.57, 37.73, 44.23, 50.01)),
    ("ChatGPT, in-context learning", "all", (21.77, 39.59, 45.83, 51.62)),
    ("LLaMA-2-70B-Chat, recency", "200", (8.00, 25.42, 31.19, 34.52)),
    ("ChatGPT, recency", "200", (23.33, 42.07, 48.80, 53.73)),
    ("GPT-4, recency", "200", (15.50, 40.65, 46.74, 48.42)),
]


@dataclass
class Row:
    method: str
    users: int
    ndcg: dict[int, float]
    seconds: float
    fallback_rate: float = 0.0
    note: str = ""
    ranks: list[int] = field(default_factory=list, repr=False)


def _row(
    method: str,
    users: list[str],
    cand_scores: np.ndarray,
    proto: ProtocolA,
    t0: float,
    fallback_rate: float = 0.0,
    note: str = "",
) -> Row:
    ranks = label_ranks(cand_scores, proto.label_pos(users))
    nd = {k: 100 * v for k, v in ndcg_at(ranks, KS).items()}
    return Row(
        method,
        len(users),
        nd,
        time.perf_counter() - t0,
        fallback_rate,
        note,
        ranks.tolist(),
    )


def score_without_llm(
    method: str, proto: ProtocolA, users: list[str], res: Resources, seed: int
) -> np.ndarray:
    cands = np.stack([proto.candidates[u] for u in users])
    if method == "random":
        return np.random.default_rng(seed).random(cands.shape)
    if method == "pop":
        return proto.train_pop[cands]
    if method == "transition":
        model = res.device.transition_model
        rows = [model.scores(proto.histories[u][-HISTORY_LEN:]) for u in users]
        return np.stack([r[c] for r, c in zip(rows, cands, strict=True)])
    if method == "structured":
        seq = score_without_llm("sasrec", proto, users, res, seed)
        trans = score_without_llm("transition", proto, users, res, seed)
        w = structured_blend(res.sasrec_model())
        return np.stack([blend_structured(a, b, w) for a, b in zip(seq, trans, strict=True)])
    if method == "sasrec+transition":
        seq = score_without_llm("sasrec+device", proto, users, res, seed)
        trans = score_without_llm("transition-full", proto, users, res, seed)
        seen = [np.isin(c, proto.histories[u]) for u, c in zip(users, cands, strict=True)]
        # The device ranking's structured signal: watched items are left out of its pool
        # (so out of the standardisation) and ranked last.
        w = structured_blend(res.sasrec_model())
        return np.stack(
            [catalogue_structured(a, b, ~s, w) for a, b, s in zip(seq, trans, seen, strict=True)]
        )
    if method == "transition-full":  # the device's transition scores: the full history
        model = res.device.transition_model
        rows = [model.scores(proto.histories[u]) for u in users]
        return np.stack([r[c] for r, c in zip(rows, cands, strict=True)])
    model = res.sasrec_model()
    out = np.empty(cands.shape, dtype=np.float64)
    chunk = 256
    for start in range(0, len(users), chunk):
        part = users[start : start + chunk]
        if method == "sasrec":
            hist = [proto.histories[u][-HISTORY_LEN:] for u in part]
            scores = model.scores_batch(hist)
        else:  # sasrec+device: the full private history, watched items last
            hist = [proto.histories[u] for u in part]
            scores = model.scores_batch(hist)
            for i, h in enumerate(hist):
                demote_seen(scores[i], h)
        out[start : start + len(part)] = np.take_along_axis(
            scores, cands[start : start + len(part)], axis=1
        )
    return out


# -- LLM-only zero-shot (LLMRank's recency-focused prompt) ---------------------------------
def llmrank_prompt(history: list[str], candidates: list[str]) -> str:
    hist = "\n".join(f"{i}. {t}" for i, t in enumerate(history))
    cands = "\n".join(f"{i}. {t}" for i, t in enumerate(candidates))
    return (
        f"I've watched the following movies in the past in order:\n{hist}\n\n"
        f"Now there are {len(candidates)} candidate movies that I can watch next:\n{cands}\n"
        f"Please rank these {len(candidates)} movies by measuring the possibilities that I "
        f"would like to watch next most, according to my watching history. Please think "
        f"step by step.\nNote that my most recently watched movie is {history[-1]}. Please "
        f"show me your ranking results with order numbers. Split your output with line "
        f"break. You MUST rank the given candidate movies. You can not generate movies "
        f"that are not in the given candidate list."
    )


_NUMBERED = re.compile(r"^\s*\d+[.)]\s*")


def parse_ranking(reply: str, candidates: list[str]) -> list[int]:
    """LLMRank's parsing: one line per item, 'N. ' stripped, each line fuzzy-matched to a
    candidate title; returns candidate positions in the reply's order (no label used)."""
    order: list[int] = []
    lowered = [c.lower() for c in candidates]
    for line in reply.splitlines():
        text = _NUMBERED.sub("", line).strip().strip("*").strip().lower()
        if not text:
            continue
        match = difflib.get_close_matches(text, lowered, n=1, cutoff=0.6)
        hit = lowered.index(match[0]) if match else None
        if hit is None:
            hit = next((i for i, c in enumerate(lowered) if c in text), None)
        if hit is not None and hit not in order:
            order.append(hit)
    return order


def _order_scores(order: list[int], n: int) -> np.ndarray:
    scores = np.full(n, -1e9)
    for pos, i in enumerate(order):
        scores[i] = n - pos
    return scores


def score_llm_zero_shot(
    proto: ProtocolA, users: list[str], res: Resources, tick: Callable[[], None]
) -> tuple[np.ndarray, float]:
    ds = proto.ds
    chat = res.cloud.cloud_llm.text(max_tokens=400)
    out, failed = [], 0
    for u in users:
        hist = [ds.items[int(i)].label() for i in proto.histories[u][-HISTORY_LEN:]]
        cands = [ds.items[int(i)].label() for i in proto.candidates[u]]
        try:
            reply = str(chat.invoke(llmrank_prompt(hist, cands)).content)
        except Exception:  # a failed call is a miss for every candidate, and counted
            reply = ""
        order = parse_ranking(reply, cands)
        failed += len(order) < len(cands)
        out.append(_order_scores(order, len(cands)))
        tick()
    return np.stack(out), failed / max(len(users), 1)


def score_graph(
    method: str,
    proto: ProtocolA,
    users: list[str],
    base: Resources,
    tick: Callable[[], None],
) -> tuple[np.ndarray, float, str]:
    ds = proto.ds
    cands = {u: [ds.items[int(i)].item_id for i in proto.candidates[u]] for u in users}
    turns, fallback_rate, note = graph_turns(
        method, proto, users, base, tick, lambda u: {"request": "", "scope": cands[u]}
    )
    scores = [ranking_scores(v, cands[u]) for u, v in zip(users, turns, strict=True)]
    return np.stack(scores), fallback_rate, note


def ranking_scores(values: dict[str, Any], cands: list[str]) -> np.ndarray:
    """Scores over the candidates from a turn's ranking (unranked ones last)."""
    ranked = [r.item_id for r in values.get("ranking") or []]
    pos = {c: i for i, c in enumerate(cands)}
    return _order_scores([pos[i] for i in ranked if i in pos], len(cands))


def markdown_table(rows: list[Row], proto: ProtocolA) -> str:
    lines = [
        f"Protocol A (LLMRank), {proto.ds.name}: NDCG x100, 20 candidates (1 + 19 random)",
        "",
        "| method | users | N@1 | N@5 | N@10 | N@20 | fallback | time |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for name, users, vals in ANCHOR_ROWS:
        cells = " | ".join(f"{v:.2f}" for v in vals)
        lines.append(f"| *published: {name}* | {users} | {cells} | | |")
    for r in rows:
        cells = " | ".join(f"{r.ndcg[k]:.2f}" for k in KS)
        fb = f"{100 * r.fallback_rate:.0f}%" if r.method in WITH_LLM else ""
        lines.append(f"| **{r.method}** | {r.users} | {cells} | {fb} | {r.seconds:.0f} s |")
    notes = [f"- {r.method}: {r.note}" for r in rows if r.note]
    return "\n".join([*lines, *(["", *notes] if notes else [])])


def plot(rows: list[Row], proto: ProtocolA, path: Path) -> None:
    bar_panels(
        path,
        [f"{n} ({u})" for n, u, _ in ANCHOR_ROWS] + [f"{r.method} ({r.users})" for r in rows],
        [
            (
                "NDCG@10 x100 (grey: published, blue: measured here)",
                [v[2] for _, _, v in ANCHOR_ROWS] + [r.ndcg[10] for r in rows],
            )
        ],
        f"Protocol A on {proto.ds.name}",
        [PUBLISHED] * len(ANCHOR_ROWS) + [MEASURED] * len(rows),
        fmt=" {:.1f}",
    )


class LLMRank(Protocol):
    """Protocol A: the test item among 20 candidates, NDCG@1/5/10/20."""

    name = "llmrank"
    methods = ALL_METHODS
    no_llm = NO_LLM

    def needs_sasrec(self, methods: list[str]) -> bool:
        needs = {"sasrec", "structured", "sasrec+device", "sasrec+transition", *GRAPH}
        return bool(needs & set(methods))

    def begin(self, proto: ProtocolA, seed: int, console: Console, drawn_s: float) -> None:
        console.print(
            f"Protocol A on {proto.ds.name}: {len(proto.users)} test users, LLM sample "
            f"{len(proto.sample)} (seed {seed}); candidates drawn in {drawn_s:.1f} s"
        )

    def structured_row(
        self,
        method: str,
        proto: ProtocolA,
        users: list[str],
        base: Resources,
        seed: int,
        started: float,
    ) -> Row:
        return _row(
            method, users, score_without_llm(method, proto, users, base, seed), proto, started
        )

    def describe(self, row: Row) -> str:
        return f"{row.method:22} {row.users:5d} users  N@10 {row.ndcg[10]:6.2f}"

    def graph_row(
        self,
        method: str,
        proto: ProtocolA,
        base: Resources,
        tick: Callable[[], None],
        started: float,
    ) -> Row:
        if method == "llm-zero-shot":
            scores, fb = score_llm_zero_shot(proto, proto.sample, base, tick)
            note = base.cloud.cloud_llm.name
        else:
            scores, fb, note = score_graph(method, proto, proto.sample, base, tick)
        return _row(method, proto.sample, scores, proto, started, fb, note)

    def report(
        self, rows: list[Row], proto: ProtocolA, settings: Settings, seed: int
    ) -> tuple[str, dict[str, Any], Callable[[Path], None]]:
        payload = {
            "protocol": self.name,
            "dataset": proto.ds.name,
            "seed": seed,
            "users_all": len(proto.users),
            "users_sample": len(proto.sample),
            "settings": settings_summary(settings, ACCURACY_SETTINGS),
            "anchors": [
                {"method": n, "users": u, "ndcg": dict(zip(KS, v, strict=True))}
                for n, u, v in ANCHOR_ROWS
            ],
            "rows": [asdict(r) for r in rows],
        }
        return markdown_table(rows, proto), payload, lambda p: plot(rows, proto, p)


# ``run(settings, methods, sample_size, seed, out_dir, console, resources=None)``
run = harness.runner(LLMRank)
