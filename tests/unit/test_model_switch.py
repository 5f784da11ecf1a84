"""The chat starts on the transition model and switches to SASRec once a background
training has written it (real ML-100K, a real tiny SASRec)."""

from __future__ import annotations

from pathlib import Path

import pytest

from cdarec.cloud.training.train import train_or_load
from cdarec.graph.runtime import Resources
from cdarec.seqrec.config import TrainConfig
from cdarec.service.training import background_training, training_in_progress
from cdarec.settings import Settings
from tests.conftest import REAL_HOME


def test_the_device_switches_to_sasrec_when_its_training_finishes(tmp_path: Path) -> None:
    if not (REAL_HOME / "datasets" / "ml-100k").exists():
        pytest.fail("ML-100K missing: run scripts/test.sh")
    # A home of its own with an empty models folder: the shared fixtures link the real
    # one, where this test's tiny model must never land.
    home = tmp_path / "home"
    (home / "models").mkdir(parents=True)
    for sub in ("datasets", "embedders"):
        (home / sub).symlink_to(REAL_HOME / sub, target_is_directory=True)
    res = Resources(Settings(home=home, dataset="ml-100k"))
    assert not res.device.sasrec_path().is_relative_to(REAL_HOME)
    assert res.device.sequence_model is res.device.transition_model
    assert res.cloud.collab_index is None, "no trained model: no collaborative index"
    assert not res.refresh_sequence_model(), "nothing trained yet: no switch"
    assert training_in_progress(res) is None
    tiny = TrainConfig(hidden=16, max_len=50, epochs=1, time_budget_s=30, valid_users=100)
    train_or_load(res.dataset, home, tiny).save(res.device.sasrec_path())
    assert res.refresh_sequence_model()
    assert res.device.sequence_model is not res.device.transition_model
    assert hasattr(res.device.sequence_model, "item_vectors")
    assert res.cloud.collab_index is not None, "the cloud indexes the model it now ships"
    assert not res.refresh_sequence_model(), "switches once"
    assert background_training(res) is None, "a trained model is not trained again"
