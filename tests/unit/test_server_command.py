"""The embedded cloud server's command line, parsed by llama_cpp.server's own parser
(no model is loaded): the memory-saving flags must be understood as meant."""

from __future__ import annotations

import argparse
from pathlib import Path

import pytest
from llama_cpp.server.cli import add_args_from_model, parse_model_from_args
from llama_cpp.server.settings import ModelSettings, Settings

from cdarec.llm.server import EmbeddedServer


def test_server_starts_without_prompt_logits_and_without_mmap(tmp_path: Path) -> None:
    srv = EmbeddedServer(tmp_path / "m.gguf", "cloud", n_ctx=2048, threads=2, log_dir=tmp_path)
    srv.port = 8123
    cmd = srv.command()
    assert cmd[1:3] == ["-m", "cdarec.llm._child"]
    parser = argparse.ArgumentParser()
    add_args_from_model(parser, Settings)
    model = parse_model_from_args(ModelSettings, parser.parse_args(cmd[4:]))
    # logits_all=True (the server's default) keeps a vocabulary row per prompt token:
    # +1.2 GB for Qwen at n_ctx 2048 (README, `cdarec bench turns`).
    assert model.logits_all is False
    assert model.use_mmap is False
    assert (model.n_ctx, model.n_threads, model.model_alias) == (2048, 2, "cloud")


def test_server_child_loads_grammar_checked_models(monkeypatch: pytest.MonkeyPatch) -> None:
    """The child swaps the class llama_cpp.server instantiates (it looks ``llama_cpp.Llama``
    up at load time): grammar-constrained replies check the sampled token first."""
    import llama_cpp
    from llama_cpp.server import model as server_model

    from cdarec.llm._child import use_grammar_checked_sampling
    from cdarec.llm.sampling import GrammarCheckedLlama

    monkeypatch.setattr(llama_cpp, "Llama", llama_cpp.Llama)  # restored after the test
    use_grammar_checked_sampling()
    assert server_model.llama_cpp.Llama is GrammarCheckedLlama
