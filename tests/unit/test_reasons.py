"""The device judge's reasons: one line, and a reason cut at the schema's length cap
(the 0.5B model often runs into it mid-phrase) is trimmed to whole words."""

from __future__ import annotations

from cdarec.contract.judgement import REASON_MAX_CHARS, Pick, judgement_schema, tidy_reason


def test_short_reason_is_one_line_and_otherwise_untouched() -> None:
    assert tidy_reason("Dark  sci-fi,\nlike Alien.") == "Dark sci-fi, like Alien."


def test_cut_reason_loses_broken_word_and_dangling_words() -> None:
    # Real replies of Qwen2.5-Coder-0.5B at the 50-character cap (bench turns).
    cut = "Toy Story is a classic and has a strong sense of a"
    assert len(cut) == REASON_MAX_CHARS
    assert tidy_reason(cut) == "Toy Story is a classic and has a strong sense\u2026"
    ends_in_space = "Toy Story is a children's animated comedy that is "
    assert tidy_reason(ends_in_space) == "Toy Story is a children's animated comedy\u2026"


def test_pick_applies_it_and_schema_uses_the_same_cap() -> None:
    pick = Pick(n=1, reason="Toy Story is a romantic comedy that fits the taste")
    assert pick.reason == "Toy Story is a romantic comedy that fits\u2026"
    item = judgement_schema(5, 1)["properties"]["picks"]["items"]  # type: ignore[index]
    assert item["properties"]["reason"]["maxLength"] == REASON_MAX_CHARS
