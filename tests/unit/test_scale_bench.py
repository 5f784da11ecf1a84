"""`cdarec bench scale`'s own arithmetic: generated items, the report and its verdicts
(unit: synthetic rows; the bench itself is a command, `cdarec bench scale`)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from rich.console import Console

from cdarec.data import Item
from cdarec.evaluation.bench.scale import SizeRow, _report, generated_items
from cdarec.settings import Settings


def test_generated_items_copy_a_real_items_facts() -> None:
    real = [Item("1", "Toy Story", 1995, ("Animation", "Comedy")), Item("2", "Heat", 1995, ())]
    gen, src = generated_items(real, 50, np.random.default_rng(0))
    again, _ = generated_items(real, 50, np.random.default_rng(0))
    assert gen == again and len({g.item_id for g in gen}) == 50
    for g, s in zip(gen, src, strict=True):
        assert g.genres == real[s].genres and abs(g.year - real[s].year) <= 5


def _row(size: int, backend: str, filtered: float) -> SizeRow:
    return SizeRow(backend, size, 700.0, size / 700, 5, 9, filtered, filtered * 1.2, 5, 8,
                   40, 80, 1.0, 2.0, 24.0, 30.0, 0.5)  # fmt: skip


def test_the_report_says_which_targets_are_met(tmp_path: Path) -> None:
    console = Console(record=True, width=200)
    rows = [
        _row(10_000, "embedded", 30),
        _row(100_000, "embedded", 20),
        _row(100_000, "server", 60),
    ]
    _report(rows, Settings(home=tmp_path), 200.0, 3.0, 30, console, tmp_path)
    text = (tmp_path / "scale.md").read_text()
    assert "100,000 items, embedded: retrieval p95 <= 50 ms met" in text
    assert "100,000 items, server: retrieval p95 <= 50 ms NOT met" in text
    assert "1M-item targets were not measured" in text
    payload = json.loads((tmp_path / "scale.json").read_text())
    assert len(payload["rows"]) == 3 and (tmp_path / "scale.png").exists()


def test_progress_into_a_log_prints_plain_lines(monkeypatch) -> None:
    """Into a file (CI, nohup) a benchmark's progress is a line now and then and one at
    the end, not nothing until it finishes (rich's live bar needs a terminal)."""
    import io

    from cdarec.evaluation import report

    monkeypatch.setattr(report, "LOG_EVERY_S", 0.0)
    buf = io.StringIO()
    console = Console(file=buf, force_terminal=False, width=100)
    with report.progress(console) as bar:
        build = bar.add_task("embedded 1,000: building", total=4)
        for _ in range(4):
            bar.update(build, advance=1)
        bar.update(build, advance=0)  # already complete: no second last line
    lines = buf.getvalue().splitlines()
    assert lines[0].startswith("embedded 1,000: building: 1/4 (25%)")
    assert lines[-1].startswith("embedded 1,000: building: 4/4 (100%)")
    assert len(lines) == 4
    terminal = Console(file=io.StringIO(), force_terminal=True)
    assert not isinstance(report.progress(terminal), report.LoggedProgress)
