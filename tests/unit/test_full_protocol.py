"""Protocol B (unit): the k-core filter, the derived data set, the metrics, and a small
end-to-end run on ML-100K with scripted fake LLMs and a tiny SASRec."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from rich.console import Console

from cdarec.data import load_dataset
from cdarec.data.derive import derive_seq_dataset, k_core
from cdarec.evaluation.protocols import full
from cdarec.graph.runtime import Resources
from cdarec.seqrec import artefacts as runtime
from cdarec.seqrec.config import TrainConfig
from cdarec.settings import Settings
from tests.fakes import JUDGE, PLAN, QUERIES, by_task, fake_llm

TINY = TrainConfig(hidden=16, max_len=50, epochs=2, time_budget_s=60, valid_users=0)


def test_k_core_repeats_until_stable() -> None:
    # user 0: items 0,1 ; user 1: items 0,1 ; user 2: item 2 only. 2-core: user 2 goes,
    # then item 2 has no one left.
    users = np.array([0, 0, 1, 1, 2])
    items = np.array([0, 1, 0, 1, 2])
    assert k_core(users, items, 2).tolist() == [True, True, True, True, False]
    # a chain: dropping item 2 leaves user 1 with one interaction, so user 1 goes too
    users = np.array([0, 0, 1, 1, 2, 2])
    items = np.array([0, 1, 1, 2, 0, 1])
    keep = k_core(users, items, 2)
    assert keep.tolist() == [True, True, False, False, True, True]


def test_metrics_from_ranks() -> None:
    hr, nd = full.metrics(np.array([0, 1, 9, 10, 500]))
    assert hr == pytest.approx(3 / 5)
    assert nd == pytest.approx((1 + 1 / np.log2(3) + 1 / np.log2(11)) / 5)
    assert full._rank_of_label(np.array([5.0, 9.0, 1.0, 7.0]), np.array([1]), 3) == 0


def test_derived_data_set_is_filtered_and_reloadable(home: Path) -> None:
    path = derive_seq_dataset("ml-100k", home)
    ds = load_dataset(str(path), home)
    assert ds.n_interactions > 50_000
    assert np.diff(ds.indptr).min() >= 10 and ds.popularity[ds.popularity > 0].min() >= 10
    assert derive_seq_dataset("ml-100k", home) == path  # written once, then reused


def test_small_end_to_end_run(home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(runtime, "train_config", lambda ds: TINY)
    path = derive_seq_dataset("ml-100k", home)
    s = Settings(home=home, dataset=str(path), judge_top=4)
    script = by_task(PLAN, QUERIES, JUDGE)
    res = Resources(s, device_llm=fake_llm(script, "device"), cloud_llm=fake_llm(script, "cloud"))
    console = Console(record=True, width=200)
    rows = full.run(s, ["pop", "sasrec+transition", "cdarec"], 3, 1, home / "r", console, res)
    by = {(r.method, r.users): r for r in rows}
    assert by[("cdarec", 3)].users == 3 and len(by[("cdarec", 3)].ranks) == 3
    n_all = max(r.users for r in rows)
    assert 0.02 < by[("pop", n_all)].hr < 0.3  # popularity: a few percent in the top 10
    assert "GRU4Rec (RecBole, tuned)" in console.export_text()
    data = json.loads((home / "r" / f"accuracy-full-{path.name}.json").read_text())
    assert {r["method"] for r in data["rows"]} == {"pop", "sasrec+transition", "cdarec"}
    with pytest.raises(ValueError, match="unknown method"):
        full.run(s, ["cloud-only"], 3, 1, home / "r", console, res)
