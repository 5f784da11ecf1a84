"""CLI group: prompts — list, show, edit, diff, reset, push, pull."""

from __future__ import annotations

import argparse
from typing import Any

from rich.table import Table

from cdarec.cli.common import CliError, console, settings_from


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


def register(sub: Any, common: argparse.ArgumentParser) -> None:
    """prompts"""
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
