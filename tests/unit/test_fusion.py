"""The device's fusion of ranking signals (unit, no models)."""

from __future__ import annotations

import numpy as np
import pytest

from cdarec.contract.plan import default_plan
from cdarec.device.ranking import PoolItem, fuse
from cdarec.seqrec.structured import (
    TRANSITION_BLEND,
    blend_structured,
    blend_sweep,
    catalogue_structured,
    standardise,
    structured_blend,
)
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


def test_blend_sweep_ranks_the_label_among_eligible_items_hand_computed() -> None:
    seq = np.array([[3.0, 2.0, 1.0, 0.0], [1.0, 1.0, 0.0, 0.0]])
    trans = np.array([[0.0, 0.0, 5.0, 0.0], [0.0, 0.0, 0.0, 0.0]])
    eligible = np.ones((2, 4), dtype=bool)
    labels = np.array([2, 1])
    # Row 0: the label is third on SASRec (rank 2); at weight 1 the transition lifts it
    # to the top (z 1.29 against 0.77). Row 1: a tie with item 0 counts against the label
    # (rank 1), and a constant transition signal changes nothing.
    out = blend_sweep(seq, trans, eligible, labels, grid=(0.0, 1.0), k=2)
    assert out[0.0] == pytest.approx((0.5, 0.5 * (0.0 + 1 / np.log2(3))))
    assert out[1.0] == pytest.approx((1.0, 0.5 * (1.0 + 1 / np.log2(3))))
    # An ineligible (watched) item does not count: without item 0, row 0's label is 2nd.
    eligible[0, 0] = False
    assert blend_sweep(seq, trans, eligible, labels, grid=(0.0,), k=2)[0.0][0] == 1.0
    # The sweep's ranking is the device's: catalogue_structured's order.
    rng = np.random.default_rng(1)
    seq, trans = rng.normal(size=(1, 40)), rng.exponential(size=(1, 40))
    elig = rng.random((1, 40)) > 0.2
    lab = int(np.flatnonzero(elig[0])[5])
    row = catalogue_structured(seq[0], trans[0], elig[0], 0.3)
    rank = int((row > row[lab]).sum())
    hit, nd = blend_sweep(seq, trans, elig, np.array([lab]), grid=(0.3,), k=40)[0.3]
    assert hit == 1.0
    assert nd == pytest.approx(1 / np.log2(rank + 2))


def test_the_model_carries_its_transition_weight() -> None:
    class Model:
        def __init__(self, meta: dict) -> None:
            self.meta = meta

    assert structured_blend(Model({"transition_blend": 0.06})) == 0.06
    assert structured_blend(Model({})) == TRANSITION_BLEND  # a file from before the field
    assert structured_blend(object()) == TRANSITION_BLEND


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
        plan = default_plan(abstract(bucket), "", 30)
        w = plan.weights
        # history-led: the request-less weights Protocols A and B measured (0.06 cost nothing)
        assert plan.strategy == "history-led"
        assert w.semantic == pytest.approx(0.06) and w.sequence >= 0.75
    # nothing watched and nothing asked: the catalogue's popularity leads, the semantic
    # match of the abstract's query only breaks ties
    cold = default_plan(abstract("cold"), "", 30).weights
    assert cold.sequence > 0.5 > cold.semantic > 0
