"""Evaluation: how every benchmark reports — a progress bar, a Markdown table, JSON, a plot."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
)

from cdarec.settings import Settings

LOG_EVERY_S = 30.0  # a plain progress line at most this often, where nothing is drawn live


class LoggedProgress(Progress):
    """Rich draws a progress bar live only on a terminal; into a log file (CI, ``nohup``,
    ``| tee``) it writes nothing until the end, so a 30-minute benchmark looks hung. This
    one draws nothing live and prints a plain line per task instead: at most every
    ``LOG_EVERY_S`` seconds, and when the task completes."""

    def __init__(self, *columns: Any, console: Console) -> None:
        super().__init__(*columns, console=console, disable=True)
        self._logged: dict[TaskID, float] = {}

    def update(self, task_id: TaskID, **kwargs: Any) -> None:
        super().update(task_id, **kwargs)
        self._log(task_id)

    def advance(self, task_id: TaskID, advance: float = 1) -> None:
        super().advance(task_id, advance)
        self._log(task_id)

    def _log(self, task_id: TaskID) -> None:
        task = self._tasks[task_id]
        now = time.monotonic()
        done = task.total is not None and task.completed >= task.total
        if not done and now - self._logged.get(task_id, task.start_time or now) < LOG_EVERY_S:
            return
        if done and self._logged.get(task_id) == -1.0:
            return  # its last line is out
        self._logged[task_id] = -1.0 if done else now
        total = f"/{task.total:,.0f}" if task.total is not None else ""
        pct = f" ({task.percentage:.0f}%)" if task.total else ""
        elapsed = task.elapsed or 0.0
        self.console.print(
            f"{task.description}: {task.completed:,.0f}{total}{pct}, {elapsed:.0f} s",
            highlight=False,
        )


def progress(console: Console) -> Progress:
    """The progress bar of every benchmark's long work (one task per method or phase): a
    live bar on a terminal, plain lines in a log (``LoggedProgress``)."""
    columns = (
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
    )
    if not console.is_terminal:
        return LoggedProgress(*columns, console=console)
    return Progress(*columns, console=console)


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


# What an accuracy report records of its settings: the models and sizes, and the privacy
# design and placement the numbers were measured under.
ACCURACY_SETTINGS = (
    "device_model",
    "cloud_model",
    "sequence_model",
    "retrieval_k",
    "judge_top",
    "collab_side",
    "collab_noise",
    "abstract_k",
    "placement",
    "privacy",
)


def settings_summary(settings: Settings, names: tuple[str, ...]) -> dict[str, str]:
    """The settings a report records beside its numbers (models, sizes)."""
    return {k: str(v) for k, v in settings.model_dump().items() if k in names}


PUBLISHED, MEASURED = "#bbbbbb", "#2b7bb9"  # bar colours: anchors, our rows


def bar_panels(
    path: Path,
    labels: list[str],
    panels: list[tuple[str, list[float]]],
    title: str,
    colours: list[str] | None = None,
    fmt: str = " {:.3f}",
) -> None:
    """Side-by-side horizontal bar charts of one value per label (one panel per measure):
    the plot of every accuracy protocol."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    width = 5.5 * len(panels) if len(panels) > 1 else 8
    fig, axes = plt.subplots(
        1, len(panels), figsize=(width, 0.32 * len(labels) + 1.4), sharey=True, squeeze=False
    )
    for ax, (name, vals) in zip(axes[0], panels, strict=True):
        ax.barh(range(len(labels)), vals, color=colours or MEASURED)
        for i, v in enumerate(vals):
            ax.text(v, i, fmt.format(v), va="center", fontsize=7)
        ax.set_title(name, fontsize=9)
    axes[0][0].set_yticks(range(len(labels)), labels, fontsize=8)
    axes[0][0].invert_yaxis()
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
