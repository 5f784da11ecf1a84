"""Evaluation: the one harness every accuracy protocol runs in.

RecBole's split, in cdarec's terms: the data and its leave-one-out users (``ProtocolA``:
every test user, the fixed LLM sample, Protocol A's candidates), the configurations a
graph method runs (``GRAPH``), one way to run a method's turns through the graph with each
user's device memory as it was before the test item (``graph_turns``), and ``run``, which
takes a ``Protocol`` (its methods, rows and report) and does the rest. It knows both sides:
it plays the researcher who holds the whole data set.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, Literal

import numpy as np
from rich.console import Console

from cdarec.contract.plan import Plan
from cdarec.data import Dataset, leave_one_out
from cdarec.data.split import history_before_test, user_disjoint
from cdarec.device.memory import DeviceRecord
from cdarec.evaluation.report import progress, write_report
from cdarec.graph.runtime import Resources, use_resources
from cdarec.seqrec.metrics import sample_candidates
from cdarec.settings import Settings, slug
from cdarec.tracing import run_callbacks

GRAPH: dict[str, dict[str, Any]] = {
    "cloud-only": {},  # every sub-task by the cloud LLM, raw history sent (baselines/)
    "cdarec": {},
    "cdarec-fixed-plan": {"planner": "fixed"},
    "cdarec-llm-planner": {"planner": "llm"},  # the planner LLM asked on every turn
    "cdarec-no-slm": {"ablate": ["slm"]},
    "cdarec-no-semantic": {"ablate": ["semantic"]},
    "cdarec-no-collab": {"ablate": ["collab"]},
}
# Not a method of `bench accuracy`: the device-only configuration of `bench latency`
# (the graph with the device SLM doing the cloud LLM's work, fixed plan, no cloud).
CONFIG_ONLY = {"device-only": {"planner": "fixed"}}


@dataclass
class ProtocolA:
    ds: Dataset
    users: list[str]  # every test user
    sample: list[str]  # the fixed LLM sample
    candidates: dict[str, np.ndarray]
    histories: dict[str, np.ndarray]
    train_pop: np.ndarray

    @classmethod
    def build(
        cls,
        ds: Dataset,
        sample_size: int,
        seed: int,
        *,
        held: list[str] | None = None,
        population: Dataset | None = None,
    ) -> ProtocolA:
        """Every test user with a history (``held``: only these, the users the cloud's
        population leaves out), the seeded sample among them and Protocol A's candidates;
        popularity counted over the cloud's training data."""
        split = leave_one_out(ds)
        among = set(held) if held is not None else None
        users = [
            u
            for u in split.test_users()
            if len(history_before_test(ds, u)) and (among is None or u in among)
        ]
        rng = np.random.default_rng(seed)
        pick = rng.choice(len(users), size=min(sample_size, len(users)), replace=False)
        sample = [users[i] for i in sorted(pick)]
        pop = np.zeros(ds.n_items, dtype=np.float64)
        trained = leave_one_out(population) if population is not None else split
        for u, seq in trained.train.items():
            np.add.at(pop, seq, 1.0)
            if trained.valid.get(u) is not None:
                pop[trained.valid[u]] += 1.0
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


def eval_records(proto: ProtocolA, users: list[str], res: Resources) -> dict[str, DeviceRecord]:
    """Each sampled user's device memory as it was before the test item."""
    out = {}
    for u in users:
        hist = res.device.dataset_history(u)[:-1]
        out[u] = DeviceRecord(user_id=u, dataset=proto.ds.name, history=hist)
    return out


def prepare_graph(
    method: str,
    proto: ProtocolA,
    users: list[str],
    base: Resources,
    wrap_cloud: Callable[[Any], Any] | None = None,
    update: dict[str, Any] | None = None,
) -> tuple[Any, Settings, Resources]:
    """The compiled graph, settings and resources that run ``method``'s turns for
    ``users`` (each user's device memory as it was before the test item); the loaded
    models and stores of ``base`` are shared. One way to build a configuration, for
    `bench accuracy` and `bench latency` alike. ``wrap_cloud`` wraps the cloud LLM (a
    recorder of what the cloud was sent); ``update`` changes more settings (a privacy
    design)."""
    from langgraph.checkpoint.memory import InMemorySaver

    from cdarec.evaluation.baselines.cloud_only import build_cloud_only_graph
    from cdarec.graph.builder import build_graph

    settings = base.settings.model_copy(
        update={**{**GRAPH, **CONFIG_ONLY}[method], **(update or {})}
    )
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


Split = Literal["standard", "user-disjoint"]


def bench_resources(
    settings: Settings,
    console: Console,
    resources: Resources | None,
    *,
    sasrec: bool = True,
    population: Dataset | None = None,
) -> Resources:
    """The shared resources of a benchmark run, with the trained SASRec as the device's
    model (trained once on the cloud side if not cached) unless told otherwise.
    ``population``: the user-disjoint split's training users - the cloud trains on them
    only, and the device's transition model is fitted on them too."""
    base = use_resources(resources or Resources(settings))
    if population is not None:
        from cdarec.seqrec.transition import TransitionModel

        base.cloud.use_population(population)
        base.device.use_transition_model(
            TransitionModel.fit(leave_one_out(population).train, population.n_items)
        )
    if sasrec and settings.sequence_model != "transition":
        base.device.use_sequence_model(base.sasrec_model(console))  # what the device runs
    return base


class Protocol:
    """One accuracy protocol: its methods, its rows and its report. ``run`` runs any of
    them the same way: structured methods (no LLM) first, then the graph methods over the
    fixed sample with a progress bar, then the table, JSON and plot."""

    name: ClassVar[str]  # the --protocol value and the report's file name
    methods: ClassVar[tuple[str, ...]]  # every method it knows
    no_llm: ClassVar[tuple[str, ...]]  # the methods that run without an LLM

    def prepare(self, settings: Settings, console: Console, given: bool) -> Settings:
        """The settings the protocol runs on (``given``: resources were passed in)."""
        return settings

    def needs_sasrec(self, methods: list[str]) -> bool:
        return True

    def begin(self, proto: ProtocolA, seed: int, console: Console, drawn_s: float) -> None:
        """Say what is evaluated (and prepare what the rows need)."""

    def structured_groups(self, proto: ProtocolA) -> list[list[str]]:
        """The user groups a method without an LLM runs on: every test user and the
        fixed sample (beside the graph methods' rows)."""
        return [proto.users, proto.sample]

    def structured_row(
        self,
        method: str,
        proto: ProtocolA,
        users: list[str],
        base: Resources,
        seed: int,
        started: float,
    ) -> Any:
        raise NotImplementedError

    def describe(self, row: Any) -> str:
        """The one line printed when a structured row is done."""
        raise NotImplementedError

    def graph_users(self, proto: ProtocolA) -> list[str]:
        return proto.sample

    def graph_row(
        self,
        method: str,
        proto: ProtocolA,
        base: Resources,
        tick: Callable[[], None],
        started: float,
    ) -> Any:
        raise NotImplementedError

    def report(
        self, rows: list[Any], proto: ProtocolA, settings: Settings, seed: int
    ) -> tuple[str, dict[str, Any], Callable[[Path], None]]:
        """The Markdown table, the JSON payload and the plot of ``rows``."""
        raise NotImplementedError


def run(
    protocol: Protocol,
    settings: Settings,
    methods: list[str],
    sample_size: int,
    seed: int,
    out_dir: Path,
    console: Console,
    resources: Resources | None = None,
    split: Split = "standard",
    held_share: float = 0.2,
) -> list[Any]:
    """Run ``methods`` under ``protocol`` and report. ``resources`` lets tests bring fake
    models (and the protocol's data set). ``split="user-disjoint"``: a seeded
    ``held_share`` of the users is held out, the cloud's models train (and are tuned) on
    the others only, and every row evaluates the held-out users."""
    unknown = [m for m in methods if m not in protocol.methods]
    if unknown:
        raise ValueError(
            f"unknown method(s) for --protocol {protocol.name}: {', '.join(unknown)}; known: "
            f"{', '.join(protocol.methods)}"
        )
    settings = protocol.prepare(settings, console, resources is not None)
    population, held = None, None
    if split == "user-disjoint":
        resources = resources or Resources(settings)
        population, held = user_disjoint(resources.dataset, held_share, seed)
        console.print(
            f"User-disjoint split: the cloud trains on {population.n_users} users; "
            f"{len(held)} held-out users ({held_share:.0%}, seed {seed}) are evaluated"
        )
    base = bench_resources(
        settings,
        console,
        resources,
        sasrec=protocol.needs_sasrec(methods),
        population=population,
    )
    t = time.perf_counter()
    proto = ProtocolA.build(base.dataset, sample_size, seed, held=held, population=population)
    protocol.begin(proto, seed, console, time.perf_counter() - t)
    rows: list[Any] = []
    for m in [m for m in methods if m in protocol.no_llm]:
        for users in protocol.structured_groups(proto):
            row = protocol.structured_row(m, proto, users, base, seed, time.perf_counter())
            rows.append(row)
            console.print(f"  {protocol.describe(row)}")
    graph_methods = [m for m in methods if m not in protocol.no_llm]
    if graph_methods:
        users = protocol.graph_users(proto)
        with progress(console) as bar:
            for m in graph_methods:
                task = bar.add_task(f"{m:22}", total=len(users))

                def tick(task: Any = task) -> None:
                    bar.advance(task)

                rows.append(protocol.graph_row(m, proto, base, tick, time.perf_counter()))
    text, payload, plot_to = protocol.report(rows, proto, settings, seed)
    if population is not None:
        said = (
            f"User-disjoint split: the cloud's models trained on {population.n_users} "
            f"users only; every row evaluates {len(proto.users)} held-out users (seed {seed})."
        )
        text = f"{said}\n\n{text}"
        payload = {
            **payload,
            "split": {
                "kind": split,
                "held_share": held_share,
                "trained_users": population.n_users,
                "evaluated_users": len(proto.users),
            },
        }
    console.print()
    console.print(text, markup=False, highlight=False, soft_wrap=True)
    name = f"accuracy-{protocol.name}-{slug(proto.ds.name)}"
    stem = out_dir / (f"{name}-disjoint" if population is not None else name)
    write_report(stem, text, payload, plot_to, console)
    return rows


def runner(protocol: type[Protocol]) -> Callable[..., list[Any]]:
    """``run`` for one protocol (a fresh protocol object per run)."""

    def run_protocol(
        settings: Settings,
        methods: list[str],
        sample_size: int,
        seed: int,
        out_dir: Path,
        console: Console,
        resources: Resources | None = None,
        split: Split = "standard",
        held_share: float = 0.2,
    ) -> list[Any]:
        return run(
            protocol(),
            settings,
            methods,
            sample_size,
            seed,
            out_dir,
            console,
            resources,
            split=split,
            held_share=held_share,
        )

    run_protocol.__doc__ = f"{protocol.__doc__} ``resources`` lets tests bring fake models."
    return run_protocol
