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
