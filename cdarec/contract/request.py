"""Contract: request -> constraints, what a chat request asks for, read by code (both sides read
it).

A request such as "a funny romantic comedy from the 1990s, nothing scary" becomes
``Constraints(genres=[Comedy, Romance], year 1990-1999, exclude=[Horror])``. The parser
reads the request and the *public* catalogue (its genre vocabulary and titles) only, so
the cloud may run it; the device reads the same constraints to bind its own proposals.

Why by hand: a 1.5B cloud model asked for genres under a schema returned the abstract's
genres for most requests (issue 14: 20% of top-10 items matched the request); a lexicon
of everyday genre words, negation scopes, decades and catalogue titles is exact, costs
microseconds and works for any atomic data set (genres are matched by normalised name,
so a data set with other genre names still gets its own names read). What the lexicon
cannot place (``residual``) is left to the cloud LLM's semantic query.
"""

from __future__ import annotations

import difflib
import re
import unicodedata
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from functools import cached_property
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from cdarec.contract.schemas import GenreName

MAX_REQUEST_CHARS = 500  # a chat request; the catalogue search's query has the same bound


class RequestError(ValueError):
    """A request no turn can run on; the message says what to change."""


def clean_request(text: str) -> str:
    """A request as the graph reads it: Unicode normalised (NFC), control and format
    characters (terminal escapes, zero-width joiners, NUL) turned into spaces, runs of
    white space collapsed. Raises ``RequestError`` for one over ``MAX_REQUEST_CHARS``."""
    text = unicodedata.normalize("NFC", text)
    text = "".join(" " if unicodedata.category(ch) in ("Cc", "Cf", "Cs") else ch for ch in text)
    text = " ".join(text.split())
    if len(text) > MAX_REQUEST_CHARS:
        raise RequestError(
            f"the request is {len(text)} characters long; the limit is {MAX_REQUEST_CHARS}. "
            "Say in a sentence or two what you would like to watch."
        )
    return text


def norm_key(text: str) -> str:
    """'Sci-Fi' -> 'scifi', "Children's" -> 'childrens': genre names compared loosely."""
    text = unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode()
    return re.sub(r"[^a-z0-9]+", "", text.lower())


# Everyday words -> normalised genre keys. A key that the data set lacks is ignored; a
# data set's own genre names (and their plurals) are always read as well.
GENRE_WORDS: dict[str, tuple[str, ...]] = {
    "comedy": ("comedy",),
    "comedies": ("comedy",),
    "funny": ("comedy",),
    "hilarious": ("comedy",),
    "humor": ("comedy",),
    "humour": ("comedy",),
    "humorous": ("comedy",),
    "comic": ("comedy",),
    "laugh": ("comedy",),
    "laughs": ("comedy",),
    "romcom": ("comedy", "romance"),
    "romcoms": ("comedy", "romance"),
    "rom com": ("comedy", "romance"),
    "rom-com": ("comedy", "romance"),
    "romantic comedy": ("comedy", "romance"),
    "romantic comedies": ("comedy", "romance"),
    "romance": ("romance",),
    "romances": ("romance",),
    "romantic": ("romance",),
    "love story": ("romance",),
    "love stories": ("romance",),
    "horror": ("horror",),
    "scary": ("horror",),
    "frightening": ("horror",),
    "terrifying": ("horror",),
    "spooky": ("horror",),
    "creepy": ("horror",),
    "slasher": ("horror",),
    "gory": ("horror",),
    "gore": ("horror",),
    "thriller": ("thriller",),
    "thrillers": ("thriller",),
    "suspense": ("thriller",),
    "suspenseful": ("thriller",),
    "sci fi": ("scifi",),
    "sci-fi": ("scifi",),
    "scifi": ("scifi",),
    "science fiction": ("scifi",),
    "science-fiction": ("scifi",),
    "space": ("scifi",),
    "futuristic": ("scifi",),
    "action": ("action",),
    "action-packed": ("action",),
    "adventure": ("adventure",),
    "adventures": ("adventure",),
    "adventurous": ("adventure",),
    "animated": ("animation",),
    "animation": ("animation",),
    "cartoon": ("animation",),
    "cartoons": ("animation",),
    "anime": ("animation",),
    "kids": ("childrens",),
    "children": ("childrens",),
    "childrens": ("childrens",),
    "family": ("childrens",),
    "crime": ("crime",),
    "gangster": ("crime",),
    "gangsters": ("crime",),
    "mafia": ("crime",),
    "heist": ("crime",),
    "documentary": ("documentary",),
    "documentaries": ("documentary",),
    "drama": ("drama",),
    "dramas": ("drama",),
    "dramatic": ("drama",),
    "tearjerker": ("drama",),
    "tearjerkers": ("drama",),
    "tear-jerker": ("drama",),
    "fantasy": ("fantasy",),
    "magical": ("fantasy",),
    "fairy tale": ("fantasy",),
    "film noir": ("filmnoir",),
    "film-noir": ("filmnoir",),
    "noir": ("filmnoir",),
    "musical": ("musical",),
    "musicals": ("musical",),
    "mystery": ("mystery",),
    "mysteries": ("mystery",),
    "whodunit": ("mystery",),
    "detective": ("mystery",),
    "war": ("war",),
    "wartime": ("war",),
    "military": ("war",),
    "western": ("western",),
    "westerns": ("western",),
    "cowboy": ("western",),
    "cowboys": ("western",),
}
# Mood and occasion words: soft preferences, never hard filters, relaxed first. Each is
# (genres preferred - an item should have one of them -, genres avoided), in the
# lexicon's genre keys; a data set without a genre simply lacks that part. A proxy by
# genre only: "warm" keeps out the horror, not every cold drama.
_DARK = ("horror", "war", "filmnoir", "crime", "thriller")
_WARM = ("comedy", "romance", "childrens", "animation", "musical")
MOODS: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {
    "lighter": ((), ("horror", "war", "filmnoir")),
    "light": ((), ("horror", "war", "filmnoir")),
    "light-hearted": ((), ("horror", "war", "filmnoir")),
    "lighthearted": ((), ("horror", "war", "filmnoir")),
    "cheerful": ((), ("horror", "war", "filmnoir")),
    "feel-good": (_WARM, _DARK),
    "feel good": (_WARM, _DARK),
    "uplifting": (_WARM, _DARK),
    "warm": (_WARM, _DARK),
    "heartwarming": (_WARM, _DARK),
    "heart-warming": (_WARM, _DARK),
    "cozy": (_WARM, _DARK),
    "cosy": (_WARM, _DARK),
    "wholesome": (("childrens", "animation", "comedy", "musical"), _DARK),
    "sweet": (_WARM, _DARK),
    "charming": (_WARM, _DARK),
    "happy ending": (_WARM, _DARK),
    "happy endings": (_WARM, _DARK),
    "relaxing": (("comedy", "animation", "adventure", "romance", "musical"), _DARK),
    "chill": (("comedy", "animation", "adventure", "romance", "musical"), ("horror", "war")),
    "silly": (("comedy",), ("horror", "war", "filmnoir")),
    "goofy": (("comedy",), ("horror", "war", "filmnoir")),
    "date night": (("romance", "comedy"), ("horror", "war")),
    "sad": (("drama", "romance", "war"), ()),
    "moving": (("drama", "romance", "war"), ()),
    "emotional": (("drama", "romance"), ()),
    "make me cry": (("drama", "romance"), ()),
    "weepy": (("drama", "romance"), ()),
    "intense": (("thriller", "action", "crime", "horror", "war"), ("childrens", "musical")),
    "tense": (("thriller", "action", "crime", "horror", "mystery"), ("childrens", "musical")),
    "nail-biting": (("thriller", "action", "horror", "mystery"), ("childrens", "musical")),
    "nail biting": (("thriller", "action", "horror", "mystery"), ("childrens", "musical")),
    "heart-pounding": (("thriller", "action", "horror"), ("childrens", "musical")),
    "heart pounding": (("thriller", "action", "horror"), ("childrens", "musical")),
    "gripping": (("thriller", "action", "crime", "mystery"), ("childrens", "musical")),
    "exciting": (("action", "adventure", "thriller"), ()),
    "thrilling": (("action", "adventure", "thriller"), ()),
    "edge of my seat": (("thriller", "action", "horror", "mystery"), ("childrens", "musical")),
    "adrenaline": (("action", "thriller"), ("childrens", "musical")),
    "mind-bending": (("scifi", "mystery", "thriller"), ("childrens",)),
    "mind bending": (("scifi", "mystery", "thriller"), ("childrens",)),
    "twisty": (("mystery", "thriller"), ("childrens",)),
    "thought-provoking": (("drama", "scifi", "documentary"), ("childrens",)),
    "thought provoking": (("drama", "scifi", "documentary"), ("childrens",)),
    "cerebral": (("drama", "scifi", "mystery"), ("childrens",)),
    "epic": (("adventure", "war", "action", "fantasy"), ()),
    "dark": ((), ("childrens", "animation", "musical")),
    "gritty": ((), ("childrens", "animation", "musical")),
    "grown-up": ((), ("childrens", "animation")),
}
NEGATIONS = frozenset(
    (  # noqa: SIM905 - a word list reads better as one string
        "not no without nothing non except avoid avoiding hate isnt dont never none skip less"
    ).split()
)
SIMILAR_CUES = re.compile(
    r"\b(?:(?:something|anything|movies?|films?|more|one|stuff)\s+)?"
    r"(?:similar\s+to|in\s+the\s+(?:vein|style|spirit)\s+of|reminds?\s+me\s+of|"
    r"along\s+the\s+lines\s+of|like)\s+(?P<what>.+)$",
    re.IGNORECASE,
)
# "I'd like", "would like", "like to": wanting, not likeness.
_WANT_LIKE = re.compile(r"\b(?:i'?d|would|i|we|really|do|you)\s+like\b|\blike\s+to\b", re.I)
# Where a "like X" title span stops.
_TITLE_STOP = re.compile(
    r"\s*(?:[,;.!?]|\bbut\b|\band\b\s+(?:not|less|more|without)|\bonly\b|\bexcept\b|"
    r"\bwithout\b|\bfrom\s+the\b|\bthat\b|\bwhich\b|\bwith\b|\bplease\b|\bin\s+the\s+\d)",
    re.IGNORECASE,
)
_WORDS = {
    "twenties": 1920,
    "thirties": 1930,
    "forties": 1940,
    "fifties": 1950,
    "sixties": 1960,
    "seventies": 1970,
    "eighties": 1980,
    "nineties": 1990,
}


class Constraints(BaseModel):
    """What a request asks for, in the catalogue's terms. Public: no history in it."""

    model_config = ConfigDict(frozen=True)

    genres: list[GenreName] = Field(default_factory=list, description="required genres")
    genre_mode: Literal["all", "any"] = Field(
        default="all", description="an item needs all of ``genres`` or any of them"
    )
    exclude_genres: list[GenreName] = Field(
        default_factory=list, description="never shown ('not scary', 'no romance')"
    )
    avoid_genres: list[GenreName] = Field(
        default_factory=list, description="soft: mood words ('lighter'); relaxed first"
    )
    prefer_genres: list[GenreName] = Field(
        default_factory=list,
        description="soft: one of these, from mood words ('heartwarming'); relaxed first",
    )
    year_min: int | None = Field(default=None, ge=1800, le=2100)
    year_max: int | None = Field(default=None, ge=1800, le=2100)
    like_items: list[str] = Field(
        default_factory=list, max_length=3, description="catalogue ids the request names"
    )
    like_labels: list[str] = Field(default_factory=list, max_length=3)
    unknown_title: str | None = Field(
        default=None, max_length=80, description="a film named that the catalogue lacks"
    )
    residual: str = Field(default="", max_length=200, description="words nothing here read")
    conflicts: list[str] = Field(
        default_factory=list, description="parts of the request that contradict each other"
    )
    relaxed: list[str] = Field(default_factory=list, description="what was relaxed, in order")

    @property
    def empty(self) -> bool:
        return not (
            self.genres
            or self.exclude_genres
            or self.avoid_genres
            or self.prefer_genres
            or self.year_min is not None
            or self.year_max is not None
            or self.like_items
        )

    @property
    def binding(self) -> bool:
        """Whether anything here restricts the pool (``like_items`` only steers it)."""
        return bool(
            self.genres
            or self.exclude_genres
            or self.avoid_genres
            or self.prefer_genres
            or self.year_min is not None
            or self.year_max is not None
        )

    def years_text(self) -> str:
        lo, hi = self.year_min, self.year_max
        if lo is not None and hi is not None:
            if lo % 10 == 0 and hi == lo + 9:
                return f"the {lo}s"
            return str(lo) if lo == hi else f"{lo}-{hi}"
        if lo is not None:
            return f"{lo} or later"
        if hi is not None:
            return f"{hi} or earlier"
        return ""

    def describe(self) -> str:
        parts = []
        if self.genres:
            parts.append((" and " if self.genre_mode == "all" else " or ").join(self.genres))
        if self.years_text():
            parts.append("from " + self.years_text())
        if self.like_labels:
            parts.append("like " + ", ".join(self.like_labels))
        if self.exclude_genres:
            parts.append("no " + ", ".join(self.exclude_genres))
        if self.prefer_genres:
            parts.append("preferably " + " or ".join(self.prefer_genres))
        if self.avoid_genres:
            parts.append("preferably not " + ", ".join(self.avoid_genres))
        return "; ".join(parts) or "no constraint"

    def satisfied_by(self, genres: Iterable[str], year: int | None, *, soft: bool = True) -> bool:
        gs = set(genres)
        if self.genres:
            want = set(self.genres)
            if self.genre_mode == "all" and not want <= gs:
                return False
            if self.genre_mode == "any" and not want & gs:
                return False
        if gs & set(self.exclude_genres) or (soft and gs & set(self.avoid_genres)):
            return False
        if soft and self.prefer_genres and not gs & set(self.prefer_genres):
            return False
        if self.year_min is not None and (year is None or year < self.year_min):
            return False
        return not (self.year_max is not None and (year is None or year > self.year_max))

    def relaxations(self) -> list[Constraints]:
        """This and ever looser versions, in the stated order: the soft mood preferences
        (the preferred genres first, then the avoided ones),
        then the years widened by five on each side, then dropped, then any one of the
        genres instead of all, then no genre. Exclusions ('not X') are never relaxed."""
        out = [self]
        cur = self

        def step(note: str, **update: object) -> None:
            nonlocal cur
            cur = cur.model_copy(update={**update, "relaxed": [*cur.relaxed, note]})
            out.append(cur)

        if cur.prefer_genres:
            step("looked beyond " + ", ".join(cur.prefer_genres), prefer_genres=[])
        if cur.avoid_genres:
            step("allowed " + ", ".join(cur.avoid_genres), avoid_genres=[])
        if cur.year_min is not None or cur.year_max is not None:
            lo, hi = cur.year_min, cur.year_max
            step(
                "widened the years by five on each side",
                year_min=None if lo is None else lo - 5,
                year_max=None if hi is None else hi + 5,
            )
            step("dropped the years", year_min=None, year_max=None)
        if len(cur.genres) > 1 and cur.genre_mode == "all":
            step(f"any of {', '.join(cur.genres)} instead of all", genre_mode="any")
        if cur.genres:
            step("dropped the genres", genres=[], genre_mode="all")
        return out


@dataclass(frozen=True)
class Vocabulary:
    """The public catalogue as the parser reads it: genre names and titles."""

    genres: tuple[str, ...]
    titles: tuple[tuple[str, str, str], ...]  # (item id, label, normalised title), popular first

    @classmethod
    def build(
        cls,
        genres: Sequence[str],
        items: Sequence[tuple[str, str, str]],
        popularity: Sequence[float],
    ) -> Vocabulary:
        """``items``: (item id, title, label); ``popularity`` orders equal titles."""
        order = sorted(range(len(items)), key=lambda i: -float(popularity[i]))
        titles = tuple((items[i][0], items[i][2], title_key(items[i][1])) for i in order)
        return cls(tuple(genres), titles)

    @cached_property
    def genre_by_key(self) -> dict[str, str]:
        return {norm_key(g): g for g in self.genres}

    @cached_property
    def phrases(self) -> dict[str, tuple[str, ...]]:
        """Every phrase read as genres: the lexicon's, limited to this data set's genres,
        and the data set's own genre names and plurals."""
        known = self.genre_by_key
        out: dict[str, tuple[str, ...]] = {}
        for phrase, keys in GENRE_WORDS.items():
            names = tuple(known[k] for k in keys if k in known)
            if names:
                out[phrase] = names
        for key, name in known.items():
            if key in ("unknown", "none", "other", "nogenreslisted"):
                continue
            for form in {name.lower(), name.lower().replace("-", " "), name.lower() + "s"}:
                out.setdefault(form, (name,))
        return out

    @cached_property
    def phrase_re(self) -> re.Pattern[str]:
        alts = sorted(self.phrases, key=len, reverse=True)
        return re.compile(r"(?<![\w'])(" + "|".join(re.escape(a) for a in alts) + r")(?![\w'])")

    @cached_property
    def by_title(self) -> dict[str, tuple[str, str]]:
        out: dict[str, tuple[str, str]] = {}
        for item_id, label, key in self.titles:
            out.setdefault(key, (item_id, label))  # the most popular of equal titles
        return out

    def find_title(self, text: str) -> tuple[str, str] | None:
        """The catalogue item a span names: exact title (articles and years ignored), else
        a close match (difflib ratio >= 0.86) among titles."""
        key = title_key(text)
        if not key:
            return None
        if key in self.by_title:
            return self.by_title[key]
        # "star wars" names "Star Wars: Episode IV - A New Hope": a title that starts
        # with the span's words (the most popular such title), for spans of 2+ words.
        if " " in key:
            for item_id, label, tkey in self.titles:
                if tkey.startswith(key + " "):
                    return item_id, label
        close = difflib.get_close_matches(key, list(self.by_title), n=1, cutoff=0.86)
        return self.by_title[close[0]] if close else None

    def find_titles(self, text: str) -> list[tuple[str, str]]:
        """The films a span names: the whole span, else each part of a list ("Toy Story
        and Shrek", "Alien, Heat or Fargo")."""
        if found := self.find_title(text):
            return [found]
        parts = re.split(r"\s*(?:,|;|&|\band\b|\bor\b)\s*", text, flags=re.I)
        out = []
        for part in parts:
            if part.strip() and (hit := self.find_title(part)) and hit not in out:
                out.append(hit)
        return out[:3]


_ARTICLES = ("the ", "a ", "an ", "la ", "le ", "les ", "el ", "il ", "das ", "der ", "die ")


def title_key(title: str) -> str:
    """A title compared loosely: lower case, year and punctuation gone, a trailing
    article moved back ('Lion King, The (1994)' -> 'lion king')."""
    t = unicodedata.normalize("NFKD", title).encode("ascii", "ignore").decode().lower()
    t = re.sub(r"\(\s*\d{4}\s*\)", " ", t)
    t = re.sub(r"\(([^)]*)\)", " ", t)  # "(a.k.a. ...)" and alternative titles
    t = re.sub(r",\s*(the|a|an|la|le|les|el|il|das|der|die)\s*$", "", t.strip())
    t = re.sub(r"[^a-z0-9]+", " ", t).strip()
    for art in _ARTICLES:
        if t.startswith(art):
            t = t[len(art) :]
            break
    return t


_DECADE = re.compile(
    r"(?<!\d)(?:(?P<full>1[89]\d0|20[0-2]0)|'?(?P<short>[2-9]0))\s*'?s\b", re.IGNORECASE
)
_YEAR = re.compile(r"(?<!\d)(1[89]\d\d|20[0-2]\d)(?!\d)")
_BEFORE = re.compile(r"\b(?:before|pre|earlier than|older than|until|up to)\s*-?\s*(\d{4})", re.I)
_AFTER = re.compile(
    r"\b(?:after|since|post|newer than|later than)\s*-?\s*(\d{4})(?!s)"
    r"|\bfrom\s+(\d{4})\s+(?:on|onwards|onward)\b",
    re.I,
)
_BETWEEN = re.compile(
    r"\b(?:between\s+(\d{4})\s+and|from\s+(\d{4})\s+(?:to|until|till)|(\d{4})\s*(?:-|–|to))"
    r"\s*(\d{4})\b",
    re.I,
)
_OLD = re.compile(r"\b(old|older|classic|classics|golden age|vintage|black and white)\b", re.I)
_NEW = re.compile(r"\b(recent|new|newer|newest|latest|modern)\b", re.I)
_STOP = frozenset(
    (  # noqa: SIM905 - a word list reads better as one string
        "a an the some something anything movie movies film films flick flicks please "
        "me i want would like to watch see show give recommend find for with from of in "
        "and or but that is it its my one ones good great nice really very kind sort "
        "type any more less too bit little maybe could can you us we tonight today "
        "again also just made set year years era decade i'd id i'm im let's lets"
    ).split()
)


def _years(text: str, latest: int | None) -> tuple[int | None, int | None, list[tuple[int, int]]]:
    """Year bounds and the character spans that said them."""
    spans: list[tuple[int, int]] = []
    lo = hi = None
    if m := _BETWEEN.search(text):
        first = next(g for g in m.groups()[:3] if g)
        a, b = sorted((int(first), int(m.group(4))))
        return a, b, [m.span()]
    decades = []
    for m in _DECADE.finditer(text):
        start = int(m.group("full")) if m.group("full") else 1900 + int(m.group("short"))
        if not m.group("full") and start < 1920:
            start += 100  # "00s", "10s"
        decades.append(start)
        spans.append(m.span())
    for word, start in _WORDS.items():
        for m in re.finditer(rf"\b{word}\b", text, re.I):
            decades.append(start)
            spans.append(m.span())
    if decades:
        lo, hi = min(decades), max(decades) + 9
    if m := _BEFORE.search(text):
        hi = int(m.group(1)) - 1
        spans.append(m.span())
    if m := _AFTER.search(text):
        lo = int(m.group(1) or m.group(2)) + (
            0 if m.group(0).lower().startswith(("from", "since")) else 1
        )
        spans.append(m.span())
    if lo is None and hi is None:
        free = [m for m in _YEAR.finditer(text) if not any(a <= m.start() < b for a, b in spans)]
        if free:
            lo = hi = int(free[0].group(1))
            spans.append(free[0].span())
    if lo is None and hi is None:
        if old := list(_OLD.finditer(text)):
            hi = 1969
            spans += [m.span() for m in old]
        elif (m := _NEW.search(text)) and latest:
            lo = latest - 4
            spans.append(m.span())
    return lo, hi, spans


def parse_request(text: str, vocab: Vocabulary, latest_year: int | None = None) -> Constraints:
    """Read a chat request into constraints (see the module docstring).

    ``latest_year``: the catalogue's newest year ('recent' means its last five years).
    """
    raw = " ".join((text or "").split())[:500]
    if not raw:
        return Constraints()
    lowered = raw.lower().replace("’", "'")
    like_ids: list[str] = []
    like_labels: list[str] = []
    unknown: str | None = None
    consumed: list[tuple[int, int]] = []
    m = SIMILAR_CUES.search(lowered)
    if m and not _WANT_LIKE.search(lowered[: m.start("what") + 1]):
        span_text = raw[m.start("what") :]
        stop = _TITLE_STOP.search(span_text)
        title_text = span_text[: stop.start()] if stop else span_text
        title_text = re.sub(r"^(?:the\s+movie|the\s+film)\s+", "", title_text.strip(), flags=re.I)
        title_text = title_text.strip(" \"'“”")
        found = vocab.find_titles(title_text) if title_text else []
        if found:
            like_ids += [f[0] for f in found]
            like_labels += [f[1] for f in found]
            consumed.append((m.start("what"), m.start("what") + len(title_text) + 1))
        elif title_text and not vocab.phrase_re.fullmatch(title_text.lower().strip()):
            words = [w for w in re.findall(r"[a-z0-9']+", title_text.lower()) if w not in _STOP]
            is_genre_talk = any(vocab.phrase_re.search(w) for w in words)
            if words and not is_genre_talk and not _DECADE.search(title_text):
                unknown = title_text[:80]
                consumed.append((m.start("what"), m.start("what") + len(title_text) + 1))
    if not m and not like_ids and (bare := vocab.find_title(raw.strip(" ?!.\"'"))):
        # The whole request is a film's title: more like it.
        like_ids, like_labels = [bare[0]], [bare[1]]
        consumed.append((0, len(lowered)))
    blanked = "".join(
        " " if any(a <= i < b for a, b in consumed) else ch for i, ch in enumerate(lowered)
    )  # a year inside a named title ("Groundhog Day (1993)") is no constraint
    year_min, year_max, year_spans = _years(blanked, latest_year)
    consumed += year_spans
    genres: list[str] = []
    excluded: list[str] = []
    avoid: list[str] = []
    tokens_before = re.compile(r"[a-z']+")
    for gm in vocab.phrase_re.finditer(lowered):
        if any(a <= gm.start() < b for a, b in consumed):
            continue
        consumed.append(gm.span())
        before = tokens_before.findall(lowered[max(0, gm.start() - 30) : gm.start()])[-3:]
        negated = any(w.replace("'", "") in NEGATIONS for w in before) or (
            before[-2:] == ["anything", "but"]
        )
        names = vocab.phrases[gm.group(1)]
        target = excluded if negated else genres
        target.extend(n for n in names if n not in target)
    prefer: list[str] = []
    for word, (liked, avoided) in sorted(MOODS.items(), key=lambda kv: -len(kv[0])):
        for mm in re.finditer(rf"(?<![\w-]){re.escape(word)}(?![\w-])", lowered):
            if any(a <= mm.start() < b for a, b in consumed):
                continue
            consumed.append(mm.span())
            before = tokens_before.findall(lowered[max(0, mm.start() - 20) : mm.start()])[-2:]
            if any(w.replace("'", "") in NEGATIONS for w in before):
                liked, avoided = (), liked  # "nothing too intense": keep it away
            for k in liked:
                if (name := vocab.genre_by_key.get(k)) and name not in prefer:
                    prefer.append(name)
            for k in avoided:
                if (name := vocab.genre_by_key.get(k)) and name not in avoid:
                    avoid.append(name)
    conflicts = [f"{g} and no {g}" for g in genres if g in excluded]
    genres = [g for g in genres if g not in excluded]  # "not" wins: the safer reading
    if year_min is not None and year_max is not None and year_min > year_max:
        conflicts.append(f"from {year_min} on and before {year_max + 1}")
        year_min = year_max = None
    avoid = [g for g in avoid if g not in genres and g not in excluded]
    # Within the genres asked ("warm and funny": a comedy that is also romance, family,
    # animation or musical); never what the request excludes or a mood avoids.
    prefer = [g for g in prefer if g not in genres and g not in excluded and g not in avoid]
    rest = "".join(
        " " if any(a <= i < b for a, b in consumed) else ch for i, ch in enumerate(lowered)
    )
    residual = " ".join(
        w
        for w in re.findall(r"[a-z0-9']+", rest)
        if w not in _STOP and w.replace("'", "") not in NEGATIONS
    )
    return Constraints(
        genres=genres[:4],
        exclude_genres=excluded[:4],
        avoid_genres=avoid[:5],
        prefer_genres=prefer[:5],
        year_min=year_min,
        year_max=year_max,
        like_items=like_ids,
        like_labels=like_labels,
        unknown_title=unknown,
        residual=residual[:200],
        conflicts=conflicts,
    )


@dataclass(frozen=True)
class CatalogueFacts:
    """Each catalogue item's genres (a boolean matrix) and year, for masks over the whole
    catalogue (public: the same facts the Chroma collection holds)."""

    genre_col: dict[str, int]
    has_genre: object  # np.ndarray (n_items, n_genres) bool
    years: object  # np.ndarray (n_items,) float, NaN where unknown

    @classmethod
    def build(cls, genres: Sequence[str], items: Sequence[tuple[Sequence[str], int | None]]):
        import numpy as np

        col = {g: i for i, g in enumerate(genres)}
        has = np.zeros((len(items), len(col)), dtype=bool)
        years = np.full(len(items), np.nan)
        for i, (gs, year) in enumerate(items):
            for g in gs:
                if g in col:
                    has[i, col[g]] = True
            if year is not None:
                years[i] = year
        return cls(col, has, years)

    def mask(self, c: Constraints, *, soft: bool = True):
        """Items that satisfy ``c`` (``Constraints.satisfied_by`` for every item at once)."""
        import numpy as np

        has: np.ndarray = self.has_genre  # type: ignore[assignment]
        years: np.ndarray = self.years  # type: ignore[assignment]
        out = np.ones(len(years), dtype=bool)

        def cols(names: Iterable[str]) -> list[int]:
            return [self.genre_col[g] for g in names if g in self.genre_col]

        if c.genres:
            want = cols(c.genres)
            if len(want) < len(c.genres) and c.genre_mode == "all":
                return np.zeros(len(years), dtype=bool)  # a genre this catalogue lacks
            if want:
                part = has[:, want]
                out &= part.all(axis=1) if c.genre_mode == "all" else part.any(axis=1)
            else:
                return np.zeros(len(years), dtype=bool)
        banned = cols([*c.exclude_genres, *(c.avoid_genres if soft else [])])
        if banned:
            out &= ~has[:, banned].any(axis=1)
        if soft and c.prefer_genres:
            liked = cols(c.prefer_genres)
            out &= has[:, liked].any(axis=1) if liked else False
        with np.errstate(invalid="ignore"):
            if c.year_min is not None:
                out &= years >= c.year_min
            if c.year_max is not None:
                out &= years <= c.year_max
        return out

    def bind(self, c: Constraints, eligible, need: int):
        """The strictest of ``c.relaxations()`` that leaves at least ``need`` eligible
        items (or the loosest), and its mask of eligible items."""
        levels = c.relaxations()
        for level in levels:
            m = self.mask(level) & eligible
            if int(m.sum()) >= need:
                return level, m
        return levels[-1], self.mask(levels[-1]) & eligible
