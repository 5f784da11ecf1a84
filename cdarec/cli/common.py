"""CLI: what every command group shares — consoles, settings from flags, errors, bars."""

from __future__ import annotations

import argparse
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

from cdarec.settings import Settings

console = Console(highlight=False)

err_console = Console(stderr=True, highlight=False)


class CliError(Exception):
    def __init__(self, message: str, code: int = 1) -> None:
        super().__init__(message)
        self.code = code


# One way to load settings: flags > environment > settings file > defaults.
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


def log(msg: str) -> None:
    err_console.print(f"[dim]{msg}[/dim]")


def common_flags() -> argparse.ArgumentParser:
    """The flags every command takes (a parent parser)."""
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--home", help="data home (default $CDAREC_HOME or ~/.cache/cdarec)")
    common.add_argument("--dataset", help="ml-1m (default), ml-100k or a RecBole atomic dir")
    common.add_argument(
        "--device-model", help="e.g. llamacpp:qwen2.5-coder-0.5b, ollama:qwen2.5:0.5b"
    )
    common.add_argument(
        "--cloud-model", help="e.g. embedded:qwen2.5-coder-1.5b, openai:gpt-4o-mini"
    )
    return common
