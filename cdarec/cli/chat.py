"""CLI group: the chat and the device — users, device memory, chat, serve, sessions, trace."""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from rich.markup import escape
from rich.table import Table

from cdarec.cli.common import CliError, console, err_console, settings_from
from cdarec.cli.render import print_first_items, print_step, print_turn
from cdarec.device.memory import DeviceMemoryError
from cdarec.graph.checkpoint import CheckpointError
from cdarec.graph.runtime import Resources
from cdarec.service.chat import CHAT_HELP, ChatError, ChatSession, turn_result
from cdarec.service.training import training_in_progress


def cmd_users(args: argparse.Namespace) -> int:
    res = Resources(settings_from(args))
    ds = res.dataset
    table = Table("user", "interactions", title=f"{ds.name}: {ds.n_users} users")
    for u in ds.users[: args.limit]:
        table.add_row(u, str(len(ds.sequence(u))))
    on_device = res.memory.users()
    console.print(table)
    if on_device:
        console.print(escape(f"devices with memory: {', '.join(on_device[:20])}"))
    return 0


def cmd_memory(args: argparse.Namespace) -> int:
    s = settings_from(args)
    res = Resources(s)
    if args.action == "new":
        if res.memory.exists(args.user):
            raise CliError(f"user '{args.user}' already has device memory; use `memory reset`")
        res.memory.seed(args.user, [])
        console.print(escape(f"created an empty (cold-start) device for '{args.user}'"))
    elif args.action == "reset":
        if not res.dataset.has_user(args.user):
            res.memory.seed(args.user, [], overwrite=True)
        else:
            res.memory.seed(args.user, res.device.dataset_history(args.user), overwrite=True)
        console.print(escape(f"device memory of '{args.user}' re-seeded"))
    else:
        rec = res.device_record(args.user)
        console.print(
            f"{len(rec.history)} events, {len(rec.feedback)} feedback, "
            f"{len(rec.shown)} sessions (stored at {res.memory.path(args.user)})"
        )
        for f in rec.feedback[-10:]:
            console.print(escape(f"  {f.kind} {f.item_id or f.genre or ''}"))
    return 0


def cmd_chat(args: argparse.Namespace) -> int:
    if not args.user:
        raise CliError("chat needs --user ID (see `cdarec users`)", 2)
    # A first message given now is sent at once: load the models, but leave the prompts
    # to it; in a typed session the fixed prompts are evaluated while the person types.
    warm = "load" if args.message is not None else "prime"
    session = ChatSession(settings_from(args), args.thread, warm_up=warm)
    on_step = None if args.json else print_step

    def run(text: str) -> None:
        request, message = session.feedback(text)
        if message and not args.json:
            console.print(f"[green]{escape(message)}[/green]")
        if request is None:
            return
        if not session.ready() and not args.json:
            err_console.print(
                "[dim]loading the device and cloud models (once per session start)...[/dim]"
            )
        values = session.turn(request, on_step, None if args.json else print_first_items)
        if session.notice and not args.json:
            console.print(f"[green]{session.notice}[/green]")
        session.notice = ""
        if args.json:
            print(json.dumps(turn_result(session, values), indent=2))
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
        except (CliError, ChatError) as err:
            err_console.print(f"[red]{escape(str(err))}[/red]")
        except (DeviceMemoryError, CheckpointError) as err:
            err_console.print(f"[red]error:[/red] {escape(str(err))}")
    if not args.json:
        console.print(
            escape(f"resume with: cdarec chat --user {session.user} --thread {session.thread}")
        )
    return 0


def _workers(text: str) -> int:
    n = int(text)
    if not 1 <= n <= 32:
        raise argparse.ArgumentTypeError(f"--workers takes 1 to 32, not {n}")
    return n


def cmd_serve(args: argparse.Namespace) -> int:
    from cdarec.web.server import is_loopback, serve

    s = settings_from(args)
    if not is_loopback(args.host):
        if not args.allow_remote:
            raise CliError(
                f"--host {args.host} listens beyond this machine: anyone who can reach it may "
                "try to sign in. Add --allow-remote if that is what you want "
                "(people then sign in with `cdarec access password`).",
                2,
            )
        err_console.print(
            f"[yellow]warning:[/yellow] listening on {escape(args.host)}, beyond loopback: the "
            "sign-in link and passwords travel unencrypted (put a TLS proxy in front)"
        )
    serve(
        s,
        args.host,
        args.port,
        user=args.user,
        announce=lambda m: print(m, flush=True),
        workers=args.workers,
    )
    return 0


def cmd_access(args: argparse.Namespace) -> int:
    import getpass

    from cdarec.service.access import Access

    s = settings_from(args)
    access = Access(s.home)
    if args.action == "list":
        for user in access.users():
            console.print(escape(user))
        return 0
    if not args.user:
        raise CliError(f"`access {args.action}` needs --user ID", 2)
    if args.action == "password":
        if args.password_stdin:
            password = sys.stdin.readline().rstrip("\n")
        else:
            password = getpass.getpass(f"new password for {args.user}: ")
            if getpass.getpass("again: ") != password:
                raise CliError("the two passwords differ; nothing was changed", 2)
        access.set_password(args.user, password)
        console.print(escape(f"password set for '{args.user}' (stored as a scrypt hash)"))
    elif args.action == "token":
        token = access.new_token(args.user, name=args.name or "")
        console.print(escape(f"API token for '{args.user}' (shown once; keep it secret):"))
        print(token)
    else:
        n = access.revoke(args.user)
        console.print(escape(f"removed {n} credential(s) of '{args.user}'"))
    return 0


def cmd_sessions(args: argparse.Namespace) -> int:
    from cdarec.graph.checkpoint import has_sessions, open_checkpointer
    from cdarec.service.sessions import list_sessions

    s = settings_from(args)
    if not has_sessions(s):
        console.print("no sessions yet: start one with `cdarec chat --user ID`")
        return 0
    sessions = list_sessions(open_checkpointer(s), user=args.user)
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
    from cdarec.graph.checkpoint import open_checkpointer, where_sessions
    from cdarec.service.sessions import iso, turn_traces

    s = settings_from(args)
    graph = build_graph(open_checkpointer(s))
    turns = turn_traces(graph.get_state_history({"configurable": {"thread_id": args.thread}}))
    if not turns:
        raise CliError(
            f"no session '{args.thread}' in {where_sessions(s)} (`cdarec sessions` lists them)", 2
        )
    if args.json:
        print(json.dumps([t.model_dump(mode="json") for t in turns], indent=2))
        return 0
    root = Tree(f"session {args.thread}")
    for t in turns:
        branch = root.add(
            f'turn {t.turn} [dim]{iso(t.start)}[/dim] {t.wall_ms} ms  "{escape(t.request or "-")}"'
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


def register(sub: Any, common: argparse.ArgumentParser) -> None:
    """users, memory, serve, sessions, trace, chat"""
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

    sv = sub.add_parser(
        "serve",
        parents=[common],
        help="the chat in a browser: live steps, feedback buttons; prints a sign-in link",
        description="The chat in a browser. At start it prints a one-off sign-in link for "
        "--user (default: the data set's first user); other users sign in with a password "
        "set by `cdarec access password`, programs with a token from `cdarec access token`.",
    )
    sv.add_argument("--host", default="127.0.0.1", help="address to listen on (loopback)")
    sv.add_argument("--port", type=int, default=8000)
    sv.add_argument("--user", help="the device user the printed sign-in link signs in")
    sv.add_argument(
        "--allow-remote",
        action="store_true",
        help="allow a --host beyond loopback (prints a warning)",
    )
    sv.add_argument(
        "--workers",
        type=_workers,
        default=1,
        help="processes behind the one port (default 1). They share credentials, browser "
        "sign-ins, device memory and threads; with CDAREC_DATABASE_URL (PostgreSQL) the "
        "threads live in one server. Each loads its own models: for an embedded cloud "
        "model that is one cloud server per worker",
    )
    sv.set_defaults(func=cmd_serve)

    ac = sub.add_parser(
        "access",
        parents=[common],
        help="who may sign in: passwords (browser) and API tokens (programs)",
    )
    ac.add_argument(
        "action",
        choices=["password", "token", "revoke", "list"],
        help="password: set one (asked twice); token: print a new API token; "
        "revoke: remove a user's credentials; list: users with credentials",
    )
    ac.add_argument("--user", help="the device user")
    ac.add_argument("--name", help="a label for the token")
    ac.add_argument(
        "--password-stdin", action="store_true", help="read the password from stdin (scripts)"
    )
    ac.set_defaults(func=cmd_access)

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
