from __future__ import annotations

from pathlib import Path

import pytest

from cdarec.prompts import EXPECTED, PromptError, load_all, load_prompt, packaged_text


def test_every_packaged_prompt_loads_and_formats() -> None:
    prompts = load_all()
    assert set(prompts) == set(EXPECTED)
    for name, p in prompts.items():
        msgs = p.messages(**{v: f"<{v}>" for v in EXPECTED[name]})
        text = " ".join(str(m.content) for m in msgs)
        assert all(f"<{v}>" in text for v in EXPECTED[name])
        assert "<!--" not in text  # comments are stripped


def test_override_takes_precedence(tmp_path: Path) -> None:
    text = packaged_text("model_semantics").replace(
        "You write search queries", "EDITED: you write search queries"
    )
    (tmp_path / "model_semantics.md").write_text(text)
    assert "EDITED" in load_prompt("model_semantics", tmp_path).system


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
