"""`cdarec prompts list|show|edit|diff|reset|push|pull` on a temporary data home.

The editor is a real subprocess (a small Python script standing in for $EDITOR). The
hub tests use a recording fake of LangSmith's client (no network here); the templates
it stores are real LangChain ChatPromptTemplates.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import pytest

from cdarec import cli as app
from cdarec.prompts import PromptError, load_prompt, manage


def _editor(tmp_path: Path, code: str) -> str:
    script = tmp_path / "editor.py"
    script.write_text(
        "import pathlib, sys\np = pathlib.Path(sys.argv[1])\nt = p.read_text()\n" + code
    )
    return f"{sys.executable} {script}"


def _run(home: Path, *argv: str) -> int:
    return app.main(["prompts", *argv, "--home", str(home)])


def test_list_and_show(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert _run(tmp_path, "list") == 0
    out = capsys.readouterr().out
    assert "rank_on_device" in out and "packaged" in out
    assert _run(tmp_path, "show", "model_semantics") == 0
    assert "{request}" in capsys.readouterr().out
    assert _run(tmp_path, "show", "nope") == 1
    assert "known:" in capsys.readouterr().err


def test_edit_diff_reset_round_trip(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    folder = tmp_path / "prompts"
    add = _editor(tmp_path, "p.write_text(t.replace('## user\\n', '## user\\nBe brief.\\n'))")
    assert _run(tmp_path, "edit", "model_semantics", "--editor", add) == 0
    assert (folder / "model_semantics.md").exists()
    assert "Be brief." in load_prompt("model_semantics", folder).user
    assert _run(tmp_path, "diff", "model_semantics") == 0
    assert "+Be brief." in capsys.readouterr().out

    # A broken edit is refused, kept aside, and the previous version stays in force.
    bad = _editor(tmp_path, "p.write_text(t.replace('{request}', '{wish}'))")
    assert _run(tmp_path, "edit", "model_semantics", "--editor", bad) == 1
    err = capsys.readouterr().err
    assert "{wish}" in err and "{request}" in err and "model_semantics.md" in err
    assert (folder / "model_semantics.md.rejected").exists()
    assert "Be brief." in load_prompt("model_semantics", folder).user

    assert _run(tmp_path, "reset", "model_semantics") == 0
    assert not (folder / "model_semantics.md").exists()
    assert "Be brief." in (folder / "model_semantics.md.bak").read_text()
    assert "Be brief." not in load_prompt("model_semantics", folder).user


class RecordingHub:
    """Fake LangSmith client (unit test): stores pushed templates by commit."""

    def __init__(self) -> None:
        self.commits: dict[str, Any] = {}

    def push_prompt(self, name: str, *, object: Any, description: str = "") -> str:
        commit = f"c{len(self.commits):07d}"
        self.commits[f"{name}:{commit}"] = object
        return f"https://smith.example/prompts/{name}/{commit}?organizationId=x"

    def pull_prompt(self, ref: str) -> Any:
        name, _, commit = ref.partition(":")
        key = ref if commit else sorted(k for k in self.commits if k.startswith(name))[-1]
        template = self.commits[key]
        template.metadata = {"lc_hub_commit_hash": key.split(":")[1]}
        return template


def test_hub_push_then_pull_pins_the_commit(tmp_path: Path) -> None:
    folder = tmp_path / "prompts"
    hub = RecordingHub()
    commit = manage.push("rank_on_device", folder, client=hub)
    assert manage.hub_pins(folder) == {"rank_on_device": commit}
    assert manage.pull("rank_on_device", folder, client=hub) == commit
    pulled, packaged = load_prompt("rank_on_device", folder), load_prompt("rank_on_device")
    assert (pulled.system, pulled.user) == (packaged.system, packaged.user)


def test_hub_without_a_key_says_what_to_set(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("LANGSMITH_API_KEY", raising=False)
    monkeypatch.delenv("LANGCHAIN_API_KEY", raising=False)
    with pytest.raises(PromptError, match="LANGSMITH_API_KEY"):
        manage.push("rank_on_device", tmp_path / "prompts")
