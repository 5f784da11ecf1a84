"""The accuracy benchmark's parts (unit): LLMRank parsing, the protocol's candidates and
a small end-to-end run on ML-100K with scripted fake LLMs and a tiny SASRec (the real
models run the same path in tests/integration/test_benchmarks.py)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from rich.console import Console

from cdarec.data import load_dataset
from cdarec.evaluation.harness import ProtocolA
from cdarec.evaluation.protocols import sampled as accuracy
from cdarec.graph.runtime import Resources
from cdarec.seqrec import artefacts as runtime
from cdarec.seqrec.config import TrainConfig
from cdarec.settings import Settings
from tests.conftest import REAL_HOME
from tests.fakes import JUDGE, PLAN, QUERIES, by_task, fake_llm

TINY = TrainConfig(hidden=16, max_len=50, epochs=2, time_budget_s=60, valid_users=0)


def test_parse_ranking_follows_the_reply_and_ignores_noise() -> None:
    cands = ["Alien (1979)", "Heat (1995)", "Babe (1995)"]
    reply = "Here is my ranking:\n1. Heat (1995)\n2. Allen (1979)\n3. Some Other Film\n4. Heat"
    assert accuracy.parse_ranking(reply, cands) == [1, 0]
    assert accuracy.parse_ranking("", cands) == []
    scores = accuracy._order_scores([1, 0], 3)
    assert scores[1] > scores[0] > scores[2]  # unranked items go last


def test_llmrank_prompt_names_the_most_recent_movie() -> None:
    text = accuracy.llmrank_prompt(["A (1990)", "B (1991)"], ["C (1992)", "D (1993)"])
    assert "most recently watched movie is B (1991)" in text
    assert "0. C (1992)" in text and "rank these 2 movies" in text


def test_protocol_candidates_hold_the_label_once_and_histories_hide_it() -> None:
    ds = load_dataset("ml-100k", REAL_HOME)
    a = ProtocolA.build(ds, 50, seed=7)
    b = ProtocolA.build(ds, 50, seed=7)
    assert a.sample == b.sample and len(a.sample) == 50
    for u in a.users[:200]:
        test = int(ds.sequence(u)[-1])
        assert (a.candidates[u] == test).sum() == 1 and len(a.candidates[u]) == 20
        assert np.array_equal(a.candidates[u], b.candidates[u])
        assert len(a.histories[u]) == len(ds.sequence(u)) - 1
    pos = a.label_pos(a.users[:10])
    assert all(
        a.candidates[u][p] == ds.sequence(u)[-1] for u, p in zip(a.users[:10], pos, strict=True)
    )


def test_small_end_to_end_run_writes_table_json_and_plot(
    home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(runtime, "train_config", lambda ds: TINY)
    s = Settings(home=home, dataset="ml-100k", judge_top=4)
    script = by_task(PLAN, QUERIES, JUDGE)
    res = Resources(s, device_llm=fake_llm(script, "device"), cloud_llm=fake_llm(script, "cloud"))
    out = home / "results"
    console = Console(record=True, width=200)
    rows = accuracy.run(
        s,
        ["random", "pop", "sasrec", "structured", "sasrec+device", "cdarec", "cdarec-no-slm"],
        4,
        seed=1,
        out_dir=out,
        console=console,
        resources=res,
    )
    by = {(r.method, r.users): r for r in rows}
    n_all = max(r.users for r in rows)
    assert n_all > 900  # every ML-100K test user for methods without an LLM
    assert 12 < by[("random", n_all)].ndcg[10] < 33  # about 22.7 expected
    assert by[("pop", n_all)].ndcg[10] > by[("random", n_all)].ndcg[10] + 10
    # The device's structured signal (SASRec blended with transitions) is a real ranker.
    assert by[("structured", n_all)].ndcg[10] > by[("random", n_all)].ndcg[10] + 10
    assert by[("cdarec", 4)].users == 4 and len(by[("cdarec", 4)].ranks) == 4
    text = console.export_text()
    assert "SASRec (trained)" in text and "| **cdarec** | 4 |" in text
    data = json.loads((out / "accuracy-llmrank-ml-100k.json").read_text())
    assert {r["method"] for r in data["rows"]} >= {"random", "cdarec", "cdarec-no-slm"}
    assert (out / "accuracy-llmrank-ml-100k.png").stat().st_size > 1000
