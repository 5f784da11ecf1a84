"""cdarec's command line: set-up, catalogue, users, device memory and chat.

Every command builds its settings the same way (``Settings``: flags > environment >
settings file > defaults) and runs the same graph as ``langgraph dev`` serves.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from cdarec.assets import AssetError, catalog, ensure_asset
from cdarec.catalogue.store import open_catalogue
from cdarec.data.atomic import DataError
from cdarec.llm.factory import ModelSpecError, parse_spec
from cdarec.llm.server import ServerError
from cdarec.memory.device_memory import MemoryError_
from cdarec.prompts import PromptError
from cdarec.runtime import Resources, UserNotFoundError, get_resources
from cdarec.settings import Settings
from cdarec.tracing import run_callbacks

console = Console(highlight=False)
err_console = Console(stderr=True, highlight=False)

TEST_MODELS = ("smollm2-135m",)
BAR = 24  # width of the step timeline; it shows which steps overlapped
CHAT_HELP = """Commands:
  <text>            ask for recommendations ("something like Alien but lighter")
  like N            thumbs up item N of the last list (goes into device memory)
  dislike N         thumbs down item N (never shown again; its genres weigh less)
  more like N       recommendations similar to item N
  not GENRE         avoid a genre from now on ("not Horror")
  undo              take back the last feedback
  help              this text
  quit              leave (the session resumes with --thread)"""


class CliError(Exception):
    def __init__(self, message: str, code: int = 1) -> None:
        super().__init__(message)
        self.code = code


# -- settings --------------------------------------------------------------------------------
def settings_from(args: argparse.Namespace, **extra: Any) -> Settings:
    overrides = {
        k: v
        for k, v in {
            "home": getattr(args, "home", None),
            "dataset": getattr(args, "dataset", None),
            "device_model": getattr(args, "device_model", None),
            "cloud_model": getattr(args, "cloud_model", None),
            "user_id": getattr(args, "user", None),
            **extra,
        }.items()
        if v is not None
    }
    return Settings(**overrides)


@contextmanager
def progress_bar(label: str) -> Iterator[Callable[[int, int], None]]:
    with Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        TextColumn("{task.completed}/{task.total}"),
        TimeElapsedColumn(),
        console=err_console,
        transient=False,
    ) as prog:
        task = prog.add_task(label, total=None)

        def update(done: int, total: int) -> None:
            prog.update(task, completed=done, total=total)

        yield update


def _log(msg: str) -> None:
    err_console.print(f"[dim]{msg}[/dim]")


# -- commands --------------------------------------------------------------------------------
def cmd_models_pull(args: argparse.Namespace) -> int:
    s = settings_from(args)
    names = args.names or _default_models(s, args.tests)
    for name in names:
        with err_console.status(f"pulling {name} ..."):
            paths = ensure_asset(s.home, "models", name, _log)
        console.print(f"[green]ok[/green] {name}: {paths[0]}")
    return 0


def _default_models(s: Settings, tests: bool) -> list[str]:
    names = []
    for spec in (s.device_model, s.cloud_model):
        provider, name = parse_spec(spec)
        if provider in ("llamacpp", "embedded") and ("models", name) in catalog():
            names.append(name)
    if tests:
        names.extend(TEST_MODELS)
    return list(dict.fromkeys(names))


def cmd_models_list(args: argparse.Namespace) -> int:
    s = settings_from(args)
    table = Table("name", "file", "present", "description")
    for (kind, name), asset in sorted(catalog().items()):
        if kind != "models":
            continue
        path = s.home / "models" / asset.files[0].filename
        table.add_row(
            name, asset.files[0].filename, "yes" if path.exists() else "no", asset.description
        )
    console.print(table)
    return 0


def cmd_data_pull(args: argparse.Namespace) -> int:
    s = settings_from(args)
    for name in args.names or ["ml-1m", "ml-100k"]:
        paths = ensure_asset(s.home, "datasets", name, _log)
        console.print(f"[green]ok[/green] {name}: {paths[0].parent}")
    return 0


def cmd_index(args: argparse.Namespace) -> int:
    s = settings_from(args)
    res = Resources(s)
    ds = res.dataset
    cat = open_catalogue(s, ds)
    with progress_bar(f"indexing {ds.name}") as update:
        report = cat.index(ds.items, progress=update)
    console.print(f"catalogue {cat.name}: {cat.count()} items ({report})")
    return 0


def cmd_setup(args: argparse.Namespace) -> int:
    """Everything a first run needs: models, embedder, data, catalogue, sequence model."""
    s = settings_from(args)
    cmd_models_pull(argparse.Namespace(**{**vars(args), "names": None}))
    ensure_asset(s.home, "embedders", s.embedder, _log)
    datasets = args.datasets or [s.dataset]
    for name in datasets:
        ds_args = argparse.Namespace(**{**vars(args), "dataset": name})
        if name in ("ml-1m", "ml-100k"):
            ensure_asset(s.home, "datasets", name, _log)
        cmd_index(ds_args)
        res = Resources(settings_from(ds_args))
        with err_console.status(f"fitting the structured user model on {name} ..."):
            res.sequence_model  # noqa: B018  (built and cached on disk)
        if not args.no_train and (log := background_training(res)) is not None:
            console.print(
                f"SASRec for {name} is training in the background (about 10 minutes, at low "
                f"priority; log: {log}). Until it is done the device uses the transition "
                "model; the chat switches by itself, and says so, when it is ready."
            )
    console.print("[green]set-up complete[/green]")
    return 0


def _alive(pid_file: Any) -> bool:
    import os

    try:
        os.kill(int(pid_file.read_text().strip()), 0)
        return True
    except (OSError, ValueError):
        return False


def background_training(res: Resources) -> Any:
    """Start `cdarec train` for the data set in the background unless its SASRec exists or
    a training is already running; returns the training's log file, or None."""
    import os
    import subprocess

    if res.settings.sequence_model == "transition" or res.sasrec_path().exists():
        return None
    logs = res.settings.home / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    slug = _slug(res.dataset.name)
    log, pid_file = logs / f"train-{slug}.log", logs / f"train-{slug}.pid"
    if pid_file.exists() and _alive(pid_file):
        return log
    cmd = [
        sys.executable,
        "-c",
        "import sys; from cdarec.app import main; sys.exit(main(sys.argv[1:]))",
        "train",
        "--home",
        str(res.settings.home),
        "--dataset",
        res.settings.dataset,
    ]
    with log.open("ab") as out:
        proc = subprocess.Popen(  # detached: it outlives the set-up command
            cmd,
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
            preexec_fn=lambda: os.nice(10),  # the chat stays responsive meanwhile
        )
    pid_file.write_text(str(proc.pid))
    return log


def training_in_progress(res: Resources) -> Any:
    """The log of a background training of this data set's SASRec still running, or None."""
    pid_file = res.settings.home / "logs" / f"train-{_slug(res.dataset.name)}.pid"
    if res.sasrec_path().exists() or not pid_file.exists() or not _alive(pid_file):
        return None
    return pid_file.with_suffix(".log")


def cmd_users(args: argparse.Namespace) -> int:
    res = Resources(settings_from(args))
    ds = res.dataset
    table = Table("user", "interactions", title=f"{ds.name}: {ds.n_users} users")
    for u in ds.users[: args.limit]:
        table.add_row(u, str(len(ds.sequence(u))))
    on_device = res.memory.users()
    console.print(table)
    if on_device:
        console.print(f"devices with memory: {', '.join(on_device[:20])}")
    return 0


def cmd_memory(args: argparse.Namespace) -> int:
    s = settings_from(args)
    res = Resources(s)
    if args.action == "new":
        if res.memory.exists(args.user):
            raise CliError(f"user '{args.user}' already has device memory; use `memory reset`")
        res.memory.seed(args.user, [])
        console.print(f"created an empty (cold-start) device for '{args.user}'")
    elif args.action == "reset":
        if not res.dataset.has_user(args.user):
            res.memory.seed(args.user, [], overwrite=True)
        else:
            res.memory.seed(args.user, res.dataset_history(args.user), overwrite=True)
        console.print(f"device memory of '{args.user}' re-seeded")
    else:
        rec = res.device_record(args.user)
        console.print(
            f"{len(rec.history)} events, {len(rec.feedback)} feedback, "
            f"{len(rec.shown)} sessions (stored at {res.memory.path(args.user)})"
        )
        for f in rec.feedback[-10:]:
            console.print(f"  {f.kind} {f.item_id or f.genre or ''}")
    return 0


# -- chat ------------------------------------------------------------------------------------
_FEEDBACK = re.compile(r"^(like|dislike|more like|more)\s*#?(\d+)$", re.IGNORECASE)
_NOT_GENRE = re.compile(r"^(?:not|no more)\s+(.+)$", re.IGNORECASE)


class ChatSession:
    """One chat session (a LangGraph thread) for one user's device."""

    def __init__(self, settings: Settings, thread: str | None) -> None:
        from cdarec.graph.builder import build_graph
        from cdarec.graph.checkpoint import sqlite_checkpointer

        self.settings = settings
        self.res = get_resources(settings)
        self.user = settings.user_id or ""
        self.res.device_record(self.user)  # unknown user: clear error before anything runs
        self.graph = build_graph(sqlite_checkpointer(settings.checkpoint_db))
        self.thread = thread or f"{_slug(self.user)}-{uuid.uuid4().hex[:8]}"
        self.notice = ""  # a one-off message for the next turn's output (model switched)
        self.config = {
            "configurable": {"thread_id": self.thread},
            "metadata": {"user_id": self.user},  # lets `cdarec sessions` say whose it is
            "callbacks": run_callbacks(),  # LangSmith, device runs masked (if tracing is on)
        }

    def last_ranking(self) -> list[Any]:
        return list(self.graph.get_state(self.config).values.get("ranking") or [])

    def item(self, n: int) -> Any:
        ranking = self.last_ranking()
        if not 1 <= n <= len(ranking):
            raise CliError(f"there is no item {n} in the last list (1..{len(ranking)})", 2)
        return ranking[n - 1]

    def feedback(self, text: str) -> tuple[str | None, str]:
        """Apply a feedback command; returns (request to run or None, message)."""
        text = text.strip()
        mem = self.res.memory
        if text.lower() == "undo":
            last = mem.undo_feedback(self.user)
            return (
                None,
                f"undone: {last.kind} {last.item_id or last.genre}" if last else "nothing to undo",
            )
        m = _FEEDBACK.match(text)
        if m:
            kind, item = m.group(1).lower(), self.item(int(m.group(2)))
            if kind in ("more like", "more"):
                mem.add_feedback(self.user, "more_like", item_id=item.item_id, thread=self.thread)
                return f"more movies like {item.label}", f"more like {item.label}"
            mem.add_feedback(self.user, kind, item_id=item.item_id, thread=self.thread)  # type: ignore[arg-type]
            return None, f"{kind}d {item.label} (saved on the device)"
        m = _NOT_GENRE.match(text)
        if m:
            wanted = m.group(1).strip().lower()
            genre = next((g for g in self.res.dataset.genres if g.lower() == wanted), None)
            if genre is not None:  # otherwise it is a request ("not too scary please")
                mem.add_feedback(self.user, "not_genre", genre=genre, thread=self.thread)
                return None, f"will avoid {genre}"
        return text, ""

    def turn(
        self,
        request: str,
        on_step: Callable[[Any], None] | None = None,
        on_first_items: Callable[[list[dict[str, Any]]], None] | None = None,
    ) -> dict[str, Any]:
        """Run one turn, reporting each step as it finishes and the fused list as soon as
        the device has it (before the SLM's reasons); returns the thread's state."""
        if self.res.refresh_sequence_model():
            self.notice = "The trained SASRec is ready: the device uses it from this turn on."
        for mode, chunk in self.graph.stream(
            {"request": request},
            self.config,
            context=self.settings,
            stream_mode=["updates", "custom"],
        ):
            if mode == "custom":
                if on_first_items and isinstance(chunk, dict) and "first_items" in chunk:
                    on_first_items(chunk["first_items"])
                continue
            for values in chunk.values():
                if on_step and isinstance(values, dict):
                    for rec in values.get("trace", []):
                        on_step(rec)
        return dict(self.graph.get_state(self.config).values)


def _slug(s: str) -> str:
    return re.sub(r"[^A-Za-z0-9_-]+", "_", s)[:40] or "user"


def print_step(rec: Any) -> None:
    colour = "cyan" if rec.side == "cloud" else "magenta"
    flag = "" if rec.status == "ok" else f" [yellow]{rec.status}[/yellow]"
    tokens = f" {rec.tokens_in}->{rec.tokens_out} tok" if rec.tokens_in or rec.tokens_out else ""
    err_console.print(
        f"  [{colour}]{rec.side:6}[/{colour}] {rec.node:26} {rec.ms:6d} ms{tokens}{flag}"
    )


def print_first_items(items: list[dict[str, Any]]) -> None:
    """The fused list, streamed before the device model has written its reasons."""
    shown = "; ".join(f"{n}. {it['label']}" for n, it in enumerate(items[:5], 1))
    console.print(f"  [bold]first picks:[/bold] {shown} [dim](reasons coming)[/dim]")


def turn_warnings(values: dict[str, Any]) -> list[str]:
    """What went wrong in a turn that still answered: fallbacks, with what to do."""
    out = []
    for r in values.get("trace") or []:
        if r.status != "fallback":
            continue
        hint = ""
        if "model call failed" in r.detail:
            hint = (
                " - check that the endpoint is up (OPENAI_BASE_URL / OLLAMA_HOST) or "
                "choose another model with --cloud-model / --device-model"
            )
        out.append(f"{r.node} ({r.side}) used its fallback: {r.detail}{hint}")
    return out


def print_turn(values: dict[str, Any]) -> None:
    plan = values.get("plan")
    table = Table(
        "#",
        "title",
        "genres",
        "why",
        title=values.get("request") or "recommendations",
        show_lines=False,
    )
    for r in values.get("ranking") or []:
        table.add_row(str(r.rank), r.label, ", ".join(r.genres), r.reason)
    for note in values.get("notes") or []:
        console.print(f"[bold]{escape(note)}[/bold]")
    console.print(table)
    for w in turn_warnings(values):
        err_console.print(f"[yellow]warning:[/yellow] {w}", soft_wrap=True)
    if plan is not None:
        w = plan.weights
        console.print(
            f"[dim]plan: {plan.strategy} ({plan.source}; {escape(plan.note)}) "
            f"semantic={'on' if plan.semantic else 'off'} "
            f"sequence={'on' if plan.sequence else 'off'} k={plan.retrieval.k} weights "
            f"seq {w.sequence:.2f} / sem {w.semantic:.2f} / like {w.similar:.2f} / "
            f"slm {w.judge:.2f}[/dim]"
        )
    trace = values.get("trace") or []
    if trace:
        t0 = min(r.start for r in trace)
        span = max(r.end for r in trace) - t0 or 1.0
        console.print(f"[dim]steps (total {span * 1000:.0f} ms):[/dim]")
        for r in sorted(trace, key=lambda r: r.start):
            a = int((r.start - t0) / span * BAR)
            b = max(a + 1, int((r.end - t0) / span * BAR))
            bar = " " * a + "█" * (b - a)
            console.print(
                f"[dim]  {r.side:6} {r.node:24} {r.ms:6d} ms |{bar:<{BAR}}|"
                f"{'' if r.status == 'ok' else ' ' + r.status}[/dim]"
            )


def turn_json(session: ChatSession, values: dict[str, Any]) -> str:
    def dump(v: Any) -> Any:
        return v.model_dump(mode="json") if hasattr(v, "model_dump") else v

    return json.dumps(
        {
            "thread": session.thread,
            "user": session.user,
            "turn": values.get("turn"),
            "request": values.get("request"),
            "abstract": dump(values.get("abstract")),
            "plan": dump(values.get("plan")),
            "constraints": dump(values.get("constraints")),
            "bound": dump(values.get("bound")),
            "notes": list(values.get("notes") or []),
            "reply": values.get("reply") or "",
            "steps": [dump(st) for st in values["plan"].steps()] if values.get("plan") else [],
            "ranking": [dump(r) for r in values.get("ranking") or []],
            "trace": [{**dump(r), "ms": r.ms} for r in values.get("trace") or []],
            "warnings": turn_warnings(values),
        },
        indent=2,
    )


def cmd_chat(args: argparse.Namespace) -> int:
    if not args.user:
        raise CliError("chat needs --user ID (see `cdarec users`)", 2)
    session = ChatSession(settings_from(args), args.thread)
    on_step = None if args.json else print_step

    def run(text: str) -> None:
        request, message = session.feedback(text)
        if message and not args.json:
            console.print(f"[green]{message}[/green]")
        if request is None:
            return
        values = session.turn(request, on_step, None if args.json else print_first_items)
        if session.notice and not args.json:
            console.print(f"[green]{session.notice}[/green]")
        session.notice = ""
        if args.json:
            print(turn_json(session, values))
        else:
            print_turn(values)

    if args.message is not None and args.once:
        run(args.message)
        return 0
    if not args.json:
        console.print(
            f"cdarec chat - user {session.user}, session {session.thread} (`help` for commands)"
        )
        if (log := training_in_progress(session.res)) is not None:
            console.print(
                f"[dim]SASRec is still training in the background (log: {log}); the device "
                "uses the transition model until it is ready.[/dim]"
            )
    if args.message is not None:
        run(args.message)
    interactive = sys.stdin.isatty()
    while True:
        try:
            text = input("you> " if interactive else "")
        except EOFError:
            break
        text = text.strip()
        if not text:
            continue
        if text.lower() in ("quit", "exit", "q"):
            break
        if text.lower() in ("help", "?"):
            console.print(CHAT_HELP)
            continue
        try:
            run(text)
        except CliError as err:
            err_console.print(f"[red]{err}[/red]")
    if not args.json:
        console.print(f"resume with: cdarec chat --user {session.user} --thread {session.thread}")
    return 0


def cmd_serve(args: argparse.Namespace) -> int:
    from cdarec.web.app import serve

    s = settings_from(args)
    console.print(f"cdarec chat on http://{args.host}:{args.port}  (Ctrl-C stops it)")
    serve(s, args.host, args.port)
    return 0


def cmd_train(args: argparse.Namespace) -> int:
    from cdarec.device.ranking import structured_blend

    res = Resources(settings_from(args))
    model = res.sasrec_model(err_console, retrain=args.retrain)
    console.print(
        f"SASRec for {res.dataset.name}: {model.n_items} items, hidden {model.arch.hidden}, "
        f"transition weight {structured_blend(model):g} (chosen on validation); "
        "the device side uses it from now on (settings: sequence_model = auto)"
    )
    return 0


def cmd_bench_accuracy(args: argparse.Namespace) -> int:
    from pathlib import Path

    from cdarec.bench import accuracy, full, request

    module = {"llmrank": accuracy, "full": full, "request": request}[args.protocol]
    default = module.DEFAULT_METHODS
    methods = [m.strip() for m in (args.methods or ",".join(default)).split(",") if m.strip()]
    run = module.run
    try:
        run(settings_from(args), methods, args.users, args.seed, Path(args.out), console)
    except ValueError as err:
        raise CliError(str(err), 2) from err
    return 0


def cmd_bench_latency(args: argparse.Namespace) -> int:
    from pathlib import Path

    from cdarec.bench.latency import CONFIGS, run

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
    from cdarec.bench.web import run

    run(settings_from(args, user_id=args.user), args.sessions, console, rounds=args.rounds)
    return 0


def cmd_bench_turns(args: argparse.Namespace) -> int:
    from pathlib import Path

    from cdarec.bench.turns import run

    run(settings_from(args, user_id=args.user), args.turns, console, Path(args.out))
    return 0


# -- sessions and local traces ----------------------------------------------------------------
def cmd_sessions(args: argparse.Namespace) -> int:
    from cdarec.graph.checkpoint import sqlite_checkpointer
    from cdarec.sessions import list_sessions

    s = settings_from(args)
    if not s.checkpoint_db.exists():
        console.print("no sessions yet: start one with `cdarec chat --user ID`")
        return 0
    sessions = list_sessions(sqlite_checkpointer(s.checkpoint_db), user=args.user)
    if args.json:
        print(json.dumps([x.model_dump() for x in sessions], indent=2))
        return 0
    table = Table("thread", "user", "turns", "last request", "updated (UTC)", title="sessions")
    for x in sessions[: args.limit]:
        table.add_row(x.thread, x.user or "?", str(x.turns), x.last_request or "-", x.updated[:19])
    console.print(table)
    if sessions:
        console.print(
            "[dim]resume: cdarec chat --user USER --thread THREAD; steps: cdarec trace THREAD[/dim]"
        )
    return 0


def cmd_trace(args: argparse.Namespace) -> int:
    from rich.tree import Tree

    from cdarec.graph.builder import build_graph
    from cdarec.graph.checkpoint import sqlite_checkpointer
    from cdarec.sessions import iso, turn_traces

    s = settings_from(args)
    graph = build_graph(sqlite_checkpointer(s.checkpoint_db))
    turns = turn_traces(graph.get_state_history({"configurable": {"thread_id": args.thread}}))
    if not turns:
        raise CliError(
            f"no session '{args.thread}' in {s.checkpoint_db} (`cdarec sessions` lists them)", 2
        )
    if args.json:
        print(json.dumps([t.model_dump(mode="json") for t in turns], indent=2))
        return 0
    root = Tree(f"session {args.thread}")
    for t in turns:
        branch = root.add(
            f'turn {t.turn} [dim]{iso(t.start)}[/dim] {t.wall_ms} ms  "{t.request or "-"}"'
        )
        for r in t.steps:
            colour = "cyan" if r.side == "cloud" else "magenta"
            tokens = f"  {r.tokens_in}->{r.tokens_out} tok" if r.tokens_in or r.tokens_out else ""
            flag = "" if r.status == "ok" else f"  [yellow]{r.status}[/yellow]"
            branch.add(
                f"[{colour}]{r.side:6}[/{colour}] {r.node:26} +{(r.start - t.start) * 1000:6.0f} ms"
                f" {r.ms:6d} ms{tokens}{flag}" + (f"  [dim]{r.model}[/dim]" if r.model else "")
            )
    console.print(root)
    return 0


# -- prompts ---------------------------------------------------------------------------------
def cmd_prompts(args: argparse.Namespace) -> int:
    from cdarec.prompts import manage

    folder = settings_from(args).prompts_override_dir
    action, name = args.action, args.name
    if action != "list" and not name:
        raise CliError(f"`cdarec prompts {action}` needs a prompt name (see `cdarec prompts list`)")
    if action == "list":
        table = Table("name", "side", "variables", "source", "file", title="prompts")
        for x in manage.list_prompts(folder):
            src = "[yellow]override[/yellow]" if x.source == "override" else x.source
            table.add_row(x.name, x.side, ", ".join(x.variables), src, x.path)
        console.print(table)
        pins = manage.hub_pins(folder)
        if pins:
            console.print("[dim]hub pins: " + ", ".join(f"{k}@{v}" for k, v in pins.items()))
    elif action == "show":
        print(manage.effective_text(name, folder), end="")
    elif action == "edit":
        _, message = manage.edit(name, folder, args.editor)
        console.print(message)
    elif action == "diff":
        text = manage.diff(name, folder)
        print(
            text or f"{name}: no override; the packaged prompt is in force", end="\n" * (not text)
        )
    elif action == "reset":
        bak = manage.reset(name, folder)
        console.print(
            f"{name}: packaged prompt restored; your version is kept in {bak}"
            if bak
            else f"{name}: already the packaged prompt"
        )
    elif action == "push":
        console.print(f"{name}: pushed as {manage.hub_name(name)}@{manage.push(name, folder)}")
    elif action == "pull":
        commit = manage.pull(name, folder, args.commit)
        console.print(f"{name}: pulled {manage.hub_name(name)}@{commit} (pinned)")
    return 0


# -- parser ----------------------------------------------------------------------------------
def build_parser() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--home", help="data home (default $CDAREC_HOME or ~/.cache/cdarec)")
    common.add_argument("--dataset", help="ml-1m (default), ml-100k or a RecBole atomic dir")
    common.add_argument(
        "--device-model", help="e.g. llamacpp:qwen2.5-coder-0.5b, ollama:qwen2.5:0.5b"
    )
    common.add_argument(
        "--cloud-model", help="e.g. embedded:qwen2.5-coder-1.5b, openai:gpt-4o-mini"
    )

    p = argparse.ArgumentParser(
        prog="cdarec",
        description="Cloud-device collaborative agents for sequential recommendation. The "
        "cloud LLM plans and retrieves from a Chroma catalogue; a small model on the device "
        "keeps the private history, models the sequence and ranks.",
        epilog="Settings: flags > CDAREC_* environment > $CDAREC_HOME/settings.toml > defaults.",
    )
    sub = p.add_subparsers(dest="command", required=True)

    s = sub.add_parser("setup", parents=[common], help="pull models and data, build the catalogue")
    s.add_argument("--tests", action="store_true", help="also pull the small test model")
    s.add_argument("--datasets", nargs="*", help="data sets to prepare (default: --dataset)")
    s.add_argument(
        "--no-train",
        action="store_true",
        help="do not start training the SASRec structured model in the background (by "
        "default set-up starts it when none is cached; the chat switches to it when done)",
    )
    s.set_defaults(func=cmd_setup)

    m = sub.add_parser("models", help="list or pull model files").add_subparsers(
        dest="action", required=True
    )
    mp = m.add_parser("pull", parents=[common], help="download, assemble and verify models")
    mp.add_argument("names", nargs="*", help="model names (default: the configured ones)")
    mp.add_argument("--tests", action="store_true", help="also pull the small test model")
    mp.set_defaults(func=cmd_models_pull)
    m.add_parser("list", parents=[common], help="known models").set_defaults(func=cmd_models_list)

    d = sub.add_parser("data", help="data sets").add_subparsers(dest="action", required=True)
    dp = d.add_parser("pull", parents=[common], help="download MovieLens (research use only)")
    dp.add_argument("names", nargs="*", help="ml-1m, ml-100k (default both)")
    dp.set_defaults(func=cmd_data_pull)

    sub.add_parser(
        "index", parents=[common], help="build or update the Chroma catalogue (idempotent)"
    ).set_defaults(func=cmd_index)

    u = sub.add_parser("users", parents=[common], help="list users of the data set")
    u.add_argument("--limit", type=int, default=20)
    u.set_defaults(func=cmd_users)

    mem = sub.add_parser("memory", parents=[common], help="a user's device memory")
    mem.add_argument(
        "action",
        choices=["show", "reset", "new"],
        help="show it; reset = re-seed from the data set; new = empty cold-start device",
    )
    mem.add_argument("--user", required=True)
    mem.set_defaults(func=cmd_memory)

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
        "cdarec-no-slm, cdarec-no-semantic, cdarec-no-collab (--protocol full: all but "
        "random, llm-zero-shot and cloud-only; --protocol request: structured, "
        "retrieval-only, oracle-filter and the graph methods). Default: the baselines, the "
        "structured model rows and cdarec",
    )
    ba.add_argument("--seed", type=int, default=2024, help="candidate and sample seed")
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

    sv = sub.add_parser(
        "serve",
        parents=[common],
        help="the chat in a browser: live steps, feedback buttons, a user picker",
    )
    sv.add_argument("--host", default="127.0.0.1", help="address to listen on (loopback)")
    sv.add_argument("--port", type=int, default=8000)
    sv.add_argument("--user", help="the user selected first")
    sv.set_defaults(func=cmd_serve)

    t = sub.add_parser(
        "train",
        parents=[common],
        help="train the structured user model (SASRec) on the cloud side, cached for the device",
    )
    t.add_argument("--retrain", action="store_true", help="train again even if cached")
    t.set_defaults(func=cmd_train)

    pr = sub.add_parser(
        "prompts",
        parents=[common],
        help="list, show, edit, diff, reset prompts; push/pull them to the LangSmith hub",
        description="Every prompt is a file in cdarec/prompts/. Your edits go to "
        "$CDAREC_HOME/prompts/NAME.md, take precedence and survive upgrades; an edit "
        "with a missing or unknown variable is refused (and kept as NAME.md.rejected).",
    )
    pr.add_argument("action", choices=["list", "show", "edit", "diff", "reset", "push", "pull"])
    pr.add_argument("name", nargs="?", help="prompt name (see `cdarec prompts list`)")
    pr.add_argument("--editor", help="editor command for `edit` (default $VISUAL/$EDITOR/vi)")
    pr.add_argument("--commit", help="for `pull`: this hub commit (default: the pinned one)")
    pr.set_defaults(func=cmd_prompts)

    ss = sub.add_parser("sessions", parents=[common], help="list chat sessions (threads)")
    ss.add_argument("--user", help="only this user's sessions")
    ss.add_argument("--limit", type=int, default=30)
    ss.add_argument("--json", action="store_true")
    ss.set_defaults(func=cmd_sessions)

    tr = sub.add_parser(
        "trace", parents=[common], help="the step tree of a session, from its checkpoints"
    )
    tr.add_argument("thread", help="the session's thread id (see `cdarec sessions`)")
    tr.add_argument("--json", action="store_true", help="export the trace as JSON")
    tr.set_defaults(func=cmd_trace)

    c = sub.add_parser(
        "chat",
        parents=[common],
        help="chat with the recommender as a user",
        description="Interactive recommendation chat. " + CHAT_HELP,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    c.add_argument("--user", help="the device's user id (see `cdarec users`)")
    c.add_argument("--thread", help="resume this session")
    c.add_argument("--message", help="send this message first")
    c.add_argument("--once", action="store_true", help="with --message: one turn, then exit")
    c.add_argument("--json", action="store_true", help="print each turn as JSON")
    c.set_defaults(func=cmd_chat)
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except CliError as err:
        err_console.print(f"[red]error:[/red] {escape(str(err))}", soft_wrap=True)
        return err.code
    except UserNotFoundError as err:
        err_console.print(f"[red]error:[/red] {escape(str(err))}", soft_wrap=True)
        return 2
    except (AssetError, DataError, ModelSpecError, PromptError, ServerError, MemoryError_) as err:
        err_console.print(f"[red]error:[/red] {escape(str(err))}", soft_wrap=True)
        return 1
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
