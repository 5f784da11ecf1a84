"""Device side: the check a device-written search query passes before it goes to the cloud.

The device SLM that writes queries on the device (``model_semantics_on_device``) runs
beside the private history, and a small model copies what it has seen. A query that
names a film of the user's history would tell the cloud what they watched, so every
query is checked by code against the history's titles (each in its written and spoken
forms: "Matrix, The" and "The Matrix"), as whole words, and a query that names one is
dropped. Conservative on purpose: a title that is also a common word ("Big", "Heat")
drops a query that uses the word; the request's own words are sent anyway (the user typed
them for the cloud), so a title the request itself names is not a catch.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence

_NON_WORD = re.compile(r"[^a-z0-9]+")
_YEAR = re.compile(r"\s*\(\d{4}\)\s*$")
_ARTICLE = re.compile(r"^(.*), (the|a|an|les|la|le|il|el|das|der|die)$", re.IGNORECASE)
MIN_FORM_CHARS = 3


def _norm(text: str) -> str:
    return " ".join(_NON_WORD.sub(" ", text.lower()).split())


def title_forms(title: str) -> set[str]:
    """A title's forms as a query might write it: without its year, with the trailing
    article moved to the front, and without the article."""
    base = _YEAR.sub("", title.strip())
    forms = {base}
    if m := _ARTICLE.match(base):
        forms |= {f"{m.group(2)} {m.group(1)}", m.group(1)}
    return {f for f in map(_norm, forms) if len(f) >= MIN_FORM_CHARS}


def history_titles_in(query: str, titles: Iterable[str], allowed: str = "") -> list[str]:
    """The history titles ``query`` names (whole words), leaving out those that the
    ``allowed`` text (the user's own request) names too."""
    q, ok = f" {_norm(query)} ", f" {_norm(allowed)} "
    return [
        t
        for t in dict.fromkeys(titles)
        if any(f" {f} " in q and f" {f} " not in ok for f in title_forms(t))
    ]


def checked_queries(
    queries: Sequence[str], titles: Sequence[str], request: str
) -> tuple[list[str], list[str]]:
    """The queries that name no history title, and the titles that were caught."""
    kept, caught = [], []
    for q in queries:
        hits = history_titles_in(q, titles, request)
        if hits:
            caught.extend(hits)
        else:
            kept.append(q)
    return kept, list(dict.fromkeys(caught))
