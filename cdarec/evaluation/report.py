"""Evaluation: how every benchmark reports — a progress bar, a Markdown table, JSON, a plot."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from cdarec.settings import Settings


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
    text: str | None,
    payload: dict[str, Any],
    plot_to: Callable[[Path], None],
    console: Console,
) -> None:
    """A benchmark's Markdown table (if it has one), JSON and plot, side by side
    (``stem``.md/.json/.png; ``plot_to`` may write more images beside the .png)."""
    stem.parent.mkdir(parents=True, exist_ok=True)
    kinds = [".json"]
    if text is not None:
        Path(f"{stem}.md").write_text(text + "\n")
        kinds.append(".md")
    Path(f"{stem}.json").write_text(json.dumps(payload, indent=2))
    try:
        plot_to(Path(f"{stem}.png"))
        console.print(f"wrote {stem}{', '.join(kinds)}, .png")
    except ImportError:
        console.print(f"wrote {stem}{', '.join(kinds)} [dim](no matplotlib: no plot)[/dim]")


def settings_summary(settings: Settings, names: tuple[str, ...]) -> dict[str, str]:
    """The settings a report records beside its numbers (models, sizes)."""
    return {k: str(v) for k, v in settings.model_dump().items() if k in names}
