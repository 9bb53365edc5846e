"""From reader spans to an Answer: the best span, and the sentences that support it."""

from __future__ import annotations

import bisect

from .index import CorpusIndex
from .normalize import normalize_answer
from .reader import ReaderSpan
from .schema import Answer, Citation, Document, Passage


def sentence_range(doc: Document, start: int, end: int) -> tuple[int, int]:
    """Offsets of the sentence(s) covering [start, end) in `doc`, merged into one range."""
    starts = [s.start for s in doc.sentences]
    first = max(bisect.bisect_right(starts, start) - 1, 0)
    last = max(bisect.bisect_left(starts, end) - 1, first)
    s_start = min(doc.sentences[first].start, start)
    s_end = max(doc.sentences[last].end, end)
    return s_start, s_end


def assemble(question: str, index: CorpusIndex, passages: list[Passage], spans: list[ReaderSpan],
             threshold: float, max_citations: int = 3) -> Answer:
    """Answer with the best span unless it scores under `threshold`.

    Citations: the best span's sentence first, then other places where the reader found the same
    answer (same normalised text), each with its own answer offsets.
    """
    if not spans:
        return Answer(question=question, text="", score=0.0, abstained=True, citations=[], passages=passages)
    best = spans[0]
    best_passage = passages[best.passage]
    text = best_passage.text[best.start:best.end]
    if best.score < threshold or not text.strip():
        return Answer(question=question, text="", score=best.score, abstained=True, citations=[], passages=passages)

    docs = {d.name: d for d in index.documents}
    key = normalize_answer(text) or text
    citations: list[Citation] = []
    seen: set[tuple[str, int]] = set()
    for span in spans:
        passage = passages[span.passage]
        span_text = passage.text[span.start:span.end]
        if span is not best and (normalize_answer(span_text) or span_text) != key:
            continue
        doc = docs[passage.doc]
        a_start, a_end = passage.start + span.start, passage.start + span.end
        s_start, s_end = sentence_range(doc, a_start, a_end)
        if (doc.name, s_start) in seen:
            continue
        seen.add((doc.name, s_start))
        citations.append(Citation(doc=doc.name, sentence=doc.text[s_start:s_end], start=s_start, end=s_end,
                                  answer_start=a_start, answer_end=a_end, score=span.score))
        if len(citations) == max_citations:
            break
    return Answer(question=question, text=text, score=best.score, abstained=False, citations=citations,
                  passages=passages)
