"""The transition model's weight in the device's structured signal is a setting of each
trained model, chosen on validation items it did not train on (real ML-100K, a real but
tiny SASRec)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from cdarec.cloud.training.train import train_or_load
from cdarec.data import leave_one_out, load_dataset
from cdarec.evaluation.protocols.full import _rank_of_label, metrics, structured_row
from cdarec.seqrec.artefacts import model_path
from cdarec.seqrec.config import TrainConfig, untrained_valid_users
from cdarec.seqrec.sasrec import SASRecModel
from cdarec.seqrec.structured import (
    BLEND_GRID,
    TRANSITION_BLEND,
    structured_blend,
    with_transition_blend,
)
from cdarec.seqrec.transition import TransitionModel
from tests.conftest import REAL_HOME

WATCHED = TrainConfig(hidden=16, max_len=50, epochs=2, time_budget_s=60, valid_users=300)


@pytest.fixture()
def ds(home: Path):
    if not (REAL_HOME / "datasets" / "ml-100k").exists():
        pytest.fail("ML-100K missing: run scripts/test.sh")
    return load_dataset("ml-100k", home)


def test_training_chooses_the_weight_on_the_watched_validation_items(ds, home: Path) -> None:
    model = train_or_load(ds, home, WATCHED)
    meta = model.meta
    # fit_valid trained on every other user's validation item: only the watched choose.
    assert meta["transition_blend_users"] == 300
    sweep = meta["transition_blend_sweep"]
    assert set(sweep) == {str(b) for b in BLEND_GRID}
    best = max(m["NDCG@10"] for m in sweep.values())
    assert sweep[str(meta["transition_blend"])]["NDCG@10"] == best
    assert structured_blend(model) == meta["transition_blend"]
    # It travels with the file to the device.
    path = model_path(ds, home, WATCHED)
    assert SASRecModel.load(path).meta["transition_blend"] == meta["transition_blend"]

    # The sweep's figures are the device ranking's, user by user (bench.full's path).
    split = leave_one_out(ds)
    clean = untrained_valid_users(meta, split.train, split.valid)
    users = [u for u in split.valid_users() if u in clean and len(split.train[u])]
    tm = TransitionModel.fit(split.train, ds.n_items)
    ranks = []
    for u in users:
        h = np.asarray(split.train[u], dtype=np.int64)
        row = structured_row(model.scores(h), tm.scores(h), h, 0.1)
        ranks.append(_rank_of_label(row, h, int(split.valid[u])))  # type: ignore[arg-type]
    hr, nd = metrics(np.array(ranks))
    assert (hr, nd) == pytest.approx((sweep["0.1"]["HR@10"], sweep["0.1"]["NDCG@10"]), abs=1e-4)


def test_a_model_file_from_before_the_weight_gets_one_once(ds, home: Path) -> None:
    train_or_load(ds, home, WATCHED)
    path = model_path(ds, home, WATCHED)
    old = SASRecModel.load(path)
    for key in ("transition_blend", "transition_blend_users", "transition_blend_sweep"):
        old.meta.pop(key)
    old.save(path)
    assert structured_blend(SASRecModel.load(path)) == TRANSITION_BLEND  # the fallback
    again = with_transition_blend(SASRecModel.load(path), ds, path)
    assert again.meta["transition_blend_users"] == 300
    assert SASRecModel.load(path).meta["transition_blend"] == again.meta["transition_blend"]


def test_without_untrained_validation_items_the_fallback_stays(ds, home: Path) -> None:
    # fit_valid with no watched users: every validation item was trained on.
    model = train_or_load(ds, home, WATCHED.model_copy(update={"valid_users": 0}))
    assert model.meta["transition_blend"] == TRANSITION_BLEND
    assert model.meta["transition_blend_users"] == 0


def test_cdarec_train_says_which_weight_the_device_will_use(
    ds, home: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from cdarec import cli as app
    from cdarec.seqrec import artefacts as runtime

    monkeypatch.setattr(runtime, "train_config", lambda d: WATCHED)
    assert app.main(["train", "--dataset", "ml-100k", "--home", str(home)]) == 0
    chosen = train_or_load(ds, home, WATCHED).meta["transition_blend"]
    out = " ".join(capsys.readouterr().out.split())  # rich wraps at the terminal width
    assert f"transition weight {chosen:g} (chosen on validation)" in out
