"""The structured signal, shared by both sides: SASRec blended with the transition model.

Shared (neither side): the cloud's training chooses the blend weight on validation items
(``blend_sweep``, run by `cdarec train`) and the device forms the same signal over its
catalogue when it ranks (``catalogue_structured``); both read it here, so the weight the
cloud chose is the weight the device applies.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from cdarec.data import Dataset
    from cdarec.seqrec.sasrec import SASRecModel

log = logging.getLogger(__name__)

# The weight of z(transition) in the structured signal is a setting of the trained model,
# chosen per data set on validation items it was not trained on (``blend_sweep``, run by
# `cdarec train`; stored in the model file's meta as "transition_blend"). The constant is
# the fallback for a model without one: ML-1M's choice on Protocol A's sampled validation
# (scripts/tune_fusion.py: NDCG@10 82.8 -> 83.7, 0.1: 83.7, 0.2: 83.4, 0.5: 81.8). On
# Protocol B's data full ranking prefers less: HR@10 0.2952 at 0.15, 0.3017 at 0.08.
TRANSITION_BLEND = 0.15
# The weights ``blend_sweep`` tries.
BLEND_GRID = (0.0, 0.02, 0.04, 0.06, 0.08, 0.1, 0.12, 0.15, 0.2, 0.3)


def structured_blend(model: object) -> float:
    """The transition weight that goes with a trained model: the one chosen on validation
    when it was trained (``meta["transition_blend"]``), else ``TRANSITION_BLEND``."""
    meta = getattr(model, "meta", None) or {}
    value = meta.get("transition_blend") if isinstance(meta, dict) else None
    return float(value) if isinstance(value, int | float) else TRANSITION_BLEND


def blend_sweep(
    seq: np.ndarray,
    trans: np.ndarray,
    eligible: np.ndarray,
    labels: np.ndarray,
    grid: Sequence[float] = BLEND_GRID,
    k: int = 10,
) -> dict[float, tuple[float, float]]:
    """HR@k and NDCG@k of the structured signal (``catalogue_structured``, row by row) for
    each blend weight in ``grid``, ranking each row's label among its eligible items (ties
    count against the label). ``seq``, ``trans``: (U, n_items) scores; ``eligible``:
    (U, n_items) bool; ``labels``: (U,) item indices, eligible in their row."""
    out: dict[float, tuple[float, float]] = {}
    for b in grid:
        ranks = []
        for s, t, e, y in zip(seq, trans, eligible, labels, strict=True):
            row = catalogue_structured(s, t, e, b)
            ranks.append(int((row >= row[y]).sum()) - 1)
        rank = np.array(ranks)
        hit = rank < k
        out[float(b)] = (float(hit.mean()), float((hit / np.log2(rank + 2.0)).mean()))
    return out


def standardise(values: np.ndarray) -> np.ndarray:
    """z-scores inside the pool; a constant signal is 0. Not clipped: the margin of a
    confident score is the information the fusion must keep (clipping ties the top)."""
    v = np.asarray(values, dtype=np.float64)
    if v.size == 0:
        return v
    sd = float(v.std())
    if sd < 1e-12 or not np.isfinite(sd):
        return np.zeros(v.size)
    return (v - v.mean()) / sd


def blend_structured(
    seq: np.ndarray, trans: np.ndarray | None, blend: float = TRANSITION_BLEND
) -> np.ndarray:
    """z(SASRec) + blend * z(transition), re-standardised (just z of the one model when
    there is no second one): the structured signal, for a pool or a whole catalogue."""
    z = standardise(seq)
    if blend > 0 and trans is not None and len(z):
        z = standardise(z + blend * standardise(trans))
    return z


def catalogue_structured(
    seq: np.ndarray, trans: np.ndarray | None, eligible: np.ndarray, blend: float = TRANSITION_BLEND
) -> np.ndarray:
    """The structured signal over the whole catalogue: ``blend_structured`` over the items
    that may be recommended (``eligible``, a boolean mask), ``-inf`` elsewhere.

    Standardised at catalogue level, not inside the pool, so that the device's proposals
    and the pool's structured order are one ranking: inside a pool of SASRec's top 30
    the two models' z-scores mix in another balance (Protocol B, all 6,033 users: HR@10
    0.2604 that way against 0.2757 over the catalogue). With a scope (Protocol A's 20
    candidates) the eligible items are the scope, as before.
    """
    out = np.full(len(seq), -np.inf)
    if eligible.any():
        out[eligible] = blend_structured(
            np.asarray(seq)[eligible], None if trans is None else np.asarray(trans)[eligible], blend
        )
    return out


BLEND_USERS = 2000  # at most this many validation users choose the transition weight


def choose_transition_blend(model: SASRecModel, ds: Dataset) -> dict[str, Any]:
    """Meta entries fixing the transition model's weight in the structured signal.

    Each weight of ``BLEND_GRID`` is tried on the validation items the model has not been
    trained on (``untrained_valid_users``: the watched users for a ``fit_valid`` model; a
    seeded sample of at most ``BLEND_USERS``), ranked as the device ranks them: the whole
    catalogue less the history (``blend_sweep``), the history being the training
    sequence and the transition model the device's (fitted on the training split). The
    weight with the best NDCG@10 wins. The device reads it with ``structured_blend``.
    """
    from cdarec.data import leave_one_out
    from cdarec.seqrec.config import untrained_valid_users
    from cdarec.seqrec.transition import TransitionModel

    split = leave_one_out(ds)
    clean = untrained_valid_users(model.meta, split.train, split.valid)
    users = [u for u in split.valid_users() if u in clean and len(split.train[u])]
    if len(users) > BLEND_USERS:
        pick = np.random.default_rng(0).choice(len(users), BLEND_USERS, replace=False)
        users = [users[i] for i in sorted(pick)]
    if not users:
        return {"transition_blend": TRANSITION_BLEND, "transition_blend_users": 0}
    tm = TransitionModel.fit(split.train, ds.n_items)
    totals = np.zeros((len(BLEND_GRID), 2))
    for start in range(0, len(users), 256):
        part = users[start : start + 256]
        hists = [np.asarray(split.train[u], dtype=np.int64) for u in part]
        labels = np.array([int(split.valid[u]) for u in part])  # type: ignore[arg-type]
        eligible = np.ones((len(part), ds.n_items), dtype=bool)
        for i, h in enumerate(hists):
            eligible[i, h] = False
        eligible[np.arange(len(part)), labels] = True
        trans = np.stack([tm.scores(h) for h in hists])
        sweep = blend_sweep(model.scores_batch(hists), trans, eligible, labels, BLEND_GRID)
        totals += len(part) * np.array([sweep[float(b)] for b in BLEND_GRID])
    totals /= len(users)
    best = max(range(len(BLEND_GRID)), key=lambda i: (totals[i, 1], totals[i, 0]))
    return {
        "transition_blend": float(BLEND_GRID[best]),
        "transition_blend_users": len(users),
        "transition_blend_sweep": {
            str(b): {"HR@10": round(hr, 4), "NDCG@10": round(nd, 4)}
            for b, (hr, nd) in zip(BLEND_GRID, totals.tolist(), strict=True)
        },
    }


def with_transition_blend(model: SASRecModel, ds: Dataset, path: Path | None = None) -> SASRecModel:
    """``model`` with its transition weight chosen (a file written before the weight was
    part of it gets one now, saved back to ``path`` so that it is chosen once)."""
    if "transition_blend" not in model.meta:
        model.meta.update(choose_transition_blend(model, ds))
        if path is not None:
            try:
                model.save(path)
            except OSError as e:  # a read-only cache: chosen again next time
                log.warning("could not save the transition weight into %s: %s", path, e)
    return model
