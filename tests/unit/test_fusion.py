"""The device's fusion of ranking signals (unit, no models)."""

from __future__ import annotations

import numpy as np
import pytest

from cdarec.device.ranking import (
    PoolItem,
    blend_structured,
    catalogue_structured,
    fuse,
    standardise,
)
from cdarec.graph.plan import default_plan
from tests.unit.test_plan import abstract


def item(name: str, sequence: float, semantic: float = 0.0):
    return PoolItem(name, name, (), None, sequence=sequence, semantic=semantic)


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
    fuse(pool, w_sequence=0.75, w_semantic=0.25)
    assert max(pool, key=lambda p: p.fused).item_id == "a"
    assert pool[0].parts["sequence"] > 3


def test_the_transition_model_breaks_near_ties_of_the_sequence_model() -> None:
    seq, trans = np.array([1.0, 0.99, 0.0]), np.array([0.0, 5.0, 0.0])
    blended = blend_structured(seq, trans, blend=0.15)
    assert blended[1] > blended[0]  # a near-tie broken by the second model
    alone = standardise(seq)
    assert blend_structured(seq, trans, blend=0.0).tolist() == pytest.approx(alone.tolist())
    assert blend_structured(seq, None).tolist() == pytest.approx(alone.tolist())


def test_the_catalogue_signal_is_standardised_over_eligible_items_only() -> None:
    rng = np.random.default_rng(0)
    seq, trans = rng.normal(size=50), rng.normal(size=50)
    eligible = np.ones(50, dtype=bool)
    eligible[[3, 7, 11]] = False  # watched / disliked / outside the scope
    out = catalogue_structured(seq, trans, eligible)
    assert np.isneginf(out[~eligible]).all()
    assert out[eligible].tolist() == pytest.approx(
        blend_structured(seq[eligible], trans[eligible]).tolist()
    )
    # A pool's structured order is the catalogue order (no re-mixing inside the pool).
    pool = [item(str(i), float(out[i])) for i in (0, 1, 2, 4, 5)]
    fuse(pool, w_sequence=1.0, w_semantic=0.0)
    assert [p.item_id for p in sorted(pool, key=lambda p: -p.fused)] == [
        str(i) for i in sorted((0, 1, 2, 4, 5), key=lambda i: -out[i])
    ]
    assert np.isneginf(catalogue_structured(seq, trans, np.zeros(50, dtype=bool))).all()


def test_an_empty_request_leaves_the_semantic_match_a_small_say() -> None:
    for bucket in ("light", "heavy"):
        w = default_plan(abstract(bucket), "", 30).weights
        assert w.semantic == pytest.approx(0.05) and w.sequence >= 0.75
    assert default_plan(abstract("cold"), "", 30).weights.semantic > 0.5
