"""What the web chat's page is sent: answers, passages and documents as plain-text JSON.

The page builds its DOM from these with text nodes only, so document text is never parsed as HTML
and never escaped by hand: what a document says is what the page shows, copies and reads aloud.
"""

from __future__ import annotations

from rag.engine import UNRELATED
from rag.schema import Answer, Document

# Confidence shown in words. On the tuning split of squad-open, with the reader shipped on
# 2026-12-04, its confidence weighted by the sentence's share of the question's words, and abstaining
# when the answer against the reader's "no answer" scores under 0.56, answers scoring 0.7 or more were
# right (exact match) 95.0% of the time, from 0.3 to 0.7 77.0%, under 0.3 40.1%
# (eval/results/confidence-bands-no-answer-2026-12-04.md; abstaining on the confidence under 0.08
# instead: 95.0, 77.0, 42.2%; eval/confidence_bands.py measures them again).
CONFIDENCE_BANDS = ((0.7, "high", "High confidence"),
                    (0.3, "medium", "Medium confidence: worth checking the source"),
                    (0.0, "low", "Low confidence: check the source before relying on it"))


def confidence(score: float) -> dict:
    """The band a score falls in, with its words: how far the user may trust the answer."""
    for floor, level, words in CONFIDENCE_BANDS:
        if score >= floor:
            return {"level": level, "words": words}
    return {"level": "low", "words": CONFIDENCE_BANDS[-1][2]}


def answer_view(answer: Answer) -> dict:
    """An answer as the page shows it. `sources` are what its [n] links open: the cited sentences,
    or for an answer not found, the passages read (none when no passage was about the question)."""
    if answer.citations:
        sources = [{"doc": c.doc, "start": c.start, "end": c.end, "text": c.sentence,
                    "answer_start": None if answer.abstained else c.answer_start,
                    "answer_end": None if answer.abstained else c.answer_end} for c in answer.citations]
    elif answer.reason == UNRELATED:
        sources = []
    else:
        sources = [{"doc": p.doc, "start": p.start, "end": p.end, "text": " ".join(p.text.split()),
                    "answer_start": None, "answer_end": None} for p in answer.passages]
    if not answer.abstained:
        kind = "answer"
    elif answer.citations:
        kind = "no_span"  # a yes/no question: the closest sentence, for the user to judge
    else:
        kind = "not_found"
    return {"kind": kind, "question": answer.question, "text": answer.text, "score": round(answer.score, 4),
            "confidence": confidence(answer.score), "reason": answer.reason, "sources": sources,
            "copy": str(answer)}


def paragraph_bounds(doc_text: str, start: int, end: int) -> tuple[int, int]:
    """The paragraph (text between blank lines, else between line breaks) around [start, end)."""
    for sep in ("\n\n", "\n"):
        p_start = doc_text.rfind(sep, 0, start)
        p_end = doc_text.find(sep, end)
        p_start = 0 if p_start < 0 else p_start + len(sep)
        p_end = len(doc_text) if p_end < 0 else p_end
        if p_end - p_start <= 3000:
            return p_start, p_end
    return max(0, start - 1000), min(len(doc_text), end + 1000)


def text_view(doc: Document, lo: int, hi: int, start: int, end: int, answer_start: int | None = None,
              answer_end: int | None = None) -> dict:
    """`doc.text[lo:hi]` in pieces: before the cited range [start, end), the range itself (split
    around the answer when it lies inside), and after. The page marks the range and bolds the answer."""
    t = doc.text
    if answer_start is None or answer_end is None or not start <= answer_start <= answer_end <= end:
        answer_start = answer_end = end
    return {"doc": doc.name, "start": start, "end": end,
            "clipped_before": lo > 0 and t[lo - 1] != "\n", "clipped_after": hi < len(t) and t[hi] != "\n",
            "before": t[lo:start], "cited": [t[start:answer_start], t[answer_start:answer_end], t[answer_end:end]],
            "after": t[end:hi]}


def passage_view(doc: Document, start: int, end: int, answer_start: int | None = None,
                 answer_end: int | None = None) -> dict:
    """The paragraph around a cited range."""
    lo, hi = paragraph_bounds(doc.text, start, end)
    return text_view(doc, lo, hi, start, end, answer_start, answer_end)


def document_view(doc: Document, start: int, end: int, max_chars: int = 1_000_000) -> dict:
    """The whole document around a cited range, or the `max_chars` around it for a very long one."""
    lo = max(0, min(start - max_chars // 2, len(doc.text) - max_chars))
    return text_view(doc, lo, min(len(doc.text), lo + max_chars), start, end)
