"""Evaluation: `cdarec bench accuracy --protocol request`, Protocol R, request-conditioned next
item.

Protocol A's leave-one-out split and users; the whole catalogue the user has not seen is
ranked (no scope; the history masked as in Protocol B). Each test user asks, in plain
words, for what the held-out item is: one or two of its genres and/or its decade, or, for
some users, "something like <a film of their history>" (the one sharing most genres
with the held-out item). The words come from ``PHRASINGS`` and ``GENRE_WORDS`` below,
drawn by seed; no structured hint reaches the system: the cloud must read the words.

Metrics: HR@10 and NDCG@10 of the held-out item; satisfaction = share of the top 10
that has every requested attribute, out of min(10, unseen items that have them);
grounded = share of shown reasons whose every genre, year and title checks out
(``cdarec.device.reasons.check_reason``); distinct = distinct reasons in the top 5.

Rows: structured (the request ignored), retrieval-only (semantic retrieval of the
request, ranked by similarity, history ignored but masked), oracle-filter (the
structured signal restricted to exactly the requested attributes: the reference
ceiling), cdarec and its ablations, cloud-only.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from rich.console import Console

from cdarec.data import Dataset
from cdarec.device.reasons import ItemFacts, check_reason
from cdarec.evaluation import harness
from cdarec.evaluation.harness import GRAPH, Protocol, ProtocolA, graph_turns
from cdarec.evaluation.protocols.full import metrics, structured_row
from cdarec.evaluation.report import ACCURACY_SETTINGS, bar_panels, settings_summary
from cdarec.graph.runtime import Resources
from cdarec.seqrec.structured import structured_blend
from cdarec.settings import Settings

K = 10
NO_LLM = ("structured", "retrieval-only", "oracle-filter")
METHODS = (*NO_LLM, *GRAPH)
DEFAULT_METHODS = (*NO_LLM, "cdarec")

# How the protocol's users say a genre (several words for some; the catalogue's own
# name, lower case, for the rest). Not the parser's lexicon: a separate, smaller list.
GENRE_WORDS: dict[str, tuple[str, ...]] = {
    "Comedy": ("comedy", "funny"),
    "Sci-Fi": ("sci-fi", "science fiction"),
    "Horror": ("horror", "scary"),
    "Romance": ("romance", "romantic"),
    "Animation": ("animated", "animation"),
    "Children's": ("children's", "family"),
    "Film-Noir": ("film noir",),
    "Thriller": ("thriller", "suspense"),
    "Documentary": ("documentary",),
    "Musical": ("musical",),
    "War": ("war",),
    "Western": ("western",),
}
DECADE_WORDS = ("the {d}s", "the {s}s", "{d}s")  # "the 1990s", "the 90s", "1990s"
# At least eight phrasings; {g}, {g2}: genre words, {dec}: a decade phrase.
PHRASINGS: dict[str, tuple[str, ...]] = {
    "genre": (
        "a {g} movie",
        "I'm in the mood for something {g}",
        "recommend me a good {g} film",
        "any {g} to watch tonight?",
    ),
    "genre2": (
        "a {g} {g2} movie",
        "something {g} and {g2}",
        "show me a {g} film that is also {g2}",
    ),
    "decade": ("a movie from {dec}", "something made in {dec}", "what should I watch from {dec}?"),
    "genre+decade": (
        "a {g} movie from {dec}",
        "something {g} from {dec}",
        "{dec} {g}, please",
        "any good {g} films from {dec}?",
    ),
    "similar": (
        "something like {title}",
        "more movies like {title}",
        "anything similar to {title}",
    ),
}
KIND_WEIGHTS = {"genre": 0.2, "genre2": 0.15, "decade": 0.15, "genre+decade": 0.35, "similar": 0.15}


@dataclass(frozen=True)
class Ask:
    """One user's request and its truth: the attributes a satisfying item has."""

    kind: str
    text: str
    genres: tuple[str, ...] = ()
    decade: int | None = None
    like: int | None = None  # item index of the named film (kind "similar")

    def satisfied(self, genres: tuple[str, ...], year: int | None, like_genres=()) -> bool:
        if self.like is not None:
            return bool(set(genres) & set(like_genres))
        if not set(self.genres) <= set(genres):
            return False
        return self.decade is None or (year is not None and self.decade <= year < self.decade + 10)


def _word(genre: str, rng: np.random.Generator) -> str:
    words = GENRE_WORDS.get(genre) or (genre.lower(),)
    return str(words[int(rng.integers(len(words)))])


def make_ask(ds: Dataset, user: str, label: int, history: np.ndarray, seed: int) -> Ask:
    """The request of one user, from the held-out item ``label``'s attributes (seeded per
    user); a "similar" request names the film of ``history`` sharing most genres."""
    rng = np.random.default_rng([seed, ds.user_index[user]])
    item = ds.items[label]
    genres = [g for g in item.genres if g.lower() not in ("unknown", "(no genres listed)")]
    kinds = list(KIND_WEIGHTS)
    probs = np.array([KIND_WEIGHTS[k] for k in kinds])
    ok = {
        "genre": bool(genres),
        "genre2": len(genres) >= 2,
        "decade": item.year is not None,
        "genre+decade": bool(genres) and item.year is not None,
        "similar": bool(genres),
    }
    probs = np.where([ok[k] for k in kinds], probs, 0)
    kind = kinds[int(rng.choice(len(kinds), p=probs / probs.sum()))] if probs.sum() else "none"
    if kind == "none":
        return Ask("none", "")
    template = PHRASINGS[kind][int(rng.integers(len(PHRASINGS[kind])))]
    if kind == "similar":
        hist = np.asarray(history)[-50:]
        shared = [len(set(ds.items[int(i)].genres) & set(genres)) for i in hist]
        like = int(hist[int(np.argmax(shared[::-1]) * -1 - 1)]) if len(hist) else label
        title = ds.items[like].title
        return Ask(kind, template.format(title=title), like=like)
    picked = list(rng.permutation(genres)[: 2 if kind == "genre2" else 1])
    decade = None
    dec = ""
    if "decade" in kind and item.year is not None:
        decade = item.year // 10 * 10
        form = DECADE_WORDS[int(rng.integers(len(DECADE_WORDS)))]
        dec = form.format(d=decade, s=f"{decade % 100:02d}")
    if kind == "decade":
        picked = []
    g = _word(picked[0], rng) if picked else ""
    g2 = _word(picked[1], rng) if len(picked) > 1 else ""
    return Ask(kind, template.format(g=g, g2=g2, dec=dec), tuple(picked), decade)


@dataclass
class RequestRow:
    method: str
    users: int
    hr: float
    ndcg: float
    satisfaction: float
    seconds: float
    grounded: float | None = None
    distinct: float | None = None
    fallback_rate: float = 0.0
    note: str = ""
    ranks: list[int] = field(default_factory=list, repr=False)


def _satisfaction(proto: ProtocolA, asks: dict[str, Ask], user: str, top: list[int]) -> float:
    ds, ask = proto.ds, asks[user]
    like_genres = ds.items[ask.like].genres if ask.like is not None else ()
    seen = set(proto.histories[user].tolist())
    meets = [ask.satisfied(it.genres, it.year, like_genres) for it in ds.items]
    available = sum(1 for i, m in enumerate(meets) if m and i not in seen and i != ask.like)
    if not available:
        return 1.0
    return sum(meets[i] for i in top[:K]) / min(K, available)


def _rank(top_scores: np.ndarray, label: int) -> int:
    return int((top_scores >= top_scores[label]).sum() - 1) if np.isfinite(top_scores[label]) else K


def no_llm_lists(
    method: str, proto: ProtocolA, asks: dict[str, Ask], users: list[str], res: Resources
) -> tuple[list[int], list[list[int]]]:
    """Label ranks and top-10 item indices of a method without an LLM."""
    ds = proto.ds
    ranks, tops = [], []
    if method == "retrieval-only":
        for u in users:
            seen = {ds.items[int(i)].item_id for i in proto.histories[u]}
            text = asks[u].text or "popular movies"
            hits = res.cloud.catalogue.search(text, K + len(seen) if len(seen) < 400 else 500)
            top = [ds.item_index[h.item_id] for h in hits if h.item_id not in seen][:K]
            label = int(ds.sequence(u)[-1])
            ranks.append(top.index(label) if label in top else K)
            tops.append(top)
        return ranks, tops
    model, tm = res.sasrec_model(), res.device.transition_model
    blend = structured_blend(model)
    for start in range(0, len(users), 256):
        part = users[start : start + 256]
        batch = model.scores_batch([proto.histories[u] for u in part])
        for u, row in zip(part, batch, strict=True):
            h = proto.histories[u]
            s = structured_row(row, tm.scores(h), h, blend)
            if method == "oracle-filter":
                ask = asks[u]
                like_g = ds.items[ask.like].genres if ask.like is not None else ()
                keep = np.array([ask.satisfied(it.genres, it.year, like_g) for it in ds.items])
                if ask.like is not None:
                    keep[ask.like] = False
                s = np.where(keep, s, -np.inf)
            label = int(ds.sequence(u)[-1])
            top = np.argsort(-s, kind="stable")[:K]
            ranks.append(min(_rank(s, label), K) if np.isfinite(s[label]) else K)
            tops.append([int(i) for i in top if np.isfinite(s[i])])
    return ranks, tops


def graph_row(
    method: str,
    proto: ProtocolA,
    asks: dict[str, Ask],
    users: list[str],
    res: Resources,
    turns: list[dict[str, Any]],
    fallback_rate: float,
    note: str,
    t0: float,
) -> RequestRow:
    """A graph method's row: its top 10 per user, and the check of every shown reason."""
    ds = proto.ds
    ranks, sats, grounded, distinct = [], [], [], []
    for u, values in zip(users, turns, strict=True):
        ranking = values.get("ranking") or []
        top = [ds.item_index[r.item_id] for r in ranking if r.item_id in ds.item_index]
        label = int(ds.sequence(u)[-1])
        ranks.append(top.index(label) if label in top[:K] else K)
        sats.append(_satisfaction(proto, asks, u, top))
        history = [ds.items[int(i)].label() for i in proto.histories[u]]
        named = [ds.items[asks[u].like].label()] if asks[u].like is not None else []
        for r in ranking[:K]:
            facts = ItemFacts(r.label, tuple(r.genres), r.year)
            grounded.append(
                not check_reason(r.reason, facts, res.device.vocabulary, [*history, *named])
            )
        distinct.append(len({r.reason for r in ranking[:5]}))
    hr, nd = metrics(np.array(ranks))
    return RequestRow(
        method,
        len(users),
        hr,
        nd,
        float(np.mean(sats)),
        time.perf_counter() - t0,
        float(np.mean(grounded)) if grounded else None,
        float(np.mean(distinct)) if distinct else None,
        fallback_rate,
        note,
        ranks,
    )


def markdown_table(rows: list[RequestRow], name: str, kinds: dict[str, int]) -> str:
    mix = ", ".join(f"{k} {v}" for k, v in sorted(kinds.items()))
    lines = [
        f"Protocol R (request-conditioned next item), {name}: full ranking of unseen items; "
        f"requests: {mix}",
        "",
        "| method | users | HR@10 | NDCG@10 | satisfaction | grounded reasons | distinct in 5 "
        "| fallback | time |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        g = f"{100 * r.grounded:.1f}%" if r.grounded is not None else ""
        d = f"{r.distinct:.2f}" if r.distinct is not None else ""
        fb = f"{100 * r.fallback_rate:.0f}%" if r.method not in NO_LLM else ""
        lines.append(
            f"| **{r.method}** | {r.users} | {r.hr:.4f} | {r.ndcg:.4f} | {r.satisfaction:.3f} "
            f"| {g} | {d} | {fb} | {r.seconds:.0f} s |"
        )
    notes = [f"- {r.method}: {r.note}" for r in rows if r.note]
    return "\n".join([*lines, *(["", *notes] if notes else [])])


def plot(rows: list[RequestRow], name: str, path: Path) -> None:
    bar_panels(
        path,
        [f"{r.method} ({r.users})" for r in rows],
        [
            ("HR@10", [r.hr for r in rows]),
            ("NDCG@10", [r.ndcg for r in rows]),
            ("satisfaction", [r.satisfaction for r in rows]),
        ],
        f"Protocol R on {name}",
    )


class RequestProtocol(Protocol):
    """Protocol R: a plain-words request per user from the held-out item's attributes;
    full ranking, satisfaction of the request, grounded and distinct reasons."""

    name = "request"
    methods = METHODS
    no_llm = NO_LLM

    def __init__(self) -> None:
        self.asks: dict[str, Ask] = {}
        self.kinds: dict[str, int] = {}

    def begin(self, proto: ProtocolA, seed: int, console: Console, drawn_s: float) -> None:
        ds = proto.ds
        self.asks = {
            u: make_ask(ds, u, int(ds.sequence(u)[-1]), proto.histories[u], seed)
            for u in proto.sample
        }
        for a in self.asks.values():
            self.kinds[a.kind] = self.kinds.get(a.kind, 0) + 1
        console.print(
            f"Protocol R on {ds.name}: {len(proto.sample)} users (seed {seed}); requests "
            + ", ".join(f"{k} {v}" for k, v in sorted(self.kinds.items()))
        )

    def structured_groups(self, proto: ProtocolA) -> list[list[str]]:
        return [proto.sample]  # the requests are written for the sample's users

    def structured_row(
        self,
        method: str,
        proto: ProtocolA,
        users: list[str],
        base: Resources,
        seed: int,
        started: float,
    ) -> RequestRow:
        asks = self.asks
        ranks, tops = no_llm_lists(method, proto, asks, users, base)
        hr, nd = metrics(np.array(ranks))
        sat = float(
            np.mean([_satisfaction(proto, asks, u, t) for u, t in zip(users, tops, strict=True)])
        )
        return RequestRow(
            method, len(users), hr, nd, sat, time.perf_counter() - started, ranks=ranks
        )

    def describe(self, row: RequestRow) -> str:
        return (
            f"{row.method:22} HR@10 {row.hr:.4f}  NDCG@10 {row.ndcg:.4f}  "
            f"satisfaction {row.satisfaction:.3f}"
        )

    def graph_row(
        self,
        method: str,
        proto: ProtocolA,
        base: Resources,
        tick: Callable[[], None],
        started: float,
    ) -> RequestRow:
        users, asks = proto.sample, self.asks
        turns, fb, note = graph_turns(
            method, proto, users, base, tick, lambda u: {"request": asks[u].text}, {"show_top": K}
        )
        return graph_row(method, proto, asks, users, base, turns, fb, note, started)

    def report(
        self, rows: list[RequestRow], proto: ProtocolA, settings: Settings, seed: int
    ) -> tuple[str, dict[str, Any], Callable[[Path], None]]:
        name = proto.ds.name
        payload = {
            "protocol": self.name,
            "dataset": name,
            "seed": seed,
            "settings": settings_summary(settings, ACCURACY_SETTINGS),
            "requests": {u: asdict(a) for u, a in self.asks.items()},
            "rows": [asdict(r) for r in rows],
        }
        return markdown_table(rows, name, self.kinds), payload, lambda p: plot(rows, name, p)


# ``run(settings, methods, sample_size, seed, out_dir, console, resources=None)``
run = harness.runner(RequestProtocol)
