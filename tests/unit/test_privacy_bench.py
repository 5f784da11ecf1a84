"""The privacy attack benchmark (issue 17). Unit: the attack itself on a planted case (a
vector computed from a known history must give that history back when nothing protects
it - the test can fail), and a small run of `bench privacy` on ML-100K through the real
graph (real Chroma, a real but tiny SASRec, fake LLMs that are never needed: the plan
rule decides and requests are read by code)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from rich.console import Console

from cdarec.contract.schemas import UserAbstract, UserState
from cdarec.evaluation.bench import privacy
from cdarec.graph.runtime import Resources
from cdarec.seqrec import artefacts as runtime
from cdarec.seqrec.config import TrainConfig
from cdarec.settings import Settings
from tests.fakes import JUDGE, PLAN, QUERIES, by_task, fake_llm

TINY = TrainConfig(hidden=16, max_len=50, epochs=2, time_budget_s=60, valid_users=0)
STATE = UserState(bucket="heavy", history_size="101-500", recency="lapsed", live_feedback="none")


def _attacker(n_items: int = 400, dim: int = 64, n_users: int = 300) -> privacy.Attacker:
    rng = np.random.default_rng(3)
    a = object.__new__(privacy.Attacker)
    a.items = rng.normal(size=(n_items, dim))
    a.pop = rng.random(n_items)
    a.users = [f"u{i}" for i in range(n_users)]
    a.train = [rng.choice(n_items, size=30, replace=False) for _ in range(n_users)]
    # a linear user model: the user vector sums the recent items' vectors
    a.train_vecs = privacy._unit(np.array([_vector(a, t) for t in a.train]))
    a.rng = np.random.default_rng(0)
    a.genre_of = [set() for _ in range(n_items)]
    a.decade_of = ["" for _ in range(n_items)]
    return a


def _vector(a: privacy.Attacker, history: np.ndarray) -> np.ndarray:
    return a.items[history[-privacy.RECENT :]].sum(axis=0)


def test_an_unprotected_vector_gives_the_history_back_and_picks_the_user_out() -> None:
    a = _attacker()
    truth = 17
    recent = set(a.train[truth][-privacy.RECENT :].tolist())
    vector = _vector(a, a.train[truth])
    obs = privacy.Observation(None, vector, [])
    guesses = a.recover(obs, [])
    assert privacy._recall(guesses["user vector"], recent) >= 0.8
    assert privacy._recall(guesses["random vector"], recent) <= 0.4
    assert privacy._recall(guesses["popularity"], recent) <= 0.4
    assert a.reidentify(obs, truth, []) == (1.0, 1.0)
    # heavy noise on the vector: the same attacks fail
    noisy = privacy._unit(vector) + np.random.default_rng(1).normal(0, 3.0, size=vector.shape)
    far = privacy.Observation(None, noisy, [])
    assert privacy._recall(a.recover(far, [])["user vector"], recent) <= 0.4
    assert a.reidentify(far, truth, [])[0] == 0.0


def test_an_abstract_shared_by_many_users_hides_the_one() -> None:
    a = _attacker()
    abstract = UserAbstract(state=STATE, top_genres=["Drama"])
    keys = [privacy._match_key(abstract)] * 100 + [("other",)] * 200
    one, ten = a.reidentify(privacy.Observation(abstract, None, []), 5, keys)
    assert one == pytest.approx(0.01) and ten == pytest.approx(0.1)
    assert a.reidentify(privacy.Observation(abstract, None, []), 150, keys) == (0.0, 0.0)


def test_small_run_measures_the_previous_design_leaking_and_the_default_not(
    home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(runtime, "train_config", lambda ds: TINY)
    s = Settings(home=home, dataset="ml-100k")
    script = by_task(PLAN, QUERIES, JUDGE)
    res = Resources(s, device_llm=fake_llm(script, "device"), cloud_llm=fake_llm(script, "cloud"))
    names = list(privacy.DESIGNS)
    designs = [names[0], next(n for n in names if n.startswith("default"))]
    console = Console(record=True, width=250)
    rows = privacy.run(s, 4, designs, 1, home / "results", console, resources=res)
    prev, default = rows
    assert prev.vector_turns > 0.5 and default.vector_turns == 0.0  # never a vector
    assert prev.direct_matches == default.direct_matches == 1.0
    # the previous design's vector and detailed abstract pick users out; the default's not
    assert prev.reid_top1 > default.reid_top1
    assert default.reid_top1 <= 1 / 100 + 1e-9  # the bucket alone (ML-100K: 943 users)
    assert prev.epsilon == float("inf") and default.epsilon == 0.0
    text = console.export_text()
    assert "re-id top-1" in text and "re-identification top-1" in text
    data = json.loads((home / "results" / "privacy-ml-100k.json").read_text())
    assert [r["design"] for r in data["rows"]] == designs
    assert (home / "results" / "privacy-ml-100k.png").stat().st_size > 1000
