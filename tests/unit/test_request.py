"""Request -> constraints, masks, relaxation and reason grounding (unit: no model).

A small hand-made catalogue, so each expectation can be read off; the real ML-1M
vocabulary is exercised by tests/unit/test_graph_fake.py and the integration tests.
"""

from __future__ import annotations

import numpy as np
import pytest

from cdarec.contract.request import (
    CatalogueFacts,
    Constraints,
    Vocabulary,
    parse_request,
    title_key,
)
from cdarec.device.reasons import ItemFacts, ReasonFacts, check_reason, fact_reason

GENRES = [
    "Action",
    "Adventure",
    "Animation",
    "Children's",
    "Comedy",
    "Drama",
    "Film-Noir",
    "Horror",
    "Musical",
    "Romance",
    "Sci-Fi",
    "Thriller",
    "War",
    "Western",
]
ITEMS = [  # (item id, title, genres, year)
    ("a1", "Alien", ("Horror", "Sci-Fi"), 1979),
    ("a2", "Aliens", ("Action", "Sci-Fi", "Thriller", "War"), 1986),
    ("g1", "Groundhog Day", ("Comedy", "Romance"), 1993),
    ("l1", "Lion King, The", ("Animation", "Children's", "Musical"), 1994),
    ("s1", "Sleepless in Seattle", ("Comedy", "Romance"), 1993),
    ("m1", "Matrix, The", ("Action", "Sci-Fi", "Thriller"), 1999),
    ("h1", "Shining, The", ("Horror",), 1980),
    ("w1", "Unforgiven", ("Western",), 1992),
    ("n1", "Maltese Falcon, The", ("Film-Noir", "Mystery"), 1941),
]


def label(title: str, year: int) -> str:
    return f"{title} ({year})"


@pytest.fixture(scope="module")
def vocab() -> Vocabulary:
    return Vocabulary.build(
        GENRES, [(i, t, label(t, y)) for i, t, _, y in ITEMS], [1.0] * len(ITEMS)
    )


@pytest.fixture(scope="module")
def facts() -> CatalogueFacts:
    return CatalogueFacts.build(GENRES, [(g, y) for _, _, g, y in ITEMS])


@pytest.mark.parametrize(
    ("text", "genres", "years", "excluded"),
    [
        ("a funny romantic comedy from the 1990s", ["Comedy", "Romance"], (1990, 1999), []),
        ("romcom please", ["Comedy", "Romance"], (None, None), []),
        ("something scary from the 80s", ["Horror"], (1980, 1989), []),
        ("sci fi but not horror", ["Sci-Fi"], (None, None), ["Horror"]),
        ("a comedy, nothing romantic", ["Comedy"], (None, None), ["Romance"]),
        (
            "an animated film for kids from the nineties",
            ["Animation", "Children's"],
            (1990, 1999),
            [],
        ),
        ("a film noir before 1950", ["Film-Noir"], (None, 1949), []),
        ("a war drama from 1998", ["War", "Drama"], (1998, 1998), []),
        ("westerns between 1960 and 1975", ["Western"], (1960, 1975), []),
        ("anything but comedy", [], (None, None), ["Comedy"]),
    ],
)
def test_requests_become_constraints(vocab, text, genres, years, excluded) -> None:
    c = parse_request(text, vocab, latest_year=2000)
    assert c.genres == genres
    assert (c.year_min, c.year_max) == years
    assert c.exclude_genres == excluded


def test_named_films_are_found_and_their_years_are_not_constraints(vocab) -> None:
    c = parse_request("more movies like Groundhog Day (1993)", vocab)
    assert c.like_items == ["g1"] and c.year_min is None and c.year_max is None
    assert parse_request("something like lion king", vocab).like_items == ["l1"]
    assert parse_request("something like The Matrix", vocab).like_items == ["m1"]
    light = parse_request("something like Alien but lighter", vocab)
    assert light.like_items == ["a1"] and "Horror" in light.avoid_genres
    assert not light.exclude_genres, "a mood is a soft preference, not a filter"


def test_wanting_is_not_likeness_and_unknown_films_are_said(vocab) -> None:
    c = parse_request("I'd like a western", vocab)
    assert c.genres == ["Western"] and not c.like_items and c.unknown_title is None
    unknown = parse_request("something like Zorblax Returns", vocab)
    assert unknown.unknown_title == "Zorblax Returns" and not unknown.like_items


def test_words_nothing_reads_are_left_for_the_llm(vocab) -> None:
    c = parse_request("something for a rainy sunday afternoon", vocab)
    assert c.empty and "rainy" in c.residual
    assert parse_request("a comedy from the 1990s", vocab).residual == ""


def test_moods_are_soft_preferences_relaxed_first(vocab, facts) -> None:
    warm = parse_request("something warm and funny with a happy ending", vocab)
    assert warm.genres == ["Comedy"] and "Horror" in warm.avoid_genres
    assert "Romance" in warm.prefer_genres and "Comedy" not in warm.prefer_genres
    assert not warm.exclude_genres and warm.residual == "", "read completely, softly"
    # Within the genres asked, and never one of them.
    intense = parse_request("an intense thriller", vocab)
    assert intense.genres == ["Thriller"] and "Action" in intense.prefer_genres
    assert "Thriller" not in intense.prefer_genres
    tense = parse_request("a tense thriller from the 80s", vocab)
    assert tense.genres == ["Thriller"] and "Children's" in tense.avoid_genres
    assert parse_request("a pretense of comedy", vocab).avoid_genres == [], "whole words"
    calm = parse_request("a comedy, nothing too intense", vocab)
    assert "Horror" in calm.avoid_genres and not calm.prefer_genres
    levels = warm.relaxations()
    assert levels[1].relaxed == ["looked beyond " + ", ".join(warm.prefer_genres)]
    assert levels[2].avoid_genres == [] and levels[2].genres == ["Comedy"]
    # The mask and satisfied_by agree with a preference too; hard levels ignore it.
    c = Constraints(prefer_genres=["Romance", "Horror"], avoid_genres=["War"])
    assert facts.mask(c).tolist() == [c.satisfied_by(g, y) for _, _, g, y in ITEMS]
    assert facts.mask(c, soft=False).all()


def test_title_keys_ignore_articles_years_and_case() -> None:
    assert title_key("Lion King, The (1994)") == title_key("the lion king") == "lion king"


def test_masks_and_relaxation_in_the_stated_order(facts) -> None:
    ask = Constraints(genres=["Comedy", "Romance"], year_min=1990, year_max=1999)
    assert np.flatnonzero(facts.mask(ask)).tolist() == [2, 4]
    none = Constraints(
        genres=["Sci-Fi", "Musical"], year_min=1920, year_max=1929, exclude_genres=["Horror"]
    )
    levels = none.relaxations()
    assert [lv.relaxed[-1] for lv in levels[1:]] == [
        "widened the years by five on each side",
        "dropped the years",
        "any of Sci-Fi, Musical instead of all",
        "dropped the genres",
    ]
    assert all(lv.exclude_genres == ["Horror"] for lv in levels), "exclusions never relax"
    eligible = np.ones(len(ITEMS), dtype=bool)
    level, mask = facts.bind(none, eligible, need=2)
    assert level.genre_mode == "any" and level.year_min is None
    assert not mask[0], "Alien is Horror: excluded whatever the relaxation"
    assert mask[[1, 3, 5]].all()


def test_the_catalogue_mask_agrees_with_satisfied_by(facts) -> None:
    for c in (
        Constraints(genres=["Sci-Fi"], exclude_genres=["War"]),
        Constraints(genres=["Comedy", "Horror"], genre_mode="any", year_max=1985),
        Constraints(avoid_genres=["Horror"], year_min=1990),
    ):
        want = [c.satisfied_by(g, y) for _, _, g, y in ITEMS]
        assert facts.mask(c).tolist() == want


def test_true_claims_pass_and_false_ones_are_caught(vocab) -> None:
    empire = ItemFacts("Aliens (1986)", ("Action", "Sci-Fi", "Thriller", "War"), 1986)
    history = ["Alien (1979)", "Unforgiven (1992)"]
    assert check_reason("A 1986 sci-fi thriller", empire, vocab, history) == []
    assert (
        check_reason("Tense action from the 80s, after Alien (1979)", empire, vocab, history) == []
    )
    assert check_reason("Aliens is a funny animated film", empire, vocab, history)
    assert any("1995" in p for p in check_reason("a 1995 classic", empire, vocab))
    assert any("1990s" in p for p in check_reason("a gem of the 1990s", empire, vocab))
    assert check_reason("a 1980s classic", empire, vocab) == [], "a decade is no year"
    wrong_title = check_reason("just like Groundhog Day", empire, vocab, history)
    assert wrong_title and "Groundhog Day" in wrong_title[0]
    assert check_reason("not a comedy, pure suspense", empire, vocab) == []


def test_fact_reasons_are_true_and_differ_between_items(vocab) -> None:
    ask = Constraints(genres=["Comedy", "Romance"], year_min=1990, year_max=1999)
    items = [ItemFacts(label(t, y), g, y) for _, t, g, y in ITEMS if "Romance" in g]
    reasons = [
        fact_reason(it, ask, neighbour="Unforgiven (1992)", rank=r) for r, it in enumerate(items, 1)
    ]
    assert len(set(reasons)) == len(reasons)
    for it, text in zip(items, reasons, strict=True):
        assert check_reason(text, it, vocab, ["Unforgiven (1992)"]) == [], text
    like = fact_reason(
        items[0],
        Constraints(like_items=["a1"]),
        like_label="Alien (1979)",
        like_genres=("Horror", "Sci-Fi"),
    )
    assert "Alien (1979)" in like and check_reason(like, items[0], vocab, ["Alien (1979)"]) == []


def test_a_list_of_reasons_uses_different_facts(vocab) -> None:
    """Five items with every kind of fact available: each reason leads its support with
    a kind the list has not used yet, and every one is grounded."""
    ask = Constraints(genres=["Comedy", "Romance"], year_min=1990, year_max=1999)
    item = ItemFacts("Groundhog Day (1993)", ("Comedy", "Romance"), 1993)
    rf = ReasonFacts(
        neighbour="Unforgiven (1992)",
        after="Alien (1979)",
        popular_rank=2,
        popular_among="1990s Comedy/Romance",
        popular_of=40,
        genre_count=("Comedy", 14),
        collaborative=True,
    )
    used: dict[str, int] = {}
    reasons = [fact_reason(item, ask, rank=r, facts=rf, used=used) for r in range(1, 6)]
    assert len(set(reasons)) == 5 and set(used.values()) == {1}, reasons
    for text in reasons:
        assert check_reason(text, item, vocab, ["Unforgiven (1992)", "Alien (1979)"]) == []
    assert any("ten most watched 1990s Comedy/Romance" in r for r in reasons)
    assert any("watched 14 Comedy films" in r for r in reasons)
    # A fact that does not hold is not available: a middling rank says nothing.
    middling = ReasonFacts(popular_rank=15, popular_among="Comedy", popular_of=40)
    assert "watched" not in fact_reason(item, None, facts=middling)


def test_a_device_with_no_history_gets_no_reason_about_its_history(vocab) -> None:
    """A cold-start device has no viewing pattern: its reasons say what holds instead."""
    item = ItemFacts("Groundhog Day (1993)", ("Comedy", "Romance"), 1993)
    middling = ReasonFacts(popular_rank=15, popular_among="Comedy", popular_of=40, history=False)
    text = fact_reason(item, None, facts=middling)
    assert "number 15 by views of the 40 Comedy films here" in text
    assert check_reason(text, item, vocab, []) == []
    nothing = fact_reason(item, None, facts=ReasonFacts(history=False))
    assert "viewing pattern" not in nothing and "there is none here yet" in nothing
    assert "viewing pattern" in fact_reason(item, None, facts=ReasonFacts())


def test_lists_of_films_prefixes_ranges_and_contradictions(vocab) -> None:
    assert parse_request("films like Alien and Groundhog Day", vocab).like_items == ["a1", "g1"]
    assert parse_request("Groundhog Day", vocab).like_items == ["g1"], "a bare title"
    c = parse_request("movies from 1985 to 1990", vocab)
    assert (c.year_min, c.year_max) == (1985, 1990) and not c.residual
    both = parse_request("a comedy but not a comedy", vocab)
    assert both.exclude_genres == ["Comedy"] and not both.genres and both.conflicts
    years = parse_request("a 1990s film made before 1980", vocab)
    assert years.year_min is None and years.year_max is None and years.conflicts
