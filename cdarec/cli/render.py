"""CLI: how a turn is shown in the terminal (rendering only; the turn is the service's)."""

from __future__ import annotations

from typing import Any

from rich.markup import escape
from rich.table import Table
from rich.text import Text

from cdarec.cli.common import console, err_console
from cdarec.service.chat import turn_warnings

BAR = 24  # width of the step timeline; it shows which steps overlapped


def print_step(rec: Any) -> None:
    colour = "cyan" if rec.side == "cloud" else "magenta"
    flag = "" if rec.status == "ok" else f" [yellow]{rec.status}[/yellow]"
    tokens = f" {rec.tokens_in}->{rec.tokens_out} tok" if rec.tokens_in or rec.tokens_out else ""
    err_console.print(
        f"  [{colour}]{rec.side:6}[/{colour}] {rec.node:26} {rec.ms:6d} ms{tokens}{flag}"
    )


def print_first_items(items: list[dict[str, Any]]) -> None:
    """The fused list, streamed before the device model has written its reasons."""
    shown = escape("; ".join(f"{n}. {it['label']}" for n, it in enumerate(items[:5], 1)))
    console.print(f"  [bold]first picks:[/bold] {shown} [dim](reasons coming)[/dim]")


def turn_title(values: dict[str, Any]) -> str:
    """What the turn was for: the request, or "more like X" for a click (its item was
    bound on the device, so the request is empty)."""
    if request := values.get("request"):
        return str(request)
    bound = values.get("bound")
    if bound is not None and bound.like_labels:
        return f"more like {bound.like_labels[0]}"
    return "recommendations"


def print_turn(values: dict[str, Any]) -> None:
    plan = values.get("plan")
    table = Table(
        "#",
        "title",
        "genres",
        "why",
        title=Text(turn_title(values)),  # the user's words: no markup
        show_lines=False,
    )
    for r in values.get("ranking") or []:
        table.add_row(str(r.rank), Text(r.label), Text(", ".join(r.genres)), Text(r.reason))
    for note in values.get("notes") or []:
        console.print(f"[bold]{escape(note)}[/bold]")
    console.print(table)
    for w in turn_warnings(values):
        err_console.print(f"[yellow]warning:[/yellow] {escape(w)}", soft_wrap=True)
    if plan is not None:
        w = plan.weights
        console.print(
            f"[dim]plan: {plan.strategy} ({plan.source}; {escape(plan.note)}) "
            f"semantic={'on' if plan.semantic else 'off'} "
            f"sequence={'on' if plan.sequence else 'off'} k={plan.retrieval.k} weights "
            f"seq {w.sequence:.2f} / sem {w.semantic:.2f} / like {w.similar:.2f} / "
            f"slm {w.judge:.2f}[/dim]"
        )
        if not values.get("request") and turn_title(values).startswith("more like"):
            console.print(
                "[dim]  the device ranked this click with the similar-to weights; the "
                "cloud planned a turn without a request (it is not told which item)[/dim]"
            )
        # where each movable sub-task ran this turn, and why (issue 20)
        console.print(f"[dim]placement: {escape(plan.placement.describe())}[/dim]")
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
