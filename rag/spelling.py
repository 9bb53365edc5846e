"""Respelling a question with the documents' own words, for a "did you mean" when it abstains.

A misspelt question word ("Rusian delegaton") is absent from the documents, and the reader, trained
to say "no answer" when a passage lacks the question's words, abstains. The engine never answers a
respelt question in the user's place (a word it does not know may be a different word, not a typo:
"Prussian"); it only suggests the respelling when that question would be answered.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Callable

_WORD = re.compile(r"[^\W\d_]+")


class Speller:
    """The documents' words (lower-cased, letters only), grouped by first letter for quick lookups."""

    def __init__(self, texts: list[str], known: Callable[[str], bool], min_length: int = 5, cutoff: float = 0.85):
        self.known = known  # e.g. the documents have its stem: "deadlines" is no typo of "deadline"
        self.min_length = min_length  # shorter words have too many near neighbours to guess from
        self.cutoff = cutoff  # difflib's similarity ratio a replacement needs
        self.words: set[str] = set()
        for text in texts:
            self.words.update(w.lower() for w in _WORD.findall(text))
        self._by_initial: dict[str, list[str]] = {}
        for word in sorted(self.words):
            self._by_initial.setdefault(word[0], []).append(word)

    def respell(self, question: str) -> str:
        """`question` with each unknown word (not in the documents, nor `known`) of min_length
        letters or more replaced by the closest document word of about its length (same first
        letter), when one is close enough."""

        def replace(match: re.Match) -> str:
            word = match.group()
            lower = word.lower()
            if len(lower) < self.min_length or lower in self.words or self.known(lower):
                return word
            candidates = [w for w in self._by_initial.get(lower[0], []) if abs(len(w) - len(lower)) <= 2]
            best = difflib.get_close_matches(lower, candidates, n=1, cutoff=self.cutoff)
            if not best:
                return word
            return best[0].capitalize() if word[0].isupper() else best[0]

        return _WORD.sub(replace, question)
