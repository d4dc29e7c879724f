"""How search reads text: the words of a product and of a query, folded one way for both.

A word is a run of letters (with their combining marks), digits and `_`; anything else
separates words and is never a pattern. Text is NFKC-normalised first, so "e" + U+0301 (the
combining acute), a ligature "ﬁ" or a full-width A (U+FF21) read as "é", "fi" and "A"; each word is
then case-folded, so "STRASSE" and "Straße" are the same word. Accents stay: "é" is not "e".

The rule lives here, in Python, so that every database compares only these folded strings,
byte for byte: SQLite and MySQL (whose default collations ignore accents, and SQLite's LIKE
only ASCII case) answer alike. The search index stores every prefix of every word, which
makes "a query word begins a word of the product" an equality the index answers in order.
"""

from __future__ import annotations

import itertools
import unicodedata
from collections.abc import Iterable

# The index keeps prefixes up to this many characters; a longer query word is refused (422),
# so every accepted query matches exactly. Real words are far shorter.
MAX_WORD_LENGTH = 64
MAX_QUERY_WORDS = 10


def words_of(text: str) -> list[str]:
    """The folded words of `text`, in order, repeats included."""
    normalised = unicodedata.normalize("NFKC", text)
    return [
        _fold("".join(chars))
        for is_word, chars in itertools.groupby(normalised, key=_is_word_character)
        if is_word
    ]


def index_terms(texts: Iterable[str]) -> set[str]:
    """What the index stores for a product: every prefix, up to MAX_WORD_LENGTH characters,
    of every word of its texts. A query word matches exactly when it is one of them."""
    return {
        word[:length]
        for text in texts
        for word in words_of(text)
        for length in range(1, min(len(word), MAX_WORD_LENGTH) + 1)
    }


def query_words(q: str) -> list[str]:
    """The words a product must each have a word beginning with, the longest first (the
    likeliest to be rare; the repository puts the rarest first when it can count them).

    Raises ValueError when `q` has no word, too many, or one longer than the index keeps."""
    words = set(words_of(q))
    if not words:
        raise ValueError("q has no words (letters, digits or _)")
    if len(words) > MAX_QUERY_WORDS:
        raise ValueError(f"q may have at most {MAX_QUERY_WORDS} words")
    if any(len(word) > MAX_WORD_LENGTH for word in words):
        raise ValueError(f"a word of q may have at most {MAX_WORD_LENGTH} characters")
    # A word that begins another query word adds nothing: whatever begins with the longer
    # one begins with it too.
    needed = [word for word in words if not any(o != word and o.startswith(word) for o in words)]
    return sorted(needed, key=lambda word: (-len(word), word))


def _is_word_character(character: str) -> bool:
    return (
        character.isalnum() or character == "_" or unicodedata.category(character).startswith("M")
    )


def _fold(word: str) -> str:
    # Case folding may leave a sequence NFKC would compose (a dotted İ folds to i + U+0307).
    return unicodedata.normalize("NFKC", word.casefold())
