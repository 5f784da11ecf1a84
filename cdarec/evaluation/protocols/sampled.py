"""`cdarec bench accuracy`: our rows beside the published ones, on the same candidates.

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
import json
import re
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from cdarec.contract.plan import Plan
from cdarec.data import Dataset, leave_one_out
from cdarec.data.split import history_before_test
from cdarec.device.memory import DeviceRecord
from cdarec.graph.runtime import Resources, use_resources
from cdarec.seqrec.metrics import demote_seen, label_ranks, ndcg_at, sample_candidates
from cdarec.seqrec.structured import blend_structured, catalogue_structured, structured_blend
from cdarec.settings import Settings, slug
from cdarec.tracing import run_callbacks

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
GRAPH: dict[str, dict[str, Any]] = {
    "cloud-only": {},  # every sub-task by the cloud LLM, raw history sent (baselines/)
    "cdarec": {},
    "cdarec-fixed-plan": {"planner": "fixed"},
    "cdarec-no-slm": {"ablate": ["slm"]},
    "cdarec-no-semantic": {"ablate": ["semantic"]},
    "cdarec-no-collab": {"ablate": ["collab"]},
}
# Not a method of `bench accuracy`: the device-only configuration of `bench latency`
# (the graph with the device SLM doing the cloud LLM's work, fixed plan, no cloud).
CONFIG_ONLY = {"device-only": {"planner": "fixed"}}
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


@dataclass
class ProtocolA:
    ds: Dataset
    users: list[str]  # every test user
    sample: list[str]  # the fixed LLM sample
    candidates: dict[str, np.ndarray]
    histories: dict[str, np.ndarray]
    train_pop: np.ndarray

    @classmethod
    def build(cls, ds: Dataset, sample_size: int, seed: int) -> ProtocolA:
        split = leave_one_out(ds)
        users = [u for u in split.test_users() if len(history_before_test(ds, u))]
        rng = np.random.default_rng(seed)
        pick = rng.choice(len(users), size=min(sample_size, len(users)), replace=False)
        sample = [users[i] for i in sorted(pick)]
        pop = np.zeros(ds.n_items, dtype=np.float64)
        for u, seq in split.train.items():
            np.add.at(pop, seq, 1.0)
            if split.valid.get(u) is not None:
                pop[split.valid[u]] += 1.0
        return cls(
            ds=ds,
            users=users,
            sample=sample,
            candidates=sample_candidates(split.test, ds.n_items, users, seed=seed),
            histories={u: history_before_test(ds, u) for u in users},
            train_pop=pop,
        )

    def label_pos(self, users: list[str]) -> np.ndarray:
        test = {u: int(self.ds.sequence(u)[-1]) for u in users}
        return np.array([int(np.flatnonzero(self.candidates[u] == test[u])[0]) for u in users])


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


# -- the graph ------------------------------------------------------------------------------
def eval_records(proto: ProtocolA, users: list[str], res: Resources) -> dict[str, DeviceRecord]:
    """Each sampled user's device memory as it was before the test item."""
    out = {}
    for u in users:
        hist = res.device.dataset_history(u)[:-1]
        out[u] = DeviceRecord(user_id=u, dataset=proto.ds.name, history=hist)
    return out


def run_resources(
    base: Resources, settings: Settings, records: dict[str, DeviceRecord]
) -> Resources:
    """Resources for one evaluation configuration: its settings and fixed device
    memories, sharing ``base``'s loaded models and stores."""
    return base.derive(settings, records=records)


def prepare_graph(
    method: str,
    proto: ProtocolA,
    users: list[str],
    base: Resources,
    wrap_cloud: Callable[[Any], Any] | None = None,
) -> tuple[Any, Settings, Resources]:
    """The compiled graph, settings and resources that run ``method``'s turns for
    ``users`` (each user's device memory as it was before the test item); the loaded
    models and stores of ``base`` are shared. One way to build a configuration, for
    `bench accuracy` and `bench latency` alike. ``wrap_cloud`` wraps the cloud LLM (a
    recorder of what the cloud was sent)."""
    from langgraph.checkpoint.memory import InMemorySaver

    from cdarec.evaluation.baselines.cloud_only import build_cloud_only_graph
    from cdarec.graph.builder import build_graph

    settings = base.settings.model_copy(update={**GRAPH, **CONFIG_ONLY}[method])
    cloud_llm = base.cloud.cloud_llm
    if method == "device-only":  # no cloud: the device SLM does the cloud's LLM work too
        cloud_llm = base.device.device_llm
    elif wrap_cloud is not None:
        cloud_llm = wrap_cloud(cloud_llm)
    res = base.derive(settings, records=eval_records(proto, users, base), cloud_llm=cloud_llm)
    use_resources(res)
    graph = build_cloud_only_graph if method == "cloud-only" else build_graph
    return graph(InMemorySaver()), settings, res


def graph_turns(
    method: str,
    proto: ProtocolA,
    users: list[str],
    base: Resources,
    tick: Callable[[], None],
    turn_input: Callable[[str], dict[str, Any]],
    update: dict[str, Any] | None = None,
) -> tuple[list[dict[str, Any]], float, str]:
    """One evaluation turn per user through ``method``'s graph (``turn_input(user)`` is
    the turn; ``update`` changes settings); returns each turn's values, the share of
    turns with a fallback, and a note: the models, who planned, the mean weights."""
    graph, settings, _ = prepare_graph(method, proto, users, base)
    settings = settings.model_copy(update=update or {})
    out, fallbacks, model_names = [], 0, set()
    sources: dict[str, int] = {}
    fell_back: dict[str, int] = {}  # node -> turns where it used its fallback
    weights: list[tuple[float, float, float]] = []
    for u in users:
        values = graph.invoke(
            turn_input(u),
            {"configurable": {"thread_id": f"{method}-{u}"}, "callbacks": run_callbacks()},
            context=settings.model_copy(update={"user_id": u}),
        )
        out.append(values)
        trace = values.get("trace") or []
        fallbacks += any(r.status == "fallback" for r in trace)
        for node in {r.node for r in trace if r.status == "fallback"}:
            fell_back[node] = fell_back.get(node, 0) + 1
        model_names |= {r.model for r in trace if r.model}
        if isinstance(plan := values.get("plan"), Plan):  # the cloud-only agent has none
            sources[plan.source] = sources.get(plan.source, 0) + 1
            w = plan.weights
            weights.append((w.sequence, w.semantic, w.judge))
        tick()
    note = ", ".join(sorted(model_names))
    if weights:  # which plans ranked: by whom, and with what weights on average
        mean = np.mean(np.array(weights), axis=0)
        note += "; plans " + " ".join(f"{k}x{v}" for k, v in sorted(sources.items()))
        note += f"; mean weights seq/sem/slm {mean[0]:.2f}/{mean[1]:.2f}/{mean[2]:.2f}"
    if fell_back:
        note += "; fallbacks " + " ".join(f"{k}x{v}" for k, v in sorted(fell_back.items()))
    return out, fallbacks / max(len(users), 1), note


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


# -- running and reporting -------------------------------------------------------------------
def run(
    settings: Settings,
    methods: list[str],
    sample_size: int,
    seed: int,
    out_dir: Path,
    console: Console,
    resources: Resources | None = None,
) -> list[Row]:
    """Run ``methods`` and report. ``resources`` lets tests bring fake models."""
    unknown = [m for m in methods if m not in ALL_METHODS]
    if unknown:
        raise ValueError(f"unknown method(s) {', '.join(unknown)}; known: {', '.join(ALL_METHODS)}")
    needs_sasrec = {"sasrec", "structured", "sasrec+device", "sasrec+transition", *GRAPH} & set(
        methods
    )
    base = bench_resources(settings, console, resources, sasrec=bool(needs_sasrec))
    t = time.perf_counter()
    proto = ProtocolA.build(base.dataset, sample_size, seed)
    console.print(
        f"Protocol A on {proto.ds.name}: {len(proto.users)} test users, LLM sample "
        f"{len(proto.sample)} (seed {seed}); candidates drawn in {time.perf_counter() - t:.1f} s"
    )
    rows: list[Row] = []
    for m in [m for m in methods if m in NO_LLM]:
        for users in (proto.users, proto.sample):
            t0 = time.perf_counter()
            rows.append(_row(m, users, score_without_llm(m, proto, users, base, seed), proto, t0))
            console.print(f"  {m:22} {len(users):5d} users  N@10 {rows[-1].ndcg[10]:6.2f}")
    llm_methods = [m for m in methods if m in WITH_LLM]
    if llm_methods:
        with progress(console) as bar:
            for m in llm_methods:
                task = bar.add_task(f"{m:22}", total=len(proto.sample))

                def tick(task: Any = task) -> None:
                    bar.advance(task)

                t0 = time.perf_counter()
                if m == "llm-zero-shot":
                    scores, fb = score_llm_zero_shot(proto, proto.sample, base, tick)
                    note = base.cloud.cloud_llm.name
                else:
                    scores, fb, note = score_graph(m, proto, proto.sample, base, tick)
                rows.append(_row(m, proto.sample, scores, proto, t0, fb, note))
    print_table(rows, proto, console)
    write_results(rows, proto, settings, seed, out_dir, console)
    return rows


def progress(console: Console) -> Progress:
    """The progress bar of every benchmark's LLM turns (one task per method)."""
    return Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=console,
    )


def write_report(
    stem: Path,
    text: str,
    payload: dict[str, Any],
    plot_to: Callable[[Path], None],
    console: Console,
) -> None:
    """A benchmark's Markdown table, JSON and plot, side by side (``stem``.md/.json/.png)."""
    stem.parent.mkdir(parents=True, exist_ok=True)
    Path(f"{stem}.md").write_text(text + "\n")
    Path(f"{stem}.json").write_text(json.dumps(payload, indent=2))
    try:
        plot_to(Path(f"{stem}.png"))
        console.print(f"wrote {stem}.json, .md, .png")
    except ImportError:
        console.print(f"wrote {stem}.json, .md [dim](no matplotlib: no plot)[/dim]")


def bench_resources(
    settings: Settings, console: Console, resources: Resources | None, *, sasrec: bool = True
) -> Resources:
    """The shared resources of a benchmark run, with the trained SASRec as the device's
    model (trained once on the cloud side if not cached) unless told otherwise."""
    base = use_resources(resources or Resources(settings))
    if sasrec and settings.sequence_model != "transition":
        base.device.use_sequence_model(base.sasrec_model(console))  # what the device runs
    return base


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


def print_table(rows: list[Row], proto: ProtocolA, console: Console) -> None:
    console.print()
    console.print(markdown_table(rows, proto), markup=False, highlight=False, soft_wrap=True)


def write_results(
    rows: list[Row],
    proto: ProtocolA,
    settings: Settings,
    seed: int,
    out_dir: Path,
    console: Console,
) -> None:
    payload = {
        "protocol": "llmrank",
        "dataset": proto.ds.name,
        "seed": seed,
        "users_all": len(proto.users),
        "users_sample": len(proto.sample),
        "settings": {
            k: str(v)
            for k, v in settings.model_dump().items()
            if k in ("device_model", "cloud_model", "sequence_model", "retrieval_k", "judge_top")
        },
        "anchors": [
            {"method": n, "users": u, "ndcg": dict(zip(KS, v, strict=True))}
            for n, u, v in ANCHOR_ROWS
        ],
        "rows": [asdict(r) for r in rows],
    }
    stem = out_dir / f"accuracy-llmrank-{slug(proto.ds.name)}"
    write_report(
        stem, markdown_table(rows, proto), payload, lambda p: plot(rows, proto, p), console
    )


def plot(rows: list[Row], proto: ProtocolA, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    labels = [f"{n} ({u})" for n, u, _ in ANCHOR_ROWS] + [f"{r.method} ({r.users})" for r in rows]
    values = [v[2] for _, _, v in ANCHOR_ROWS] + [r.ndcg[10] for r in rows]
    colours = ["#bbbbbb"] * len(ANCHOR_ROWS) + ["#2b7bb9"] * len(rows)
    fig, ax = plt.subplots(figsize=(8, 0.32 * len(labels) + 1.2))
    ax.barh(range(len(labels)), values, color=colours)
    ax.set_yticks(range(len(labels)), labels, fontsize=8)
    ax.invert_yaxis()
    for i, v in enumerate(values):
        ax.text(v + 0.5, i, f"{v:.1f}", va="center", fontsize=7)
    ax.set_xlabel("NDCG@10 x100 (grey: published, blue: measured here)")
    ax.set_title(f"Protocol A on {proto.ds.name}")
    ax.set_xlim(0, 100)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
