"""Sentence boundaries with exact character offsets, so citations point into the original text.

A rule-based splitter: a sentence ends at a line break, or at . ! ? (plus closing quotes or
brackets) followed by space and a capital, digit or opening quote — except after common
abbreviations and initials ("Dr.", "U.S.", "J.") and inside unclosed parentheses.
"""

from __future__ import annotations

import re

from .schema import Sentence

_END = re.compile(r"""[.!?]+['"”’)\]]*(?=\s+['"“‘(\[]?[A-Z0-9])""")
_ABBREVIATIONS = {
    "mr", "mrs", "ms", "dr", "prof", "sr", "jr", "st", "mt", "vs", "etc", "no", "gen", "col", "lt",
    "sgt", "capt", "gov", "sen", "rep", "rev", "hon", "inc", "ltd", "co", "corp", "dept", "univ",
    "jan", "feb", "mar", "apr", "jun", "jul", "aug", "sep", "sept", "oct", "nov", "dec", "fig", "al",
    "e.g", "i.e", "cf", "approx", "est", "u.s", "u.k", "u.n", "e.u", "ft", "vol", "pp",
}


def split_sentences(text: str) -> list[Sentence]:
    """Sentences of `text` as offsets; whitespace between sentences belongs to none."""
    sentences = []
    for line in re.finditer(r"[^\n]+", text):
        start = line.start()
        for end in _boundaries(line.group()):
            sentences.append(_trimmed(text, start, line.start() + end))
            start = line.start() + end
        sentences.append(_trimmed(text, start, line.end()))
    return [s for s in sentences if s.end > s.start]


def _boundaries(line: str) -> list[int]:
    cuts = []
    for match in _END.finditer(line):
        before = line[: match.start()]
        word = re.search(r"([\w.]*)$", before).group(1).lower()
        if match.group().startswith(".") and (word in _ABBREVIATIONS or re.fullmatch(r"[a-z]", word)):
            continue
        if before.count("(") > before.count(")"):
            continue
        cuts.append(match.end())
    return cuts


def _trimmed(text: str, start: int, end: int) -> Sentence:
    while start < end and text[start].isspace():
        start += 1
    while end > start and text[end - 1].isspace():
        end -= 1
    return Sentence(start, end)
