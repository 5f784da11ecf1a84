"""Contract: the judgement - which of the numbered candidates a model picks, in order, each
with a short reason - as a schema both judges write to: the device SLM (with the history)
and the cloud LLM (only for a device that holds no private history; ``contract.placement``).
Constrained by a JSON schema (``judgement_schema``) and salvaged when a reply is cut."""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Sequence

from pydantic import BaseModel, ConfigDict, Field, ValidationInfo, field_validator

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
    """What a judge writes (the device SLM, or the cloud LLM for a device with no history)."""

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


# The SLM picks (and explains) its top one; the rest get template reasons. A pick costs
# about 24 tokens ('{"n": 3, "reason": "..."}', reason <= 50 characters); under the JSON
# grammar the 0.5B device model decodes ~14 tokens/s here, so the judgement took 3.5 s
# with two picks and 1.9 s with one (48 vs 27 tokens, same 218-token prompt) - the
# difference between a 4.8 s and a ~3 s turn (bench latency). On Protocol A the planner
# gave the SLM's order no weight anyway (bench accuracy: cdarec == cdarec-no-slm).
JUDGE_PICKS = 1
# The token budget bounds what the grammar allows, not the typical reply: a reason of
# REASON_MAX_CHARS characters may take a token per character (digits, punctuation) or
# more (accented letters), and a reply cut at a typical-size budget (32 tokens) failed
# to parse in 8% of Protocol B turns, each costing a repair call and then the fallback.
# Unused budget costs nothing.
JUDGE_BASE_TOKENS = 16  # '{"picks": [' ... ']}' and whitespace
TOKENS_PER_PICK = 16 + 2 * REASON_MAX_CHARS  # '{"n": 3, "reason": "..."}'


def judge_max_tokens(picks: int) -> int:
    return JUDGE_BASE_TOKENS + TOKENS_PER_PICK * picks


def numbered_candidates(items: Iterable[tuple[str, Sequence[str]]]) -> str:
    """The numbered list a judge reads (both judges' prompts): "n. Title (Year) (Genre,
    Genre)" per (label, genres), numbered from 1 as the picks' ``n``."""
    return "\n".join(
        f"{n}. {label} ({', '.join(genres[:2]) or 'unknown genre'})"
        for n, (label, genres) in enumerate(items, 1)
    )


class CloudJudgement(BaseModel):
    """The cloud LLM's judgement of a cold-start device's shortlist (``judge_on_cloud``):
    ``ids`` are the shortlist it judged, ``picks`` number into them. The device checks
    every reason against the catalogue before it shows one."""

    model_config = ConfigDict(frozen=True)

    turn: int
    ids: list[str] = Field(max_length=50)
    picks: list[Pick] = Field(default_factory=list, max_length=20)
