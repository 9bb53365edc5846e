"""From reader spans to an Answer: the best span, and the sentences that support it."""

from __future__ import annotations

import math
from dataclasses import replace

from .documents import table_row_in_context
from .index import CorpusIndex, content_words, word_overlap
from .normalize import normalize_answer
from .questions import is_question
from .reader import ReaderSpan, against_no_answer, keep_abbreviation_period
from .schema import Answer, Citation, Document, Passage, Sentence


def sentence_range(doc: Document, start: int, end: int) -> tuple[int, int]:
    """Offsets of the sentence(s) covering [start, end) in `doc`, merged into one range."""
    inside = doc.sentences_in(start, end) or [Sentence(start, end)]
    return min(inside[0].start, start), max(inside[-1].end, end)


def answer_end(doc: Document, start: int, end: int) -> int:
    """`end`, or where the sentence holding `start` ends when the span runs on into the next sentence
    (paragraph, list item, heading: "14 May\n2. Beta release"), or the first table-cell separator
    (" | ", in Markdown tables and in HTML tables as read: "£180 | £90").

    Answers do not cross sentences (7 of the 8,582 SQuAD train answers do, 5 of them two or three whole
    sentences); a span that does has the reader's start and overshoots its end, for words of the question
    in the next sentence ("`/var/log/orbit/access.log`. Log files" for "Where are the logs written?")."""
    cell = doc.text.find(" | ", start, end)
    if cell > start:
        end = cell
    holding = doc.sentences_in(start, start + 1)
    if holding and holding[0].end < end:
        end = holding[0].end
        while end > start + 1 and doc.text[end - 1] in ".,;:!?":  # the sentence's mark, not the answer's
            end -= 1
        end = keep_abbreviation_period(doc.text, start, end)
    return end


def inside_marks(text: str, start: int, end: int) -> tuple[int, int]:
    """[start, end) moved inward past emphasis marks at its edges: `**Oslo**` in a plain-text
    document (where nothing blanks them) is answered `Oslo`, not `**Oslo`. Asterisks, backticks and
    tildes never end an answer; an underscore does only when it is part of a name (`__init__`,
    `snake_case`), so a single one between a word and a space or the edge of the text is a mark."""
    while start < end and text[start] in "*`~":
        start += 1
    while end > start and text[end - 1] in "*`~":
        end -= 1
    def is_word(i: int) -> bool:
        return 0 <= i < len(text) and (text[i].isalnum() or text[i] == "_")
    if end - start > 1 and text[start] == "_" and not is_word(start - 1) and text[start + 1].isalnum():
        start += 1
    if end - start > 1 and text[end - 1] == "_" and not is_word(end) and text[end - 2].isalnum():
        end -= 1
    return start, end


def sentence_weight(question: str, doc: Document, at: int, weight: float) -> float:
    """(1 - weight) + weight * the share of the question's content words in the sentence of `doc` holding
    offset `at` (a Markdown table row with its header row): of two spans the reader finds about as
    likely, the one whose sentence speaks of what the question asks counts more (Config.sentence_overlap_weight).
    A question without content words ("Who is it?") leaves every span as the reader scored it."""
    if not weight or not content_words(question):
        return 1.0
    holding = doc.sentences_in(at, at + 1)
    if not holding:
        return 1.0
    sentence = table_row_in_context(doc.name, doc.text, holding[0].start, holding[0].end)
    return 1.0 - weight + weight * word_overlap(question, sentence)


def question_ranges(doc: Document, passage: Passage) -> list[tuple[int, int]]:
    """The passage's question sentences, in passage offsets: read for context, never the answer.

    A FAQ's headings ask what the user asks ("How far can I ride on one charge?"), and the reader,
    matching words, answers "How far" from them; in prose a question sentence states no fact (1 of
    the 8,582 SQuAD train answers lies in one)."""
    return [(max(s.start, passage.start) - passage.start, min(s.end, passage.end) - passage.start)
            for s in doc.sentences_in(passage.start, passage.end) if is_question(doc.text[s.start:s.end])]


def assemble(question: str, index: CorpusIndex, passages: list[Passage], spans: list[ReaderSpan],
             threshold: float, max_citations: int = 3) -> Answer:
    """Answer with the best-supported span unless the reader judges the passages hold no answer.

    A span that runs from one sentence (paragraph, list item) into the next is cut where the first ends
    (a rule for a small reader that reads across breaks: eval/results/answer-in-sentence-2026-11-26.md).
    An answer found in several places is more likely right than a one-off: spans with the same
    normalised text pool their probabilities by noisy-OR, 1 - prod(1 - p), which stays in [0, 1]
    and equals p for a single occurrence: the answer's confidence. It abstains when that confidence,
    against the reader's "no answer" in the window of its best occurrence (`against_no_answer`), is under
    `threshold`: the test that tells unanswerable questions apart best, while the confidence itself tells
    right answers from wrong ones best (eval/results/no-answer-2026-12-04.md). The same occurrence seen
    twice (overlapping chunks, overlapping windows, or a longer span cut back to it: "3.5 hours.\n\nWhat
    is the top speed?" to "3.5 hours") counts once, at its best. Spans of one place that read alike ("1844", "1844.") are
    different readings of it and pool. Occurrences, best first, are the citations: each the
    sentence(s) containing it, with its own answer offsets.
    """
    groups: dict[str, list[ReaderSpan]] = {}
    places: set[tuple[str, int, int]] = set()
    for span in sorted(spans, key=lambda s: s.score, reverse=True):
        passage = passages[span.passage]
        doc = index.by_name[passage.doc]
        start = passage.start + span.start
        start, end = inside_marks(doc.text, start, answer_end(doc, start, passage.start + span.end))
        text = doc.text[start:end]
        if text.strip() and (passage.doc, start, end) not in places:
            places.add((passage.doc, start, end))
            groups.setdefault(normalize_answer(text) or text, []).append(
                replace(span, start=start - passage.start, end=end - passage.start))
    if not groups:
        return Answer(question=question, text="", score=0.0, abstained=True, citations=[], passages=passages,
                      reason="the reader found no answer span")
    pooled = {key: 1.0 - math.prod(1.0 - s.score for s in group) for key, group in groups.items()}
    key = max(pooled, key=pooled.get)
    score = pooled[key]
    best = groups[key][0]
    text = passages[best.passage].text[best.start:best.end]
    share = against_no_answer(score, best.no_answer)
    if share < threshold:
        return Answer(question=question, text="", score=score, abstained=True, citations=[], passages=passages,
                      against_no_answer=share,
                      reason=f"best candidate {text!r} (confidence {score:.2f}) against the reader's own "
                             f"\"no answer\" scored {share:.3f}, under the threshold {threshold:.3f}")

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
                  passages=passages, against_no_answer=share)
