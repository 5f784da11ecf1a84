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

_YEAR = re.compile(r"(?<!\d)(1[89]\d\d|20[0-2]\d)(?!\d)")


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


def _genres_text(genres: Sequence[str]) -> str:
    return "/".join(genres[:3]) if genres else "film"


def fact_reason(
    item: ItemFacts,
    asked: Constraints | None,
    *,
    neighbour: str | None = None,
    like_label: str | None = None,
    like_genres: Sequence[str] = (),
    rank: int = 1,
) -> str:
    """A reason from facts that hold: the request's genres/years the item meets (``asked``:
    the request as read, before any relaxation), the named film it shares genres with,
    its nearest film in the user's history."""
    c = asked or Constraints()
    year = f"{item.year} " if item.year else ""
    parts: list[str] = []
    if like_label:
        shared = [g for g in item.genres if g in like_genres]
        parts.append(
            f"shares {' and '.join(shared[:2])} with {like_label}"
            if shared
            else f"watched by the same people as {like_label}"
        )
    asked = [g for g in item.genres if g in c.genres]
    years_asked = c.year_min is not None or c.year_max is not None
    if asked or years_asked:
        what = _genres_text(asked or list(item.genres))
        met = c.satisfied_by(item.genres, item.year)
        tail = ", as asked" if met else ", the closest to your request"
        parts.append(f"a {year}{what}{tail}")
    elif not parts:
        parts.append(f"a {year}{_genres_text(item.genres)}")
    if neighbour:
        parts.append(_HISTORY_FRAMES[(rank - 1) % len(_HISTORY_FRAMES)].format(t=neighbour))
    elif not like_label:
        parts.append("high in what your viewing pattern predicts")
    text = "; ".join(parts)
    return text[:1].upper() + text[1:] + "."
