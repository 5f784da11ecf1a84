"""The user-disjoint split (issue 17's honest protocol): the cloud's models learn from
users who are not evaluated (real ML-100K, a tiny SASRec, scripted fake LLMs)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from rich.console import Console

from cdarec.data import leave_one_out, load_dataset, user_disjoint
from cdarec.evaluation.harness import ProtocolA
from cdarec.evaluation.protocols import sampled as accuracy
from cdarec.graph.runtime import Resources
from cdarec.seqrec import artefacts
from cdarec.seqrec.config import TrainConfig
from cdarec.seqrec.transition import TransitionModel
from tests.conftest import REAL_HOME
from tests.fakes import JUDGE, PLAN, QUERIES, by_task, fake_llm

TINY = TrainConfig(hidden=16, max_len=50, epochs=1, time_budget_s=60, valid_users=0)


def test_the_population_is_every_other_user_over_the_same_items() -> None:
    ds = load_dataset("ml-100k", REAL_HOME)
    population, held = user_disjoint(ds, 0.2, seed=3)
    assert len(held) == round(0.2 * ds.n_users) and not set(held) & set(population.users)
    assert population.n_users + len(held) == ds.n_users
    assert population.items == ds.items  # same item indices: one model serves both
    for u in population.users[:50]:
        assert np.array_equal(population.sequence(u), ds.sequence(u))
        assert np.array_equal(population.timestamps(u), ds.timestamps(u))
    assert population.n_interactions == sum(len(ds.sequence(u)) for u in population.users)
    assert user_disjoint(ds, 0.2, seed=3)[1] == held, "seeded"
    assert user_disjoint(ds, 0.2, seed=4)[1] != held
    with pytest.raises(ValueError, match="between 0 and 1"):
        user_disjoint(ds, 1.0)

    proto = ProtocolA.build(ds, 20, seed=1, held=held, population=population)
    assert set(proto.users) <= set(held) and set(proto.sample) <= set(proto.users)
    # Popularity counts the population's training items only.
    split = leave_one_out(population)
    expected = np.zeros(ds.n_items)
    for u, seq in split.train.items():
        np.add.at(expected, seq, 1.0)
        if split.valid[u] is not None:
            expected[split.valid[u]] += 1.0
    assert np.array_equal(proto.train_pop, expected)


def test_a_disjoint_run_trains_on_the_population_and_evaluates_the_held_out(
    home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(artefacts, "train_config", lambda ds: TINY)
    from cdarec.settings import Settings

    s = Settings(home=home, dataset="ml-100k", judge_top=4)
    script = by_task(PLAN, QUERIES, JUDGE)
    res = Resources(s, device_llm=fake_llm(script, "device"), cloud_llm=fake_llm(script, "cloud"))
    out = home / "results"
    rows = accuracy.run(
        s,
        ["pop", "structured", "cdarec-no-slm"],
        3,
        seed=5,
        out_dir=out,
        console=Console(record=True, width=200),
        resources=res,
        split="user-disjoint",
        held_share=0.25,
    )
    population, held = user_disjoint(res.dataset, 0.25, seed=5)
    # The cloud trained on the population only: its own model file, its users' examples.
    model = res.cloud.train()
    assert model.meta["n_examples"] <= population.n_users
    assert model is res.device.sequence_model
    honest = TransitionModel.fit(leave_one_out(population).train, population.n_items)
    assert (res.device.transition_model.trans != honest.trans).nnz == 0
    everyone = TransitionModel.fit(leave_one_out(res.dataset).train, res.dataset.n_items)
    assert (res.device.transition_model.trans != everyone.trans).nnz > 0
    assert artefacts.model_path(population, home, TINY).exists()
    assert not artefacts.model_path(res.dataset, home, TINY).exists(), "no model of everyone"
    # Every row evaluates held-out users only.
    n_held = len([u for u in held if len(res.dataset.sequence(u)) >= 2])
    assert max(r.users for r in rows) == n_held < res.dataset.n_users
    payload = json.loads((out / "accuracy-llmrank-ml-100k-disjoint.json").read_text())
    assert payload["split"] == {
        "kind": "user-disjoint",
        "held_share": 0.25,
        "trained_users": population.n_users,
        "evaluated_users": n_held,
    }
    assert "User-disjoint split" in (out / "accuracy-llmrank-ml-100k-disjoint.md").read_text()
