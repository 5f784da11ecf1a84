"""CLI group: the benchmarks (`cdarec bench ...`), each printing a table."""

from __future__ import annotations

import argparse
from typing import Any

from cdarec.cli.common import CliError, console, settings_from


def cmd_bench_accuracy(args: argparse.Namespace) -> int:
    from pathlib import Path

    from cdarec.evaluation.protocols import full, request
    from cdarec.evaluation.protocols import sampled as accuracy

    module = {"llmrank": accuracy, "full": full, "request": request}[args.protocol]
    default = module.DEFAULT_METHODS
    methods = [m.strip() for m in (args.methods or ",".join(default)).split(",") if m.strip()]
    run = module.run
    if not 0.0 < args.held_share < 1.0:
        raise CliError("--held-share must be between 0 and 1 (e.g. 0.2)", 2)
    try:
        run(
            settings_from(args),
            methods,
            args.users,
            args.seed,
            Path(args.out),
            console,
            split=args.split,
            held_share=args.held_share,
        )
    except ValueError as err:
        raise CliError(str(err), 2) from err
    return 0


def cmd_bench_latency(args: argparse.Namespace) -> int:
    from pathlib import Path

    from cdarec.evaluation.bench.latency import CONFIGS, run

    configs = tuple(c.strip() for c in args.configs.split(",") if c.strip())
    unknown = [c for c in configs if c not in CONFIGS]
    if unknown:
        raise CliError(
            f"unknown configuration {', '.join(unknown)}; known: {', '.join(CONFIGS)}", 2
        )
    if args.turns < 1:
        raise CliError("--turns must be at least 1", 2)
    try:
        run(settings_from(args), args.turns, args.seed, Path(args.out), console, configs)
    except ValueError as err:
        raise CliError(str(err), 2) from err
    return 0


def cmd_bench_web(args: argparse.Namespace) -> int:
    from cdarec.evaluation.bench.web import run

    run(settings_from(args, user_id=args.user), args.sessions, console, rounds=args.rounds)
    return 0


def cmd_bench_turns(args: argparse.Namespace) -> int:
    from pathlib import Path

    from cdarec.evaluation.bench.turns import run

    run(settings_from(args, user_id=args.user), args.turns, console, Path(args.out))
    return 0


def cmd_bench_chat(args: argparse.Namespace) -> int:
    from pathlib import Path

    from cdarec.evaluation.bench.chat import run

    script = Path(args.script) if args.script else None
    if script is not None and not script.exists():
        raise CliError(f"no script at {script}: give a JSON list of commands or a text file")
    settings = settings_from(args, user_id=args.user)
    run(settings, args.users, args.turns, console, Path(args.out), script=script, seed=args.seed)
    return 0


def cmd_bench_load(args: argparse.Namespace) -> int:
    from pathlib import Path

    from cdarec.evaluation.bench.load import run

    if args.sessions < 1 or args.turns < 1:
        raise CliError("--sessions and --turns must be at least 1", 2)
    try:
        run(settings_from(args), args.sessions, args.turns, console, Path(args.out))
    except ValueError as err:
        raise CliError(str(err), 2) from err
    return 0


def cmd_bench_privacy(args: argparse.Namespace) -> int:
    from pathlib import Path

    from cdarec.evaluation.bench.privacy import DESIGNS, run

    names = list(DESIGNS)
    picked = [] if args.designs == "all" else [d.strip() for d in args.designs.split(",")]
    bad = [d for d in picked if not (d.isdigit() and int(d) < len(names))]
    if bad:
        raise CliError(
            f"unknown design(s) {', '.join(bad)}: give 'all' or numbers 0..{len(names) - 1} "
            "(`cdarec bench privacy --help` lists them)",
            2,
        )
    designs = [names[int(d)] for d in picked] or names
    if args.users < 1:
        raise CliError("--users must be at least 1", 2)
    try:
        run(settings_from(args), args.users, designs, args.seed, Path(args.out), console)
    except ValueError as err:
        raise CliError(str(err), 2) from err
    return 0


def _names(value: str, known: tuple[str, ...], what: str) -> tuple[str, ...]:
    picked = tuple(v.strip() for v in value.split(",") if v.strip()) if value != "all" else known
    bad = [v for v in picked if v not in known]
    if bad or not picked:
        raise CliError(f"unknown {what} {', '.join(bad) or '(none)'}; known: {', '.join(known)}", 2)
    return picked


def cmd_bench_placement(args: argparse.Namespace) -> int:
    from pathlib import Path

    from cdarec.evaluation.bench.placement import CONDITIONS, PLACEMENTS, run

    conditions = _names(args.conditions, tuple(CONDITIONS), "condition(s)")
    placements = _names(args.placements, PLACEMENTS, "placement(s)")
    if args.users < 1:
        raise CliError("--users must be at least 1", 2)
    try:
        run(
            settings_from(args),
            args.users,
            conditions,
            placements,
            console,
            Path(args.out),
            args.seed,
        )
    except (ValueError, RuntimeError) as err:
        raise CliError(str(err), 2) from err
    return 0


def cmd_bench_scale(args: argparse.Namespace) -> int:
    from pathlib import Path

    from cdarec.evaluation.bench.scale import BACKENDS, run

    try:
        sizes = tuple(int(float(x)) for x in args.sizes.split(",") if x.strip())
    except ValueError:
        raise CliError(
            f"--sizes takes comma-separated item counts, not {args.sizes!r}", 2
        ) from None
    if not sizes or min(sizes) < 1 or max(sizes) > 5_000_000:
        raise CliError("--sizes: item counts from 1 to 5,000,000", 2)
    if args.queries < 1:
        raise CliError("--queries must be at least 1", 2)
    backends = _names(args.backends, BACKENDS, "backend(s)")
    try:
        run(settings_from(args), sizes, backends, args.queries, console, Path(args.out), args.seed)
    except (ValueError, RuntimeError) as err:
        raise CliError(str(err), 2) from err
    return 0


def register(sub: Any, common: argparse.ArgumentParser) -> None:
    """bench accuracy, latency, web, turns, chat, load, privacy, placement, scale"""
    b = sub.add_parser("bench", help="benchmarks (print tables)").add_subparsers(
        dest="action", required=True
    )
    ba = b.add_parser(
        "accuracy",
        parents=[common],
        help="accuracy of every method on the same seeded candidates, beside the anchors",
        description="Protocol llmrank (ANCHORS.md, Protocol A): rank the test item among 20 "
        "candidates (1 + 19 random). Methods without an LLM run on all users and on the "
        "LLM sample; methods with one on the sample. Protocol full (ANCHORS.md, Protocol "
        "B, RecBole's ml-1m_seq): ratings >= 3, 10-core (a filtered copy is written once "
        "under $CDAREC_HOME/datasets/derived), the test item ranked against every item the "
        "user has not seen, HR@10 and NDCG@10. Prints a Markdown table with the published "
        "rows and writes JSON, Markdown and a PNG plot to --out.",
    )
    ba.add_argument(
        "--protocol",
        choices=["llmrank", "full", "request"],
        default="llmrank",
        help="llmrank: Protocol A (20 candidates); full: Protocol B (RecBole full ranking); "
        "request: Protocol R (a plain-words request per user from the held-out item's genres "
        "and decade, full ranking, satisfaction and grounded reasons)",
    )
    ba.add_argument("--users", type=int, default=200, help="size of the fixed LLM sample")
    ba.add_argument(
        "--methods",
        default=None,
        help="comma-separated: random, pop, transition, sasrec, sasrec+device, "
        "sasrec+transition, llm-zero-shot, cloud-only, cdarec, cdarec-fixed-plan, "
        "cdarec-llm-planner, cdarec-no-slm, cdarec-no-semantic, cdarec-no-collab (--protocol "
        "full: all but "
        "random, llm-zero-shot and cloud-only; --protocol request: structured, "
        "retrieval-only, oracle-filter and the graph methods). Default: the baselines, the "
        "structured model rows and cdarec",
    )
    ba.add_argument("--seed", type=int, default=2024, help="candidate and sample seed")
    ba.add_argument(
        "--split",
        choices=["standard", "user-disjoint"],
        default="standard",
        help="standard: the protocol's leave-one-out, the cloud's SASRec trained on every "
        "user's training items; user-disjoint: a seeded share of the users (--held-share) "
        "is held out, the cloud's models (SASRec, its transition weight, the transition "
        "model, popularity) learn from the other users only, and every row evaluates the "
        "held-out users (their histories reach a model only as the device's input)",
    )
    ba.add_argument(
        "--held-share",
        type=float,
        default=0.2,
        help="with --split user-disjoint: the share of users held out (default 0.2)",
    )
    ba.add_argument("--out", default="results", help="folder for JSON/Markdown/PNG")
    ba.set_defaults(func=cmd_bench_accuracy)

    bl = b.add_parser(
        "latency",
        parents=[common],
        help="cdarec vs a cloud-only and a device-only agent on the same turns (Protocol C)",
        description="Runs the same turns (Protocol A users of the fixed sample, 20 candidates "
        "each) through cloud-only (every sub-task by the cloud LLM, raw history sent), cdarec "
        "and device-only, and prints one table: wall p50/p95, first item on screen, cloud "
        "tokens, bytes (and raw-history bytes) sent to the cloud, device peak memory, "
        "NDCG@10, per-node medians. Writes JSON, a bar chart and a timeline of one cdarec "
        "turn to --out.",
    )
    bl.add_argument("--turns", type=int, default=10, help="measured turns per configuration")
    bl.add_argument(
        "--configs",
        default=",".join(("cloud-only", "cdarec", "device-only")),
        help="comma-separated subset of cloud-only, cdarec, device-only",
    )
    bl.add_argument("--seed", type=int, default=2024, help="sample and candidate seed")
    bl.add_argument("--out", default="results", help="folder for JSON and PNG")
    bl.set_defaults(func=cmd_bench_latency)

    bw = b.add_parser(
        "web", parents=[common], help="browser path: time to first item vs terminal; N sessions"
    )
    bw.add_argument("--user", default="1m_1")
    bw.add_argument("--sessions", type=int, default=10, help="sessions opened at once")
    bw.add_argument(
        "--rounds",
        type=int,
        default=2,
        help="passes over the 3 requests, terminal and web alternating (paired timings)",
    )
    bw.set_defaults(func=cmd_bench_web)

    bt = b.add_parser("turns", parents=[common], help="latency and memory of chat turns")
    bt.add_argument("--user", default="1m_1")
    bt.add_argument("--turns", type=int, default=6, help="warm turns after the first")
    bt.add_argument("--out", default="results", help="folder for turns.json and turns.png")
    bt.set_defaults(func=cmd_bench_turns)

    bc = b.add_parser(
        "chat",
        parents=[common],
        help="scripted chat sessions as people have them: p50/p95 turn, first items, planner",
        description="Runs one scripted session per user through the chat service: new "
        "requests of every kind (genres and decades, a film to be like, open words, an "
        "empty turn), like, dislike, more like N, not GENRE, undo; the requests are drawn "
        "per user from the data set's genres and popular films. Prints p50/p95 of the warm "
        "turns, time to first items and to reasons, planner calls, cloud tokens and "
        "per-node medians; writes JSON and a plot of every turn to --out.",
    )
    bc.add_argument("--users", type=int, default=5, help="sessions, one per user")
    bc.add_argument("--turns", type=int, default=12, help="steps per session")
    bc.add_argument(
        "--script",
        help="your own session instead: a JSON list of commands, or one per line "
        "(<empty> for an empty turn)",
    )
    bc.add_argument("--user", help="with --users 1: this user")
    bc.add_argument("--seed", type=int, default=0, help="the draw of each user's requests")
    bc.add_argument("--out", default="results", help="folder for JSON and PNG")
    bc.set_defaults(func=cmd_bench_chat)

    bld = b.add_parser(
        "load",
        parents=[common],
        help="concurrent signed-in sessions through the web API: p50/p95, errors, memory",
        description="Serves the web app on loopback and drives --sessions signed-in "
        "sessions (one data set user each, API tokens made for the run and removed after) "
        "through --turns turns each, all at once, after a one-session baseline. Prints "
        "throughput, p50/p95 per turn, errors and memory; writes load.json and load.png.",
    )
    bld.add_argument("--sessions", type=int, default=20, help="concurrent sessions")
    bld.add_argument("--turns", type=int, default=3, help="turns per session")
    bld.add_argument("--out", default="results", help="folder for JSON and PNG")
    bld.set_defaults(func=cmd_bench_load)

    from cdarec.evaluation.bench.privacy import DESIGNS

    bp = b.add_parser(
        "privacy",
        parents=[common],
        help="the cloud as attacker: history recovery, re-identification, linkage, feedback",
        description="Runs a scripted session per user (no request, a request, a like, "
        "another turn, and a day later a new session) through the real graph for each "
        "design, records what the cloud nodes and tools received, and attacks it with what "
        "the cloud holds (the trained model, the catalogue, the training data). Prints one "
        "table: recall@50 of the 10 most recent history items (best attack, popularity, a "
        "random vector), re-identification top-1/top-10 among all data set users, linkage "
        "of the two sessions, likes recovered, and the Gaussian mechanism's epsilon; writes "
        "JSON, Markdown and a plot to --out. Needs the trained SASRec (`cdarec train`). "
        "Designs: " + "; ".join(f"{i}: {d}" for i, d in enumerate(DESIGNS)),
    )
    bp.add_argument("--users", type=int, default=100, help="users with a scripted session")
    bp.add_argument("--designs", default="all", help="'all' or comma-separated numbers (see above)")
    bp.add_argument("--seed", type=int, default=2024, help="the user sample's seed")
    bp.add_argument("--out", default="results", help="folder for JSON/Markdown/PNG")
    bp.set_defaults(func=cmd_bench_privacy)

    from cdarec.evaluation.bench.placement import CONDITIONS, PLACEMENTS

    bl = b.add_parser(
        "placement",
        parents=[common],
        help="every placement of the movable sub-tasks under slow, gone and busy conditions",
        description="Runs the cloud as servers (the embedded llama.cpp server, a Chroma "
        "server started here) behind a loopback proxy that makes each condition: "
        + "; ".join(f"{k}: {c.says}" for k, c in CONDITIONS.items())
        + ". Each user of a Protocol R sample has three turns (their Protocol R request, "
        "open words only a model can read, an empty turn) under each placement: "
        + ", ".join(PLACEMENTS)
        + " (adaptive: chosen per turn from the measured context). Prints p50/p95 turn "
        "time, first items, cloud tokens, turns answered, HR@10/NDCG@10 and satisfaction, "
        "and issue 20's targets as met or not; writes JSON and a plot to --out. Needs the "
        "trained SASRec (`cdarec train`).",
    )
    bl.add_argument("--users", type=int, default=5, help="users, three turns each")
    bl.add_argument("--conditions", default="all", help="'all' or comma-separated names")
    bl.add_argument("--placements", default="all", help="'all' or comma-separated names")
    bl.add_argument("--seed", type=int, default=0, help="the user sample's seed")
    bl.add_argument("--out", default="results", help="folder for JSON/PNG")
    bl.set_defaults(func=cmd_bench_placement)

    bs = b.add_parser(
        "scale",
        parents=[common],
        help="the catalogue at 10k, 100k, 1M items: build, retrieval p50/p95, memory",
        description="Builds catalogues of each size (the data set's real items plus "
        "generated ones whose vectors are real items' plus noise; their text is not "
        "embedded, the embedder's rate is measured apart) in embedded Chroma and in a "
        "Chroma server started on loopback, through cdarec's own write and search code. "
        "Prints index build throughput (and its profile), retrieval p50/p95 per size "
        "(semantic without and with the request's filters, collaborative with them), disk, memory, "
        "and the device's per-turn structured scoring and item table at each size; checks "
        "issue 18's targets (retrieval p95 <= 50 ms and device scoring <= 50 ms at 1M). "
        "Needs the trained SASRec (`cdarec train`). 1M items take about 30 minutes here.",
    )
    bs.add_argument("--sizes", default="10000,100000,1000000", help="comma-separated item counts")
    bs.add_argument("--backends", default="all", help="'all' or embedded,server")
    bs.add_argument("--queries", type=int, default=50, help="searches per kind and size")
    bs.add_argument("--seed", type=int, default=0, help="the generated items' seed")
    bs.add_argument("--out", default="results", help="folder for JSON/Markdown/PNG")
    bs.set_defaults(func=cmd_bench_scale)
