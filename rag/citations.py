"""From reader spans to an Answer: the best span, and the sentences that support it."""

from __future__ import annotations

import bisect
import math
from dataclasses import replace

from .index import CorpusIndex
from .normalize import normalize_answer
from .questions import is_question
from .reader import ReaderSpan
from .schema import Answer, Citation, Document, Passage, Sentence


def sentence_range(doc: Document, start: int, end: int) -> tuple[int, int]:
    """Offsets of the sentence(s) covering [start, end) in `doc`, merged into one range."""
    inside = doc.sentences_in(start, end) or [Sentence(start, end)]
    return min(inside[0].start, start), max(inside[-1].end, end)


def block_end(doc: Document, start: int, end: int) -> int:
    """`end`, or the first line break in [start, end) that lies between sentences, where the span would
    run from one paragraph, list item, heading or table row into the next ("14 May\n2. Beta release"),
    or the first table-cell separator (" | ", in Markdown tables and in HTML tables as read:
    "£180 | £90"). Line breaks that only wrap a sentence lie inside it and are kept."""
    cell = doc.text.find(" | ", start, end)
    if cell > start:
        end = cell
    if "\n" not in doc.text[start:end]:
        return end
    for at in range(start, end):
        if doc.text[at] == "\n":
            k = bisect.bisect_right(doc.sentence_starts, at) - 1
            if k < 0 or doc.sentences[k].end <= at:
                return at
    return end


def question_ranges(doc: Document, passage: Passage) -> list[tuple[int, int]]:
    """The passage's question sentences, in passage offsets: read for context, never the answer.

    A FAQ's headings ask what the user asks ("How far can I ride on one charge?"), and the reader,
    matching words, answers "How far" from them; in prose a question sentence states no fact (1 of
    the 8,582 SQuAD train answers lies in one)."""
    return [(max(s.start, passage.start) - passage.start, min(s.end, passage.end) - passage.start)
            for s in doc.sentences_in(passage.start, passage.end) if is_question(doc.text[s.start:s.end])]


def assemble(question: str, index: CorpusIndex, passages: list[Passage], spans: list[ReaderSpan],
             threshold: float, max_citations: int = 3) -> Answer:
    """Answer with the best-supported span unless its confidence is under `threshold`.

    A span that runs from one paragraph or list item into the next is cut where the first one ends.
    An answer found in several places is more likely right than a one-off: spans with the same
    normalised text pool their probabilities by noisy-OR, 1 - prod(1 - p), which stays in [0, 1]
    and equals p for a single occurrence. The same occurrence seen twice (overlapping chunks, or
    overlapping windows) counts once, at its best. Spans of one place that read alike ("1844",
    "1844.") are different readings of it and pool; but a span cut back at a paragraph's end is the
    reader's vote for a longer answer, so it counts only where no other span of that place does
    ("3.5 hours.\n\nWhat is the top speed?\n\n... 25 km/h" cut to "3.5 hours." must not add to "3.5
    hours"). Occurrences, best first, are the citations: each the sentence(s) containing it, with
    its own answer offsets.
    """
    readings = []
    for span in spans:
        passage = passages[span.passage]
        start, read_end = passage.start + span.start, passage.start + span.end
        end = block_end(index.by_name[passage.doc], start, read_end)
        text = passage.text[span.start:end - passage.start]
        if text.strip():
            readings.append((replace(span, end=end - passage.start), (passage.doc, start, end), end < read_end,
                             normalize_answer(text) or text))
    groups: dict[str, list[ReaderSpan]] = {}
    places: dict[str, list[tuple[str, int, int]]] = {}
    for cut_pass in (False, True):  # whole spans first: a cut one only adds a place they lack
        for span, (doc, start, end), cut, key in readings:
            seen = places.setdefault(key, [])
            if cut != cut_pass or (doc, start, end) in seen or (
                    cut and any(d == doc and s < end and start < e for d, s, e in seen)):
                continue
            seen.append((doc, start, end))
            groups.setdefault(key, []).append(span)
    for group in groups.values():
        group.sort(key=lambda s: s.score, reverse=True)  # the first of a group is its best
    if not groups:
        return Answer(question=question, text="", score=0.0, abstained=True, citations=[], passages=passages,
                      reason="the reader found no answer span")
    pooled = {key: 1.0 - math.prod(1.0 - s.score for s in group) for key, group in groups.items()}
    key = max(pooled, key=pooled.get)
    score = pooled[key]
    best = groups[key][0]
    text = passages[best.passage].text[best.start:best.end]
    if score < threshold:
        return Answer(question=question, text="", score=score, abstained=True, citations=[], passages=passages,
                      reason=f"best candidate {text!r} scored {score:.2f}, under the threshold {threshold:.2f}")

    citations: list[Citation] = []
    seen: set[tuple[str, int]] = set()
    for span in groups[key]:
        passage = passages[span.passage]
        doc = index.by_name[passage.doc]
        a_start, a_end = passage.start + span.start, passage.start + span.end
        s_start, s_end = sentence_range(doc, a_start, a_end)
        if (doc.name, s_start) in seen:
            continue
        seen.add((doc.name, s_start))
        citations.append(Citation(doc=doc.name, sentence=doc.text[s_start:s_end], start=s_start, end=s_end,
                                  answer_start=a_start, answer_end=a_end, score=span.score))
        if len(citations) == max_citations:
            break
    return Answer(question=question, text=text, score=score, abstained=False, citations=citations,
                  passages=passages)
