from __future__ import annotations

import numpy as np
import pytest

from cdarec.data import leave_one_out, load_dataset
from cdarec.seqrec.transition import PopularityModel, TransitionModel, top_k
from tests.conftest import REAL_HOME


def test_transition_model_learns_what_follows() -> None:
    train = {"u1": np.array([0, 1, 2]), "u2": np.array([0, 1, 3]), "u3": np.array([4, 1, 2])}
    m = TransitionModel.fit(train, n_items=5, window=1, smoothing=0.0)
    assert int(np.argmax(m.scores(np.array([0])))) == 1
    s = m.scores(np.array([1]))
    assert s[2] > s[3] > s[4]  # 1 -> 2 twice, 1 -> 3 once


def test_recency_decay_favours_the_latest_item() -> None:
    train = {"a": np.array([0, 1]), "b": np.array([2, 3])}
    m = TransitionModel.fit(train, n_items=4, window=1, smoothing=0.0, decay=0.5)
    s = m.scores(np.array([0, 2]))  # 2 is the most recent
    assert s[3] > s[1]


def test_save_load_roundtrip(tmp_path) -> None:
    m = TransitionModel.fit({"a": np.array([0, 1, 2, 1])}, n_items=3)
    m.save(tmp_path / "m.npz")
    m2 = TransitionModel.load(tmp_path / "m.npz")
    h = np.array([0, 1])
    assert np.allclose(m.scores(h), m2.scores(h))


def test_top_k_excludes() -> None:
    assert top_k(np.array([3.0, 2.0, 1.0]), 2, np.array([0])).tolist() == [1, 2]


def test_beats_popularity_on_ml100k() -> None:
    """HR@10 on leave-one-out test items (full ranking, seen items excluded)."""
    if not (REAL_HOME / "datasets" / "ml-100k").exists():
        pytest.fail("ML-100K missing: run scripts/test.sh")
    ds = load_dataset("ml-100k", REAL_HOME)
    split = leave_one_out(ds)
    trans = TransitionModel.fit(split.train, ds.n_items)
    pop = PopularityModel(
        np.bincount(np.concatenate(list(split.train.values())), minlength=ds.n_items)
    )

    def hr(model) -> float:
        hits = 0
        for u in ds.users:
            hist = np.concatenate([split.train[u], [split.valid[u]]]).astype(np.int64)
            hits += split.test[u] in top_k(model.scores(hist), 10, np.unique(hist))
        return hits / ds.n_users

    h_trans, h_pop = hr(trans), hr(pop)
    assert h_trans > h_pop * 1.3, (h_trans, h_pop)
