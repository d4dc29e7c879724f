"""The one rule by which search reads text, for products and queries alike."""

from __future__ import annotations

import pytest

from product_service.search_words import (
    MAX_QUERY_WORDS,
    MAX_WORD_LENGTH,
    index_terms,
    query_words,
    words_of,
)


@pytest.mark.parametrize(
    ("text", "words"),
    [
        ("Walnut desk, 140 x 70 cm", ["walnut", "desk", "140", "x", "70", "cm"]),
        ("walnut-desk 50% a_b", ["walnut", "desk", "50", "a_b"]),
        ("Straße STRASSE", ["strasse", "strasse"]),
        ("Cafe\u0301 café", ["café", "café"]),
        ("\uff34\uff36 ﬁle", ["tv", "file"]),
        ("東京タワー、大阪", ["東京タワー", "大阪"]),
        # Devanagari vowel signs are combining marks: they stay inside the word.
        ("हिन्दी भाषा", ["हिन्दी", "भाषा"]),
        ("%_%", ["_"]),
        ("", []),
        (" -- ", []),
    ],
)
def test_words_are_runs_of_letters_digits_and_underscore_folded(text, words):
    assert words_of(text) == words


def test_the_index_holds_every_prefix_of_every_word_up_to_the_limit():
    assert index_terms(["Oak", "ox"]) == {"o", "oa", "oak", "ox"}
    long_terms = index_terms(["y" * (MAX_WORD_LENGTH + 10)])
    assert long_terms == {"y" * n for n in range(1, MAX_WORD_LENGTH + 1)}


def test_query_words_lead_with_the_longest_and_drop_those_another_implies():
    assert query_words("wal DESK walnut d oak") == ["walnut", "desk", "oak"]


@pytest.mark.parametrize(
    "q",
    [
        "%",
        "--",
        " ".join(f"w{n}" for n in range(MAX_QUERY_WORDS + 1)),
        "z" * (MAX_WORD_LENGTH + 1),
    ],
)
def test_a_query_the_index_cannot_answer_is_refused(q):
    with pytest.raises(ValueError, match="q "):
        query_words(q)


def test_the_largest_query_is_accepted():
    words = [f"{n}{'z' * (MAX_WORD_LENGTH - 1)}" for n in range(MAX_QUERY_WORDS)]
    assert sorted(query_words(" ".join(words))) == sorted(words)
