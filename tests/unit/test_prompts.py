from __future__ import annotations

import string
from pathlib import Path

import pytest

from cdarec.prompts import EXPECTED, PromptError, load_all, load_prompt, packaged_text


def test_every_packaged_prompt_loads_and_formats() -> None:
    prompts = load_all()
    assert set(prompts) == set(EXPECTED)
    for name, p in prompts.items():
        # the variables of its own sections and of the system section it shares
        shared = prompts[p.shared_system].system if p.shared_system else ""
        names = EXPECTED[name] | {f for _, f, _, _ in string.Formatter().parse(shared) if f}
        msgs = p.messages(**{v: f"<{v}>" for v in names})
        text = " ".join(str(m.content) for m in msgs)
        assert all(f"<{v}>" in text for v in names)
        assert "<!--" not in text  # comments are stripped


def test_override_takes_precedence(tmp_path: Path) -> None:
    text = packaged_text("model_semantics").replace("Task: write", "Task: EDITED write")
    (tmp_path / "model_semantics.md").write_text(text)
    assert "EDITED" in load_prompt("model_semantics", tmp_path).user
    # an edited shared system prompt reaches every prompt that uses it
    ctx = packaged_text("cloud_context").replace("You are the cloud side", "EDITED cloud side")
    (tmp_path / "cloud_context.md").write_text(ctx)
    assert "EDITED cloud side" in load_prompt("plan_strategy", tmp_path).system


def test_unknown_variable_is_refused_naming_file_and_variable(tmp_path: Path) -> None:
    text = packaged_text("model_semantics").replace("{request}", "{wish}")
    (tmp_path / "model_semantics.md").write_text(text)
    with pytest.raises(PromptError) as err:
        load_prompt("model_semantics", tmp_path)
    msg = str(err.value)
    assert "model_semantics.md" in msg and "{wish}" in msg and "{request}" in msg


def test_missing_variable_is_refused(tmp_path: Path) -> None:
    text = packaged_text("rank_on_device").replace("{candidates}", "")
    (tmp_path / "rank_on_device.md").write_text(text)
    with pytest.raises(PromptError, match=r"missing variable \{candidates\}"):
        load_prompt("rank_on_device", tmp_path)


def test_cloud_prompts_keep_their_fixed_parts_first() -> None:
    """Prompt-cache reuse: every cloud call starts with the same system text, which holds
    the strategies and the query guidance; a call's own message (task line, abstract,
    request) is short, so from call to call only it is evaluated anew."""
    prompts = load_all()
    values = {
        "genres": "A, B",
        "retrieval_k": 30,
        "abstract": "heavy user",
        "request": "x",
        "reading": "no constraint",
        "suggested": "history-led (no request)",
    }
    plan = prompts["plan_strategy"].messages(**values)
    sem = prompts["model_semantics"].messages(**values)
    other = prompts["model_semantics"].messages(**{**values, "abstract": "cold", "request": "y"})
    assert plan[0].content == sem[0].content == other[0].content
    assert "similar-to" in plan[0].content and "search query" in plan[0].content
    task = sem[1].content.split("Request:")[0]
    assert task.startswith("Task:") and other[1].content.startswith(task)
    for m in (plan, sem):  # the per-call part is a fraction of the shared prefix
        assert len(m[1].content) < 0.4 * len(m[0].content)
