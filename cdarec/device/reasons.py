"""Device side: reasons that are true, written from facts, and every claim checked.

A reason may name genres, years, decades and titles. ``check_reason`` finds each such
claim in a text (genre words through the request parser's own lexicon, so "funny" is a
claim of Comedy; titles through the catalogue's title index) and keeps it only if it is
true: a genre or year of the item itself, or a title that is the item, a film the
request named, or one in the user's history (the device may say so: the reason stays on
the device). ``fact_reason`` writes a reason from facts that hold by construction: what
of the request the item meets, which named film it shares genres with, and which film of
the user's own history it is closest to in the sequence model's item space.
"""

from __future__ import annotations

import re
from collections.abc import Collection, Sequence
from dataclasses import dataclass

from cdarec.contract.request import _DECADE, Constraints, Vocabulary, title_key

# A year, not a decade ("1990s" is checked as a decade).
_YEAR = re.compile(r"(?<!\d)(1[89]\d\d|20[0-2]\d)(?!\d|'?s\b)")


@dataclass(frozen=True)
class ItemFacts:
    label: str
    genres: tuple[str, ...]
    year: int | None


def _title_spans(text: str, vocab: Vocabulary) -> list[tuple[int, int, str]]:
    """(start, end, normalised title) of catalogue titles named in ``text``: runs of two or
    more words, or one capitalised word of five letters or more that is not the first."""
    words = list(re.finditer(r"[A-Za-z0-9'][A-Za-z0-9'&:-]*", text))
    found: list[tuple[int, int, str]] = []
    taken: set[int] = set()
    titles = vocab.by_title
    for n in range(min(12, len(words)), 0, -1):
        for i in range(len(words) - n + 1):
            if any(j in taken for j in range(i, i + n)):
                continue
            span = text[words[i].start() : words[i + n - 1].end()]
            if n == 1 and (i == 0 or not span[:1].isupper() or len(span) < 5):
                continue
            key = title_key(span)
            if key and key in titles and (n > 1 or key not in vocab.phrases):
                found.append((words[i].start(), words[i + n - 1].end(), key))
                taken.update(range(i, i + n))
    return found


def check_reason(
    text: str,
    item: ItemFacts,
    vocab: Vocabulary,
    allowed_titles: Collection[str] = (),
) -> list[str]:
    """The false claims in ``text`` about ``item`` (empty: grounded). ``allowed_titles``:
    labels the reason may name besides the item (the history, the request's films)."""
    problems: list[str] = []
    allowed = {title_key(t) for t in allowed_titles} | {title_key(item.label)}
    rest = text
    for label in {*allowed_titles, item.label}:  # named exactly, year and all
        if label and label in rest:
            rest = rest.replace(label, " " * len(label))
    for start, end, key in sorted(_title_spans(rest, vocab), reverse=True):
        if key not in allowed:
            problems.append(f"names {rest[start:end]!r}, neither this film nor one you know")
        # A named film's own year and genres belong to it, not to this item.
        after = re.match(r"\s*\((\d{4})\)", rest[end:])
        stop = end + (after.end() if after else 0)
        rest = rest[:start] + " " * (stop - start) + rest[stop:]
    for m in _YEAR.finditer(rest):
        if item.year is None or int(m.group(1)) != item.year:
            problems.append(f"says {m.group(1)}, the film is from {item.year or 'an unknown year'}")
    for m in _DECADE.finditer(rest):
        start = int(m.group("full")) if m.group("full") else 1900 + int(m.group("short"))
        if not m.group("full") and start < 1920:
            start += 100
        if item.year is None or not start <= item.year <= start + 9:
            problems.append(f"says the {start}s, the film is from {item.year or 'an unknown year'}")
    lowered = rest.lower()
    for m in vocab.phrase_re.finditer(lowered):
        before = re.findall(r"[a-z']+", lowered[max(0, m.start() - 20) : m.start()])[-2:]
        if any(w in ("not", "no", "without", "isn't", "less") for w in before):
            continue
        missing = [g for g in vocab.phrases[m.group(1)] if g not in item.genres]
        if missing:
            problems.append(f"calls it {m.group(1)!r}; its genres are {', '.join(item.genres)}")
    return problems


_HISTORY_FRAMES = (
    "close to {t}, which you watched",
    "for fans of {t}, in your history",
    "near {t} in what you watch",
    "in the vein of {t}, which you saw",
)
_ASK_FRAMES = (
    "a {y}{g}, as asked",
    "{g}{fy}, what you asked for",
    "a {y}{g}, matching your request",
    "{g}{fy}, as requested",
)


@dataclass(frozen=True)
class ReasonFacts:
    """What the device knows of one shown item beyond its own facts, each true by
    construction (``reason_facts`` in the device nodes computes them)."""

    neighbour: str | None = None  # the closest film of the history that shares a genre
    after: str | None = None  # a recent history film it often follows, across all users
    popular_rank: int | None = None  # 1 = the most watched of ``popular_among`` here
    popular_among: str = ""  # what it is ranked among ("1990s Comedy/Romance")
    popular_of: int = 0  # how many films that is
    genre_count: tuple[str, int] | None = None  # one of its genres, history films with it
    collaborative: bool = False  # people with this user's taste were the source
    history: bool = True  # the user has a viewing history (False: a cold-start device)


def _genres_text(genres: Sequence[str]) -> str:
    return "/".join(genres[:3]) if genres else "film"


def _count(n: int) -> str:
    return str(n) if n < 1000 else "over a thousand"  # never a number read as a year


def _supporting(kind: str, f: ReasonFacts, rank: int) -> str:
    if kind == "after":
        return f"people who watched {f.after} often watched it soon after"
    if kind == "neighbour":
        return _HISTORY_FRAMES[(rank - 1) % len(_HISTORY_FRAMES)].format(t=f.neighbour)
    if kind == "popular":
        r, among = f.popular_rank or 0, f.popular_among
        if r == 1:
            return f"the most watched {among} film here"
        if r <= 10:
            return f"one of the ten most watched {among} films here"
        if r <= f.popular_of // 2:
            return f"number {r} by views of the {_count(f.popular_of)} {among} films here"
        return f"a less-known {among} film, watched less than most of them"
    if kind == "genre_count" and f.genre_count:
        g, n = f.genre_count
        return f"you have watched {_count(n)} {g} films"
    if kind == "collaborative":
        return "people with your taste chose it"
    if not f.history:
        return "chosen without a viewing history (there is none here yet)"
    return "high in what your viewing pattern predicts"


def _available(f: ReasonFacts) -> list[str]:
    kinds = []
    if f.after:
        kinds.append("after")
    if f.neighbour:
        kinds.append("neighbour")
    r = f.popular_rank
    if (
        r is not None
        and f.popular_among
        and f.popular_of >= 20
        # the middle of the list says little, unless there is nothing else to say
        and (r <= 10 or r > f.popular_of // 2 or (not f.history and r < 1000))
    ):
        kinds.append("popular")
    if f.genre_count and f.genre_count[1] >= 3:
        kinds.append("genre_count")
    if f.collaborative:
        kinds.append("collaborative")
    return kinds


def fact_reason(
    item: ItemFacts,
    asked: Constraints | None,
    *,
    neighbour: str | None = None,
    like_label: str | None = None,
    like_genres: Sequence[str] = (),
    rank: int = 1,
    facts: ReasonFacts | None = None,
    used: dict[str, int] | None = None,
) -> str:
    """A reason from facts that hold: the request's genres/years the item meets (``asked``:
    the request as read, before any relaxation) or the named film it shares genres with,
    then one fact about this item and this person (``facts``): a film of the history it
    often follows or is closest to, its place among the most watched, how much of its
    genre the user watches, or that people with the user's taste chose it. ``used``
    counts the kinds of fact already used in this list, so each item leads with a
    different one where it can (a list of five reads as five reasons, not one template)."""
    c = asked or Constraints()
    f = facts or ReasonFacts(neighbour=neighbour)
    if neighbour and not f.neighbour:
        f = ReasonFacts(**{**f.__dict__, "neighbour": neighbour})
    parts: list[str] = []
    if like_label:
        shared = [g for g in item.genres if g in like_genres]
        parts.append(
            f"shares {' and '.join(shared[:2])} with {like_label}"
            if shared
            else f"watched by the same people as {like_label}"
        )
    asked_genres = [g for g in item.genres if g in c.genres]
    years_asked = c.year_min is not None or c.year_max is not None
    if asked_genres or years_asked:
        what = _genres_text(asked_genres or list(item.genres))
        if c.satisfied_by(item.genres, item.year):
            frame = _ASK_FRAMES[(rank - 1) % len(_ASK_FRAMES)]
            parts.append(
                frame.format(
                    y=f"{item.year} " if item.year else "",
                    fy=f" from {item.year}" if item.year else "",
                    g=what,
                )
            )
        else:
            parts.append(
                f"a {item.year or ''} {what}, the closest to your request".replace("  ", " ")
            )
    elif not parts:
        parts.append(
            f"a {item.year} {_genres_text(item.genres)}"
            if item.year
            else f"a {_genres_text(item.genres)}"
        )
    kinds = _available(f)
    if like_label and "neighbour" in kinds and len(kinds) > 1:
        kinds.remove("neighbour")  # the named film is the link that matters here
    counts = used if used is not None else {}
    if kinds:
        # The kind used least in this list so far; ties rotate with the rank.
        start = (rank - 1) % len(kinds)
        order = kinds[start:] + kinds[:start]
        kind = min(order, key=lambda k: counts.get(k, 0))
        counts[kind] = counts.get(kind, 0) + 1
        parts.append(_supporting(kind, f, rank))
    elif not like_label:
        parts.append(_supporting("sequence", f, rank))
    text = "; ".join(parts)
    return text[:1].upper() + text[1:] + "."
