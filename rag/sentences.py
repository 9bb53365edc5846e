"""Sentence boundaries with exact character offsets, so citations point into the original text.

A rule-based splitter: a sentence ends at a line break, or at . ! ? (plus closing quotes or
brackets) followed by space and a capital, digit or opening quote — except after common
abbreviations, initials and dotted abbreviations ("Dr.", "J.", "J.I.", "6 p.m. Eastern"), after the
number of a numbered item ("1."), and inside unclosed parentheses. A single line break inside
running text is only hard wrapping (PDF text, plain text at 72 columns), not the end of a sentence:
see `_wrapped`.
"""

from __future__ import annotations

import re

from .schema import Sentence

_END = re.compile(r"""[.!?]+['"”’)\]]*(?=\s+['"“‘(\[]?[A-Z0-9])""")
_ABBREVIATIONS = {
    "mr", "mrs", "ms", "dr", "prof", "sr", "jr", "st", "mt", "vs", "etc", "no", "gen", "col", "lt",
    "sgt", "capt", "gov", "sen", "rep", "rev", "hon", "inc", "ltd", "co", "corp", "dept", "univ",
    "jan", "feb", "mar", "apr", "jun", "jul", "aug", "sep", "sept", "oct", "nov", "dec", "fig", "al",
    "cf", "approx", "est", "ft", "vol", "pp", "ca", "bros",
}


_DOTTED = re.compile(r"(?:[a-z]\.)*[a-z]")  # an initial ("j") or dotted abbreviation ("j.i", "p.m")
_CLOSED = re.compile(r"""[.!?]['"”’)\]]*\s*$""")  # a line that ends a sentence
_ITEM = re.compile(r"""\s*([-*•#>|]|\d+[.)]\s)""")  # a line that starts a list item, heading, quote or table row
_WRAP_WIDTH = 40  # shorter lines are headings or the last line of a paragraph, not wrapped text
_WRAP_RATIO = 0.7  # nor is a line much shorter than the next: a title above text, with no blank line
_MAX_SENTENCE = 600  # characters; longer runs (a transcript with no full stops) are cut at spaces
_WORD_BEFORE = re.compile(r"[\w.]*\Z")  # the word (or dotted abbreviation) just before a full stop
_LONGEST_WORD = 40  # characters looked back for it: longer "words" are no abbreviation
_LONGEST_ITEM_NUMBER = 12


def split_sentences(text: str) -> list[Sentence]:
    """Sentences of `text` as offsets; whitespace between sentences belongs to none."""
    sentences = []
    for block_start, block_end in _blocks(text):
        block = text[block_start:block_end]
        start = block_start
        for end in _boundaries(block):
            sentences.append(_trimmed(text, start, block_start + end))
            start = block_start + end
        sentences.append(_trimmed(text, start, block_end))
    return [piece for s in sentences if s.end > s.start for piece in _pieces(text, s)]


def block_breaks(text: str) -> list[int]:
    """Offsets of the line breaks that end a block (a paragraph, list item, heading, table row): every
    line break but those that only wrap running text (see `_wrapped`)."""
    return [end for _, end in _blocks(text) if end < len(text)]


def _pieces(text: str, sentence: Sentence) -> list[Sentence]:
    """A sentence over _MAX_SENTENCE characters as near-equal pieces, so a citation stays readable;
    shorter ones as they are. Pieces end after a comma or semicolon near where they should end if
    there is one (between the items of a list, not inside a name: "David | Suzuki" cut an answer in
    two), else at a space."""
    length = sentence.end - sentence.start
    if length <= _MAX_SENTENCE:
        return [sentence]
    count = -(-length // _MAX_SENTENCE)
    pieces, start = [], sentence.start
    for i in range(1, count):
        target = sentence.start + i * length // count
        mark = max(text.rfind(", ", start + 1, target + 1), text.rfind("; ", start + 1, target + 1))
        cut = mark + 1 if mark > target - _MAX_SENTENCE // 4 else text.rfind(" ", start + 1, target + 1)
        if cut <= start:  # no space before the target: the next one after it
            cut = text.find(" ", target, sentence.end)
        if cut < 0:
            break
        pieces.append(_trimmed(text, start, cut))
        start = cut
    pieces.append(_trimmed(text, start, sentence.end))
    return [p for p in pieces if p.end > p.start]


def _blocks(text: str) -> list[tuple[int, int]]:
    """Runs of lines that no line break divides: a line joins the one before when that was wrapped."""
    blocks: list[tuple[int, int]] = []
    previous = None
    for line in re.finditer(r"[^\n]+", text):
        if previous and _wrapped(previous.group(), line.group()) and text.count("\n", previous.end(), line.start()) == 1:
            blocks[-1] = (blocks[-1][0], line.end())
        else:
            blocks.append((line.start(), line.end()))
        previous = line
    return blocks


def _wrapped(line: str, following: str) -> bool:
    """Whether the break between two lines only wraps one paragraph: `line` is full width (long, and
    not much shorter than the next line) and does not end a sentence, and `following` continues the
    prose rather than starting an item."""
    width = len(line.strip())
    return (width >= _WRAP_WIDTH and width >= _WRAP_RATIO * len(following.strip()) and not _CLOSED.search(line)
            and not line.lstrip().startswith("#") and bool(following.strip()) and not _ITEM.match(following))


def _boundaries(line: str) -> list[int]:
    """Where sentences end in a line. Linear in its length: the word before each candidate end is
    found by looking back from it, and the brackets open before it are counted as the scan goes
    (looking at the whole line before every full stop took minutes for one 400 KB line)."""
    cuts = []
    opened = last = 0
    for match in _END.finditer(line):
        opened += line.count("(", last, match.start()) - line.count(")", last, match.start())
        last = match.start()
        word = _WORD_BEFORE.search(line, max(0, last - _LONGEST_WORD), last).group(0).lower()
        if match.group().startswith(".") and (word in _ABBREVIATIONS or _DOTTED.fullmatch(word)):
            continue
        if opened > 0:
            continue
        if last <= _LONGEST_ITEM_NUMBER and line[:last].strip().isdigit():  # "1. Prototype ready": an item's number
            continue
        cuts.append(match.end())
    return cuts


def _trimmed(text: str, start: int, end: int) -> Sentence:
    while start < end and text[start].isspace():
        start += 1
    while end > start and text[end - 1].isspace():
        end -= 1
    return Sentence(start, end)
