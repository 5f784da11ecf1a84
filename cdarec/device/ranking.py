"""Device side: the final ranking — fuse structured, semantic and SLM signals; explain.

Signals are put on one scale by standardising them inside the candidate pool
(z-scores), then mixed with the plan's weights. Rank percentiles were used before
and measured to cost 6-9 NDCG@10 points on Protocol A (`cdarec bench accuracy`): they
turn a confident sequence model's wide margin into one rank step, so that a weak
signal (semantic similarity to an abstract profile) could overturn it. The structured
signal is the trained SASRec blended with the transition model (a small ensemble; the
blend weight is chosen per data set on the validation split when the model is trained,
see ``blend_sweep``), computed over the whole catalogue (``catalogue_structured``): the
device's proposals are its top items and every pool item carries its catalogue-level
value. The device SLM sees the top of the fused list together with the private recent
history, picks and orders the ones it believes fit, and writes the reasons; its order is
the third signal.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from cdarec.contract.judgement import Pick
from cdarec.seqrec.structured import standardise


@dataclass
class PoolItem:
    item_id: str
    label: str
    genres: tuple[str, ...]
    year: int | None
    sources: set[str] = field(default_factory=set)
    sequence: float = 0.0  # the structured signal (catalogue level: structured_scores)
    semantic: float = 0.0
    similar: float = 0.0  # likeness to the film the request names (``likeness``)
    judge: float = 0.0
    reason: str = ""
    fused: float = 0.0
    parts: dict[str, float] = field(default_factory=dict)


def fuse(
    pool: Sequence[PoolItem], w_sequence: float, w_semantic: float, w_similar: float = 0.0
) -> None:
    """Pre-judgement fusion (in place); sets ``fused`` and the standardised parts."""
    if not pool:
        return
    seq = standardise(np.array([p.sequence for p in pool]))
    sem = standardise(np.array([p.semantic for p in pool]))
    sim = standardise(np.array([p.similar for p in pool]))
    for p, s1, s2, s3 in zip(pool, seq, sem, sim, strict=True):
        p.parts = {"sequence": round(float(s1), 4), "semantic": round(float(s2), 4)}
        p.fused = w_sequence * float(s1) + w_semantic * float(s2)
        if w_similar:
            p.parts["similar"] = round(float(s3), 4)
            p.fused += w_similar * float(s3)


def apply_judgement(
    pool: Sequence[PoolItem], judged: Sequence[PoolItem], picks: list[Pick], w_judge: float
) -> None:
    """Add the SLM's order as a signal: first pick 1.0, then evenly down; unpicked 0."""
    k = len(picks)
    for pos, pick in enumerate(picks):
        item = judged[pick.n - 1]
        item.judge = 1.0 - pos / max(k, 1) * 0.5 if k else 0.0
        item.reason = pick.reason
    for p in pool:
        p.parts["judge"] = round(p.judge, 4)
        p.fused += w_judge * p.judge
