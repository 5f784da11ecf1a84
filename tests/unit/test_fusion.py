"""The device's fusion of ranking signals (unit, no models)."""

from __future__ import annotations

import numpy as np
import pytest

from cdarec.device.ranking import PoolItem, fuse, standardise, structured_signal
from cdarec.graph.plan import default_plan
from tests.unit.test_plan import abstract


def item(name: str, sequence: float, semantic: float = 0.0, transition: float | None = None):
    return PoolItem(
        name, name, (), None, sequence=sequence, semantic=semantic, transition=transition
    )


def test_standardise_gives_z_scores_and_zero_for_a_constant_signal() -> None:
    z = standardise(np.array([1.0, 2.0, 3.0, 10.0]))
    assert z.mean() == pytest.approx(0) and z.std() == pytest.approx(1)
    assert list(np.argsort(z)) == [0, 1, 2, 3]
    assert standardise(np.array([4.0, 4.0, 4.0])).tolist() == [0.0, 0.0, 0.0]
    assert standardise(np.array([])).size == 0


def test_a_confident_sequence_margin_survives_a_weak_semantic_signal() -> None:
    # The failure of rank-percentile fusion: item "a" is far ahead on the sequence model,
    # "b" barely second; a semantic signal that prefers "b" must not overturn a wide
    # margin at a small weight.
    pool = [item("a", 9.0, 0.30), item("b", 1.2, 0.50)] + [
        item(f"n{i}", 1.0 - 0.01 * i, 0.31 + 0.01 * i) for i in range(18)
    ]
    fuse(pool, w_sequence=0.75, w_semantic=0.25, blend=0.0)
    assert max(pool, key=lambda p: p.fused).item_id == "a"
    assert pool[0].parts["sequence"] > 3


def test_the_transition_model_is_blended_in_only_when_every_item_has_it() -> None:
    pool = [
        item("a", 1.0, transition=0.0),
        item("b", 0.99, transition=5.0),
        item("c", 0.0, transition=0.0),
    ]
    alone = standardise(np.array([1.0, 0.99, 0.0]))
    blended = structured_signal(pool, blend=0.15)
    assert blended[1] > blended[0]  # a near-tie broken by the second model
    assert structured_signal(pool, blend=0.0).tolist() == pytest.approx(alone.tolist())
    pool[2].transition = None
    assert structured_signal(pool, blend=0.15).tolist() == pytest.approx(alone.tolist())


def test_an_empty_request_leaves_the_semantic_match_a_small_say() -> None:
    for bucket in ("light", "heavy"):
        w = default_plan(abstract(bucket), "", 30).weights
        assert w.semantic == pytest.approx(0.05) and w.sequence >= 0.75
    assert default_plan(abstract("cold"), "", 30).weights.semantic > 0.5
