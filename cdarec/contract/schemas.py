"""Contract: typed values that cross between nodes and sides.

``state.py`` says which channels hold them and which side may read each; the
cloud-visible ones (``UserAbstract``, ``Candidate``) are enums, genre names, bucketed
counts and catalogue items the cloud itself retrieved.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    StringConstraints,
    ValidationInfo,
    field_validator,
    model_validator,
)

Side = Literal["cloud", "device"]
Bucket = Literal["cold", "light", "heavy"]
# "withheld": generalised away so that the abstract does not single the user out.
HistorySize = Literal["0", "1-2", "3-20", "21-100", "101-500", "500+", "withheld"]
Recency = Literal["active", "lapsed", "unknown", "withheld"]
LiveFeedback = Literal["none", "positive", "negative", "mixed"]
Decade = Literal[
    "1910s",
    "1920s",
    "1930s",
    "1940s",
    "1950s",
    "1960s",
    "1970s",
    "1980s",
    "1990s",
    "2000s",
    "2010s",
    "2020s",
]
# A genre name from the catalogue's vocabulary (checked against it where the vocabulary
# is known); short and title-free by construction.
GenreName = Annotated[
    str, StringConstraints(min_length=1, max_length=24, pattern=r"^[A-Za-z][A-Za-z'\- ]*$")
]


class UserState(BaseModel):
    """Coarse user-state bucket (history length, recency, live feedback)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    bucket: Bucket
    history_size: HistorySize
    recency: Recency
    live_feedback: LiveFeedback


class UserAbstract(BaseModel):
    """What the device tells the cloud about the user: coarse and non-identifying."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    state: UserState
    top_genres: list[GenreName] = Field(default_factory=list, max_length=3)
    avoid_genres: list[GenreName] = Field(default_factory=list, max_length=3)
    decades: list[Decade] = Field(default_factory=list, max_length=2)

    def describe(self) -> str:
        st = self.state
        facts = [f"{st.history_size} items" if st.history_size != "withheld" else ""]
        facts += [st.recency if st.recency != "withheld" else "", f"feedback: {st.live_feedback}"]
        parts = [f"{st.bucket} user ({', '.join(f for f in facts if f)})"]
        if self.top_genres:
            parts.append("likes " + ", ".join(self.top_genres))
        if self.avoid_genres:
            parts.append("avoids " + ", ".join(self.avoid_genres))
        if self.decades:
            parts.append("mostly films of the " + " and ".join(self.decades))
        return "; ".join(parts)


class Candidate(BaseModel):
    """A catalogue item the cloud retrieved for this turn."""

    model_config = ConfigDict(frozen=True)

    turn: int
    item_id: str
    label: str
    genres: tuple[str, ...] = ()
    year: int | None = None
    similarity: float
    query: str


class Proposal(BaseModel):
    """An item the device's structured model proposes, with its score."""

    model_config = ConfigDict(frozen=True)

    turn: int
    item_id: str
    score: float
    # "sequence": the structured model's top items; COLLABORATIVE: collaborative
    # retrieval run on the device (the user vector against the item table).
    source: str = "sequence"


class RankedItem(BaseModel):
    model_config = ConfigDict(frozen=True)

    rank: int
    item_id: str
    label: str
    genres: tuple[str, ...] = ()
    year: int | None = None
    score: float
    parts: dict[str, float] = Field(default_factory=dict)
    sources: tuple[str, ...] = ()
    reason: str = ""
    # Who wrote the reason ("slm": the device model, "cloud": the cloud LLM, for a device
    # with no private history, "facts": code, from true facts) and whether every genre,
    # year and title it names checked out.
    reason_source: Literal["slm", "cloud", "facts", ""] = ""
    grounded: bool = True


COLLABORATIVE = "collaborative"  # ``Candidate.query`` of collaborative-retrieval hits


class StepRecord(BaseModel):
    """One node's run in one turn: the step trace (and its timeline)."""

    model_config = ConfigDict(frozen=True)

    turn: int
    node: str
    side: Side
    start: float  # epoch seconds
    end: float
    model: str | None = None
    tokens_in: int = 0
    tokens_out: int = 0
    status: Literal["ok", "repaired", "fallback", "skipped", "cached", "error"] = "ok"
    detail: str = ""

    @property
    def ms(self) -> int:
        return round((self.end - self.start) * 1000)


class Intent(BaseModel):
    """What semantic modelling makes of a request: search queries and catalogue filters.

    Written by the cloud LLM under a JSON schema whose genre field is an enum of the
    catalogue's genres (``intent_json_schema``); validated against that vocabulary.
    """

    model_config = ConfigDict(frozen=True)

    queries: list[str] = Field(min_length=1, max_length=3)
    genres: list[GenreName] = Field(default_factory=list, max_length=3)
    year_min: int | None = Field(default=None, ge=1900, le=2030)
    year_max: int | None = Field(default=None, ge=1900, le=2030)

    @field_validator("queries")
    @classmethod
    def _clean(cls, v: list[str]) -> list[str]:
        out = [" ".join(q.split())[:160] for q in v if q and q.strip()]
        if not out:
            raise ValueError("no non-empty query")
        return list(dict.fromkeys(out))

    @field_validator("genres")
    @classmethod
    def _known(cls, v: list[str], info: ValidationInfo) -> list[str]:
        vocab = (info.context or {}).get("genres")
        if vocab is not None:
            unknown = [g for g in v if g not in vocab]
            if unknown:
                raise ValueError(f"unknown genres {unknown}; allowed: {sorted(vocab)}")
        return list(dict.fromkeys(v))

    @model_validator(mode="after")
    def _years(self) -> Intent:
        if self.year_min and self.year_max and self.year_min > self.year_max:
            raise ValueError("year_min is after year_max")
        return self


def intent_json_schema(genres: list[str]) -> dict[str, object]:
    """The intent's JSON schema for the LLM: genres as an enum, so decoding cannot invent
    one, and one short query (the user's own words are searched as well), so the reply
    stays within about 20 tokens - each costs ~0.1 s on the 1.5B cloud model here."""
    schema = Intent.model_json_schema()
    props = schema["properties"]
    props["genres"]["items"] = {"type": "string", "enum": sorted(genres)}
    props["genres"]["maxItems"] = 2
    props["queries"]["maxItems"] = 1
    props["queries"]["items"] = {"type": "string", "maxLength": 60}
    return schema
