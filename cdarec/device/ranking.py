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

import json
import re
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
from pydantic import BaseModel, Field, ValidationInfo, field_validator

from cdarec.seqrec.structured import standardise

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
