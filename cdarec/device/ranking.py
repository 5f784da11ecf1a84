"""Final ranking on the device: fuse structured, semantic and SLM signals; explain.

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

import json
import re
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
from pydantic import BaseModel, Field, ValidationInfo, field_validator

# The judge's reason is capped by its JSON schema (``judgement_schema``): a few words
# cost ~40 ms each on the 0.5B. The model often runs into the cap mid-phrase.
REASON_MAX_CHARS = 50
_DANGLING = frozenset(
    (  # noqa: SIM905 - a word list reads better as one string
        "a an the and or but so that which who whose with of to for from in on at by as is "
        "are was be it its their your his her this these those very more most"
    ).split()
)


def tidy_reason(text: str, limit: int = REASON_MAX_CHARS) -> str:
    """One line. A reason cut at ``limit`` loses its possibly broken last word and any
    words left dangling ("... film that fits" -> "... film"), and ends with an ellipsis."""
    one = " ".join(text.split())
    if len(text) < limit:
        return one
    words = one[:limit].split(" ")
    if not text.endswith((" ", ".", ",", "!", ";")) and len(words) > 1:
        words = words[:-1]  # the cut may have split this word
    while len(words) > 1 and words[-1].lower().strip(",.;:!-") in _DANGLING:
        words.pop()
    return " ".join(words).rstrip(",.;:-! ") + "\u2026"


class Pick(BaseModel):
    n: int = Field(ge=1)
    reason: str = Field(default="", max_length=300)

    @field_validator("reason")
    @classmethod
    def _one_line(cls, v: str) -> str:
        return tidy_reason(v)


class Judgement(BaseModel):
    """What the device SLM writes."""

    picks: list[Pick] = Field(max_length=20)

    @field_validator("picks")
    @classmethod
    def _in_range(cls, v: list[Pick], info: ValidationInfo) -> list[Pick]:
        """Keep the first pick of each valid candidate number; an out-of-range number is
        dropped (small models overshoot), but a reply with no usable pick is invalid."""
        limit = (info.context or {}).get("n")
        seen: set[int] = set()
        out = []
        for p in v:
            if (limit is None or p.n <= limit) and p.n not in seen:
                seen.add(p.n)
                out.append(p)
        if v and not out:
            raise ValueError(f"no pick names a candidate number (1..{limit})")
        return out


_PICK = re.compile(r'\{\s*"n"\s*:\s*(\d+)\s*,\s*"reason"\s*:\s*"((?:[^"\\]|\\.)*)"\s*\}')


def _unquote(s: str) -> str:
    try:
        return str(json.loads(f'"{s}"'))
    except ValueError:
        return s


def salvage_judgement(raw: str, n: int) -> Judgement | None:
    """The complete picks of a reply that was cut at its token budget, if any."""
    picks = [{"n": int(m.group(1)), "reason": _unquote(m.group(2))} for m in _PICK.finditer(raw)]
    try:
        return Judgement.model_validate({"picks": picks}, context={"n": n}) if picks else None
    except ValueError:
        return None


def judgement_schema(n: int, picks: int) -> dict[str, object]:
    return {
        "type": "object",
        "properties": {
            "picks": {
                "type": "array",
                "maxItems": picks,
                # minItems > 1 was measured to backfire on the 0.5B model: forced to go on,
                # it rambles into the token budget and the reply is cut (bench turns).
                "minItems": 1,
                "items": {
                    "type": "object",
                    "properties": {
                        "n": {"type": "integer", "minimum": 1, "maximum": n},
                        "reason": {"type": "string", "maxLength": REASON_MAX_CHARS},
                    },
                    "required": ["n", "reason"],
                },
            }
        },
        "required": ["picks"],
    }


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
