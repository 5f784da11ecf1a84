from __future__ import annotations

from pathlib import Path

import pytest

from cdarec.llm.factory import ModelSpecError, parse_spec
from cdarec.settings import Settings


def test_priority_flags_over_env_over_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CDAREC_HOME", str(tmp_path))
    monkeypatch.delenv("CDAREC_RETRIEVAL_K", raising=False)
    monkeypatch.delenv("CDAREC_DATASET", raising=False)
    (tmp_path / "settings.toml").write_text('retrieval_k = 42\ndataset = "ml-100k"\n')
    assert Settings().retrieval_k == 42 and Settings().dataset == "ml-100k"
    monkeypatch.setenv("CDAREC_RETRIEVAL_K", "17")
    assert Settings().retrieval_k == 17
    assert Settings(retrieval_k=5).retrieval_k == 5
    assert Settings().home == tmp_path


def test_coerce_accepts_what_langgraph_passes() -> None:
    s = Settings(user_id="u")
    assert Settings.coerce(s) is s
    assert Settings.coerce({"user_id": "v"}).user_id == "v"
    assert Settings.coerce(None).user_id is None or isinstance(Settings.coerce(None), Settings)


@pytest.mark.parametrize("spec", ["gpt-4o", "foo:bar", "ollama:"])
def test_bad_model_specs_are_explained(spec: str) -> None:
    with pytest.raises(ModelSpecError, match="provider:model"):
        parse_spec(spec)


def test_model_specs() -> None:
    assert parse_spec("ollama:qwen2.5:0.5b") == ("ollama", "qwen2.5:0.5b")
    assert parse_spec("openai:gpt-4o-mini") == ("openai", "gpt-4o-mini")
