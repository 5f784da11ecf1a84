"""`cdarec bench privacy`: the cloud as an honest-but-curious attacker (issue 17).

Each of ``--users`` data set users (Protocol A's sample, each device holding the history
before the test item) has a scripted session through the real graph: a turn with no
request, a request, a like on the first item shown, another turn, and - a day later, a
new session - one more turn. A callback records exactly what the cloud nodes and the
cloud's tools received (their inputs, as LangGraph hands them over, and the tools'
outputs: what the cloud retrieved). The attacker holds that plus what the cloud holds
anyway: the trained model and its item table, the catalogue and the training data
(every user's sequence but the last two items, RecBole's split). It reports:

- history recovery: recall@50 of the user's 10 most recent items, for the best of its
  attacks (the user vector against the item table; popularity within the abstract's
  genres and decades; the training history of the user it re-identified), beside a
  popularity-only guess and the vector attack on a random vector;
- re-identification: the share of users it picks out of all data set users (top-1,
  top-10; expected values where the abstract ties), beside chance;
- linkage: the share of second sessions it matches to the right first session among
  every data set user's first session (what each device would send: the same device
  code, run directly for the users without a scripted session; checked equal to the
  recorded first turn for those with one);
- feedback recovery: the share of likes whose item is among its 10 guesses, from what
  changed after the like, beside its guess without that change (its own top 10).

Designs: the previous one (the vector sent, the detailed abstract), each mitigation and
the default. No LLM runs (fixed plan rule, requests read by code, no SLM judgement): the
cloud's view does not depend on them, and a design's accuracy cost is measured by
`cdarec bench accuracy` under the same settings (docs/results/privacy.md).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from langchain_core.callbacks import BaseCallbackHandler
from rich.console import Console

from cdarec.contract.schemas import UserAbstract
from cdarec.contract.state import CloudView
from cdarec.device.abstract import (
    PopulationTable,
    population_abstracts,
    release,
)
from cdarec.device.memory import DeviceRecord, apply_feedback
from cdarec.device.sharing import DELTA, gaussian_epsilon
from cdarec.evaluation.harness import ProtocolA, bench_resources, prepare_graph
from cdarec.evaluation.report import progress, settings_summary, write_report
from cdarec.graph.builder import CLOUD_NODES
from cdarec.graph.runtime import Resources
from cdarec.settings import Settings, slug

# name -> settings: the previous design first, then each mitigation, the default.
DESIGNS: dict[str, dict[str, Any]] = {
    "previous: vector sent, detailed abstract": {"collab_side": "cloud", "abstract_k": 1},
    "vector sent, k-anonymous abstract": {"collab_side": "cloud", "abstract_k": 100},
    "vector noised (sigma 0.5), k-anonymous abstract": {
        "collab_side": "cloud",
        "collab_noise": 0.5,
        "abstract_k": 100,
    },
    "vector noised (sigma 2), k-anonymous abstract": {
        "collab_side": "cloud",
        "collab_noise": 2.0,
        "abstract_k": 100,
    },
    "vector on the device, detailed abstract": {"collab_side": "device", "abstract_k": 1},
    "vector on the device, k-anonymous abstract": {"collab_side": "device", "abstract_k": 100},
    "default: vector on the device, bucket-only abstract": {
        "collab_side": "device",
        "abstract_k": 0,
    },
}
RECENT = 10  # the history items the attacker tries to recover
GUESSES = 50  # its guesses (recall@50)
DAY = 86400.0


class CloudTap(BaseCallbackHandler):
    """Records what the cloud's nodes and tools receive (and what its tools return)."""

    def __init__(self) -> None:
        self.nodes: list[tuple[str, dict[str, Any]]] = []
        self.tools_in: list[Any] = []
        self.tools_out: list[Any] = []

    def on_chain_start(self, serialized: Any, inputs: Any, **kw: Any) -> None:
        name = kw.get("name")
        if name in CLOUD_NODES and isinstance(inputs, dict):
            self.nodes.append((name, dict(inputs)))

    def on_tool_start(self, serialized: Any, input_str: str, **kw: Any) -> None:
        self.tools_in.append(kw.get("inputs") or input_str)

    def on_tool_end(self, output: Any, **kw: Any) -> None:
        self.tools_out.append(output)

    def take(self) -> Observation:
        """What the cloud saw in the turn just run (and forget it)."""
        abstract, vectors, keys = None, [], set()
        for _, inputs in self.nodes:
            keys |= set(inputs)
            if isinstance(inputs.get("abstract"), UserAbstract):
                abstract = inputs["abstract"]
            if inputs.get("user_vector") is not None:
                vectors.append(np.asarray(inputs["user_vector"], dtype=np.float64))
        for args in self.tools_in:
            if isinstance(args, dict) and args.get("vector"):
                vectors.append(np.asarray(args["vector"], dtype=np.float64))
        hits = [h for out in self.tools_out for h in (out if isinstance(out, list) else [])]
        retrieved = [h["item_id"] for h in sorted(hits, key=lambda h: -h.get("similarity", 0))]
        self.nodes, self.tools_in, self.tools_out = [], [], []
        return Observation(abstract, vectors[0] if vectors else None, retrieved, keys)


@dataclass
class Observation:
    abstract: UserAbstract | None
    vector: np.ndarray | None
    retrieved: list[str]  # the catalogue ids the cloud's own searches returned
    keys: set[str] = field(default_factory=set)  # the state channels the cloud nodes got


@dataclass
class DesignResult:
    design: str
    settings: dict[str, Any]
    users: int
    recovery: float  # best attack's recall@50
    recovery_attack: str
    recovery_pop: float
    recovery_random: float
    reid_top1: float
    reid_top10: float
    linkage: float
    feedback: float
    feedback_without: float
    vector_turns: float  # share of turns the cloud got a vector
    direct_matches: float  # share of first turns equal to the device code run directly
    epsilon: float
    seconds: float


def _recall(guess: np.ndarray, truth: set[int]) -> float:
    return len(truth & set(guess[:GUESSES].tolist())) / max(len(truth), 1)


def _top(scores: np.ndarray, k: int) -> np.ndarray:
    k = min(k, len(scores))
    idx = np.argpartition(-scores, k - 1)[:k]
    return idx[np.argsort(-scores[idx], kind="stable")]


def _unit(x: np.ndarray) -> np.ndarray:
    return x / np.maximum(np.linalg.norm(x, axis=-1, keepdims=True), 1e-12)


def _match_key(a: UserAbstract) -> tuple:
    """What the attacker matches abstracts on: everything a session does not change
    (not the live feedback, not the recency a like refreshes)."""
    s = a.state
    return (s.bucket, s.history_size, tuple(a.top_genres), tuple(a.decades))


class Attacker:
    """The cloud's knowledge: the model, the catalogue, the training data."""

    def __init__(self, res: Resources, proto: ProtocolA) -> None:
        ds = proto.ds
        self.ds = ds
        self.model = res.device.sequence_model
        self.items = np.asarray(self.model.item_vectors(), dtype=np.float64)
        self.pop = proto.train_pop
        self.users = list(ds.users)
        self.train = [ds.sequence(u)[:-2] for u in self.users]  # what the cloud trained on
        self.train_vecs = _unit(np.asarray(self.model.user_vectors(self.train), np.float64))
        end = res.device.dataset_end
        self.train_abstracts = population_abstracts(ds, end, drop_last=2)
        self.index = {u: i for i, u in enumerate(self.users)}
        self.rng = np.random.default_rng(0)
        self.genre_of = [set(it.genres) for it in ds.items]
        self.decade_of = [f"{it.year // 10 * 10}s" if it.year else "" for it in ds.items]

    def released_abstracts(self, table: PopulationTable, k: int) -> list[tuple]:
        return [_match_key(release(a, table, k)[0]) for a in self.train_abstracts]

    def candidates(self, obs: Observation, keys: list[tuple]) -> np.ndarray:
        """The population users the observation could be (all, without an abstract)."""
        if obs.abstract is None:
            return np.arange(len(self.users))
        want = _match_key(obs.abstract)
        same = np.array([i for i, k in enumerate(keys) if k == want], dtype=np.int64)
        return same if len(same) else np.arange(len(self.users))

    def reidentify(self, obs: Observation, truth: int, keys: list[tuple]) -> tuple[float, float]:
        """Expected top-1 and top-10 hits of the true user."""
        cand = self.candidates(obs, keys)
        if truth not in set(cand.tolist()):
            return 0.0, 0.0
        if obs.vector is None:
            return 1.0 / len(cand), min(10, len(cand)) / len(cand)
        sims = self.train_vecs[cand] @ _unit(obs.vector)
        rank = int((sims > sims[np.flatnonzero(cand == truth)[0]]).sum())
        return float(rank == 0), float(rank < 10)

    def recover(self, obs: Observation, keys: list[tuple]) -> dict[str, np.ndarray]:
        """Each attack's 50 guesses of the history's recent items."""
        out: dict[str, np.ndarray] = {"popularity": _top(self.pop, GUESSES)}
        rand = self.rng.normal(size=self.items.shape[1])
        out["random vector"] = _top(self.items @ rand, GUESSES)
        if obs.vector is not None:
            out["user vector"] = _top(self.items @ obs.vector, GUESSES)
        a = obs.abstract
        if a is not None and (a.top_genres or a.decades):
            boost = np.array(
                [
                    sum(2.0 / (r + 1) for r, g in enumerate(a.top_genres) if g in gs)
                    + (1.0 if d in a.decades else 0.0)
                    for gs, d in zip(self.genre_of, self.decade_of, strict=True)
                ]
            )
            out["abstract + popularity"] = _top(np.log1p(self.pop) + boost, GUESSES)
        cand = self.candidates(obs, keys)
        if obs.vector is not None:
            best = cand[int(np.argmax(self.train_vecs[cand] @ _unit(obs.vector)))]
        else:
            best = cand[self.rng.integers(len(cand))]
        if len(cand) < len(self.users) or obs.vector is not None:
            seen = self.train[best][::-1]
            out["re-identified user's training items"] = np.array(
                list(dict.fromkeys(seen.tolist()))[:GUESSES], dtype=np.int64
            )
        return out


def _session(
    graph: Any,
    settings: Settings,
    user: str,
    requests: list[str],
    tap: CloudTap,
    rec: DeviceRecord,
) -> list[Observation]:
    """The scripted session; returns what the cloud saw on each of its turns."""
    seen: list[Observation] = []
    ctx = settings.model_copy(update={"user_id": user})

    def turn(thread: str, request: str) -> dict[str, Any]:
        cfg = {"configurable": {"thread_id": thread}, "callbacks": [tap]}
        values = graph.invoke({"request": request}, cfg, context=ctx)
        seen.append(tap.take())
        return values

    turn(f"{user}-1", "")
    out = turn(f"{user}-1", requests[0])
    liked = out["ranking"][0].item_id if out.get("ranking") else None
    if liked:
        apply_feedback(rec, "like", item_id=liked, thread=f"{user}-1")
    turn(f"{user}-1", "")
    for f in rec.feedback:  # a day later
        f.ts -= DAY
    for i in rec.history:
        if i.source == "like":
            i.ts -= DAY
    turn(f"{user}-2", "")
    seen.append(Observation(None, None, [liked] if liked else []))  # the truth, not seen
    return seen


def _requests(ds: Any, rng: np.random.Generator) -> list[str]:
    """A request the code reads whole: a genre of the catalogue and a decade."""
    genres = [g for g in ds.genres if g.lower() not in ("unknown", "(no genres listed)")]
    decade = int(rng.choice([1970, 1980, 1990]))
    return [f"a {rng.choice(genres).lower()} from the {decade}s"]


def direct_observation(
    res: Resources, rec: DeviceRecord, key: bytes
) -> tuple[UserAbstract, np.ndarray | None]:
    """What a device would send on a session's first turn, from the device's own code."""
    from cdarec.device.nodes import shared_with_cloud

    a, _, vec = shared_with_cloud(res.device, rec, key)
    return a, None if vec is None else np.asarray(vec, dtype=np.float64)


def run_design(
    name: str,
    update: dict[str, Any],
    proto: ProtocolA,
    users: list[str],
    base: Resources,
    attacker: Attacker,
    tick: Any,
) -> DesignResult:
    t0 = time.perf_counter()
    ds = proto.ds
    graph, settings, res = prepare_graph(
        "cdarec-no-slm", proto, users, base, update={**update, "planner": "fixed"}
    )
    tap = CloudTap()
    rng = np.random.default_rng(7)
    table = res.device.abstract_table
    keys = attacker.released_abstracts(table, settings.abstract_k)
    rid1, rid10, fb, fb0 = [], [], [], []
    attacks: dict[str, list[float]] = {}
    firsts: dict[str, Observation] = {}
    seconds: dict[str, Observation] = {}
    n_turns = n_vec = direct_same = 0
    for u in users:
        rec = res.device.records[u]
        recent = {int(ds.item_index[i]) for i in rec.history_ids()[-RECENT:]}
        key = rng.bytes(32)
        direct = direct_observation(res, rec.model_copy(deep=True), key)
        obs = _session(graph, settings, u, _requests(ds, rng), tap, rec)
        truth_liked = obs.pop().retrieved
        leaked = set().union(*(o.keys for o in obs)) - set(CloudView.__annotations__)
        if leaked:  # the graph's input schemas would have to be broken
            raise RuntimeError(f"cloud nodes received channels outside CloudView: {leaked}")
        n_turns += len(obs)
        n_vec += sum(o.vector is not None for o in obs)
        first = obs[0]
        direct_same += first.abstract == direct[0] and (direct[1] is None) == (first.vector is None)
        firsts[u], seconds[u] = first, obs[-1]
        truth = attacker.index[u]
        one, ten = attacker.reidentify(first, truth, keys)
        rid1.append(one)
        rid10.append(ten)
        guesses = attacker.recover(first, keys)
        for attack, g in guesses.items():
            attacks.setdefault(attack, []).append(_recall(g, recent))
        if truth_liked:
            item = ds.item_index[truth_liked[0]]
            before, after = obs[1], obs[2]
            base_guess = [ds.item_index[i] for i in dict.fromkeys(before.retrieved)][:10]
            fb0.append(float(item in base_guess))
            guess = base_guess
            if before.vector is not None and after.vector is not None:
                guess = _top(attacker.items @ (after.vector - before.vector), 10).tolist()
            fb.append(float(item in guess))
        tick()
    # linkage: each second session against every data set user's first session
    link = []
    pop_first: list[tuple[tuple, np.ndarray | None]] = []
    others = [x for x in ds.users if x not in firsts]
    for x in others:
        hist = res.device.dataset_history(x)[:-1]
        r = DeviceRecord(user_id=x, dataset=ds.name, history=hist)
        a, v = direct_observation(res, r, rng.bytes(32))
        pop_first.append((_match_key(a), v))
    for u in users:
        pop_first.append((_match_key(firsts[u].abstract), firsts[u].vector))  # type: ignore[arg-type]
    names = [*others, *users]
    fkeys = [k for k, _ in pop_first]
    vecs = [v for _, v in pop_first]
    for u in users:
        o2 = seconds[u]
        want = _match_key(o2.abstract)  # type: ignore[arg-type]
        cand = [i for i, k in enumerate(fkeys) if k == want] or list(range(len(names)))
        truth = names.index(u)
        if truth not in cand:
            link.append(0.0)
        elif o2.vector is None or vecs[truth] is None:
            link.append(1.0 / len(cand))
        else:
            m = np.array([_unit(vecs[i]) for i in cand])  # type: ignore[arg-type]
            best = cand[int(np.argmax(m @ _unit(o2.vector)))]
            link.append(float(best == truth))
    means = {a: float(np.mean(v)) for a, v in attacks.items()}
    real = {a: v for a, v in means.items() if a not in ("popularity", "random vector")}
    best = max(real, key=lambda a: real[a]) if real else "popularity"
    return DesignResult(
        design=name,
        settings=update,
        users=len(users),
        recovery=real.get(best, means["popularity"]),
        recovery_attack=best,
        recovery_pop=means["popularity"],
        recovery_random=means["random vector"],
        reid_top1=float(np.mean(rid1)),
        reid_top10=float(np.mean(rid10)),
        linkage=float(np.mean(link)),
        feedback=float(np.mean(fb)) if fb else 0.0,
        feedback_without=float(np.mean(fb0)) if fb0 else 0.0,
        vector_turns=n_vec / max(n_turns, 1),
        direct_matches=direct_same / max(len(users), 1),
        epsilon=gaussian_epsilon(float(update.get("collab_noise", 0.0)))
        if update.get("collab_side") == "cloud"
        else 0.0,
        seconds=time.perf_counter() - t0,
    )


def _pct(x: float) -> str:
    return f"{100 * x:.1f}%"


def table(rows: list[DesignResult], n_users: int) -> str:
    chance1, chance10 = 1 / n_users, 10 / n_users
    head = (
        "| design | history recall@50 (best attack) | vs popularity / random vector | "
        "re-id top-1 / top-10 | linkage | likes recovered (without the change) | "
        "turns with a vector | epsilon (delta 1e-5) |"
    )
    lines = [head, "|" + "---|" * 8]
    for r in rows:
        eps = (
            "-" if r.epsilon == 0 else ("inf" if r.epsilon == float("inf") else f"{r.epsilon:.1f}")
        )
        lines.append(
            f"| {r.design} | **{r.recovery:.3f}** ({r.recovery_attack}) | "
            f"{r.recovery_pop:.3f} / {r.recovery_random:.3f} | "
            f"**{_pct(r.reid_top1)}** / {_pct(r.reid_top10)} | **{_pct(r.linkage)}** | "
            f"{_pct(r.feedback)} ({_pct(r.feedback_without)}) | {_pct(r.vector_turns)} | {eps} |"
        )
    lines.append(f"| *chance* | | | {_pct(chance1)} / {_pct(chance10)} | {_pct(chance1)} | | | |")
    return "\n".join(lines)


def verdict(r: DesignResult) -> list[str]:
    """The issue's targets for the default design, met or not."""
    return [
        f"history recovery {r.recovery:.3f} <= popularity x 1.1 = {1.1 * r.recovery_pop:.3f}: "
        + ("met" if r.recovery <= 1.1 * r.recovery_pop else "NOT met"),
        f"re-identification top-1 {_pct(r.reid_top1)} <= 1%: "
        + ("met" if r.reid_top1 <= 0.01 else "NOT met"),
        f"linkage {_pct(r.linkage)} <= 5%: " + ("met" if r.linkage <= 0.05 else "NOT met"),
    ]


def plot(rows: list[DesignResult], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 3, figsize=(14, 0.6 * len(rows) + 2), sharey=True)
    names = [r.design for r in rows]
    y = np.arange(len(rows))
    series = [
        ("history recall@50", [r.recovery for r in rows], rows[0].recovery_pop, "popularity"),
        ("re-identification top-1", [r.reid_top1 for r in rows], 0.01, "target 1%"),
        ("linkage", [r.linkage for r in rows], 0.05, "target 5%"),
    ]
    for ax, (title, vals, ref, label) in zip(axes, series, strict=True):
        ax.barh(y, vals, color=["#9b2f8f" if "default" in n else "#2b7bb9" for n in names])
        ax.axvline(ref, color="k", ls="--", lw=1, label=label)
        ax.set_title(title)
        ax.legend(loc="lower right", fontsize=8)
    axes[0].set_yticks(y, names, fontsize=8)
    axes[0].invert_yaxis()
    fig.suptitle("What the cloud can learn, per design (lower is more private)")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def run(
    settings: Settings,
    n_users: int,
    designs: list[str],
    seed: int,
    out_dir: Path,
    console: Console,
    resources: Resources | None = None,
) -> list[DesignResult]:
    unknown = [d for d in designs if d not in DESIGNS]
    if unknown:
        raise ValueError(f"unknown design(s) {unknown}; known: {', '.join(DESIGNS)}")
    base = bench_resources(settings, console, resources)
    if not hasattr(base.device.sequence_model, "user_vector"):
        raise ValueError("the privacy attack needs the trained SASRec: run `cdarec train`")
    proto = ProtocolA.build(base.dataset, n_users, seed)
    users = proto.sample
    console.print(
        f"[bold]bench privacy[/]: {len(users)} users of {proto.ds.name} "
        f"({proto.ds.n_users} in the population), {len(designs)} designs"
    )
    attacker = Attacker(base, proto)
    rows = []
    with progress(console) as bar:
        for d in designs:
            task = bar.add_task(f"{d[:40]:40}", total=len(users))
            rows.append(
                run_design(
                    d, DESIGNS[d], proto, users, base, attacker, lambda t=task: bar.advance(t)
                )
            )
    text = table(rows, proto.ds.n_users)
    notes = [f"delta {DELTA:g}; population {proto.ds.n_users} users"]
    for r in rows:
        notes.append(f"{r.design}: " + "; ".join(verdict(r)))
    checks = ", ".join(f"{r.direct_matches:.0%}" for r in rows)
    notes.append(f"recorded first turns equal to the device code run directly: {checks}")
    full = text + "\n\n" + "\n".join(f"- {n}" for n in notes)
    console.print()
    console.print(full, markup=False, highlight=False, soft_wrap=True)
    payload = {
        "settings": settings_summary(settings, ("dataset", "embedder", "abstract_k")),
        "users": users,
        "rows": [r.__dict__ for r in rows],
    }
    stem = out_dir / f"privacy-{slug(proto.ds.name)}"
    write_report(stem, full, payload, lambda p: plot(rows, p), console)
    return rows
